# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The outage window in one process: drain → cold patches → standbys replayed → resume.

Every connection is opened and every input checked BEFORE the clock starts, so
the window itself pays only round trips, never an Ansible task boundary or a
connection set-up. Whatever fails inside the window takes the same path:
ROLLBACK (apply_cold already did it) and RESUME of every pgbouncer; entries that
serve a standby without the new schema stay disabled and are named.

Two window modes. ``all``: every deploy entry on every pgbouncer is drained for
the whole window. ``split`` (Launchpad's last FastDowntime design): WAL replay is
paused on every standby first, so the read-only entries keep serving the old
schema while only the read-write entries are drained and the primary is
patched; writes come back, then the read-only entries are drained, replay is
resumed, every standby catches up with the commit and the read-only entries
come back. Both share one budget clock, and every failure path resumes replay.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import re
import signal
import time

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import outcomes
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.budget import (
    Budget, BudgetClock, BudgetExceeded)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.deploylog import (
    DeployLogError, ensure_deploy_log, new_deploy_id, write_deploy_log)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.report import (
    build_report, entry_from_result)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.drain import drain
from ansible_collections.fastdowntime.postgresql.plugins.module_utils import locks, logins, replication
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.pgbouncer_console import (
    LOGIN_RETRY_IN_WINDOW, Console, ConsoleError, budget_cap, checked, describe_verdict, in_parallel,
    lower_login_retry, open_consoles, probe_consoles, probe_verdict, restore_login_retry, resume, servers_of,
    verify_resumed, wait_logins_settled, with_probe_login)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.sessions import (
    ACTIVITY_SQL, BACKENDS_SQL, describe_session, drain_holders, end_session_fix, match_backends, server_clients,
    server_pids, terminate_killable)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.topology import (
    resolve_addresses, serving_entries, standby_of_entries)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import (
    ConnectError, connect, connect_action, endpoint_label, one_line, psycopg2, query)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.patchset import (
    PatchSetError, load_patch_set, plan as make_plan, refuse_drift)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.schema import (
    SchemaError, another_window_message, applied_revisions, apply_cold, ensure_revision_table, procedure_source,
    warm_session, window_lock)


# What ends ansible-playbook also reaches the window's module: Ansible (2.19) sends the
# SIGINT of a Ctrl-C and the SIGTERM of a `kill`, a CI timeout or a job cancel on to each
# worker's process group, the module's too. Raised inside the window, a KeyboardInterrupt
# resumed every pgbouncer before the standbys had replayed and lost the deploy log; a SIGTERM
# killed the module with every pgbouncer paused until the dead-man switch (budget + grace).
WINDOW_SIGNALS = ('SIGINT', 'SIGTERM', 'SIGHUP')


@contextlib.contextmanager
def signals_deferred(names=WINDOW_SIGNALS):
    """Ignore ``names`` (signal names) while the window runs: it then ends as it would have
    (commit or roll back, standbys replayed, every pgbouncer resumed, deploy log written),
    within its budget; the previous handlers come back afterwards. SIGKILL cannot be
    ignored: the dead-man switches are for that. Main thread only (signal.signal)."""
    previous = []
    for name in names:
        number = getattr(signal, name, None)
        if number is not None:
            previous.append((number, signal.signal(number, signal.SIG_IGN)))
    try:
        yield
    finally:
        for number, handler in previous:
            signal.signal(number, handler)


class OutageError(Exception):
    """The outage failed or was refused; str() is the operator's message."""

    def __init__(self, message, result=None):
        Exception.__init__(self, message)
        self.result = result or {}


class Window:
    """One run of the window: what the skeleton and its mode's phases found.

    ``step``: where a failure is reported ('drain', 'schema application',
    'standby replay', ...; None once every phase passed). ``error``: the
    expected failure that ended the phases (ConsoleError, SchemaError,
    BudgetExceeded, ConnectError) or None; ``lagging``: endpoint labels of
    standbys without the new schema (their entries are fenced). ``applied``:
    apply_cold()'s result once the transaction committed, ``replay``:
    wait_for_replay()'s. ``resumed``: every console's resume() result (dicts),
    ``resume_error``: a ConsoleError or None, ``disabled``: the (pgbouncer
    label, entry) pairs fenced. Split mode only: ``replay_paused`` (standby
    endpoints whose replay this window paused and did not resume yet),
    ``replay_errors`` ((endpoint, one line) of standbys left paused),
    ``write_resumed``/``write_error`` (the read-write entries' resume),
    ``read_resumed`` (the read-only entries' resume() results) and
    ``marks`` (monotonic seconds: write_start, write_end, read_start).
    ``started_at``/``ended_at``: epoch seconds; ``ended`` monotonic;
    ``cpu_started``/``cpu_ended``: the controller process's CPU seconds
    (time.process_time, every thread) at the same moments.
    """

    def __init__(self):
        self.step = None
        self.error = None
        self.lagging = []
        self.applied = None
        self.replay = None
        self.resumed = []
        self.resume_error = None
        self.disabled = []
        self.replay_paused = []
        self.replay_errors = []
        self.write_resumed = None
        self.write_error = None
        self.read_resumed = []
        self.marks = {}
        self.marks_left = None  # split: the psycopg2 error that kept the replay-pause markers (after the window)
        self.started_at = None
        self.ended_at = None
        self.ended = None
        self.cpu_started = None
        self.cpu_ended = None

    @property
    def changed(self):
        """The cold transaction committed on the primary."""
        return self.applied is not None

    def end(self, now=False):
        """Stamp the end: when the last RESUME was answered (the resume results'
        answered_at/answered_cpu) - the clients flow from then on, and what the
        controller does next (reading SHOW POOLS, closing its records) is not
        outage; now when ``now``, a resume failed or nothing was resumed."""
        now_mono, wall = time.monotonic(), time.time()
        answers = [(r['answered_at'], r['answered_cpu']) for r in self.resumed if r.get('answered_at') is not None]
        if answers and self.resume_error is None and not now:
            self.ended, self.cpu_ended = max(answers)
        else:
            self.ended, self.cpu_ended = now_mono, time.process_time()
        self.ended_at = wall - (now_mono - self.ended)


def outage_summary(window, mode_fields=None):
    """The result's ``outage`` dict of one window (the one result builder).

    ``window``: a finished Window; ``mode_fields``: what the mode adds (split:
    the write and read halves). Times in ms, rounded to 0.1; the longest
    client wait is the longest SHOW POOLS maxwait, read with the RESUMEs, over
    every resumed console; ``primary_confirms``: {standby: True
    when the primary's pg_stat_replication shows it replayed the commit,
    False when not (yet), None when it was not read}.
    """
    applied = window.applied or {}
    summary = {
        'started_at': window.started_at,
        'ended_at': window.ended_at,
        'outage_ms': round((window.ended_at - window.started_at) * 1000, 1),
        # How much of the outage the controller itself computed: on a controller
        # with its own cores, what grows with the number of pgbouncers (docs/benchmarks.md).
        'controller_cpu_ms': _span_ms(window.cpu_started, window.cpu_ended),
        'max_client_wait_ms': _longest_wait(window.resumed),
        'standby_replay_ms': dict((s['name'], s.get('replay_ms')) for s in (window.replay or {}).get('standbys', [])),
        # The primary's pg_stat_replication view, read after RESUME (a report, not a gate).
        'primary_confirms': dict((s['name'], s.get('primary_confirms')) for s in (window.replay or {}).get('standbys', [])),
        'patches': applied.get('patches', []),
        'transaction_ms': applied.get('transaction_ms'),
        'commit_lsn': applied.get('commit_lsn'),
        'commit_xid': applied.get('commit_xid'),
    }
    others = resumed_by_others(window.resumed)
    summary['resumed_by_others'] = others
    # One line each for the operator's output and the report (report.build_report reads them):
    # entries resumed by someone else, a replay cross-check that could not be read.
    summary['warnings'] = ([resumed_by_others_line(others)] if others else []) + \
        list((window.replay or {}).get('warnings') or [])
    if (window.replay or {}).get('cross_check_error'):
        summary['cross_check_error'] = window.replay['cross_check_error']
    summary.update(mode_fields or {})
    return summary


def resumed_by_others(resumed):
    """The entries resumed by someone else inside the window, from the
    resume() results (dicts with 'host', 'not_paused', optional
    'reconnected'): [{'pgbouncer': label, 'entry': name, 'restarted': bool}],
    one per entry whose own RESUME was answered "is not paused" - someone (an
    operator, another tool, a process manager) resumed it before the deploy
    did, or (``restarted``, the console had to reconnect) the pgbouncer process
    restarted and its new one had nothing paused. Either way clients flowed
    before the window ended. An entry the verification resumes after the
    window (someone's PAUSE) is not one of them."""
    found = []
    for result in resumed or []:
        for entry in result.get('not_paused') or []:
            found.append({'pgbouncer': result.get('host'), 'entry': entry,
                          'restarted': bool(result.get('reconnected'))})
    return found


def resumed_by_others_line(others):
    """One line for the operator and the report: the entries of
    resumed_by_others(), grouped by pgbouncer, what it means and what to do. It
    never fails a deploy: a window that committed and replayed stays done
    (nothing is lost)."""
    groups = []
    for item in others:
        key = (item['pgbouncer'], item['restarted'])
        if not groups or groups[-1][0] != key:
            groups.append((key, []))
        groups[-1][1].append(item['entry'])
    restart = ' (restarted inside the window: its new process had nothing paused)'
    names = '; '.join('%s on %s%s' % (', '.join(entries), pgbouncer, restart if restarted else '')
                      for (pgbouncer, restarted), entries in groups)
    return ('RESUMED BY SOMEONE ELSE inside the window: %s - the deploy\'s own RESUME found %s not paused, so clients '
            'may have reached the primary inside the window (they queued on the cold transaction\'s locks) or a '
            'standby before its replay -> find who resumes pgbouncer during deploys (a process manager, a health '
            'script, an operator) and check the application for errors at that time'
            % (names, 'it' if len(others) == 1 else 'them'))


def _longest_wait(resumed):
    return max([r.get('maxwait_ms') or 0 for r in resumed] or [0])


class AllWindow:
    """Mode ``all``: every deploy entry on every pgbouncer is drained for the
    whole window: drain -> cold transaction -> standbys replayed -> resume."""

    name = 'all'

    @staticmethod
    def prepare(outage, check_mode):
        """Nothing more than the skeleton's preparation."""

    @staticmethod
    def phases(outage, window):
        window.step = 'drain'
        drain(outage.consoles, policy=outage.drain_policy, primary_conn=outage.observer, clock=outage.clock,
              flags=outage.entry_flags, backends=outage.holder_backends)
        outage.cold_transaction(window)
        outage.standby_replay(window)

    @staticmethod
    def resume(outage, window):
        """Always: resume every pgbouncer; entries serving a lagging standby stay disabled."""
        window.resumed, window.resume_error, window.disabled = outage.resume_consoles(window.lagging)

    @staticmethod
    def after(outage, window):
        """Nothing is left to undo once every pgbouncer is resumed."""

    @staticmethod
    def summary(window):
        return {}

    @staticmethod
    def abort_notes(window):
        return []


class SplitWindow:
    """Mode ``split`` (Launchpad's last FastDowntime design): replay paused ->
    read-write entries drained -> cold transaction -> writes back -> read-only
    entries drained -> replay resumed and caught up -> reads back."""

    name = 'split'

    @staticmethod
    def prepare(outage, check_mode):
        """Split the consoles into read-write and read-only ones, refuse a
        synchronous set-up that would hang the commit, record the pause marker."""
        outage.split_consoles()
        blocked = replication.split_blocked_by_synchronous(
            replication.describe_synchronous(outage.client_settings(replication.SYNCHRONOUS_SQL), {}))
        if blocked:
            raise OutageError('%s: the split window is refused: %s; set fastdowntime_window_mode: all '
                              '(nothing paused)' % (endpoint_label(outage.primary), blocked))
        if not check_mode:
            # Before any pause: the next pre-flight resumes only a pause it can prove is ours.
            try:
                replication.mark_pauses(outage.observer, outage.deploy_id, outage.standbys)
            except psycopg2.Error as exc:
                raise OutageError('%s: cannot record the replay-pause marker in %s: %s; nothing paused'
                                  % (endpoint_label(outage.primary), replication.PAUSE_MARKER_TABLE,
                                     one_line(exc.pgerror or exc)))

    def phases(self, outage, window):
        window.step = 'replay pause'
        replication.pause_replay(outage.standby_conns, outage.clock, window.replay_paused)
        window.step = 'drain'
        window.marks['write_start'] = time.monotonic()
        drain(outage.consoles, policy=outage.drain_policy, primary_conn=outage.observer, clock=outage.clock,
              phase='drain_write', flags=outage.entry_flags, backends=outage.holder_backends)
        outage.cold_transaction(window)
        window.step = 'read drain'
        window.marks['read_start'] = time.monotonic()
        drain(outage.read_consoles, policy=outage.drain_policy, clock=outage.clock, phase='drain_read',
              after_pause_sent=lambda: self.resume_writes(outage, window), flags=outage.entry_flags,
              backends=outage.holder_backends)
        window.step = 'replay resume'
        replay_errors = [(e, err) for e, err in replication.resume_replay(outage.standby_conns, outage.clock) if err]
        window.replay_paused = [e for e, dummy in replay_errors]
        if replay_errors:
            raise SchemaError('; '.join('standby %s: pg_wal_replay_resume() failed: %s'
                                        % (endpoint_label(e), err) for e, err in replay_errors),
                              lagging=[endpoint_label(e) for e, dummy in replay_errors])
        outage.standby_replay(window)

    @staticmethod
    def resume_writes(outage, window):
        """The read-write entries back (once). Runs inside the read-only drain,
        right after its PAUSEs are sent: a watched entry stays paused without
        a gap, so the dead-man switch keeps guarding the read half (it stops
        watching once nothing is paused). Never raises."""
        if window.write_resumed is not None or window.write_error is not None:
            return
        try:
            window.write_resumed = resume(outage.consoles, outage.clock, phase='resume_write', verify=False)
        except ConsoleError as exc:
            window.write_error = exc
        window.marks['write_end'] = time.monotonic()

    def resume(self, outage, window):
        """Always, in this order: writes back, replay running, reads back (a
        standby that cannot have the new schema has its entries fenced)."""
        self.resume_writes(outage, window)
        if window.replay_paused:
            left = [(e, c) for e, c in outage.standby_conns if e in window.replay_paused]
            window.replay_errors = [(e, err) for e, err in replication.resume_replay(left, outage.clock) if err]
            if window.changed:
                window.lagging = sorted(set(window.lagging) |
                                        set(endpoint_label(e) for e, dummy in window.replay_errors))
        resumed, resume_error, window.disabled = outage.resume_consoles(
            window.lagging, outage.read_consoles, phase='resume_read')
        if window.write_error is not None:
            resume_error = window.write_error if resume_error is None else \
                ConsoleError('%s; %s' % (window.write_error, resume_error))
        window.read_resumed = resumed
        window.resumed = (window.write_resumed or []) + resumed
        window.resume_error = resume_error

    @staticmethod
    def after(outage, window):
        """Forget the pause markers of the standbys whose replay runs again."""
        window.marks_left = outage.clear_pause_marks(set(endpoint_label(e) for e, dummy in window.replay_errors))

    @staticmethod
    def summary(window):
        read_start = window.marks.get('read_start')
        return {
            'window_mode': 'split',
            'write_outage_ms': _span_ms(window.marks.get('write_start'), window.marks.get('write_end')),
            # Reads were drained only once the patches were committed.
            'read_outage_ms': _span_ms(read_start, window.ended) if read_start is not None else 0.0,
            'max_write_wait_ms': _longest_wait(window.write_resumed or []),
            'max_read_wait_ms': _longest_wait(window.read_resumed),
        }

    @staticmethod
    def abort_notes(window):
        if window.replay_errors:
            return ['REPLAY LEFT PAUSED on %s - run SELECT pg_wal_replay_resume() there (the next pre-flight also '
                    'resumes it)' % '; '.join('%s (%s)' % (endpoint_label(e), err) for e, err in window.replay_errors)]
        return ['replay resumed on every standby']


MODES = {'all': AllWindow, 'split': SplitWindow}
WINDOW_MODES = tuple(MODES)


class Outage:
    """Prepare (outside the window), then run the window once.

    One skeleton for both window modes (``MODES``: the mode is a strategy):
    ``prepare`` opens every connection, resolves every address and checks
    every input before the clock starts; ``run`` starts the clock, runs the
    mode's phases, always runs the mode's resume (any failure inside the
    window resumes every pgbouncer process; the schema is all or nothing: the
    one transaction committed or rolled back), then builds the one result.
    """

    def __init__(self, primary, standbys, pgbouncers, db_name, patch_dir, budget_seconds,
                 revision_table=None, deploy_id=None, drain_policy='abort', drain_entries=None,
                 killable_users=None, reserve_seconds=None, lock_retry=None, window_mode='all', overrides=None,
                 estimate_ms=None, blocking_sessions='refuse'):
        if window_mode not in MODES:
            raise ValueError('window_mode must be one of %s, got %r' % (', '.join(WINDOW_MODES), window_mode))
        self.window_mode = window_mode
        self.mode = MODES[window_mode]()
        self.primary = dict(primary, dbname=db_name)
        self.standbys = [dict(s, dbname=db_name) for s in standbys]
        self.pgbouncers = with_probe_login(pgbouncers, primary)
        self.db_name = db_name
        self.patch_dir = patch_dir
        self.revision_table = revision_table
        self.deploy_id = deploy_id or new_deploy_id()
        self.drain_policy = drain_policy
        # The pre-flight's fastdowntime_blocking_sessions: 'warn' (the operator vouched for such sessions)
        # lets the window open with a session that would hold the drain (refuse_drain_holders).
        self.blocking_sessions = blocking_sessions
        self.drain_entries = list(drain_entries or [])
        self.killable_users = list(killable_users or [])
        self.lock_retry = lock_retry
        # The pre-flight's overrides (deploy window, contract change): kept in the deploy log row.
        self.overrides = list(overrides or [])
        # The pre-flight's estimate (ms), kept beside the actual outage in the result and the deploy log.
        self.estimate_ms = estimate_ms
        # Capped by pgbouncer's own timeouts before the clock starts (its .capped_by says so).
        self.clock = BudgetClock(Budget(budget_seconds, reserve_seconds))
        self.plan = None
        self.conn = None          # the primary, for the one transaction
        self.observer = None      # the primary, autocommit: locks, terminate, replication
        self.standby_conns = []   # (endpoint, async connection)
        self.standby_identities = None  # replication.check_standbys: who each standby is to the primary
        self.consoles = []
        # split mode: the read-write entries are self.consoles' entries, the
        # read-only ones live on consoles of their own (their own PAUSE connections).
        self.read_consoles = []
        self.pgbouncer_addrs = set()
        self.entry_flags = {}     # {console: Console.flags()}, read just before the clock
        self.login_settle_seconds = None  # how long prepare waited for server logins in flight
        self.standby_catch_up = []  # replication.catch_up: each standby's replay of a fresh WAL record, before the clock
        self.login_retry_lowered = {}  # {pgbouncer label: its server_login_retry} set to 0 for the window
        self.fences = []          # replication.read_fences: entries an earlier window left fenced

    # -- before the window -------------------------------------------------
    def prepare(self, check_mode=False):
        """Connect everywhere, resolve the pgbouncer hosts' addresses and
        compute the plan, all before the clock starts; raise OutageError on
        any problem. Read-only in check mode (the revision table is not created)."""
        try:
            patch_set = load_patch_set(self.patch_dir)
            self.conn = connect(self.primary, application_name='fastdowntime-deploy')
            self.observer = connect(self.primary, autocommit=True, application_name='fastdowntime-observer')
            # Before the plan reads the applied revisions and long before any PAUSE: one deploy's
            # outage at a time (held until close(); in check mode only looked for).
            holder = window_lock(self.observer, take=not check_mode)
            if holder is not None:
                raise OutageError(another_window_message(endpoint_label(self.primary), self.db_name, holder),
                                  result={'another_deploy': True})
            table = self._table_kwargs()
            ensure_revision_table(self.observer, check_mode=check_mode, **table)
            ensure_deploy_log(self.observer, check_mode=check_mode)
            applied = applied_revisions(self.observer, **table)
            self.plan = make_plan(patch_set, applied, revision_table=table.get('revision_table'),
                                  procedure_source=procedure_source(self.observer))
            refuse_drift(self.plan)
            self.fences = replication.read_fences(self.observer)
            # In check mode the hot patches were only planned, not applied: the
            # plan shows them; a real run refuses to open a window behind them.
            if self.plan.pending_hot and not check_mode:
                raise OutageError('%s: hot patches are still pending (%s): apply them live first '
                                  '(schema_apply phase=hot) - they cannot run inside the outage' % (
                                      endpoint_label(self.primary),
                                      ', '.join(p.name for p in self.plan.pending_hot)))
            if not self.plan.pending_cold:
                return self.plan
            self.standby_conns = [(s, self._connect_standby(s)) for s in self.standbys]
            # Replicas of this primary, in recovery; who each is to the primary (the replay cross-check).
            self.standby_identities = replication.check_standbys(self.observer, self.standby_conns)
            self.consoles = [Console(p, db_name=self.db_name, databases=self.drain_entries)
                             for p in self.pgbouncers]
            open_consoles(self.consoles)
            self._cap_budget()
            # DNS before the clock: terminate_killable never asks the resolver inside the window.
            self.pgbouncer_addrs = resolve_addresses([p['host'] for p in self.pgbouncers])
            self.mode.prepare(self, check_mode)
            # The PAUSE connections too (and one for SHOW POOLS, sent with the
            # RESUMEs): set-up must not count against the outage.
            for console in self.consoles + self.read_consoles:
                console.open_pause_connections(console.entries)
                console.open_pools_connection()
            if not check_mode:
                # The window's transaction must not be its backend's first: PL/pgSQL,
                # the catalog and the revision table cached now, not inside the outage.
                warm_session(self.conn, table.get('revision_table'))
                # A standby fallen behind since the pre-flight is waited for now, nothing paused;
                # one still behind refuses the window (replication.catch_up: why).
                self.standby_catch_up = replication.catch_up(self.observer, self.standby_conns)
                refusal = replication.catch_up_refusal(self.standby_catch_up)
                if refusal:
                    raise OutageError(refusal, result={'standby_catch_up': self.standby_catch_up})
            # The last look before the clock: a session that began after the pre-flight passed (a
            # report through a read-only entry during the hot patches) and would hold the drain.
            self.refuse_drain_holders()
            if not check_mode:
                # A server login the PAUSE closes anyway (the race wait_logins_settled narrows) is
                # logged in again at RESUME, not refused for server_login_retry: restored in _finish.
                self.login_retry_lowered = lower_login_retry(self.consoles + self.read_consoles)
            # Just before the clock: the entries someone else paused already
            # (the drain neither pauses nor resumes them); a pgbouncer-wide
            # PAUSE made since is refused by our PAUSE's own reply.
            self.entry_flags = checked(in_parallel(lambda c: c.flags(), self.consoles + self.read_consoles))
            # No PAUSE on a pool with a server login in flight: pgbouncer would take
            # its closing for a failed login and fail clients for server_login_retry.
            self.login_settle_seconds = wait_logins_settled(self.consoles + self.read_consoles)
        except (ConnectError, ConsoleError, PatchSetError, SchemaError, DeployLogError, psycopg2.Error) as exc:
            self.close()
            raise OutageError(one_line(exc))
        except OutageError:
            self.close()
            raise
        return self.plan

    def _server_connections(self):
        """{server label: (its connection, its endpoint or None for the primary)} of the window's own connections."""
        found = {endpoint_label(self.primary): (self.observer, None)}
        found.update((endpoint_label(e), (c, e)) for e, c in self.standby_conns)
        return found

    def _standby_of(self, console):
        """{entry: standby endpoint} of ``console``'s entries that point at a standby."""
        return standby_of_entries(console.endpoint.get('name') or console.endpoint.get('host'), self.standbys)

    def _server_rows(self, label, sql):
        """``sql``'s rows on the server ``label`` (the primary or a standby), on the window's own connection."""
        conn, endpoint = self._server_connections()[label]
        if endpoint is None:
            return query(conn, sql)
        return replication.run_on(conn, sql, timeout=endpoint.get('connect_timeout') or 5, label=label)

    def refuse_drain_holders(self):
        """Just before the clock (prepare; nothing paused yet, nothing added to the
        outage): the pre-flight's drain-holder rule (sessions.drain_holders, as its
        blocking_sessions check applies it) again, on every server an entry to be
        paused points at - the primary, and the standby behind each read-only
        entry - for the sessions that began since the pre-flight: a pgbouncer
        server connection in a transaction that will outlast the drain's
        deadline (open longer than it already, or idle in it) would hold every
        client the whole deadline and then abort the window. OutageError: one
        line naming each (host, entry, pid, user, application, how long, the
        fix). Left to the drain: a primary backend with drain_policy terminate
        (the drain ends it), and every one with fastdowntime_blocking_sessions:
        warn (the operator vouched). Costs SHOW SERVERS and SHOW CLIENTS on every
        console (at once) and one pg_stat_activity read per server with a
        server connection."""
        if self.blocking_sessions == 'warn':
            return
        consoles = self.consoles + self.read_consoles
        primary = endpoint_label(self.primary)
        through, clients = {}, {}  # {server label: {backend pid: 'entry E on P'}}, {...: {pid: client addr:port}}
        for console, (servers_rows, clients_rows) in checked(in_parallel(
                lambda c: (c.show('SERVERS'), c.show('CLIENTS')), consoles)).items():
            standby_of = self._standby_of(console)
            addrs = server_clients(servers_rows, clients_rows)
            for row in servers_of(servers_rows, console.entries):
                standby = standby_of.get(row.get('database'))
                server = endpoint_label(standby) if standby else primary
                for pid in server_pids([row]):
                    through.setdefault(server, {})[pid] = 'entry %s on %s' % (row.get('database'), console.label)
                    if pid in addrs:
                        clients.setdefault(server, {})[pid] = addrs[pid]
        wait = self.clock.work_timeout('drain')
        # The cold transaction's locks first: one line of the pre-flight's own words, or nothing.
        self.refuse_lock_holders(through.get(primary, {}), wait)
        refused = []
        for server in sorted(through):
            if server == primary and self.drain_policy == 'terminate':
                continue  # the drain terminates it (the pre-flight warned)
            for row in drain_holders(self._server_rows(server, ACTIVITY_SQL), through[server], wait):
                pid = row.get('pid')
                refused.append('%s: %s holds its server connection in a transaction: wait for it to finish, or end '
                               'it (%s)' % (server, describe_session(row, through[server][pid],
                                                                     clients.get(server, {}).get(pid)),
                                            end_session_fix(row, server)))
        if refused:
            raise OutageError('%s; the drain would wait for %s its whole %.1f s deadline, holding every client, and '
                              'then abort: refused just before the window, nothing paused or applied - deploy again '
                              'once %s ended (fastdowntime_blocking_sessions: warn opens the window anyway)'
                              % ('; '.join(refused), 'it' if len(refused) == 1 else 'them', wait,
                                 'it has' if len(refused) == 1 else 'they have'))

    def refuse_lock_holders(self, pgbouncer_of, wait):
        """Just before the clock, nothing paused: the pre-flight's lock-holder rule
        (locks.outlasting_holders, as its blocking_sessions check applies it) again
        on the primary, for what began since the pre-flight - a pg_dump (ACCESS
        SHARE on every table it dumps), an analyst's open transaction, a prepared
        transaction: the cold transaction would wait for it the whole budget,
        every client queued, then abort. OutageError: one line naming each
        holder, what it holds and the fix. pgbouncer's server connections
        (``pgbouncer_of``: {backend pid: entry on pgbouncer}) are the drain's
        (refuse_drain_holders); a killable user's session is terminated as the
        outage starts. One search_path read and one locks.HOLDERS_SQL."""
        required = locks.required_locks(self.plan.pending_cold, locks.split_identifiers(
            query(self.observer, "SELECT current_setting('search_path') AS path")[0]['path']))
        if not required:
            return
        rows = locks.conflicting(query(self.observer, locks.HOLDERS_SQL, locks.lookup(required, self.primary.get('user'))),
                                 required)
        outlasting, dummy, prepared = locks.outlasting_holders(rows, pgbouncer_of, wait, self.killable_users,
                                                               self.pgbouncer_addrs)
        if not (outlasting or prepared):
            return
        label = endpoint_label(self.primary)
        held = ['%s %s' % (describe_session(rows[0]), locks.held_text(rows)) for dummy, rows in sorted(outlasting.items())]
        held += ['%s %s' % (locks.prepared_text(rows[0]), locks.held_text(rows)) for dummy, rows in sorted(prepared.items())]
        fixes = ['end %s (SELECT pg_terminate_backend(pid) for pid %s on %s) or let %s commit' % (
            'it' if len(outlasting) == 1 else 'them', ', '.join(str(pid) for pid in sorted(outlasting)), label,
            'it' if len(outlasting) == 1 else 'them')] if outlasting else []
        fixes += [locks.prepared_fix(label, [rows[0] for dummy, rows in sorted(prepared.items())])] if prepared else []
        raise OutageError('%s: %s; the cold transaction would wait for %s its whole %.1f s, every client queued, and '
                          'then abort: refused just before the window, nothing paused or applied (the lock was taken '
                          'since the pre-flight) - %s, then deploy again (fastdowntime_blocking_sessions: warn opens '
                          'the window anyway)' % (label, '; '.join(held), 'it' if len(held) == 1 else 'them', wait,
                                                  '; '.join(fixes)))

    def holder_backends(self, found):
        """For the drain (its ``backends``): each holder's backend found on the
        server its entry points at - the primary's or the standby behind a
        read-only entry - (sessions.match_backends on that server's
        BACKENDS_SQL rows) and that server's label as ``server``. Runs after
        every pause is undone (a missed deadline), or inside the drain for the
        terminate policy (the primary's only: it ends only those)."""
        by_console = dict((c.label, c) for c in self.consoles + self.read_consoles)
        groups = {}
        for holder in found:
            console = by_console.get(holder.get('pgbouncer'))
            standby = self._standby_of(console).get(holder.get('entry')) if console is not None else None
            holder['server'] = endpoint_label(standby) if standby else endpoint_label(self.primary)
            groups.setdefault(holder['server'], []).append(holder)
        for server, holders in groups.items():
            try:
                match_backends(holders, self._server_rows(server, BACKENDS_SQL))
            except (psycopg2.Error, SchemaError):
                continue  # unread: the holder is named without its backend
        return found

    @staticmethod
    def _connect_standby(endpoint):
        """The replay wait's async connection to one standby, before the clock. A standby
        lost since the pre-flight: OutageError naming it, the cause and the fix."""
        try:
            return connect(endpoint, async_=True, application_name='fastdowntime-replay')
        except ConnectError as exc:
            fix = connect_action(exc.kind, endpoint_label(endpoint)) or 'bring %s back' % endpoint_label(endpoint)
            raise OutageError('%s -> %s (or remove it from fastdowntime_standbys); nothing paused, nothing applied'
                              % (one_line(exc), fix))

    def split_consoles(self):
        """Keep the read-write entries on self.consoles and open one console per
        pgbouncer process for its read-only entries (before the clock starts).
        Each console on its own: a host may have several processes (consoles)."""
        self.read_consoles = []
        for console in self.consoles:
            name = console.endpoint.get('name') or console.label
            read_only = serving_entries(name, console.entries, self.standbys)
            console.entries = [entry for entry in console.entries if entry not in read_only]
            if read_only:
                self.read_consoles.append(Console(console.endpoint, databases=read_only))
        # A pgbouncer that serves only standbys has no read-write entry to drain.
        self.consoles = [c for c in self.consoles if c.entries]
        open_consoles(self.read_consoles)

    def client_settings(self, sql):
        """One row of ``sql`` on the primary as a client's session sees it (the
        collection's own sessions commit locally: postgres.LOCAL_COMMITS)."""
        conn = connect(self.primary, autocommit=True, application_name='fastdowntime-observer', local_commits=False)
        try:
            return query(conn, sql)[0]
        finally:
            conn.close()

    def _cap_budget(self):
        """pgbouncer disconnects a client queued longer than its query_wait_timeout
        (or query_timeout): the outage budget ends a margin before the first such
        timeout of any pgbouncer (pgbouncer_console.budget_cap); none left ->
        refused before anything is paused."""
        cap = budget_cap(dict((c.label, c.config) for c in self.consoles))
        try:
            self.clock.cap(cap)
        except BudgetExceeded:
            raise OutageError('%(pgbouncer)s: %(setting)s = %(timeout_seconds)g s disconnects queued clients before '
                              'any outage could end: raise %(setting)s in its pgbouncer.ini (and RELOAD); nothing '
                              'paused, nothing applied' % cap)

    # -- the window ----------------------------------------------------------
    def run(self):
        """The window. Returns the result dict; raises OutageError (with .result) on abort."""
        result = {'deploy_id': self.deploy_id, 'changed': False, 'window_mode': self.window_mode}
        if not self.plan.pending_cold:
            result.update(outcome=outcomes.NOTHING_TO_DO, phases=[], outage=None)
            return result
        window = Window()
        self.clock.start()
        window.started_at = time.time()
        window.cpu_started = time.process_time()
        try:
            self._terminate_killable()
            self.mode.phases(self, window)
            window.step = None
        except (ConsoleError, SchemaError, BudgetExceeded, ConnectError) as exc:
            window.error = exc
            window.lagging = sorted(set(window.lagging) | set(getattr(exc, 'lagging', None) or []))
        finally:
            # Always, whatever happened (an unexpected error too, which then goes on up).
            self.mode.resume(self, window)
            window.end()
            self.verify_resumed(window)
        self.mode.after(self, window)
        self.cross_check_replay(window)
        result.update(
            changed=window.changed,
            phases=self.clock.phases,
            budget_ms=self.clock.budget.budget_ms,
            outage=outage_summary(window, self.mode.summary(window)),
            resumed=[dict((k, v) for k, v in r.items() if k not in ('answered_at', 'answered_cpu'))
                     for r in window.resumed],  # this process's clock readings mean nothing to the caller
            disabled_entries=window.disabled,
            plan=self.plan.as_dict(),
        )
        # Before the clock: how far behind each standby was and how long it took to catch up.
        result['outage']['standby_catch_up'] = [dict((k, s.get(k)) for k in ('label', 'bytes_behind', 'catch_up_seconds'))
                                                for s in self.standby_catch_up]
        if self.window_mode == 'split':
            result['replay_left_paused'] = [endpoint_label(e) for e, dummy in window.replay_errors]
        return self._finish(result, window)

    def cold_transaction(self, window):
        """The cold transaction (one round trip, schema.apply_cold); sets
        ``window.applied`` once it committed."""
        window.step = 'schema application'
        window.applied = apply_cold(self.conn, self.plan.pending_cold, self.clock, deploy_id=self.deploy_id,
                                    observer=self.observer, host=endpoint_label(self.primary),
                                    **self._table_kwargs(lock_retry=True))

    def standby_replay(self, window):
        """Every standby has replayed the commit (replication.wait_for_replay)."""
        window.step = 'standby replay'
        window.replay = replication.wait_for_replay(self.observer, self.standby_conns, window.applied['commit_lsn'],
                                                    self.clock, xid=window.applied['commit_xid'], cross_check=False)

    def _terminate_killable(self):
        """Inside the window: terminate the killable users' direct connections,
        never one of pgbouncer's server connections (SHOW SERVERS remote_pid on
        every console, asked at once) nor one from a pgbouncer host."""
        if not self.killable_users:
            return
        with self.clock.phase('terminate_killable', host=endpoint_label(self.primary)) as rec:
            pids = set()
            for dummy, rows, error in in_parallel(lambda c: c.show('SERVERS'), self.consoles + self.read_consoles):
                if error is not None:
                    raise error
                pids |= server_pids(rows)
            rec['detail']['terminated'] = terminate_killable(self.observer, self.killable_users, self.db_name,
                                                             pids, self.pgbouncer_addrs)

    def verify_resumed(self, window):
        """Once the RESUMEs are answered (the clients flow again, the outage
        has ended): SHOW DATABASES on every console at once, each entry neither
        paused nor disabled (pgbouncer_console.verify_resumed). When it finds
        one left to resume or enable, the outage ends only when that is done.
        A failure joins ``window.resume_error``."""
        try:
            # A split window verifies each pgbouncer's write and read entries on two
            # consoles: their rows say which (as resume_write/resume_read do).
            read = set(id(console) for console in self.read_consoles)
            fixed = verify_resumed(self.consoles + self.read_consoles, self.clock,
                                   phase=lambda console: ('resume_verify_read' if id(console) in read
                                                          else 'resume_verify_write' if read else 'resume_verify'))
        except ConsoleError as exc:
            window.resume_error = exc if window.resume_error is None else \
                ConsoleError('%s; %s' % (window.resume_error, exc))
            return
        if any(f['resumed'] or f['enabled'] for f in fixed):
            window.end(now=True)  # what verify fixed ends the outage, not the first RESUMEs

    def cross_check_replay(self, window):
        """After the window: the primary's pg_stat_replication view of each
        standby beside its own answer (replication.cross_check_replay, each
        standby's row found by the identity rules) - a report, never a gate,
        so a failure to read it is a warning (the result's and the timeline's),
        not raised."""
        if not window.replay or not window.replay.get('standbys'):
            return
        # A failure to read it is one warning in window.replay['warnings'] (outage_summary's).
        replication.cross_check_replay(self.observer, window.replay, self.standby_identities,
                                       label=endpoint_label(self.primary))

    def resume_consoles(self, lagging, consoles=None, phase='resume'):
        """Resume every entry of ``consoles`` (default: self.consoles) except the
        entries serving a standby in ``lagging`` (endpoint labels): those are
        fenced - DISABLE (no new clients), KILL (the queued and connected clients
        go, never onto the old schema), RESUME (KILL leaves an entry paused) -
        and reported. Returns (resume() results, ConsoleError or None,
        [(pgbouncer label, entry) fenced]); never raises ConsoleError."""
        consoles = self.consoles if consoles is None else consoles
        disabled, fence_errors = [], []
        for console, fenced in zip(consoles, replication.fenced_entries(
                lagging, self.standbys, [(c.endpoint.get('name'), c.entries) for c in consoles])):
            console.entries = [e for e in console.entries if e not in fenced]
            for entry in fenced:
                try:
                    console.close_pause_connections()
                    for verb in ('DISABLE', 'KILL', 'RESUME'):
                        console.command(verb, entry)
                    disabled.append((console.label, entry))
                except ConsoleError as exc:
                    fence_errors.append(str(exc))
        try:
            resumed = resume(consoles, self.clock, phase=phase, verify=False)
        except ConsoleError as exc:
            return [], exc, disabled
        if fence_errors:
            return resumed, ConsoleError('; '.join(fence_errors)), disabled
        return resumed, None, disabled

    # -- after the window ----------------------------------------------------
    def clear_pause_marks(self, still_paused):
        """After the window: forget the markers of the standbys whose replay runs
        again (best effort: a marker left behind only lets the next pre-flight
        resume that standby's pause). Returns the psycopg2 error, None when done."""
        try:
            replication.clear_pauses(self.observer, [replication.marker_key(e) for e in self.standbys
                                                     if endpoint_label(e) not in still_paused])
        except psycopg2.Error as exc:
            return exc
        return None

    def not_recorded(self, result, what, exc, fix):
        """A record after the window that could not be written (it never fails
        the deploy): one line in the outage's warnings - printed once under the
        timeline, kept in report.json/html - '``what`` on <primary>: <cause> ->
        ``fix``'. Returns 'not written: <cause>' for the result's own field."""
        # A DeployLogError names the address already: the line names the primary once.
        cause = re.sub(r'^\[?[\w.:-]+\]?:\d+: ', '', one_line(exc))
        line = '%s on %s: %s -> %s' % (what, endpoint_label(self.primary), cause, fix)
        if isinstance(result.get('outage'), dict):
            result['outage'].setdefault('warnings', []).append(line)
        else:
            result.setdefault('warnings', []).append(line)
        return 'not written: %s' % cause

    def revisions(self, timeout=replication.REVISION_READ_SECONDS):
        """What the schema is now, after resume (never inside the window), on the
        connections the window used (replication.schema_now's rows)."""
        return replication.schema_now(self.observer, endpoint_label(self.primary), self.standby_conns,
                                      self.revision_table, timeout)

    def _verify(self, result, window):
        """After the window, once the clients it queued are served
        (logins.wait_queued_served): every entry of every console asked by a
        client (pgbouncer_console.probe_consoles); the report says what it saw."""
        consoles = self.consoles + self.read_consoles
        disabled = window.disabled
        fenced = set(disabled)
        queue_served_s = logins.wait_queued_served(consoles, window.ended) if window.ended is not None else None
        probed = probe_consoles(consoles, lambda c: [e for e in c.entries if (c.label, e) not in fenced])
        verdict = probe_verdict(probed, fenced)
        ok, line = describe_verdict(verdict)
        # The probe logs in as one user; every other pool's clients need pgbouncer's own login again.
        unserved, unread = logins.unserved_after_resume(consoles)
        if unserved and ok:
            ok, line = False, logins.describe_unserved(unserved)
        result['pgbouncer_state'] = {'probe': probed, 'answering_clients': ok, 'statement': line,
                                     'disabled': ['%s on %s' % (e, b) for b, e in disabled],
                                     'waiting_without_server': dict(
                                         (label, [{'entry': e, 'user': u, 'waiting': n, 'maxwait_s': round(w, 1)}
                                                  for e, u, n, w in pools]) for label, pools in unserved.items()),
                                     'pools_not_read': unread,
                                     'probe_waited_for_queue_ms': None if queue_served_s is None
                                     else round(queue_served_s * 1000, 1)}
        if isinstance(result.get('outage'), dict):
            result['outage']['pgbouncer_state'] = line
        if self.clock.budget.capped_by:
            result['budget_capped_by'] = self.clock.budget.capped_by
        return ok, line, bool(unserved)

    def _finish(self, result, window):
        """Done: log and return. Aborted: log, then raise the one-line OutageError."""
        result['revisions'] = self.revisions()
        self._record_fences(result, window)
        if window.marks_left is not None:
            result['pause_marks'] = self.not_recorded(
                result, 'replay-pause markers not removed (%s)' % replication.PAUSE_MARKER_TABLE, window.marks_left,
                'the next pre-flight takes a replay pause of those standbys for this deploy\'s and resumes it: '
                'DELETE FROM %s on the primary' % replication.PAUSE_MARKER_TABLE)
        if self.estimate_ms is not None and result.get('outage'):
            result['outage']['estimate_ms'] = self.estimate_ms
        answering, statement, unserved = self._verify(result, window)
        self._restore_login_retry(result)
        resume_error = window.resume_error
        logins_failed = not answering and unserved and resume_error is None
        if not answering and resume_error is None and not logins_failed:
            resume_error = ConsoleError(statement)
            statement = None
        if window.error is None and resume_error is None and not window.replay_errors and not logins_failed:
            result['outcome'] = outcomes.DONE
            self._log(result)
            return result
        aborted_phase = window.step or ('replay resume' if window.replay_errors else
                                        'server logins' if logins_failed else 'resume')
        result['outcome'] = outcomes.aborted_in(aborted_phase)
        self._log(result, failed=True)
        parts = []
        if window.error is not None:
            parts.append(one_line(window.error))
            if result['changed']:
                parts.append('the patches ARE committed on the primary')
            elif 'nothing applied' not in parts[-1]:  # the schema engine may have said so already
                parts.append('nothing applied')
        elif logins_failed and result['changed']:
            parts.append('the patches ARE committed on the primary and every pgbouncer resumed')
        if resume_error is not None:
            parts.append('RESUME FAILED: %s - resume by hand: psql -h <pgbouncer> -p <port> -U <admin> pgbouncer '
                         '-c "RESUME"' % one_line(resume_error))
        else:
            parts.append(statement)
        parts.extend(self.mode.abort_notes(window))
        if window.disabled:
            parts.append('left DISABLED until their standby catches up: %s - then ENABLE them'
                         % ', '.join('%s on %s' % (e, b) for b, e in window.disabled))
        if self.clock.budget.capped_by:
            parts.append('budget capped at %(seconds)g s by %(pgbouncer)s %(setting)s = %(timeout_seconds)g s' %
                         self.clock.budget.capped_by)
        shown = ('drain', 'drain_write', 'drain_read', 'cold_transaction', 'standby_replay', 'resume',
                 'resume_write', 'resume_read')
        timings = ', '.join('%s%s %s ms' % (p['phase'], ' on %s' % p['host'] if p.get('host') else '', p['duration_ms'])
                            for p in self.clock.phases if p['phase'] in shown)
        after = logins_failed and window.error is None and not window.replay_errors
        raise OutageError('%s in %s: %s (%s)' % ('deploy failed after the outage' if after else 'outage aborted',
                                                 aborted_phase, '; '.join(parts), timings), result)

    def _restore_login_retry(self, result):
        """After the verification: server_login_retry back on every pgbouncer
        process prepare lowered it on (pgbouncer_console.lower_login_retry);
        one warning line per process left lowered, naming the command that
        restores it. ``result['server_login_retry']``: {'lowered_to',
        'restored' ({pgbouncer: value}), 'not_restored' (lines)}."""
        if not self.login_retry_lowered:
            return
        consoles = self.consoles + self.read_consoles
        left = restore_login_retry(consoles)
        # A console keeps the value it lowered from until it is set back (Console.restore_login_retry).
        still_lowered = set(c.label for c in consoles if c.login_retry_lowered_from is not None)
        result['server_login_retry'] = {
            'lowered_to': LOGIN_RETRY_IN_WINDOW,
            'restored': dict((label, value) for label, value in self.login_retry_lowered.items()
                             if label not in still_lowered),
            'not_restored': left}
        if left and isinstance(result.get('outage'), dict):
            result['outage'].setdefault('warnings', []).extend(left)

    def _record_fences(self, result, window):
        """After the window: the entries it left fenced are the fences recorded on the
        primary (replication.mark_fenced), an earlier window's others forgotten (the
        resume ENABLEd them: their standby replayed this commit). Best effort: a
        failure is reported in ``result['fences_recorded']``, never a failed deploy."""
        try:
            names = dict((c.label, c.endpoint.get('name')) for c in self.consoles + self.read_consoles)
            rows = replication.fence_rows(window.disabled, window.lagging, self.standbys, names)
            now = set((row['pgbouncer'], row['entry']) for row in rows)
            replication.clear_fences(self.observer, [(f['pgbouncer'], f['entry']) for f in self.fences
                                                     if (f['pgbouncer'], f['entry']) not in now])
            replication.mark_fenced(self.observer, self.deploy_id, rows)
            result['fences_recorded'] = len(rows)
        except psycopg2.Error as exc:
            fenced = ', '.join('%s on %s' % (e, b) for b, e in window.disabled)
            result['fences_recorded'] = self.not_recorded(
                result, 'fence records not written (%s)' % replication.FENCE_TABLE, exc,
                'no later deploy ENABLEs %s: ENABLE them by hand once their standby has replayed this commit'
                % fenced if fenced else 'nothing is fenced now (an earlier fence record may stay: the next deploy '
                'checks it again)')

    # -- nothing pending: entries an earlier window fenced ----------------------
    def unfence(self, check_mode=False):
        """ENABLE the entries an earlier window left fenced (replication.read_fences,
        read by prepare()) whose standby has now replayed past the fence's position;
        forget those someone ENABLEd; keep the others DISABLED, each named in one
        line (replication.still_fenced_line). Outside any PAUSE; in check mode
        nothing is changed. Returns {'changed', 'outcome', 'phases' (one 'unfence'
        record per pgbouncer that ENABLEd something), 'unfenced', 'still_fenced'
        (lines), 'fences' (the plan)}."""
        result = {'deploy_id': self.deploy_id, 'changed': False, 'outcome': outcomes.NOTHING_TO_DO,
                  'phases': [], 'outage': None, 'unfenced': [], 'still_fenced': [], 'fences': []}
        if not self.fences:
            return result
        consoles = [Console(p, db_name=self.db_name, databases=self.drain_entries) for p in self.pgbouncers]
        disabled = {}
        for console, dummy, error in in_parallel(lambda c: c.open(), consoles):
            if error is None:
                try:
                    rows = console.show('DATABASES')
                    disabled[console.label] = set(row['name'] for row in rows if str(row.get('disabled')) == '1')
                    continue
                except ConsoleError:
                    pass
            disabled[console.label] = None
        by_label = dict((endpoint_label(s), s) for s in self.standbys)
        replayed = {}
        for fence in self.fences:
            for label in [s.strip() for s in fence['standby'].split(',') if s.strip()]:
                replayed.setdefault(label, self._replayed_past(by_label.get(label), fence['lsn']))
        plan = replication.unfence_plan(self.fences, disabled, replayed)
        result['fences'] = plan
        self.clock.start()
        done = []
        try:
            for console in consoles:
                enable = [step for step in plan if step['action'] == 'enable' and step['pgbouncer'] == console.label]
                if not enable or check_mode:
                    continue
                with self.clock.phase('unfence', host=console.label,
                                      detail={'entries': [s['entry'] for s in enable],
                                              'why': [s['why'] for s in enable]}):
                    for step in enable:
                        console.command('ENABLE', step['entry'])
                        done.append(step)
                        result['unfenced'].append('%s on %s (%s)' % (step['entry'], step['pgbouncer'], step['why']))
        except ConsoleError as exc:
            result['still_fenced'].append('%s -> ENABLE it by hand once its standby has replayed' % one_line(exc))
        finally:
            for console in consoles:
                console.close()
            replication.clear_fences(self.observer, [(s['pgbouncer'], s['entry']) for s in plan
                                                     if s in done or (s['action'] == 'forget' and not check_mode)])
        result['still_fenced'].extend(replication.still_fenced_line(s) for s in plan if s['action'] == 'keep')
        result['phases'] = self.clock.phases
        result['changed'] = bool(done)
        return result

    def _replayed_past(self, endpoint, lsn):
        """(True/False, its replay position or why not) for one standby of a fence."""
        if endpoint is None:
            return False, 'not in fastdowntime_standbys'
        try:
            conn = connect(endpoint, autocommit=True, application_name='fastdowntime-unfence')
        except ConnectError as exc:
            return False, one_line(exc)
        try:
            row = query(conn, replication.FENCE_REPLAYED_SQL, (lsn,))[0]
            return bool(row['replayed']), 'replayed up to %s' % row['replay_lsn']
        except psycopg2.Error as exc:
            return False, one_line(exc)
        finally:
            conn.close()

    def _log(self, result, failed=False):
        """The deploy-log row, written after RESUME so it never lengthens the outage.
        A failure to log is reported, never turned into a failed deploy."""
        try:
            report = build_report(entry_from_result(result, task='outage', action='fastdowntime.postgresql.outage',
                                                    failed=failed))
            report['overrides'] = self.overrides
            write_deploy_log(self.observer, report, deploy_id=self.deploy_id)
            result['deploy_log'] = 'written'
        except (DeployLogError, Exception) as exc:  # noqa: B014 - logging must never fail the deploy
            result['deploy_log'] = self.not_recorded(
                result, 'deploy log row not written', exc,
                'this deploy is missing from the log (cycle_time, the audit); its report.json holds the run: '
                'fix that on the primary before the next deploy')
        if isinstance(result.get('outage'), dict):
            result['outage']['deploy_log'] = result['deploy_log']

    def _table_kwargs(self, lock_retry=False):
        kwargs = {}
        if self.revision_table:
            kwargs['revision_table'] = self.revision_table
        if lock_retry and self.lock_retry is not None:
            kwargs['lock_retry'] = self.lock_retry
        return kwargs

    def close(self):
        for conn in [self.conn, self.observer] + [c for dummy, c in self.standby_conns]:
            try:
                if conn is not None:
                    conn.close()
            except Exception:  # closing is best effort
                pass
        for console in self.consoles + self.read_consoles:
            console.close()


def _span_ms(began, ended):
    if began is None or ended is None:
        return None
    return round((ended - began) * 1000, 1)
