"""Fault scenarios through the fastdowntime playbook (pre-flight, hot patches, the outage) on the lab,
each under a client load through both pgbouncers. Each asserts that service is back (every pgbouncer
entry resumed), the schema is all-or-nothing, no confirmed commit is lost, and the error text names
the host and the cause without a traceback or a secret.

The other fault scenarios live beside the feature they break: test_outage.py (a failing patch, the
budget spent, the controller killed, a standby cut off inside the window) and test_app_restart.py
(an app server failing its health check).
"""

import datetime
import functools
import json
import threading
import time

import psycopg2
import pytest

import scenarios
from deploy import (
    assert_all_resumed, assert_clean_error, assert_disarmed, assert_nothing_lost, deploy_under_load, pgbouncer_flags,
    run_playbook, table_exists, unique_major, write_patches)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.report import check_report_path

pytestmark = [pytest.mark.faults, pytest.mark.usefixtures('scratch')]

FULL = scenarios.FULL


def test_client_transaction_open_past_the_drain_deadline(healthy_lab, tmp_path):
    lab = healthy_lab
    major = unique_major()
    patch_dir = write_patches(tmp_path, major, ['CREATE TABLE fdt_d%d (id int);' % major])
    # A client through pgbouncer1 holds its server connection in an open transaction. The pre-flight
    # refuses it (blocking_sessions, and the budget's drain term counts it), and so does the outage's
    # last look before its clock (test_long_query.py): with fastdowntime_blocking_sessions: warn the
    # drain meets it, as it meets a transaction opened after that last look.
    holder = psycopg2.connect(lab.client_dsn('pgbouncer1'), application_name='stuck-client')
    try:
        with holder.cursor() as cur:
            cur.execute("INSERT INTO fdt_item (body) VALUES ('held open')")
        proc, out, load = deploy_under_load(lab, tmp_path, patch_dir, {'fastdowntime_budget_seconds': 3,
                                                                       'fastdowntime_blocking_sessions': 'warn'},
                                            tags='outage')
    finally:
        holder.rollback()
        holder.close()
    assert proc.returncode != 0
    assert_clean_error(out, 'aborted in drain', 'pgbouncer1', 'fdt_app@')
    assert not table_exists(lab, 'primary', 'fdt_d%d' % major)
    assert_all_resumed(lab)
    # The failed outage task did not stop the disarm: nothing is left armed.
    assert_disarmed(lab)
    assert_nothing_lost(lab, load)


def test_direct_connection_holding_a_lock_on_the_patched_table(healthy_lab, tmp_path):
    lab = healthy_lab
    run, load = scenarios.under_load(lab, functools.partial(scenarios.lock_on_the_patched_table, tags=FULL, extra={
        'fastdowntime_blocking_sessions': 'warn'}), tmp_path)
    scenarios.check_run(lab, run)
    assert_clean_error(run.out, 'WARN blocking_sessions: primary', 'pid %d' % run.facts['holder_pid'])
    check = psycopg2.connect(lab.primary_dsn())
    with check.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'note'",
                    (run.facts['table'],))
        assert cur.fetchone()[0] == 0
    check.close()
    assert_all_resumed(lab)
    assert_nothing_lost(lab, load)


def test_sessions_that_would_hold_the_outage_are_refused_before_any_pause(healthy_lab, tmp_path):
    """Defect 5 of a new user's try: (a) a client through pgbouncer1 idle in a transaction (the drain
    would wait for it the whole budget) and (b) the deploy user's direct session idle in a transaction
    holding a lock on the table a cold patch alters (the cold transaction would wait for it). Both are
    refused by the pre-flight in one line naming each, before any PAUSE: the load never waits."""
    lab = healthy_lab
    major = unique_major()
    table = 'fdt_k%d' % major
    patch_dir = write_patches(tmp_path, major, ['ALTER TABLE %s ADD COLUMN note text;\n'
                                                'CREATE TABLE %s_new (id int);' % (table, table)])
    through = psycopg2.connect(lab.client_dsn('pgbouncer1'), application_name='stuck-client')
    try:
        with through.cursor() as cur:
            cur.execute("INSERT INTO fdt_item (body) VALUES ('held open') RETURNING pg_backend_pid()")
            through_pid = cur.fetchone()[0]
        with scenarios.lock_holder(lab, table) as direct_pid:
            proc, out, load = deploy_under_load(lab, tmp_path, patch_dir, {'fastdowntime_budget_seconds': 3})
    finally:
        through.rollback()
        through.close()
    assert proc.returncode != 0
    # The one line of the refusal (the quiet output names each failed check once).
    refusal = [line for line in out.splitlines() if 'blocking_sessions: primary' in line]
    assert len(refusal) == 1, out[-4000:]
    for word in ('pid %d (user fdt_app, application \'stuck-client\'' % through_pid, 'through pgbouncer1',
                 'holds its server connection in a transaction', "pid %d (user fdt_deploy, application 'report-query'"
                 % direct_pid, 'holds ACCESS SHARE on %s, which patch-%d-01-0.sql line 1 needs in ACCESS EXCLUSIVE'
                 % (table, major), 'idle in transaction for', 'pg_terminate_backend(pid) for pid'):
        assert word in refusal[0], (word, refusal[0])
    assert refusal[0].startswith('problem: blocking_sessions: primary (%s:5432): ' % lab.addr('primary'))
    assert_clean_error(out, 'refused by pre-flight')
    assert 'Drain, cold patches' not in out  # refused before the outage play: nothing was paused
    report = scenarios.read_report(str(tmp_path / 'report.json')) or {}
    assert [p['phase'] for p in report['phases']] == ['preflight'], report['phases']
    assert report['outage']['ended_at'] is None and report['outage']['max_client_wait_ms'] is None
    assert not table_exists(lab, 'primary', table + '_new')
    assert_all_resumed(lab)
    assert_nothing_lost(lab, load)


def test_standby_cut_off_before_the_run_is_refused_by_pre_flight(healthy_lab, tmp_path):
    lab = healthy_lab
    run, load = scenarios.under_load(lab, scenarios.standby_cut_off_before, tmp_path)
    scenarios.check_run(lab, run)  # refused by the pre-flight, naming standby1, before the outage play
    assert_all_resumed(lab)
    assert_nothing_lost(lab, load)


def test_budget_smaller_than_the_estimate_is_refused_before_the_outage(healthy_lab, tmp_path):
    lab = healthy_lab
    run, load = scenarios.under_load(lab, scenarios.budget_below_estimate, tmp_path)
    scenarios.check_run(lab, run)
    assert_all_resumed(lab)
    assert_nothing_lost(lab, load)


def test_applied_patch_edited_is_refused(healthy_lab, tmp_path):
    lab = healthy_lab
    major = unique_major()
    patch_dir = write_patches(tmp_path, major, ['CREATE TABLE fdt_e%d (id int);' % major])
    first, dummy = run_playbook(lab, tmp_path, patch_dir, tags=FULL)
    assert first.returncode == 0, first.stdout[-3000:]
    edited = '%s/patch-%d-01-0.sql' % (patch_dir, major)
    with open(edited, 'a') as handle:
        handle.write('\nCREATE TABLE fdt_e%d_more (id int);\n' % major)
    patch_2 = '%s/patch-%d-02-0.sql' % (patch_dir, major)
    with open(patch_2, 'w') as handle:
        handle.write('CREATE TABLE fdt_e%d_next (id int);\n' % major)
    proc, out, load = deploy_under_load(lab, tmp_path, patch_dir)
    assert proc.returncode != 0
    assert_clean_error(out, 'refused by pre-flight', 'patch-%d-01-0.sql' % major)
    assert not table_exists(lab, 'primary', 'fdt_e%d_next' % major)
    assert_all_resumed(lab)
    assert_nothing_lost(lab, load)


def test_wrong_pgbouncer_password_is_refused_without_showing_it(healthy_lab, tmp_path):
    lab = healthy_lab
    major = unique_major()
    wrong = 'Not-The-Password-%d' % major
    patch_dir = write_patches(tmp_path, major, ['CREATE TABLE fdt_w%d (id int);' % major])
    proc, out, load = deploy_under_load(lab, tmp_path, patch_dir, {'fastdowntime_pgbouncer_password': wrong})
    assert proc.returncode != 0
    assert_clean_error(out, 'refused by pre-flight', 'pgbouncer1', 'authentication failed')
    assert wrong not in out
    assert not table_exists(lab, 'primary', 'fdt_w%d' % major)
    assert_all_resumed(lab)
    assert_nothing_lost(lab, load)


def test_check_mode_from_a_site_playbook_plans_and_changes_nothing(healthy_lab, tmp_path):
    """--check on a site playbook that imports the deploy by its FQCN: pre-flight and the plan,
    hot patches included, and nothing paused or applied."""
    lab = healthy_lab
    major = unique_major()
    patch_dir = write_patches(tmp_path, major, [
        'CREATE INDEX CONCURRENTLY fdt_item_p%d_idx ON fdt_item (body);' % major,
        'CREATE TABLE fdt_p%d (id int);' % major,
    ])
    site = tmp_path / 'site.yml'
    site.write_text('- name: A site playbook\n  ansible.builtin.import_playbook: fastdowntime.postgresql.fastdowntime\n')
    paused = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            for host in ('pgbouncer1', 'pgbouncer2'):
                paused.extend((host, name) for name, flags in pgbouncer_flags(lab, host).items() if flags[0])
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        proc, report_path = run_playbook(lab, tmp_path, patch_dir, tags=FULL + ',restart', args=['--check'],
                                         playbook=str(site))
    finally:
        stop.set()
        watcher.join()
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert_clean_error(out, 'pre-flight PASSED', 'patch-%d-01-0.sql' % major, 'patch-%d-02-0.sql' % major)
    assert paused == []
    assert not table_exists(lab, 'primary', 'fdt_p%d' % major)
    assert not table_exists(lab, 'primary', 'fdt_item_p%d_idx' % major)
    assert json.load(open(check_report_path(report_path)))['outcome'] == 'planned'  # beside the deploy's


def test_outage_failing_before_any_pause_leaves_no_switch_armed(healthy_lab, tmp_path):
    """The outage task fails after the switch was armed and before anything was paused (its hot
    patch was never applied: `--tags outage` alone): the switch never saw a pause, so only the
    disarm can stop it - and it runs on every pgbouncer host although the task failed."""
    lab = healthy_lab
    major = unique_major()
    patch_dir = write_patches(tmp_path, major, [
        'CREATE INDEX CONCURRENTLY fdt_item_q%d_idx ON fdt_item (body);' % major,
        'CREATE TABLE fdt_q%d (id int);' % major,
    ])
    proc, out, load = deploy_under_load(lab, tmp_path, patch_dir, tags='outage')
    assert proc.returncode != 0
    assert_clean_error(out, 'hot patches are still pending')
    assert_disarmed(lab)
    assert not table_exists(lab, 'primary', 'fdt_q%d' % major)
    assert_all_resumed(lab)
    assert_nothing_lost(lab, load)


def _autocommit(dsn):
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    return conn


def _lag_questions(conn):
    """The outage's connections to a standby whose last query is its catch-up question (replication.LAG_SQL)."""
    with conn.cursor() as cur:
        cur.execute("SELECT pid FROM pg_stat_activity WHERE application_name = 'fastdowntime-replay' "
                    "AND query LIKE %s", ('%AS replay_paused%',))
        return set(row[0] for row in cur.fetchall())


def test_a_standby_fallen_behind_since_the_pre_flight_is_waited_for_before_the_window_opens(healthy_lab, tmp_path):
    # A soak met standby1 2.1 MB behind as a window opened (a link blip just before: TCP's back-off): the window
    # held every client while it waited for it after COMMIT, then fenced it. Here a reader on standby1 holds
    # its replay (a conflict with a DROP, max_standby_streaming_delay = -1) until the outage asks standby1 about
    # its replay before the clock: only then is the reader let go. The window must open after that moment.
    lab = healthy_lab
    major = unique_major()
    patch_dir = write_patches(tmp_path, major, ['CREATE TABLE fdt_cu%d (id int);' % major])
    held_table = 'fdt_cu_held%d' % major
    primary, standby = _autocommit(lab.primary_dsn()), _autocommit(lab.dsn(lab.pg('standby1')))
    reader = psycopg2.connect(lab.dsn(lab.pg('standby1')), application_name='report-reader')
    released = {}
    try:
        with standby.cursor() as cur:
            cur.execute('ALTER SYSTEM SET max_standby_streaming_delay = -1')
            cur.execute('SELECT pg_reload_conf()')
        with primary.cursor() as cur:
            cur.execute('CREATE TABLE %s (id int)' % held_table)
        scenarios.wait_replayed(lab)
        with reader.cursor() as cur:
            cur.execute('SELECT count(*) FROM %s' % held_table)  # its transaction holds the table's lock
        with primary.cursor() as cur:
            cur.execute('DROP TABLE %s' % held_table)  # standby1's replay now waits for the reader
        before = _lag_questions(standby)
        watcher_conn = _autocommit(lab.dsn(lab.pg('standby1')))

        def release_when_asked():
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not _lag_questions(watcher_conn) - before:
                time.sleep(0.01)
            released['at'] = time.time()
            reader.rollback()

        watcher = threading.Thread(target=release_when_asked, daemon=True)
        with lab.load(writers=('pgbouncer1', 'pgbouncer2')) as load:
            watcher.start()
            proc, report_path = run_playbook(lab, tmp_path, patch_dir, tags='outage')
            watcher.join(5)
            time.sleep(0.3)
        watcher_conn.close()
    finally:
        reader.close()
        with standby.cursor() as cur:
            cur.execute('ALTER SYSTEM RESET max_standby_streaming_delay')
            cur.execute('SELECT pg_reload_conf()')
        with primary.cursor() as cur:
            cur.execute('DROP TABLE IF EXISTS %s' % held_table)
        primary.close()
        standby.close()
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert 'at' in released, 'the outage never asked standby1 about its replay'
    report = json.load(open(report_path))
    catch_up = dict((s['label'].split()[0], s) for s in report['outage']['standby_catch_up'])
    # standby1 was behind when asked, and caught up once its reader let go - before the clock started.
    assert catch_up['standby1']['bytes_behind'] > 0 and catch_up['standby1']['catch_up_seconds'] is not None
    started = datetime.datetime.strptime(report['outage']['started_at'], '%Y-%m-%dT%H:%M:%S.%fZ').replace(
        tzinfo=datetime.timezone.utc).timestamp()
    assert started >= released['at'] - 0.001, (report['outage']['started_at'], released['at'])
    for host in ('primary', 'standby1', 'standby2'):
        assert table_exists(lab, host, 'fdt_cu%d' % major), host
    assert_all_resumed(lab)
    assert_nothing_lost(lab, load)


def assert_refused_before_any_pause(lab, proc, report_path, load, table, *words):
    """The outage refused its window just before the clock: one clean line with ``words``, no drain in the report,
    ``table`` nowhere, every pgbouncer entry answering, no switch armed, no commit lost."""
    assert proc.returncode != 0
    assert_clean_error(proc.stdout + proc.stderr, *words)
    report = json.load(open(report_path))
    assert report['outcome'].startswith('refused'), report['outcome']
    assert not [p for p in report['phases'] if p['phase'] == 'drain'], report['phases']
    assert not table_exists(lab, 'primary', table)
    assert_all_resumed(lab)
    assert_disarmed(lab)
    assert_nothing_lost(lab, load)


def test_a_standby_whose_replay_was_paused_since_the_pre_flight_refuses_the_window_before_any_pause(
        healthy_lab, tmp_path):
    lab = healthy_lab
    major = unique_major()
    patch_dir = write_patches(tmp_path, major, ['CREATE TABLE fdt_cp%d (id int);' % major])
    standby = _autocommit(lab.dsn(lab.pg('standby1')))
    try:
        with standby.cursor() as cur:
            cur.execute('SELECT pg_wal_replay_pause()')
        with lab.load(writers=('pgbouncer1', 'pgbouncer2')) as load:
            time.sleep(0.3)
            proc, report_path = run_playbook(lab, tmp_path, patch_dir, tags='outage')
            time.sleep(0.3)
    finally:
        with standby.cursor() as cur:
            cur.execute('SELECT pg_wal_replay_resume()')
        standby.close()
    assert_refused_before_any_pause(lab, proc, report_path, load, 'fdt_cp%d' % major, 'refused before any PAUSE: standby1',
                                    'its WAL replay is paused', 'pg_wal_replay_resume()')


def test_a_lock_taken_on_the_patched_table_after_the_pre_flight_refuses_the_window_before_any_pause(
        healthy_lab, tmp_path):
    # A session that took a lock the cold patch needs after the pre-flight passed (a pg_dump begun during the hot
    # patches holds ACCESS SHARE on every table): the window would wait for it its whole budget, every client
    # queued, then abort. The outage's last look before its clock applies the pre-flight's rule again.
    lab = healthy_lab
    major = unique_major()
    table = 'fdt_lk%d' % major
    patch_dir = write_patches(tmp_path, major, ['ALTER TABLE %s ADD COLUMN note text;\nCREATE TABLE %s_new (id int);'
                                                % (table, table)])
    with scenarios.lock_holder(lab, table) as pid:
        with lab.load(writers=('pgbouncer1', 'pgbouncer2')) as load:
            time.sleep(0.3)
            proc, report_path = run_playbook(lab, tmp_path, patch_dir, {'fastdowntime_budget_seconds': 3},
                                             tags='outage')
            time.sleep(0.3)
    assert_refused_before_any_pause(lab, proc, report_path, load, table + '_new',
                                    'refused just before the window, nothing paused or applied', 'pid %d' % pid,
                                    'report-query', 'pg_terminate_backend')
