"""pgbouncer as production deploys it (issue 14), each set-up a lab shape, each run under a client
load: the deploy succeeds with no client error, or the pre-flight refuses before any PAUSE with one
line naming the pgbouncer, the setting and the fix. After every run every entry of every pgbouncer
process answers a client (asked through that process's own unix socket) and no switch is armed.
"""

import json
import os

import psycopg2
import pytest

from deploy import (
    assert_clean_error, assert_disarmed, assert_nothing_lost, deploy_under_load, every_process_serves, run_playbook,
    table_exists, unique_major, write_patches)

pytestmark = [pytest.mark.faults, pytest.mark.usefixtures('scratch')]


def console(lab, where):
    conn = psycopg2.connect(lab.dsn(dict(lab.pgbouncer('pgbouncer1'), host=where)))
    conn.autocommit = True
    return conn


def test_so_reuseport_pair_and_unix_socket_backend(lab_shape, tmp_path):
    """pgbouncer1 is two processes sharing port 6432 (so_reuseport), and every pgbouncer reaches the
    primary over its unix socket. Undeclared, the pair is refused by the pre-flight; declared (the lab
    inventory reads the lab's list of socket dirs), the deploy drains, resumes and watches each process.
    Following the old advice - fastdowntime_killable_users: [fdt_app] - no pgbouncer server connection
    is terminated; with drain_policy terminate, the client transaction holding the drain is found by
    its backend pid over the unix socket and ended, and the deploy goes through."""
    lab = lab_shape('pgbouncer_reuseport,pgbouncer_unix_backend')
    dirs = lab.hosts['pgbouncer1']['unix_socket_dirs']
    assert len(dirs) == 2
    major = unique_major()
    patch_dir = write_patches(tmp_path, major, ['CREATE TABLE fdt_r%d (id int);' % major])

    refused = run_playbook(lab, tmp_path, patch_dir, {'fastdowntime_pgbouncer_consoles': []}, tags='preflight')[0]
    out = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert_clean_error(out, 'refused by pre-flight', 'pgbouncer1 (%s:6432): so_reuseport = 1' % lab.addr('pgbouncer1'),
                       'declare every process of this host in fastdowntime_pgbouncer_consoles')

    holder = psycopg2.connect(lab.client_dsn('pgbouncer2'), application_name='report-query')
    try:
        with holder.cursor() as cur:
            cur.execute("INSERT INTO fdt_item (body) VALUES ('held open')")
        proc, out, load = deploy_under_load(lab, tmp_path, patch_dir, {
            'fastdowntime_killable_users': ['fdt_app'], 'fastdowntime_drain_policy': 'terminate',
            'fastdowntime_budget_seconds': 6})
        with pytest.raises(psycopg2.Error):
            with holder.cursor() as cur:
                cur.execute('SELECT 1')
    finally:
        holder.close()
    assert proc.returncode == 0, out[-4000:]
    assert table_exists(lab, 'primary', 'fdt_r%d' % major)
    assert_nothing_lost(lab, load)
    report = json.load(open(str(tmp_path / 'report.json')))
    assert report['outcome'] == 'done'
    # 2 entries on each of the 3 pgbouncer processes, each asked by a client after RESUME
    assert report['outage']['pgbouncer_state'] == 'every pgbouncer entry resumed and answering clients (6 checked)'
    drained = sorted(p['host'] for p in report['phases'] if p['phase'] == 'drain')
    assert [h for h in drained if h.startswith('pgbouncer1')] == sorted('pgbouncer1 (%s:6432)' % d for d in dirs)
    assert every_process_serves(lab) == {}
    assert_disarmed(lab)
    # One switch per process, each watching through its own socket, then disarmed.
    with open(os.path.join(lab.lab_dir, 'hosts', 'pgbouncer1', 'log', 'watchdog.log')) as handle:
        log = handle.read()
    for socket_dir in dirs:
        assert 'pgbouncer1 (%s:6432): armed: watching fdtdemo, fdtdemo_ro' % socket_dir in log, log[-2000:]


def test_session_entry_and_a_short_query_wait_timeout(lab_shape, tmp_path):
    """pgbouncer1 has query_wait_timeout = 3 s, and both pgbouncers an entry in session pooling. A
    session client connected: refused before any PAUSE. Then a report transaction holds the drain on
    pgbouncer2 with a 10 s budget: the budget is capped at 2 s by pgbouncer1's timeout, so the drain
    gives up and resumes before pgbouncer1 disconnects any of its queued clients."""
    lab = lab_shape('pgbouncer_session_entry,pgbouncer_low_timeouts')
    entries = ('fdtdemo', 'fdtdemo_ro', 'fdtdemo_session')
    major = unique_major()
    patch_dir = write_patches(tmp_path, major, ['CREATE TABLE fdt_s%d (id int);' % major])

    session = psycopg2.connect(lab.client_dsn('pgbouncer2', 'fdtdemo_session'), application_name='session-client')
    try:
        proc, out, load = deploy_under_load(lab, tmp_path, patch_dir)
    finally:
        session.close()
    assert proc.returncode != 0
    assert_clean_error(out, 'refused by pre-flight', 'pool_mode: pgbouncer2',
                       'fdtdemo_session (1 client) in pool_mode = session',
                       'set pool_mode = transaction for fdtdemo_session')
    assert 'Drain, cold patches' not in out  # refused before the outage play
    assert not table_exists(lab, 'primary', 'fdt_s%d' % major)
    assert_nothing_lost(lab, load)
    assert every_process_serves(lab, entries) == {}

    # A report transaction through pgbouncer2 holds its server connection for the whole deploy.
    reporter = psycopg2.connect(lab.client_dsn('pgbouncer2'), application_name='report-query')
    try:
        with reporter.cursor() as cur:
            cur.execute('SELECT count(*) FROM fdt_item')
        proc, out, load = deploy_under_load(lab, tmp_path, patch_dir)
    finally:
        reporter.rollback()
        reporter.close()
    assert proc.returncode != 0
    assert_clean_error(out, 'aborted in drain', 'pgbouncer2', 'fdt_app@',
                       'budget capped at 2 s by pgbouncer1 (%s:6432) query_wait_timeout = 3 s' % lab.addr('pgbouncer1'),
                       'every pgbouncer entry resumed and answering clients')
    assert not table_exists(lab, 'primary', 'fdt_s%d' % major)
    # pgbouncer1 disconnected nobody: its queued clients were resumed before its query_wait_timeout.
    assert_nothing_lost(lab, load)
    assert every_process_serves(lab, entries) == {}
    assert_disarmed(lab)


def test_pgbouncer_paused_by_another_tool_is_refused_by_pre_flight(healthy_lab, tmp_path):
    """A plain global PAUSE on pgbouncer2 (invisible in SHOW DATABASES on 1.18): the pre-flight's
    client probe sees it and refuses, naming pgbouncer2; nothing else is touched."""
    lab = healthy_lab
    patch_dir = write_patches(tmp_path, unique_major(), ['CREATE TABLE fdt_g%d (id int);' % unique_major()])
    admin = console(lab, lab.addr('pgbouncer2'))
    try:
        admin.cursor().execute('PAUSE')
        proc = run_playbook(lab, tmp_path, patch_dir, tags='preflight')[0]
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0
        assert_clean_error(out, 'refused by pre-flight', 'pgbouncer: pgbouncer2 (%s:6432)' % lab.addr('pgbouncer2'),
                           'got no answer within', 'RESUME on pgbouncer2')
        assert 'pgbouncer: pgbouncer1' not in out
    finally:
        admin.cursor().execute('RESUME')
        admin.close()
    assert every_process_serves(lab) == {}
