"""The outage end to end on the lab, through ansible-playbook, under a real client load.

Each test writes its own patch directory with revisions no other test uses, so
the tests can run in any order and again on the same lab.
"""

import json
import os
import threading
import time

import psycopg2
import pytest

from conftest import kill_tree
from deploy import (
    REVISION_TABLE, assert_all_resumed, assert_nothing_lost, pg_one, pgbouncer_flags, run_playbook, table_exists,
    unique_major, write_patches)

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
    major = unique_major()
    patch_dir = write_patches(tmp_path, major, [
        'CREATE TABLE fdt_a%d (id int);' % major,
        'CREATE TABLE fdt_b%d (id int);\n\nALTER TABLE fdt_missing%d ADD COLUMN x int;' % (major, major),
        'CREATE TABLE fdt_c%d (id int);' % major,
    ])
    with lab.load(writers=('pgbouncer1', 'pgbouncer2')) as load:
        proc, report_path = run_playbook(lab, tmp_path, patch_dir)
        time.sleep(0.3)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert 'patch-%d-02-0.sql' % major in out
    assert 'line 3' in out, out[-3000:]
    assert 'does not exist' in out
    assert 'nothing applied' in out and 'every pgbouncer entry resumed and answering clients' in out
    assert 'Traceback' not in out and 'deploy-secret' not in out and 'admin-secret' not in out
    for name in ('fdt_a%d', 'fdt_b%d', 'fdt_c%d'):
        assert not table_exists(lab, 'primary', name % major)
    assert_nothing_lost(lab, load)
    assert_all_resumed(lab)
    report = json.load(open(report_path))
    assert report['outcome'].startswith('aborted in schema')


@pytest.mark.faults
def test_budget_spent_rolls_back_and_resumes_within_budget(healthy_lab, tmp_path):
    lab = healthy_lab
    major = unique_major()
    budget = 3
    patch_dir = write_patches(tmp_path, major, [
        'CREATE TABLE fdt_s%d (id int);\nSELECT pg_sleep(10);' % major,
    ])
    with lab.load(writers=('pgbouncer1', 'pgbouncer2')) as load:
        proc, report_path = run_playbook(lab, tmp_path, patch_dir, {'fastdowntime_budget_seconds': budget})
        time.sleep(0.3)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert 'aborted in schema application' in out, out[-3000:]
    assert not table_exists(lab, 'primary', 'fdt_s%d' % major)
    assert_nothing_lost(lab, load)
    # Clients were back within the budget plus half a second.
    assert load.max_wait('write') < budget + 0.5, load.summary()
    assert_all_resumed(lab)
    report = json.load(open(report_path))
    log = pg_one(lab, 'primary', 'SELECT outcome FROM fastdowntime.deploy_log WHERE deploy_id = %s',
                 (report['deploy_id'],))
    assert log == 'aborted in schema application'


@pytest.mark.faults
def test_controller_killed_inside_outage_dead_man_switch_resumes(healthy_lab, tmp_path):
    lab = healthy_lab
    major = unique_major()
    budget, grace = 4, 2
    patch_dir = write_patches(tmp_path, major, [
        'CREATE TABLE fdt_k%d (id int);\nSELECT pg_sleep(60);' % major,
    ])
    with lab.load(writers=('pgbouncer1', 'pgbouncer2')) as load:
        proc, dummy = run_playbook(lab, tmp_path, patch_dir, {'fastdowntime_budget_seconds': budget,
                                                              'fastdowntime_watchdog_grace_seconds': grace},
                                   background=True)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if pgbouncer_flags(lab, 'pgbouncer1')['fdtdemo'][0] == 1:
                    break
                assert proc.poll() is None, proc.stdout.read()[-3000:]
                time.sleep(0.05)
            else:
                pytest.fail('the outage never paused pgbouncer1')
            paused_at = time.monotonic()
            # The controller dies: ansible-playbook and everything it started,
            # the outage module included (Ansible's workers setsid()).
            kill_tree(proc.pid)
            proc.wait()
            while time.monotonic() - paused_at < budget + grace + 5:
                if all(pgbouncer_flags(lab, h)['fdtdemo'] == (0, 0) for h in ('pgbouncer1', 'pgbouncer2')):
                    break
                time.sleep(0.1)
            resumed_after = time.monotonic() - paused_at
        finally:
            if proc.poll() is None:
                kill_tree(proc.pid)
        time.sleep(0.3)
    assert resumed_after <= budget + grace + 1.5, resumed_after
    assert_all_resumed(lab)
    assert_nothing_lost(lab, load)
    assert not table_exists(lab, 'primary', 'fdt_k%d' % major)
    logs = ''.join(open(os.path.join(lab.lab_dir, 'hosts', h, 'log', 'watchdog.log')).read()
                   for h in ('pgbouncer1', 'pgbouncer2'))
    # The switch itself resumed them (not a surviving module at its budget).
    assert 'deadline passed with fdtdemo' in logs and 'sent RESUME' in logs, logs[-2000:]


@pytest.mark.faults
def test_standby_cut_off_inside_outage_is_named_and_fenced(healthy_lab, tmp_path):
    lab = healthy_lab
    major = unique_major()
    budget = 4
    patch_dir = write_patches(tmp_path, major, [
        # The sleep keeps the window open long enough to cut the standby off inside it.
        'CREATE TABLE fdt_f%d (id int);\nSELECT pg_sleep(1);' % major,
    ])

    def cut_when_paused():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if pgbouncer_flags(lab, 'pgbouncer1')['fdtdemo'][0] == 1:
                lab.ns_exec('standby2', 'ip', 'link', 'set', 'eth0', 'down')
                return
            time.sleep(0.02)

    cutter = threading.Thread(target=cut_when_paused)
    try:
        with lab.load(writers=('pgbouncer1', 'pgbouncer2')) as load:
            cutter.start()
            proc, report_path = run_playbook(lab, tmp_path, patch_dir, {'fastdowntime_budget_seconds': budget})
            cutter.join()
            time.sleep(0.3)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0
        assert 'aborted in standby replay' in out, out[-3000:]
        assert 'standby2' in out and 'fdtdemo_ro on pgbouncer2' in out, out[-3000:]
        # The schema is committed on the primary (all of it) and on the standby still connected.
        assert table_exists(lab, 'primary', 'fdt_f%d' % major)
        assert table_exists(lab, 'standby1', 'fdt_f%d' % major)
        # No client is resumed onto the standby without the schema; everything else is back.
        assert pgbouncer_flags(lab, 'pgbouncer2')['fdtdemo_ro'] == (0, 1)
        assert pgbouncer_flags(lab, 'pgbouncer2')['fdtdemo'] == (0, 0)
        flags = pgbouncer_flags(lab, 'pgbouncer1')
        assert all(f == (0, 0) for f in flags.values()), (flags, out[-3000:])
        assert_nothing_lost(lab, load)
    finally:
        lab.ns_exec('standby2', 'ip', 'link', 'set', 'eth0', 'up', check=False)
        for host in ('pgbouncer1', 'pgbouncer2'):
            conn = psycopg2.connect(lab.dsn(lab.pgbouncer(host)))
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute('ENABLE fdtdemo_ro')
            conn.close()


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
    assert_all_resumed(lab)

    (tmp_path / ('patches-%d' % major) / ('patch-%d-03-0.sql' % major)).write_text('-- reserved for later\n')
    proc, report_path = run_playbook(lab, tmp_path, patch_dir, tags='preflight,hot,outage')
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = json.load(open(report_path))
    assert report['outage']['nothing_pending'] is True and report['outage']['outage_ms'] is None
    assert not {'drain', 'resume'} & {p['phase'] for p in report['phases']}
    assert pg_one(lab, 'primary', 'SELECT count(*) FROM %s WHERE major = %%s' % REVISION_TABLE, (major,)) == 3
