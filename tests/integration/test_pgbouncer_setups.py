"""pgbouncer as production deploys it (issue 14), each set-up a lab shape, each run under a client
load: the deploy succeeds with no client error, or the pre-flight refuses before any PAUSE with one
line naming the pgbouncer, the setting and the fix. After every run every entry of every pgbouncer
process answers a client (asked through that process's own unix socket) and no switch is armed.
"""

import json
import os
import re
import socket
import threading
import time

import psycopg2
import pytest

import labctl
import scenarios
from load import ClientLoad
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.outage import Outage
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.pgbouncer_console import (
    PROBE_SECONDS, Console, probe, probe_target, wait_logins_settled, with_probe_login)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.preflight import Preflight
from deploy import (
    REVISION_TABLE, assert_clean_error, assert_disarmed, assert_nothing_lost, client_answers, deploy_under_load,
    every_process_serves, run_playbook, table_exists, unique_major, write_patches)

pytestmark = [pytest.mark.faults, pytest.mark.usefixtures('scratch')]


def console(lab, where):
    conn = psycopg2.connect(lab.dsn(dict(lab.pgbouncer('pgbouncer1'), host=where)))
    conn.autocommit = True
    return conn


def login_retry_by_process(lab, setting=None):
    """{(pgbouncer host, socket dir): server_login_retry} of every pgbouncer process, each asked on
    its own unix socket console (over TCP a so_reuseport pair answers from either process);
    ``setting`` ({(host, dir): seconds}) SETs them first: a value of each process's own, so a
    restore that set one process's value on another, or missed one, shows."""
    found = {}
    for host, socket_dir in scenarios.pgbouncer_processes(lab):
        conn = psycopg2.connect(lab.dsn(dict(lab.pgbouncer(host), host=socket_dir)))
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                if setting:
                    cur.execute('SET server_login_retry = %d' % setting[(host, socket_dir)])
                cur.execute('SHOW CONFIG')
                found[(host, socket_dir)] = dict((row[0], row[1]) for row in cur.fetchall())['server_login_retry']
        finally:
            conn.close()
    return found


def distinct_login_retries(lab):
    """server_login_retry set to a value of its own on each pgbouncer process (15 + n s): the values
    the outage must set back on each, having lowered them to 0 for its window."""
    processes = scenarios.pgbouncer_processes(lab)
    assert len(processes) >= 3, processes  # the so_reuseport pair and pgbouncer2
    setting = dict((process, 15 + number) for number, process in enumerate(processes, start=1))
    assert login_retry_by_process(lab, setting) == dict((p, str(v)) for p, v in setting.items())
    return dict((p, str(v)) for p, v in setting.items())


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

    refused, out, load = deploy_under_load(lab, tmp_path, patch_dir, {'fastdowntime_pgbouncer_consoles': []})
    assert refused.returncode != 0
    assert_clean_error(out, 'refused by pre-flight', 'pgbouncer1 (%s:6432): so_reuseport = 1' % lab.addr('pgbouncer1'),
                       'declare every process of this host in fastdowntime_pgbouncer_consoles')
    assert 'Drain, cold patches' not in out  # before any PAUSE
    assert_nothing_lost(lab, load)
    assert every_process_serves(lab) == {}
    assert_disarmed(lab)

    configured = distinct_login_retries(lab)
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
    # server_login_retry, 0 inside the window, is back to its own value on each process (its own console).
    assert login_retry_by_process(lab) == configured
    # 2 entries on each of the 3 pgbouncer processes, each asked by a client after RESUME
    assert report['outage']['pgbouncer_state'] == 'every pgbouncer entry resumed and answering clients (6 checked)'
    drained = sorted(p['host'] for p in report['phases'] if p['phase'] == 'drain')
    assert [h for h in drained if h.startswith('pgbouncer1')] == sorted('pgbouncer1 (%s:6432)' % d for d in dirs)
    # The client whose backend was terminated got an error: the report's drain row and the run say so.
    terminated = [(p['host'], t) for p in report['phases'] if p['phase'] == 'drain'
                  for t in p['detail'].get('terminated', [])]
    pgbouncer2 = 'pgbouncer2 (%s:6432)' % lab.addr('pgbouncer2')
    assert [(host, t['usename']) for host, t in terminated] == [(pgbouncer2, 'fdt_app')]
    assert ('drain on pgbouncer2 (%s:6432): drain_policy terminate ended backend pid %d (user fdt_app'
            % (lab.addr('pgbouncer2'), terminated[0][1]['pid'])) in ' '.join(out.split()), out[-4000:]
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

    # A report transaction through pgbouncer2 holds its server connection for the whole deploy. The
    # pre-flight now refuses that (blocking_sessions, test_preflight.py), and so does the outage's last look
    # before its clock unless fastdowntime_blocking_sessions is warn: the outage runs alone here, with warn, so
    # that a drain held past the capped budget is still tested.
    reporter = psycopg2.connect(lab.client_dsn('pgbouncer2'), application_name='report-query')
    try:
        with reporter.cursor() as cur:
            cur.execute('SELECT count(*) FROM fdt_item')
        proc, out, load = deploy_under_load(lab, tmp_path, patch_dir, {'fastdowntime_blocking_sessions': 'warn'},
                                            tags='outage')
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
    settled = Console(lab.pgbouncer('pgbouncer2'), db_name=lab.db_name).open()
    try:  # as the outage does: a PAUSE closing a server login in flight spoils that pool for 15 s
        wait_logins_settled([settled])
    finally:
        settled.close()
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


def assert_statement_is_what_clients_see(lab, run, entries=('fdtdemo', 'fdtdemo_ro')):
    """The report's pgbouncer statement matches a client probe of every entry of every process."""
    seen = every_process_serves(lab, entries)
    assert seen == {}, seen
    assert run.statement == 'every pgbouncer entry resumed and answering clients (%d checked)' % (
        len(scenarios.pgbouncer_processes(lab)) * len(entries)), run.statement


def assert_only_its_own_clients_lost_their_connection(lab, run, load):
    """After a restart of run.facts['host']: no client error but its own clients' at the
    restart, nothing lost, every entry answering as the report says, nothing armed."""
    assert scenarios.client_errors_outside(load, lab.addr(run.facts['host']), run.facts['restarted']) == []
    assert load.missing_commits(lab.primary_dsn()) == []
    assert_statement_is_what_clients_see(lab, run)
    assert_disarmed(lab)


def test_pgbouncer_restarted_or_reloaded_inside_the_window(healthy_lab, tmp_path):
    """pgbouncer1 restarted during the cold transaction (a crash, `systemctl restart`: its
    clients lose their connections; an online restart is refused while paused): the resume
    reconnects and the probe checks it - done, not "RESUME FAILED". No other client saw an
    error. Then restarted while paused with the drain held on pgbouncer2: the drain's rollback
    reconnects and resumes; aborted in drain, not "could NOT resume". Then a RELOAD inside the
    window (logrotate's SIGHUP; pgbouncer issue 498: new clients failing after PAUSE + RELOAD):
    done, 0 client errors."""
    lab = healthy_lab
    run, load = scenarios.under_load(lab, scenarios.pgbouncer_restarted, tmp_path)
    scenarios.check_run(lab, run)
    assert run.facts['restarted'] is not None, 'the window closed before the restart'
    assert 'RESUME FAILED' not in run.out
    assert run.report['outcome'] == 'done'
    # Its clients flowed again before the window ended (the new process has nothing paused): said once.
    assert [o['entry'] for o in run.report['outage']['resumed_by_others'] if o['restarted']], run.report['outage']
    assert run.out.count('(restarted inside the window: its new process had nothing paused)') == 1, run.out[-3000:]
    assert_only_its_own_clients_lost_their_connection(lab, run, load)

    run, load = scenarios.under_load(lab, scenarios.pgbouncer_restarted_in_drain, tmp_path)
    scenarios.check_run(lab, run)
    assert run.facts['restarted'] is not None, 'pgbouncer1 was never paused'
    assert 'could NOT resume' not in run.out and 'RESUME FAILED' not in run.out
    assert 'every pgbouncer paused by this drain was resumed' in run.out, run.out[-3000:]
    assert_only_its_own_clients_lost_their_connection(lab, run, load)

    run, load = scenarios.under_load(lab, scenarios.pgbouncer_reloaded, tmp_path)
    scenarios.check_run(lab, run)
    assert run.facts['fault'] is not None, 'the window closed before the RELOAD'
    assert_nothing_lost(lab, load)
    assert_statement_is_what_clients_see(lab, run)
    assert_disarmed(lab)


def test_clients_connecting_for_every_transaction_queue_through_the_window(healthy_lab, tmp_path):
    """Clients without a pool of their own log in to pgbouncer for every transaction, so many
    arrive while an entry is paused (pgbouncer PR 35: a new client of a paused entry reached
    the server; PR 420: a PAUSE closing a server connection still logging in made the pool
    refuse the next clients after RESUME). Through the window they queue and are served: 0
    errors, nothing lost, and the report's statement is what the probe sees."""
    lab = healthy_lab
    run, load = scenarios.under_load(lab, scenarios.clean, tmp_path, connect_each=True, per_dsn=3, pause=0.005)
    scenarios.check_run(lab, run)
    assert_nothing_lost(lab, load)
    assert load.transactions('write') > 50, load.summary()
    assert_statement_is_what_clients_see(lab, run)
    assert_disarmed(lab)


def test_low_query_wait_timeout_is_named_by_the_pre_flight(lab_shape, tmp_path):
    """pgbouncer1's query_wait_timeout = 3 s (shape pgbouncer_low_timeouts): the pre-flight
    warns, one line naming pgbouncer1, the setting and the fix, and the deploy is done within
    the capped budget. At 1 s nothing is left of the budget: refused before any PAUSE, naming
    the same, under load with no client error. The controller killed inside the window: the
    dead-man switch of pgbouncer1 resumes before its query_wait_timeout, no client error."""
    lab = lab_shape('pgbouncer_low_timeouts')
    pgbouncer1 = 'pgbouncer1 (%s:6432)' % lab.addr('pgbouncer1')
    major = unique_major()
    patch_dir = write_patches(tmp_path, major, ['CREATE TABLE fdt_t%d (id int);' % major])
    proc, out, load = deploy_under_load(lab, tmp_path, patch_dir, {'fastdowntime_budget_seconds': 10})
    assert proc.returncode == 0, out[-4000:]
    warning = [line for line in out.splitlines() if 'query_wait_timeout' in line and 'capped at 2 s' in line]
    assert len(warning) == 1, out[-4000:]
    assert_clean_error(warning[0], pgbouncer1, 'query_wait_timeout = 3 s',
                       'raise query_wait_timeout in the pgbouncer.ini of %s' % pgbouncer1)
    assert_nothing_lost(lab, load)
    assert table_exists(lab, 'primary', 'fdt_t%d' % major)
    report = json.load(open(str(tmp_path / 'report.json')))
    assert report['budget_ms'] == 2000, report['budget_ms']
    assert every_process_serves(lab) == {}

    patch_dir = write_patches(tmp_path, major + 1, ['CREATE TABLE fdt_t%d (id int);' % (major + 1)])
    with scenarios.pgbouncer_setting(lab, 'pgbouncer1', 'query_wait_timeout', 1):
        proc, out, load = deploy_under_load(lab, tmp_path, patch_dir, {'fastdowntime_budget_seconds': 10})
    assert proc.returncode != 0
    refusal = [line for line in out.splitlines() if 'query_wait_timeout' in line]
    assert refusal, out[-4000:]
    assert_clean_error(out, 'refused by pre-flight', '%s: query_wait_timeout = 1 s' % pgbouncer1,
                       'raise query_wait_timeout above', 'in the pgbouncer.ini of %s' % pgbouncer1)
    assert 'Drain, cold patches' not in out
    assert not table_exists(lab, 'primary', 'fdt_t%d' % (major + 1))
    assert_nothing_lost(lab, load)
    assert every_process_serves(lab) == {}
    assert_disarmed(lab)

    # The controller killed inside the window (budget 4 s + grace 2 s): pgbouncer1's dead-man switch resumes its
    # entries before its query_wait_timeout disconnects the clients queued there (it counted budget + grace, and
    # pgbouncer1 dropped every queued client at 3 s: the soak's controller_killed on this shape); pgbouncer2's,
    # without that timeout, counts budget + grace. No client error, no commit lost.
    run, load = scenarios.under_load(lab, scenarios.controller_killed, tmp_path)
    scenarios.check_run(lab, run)
    assert run.facts['resumed_after'] is not None, 'the switches never resumed the entries'
    assert load.errors == [], load.error_texts()
    assert_nothing_lost(lab, load)
    assert every_process_serves(lab) == {}
    assert_disarmed(lab, within=5.0)


def test_so_reuseport_pair_after_refusal_abort_and_a_killed_controller(lab_shape, tmp_path):
    """On the so_reuseport pair, the primary reached over its unix socket, under load: a
    refusal (budget below the estimate), an abort inside the window (a failing patch) and the
    controller SIGKILLed inside the window each leave every entry of every process answering a
    client, and no switch armed; after the kill each process was resumed by its own switch."""
    lab = lab_shape('pgbouncer_reuseport,pgbouncer_unix_backend')
    dirs = lab.hosts['pgbouncer1']['unix_socket_dirs']
    configured = distinct_login_retries(lab)
    run, load = scenarios.under_load(lab, scenarios.budget_below_estimate, tmp_path)
    scenarios.check_run(lab, run)
    assert_nothing_lost(lab, load)
    assert every_process_serves(lab) == {}
    assert_disarmed(lab)
    assert login_retry_by_process(lab) == configured  # refused: never lowered

    run, load = scenarios.under_load(lab, scenarios.bad_patch, tmp_path)
    scenarios.check_run(lab, run)
    assert_nothing_lost(lab, load)
    assert_statement_is_what_clients_see(lab, run)
    # Aborted inside the window: each process's own value is back, set on its own console.
    assert login_retry_by_process(lab) == configured
    resumed = sorted(p['host'] for p in run.report['phases'] if p['phase'] == 'resume')
    assert [h for h in resumed if h.startswith('pgbouncer1')] == sorted('pgbouncer1 (%s:6432)' % d for d in dirs)
    assert_disarmed(lab)

    log_path = os.path.join(lab.lab_dir, 'hosts', 'pgbouncer1', 'log', 'watchdog.log')
    log_before = os.path.getsize(log_path)
    run, load = scenarios.under_load(lab, scenarios.controller_killed, tmp_path)
    scenarios.check_run(lab, run)
    assert run.facts['resumed_after'] is not None, 'a pgbouncer process stayed paused after the kill'
    assert run.facts['resumed_after'] <= run.facts['budget'] + run.facts['grace'] + 1.5, run.facts
    assert_nothing_lost(lab, load)
    assert every_process_serves(lab) == {}
    # Each switch that fired exits on its next poll.
    assert_disarmed(lab, within=5.0)
    with open(log_path) as handle:
        handle.seek(log_before)
        log = handle.read()
    # Each process's own switch resumed it, and set its own server_login_retry back.
    for socket_dir in dirs:
        assert 'pgbouncer1 (%s:6432): deadline passed with fdtdemo' % socket_dir in log, log[-3000:]
    assert login_retry_by_process(lab) == configured


def test_an_undeclared_so_reuseport_process_is_pointed_to_the_consoles_variable(lab_shape, tmp_path):
    """pgbouncer1 is two processes sharing port 6432, only the first declared: the second's server
    connections to the primary come from pgbouncer1's address and no declared console shows them.
    The pre-flight names the host and fastdowntime_pgbouncer_consoles - never killable or system
    users, whose advice would deploy with that process never drained."""
    lab = lab_shape('pgbouncer_reuseport')
    dirs = lab.hosts['pgbouncer1']['unix_socket_dirs']
    # A server connection of the second process, held in its pool.
    client = psycopg2.connect(host=dirs[1], port=6432, user='fdt_app', password=lab.users['fdt_app'],
                              dbname=lab.db_name)
    try:
        with client.cursor() as cur:
            cur.execute('SELECT pg_backend_pid()')
            pid = cur.fetchone()[0]
        client.commit()
        first = dict(lab.pgbouncer('pgbouncer1'), host=dirs[0], unix_socket_dir=dirs[0])
        result = Preflight(lab.pg('primary'), [lab.pg('standby1'), lab.pg('standby2')],
                           [first, lab.pgbouncer('pgbouncer2')], lab.db_name, write_patches(tmp_path, unique_major(), [
                               'CREATE TABLE fdt_u%d (id int);' % unique_major()]), budget_seconds=10).run()
    finally:
        client.close()
    [found] = [f for f in result['checks'] if f['check'] == 'direct_connections']
    primary = 'primary (%s:5432)' % lab.addr('primary')
    pgbouncer1 = 'pgbouncer1 (%s)' % lab.addr('pgbouncer1')
    assert found['status'] == 'fail', result['summary']
    assert found['summary'] == (
        '%s: connections from pgbouncer host %s that none of its declared consoles shows (a pgbouncer process not '
        'declared, sharing the port with so_reuseport?): fdt_app@%s (pid %d)' % (
            primary, pgbouncer1, lab.addr('pgbouncer1'), pid)), result['summary']
    assert found['action'] == ('declare every pgbouncer process of pgbouncer1 in fastdowntime_pgbouncer_consoles '
                               '(each is paused and resumed), then run the pre-flight again')
    assert 'killable' not in result['summary'] and 'fastdowntime_system_users' not in result['summary']


def test_server_connections_pgbouncer_churns_are_not_taken_for_an_undeclared_process(healthy_lab, tmp_path):
    """A new user's try 10: pgbouncer1 with `max_user_connections = 2` (a user-wide cap, reached under
    load by the app's two pools, fdtdemo and fdtdemo_ro): pgbouncer closes the user's server
    connection in one pool to open one in the other, connections of a few milliseconds. The
    pre-flight's one read of pg_stat_activity between two SHOW SERVERS caught one no console showed
    and refused (two deploys of two, 1 to 3 of 6 pre-flights under a lighter load here): "connections from pgbouncer host pgbouncer1 that none of its
    declared consoles shows (a pgbouncer process not declared, sharing the port with so_reuseport?)"
    - no such process. A connection gone a moment later is not one the outage would miss: passed;
    the held connection of a truly undeclared process still fails (the so_reuseport test above)."""
    lab = healthy_lab
    ini = os.path.join(lab.lab_dir, 'hosts', 'pgbouncer1', 'pgbouncer.ini')
    with open(ini) as handle:
        original = handle.read()
    admin = console(lab, lab.addr('pgbouncer1'))
    standbys = [dict(lab.pg(name), pgbouncer_entries=['%s:%s_ro' % (bouncer, lab.db_name)])
                for name, bouncer in (('standby1', 'pgbouncer1'), ('standby2', 'pgbouncer2'))]
    major = unique_major()
    patch_dir = write_patches(tmp_path, major, ['CREATE TABLE fdt_churn%d (id int);' % major])
    found = []
    try:
        with open(ini, 'w') as handle:
            handle.write(original.replace('[pgbouncer]\n', '[pgbouncer]\nmax_user_connections = 2\n', 1))
        admin.cursor().execute('RELOAD')
        with lab.load(writers=('pgbouncer1',), readers=('pgbouncer1',), per_dsn=4) as load:
            for dummy in range(8):
                result = Preflight(lab.pg('primary'), standbys, [lab.pgbouncer('pgbouncer1'), lab.pgbouncer('pgbouncer2')],
                                   lab.db_name, patch_dir, budget_seconds=10, revision_table=REVISION_TABLE).run()
                found += [f for f in result['checks'] if f['check'] == 'direct_connections']
        assert load.errors == [], load.errors[:5]
    finally:
        with open(ini, 'w') as handle:
            handle.write(original)
        admin.cursor().execute('RELOAD')
        admin.close()
    assert [f['status'] for f in found] == ['pass'] * 8, [f['summary'] for f in found]


def test_on_a_unix_socket_backend_sessions_are_attributed_by_pgbouncer_not_by_address(lab_shape, tmp_path):
    """Every pgbouncer reaches the primary over its unix socket: their server connections have no
    client address there (pg_stat_activity.client_addr NULL), like a local client's. Under load, a
    client idle in a transaction through pgbouncer2 is named by its own address (SHOW CLIENTS, linked
    to the server connection whose remote_pid is its backend), not 'local socket'; a server connection
    of pgbouncer1's undeclared second process (so_reuseport) is named as such a process or a local
    client, pointing to fastdowntime_pgbouncer_consoles - not as an unknown direct connection to
    terminate or ignore. Refused before any PAUSE: every entry of every process serves after."""
    lab = lab_shape('pgbouncer_reuseport,pgbouncer_unix_backend')
    dirs = lab.hosts['pgbouncer1']['unix_socket_dirs']
    undeclared = psycopg2.connect(host=dirs[1], port=6432, user='fdt_app', password=lab.users['fdt_app'],
                                  dbname=lab.db_name)
    stuck = psycopg2.connect(lab.client_dsn('pgbouncer2'), application_name='stuck-client')
    try:
        with undeclared.cursor() as cur:
            cur.execute('SELECT pg_backend_pid()')
            undeclared_pid = cur.fetchone()[0]
        undeclared.commit()  # its server connection stays in the second process's pool
        with stuck.cursor() as cur:
            cur.execute('SELECT pg_backend_pid(), count(*) FROM fdt_item')
            stuck_pid = cur.fetchone()[0]
        time.sleep(1.2)  # idle in transaction for longer than a pause between two statements
        first = dict(lab.pgbouncer('pgbouncer1'), host=dirs[0], unix_socket_dir=dirs[0])
        standbys = [dict(lab.pg('standby%d' % n), pgbouncer_entries=['pgbouncer%d:%s_ro' % (n, lab.db_name)])
                    for n in (1, 2)]
        with lab.load(writers=('pgbouncer2',)) as load:
            result = Preflight(lab.pg('primary'), standbys, [first, lab.pgbouncer('pgbouncer2')], lab.db_name,
                               write_patches(tmp_path, unique_major(), ['ALTER TABLE fdt_item ADD COLUMN fdt_u int;']),
                               budget_seconds=10).run()
        assert load.transactions() > 0 and not load.errors
    finally:
        undeclared.close()
        stuck.close()
    assert not result['passed']
    primary = 'primary (%s:5432)' % lab.addr('primary')
    [direct] = [f for f in result['checks'] if f['check'] == 'direct_connections']
    assert direct['status'] == 'fail' and direct['summary'] == (
        "%s: connections over the primary's local socket, which pgbouncer1, pgbouncer2 reach it through, that none "
        'of their declared consoles shows (a pgbouncer process not declared, sharing the port with so_reuseport, or '
        'a local client: its address cannot tell): fdt_app@local socket (pid %d)' % (primary, undeclared_pid)), \
        result['summary']
    assert 'fastdowntime_pgbouncer_consoles' in direct['action'] and 'killable' not in direct['action']
    [blocking] = [f for f in result['checks'] if f['check'] == 'blocking_sessions' and f['status'] == 'fail']
    controller = lab.addr('primary').rsplit('.', 1)[0] + '.1'
    assert blocking['host'] == primary and re.search(
        r"pid %d \(user fdt_app, application 'stuck-client', from %s:\d+ through pgbouncer2, idle in transaction "
        % (stuck_pid, re.escape(controller)), blocking['summary']), blocking['summary']
    assert 'local socket' not in blocking['summary'] and str(undeclared_pid) not in blocking['summary']
    assert every_process_serves(lab) == {}


class HeldRelay:
    """A TCP relay on the lab's bridge address to the primary (labctl.relay_connections)
    holding every new connection (accepted, nothing forwarded) until ``release()``: a
    pgbouncer server login through it stays in flight (SHOW POOLS sv_login)."""

    def __init__(self, lab):
        self.released = threading.Event()
        self.listener = socket.socket()
        self.listener.bind((lab.addr('primary').rsplit('.', 1)[0] + '.1', 0))
        self.listener.listen(16)
        self.addr, self.port = self.listener.getsockname()
        relayed = (self.listener, lab.addr('primary'), 5432, self.released)
        threading.Thread(target=labctl.relay_connections, args=relayed, daemon=True).start()

    def release(self):
        self.released.set()

    def close(self):
        self.released.set()
        self.listener.close()


def test_a_server_login_in_flight_is_waited_out_before_the_pause(healthy_lab, tmp_path):
    """pgbouncer closes a server connection still logging in when its entry is PAUSEd and takes it for
    a failed login (pgbouncer PR 420, never merged): for server_login_retry (15 s) the pool opens no
    server connection and fails the clients that find it without one - the ~15 s waits and errors of
    the benchmark's scale runs. pgbouncer1 gets one more entry, fdtdemo_held, whose server logins go
    through a relay holding them; a client's first login through it leaves a server login in flight
    while the outage prepares. The outage waits for it before its clock (released 0.5 s into that
    wait): the window runs, the client is served, no client of the load errs, and every entry,
    fdtdemo_held too, answers a client after RESUME. Had prepare not waited, the window would have
    run with the login held (released only after it), as the benchmark's windows did."""
    lab = healthy_lab
    ini = os.path.join(lab.lab_dir, 'hosts', 'pgbouncer1', 'pgbouncer.ini')
    with open(ini) as handle:
        original = handle.read()
    relay = HeldRelay(lab)
    admin = console(lab, lab.addr('pgbouncer1'))
    held_client, prepared = {}, {}
    major = unique_major()
    standbys = [dict(lab.pg(name), pgbouncer_entries=['%s:%s_ro' % (bouncer, lab.db_name)])
                for name, bouncer in (('standby1', 'pgbouncer1'), ('standby2', 'pgbouncer2'))]
    outage = Outage(primary=lab.pg('primary'), standbys=standbys, db_name=lab.db_name,
                    pgbouncers=[lab.pgbouncer('pgbouncer1'), lab.pgbouncer('pgbouncer2')], budget_seconds=10,
                    patch_dir=write_patches(tmp_path, major, ['CREATE TABLE fdt_h%d (id int);' % major]),
                    revision_table=REVISION_TABLE)

    def first_client():
        began = time.monotonic()
        try:
            conn = psycopg2.connect(lab.client_dsn('pgbouncer1', 'fdtdemo_held'), connect_timeout=10)
            with conn.cursor() as cur:
                cur.execute('SELECT 1')
                held_client['answer'] = cur.fetchone()[0]
            conn.close()
        except psycopg2.Error as exc:
            held_client['error'] = str(exc).strip()
        held_client['waited'] = time.monotonic() - began

    def prepare():
        try:
            outage.prepare()
        except Exception as exc:  # reported by the test's thread below
            prepared['error'] = exc

    def wait_for(what, predicate, timeout=60.0):
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, 'no %s within %.0f s' % (what, timeout)
            time.sleep(0.01)

    def login_in_flight():
        with admin.cursor() as cur:
            cur.execute('SHOW POOLS')
            names = [c[0] for c in cur.description]
            return [row for row in cur.fetchall() if dict(zip(names, row))['database'] == 'fdtdemo_held'
                    and dict(zip(names, row))['sv_login']]

    try:
        with open(ini, 'w') as handle:
            handle.write(original.replace('[databases]\n', '[databases]\nfdtdemo_held = host=%s port=%d dbname=%s\n'
                                          % (relay.addr, relay.port, lab.db_name), 1))
        admin.cursor().execute('RELOAD')
        with lab.load() as load:
            client = threading.Thread(target=first_client, daemon=True)
            client.start()
            wait_for('server login in flight', login_in_flight)
            preparing = threading.Thread(target=prepare, daemon=True)
            preparing.start()
            # entry_flags are read just before the wait for logins in flight
            wait_for('the flags read', lambda: outage.entry_flags or not preparing.is_alive())
            preparing.join(0.5)
            if preparing.is_alive():
                relay.release()
                preparing.join(30)
            assert 'error' not in prepared, prepared
            try:
                result = outage.run()
            finally:
                relay.release()
                outage.close()
            client.join(30)
            time.sleep(0.3)
        assert outage.login_settle_seconds >= 0.5, outage.login_settle_seconds
        assert result['outcome'] == 'done', result
        assert held_client.get('answer') == 1, held_client
        assert held_client['waited'] < 10, held_client
        assert load.errors == [], load.errors[:5]
        assert_nothing_lost(lab, load)
        assert result['outage']['pgbouncer_state'] == \
            'every pgbouncer entry resumed and answering clients (5 checked)', result['outage']
        assert client_answers(lab, 'pgbouncer1', 'fdtdemo_held') is None
    finally:
        relay.close()
        with open(ini, 'w') as handle:
            handle.write(original)
        admin.cursor().execute('RELOAD')
        admin.close()
    assert every_process_serves(lab) == {}


def test_the_probe_waits_for_a_pgbouncer_restarting_within_its_time(healthy_lab):
    """pgbouncer1 stopped, started again 0.5 s later (a slow `systemctl restart`: nothing listens
    meanwhile). The client probe that says whether every entry answers after RESUME starts while
    pgbouncer1 refuses connections: it asks again until the new process listens, within its 2 s,
    and reports every entry answering - not "refused" at its first try (soak deploy 80)."""
    lab = healthy_lab
    endpoint = with_probe_login([lab.pgbouncer('pgbouncer1')], lab.pg('primary'))[0]
    probed = Console(endpoint, db_name=lab.db_name).open()
    try:
        entries = list(probed.entries)
        targets = [(entry, probe_target(probed, entry)) for entry in entries]
    finally:
        probed.close()
    scenarios.stop_pgbouncer(lab, 'pgbouncer1')
    with pytest.raises(ConnectionRefusedError):  # nothing listens now
        socket.create_connection((lab.addr('pgbouncer1'), 6432), timeout=1).close()
    restarted = {}

    def start_later():
        time.sleep(0.5)
        restarted['at'] = scenarios.start_pgbouncer(lab, 'pgbouncer1')
    restart = threading.Thread(target=start_later, daemon=True)
    restart.start()
    found = probe(targets, timeout=PROBE_SECONDS)
    restart.join(15)
    assert restarted.get('at'), 'pgbouncer1 was not started again'
    assert found == dict((entry, None) for entry in entries), found
    assert every_process_serves(lab) == {}


def paused_entries(lab, host):
    """{entry: paused (bool)} of every entry of pgbouncer ``host`` (SHOW DATABASES on its console)."""
    conn = psycopg2.connect(lab.dsn(lab.pgbouncer(host)))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute('SHOW DATABASES')
            names = [c[0] for c in cur.description]
            rows = [dict(zip(names, row)) for row in cur.fetchall()]
            return dict((row['name'], bool(int(row['paused']))) for row in rows)
    finally:
        conn.close()


def test_another_applications_entry_is_never_paused_and_serves_inside_the_window(lab_shape, tmp_path):
    """A pgbouncer shared with another application (pgbouncer#1145: clients queued on a database the
    PAUSE did not name). The deploy pauses its own database's entries only: while its window is held
    open (a cold patch waits for a lock the test holds), the other application's entry is not paused on
    any pgbouncer and its clients keep committing through it, while a client of the deploy's entry
    queues. Afterwards nothing is lost on either database and no client of either saw an error."""
    lab = lab_shape('pgbouncer_other_database')
    other = labctl.OTHER_DB_NAME
    major = unique_major()
    patch_dir = write_patches(tmp_path, major, ['CREATE TABLE fdt_oth%d (id int);\n%s'
                                                % (major, scenarios.HOLD_WINDOW_SQL)])
    pgbouncers = ('pgbouncer1', 'pgbouncer2')
    other_load = ClientLoad(writers=[lab.client_dsn(h, other) for h in pgbouncers])
    holder = scenarios.hold_window(lab)
    seen = {}

    def inside():
        """The window is open (the outage's transaction waits in its cold patch): look, then let it go."""
        try:
            seen['paused'] = dict((h, paused_entries(lab, h)) for h in pgbouncers)
            seen['ours'] = client_answers(lab, 'pgbouncer1', lab.db_name, timeout=1.0)
            before = other_load.transactions()
            seen['other'] = [client_answers(lab, h, other) for h in pgbouncers]
            time.sleep(0.5)
            seen['other_committed_inside'] = other_load.transactions() - before
            seen['still_open'] = scenarios.in_cold_transaction(lab)
        finally:
            holder.close()

    when = scenarios.When(lab, scenarios.in_cold_transaction, inside)
    try:
        with other_load:
            when.start()
            # The window alone (the pre-flight rightly refuses a DO block of unknown cost in a cold patch).
            proc, out, load = deploy_under_load(lab, tmp_path, patch_dir, {'fastdowntime_budget_seconds': 60},
                                                tags='outage')
            when.finish()
    finally:
        holder.close()
    assert proc.returncode == 0, out[-4000:]
    assert when.fired, 'the window never waited in its cold patch'
    assert seen['still_open'], 'the window closed while the test looked: what it saw proves nothing'
    for host in pgbouncers:
        assert seen['paused'][host][lab.db_name] and seen['paused'][host][lab.db_name + '_ro'], seen['paused']
        assert seen['paused'][host][other] is False, seen['paused']
    assert seen['ours'] and 'no answer' in seen['ours'], seen['ours']
    assert seen['other'] == [None, None], seen['other']
    assert seen['other_committed_inside'] > 0, seen
    assert table_exists(lab, 'primary', 'fdt_oth%d' % major)
    assert_nothing_lost(lab, load)
    assert other_load.errors == [], other_load.errors[:5]
    assert other_load.missing_commits(lab.primary_dsn().replace('dbname=%s' % lab.db_name, 'dbname=%s' % other)) == []
    assert every_process_serves(lab, (lab.db_name, lab.db_name + '_ro', other)) == {}
    assert_disarmed(lab)
