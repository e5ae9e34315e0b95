# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""pgbouncer admin console: parsing, pause/resume, and the all-or-nothing drain.

The admin console (database ``pgbouncer``) speaks only the simple query
protocol and knows no BEGIN, so every connection here is autocommit and every
command is a plain ``execute`` without parameters.

pgbouncer 1.18 shows a per-entry ``paused`` flag in SHOW DATABASES but shows a
global PAUSE nowhere, and sets ``paused`` as soon as a PAUSE is *issued*, not
when it is done. "Drained" is therefore confirmed here from SHOW SERVERS: an
entry is drained when it is paused and no server connection of it is left.

pgbouncer issue 715: a RESUME sent while a PAUSE is still waiting leaves that
PAUSE hanging forever. Every waiting PAUSE connection is closed before any
RESUME is sent (``Console.close_pause_connections``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import select
import threading
import time
from contextlib import contextmanager

from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import (
    ConnectError,
    HAS_PSYCOPG2,
    connect,
    endpoint_label,
    one_line,
    psycopg2,
    query,
)

ADMIN_DB = 'pgbouncer'
# SHOW STATE appeared in pgbouncer 1.19; 1.18 answers "invalid command".
SHOW_STATE_SINCE = (1, 19, 0)
# Server connection states that still hold a backend for a client.
BUSY_SERVER_STATES = ('active', 'active_cancel', 'being_canceled')


class ConsoleError(Exception):
    """A console failure, already one line naming the pgbouncer and the cause."""


class DrainError(ConsoleError):
    """The drain failed or missed its deadline; every pause it made was undone
    (or the message says which pgbouncer could not be resumed)."""

    def __init__(self, message, holders=None, results=None):
        ConsoleError.__init__(self, message)
        self.holders = holders or []
        self.results = results or []


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


def max_wait_ms(pools_rows, entries):
    """The longest client wait (ms) SHOW POOLS reports over the entries' pools."""
    longest = 0.0
    for row in pools_rows:
        if row.get('database') not in entries:
            continue
        waited = _as_int(row.get('maxwait')) * 1000.0 + _as_int(row.get('maxwait_us')) / 1000.0
        longest = max(longest, waited)
    return round(longest, 1)


def holders(servers_rows, clients_rows, entries, label):
    """Clients still holding a server connection of the entries.

    Joins SHOW SERVERS (``link`` = the client's ``ptr``) to SHOW CLIENTS. Each
    holder names the client (user, addr, port) and the server connection's
    local address/port and backend pid, for matching pg_stat_activity.
    """
    clients = dict((row.get('ptr'), row) for row in clients_rows if row.get('ptr'))
    found = []
    for server in servers_of(servers_rows, entries):
        link = server.get('link') or ''
        if not link and server.get('state') not in BUSY_SERVER_STATES:
            continue
        client = clients.get(link, {})
        found.append({
            'pgbouncer': label,
            'entry': server.get('database'),
            'server_state': server.get('state'),
            'client_user': client.get('user') or server.get('user'),
            'client_addr': client.get('addr'),
            'client_port': client.get('port'),
            'application_name': client.get('application_name') or '',
            'server_local_addr': server.get('local_addr'),
            'server_local_port': server.get('local_port'),
            'backend_pid': server.get('remote_pid'),
            'backend': None,
        })
    return found


def match_backends(found, activity_rows):
    """Attach the pg_stat_activity row of each holder's server connection:
    same (client_addr, client_port) as the server connection's local end, or
    the same pid when pgbouncer reached the server over a unix socket."""
    by_addr = dict(((row.get('client_addr'), row.get('client_port')), row) for row in activity_rows)
    by_pid = dict((row.get('pid'), row) for row in activity_rows)
    for holder in found:
        backend = by_addr.get((holder['server_local_addr'], holder['server_local_port']))
        if backend is None and not holder['server_local_addr']:
            backend = by_pid.get(holder['backend_pid'])
        holder['backend'] = backend
    return found


def describe_holder(holder):
    """One holder in words, for the one-line error."""
    text = '%s@%s:%s on %s entry %s' % (holder['client_user'], holder['client_addr'], holder['client_port'],
                                       holder['pgbouncer'], holder['entry'])
    backend = holder.get('backend')
    if backend:
        age = backend.get('xact_age_seconds')
        text += ' (backend pid %s, user %s, %s, transaction open %s, query: %s)' % (
            backend.get('pid'), backend.get('usename'), backend.get('state'),
            '%.1f s' % age if age is not None else 'n/a',
            one_line(backend.get('query') or '')[:120])
    return text


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
        # Entries this object issued PAUSE for; pause connections still open.
        self.paused_by_us = set()
        self.pause_conns = {}
        self.pause_cursors = {}

    # -- plumbing --------------------------------------------------------
    def open(self):
        if self.conn is not None:
            return self
        try:
            self.conn = connect(self.endpoint, dbname=ADMIN_DB, autocommit=True,
                                application_name='fastdowntime-pgbouncer')
        except ConnectError as exc:
            message = str(exc)
            if 'not allowed' in message:
                message += ' (the user must be listed in admin_users of pgbouncer.ini)'
            raise ConsoleError(message)
        self.version, self.version_text = version_from_rows(self.show('VERSION'))
        self.check_admin()
        self.entries = deploy_entries(self.show('DATABASES'), self.label, self.db_name, self.explicit)
        return self

    def close(self):
        self.close_pause_connections()
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
        """Stats users may run SHOW but not PAUSE: refuse them now, not mid-outage."""
        config = dict((row.get('key'), row.get('value')) for row in self.show('CONFIG'))
        admins = [name.strip() for name in str(config.get('admin_users') or '').split(',') if name.strip()]
        user = self.endpoint.get('user')
        if user != ADMIN_DB and user not in admins:
            raise ConsoleError('%s: user %s is not a pgbouncer admin (admin_users = %s): '
                               'use an admin user to pause and resume'
                               % (self.label, user, ', '.join(admins) or 'empty'))

    # -- observations ----------------------------------------------------
    def flags(self, entries=None):
        return entry_flags(self.show('DATABASES'), entries or self.entries)

    def drained(self, entries=None):
        entries = entries or self.entries
        return is_drained(self.show('DATABASES'), self.show('SERVERS'), entries)

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

    def holders(self, entries=None):
        return holders(self.show('SERVERS'), self.show('CLIENTS'), entries or self.entries, self.label)

    # -- PAUSE without blocking (for the drain) ---------------------------
    def open_pause_connections(self, entries):
        """One non-blocking admin connection per entry, opened before any PAUSE."""
        for entry in entries:
            if entry in self.pause_conns:
                continue
            try:
                self.pause_conns[entry] = connect(self.endpoint, dbname=ADMIN_DB, async_=True,
                                                  application_name='fastdowntime-pause')
            except ConnectError as exc:
                raise ConsoleError(str(exc))

    def send_pause(self, entry):
        cursor = self.pause_conns[entry].cursor()
        cursor.execute('PAUSE %s' % quote_entry(entry))
        # psycopg2 forgets an async query whose cursor is garbage-collected.
        self.pause_cursors[entry] = cursor
        # pgbouncer marks the entry paused on receipt: from now on it is ours to resume.
        self.paused_by_us.add(entry)

    def close_pause_connections(self):
        """Close every PAUSE still waiting (pgbouncer issue 715) - before any RESUME."""
        for conn in self.pause_conns.values():
            try:
                conn.close()
            except Exception:
                pass
        self.pause_conns = {}
        self.pause_cursors = {}

    # -- resume ----------------------------------------------------------
    def resume(self, entries=None):
        """Close waiting PAUSEs, read the longest client wait, RESUME/ENABLE the
        entries that need it, verify. Returns what was done and measured."""
        began = time.monotonic()
        entries = entries or self.entries
        self.close_pause_connections()
        waited = max_wait_ms(self.show('POOLS'), entries)
        flags = self.flags(entries)
        resumed, enabled = [], []
        for entry in entries:
            if flags[entry]['paused']:
                self._resume_entry(entry)
                resumed.append(entry)
            if flags[entry]['disabled']:
                self.command('ENABLE', entry)
                enabled.append(entry)
        after = self.flags(entries)
        stuck = [entry for entry in entries if after[entry]['paused'] or after[entry]['disabled']]
        if stuck:
            raise ConsoleError('%s: %s still paused or disabled after RESUME/ENABLE: check the pgbouncer log'
                               % (self.label, ', '.join(stuck)))
        self.paused_by_us.difference_update(entries)
        return {'host': self.label, 'entries': list(entries), 'resumed': resumed, 'enabled': enabled,
                'maxwait_ms': waited, 'duration_ms': round((time.monotonic() - began) * 1000, 1)}

    def _resume_entry(self, entry):
        try:
            self.command('RESUME', entry)
        except ConsoleError as exc:
            # Someone resumed it between our look and our RESUME: that is the goal.
            if 'is not paused' not in str(exc):
                raise


# -- opening several consoles -------------------------------------------

def _in_parallel(function, items):
    """Run function(item) for every item in threads; [(item, result, error)]."""
    results = [None] * len(items)

    def run(index, item):
        try:
            results[index] = (item, function(item), None)
        except Exception as exc:  # reported per item, never lost
            results[index] = (item, None, exc)

    threads = [threading.Thread(target=run, args=(i, item)) for i, item in enumerate(items)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _checked(outcome):
    """{item: result} of an _in_parallel outcome; the first error is raised."""
    for _, _, error in outcome:
        if error is not None:
            raise error
    return dict((item, result) for item, result, _ in outcome)


def open_consoles(consoles):
    """Open every console at once; all must answer and resolve their entries
    or a ConsoleError names every one that did not (nothing is touched)."""
    if not HAS_PSYCOPG2:
        raise ConsoleError('psycopg2 is not installed for the Python that runs this task')
    failed = [str(error) for _, _, error in _in_parallel(lambda c: c.open(), consoles) if error]
    if failed:
        for console in consoles:
            console.close()
        raise ConsoleError('; '.join(failed))
    return consoles


def resume(consoles, clock=None, phase='resume'):
    """RESUME (and ENABLE) the deploy's entries on every console in parallel;
    each console's work is timed as ``phase`` on ``clock``.

    Returns one dict per console: host, resumed, enabled, maxwait_ms (the
    longest client wait, read before resuming) and duration_ms. Raises
    ConsoleError naming every console that could not be resumed, after trying
    them all.
    """
    def one(console):
        with _phase(clock, phase, console.label) as record:
            if console.conn is None:
                console.open()
            result = console.resume()
            if record is not None:
                record['detail'].update(maxwait_ms=result['maxwait_ms'], resumed=result['resumed'])
            return result

    outcome = _in_parallel(one, consoles)
    failed = ['%s' % error for _, _, error in outcome if error]
    if failed:
        raise ConsoleError('resume failed: %s' % '; '.join(failed))
    return [result for _, result, _ in outcome]


@contextmanager
def _phase(clock, name, host):
    if clock is None:
        yield None
    else:
        with clock.phase(name, host=host) as record:
            yield record


# -- the drain -----------------------------------------------------------

BACKENDS_SQL = """
SELECT pid, usename, host(client_addr) AS client_addr, client_port, state,
       left(query, 500) AS query,
       EXTRACT(EPOCH FROM (clock_timestamp() - xact_start))::float8 AS xact_age_seconds
  FROM pg_stat_activity
 WHERE client_port IS NOT NULL
"""


def backend_activity(primary_conn):
    """pg_stat_activity rows of TCP clients on the primary; [] when unknown."""
    if primary_conn is None:
        return []
    try:
        return query(primary_conn, BACKENDS_SQL)
    except Exception:
        return []


class _Drain:
    """State of one drain across consoles (single thread, select loop)."""

    def __init__(self, consoles, deadline_seconds, policy, primary_conn, terminate_after_seconds,
                 terminate_min_xact_age_seconds, clock, poll_interval, phase='drain', after_pause_sent=None):
        if policy not in ('abort', 'terminate'):
            raise ValueError('policy must be abort or terminate, got %r' % (policy,))
        self.consoles = consoles
        self.deadline_seconds = float(deadline_seconds)
        self.policy = policy
        self.primary_conn = primary_conn
        self.terminate_after = (self.deadline_seconds / 2.0 if terminate_after_seconds is None
                                else float(terminate_after_seconds))
        self.min_age = (self.terminate_after if terminate_min_xact_age_seconds is None
                        else float(terminate_min_xact_age_seconds))
        self.clock = clock
        self.poll_interval = poll_interval
        self.phase = phase
        self.after_pause_sent = after_pause_sent
        self.terminated = []
        self.phases = {}
        self.results = {}

    def run(self):
        began = time.monotonic()
        deadline = began + self.deadline_seconds
        pending = {}  # console -> set of entries whose PAUSE has not returned
        try:
            # Every console is asked at once: the window must not grow with the
            # number of pgbouncers.
            states = _checked(_in_parallel(lambda c: c.flags(), self.consoles))
            for console in self.consoles:
                flags = states[console]
                to_pause = [entry for entry in console.entries if not flags[entry]['paused']]
                self.results[console.label] = {
                    'host': console.label, 'entries': list(console.entries), 'paused': to_pause,
                    'already_paused': [e for e in console.entries if flags[e]['paused']],
                    'duration_ms': None}
                console.open_pause_connections(to_pause)
                pending[console] = set(to_pause)
            # Everything is connected: now touch the pools, all at once.
            for console in self.consoles:
                self._start_phase(console)
                for entry in sorted(pending[console]):
                    console.send_pause(entry)
            if self.after_pause_sent is not None:
                self.after_pause_sent()
            unconfirmed = set(self.consoles)
            while unconfirmed:
                self._collect_replies(pending, deadline)
                answered = [c for c in unconfirmed if not pending[c]]
                drained = _checked(_in_parallel(lambda c: c.drained(), answered))
                for console in answered:
                    if drained[console]:
                        unconfirmed.discard(console)
                        console.close_pause_connections()
                        self.results[console.label]['duration_ms'] = round((time.monotonic() - began) * 1000, 1)
                        self._end_phase(console, None)
                if not unconfirmed:
                    break
                now = time.monotonic()
                if now >= deadline:
                    self._missed_deadline(unconfirmed)
                if self.policy == 'terminate' and now - began >= self.terminate_after:
                    self._terminate(unconfirmed)
        except DrainError as exc:
            self._rollback(exc)
        except (ConsoleError, ConnectError) as exc:
            self._rollback(DrainError(str(exc)))
        except psycopg2.Error as exc:
            self._rollback(DrainError('drain failed: %s' % one_line(exc)))
        return {'duration_ms': round((time.monotonic() - began) * 1000, 1),
                'consoles': [self.results[c.label] for c in self.consoles],
                'terminated': self.terminated}

    def _collect_replies(self, pending, deadline):
        waiting = {}
        for console, entries in pending.items():
            for entry in entries:
                conn = console.pause_conns[entry]
                waiting[conn.fileno()] = (console, entry, conn)
        left = max(0.0, min(self.poll_interval, deadline - time.monotonic()))
        if not waiting:
            time.sleep(left)
            return
        readable, _, _ = select.select(list(waiting), [], [], left)
        for fileno in readable:
            console, entry, conn = waiting[fileno]
            try:
                if conn.poll() == psycopg2.extensions.POLL_OK:
                    pending[console].discard(entry)
            except psycopg2.Error as exc:
                raise DrainError('%s: PAUSE %s failed: %s' % (console.label, entry, one_line(exc)))

    def _holders(self, consoles):
        found = []
        for console in consoles:
            try:
                found.extend(console.holders())
            except ConsoleError:
                continue
        return match_backends(found, backend_activity(self.primary_conn))

    def _missed_deadline(self, unconfirmed):
        found = self._holders(sorted(unconfirmed, key=lambda c: c.label))
        hosts = ', '.join(sorted(c.label for c in unconfirmed))
        if found:
            who = 'still holding a server connection: %s' % '; '.join(describe_holder(h) for h in found)
        else:
            who = 'no client holds a server connection any more (pgbouncer did not confirm in time)'
        raise DrainError('drain missed its %.1f s deadline on %s; %s' % (self.deadline_seconds, hosts, who),
                         holders=found)

    def _terminate(self, unconfirmed):
        """pg_terminate_backend for primary backends held in a transaction older than the threshold."""
        if self.primary_conn is None:
            return
        done = set(item['pid'] for item in self.terminated)
        for holder in self._holders(unconfirmed):
            backend = holder.get('backend')
            if not backend or backend.get('pid') in done:
                continue
            age = backend.get('xact_age_seconds')
            if age is None or age < self.min_age:
                continue
            query(self.primary_conn, 'SELECT pg_terminate_backend(%d)' % int(backend['pid']))
            done.add(backend['pid'])
            self.terminated.append({'pid': backend['pid'], 'usename': backend.get('usename'),
                                    'xact_age_seconds': age, 'query': backend.get('query'),
                                    'client': describe_holder(holder)})

    def _rollback(self, error):
        """All or nothing: close every waiting PAUSE, resume what we paused, re-raise."""
        for console in self.consoles:
            console.close_pause_connections()
        not_resumed = []
        for console, _, exc in _in_parallel(self._undo, self.consoles):
            if exc is not None:
                not_resumed.append(str(exc))
            self._end_phase(console, error)
        message = str(error)
        if not_resumed:
            message += '; could NOT resume: %s (the watchdog resumes it at its deadline, or run the ' \
                       'pgbouncer_drain role resume entry point)' % '; '.join(not_resumed)
        else:
            message += '; every pgbouncer paused by this drain was resumed'
        raise DrainError(message, holders=error.holders, results=list(self.results.values()))

    @staticmethod
    def _undo(console):
        entries = sorted(console.paused_by_us)
        if entries:
            console.resume(entries)

    def _start_phase(self, console):
        if self.clock is None:
            return
        manager = self.clock.phase(self.phase, host=console.label, detail={'entries': list(console.entries)})
        manager.__enter__()
        self.phases[console.label] = manager

    def _end_phase(self, console, error):
        manager = self.phases.pop(console.label, None)
        if manager is None:
            return
        if error is None:
            manager.__exit__(None, None, None)
        else:
            try:
                manager.__exit__(type(error), error, None)
            except BaseException:
                pass  # the phase recorded the failure; the drain raises its own error


def drain(consoles, deadline_seconds=None, policy='abort', primary_conn=None,
          terminate_after_seconds=None, terminate_min_xact_age_seconds=None, clock=None,
          poll_interval=0.05, phase='drain', after_pause_sent=None):
    """PAUSE the deploy's entries on every (open) console at once and confirm
    the drain from SHOW DATABASES/SERVERS within ``deadline_seconds`` (default:
    the usable budget of ``clock``).

    All or nothing: on any failure or at the deadline, every waiting PAUSE is
    closed and every entry this drain paused is resumed before DrainError is
    raised. ``policy='abort'`` fails at the deadline naming each client still
    holding a server connection (and, given ``primary_conn`` - an autocommit
    connection to the primary - its backend's query, user and transaction
    age). ``policy='terminate'`` terminates, from ``terminate_after_seconds``
    (default half the deadline) on, the primary backends those clients hold in
    a transaction older than ``terminate_min_xact_age_seconds`` (default the
    same), then keeps waiting for the drain until the deadline.

    ``phase`` names the per-console phase on ``clock``. ``after_pause_sent``
    (no arguments; it must not raise) runs once every PAUSE has been sent and
    before the drain is confirmed: the split window resumes the read-write
    entries there, so some watched entry stays paused without a gap.
    """
    if deadline_seconds is None:
        if clock is None:
            raise ValueError('drain needs deadline_seconds or a budget clock')
        deadline_seconds = clock.work_timeout('drain')
    runner = _Drain(consoles, deadline_seconds, policy, primary_conn, terminate_after_seconds,
                    terminate_min_xact_age_seconds, clock, poll_interval, phase, after_pause_sent)
    return runner.run()
