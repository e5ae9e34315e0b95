"""Patch lint: a table of statements -> classification, the cost model, options.

No database: the live catalog is a hand-built ``Catalog`` (plain data)."""

import pytest

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import lint
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.patchset import (
    Patch, PatchSetError, patch_kind, split_statements)

MB = 1024.0 * 1024.0
BIG = {
    'exists': True, 'nspname': 'public', 'relname': 'big', 'reltuples': 5e6, 'relpages': 32000,
    'heap_bytes': 250 * MB, 'index_bytes': 100 * MB, 'toast_bytes': 0, 'indexes': 1,
    'columns': {
        'id': ('integer', ()), 'n': ('integer', ()), 'name': ('character varying', (10,)),
        'label': ('character varying', ()), 'body': ('text', ()), 'price': ('numeric', (10, 2)),
        'code': ('character', (3,)), 'at': ('timestamp without time zone', (3,)), 'net': ('cidr', ()),
    },
    'not_null_checks': ['n'],
}
SMALL = dict(BIG, relname='small', reltuples=100, relpages=1, heap_bytes=8192, index_bytes=16384, indexes=1)


def catalog(**kwargs):
    kwargs.setdefault('tables', {('public', 'big'): BIG, ('public', 'small'): SMALL})
    kwargs.setdefault('scan_bytes_per_second', 500 * MB)
    return lint.Catalog(**kwargs)


def patch(sql, name='patch-2211-01-0.sql'):
    statements = split_statements(sql, name)
    return Patch(name=name, path='/x/' + name, revision=(2211, 1, 0), sha256='0' * 64,
                 kind=patch_kind(statements, name), statements=statements)


def lint_one(sql, cat=None, **options):
    return lint.lint_patches([patch(sql)], cat or catalog(), lint.parse_options(**options))


# statement -> expected rule of its finding
CLASSIFICATION = [
    # table rewrites
    ('ALTER TABLE big ALTER COLUMN n TYPE bigint', 'alter-type-rewrite'),
    ('ALTER TABLE big ALTER COLUMN name TYPE varchar(20)', 'alter-type-binary-compatible'),
    ('ALTER TABLE big ALTER COLUMN name TYPE varchar(5)', 'alter-type-rewrite'),
    ('ALTER TABLE big ALTER COLUMN name TYPE text', 'alter-type-binary-compatible'),
    ('ALTER TABLE big ALTER COLUMN name TYPE varchar', 'alter-type-binary-compatible'),
    ('ALTER TABLE big ALTER COLUMN label TYPE text', 'alter-type-binary-compatible'),
    ('ALTER TABLE big ALTER COLUMN body TYPE varchar', 'alter-type-binary-compatible'),
    ('ALTER TABLE big ALTER COLUMN body TYPE varchar(100)', 'alter-type-rewrite'),
    ('ALTER TABLE big ALTER COLUMN label TYPE varchar(30)', 'alter-type-rewrite'),
    ('ALTER TABLE big ALTER COLUMN price TYPE numeric(12,2)', 'alter-type-binary-compatible'),
    ('ALTER TABLE big ALTER COLUMN price TYPE numeric(12,3)', 'alter-type-rewrite'),
    ('ALTER TABLE big ALTER COLUMN price TYPE numeric', 'alter-type-binary-compatible'),
    ('ALTER TABLE big ALTER COLUMN code TYPE char(5)', 'alter-type-rewrite'),
    ('ALTER TABLE big ALTER COLUMN code TYPE text', 'alter-type-rewrite'),
    ('ALTER TABLE big ALTER COLUMN at TYPE timestamp(6)', 'alter-type-binary-compatible'),
    ('ALTER TABLE big ALTER COLUMN at TYPE timestamptz', 'alter-type-rewrite'),
    ('ALTER TABLE big ALTER COLUMN net TYPE inet', 'alter-type-binary-compatible'),
    ('ALTER TABLE big ALTER COLUMN name TYPE varchar(20) USING lower(name)', 'alter-type-rewrite'),
    ('ALTER TABLE big ALTER COLUMN name TYPE varchar(20) USING name', 'alter-type-binary-compatible'),
    ('ALTER TABLE big ALTER COLUMN nosuch TYPE text', 'alter-type-rewrite'),
    ('ALTER TABLE big ADD COLUMN r float8 DEFAULT random()', 'add-column-volatile-default'),
    ('ALTER TABLE big ADD COLUMN s bigint DEFAULT nextval(\'big_seq\')', 'add-column-volatile-default'),
    ('ALTER TABLE big ADD COLUMN u uuid DEFAULT gen_random_uuid()', 'add-column-volatile-default'),
    ('ALTER TABLE big ADD COLUMN c timestamptz DEFAULT clock_timestamp()', 'add-column-volatile-default'),
    ('ALTER TABLE big ADD COLUMN s bigserial', 'add-column-volatile-default'),
    ('ALTER TABLE big ADD COLUMN i int GENERATED ALWAYS AS IDENTITY', 'add-column-volatile-default'),
    ('ALTER TABLE big ADD COLUMN g int GENERATED ALWAYS AS (n * 2) STORED', 'add-column-generated-stored'),
    ('ALTER TABLE big ADD COLUMN x int DEFAULT my_unknown_function()', 'add-column-volatile-default'),
    ('VACUUM FULL big', 'vacuum-full'),
    ('CLUSTER big USING big_pkey', 'cluster'),
    ('ALTER TABLE big SET UNLOGGED', 'rewrite-storage'),
    # full scans under a lock
    ('ALTER TABLE big ALTER COLUMN id SET NOT NULL', 'set-not-null-scan'),
    ('ALTER TABLE big ALTER COLUMN n SET NOT NULL', 'set-not-null-proven'),
    ('ALTER TABLE big ADD CONSTRAINT pos CHECK (n > 0)', 'add-check-without-not-valid'),
    ('ALTER TABLE big ADD CONSTRAINT pos CHECK (n > 0) NOT VALID', 'catalog-only'),
    ('ALTER TABLE big ADD CONSTRAINT fk FOREIGN KEY (n) REFERENCES small (id)', 'add-foreign-key-without-not-valid'),
    ('ALTER TABLE big ADD CONSTRAINT fk FOREIGN KEY (n) REFERENCES small (id) NOT VALID', 'catalog-only'),
    ('ALTER TABLE big VALIDATE CONSTRAINT pos', 'validate-constraint'),
    ('ANALYZE big', 'analyze'),
    ('ANALYZE', 'cost-unknown'),
    ('CREATE INDEX big_n ON big (n)', 'create-index'),
    ('CREATE UNIQUE INDEX big_n ON big (n)', 'create-index'),
    ('ALTER TABLE big ADD PRIMARY KEY (id)', 'add-primary-key-without-index'),
    ('ALTER TABLE big ADD CONSTRAINT big_pk PRIMARY KEY USING INDEX big_id', 'catalog-only'),
    ('ALTER TABLE big ADD CONSTRAINT u UNIQUE (n)', 'add-unique-without-index'),
    ('ALTER TABLE big ADD CONSTRAINT u UNIQUE USING INDEX big_n', 'catalog-only'),
    ('ALTER TABLE big ADD COLUMN k int REFERENCES small (id)', 'add-column-constraint'),
    ('ALTER TABLE big ADD COLUMN k int NOT NULL', 'add-column-not-null-without-default'),
    # catalog only
    ('ALTER TABLE big ADD COLUMN note text', 'catalog-only'),
    ('ALTER TABLE big ADD COLUMN flag boolean NOT NULL DEFAULT false', 'catalog-only'),
    ('ALTER TABLE big ADD COLUMN t timestamptz DEFAULT now()', 'catalog-only'),
    ('ALTER TABLE big ADD COLUMN t timestamptz DEFAULT CURRENT_TIMESTAMP', 'catalog-only'),
    ("ALTER TABLE big ADD COLUMN t text DEFAULT 'x'::text", 'catalog-only'),
    ('ALTER TABLE big ADD COLUMN t int DEFAULT 1 + 2', 'catalog-only'),
    ('CREATE TABLE fresh (id int PRIMARY KEY)', 'catalog-only'),
    ("COMMENT ON TABLE big IS 'x'", 'catalog-only'),
    ('CREATE VIEW v AS SELECT id FROM big', 'catalog-only'),
    ('CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$', 'catalog-only'),
    ("INSERT INTO big (id) VALUES (1)", 'catalog-only'),
    # data changes
    ('UPDATE big SET n = 0 WHERE id < 10', 'data-change'),
    ('DELETE FROM big', 'data-change'),
    ('INSERT INTO small (id) SELECT id FROM big', 'data-change'),
    # contract changes
    ('ALTER TABLE big DROP COLUMN note', 'drop-column'),
    ('DROP TABLE big', 'drop-table'),
    ('ALTER TABLE big RENAME COLUMN n TO m', 'rename'),
    ('ALTER TABLE big RENAME TO huge', 'rename'),
]


@pytest.mark.parametrize('sql,rule', CLASSIFICATION)
def test_classification(sql, rule):
    [finding] = lint_one(sql)
    assert finding['rule'] == rule, finding
    assert finding['kind'] == lint.RULES[rule][0]
    assert finding['line'] == 1 and finding['file'] == 'patch-2211-01-0.sql'
    assert finding['statement'].startswith(sql.split()[0])


def test_concurrently_cannot_be_in_a_cold_patch():
    # patchset refuses the mix; a lone CONCURRENTLY makes the patch hot...
    with pytest.raises(PatchSetError, match='split it into a hot patch and a cold patch'):
        patch('CREATE INDEX CONCURRENTLY i ON big (n);\nALTER TABLE big ADD COLUMN x int;')
    hot = patch('CREATE INDEX CONCURRENTLY i ON big (n)')
    [finding] = lint.lint_patches([hot], catalog())
    assert hot.kind == 'hot' and finding['rule'] == 'catalog-only' and finding['estimate_seconds'] == 0
    # ...and the classifier itself names it if one ever reached the outage's transaction.
    works = lint.classify(hot.statements[0].node, catalog(), kind='cold')
    assert [w['rule'] for w in works] == ['concurrently-in-transaction']
    assert lint.RULES['concurrently-in-transaction'][2] == lint.ERROR


def test_detach_partition_concurrently_is_a_hot_statement_refused_only_beside_a_default_partition():
    """A hot DETACH PARTITION ... CONCURRENTLY was the error 'CONCURRENTLY cannot run inside the outage's
    transaction' (every such deploy refused); its FINALIZE runs in a transaction block (a cold statement).
    PostgreSQL refuses DETACH ... CONCURRENTLY while the partitioned table has a DEFAULT partition: an error."""
    hot = patch('ALTER TABLE big DETACH PARTITION big_2020 CONCURRENTLY', name='patch-2211-01-1.sql')
    [finding] = lint.lint_patches([hot], catalog())
    assert hot.kind == 'hot' and finding['rule'] == 'catalog-only' and finding['severity'] == lint.INFO, finding
    with_default = catalog(tables={('public', 'big'): dict(BIG, default_partition='big_default')})
    [finding] = lint.lint_patches([hot], with_default)
    assert finding['rule'] == 'detach-concurrently-default-partition' and finding['severity'] == lint.ERROR
    assert 'DEFAULT partition big_default' in finding['summary'] and '\n' not in finding['summary'], finding
    [finding] = lint_one('ALTER TABLE big DETACH PARTITION big_2020 FINALIZE')
    assert finding['rule'] == 'catalog-only', finding
    assert [w['rule'] for w in lint.classify(hot.statements[0].node, catalog(), kind='cold')] == [
        'concurrently-in-transaction']


def test_a_search_path_the_pre_flight_cannot_follow_is_a_warning_naming_file_and_line():
    """Dynamic SQL naming search_path in a DO block: its cost-unknown error says it too, in the same line; a
    set_config of an expression alone is the warning."""
    [do_block, alter] = lint_one("DO $$ BEGIN EXECUTE 'SET search_path = ' || 'app'; END $$;\n"
                                 'ALTER TABLE big ADD COLUMN x int;')
    assert do_block['rule'] == 'cost-unknown' and 'search-path-unknown' in do_block['rules'], do_block
    assert ('it also sets search_path where the pre-flight cannot follow it' in do_block['summary']
            and 'dynamic SQL' in do_block['summary'] and 'schema-qualify the names after it' in do_block['summary'])
    assert 'search-path-unknown' not in alter['rules']
    [computed, dummy] = lint_one("SELECT set_config('search_path', current_setting('app.schema'), false);\n"
                                 'ALTER TABLE big ADD COLUMN x int;')
    assert computed['rule'] == 'search-path-unknown' and computed['severity'] == lint.WARNING, computed
    assert computed['summary'].startswith('patch-2211-01-0.sql line 1: sets search_path where the pre-flight '
                                          'cannot follow it'), computed['summary']
    assert lint.path_setting(('app', '$user', 'My "S"')) == '"app", "$user", "My ""S"""'
    assert lint.path_setting(None) is None and lint.path_setting(('*',)) is None


def test_each_finding_names_file_line_lock_severity_and_a_rewrite():
    found = lint.lint_patches([patch('ALTER TABLE big ADD COLUMN note text;\n\nCREATE INDEX big_n ON big (n);\n')],
                              catalog())
    assert [(f['line'], f['rule']) for f in found] == [(1, 'catalog-only'), (3, 'create-index')]
    index = found[1]
    assert index['lock'] == 'SHARE' and index['severity'] == lint.WARNING and index['table'] == 'big'
    assert 'CONCURRENTLY' in index['suggestion'] and 'hot patch' in index['suggestion']
    assert index['summary'].startswith('patch-2211-01-0.sql line 3: CREATE INDEX without CONCURRENTLY')
    assert found[0]['severity'] == lint.INFO and found[0]['estimate_seconds'] == 0


def test_costs_follow_the_model():
    cat = catalog()
    [index] = lint_one('CREATE INDEX big_n ON big (n)', cat)
    scan = 250 * MB / (500 * MB)
    assert index['estimate_seconds'] == pytest.approx(scan * lint.INDEX_BUILD_FACTOR, rel=1e-3)
    [rewrite] = lint_one('ALTER TABLE big ALTER COLUMN n TYPE bigint', cat)
    # heap 250 MB, one index of 100 MB: the heap rewritten, the index rebuilt, the old 350 MB dropped at COMMIT
    dropped = 350 * MB / (500 * MB)
    assert rewrite['estimate_seconds'] == pytest.approx(scan * lint.REWRITE_FACTOR + scan * lint.INDEX_BUILD_FACTOR
                                                        + dropped * lint.DROP_FACTOR, rel=1e-3)
    # the standby replays the rewritten heap and indexes, and drops the old files as well
    assert rewrite['replay_seconds'] == pytest.approx(dropped * lint.REPLAY_FACTOR + dropped * lint.DROP_FACTOR,
                                                      rel=1e-3)
    assert rewrite['basis']['dropped_bytes'] == 350 * MB
    [small] = lint_one('CREATE INDEX s_n ON small (n)', cat)
    assert small['estimate_seconds'] < 0.001
    # twice the throughput, half the time
    fast = catalog(scan_bytes_per_second=1000 * MB)
    [quick] = lint_one('CREATE INDEX big_n ON big (n)', fast)
    assert quick['estimate_seconds'] == pytest.approx(index['estimate_seconds'] / 2, rel=1e-3)


def test_a_rewrites_commit_drops_the_old_files_in_proportion_to_their_size_and_nothing_else_drops_any():
    # The pure model: bytes / T x DROP_FACTOR, on each server (measured on the lab: 33, 49, 79 ms median for
    # 57, 115, 230 MB - docs/lint.md).
    assert lint.drop_seconds(0, 100 * MB) == 0.0
    assert lint.drop_seconds(200 * MB, 100 * MB) == pytest.approx(2 * lint.DROP_FACTOR)
    assert lint.drop_seconds(400 * MB, 100 * MB) == pytest.approx(2 * lint.drop_seconds(200 * MB, 100 * MB))
    cat = catalog()
    scan = 250 * MB / (500 * MB)
    # An index build and a validating scan add no file to drop: their COMMIT costs nothing in the model.
    [index] = lint_one('CREATE INDEX big_n ON big (n)', cat)
    assert 'dropped_bytes' not in index['basis']
    assert index['replay_seconds'] == pytest.approx(cat.table(('public', 'big'))['reltuples'] * lint.INDEX_BYTES_PER_ROW
                                                    / (500 * MB) * lint.REPLAY_FACTOR, rel=1e-3)
    [check] = lint_one('ALTER TABLE big ADD CONSTRAINT big_n CHECK (n >= 0)', cat)
    assert check['estimate_seconds'] == pytest.approx(scan * lint.SCAN_FACTOR) and check['replay_seconds'] == 0
    # VACUUM FULL rewrites and drops too, but it can only be in a hot patch (live, before the outage): no outage time
    vacuum = patch('VACUUM FULL big')
    [hot] = lint.lint_patches([vacuum], cat)
    assert vacuum.kind == 'hot' and hot['basis']['dropped_bytes'] == 350 * MB
    assert hot['estimate_seconds'] == 0 and hot['replay_seconds'] == 0


def test_one_alter_table_rewrites_once():
    [both] = lint_one('ALTER TABLE big ALTER COLUMN n TYPE bigint, ADD COLUMN r float8 DEFAULT random()')
    [single] = lint_one('ALTER TABLE big ALTER COLUMN n TYPE bigint')
    assert both['estimate_seconds'] == single['estimate_seconds']
    assert both['rules'] == ['add-column-volatile-default', 'alter-type-rewrite']


def test_data_change_uses_the_planner_rows():
    cat = catalog(plan_rows={('patch-2211-01-0.sql', 1): 10.0})
    [few] = lint_one('UPDATE big SET n = 0 WHERE id < 10', cat)
    [every] = lint_one('UPDATE big SET n = 0 WHERE id < 10', catalog())
    assert few['basis']['rows'] == 10 and few['basis']['rows_source'] == 'planner'
    assert every['basis']['rows'] == 5000000 and every['basis']['rows_source'].startswith('reltuples')
    assert every['estimate_seconds'] > few['estimate_seconds'] * 5


def test_tables_created_by_the_patch_set_are_empty():
    found = lint_one('CREATE TABLE fresh (id int, n int);\nCREATE INDEX fresh_n ON fresh (n);\n'
                     'ALTER TABLE fresh ALTER COLUMN n TYPE bigint;')
    assert [f['rule'] for f in found] == ['catalog-only', 'create-index', 'alter-type-rewrite']
    assert all(f['estimate_seconds'] == 0 for f in found)
    assert found[1]['basis']['model'] == 'created by this patch set'


def test_a_column_added_earlier_in_the_patch_set_is_known():
    found = lint_one('ALTER TABLE big ADD COLUMN v varchar(10);\nALTER TABLE big ALTER COLUMN v TYPE varchar(40);')
    assert found[1]['rule'] == 'alter-type-binary-compatible'


def test_volatility_from_the_catalog_wins():
    cat = catalog(functions={'my_stable': 's', 'now': 'v'})
    assert lint_one('ALTER TABLE big ADD COLUMN x int DEFAULT my_stable()', cat)[0]['rule'] == 'catalog-only'
    assert lint_one('ALTER TABLE big ADD COLUMN x int DEFAULT now()', cat)[0]['rule'] == 'add-column-volatile-default'


def test_contract_changes_need_an_acknowledgement():
    sql = 'ALTER TABLE big DROP COLUMN note;\nDROP TABLE small;\n'
    plain = lint_one(sql)
    assert [f['severity'] for f in plain] == [lint.ERROR, lint.ERROR]
    assert 'fastdowntime_lint_acknowledge_contract' in plain[0]['suggestion']
    by_line = lint_one(sql, acknowledge_contract=['patch-2211-01-0.sql:2'])
    assert [(f['severity'], f['acknowledged']) for f in by_line] == [(lint.ERROR, False), (lint.INFO, True)]
    by_file = lint_one(sql, acknowledge_contract=['patch-2211-01-0.sql'])
    assert all(f['severity'] == lint.INFO and 'acknowledged' in f['summary'] for f in by_file)
    other = lint_one(sql, acknowledge_contract=['patch-2211-02-0.sql'])
    assert all(f['severity'] == lint.ERROR for f in other)


def test_acknowledgement_does_not_silence_other_rules():
    [finding] = lint_one('CREATE INDEX big_n ON big (n)', acknowledge_contract=['patch-2211-01-0.sql'])
    assert finding['severity'] == lint.WARNING and not finding['acknowledged']


def test_opt_outs_name_the_rule():
    sql = 'CREATE INDEX a ON big (n);\nCREATE INDEX b ON big (id);\n'
    everywhere = lint_one(sql, ignore_rules=['create-index'])
    assert all(f['severity'] == lint.INFO and f['opted_out'] for f in everywhere)
    one_line = lint_one(sql, ignore_rules=['create-index:patch-2211-01-0.sql:2'])
    assert [f['opted_out'] for f in one_line] == [False, True]
    other_rule = lint_one(sql, ignore_rules=['alter-type-rewrite'])
    assert not any(f['opted_out'] for f in other_rule)
    with pytest.raises(lint.LintError, match='does not start with a rule name'):
        lint.parse_options(ignore_rules=['patch-2211-01-0.sql'])
    # an opt-out keeps the cost: the budget still counts it
    assert everywhere[0]['estimate_seconds'] > 0


def test_severity_overrides():
    [finding] = lint_one('CREATE INDEX a ON big (n)', severity={'create-index': 'error'})
    assert finding['severity'] == lint.ERROR
    with pytest.raises(lint.LintError, match='unknown rule'):
        lint.parse_options(severity={'no-such-rule': 'error'})
    with pytest.raises(lint.LintError, match='unknown level'):
        lint.parse_options(severity={'create-index': 'fatal'})


def test_estimate_sums_cold_statements_and_names_the_costliest():
    found = lint_one('ALTER TABLE big ADD COLUMN note text;\nCREATE INDEX a ON big (n);\n'
                     'ALTER TABLE big ALTER COLUMN n TYPE bigint;\n')
    summed = lint.estimate(found)
    assert summed['statements_seconds'] == pytest.approx(sum(f['estimate_seconds'] for f in found), abs=1e-3)
    assert summed['costliest'][0].startswith('patch-2211-01-0.sql:3 alter-type-rewrite')
    assert summed['costliest'][1].startswith('patch-2211-01-0.sql:2 create-index')
    assert len(summed['costliest']) == 2  # the catalog-only statement costs nothing
    per = lint.per_statement_seconds(found)
    assert per[('patch-2211-01-0.sql', 3)] == pytest.approx(found[2]['estimate_seconds'] + found[2]['replay_seconds'])


def test_statements_sharing_a_line_are_each_priced_once_in_the_outage_estimate():
    """A new user's try: `SELECT pg_sleep(12); COMMENT ON TABLE ...;` on one line was estimated at
    18 ms (the line priced as its last statement, the COMMENT), the pre-flight passed and the window
    ran its 9.5 s out; the reverse order was priced 24 s (the sleep on both statements)."""
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils import preflight
    for sql in ("SELECT pg_sleep(12); COMMENT ON TABLE big IS 'x';", "COMMENT ON TABLE big IS 'x'; SELECT pg_sleep(12);",
                "ALTER TABLE big ALTER COLUMN n TYPE bigint; COMMENT ON TABLE big IS 'x';"):
        one_line = patch(sql)
        found = lint.lint_patches([one_line], catalog())
        line_cost = sum(f['estimate_seconds'] + f['replay_seconds'] for f in found)
        assert line_cost > 1, found
        assert lint.per_statement_seconds(found) == {(one_line.name, 1): pytest.approx(line_cost)}
        estimate = preflight.estimate_outage([one_line], 0.0, [], [], 0.0, [], statement_seconds=0.0001,
                                             statement_costs=lint.per_statement_seconds(found))
        # The line's cost once, plus the floor for the cheap statement and the revision row.
        assert estimate['cold_patches_ms'] == pytest.approx(line_cost * 1000 + 0.2, abs=0.01), sql


def test_vacuum_full_in_a_hot_patch_is_an_error_but_not_outage_time():
    hot = patch('VACUUM FULL big')
    [finding] = lint.lint_patches([hot], catalog())
    assert hot.kind == 'hot' and finding['rule'] == 'vacuum-full' and finding['severity'] == lint.ERROR
    assert finding['estimate_seconds'] == 0 and lint.estimate([finding])['statements_seconds'] == 0


def test_type_change_rules():
    varchar = ('character varying', (10,))
    assert not lint.type_change_rewrites(varchar, ('character varying', (20,)), False)
    assert lint.type_change_rewrites(varchar, ('character varying', (20,)), True)  # a USING expression
    assert lint.type_change_rewrites(('integer', ()), ('bigint', ()), False)
    assert lint.type_change_rewrites(None, ('text', ()), False)
    assert lint.modifiers_of('character varying', 14) == (10,)
    assert lint.modifiers_of('numeric', ((10 << 16) | 2) + 4) == (10, 2)
    assert lint.modifiers_of('integer', -1) == ()


def test_references_and_not_null_proofs():
    refs = lint.references([patch('ALTER TABLE s.big ADD COLUMN x int DEFAULT f();\nDROP TABLE old, s.gone;\n'
                                  'UPDATE small SET n = g(n);')])
    assert refs['tables'] >= {('s', 'big'), (None, 'old'), ('s', 'gone'), (None, 'small')}
    assert refs['functions'] >= {'f', 'g'}
    assert lint.not_null_columns(['(n IS NOT NULL)', '(n > 0)', '(a IS NULL)', '((b IS NOT NULL) AND (c > 0))']) \
        == {'n'}


def test_summary_lines_put_errors_first_with_their_rewrite():
    found = lint_one('ALTER TABLE big ADD COLUMN note text;\nDROP TABLE small;\nCREATE INDEX a ON big (n);')
    lines = lint.summary_lines(found, total=1.5, budget_seconds=2)
    assert lines[0] == 'patch lint: 1 error(s), 1 warning(s), 1 info; estimated statement time 1.50s of a 2s budget'
    assert lines[1].startswith('ERROR patch-2211-01-0.sql line 2: DROP TABLE')
    assert lines[2].startswith('    -> drop it only once')
    assert lines[3].startswith('WARNING patch-2211-01-0.sql line 3')
    assert lines[-1].startswith('INFO patch-2211-01-0.sql line 1')


# -- statements PostgreSQL refuses in a transaction block only for partitioned targets (catalog) --

PARTED = dict(SMALL, relname='parted', relkind='p')
PARTED_INDEX = dict(SMALL, relname='parted_idx', relkind='I')


@pytest.mark.parametrize('sql', ['REINDEX TABLE parted', 'REINDEX INDEX parted_idx', 'CLUSTER parted USING parted_idx',
                                 'CLUSTER parted'])
def test_reindex_or_cluster_of_a_partitioned_target_in_the_window_is_an_error(sql):
    cat = catalog(tables={('public', 'big'): BIG, (None, 'parted'): PARTED, (None, 'parted_idx'): PARTED_INDEX})
    [found] = lint_one(sql + ';', cat)
    assert (found['rule'], found['severity']) == ('partitioned-no-transaction-block', 'error')
    assert 'cannot run inside a transaction block' in found['summary']


@pytest.mark.parametrize('sql, rule', [('REINDEX TABLE big', 'catalog-only'), ('CLUSTER big USING i', 'cluster')])
def test_reindex_or_cluster_of_a_plain_table_is_not_that_error(sql, rule):
    assert lint_one(sql + ';')[0]['rule'] == rule


# -- precision: what is not a contract change, what costs nothing ---------------------

@pytest.mark.parametrize('sql', [
    'ALTER INDEX foo_idx RENAME TO old__foo_idx',                 # issue 15
    'ALTER INDEX IF EXISTS public.foo_idx RENAME TO foo_idx_old',
    'ALTER TABLE big RENAME CONSTRAINT big_n_check TO big_n_positive',
    'ALTER DOMAIN d RENAME CONSTRAINT d_check TO d_positive',
    'ALTER TRIGGER big_audit ON big RENAME TO big_audit_v2',
    'ALTER RULE r ON big RENAME TO r2',
    'ALTER POLICY p ON big RENAME TO q',
    'ALTER STATISTICS big_stats RENAME TO big_stats_v2',
    'ALTER EVENT TRIGGER et RENAME TO et2',
    'ALTER PUBLICATION pub RENAME TO pub2',
    'ALTER SEQUENCE big_id_seq RENAME TO big_id_seq2',            # owned by big.id (catalog)
])
def test_renames_of_objects_application_code_does_not_name_are_info(sql):
    owned = dict(SMALL, relname='big_id_seq', relkind='S', owned_by_column=True)
    cat = catalog(tables={('public', 'big'): BIG, (None, 'big_id_seq'): owned})
    [found] = lint_one(sql + ';', cat)
    assert (found['rule'], found['severity'], found['kind']) == ('rename-internal', 'info', 'catalog only')
    assert found['estimate_seconds'] == 0


@pytest.mark.parametrize('sql', [
    'ALTER TABLE big RENAME COLUMN n TO m', 'ALTER TABLE big RENAME TO huge', 'ALTER VIEW v RENAME TO w',
    'ALTER FUNCTION f(int) RENAME TO g', 'ALTER SCHEMA s RENAME TO t', 'ALTER TYPE e RENAME TO f',
    'ALTER SEQUENCE free_seq RENAME TO free_seq2',                # no owning column: code may call nextval on it
])
def test_renames_of_what_application_code_names_stay_contract_changes(sql):
    free = dict(SMALL, relname='free_seq', relkind='S', owned_by_column=False)
    [found] = lint_one(sql + ';', catalog(tables={('public', 'big'): BIG, (None, 'free_seq'): free}))
    assert (found['rule'], found['severity']) == ('rename', 'error')


@pytest.mark.parametrize('later', [
    'CREATE INDEX users_email_idx ON users (email)',              # issue 15
    'CREATE INDEX users_email_idx ON public.users (email)',
    'ALTER TABLE users ADD CONSTRAINT users_email_check CHECK (email <> \'\')',
    'ALTER TABLE users ALTER COLUMN id TYPE bigint',
    'ALTER TABLE users ALTER COLUMN email SET NOT NULL',
    'ALTER TABLE users ADD COLUMN age int NOT NULL',
    'ALTER TABLE users ADD PRIMARY KEY (id)',
    'ALTER TABLE users RENAME COLUMN email TO mail',
    'DROP TABLE users',
])
def test_work_on_a_table_created_earlier_in_the_pending_patches_costs_nothing_and_warns_of_nothing(later):
    first = patch('CREATE TABLE users (id int, email text);', 'patch-2211-01-0.sql')
    second = patch(later + ';', 'patch-2211-02-0.sql')
    found = lint.lint_patches([first, second], catalog(), lint.parse_options())
    assert [f['severity'] for f in found] == ['info', 'info'], found[1]['summary']
    assert found[1]['estimate_seconds'] == 0
    assert lint.estimate(found)['statements_seconds'] == 0


def test_the_same_work_on_an_existing_table_still_warns():
    [found] = lint_one('CREATE INDEX big_n_idx ON big (n);')
    assert (found['rule'], found['severity']) == ('create-index', 'warning') and found['estimate_seconds'] > 0


# A range-partitioned table with a big DEFAULT partition, a table to attach, a list-partitioned one.
EV = dict(BIG, relname='ev', relkind='p', partition_key='RANGE (created)', default_partition='ev_default',
          default_partition_key=('public', 'ev_default'), columns={'created': ('date', ())})
EV_DEFAULT = dict(BIG, relname='ev_default', relkind='r', heap_bytes=400 * MB)
EV_2027 = dict(SMALL, relname='ev_2027', relkind='r', heap_bytes=100 * MB, check_constraints=[], not_null_columns=[])
CHECKED = ["((created IS NOT NULL) AND (created >= '2027-01-01'::date) AND (created < '2027-02-01'::date))"]


def partitioned(**child):
    return catalog(tables={('public', 'ev'): EV, ('public', 'ev_default'): EV_DEFAULT,
                           ('public', 'ev_2027'): dict(EV_2027, **child)})


def test_attach_partition_scans_the_table_attached_and_the_default_partition():
    """ATTACH PARTITION (tablecmds.c): PostgreSQL scans the table attached for rows outside the bound, and
    the DEFAULT partition for rows of it - both priced with the scan kind, the DEFAULT partition's rule first
    (the costlier); the finding names the DEFAULT partition."""
    [finding] = lint_one("ALTER TABLE ev ATTACH PARTITION ev_2027 FOR VALUES FROM ('2027-01-01') TO ('2027-02-01')",
                         partitioned())
    assert finding['rules'] == ['attach-partition-scan', 'default-partition-scan']
    assert finding['rule'] == 'default-partition-scan' and finding['table'] == 'public.ev_default'
    assert 'the DEFAULT partition of ev' in finding['summary']
    one_scan = 400 * MB / (500 * MB) * lint.SCAN_FACTOR
    assert finding['estimate_seconds'] == pytest.approx(one_scan + one_scan / 4, abs=1e-3)


@pytest.mark.parametrize('checks, not_null, bound, scanned', [
    # The CHECK PostgreSQL's documentation advises: the table attached is not scanned.
    (CHECKED, [], "FROM ('2027-01-01') TO ('2027-02-01')", False),
    (["(created >= '2027-01-01'::date)", "(created < '2027-02-01'::date)"], [], "FROM ('2027-01-01') TO ('2027-02-01')",
     False),
    # Another range, an open side the CHECK leaves open, no CHECK: scanned.
    (CHECKED, [], "FROM ('2027-01-01') TO ('2027-03-01')", True),
    (["(created >= '2027-01-01'::date)"], [], "FROM ('2027-01-01') TO ('2027-02-01')", True),
    ([], [], "FROM ('2027-01-01') TO ('2027-02-01')", True),
    # MINVALUE/MAXVALUE: that side needs nothing; both open: only NOT NULL.
    (["(created < '2027-02-01'::date)"], [], "FROM (MINVALUE) TO ('2027-02-01')", False),
    ([], ['created'], 'FROM (MINVALUE) TO (MAXVALUE)', False),
    ([], [], 'FROM (MINVALUE) TO (MAXVALUE)', True),
    # An OR is no conjunct: not recognised, priced as a scan (never less than PostgreSQL does).
    (["((created >= '2027-01-01'::date) OR (created < '2027-02-01'::date))"], [],
     "FROM ('2027-01-01') TO ('2027-02-01')", True),
])
def test_a_check_constraint_implying_the_bound_spares_the_scan_of_the_table_attached(checks, not_null, bound, scanned):
    [finding] = lint_one('ALTER TABLE ev ATTACH PARTITION ev_2027 FOR VALUES %s' % bound,
                         partitioned(check_constraints=checks, not_null_columns=not_null))
    assert ('attach-partition-scan' in finding['rules']) == scanned, finding['rules']


def test_list_bounds_and_constants_as_postgresql_prints_them():
    list_key = dict(EV, partition_key='LIST (region)', default_partition_key=None)
    tables = {('public', 'ev'): list_key, ('public', 'ev_2027'): dict(EV_2027)}

    def rules(bound, checks, canonical=None):
        tables[('public', 'ev_2027')]['check_constraints'] = checks
        cat = catalog(tables=tables, canonical={(None, 'ev'): canonical or {}})
        return lint_one('ALTER TABLE ev ATTACH PARTITION ev_2027 FOR VALUES %s' % bound, cat)[0]['rules']

    assert rules("IN ('eu', 'us')", ["(region = ANY (ARRAY['eu'::text, 'us'::text]))"]) == ['catalog-only']
    assert rules("IN ('eu', 'us')", ["(region = 'eu'::text)"]) == ['catalog-only']
    assert rules("IN ('eu')", ["(region = ANY (ARRAY['eu'::text, 'us'::text]))"]) == ['attach-partition-scan']
    assert rules("IN ('eu', NULL)", ["(region = 'eu'::text)"]) == ['attach-partition-scan']
    # A timestamp key: the CHECK's constant is PostgreSQL's text of it, the bound's as written.
    at_key = dict(list_key, partition_key='RANGE (at)')
    tables[('public', 'ev')] = at_key
    stored = ["((at >= '2027-01-01 00:00:00'::timestamp without time zone) AND "
              "(at < '2027-02-01 00:00:00'::timestamp without time zone))"]
    bound = "FROM ('2027-01-01') TO ('2027-02-01')"
    assert rules(bound, stored) == ['attach-partition-scan']
    assert rules(bound, stored, {'2027-01-01': '2027-01-01 00:00:00', '2027-02-01': '2027-02-01 00:00:00'}) == [
        'catalog-only']


def test_bound_implied_is_false_for_what_it_does_not_read():
    import pglast
    bound = pglast.parse_sql('ALTER TABLE p ATTACH PARTITION c FOR VALUES FROM (1, 2) TO (3, 4)')[0].stmt.cmds[0].def_.bound
    assert not lint.bound_implied('RANGE (a, b)', bound, ['((a >= 1) AND (a < 3))'])
    hashed = pglast.parse_sql('ALTER TABLE p ATTACH PARTITION c FOR VALUES WITH (MODULUS 2, REMAINDER 0)')[0]
    assert not lint.bound_implied('HASH (a)', hashed.stmt.cmds[0].def_.bound, [])
    default = pglast.parse_sql('ALTER TABLE p ATTACH PARTITION c DEFAULT')[0].stmt.cmds[0].def_.bound
    assert not lint.bound_implied('LIST (a)', default, ['(a = 1)'])


def test_create_partition_of_scans_the_default_partition_and_detach_scans_nothing():
    [created] = lint_one("CREATE TABLE ev_2028 PARTITION OF ev FOR VALUES FROM ('2028-01-01') TO ('2028-02-01')",
                         partitioned())
    assert created['rule'] == 'default-partition-scan' and created['estimate_seconds'] > 0
    [default] = lint_one('CREATE TABLE ev_other PARTITION OF ev DEFAULT', partitioned())
    assert default['rules'] == ['catalog-only']
    [detached] = lint_one('ALTER TABLE ev DETACH PARTITION ev_2027', partitioned())
    assert detached['rules'] == ['catalog-only'] and detached['estimate_seconds'] == 0
    # A foreign DEFAULT partition or foreign table attached: PostgreSQL scans neither.
    foreign = catalog(tables={('public', 'ev'): EV, ('public', 'ev_default'): dict(EV_DEFAULT, relkind='f'),
                              ('public', 'ev_2027'): dict(EV_2027, relkind='f')})
    [attached] = lint_one("ALTER TABLE ev ATTACH PARTITION ev_2027 FOR VALUES FROM ('2027-01-01') TO ('2027-02-01')",
                          foreign)
    assert attached['rules'] == ['catalog-only']


def test_a_patch_s_own_temporary_table_is_not_priced_as_the_permanent_one():
    """CREATE TEMP TABLE big ... then work on 'big': pg_temp is searched first - the patch's own empty table,
    not public.big (250 MB); the next patch's 'big' is public.big again (the window's DISCARD TEMP)."""
    first = patch('CREATE TEMP TABLE big (id int, n int);\nALTER TABLE big ALTER COLUMN n TYPE bigint;\n'
                  'ALTER TABLE big ADD CONSTRAINT pos CHECK (n > 0);')
    second = patch('ALTER TABLE big ADD CONSTRAINT pos CHECK (n > 0);', name='patch-2211-02-0.sql')
    found = lint.lint_patches([first, second], catalog(), lint.parse_options())
    assert [(f['line'], f['table'], f['estimate_seconds'], f['severity']) for f in found[:3]] == [
        (1, 'pg_temp.big', 0.0, 'info'), (2, 'pg_temp.big', 0.0, 'info'), (3, 'pg_temp.big', 0.0, 'info')]
    assert found[3]['table'] == 'big' and found[3]['estimate_seconds'] > 0 and found[3]['severity'] == 'warning'


def test_the_scan_sample_is_never_a_partitioned_table():
    """A partitioned table's sizes are its leaf partitions' summed, but its own relation has no storage: a
    sample of it (SAMPLE_SQL reads ONLY it) would take no time and price every statement at nothing. The
    DEFAULT partition a new partition makes PostgreSQL scan is sampled instead."""
    cold = patch("CREATE TABLE ev_2028 PARTITION OF ev FOR VALUES FROM ('2028-01-01') TO ('2028-02-01');\n"
                 'ALTER TABLE ev ADD CONSTRAINT c CHECK (created IS NOT NULL);')
    cat = partitioned()
    cat.tables[('public', 'ev')] = dict(EV, heap_bytes=900 * MB)   # its partitions' 900 MB, the DEFAULT's 400
    sampled = lint.sample_table(cat, [cold])
    assert sampled[1] == ('public', 'ev_default') and sampled[2]['relkind'] == 'r'


def bound_of(sql):
    import pglast
    node = pglast.parse_sql(sql)[0].stmt
    return node.partbound if type(node).__name__ == 'CreateStmt' else node.cmds[0].def_.bound


@pytest.mark.parametrize('key, sql, expected', [
    ('RANGE (created)', "CREATE TABLE c PARTITION OF p FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')",
     "(created IS NOT NULL AND (created) >= ('2027-01-01') AND (created) < ('2028-01-01'))"),
    ('RANGE (a, b)', 'CREATE TABLE c PARTITION OF p FOR VALUES FROM (1, MINVALUE) TO (5, MAXVALUE)',
     '(a IS NOT NULL AND b IS NOT NULL AND (a) >= (1) AND (a) <= (5))'),
    ('RANGE (a, b)', 'CREATE TABLE c PARTITION OF p FOR VALUES FROM (1, MAXVALUE) TO (5, 2)',
     '(a IS NOT NULL AND b IS NOT NULL AND (a) > (1) AND (a, b) < (5, 2))'),
    ('RANGE (k)', 'CREATE TABLE c PARTITION OF p FOR VALUES FROM (MINVALUE) TO (-10)',
     '(k IS NOT NULL AND (k) < (-10))'),
    ('RANGE ((lower(name)))', "CREATE TABLE c PARTITION OF p FOR VALUES FROM ('a') TO ('m')",
     "(lower(name) IS NOT NULL AND (lower(name)) >= ('a') AND (lower(name)) < ('m'))"),
    ('LIST (region)', "ALTER TABLE p ATTACH PARTITION c FOR VALUES IN ('eu', NULL)",
     "(region IN ('eu') OR region IS NULL)"),
    ('LIST ("Region")', "ALTER TABLE p ATTACH PARTITION c FOR VALUES IN ('eu', 'us')", "(\"Region\" IN ('eu', 'us'))"),
    ('HASH (id)', 'ALTER TABLE p ATTACH PARTITION c FOR VALUES WITH (MODULUS 4, REMAINDER 1)',
     'satisfies_hash_partition(16384::oid, 4, 1, id)'),
    ('LIST (region)', 'ALTER TABLE p ATTACH PARTITION c DEFAULT', None),
    ('', "ALTER TABLE p ATTACH PARTITION c FOR VALUES IN ('eu')", None),
])
def test_a_new_partition_s_bound_as_postgresql_s_partition_constraint(key, sql, expected):
    assert lint.bound_condition(key, bound_of(sql), 16384) == expected


def test_rows_postgresql_would_refuse_are_an_error_before_the_window():
    """pg_partman issues 247 and 707: rows of the new bound already in the DEFAULT partition (they arrived before
    their partition existed), or rows of the table attached outside its bound: PostgreSQL refuses the statement
    inside the window, after its scan. gather_catalog asked the primary (bound_rows): an error naming them."""
    attach = "ALTER TABLE ev ATTACH PARTITION ev_2027 FOR VALUES FROM ('2027-01-01') TO ('2027-02-01')"
    bound = lint.bound_text(bound_of(attach))
    for where, table, detail in ((lint.DEFAULT_ROWS, 'public.ev_default', 'the DEFAULT partition of ev has rows of '
                                  'the new bound'), ((None, 'ev_2027'), 'ev_2027', 'ev_2027 has rows outside the bound')):
        cat = partitioned()
        cat.bound_rows = {((None, 'ev'), bound, where): True}
        [finding] = lint_one(attach, cat)
        assert finding['rule'] == 'partition-bound-violated' and finding['severity'] == lint.ERROR, finding
        assert finding['table'] == table and detail in finding['summary'], finding['summary']
    cat = partitioned()
    cat.bound_rows = {((None, 'ev'), bound, lint.DEFAULT_ROWS): False, ((None, 'ev'), bound, (None, 'ev_2027')): None}
    assert lint_one(attach, cat)[0]['rule'] == 'default-partition-scan'
    create = "CREATE TABLE ev_2028 PARTITION OF ev FOR VALUES FROM ('2028-01-01') TO ('2028-02-01')"
    cat.bound_rows = {((None, 'ev'), lint.bound_text(bound_of(create)), lint.DEFAULT_ROWS): True}
    assert lint_one(create, cat)[0]['rule'] == 'partition-bound-violated'


def test_a_temporary_table_behind_the_session_s_own_path_is_priced_as_the_permanent_one():
    """The deploy session's own search_path lists pg_temp after public: 'big' is public.big, priced."""
    sql = 'CREATE TEMP TABLE big (id int, n int);\nALTER TABLE big ADD CONSTRAINT pos CHECK (n > 0);'
    [dummy, found] = lint_one(sql, catalog(session_path=('public', 'pg_temp')))
    assert found['table'] == 'big' and found['estimate_seconds'] > 0, found
    [dummy, found] = lint_one(sql, catalog(session_path=('public',)))
    assert found['table'] == 'pg_temp.big' and found['estimate_seconds'] == 0, found


def test_analyze_in_the_window_is_priced_as_its_sample_not_catalog_only():
    """ANALYZE runs in a transaction block, so it ran in the window, priced 0 ms as catalog only."""
    [small] = lint_one('ANALYZE small')
    [big] = lint_one('ANALYZE big')
    assert small['rule'] == big['rule'] == 'analyze' and small['severity'] == 'warning'
    assert big['basis']['model'].startswith('analyze: min(heap, 234 MiB sample)/T')
    sample = min(BIG['heap_bytes'], lint.ANALYZE_SAMPLE_BYTES)
    assert big['estimate_seconds'] == pytest.approx(sample / (500 * MB) * lint.SCAN_FACTOR, rel=0.01)
    assert small['estimate_seconds'] < big['estimate_seconds']
    assert 'autovacuum' in big['suggestion']
