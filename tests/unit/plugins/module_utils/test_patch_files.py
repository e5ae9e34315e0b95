"""What a patch file may contain: files written for psql, pg_dump and other
migration tools (goose, sql-migrate, dbmate, Liquibase, Flyway, golang-migrate,
sqitch), each named for what it is, every problem of every file in one run.
Pure: no database."""

import pytest

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import lint
from ansible_collections.fastdowntime.postgresql.plugins.module_utils import preflight as pf
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.budget import Budget
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.patchset import (
    ACCEPTED, COLD, DOWN, HOT, NO_TRANSACTION, REFUSED_ANNOTATION, Patch, PatchSetError, ignored_sql_files,
    load_patch_set, meta_command_advice, migration_annotation, name_problem, other_tool_name, patch_kind,
    created_extensions, named_roles, read_statements, setting_statements, split_statements)

GOOSE = """-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION tryit_fn() RETURNS int LANGUAGE plpgsql AS $$
BEGIN
  RETURN 1;
END;
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION tryit_fn();
"""


def write(directory, name, text):
    (directory / name).write_text(text, encoding='utf-8')


def problems_of(directory):
    with pytest.raises(PatchSetError) as err:
        load_patch_set(str(directory))
    return err.value.problems


# -- other migration tools' annotations ----------------------------------------------------------

@pytest.mark.parametrize('comment, tool, effect', [
    ('-- +goose Up', 'goose', ACCEPTED),
    ('-- +goose up', 'goose', ACCEPTED),
    ('-- +goose StatementBegin', 'goose', ACCEPTED),
    ('-- +goose StatementEnd', 'goose', ACCEPTED),
    ('-- +goose ENVSUB OFF', 'goose', ACCEPTED),
    ('-- +goose Down', 'goose', DOWN),
    ('-- +goose down', 'goose', DOWN),
    ('-- +goose NO TRANSACTION', 'goose', NO_TRANSACTION),
    ('-- +goose ENVSUB ON', 'goose', REFUSED_ANNOTATION),
    ('-- +goose Sideways', 'goose', REFUSED_ANNOTATION),
    ('-- +migrate Up', 'sql-migrate', ACCEPTED),
    ('-- +migrate Up notransaction', 'sql-migrate', NO_TRANSACTION),
    ('-- +migrate Down', 'sql-migrate', DOWN),
    ('-- migrate:up', 'dbmate', ACCEPTED),
    ('-- migrate:up transaction:false', 'dbmate', NO_TRANSACTION),
    ('-- migrate:down', 'dbmate', DOWN),
    ('-- migrate:down transaction:false', 'dbmate', DOWN),
    ('--liquibase formatted sql', 'liquibase', ACCEPTED),
    ('--changeset alice:1', 'liquibase', ACCEPTED),
    ('--rollback DROP TABLE t;', 'liquibase', ACCEPTED),
    ('--comment: adds t', 'liquibase', ACCEPTED),
    ('--changeset alice:2 runInTransaction:false', 'liquibase', NO_TRANSACTION),
    ('--changeset alice:3 context:dev', 'liquibase', REFUSED_ANNOTATION),
    ('--changeset alice:4 runOnChange:true', 'liquibase', REFUSED_ANNOTATION),
    ('--precondition-sql-check expectedResult:0 SELECT count(*) FROM t', 'liquibase', REFUSED_ANNOTATION),
    ('--preconditions onFail:MARK_RAN', 'liquibase', REFUSED_ANNOTATION),
])
def test_each_annotation_is_accepted_refused_or_a_down_section(comment, tool, effect):
    found = migration_annotation(comment)
    assert (found.tool, found.effect) == (tool, effect)
    assert (found.advice is not None) == (effect == REFUSED_ANNOTATION)


@pytest.mark.parametrize('comment', ['-- a comment', '-- goose Down (not an annotation)', '-- migrate later',
                                     '-- rollbacks are patches of their own'])
def test_ordinary_comments_are_no_annotation(comment):
    assert migration_annotation(comment) is None


def test_goose_down_section_is_refused_naming_file_line_and_fix():
    with pytest.raises(PatchSetError) as err:
        split_statements(GOOSE, 'patch-2300-03-0.sql')
    [problem] = err.value.problems
    assert problem.startswith('patch-2300-03-0.sql line 10: goose down section (-- +goose Down): it runs in the same '
                              'transaction as the up part')
    assert 'keep only the up part in the patch file: delete line 10 to the end' in problem


def test_goose_up_part_alone_is_a_cold_patch_its_markers_comments():
    up = GOOSE[:GOOSE.index('-- +goose Down')]
    [statement] = split_statements(up, 'patch-2300-03-0.sql')
    assert (statement.command, statement.line, statement.kind) == ('CreateFunctionStmt', 3, COLD)


def test_a_marker_inside_a_string_or_a_function_body_is_not_one():
    text = ("CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $$ SELECT '-- +goose Down' $$;\n"
            "COMMENT ON FUNCTION f() IS '\n-- migrate:down\n';\n")
    assert [s.command for s in split_statements(text, 'p.sql')] == ['CreateFunctionStmt', 'CommentStmt']


def test_dbmate_down_section_refused_and_statements_after_it_not_read():
    text = '-- migrate:up\nCREATE TABLE t (id int);\n\n-- migrate:down\nDROP TABLE t;\nBEGIN;\n'
    with pytest.raises(PatchSetError) as err:
        split_statements(text, 'p.sql')
    assert err.value.problems == [
        'p.sql line 4: dbmate down section (-- migrate:down): it runs in the same transaction as the up part, '
        'undoing it; keep only the up part in the patch file: delete line 4 to the end (undoing it is a later '
        'patch of its own)']


def test_no_transaction_fits_a_hot_patch_and_is_refused_in_a_cold_one(tmp_path):
    write(tmp_path, 'patch-2300-01-0.sql', '-- +goose NO TRANSACTION\nCREATE INDEX CONCURRENTLY i ON t (a);\n')
    write(tmp_path, 'patch-2300-02-0.sql', '-- migrate:up transaction:false\nUPDATE t SET a = 1;\n')
    problems = problems_of(tmp_path)
    assert len(problems) == 1
    assert problems[0].startswith('patch-2300-02-0.sql line 1: dbmate annotation -- migrate:up transaction:false '
                                  'asks to run the file outside a transaction')
    assert 'remove the annotation' in problems[0]
    (tmp_path / 'patch-2300-02-0.sql').unlink()
    [hot] = load_patch_set(str(tmp_path)).patches
    assert hot.kind == HOT


def test_liquibase_file_with_rollback_lines_is_plain_sql_its_preconditions_refused(tmp_path):
    write(tmp_path, 'patch-2300-01-0.sql', '--liquibase formatted sql\n--changeset alice:1\nCREATE TABLE t (id int);\n'
                                           '--rollback DROP TABLE t;\n')
    [patch] = load_patch_set(str(tmp_path)).patches
    assert [s.command for s in patch.statements] == ['CreateStmt']
    write(tmp_path, 'patch-2300-02-0.sql', '--liquibase formatted sql\n--changeset alice:2 context:dev\n'
                                           '--precondition-sql-check expectedResult:0 SELECT 1\nCREATE TABLE u (id int);\n')
    problems = problems_of(tmp_path)
    assert [p.split(':')[0] for p in problems] == ['patch-2300-02-0.sql line 2', 'patch-2300-02-0.sql line 3']
    assert 'remove context' in problems[0] and 'does not evaluate preconditions' in problems[1]


# -- psql and pg_dump content --------------------------------------------------------------------

def test_psql_meta_commands_are_named_each_with_its_line():
    text = '\\set ON_ERROR_STOP on\nCREATE TABLE t (id int);\n\\connect other\n\\i more.sql\nSELECT 1 \\gset\n'
    with pytest.raises(PatchSetError) as err:
        split_statements(text, 'p.sql')
    assert [p[:p.index(': not SQL')] for p in err.value.problems] == [
        'p.sql line 1: psql meta-command \\set', 'p.sql line 3: psql meta-command \\connect',
        'p.sql line 4: psql meta-command \\i', 'p.sql line 5: psql meta-command \\gset']
    assert all('not SQL, run it outside the deploy' in p for p in err.value.problems)
    assert 'does not parse' not in str(err.value)


@pytest.mark.parametrize('command, words', [('i', 'included file'), ('ir', 'included file'),
                                            ('connect', 'own deploy'), ('c', 'own deploy'), ('copy', 'INSERTs'),
                                            ('gexec', 'write the statements it returns into the patch'),
                                            ('gset', 'not expanded'), ('g', 'with ; instead'),
                                            ('endif', 'a DO block'), ('timing', 'delete the line'),
                                            ('lo_import', 'run it outside the deploy')])
def test_meta_command_advice(command, words):
    assert words in meta_command_advice(command)


def test_pg_dump_restrict_guard_lines_are_neither_run_nor_refused():
    # pg_dump --schema-only of 15.14/16.10/17.6 on wraps its output in \\restrict KEY / \\unrestrict KEY.
    text = ("--\n-- PostgreSQL database dump\n--\n\n\\restrict EV4ed1xlDOdEGK8KF2KvbhXfSafbpYrj\n\n"
            "SET statement_timeout = 0;\nSELECT pg_catalog.set_config('search_path', '', false);\n"
            "CREATE TABLE public.t (id bigint NOT NULL);\n\n\\unrestrict EV4ed1xlDOdEGK8KF2KvbhXfSafbpYrj\n\n")
    statements = split_statements(text, 'dump.sql')
    assert [(s.line, s.command) for s in statements] == [
        (7, 'VariableSetStmt'), (8, 'SelectStmt'), (9, 'CreateStmt')]


def test_a_meta_command_without_advice_of_its_own_says_the_fix_once():
    with pytest.raises(PatchSetError) as err:
        split_statements('\\lo_import /tmp/x\nCREATE TABLE t (id int);\n', 'p.sql')
    assert err.value.problems == ['p.sql line 1: psql meta-command \\lo_import: not SQL, run it outside the deploy']


def refusals(text):
    """The problems split_statements refuses ``text`` (as p.sql) with."""
    with pytest.raises(PatchSetError) as err:
        split_statements(text, 'p.sql')
    return err.value.problems


def test_gexec_is_named_with_what_to_write_instead():
    assert refusals("SELECT format('ALTER TABLE %I ADD COLUMN c int', relname) FROM pg_class WHERE relname LIKE 't%' "
                    "\\gexec\nCREATE TABLE u (id int);\n") == [
        'p.sql line 1: psql meta-command \\gexec: not SQL, run it outside the deploy (it runs the statements its '
        'query generates: run that query once and write the statements it returns into the patch)']


@pytest.mark.parametrize('sql', [
    # node-postgres #3209: \\gexec right after the query's closing parenthesis.
    "SELECT 'CREATE TABLE v (id int)'\nWHERE NOT EXISTS (SELECT FROM pg_class WHERE relname = 'v')\\gexec\n",
    # pgFormatter #26: \\gx and \\watch send the query as ; does.
    'SELECT 1 \\gx\n', 'SELECT 1 \\watch 5\n'])
def test_a_meta_command_sending_the_query_ends_its_statement(sql):
    [problem] = refusals(sql + 'CREATE TABLE u (id int);\n')
    assert 'psql meta-command' in problem


def test_pg_dump_copy_from_stdin_data_is_named_at_its_copy_line():
    text = ("SELECT pg_catalog.set_config('search_path', '', false);\nCREATE TABLE public.t (id int, v text);\n"
            "COPY public.t (id, v) FROM stdin;\n1\tit's\n2\tx\n\\.\n\nCREATE INDEX t_id ON public.t (id);\n")
    with pytest.raises(PatchSetError) as err:
        split_statements(text, 'dump.sql')
    assert err.value.problems == [
        'dump.sql line 3: COPY FROM stdin data (2 row(s) follow it): not supported: the tool sends SQL, not data; '
        'load it with INSERTs, or outside the deploy']


@pytest.mark.parametrize('sql, words', [('COPY t FROM stdin', 'COPY FROM stdin: not supported'),
                                        ('COPY t TO stdout', 'COPY TO stdout')])
def test_copy_with_the_client_is_refused(sql, words):
    with pytest.raises(PatchSetError, match='^p.sql line 2: ' + words):
        split_statements('SELECT 1;\n' + sql + '\n', 'p.sql')


def test_syntax_error_after_a_meta_command_still_reported():
    with pytest.raises(PatchSetError) as err:
        split_statements('\\set x 1\nCREATE TABLE (;\n', 'p.sql')
    assert [p.split(':')[0] for p in err.value.problems] == ['p.sql line 1', 'p.sql line 2']
    assert 'does not parse' in err.value.problems[1]


# -- names -------------------------------------------------------------------------------------------

@pytest.mark.parametrize('name, what', [
    ('V3__add_col.sql', 'Flyway versioned'), ('V1_2__x.sql', 'Flyway versioned'), ('U3__add_col.sql', 'Flyway undo'),
    ('R__views.sql', 'Flyway repeatable'), ('1_init.up.sql', 'golang-migrate up'),
    ('000001_init.down.sql', 'golang-migrate down'), ('20240101093158_add_users.sql', 'numbered migration'),
    ('00001_add_users.sql', 'numbered migration'),
])
def test_other_tools_migration_names_are_refused_naming_the_pattern(name, what):
    assert what in other_tool_name(name)
    problem = name_problem(name)
    assert problem.startswith(name + ': ') and 'never be applied' in problem


def test_a_rename_is_suggested_after_the_newest_patch_not_before_it(tmp_path):
    # try 6: 'rename it to the next free patch-MMMM-mm-p.sql (e.g. patch-2211-01-0.sql)' beside patch-2301-20-0.sql:
    # a patch so named would be refused as numbered before the patches already applied.
    write(tmp_path, 'patch-2301-20-0.sql', 'CREATE TABLE t (id int);\n')
    write(tmp_path, 'patch-2301-03-0.sql', 'CREATE TABLE u (id int);\n')
    write(tmp_path, 'V3__add_col.sql', 'ALTER TABLE t ADD COLUMN c int;\n')
    with pytest.raises(PatchSetError) as err:
        load_patch_set(str(tmp_path))
    assert err.value.problems == ['V3__add_col.sql: a Flyway versioned migration, not a patch: it would never be '
                                  'applied; rename it to the next free patch-MMMM-mm-p.sql (e.g. patch-2301-21-0.sql), '
                                  'or move it out']


@pytest.mark.parametrize('name', ['comments.sql', 'trusted.sql', 'launchpad-2209-00-0.sql', 'structure.sql',
                                  'README', 'patch-2211-01-0.sql'])
def test_other_files_are_no_name_problem(name):
    assert name_problem(name) is None


def test_every_problem_of_every_file_in_one_run(tmp_path):
    write(tmp_path, 'patch-2300-00-0.sql', '\\set ON_ERROR_STOP on\nCREATE TABLE a (id int);\n')
    write(tmp_path, 'patch-2300-01-0.sql', 'BEGIN;\nCREATE TABLE b (id int);\nCOMMIT;\n')
    write(tmp_path, 'patch-2300-02-0.sql', 'COPY b FROM stdin;\n1\n\\.\n')
    write(tmp_path, 'patch-2300-03-0.sql', GOOSE)
    write(tmp_path, 'patch-2300-04-0.sql', 'CREATE TABLE c (id int);\n')
    write(tmp_path, 'V3__add_col.sql', 'ALTER TABLE c ADD COLUMN x int;\n')
    write(tmp_path, 'patch-2300-5-0.sql', 'SELECT 1;\n')
    problems = problems_of(tmp_path)
    assert [p.split(':')[0] for p in problems] == [
        'V3__add_col.sql', 'patch-2300-00-0.sql line 1', 'patch-2300-01-0.sql line 1', 'patch-2300-01-0.sql line 3',
        'patch-2300-02-0.sql line 1', 'patch-2300-03-0.sql line 10', 'patch-2300-5-0.sql']
    found = pf.decide_patch_files('primary', error=PatchSetError(problems))
    assert [f['status'] for f in found] == [pf.FAIL] * len(problems)
    assert [f['summary'] for f in found] == problems


def test_sqitch_project_is_refused(tmp_path):
    write(tmp_path, 'sqitch.plan', '%project=x\n')
    (tmp_path / 'deploy').mkdir()
    assert problems_of(tmp_path)[0].startswith('sqitch.plan: a sqitch project')


def test_other_sql_files_are_ignored_and_the_preflight_warns_naming_them(tmp_path):
    write(tmp_path, 'patch-2300-00-0.sql', 'CREATE TABLE a (id int);\n')
    write(tmp_path, 'comments.sql', "COMMENT ON TABLE a IS 'x';\n")
    write(tmp_path, 'notes.txt', 'x\n')
    patch_set = load_patch_set(str(tmp_path))
    assert ignored_sql_files(patch_set) == ['comments.sql']
    [warning] = pf.decide_patch_files('primary', ignored_sql=ignored_sql_files(patch_set))
    assert warning['status'] == pf.WARN and 'comments.sql' in warning['summary']
    assert 'patch-MMMM-mm-p.sql' in warning['action']
    assert pf.decide_patch_files('primary') == []


def test_sql_files_in_subdirectories_are_named_as_never_applied(tmp_path):
    """A new user's try 10: patches in per-release folders (2302/patch-2302-01-0.sql) or a sqitch
    deploy/ folder copied without its sqitch.plan were silently never read: "nothing to do"."""
    write(tmp_path, 'patch-2300-00-0.sql', 'CREATE TABLE a (id int);\n')
    write(tmp_path, 'comments.sql', "COMMENT ON TABLE a IS 'x';\n")
    for folder in ('2302', 'deploy', 'deploy/more', '.git'):
        (tmp_path / folder).mkdir()
    write(tmp_path, '2302/patch-2302-01-0.sql', 'CREATE TABLE b (id int);\n')
    write(tmp_path, 'deploy/add_c.sql', 'ALTER TABLE a ADD COLUMN c int;\n')
    write(tmp_path, 'deploy/more/add_d.sql', 'ALTER TABLE a ADD COLUMN d int;\n')
    write(tmp_path, 'deploy/README', 'x\n')
    write(tmp_path, '.git/x.sql', 'SELECT 1;\n')
    patch_set = load_patch_set(str(tmp_path))
    assert ignored_sql_files(patch_set) == ['2302/patch-2302-01-0.sql', 'comments.sql', 'deploy/add_c.sql',
                                            'deploy/more/add_d.sql']
    misnamed, nested = pf.decide_patch_files('primary', ignored_sql=ignored_sql_files(patch_set))
    assert misnamed['summary'] == 'primary: not named like a patch, so never applied: comments.sql'
    assert nested['status'] == pf.WARN
    assert nested['summary'] == ('primary: in a subdirectory of the patch directory, which is not read, so never '
                                 'applied: 2302/patch-2302-01-0.sql, deploy/add_c.sql, deploy/more/add_d.sql')
    assert nested['action'].startswith('move a file meant to be applied into the patch directory itself')


# -- statements that run code: cost unknown --------------------------------------------------------

def cold_patch(sql, name='patch-2300-01-0.sql'):
    statements = split_statements(sql, name)
    return Patch(name=name, path='/x/' + name, revision=(2300, 1, 0), sha256='0' * 64,
                 kind=patch_kind(statements, name), statements=statements)


def lint_of(sql, **options):
    return lint.lint_patches([cold_patch(sql)], lint.Catalog(scan_bytes_per_second=200 * 1048576.0),
                             lint.parse_options(**options))


@pytest.mark.parametrize('sql, detail', [
    ('SELECT backfill()', 'SELECT backfill()'),
    ('SELECT count(*) FROM t', 'SELECT count()'),
    ('SELECT * FROM t', 'SELECT reading tables'),
    ('SELECT pg_sleep(x) FROM t', 'SELECT pg_sleep()'),
    ('DO $$ BEGIN PERFORM 1; END $$', 'DO block'),
    ('CALL backfill(1000)', 'CALL backfill()'),
    ('CREATE TABLE c AS SELECT * FROM t', 'CREATE ... AS reading tables'),
    ('CREATE MATERIALIZED VIEW m AS SELECT backfill()', 'CREATE ... AS backfill()'),
    ('REFRESH MATERIALIZED VIEW m', 'REFRESH MATERIALIZED VIEW'),
])
def test_statements_running_code_are_cost_unknown_errors(sql, detail):
    [found] = lint_of(sql + ';\n')
    assert (found['rule'], found['severity'], found['cost_unknown'], found['detail']) == (
        'cost-unknown', lint.ERROR, True, detail)
    assert 'cost unknown' in found['summary'] and 'estimated' not in found['summary']
    assert 'fastdowntime_lint_ignore_rules' in found['suggestion']
    assert lint.estimate([found])['unknown'] == ['patch-2300-01-0.sql:1 %s' % detail]


@pytest.mark.parametrize('sql', ["SELECT pg_catalog.set_config('search_path', '', false)",
                                 "SELECT setval('s', 42, true)", 'SELECT 1',
                                 'CREATE MATERIALIZED VIEW m AS SELECT * FROM t WITH NO DATA',
                                 'REFRESH MATERIALIZED VIEW m WITH NO DATA',
                                 "CREATE TABLE dated AS SELECT '01/02/2020'::date AS d",
                                 'CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT count(*) FROM t $$'])
def test_cheap_or_not_running_statements_stay_catalog_only(sql):
    [found] = lint_of(sql + ';\n')
    assert found['rule'] == 'catalog-only' and not found['cost_unknown']


def test_a_constant_pg_sleep_costs_its_seconds():
    [found] = lint_of('SELECT pg_sleep(1.5), pg_sleep(1);\n')
    assert (found['rule'], found['severity'], found['estimate_seconds']) == ('sleep', lint.INFO, 2.5)
    assert lint.estimate([found])['unknown'] == []


def test_opting_out_makes_it_info_and_the_estimate_still_says_unknown():
    [found] = lint_of('SELECT pg_sleep(25);\nSELECT backfill();\n', ignore_rules=['cost-unknown'])[1:]
    assert found['severity'] == lint.INFO and found['opted_out'] and found['cost_unknown']
    lines = lint.summary_lines([found], total=0.0, budget_seconds=10)
    assert '+ unknown (1 statement(s) run code)' in lines[0]


def test_budget_warns_when_statements_of_unknown_cost_are_pending():
    estimate = {'drain_ms': 1, 'cold_patches_ms': 1, 'standby_replay_ms': 1, 'resume_ms': 1, 'total_ms': 4,
                'unknown': ['patch-2300-01-0.sql:2 SELECT backfill()']}
    found = pf.decide_budget(estimate, Budget(10))
    assert found['status'] == pf.WARN and 'unknown cost' in found['summary']
    assert 'patch-2300-01-0.sql:2 SELECT backfill()' in found['summary']
    assert pf.decide_budget(dict(estimate, total_ms=60000), Budget(10))['status'] == pf.FAIL
    model = pf.estimate_outage([cold_patch('SELECT backfill();\n')], 0.001, [], [], 0.0, [],
                               lint_estimate={'statements_seconds': 0.0, 'replay_seconds': 0.0, 'costliest': [],
                                              'unknown': ['patch-2300-01-0.sql:1 SELECT backfill()']})
    assert model['unknown'] == ['patch-2300-01-0.sql:1 SELECT backfill()']


# -- settings the server decides on (the pre-flight's patch_settings) ------------------------------

PG_DUMP_17 = """SET statement_timeout = 0;
SET transaction_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);
SET LOCAL work_mem = '4MB';
RESET ALL;
SET TIME ZONE 'UTC';
SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY;
SELECT set_config('a.b', '1', false), 1;
SELECT set_config('a.b', v, false) FROM fdt_t;
SELECT set_config('a.b', current_user, false);
CREATE TABLE fdt_t (v text);
"""


def test_setting_statements_are_every_set_reset_and_constant_set_config_in_order():
    statements, problems, dummy = read_statements(PG_DUMP_17, 'patch-2300-01-0.sql')
    assert problems == []
    patch = Patch(name='patch-2300-01-0.sql', path='', revision=(2300, 1, 0), sha256='', kind=COLD,
                  statements=statements)
    # transaction_timeout is a setting (not SET TRANSACTION); a SELECT reading a table, computing a value
    # or returning anything else is not tried.
    assert [s.line for p, s in setting_statements([patch])] == [1, 2, 3, 4, 5, 6, 7]
    assert all(p is patch for p, s in setting_statements([patch]))


def test_set_transaction_snapshot_is_refused_as_set_transaction():
    statements, problems, dummy = read_statements("SET TRANSACTION SNAPSHOT '00000003-0000001B-1';\n", 'p.sql')
    assert statements == [] and problems == [
        'p.sql line 1: SET TRANSACTION is not allowed in a patch: the tool owns the transaction (every cold patch '
        'runs in one, after other statements)']


def test_decide_patch_settings_one_line_each_with_the_fix_of_its_sqlstate():
    failures = [
        {'file': 'patch-2300-01-0.sql', 'line': 11, 'sql': 'SET transaction_timeout = 0', 'code': '42704',
         'message': 'unrecognized configuration parameter "transaction_timeout"', 'created_earlier': None},
        {'file': 'patch-2300-01-0.sql', 'line': 12, 'sql': 'SET session_replication_role = replica',
         'code': '42501', 'message': 'permission denied to set parameter "session_replication_role"',
         'created_earlier': None},
        {'file': 'patch-2300-02-0.sql', 'line': 2, 'sql': 'SET ROLE fdt_new', 'code': '22023',
         'message': 'role "fdt_new" does not exist', 'created_earlier': 'fdt_new'},
    ]
    found = pf.decide_patch_settings('primary (10.0.0.10:5432)', failures)
    assert [(f['check'], f['status']) for f in found] == [('patch_settings', pf.FAIL), ('patch_settings', pf.FAIL),
                                                          ('patch_settings', pf.WARN)]
    assert found[0]['summary'] == (
        'primary (10.0.0.10:5432): patch-2300-01-0.sql line 11: SET transaction_timeout = 0: unrecognized '
        'configuration parameter "transaction_timeout" (SQLSTATE 42704): the window would fail on it and roll back')
    assert 'pg_dump 17 and later' in found[0]['action'] and 'delete the line' in found[0]['action']
    assert 'GRANT SET ON PARAMETER' in found[1]['action']
    assert 'an earlier pending statement creates fdt_new, so only the window can tell' in found[2]['summary']
    # Nothing refused: one passed finding, as every check gives (the pre-flight lists every check it ran).
    [passed] = pf.decide_patch_settings('primary', [], tried=3)
    assert passed['status'] == 'pass' and passed['summary'] == ('primary: 3 setting statement(s) of the pending '
                                                                'patches accepted by the server (tried, rolled back)')
    assert pf.decide_patch_settings('primary', [])[0]['summary'] == 'primary: no setting in the pending patches'


def test_flyway_inline_script_configuration_is_read_as_the_others_annotations(tmp_path):
    assert migration_annotation('-- flyway:executeInTransaction=false').effect == NO_TRANSACTION
    assert migration_annotation('--flyway:executeInTransaction=true').effect == ACCEPTED
    assert migration_annotation('-- flyway:encoding=UTF-8').effect == ACCEPTED
    assert migration_annotation('-- flyway:shouldExecute=false').effect == REFUSED_ANNOTATION
    assert migration_annotation('-- flyway:placeholderReplacement=true').effect == REFUSED_ANNOTATION
    write(tmp_path, 'patch-2400-01-0.sql', '-- flyway:executeInTransaction=false\nCREATE TABLE fdt_fly (id int);\n')
    write(tmp_path, 'patch-2400-02-0.sql', '-- flyway:executeInTransaction=false\n'
                                           'CREATE INDEX CONCURRENTLY fdt_fly_idx ON fdt_fly (id);\n')
    write(tmp_path, 'patch-2400-02-0.sql.conf', 'executeInTransaction=false\n')
    assert problems_of(tmp_path) == [
        'patch-2400-01-0.sql line 1: flyway annotation -- flyway:executeInTransaction=false asks to run the file '
        'outside a transaction, but its statements are transactional and run in the window\'s one transaction (all '
        'or nothing): remove the annotation; a statement that must run live (CREATE INDEX CONCURRENTLY...) goes in a '
        'hot patch of its own',
        'patch-2400-02-0.sql.conf: a Flyway script configuration file: this tool does not read it, so what it says '
        '(executeInTransaction=false...) would silently not apply; a hot patch (CREATE INDEX CONCURRENTLY...) runs '
        'live, outside a transaction, anyway, every cold patch in the window\'s one transaction: delete it or move '
        'it out']


def test_transaction_control_says_to_delete_the_line():
    statements, problems, dummy = read_statements('BEGIN;\nCREATE TABLE fdt_t (id int);\nCOMMIT;\n', 'p.sql')
    assert [p.split(': ', 1)[0] for p in problems] == ['p.sql line 1', 'p.sql line 3']
    assert all(p.endswith('transaction; delete the line (sqitch, golang-migrate and Django sqlmigrate files carry '
                          'their own BEGIN/COMMIT); what must be committed first goes in an earlier patch')
               for p in problems)


def test_copy_from_or_to_a_server_file_or_program_is_refused():
    statements, problems, dummy = read_statements(
        "COPY fdt_t (id) FROM '/tmp/fdt-data.csv' WITH (FORMAT csv);\n"
        "COPY fdt_t FROM PROGRAM 'zcat /tmp/d.gz';\n"
        "COPY fdt_t TO '/tmp/out.csv';\n"
        "COPY (SELECT 1) TO PROGRAM 'cat';\n", 'p.sql')
    assert statements == []
    assert problems == [
        'p.sql line 1: COPY FROM a file on the database server: the pre-flight can neither check nor price what it '
        'reads, and the window fails if it is missing; load the data with INSERTs, or outside the deploy',
        'p.sql line 2: COPY FROM PROGRAM: the pre-flight can neither check nor price what it reads, and the window '
        'fails if it is missing; load the data with INSERTs, or outside the deploy',
        'p.sql line 3: COPY TO a file on the database server: a side effect the window\'s ROLLBACK does not undo; '
        'run it outside the deploy',
        'p.sql line 4: COPY TO PROGRAM: a side effect the window\'s ROLLBACK does not undo; run it outside the deploy']


def test_named_roles_are_the_roles_a_statement_needs_less_those_the_deploy_creates():
    statements, problems, dummy = read_statements(
        'ALTER TABLE public.x OWNER TO appuser;\n'
        'GRANT SELECT ON TABLE public.x TO readonly, PUBLIC;\n'
        'GRANT app_role TO bob;\n'
        'ALTER DEFAULT PRIVILEGES FOR ROLE owner1 IN SCHEMA public GRANT SELECT ON TABLES TO reader;\n'
        'CREATE ROLE newr IN ROLE parent;\n'
        'GRANT SELECT ON x TO newr;\n'
        'ALTER ROLE newr RENAME TO newr2;\n'
        'ALTER FUNCTION f() OWNER TO newr2;\n'
        'REVOKE ALL ON x FROM CURRENT_USER;\n'
        'DROP ROLE IF EXISTS gone;\n'
        'ALTER TABLE x OWNER TO "MixedCase";\n', 'p.sql')
    patch = Patch(name='p.sql', path='', revision=(2300, 1, 0), sha256='', kind=COLD, statements=statements)
    assert [(s.line, role) for p, s, role in named_roles([patch])] == [
        (1, 'appuser'), (2, 'readonly'), (3, 'bob'), (3, 'app_role'), (4, 'owner1'), (4, 'reader'), (5, 'parent'),
        (11, 'MixedCase')]


def test_decide_patch_roles_one_failure_per_statement_and_role():
    found = pf.decide_patch_roles('primary (10.0.0.10:5432)', [('patch-2300-01-0.sql', 2, 'app_owner')])
    assert [(f['check'], f['status']) for f in found] == [('patch_roles', pf.FAIL)]
    assert found[0]['summary'] == ('primary (10.0.0.10:5432): patch-2300-01-0.sql line 2: role "app_owner" does not '
                                   'exist on this server: the window would fail on it and roll back')
    assert 'CREATE ROLE in an earlier patch' in found[0]['action'] and '--no-owner' in found[0]['action']
    [passed] = pf.decide_patch_roles('primary', [], named=2)
    assert passed['status'] == 'pass' and passed['summary'] == ('primary: every role the pending patches name (2) '
                                                                'exists on this server')
    assert pf.decide_patch_roles('primary', [])[0]['summary'] == 'primary: the pending patches name no role'


def test_created_extensions_and_their_versions():
    statements, problems, dummy = read_statements(
        "CREATE EXTENSION IF NOT EXISTS postgis WITH SCHEMA public VERSION '3.4';\n"
        "CREATE EXTENSION pg_trgm;\nCOMMENT ON EXTENSION pg_trgm IS 'x';\n", 'p.sql')
    patch = Patch(name='p.sql', path='', revision=(2300, 1, 0), sha256='', kind=COLD, statements=statements)
    assert [(s.line, name, version) for p, s, name, version in created_extensions([patch])] == [
        (1, 'postgis', '3.4'), (2, 'pg_trgm', None)]


def test_decide_patch_extensions_names_what_is_missing_and_what_there_is():
    found = pf.decide_patch_extensions('primary (10.0.0.10:5432)', [
        ('patch-2300-01-0.sql', 12, 'postgis', None, []),
        ('patch-2300-01-0.sql', 13, 'pg_trgm', '9.9', ['1.5', '1.6'])])
    assert [(f['check'], f['status']) for f in found] == [('patch_extensions', pf.FAIL)] * 2
    assert found[0]['summary'] == (
        'primary (10.0.0.10:5432): patch-2300-01-0.sql line 12: extension "postgis" is not available on this server '
        '(no postgis.control in its extension directory): the window would fail on it and roll back')
    assert 'version 9.9 is not available on this server (it has 1.5, 1.6)' in found[1]['summary']
    assert 'on the primary and every standby first' in found[0]['action']
    [passed] = pf.decide_patch_extensions('primary', [], created=1)
    assert passed['status'] == pf.PASS and passed['summary'] == ('primary: every extension the pending patches '
                                                                 'create (1) is available on this server')


def test_checkpoint_is_refused():
    statements, problems, dummy = read_statements('CHECKPOINT;\nCREATE TABLE fdt_t (id int);\n', 'p.sql')
    assert [s.line for s in statements] == [2]
    assert problems == ['p.sql line 1: CHECKPOINT: it writes every dirty buffer of the server to disk, while every '
                        'client waits in the window (or the hot phase stalls), and a schema patch needs none; '
                        'remove it']
