"""The outage end to end on the lab, through ansible-playbook, under a real client load.

Each test writes its own patch directory with revisions no other test uses, so
the tests can run in any order and again on the same lab.
"""

import datetime
import json
import os
import signal
import time

import psycopg2
import pytest

import scenarios
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.pgbouncer_console import Console, parse_config
from conftest import kill_tree
from deploy import (
    REVISION_TABLE, assert_all_resumed, assert_clean_error, assert_disarmed, assert_nothing_lost, pg_one,
    pgbouncer_flags, run_playbook, table_exists, unique_major, write_patches)

pytestmark = pytest.mark.usefixtures('scratch')


def test_three_patches_under_load_in_one_short_outage(healthy_lab, tmp_path):
    lab = healthy_lab
    major = unique_major()
    names = ['fdt_t%d_%d' % (major, i) for i in range(3)]
    patch_dir = write_patches(tmp_path, major, [
        'CREATE TABLE %s (id int PRIMARY KEY);' % names[0],
        'CREATE TABLE %s (id int);\nCOMMENT ON TABLE %s IS $$fastdowntime test$$;' % (names[1], names[1]),
        'ALTER TABLE %s ADD COLUMN note text;\nCREATE TABLE %s (id int);' % (names[0], names[2]),
    ])
    with lab.load(writers=('pgbouncer1', 'pgbouncer2')) as load:
        time.sleep(0.5)
        # With the pre-flight, whose estimate the outage carries into the report and the deploy log.
        proc, report_path = run_playbook(lab, tmp_path, patch_dir, tags='preflight,outage')
        time.sleep(0.5)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert_nothing_lost(lab, load)
    for host in ('primary', 'standby1', 'standby2'):
        assert all(table_exists(lab, host, name) for name in names), host
    assert_all_resumed(lab)
    report = json.load(open(report_path))
    assert report['outcome'] == 'done'
    phases = {p['phase'] for p in report['phases']}
    assert {'drain', 'cold_transaction', 'standby_replay', 'resume'} <= phases
    assert 0 < report['outage']['outage_ms'] < report['budget_ms']
    assert [p['file'] for p in report['patches']][-3:] == sorted(os.listdir(patch_dir))
    # server_login_retry, 0 while the window ran (pgbouncer_console.lower_login_retry), is back.
    assert [server_login_retry(lab, host) for host in ('pgbouncer1', 'pgbouncer2')] == ['15', '15']
    # The dead-man switch was disarmed and left nothing behind.
    for host in ('pgbouncer1', 'pgbouncer2'):
        run_dir = os.path.join(lab.lab_dir, 'hosts', host, 'run')
        assert not [f for f in os.listdir(run_dir) if 'watchdog' in f], os.listdir(run_dir)
    log = pg_one(lab, 'primary', 'SELECT outcome FROM fastdowntime.deploy_log WHERE deploy_id = %s',
                 (report['deploy_id'],))
    assert log == 'done'
    # The pre-flight's estimate travels with the outage into the deploy log (the cycle-time report reads it).
    logged_estimate = pg_one(lab, 'primary', 'SELECT estimate_ms FROM fastdowntime.deploy_log WHERE deploy_id = %s',
                             (report['deploy_id'],))
    assert report['outage']['estimate_ms'] > 0
    assert float(logged_estimate) == report['outage']['estimate_ms']


def test_nothing_pending_means_no_outage(healthy_lab, tmp_path):
    lab = healthy_lab
    major = unique_major()
    patch_dir = write_patches(tmp_path, major, ['CREATE TABLE fdt_n%d (id int);' % major])
    first, dummy = run_playbook(lab, tmp_path, patch_dir)
    assert first.returncode == 0, first.stdout[-3000:]
    # -v: every task's result, as the default callback prints them.
    second, report_path = run_playbook(lab, tmp_path, patch_dir, args=('-v',))
    assert second.returncode == 0, second.stdout[-3000:]
    # The window's task is skipped: nothing was paused.
    window = second.stdout.split('Drain, cold patches in one transaction, standbys replayed, resume]')[1]
    assert 'skipping: [primary]' in window.split('TASK [')[0], window[:2000]
    report = json.load(open(report_path))
    assert report['outage']['outage_ms'] is None
    assert report['outage']['nothing_pending'] is True
    assert report['outcome'] == 'nothing to do'


@pytest.mark.faults
def test_syntax_error_is_refused_before_any_outage(healthy_lab, tmp_path):
    lab = healthy_lab
    major = unique_major()
    patch_dir = write_patches(tmp_path, major, [
        'CREATE TABLE fdt_a%d (id int);' % major,
        'CREATE TABLE fdt_b%d (id int);\n\nALTER TABLE fdt_b%d ADD COLUMN oops;' % (major, major),
        'CREATE TABLE fdt_c%d (id int);' % major,
    ])
    proc, dummy = run_playbook(lab, tmp_path, patch_dir, tags='hot,outage')
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert 'patch-%d-02-0.sql line 3' % major in out, out[-3000:]
    assert 'Drain, cold patches' not in out  # refused before the outage: nothing paused
    assert not table_exists(lab, 'primary', 'fdt_a%d' % major)
    assert_all_resumed(lab)


@pytest.mark.faults
def test_failing_second_of_three_rolls_back_everything(healthy_lab, tmp_path):
    lab = healthy_lab
    run, load = scenarios.under_load(lab, scenarios.bad_patch, tmp_path)
    # Named file, line and cause, nothing applied anywhere, every entry answering clients.
    scenarios.check_run(lab, run)
    assert_nothing_lost(lab, load)
    assert_all_resumed(lab)
    assert run.report['outcome'].startswith('aborted in schema')


@pytest.mark.faults
def test_budget_spent_rolls_back_and_resumes_within_budget(healthy_lab, tmp_path):
    lab = healthy_lab
    run, load = scenarios.under_load(lab, scenarios.budget_abort, tmp_path)
    scenarios.check_run(lab, run)
    assert_nothing_lost(lab, load)
    # Clients were back within the budget plus half a second.
    assert load.max_wait('write') < run.facts['budget'] + 0.5, load.summary()
    assert_all_resumed(lab)
    log = pg_one(lab, 'primary', 'SELECT outcome FROM fastdowntime.deploy_log WHERE deploy_id = %s',
                 (run.report['deploy_id'],))
    assert log == 'aborted in schema application'


@pytest.mark.faults
def test_controller_killed_inside_outage_dead_man_switch_resumes(healthy_lab, tmp_path):
    lab = healthy_lab
    logs = [os.path.join(lab.lab_dir, 'hosts', h, 'log', 'watchdog.log') for h in ('pgbouncer1', 'pgbouncer2')]
    sizes = [os.path.getsize(path) if os.path.exists(path) else 0 for path in logs]
    run, load = scenarios.under_load(lab, scenarios.controller_killed, tmp_path)
    scenarios.check_run(lab, run)
    assert run.facts['resumed_after'] is not None, 'still paused after the switches\' deadline'
    assert run.facts['resumed_after'] <= run.facts['budget'] + run.facts['grace'] + 1.5, run.facts
    assert_all_resumed(lab)
    assert_nothing_lost(lab, load)
    # Each switch that fired exits by itself on its next poll: nothing is left armed.
    assert_disarmed(lab, within=5.0)
    written = ''
    for path, size in zip(logs, sizes):
        with open(path) as handle:
            handle.seek(size)
            written += handle.read()
    # The switch itself resumed them (not a surviving module at its budget).
    assert 'deadline passed with fdtdemo' in written and 'sent RESUME' in written, written[-2000:]
    # The killed module had lowered server_login_retry for its window (pgbouncer_console.lower_login_retry):
    # each switch set it back to what it had read when armed.
    assert written.count('server_login_retry was left at 0 (its deploy did not set it back): set back to 15') == 2
    assert [server_login_retry(lab, host) for host in ('pgbouncer1', 'pgbouncer2')] == ['15', '15']


def server_login_retry(lab, host):
    console = Console(lab.pgbouncer(host)).open()
    try:
        return parse_config(console.show('CONFIG'))['server_login_retry']
    finally:
        console.close()


@pytest.mark.faults
def test_a_second_deploy_while_a_window_is_open_is_refused_before_any_pause(healthy_lab, tmp_path):
    """Two deploys at once (two operators, a CI job run again): the second's outage is refused
    before its first PAUSE, in one line naming the first one's session - it neither drains nor
    RESUMEs the first one's paused entries (before, it took them for someone else's, and when
    both read the entries before either paused, its failure path resumed them mid-window) -
    and leaves the first one's dead-man switch armed; the first window ends as its own."""
    lab = healthy_lab
    major = unique_major()
    # The first window stays open until the second deploy has ended, however long a loaded machine takes.
    patch_dir = write_patches(tmp_path, major, ['CREATE TABLE fdt_w%d (id int);\n%s' % (major, scenarios.HOLD_WINDOW_SQL)])
    extra = {'fastdowntime_budget_seconds': 60}
    holder = scenarios.hold_window(lab)
    first, dummy = run_playbook(lab, tmp_path, patch_dir, extra, tags='outage', background=True)
    try:
        deadline = time.monotonic() + 90
        while not scenarios.in_cold_transaction(lab):
            assert first.poll() is None and time.monotonic() < deadline, 'the first deploy never reached its window'
            time.sleep(0.05)
        second_tmp = tmp_path / 'second'
        second_tmp.mkdir()
        # The same deploy again (the same patches, pending for both).
        second, second_report = run_playbook(lab, second_tmp, patch_dir, extra, tags='outage')
        # Still the first one's window: paused, its transaction running, its switches armed.
        assert scenarios.in_cold_transaction(lab), 'the first window ended before the second deploy did'
        assert scenarios.paused_anywhere(lab) and scenarios.paused_anywhere(lab, lab.db_name + '_ro')
        armed = [name for host in ('pgbouncer1', 'pgbouncer2')
                 for name in os.listdir(os.path.join(lab.lab_dir, 'hosts', host, 'run'))
                 if name.startswith('fastdowntime-pgbouncer-watchdog')]
        assert len(armed) == 2, armed
        out = second.stdout + second.stderr
        assert second.returncode != 0, out[-3000:]
        assert_clean_error(out, "primary (%s:5432): another deploy's outage is running on database %s (pid "
                           % (lab.addr('primary'), lab.db_name), 'refused before any PAUSE, nothing paused or applied')
        report = scenarios.read_report(second_report)
        assert report['outcome'] == 'refused before the outage', report['outcome']
        assert not [p for p in report['phases'] if p['phase'] in ('drain', 'resume')], report['phases']
        holder.close()
        first_out = first.communicate(timeout=120)[0]
    finally:
        holder.close()
        if first.poll() is None:
            kill_tree(first.pid)
    assert first.returncode == 0, first_out[-3000:]
    assert table_exists(lab, 'primary', 'fdt_w%d' % major)
    assert_all_resumed(lab)
    assert_disarmed(lab)


@pytest.mark.faults
def test_an_entry_resumed_by_someone_else_inside_the_window_is_named_in_one_warning(healthy_lab, tmp_path):
    """Someone else (an operator, a process manager, a health script) RESUMEs fdtdemo on
    pgbouncer1 while the cold transaction runs: the deploy's own RESUME is answered "is not
    paused". The deploy stays done (committed, replayed, nothing lost), but it is no longer
    "every entry resumed" in silence: the module result names (pgbouncer1, fdtdemo), and the
    operator's output and the report carry one warning line saying what it means and what
    to do; the entries it did resume itself are not named."""
    lab = healthy_lab
    run, load = scenarios.under_load(lab, scenarios.resumed_by_someone_else, tmp_path)
    scenarios.check_run(lab, run)
    assert run.facts['fault'] is not None, 'the window closed before the other RESUME'
    assert run.report['outcome'] == 'done', run.report['outcome']
    label = '%s (%s:%s)' % ('pgbouncer1', lab.addr('pgbouncer1'), lab.pgbouncer('pgbouncer1')['port'])
    assert run.report['outage']['resumed_by_others'] == [
        {'pgbouncer': label, 'entry': lab.db_name, 'restarted': False}], run.report['outage']
    [warning] = run.report['warnings']
    for words in ('RESUMED BY SOMEONE ELSE inside the window: %s on %s -' % (lab.db_name, label),
                  'clients may have reached the primary inside the window', 'a standby before its replay',
                  'find who resumes pgbouncer during deploys'):
        assert words in warning, warning
    # Once on the operator's screen (the timeline prints it; the task's own warning is not repeated).
    assert run.out.count('RESUMED BY SOMEONE ELSE') == 1, run.out[-3000:]
    assert_nothing_lost(lab, load)
    assert_all_resumed(lab)


@pytest.mark.faults
def test_a_dropped_terminal_inside_the_window_leaves_the_runs_outcome_in_the_deploy_log(healthy_lab, tmp_path):
    """tryit7 8c: ansible-playbook's process group SIGKILLed inside the window (what a dropped SSH
    session does): the module runs on in a session of its own, commits and resumes, and the
    operator's terminal shows nothing of it - no timeline report is written either. The deploy
    log row on the primary, written by the module after its RESUME, holds that run's outcome."""
    lab = healthy_lab
    major = unique_major()
    patch_dir = write_patches(tmp_path, major, ['CREATE TABLE fdt_d%d (id int);\nSELECT pg_sleep(2);' % major])
    proc, report_path = run_playbook(lab, tmp_path, patch_dir, tags='outage', background=True)
    try:
        deadline = time.monotonic() + 90
        while not scenarios.in_cold_transaction(lab):
            assert proc.poll() is None and time.monotonic() < deadline, 'the deploy never reached its window'
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the group is ansible-playbook's
        proc.wait()
    finally:
        if proc.poll() is None:
            kill_tree(proc.pid)
    # The module goes on by itself: its row appears once it has resumed (within its budget).
    deadline = time.monotonic() + 60
    while True:
        row = pg_one(lab, 'primary', "SELECT (SELECT row_to_json(l) FROM fastdowntime.deploy_log l "
                                     "WHERE patches::text LIKE %s ORDER BY started_at DESC LIMIT 1)",
                     ('%%patch-%d-01-0.sql%%' % major,))
        if row is not None or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert row is not None and row['outcome'] == 'done', row
    assert row['outage_ms'] >= 2000, row['outage_ms']
    assert table_exists(lab, 'primary', 'fdt_d%d' % major)
    assert not os.path.exists(report_path), 'the killed controller wrote its report'
    assert_all_resumed(lab)
    assert_disarmed(lab, within=15)


@pytest.mark.faults
def test_standby_cut_off_inside_outage_is_named_and_fenced(healthy_lab, tmp_path):
    lab = healthy_lab
    run, load = scenarios.under_load(lab, scenarios.standby_cut_off_inside, tmp_path)
    # Named; the schema committed on the primary, and on every standby once standby2 is back.
    scenarios.check_run(lab, run)
    assert run.facts['on_standby1']
    # While standby2 was cut off no client was resumed onto it; everything else was back.
    flags = dict((host, per) for (host, dummy), per in run.facts['flags'].items())
    assert flags['pgbouncer2']['fdtdemo_ro'] == (0, 1), flags
    assert flags['pgbouncer2']['fdtdemo'] == (0, 0), flags
    assert all(f == (0, 0) for f in flags['pgbouncer1'].values()), flags
    assert_nothing_lost(lab, load)
    assert_all_resumed(lab)


def test_patches_keep_their_numbered_order_and_a_comment_only_patch_needs_no_drain(healthy_lab, tmp_path):
    """Issue 15: a hot patch numbered after the cold patch that creates its table (the split the
    pre-flight advises for a mixed file) runs live after the window; a patch with nothing but
    comments is recorded without draining anything."""
    lab = healthy_lab
    major = unique_major()
    table = 'fdt_u%d' % major
    patch_dir = write_patches(tmp_path, major, [
        'CREATE TABLE %s (id int, email text);' % table,
        'CREATE UNIQUE INDEX CONCURRENTLY %s_email_key ON %s (email);' % (table, table),
    ])
    proc, report_path = run_playbook(lab, tmp_path, patch_dir, tags='preflight,hot,outage')
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert pg_one(lab, 'primary', 'SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)',
                  ('%s_email_key' % table,)) is True
    report = json.load(open(report_path))
    assert report['outcome'] == 'done'
    order = [p['phase'] for p in report['phases']]
    assert 'hot_patch' not in order
    assert order.index('post_window_hot_patch') > order.index('resume') > order.index('cold_transaction')
    assert report['plan']['phases'] == [{'phase': 'cold', 'patches': ['patch-%d-01-0.sql' % major]},
                                        {'phase': 'post-window hot', 'patches': ['patch-%d-02-0.sql' % major]}]
    # Defect 12: "schema now" is read after the hot patch that followed the window, on every database.
    assert [(r['role'], r['revision'], r['error'], r.get('behind')) for r in report['revisions']] == \
        [('primary', '%d-02-0' % major, None, None)] + [('standby', '%d-02-0' % major, None, None)] * 2
    assert 'schema now: %d-02-0 on primary (%s:5432), standby1' % (major, lab.addr('primary')) in proc.stdout
    assert_all_resumed(lab)

    (tmp_path / ('patches-%d' % major) / ('patch-%d-03-0.sql' % major)).write_text('-- reserved for later\n')
    proc, report_path = run_playbook(lab, tmp_path, patch_dir, tags='preflight,hot,outage')
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = json.load(open(report_path))
    assert report['outage']['nothing_pending'] is True and report['outage']['outage_ms'] is None
    assert not {'drain', 'resume'} & {p['phase'] for p in report['phases']}
    assert pg_one(lab, 'primary', 'SELECT count(*) FROM %s WHERE major = %%s' % REVISION_TABLE, (major,)) == 3


def test_standby_lost_inside_the_replay_wait_fences_only_its_own_entries(healthy_lab, tmp_path):
    """tryit defect 1: standby2 stopped while the replay wait has questions in flight to both
    standbys (replay held on both until then). Only standby2's entries are fenced; standby1 is
    waited for and reported replayed, and answers the "schema now" read; standby2 is named as
    lost, not as behind. Clients of standby1's entries get no error."""
    lab = healthy_lab
    run, load = scenarios.under_load(lab, scenarios.standby_lost_in_replay_wait, tmp_path,
                                     readers=('pgbouncer1', 'pgbouncer2'))
    assert run.facts['fault'], run.out[-3000:]   # standby2 was stopped inside the wait
    scenarios.check_run(lab, run)
    error = [line for line in run.out.splitlines() if line.startswith('error: outage aborted in standby replay')]
    assert len(error) == 1 and 'standby1' not in error[0].split('clients must not')[0], run.out[-3000:]
    assert 'has not replayed' not in run.out and 'cursor already closed' not in run.out
    assert run.facts['on_standby1']
    flags = dict((host, per) for (host, dummy), per in run.facts['flags'].items())
    assert flags['pgbouncer2']['fdtdemo_ro'] == (0, 1), flags
    assert flags['pgbouncer2']['fdtdemo'] == (0, 0), flags
    assert all(f == (0, 0) for f in flags['pgbouncer1'].values()), flags
    replay = [p for p in run.report['phases'] if p['phase'] == 'standby_replay'][0]['detail']
    replayed = dict((name.split()[0], ms) for name, ms in replay['standby_replay_ms'].items())
    assert replayed['standby1'] is not None and replayed['standby2'] is None, replay
    now = dict((r['host'].split()[0], r) for r in run.report['revisions'])
    assert now['standby1']['revision'] == now['primary']['revision'] and now['standby1']['error'] is None, now
    assert now['standby2']['error'] == 'connection lost', now
    # Only the readers of standby2's entry (pgbouncer2's fdtdemo_ro: r1.*) saw errors; no commit lost.
    assert [e for e in load.errors if not e[0].startswith('r1.')] == []
    assert load.missing_commits(lab.primary_dsn()) == []
    try:
        check_unfence_on_the_next_run(lab, tmp_path, run)
    finally:
        scenarios.enable_everywhere(lab, lab.db_name + '_ro')
    assert_all_resumed(lab)


def check_unfence_on_the_next_run(lab, tmp_path, run):
    """tryit defect 2: standby2 back and caught up, a run with nothing pending ENABLEs the
    entry the window fenced (phase unfence, outside any PAUSE); --check changes nothing."""
    patch_dir = str(tmp_path / ('patches-%d' % run.facts['major']))
    checked, dummy = run_playbook(lab, tmp_path, patch_dir, tags=scenarios.FULL, args=['--check'])
    out = checked.stdout + checked.stderr
    assert checked.returncode == 0, out[-3000:]
    assert 'fenced by an earlier deploy: fdtdemo_ro (deploy %s' % run.report['deploy_id'] in out, out[-3000:]
    assert pgbouncer_flags(lab, 'pgbouncer2')['fdtdemo_ro'] == (0, 1)
    proc, report_path = run_playbook(lab, tmp_path, patch_dir, tags=scenarios.FULL)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert_clean_error(out, 'unfence', 'pgbouncer2')
    assert pgbouncer_flags(lab, 'pgbouncer2')['fdtdemo_ro'] == (0, 0)
    assert all(f == (0, 0) for f in pgbouncer_flags(lab, 'pgbouncer1').values())
    report = json.load(open(report_path))
    unfence = [p for p in report['phases'] if p['phase'] == 'unfence']
    assert [p['host'].split()[0] for p in unfence] == ['pgbouncer2'] and unfence[0]['status'] == 'ok', unfence
    assert unfence[0]['detail']['entries'] == ['fdtdemo_ro']
    # The fence is forgotten: the next run has nothing to ENABLE.
    again, dummy = run_playbook(lab, tmp_path, patch_dir, tags=scenarios.FULL)
    assert again.returncode == 0 and 'fenced by an earlier deploy' not in again.stdout, again.stdout[-3000:]


def test_a_pool_whose_login_fails_after_resume_fails_the_deploy(healthy_lab, tmp_path):
    """The application's password rotated in PostgreSQL but not in pgbouncer's auth_file (a new user's
    find): its server connections, logged in before, work until the PAUSE closes them; after RESUME
    pgbouncer's login as fdt_app fails and its clients queue. No catalog shows that, and the client probe
    logs in as the deploy user: the outage reads SHOW POOLS after RESUME and fails the deploy in one line
    naming the entry, the user and the pgbouncer, the patches committed and every pgbouncer resumed. With
    the password back, the same clients are served again."""
    lab = healthy_lab
    major = unique_major()
    name = 'fdt_login%d' % major
    patch_dir = write_patches(tmp_path, major, ['CREATE TABLE %s (id int);' % name])
    admin = psycopg2.connect(lab.primary_dsn())
    admin.autocommit = True
    consoles = [Console(lab.pgbouncer(host), db_name=lab.db_name).open() for host in ('pgbouncer1', 'pgbouncer2')]
    try:
        for console in consoles:  # pgbouncer tries the login again within 1 s once the password is back
            console.command('SET server_login_retry = 1')
        with lab.load(writers=('pgbouncer1', 'pgbouncer2')) as load:
            time.sleep(0.5)  # the load's server connections log in with the password pgbouncer has
            admin.cursor().execute("ALTER ROLE fdt_app PASSWORD 'rotated-%d'" % major)
            try:
                proc, report_path = run_playbook(lab, tmp_path, patch_dir)
            finally:
                admin.cursor().execute("ALTER ROLE fdt_app PASSWORD '%s'" % lab.users['fdt_app'])
            served = len(load.confirmed_ids)
            deadline = time.monotonic() + 10
            while len(load.confirmed_ids) <= served + 20 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert len(load.confirmed_ids) > served + 20, 'the clients were not served again'
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, proc.stdout[-3000:]
        assert_clean_error(out, 'deploy failed after the outage in server logins', 'the patches ARE committed',
                           'NO SERVER LOGIN after RESUME', 'user fdt_app on pgbouncer1', 'auth_file')
        assert 'RESUME FAILED' not in out
        report = json.load(open(report_path))
        assert report['outcome'] == 'aborted in server logins'
        assert report['outage']['pgbouncer_state'].startswith('NO SERVER LOGIN after RESUME')
        for host in ('primary', 'standby1', 'standby2'):
            assert table_exists(lab, host, name), host
        assert_all_resumed(lab)
        assert load.missing_commits(lab.primary_dsn()) == []
    finally:
        for console in consoles:
            console.command('SET server_login_retry = 15')
            console.close()
        admin.close()


def test_a_replay_cross_check_not_read_is_a_warning_naming_the_standbys(healthy_lab, tmp_path):
    """The primary's view of the standbys is read after the window, a report, never a gate: its
    connection terminated just before (an operator's pg_terminate_backend, a restart) the window is
    still done, and the failure is one warning in the result and the timeline's lines."""
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.outage import Outage
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import connect
    lab = healthy_lab
    major = unique_major()

    class ObserverLost(Outage):
        def cross_check_replay(self, window):
            pg_one(lab, 'primary', 'SELECT pg_terminate_backend(%s)', (self.observer.get_backend_pid(),))
            Outage.cross_check_replay(self, window)
            self.observer = connect(self.primary, autocommit=True, application_name='fastdowntime-observer')

    standbys = [dict(lab.pg(name), pgbouncer_entries=['%s:%s_ro' % (bouncer, lab.db_name)])
                for name, bouncer in (('standby1', 'pgbouncer1'), ('standby2', 'pgbouncer2'))]
    outage = ObserverLost(primary=lab.pg('primary'), standbys=standbys, db_name=lab.db_name,
                          pgbouncers=[lab.pgbouncer('pgbouncer1'), lab.pgbouncer('pgbouncer2')], budget_seconds=10,
                          patch_dir=write_patches(tmp_path, major, ['CREATE TABLE fdt_x%d (id int);' % major]),
                          revision_table=REVISION_TABLE)
    try:
        outage.prepare()
        result = outage.run()
    finally:
        outage.close()
    assert result['outcome'] == 'done'
    confirms = {'standby1 (%s:5432)' % lab.addr('standby1'): None, 'standby2 (%s:5432)' % lab.addr('standby2'): None}
    assert result['outage']['primary_confirms'] == confirms
    [line] = [w for w in result['outage']['warnings'] if 'cross-check' in w]
    assert line.startswith('replay cross-check not read on primary (%s:5432): ' % lab.addr('primary')), line
    assert 'of standby1 (%s:5432), standby2 (%s:5432) is unknown' % (lab.addr('standby1'), lab.addr('standby2')) \
        in line and 'terminat' in line and '\n' not in line, line
    # The timeline (report.render_text) shows it as one WARNING line.
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.report import (
        build_report, entry_from_result, render_text)
    report = build_report(entry_from_result(result, task='outage', action='fastdowntime.postgresql.outage'))
    assert 'WARNING: %s' % line in render_text(report)
    assert_all_resumed(lab)
    assert table_exists(lab, 'standby2', 'fdt_x%d' % major)


def test_the_client_probe_logs_in_only_once_the_clients_queued_in_the_window_are_served(healthy_lab, tmp_path):
    """The PAUSE closes every server connection of the deploy's entries, so each client queued in the window
    needs a server after RESUME, and pgbouncer logs in again on its one thread. The client probe logs in as
    another user (the deploy user: a pool of its own): its logins must come after the queued clients are
    served, not between their logins. Seen from both ends: every transaction the load began inside the
    (held-open) window had its answer before the probe's server connection to the primary began
    (pg_stat_activity backend_start of user fdt_deploy from each pgbouncer)."""
    lab = healthy_lab
    major = unique_major()
    patch_dir = write_patches(tmp_path, major, ['CREATE TABLE fdt_q%d (id int);\n%s' % (major, scenarios.HOLD_WINDOW_SQL)])
    holder = scenarios.hold_window(lab)
    # Clients queue while the window is held open: 4 writers per pgbouncer.
    let_go = scenarios.When(lab, scenarios.in_cold_transaction, lambda: (time.sleep(0.5), holder.close()))
    try:
        with lab.load(per_dsn=4) as load:
            let_go.start()
            proc, report_path = run_playbook(lab, tmp_path, patch_dir, {'fastdowntime_budget_seconds': 60},
                                             tags='outage')
            let_go.finish()
            time.sleep(0.3)
    finally:
        holder.close()
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert let_go.fired, 'the window never waited in its cold patch'
    report = scenarios.read_report(report_path)
    started, ended = [datetime.datetime.strptime(report['outage'][k], '%Y-%m-%dT%H:%M:%S.%fZ').replace(
        tzinfo=datetime.timezone.utc).timestamp() for k in ('started_at', 'ended_at')]
    conn = psycopg2.connect(lab.primary_dsn())
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT host(client_addr), extract(epoch FROM backend_start)::float8 FROM pg_stat_activity "
                        "WHERE datname = %s AND usename = 'fdt_deploy' AND backend_type = 'client backend'",
                        (lab.db_name,))
            backends = cur.fetchall()
    finally:
        conn.close()
    for index, host in enumerate(('pgbouncer1', 'pgbouncer2')):
        probe = [at for where, at in backends if where == lab.addr(host) and at >= ended]
        assert probe, (host, backends)
        # The load's workers through this pgbouncer (lab.load: 4 per pgbouncer, in order).
        workers = load.workers[index * 4:(index + 1) * 4]
        queued = [begun + waited for w in workers for begun, waited in zip(w.started, w.latencies)
                  if started <= begun <= ended]
        assert queued, (host, 'no transaction of the load began inside the window')
        assert max(queued) <= min(probe), (host, 'the probe logged in %.1f ms before a client queued in the window '
                                           'had its answer' % ((max(queued) - min(probe)) * 1000))
    assert_nothing_lost(lab, load)
    assert_disarmed(lab)
