# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""pgbouncer's server logins after RESUME: what the PAUSE puts at stake.

A PAUSE closes every server connection of the paused entry (pgbouncer's log:
"closing because: pause mode"); after RESUME pgbouncer logs in again, as each
pool's user, for the clients it serves. A login that worked when those
connections opened can fail now, while the application, on connections logged
in long ago, works: the window would turn a latent login problem into an
outage of that pool's clients. pgbouncer then queues them (a login failed: no
new one for ``server_login_retry``, 15 s by default) and refuses new ones with
"server login has been failing, try again later" (pgbouncer 1.18 objects.c,
``check_fast_fail``). The members of that kind:

- readable in the catalog, refused by the pre-flight before any PAUSE
  (``login_problems``): a role that is NOLOGIN now, a role dropped while
  connected, an expired ``VALID UNTIL``, a role's or database's
  ``CONNECTION LIMIT`` already reached, ``ALLOW_CONNECTIONS false``;
- not readable (the password in pgbouncer's ``auth_file`` against
  PostgreSQL's, ``pg_hba.conf`` rules loaded since): seen only after RESUME,
  as clients waiting in a pool with no server connection
  (``unserved_after_resume``, read with SHOW POOLS for PROBE_SECONDS at most).

Pure decisions, the catalog queries, and the after-window check; the
pre-flight and the outage call them (preflight.decide_server_logins,
outage's verification).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.fastdowntime.postgresql.plugins.module_utils.pgbouncer_console import (
    PROBE_SECONDS, ConsoleError, fan_out)

# The roles pgbouncer logs in as, read on the server the entry points at. ``expires``: VALID UNTIL
# before now + %(margin)s seconds (the window and its client probe must end before it).
LOGIN_ROLES_SQL = """SELECT r.rolname, r.rolcanlogin, r.rolsuper, r.rolconnlimit,
       r.rolvaliduntil::text AS rolvaliduntil,
       COALESCE(r.rolvaliduntil <= now() + make_interval(secs => %(margin)s), false) AS expires,
       (SELECT count(*) FROM pg_stat_activity a
         WHERE a.usesysid = r.oid AND a.backend_type = 'client backend')::int AS connections
  FROM pg_roles r
 WHERE r.rolname = ANY(%(roles)s)"""

LOGIN_DATABASES_SQL = """SELECT d.datname, d.datallowconn, d.datconnlimit,
       (SELECT count(*) FROM pg_stat_activity a
         WHERE a.datid = d.oid AND a.backend_type = 'client backend')::int AS connections
  FROM pg_database d
 WHERE d.datname = ANY(%(databases)s)"""


def _count(row, *names):
    total = 0
    for name in names:
        try:
            total += int(row.get(name) or 0)
        except (TypeError, ValueError):
            pass
    return total


def pools_at_stake(databases_rows, servers_rows, pools_rows, entries, pgbouncer):
    """The pools of ``entries`` (pgbouncer database names) whose server
    connections the PAUSE closes or whose clients need a login after RESUME.

    Rows are normalized SHOW DATABASES / SERVERS / POOLS rows of one pgbouncer
    process (``pgbouncer``: its name, for messages). Returns
    [{'pgbouncer', 'entry', 'user' (the login role), 'database' (on the
    server), 'servers' (connections the PAUSE closes), 'clients' (connected),
    'relogins' (the fewer of the two: what pgbouncer logs in again for)}],
    one per (entry, user) with servers or clients, sorted."""
    target = dict((row.get('name'), row.get('database') or row.get('name')) for row in databases_rows)
    found = {}
    for row in servers_rows:
        if row.get('database') in entries and row.get('user'):
            key = (row['database'], row['user'])
            found.setdefault(key, [0, 0])[0] += 1
    for row in pools_rows:
        if row.get('database') in entries and row.get('user'):
            clients = _count(row, 'cl_active', 'cl_waiting')
            if clients:
                found.setdefault((row['database'], row['user']), [0, 0])[1] += clients
    out = []
    for (entry, user), (servers, clients) in sorted(found.items()):
        out.append({'pgbouncer': pgbouncer, 'entry': entry, 'user': user, 'database': target.get(entry, entry),
                    'servers': servers, 'clients': clients, 'relogins': min(servers, clients)})
    return out


def _where(pools):
    return ', '.join(sorted(set('%s on %s' % (p['entry'], p['pgbouncer']) for p in pools)))


def _over_limit(kind, name, limit, row, closing, relogins, where):
    """[(cause, fix)] when a CONNECTION LIMIT (``kind`` ROLE or DATABASE) is
    passed by the connections open now (``row['connections']``), less the
    ``closing`` the PAUSE closes, plus the ``relogins`` after RESUME."""
    if limit is None or int(limit) < 0:
        return []
    now = int(row.get('connections') or 0)
    after = now - closing + relogins
    if after <= int(limit):
        return []
    return [('%s %s has CONNECTION LIMIT %d and %d connection(s) now: after the PAUSE closes %d (%s), pgbouncer and '
             'the client probe log in again %d time(s) - %d, over the limit'
             % (kind.lower(), name, int(limit), now, closing, where, relogins, after),
             'ALTER %s %s CONNECTION LIMIT %d (or -1), or close some of its sessions' % (kind, name, after))]


def login_problems(pools, role_rows, database_rows, probe_logins=None):
    """What makes pgbouncer's logins after RESUME fail, read in one server's
    catalog before the PAUSE.

    ``pools``: pools_at_stake rows pointing at this server; ``role_rows`` /
    ``database_rows``: LOGIN_ROLES_SQL / LOGIN_DATABASES_SQL rows (dicts);
    ``probe_logins``: {role: logins} the client probe makes here after RESUME
    (one per entry, as that pgbouncer's probe user). A limit counts the
    connections after the PAUSE closed the pools' (``servers``) and pgbouncer
    logged in again (``relogins``); PostgreSQL exempts superusers from both
    limits (InitPostgres). Returns [(cause, fix)]: one line each, empty when
    every login can succeed."""
    probe_logins = probe_logins or {}
    roles = dict((row['rolname'], row) for row in role_rows)
    databases = dict((row['datname'], row) for row in database_rows)
    problems = []
    by_user, by_database = {}, {}
    for pool in pools:
        by_user.setdefault(pool['user'], []).append(pool)
        by_database.setdefault(pool['database'], []).append(pool)
    for user in sorted(by_user):
        at_stake = by_user[user]
        closing = sum(p['servers'] for p in at_stake)
        relogins = sum(p['relogins'] for p in at_stake) + probe_logins.get(user, 0)
        where = _where(at_stake)
        row = roles.get(user)
        if row is None:
            problems.append(('role %s no longer exists, yet pgbouncer holds %d server connection(s) as it (%s): '
                             'the PAUSE closes them and it cannot log in again' % (user, closing, where),
                             'create the role %s again (or point those pgbouncer entries at another user), '
                             'then deploy' % user))
            continue
        if not row.get('rolcanlogin'):
            problems.append(('role %s is NOLOGIN now; pgbouncer holds %d server connection(s) as it (%s), logged in '
                             'before: the PAUSE closes them and it cannot log in again' % (user, closing, where),
                             'ALTER ROLE %s LOGIN, or deploy once no client uses those entries' % user))
        if row.get('expires'):
            problems.append(('the password of role %s is valid until %s (VALID UNTIL): its %d server connection(s) '
                             '(%s) close at the PAUSE and a password login after RESUME fails'
                             % (user, row.get('rolvaliduntil'), closing, where),
                             "ALTER ROLE %s VALID UNTIL 'infinity' (or a later date), then deploy" % user))
        if not row.get('rolsuper'):
            problems += _over_limit('ROLE', user, row.get('rolconnlimit'), row, closing, relogins, where)
    for name in sorted(by_database):
        row = databases.get(name)
        if row is None:
            continue  # dropped: its connections are gone with it (DROP DATABASE refuses while connected)
        at_stake = by_database[name]
        where = _where(at_stake)
        if not row.get('datallowconn'):
            problems.append(('database %s does not allow connections (ALLOW_CONNECTIONS false): pgbouncer\'s server '
                             'connections to it (%s) close at the PAUSE and cannot log in again' % (name, where),
                             'ALTER DATABASE %s ALLOW_CONNECTIONS true, then deploy' % name))
        exempt = set(user for user, role in roles.items() if role.get('rolsuper'))
        closing = sum(p['servers'] for p in at_stake if p['user'] not in exempt)
        relogins = sum(p['relogins'] for p in at_stake if p['user'] not in exempt)
        relogins += sum(n for user, n in probe_logins.items() if user not in exempt)
        problems += _over_limit('DATABASE', name, row.get('datconnlimit'), row, closing, relogins, where)
    return problems


def waiting_without_server(pools_rows, entries, queued_at_resume=()):
    """The pools of ``entries`` with clients to serve and no server connection
    at all (SHOW POOLS sv_active + sv_idle + sv_used + sv_tested = 0; a login
    in flight, sv_login, is not a server yet). Clients to serve: waiting now
    (cl_waiting), or queued at RESUME (``queued_at_resume``: (entry, user)
    pairs). A login that succeeds leaves its server connection in the pool
    (idle until server_idle_timeout), so a pool that had queued clients and has
    no server now could not log in: pgbouncer 1.18 keeps such clients queued,
    from 1.22 it disconnects them with the login's error (server.c
    ``kill_pool_logins``, pgbouncer PR 998). Returns [(entry, user, clients
    waiting now, maxwait seconds)], sorted."""
    queued = set(tuple(pair) for pair in queued_at_resume)
    out = []
    for row in pools_rows:
        if row.get('database') not in entries:
            continue
        waiting = _count(row, 'cl_waiting')
        if (waiting or (row['database'], row.get('user')) in queued) \
                and not _count(row, 'sv_active', 'sv_idle', 'sv_used', 'sv_tested'):
            seconds = _count(row, 'maxwait') + _count(row, 'maxwait_us') / 1e6
            out.append((row['database'], row.get('user'), waiting, seconds))
    return sorted(out)


def queued_pools(pools_rows, entries):
    """(entry, user) of ``entries``' pools with clients queued (cl_waiting) in SHOW POOLS rows."""
    return sorted((row['database'], row.get('user')) for row in pools_rows or ()
                  if row.get('database') in entries and _count(row, 'cl_waiting'))


# After RESUME the client probe waits at most this long (seconds) for the clients queued in the window to be
# served first (wait_queued_served).
QUEUE_SERVED_SECONDS = 0.5


def queued_before(pools_rows, entries, waited_seconds):
    """(entry, user) of ``entries``' pools (SHOW POOLS rows) whose longest-queued
    client (cl_waiting; maxwait + maxwait_us, seconds) has waited
    ``waited_seconds`` or longer: a client queued that long ago and not served
    yet, sorted."""
    return sorted((row['database'], row.get('user')) for row in pools_rows or ()
                  if row.get('database') in entries and _count(row, 'cl_waiting')
                  and _count(row, 'maxwait') + _count(row, 'maxwait_us') / 1e6 >= waited_seconds)


def wait_queued_served(consoles, since, timeout=QUEUE_SERVED_SECONDS, interval=0.005):
    """After RESUME, before the client probe: SHOW POOLS on every console at
    once (fan_out), again every ``interval`` seconds while some deploy entry's
    pool still has a client queued before ``since`` (time.monotonic seconds:
    the last RESUME answered) - for ``timeout`` seconds at most.

    Why: PAUSE closed the pools' server connections, so every queued client
    needs a server login after RESUME, and pgbouncer does that work on one
    thread. The probe's own logins (a client login and a server login per
    entry, each a SCRAM exchange where passwords are SCRAM) would be served
    between theirs: on the lab they made the window's clients wait 45-50 %
    longer (docs/window.md). A healthy pool serves its queue within
    milliseconds, so this costs one or a few round trips after the outage.

    Returns the seconds waited. Never raises: a console that does not answer,
    or a queue still there at the end, is the probe's and
    unserved_after_resume's to report."""
    began = time.monotonic()
    deadline = began + timeout

    def task(console):
        while True:
            sent = time.monotonic()  # pgbouncer measures maxwait after this: a client queued before ``since`` shows
            rows = yield from console.show_steps('POOLS')
            if not queued_before(rows, console.entries, sent - since) or time.monotonic() + interval >= deadline:
                return
            yield interval

    fan_out([(console, task(console)) for console in consoles], deadline=deadline)
    return time.monotonic() - began


def unserved_after_resume(consoles, timeout=PROBE_SECONDS, interval=0.05):
    """After RESUME: SHOW POOLS on every console at once (fan_out), again every
    ``interval`` seconds while some deploy entry's pool has clients to serve -
    waiting now or queued at RESUME (the console's ``pools_at_resume``) - and no
    server connection (waiting_without_server), for ``timeout`` seconds at most.
    A healthy pgbouncer has logged in again within milliseconds of its RESUME,
    so this is one round trip; a pool whose logins fail keeps its clients
    queued for server_login_retry.

    Returns {console label: [(entry, user, waiting, maxwait seconds)]} for the
    pools still so at the end, and {console label: error text} for the consoles
    that did not answer: (unserved, unread)."""
    deadline = time.monotonic() + timeout

    def task(console):
        queued = queued_pools(console.pools_at_resume, console.entries)
        while True:
            rows = yield from console.show_steps('POOLS')
            left = waiting_without_server(rows, console.entries, queued)
            if not left or time.monotonic() + interval >= deadline:
                return left
            yield interval

    outcome = fan_out([(console, task(console)) for console in consoles])
    unserved, unread = {}, {}
    for console, left, error in outcome:
        if error is not None:
            unread[console.label] = str(error) if isinstance(error, ConsoleError) else 'no answer'
        elif left:
            unserved[console.label] = left
    return unserved, unread


def describe_unserved(unserved):
    """One line for the report: the pools whose clients got no server after RESUME."""
    parts = []
    for label in sorted(unserved):
        for entry, user, waiting, seconds in unserved[label]:
            parts.append('%s user %s on %s: %s' % (
                entry, user, label, '%d client(s) waiting %.1f s' % (waiting, seconds) if waiting
                else 'its clients queued at RESUME were disconnected'))
    return ('NO SERVER LOGIN after RESUME: %s, with no server connection - pgbouncer cannot log in as that user: '
            'its log says why ("login failed"); fix the login (the password in pgbouncer\'s auth_file against '
            'PostgreSQL\'s, pg_hba.conf, the role\'s LOGIN, VALID UNTIL or CONNECTION LIMIT), then wait '
            'server_login_retry: pgbouncer logs in again by itself (not RECONNECT: it drops the logins in flight, '
            'which pgbouncer counts as failed)' % '; '.join(parts))
