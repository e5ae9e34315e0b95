# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one connection layer of the collection.

Every module and engine reaches PostgreSQL or a pgbouncer admin console through
``connect()`` here, with endpoints described by ``ENDPOINT_SPEC``. Errors come
back as ``ConnectError`` carrying one line that names the endpoint and the
cause, never the password.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

try:
    import psycopg2
    import psycopg2.extensions
    HAS_PSYCOPG2 = True
    PSYCOPG2_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - depends on the host
    psycopg2 = None
    HAS_PSYCOPG2 = False
    PSYCOPG2_IMPORT_ERROR = exc

# Renamed options keep their old names as deprecated aliases until this version
# (Ansible warns when one is used): specs.py's shared options and ENDPOINT_SPEC's.
DEPRECATED_REMOVED_IN = '1.0.0'
COLLECTION = 'fastdowntime.postgresql'


def deprecated_alias(name):
    """An Ansible ``deprecated_aliases`` item for an option's old name."""
    return dict(name=name, version=DEPRECATED_REMOVED_IN, collection_name=COLLECTION)


def renamed(spec, old_name):
    """``spec`` (an option) that still accepts ``old_name``, with a deprecation warning."""
    return dict(spec, aliases=[old_name], deprecated_aliases=[deprecated_alias(old_name)])


# One endpoint: a PostgreSQL server or a pgbouncer admin console.
ENDPOINT_SPEC = dict(
    name=dict(type='str', required=False),
    host=dict(type='str', required=True),
    port=dict(type='int', default=5432),
    user=dict(type='str', required=True),
    password=dict(type='str', no_log=True),
    dbname=dict(type='str'),
    ssl_mode=dict(type='str', default='prefer',
                  choices=['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full']),
    ca_cert=dict(type='path'),
    connect_timeout=dict(type='int', default=5),
    # Standbys only: the pgbouncer entries that serve them ("entry" or "pgbouncer:entry").
    pgbouncer_entries=renamed(dict(type='list', elements='str', default=[]), 'pgbouncer_databases'),
    # Standbys only: the application_name its upstream shows for it, when the
    # facts (slot, its own application_name, its address) cannot tell (replication.py).
    standby_application_name=dict(type='str'),
)

# A pgbouncer admin console: an endpoint on pgbouncer's port, always database "pgbouncer".
# Documented with ENDPOINT_SPEC in the doc fragment fastdowntime.postgresql.connection.
CONSOLE_SPEC = dict((k, v) for k, v in ENDPOINT_SPEC.items()
                    if k not in ('pgbouncer_entries', 'standby_application_name'))
CONSOLE_SPEC['port'] = dict(type='int', default=6432)
# The unix_socket_dir of the one pgbouncer process this console reaches (several
# processes sharing a port with so_reuseport), and the client login of the
# client probe (default: the primary's deploy user).
CONSOLE_SPEC.update(unix_socket_dir=dict(type='str'), probe_user=dict(type='str'),
                    probe_password=dict(type='str', no_log=True))


def endpoint_argument_spec(required=True, list_of=False, console=False):
    """Argument spec entry for an option that holds one endpoint (or a list);
    ``console=True`` for pgbouncer admin consoles (CONSOLE_SPEC)."""
    options = CONSOLE_SPEC if console else ENDPOINT_SPEC
    if list_of:
        return dict(type='list', elements='dict', options=options, default=[])
    return dict(type='dict', options=options, required=required)


class ConnectError(Exception):
    """A connection or query failure, already worded for the operator.

    ``kind``: for a failed connection, one of CONNECT_FAILURES (what went wrong,
    so callers say the right thing: an unreachable host is not a password problem).
    """

    def __init__(self, message, kind=None):
        super().__init__(message)
        self.kind = kind


def host_port(host, port):
    """'host:port', an IPv6 address in brackets ('[fd13::10]:5432', as URLs
    and PostgreSQL's own messages write it: the port otherwise reads as part
    of the address) - how every message names an address and port."""
    host = '%s' % (host,)
    return '[%s]:%s' % (host, port) if ':' in host and not host.startswith('[') else '%s:%s' % (host, port)


def endpoint_label(endpoint):
    """'name (host:port)' or 'host:port' (host_port) - how every message names an endpoint."""
    where = host_port(endpoint.get('host'), endpoint.get('port') or 5432)
    name = endpoint.get('name')
    return '%s (%s)' % (name, where) if name and name != endpoint.get('host') else where


_PASSWORD_RE = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def one_line(text):
    """Collapse a driver message to one line and strip anything password-like."""
    text = ' '.join(str(text).split())
    return _PASSWORD_RE.sub(r'\1***', text)


# Why a connection failed: kind -> (libpq's words, lower case; what to tell the operator).
# Checked in this order: a TLS or authentication failure also mentions the server.
CONNECT_FAILURES = (
    ('tls', ('ssl', 'certificate', 'tls', 'gssapi'),
     'TLS failed (%(cause)s): check fastdowntime_pg_ssl_mode / fastdowntime_pgbouncer_ssl_mode and the CA file'),
    ('authentication', ('password authentication failed', 'no password supplied', 'auth failed',
                        'sasl authentication failed', 'authentication failed', 'no pg_hba.conf entry',
                        'password is required', 'role "'),
     'authentication failed (%(cause)s): check the user and password (vault, .pgpass or PGPASSFILE) '
     'and pg_hba.conf'),
    # After the role's 'role "x" does not exist': the database of that name is missing on that server.
    ('database', ('does not exist',), '%(cause)s: check fastdowntime_db_name'),
    ('timeout', ('timeout expired', 'timed out'),
     'no answer within the connect timeout: the host is down or a firewall drops the port'),
    ('refused', ('connection refused',),
     'connection refused: the host is up but nothing listens on that port - is the server running, on that port?'),
    ('unreachable', ('could not translate host name', 'name or service not known'),
     'unknown host name (%(cause)s): check the address in the inventory'),
    # A blackhole or missing route makes connect() fail with EINVAL or EHOSTUNREACH.
    ('unreachable', ('no route to host', 'network is unreachable', 'host is unreachable', 'invalid argument',
                     'cannot assign requested'),
     'host unreachable (no route to it): check the address in the inventory and that the host is up'),
)

# kind -> what to do, for a host of the inventory (%(label)s) reached with the %(vars)s variables.
CONNECT_ACTIONS = {
    'authentication': 'make %(label)s accept the inventory\'s user and password (%(vars)s variables, vault, '
                      '.pgpass) and check its pg_hba.conf',
    'tls': 'fix the TLS settings for %(label)s (%(vars)s ssl_mode and ca_cert variables) or its server certificate',
    'refused': 'start the server on %(label)s, or fix the port in the inventory (%(vars)s variables)',
    'timeout': 'bring %(label)s up or open its port; check its address in the inventory (%(vars)s variables)',
    'unreachable': 'bring %(label)s up or fix its address in the inventory (%(vars)s variables)',
    'database': 'set fastdowntime_db_name to the deploy\'s database (%(label)s has none of that name)',
}


def connect_action(kind, label, variables='fastdowntime_pg_*'):
    """What to do about a failed connection of ``kind`` to ``label`` (None when unknown)."""
    text = CONNECT_ACTIONS.get(kind)
    return text % {'label': label, 'vars': variables} if text else None


def classify_connect_failure(message):
    """(kind, explanation) for libpq's message about a failed connection;
    kind is one of CONNECT_FAILURES' kinds, or ``other`` (the message itself)."""
    low = str(message).lower()
    for kind, words, text in CONNECT_FAILURES:
        if any(word in low for word in words):
            return kind, text % {'cause': _cause(message)}
    return 'other', one_line(_cause(message) or message)


def _cause(message):
    """libpq's own reason, without its 'connection to server at ... failed:' prefix and hints."""
    text = one_line(message)
    text = re.sub(r'^(connection to server at "[^"]*"(?: \([^)]*\))?, port \d+ failed|could not connect to server):\s*',
                  '', text, flags=re.IGNORECASE)
    text = re.split(r'\s+Is the server running', text)[0]
    return re.sub(r'^(FATAL|ERROR):\s*', '', text).rstrip('. ')


def explain_connect_failure(message):
    """What the operator should do about libpq's message (see classify_connect_failure)."""
    return classify_connect_failure(message)[1]


def dsn_kwargs(endpoint, dbname=None, application_name='fastdowntime'):
    """psycopg2.connect() keyword arguments for an endpoint. The password is
    passed only when given, so libpq falls back to .pgpass / PGPASSFILE."""
    kwargs = dict(
        host=endpoint['host'],
        port=int(endpoint.get('port') or 5432),
        user=endpoint['user'],
        dbname=dbname or endpoint.get('dbname') or 'postgres',
        connect_timeout=int(endpoint.get('connect_timeout') or 5),
        application_name=application_name,
    )
    if endpoint.get('password'):
        kwargs['password'] = endpoint['password']
    if endpoint.get('ssl_mode'):
        kwargs['sslmode'] = endpoint['ssl_mode']
    if endpoint.get('ca_cert'):
        kwargs['sslrootcert'] = endpoint['ca_cert']
    return kwargs


# Commits of the collection's own sessions never wait for a synchronous standby:
# with synchronous_commit = remote_apply a standby whose replay is held (a long
# query, a pause) would hold them without a bound. The replay wait, inside the
# budget, is what waits for the standbys.
LOCAL_COMMITS = '-c synchronous_commit=local'
# Every transaction of the collection's sessions is READ COMMITTED, whatever the deploy user's or
# database's default_transaction_isolation: a hot standby refuses every query of a session whose
# default is serializable ("cannot use serializable mode in a hot standby"), and the collection's
# reads and its one transaction are written for READ COMMITTED. (libpq's options: a backslash
# keeps the space.)
READ_COMMITTED = '-c default_transaction_isolation=read\\ committed'


def connect(endpoint, dbname=None, autocommit=False, async_=False, application_name='fastdowntime',
            local_commits=True, read_committed=True):
    """Open a psycopg2 connection to ``endpoint`` (a dict shaped like ENDPOINT_SPEC).

    ``local_commits``: the session commits with synchronous_commit = local
    (LOCAL_COMMITS); False for a session that reads the settings a client gets.
    ``read_committed``: its transactions are READ COMMITTED (READ_COMMITTED).
    Both False for a pgbouncer admin console, which takes no options.

    ``async_=True`` gives a non-blocking connection (always autocommit) whose
    setup is finished before returning; callers use it to run commands on
    several servers at once under one deadline.
    """
    if not HAS_PSYCOPG2:
        raise ConnectError('psycopg2 is not installed for the Python that runs this task (%s)'
                           % PSYCOPG2_IMPORT_ERROR)
    kwargs = dsn_kwargs(endpoint, dbname=dbname, application_name=application_name)
    options = [option for option, wanted in ((LOCAL_COMMITS, local_commits), (READ_COMMITTED, read_committed))
               if wanted]
    if options:
        kwargs['options'] = ' '.join(options)
    try:
        if async_:
            conn = psycopg2.connect(async_=1, **kwargs)
            wait(conn, timeout=kwargs['connect_timeout'])
        else:
            conn = psycopg2.connect(**kwargs)
            conn.autocommit = autocommit
    except psycopg2.Error as exc:
        kind, explanation = classify_connect_failure(str(exc))
        raise ConnectError('%s: cannot connect as %s to database %s: %s' % (
            endpoint_label(endpoint), endpoint['user'], kwargs['dbname'], explanation), kind=kind)
    except TimeoutError:
        raise ConnectError('%s: cannot connect: no answer within %ss: the host is down or a firewall drops the port'
                           % (endpoint_label(endpoint), kwargs['connect_timeout']), kind='timeout')
    return conn


def wait(conn, timeout=None):
    """Drive a non-blocking psycopg2 connection until its current operation is
    done; raise TimeoutError (leaving the operation in flight) after ``timeout``
    seconds."""
    import select
    import time
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        state = conn.poll()
        if state == psycopg2.extensions.POLL_OK:
            return
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise TimeoutError()
        if state == psycopg2.extensions.POLL_READ:
            select.select([conn.fileno()], [], [], left)
        elif state == psycopg2.extensions.POLL_WRITE:
            select.select([], [conn.fileno()], [], left)
        else:  # pragma: no cover - psycopg2 contract
            raise psycopg2.OperationalError('bad state from poll: %s' % state)


def rows_as_dicts(cursor):
    """All remaining rows of ``cursor`` as dicts keyed by column name."""
    names = [c[0] for c in cursor.description or []]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def query(conn, sql, params=None):
    """Run ``sql`` on a blocking connection and return its rows as dicts."""
    with conn.cursor() as cur:
        cur.execute(sql, params)
        if cur.description is None:
            return []
        return rows_as_dicts(cur)
