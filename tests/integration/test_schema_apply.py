"""Schema application against a real primary and two streaming standbys.

Runs on the lab (the ``lab`` fixture). Each test gets a database of its own on
the primary (created here, replicated to the standbys, dropped afterwards), so
the demo database is never touched. For development without the lab, set
FDT_SCHEMA_TEST_ENDPOINTS to JSON {"primary": endpoint, "standbys": [endpoint,
...]} of a private primary with streaming standbys.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid

import psycopg2
import pytest

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import patchset, pgversion, postgres
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.budget import BudgetClock
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.patchset import (
    PatchSetError, load_patch_set, plan, refuse_drift)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.replication import (
    check_standbys, wait_for_replay)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.schema import (
    LockRetry, SchemaError, applied_revisions, apply_cold, apply_hot, ensure_revision_table)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
LAB_PATCHES = os.path.join(REPO, 'lab', 'patches')
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')

DEMO_TABLE = ('CREATE TABLE fdt_item (id bigserial PRIMARY KEY, body text NOT NULL, '
              'created timestamptz NOT NULL DEFAULT now())')
LAUNCHPAD_TABLE = ('CREATE TABLE LaunchpadDatabaseRevision (major integer NOT NULL, minor integer NOT NULL, '
                   'patch integer NOT NULL, start_time timestamp without time zone DEFAULT '
                   "(transaction_timestamp() AT TIME ZONE 'UTC'), end_time timestamp without time zone DEFAULT "
                   "(statement_timestamp() AT TIME ZONE 'UTC'), branch_nick text, revno integer, revid text, "
                   'PRIMARY KEY (major, minor, patch))')


@pytest.fixture(scope='module')
def topology(request):
    """{'primary': endpoint, 'standbys': [endpoint, ...]}."""
    private = os.environ.get('FDT_SCHEMA_TEST_ENDPOINTS')
    if private:
        return json.loads(private)
    lab = request.getfixturevalue('lab')
    return {'primary': lab.pg('primary'), 'standbys': [lab.pg('standby1'), lab.pg('standby2')]}


class Cluster:
    """A fresh database on the primary, present on every standby."""

    def __init__(self, topology, db_name):
        self.db_name = db_name
        self.primary = dict(topology['primary'], dbname=db_name)
        self.standbys = [dict(s, dbname=db_name) for s in topology['standbys']]
        self._open = []

    def conn(self, endpoint=None, **kwargs):
        conn = postgres.connect(endpoint or self.primary, **kwargs)
        self._open.append(conn)
        return conn

    def standby_conns(self):
        return [(s, self.conn(s, async_=True)) for s in self.standbys]

    def scalar(self, endpoint, sql, params=None):
        conn = self.conn(endpoint, autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchone()[0]
        finally:
            conn.close()

    def close(self):
        for conn in self._open:
            try:
                conn.close()
            except Exception:
                pass


@pytest.fixture
def cluster(topology):
    with fresh_cluster(topology) as the_cluster:
        yield the_cluster


@contextlib.contextmanager
def fresh_cluster(topology):
    """A Cluster on a database of its own, dropped afterwards."""
    db_name = 'fdt_schema_%s' % uuid.uuid4().hex[:10]
    admin = postgres.connect(topology['primary'], dbname='postgres', autocommit=True)
    postgres.query(admin, 'CREATE DATABASE %s' % db_name)
    the_cluster = Cluster(topology, db_name)
    setup = the_cluster.conn(autocommit=True)
    postgres.query(setup, DEMO_TABLE)
    postgres.query(setup, "INSERT INTO fdt_item (body) SELECT 'item ' || n FROM generate_series(1, 100) n")
    lsn = postgres.query(setup, 'SELECT pg_current_wal_insert_lsn()::text AS lsn')[0]['lsn']
    # Until the standbys have replayed CREATE DATABASE, only 'postgres' is there.
    standby_admins = [(s, postgres.connect(s, dbname='postgres', async_=True)) for s in topology['standbys']]
    wait_for_replay(setup, standby_admins, lsn, BudgetClock(30))
    for dummy, conn in standby_admins:
        conn.close()
    try:
        yield the_cluster
    finally:
        the_cluster.close()
        postgres.query(admin, 'DROP DATABASE IF EXISTS %s WITH (FORCE)' % db_name)
        admin.close()


def write_patches(directory, patches):
    directory.mkdir(exist_ok=True)
    for name, text in patches.items():
        (directory / name).write_text(text)
    return str(directory)


def deploy(cluster, patch_dir, budget=10, revision_table='fastdowntime.schema_revision', lock_retry=None):
    """What the outage does, minus pgbouncer: plan, cold transaction, replay."""
    conn = cluster.conn()
    ensure_revision_table(conn, revision_table)
    the_plan = plan(load_patch_set(patch_dir), applied_revisions(conn, revision_table))
    refuse_drift(the_plan)
    standbys = cluster.standby_conns()
    identities = check_standbys(conn, standbys)
    clock = BudgetClock(budget).start()
    cold = apply_cold(conn, the_plan.pending_cold, clock, deploy_id='test', revision_table=revision_table, lock_retry=lock_retry,
                      observer=lambda: cluster.conn(autocommit=True), host='primary')
    replay = wait_for_replay(conn, standbys, cold['commit_lsn'], clock, xid=cold['commit_xid'],
                             identities=identities)
    return the_plan, cold, replay, clock


def columns(cluster, endpoint, table):
    return cluster.scalar(endpoint, "SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute "
                                    "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
                          (table,)) or []


# -- the happy path -------------------------------------------------------------

def test_lab_patches_hot_then_three_cold_in_one_transaction_visible_on_both_standbys(cluster, tmp_path):
    patch_dir = str(tmp_path / 'patches')
    shutil.copytree(LAB_PATCHES, patch_dir)
    conn = cluster.conn()
    ensure_revision_table(conn)
    the_plan = plan(load_patch_set(patch_dir), applied_revisions(conn))
    assert [p.name for p in the_plan.pending_hot] == ['patch-2300-00-1.sql']
    assert [p.name for p in the_plan.pending_cold] == ['patch-2300-01-0.sql', 'patch-2300-02-0.sql',
                                                       'patch-2300-03-0.sql']
    assert the_plan.ignored == [{'name': 'README.md', 'reason': 'not named patch-MMMM-mm-p.sql'}]

    hot = apply_hot(conn, the_plan.pending_hot[0], deploy_id='test')
    assert hot['lock_retries'] == 0 and hot['dropped_invalid_indexes'] == []
    assert cluster.scalar(cluster.primary, "SELECT indisvalid FROM pg_index "
                                           "WHERE indexrelid = to_regclass('fdt_item_created_idx')") is True

    dummy, cold, replay, clock = deploy(cluster, patch_dir)
    assert [p['name'] for p in cold['patches']] == ['patch-2300-01-0.sql', 'patch-2300-02-0.sql',
                                                    'patch-2300-03-0.sql']
    assert all(p['duration_ms'] >= 0 and p['lock_retries'] == 0 for p in cold['patches'])
    assert cold['transaction_ms'] > 0 and '/' in cold['commit_lsn']
    # One transaction: the three revision rows share the top-level transaction.
    assert cluster.scalar(cluster.primary, "SELECT count(DISTINCT transaction_id) FROM fastdowntime.schema_revision "
                                           "WHERE kind = 'cold'") == 1
    assert cluster.scalar(cluster.primary, "SELECT count(DISTINCT transaction_id) FROM fastdowntime.schema_revision"
                          ) == 2
    assert [s['name'] for s in replay['standbys']] == [postgres.endpoint_label(s) for s in cluster.standbys]
    for standby, result in zip(cluster.standbys, replay['standbys']):
        assert result['replay_ms'] is not None and result['replay_ms'] < clock.budget.seconds * 1000
        if result['primary_state'] is not None:  # matched in pg_stat_replication
            assert result['primary_confirms'] is True
        assert 'author' in columns(cluster, standby, 'fdt_item')
        assert cluster.scalar(standby, "SELECT to_regclass('fdt_item_tag') IS NOT NULL") is True
        assert cluster.scalar(standby, "SELECT obj_description('fdt_item'::regclass, 'pg_class')") \
            == "Demo items written by the lab's app servers"
        assert cluster.scalar(standby, 'SELECT count(*) FROM fastdowntime.schema_revision') == 4
    assert [p['phase'] for p in clock.phases] == ['cold_transaction', 'cold_patch', 'cold_patch', 'cold_patch',
                                                  'commit', 'standby_replay']

    # Nothing pending: a second deploy does nothing.
    again = plan(load_patch_set(patch_dir), applied_revisions(cluster.conn()))
    assert again.pending == [] and len(again.applied) == 4 and again.drift == []


# -- failures roll everything back -------------------------------------------------

THREE_WITH_BAD_SECOND = {
    'patch-2301-01-0.sql': 'ALTER TABLE fdt_item ADD COLUMN first_one text;\n',
    'patch-2301-02-0.sql': ('-- second patch\n'
                            'CREATE TABLE second_one (id int);\n'
                            '\n'
                            'UPDATE fdt_item\n'
                            '   SET body = no_such_column;\n'),
    'patch-2301-03-0.sql': 'CREATE TABLE third_one (id int);\n',
}


@pytest.mark.faults
def test_error_in_second_of_three_applies_nothing_and_names_file_and_line(cluster, tmp_path):
    patch_dir = write_patches(tmp_path / 'p', THREE_WITH_BAD_SECOND)
    with pytest.raises(SchemaError) as err:
        deploy(cluster, patch_dir)
    assert str(err.value) == ('primary: patch-2301-02-0.sql line 5: column "no_such_column" does not exist '
                              '(SQLSTATE 42703); rolled back, nothing applied')
    assert 'first_one' not in columns(cluster, cluster.primary, 'fdt_item')
    assert cluster.scalar(cluster.primary, "SELECT to_regclass('second_one') IS NULL") is True
    assert cluster.scalar(cluster.primary, 'SELECT count(*) FROM fastdowntime.schema_revision') == 0
    # The connection is usable again: nothing is left open on the primary.
    assert cluster.scalar(cluster.primary, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                           "current_database() AND state LIKE 'idle in transaction%'") == 0


def test_syntax_error_in_second_of_three_is_refused_before_anything_runs(cluster, tmp_path):
    patches = dict(THREE_WITH_BAD_SECOND)
    patches['patch-2301-02-0.sql'] = 'CREATE TABLE second_one (id int);\n\nCREATE TABEL oops (id int);\n'
    patch_dir = write_patches(tmp_path / 'p', patches)
    with pytest.raises(PatchSetError) as err:
        deploy(cluster, patch_dir)
    assert str(err.value).startswith('patch-2301-02-0.sql line 3: does not parse: syntax error at or near "TABEL"')
    assert 'first_one' not in columns(cluster, cluster.primary, 'fdt_item')


@pytest.mark.faults
def test_locked_table_is_retried_then_rolled_back_within_budget_naming_the_holder(cluster, tmp_path):
    patch_dir = write_patches(tmp_path / 'p', {
        'patch-2302-01-0.sql': 'CREATE TABLE before_lock (id int);\n',
        'patch-2302-02-0.sql': '\nALTER TABLE fdt_item ADD COLUMN locked_out text;\n'})
    holder = cluster.conn(application_name='schema-test-holder')
    postgres.query(holder, 'SELECT count(*) FROM fdt_item')  # ACCESS SHARE until rollback
    holder_pid = holder.get_backend_pid()
    began = time.monotonic()
    with pytest.raises(SchemaError) as err:
        deploy(cluster, patch_dir, budget=3)
    elapsed = time.monotonic() - began
    holder.rollback()
    message = str(err.value)
    assert message.startswith('primary: patch-2302-02-0.sql line 2: could not lock within the budget after ')
    assert 'held by pid %d (user ' % holder_pid in message
    # The holder's query is named by its first keyword and length, never its text (sessions.query_summary).
    assert "application 'schema-test-holder'" in message and 'query: SELECT, ' in message, message
    assert 'fdt_item' not in message.split('held by')[1], message
    assert message.endswith('nothing applied')
    assert err.value.holder['pid'] == holder_pid
    attempts = int(message.split(' after ')[1].split(' ')[0])
    assert attempts >= 2
    assert elapsed < 3 + 1.0  # the budget, plus set-up and connections outside it
    assert cluster.scalar(cluster.primary, "SELECT to_regclass('before_lock') IS NULL") is True
    assert 'locked_out' not in columns(cluster, cluster.primary, 'fdt_item')


def test_lock_released_during_retries_lets_the_transaction_through(cluster, tmp_path):
    patch_dir = write_patches(tmp_path / 'p', {
        'patch-2303-01-0.sql': 'ALTER TABLE fdt_item ADD COLUMN after_wait text;\n'})
    holder = cluster.conn()
    postgres.query(holder, 'SELECT count(*) FROM fdt_item')
    release = threading.Timer(0.5, holder.rollback)
    release.start()
    try:
        dummy, cold, dummy, dummy = deploy(cluster, patch_dir, budget=10)
    finally:
        release.join()
    assert cold['patches'][0]['lock_retries'] >= 1
    assert 'after_wait' in columns(cluster, cluster.standbys[0], 'fdt_item')


@pytest.mark.faults
def test_drift_is_refused_naming_the_file(cluster, tmp_path):
    patch_dir = write_patches(tmp_path / 'p', {'patch-2304-01-0.sql': 'CREATE TABLE drifting (id int);\n'})
    deploy(cluster, patch_dir)
    (tmp_path / 'p' / 'patch-2304-01-0.sql').write_text('CREATE TABLE drifting (id bigint);\n')
    with pytest.raises(PatchSetError, match=r'^patch-2304-01-0\.sql: changed since it was applied'):
        deploy(cluster, patch_dir)


@pytest.mark.faults
def test_standby_that_does_not_replay_is_named_and_reported_lagging(cluster, tmp_path):
    patch_dir = write_patches(tmp_path / 'p', {'patch-2305-01-0.sql': 'CREATE TABLE unseen (id int);\n'})
    paused = cluster.standbys[-1]
    control = cluster.conn(paused, autocommit=True)
    postgres.query(control, 'SELECT pg_wal_replay_pause()')
    try:
        with pytest.raises(SchemaError) as err:
            deploy(cluster, patch_dir, budget=1.5)
    finally:
        postgres.query(control, 'SELECT pg_wal_replay_resume()')
    label = postgres.endpoint_label(paused)
    assert str(err.value).startswith('standby %s: not caught up within the budget: it has not replayed' % label)
    assert err.value.lagging == [label]
    # The transaction itself committed on the primary: this is a replay failure.
    assert cluster.scalar(cluster.primary, "SELECT to_regclass('unseen') IS NOT NULL") is True


def test_replay_wait_is_for_the_commit_itself_not_wal_other_sessions_leave_unflushed(cluster, tmp_path):
    """On an idle primary, WAL another session inserts after our COMMIT stays
    unflushed, so unsent, until some unrelated flush (seconds): waiting for the
    insert position read after COMMIT stalled the window on it. The wait asks
    each standby about our transaction and needs nothing beyond its commit."""
    patch_dir = write_patches(tmp_path / 'p', {'patch-2306-01-0.sql':
                                               'ALTER TABLE fdt_item ADD COLUMN exact_one integer;\n'})
    conn = cluster.conn()
    ensure_revision_table(conn)
    the_plan = plan(load_patch_set(patch_dir), applied_revisions(conn))
    standbys = cluster.standby_conns()
    clock = BudgetClock(10).start()
    cold = apply_cold(conn, the_plan.pending_cold, clock, deploy_id='test', host='primary')
    # Right after the commit another session writes WAL and keeps its transaction open.
    other = cluster.conn()
    postgres.query(other, "INSERT INTO fdt_item (body) VALUES ('after the deploy')")
    after = postgres.query(other, 'SELECT pg_current_wal_insert_lsn()::text AS lsn, '
                                  'pg_current_wal_insert_lsn() > pg_current_wal_flush_lsn() AS unflushed')[0]
    assert after['unflushed'] is True
    replay = wait_for_replay(conn, standbys, cold['commit_lsn'], clock, xid=cold['commit_xid'])
    for standby, result in zip(cluster.standbys, replay['standbys']):
        assert result['replay_ms'] is not None
        # Replayed our commit without the other session's WAL: that was never needed.
        assert cluster.scalar(standby, 'SELECT %s::pg_lsn < %s::pg_lsn', (result['replay_lsn'], after['lsn'])) is True
        assert 'exact_one' in columns(cluster, standby, 'fdt_item')
    assert replay['xid'] == cold['commit_xid'] == str(cluster.scalar(
        cluster.primary, "SELECT transaction_id FROM fastdowntime.schema_revision WHERE file_name = 'patch-2306-01-0.sql'"))
    other.rollback()


# -- hot patches ------------------------------------------------------------------

def test_failed_concurrent_build_leaves_invalid_index_which_is_dropped_and_rebuilt(cluster, tmp_path):
    patch_dir = write_patches(tmp_path / 'p', {
        'patch-2306-00-1.sql': 'CREATE INDEX CONCURRENTLY fdt_item_body_idx ON fdt_item (body);\n'})
    writer = cluster.conn()
    postgres.query(writer, "INSERT INTO fdt_item (body) VALUES ('in flight')")  # CIC waits for this one
    release = threading.Timer(0.6, writer.rollback)
    release.start()
    try:
        [patch] = load_patch_set(patch_dir).patches
        conn = cluster.conn()
        ensure_revision_table(conn)
        result = apply_hot(conn, patch, deploy_id='test',
                           lock_retry=LockRetry(timeout_ms=100, max_timeout_ms=200, pause_ms=20, max_attempts=20))
    finally:
        release.join()
    assert result['lock_retries'] >= 1
    assert set(result['dropped_invalid_indexes']) == {'"fdt_item_body_idx"'}
    assert cluster.scalar(cluster.primary, "SELECT indisvalid FROM pg_index "
                                           "WHERE indexrelid = to_regclass('fdt_item_body_idx')") is True
    assert applied_revisions(cluster.conn()) == {(2306, 0, 1): patch.sha256}


def test_a_hot_patch_error_names_the_host_keeps_the_detail_and_says_the_fix(cluster, tmp_path):
    postgres.query(cluster.conn(autocommit=True), "UPDATE fdt_item SET body = 'twin' WHERE id IN (1, 2)")
    patch_dir = write_patches(tmp_path / 'p', {
        'patch-2306-01-1.sql': '-- one per body\nCREATE UNIQUE INDEX CONCURRENTLY fdt_item_body_key ON fdt_item (body);\n'})
    [patch] = load_patch_set(patch_dir).patches
    conn = cluster.conn()
    ensure_revision_table(conn)
    with pytest.raises(SchemaError) as err:
        apply_hot(conn, patch, deploy_id='test', host='primary (10.0.0.5:5432)')
    assert str(err.value) == (
        'primary (10.0.0.5:5432): patch-2306-01-1.sql line 2: could not create unique index "fdt_item_body_key" '
        '(DETAIL: Key (body)=(twin) is duplicated.) (SQLSTATE 23505); the patch is not recorded (statements before '
        'this one stay applied: hot patches run live); dropped the INVALID index "fdt_item_body_key"; '
        'fix the patch (it runs again from its first statement) and deploy again')


# -- Launchpad layout ------------------------------------------------------------

def test_launchpad_layout_with_self_inserted_revision_rows(cluster, tmp_path):
    postgres.query(cluster.conn(autocommit=True), LAUNCHPAD_TABLE)
    postgres.query(cluster.conn(autocommit=True), 'INSERT INTO LaunchpadDatabaseRevision VALUES (2208, 0, 0)')
    patch_dir = write_patches(tmp_path / 'p', {
        'trusted.sql': '-- baseline\n',
        'patch-2209-00-1.sql': ('SET client_min_messages=ERROR;\n'
                                'CREATE INDEX CONCURRENTLY fdt_item_lp_idx ON fdt_item (created);\n'
                                'INSERT INTO LaunchpadDatabaseRevision VALUES (2209, 00, 1);\n'),
        'patch-2209-01-0.sql': ('SET client_min_messages=ERROR;\n'
                                'ALTER TABLE fdt_item ADD COLUMN lp_one text;\n'
                                'INSERT INTO LaunchpadDatabaseRevision VALUES (2209, 01, 0);\n'),
        'patch-2209-02-0.sql': ('SET client_min_messages=ERROR;\n'
                                'CREATE TABLE lp_two (id int);\n'
                                'INSERT INTO LaunchpadDatabaseRevision VALUES (2209, 02, 0);\n'),
    })
    revision_table = 'launchpaddatabaserevision'
    conn = cluster.conn()
    ensure_revision_table(conn, revision_table)
    the_plan = plan(load_patch_set(patch_dir), applied_revisions(conn, revision_table))
    assert the_plan.missing_files == [(2208, 0, 0)]
    [hot_patch] = the_plan.pending_hot
    apply_hot(conn, hot_patch, revision_table=revision_table)
    the_plan, cold, replay, dummy = deploy(cluster, patch_dir, revision_table=revision_table)
    assert [p['name'] for p in cold['patches']] == ['patch-2209-01-0.sql', 'patch-2209-02-0.sql']
    assert cluster.scalar(cluster.standbys[0], 'SELECT array_agg(ARRAY[major, minor, patch] ORDER BY 1) '
                                               'FROM LaunchpadDatabaseRevision') == [
        [2208, 0, 0], [2209, 0, 1], [2209, 1, 0], [2209, 2, 0]]
    assert cluster.scalar(cluster.primary, 'SELECT to_regclass(%s) IS NULL', ('fastdowntime.schema_revision',))
    final = plan(load_patch_set(patch_dir), applied_revisions(cluster.conn(), revision_table))
    assert final.pending == [] and final.drift == []
    assert final.unverified == ['patch-2209-00-1.sql', 'patch-2209-01-0.sql', 'patch-2209-02-0.sql']

    # A patch that forgot its row fails the deploy, and takes the others with it.
    write_patches(tmp_path / 'p', {
        'patch-2209-03-0.sql': 'CREATE TABLE lp_three (id int);\n'
                               'INSERT INTO LaunchpadDatabaseRevision VALUES (2209, 03, 0);\n',
        'patch-2209-04-0.sql': 'CREATE TABLE lp_four (id int);\n'})
    with pytest.raises(SchemaError) as err:
        deploy(cluster, patch_dir, revision_table=revision_table)
    assert str(err.value).startswith('patch-2209-04-0.sql: patch 2209-04-0 did not insert its '
                                     'LaunchpadDatabaseRevision row')
    assert cluster.scalar(cluster.primary, "SELECT to_regclass('lp_three') IS NULL") is True
    assert cluster.scalar(cluster.primary, 'SELECT count(*) FROM LaunchpadDatabaseRevision') == 4


# -- isolation: a patch means the same whatever it is deployed with ------------------

# Each pair: what one patch leaves in its session, and the next patch that would
# read it. Deployed together they must give what they give one by one.
LEAKY_COLD = {
    # The example: search_path.
    'patch-2302-01-0.sql': 'CREATE SCHEMA billing;\nSET search_path = billing, public;\nCREATE TABLE t1 (x text);\n',
    'patch-2302-02-0.sql': 'CREATE TABLE plain (x text);\n',
    # A pg_dump header (empty search_path), then an unqualified CREATE TABLE.
    'patch-2302-03-0.sql': "SELECT pg_catalog.set_config('search_path', '', false);\n"
                           'CREATE TABLE public.dumped (id int);\n',
    'patch-2302-04-0.sql': 'CREATE TABLE t (id int);\n',
    # Session authorization and role: the next patch's objects (and every
    # revision row) belong to the deploy user; fdt_app may not create in public.
    'patch-2302-05-0.sql': 'SET SESSION AUTHORIZATION fdt_app;\nSELECT 1;\n',
    'patch-2302-06-0.sql': 'CREATE TABLE owned (id int);\n',
    'patch-2302-07-0.sql': 'SET ROLE fdt_app;\n',
    'patch-2302-08-0.sql': 'CREATE TABLE owned_too (id int);\n',
    # A GUC that changes how a literal reads.
    'patch-2302-09-0.sql': "SET datestyle = 'SQL, DMY';\n",
    'patch-2302-10-0.sql': "CREATE TABLE dated AS SELECT '01/02/2020'::date AS d;\n",
    # A temporary table shadowing a real one.
    'patch-2302-11-0.sql': 'CREATE TEMP TABLE plain (x text);\n',
    'patch-2302-12-0.sql': "INSERT INTO plain VALUES ('kept');\n",
    # Prepared statements and cursors keep their names.
    'patch-2302-13-0.sql': 'PREPARE q AS SELECT 1;\nDECLARE c CURSOR FOR SELECT 1;\n',
    'patch-2302-14-0.sql': 'PREPARE q AS SELECT 2;\nDECLARE c CURSOR FOR SELECT 2;\n',
    # Session-level advisory locks and LISTEN outlive the patch.
    'patch-2302-15-0.sql': 'SELECT pg_advisory_lock(4242);\nSELECT pg_advisory_lock_shared(1, 2);\n'
                           'LISTEN fdt_channel;\n',
    # Both: a table in billing and in public with the same name, for the hot patches.
    'patch-2302-16-0.sql': 'CREATE TABLE billing.twin (x text);\nCREATE TABLE public.twin (x text);\n',
}
LEAKY_HOT = {
    'patch-2302-17-1.sql': 'SET search_path = billing, public;\nCREATE INDEX CONCURRENTLY t1_x_idx ON t1 (x);\n',
    'patch-2302-18-1.sql': 'CREATE INDEX CONCURRENTLY twin_x_idx ON twin (x);\n',
}

SCHEMA_SNAPSHOT = """
SELECT array_agg(format('%s.%s %s owner %s', n.nspname, c.relname, c.relkind, pg_get_userbyid(c.relowner))
                 ORDER BY n.nspname, c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND n.nspname NOT LIKE 'pg_temp%'
   AND n.nspname NOT LIKE 'pg_toast_temp%'"""


def _outcome(cluster, endpoint):
    return {
        'relations': cluster.scalar(endpoint, SCHEMA_SNAPSHOT),
        'dated': str(cluster.scalar(endpoint, 'SELECT d FROM public.dated')),
        'plain': cluster.scalar(endpoint, 'SELECT array_agg(x) FROM public.plain'),
        'revisions': cluster.scalar(endpoint, 'SELECT count(*) FROM fastdowntime.schema_revision'),
    }


def test_session_state_of_one_patch_never_reaches_the_next_same_schema_as_one_by_one(topology, tmp_path):
    patch_dir = write_patches(tmp_path / 'p', dict(LEAKY_COLD, **LEAKY_HOT))
    with fresh_cluster(topology) as together:
        the_plan, cold, dummy, dummy = deploy(together, patch_dir)
        assert len(cold['patches']) == len(LEAKY_COLD)
        deploy_conn = together.conn(autocommit=True)
        for patch in the_plan.post_window_hot:  # one session for both hot patches
            apply_hot(deploy_conn, patch, deploy_id='test')
        # Nothing the patches left is still held by the deploy's sessions.
        assert together.scalar(together.primary, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                                 "AND database = (SELECT oid FROM pg_database "
                                                 "WHERE datname = current_database())") == 0
        assert postgres.query(deploy_conn, 'SELECT count(*) AS n FROM pg_listening_channels()')[0]['n'] == 0
        assert postgres.query(deploy_conn, 'SELECT current_user AS u, current_setting(%s) AS sp',
                              ('search_path',))[0] == {'u': 'fdt_deploy', 'sp': '"$user", public'}
        batch = _outcome(together, together.primary)
        on_standbys = [_outcome(together, standby) for standby in together.standbys]

    with fresh_cluster(topology) as alone:
        for name in sorted(LEAKY_COLD):
            single = write_patches(tmp_path / ('one-' + name), {name: LEAKY_COLD[name]})
            conn = alone.conn()
            ensure_revision_table(conn)
            clock = BudgetClock(10).start()
            apply_cold(conn, load_patch_set(single).patches, clock, deploy_id='one', host='primary')
            conn.close()
        for name in sorted(LEAKY_HOT):
            single = write_patches(tmp_path / ('one-' + name), {name: LEAKY_HOT[name]})
            apply_hot(alone.conn(autocommit=True), load_patch_set(single).patches[0], deploy_id='one')
        one_by_one = _outcome(alone, alone.primary)

    assert batch == one_by_one
    assert on_standbys == [batch, batch]
    assert 'public.plain r owner fdt_deploy' in batch['relations']
    assert 'billing.t1_x_idx i owner fdt_deploy' in batch['relations']
    assert 'public.twin_x_idx i owner fdt_deploy' in batch['relations']
    assert 'public.owned r owner fdt_deploy' in batch['relations']
    assert 'public.owned_too r owner fdt_deploy' in batch['relations']
    assert batch['dated'] == '2020-01-02' and batch['plain'] == ['kept']
    assert batch['revisions'] == len(LEAKY_COLD) + len(LEAKY_HOT)


# -- the table of statements PostgreSQL refuses in a transaction block, against the server --

# Entries the lab cannot bring to PostgreSQL's check: ALTER SUBSCRIPTION first
# refuses a disabled subscription, and the lab has no publisher to enable one.
# (SET (failover) and SET (two_phase) are checked first: PostgreSQL 18 refuses them.)
NEEDS_A_PUBLISHER = ('ALTER SUBSCRIPTION ... REFRESH', 'ALTER SUBSCRIPTION with refresh')


def test_every_entry_of_the_no_transaction_block_table_is_refused_by_the_server_in_a_transaction(cluster):
    assert no_transaction_block_entries_refused(cluster)


def no_transaction_block_entries_refused(cluster):
    """Each entry of patchset.NO_TRANSACTION_BLOCK that holds on the cluster's server version
    (pgversion.covers), run inside a transaction: the server refuses it in the entry's words.
    Returns the entries checked."""
    setup = cluster.conn(autocommit=True)
    postgres.query(setup, 'CREATE TABLE t (a int); CREATE INDEX i ON t (a)')
    postgres.query(setup, "CREATE SUBSCRIPTION s CONNECTION 'host=127.0.0.1 dbname=none' PUBLICATION p "
                          'WITH (connect = false)')
    version = setup.server_version
    checked = []
    try:
        for rule in patchset.NO_TRANSACTION_BLOCK:
            if rule.words in NEEDS_A_PUBLISHER or not pgversion.covers(rule.versions, version):
                continue
            example = rule.example.replace('REINDEX SYSTEM d', 'REINDEX SYSTEM ' + cluster.db_name) \
                .replace('REINDEX DATABASE d', 'REINDEX DATABASE ' + cluster.db_name)
            conn = cluster.conn()
            with pytest.raises(psycopg2.Error) as err, conn.cursor() as cur:
                cur.execute('SELECT 1')   # inside the transaction psycopg2 opened
                cur.execute(example)
            conn.rollback()
            assert (err.value.pgcode, err.value.diag.message_primary) == (
                '25001', '%s cannot run inside a transaction block' % rule.words), rule.words
            checked.append(rule.words)
    finally:
        postgres.query(setup, 'ALTER SUBSCRIPTION s SET (slot_name = NONE); DROP SUBSCRIPTION s')
    assert len(checked) == len([r for r in patchset.NO_TRANSACTION_BLOCK if r.words not in NEEDS_A_PUBLISHER
                                and pgversion.covers(r.versions, version)])
    return checked


# -- the module and role, through ansible-playbook ---------------------------------

def run_role(cluster, tmp_path, patch_dir, *extra):
    inventory = {'all': {
        'vars': {'ansible_connection': 'local', 'fastdowntime_db_name': cluster.db_name,
                 'fastdowntime_patch_dir': patch_dir, 'fastdowntime_budget_seconds': 10},
        'children': {
            'fastdowntime_primary': {'hosts': {'primary': _host_vars(cluster.primary)}},
            'fastdowntime_standbys': {'hosts': {s['name'] or 'standby%d' % n: _host_vars(s)
                                                for n, s in enumerate(cluster.standbys, 1)}}}}}
    (tmp_path / 'hosts.json').write_text(json.dumps(inventory))
    (tmp_path / 'play.yml').write_text(
        '- name: Schema\n  hosts: fastdowntime_primary\n  gather_facts: false\n'
        '  roles:\n    - fastdowntime.postgresql.schema_apply\n'
        '  post_tasks:\n    - name: Show\n      ansible.builtin.copy:\n'
        '        content: "{{ schema_apply_result | to_json }}"\n        dest: "%s"\n      delegate_to: localhost\n'
        '      check_mode: false\n'
        % (tmp_path / 'result.json'))
    env = {k: v for k, v in os.environ.items() if not k.startswith('ANSIBLE_')}
    env.update(ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, '.collections'), ANSIBLE_NOCOLOR='1',
               ANSIBLE_LOCAL_TEMP=str(tmp_path / 'tmp'), ANSIBLE_CONFIG=str(tmp_path / 'none.cfg'),
               ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    run = subprocess.run([ANSIBLE_PLAYBOOK, '-i', str(tmp_path / 'hosts.json'), str(tmp_path / 'play.yml')]
                         + list(extra), capture_output=True, text=True, env=env, timeout=300, check=False)
    result = json.loads((tmp_path / 'result.json').read_text()) if run.returncode == 0 else None
    return run, result


def _host_vars(endpoint):
    return {'fastdowntime_pg_host': endpoint['host'], 'fastdowntime_pg_port': endpoint.get('port', 5432),
            'fastdowntime_pg_user': endpoint['user'], 'fastdowntime_pg_password': endpoint.get('password'),
            'fastdowntime_pg_ssl_mode': endpoint.get('ssl_mode') or 'prefer'}


def test_role_applies_lab_patches_then_does_nothing_and_check_mode_plans_only(cluster, tmp_path):
    patch_dir = str(tmp_path / 'patches')
    shutil.copytree(LAB_PATCHES, patch_dir)
    # Issue 15: a hot patch that needs the table a cold patch before it creates
    # (the split the pre-flight advises) runs after the window, in numbered order.
    (tmp_path / 'patches' / 'patch-2300-03-1.sql').write_text(
        'CREATE UNIQUE INDEX CONCURRENTLY fdt_item_tag_tag_key ON fdt_item_tag (tag, item);\n')

    run, result = run_role(cluster, tmp_path, patch_dir, '--check')
    assert run.returncode == 0, run.stdout + run.stderr
    hot, cold, after = result['results']
    assert hot['changed'] and cold['changed'] and after['changed']
    assert [p['name'] for p in cold['plan']['pending_cold']] == ['patch-2300-01-0.sql', 'patch-2300-02-0.sql',
                                                                 'patch-2300-03-0.sql']
    assert cold['plan']['phases'] == [
        {'phase': 'hot', 'patches': ['patch-2300-00-1.sql']},
        {'phase': 'cold', 'patches': ['patch-2300-01-0.sql', 'patch-2300-02-0.sql',
                                      'patch-2300-03-0.sql']},
        {'phase': 'post-window hot', 'patches': ['patch-2300-03-1.sql']}]
    assert cluster.scalar(cluster.primary, "SELECT to_regclass('fastdowntime.schema_revision') IS NULL") is True

    run, result = run_role(cluster, tmp_path, patch_dir)
    assert run.returncode == 0, run.stdout + run.stderr
    hot, cold, after = result['results']
    assert [p['name'] for p in hot['hot']] == ['patch-2300-00-1.sql']
    assert [p['name'] for p in cold['cold']['patches']] == ['patch-2300-01-0.sql', 'patch-2300-02-0.sql',
                                                            'patch-2300-03-0.sql']
    assert [p['name'] for p in after['hot']] == ['patch-2300-03-1.sql']
    assert [p['phase'] for p in after['phases']] == ['post_window_hot_patch']
    # Each phase says what the schema is once it is done; after the window's hot patch, every database says 03-1.
    assert [r['revision'] for r in cold['revisions']] == ['2300-03-0'] * (1 + len(cluster.standbys))
    assert [(r['revision'], r['error'], r.get('behind')) for r in after['revisions']] == \
        [('2300-03-1', None, None)] * (1 + len(cluster.standbys))
    assert cluster.scalar(cluster.primary, "SELECT indisvalid FROM pg_index "
                                           "WHERE indexrelid = to_regclass('fdt_item_tag_tag_key')") is True
    assert len(cold['replay']['standbys']) == len(cluster.standbys)
    assert all(s['replay_ms'] is not None for s in cold['replay']['standbys'])
    assert 'deploy-secret' not in run.stdout

    run, result = run_role(cluster, tmp_path, patch_dir)
    assert run.returncode == 0, run.stdout + run.stderr
    assert [r['changed'] for r in result['results']] == [False, False, False]

    (tmp_path / 'patches' / 'patch-2300-04-0.sql').write_text('ALTER TABLE fdt_item\n  ADD COLUMN x nosuchtype;\n')
    run, dummy = run_role(cluster, tmp_path, patch_dir, '-e', 'schema_apply_phase=cold')
    assert run.returncode != 0
    assert 'patch-2300-04-0.sql line 2: type "nosuchtype" does not exist' in run.stdout
    assert 'Traceback' not in run.stdout + run.stderr
