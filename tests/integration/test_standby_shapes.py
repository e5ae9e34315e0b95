"""Standbys as real clusters have them (lab shapes, lab/labctl.py SHAPES), each
through the whole playbook (pre-flight, outage) under a real client load.

Each test asks for its shape with the ``lab_shape`` fixture (one rebuild of the
lab, a few seconds) and checks everything about that shape in one deploy.
"""

import json
import os
import re
import shutil
import subprocess
import time

import psycopg2
import pytest

import scenarios

from deploy import (
    REVISION_TABLE, assert_all_resumed, assert_nothing_lost, pg_one, pgbouncer_flags, run_playbook, table_exists,
    unique_major, write_patches)

from ansible_collections.fastdowntime.postgresql.plugins.module_utils.preflight import Preflight

pytestmark = pytest.mark.usefixtures('scratch')


def preflight_findings(lab, patch_dir, check, host_key=None, inventory_standbys=('standby1', 'standby2'), **overrides):
    """The pre-flight's findings of ``check`` on the lab as it is now (read-only
    unless replay left paused by this collection must be resumed); the
    databases addressed by ``lab.hosts[h][host_key]`` (e.g. 'dns_name') when given;
    only ``inventory_standbys`` listed; ``overrides`` of every database endpoint (e.g. user, password)."""
    def pg(host):
        endpoint = dict(lab.pg(host), **overrides)
        return dict(endpoint, host=lab.hosts[host][host_key]) if host_key else endpoint
    standbys = [dict(pg(name), pgbouncer_entries=['%s:%s_ro' % (pgb, lab.db_name)])
                for name, pgb in (('standby1', 'pgbouncer1'), ('standby2', 'pgbouncer2')) if name in inventory_standbys]
    result = Preflight(primary=pg('primary'), standbys=standbys,
                       pgbouncers=[lab.pgbouncer('pgbouncer1'), lab.pgbouncer('pgbouncer2')], db_name=lab.db_name,
                       patch_dir=patch_dir, budget_seconds=10, revision_table=REVISION_TABLE).run()
    return [f for f in result['checks'] if check in (None, f['check'])]


def host_vars_inventory(tmp_path, per_host):
    """An extra inventory source setting host variables on lab hosts."""
    lines = ['all:', '  hosts:']
    for host, variables in per_host.items():
        lines.append('    %s:' % host)
        lines += ['      %s: "%s"' % item for item in variables.items()]
    path = tmp_path / 'extra_hosts.yml'
    path.write_text('\n'.join(lines) + '\n')
    return path


def deploy_under_load(lab, tmp_path, inventories=(), extra=None, major=None, applied=()):
    """One new table through pre-flight + outage under load, after the patches
    ``applied`` already are (bodies, same major); returns (proc, table, load)."""
    major = major or unique_major()
    table = 'fdt_s%d' % major
    where = tmp_path / 'final'
    where.mkdir()
    patch_dir = write_patches(where, major, list(applied) + ['CREATE TABLE %s (id int PRIMARY KEY);' % table])
    with lab.load(writers=('pgbouncer1', 'pgbouncer2'), readers=('pgbouncer1', 'pgbouncer2')) as load:
        time.sleep(0.3)
        proc, dummy = run_playbook(lab, tmp_path, patch_dir, tags='preflight,outage', inventories=inventories,
                                   extra=extra)
        time.sleep(0.3)
    return proc, table, load, patch_dir


def assert_deployed(lab, proc, table, load):
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert_nothing_lost(lab, load)
    for host in ('primary', 'standby1', 'standby2'):
        assert table_exists(lab, host, table), host
    assert_all_resumed(lab)


def test_default_names_one_address_and_dns_names_deploy(lab_shape, tmp_path):
    """No application_name, no cluster_name (every standby is 'walreceiver'),
    every standby streaming through one relay (one client_addr), the inventory
    naming the database hosts by DNS name: identified by their slots."""
    lab = lab_shape('walreceiver_names,one_address,dns_names')
    names = host_vars_inventory(tmp_path, dict(
        (host, {'fastdowntime_pg_host': lab.hosts[host]['dns_name']}) for host in ('primary', 'standby1', 'standby2')))
    proc, table, load, patch_dir = deploy_under_load(lab, tmp_path, inventories=[names])
    assert_deployed(lab, proc, table, load)
    assert 'primary.lab%d.fastdowntime.test' % lab.topology['lab_id'] in proc.stdout  # the inventory's names were used
    found = preflight_findings(lab, patch_dir, 'standbys', host_key='dns_name')
    assert found[0]['status'] == 'pass', found
    assert [s['identified_by'] for s in found[0]['evidence']['standbys']] == ['slot standby1', 'slot standby2']
    rows = found[0]['evidence']['pg_stat_replication']
    assert len(set(r['client_addr'] for up in rows.values() for r in up)) == 1  # one address for both
    assert set(r['application_name'] for up in rows.values() for r in up) == {'walreceiver'}


def test_cascading_standby_deploys(lab_shape, tmp_path):
    """standby2 streams from standby1: the pre-flight follows the chain, the
    replay wait asks standby2 itself."""
    lab = lab_shape('cascade')
    proc, table, load, patch_dir = deploy_under_load(lab, tmp_path)
    assert_deployed(lab, proc, table, load)
    found = preflight_findings(lab, patch_dir, 'standbys')
    assert found[0]['status'] == 'pass' and re.search(r'standby2 \(\S+\) via standby1', found[0]['summary']), found

    # tryit 7b: standby1, standby2's upstream, stopped: the cascade's one cause named once with its fix;
    # standby2 (no WAL through it) is not waited for (max_lag_seconds) and the budget blames no patch.
    pending = write_patches(tmp_path, unique_major(), ['CREATE TABLE fdt_zc%d (id int);' % unique_major()])
    scenarios.pg_ctl(lab, 'standby1', '-m', 'immediate', 'stop')
    try:
        checks = preflight_findings(lab, pending, None)
    finally:
        scenarios.pg_ctl(lab, 'standby1', 'start')
        scenarios.wait_streaming(lab)
    failed = [(f['check'], f['summary']) for f in checks if f['status'] == 'fail']
    standbys = [f for f in checks if f['check'] == 'standbys'][0]
    assert re.search(r'standby2 \(\S+\): WAL receiver is [a-z ]+: its upstream standby1 \(\S+\) is not reached '
                     r'\(a cascade: standby2 \(\S+\) gets no WAL through it\)', standbys['summary']), failed
    assert re.fullmatch(r'start standby1 \(\S+\) \(or remove it from fastdowntime_standbys\)', standbys['action'])
    assert not [f for f in checks if f['check'] == 'lag' and 'standby2' in (f['host'] or '')], failed
    budget = [f for f in checks if f['check'] == 'budget'][0]
    assert budget['status'] != 'fail' and 'costliest' not in (budget['action'] or ''), budget
    assert budget['evidence'].get('standby_replay_ms', 0) < 10000, budget


def test_standbys_streaming_over_ipv6_are_identified_by_address(lab_shape, tmp_path):
    """Every standby streams from its upstream's IPv6 address, as PostgreSQL's
    default 'walreceiver' and without a slot, and the inventory names the
    databases by IPv6 address: each standby is identified by its own IPv6
    client_addr, and the deploy under load succeeds."""
    lab = lab_shape('ipv6,walreceiver_names,no_slots')
    databases = ('primary', 'standby1', 'standby2')
    hosts6 = host_vars_inventory(tmp_path, dict((h, {'fastdowntime_pg_host': lab.hosts[h]['addr6']})
                                                for h in databases))
    proc, table, load, patch_dir = deploy_under_load(lab, tmp_path, inventories=[hosts6])
    assert_deployed(lab, proc, table, load)
    assert lab.hosts['primary']['addr6'] in proc.stdout  # the inventory's IPv6 addresses were used
    found = preflight_findings(lab, patch_dir, 'standbys', host_key='addr6')
    assert found[0]['status'] == 'pass', found
    # An IPv6 address is bracketed before its port (try 6, defect 11a).
    assert [s['label'] for s in found[0]['evidence']['standbys']] == [
        '%s ([%s]:5432)' % (h, lab.hosts[h]['addr6']) for h in ('standby1', 'standby2')]
    assert 'primary ([%s]:5432)' % lab.hosts['primary']['addr6'] in found[0]['evidence']['pg_stat_replication']
    assert [s['identified_by'] for s in found[0]['evidence']['standbys']] == [
        'client_addr %s' % lab.hosts[h]['addr6'] for h in ('standby1', 'standby2')]
    rows = found[0]['evidence']['pg_stat_replication']
    assert set(r['application_name'] for up in rows.values() for r in up) == {'walreceiver'}
    assert set(r['slot_name'] for up in rows.values() for r in up) == {None}


def test_standbys_streaming_over_tls_in_a_cascade(lab_shape, tmp_path):
    """ssl = on everywhere, replication only over TLS (sslmode=require in
    primary_conninfo), standby2 streaming from standby1: the deploy under load
    succeeds and the pre-flight follows the chain."""
    lab = lab_shape('tls,cascade')
    proc, table, load, patch_dir = deploy_under_load(lab, tmp_path)
    assert_deployed(lab, proc, table, load)
    found = preflight_findings(lab, patch_dir, 'standbys')
    assert found[0]['status'] == 'pass' and re.search(r'standby2 \(\S+\) via standby1', found[0]['summary']), found
    encrypted = 'SELECT bool_and(s.ssl) FROM pg_stat_replication AS r JOIN pg_stat_ssl AS s USING (pid)'
    assert pg_one(lab, 'primary', encrypted) is True and pg_one(lab, 'standby1', encrypted) is True
    assert 'sslmode=require' in pg_one(lab, 'standby2', 'SELECT conninfo FROM pg_stat_wal_receiver')
    with pytest.raises(psycopg2.OperationalError, match='no encryption'):
        psycopg2.connect(host=lab.addr('primary'), port=5432, user='fdt_replication',
                         password=lab.users['fdt_replication'], dbname='replication', replication='true',
                         sslmode='disable')


@pytest.mark.parametrize('shape', ['walreceiver_names,one_address,no_slots', 'cascade'])
def test_a_streaming_standby_left_out_of_the_inventory_is_named(lab_shape, tmp_path, shape):
    """tryit8 #3: standby2 streams but the inventory lists standby1 alone: the pre-flight
    names the pg_stat_replication row no inventory standby matches, where it is (a
    cascade: on standby1's), or says the rows cannot be told apart (PostgreSQL's default
    name for every standby, one address for all through a relay, no slots). The default
    shape: test_operator_output.py::test_a_standby_left_out_of_the_inventory_is_named_in_one_line."""
    lab = lab_shape(shape)
    found = preflight_findings(lab, str(tmp_path), 'standbys', inventory_standbys=('standby1',))[0]
    assert found['status'] == 'fail', found

    def label(host):
        return '%s (%s:5432)' % (host, lab.addr(host))

    if shape == 'cascade':
        assert re.search(r"1 streaming standby\(s\) of this primary are not in the inventory \(the rows of "
                         r"pg_stat_replication no inventory standby matches: application_name 'standby2' from %s "
                         r"\((slot \S+, )?streaming, async\) on %s \(a cascade: it streams from %s, not from the "
                         r"primary\)\)" % (re.escape(lab.addr('standby2')), re.escape(label('standby1')),
                                           re.escape(label('standby1'))), found['summary']), found['summary']
        assert [r['upstream'] for r in found['evidence']['not_in_inventory']] == [label('standby1')]
        return
    relay = set(r['client_addr'] for r in found['evidence']['not_in_inventory'])
    assert len(relay) == 1 and len(found['evidence']['not_in_inventory']) == 2, found['evidence']
    row = ("application_name 'walreceiver' from %s (streaming, async) on %s - like 1 other row(s) there, without a "
           "slot" % (relay.pop(), label('primary')))
    assert ("1 streaming standby(s) of this primary are not in the inventory: 1 of the 2 rows of pg_stat_replication "
            "no inventory standby matches (%s; %s) are not %s's - which ones cannot be told from these rows"
            % (row, row, label('standby1'))) in found['summary'], found['summary']
    assert 'give each standby a replication slot (primary_slot_name)' in found['action'], found['action']


def test_a_wal_archiver_streaming_from_the_primary_is_not_a_standby(healthy_lab, tmp_path):
    """pg_receivewal (as barman runs it) streams from the primary beside the
    standbys - state 'streaming', nothing replayed: the standbys check still
    passes, it is not 'a streaming standby the inventory lacks'."""
    lab = healthy_lab
    major = unique_major()
    patch_dir = write_patches(tmp_path, major, ['CREATE TABLE fdt_w%d (id int);' % major])
    target = os.path.join(lab.lab_dir, 'hosts', 'app1', 'wal-%d' % major)  # readable by postgres, unlike tmp_path
    os.makedirs(target)
    shutil.chown(target, 'postgres', 'postgres')
    receiver = subprocess.Popen(
        ['ip', 'netns', 'exec', lab.topology['netns_prefix'] + 'app1', 'runuser', '-u', 'postgres', '--',
         '/usr/lib/postgresql/15/bin/pg_receivewal', '-D', target, '-h', lab.addr('primary'), '-U',
         'fdt_replication', '--no-loop'],
        env=dict(os.environ, PGPASSWORD=lab.users['fdt_replication']), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 10
        while pg_one(lab, 'primary', "SELECT count(*) FROM pg_stat_replication "
                                     "WHERE application_name = 'pg_receivewal' AND state = 'streaming'") != 1:
            assert receiver.poll() is None and time.monotonic() < deadline, receiver.communicate()[0]
            time.sleep(0.1)
        found = preflight_findings(lab, patch_dir, 'standbys')
        assert found[0]['status'] == 'pass', found
        assert 'pg_receivewal' in [r['application_name'] for r in found[0]['evidence']['pg_stat_replication'][
            'primary (%s:5432)' % lab.addr('primary')]]
    finally:
        receiver.terminate()
        receiver.wait(10)
        shutil.rmtree(target, ignore_errors=True)


def replay_state(lab, host):
    return pg_one(lab, host, 'SELECT pg_get_wal_replay_pause_state()')


def test_replay_paused_by_postgresql_is_refused_and_never_resumed(lab_shape, tmp_path):
    """standby1's max_connections is below the primary's: PostgreSQL paused its
    replay, and resuming would shut it down. The pre-flight refuses, naming the
    host, the setting and the fix, and leaves it paused and running."""
    lab = lab_shape('standby_below_primary')
    assert replay_state(lab, 'standby1') == 'paused'
    major = unique_major()
    patch_dir = write_patches(tmp_path, major, ['CREATE TABLE fdt_p%d (id int);' % major])
    proc, dummy = run_playbook(lab, tmp_path, patch_dir, tags='preflight,outage')
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and 'Traceback' not in out, out[-4000:]
    line = [ln for ln in out.splitlines() if 'replay_paused: standby1' in ln]
    assert line and 'max_connections = 200 (the primary has 250)' in line[0], out[-4000:]
    assert 'raise max_connections on standby1' in line[0]
    assert replay_state(lab, 'standby1') == 'paused'  # still running, still paused
    assert not table_exists(lab, 'primary', 'fdt_p%d' % major)


def test_replay_paused_by_an_operator_is_refused_unless_told_to_resume_it(healthy_lab, tmp_path):
    """An operator's pause (no marker): refused and left paused; with
    fastdowntime_resume_operator_replay_pause the pre-flight resumes it, warns,
    and the deploy under load succeeds with the schema on every standby."""
    lab = healthy_lab
    pg_one(lab, 'standby2', 'SELECT pg_wal_replay_pause()::text')
    try:
        major = unique_major()
        patch_dir = write_patches(tmp_path, major, ['CREATE TABLE fdt_o%d (id int);' % major])
        proc, dummy = run_playbook(lab, tmp_path, patch_dir, tags='preflight')
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0 and 'Traceback' not in out, out[-4000:]
        line = [ln for ln in out.splitlines() if 'replay_paused: standby2' in ln]
        assert line and 'somebody paused it on purpose' in line[0], out[-4000:]
        assert 'fastdowntime_resume_operator_replay_pause: true' in out
        assert replay_state(lab, 'standby2') == 'paused'

        proc, table, load, dummy = deploy_under_load(
            lab, tmp_path, extra={'fastdowntime_resume_operator_replay_pause': True})
        assert 'resumed it, as fastdowntime_resume_operator_replay_pause allows' in proc.stdout, proc.stdout[-4000:]
        assert_deployed(lab, proc, table, load)
        assert replay_state(lab, 'standby2') == 'not paused'
    finally:
        pg_one(lab, 'standby2', 'SELECT pg_wal_replay_resume()::text')


def test_replay_held_by_a_standby_query_is_refused_before_any_pause(healthy_lab, tmp_path):
    """A young transaction on standby1 holds a lock replay needs (the startup
    process waits on it; max_standby_streaming_delay = -1): the pre-flight
    refuses, naming standby1, the blocking pid and the setting, before any
    PAUSE. On standby2 (delay 100 ms) replay cancelled its reader instead: a
    recovery_conflicts warning with the count."""
    lab = healthy_lab
    major = unique_major()
    scratch_table = 'fdt_b%d' % major
    primary = psycopg2.connect(lab.primary_dsn())
    primary.autocommit = True
    admin2 = psycopg2.connect(lab.dsn(lab.pg('standby2')))
    admin2.autocommit = True
    readers = []
    try:
        with primary.cursor() as cur:
            cur.execute('CREATE TABLE %s (id int)' % scratch_table)
        deadline = time.monotonic() + 10
        while not all(table_exists(lab, h, scratch_table) for h in ('standby1', 'standby2')):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with admin2.cursor() as cur:
            cur.execute("ALTER SYSTEM SET max_standby_streaming_delay = '100ms'")
            cur.execute('SELECT pg_reload_conf()')
            cur.execute('SELECT pg_stat_reset()')
        for host in ('standby1', 'standby2'):
            reader = psycopg2.connect(lab.dsn(lab.pg(host)))
            with reader.cursor() as cur:
                cur.execute('SELECT count(*) FROM %s' % scratch_table)  # its transaction stays open
            readers.append(reader)
        blocker_pid = readers[0].get_backend_pid()
        with primary.cursor() as cur:  # replayed as an AccessExclusiveLock on each standby
            cur.execute('BEGIN; LOCK TABLE %s IN ACCESS EXCLUSIVE MODE; COMMIT' % scratch_table)
        deadline = time.monotonic() + 10
        while pg_one(lab, 'standby2', 'SELECT confl_lock FROM pg_stat_database_conflicts '
                                      'WHERE datname = current_database()') == 0:
            assert time.monotonic() < deadline, 'standby2 did not cancel its reader'
            time.sleep(0.05)

        patch_dir = write_patches(tmp_path, major, ['CREATE TABLE fdt_r%d (id int);' % major])
        proc, dummy = run_playbook(lab, tmp_path, patch_dir, tags='preflight,outage')
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0 and 'Traceback' not in out, out[-4000:]
        line = [ln for ln in out.splitlines() if 'replay_blockers: standby1' in ln]
        assert line and 'pid %d' % blocker_pid in line[0] and 'Lock:relation' in line[0] \
            and 'max_standby_streaming_delay = -1' in line[0], out[-4000:]
        warned = [ln for ln in out.splitlines() if 'recovery_conflicts: standby2' in ln]
        assert warned and '1 queries cancelled by recovery conflicts (lock 1)' in warned[0], out[-4000:]
        # refused before anything was paused or applied
        assert not table_exists(lab, 'primary', 'fdt_r%d' % major)
        assert_all_resumed(lab)
        assert [replay_state(lab, h) for h in ('standby1', 'standby2')] == ['not paused', 'not paused']
    finally:
        for reader in readers:
            try:
                reader.close()
            except psycopg2.Error:
                pass
        with admin2.cursor() as cur:
            cur.execute('ALTER SYSTEM RESET max_standby_streaming_delay')
            cur.execute('SELECT pg_reload_conf()')
            cur.execute('SELECT pg_stat_reset()')
        admin2.close()
        primary.close()


def test_a_connection_lost_between_checks_is_one_finding_naming_the_host(healthy_lab, tmp_path, monkeypatch):
    """Between the standbys check and the replay check, standby1's pre-flight
    backend is terminated and standby2 is stopped: the pre-flight does not
    crash; each is named once as a lost connection, and nothing else fails
    for them."""
    lab = healthy_lab
    major = unique_major()
    patch_dir = write_patches(tmp_path, major, ['CREATE TABLE fdt_l%d (id int);' % major])
    pg_ctl = '/usr/lib/postgresql/15/bin/pg_ctl'
    pgdata = '%s/hosts/standby2/pgdata' % lab.lab_dir
    original = Preflight._check_replay

    def cut_then_check(self, primary, standbys):
        pg_one(lab, 'standby1', "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE application_name = 'fastdowntime-preflight'")
        lab.ns_exec('standby2', 'runuser', '-u', 'postgres', '--', pg_ctl, '-D', pgdata, '-m', 'immediate', '-w',
                    'stop')
        return original(self, primary, standbys)

    monkeypatch.setattr(Preflight, '_check_replay', cut_then_check)
    try:
        standbys = [dict(lab.pg(name), pgbouncer_entries=['%s:%s_ro' % (pgb, lab.db_name)])
                    for name, pgb in (('standby1', 'pgbouncer1'), ('standby2', 'pgbouncer2'))]
        result = Preflight(primary=lab.pg('primary'), standbys=standbys,
                           pgbouncers=[lab.pgbouncer('pgbouncer1'), lab.pgbouncer('pgbouncer2')],
                           db_name=lab.db_name, patch_dir=patch_dir, budget_seconds=10,
                           revision_table=REVISION_TABLE).run()
    finally:
        lab.ns_exec('standby2', 'runuser', '-u', 'postgres', '--', pg_ctl, '-D', pgdata, '-l',
                    '%s/hosts/standby2/log/postgresql.log' % lab.lab_dir, '-w', 'start')
    assert result['passed'] is False
    for host in ('standby1', 'standby2'):
        lost = [f for f in result['checks'] if f['status'] == 'fail' and f['host'] and f['host'].startswith(host)]
        assert [f['check'] for f in lost] == ['connection'], lost
        assert 'connection lost during the pre-flight' in lost[0]['summary'] and host in lost[0]['action']
    deadline = time.monotonic() + 30
    while pg_one(lab, 'primary', "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") != 2:
        assert time.monotonic() < deadline, 'standby2 did not stream again'
        time.sleep(0.2)


def test_synchronous_remote_apply_standby(lab_shape, tmp_path):
    """standby1 synchronous, synchronous_commit = remote_apply on the primary.
    A long read on standby1 (max_standby_streaming_delay = -1 in the lab) is
    refused by the pre-flight; split mode is refused before any pause; with
    standby1's replay held, the deploy's COMMIT does not wait on it (the
    budgeted replay wait fails instead, naming it); standby1 unreachable is refused by
    the pre-flight (which hung on it); a deploy under load succeeds."""
    lab = lab_shape('sync_apply')
    major = unique_major()

    # A long read on standby1: a replay blocker, named before any PAUSE.
    blocker = psycopg2.connect(lab.dsn(lab.pg('standby1')))
    try:
        with blocker.cursor() as cur:
            cur.execute('SELECT count(*) FROM fdt_item')
        time.sleep(5.5)  # older than the blocking threshold (half the lab's 10 s budget, at most 5 s)
        held_body = 'CREATE TABLE fdt_h%d (id int);' % major
        held = write_patches(tmp_path, major, [held_body])
        proc, dummy = run_playbook(lab, tmp_path, held, tags='preflight')
    finally:
        blocker.close()
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-4000:]
    line = [ln for ln in out.splitlines() if 'replay_blockers: standby1' in ln]
    assert line and 'max_standby_streaming_delay = -1' in line[0], out[-4000:]
    found = preflight_findings(lab, held, 'standbys')
    assert "synchronous_commit = remote_apply, synchronous now: standby1" in found[0]['summary'], found

    # Split mode would pause the replay client commits wait for: refused, nothing paused.
    proc, dummy = run_playbook(lab, tmp_path, held, extra={'fastdowntime_window_mode': 'split'})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and 'the split window is refused' in out and 'remote_apply' in out, out[-4000:]
    assert [replay_state(lab, h) for h in ('standby1', 'standby2')] == ['not paused', 'not paused']
    assert not table_exists(lab, 'primary', 'fdt_h%d' % major)

    # standby1's replay paused: the outage's last look before its clock refuses the window, nothing paused or
    # applied (replication.catch_up) - it used to commit locally, wait out the budget and fence standby1.
    pg_one(lab, 'standby1', 'SELECT pg_wal_replay_pause()::text')
    try:
        proc, report_path = run_playbook(lab, tmp_path, held, extra={'fastdowntime_budget_seconds': 3})
    finally:
        pg_one(lab, 'standby1', 'SELECT pg_wal_replay_resume()::text')
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and 'refused before any PAUSE: standby1' in out and 'its WAL replay is paused' in out, \
        out[-4000:]
    report = json.load(open(report_path))
    assert not [p for p in report['phases'] if p['phase'] in ('drain', 'commit')], report['phases']
    assert not table_exists(lab, 'primary', 'fdt_h%d' % major)
    assert set(pgbouncer_flags(lab, 'pgbouncer1').values()) == {(0, 0)}
    assert set(pgbouncer_flags(lab, 'pgbouncer2').values()) == {(0, 0)}

    # standby1, the synchronous standby, cut off before the run (the soak's standby_before on this shape): the
    # pre-flight refuses in one line naming it. Its lag probe (replication.LAG_PROBE_SQL, on a session with a
    # client's settings) committed with remote_apply and waited for standby1 with no bound: the pre-flight hung
    # until the link came back (run_playbook gives up after 300 s). Scenario standby_before, whole: the same
    # outcome check the soak applies.
    run = scenarios.standby_cut_off_before(lab, tmp_path)
    scenarios.check_run(lab, run)
    assert 'refused by pre-flight' in run.out and 'standby1 (%s:5432)' % lab.addr('standby1') in run.out, run.out[-4000:]

    proc, table, load, dummy = deploy_under_load(lab, tmp_path, major=major, applied=[held_body])
    assert_deployed(lab, proc, table, load)
