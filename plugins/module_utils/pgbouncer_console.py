# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""pgbouncer admin console: the protocol, parsing SHOW output, pause and resume.

The admin console (database ``pgbouncer``) speaks only the simple query
protocol and knows no BEGIN, so every connection here is autocommit and every
command is a plain ``execute`` without parameters.

pgbouncer 1.18 shows a per-entry ``paused`` flag in SHOW DATABASES but shows a
global PAUSE nowhere, and sets ``paused`` as soon as a PAUSE is *issued*, not
when it is done (the drain, ``drain.py``, confirms from SHOW SERVERS).

pgbouncer issue 715: a RESUME sent while a PAUSE is still waiting leaves that
PAUSE hanging forever. Every waiting PAUSE connection is closed before any
RESUME is sent (``Console.close_pause_connections``). A PAUSE that has returned
leaves its connection idle: it is kept, and the entry's RESUME goes on it, all
entries at once (the admin console takes one command per query, so one
connection would cost a round trip per entry).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import heapq
import re
import select
import threading
import time

from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import (
    ConnectError,
    HAS_PSYCOPG2,
    connect,
    dsn_kwargs,
    endpoint_label,
    one_line,
    psycopg2,
    rows_as_dicts,
)

ADMIN_DB = 'pgbouncer'
# A console takes no server options (postgres.connect's synchronous_commit and isolation).
CONSOLE_SESSION = dict(dbname=ADMIN_DB, local_commits=False, read_committed=False)
# SHOW STATE appeared in pgbouncer 1.19; 1.18 answers "invalid command".
SHOW_STATE_SINCE = (1, 19, 0)
# How long the RESUMEs sent together may take to be answered.
RESUME_TIMEOUT_SECONDS = 10.0
# How long the outage waits, before its clock, for server logins in flight on the
# deploy's pools to finish (wait_logins_settled) before refusing the window.
LOGIN_SETTLE_SECONDS = 5.0
# server_login_retry while the outage runs (lower_login_retry): pgbouncer logs in
# again at once where a PAUSE closed a server login in flight.
LOGIN_RETRY_SETTING = 'server_login_retry'
LOGIN_RETRY_IN_WINDOW = '0'
# Server connection states that still hold a backend for a client.
BUSY_SERVER_STATES = ('active', 'active_cancel', 'being_canceled')


class ConsoleError(Exception):
    """A console failure, already one line naming the pgbouncer and the cause."""


# -- pure parsing ---------------------------------------------------------

def parse_version(text):
    """'PgBouncer 1.18.0' (SHOW VERSION) -> (1, 18, 0); unknown -> (0, 0, 0)."""
    match = re.search(r'(\d+)\.(\d+)(?:\.(\d+))?', text or '')
    if not match:
        return (0, 0, 0)
    return tuple(int(part or 0) for part in match.groups())


def version_from_rows(rows):
    """The version tuple and text from SHOW VERSION rows (one column, one row)."""
    text = ''
    if rows:
        text = str(list(rows[0].values())[0])
    return parse_version(text), text


def has_show_state(version):
    return tuple(version) >= SHOW_STATE_SINCE


def parse_state(rows):
    """SHOW STATE rows (key, value: yes/no) -> {'active': True, 'paused': False, ...}."""
    state = {}
    for row in rows:
        key = row.get('key')
        if key is None:
            continue
        state[str(key)] = str(row.get('value', '')).strip().lower() in ('yes', 'true', '1', 'on')
    return state


def _as_int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def normalize_rows(rows):
    """SHOW output as plain dicts (psycopg2 already converts the numbers; text
    output from other drivers is converted for the columns we reason about)."""
    numeric = ('paused', 'disabled', 'port', 'local_port', 'remote_pid', 'maxwait', 'maxwait_us',
               'cl_active', 'cl_waiting', 'sv_active', 'sv_idle', 'sv_used', 'sv_tested', 'sv_login',
               'pool_size', 'current_connections', 'wait', 'wait_us')
    out = []
    for row in rows:
        clean = dict(row)
        for column in numeric:
            if column in clean and clean[column] not in (None, ''):
                clean[column] = _as_int(clean[column])
        out.append(clean)
    return out


def deploy_entries(databases_rows, label, db_name=None, explicit=None):
    """The entries a deploy touches on one pgbouncer.

    ``explicit`` names entries (SHOW DATABASES ``name``); otherwise every entry
    whose target database (``database``) is ``db_name``; with neither, every
    entry. The admin database is never an entry.
    """
    names = [row['name'] for row in databases_rows if row.get('name') != ADMIN_DB]
    if explicit:
        unknown = [name for name in explicit if name not in names]
        if unknown:
            raise ConsoleError('%s: unknown pgbouncer database(s) %s; SHOW DATABASES lists %s: '
                               'fix the databases list' % (label, ', '.join(unknown), ', '.join(names) or 'none'))
        return list(dict.fromkeys(explicit))
    if db_name:
        chosen = [row['name'] for row in databases_rows
                  if row.get('name') != ADMIN_DB and row.get('database') == db_name]
        if not chosen:
            raise ConsoleError('%s: no pgbouncer database points at database %s (SHOW DATABASES lists %s): '
                               'check fastdowntime_db_name or list the entries explicitly'
                               % (label, db_name, ', '.join(names) or 'none'))
        return chosen
    return names


def entry_flags(databases_rows, entries):
    """{entry: {'paused': bool, 'disabled': bool}} from SHOW DATABASES."""
    by_name = dict((row['name'], row) for row in databases_rows)
    flags = {}
    for entry in entries:
        row = by_name.get(entry, {})
        flags[entry] = {'paused': bool(_as_int(row.get('paused'))),
                        'disabled': bool(_as_int(row.get('disabled')))}
    return flags


def servers_of(servers_rows, entries):
    """SHOW SERVERS rows of the given entries (the ``database`` column is the entry name)."""
    return [row for row in servers_rows if row.get('database') in entries]


def is_drained(databases_rows, servers_rows, entries):
    """Paused and no server connection left, for every entry."""
    flags = entry_flags(databases_rows, entries)
    return all(flag['paused'] for flag in flags.values()) and not servers_of(servers_rows, entries)


def logins_in_flight(pools_rows, entries):
    """[(entry, user, sv_login)] of the entries' pools (SHOW POOLS rows, whose
    ``database`` is the entry name) with a server connection still logging in,
    sorted: what a PAUSE of those entries must not find (LOGIN_SETTLE_SECONDS)."""
    return sorted((row.get('database'), row.get('user'), _as_int(row.get('sv_login'))) for row in pools_rows
                  if row.get('database') in entries and _as_int(row.get('sv_login')) > 0)


def describe_logins_in_flight(label, in_flight, waited_seconds):
    """The one line refusing a window whose pgbouncer ``label`` kept server
    logins in flight (logins_in_flight) for ``waited_seconds``."""
    pools = ', '.join('%s (user %s, sv_login %d)' % item for item in in_flight)
    return ('%s: a server login has been in flight for %.1f s on %s: a PAUSE now would close it and pgbouncer would '
            'then open no server connection for server_login_retry and fail the clients it finds without one: find '
            'why its server logins hang (the database server\'s log, max_connections, the network) and deploy again; '
            'nothing paused, nothing applied' % (label, waited_seconds, pools))


def wait_logins_settled(consoles, timeout=None, interval=0.01):
    """Before any PAUSE: wait until no pool of any console's entries has a
    server login in flight (SHOW POOLS sv_login, every console at once, every
    ``interval`` s), for up to ``timeout`` s (default LOGIN_SETTLE_SECONDS).

    pgbouncer (1.18 to this day: janitor.c per_loop_pause; its PR 420 was not
    merged) closes a server connection still logging in when its entry is
    paused and counts that as a failed login: the pool then opens no server
    connection for server_login_retry (15 s by default), and clients finding
    it without one get "server login has been failing, try again later
    (server_login_retry)" - or, queued, wait those 15 s.

    Returns the seconds waited; ConsoleError (describe_logins_in_flight, the
    first console still waiting) when a login is still in flight at the end.
    """
    timeout = LOGIN_SETTLE_SECONDS if timeout is None else timeout
    began = time.monotonic()
    while True:
        pools = checked(in_parallel(lambda c: c.show('POOLS'), consoles))
        waiting = [(c.label, logins_in_flight(pools[c], c.entries)) for c in consoles]
        waiting = [(label, in_flight) for label, in_flight in waiting if in_flight]
        waited = time.monotonic() - began
        if not waiting:
            return waited
        if waited >= timeout:
            raise ConsoleError(describe_logins_in_flight(waiting[0][0], waiting[0][1], waited))
        time.sleep(interval)


def max_wait_ms(pools_rows, entries):
    """The longest client wait (ms) SHOW POOLS reports over the entries' pools."""
    longest = 0.0
    for row in pools_rows:
        if row.get('database') not in entries:
            continue
        waited = _as_int(row.get('maxwait')) * 1000.0 + _as_int(row.get('maxwait_us')) / 1000.0
        longest = max(longest, waited)
    return round(longest, 1)


# pgbouncer settings (SHOW CONFIG, seconds, 0 = off) that disconnect a client
# queued behind a PAUSE: pgbouncer's janitor (pool_client_maint) applies
# query_timeout and query_wait_timeout to every waiting client, from the time
# its query arrived. Other timeouts (client_idle_timeout, idle_transaction_timeout,
# server_connect_timeout, server_login_retry...) never hit a queued client; they
# are reported as evidence only.
QUEUED_CLIENT_TIMEOUTS = ('query_wait_timeout', 'query_timeout')
REPORTED_TIMEOUTS = QUEUED_CLIENT_TIMEOUTS + ('client_idle_timeout', 'idle_transaction_timeout',
                                              'client_login_timeout', 'server_connect_timeout',
                                              'server_login_retry', 'suspend_timeout')
# The outage ends this long before the first timeout that would disconnect a queued client.
TIMEOUT_MARGIN_SECONDS = 1.0


def parse_config(rows):
    """SHOW CONFIG rows (key, value, ...) -> {key: value as text}."""
    return dict((str(row.get('key')), '' if row.get('value') is None else str(row.get('value'))) for row in rows
                if row.get('key') is not None)


def config_seconds(config, key):
    """A time setting of SHOW CONFIG in seconds (pgbouncer shows seconds, maybe
    with a fraction); 0.0 when off, absent or unreadable."""
    try:
        return max(float(str(config.get(key) or '0').strip()), 0.0)
    except ValueError:
        return 0.0


def login_retry_to_lower(config):
    """The server_login_retry value (SHOW CONFIG text, seconds) the outage
    lowers to LOGIN_RETRY_IN_WINDOW and restores afterwards, or None: already
    0, absent (pgbouncer too old to have it) or not a plain number (never
    written back in a form pgbouncer might read otherwise)."""
    value = str(config.get(LOGIN_RETRY_SETTING) or '').strip()
    if not re.match(r'^[0-9]+(\.[0-9]+)?$', value) or float(value) == 0:
        return None
    return value


def timeouts(config):
    """{setting: seconds} of REPORTED_TIMEOUTS as SHOW CONFIG gives them."""
    return dict((key, config_seconds(config, key)) for key in REPORTED_TIMEOUTS if key in config)


def budget_cap(configs, margin=TIMEOUT_MARGIN_SECONDS):
    """The longest outage no pgbouncer's own timeout cuts short.

    ``configs``: {pgbouncer label: SHOW CONFIG dict}. Returns None when no
    QUEUED_CLIENT_TIMEOUTS is set anywhere, else {'seconds': the first such
    timeout less ``margin`` (never below 0), 'pgbouncer', 'setting', 'timeout_seconds'}.
    """
    first = None
    for label in sorted(configs):
        for key in QUEUED_CLIENT_TIMEOUTS:
            value = config_seconds(configs[label], key)
            if value > 0 and (first is None or value < first['timeout_seconds']):
                first = {'pgbouncer': label, 'setting': key, 'timeout_seconds': value}
    if first is None:
        return None
    first['seconds'] = round(max(first['timeout_seconds'] - margin, 0.0), 3)
    return first


def entry_pool_modes(databases_rows, config, entries, pools_rows=()):
    """{entry: pool mode}: SHOW DATABASES ``pool_mode`` where the entry sets
    one, else the global ``pool_mode`` of SHOW CONFIG (default session). A
    pool of an entry in a mode of its own (SHOW POOLS ``pool_mode``: a user's
    ``pool_mode`` in [users] wins over the entry's) is a key of its own,
    'entry (user U)' (pool_key)."""
    by_name = dict((row.get('name'), row) for row in databases_rows)
    default = (config.get('pool_mode') or 'session').strip()
    modes = dict((entry, (by_name.get(entry, {}).get('pool_mode') or default).strip()) for entry in entries)
    for row in pools_rows or ():
        key = pool_key(row, modes)
        if key not in modes and key is not None:
            modes[key] = str(row.get('pool_mode')).strip()
    return modes


def pool_key(row, modes):
    """A SHOW POOLS row's key in ``modes`` (entry_pool_modes): its entry, or
    'entry (user U)' when the pool's own mode is another; None for a pool of
    no entry of ``modes``."""
    entry = row.get('database')
    if entry not in modes:
        return None
    mode = str(row.get('pool_mode') or '').strip()
    return '%s (user %s)' % (entry, row.get('user')) if mode and mode != modes[entry] else entry


def clients_per_entry(pools_rows, entries, modes=None):
    """{entry: connected clients (cl_active + cl_waiting, every user)} from SHOW POOLS;
    with ``modes`` (entry_pool_modes), a pool in a mode of its own counts under its own key."""
    counts = dict((key, 0) for key in (modes or entries))
    for row in pools_rows:
        key = pool_key(row, modes) if modes else row.get('database')
        if key in counts:
            counts[key] += _as_int(row.get('cl_active')) + _as_int(row.get('cl_waiting'))
    return counts


def xact_wait_seconds(stats_rows, entries):
    """How long a PAUSE of the entries now is expected to wait for the
    transactions in flight, in seconds, from SHOW STATS (pgbouncer's averages
    over its last stats_period): a transaction's length (``avg_xact_time``,
    microseconds) times the chance one is in flight (Little's law: the
    transactions in flight on average are ``avg_xact_count`` per second x
    that length; at most 1). The largest among ``entries``; 0.0 when none ran
    one. An idle entry's occasional probe costs nothing; a busy one's drain
    waits about one transaction."""
    wanted = set(entries)
    waits = []
    for row in stats_rows:
        if row.get('database') in wanted:
            length = _as_int(row.get('avg_xact_time')) / 1e6
            waits.append(length * min(1.0, _as_int(row.get('avg_xact_count')) * length))
    return max(waits or [0.0])


def reuses_port(config):
    """so_reuseport = 1: several pgbouncer processes may listen on this port,
    each TCP connection (console, PAUSE, client) landing on one at random."""
    return str(config.get('so_reuseport') or '0').strip().lower() in ('1', 'on', 'yes', 'true')


def _same_dir(shown, declared):
    """None when pgbouncer shows no unix_socket_dir, else whether they name one directory."""
    if not shown:
        return None
    return shown.rstrip('/') == str(declared).rstrip('/')


# -- one thread, every pgbouncer at once ----------------------------------------

class Query:
    """One admin console command sent on an idle non-blocking (async)
    connection, its answer read later by fan_out.

    ``conn``: a psycopg2 async connection with nothing in flight; ``sql``: one
    console command; ``label``: the pgbouncer, for the error; ``timeout``:
    seconds from now the answer may take (None: as long as the fan-out runs).
    Once ``settled``: ``rows`` (SHOW: normalized dicts) or ``status`` (a
    command's tag, e.g. 'RESUME'), or ``error`` - a ConsoleError already one
    line naming the pgbouncer, the command and the cause (a lost connection
    says so in libpq's words: connection_lost), and ``reason``, the same
    without the pgbouncer; ``answered_at`` and ``answered_cpu``: the moment it
    settled (time.monotonic and time.process_time seconds). A SHOW's rows are
    converted on first use, not as the answer arrives: inside the window the
    other pgbouncers' answers come first (16 SHOW POOLS converted between
    the RESUME answers were a third of the controller's CPU in the window)."""

    def __init__(self, conn, sql, label, timeout=None):
        self.conn, self.sql, self.label = conn, sql, label
        self.status = self.error = self.reason = None
        self._rows = None
        self._has_rows = False
        self.answered_at = self.answered_cpu = None
        self.settled = False
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.timeout = timeout
        self.cursor = None  # psycopg2 forgets an async query whose cursor is garbage-collected
        self.fd = None      # the connection's socket while fan_out waits on it
        try:
            self.cursor = conn.cursor()
            self.cursor.execute(sql)
        except psycopg2.Error as exc:
            self._fail(exc)

    def poll(self):
        """Read what has arrived: the poll state still awaited (psycopg2's
        POLL_READ or POLL_WRITE), or None once settled."""
        if self.settled:
            return None
        try:
            state = self.conn.poll()
        except psycopg2.Error as exc:
            self._fail(exc)
            return None
        if state != psycopg2.extensions.POLL_OK:
            return state
        if self.cursor.description is None:
            self.status = self.cursor.statusmessage
        else:
            self._has_rows = True
        self._answered()
        return None

    @property
    def rows(self):
        """A SHOW's rows (normalized dicts), converted now if not yet; None for a command or a failure."""
        if self._has_rows and self._rows is None:
            self._rows = normalize_rows(rows_as_dicts(self.cursor))
        return self._rows

    def _answered(self):
        self.settled = True
        self.answered_at = time.monotonic()
        self.answered_cpu = time.process_time()

    def expire(self):
        """Past its timeout: settled with that error (the command stays in flight)."""
        self._settle_with('%s: no answer within %.0f s' % (self.sql, self.timeout))

    def result(self):
        """rows or status; raises the ConsoleError when it failed."""
        if self.error is not None:
            raise self.error
        return self.rows if self._has_rows else self.status

    def _fail(self, exc):
        self._settle_with('%s failed: %s' % (self.sql, one_line(exc)))

    def _settle_with(self, reason):
        self.reason = reason
        self.error = ConsoleError('%s: %s' % (self.label, reason))
        self._answered()


class FanOutTimeout(Exception):
    """fan_out's error for a task still running at its deadline (it was closed)."""


def fan_out(tasks, deadline=None, fail_fast=False, tick=None, tick_seconds=0.05):
    """Run every task at once on the calling thread, over non-blocking connections.

    ``tasks``: [(key, generator)]. A task is a generator that sends its
    commands as Query objects and yields them (a list): it is resumed once
    each of them is settled (answered, failed or past its timeout); it may
    yield a number instead (seconds to wait: a poll interval). Its return
    value is its result, an exception it raises its error. Blocking work
    inside a task (a reconnection, a rare fallback) holds every task up for
    that long, and nothing else.

    ``deadline``: monotonic seconds; the tasks still running then are closed
    and get FanOutTimeout. ``fail_fast``: the first error closes every other
    task and is raised. ``tick(running keys)`` runs at least every
    ``tick_seconds`` while tasks run (it may raise: every task is closed).

    Returns [(key, result, error)] in the order of ``tasks``, like
    in_parallel. Waits with poll(2) on the connections awaited, reading only
    those that are ready: the cost per answer does not grow with the number of
    pgbouncers.
    """
    tasks = list(tasks)
    outcome = dict((key, (None, None)) for key, dummy in tasks)
    generators = dict(tasks)
    waiting = {}        # key -> queries not settled yet
    sleeping = []       # heap of (wake time, order, key)
    timers = []         # heap of (deadline, order, query, key)
    by_fd = {}          # fd -> (query, key)
    poller = select.poll()
    order = [0]
    ready = [key for key, dummy in tasks]  # tasks to advance now

    def forget(query):
        fd = getattr(query, 'fd', None)
        if fd is not None and by_fd.get(fd, (None,))[0] is query:
            poller.unregister(fd)
            del by_fd[fd]

    def watch(query, key):
        """Poll a query once; register its fd for what it waits on. True when settled."""
        state = query.poll()
        if state is None:
            forget(query)
            return True
        events = select.POLLIN if state == psycopg2.extensions.POLL_READ else select.POLLOUT
        fd = query.fd = query.conn.fileno()
        if fd in by_fd:
            poller.modify(fd, events)
        else:
            poller.register(fd, events)
            if query.deadline is not None:
                order[0] += 1
                heapq.heappush(timers, (query.deadline, order[0], query, key))
        by_fd[fd] = (query, key)
        return False

    def settle(key):
        if all(query.settled for query in waiting.get(key, ())):
            waiting.pop(key, None)
            ready.append(key)

    def advance(key):
        try:
            wanted = next(generators[key])
        except StopIteration as stop:
            outcome[key] = (stop.value, None)
            return
        except Exception as exc:  # reported per task, never lost
            outcome[key] = (None, exc)
            if fail_fast:
                raise
            return
        if isinstance(wanted, (int, float)):
            order[0] += 1
            heapq.heappush(sleeping, (time.monotonic() + wanted, order[0], key))
            return
        waiting[key] = list(wanted)
        for query in waiting[key]:
            if not query.settled:
                watch(query, key)
        settle(key)

    next_tick = time.monotonic() + tick_seconds
    try:
        while ready or waiting or sleeping:
            while ready:
                advance(ready.pop(0))
            if not (waiting or sleeping):
                break
            now = time.monotonic()
            if tick is not None and now >= next_tick:
                asleep = set(k for dummy, dummy, k in sleeping)
                tick([key for key, dummy in tasks if key in waiting or key in asleep])
                next_tick = now + tick_seconds
            if deadline is not None and now >= deadline:
                break
            while sleeping and sleeping[0][0] <= now:
                ready.append(heapq.heappop(sleeping)[2])
            while timers and (timers[0][2].settled or timers[0][0] <= now):
                dummy, dummy, query, key = heapq.heappop(timers)
                if not query.settled:
                    query.expire()
                    forget(query)
                    settle(key)
            if ready:
                continue
            wake = [deadline] if deadline is not None else []
            wake += [sleeping[0][0]] if sleeping else []
            wake += [timers[0][0]] if timers else []
            wake += [next_tick] if tick is not None else []
            left = max(0.0, min(wake) - now) if wake else None
            for fd, dummy in poller.poll(None if left is None else int(left * 1000) + 1):
                query, key = by_fd.get(fd, (None, None))
                if query is not None and watch(query, key):
                    settle(key)
    finally:
        for key in list(waiting) + [k for dummy, dummy, k in sleeping]:
            generators[key].close()
            if outcome[key] == (None, None):
                outcome[key] = (None, FanOutTimeout(key))
    return [(key, outcome[key][0], outcome[key][1]) for key, dummy in tasks]


def run_steps(steps):
    """A fan_out task run by itself (one console): its result, or its error raised."""
    dummy, result, error = fan_out([(None, steps)])[0]
    if error is not None:
        raise error
    return result


# -- the console ----------------------------------------------------------

def quote_entry(name):
    """An entry name as the admin console's parser takes it (double-quoted)."""
    return '"%s"' % name.replace('"', '""')


class Console:
    """One pgbouncer admin console and the deploy's entries on it.

    ``endpoint`` is shaped like ENDPOINT_SPEC (its dbname is ignored: the
    admin database is always ``pgbouncer``). ``open()`` connects, checks the
    user is an admin and resolves the entries, so that bad input fails
    before any pool is touched.
    """

    def __init__(self, endpoint, db_name=None, databases=None):
        self.endpoint = dict(endpoint)
        self.label = endpoint_label(endpoint)
        self.db_name = db_name
        self.explicit = list(databases or [])
        self.conn = None
        self.entries = []
        self.version = (0, 0, 0)
        self.version_text = ''
        self.config = {}
        # Entries this object issued PAUSE for; pause connections still open.
        self.paused_by_us = set()
        self.pause_conns = {}
        self.pause_queries = {}   # entry -> its PAUSE (a Query) while the drain awaits it
        # Entries whose PAUSE returned: their idle connections, for the RESUME.
        self.resume_conns = {}
        # An async admin connection of its own for the SHOW POOLS sent with the RESUMEs (open_pools_connection).
        self.pools_conn = None
        # One idle async admin connection kept after the RESUMEs, for resume_verify (verify_steps);
        # the others the RESUMEs used, closed with the console.
        self.verify_conn = None
        self.spent_conns = []
        # SHOW POOLS read with the RESUMEs: its Query until its rows are first used (pools_at_resume).
        self._pools_query = None
        self._pools_at_resume = None
        # server_login_retry as it was before lower_login_retry, until restored.
        self.login_retry_lowered_from = None

    # -- plumbing --------------------------------------------------------
    def open(self):
        if self.conn is not None:
            return self
        try:
            self.conn = connect(self.endpoint, autocommit=True, application_name='fastdowntime-pgbouncer',
                                **CONSOLE_SESSION)
        except ConnectError as exc:
            message = str(exc)
            if 'not allowed' in message:
                message += ' (the user must be listed in admin_users of pgbouncer.ini)'
            error = ConsoleError(message)
            error.kind = exc.kind  # unreachable, refused, ... (postgres.CONNECT_FAILURES)
            raise error
        self.version, self.version_text = version_from_rows(self.show('VERSION'))
        self.check_admin()
        self.entries = deploy_entries(self.show('DATABASES'), self.label, self.db_name, self.explicit)
        self.check_process()
        return self

    def check_process(self):
        """A console declared for one pgbouncer process (endpoint ``unix_socket_dir``)
        must reach that process: its SHOW CONFIG unix_socket_dir is the one declared."""
        declared = self.endpoint.get('unix_socket_dir')
        if declared and _same_dir(self.config.get('unix_socket_dir'), declared) is False:
            raise ConsoleError('%s: this console reaches the pgbouncer process whose unix_socket_dir is %s, not %s: '
                               'fix fastdowntime_pgbouncer_consoles'
                               % (self.label, self.config.get('unix_socket_dir'), declared))

    def reopen(self):
        """Drop the admin connection (and waiting PAUSEs) and open it again."""
        entries = list(self.entries)
        self.close()
        self.open()
        self.entries = entries or self.entries
        return self

    def close(self):
        self.close_pause_connections()
        self._close_resume_connections()
        if self.login_retry_lowered_from is not None:
            try:  # an error path after lower_login_retry: never leave the setting lowered if it can be helped
                self.restore_login_retry()
            except ConsoleError:
                pass
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
            self.conn = None

    def _run(self, sql, conn=None):
        conn = conn or self.conn
        if conn is None:
            raise ConsoleError('%s: console not open' % self.label)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                if cur.description is None:
                    return cur.statusmessage
                names = [c[0] for c in cur.description]
                return [dict(zip(names, row)) for row in cur.fetchall()]
        except psycopg2.Error as exc:
            raise ConsoleError('%s: %s failed: %s' % (self.label, sql, one_line(exc)))

    def show(self, what):
        return normalize_rows(self._run('SHOW %s' % what))

    def command(self, verb, entry=None):
        sql = verb if entry is None else '%s %s' % (verb, quote_entry(entry))
        return self._run(sql)

    def check_admin(self):
        """Stats users may run SHOW but not PAUSE: refuse them now, not mid-outage.
        Keeps SHOW CONFIG as ``self.config`` (key -> value text)."""
        config = self.config = parse_config(self.show('CONFIG'))
        admins = [name.strip() for name in str(config.get('admin_users') or '').split(',') if name.strip()]
        user = self.endpoint.get('user')
        if user != ADMIN_DB and user not in admins:
            raise ConsoleError('%s: user %s is not a pgbouncer admin (admin_users = %s): '
                               'use an admin user to pause and resume'
                               % (self.label, user, ', '.join(admins) or 'empty'))

    # -- server_login_retry around the window -----------------------------
    def lower_login_retry(self):
        """SET server_login_retry = 0 on this pgbouncer process, before the
        PAUSE; the value it had is kept (``login_retry_lowered_from``) for
        restore_login_retry. Why: see lower_login_retry (module function).
        Returns that value, or None when there was nothing to lower
        (login_retry_to_lower). ConsoleError when pgbouncer refuses the SET."""
        value = login_retry_to_lower(self.config)
        if value is None or self.login_retry_lowered_from is not None:
            return None
        self._run('SET %s = %s' % (LOGIN_RETRY_SETTING, LOGIN_RETRY_IN_WINDOW))
        self.login_retry_lowered_from = value
        return value

    def restore_login_retry(self):
        """SET server_login_retry back to the value lower_login_retry found
        (on the console's own connection, reopened if it was lost). Returns that
        value, or None when nothing was lowered; ConsoleError naming this
        pgbouncer, the setting and the command to run by hand."""
        value = self.login_retry_lowered_from
        if value is None:
            return None
        sql = 'SET %s = %s' % (LOGIN_RETRY_SETTING, value)
        try:
            if self.conn is None or self.conn.closed:
                self.conn = connect(self.endpoint, autocommit=True, application_name='fastdowntime-pgbouncer',
                                    **CONSOLE_SESSION)
            self._run(sql)
        except (ConsoleError, ConnectError) as exc:
            raise ConsoleError('%s: %s left at %s (%s): run "%s" on its console (or RELOAD it)'
                               % (self.label, LOGIN_RETRY_SETTING, LOGIN_RETRY_IN_WINDOW, one_line(exc), sql))
        self.login_retry_lowered_from = None
        return value

    # -- observations ----------------------------------------------------
    def flags(self, entries=None):
        return entry_flags(self.show('DATABASES'), entries or self.entries)

    def drained(self, entries=None):
        """drained_steps() run by itself: True when every entry is drained."""
        return run_steps(self.drained_steps(entries))

    def drained_steps(self, entries=None):
        """A fan_out task step: SHOW DATABASES and SHOW SERVERS sent at once on
        two idle non-blocking admin connections (PAUSE connections whose PAUSE
        returned, the pools connection) - one round trip for both; in turn when
        the console has one such connection; on the console's own (blocking)
        connection when it has none. Returns is_drained(); ConsoleError when
        either fails or gets no answer within RESUME_TIMEOUT_SECONDS."""
        entries = entries or self.entries
        idle = self._idle_connections()
        if not idle:
            return is_drained(self.show('DATABASES'), self.show('SERVERS'), entries)
        servers = Query(idle[0], 'SHOW SERVERS', self.label, RESUME_TIMEOUT_SECONDS)
        if len(idle) > 1:
            databases = Query(idle[1], 'SHOW DATABASES', self.label, RESUME_TIMEOUT_SECONDS)
            yield [servers, databases]
        else:
            yield [servers]
            databases = Query(idle[0], 'SHOW DATABASES', self.label, RESUME_TIMEOUT_SECONDS)
            yield [databases]
        return is_drained(databases.result(), servers.result(), entries)

    def show_steps(self, what):
        """A fan_out task step: SHOW ``what`` on the idle non-blocking
        connection the RESUMEs left (``verify_conn``), else on the console's
        own (blocking). Returns the normalized rows; ConsoleError when it fails
        or gets no answer within RESUME_TIMEOUT_SECONDS."""
        conn = self.verify_conn if self.verify_conn is not None and _answered(self.verify_conn) else None
        if conn is None:
            return self.show(what)
        query = Query(conn, 'SHOW %s' % what, self.label, RESUME_TIMEOUT_SECONDS)
        yield [query]
        return query.result()

    def _idle_connections(self):
        """The non-blocking admin connections with nothing in flight, in a fixed
        order: PAUSE connections whose PAUSE returned (by entry), RESUME
        connections whose RESUME returned, then the pools connection."""
        conns = [conn for dummy, conn in sorted(self.pause_conns.items())]
        conns += [conn for dummy, conn in sorted(self.resume_conns.items())]
        conns += [self.pools_conn] if self.pools_conn is not None else []
        return [conn for conn in conns if _answered(conn)]

    def state(self):
        """SHOW STATE as a dict where the version has it, else None."""
        if not has_show_state(self.version):
            return None
        try:
            return parse_state(self.show('STATE'))
        except ConsoleError:
            return None

    def info(self):
        return {
            'version': self.version_text,
            'state': self.state(),
            'entries': list(self.entries),
            'databases': self.show('DATABASES'),
            'pools': self.show('POOLS'),
            'clients': self.show('CLIENTS'),
            'servers': self.show('SERVERS'),
        }

    # -- PAUSE without blocking (for the drain) ---------------------------
    def open_pause_connections(self, entries):
        """One non-blocking admin connection per entry, opened before any PAUSE."""
        for entry in entries:
            if entry in self.pause_conns:
                continue
            try:
                self.pause_conns[entry] = connect(self.endpoint, async_=True, application_name='fastdowntime-pause',
                                                  **CONSOLE_SESSION)
            except ConnectError as exc:
                raise ConsoleError(str(exc))

    def send_pause(self, entry):
        """PAUSE the entry on its PAUSE connection, not waiting: the Query is
        ``pause_queries[entry]`` (the drain awaits it with fan_out)."""
        self.pause_queries[entry] = Query(self.pause_conns[entry], 'PAUSE %s' % quote_entry(entry), self.label)
        # pgbouncer marks the entry paused on receipt: from now on it is ours to resume.
        self.paused_by_us.add(entry)

    def close_pause_connections(self):
        """Close every PAUSE still waiting (pgbouncer issue 715) - before any
        RESUME. A connection whose PAUSE has returned is idle: it is kept in
        ``resume_conns`` for that entry's RESUME."""
        for entry, conn in self.pause_conns.items():
            if _answered(conn) and entry not in self.resume_conns:
                self.resume_conns[entry] = conn
                continue
            try:
                conn.close()
            except Exception:
                pass
        self.pause_conns = {}
        self.pause_queries = {}

    def _close_resume_connections(self):
        self._read_pools_at_resume()  # before its connection closes
        conns = list(self.resume_conns.values()) + self.spent_conns
        conns += [conn for conn in (self.pools_conn, self.verify_conn) if conn is not None]
        self.pools_conn = self.verify_conn = None
        self.spent_conns = []
        for conn in conns:
            try:
                conn.close()
            except Exception:
                pass
        self.resume_conns = {}

    def open_pools_connection(self):
        """One more non-blocking admin connection (before the outage's clock):
        resume() sends SHOW POOLS on it together with the RESUMEs, so the
        clients' longest wait costs no round trip of its own; the drain's
        confirmation and resume_verify use it too, when idle."""
        if self.pools_conn is None:
            try:
                self.pools_conn = connect(self.endpoint, async_=True, application_name='fastdowntime-pools',
                                          **CONSOLE_SESSION)
            except ConnectError as exc:
                raise ConsoleError(str(exc))

    # -- resume ----------------------------------------------------------
    def resume(self, entries=None, verify=True):
        """resume_steps() run by itself (blocking), with its 'maxwait_ms': see there."""
        return self.with_maxwait(run_steps(self.resume_steps(entries, verify)))

    def resume_steps(self, entries=None, verify=True):
        """A fan_out task: close waiting PAUSEs, RESUME the entries this console
        paused (all at once: each on the connection its PAUSE used, idle once
        that PAUSE returned; one on the console's own connection where there is
        none), then (``verify``) verify_steps.

        The longest client wait (SHOW POOLS maxwait) is read with the RESUMEs:
        sent just before them on the pools connection (open_pools_connection),
        so pgbouncer reads it while the clients still queue and no round trip is
        added; without that connection it is read before them. A RESUME
        answered "is not paused" is no failure (the entry is resumed) but it is
        news: someone else resumed an entry this console paused before this
        RESUME - it is named in ``not_paused``. Round trips: the RESUMEs together (with
        SHOW POOLS beside them, or one before them), and with ``verify`` SHOW
        DATABASES (more only when it finds something left to do).

        Returns {'host', 'entries', 'resumed', 'not_paused' (the entries of
        ``resumed`` whose RESUME was answered "is not paused"), 'enabled',
        'answered_at' and 'answered_cpu' (time.monotonic and time.process_time
        seconds when the last RESUME was answered), 'duration_ms'}; ConsoleError naming this
        pgbouncer and every entry that failed (RESUME_TIMEOUT_SECONDS without an
        answer is a failure). The longest client wait is read from the SHOW
        POOLS answer afterwards (maxwait_at_resume, with_maxwait), once every
        pgbouncer's RESUME is answered."""
        began = time.monotonic()
        entries = entries or self.entries
        self.close_pause_connections()
        conn, self.pools_conn = self.pools_conn, None
        pools = None if conn is None else Query(conn, 'SHOW POOLS', self.label, RESUME_TIMEOUT_SECONDS)
        if pools is not None and pools.error is not None:
            conn.close()
            pools = None
        self._pools_query = None
        self._pools_at_resume = self.show('POOLS') if pools is None else None
        resumed = [entry for entry in entries if entry in self.paused_by_us]
        sent = {}
        for entry in resumed:
            conn = self.resume_conns.pop(entry, None)
            if conn is not None:
                sent[entry] = Query(conn, 'RESUME %s' % quote_entry(entry), self.label, RESUME_TIMEOUT_SECONDS)
        yield [query for query in [pools] + list(sent.values()) if query is not None]
        answers = [(query.answered_at, query.answered_cpu) for query in sent.values()]
        answered = max(answers) if answers else (time.monotonic(), time.process_time())
        if pools is not None:
            self._pools_query = pools
            self._keep_idle(pools.conn, pools)
        errors, not_paused = [], []
        for entry, query in sent.items():
            if query.error is not None:
                if is_not_paused(query.reason):
                    not_paused.append(entry)
                else:
                    errors.append(query.reason)
            self._keep_idle(query.conn, query)
        for entry in resumed:
            if entry not in sent and self._resume_entry(entry):
                not_paused.append(entry)
        if errors:
            raise ConsoleError('%s: %s' % (self.label, '; '.join(errors)))
        self.paused_by_us.difference_update(resumed)
        done = {'host': self.label, 'entries': list(entries), 'resumed': resumed, 'enabled': [],
                'not_paused': sorted(not_paused), 'answered_at': answered[0], 'answered_cpu': answered[1]}
        if verify:
            self._read_pools_at_resume()  # before verify_steps uses (and may lose) its connection
            fixed = yield from self.verify_steps(entries)
            done.update(resumed=resumed + fixed['resumed'], enabled=fixed['enabled'])
        done['duration_ms'] = round((time.monotonic() - began) * 1000, 1)
        return done

    @property
    def pools_at_resume(self):
        """SHOW POOLS rows read with the RESUMEs (the clients queued then), or
        None (no answer, no resume yet); converted on first use."""
        self._read_pools_at_resume()
        return self._pools_at_resume

    def _read_pools_at_resume(self):
        """Convert the SHOW POOLS answer read with the RESUMEs, once: its rows
        live in the connection's cursor, so this must happen before that
        connection is closed or used again."""
        if self._pools_query is not None:
            query, self._pools_query = self._pools_query, None
            try:
                self._pools_at_resume = query.rows if query.error is None else None
            except psycopg2.Error:
                # psycopg2 will not read a cursor whose connection it saw lost since (a pgbouncer
                # restarted): the wait is then not measured, as when SHOW POOLS got no answer.
                self._pools_at_resume = None

    def maxwait_at_resume(self, entries=None):
        """The longest client wait (ms) over the entries' pools at the RESUMEs
        (SHOW POOLS maxwait), None when SHOW POOLS got no answer."""
        rows = self.pools_at_resume
        return None if rows is None else max_wait_ms(rows, entries or self.entries)

    def with_maxwait(self, done):
        """A resume_steps result with its 'maxwait_ms' (maxwait_at_resume)."""
        done['maxwait_ms'] = self.maxwait_at_resume(done.get('entries'))
        return done

    def _keep_idle(self, conn, query):
        """After a Query on ``conn`` settled: keep one idle connection (answered)
        for verify_steps as ``verify_conn``; the others are closed with the
        console (close()), not now - a close is a message to pgbouncer and wakes
        its process, inside the window, 0.2 ms each with 64 pgbouncers."""
        if self.verify_conn is None and query.error is None and _answered(conn):
            self.verify_conn = conn
        else:
            self.spent_conns.append(conn)

    def verify_resumed(self, entries=None):
        """verify_steps() run by itself (blocking): see there."""
        return run_steps(self.verify_steps(entries))

    def verify_steps(self, entries=None):
        """A fan_out task: SHOW DATABASES, every entry neither paused nor
        disabled. An entry found paused or disabled (someone's PAUSE or
        DISABLE, a RESUME that did not land) is resumed/enabled and read again;
        still so -> ConsoleError. On the idle connection resume_steps kept
        (``verify_conn``), non-blocking; on the console's own connection when
        there is none. Returns {'resumed': [entries], 'enabled': [entries]}:
        what it had to do."""
        entries = entries or self.entries
        conn = self.verify_conn if self.verify_conn is not None and _answered(self.verify_conn) else None

        def command(sql):
            if conn is None:
                return self._run(sql)
            query = Query(conn, sql, self.label, RESUME_TIMEOUT_SECONDS)
            yield [query]
            return query.result()

        def resume_entry(entry):
            try:
                yield from command('RESUME %s' % quote_entry(entry))
            except ConsoleError as exc:
                # Someone resumed it between our look and our RESUME: that is the goal.
                if not is_not_paused(str(exc)):
                    raise

        resumed, enabled = [], []
        after = entry_flags((yield from command('SHOW DATABASES')), entries)
        if any(after[entry]['paused'] or after[entry]['disabled'] for entry in entries):
            for entry in entries:
                if after[entry]['paused']:
                    yield from resume_entry(entry)
                    resumed.append(entry)
                if after[entry]['disabled']:
                    yield from command('ENABLE %s' % quote_entry(entry))
                    enabled.append(entry)
            after = entry_flags((yield from command('SHOW DATABASES')), entries)
        stuck = [entry for entry in entries if after[entry]['paused'] or after[entry]['disabled']]
        if stuck:
            raise ConsoleError('%s: %s still paused or disabled after RESUME/ENABLE: check the pgbouncer log'
                               % (self.label, ', '.join(stuck)))
        self.paused_by_us.difference_update(entries)
        return {'resumed': resumed, 'enabled': enabled}

    def resume_reconnecting(self, entries=None, verify=True):
        """resume_reconnecting_steps() run by itself (blocking), with its 'maxwait_ms'."""
        return self.with_maxwait(run_steps(self.resume_reconnecting_steps(entries, verify)))

    def resume_reconnecting_steps(self, entries=None, verify=True):
        """resume_steps(), reconnecting once when the connection to pgbouncer was
        lost (connection_lost): a pgbouncer restarted mid-window (or a dropped
        link) is reconnected and checked - a new process has nothing paused -
        not reported as failed. The RESUMEs travel on the PAUSE connections, so
        the console's own connection may look open although the process is gone.
        The reconnection blocks (a rare path)."""
        return (yield from self._reconnecting(lambda: self.resume_steps(entries, verify=verify)))

    def verify_reconnecting_steps(self, entries=None):
        """verify_steps(), reconnecting once when the connection was lost."""
        return (yield from self._reconnecting(lambda: self.verify_steps(entries)))

    def _reconnecting(self, steps):
        if self.conn is None or self.conn.closed:
            self.reopen()
        try:
            return (yield from steps())
        except ConsoleError as exc:
            if not (self.conn.closed or connection_lost(str(exc))):
                raise
            self.reopen()
            return dict((yield from steps()), reconnected=True)

    def _resume_entry(self, entry):
        """RESUME one entry on the console's own connection; True when pgbouncer
        answered that it "is not paused" (the goal, reached by someone else)."""
        try:
            self.command('RESUME', entry)
        except ConsoleError as exc:
            if not is_not_paused(str(exc)):
                raise
            return True
        return False


def is_not_paused(error_text):
    """True when a RESUME's error is pgbouncer's "database X is not paused":
    the entry is resumed already (by someone else)."""
    return 'is not paused' in (error_text or '')


# What libpq and pgbouncer say when the connection itself is gone (the process
# restarted or stopped, the link dropped) - not an answer from a live pgbouncer.
CONNECTION_LOST = ('server closed the connection unexpectedly', 'connection already closed',
                   'no connection to the server', 'could not receive data from server',
                   'could not send data to server', 'terminating connection', 'SSL SYSCALL error: EOF')


def connection_lost(error_text):
    """True when ``error_text`` (one console error, possibly several joined)
    says a connection to pgbouncer was lost, not that pgbouncer refused."""
    return any(marker in (error_text or '') for marker in CONNECTION_LOST)


def _answered(conn):
    """True when the async ``conn`` has nothing in flight (its PAUSE returned)."""
    try:
        return not conn.closed and conn.poll() == psycopg2.extensions.POLL_OK and not conn.isexecuting()
    except psycopg2.Error:
        return False


# -- opening several consoles -------------------------------------------

def in_parallel(function, items):
    """Run function(item) for every item at once; [(item, result, error)].
    Every item but the last gets a thread; the last runs in the calling thread
    meanwhile (a thread's start costs milliseconds on a busy host: one item
    needs none, two need one). For blocking work before the PAUSEs (opening
    consoles, reading flags); after them the window uses fan_out, on one thread."""
    items = list(items)
    results = [None] * len(items)

    def run(index, item):
        try:
            results[index] = (item, function(item), None)
        except Exception as exc:  # reported per item, never lost
            results[index] = (item, None, exc)

    threads = [threading.Thread(target=run, args=(i, item)) for i, item in enumerate(items[:-1])]
    for thread in threads:
        thread.start()
    if items:
        run(len(items) - 1, items[-1])
    for thread in threads:
        thread.join()
    return results


def checked(outcome):
    """{item: result} of an in_parallel outcome; the first error is raised."""
    for dummy, dummy, error in outcome:
        if error is not None:
            raise error
    return dict((item, result) for item, result, dummy in outcome)


def open_consoles(consoles):
    """Open every console at once; all must answer and resolve their entries
    or a ConsoleError names every one that did not (nothing is touched)."""
    if not HAS_PSYCOPG2:
        raise ConsoleError('psycopg2 is not installed for the Python that runs this task')
    failed = [str(error) for dummy, dummy, error in in_parallel(lambda c: c.open(), consoles) if error]
    if failed:
        for console in consoles:
            console.close()
        raise ConsoleError('; '.join(failed))
    return consoles


def lower_login_retry(consoles):
    """Before the PAUSEs (not timed): server_login_retry = 0 on every console's
    pgbouncer process (Console.lower_login_retry), every console at once.

    pgbouncer (1.18 to this day: janitor.c per_loop_pause closes
    new_server_list; objects.c disconnect_server marks the pool
    last_login_failed; its PR 420 was not merged) takes a server login its
    PAUSE closed for a failed login: after RESUME that pool opens no server
    connection for server_login_retry (15 s by default) and
    check_fast_fail refuses every client that finds it without one ("server
    login has been failing, try again later"). wait_logins_settled narrows
    that race; it cannot close it (a login may start between its read and the
    PAUSE: one round trip). With server_login_retry at 0 the clients queued at
    RESUME make pgbouncer log in again at once, as if nothing had failed (lab:
    a queued client served 76 ms after the stall instead of 15 s, a new one
    served instead of refused). Restored by restore_login_retry after the
    window's verification, by Console.close on any error path, and by the
    dead-man switch if this controller dies.

    Returns {console label: the value lowered}; ConsoleError naming every
    console that refused (the ones lowered are restored first)."""
    outcome = in_parallel(lambda c: c.lower_login_retry(), consoles)
    failed = [str(error) for dummy, dummy, error in outcome if error is not None]
    if failed:
        restore_login_retry(consoles)
        raise ConsoleError('; '.join(failed))
    return dict((console.label, value) for console, value, dummy in outcome if value is not None)


def restore_login_retry(consoles):
    """After the window: server_login_retry back where lower_login_retry found
    it on every console (at once). Returns the error lines (one per console
    left lowered, naming the command that restores it), [] when all went back."""
    outcome = in_parallel(lambda c: c.restore_login_retry(), consoles)
    return [str(error) for dummy, dummy, error in outcome if error is not None]


def resume(consoles, clock=None, phase='resume', verify=True):
    """RESUME (and, with ``verify``, verify) the deploy's entries on every
    console at once, on this thread (fan_out over each console's
    resume_reconnecting_steps: every pgbouncer's RESUMEs are sent before any
    answer is awaited, each answer read as it arrives); each console's work is
    timed as ``phase`` on ``clock``, from the moment its commands are sent to
    the moment its last answer is read.

    Returns one dict per console: host, resumed, not_paused (entries someone
    else resumed first: Console.resume_steps), enabled, maxwait_ms (the
    longest client wait at RESUME), answered_at/answered_cpu (see
    resume_steps), duration_ms and, when the console had to reconnect (a
    pgbouncer restarted inside the window), reconnected: True. Raises
    ConsoleError naming every console that could not be resumed, in one line,
    after trying them all. Without ``verify`` the caller runs verify_resumed
    (the window does, once its clients flow again). The SHOW POOLS answers
    are read once every RESUME is answered: between the answers they would
    hold up the next pgbouncer's.
    """
    records = {}

    def one(console):
        return _timed(clock, phase, console.label, console.resume_reconnecting_steps(verify=verify),
                      lambda result: {'resumed': result['resumed'], 'not_paused': result['not_paused']},
                      records, console)

    def settle(console, done):
        console.with_maxwait(done)
        if console in records:
            records[console]['detail']['maxwait_ms'] = done['maxwait_ms']

    return _on_every(one, consoles, 'resume failed', settle)


def verify_resumed(consoles, clock=None, phase='resume_verify'):
    """Console.verify_steps on every console at once, on this thread (fan_out),
    each timed as ``phase`` on ``clock`` (a name, or a function of the console
    giving its name: a split window's write and read consoles of one pgbouncer
    are told apart). Returns [{'host', 'resumed', 'enabled'}] (what had to be
    done, per console); ConsoleError naming every console left paused or
    disabled, in one line, after trying them all."""
    name_of = phase if callable(phase) else (lambda console: phase)

    def one(console):
        fixed = yield from _timed(clock, name_of(console), console.label, console.verify_reconnecting_steps(),
                                  lambda result: {'resumed': result['resumed'], 'enabled': result['enabled']})
        return dict(fixed, host=console.label)

    return _on_every(one, consoles, 'resume not verified')


def _on_every(task, consoles, failure, settle=None):
    """fan_out ``task(console)`` over every console; every error in one
    ConsoleError; ``settle(console, result)`` runs for each console that
    succeeded, once every one has ended."""
    outcome = fan_out([(console, task(console)) for console in consoles])
    for console, result, error in outcome:
        if settle is not None and error is None:
            settle(console, result)
    failed = ['%s' % error for dummy, dummy, error in outcome if error]
    if failed:
        raise ConsoleError('%s: %s' % (failure, '; '.join(failed)))
    return [result for dummy, result, dummy in outcome]


def _timed(clock, name, host, steps, detail, records=None, key=None):
    """A fan_out task (``steps``) timed as phase ``name`` of ``host`` on ``clock``
    (None: not timed), from its first step to its end, whether it ends well or
    not; ``detail(result)`` -> what the record's detail gains on success;
    ``records`` (a dict) gets the record under ``key``."""
    if clock is None:
        return (yield from steps)
    manager = clock.phase(name, host=host)
    record = manager.__enter__()
    if records is not None:
        records[key] = record
    try:
        result = yield from steps
    except BaseException as exc:
        manager.__exit__(type(exc), exc, exc.__traceback__)  # the clock records the failure, never swallows it
        raise
    record['detail'].update(detail(result))
    manager.__exit__(None, None, None)
    return result


# -- the client probe -----------------------------------------------------------

PROBE_SECONDS = 2.0
# A target refusing the connection (nothing listening yet) is asked again this often, within PROBE_SECONDS.
PROBE_RETRY_SECONDS = 0.05


def nothing_listening(error_text):
    """True when a client's connection was refused at the socket - nothing
    listens on the pgbouncer's address (libpq: "Connection refused") or its
    unix socket file is missing ("No such file or directory"), as while a
    pgbouncer restarts; False for anything pgbouncer itself answered."""
    text = error_text or ''
    return 'Connection refused' in text or ('socket' in text and 'No such file or directory' in text)


def probe_again(error_text, refused_since, now, timeout=PROBE_SECONDS):
    """Whether the probe asks a target again after ``error_text``: only when
    nothing listens (nothing_listening) and its first such refusal
    (``refused_since``, monotonic seconds) is less than ``timeout`` before
    ``now``. A pgbouncer restarting (systemd restart: the new process not yet
    listening) is so reported answering once it listens within the probe's
    time; one refusing for ``timeout`` is reported refusing."""
    return nothing_listening(error_text) and now - refused_since < timeout


def with_probe_login(pgbouncers, primary):
    """The pgbouncer endpoints with the client probe's login: their own
    ``probe_user``/``probe_password`` where set, else the primary's deploy user."""
    out = []
    for endpoint in pgbouncers:
        if endpoint.get('probe_user'):
            out.append(dict(endpoint))
        else:
            out.append(dict(endpoint, probe_user=primary.get('user'), probe_password=primary.get('password')))
    return out


def probe_target(console, entry):
    """A client endpoint for ``entry`` through the pgbouncer process ``console``
    reaches (its host/port or unix socket directory), logging in as the
    endpoint's ``probe_user`` (else its admin user)."""
    endpoint = dict(console.endpoint, dbname=entry)
    if endpoint.get('probe_user'):
        endpoint.update(user=endpoint['probe_user'], password=endpoint.get('probe_password'))
    return endpoint


# The probe's SELECT 1, in a transaction of its own isolation: a probe user whose default is
# serializable gets "cannot use serializable mode in a hot standby" through a read entry -
# an answer, but one the verdict would count as the entry refusing clients.
PROBE_SQL = 'BEGIN ISOLATION LEVEL READ COMMITTED; SELECT 1; COMMIT'


def probe(targets, timeout=PROBE_SECONDS):
    """Ask every target, as a client would, at once: connect and run SELECT 1.

    ``targets``: [(key, endpoint)] (endpoint dbname = the pgbouncer entry).
    ``timeout``: seconds a client waits for pgbouncer's next answer (to its
    connection, each message of its login, its SELECT 1). The silence is
    counted from the moment the probe last heard from that target, and a
    target whose socket has data waiting is never silent: this controller's
    own work - a SCRAM exchange costs it milliseconds of CPU per login, so
    seconds for a hundred pgbouncers on a busy controller - is never counted
    against a pgbouncer, while a paused one (its login or SELECT 1 left
    without an answer) is reported after ``timeout``.

    A connection refused at the socket (probe_again: nothing listening, as
    while a pgbouncer restarts) is tried again every PROBE_RETRY_SECONDS for
    up to ``timeout`` after the first refusal.

    Returns {key: None (answered) or one line saying what the client saw}; a
    client left without an answer is what a paused or suspended pgbouncer
    (or entry) does to its clients.
    """
    if not HAS_PSYCOPG2:
        return dict((key, 'psycopg2 is not installed') for key, unused in targets)
    results, live, by_fd = {}, {}, {}
    endpoints = dict(targets)
    # key -> [first refusal (monotonic s), when to ask again, what the client saw]; kept
    # while it is asked again (then also in live), until its outcome is settled
    refused = {}
    poller = select.poll()

    def start(key):
        """Connect (again) and drive it as far as it goes."""
        try:
            conn = psycopg2.connect(async_=1, **dsn_kwargs(endpoints[key], application_name='fastdowntime-probe'))
        except psycopg2.Error as exc:
            settle(key, one_line(exc))
            return
        live[key] = {'conn': conn, 'cursor': None, 'fd': None, 'heard': time.monotonic()}
        advance(key)

    def finish(key, outcome):
        item = live.pop(key)
        if item['fd'] is not None:
            poller.unregister(item['fd'])
            del by_fd[item['fd']]
        try:
            item['conn'].close()
        except Exception:
            pass
        settle(key, outcome)

    def settle(key, outcome):
        """The outcome, unless it is a refusal to ask again (probe_again)."""
        now = time.monotonic()
        first = refused[key][0] if key in refused else now
        if outcome is not None and probe_again(outcome, first, now, timeout):
            refused[key] = [first, now + PROBE_RETRY_SECONDS, outcome]
            return
        refused.pop(key, None)
        results[key] = outcome

    def advance(key):
        """Drive one target as far as it goes without waiting; register what it waits for."""
        item = live[key]
        try:
            state = item['conn'].poll()
            while state == psycopg2.extensions.POLL_OK and item['cursor'] is None:
                item['cursor'] = item['conn'].cursor()
                item['cursor'].execute(PROBE_SQL)
                state = item['conn'].poll()
        except psycopg2.Error as exc:
            finish(key, one_line(exc))
            return
        if state == psycopg2.extensions.POLL_OK:
            finish(key, None)
            return
        fd = item['conn'].fileno()  # libpq may open a new socket (next address)
        events = select.POLLIN if state == psycopg2.extensions.POLL_READ else select.POLLOUT
        if item['fd'] not in (None, fd):
            poller.unregister(item['fd'])
            del by_fd[item['fd']]
        if item['fd'] == fd:
            poller.modify(fd, events)
        else:
            poller.register(fd, events)
        item['fd'] = fd
        by_fd[fd] = key
        item['heard'] = time.monotonic()

    try:
        for key, dummy in targets:
            start(key)
        while live or refused:
            asking = [key for key in refused if key not in live]  # refused, to be asked again
            wake = min([item['heard'] + timeout for item in live.values()] + [refused[key][1] for key in asking])
            # A socket not ready when poll returns had nothing to read from its
            # last answer until then: silent at least since ``heard``, up to
            # the moment poll was called.
            polled_at = time.monotonic()
            if live:
                ready = poller.poll(max(0, int((wake - polled_at) * 1000)) + 1)
            else:
                time.sleep(max(0.0, wake - polled_at))
                ready = []
            ready_keys = set(by_fd[fd] for fd, dummy in ready if fd in by_fd)
            for key in [k for k, item in live.items() if k not in ready_keys and polled_at - item['heard'] >= timeout]:
                stage = 'login' if live[key]['cursor'] is None else 'SELECT 1'
                finish(key, 'a client got no answer to its %s within %.1f s' % (stage, timeout))
            for key in ready_keys:
                if key in live:
                    advance(key)
            now = time.monotonic()
            for key in [k for k in asking if k in refused and refused[k][1] <= now and k not in live]:
                start(key)
    finally:
        for key in list(live):
            finish(key, 'probe interrupted')
        for key, (dummy, dummy, seen) in list(refused.items()):
            results[key] = seen
    return results


def probe_consoles(consoles, entries_of=None, timeout=PROBE_SECONDS):
    """Probe every entry of every console (``entries_of(console)``, default its
    entries) at once. Returns {console label: {entry: None or what a client saw}}."""
    targets = []
    for console in consoles:
        for entry in (entries_of(console) if entries_of else console.entries):
            targets.append(((console.label, entry), probe_target(console, entry)))
    found = probe(targets, timeout)
    out = {}
    for console in consoles:
        out.setdefault(console.label, {})
    for (label, entry), error in found.items():
        out[label][entry] = error
    return out


def not_answering(probed):
    """[(label, entry, what a client saw)] of probe_consoles' result, sorted."""
    return sorted((label, entry, error) for label, per in probed.items() for entry, error in per.items() if error)


# What pgbouncer says to a client connecting while max_client_conn clients are connected:
# "no more connections allowed (max_client_conn)".
FULL = 'max_client_conn'


FULL_FIX = 'raise max_client_conn there (SET max_client_conn = N on its console, and in pgbouncer.ini)'


def full_advice(full):
    """The words for probe_verdict's 'full' items: which pgbouncers, what clients get (FULL_FIX: the fix)."""
    labels = sorted(set(item[0] for item in full))
    return ('%s %s full (%s): new clients are refused, the connected ones served'
            % (', '.join(labels), 'is' if len(labels) == 1 else 'are', full[0][2]))


def probe_verdict(probed, fenced=()):
    """Sort probe_consoles' result into what the report may say.

    ``fenced``: (label, entry) pairs left DISABLED on purpose (they refuse
    clients by design). Returns {'answering': [(label, entry)], 'silent':
    [(label, entry, why)] - no answer: paused or suspended, 'refused': [...] -
    clients get an error, 'unverified': [...] - the probe could not log in, so
    nothing is known, 'fenced': [(label, entry)] - not probed, left DISABLED, 'full': [...] - pgbouncer refused the probe's connection
    because max_client_conn is reached (FULL): its clients are served, new ones
    refused, whatever a PAUSE or RESUME did}.
    """
    verdict = {'answering': [], 'silent': [], 'refused': [], 'unverified': [], 'full': [], 'fenced': []}
    fenced = set(tuple(item) for item in fenced)
    for label in sorted(probed):
        for entry in sorted(probed[label]):
            error = probed[label][entry]
            if (label, entry) in fenced:
                verdict['fenced'].append((label, entry))
                continue
            if error is None:
                verdict['answering'].append((label, entry))
            elif 'no answer' in error:
                verdict['silent'].append((label, entry, error))
            elif FULL in error:
                verdict['full'].append((label, entry, error))
            elif any(word in error for word in ('authentication', 'password', 'no such user', 'not allowed',
                                                'SASL', 'pg_hba')):
                verdict['unverified'].append((label, entry, error))
            else:
                verdict['refused'].append((label, entry, error))
    return verdict


def describe_verdict(verdict):
    """(ok, one line) for the report: ok only when every entry answered a client."""
    bad = verdict['silent'] + verdict['refused']
    if bad:
        return False, 'NOT ANSWERING CLIENTS after RESUME: %s - check with SHOW STATE / a client, then RESUME ' \
                      'by hand' % '; '.join('%s on %s (%s)' % (entry, label, why) for label, entry, why in bad)
    notes = []
    if verdict.get('full'):
        notes.append('NOT verified by a client on %s: %s - %s' % (
            ', '.join('%s on %s' % (entry, label) for label, entry, unused in verdict['full']),
            full_advice(verdict['full']), FULL_FIX))
    if verdict['unverified']:
        notes.append('NOT verified by a client on %s (%s): set fastdowntime_pgbouncer_probe_user' % (
            ', '.join('%s on %s' % (entry, label) for label, entry, unused in verdict['unverified']),
            verdict['unverified'][0][2]))
    if verdict.get('fenced'):
        # Said, not left out: "every entry answering" must never hide an entry left refusing clients.
        notes.append('left DISABLED (fenced) until its standby catches up: %s'
                     % ', '.join('%s on %s' % (entry, label) for label, entry in verdict['fenced']))
    if notes:
        return True, 'every pgbouncer resumed; %s' % '; '.join(notes)
    return True, 'every pgbouncer entry resumed and answering clients (%d checked)' % len(verdict['answering'])
