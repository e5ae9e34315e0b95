"""The split window (fastdowntime_window_mode=split) end to end on the lab, under a load of
writers through the read-write entry (fdtdemo) and readers through the read-only entries
(fdtdemo_ro: standby1 behind pgbouncer1, standby2 behind pgbouncer2).

Readers must not wait for the primary's part of the outage, only for the standbys' catch-up;
writers must wait only for the primary's part. Each test uses revisions no other test uses and
keeps them in its own revision table, which it drops afterwards with what its patches created.
"""

import json
import os
import time

import psycopg2
import pytest

from conftest import kill_tree

from deploy import (
    assert_all_resumed, assert_nothing_lost, pg_one, pgbouncer_flags, run_playbook, table_exists,
    unique_major, write_patches)

pytestmark = pytest.mark.usefixtures('scratch')

SPLIT = {'fastdowntime_window_mode': 'split'}
STANDBYS = ('standby1', 'standby2')
# How long the primary's part is made to last, so that "readers did not wait for it" is measurable.
PRIMARY_PART_SECONDS = 1.5


def replay_states(lab):
    return {host: pg_one(lab, host, 'SELECT pg_get_wal_replay_pause_state()') for host in STANDBYS}


def phase_rows(report, name):
    return [p for p in report['phases'] if p['phase'] == name]


def test_split_readers_do_not_wait_for_the_primary(healthy_lab, tmp_path):
    lab = healthy_lab
    major = unique_major()
    names = ['fdt_sp%d_%d' % (major, i) for i in range(2)]
    patch_dir = write_patches(tmp_path, major, [
        'CREATE TABLE %s (id int PRIMARY KEY);' % names[0],
        # The primary's part takes a measurable time: readers must not see it.
        'CREATE TABLE %s (id int);\nSELECT pg_sleep(%s);' % (names[1], PRIMARY_PART_SECONDS),
    ])
    with lab.load(writers=('pgbouncer1', 'pgbouncer2'), readers=('pgbouncer1', 'pgbouncer2')) as load:
        time.sleep(0.5)
        proc, report_path = run_playbook(lab, tmp_path, patch_dir, SPLIT)
        time.sleep(0.5)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert_nothing_lost(lab, load)
    assert load.transactions('read') > 0
    # Writers waited for the primary's part; readers did not.
    assert load.max_wait('write') >= PRIMARY_PART_SECONDS, load.summary()
    assert load.max_wait('read') < PRIMARY_PART_SECONDS / 2, load.summary()
    for host in ('primary',) + STANDBYS:
        assert all(table_exists(lab, host, name) for name in names), host
    assert replay_states(lab) == {'standby1': 'not paused', 'standby2': 'not paused'}
    assert_all_resumed(lab)

    report = json.load(open(report_path))
    assert report['outcome'] == 'done', report.get('error')
    order = [p['phase'] for p in report['phases'] if p['start_offset_ms'] is not None
             and p['start_offset_ms'] >= 0]
    for earlier, later in [('replay_pause', 'drain_write'), ('drain_write', 'cold_transaction'),
                           ('cold_transaction', 'drain_read'), ('drain_read', 'replay_resume'),
                           ('replay_resume', 'standby_replay'), ('standby_replay', 'resume_read')]:
        assert order.index(earlier) < order.index(later), order
    # Only fdtdemo was drained for writes, only fdtdemo_ro for reads, on both pgbouncers.
    assert {p['host'].split()[0] for p in phase_rows(report, 'drain_write')} == {'pgbouncer1', 'pgbouncer2'}
    assert all(p['detail']['entries'] == ['fdtdemo'] for p in phase_rows(report, 'drain_write'))
    assert all(p['detail']['entries'] == ['fdtdemo_ro'] for p in phase_rows(report, 'drain_read'))
    # Each pgbouncer's write and read entries verified after RESUME, each row saying which.
    for name in ('resume_verify_write', 'resume_verify_read'):
        assert sorted(p['host'].split()[0] for p in phase_rows(report, name)) == ['pgbouncer1', 'pgbouncer2'], name
    assert phase_rows(report, 'resume_verify') == []
    window = report['split_window']
    assert window['write_outage_ms'] >= PRIMARY_PART_SECONDS * 1000, window
    assert 0 < window['read_outage_ms'] < PRIMARY_PART_SECONDS * 1000 / 2, window
    assert {name.split()[0] for name in report['standby_replay_ms']} == set(STANDBYS)


def test_split_bad_patch_after_replay_paused_resumes_everything(healthy_lab, tmp_path):
    lab = healthy_lab
    major = unique_major()
    patch_dir = write_patches(tmp_path, major, [
        'CREATE TABLE fdt_spa%d (id int);' % major,
        'CREATE TABLE fdt_spb%d (id int);\n\nALTER TABLE fdt_spmissing%d ADD COLUMN x int;' % (major, major),
    ])
    with lab.load(writers=('pgbouncer1', 'pgbouncer2'), readers=('pgbouncer1', 'pgbouncer2')) as load:
        proc, report_path = run_playbook(lab, tmp_path, patch_dir, SPLIT)
        time.sleep(0.3)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert 'patch-%d-02-0.sql' % major in out and 'does not exist' in out, out[-3000:]
    assert 'nothing applied' in out and 'every pgbouncer entry resumed and answering clients' in out, out[-3000:]
    assert 'replay resumed on every standby' in out, out[-3000:]
    assert 'Traceback' not in out and 'deploy-secret' not in out and 'admin-secret' not in out
    for host in ('primary',) + STANDBYS:
        for name in ('fdt_spa%d', 'fdt_spb%d'):
            assert not table_exists(lab, host, name % major), host
    assert replay_states(lab) == {'standby1': 'not paused', 'standby2': 'not paused'}
    assert_nothing_lost(lab, load)
    assert_all_resumed(lab)
    report = json.load(open(report_path))
    assert report['outcome'].startswith('aborted in schema')
    # Replay had been paused when the patch failed; reads were never drained.
    assert phase_rows(report, 'replay_pause')[0]['status'] == 'ok'
    assert not phase_rows(report, 'drain_read')
    assert phase_rows(report, 'replay_resume')[0]['status'] == 'ok'


def test_split_controller_killed_in_read_half_switch_resumes_and_preflight_resumes_replay(healthy_lab, tmp_path):
    """The dead-man switch must still guard the read half (it would stop watching if nothing
    stayed paused between the halves); replay left paused is resumed by the next pre-flight."""
    lab = healthy_lab
    major = unique_major()
    budget, grace = 4, 2
    patch_dir = write_patches(tmp_path, major, ['CREATE TABLE fdt_spk%d (id int);' % major])
    # A reader holding a transaction on standby1 keeps the read-only drain of pgbouncer1 waiting.
    holder = psycopg2.connect(lab.client_dsn('pgbouncer1', 'fdtdemo_ro'))
    with holder.cursor() as cur:
        cur.execute('SELECT 1')
    try:
        with lab.load(writers=('pgbouncer1', 'pgbouncer2'), readers=('pgbouncer2',)) as load:
            # The holder is there on purpose (the outage's last look before its clock would refuse it).
            proc, dummy = run_playbook(lab, tmp_path, patch_dir, dict(SPLIT, fastdowntime_budget_seconds=budget,
                                                                      fastdowntime_watchdog_grace_seconds=grace,
                                                                      fastdowntime_blocking_sessions='warn'),
                                       background=True)
            try:
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    if pgbouncer_flags(lab, 'pgbouncer1')['fdtdemo_ro'][0] == 1:
                        break
                    assert proc.poll() is None, proc.stdout.read()[-3000:]
                    time.sleep(0.02)
                else:
                    pytest.fail('the read half never paused pgbouncer1')
                read_paused_at = time.monotonic()
                kill_tree(proc.pid)
                proc.wait()
                while time.monotonic() - read_paused_at < budget + grace + 5:
                    if pgbouncer_flags(lab, 'pgbouncer1')['fdtdemo_ro'] == (0, 0):
                        break
                    time.sleep(0.1)
                resumed_after = time.monotonic() - read_paused_at
            finally:
                if proc.poll() is None:
                    kill_tree(proc.pid)
            holder.rollback()
            time.sleep(0.3)
    finally:
        holder.close()
    assert resumed_after <= budget + grace + 1.5, resumed_after
    assert_all_resumed(lab)
    assert_nothing_lost(lab, load)
    log = open(os.path.join(lab.lab_dir, 'hosts', 'pgbouncer1', 'log', 'watchdog.log')).read()
    armed = log.split('armed: watching')[-1]
    assert 'fdtdemo_ro' in armed and 'sent RESUME' in armed
    # The outage role armed it with the lifetime the plan computed (watchdog.deploy_max_lifetime_seconds).
    assert '(countdown %.1f s once paused, lifetime %.0f s)' % (budget + grace, 300 + budget + grace) in armed, armed
    # The controller died before resuming replay: the patch is committed, the standbys do not have it.
    assert table_exists(lab, 'primary', 'fdt_spk%d' % major)
    assert replay_states(lab) == {'standby1': 'paused', 'standby2': 'paused'}

    proc, dummy = run_playbook(lab, tmp_path, patch_dir, tags='preflight')
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert 'WARN replay_paused: standby1' in out and 'resumed it' in out, out[-4000:]
    assert replay_states(lab) == {'standby1': 'not paused', 'standby2': 'not paused'}
    deadline = time.monotonic() + 10
    while not all(table_exists(lab, h, 'fdt_spk%d' % major) for h in STANDBYS):
        assert time.monotonic() < deadline, 'the standbys did not replay the patch after replay was resumed'
        time.sleep(0.1)


def test_a_roles_own_remote_apply_refuses_the_split_window_before_any_pause(healthy_lab):
    """synchronous_commit = remote_apply set for an app role (or a database), the server's own setting
    left at on: a new user's try under load passed the pre-flight, then the split window's drain waited
    its whole budget for that role's COMMIT (waiting for the replay the window had paused) and aborted.
    The primary's synchronous set-up, as the window reads it, names such roles; with synchronous
    standbys the split window is refused."""
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils import replication
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import connect, query
    lab = healthy_lab
    admin = connect(lab.pg('primary'), autocommit=True)
    try:
        query(admin, 'ALTER ROLE fdt_app SET synchronous_commit = remote_apply')
        query(admin, 'ALTER ROLE fdt_app IN DATABASE %s SET synchronous_commit = remote_apply' % lab.db_name)
        settings = query(admin, replication.SYNCHRONOUS_SQL)[0]
    finally:
        query(admin, 'ALTER ROLE fdt_app RESET synchronous_commit')
        query(admin, 'ALTER ROLE fdt_app IN DATABASE %s RESET synchronous_commit' % lab.db_name)
        admin.close()
    assert settings['synchronous_commit'] != 'remote_apply', settings
    assert settings['remote_apply_by'] == ['role fdt_app', 'role fdt_app in database %s' % lab.db_name], settings
    blocked = replication.split_blocked_by_synchronous(replication.describe_synchronous(
        dict(settings, synchronous_standby_names='standby1'), {}))
    assert blocked == ("synchronous_commit = remote_apply set for role fdt_app, role fdt_app in database %s, with "
                       "synchronous_standby_names = 'standby1': those clients' commits would wait for replay the split "
                       "window pauses, and the drain for those commits" % lab.db_name)
    # Without synchronous standbys no commit waits: no refusal.
    assert replication.split_blocked_by_synchronous(replication.describe_synchronous(
        dict(settings, synchronous_standby_names=''), {})) is None
