"""Standbys as real clusters have them (lab shapes, lab/labctl.py SHAPES), each
through the whole playbook (pre-flight, outage) under a real client load.

Each test asks for its shape with the ``lab_shape`` fixture (one rebuild of the
lab, a few seconds) and checks everything about that shape in one deploy.
"""

import re
import time

import pytest

from deploy import (
    assert_all_resumed, assert_nothing_lost, pg_one, run_playbook, table_exists, unique_major, write_patches)

pytestmark = pytest.mark.usefixtures('scratch')


def host_vars_inventory(tmp_path, per_host):
    """An extra inventory source setting host variables on lab hosts."""
    lines = ['all:', '  hosts:']
    for host, variables in per_host.items():
        lines.append('    %s:' % host)
        lines += ['      %s: "%s"' % item for item in variables.items()]
    path = tmp_path / 'extra_hosts.yml'
    path.write_text('\n'.join(lines) + '\n')
    return path


def deploy_under_load(lab, tmp_path, inventories=(), extra=None):
    """One new table through pre-flight + outage under load; returns (proc, table)."""
    major = unique_major()
    table = 'fdt_s%d' % major
    patch_dir = write_patches(tmp_path, major, ['CREATE TABLE %s (id int PRIMARY KEY);' % table])
    with lab.load(writers=('pgbouncer1', 'pgbouncer2'), readers=('pgbouncer1', 'pgbouncer2')) as load:
        time.sleep(0.3)
        proc, _ = run_playbook(lab, tmp_path, patch_dir, tags='preflight,outage', inventories=inventories,
                               extra=extra)
        time.sleep(0.3)
    return proc, table, load


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
    proc, table, load = deploy_under_load(lab, tmp_path, inventories=[names])
    assert_deployed(lab, proc, table, load)
    assert '2 standby(s) in recovery and streaming' in proc.stdout, proc.stdout[-4000:]


def test_cascading_standby_deploys(lab_shape, tmp_path):
    """standby2 streams from standby1: the pre-flight follows the chain, the
    replay wait asks standby2 itself."""
    lab = lab_shape('cascade')
    proc, table, load = deploy_under_load(lab, tmp_path)
    assert_deployed(lab, proc, table, load)
    assert re.search(r'standby2 \(\S+\) via standby1', proc.stdout), proc.stdout[-4000:]


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
    proc, _ = run_playbook(lab, tmp_path, patch_dir, tags='preflight,outage')
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and 'Traceback' not in out, out[-4000:]
    line = [ln for ln in out.splitlines() if 'FAIL replay_paused' in ln]
    assert line and 'standby1' in line[0] and 'max_connections = 200 (the primary has 250)' in line[0], out[-4000:]
    assert 'raise max_connections on standby1' in out
    assert replay_state(lab, 'standby1') == 'paused'  # still running, still paused
    assert not table_exists(lab, 'primary', 'fdt_p%d' % major)


def test_replay_paused_by_an_operator_is_refused_and_left_paused(healthy_lab, tmp_path):
    lab = healthy_lab
    pg_one(lab, 'standby2', 'SELECT pg_wal_replay_pause()::text')
    try:
        major = unique_major()
        patch_dir = write_patches(tmp_path, major, ['CREATE TABLE fdt_o%d (id int);' % major])
        proc, _ = run_playbook(lab, tmp_path, patch_dir, tags='preflight')
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, out[-4000:]
        assert 'standby2' in out and 'somebody paused it on purpose' in out, out[-4000:]
        assert replay_state(lab, 'standby2') == 'paused'
    finally:
        pg_one(lab, 'standby2', 'SELECT pg_wal_replay_resume()::text')
