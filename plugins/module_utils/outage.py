# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The outage window in one process: drain → cold patches → standbys replayed → resume.

Every connection is opened and every input checked BEFORE the clock starts, so
the window itself pays only round trips, never an Ansible task boundary or a
connection set-up. Whatever fails inside the window takes the same path:
ROLLBACK (apply_cold already did it) and RESUME of every pgbouncer; entries that
serve a standby without the new schema stay disabled and are named.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import socket
import time

from ansible_collections.fastdowntime.postgresql.plugins.module_utils.budget import (
    BudgetClock, BudgetExceeded)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.deploylog import (
    DeployLogError, ensure_deploy_log, new_deploy_id, write_deploy_log)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.report import (
    build_report, entry_from_result)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.pgbouncer_console import (
    Console, ConsoleError, drain, open_consoles, resume)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import (
    ConnectError, connect, endpoint_label, one_line, query)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.patchset import (
    PatchSetError, load_patch_set, plan as make_plan, refuse_drift)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.schema import (
    SchemaError, applied_revisions, apply_cold, ensure_revision_table, wait_for_replay)


class OutageError(Exception):
    """The outage failed or was refused; str() is the operator's message."""

    def __init__(self, message, result=None):
        Exception.__init__(self, message)
        self.result = result or {}


def standby_entries_by_pgbouncer(standbys, pgbouncer_names):
    """{standby name: {pgbouncer name: [entries]}} from each standby's
    ``pgbouncer_databases`` ("entry" on every pgbouncer, or "pgbouncer:entry")."""
    mapping = {}
    for standby in standbys:
        per = {}
        for item in standby.get('pgbouncer_databases') or []:
            if ':' in item:
                bouncer, entry = item.split(':', 1)
                targets = [bouncer]
            else:
                entry, targets = item, list(pgbouncer_names)
            for bouncer in targets:
                per.setdefault(bouncer, []).append(entry)
        mapping[standby.get('name') or standby['host']] = per
    return mapping


def _addresses(host):
    try:
        return {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        return {host}


KILLABLE_SQL = """
SELECT pid, usename, host(client_addr) AS addr
  FROM pg_stat_activity
 WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
   AND usename = ANY(%s) AND datname = %s
"""


def terminate_killable(conn, users, db_name, pgbouncer_addrs):
    """Terminate direct connections (not from a pgbouncer) of ``users``; returns them."""
    if not users:
        return []
    victims = [row for row in query(conn, KILLABLE_SQL, (list(users), db_name))
               if row['addr'] not in pgbouncer_addrs]
    for row in victims:
        query(conn, 'SELECT pg_terminate_backend(%s)', (row['pid'],))
    return victims


class Outage:
    """Prepare (outside the window), then run the window once."""

    def __init__(self, primary, standbys, pgbouncers, db_name, patch_dir, budget_seconds,
                 revision_table=None, deploy_id=None, drain_policy='abort', pgbouncer_databases=None,
                 killable_users=None, reserve_seconds=None, lock_retry=None):
        self.primary = dict(primary, dbname=db_name)
        self.standbys = [dict(s, dbname=db_name) for s in standbys]
        self.pgbouncers = list(pgbouncers)
        self.db_name = db_name
        self.patch_dir = patch_dir
        self.revision_table = revision_table
        self.deploy_id = deploy_id or new_deploy_id()
        self.drain_policy = drain_policy
        self.pgbouncer_databases = list(pgbouncer_databases or [])
        self.killable_users = list(killable_users or [])
        self.lock_retry = lock_retry
        kwargs = {} if reserve_seconds is None else {'reserve_seconds': reserve_seconds}
        self.clock = BudgetClock(budget_seconds, **kwargs)
        self.plan = None
        self.conn = None          # the primary, for the one transaction
        self.observer = None      # the primary, autocommit: locks, terminate, replication
        self.standby_conns = []   # (endpoint, async connection)
        self.consoles = []

    # -- before the window -------------------------------------------------
    def prepare(self, check_mode=False):
        """Connect everywhere and compute the plan; raise OutageError on any problem.
        Read-only in check mode (the revision table is not created)."""
        try:
            patch_set = load_patch_set(self.patch_dir)
            self.conn = connect(self.primary, application_name='fastdowntime-deploy')
            self.observer = connect(self.primary, autocommit=True, application_name='fastdowntime-observer')
            table = self._table_kwargs()
            ensure_revision_table(self.observer, check_mode=check_mode, **table)
            ensure_deploy_log(self.observer, check_mode=check_mode)
            applied = applied_revisions(self.observer, **table)
            self.plan = make_plan(patch_set, applied)
            refuse_drift(self.plan)
            if self.plan.pending_hot:
                raise OutageError('%s: hot patches are still pending (%s): apply them live first '
                                  '(schema_apply state=hot) - they cannot run inside the outage' % (
                                      endpoint_label(self.primary),
                                      ', '.join(p.name for p in self.plan.pending_hot)))
            if not self.plan.pending_cold:
                return self.plan
            self.standby_conns = [(s, connect(s, async_=True, application_name='fastdowntime-replay'))
                                  for s in self.standbys]
            self.consoles = [Console(p, db_name=self.db_name, databases=self.pgbouncer_databases)
                             for p in self.pgbouncers]
            open_consoles(self.consoles)
            # The PAUSE connections too: set-up must not count against the outage.
            for console in self.consoles:
                console.open_pause_connections(console.entries)
        except (ConnectError, ConsoleError, PatchSetError, SchemaError, DeployLogError) as exc:
            self.close()
            raise OutageError(one_line(exc))
        except OutageError:
            self.close()
            raise
        return self.plan

    # -- the window ----------------------------------------------------------
    def run(self):
        """The window. Returns the result dict; raises OutageError (with .result) on abort."""
        result = {'deploy_id': self.deploy_id, 'changed': False}
        if not self.plan.pending_cold:
            result.update(outcome='nothing to do', phases=[], outage=None)
            return result
        pgbouncer_addrs = set()
        for p in self.pgbouncers:
            pgbouncer_addrs |= _addresses(p['host'])
        error = None
        failed_phase = None
        applied = None
        replay = None
        lagging = []
        self.clock.start()
        outage_started = time.time()
        try:
            if self.killable_users:
                with self.clock.phase('terminate_killable', host=endpoint_label(self.primary)) as rec:
                    victims = terminate_killable(self.observer, self.killable_users, self.db_name,
                                                 pgbouncer_addrs)
                    rec['detail']['terminated'] = victims
            failed_phase = 'drain'
            drain(self.consoles, policy=self.drain_policy, primary_conn=self.observer, clock=self.clock)
            failed_phase = 'schema application'
            applied = apply_cold(self.conn, self.plan.pending_cold, self.clock, deploy_id=self.deploy_id,
                                 observer=self.observer, host=endpoint_label(self.primary),
                                 **self._table_kwargs(lock_retry=True))
            result['changed'] = True
            failed_phase = 'standby replay'
            replay = wait_for_replay(self.observer, self.standby_conns, applied['commit_lsn'], self.clock)
            failed_phase = None
        except (ConsoleError, SchemaError, BudgetExceeded, ConnectError) as exc:
            error = exc
            lagging = list(getattr(exc, 'lagging', None) or [])
        finally:
            # Always: resume every pgbouncer; entries serving a lagging standby stay disabled.
            resumed, resume_error, disabled = self._resume(lagging)
        outage_ended = time.time()
        max_wait = max([r.get('maxwait_ms') or 0 for r in resumed] or [0])
        result.update(
            phases=self.clock.phases,
            budget_ms=round(self.clock.budget * 1000, 1),
            outage={
                'started_at': outage_started,
                'ended_at': outage_ended,
                'outage_ms': round((outage_ended - outage_started) * 1000, 1),
                'max_client_wait_ms': max_wait,
                'standby_replay_ms': {s['name']: s.get('replay_ms') for s in (replay or {}).get('standbys', [])},
                'patches': (applied or {}).get('patches', []),
                'transaction_ms': (applied or {}).get('transaction_ms'),
                'commit_lsn': (applied or {}).get('commit_lsn'),
            },
            resumed=resumed,
            disabled_entries=disabled,
            plan=self.plan.as_dict(),
        )
        if error is None and resume_error is None:
            result['outcome'] = 'done'
            self._log(result)
            return result
        result['outcome'] = 'aborted in %s' % (failed_phase or 'resume')
        self._log(result, failed=True)
        parts = []
        if error is not None:
            parts.append(one_line(error))
            if result['changed']:
                parts.append('the patches ARE committed on the primary')
            else:
                parts.append('nothing applied')
        if resume_error is not None:
            parts.append('RESUME FAILED: %s - resume by hand: psql -h <pgbouncer> -p <port> -U <admin> pgbouncer '
                         '-c "RESUME"' % one_line(resume_error))
        else:
            parts.append('every pgbouncer resumed')
        if disabled:
            parts.append('left DISABLED until their standby catches up: %s - then ENABLE them'
                         % ', '.join('%s on %s' % (e, b) for b, e in disabled))
        timings = ', '.join('%s %s ms' % (p['phase'], p['duration_ms']) for p in self.clock.phases
                            if p['phase'] in ('drain', 'cold_transaction', 'standby_replay', 'resume'))
        raise OutageError('outage aborted in %s: %s (%s)' % (result['outcome'][11:], '; '.join(parts), timings),
                          result)

    def _log(self, result, failed=False):
        """The deploy-log row, written after RESUME so it never lengthens the outage.
        A failure to log is reported, never turned into a failed deploy."""
        try:
            report = build_report(entry_from_result(result, task='outage', action='fastdowntime.postgresql.outage',
                                                    failed=failed))
            write_deploy_log(self.observer, report, deploy_id=self.deploy_id)
            result['deploy_log'] = 'written'
        except (DeployLogError, Exception) as exc:  # noqa: B014 - logging must never fail the deploy
            result['deploy_log'] = 'not written: %s' % one_line(exc)

    def _table_kwargs(self, lock_retry=False):
        kwargs = {}
        if self.revision_table:
            kwargs['mode'] = self.revision_table
        if lock_retry and self.lock_retry is not None:
            kwargs['lock_retry'] = self.lock_retry
        return kwargs

    def _resume(self, lagging):
        """Resume everything except the entries serving a standby in ``lagging``
        (endpoint labels): those are fenced - DISABLE (no new clients), KILL (the
        queued and connected clients go, never onto the old schema), RESUME (KILL
        leaves an entry paused) - and reported."""
        fenced = {}
        lagging_names = {s.get('name') for s in self.standbys if endpoint_label(s) in set(lagging)}
        for standby, per in standby_entries_by_pgbouncer(
                [s for s in self.standbys if s.get('name') in lagging_names],
                [c.endpoint.get('name') for c in self.consoles]).items():
            for console in self.consoles:
                for entry in per.get(console.endpoint.get('name'), []):
                    if entry in console.entries:
                        fenced.setdefault(console, []).append(entry)
        disabled, fence_errors = [], []
        for console, entries in fenced.items():
            console.entries = [e for e in console.entries if e not in entries]
            for entry in entries:
                try:
                    console.close_pause_connections()
                    for verb in ('DISABLE', 'KILL', 'RESUME'):
                        console.command(verb, entry)
                    disabled.append((console.label, entry))
                except ConsoleError as exc:
                    fence_errors.append(str(exc))
        try:
            resumed = resume(self.consoles, self.clock)
        except ConsoleError as exc:
            return [], exc, disabled
        if fence_errors:
            return resumed, ConsoleError('; '.join(fence_errors)), disabled
        return resumed, None, disabled

    def close(self):
        for conn in [self.conn, self.observer] + [c for _, c in self.standby_conns]:
            try:
                if conn is not None:
                    conn.close()
            except Exception:  # closing is best effort
                pass
        for console in self.consoles:
            console.close()
