"""A long query that began after the pre-flight passed - a report through the read-only entry
(fdtdemo_ro: a standby) or the read-write one (fdtdemo: the primary), started during the hot
patches - holds the drain: every client waits the drain's whole deadline, then the window aborts.

Refused just before the window's clock when it already runs longer than the drain could wait
(outage.Outage.refuse_drain_holders, the pre-flight's rule read again), nothing paused; and when the
drain's deadline is still hit (a query begun after that last look), the abort line names the same
facts - host, entry, backend pid, user, application, how long, the fix - and never the query's text.
"""

import threading
import time
import uuid

import psycopg2
import pytest

from ansible_collections.fastdowntime.postgresql.plugins.module_utils.outage import Outage, OutageError
from deploy import REVISION_TABLE, assert_all_resumed, pg_one, run_playbook, table_exists, unique_major, write_patches

pytestmark = pytest.mark.usefixtures('scratch')

# A literal of the report's query: the operator's output must never show it (it might be a secret).
SECRET = 'report-token-4711'


class LongQuery:
    """A report through ``pgbouncer``'s ``entry``, running (pg_sleep) until stopped; ``pid``:
    its backend's pid on ``server`` (the lab host the entry points at)."""

    def __init__(self, lab, pgbouncer, entry, server, seconds=120):
        self.lab, self.server = lab, server
        self.conn = psycopg2.connect(lab.client_dsn(pgbouncer, entry), application_name='monthly-report',
                                     connect_timeout=10)
        self.marker = '%s-%s' % (SECRET, uuid.uuid4().hex)
        self.error = None
        self.thread = threading.Thread(target=self._run, args=(seconds,), daemon=True)
        self.thread.start()
        try:
            self.pid = self._backend_pid()
        except BaseException:
            self.stop()
            raise

    def _run(self, seconds):
        try:
            with self.conn.cursor() as cur:
                cur.execute("SELECT pg_sleep(%s), %s", (seconds, self.marker))
        except psycopg2.Error as exc:
            self.error = exc

    def _backend_pid(self):
        sql = "SELECT max(pid) FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s AND pid <> pg_backend_pid()"
        for dummy in range(100):
            pid = pg_one(self.lab, self.server, sql, ('%' + self.marker + '%',))
            if pid:
                return pid
            time.sleep(0.1)
        raise AssertionError('the report never showed on %s' % self.server)

    def running_for(self, seconds):
        """Wait until the query has run ``seconds`` on its server."""
        sql = "SELECT max(EXTRACT(EPOCH FROM clock_timestamp() - query_start))::float8 FROM pg_stat_activity WHERE pid = %s"
        while (pg_one(self.lab, self.server, sql, (self.pid,)) or 0) < seconds:
            time.sleep(0.1)

    def stop(self):
        self.conn.cancel()
        self.thread.join(10)
        self.conn.close()


def standby_endpoints(lab):
    """The lab's standbys, each with the read-only entry serving it (as inventories/lab/hosts.yml)."""
    return [dict(lab.pg(name), pgbouncer_entries=['%s:%s_ro' % (bouncer, lab.db_name)])
            for name, bouncer in (('standby1', 'pgbouncer1'), ('standby2', 'pgbouncer2'))]


def label(lab, host):
    return '%s (%s:5432)' % (host, lab.addr(host))


def assert_named(lab, text, query, entry, pgbouncer):
    """``query`` named in ``text``: host, entry, pid, user, application, how long, the fix; not its text."""
    assert 'pid %d (user fdt_app, application \'monthly-report\'' % query.pid in text, text
    assert 'through entry %s on %s,' % (entry, pgbouncer) in text or \
        '%s entry %s' % (pgbouncer, entry) in text, text
    assert 'SELECT pg_cancel_backend(%d) on %s' % (query.pid, label(lab, query.server)) in text, text
    assert 'active for ' in text and 'wait for it to finish' in text, text
    assert SECRET not in text and 'pg_sleep' not in text, text


def test_a_report_begun_after_the_preflight_is_refused_just_before_the_window(healthy_lab, tmp_path):
    """Through both entries at once: one line names both, before any PAUSE (the window's task, its
    pre-flight skipped as if it had passed before the reports began)."""
    lab = healthy_lab
    major = unique_major()
    table = 'fdt_lq%d' % major
    patch_dir = write_patches(tmp_path, major, ['CREATE TABLE %s (id int);' % table])
    budget = 3  # the drain waits 2.5 s (budget less reserve)
    reports = [LongQuery(lab, 'pgbouncer2', 'fdtdemo_ro', 'standby2'), LongQuery(lab, 'pgbouncer1', 'fdtdemo', 'primary')]
    try:
        for report in reports:
            report.running_for(budget)
        proc, dummy = run_playbook(lab, tmp_path, patch_dir, extra={'fastdowntime_budget_seconds': budget})
        out = proc.stdout
        assert proc.returncode != 0, out[-3000:]
        line = [text for text in out.splitlines() if 'refused just before the window' in text]
        assert len(line) == 1, out[-4000:]
        assert_named(lab, line[0], reports[0], 'fdtdemo_ro', 'pgbouncer2 (%s:6432)' % lab.addr('pgbouncer2'))
        assert_named(lab, line[0], reports[1], 'fdtdemo', 'pgbouncer1 (%s:6432)' % lab.addr('pgbouncer1'))
        assert 'the drain would wait for them its whole 2.5 s deadline' in line[0], line[0]
        assert 'Traceback' not in out and SECRET not in out, out[-3000:]
        # Nothing paused, nothing applied; the reports still run.
        assert_all_resumed(lab)
        assert not table_exists(lab, 'primary', table)
        assert all(report.thread.is_alive() for report in reports)
        # fastdowntime_blocking_sessions: warn (the operator vouched for them) opens the window anyway.
        outage = Outage(primary=lab.pg('primary'), standbys=standby_endpoints(lab), db_name=lab.db_name,
                        pgbouncers=[lab.pgbouncer('pgbouncer1'), lab.pgbouncer('pgbouncer2')],
                        budget_seconds=budget, patch_dir=patch_dir, revision_table=REVISION_TABLE,
                        blocking_sessions='warn')
        try:
            assert outage.prepare(check_mode=True).pending_cold
        finally:
            outage.close()
    finally:
        for report in reports:
            report.stop()


def test_a_report_begun_after_the_last_look_is_named_when_the_drain_misses_its_deadline(healthy_lab, tmp_path):
    """The reports begin after prepare's last look: the drain waits its deadline, resumes every
    pgbouncer and names each report's backend on its own server (the standby's too) with the fix."""
    lab = healthy_lab
    major = unique_major()
    table = 'fdt_lq%d' % major
    outage = Outage(primary=lab.pg('primary'), standbys=standby_endpoints(lab), db_name=lab.db_name,
                    pgbouncers=[lab.pgbouncer('pgbouncer1'), lab.pgbouncer('pgbouncer2')], budget_seconds=2,
                    patch_dir=write_patches(tmp_path, major, ['CREATE TABLE %s (id int);' % table]),
                    revision_table=REVISION_TABLE)
    reports = []
    try:
        outage.prepare()
        reports = [LongQuery(lab, 'pgbouncer2', 'fdtdemo_ro', 'standby2'),
                   LongQuery(lab, 'pgbouncer1', 'fdtdemo', 'primary')]
        with pytest.raises(OutageError) as caught:
            outage.run()
        text = str(caught.value)
        assert '\n' not in text
        assert text.startswith('outage aborted in drain: drain missed its ') and ' s deadline on ' in text, text
        assert_named(lab, text, reports[0], 'fdtdemo_ro', 'pgbouncer2 (%s:6432)' % lab.addr('pgbouncer2'))
        assert_named(lab, text, reports[1], 'fdtdemo', 'pgbouncer1 (%s:6432)' % lab.addr('pgbouncer1'))
        assert 'on %s - wait for it to finish' % label(lab, 'standby2') in text, text
        assert 'query: SELECT, ' in text and 'every pgbouncer paused by this drain was resumed' in text, text
        # The drain's own phase record says the same (report.json, the deploy log).
        drains = [p for p in outage.clock.phases if p['phase'] == 'drain' and p.get('status') == 'failed']
        assert drains and all('pg_cancel_backend' in p['detail']['error'] for p in drains), drains
        assert_all_resumed(lab)
        assert not table_exists(lab, 'primary', table)
    finally:
        outage.close()
        for report in reports:
            report.stop()
