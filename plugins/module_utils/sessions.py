# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Primary-side sessions: which pg_stat_activity backends are pgbouncer's own,
which are direct clients (system, fragile, killable, unknown), and the only two
ways the collection ever terminates one.

pgbouncer's own server connections are recognised **by fact**: SHOW SERVERS
gives each server connection's backend pid (``remote_pid``, from the backend's
BackendKeyData), which is ``pg_stat_activity.pid`` on the primary - over TCP
and over a unix socket alike, whatever address the connection comes from.

Nothing here terminates a pgbouncer server connection except
``terminate_backend`` called by the drain's ``terminate`` policy for the one
client transaction that holds the drain; ``terminate_killable`` skips every
pid pgbouncer shows and every connection from a pgbouncer host.

The functions taking rows are pure and unit-tested without a database.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import host_port, query

# Rows of pg_stat_activity the drain matches holders against (unix-socket
# clients have client_port -1, background workers NULL); the columns
# describe_session names too.
BACKENDS_SQL = """
SELECT pid, usename, host(client_addr) AS client_addr, client_port, application_name, state,
       left(query, 500) AS query,
       EXTRACT(EPOCH FROM (clock_timestamp() - xact_start))::float8 AS xact_age_seconds,
       EXTRACT(EPOCH FROM (clock_timestamp() - xact_start))::float8 AS xact_seconds,
       EXTRACT(EPOCH FROM (clock_timestamp() - state_change))::float8 AS state_seconds
  FROM pg_stat_activity
 WHERE client_port IS NOT NULL
"""

# Every client session of a server, as the pre-flight reads it and the outage
# reads it again just before its clock (will_outlast_window, describe_session).
ACTIVITY_SQL = """
SELECT pid, usename, datname, host(client_addr) AS client_addr, application_name, state,
       EXTRACT(EPOCH FROM clock_timestamp() - xact_start)::float8 AS xact_seconds,
       EXTRACT(EPOCH FROM clock_timestamp() - state_change)::float8 AS state_seconds,
       left(query, 200) AS query, backend_xmin IS NOT NULL AS holds_snapshot
  FROM pg_stat_activity
 WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
"""

# A session idle in its transaction longer than this is waiting for its client
# (only the client ends it); a shorter pause between two statements is ordinary.
IDLE_IN_TRANSACTION_SECONDS = 1.0

KILLABLE_SQL = """
SELECT pid, usename, host(client_addr) AS addr
  FROM pg_stat_activity
 WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
   AND usename = ANY(%s) AND datname = %s
"""

GROUPS = ('pgbouncer', 'system', 'fragile', 'killable', 'unknown')


def server_pids(servers_rows):
    """The backend pids (``remote_pid``) of SHOW SERVERS rows, as a set of ints.
    A server connection still logging in has remote_pid 0: it is not a pid."""
    pids = set()
    for row in servers_rows:
        try:
            pid = int(row.get('remote_pid') or 0)
        except (TypeError, ValueError):
            continue
        if pid > 0:
            pids.add(pid)
    return pids


def server_pids_by_server(servers_rows, entry_servers, default=None):
    """{server: set of backend pids}: the SHOW SERVERS rows of one pgbouncer
    process sorted by the database server each connection is to, since a pid
    names a backend only on its own server (the primary's pid 4711 and a
    standby's are two backends). ``entry_servers``: {entry: server} for the
    entries serving a standby (the row's ``database`` column is the entry);
    every other entry's connections are ``default``'s (the primary's). A
    connection still logging in (remote_pid 0) is none."""
    found = {}
    for row in servers_rows:
        pids = server_pids([row])
        if pids:
            found.setdefault(entry_servers.get(row.get('database'), default), set()).update(pids)
    return found


def server_clients(servers_rows, clients_rows):
    """{backend pid: 'addr:port'}: the pgbouncer client each server connection
    is linked to now (SHOW SERVERS ``link`` = SHOW CLIENTS ``ptr``), the address
    the backend itself cannot show (pgbouncer's own, or none over a unix
    socket); a unix-socket client is its socket (``unix``). Server
    connections without a client or a pid are left out."""
    clients = dict((row.get('ptr'), row) for row in clients_rows if row.get('ptr'))
    found = {}
    for row in servers_rows:
        client = clients.get(row.get('link') or None)
        pids = server_pids([row])
        if client and pids:
            addr = client.get('addr') or 'unix'
            found[pids.pop()] = addr if client.get('port') in (None, '') or addr == 'unix' \
                else host_port(addr, client.get('port'))
    return found


def unix_socket_backends(databases_rows, entries):
    """Do any of ``entries`` (SHOW DATABASES ``name``) reach their server over
    a unix socket (``host`` a directory, or none: pgbouncer's default socket)?
    Their server connections then show no client address there
    (pg_stat_activity.client_addr NULL, like any local client's)."""
    return any(not row.get('host') or str(row.get('host')).startswith('/')
               for row in databases_rows if row.get('name') in entries)


def will_outlast_window(row, wait_seconds):
    """Will this session's transaction (a pg_stat_activity row: state,
    xact_seconds, state_seconds) still be open when the window has waited
    ``wait_seconds`` for it? Yes when it has been idle in transaction for over
    IDLE_IN_TRANSACTION_SECONDS (its client sends nothing; only the client ends
    it - a shorter pause between two statements is ordinary traffic) or open
    longer than ``wait_seconds`` already. A session not in a transaction: no."""
    if row.get('xact_seconds') is None:
        return False
    idle = (row.get('state') or '').startswith('idle in transaction') \
        and (row.get('state_seconds') or 0) > IDLE_IN_TRANSACTION_SECONDS
    return idle or row['xact_seconds'] > wait_seconds


def drain_holders(activity_rows, through, wait_seconds):
    """The rows of ``activity_rows`` (ACTIVITY_SQL, one server's) that are a
    pgbouncer server connection (their pid in ``through``: {backend pid: the
    pgbouncer, or entry on a pgbouncer, it belongs to}) in a transaction that
    will_outlast_window: a PAUSE of that entry waits for it."""
    return [row for row in activity_rows
            if through.get(row.get('pid')) is not None and will_outlast_window(row, wait_seconds)]


# The first word of a statement: what it does (SELECT, UPDATE, COPY, WITH ...).
_FIRST_KEYWORD = re.compile(r'^\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*\(*\s*([A-Za-z]+)', re.S)


def query_summary(text):
    """What a session's query is, safe to print: its first keyword and its
    length ('SELECT, 812 characters'), never the text itself. A statement's
    text may carry secrets in its literals (ALTER ROLE ... PASSWORD '...',
    pgp_sym_encrypt(data, 'key'), a token in a WHERE clause) and the lines
    this goes into end up in CI logs, the timeline report and the deploy log.
    The keyword says whether it reads or writes, the length whether it is the
    report someone runs; relation names are left out too, as
    pg_stat_activity's text is cut at track_activity_query_size (and here at
    a few hundred characters), so no parser can tell a name from a literal in
    what is left. The full text is on the server, for whoever may read it."""
    text = text or ''
    if not text.strip():
        return 'no query text'
    match = _FIRST_KEYWORD.match(text)
    keyword = match.group(1).upper() if match else 'statement'
    return '%s, %d characters%s' % (keyword, len(text), ' or more' if len(text) >= 200 else '')


def describe_session(row, through=None, client=None, with_query=False):
    """One session (an ACTIVITY_SQL or BACKENDS_SQL row) in words:
    ``through`` the pgbouncer (or entry) it comes through, ``client`` that
    pgbouncer's client (its address: the backend shows pgbouncer's, or none
    over a unix socket). How long it has been in its state (an active query:
    how long it has run), how long its transaction is open and, ``with_query``,
    what its query is (query_summary: never the text)."""
    state = row.get('state') or 'unknown state'
    if row.get('state_seconds') is not None and (state.startswith('idle in transaction') or state == 'active'):
        state = '%s for %.1f s' % (state, row.get('state_seconds') or 0)
    xact = row.get('xact_seconds', row.get('xact_age_seconds'))  # ACTIVITY_SQL's name, or BACKENDS_SQL's
    return 'pid %s (user %s, application %r, from %s%s, %s, transaction open %s%s)' % (
        row.get('pid'), row.get('usename'), row.get('application_name') or '',
        client or row.get('client_addr') or 'local socket', ' through %s' % through if through else '', state,
        '%.1f s' % xact if xact is not None else 'n/a',
        ', query: %s' % query_summary(row.get('query')) if with_query else '')


def end_session_fix(row, host):
    """How to end one session on ``host`` (a label) now: a running query is
    canceled (pg_cancel_backend: the client gets an error for that query, its
    session stays), a session idle in its transaction is terminated (a cancel
    does nothing there: only its client, or pg_terminate_backend, ends it)."""
    verb = 'pg_terminate_backend' if (row.get('state') or '').startswith('idle in transaction') \
        else 'pg_cancel_backend'
    return 'SELECT %s(%s) on %s' % (verb, row.get('pid'), host)


def classify_connections(rows, pgbouncer_pids, system_users, fragile_users, killable_users):
    """Sort the primary's client sessions (pg_stat_activity rows: pid, usename,
    client_addr...) into GROUPS: ``pgbouncer`` - its pid is a pgbouncer server
    connection (``pgbouncer_pids``, from server_pids over every pgbouncer
    process); then by user: system, fragile, killable; else unknown.
    Returns {group: [rows]}."""
    groups = dict((name, []) for name in GROUPS)
    for row in rows:
        if row.get('pid') in pgbouncer_pids:
            groups['pgbouncer'].append(row)
        elif row.get('usename') in system_users:
            groups['system'].append(row)
        elif row.get('usename') in fragile_users:
            groups['fragile'].append(row)
        elif row.get('usename') in killable_users:
            groups['killable'].append(row)
        else:
            groups['unknown'].append(row)
    return groups


def killable_victims(rows, pgbouncer_pids, pgbouncer_addrs):
    """The KILLABLE_SQL rows that may be terminated: never a pgbouncer server
    connection (its pid is in ``pgbouncer_pids``), never a connection from a
    pgbouncer host's address (``pgbouncer_addrs``)."""
    return [row for row in rows
            if row.get('pid') not in pgbouncer_pids and row.get('addr') not in pgbouncer_addrs]


def terminate_killable(conn, users, db_name, pgbouncer_pids, pgbouncer_addrs):
    """Terminate the direct connections of ``users`` to ``db_name`` on the
    primary (``conn``, autocommit) - see killable_victims; returns them."""
    if not users:
        return []
    victims = killable_victims(query(conn, KILLABLE_SQL, (list(users), db_name)), pgbouncer_pids, pgbouncer_addrs)
    for row in victims:
        terminate_backend(conn, row['pid'])
    return victims


def terminate_backend(conn, pid):
    """pg_terminate_backend(pid) on the primary (``conn``, autocommit)."""
    query(conn, 'SELECT pg_terminate_backend(%s)', (int(pid),))


def backend_activity(primary_conn):
    """BACKENDS_SQL rows on the primary; [] when unknown (no connection, an error)."""
    if primary_conn is None:
        return []
    try:
        return query(primary_conn, BACKENDS_SQL)
    except Exception:
        return []


def same_connection(holder, row):
    """Whether pg_stat_activity ``row`` can be the server end of ``holder``'s
    connection (drain.holders): a pid names a backend only on its own server,
    and a holder's server may be a standby while ``row`` is the primary's -
    so a server connection over a unix socket (pgbouncer shows its local
    address as ``unix``) is a local backend's (no client address), and one
    over TCP has the backend's client port for its local port."""
    if holder.get('server_local_addr') == 'unix':
        return not row.get('client_addr')
    port = holder.get('server_local_port')
    return not port or row.get('client_port') == int(port)


def match_backends(found, activity_rows):
    """Attach to each drain holder (drain.holders) the pg_stat_activity row of
    its server connection: the backend whose pid is the server connection's
    ``remote_pid`` (TCP or unix socket alike) and whose client end is that
    connection's (same_connection: the pid may be another server's); failing
    that (no pid shown), the backend whose client address and port are the
    server connection's local end. ``backend`` stays None when neither
    matches: nothing is terminated for it."""
    by_pid = dict((row.get('pid'), row) for row in activity_rows)
    by_addr = dict(((row.get('client_addr'), row.get('client_port')), row) for row in activity_rows
                   if row.get('client_addr'))
    for holder in found:
        backend = by_pid.get(holder.get('backend_pid')) if holder.get('backend_pid') else None
        if backend is not None and not same_connection(holder, backend):
            backend = None
        if backend is None:
            backend = by_addr.get((holder.get('server_local_addr'), holder.get('server_local_port')))
        holder['backend'] = backend
    return found
