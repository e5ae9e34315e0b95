"""Patch lint on the real lab: a table grown to about 250 MB makes a plain
CREATE INDEX and an ALTER COLUMN TYPE int -> bigint exceed a small budget -
refused by pre-flight, nothing paused - and the same patches pass with a large
budget, are applied for real by the outage, and the estimate lands within a
factor of 3 of the actual outage.

The patches use a revision table of their own (``fdt_lint_test``), and the
big table is dropped at the end."""

import os
import subprocess
import sys

import psycopg2
import pytest

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import lint
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.outage import Outage
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.patchset import load_patch_set
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.pgbouncer_console import Console
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import connect, query
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.preflight import Preflight
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.schema import ensure_revision_table

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
TEST_SCHEMA = 'fdt_lint_test'
REVISION_TABLE = TEST_SCHEMA + '.schema_revision'
BIG = 'fdt_lint_big'
ROWS = 3500000   # about 256 MB of heap
PATCHES = {
    'patch-2400-01-0.sql': '-- a plain index build on the big table\nCREATE INDEX %s_n ON %s (n);\n' % (BIG, BIG),
    'patch-2400-02-0.sql': '-- int -> bigint rewrites the table\nALTER TABLE %s ALTER COLUMN id TYPE bigint;\n' % BIG,
}


@pytest.fixture(scope='module')
def big_table(lab):
    conn = connect(lab.pg('primary'), autocommit=True)
    cur = conn.cursor()
    try:
        cur.execute('DROP SCHEMA IF EXISTS %s CASCADE' % TEST_SCHEMA)
        cur.execute('DROP TABLE IF EXISTS %s' % BIG)
        cur.execute("CREATE TABLE %s AS SELECT g AS id, (g %% 1000)::int AS n, md5(g::text) AS pad "
                    "FROM generate_series(1, %d) g" % (BIG, ROWS))
        cur.execute('ANALYZE %s' % BIG)
        ensure_revision_table(conn, REVISION_TABLE)
        yield conn
    finally:
        cur.execute('DROP TABLE IF EXISTS %s' % BIG)
        cur.execute('DROP SCHEMA IF EXISTS %s CASCADE' % TEST_SCHEMA)
        conn.close()


@pytest.fixture
def patch_dir(tmp_path):
    directory = tmp_path / 'patches'
    directory.mkdir()
    for name, text in PATCHES.items():
        (directory / name).write_text(text)
    return str(directory)


def endpoints(lab):
    standbys = [dict(lab.pg(name), pgbouncer_entries=['%s:%s_ro' % (bouncer, lab.db_name)])
                for name, bouncer in (('standby1', 'pgbouncer1'), ('standby2', 'pgbouncer2'))]
    return dict(primary=lab.pg('primary'), standbys=standbys,
                pgbouncers=[lab.pgbouncer('pgbouncer1'), lab.pgbouncer('pgbouncer2')], db_name=lab.db_name)


def preflight(lab, patch_dir, budget):
    return Preflight(patch_dir=patch_dir, budget_seconds=budget, revision_table=REVISION_TABLE, max_lag_seconds=10,
                     **endpoints(lab)).run()


def paused_entries(lab):
    paused = []
    for name in ('pgbouncer1', 'pgbouncer2'):
        console = Console(lab.pgbouncer(name), db_name=lab.db_name)
        try:
            console.open()
            paused += ['%s:%s' % (name, row['name']) for row in console.show('DATABASES')
                       if str(row.get('paused')) not in ('0', 'False', 'false', 'None')]
        finally:
            console.close()
    return paused


def test_small_budget_refused_before_the_outage_naming_the_costliest(lab, big_table, patch_dir):
    result = preflight(lab, patch_dir, budget=2)
    assert not result['passed'], result['summary']
    assert result['failed_checks'] == ['budget'], result['summary']
    [budget] = [f for f in result['checks'] if f['check'] == 'budget']
    assert 'costliest: patch-2400-02-0.sql:2 alter-type-rewrite' in budget['summary'], budget['summary']
    assert 'patch-2400-01-0.sql:2 create-index' in budget['summary']
    lint = dict((f['evidence']['file'], f) for f in result['checks'] if f['check'] == 'lint')
    assert lint['patch-2400-01-0.sql']['status'] == 'warn' and 'CONCURRENTLY' in lint['patch-2400-01-0.sql']['action']
    assert lint['patch-2400-02-0.sql']['evidence']['rule'] == 'alter-type-rewrite'
    assert lint['patch-2400-02-0.sql']['evidence']['basis']['heap_bytes'] > 200 * 1024 * 1024
    assert result['estimate']['lint']['throughput_source'].startswith('measured')
    # nothing paused, nothing applied
    assert paused_entries(lab) == []
    assert query(big_table, 'SELECT count(*) AS n FROM %s' % REVISION_TABLE)[0]['n'] == 0


def test_lint_playbook_reads_only_and_names_the_rewrite(lab, big_table, patch_dir, tmp_path):
    # The last deploy's report: a lint run prints its findings and leaves it alone.
    report = tmp_path / 'report.json'
    report.write_text('{"outcome": "done", "deploy_id": "the last deploy"}\n')
    env = dict(os.environ, FDT_REPORT_PATH=str(report), ANSIBLE_CONFIG=os.path.join(REPO, 'ansible.cfg'),
               ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, '.collections'), ANSIBLE_FORCE_COLOR='0',
               PATH=os.path.dirname(sys.executable) + ':' + os.environ['PATH'])
    run = subprocess.run([ANSIBLE_PLAYBOOK, '-i', lab.inventory(), os.path.join(REPO, 'playbooks', 'lint.yml'),
                          '--check', '-e', 'fastdowntime_patch_dir=%s' % patch_dir,
                          '-e', 'fastdowntime_revision_table=%s' % REVISION_TABLE,
                          '-e', 'fastdowntime_budget_seconds=2'],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=300, check=False)
    out = run.stdout + run.stderr
    assert run.returncode != 0, out
    assert 'ALTER COLUMN TYPE rewrites the table' in out and 'over the 2s budget' in out, out
    assert 'Traceback' not in out and 'deploy-secret' not in out
    # The findings, each once (the quiet run prints the lint's summary lines), then the refusal once.
    assert sum('ALTER COLUMN TYPE rewrites the table' in line for line in run.stdout.splitlines()) == 1, out
    assert sum(line.startswith('FAILED patch lint refused the patches: ERROR ') for line in run.stdout.splitlines()) == 1
    for deploy_only in ('fastdowntime timeline', 'FASTDOWNTIME TIMELINE', 'no fastdowntime phases', '[timeline]'):
        assert deploy_only not in out, out
    assert report.read_text() == '{"outcome": "done", "deploy_id": "the last deploy"}\n'
    assert query(big_table, "SELECT count(*) AS n FROM pg_indexes WHERE tablename = '%s'" % BIG)[0]['n'] == 0


def test_large_budget_passes_and_the_estimate_is_within_3x_of_the_actual(lab, big_table, patch_dir):
    result = preflight(lab, patch_dir, budget=300)
    assert result['passed'], result['summary']
    estimate_ms = result['estimate']['total_ms']
    outage = Outage(patch_dir=patch_dir, budget_seconds=300, revision_table=REVISION_TABLE, **endpoints(lab))
    outage.prepare()
    try:
        applied = outage.run()
    finally:
        outage.close()
    actual_ms = applied['outage']['outage_ms']
    print('estimate %.0f ms, actual %.0f ms' % (estimate_ms, actual_ms))
    assert actual_ms / 3 <= estimate_ms <= actual_ms * 3, (estimate_ms, actual_ms, result['estimate'])
    assert query(big_table, "SELECT format_type(atttypid, NULL) AS t FROM pg_attribute WHERE attrelid = '%s'::regclass "
                            "AND attname = 'id'" % BIG)[0]['t'] == 'bigint'
    assert paused_entries(lab) == []


def test_a_hot_detach_concurrently_beside_a_default_partition_is_refused_as_postgresql_refuses_it(lab, tmp_path):
    """koku PR 4850: DETACH PARTITION ... CONCURRENTLY is refused while the partitioned table has a DEFAULT
    partition - the hot phase would fail. The lint reads pg_partitioned_table and says so before anything runs;
    without a DEFAULT partition the hot statement is no error."""
    conn = connect(lab.pg('primary'), autocommit=True)
    try:
        conn.cursor().execute('DROP TABLE IF EXISTS fdt_lint_dp; CREATE TABLE fdt_lint_dp (id int) PARTITION BY LIST '
                              '(id); CREATE TABLE fdt_lint_dp1 PARTITION OF fdt_lint_dp FOR VALUES IN (1)')
        (tmp_path / 'patch-2400-01-1.sql').write_text('ALTER TABLE fdt_lint_dp DETACH PARTITION fdt_lint_dp1 '
                                                      'CONCURRENTLY;\n')
        [plain], dummy, dummy = lint.lint_live(conn, load_patch_set(str(tmp_path)).patches)
        conn.cursor().execute('CREATE TABLE fdt_lint_dpd PARTITION OF fdt_lint_dp DEFAULT')
        [beside], dummy, dummy = lint.lint_live(conn, load_patch_set(str(tmp_path)).patches)
        with pytest.raises(psycopg2.Error) as refused:
            conn.cursor().execute('ALTER TABLE fdt_lint_dp DETACH PARTITION fdt_lint_dp1 CONCURRENTLY')
    finally:
        conn.cursor().execute('DROP TABLE IF EXISTS fdt_lint_dp')
        conn.close()
    assert plain['severity'] != lint.ERROR, plain
    assert beside['rule'] == 'detach-concurrently-default-partition' and beside['severity'] == lint.ERROR, beside
    assert 'DEFAULT partition fdt_lint_dpd' in beside['summary'], beside['summary']
    assert 'cannot detach partitions concurrently when a default partition exists' in str(refused.value)


def test_a_data_change_is_planned_under_the_search_path_its_patch_sets(lab, tmp_path):
    """The lint's EXPLAIN of an UPDATE runs under the search_path the patch set before it, as the window runs
    it: fdt_lint_sp.big's 100000 rows, 5000 of them touched, where the deploy session finds only public.big
    (10 rows). It planned under the session's own path: public.big's estimate."""
    conn = connect(lab.pg('primary'), autocommit=True)
    try:
        conn.cursor().execute('DROP SCHEMA IF EXISTS fdt_lint_sp CASCADE; DROP TABLE IF EXISTS public.big; '
                              'CREATE SCHEMA fdt_lint_sp; '
                              'CREATE TABLE fdt_lint_sp.big AS SELECT g AS id, md5(g::text) AS pad '
                              'FROM generate_series(1, 100000) g; ANALYZE fdt_lint_sp.big; '
                              'CREATE TABLE public.big AS SELECT g AS id, md5(g::text) AS pad '
                              'FROM generate_series(1, 10) g; ANALYZE public.big')
        (tmp_path / 'patch-2400-01-0.sql').write_text(
            "SELECT set_config('search_path', 'fdt_lint_sp, public', false);\n"
            'UPDATE big SET pad = pad WHERE id <= 5000;\n')
        findings, dummy, dummy = lint.lint_live(conn, load_patch_set(str(tmp_path)).patches)
        with conn.cursor() as cur:
            cur.execute('SHOW search_path')
            session_path = cur.fetchone()[0]
    finally:
        conn.cursor().execute('DROP SCHEMA IF EXISTS fdt_lint_sp CASCADE; DROP TABLE IF EXISTS public.big')
        conn.close()
    [update] = [f for f in findings if f['rule'] == 'data-change']
    assert update['basis']['rows_source'] == 'planner', update['basis']
    assert 2500 <= update['basis']['rows'] <= 10000, update['basis']   # the planner's estimate of 5000
    assert update['basis']['reltuples'] == 100000, update['basis']   # fdt_lint_sp.big's size
    assert 'fdt_lint_sp' not in session_path   # the path was the EXPLAIN's alone, rolled back


def test_a_table_named_under_the_patchs_own_search_path_is_priced_as_the_window_finds_it(lab, tmp_path):
    """The lint reads the table a statement names where the window finds it: after the patch's
    SET search_path, an unqualified ALTER COLUMN TYPE rewrites fdt_lint_sp.big - priced from its size,
    as the schema-qualified statement is (it was "unknown type", no estimate: the budget blind to it)."""
    conn = connect(lab.pg('primary'), autocommit=True)
    try:
        conn.cursor().execute('DROP SCHEMA IF EXISTS fdt_lint_sp CASCADE; CREATE SCHEMA fdt_lint_sp; '
                              'CREATE TABLE fdt_lint_sp.big AS SELECT g AS id, md5(g::text) AS pad '
                              'FROM generate_series(1, 100000) g; ANALYZE fdt_lint_sp.big')
        found = {}
        for case, text in (('own path', 'SET search_path = fdt_lint_sp, public;\nALTER TABLE big ALTER COLUMN id '
                                        'TYPE bigint;\n'),
                           ('qualified', 'ALTER TABLE fdt_lint_sp.big ALTER COLUMN id TYPE bigint;\n')):
            directory = tmp_path / case.replace(' ', '_')
            directory.mkdir()
            (directory / 'patch-2400-01-0.sql').write_text(text)
            findings, dummy, dummy = lint.lint_live(conn, load_patch_set(str(directory)).patches)
            [found[case]] = [f for f in findings if f['rule'] == 'alter-type-rewrite']
    finally:
        conn.cursor().execute('DROP SCHEMA IF EXISTS fdt_lint_sp CASCADE')
        conn.close()
    assert 'id: integer -> bigint' in found['own path']['summary'], found['own path']['summary']
    assert found['own path']['estimate_seconds'] and not found['own path']['cost_unknown'], found['own path']
    # The same table's size: the same model, the same basis (estimates differ only by the throughput sample).
    assert dict(found['own path']['basis'], table=None) == dict(found['qualified']['basis'], table=None), found


# ATTACH PARTITION (PostgreSQL's ATExecAttachPartition): the DEFAULT partition is scanned for rows of the new
# bound, and the table attached for rows outside it unless a valid CHECK constraint implies the bound - what
# PostgreSQL itself says at DEBUG1 ("... is implied by existing constraints") is the truth the lint must match.
PARTITIONS_SETUP = """
CREATE TABLE fdt_lint_ev (id int, created timestamp, pad text) PARTITION BY RANGE (created);
CREATE TABLE fdt_lint_ev_2026 PARTITION OF fdt_lint_ev FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE fdt_lint_ev_default PARTITION OF fdt_lint_ev DEFAULT;
INSERT INTO fdt_lint_ev_default SELECT g, '2025-01-01'::timestamp + g * interval '1 second', md5(g::text)
  FROM generate_series(1, 200000) g;
CREATE TABLE fdt_lint_ev_2027 (id int, created timestamp, pad text);
INSERT INTO fdt_lint_ev_2027 SELECT g, '2027-01-01'::timestamp + g * interval '1 second', md5(g::text)
  FROM generate_series(1, 50000) g;
CREATE TABLE fdt_lint_ev_2027c (LIKE fdt_lint_ev_2027);
ALTER TABLE fdt_lint_ev_2027c ADD CONSTRAINT bound CHECK (created IS NOT NULL AND created >= '2027-01-01'
  AND created < '2028-01-01');
"""
ATTACH = "ALTER TABLE fdt_lint_ev ATTACH PARTITION %s FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')"


def postgresql_scans(conn, table):
    """Does PostgreSQL scan ``table`` to attach it (its DEBUG1 message says when it does not)? Run and
    rolled back: the partitions unchanged."""
    conn.notices.clear()
    with conn.cursor() as cur:
        cur.execute('BEGIN; SET LOCAL client_min_messages = debug1')
        try:
            cur.execute(ATTACH % table)
        finally:
            cur.execute('ROLLBACK')
    return not any('is implied by existing constraints' in notice and '"%s"' % table in notice for notice in conn.notices)


def test_attach_partition_prices_the_default_partition_s_scan_and_the_table_attached_as_postgresql_scans(
        lab, tmp_path):
    conn = connect(lab.pg('primary'), autocommit=True)
    try:
        conn.cursor().execute('DROP TABLE IF EXISTS fdt_lint_ev, fdt_lint_ev_2027, fdt_lint_ev_2027c; '
                              + PARTITIONS_SETUP)
        conn.cursor().execute('VACUUM ANALYZE fdt_lint_ev_default')
        found = {}
        for table in ('fdt_lint_ev_2027', 'fdt_lint_ev_2027c'):
            directory = tmp_path / table
            directory.mkdir()
            (directory / 'patch-2400-01-0.sql').write_text(ATTACH % table + ';\n')
            [found[table]], dummy, dummy = lint.lint_live(conn, load_patch_set(str(directory)).patches)
            found[table]['postgresql_scans'] = postgresql_scans(conn, table)
        default_bytes = query(conn, "SELECT (pg_relation_size(oid) + coalesce(pg_total_relation_size(reltoastrelid), "
                                    "0))::float8 AS b FROM pg_class WHERE oid = 'fdt_lint_ev_default'::regclass")[0]['b']
    finally:
        conn.cursor().execute('DROP TABLE IF EXISTS fdt_lint_ev, fdt_lint_ev_2027, fdt_lint_ev_2027c')
        conn.close()
    for table, finding in found.items():
        # The DEFAULT partition's scan, priced on its own size (heap and TOAST) with the scan kind: the costliest.
        assert finding['rule'] == 'default-partition-scan' and finding['table'] == 'public.fdt_lint_ev_default', finding
        assert finding['basis']['heap_bytes'] == default_bytes > 0 and finding['estimate_seconds'] > 0, finding
        assert 'the DEFAULT partition of fdt_lint_ev' in finding['summary'], finding['summary']
        # The table attached: scanned (and priced) exactly where PostgreSQL scans it.
        assert ('attach-partition-scan' in finding['rules']) == finding['postgresql_scans'], (table, finding)
    assert found['fdt_lint_ev_2027']['postgresql_scans'] and not found['fdt_lint_ev_2027c']['postgresql_scans']


def postgresql_refuses(conn, sql):
    """PostgreSQL's own error for ``sql`` (run and rolled back), None when it runs."""
    with conn.cursor() as cur:
        cur.execute('BEGIN')
        try:
            cur.execute(sql)
            return None
        except psycopg2.Error as exc:
            return exc.pgerror
        finally:
            cur.execute('ROLLBACK')


def test_rows_that_do_not_fit_a_new_partition_are_refused_before_the_window_as_postgresql_refuses_them(
        lab, tmp_path):
    """pg_partman issues 247 and 707: a row of the new bound already in the DEFAULT partition, a row of the table
    attached outside its bound - PostgreSQL refuses ATTACH PARTITION / CREATE TABLE ... PARTITION OF inside the
    window, after its scan, and the window rolls back. The lint asks the primary first: an error (the pre-flight
    refuses before any PAUSE) exactly where PostgreSQL refuses."""
    cases = {   # case -> (the patch, the row put there before it, id 0; deleted after)
        'clean': (ATTACH % 'fdt_lint_ev_2027', None),
        'default_has_rows': (ATTACH % 'fdt_lint_ev_2027', "fdt_lint_ev_default VALUES (0, '2027-06-01', 'early')"),
        'attached_has_rows_outside': (ATTACH % 'fdt_lint_ev_2027', "fdt_lint_ev_2027 VALUES (0, '2029-06-01', 'late')"),
        'created_beside_rows': ("CREATE TABLE fdt_lint_ev_2028 PARTITION OF fdt_lint_ev FOR VALUES FROM "
                                "('2028-01-01') TO ('2029-01-01')", "fdt_lint_ev_default VALUES (0, '2028-06-01', 'x')"),
    }
    conn = connect(lab.pg('primary'), autocommit=True)
    found = {}
    try:
        conn.cursor().execute('DROP TABLE IF EXISTS fdt_lint_ev, fdt_lint_ev_2027, fdt_lint_ev_2027c; '
                              + PARTITIONS_SETUP)
        for case, (statement, row) in sorted(cases.items()):
            if row:
                conn.cursor().execute('INSERT INTO ' + row)
            directory = tmp_path / case
            directory.mkdir()
            (directory / 'patch-2400-01-0.sql').write_text(statement + ';\n')
            [finding], dummy, dummy = lint.lint_live(conn, load_patch_set(str(directory)).patches)
            found[case] = (finding, postgresql_refuses(conn, statement))
            if row:
                conn.cursor().execute('DELETE FROM %s WHERE id = 0' % row.split()[0])
    finally:
        conn.cursor().execute('DROP TABLE IF EXISTS fdt_lint_ev, fdt_lint_ev_2027, fdt_lint_ev_2027c')
        conn.close()
    for case, (finding, refused) in found.items():
        assert (finding['rule'] == 'partition-bound-violated') == (refused is not None), (case, finding, refused)
        assert (refused is None) == (case == 'clean'), (case, refused)
    assert 'would be violated by some row' in found['default_has_rows'][1]
    assert 'the DEFAULT partition of fdt_lint_ev has rows of the new bound' in found['default_has_rows'][0]['summary']
    assert 'fdt_lint_ev_2027 has rows outside the bound' in found['attached_has_rows_outside'][0]['summary']
    assert found['default_has_rows'][0]['severity'] == lint.ERROR


def test_analyze_in_a_cold_patch_is_priced_as_the_sample_it_reads(lab, big_table, tmp_path):
    """ANALYZE runs in a transaction block, so a cold patch's ANALYZE of the 250 MB table ran inside
    the window - priced 0 ms, 'catalog only'. It is priced as the sample it reads (up to 300 x
    default_statistics_target pages), a warning naming it."""
    directory = tmp_path / 'analyze'
    directory.mkdir()
    # This module's deploy (test_large_budget_...) applied its own 2400-01-0 and 2400-02-0: this patch set
    # starts from none applied, as when the test runs alone.
    big_table.cursor().execute('DELETE FROM %s' % REVISION_TABLE)
    (directory / 'patch-2400-01-0.sql').write_text('ANALYZE %s;\n' % BIG)
    result = preflight(lab, str(directory), budget=10)
    [found] = [f for f in result['checks'] if f['check'] == 'lint']
    assert found['evidence']['rule'] == 'analyze', found
    assert found['status'] == 'warn' and 'autovacuum' in found['action'], found
    assert found['evidence']['estimate_seconds'] > 0, found['evidence']
    assert found['evidence']['basis']['heap_bytes'] > 200 * 1024 * 1024
    assert found['evidence']['basis']['model'].startswith('analyze: min(heap, 234 MiB sample)')
