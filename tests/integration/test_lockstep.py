"""Lockstep on the lab, from what the systems report: the demo apps' release manifests and health,
every database's revision table. Both refusals and both successes, through ansible-playbook."""

import json
import os
import subprocess

import psycopg2
import pytest

from deploy import REVISION_TABLE, assert_all_resumed, pg_one, run_playbook, table_exists, unique_major, write_patches
from test_app_restart import health, pids, wait_healthy

pytestmark = pytest.mark.usefixtures('scratch')
APPS = ('app1', 'app2')
DEFAULT_MANIFEST = {'requires_revision': None, 'uses': ['fdt_item.id', 'fdt_item.body']}


def manifest_path(lab, app):
    return os.path.join(lab.lab_dir, 'hosts', app, 'release', 'fastdowntime.json')


def release(lab, app, manifest):
    """A new release of the demo app on ``app``: its manifest file (not running yet)."""
    with open(manifest_path(lab, app), 'w') as handle:
        handle.write(manifest if isinstance(manifest, str) else json.dumps(manifest))


def execute(lab, sql):
    conn = psycopg2.connect(lab.primary_dsn())
    conn.autocommit = True
    try:
        conn.cursor().execute(sql)
    finally:
        conn.close()


def restart(lab, app):
    """Start ``app`` on its current release (as the app_restart role's command does)."""
    subprocess.run([os.path.join(lab.lab_dir, 'hosts', app, 'appctl'), 'restart'], check=True, capture_output=True)
    wait_healthy(lab, app)


@pytest.fixture
def releases(healthy_lab):
    """Give every app its default release back afterwards, running."""
    yield
    for app in APPS:
        release(healthy_lab, app, DEFAULT_MANIFEST)
        restart(healthy_lab, app)


def test_expand_before_use_code_needing_a_revision_waits_for_every_database(healthy_lab, tmp_path, releases):
    lab = healthy_lab
    major = unique_major()
    patch_dir = write_patches(tmp_path, major, ['CREATE TABLE fdt_e%d (id int);' % major])
    needs = '%d-01-0' % major
    for app in APPS:
        release(lab, app, {'requires_revision': needs, 'uses': ['fdt_e%d.id' % major]})
    before = pids(lab)
    extra = {'fastdowntime_app_manifest_path': '{{ fdt_lab_dir }}/hosts/{{ inventory_hostname }}'
                                               '/release/fastdowntime.json'}
    # The code rollout alone (--tags restart) comes first: refused, nothing restarted.
    proc, dummy = run_playbook(lab, tmp_path, patch_dir, extra=extra, tags='restart')
    assert proc.returncode != 0
    refusal = [line for line in proc.stdout.splitlines() if 'lockstep refused the code rollout' in line]
    assert refusal, proc.stdout[-3000:]
    assert ('app1 requires schema revision %s (app1:%s), which primary (%s:5432) lacks (newest there: '
            % (needs, manifest_path(lab, 'app1'), lab.addr('primary'))) in refusal[0]
    assert '): deploy the schema first (the fastdowntime playbook without --tags restart)' in refusal[0]
    assert pids(lab) == before
    # The schema deploy (pre-flight, outage) then the same rollout: every database has it now.
    proc, dummy = run_playbook(lab, tmp_path, patch_dir, extra=extra, tags='preflight,outage,restart')
    assert proc.returncode == 0, proc.stdout[-3000:]
    after = pids(lab)
    assert all(after[app] != before[app] for app in APPS)
    for app in APPS:
        assert health(lab, app)[1]['fastdowntime']['requires_revision'] == needs
    # A release needing a revision nobody deployed is refused even right after a deploy.
    release(lab, 'app2', {'requires_revision': '%d-09-0' % major, 'uses': []})
    proc, dummy = run_playbook(lab, tmp_path, patch_dir, extra=extra, tags='restart')
    assert proc.returncode != 0 and 'app2 requires schema revision %d-09-0' % major in proc.stdout
    assert 'newest there: %s' % needs in proc.stdout
    # An app whose release carries no manifest reports nothing: one line, no restart.
    release(lab, 'app2', 'not json')
    proc, dummy = run_playbook(lab, tmp_path, patch_dir, extra=extra, tags='restart')
    assert proc.returncode != 0
    assert 'app2 reports nothing: app2:%s is not a valid manifest: not JSON' % manifest_path(lab, 'app2') in proc.stdout
    assert 'Traceback' not in proc.stdout + proc.stderr
    assert pids(lab) == after


def test_contract_after_disuse_drop_waits_until_no_running_code_uses_it(healthy_lab, tmp_path, releases):
    lab = healthy_lab
    major = unique_major()
    table = 'fdt_c%d' % major
    execute(lab, 'CREATE TABLE %s (id int, old_a text, old_b text)' % table)
    drop_a = 'ALTER TABLE %s DROP COLUMN old_a;' % table
    drop_b = 'ALTER TABLE %s DROP COLUMN old_b;' % table
    for app in APPS:
        release(lab, app, {'requires_revision': None, 'uses': ['%s.id' % table, '%s.old_a' % table,
                                                               '%s.old_b' % table]})
        restart(lab, app)
    patch_dir = write_patches(tmp_path, major, [drop_a])

    # 1. Both app servers run code that reads old_a: the drop is refused before any pause.
    proc, dummy = run_playbook(lab, tmp_path, patch_dir, tags='preflight,outage')
    assert proc.returncode != 0
    assert 'running code on app1, app2 still uses %s.old_a' % table in proc.stdout, proc.stdout[-3000:]
    assert_all_resumed(lab)

    # 2. A new release stops reading old_a, but only app1 runs it: still refused, naming app2.
    for app in APPS:
        release(lab, app, {'requires_revision': None, 'uses': ['%s.id' % table, '%s.old_b' % table]})
    restart(lab, 'app1')
    proc, dummy = run_playbook(lab, tmp_path, patch_dir, tags='preflight,outage')
    assert proc.returncode != 0 and 'running code on app2 still uses %s.old_a' % table in proc.stdout

    # 3. Every app server runs it: the drop goes out, on every database.
    restart(lab, 'app2')
    # -v: a passing lint finding is shown only in the module's result.
    proc, dummy = run_playbook(lab, tmp_path, patch_dir, tags='preflight,outage', args=['-v'])
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert 'every app server reports running code that no longer uses %s.old_a (app1, app2)' % table in proc.stdout
    column = "SELECT count(*) FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'old_a'"
    for host in ('primary', 'standby1', 'standby2'):
        assert pg_one(lab, host, column, (table,)) == 0, host

    # 4. old_b is still used, but the operator acknowledges its drop with a reason: the override is logged.
    (tmp_path / 'b').mkdir()
    patch_dir_b = write_patches(tmp_path / 'b', major, [drop_a, drop_b])
    proc, report_path = run_playbook(lab, tmp_path, patch_dir_b, tags='preflight,outage', extra={
        'fastdowntime_lint_acknowledge_contract': ['patch-%d-02-0.sql' % major],
        'fastdowntime_lint_acknowledge_reason': 'old_b is read by a dead code path only',
        'fastdowntime_operator': 'bob'})
    assert proc.returncode == 0, proc.stdout[-3000:]
    deploy_id = json.load(open(report_path))['deploy_id']
    overrides = pg_one(lab, 'primary', 'SELECT overrides FROM fastdowntime.deploy_log WHERE deploy_id = %s',
                       (deploy_id,))
    assert [(o['check'], o['who'], o['why'], o['patch'], o['object']) for o in overrides] == [
        ('contract', 'bob', 'old_b is read by a dead code path only', 'patch-%d-02-0.sql:1' % major,
         '%s.old_b' % table)]
    assert pg_one(lab, 'standby2', "SELECT count(*) FROM pg_attribute WHERE attrelid = %s::regclass "
                                   "AND attname = 'old_b'", (table,)) == 0
    assert table_exists(lab, 'primary', table)
    assert pg_one(lab, 'primary', 'SELECT count(*) FROM %s WHERE major = %%s' % REVISION_TABLE, (major,)) == 2
