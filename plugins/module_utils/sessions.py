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

from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import host_port, query

# Rows of pg_stat_activity the drain matches holders against (unix-socket
# clients have client_port -1, background workers NULL).
BACKENDS_SQL = """
SELECT pid, usename, host(client_addr) AS client_addr, client_port, state,
       left(query, 500) AS query,
       EXTRACT(EPOCH FROM (clock_timestamp() - xact_start))::float8 AS xact_age_seconds
  FROM pg_stat_activity
 WHERE client_port IS NOT NULL
"""

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
