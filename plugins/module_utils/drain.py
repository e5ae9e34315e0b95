# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The all-or-nothing drain: PAUSE the deploy's entries on every pgbouncer
console at once, wait for the PAUSE replies, and undo every pause on any
failure or at the deadline.

pgbouncer sets an entry's ``paused`` flag as soon as a PAUSE is *issued*, but
answers the PAUSE only when it is done (pgbouncer 1.x up to its newest commit):
admin.c ``admin_cmd_pause`` replies at once only when the entry has no server
connection at all (``count_db_active``); otherwise janitor.c ``per_loop_maint``
replies (``admin_pause_done``) once ``per_loop_pause`` has closed the entry's
idle, used and logging-in server connections and none is active or tested -
for every paused entry of that process. So a PAUSE's reply is the drain, and
the window reads nothing more. An entry someone else paused before the window
has no reply of ours: its drain is confirmed from SHOW DATABASES + SHOW
SERVERS (the entry is paused and no server connection of it is left).

The pure parts - who holds a server connection (``holders``) and how it is
said (``describe_holder``) - are unit-tested without a database; the primary
side (which backend that is, terminating it) lives in ``sessions``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.fastdowntime.postgresql.plugins.module_utils.pgbouncer_console import (
    BUSY_SERVER_STATES, ConsoleError, FanOutTimeout, checked, fan_out, in_parallel, servers_of)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import (
    ConnectError, host_port, one_line, psycopg2)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.sessions import (
    backend_activity, describe_session, end_session_fix, match_backends, query_summary, terminate_backend)


class DrainError(ConsoleError):
    """The drain failed or missed its deadline; every pause it made was undone
    (or the message says which pgbouncer could not be resumed)."""

    def __init__(self, message, holders=None, results=None):
        ConsoleError.__init__(self, message)
        self.holders = holders or []
        self.results = results or []


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


def terminated_lines(phases):
    """One line per backend the terminate policy ended, from the drain rows of
    ``phases`` (phase records), and per direct connection of a killable user
    (the terminate_killable row): what the operator must hear of, since that
    client got an error."""
    lines = []
    for record in phases or []:
        detail = record.get('detail') if isinstance(record.get('detail'), dict) else {}
        for item in detail.get('terminated') or []:
            if record.get('phase') == 'terminate_killable':  # sessions.terminate_killable rows: direct connections
                lines.append('%s on %s: fastdowntime_killable_users ended the direct connection pid %s (user %s, from '
                             '%s): that client got an error' % (record.get('phase'), record.get('host'), item.get('pid'),
                                                                item.get('usename'), item.get('addr') or 'local socket'))
                continue
            age = item.get('xact_age_seconds')
            lines.append('%s on %s: drain_policy terminate ended backend pid %s (user %s, transaction open %s) of '
                         'client %s: that client got an error' % (
                             record.get('phase'), record.get('host'), item.get('pid'), item.get('usename'),
                             '%.1f s' % age if age is not None else 'n/a', item.get('client')))
    return lines


def holder_client(holder):
    """'user@addr:port on <pgbouncer> entry <entry>': the pgbouncer client of one holder."""
    return '%s@%s on %s entry %s' % (holder['client_user'], host_port(holder['client_addr'], holder['client_port']),
                                     holder['pgbouncer'], holder['entry'])


def describe_holder(holder):
    """One holder in words, for the one-line error: the pgbouncer client, the
    entry, and - its backend found (``backend``, on ``server``: the primary's
    label unless the entry serves a standby) - the backend's pid, user,
    application, how long its query has run and its transaction been open,
    what its query is (sessions.query_summary: never the text) and how to end
    it there (sessions.end_session_fix)."""
    text = holder_client(holder)
    backend = holder.get('backend')
    if backend:
        server = holder.get('server')
        text += ': backend %s%s - wait for it to finish, or end it (%s)' % (
            describe_session(backend, with_query=True), ' on %s' % server if server else '',
            end_session_fix(backend, server or 'the primary'))
    return text


# -- the drain -----------------------------------------------------------

class _Drain:
    """State of one drain across consoles (one thread: pgbouncer_console.fan_out)."""

    def __init__(self, consoles, deadline_seconds, policy, primary_conn, terminate_after_seconds,
                 terminate_min_xact_age_seconds, clock, poll_interval, phase='drain', after_pause_sent=None,
                 flags=None, backends=None):
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
        self.flags = dict(flags or {})
        self.backends = backends
        self.missed = None  # (deadline_seconds, hosts, holders) once the deadline passed: said after the resume
        self.terminated = []
        self.phases = {}
        self.records = {}  # console label -> its phase record (detail gets what was terminated)
        self.results = {}

    def run(self):
        began = time.monotonic()
        deadline = began + self.deadline_seconds
        pending = {}  # console -> set of entries whose PAUSE has not returned
        try:
            # What is paused already: read before the window when the caller
            # did (``flags``), else now - every console at once: the window
            # must not grow with the number of pgbouncers.
            unread = [c for c in self.consoles if c not in self.flags]
            states = dict(self.flags)
            if unread:
                states.update(checked(in_parallel(lambda c: c.flags(), unread)))
            for console in self.consoles:
                flags = states[console]
                to_pause = [entry for entry in console.entries if not flags[entry]['paused']]
                self.results[console.label] = {
                    'host': console.label, 'entries': list(console.entries), 'paused': to_pause,
                    'already_paused': [e for e in console.entries if flags[e]['paused']],
                    'duration_ms': None}
                console.open_pause_connections(to_pause)
                pending[console] = set(to_pause)
            # Everything is connected: now touch the pools, all at once - every PAUSE
            # sent before any record is written, so the last pgbouncer's waits for no bookkeeping.
            sent_at = {}
            for console in self.consoles:
                sent_at[console] = self.clock.now() if self.clock is not None else None
                for entry in sorted(pending[console]):
                    console.send_pause(entry)
            for console in self.consoles:
                self._start_phase(console, sent_at[console])
            if self.after_pause_sent is not None:
                self.after_pause_sent()
            self._confirm(pending, began, deadline)
        except DrainError as exc:
            self._rollback(exc)
        except (ConsoleError, ConnectError) as exc:
            self._rollback(DrainError(str(exc)))
        except psycopg2.Error as exc:
            self._rollback(DrainError('drain failed: %s' % one_line(exc)))
        return {'duration_ms': round((time.monotonic() - began) * 1000, 1),
                'consoles': [self.results[c.label] for c in self.consoles],
                'terminated': self.terminated}

    def _confirm(self, pending, began, deadline):
        """Every console drained on its own, as soon as its own PAUSEs have
        replied: one fan_out task per console (_settle), all on this thread
        over non-blocking connections - a console is never held up by
        another's, so the drain ends with the slowest PAUSE's reply, however
        many pgbouncers there are. The fan-out
        keeps the deadline; its tick the terminate policy; the first console
        error stops every console's wait and is raised."""
        def tick(unconfirmed):
            if self.policy == 'terminate' and time.monotonic() - began >= self.terminate_after:
                self._terminate(unconfirmed)

        outcome = fan_out([(console, self._settle(console, pending[console], began)) for console in self.consoles],
                          deadline=deadline, fail_fast=True, tick=tick, tick_seconds=self.poll_interval)
        unconfirmed = [console for console, dummy, error in outcome if isinstance(error, FanOutTimeout)]
        if unconfirmed:
            self._missed_deadline(unconfirmed)

    def _settle(self, console, waiting, began):
        """One console (a fan_out task): drained once its PAUSEs have replied
        (see the module's doc); an entry paused before the window (someone
        else's PAUSE, which may still be waiting) is confirmed from SHOW
        DATABASES + SHOW SERVERS (Console.drained_steps) every poll interval."""
        pauses = [(entry, console.pause_queries[entry]) for entry in sorted(waiting)]
        if pauses:
            yield [query for dummy, query in pauses]
        for dummy, query in pauses:
            if query.error is not None:
                raise DrainError(str(query.error))
        already_paused = self.results[console.label]['already_paused']
        while already_paused and not (yield from console.drained_steps(already_paused)):
            yield self.poll_interval
        console.close_pause_connections()
        self.results[console.label]['duration_ms'] = round((time.monotonic() - began) * 1000, 1)
        self._end_phase(console, None)
        return True

    def _holders(self, consoles):
        """The holders (``holders``) on ``consoles``, their backends not looked up."""
        found = []
        for console in consoles:
            try:
                found.extend(holders(console.show('SERVERS'), console.show('CLIENTS'), console.entries,
                                     console.label))
            except ConsoleError:
                continue
        return found

    def _match(self, found):
        """Each holder's backend, once every pause is undone: ``backends``
        (the caller's: on the server each entry points at), else on the
        primary."""
        if not found:
            return found
        if self.backends is not None:
            try:
                return self.backends(found)
            except Exception:  # naming the backend must never hide the drain's own error
                return found
        return match_backends(found, backend_activity(self.primary_conn))

    def _missed_deadline(self, unconfirmed):
        """Who still holds a server connection, read from the consoles while
        the entries are paused; their backends are looked up only once every
        pause is undone (_rollback): the clients must not wait for it."""
        found = self._holders(sorted(unconfirmed, key=lambda c: c.label))
        self.missed = (self.deadline_seconds, ', '.join(sorted(c.label for c in unconfirmed)), found)
        raise DrainError('drain missed its %.1f s deadline' % self.deadline_seconds, holders=found)

    def _missed_message(self):
        """The missed deadline in one line, backends named (after the resume)."""
        deadline, hosts, found = self.missed
        self._match(found)
        if found:
            who = 'still holding a server connection: %s' % '; '.join(describe_holder(h) for h in found)
        else:
            who = 'no client holds a server connection any more (pgbouncer did not answer the PAUSE in time)'
        return 'drain missed its %.1f s deadline on %s; %s' % (deadline, hosts, who)

    def _terminate(self, unconfirmed):
        """pg_terminate_backend for primary backends held in a transaction older than the threshold."""
        if self.primary_conn is None:
            return
        done = set(item['pid'] for item in self.terminated)
        # The primary's backends only, matched as they always were (never the caller's ``backends``: a standby's
        # pid is another backend on the primary; and no round trip to a standby inside the window).
        for holder in match_backends(self._holders(unconfirmed), backend_activity(self.primary_conn)):
            backend = holder.get('backend')
            if not backend or backend.get('pid') in done:
                continue
            age = backend.get('xact_age_seconds')
            if age is None or age < self.min_age:
                continue
            terminate_backend(self.primary_conn, backend['pid'])
            done.add(backend['pid'])
            item = {'pid': backend['pid'], 'usename': backend.get('usename'), 'xact_age_seconds': age,
                    'query': query_summary(backend.get('query')), 'client': holder_client(holder)}
            self.terminated.append(item)
            # On the console's drain row too, so the report and the deploy log keep it.
            record = self.records.get(holder.get('pgbouncer'))
            if record is not None:
                record['detail'].setdefault('terminated', []).append(item)

    def _rollback(self, error):
        """All or nothing: close every waiting PAUSE, resume what we paused (every
        console at once: fan_out), re-raise."""
        for console in self.consoles:
            console.close_pause_connections()
        not_resumed = []
        for console, dummy, exc in fan_out([(console, self._undo(console)) for console in self.consoles]):
            if exc is not None:
                not_resumed.append(str(exc))
            self._end_phase(console, error)
        message = str(error)
        if self.missed is not None:
            # Every pause undone: now the holders' backends (a round trip to each server they are on).
            message = self._missed_message()
            for record in self.records.values():
                if (record.get('detail') or {}).get('error') == str(error):
                    record['detail']['error'] = message
        if not_resumed:
            message += '; could NOT resume: %s (the watchdog resumes it at its deadline, or run the ' \
                       'pgbouncer_drain role resume entry point)' % '; '.join(not_resumed)
        else:
            message += '; every pgbouncer paused by this drain was resumed'
        raise DrainError(message, holders=error.holders, results=list(self.results.values()))

    @staticmethod
    def _undo(console):
        """A fan_out task: resume (and verify) what this drain paused on ``console``."""
        entries = sorted(console.paused_by_us)
        if entries:
            yield from console.resume_reconnecting_steps(entries)

    def _start_phase(self, console, began):
        if self.clock is None:
            return
        manager = self.clock.phase(self.phase, host=console.label, detail={'entries': list(console.entries)},
                                   began=began)
        self.records[console.label] = manager.__enter__()
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
          poll_interval=0.05, phase='drain', after_pause_sent=None, flags=None, backends=None):
    """PAUSE the deploy's entries on every (open) console at once and wait for
    the PAUSE replies (the drain: see the module's doc) within
    ``deadline_seconds`` (default: the usable budget of ``clock``).

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
    before the PAUSE replies are awaited: the split window resumes the read-write
    entries there, so some watched entry stays paused without a gap.

    ``flags``: {console: Console.flags()} read before the window (the outage
    reads them as the last step before its clock starts): the entries already
    paused then are neither paused nor resumed by this drain; a console
    missing from it is read first (one round trip). A pgbouncer-wide PAUSE
    made since is told by the PAUSE's own reply ("already suspended/paused"):
    DrainError, every pause undone. An entry PAUSEd since is answered like
    ours (pgbouncer gives no sign): it is paused and resumed with the others.

    ``backends``: a function given the holders (``holders``' dicts) that sets
    each one's ``backend`` (its pg_stat_activity row, sessions.match_backends)
    and ``server`` (the label of the server it is on) and returns them - the
    outage's looks on the server each entry points at, a standby's too;
    default: the primary's (``primary_conn``). At a missed deadline it runs
    after every pause is undone.
    """
    if deadline_seconds is None:
        if clock is None:
            raise ValueError('drain needs deadline_seconds or a budget clock')
        deadline_seconds = clock.work_timeout('drain')
    runner = _Drain(consoles, deadline_seconds, policy, primary_conn, terminate_after_seconds,
                    terminate_min_xact_age_seconds, clock, poll_interval, phase, after_pause_sent, flags, backends)
    return runner.run()
