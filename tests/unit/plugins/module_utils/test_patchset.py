"""Unit tests of the patch set: naming, ordering, classification, lines, plan."""
import hashlib

import pytest

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import patchset
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.patchset import (
    COLD, HOT, REVISION, SETTING, PatchSetError, load_patch_set, parse_patch_name, plan, refuse_drift, split_statements)


def write(directory, name, text):
    path = directory / name
    path.write_text(text, encoding='utf-8')
    return path


# -- names and order --------------------------------------------------------

@pytest.mark.parametrize('name, revision', [
    ('patch-2211-01-0.sql', (2211, 1, 0)),
    ('patch-0001-00-9.sql', (1, 0, 9)),
    ('patch-2209-99-3.sql', (2209, 99, 3)),
])
def test_patch_names_parse_as_integers(name, revision):
    assert parse_patch_name(name) == revision


@pytest.mark.parametrize('name', ['trusted.sql', 'comments.sql', 'README', 'patch-notes.txt',
                                  'patch-2211-01-0.sql.orig', 'security.cfg'])
def test_other_files_are_not_patches(name):
    assert parse_patch_name(name) is None


@pytest.mark.parametrize('name', ['patch-2211-1-0.sql', 'patch-2211-01.sql', 'patch-211-01-0.sql',
                                  'patch-2211-01-10.sql', 'patch-2211-01-0-fix.sql', 'patch-.sql'])
def test_misspelled_patch_name_is_an_error_naming_the_file(name):
    with pytest.raises(PatchSetError) as err:
        parse_patch_name(name)
    assert str(err.value).startswith(name + ':')
    assert 'patch-MMMM-mm-p.sql' in str(err.value)


def test_patches_ordered_by_integer_revision_and_other_files_listed(tmp_path):
    for name in ['patch-2211-10-0.sql', 'patch-2211-02-0.sql', 'patch-2210-99-0.sql', 'patch-2211-02-1.sql']:
        write(tmp_path, name, 'SELECT 1;\n')
    write(tmp_path, 'trusted.sql', 'SELECT 1;\n')
    write(tmp_path, 'comments.sql', "COMMENT ON TABLE x IS 'y';\n")
    (tmp_path / 'old').mkdir()
    result = load_patch_set(str(tmp_path))
    assert [p.name for p in result.patches] == [
        'patch-2210-99-0.sql', 'patch-2211-02-0.sql', 'patch-2211-02-1.sql', 'patch-2211-10-0.sql']
    assert result.ignored == [
        {'name': 'comments.sql', 'reason': 'not named patch-MMMM-mm-p.sql'},
        {'name': 'old', 'reason': 'directory'},
        {'name': 'trusted.sql', 'reason': 'not named patch-MMMM-mm-p.sql'},
    ]
    assert result.as_dict()['patches'][0]['revision'] == [2210, 99, 0]


def test_bad_name_in_directory_fails_the_whole_set(tmp_path):
    write(tmp_path, 'patch-2211-01-0.sql', 'SELECT 1;\n')
    write(tmp_path, 'patch-2211-1-0.sql', 'SELECT 1;\n')
    with pytest.raises(PatchSetError, match=r'^patch-2211-1-0\.sql: not a valid patch name'):
        load_patch_set(str(tmp_path))


def test_missing_directory_is_one_line_error(tmp_path):
    with pytest.raises(PatchSetError, match='patch directory .*nope: cannot list'):
        load_patch_set(str(tmp_path / 'nope'))


def test_sha256_is_of_the_file_bytes(tmp_path):
    text = '-- é\nALTER TABLE t ADD COLUMN c int;\n'
    write(tmp_path, 'patch-2211-01-0.sql', text)
    patch = load_patch_set(str(tmp_path)).patches[0]
    assert patch.sha256 == hashlib.sha256(text.encode('utf-8')).hexdigest()


# -- statements, lines, classification --------------------------------------

def test_statements_keep_their_start_lines():
    text = ('-- a comment; with a semicolon\n'
            'ALTER TABLE t ADD COLUMN a int;\n'
            '\n'
            "/* é */ CREATE TABLE u (\n"
            "  id int,\n"
            "  note text DEFAULT 'x;y'\n"
            ');\n'
            "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\n"
            'SELECT 1')
    statements = split_statements(text, 'p.sql')
    assert [(s.line, s.command) for s in statements] == [
        (2, 'AlterTableStmt'), (4, 'CreateStmt'), (8, 'CreateFunctionStmt'), (9, 'SelectStmt')]
    assert statements[1].sql.startswith('CREATE TABLE u (') and statements[1].sql.endswith(')')
    assert "'x;y'" in statements[1].sql
    assert statements[2].sql.endswith('LANGUAGE sql')
    assert statements[3].sql == 'SELECT 1'


@pytest.mark.parametrize('sql, kind', [
    ('CREATE INDEX CONCURRENTLY i ON t (a)', HOT),
    ('DROP INDEX CONCURRENTLY i', HOT),
    ('REINDEX INDEX CONCURRENTLY i', HOT),
    ('REINDEX TABLE CONCURRENTLY t', HOT),
    ('VACUUM t', HOT),
    ('VACUUM ANALYZE t', HOT),
    ('ALTER TABLE p DETACH PARTITION c CONCURRENTLY', HOT),
    ('CREATE INDEX i ON t (a)', COLD),
    ('DROP INDEX i', COLD),
    ('REINDEX TABLE t', COLD),
    ('ANALYZE t', COLD),
    ('ALTER TABLE t ADD COLUMN c int', COLD),
    ("ALTER TYPE e ADD VALUE 'x'", COLD),
    ('ALTER TABLE p DETACH PARTITION c', COLD),
    ('CLUSTER t USING i', COLD),
    ('SET client_min_messages = ERROR', SETTING),
    ('SET LOCAL work_mem = 1000', SETTING),
    ("INSERT INTO t VALUES (1)", COLD),
    ('INSERT INTO LaunchpadDatabaseRevision VALUES (2211, 01, 0)', REVISION),
])
def test_classification(sql, kind):
    [statement] = split_statements(sql + ';\n', 'p.sql')
    assert statement.kind == kind


@pytest.mark.parametrize('sql, words', [
    ('BEGIN', 'transaction control'),
    ('COMMIT', 'transaction control'),
    ("PREPARE TRANSACTION 'x'", 'transaction control'),
    ('CREATE DATABASE x', 'CREATE DATABASE cannot run inside a transaction block'),
    ('ALTER SYSTEM SET work_mem = 1', 'ALTER SYSTEM cannot run inside a transaction block'),
    ('REINDEX DATABASE x', 'REINDEX DATABASE cannot run inside a transaction block'),
    ('CLUSTER', 'CLUSTER cannot run inside a transaction block'),
    ('SET TRANSACTION ISOLATION LEVEL SERIALIZABLE', 'SET TRANSACTION is not allowed'),
    ('SET TRANSACTION READ ONLY', 'SET TRANSACTION is not allowed'),
])
def test_statements_that_cannot_be_patched_name_file_and_line(sql, words):
    with pytest.raises(PatchSetError) as err:
        split_statements('SELECT 1;\n\n' + sql + ';\n', 'patch-2211-01-0.sql')
    assert str(err.value).startswith('patch-2211-01-0.sql line 3: ')
    assert words in str(err.value)


@pytest.mark.parametrize('rule', patchset.NO_TRANSACTION_BLOCK, ids=lambda rule: rule.words)
def test_each_statement_postgresql_refuses_in_a_transaction_block_is_hot_or_refused(rule):
    [raw] = patchset.pglast.parse_sql(rule.example)
    assert patchset.no_transaction_block_rule(raw.stmt) is rule
    text = 'SELECT 1;\n' + rule.example + ';\n'
    if rule.live:
        assert split_statements(text, 'p.sql')[1].kind == HOT
    else:
        with pytest.raises(PatchSetError) as err:
            split_statements(text, 'p.sql')
        assert str(err.value) == 'p.sql line 2: %s cannot run inside a transaction block (the window is one); %s' % (
            rule.words, rule.advice)


@pytest.mark.parametrize('sql', [
    'REINDEX TABLE t', 'REINDEX INDEX i', 'ANALYZE t', 'CLUSTER t USING i', 'DISCARD TEMP', 'DISCARD PLANS',
    "CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p WITH (connect = false)",
    "CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p WITH (create_slot = false)",
    'ALTER SUBSCRIPTION s SET PUBLICATION p WITH (refresh = false)',
    'ALTER SUBSCRIPTION s DISABLE',
    'ALTER DATABASE d SET work_mem = 1', 'DROP INDEX i', "ALTER TYPE e ADD VALUE 'x'",
])
def test_the_same_commands_in_forms_a_transaction_block_accepts_are_cold(sql):
    [statement] = split_statements(sql + ';\n', 'p.sql')
    assert statement.kind == COLD


def test_concurrent_index_target_is_kept_for_recovery():
    [statement] = split_statements('CREATE INDEX CONCURRENTLY t_a_idx ON s.t (a);')
    assert statement.index == ('s', 't_a_idx')
    [statement] = split_statements('CREATE INDEX t_a_idx ON t (a);')
    assert statement.index is None


def test_syntax_error_names_file_and_line():
    text = 'ALTER TABLE t ADD COLUMN a int;\n\nCREATE TABLE u (\n  id int,\n  oops oops oops\n);\n'
    with pytest.raises(PatchSetError) as err:
        split_statements(text, 'patch-2211-02-0.sql')
    assert str(err.value).startswith('patch-2211-02-0.sql line 5: does not parse: syntax error')


def test_unterminated_string_names_its_line():
    with pytest.raises(PatchSetError, match=r'^p\.sql line 2: does not parse: unterminated quoted string'):
        split_statements("SELECT 1;\nSELECT 'x;\n", 'p.sql')


def test_mixed_patch_is_refused_naming_file_and_both_lines(tmp_path):
    write(tmp_path, 'patch-2211-01-0.sql',
          'ALTER TABLE t ADD COLUMN a int;\nCREATE INDEX CONCURRENTLY i ON t (a);\n')
    with pytest.raises(PatchSetError) as err:
        load_patch_set(str(tmp_path))
    message = str(err.value)
    assert message.startswith('patch-2211-01-0.sql: mixes live statements (line 2: IndexStmt)')
    assert 'line 1: AlterTableStmt' in message


def test_launchpad_hot_patch_with_its_revision_insert_is_hot(tmp_path):
    write(tmp_path, 'patch-2211-01-1.sql',
          'SET client_min_messages = ERROR;\n'
          'CREATE INDEX CONCURRENTLY i ON t (a);\nINSERT INTO LaunchpadDatabaseRevision VALUES (2211, 1, 1);\n')
    [patch] = load_patch_set(str(tmp_path)).patches
    assert patch.kind == HOT
    assert [s.kind for s in patch.statements] == [SETTING, HOT, REVISION]


@pytest.mark.parametrize('text', ['-- nothing yet\n', '', '/* a note */\n-- and another\n',
                                  'SET client_min_messages = ERROR;\n',
                                  'SET client_min_messages=ERROR;\n'
                                  'INSERT INTO LaunchpadDatabaseRevision VALUES (2211, 1, 0);\n'])
def test_patch_with_no_schema_statement_is_recorded_live_without_a_drain(tmp_path, text):
    write(tmp_path, 'patch-2211-01-0.sql', text)
    the_plan = plan(load_patch_set(str(tmp_path)), {})
    assert [p.kind for p in the_plan.pending_hot] == [HOT] and the_plan.pending_cold == []


def test_non_utf8_patch_names_the_line(tmp_path):
    (tmp_path / 'patch-2211-01-0.sql').write_bytes(b'SELECT 1;\nSELECT \xff;\n')
    with pytest.raises(PatchSetError, match=r'^patch-2211-01-0\.sql line 2: not valid UTF-8'):
        load_patch_set(str(tmp_path))


# -- plan -------------------------------------------------------------------

@pytest.fixture
def three_patches(tmp_path):
    write(tmp_path, 'patch-2211-00-1.sql', 'CREATE INDEX CONCURRENTLY i ON t (a);\n')
    write(tmp_path, 'patch-2211-01-0.sql', 'ALTER TABLE t ADD COLUMN a int;\n')
    write(tmp_path, 'patch-2211-02-0.sql', 'CREATE TABLE u (id int);\n')
    write(tmp_path, 'trusted.sql', '-- baseline\n')
    return load_patch_set(str(tmp_path))


def sha_of(patch_set, name):
    return next(p.sha256 for p in patch_set.patches if p.name == name)


def test_plan_everything_pending_on_an_empty_database(three_patches):
    result = plan(three_patches, {})
    assert [p.name for p in result.pending_hot] == ['patch-2211-00-1.sql']
    assert [p.name for p in result.pending_cold] == ['patch-2211-01-0.sql', 'patch-2211-02-0.sql']
    assert result.drift == [] and result.missing_files == [] and result.applied == []
    assert result.as_dict()['ignored'] == [{'name': 'trusted.sql', 'reason': 'not named patch-MMMM-mm-p.sql'}]


def test_plan_nothing_pending_when_all_applied_with_same_checksums(three_patches):
    applied = {p.revision: p.sha256 for p in three_patches.patches}
    result = plan(three_patches, applied)
    assert result.pending == []
    assert result.applied == [p.name for p in three_patches.patches]
    refuse_drift(result)  # no drift: no error


def test_plan_reports_drift_and_refuse_drift_names_the_file(three_patches):
    applied = {p.revision: p.sha256 for p in three_patches.patches}
    applied[(2211, 1, 0)] = 'f' * 64
    result = plan(three_patches, applied)
    assert result.drift == [{'name': 'patch-2211-01-0.sql', 'revision': '2211-01-0',
                             'applied_sha256': 'f' * 64,
                             'file_sha256': sha_of(three_patches, 'patch-2211-01-0.sql')}]
    with pytest.raises(PatchSetError, match=r'^patch-2211-01-0\.sql: changed since it was applied'):
        refuse_drift(result)


def test_plan_reports_revisions_without_a_file(three_patches):
    applied = {(2210, 5, 0): 'a' * 64, (2211, 0, 1): sha_of(three_patches, 'patch-2211-00-1.sql')}
    result = plan(three_patches, applied)
    assert result.missing_files == [(2210, 5, 0)]
    assert result.as_dict()['missing_files'] == ['2210-05-0']
    assert [p.name for p in result.pending] == ['patch-2211-01-0.sql', 'patch-2211-02-0.sql']


def test_a_pending_file_with_the_checksum_of_a_revision_with_no_file_is_named_renamed(three_patches):
    # tryit9 c03: patch-2211-01-0.sql applied as 2210-09-0, then renamed; 2210-05-0's checksum is no file's.
    applied = {(2210, 9, 0): sha_of(three_patches, 'patch-2211-01-0.sql'), (2210, 5, 0): 'a' * 64,
               (2211, 0, 1): sha_of(three_patches, 'patch-2211-00-1.sql')}
    result = plan(three_patches, applied)
    assert result.missing_files == [(2210, 5, 0), (2210, 9, 0)]
    assert result.renamed == [{'name': 'patch-2211-01-0.sql', 'applied_revision': '2210-09-0',
                              'applied_name': 'patch-2210-09-0.sql'}]
    assert result.as_dict()['renamed'] == result.renamed
    # A Launchpad row keeps no checksum: nothing to compare, nothing said.
    assert plan(three_patches, {(2210, 9, 0): None}).renamed == []


def test_plan_launchpad_rows_without_checksum_are_unverified_not_drift(three_patches):
    applied = {p.revision: None for p in three_patches.patches}
    result = plan(three_patches, applied)
    assert result.drift == []
    assert result.unverified == [p.name for p in three_patches.patches]
    assert result.pending == []


def test_format_revision_is_launchpad_spelling():
    assert patchset.format_revision((2211, 1, 0)) == '2211-01-0'


# -- what the window would reject, seen before it opens --------------------------

def pending_plan(tmp_path, patches, revision_table=None, procedure_source=None, applied=None):
    for name, text in patches.items():
        write(tmp_path, name, text)
    return plan(load_patch_set(str(tmp_path)), applied or {}, revision_table=revision_table,
                procedure_source=procedure_source)


@pytest.mark.parametrize('body, line', [
    ('BEGIN\n  COMMIT;\nEND', 4),
    ('BEGIN\n  IF true THEN\n    ROLLBACK;\n  END IF;\nEND', 5),
    ('DECLARE n int;\nBEGIN\n  FOR n IN 1..3 LOOP\n    INSERT INTO t VALUES (n);\n    COMMIT;\n  END LOOP;\nEND', 7),
    ('BEGIN\n  BEGIN\n    COMMIT;\n  EXCEPTION WHEN others THEN NULL;\n  END;\nEND', 5),
])
def test_transaction_control_in_a_do_block_is_refused_naming_file_and_lines(tmp_path, body, line):
    the_plan = pending_plan(tmp_path, {'patch-2211-01-0.sql': 'SELECT 1;\nDO $$\n%s\n$$;\n' % body})
    assert len(the_plan.refused) == 1
    assert the_plan.refused[0].startswith('patch-2211-01-0.sql line 2: DO block reaches transaction control '
                                          '(patch-2211-01-0.sql line %d: ' % line)
    with pytest.raises(PatchSetError, match='invalid transaction termination'):
        refuse_drift(the_plan)


def test_procedure_created_in_an_earlier_patch_that_commits_is_refused_where_it_is_called(tmp_path):
    the_plan = pending_plan(tmp_path, {
        'patch-2211-01-0.sql': ('CREATE PROCEDURE batch_fill() LANGUAGE plpgsql AS $$\nBEGIN\n'
                                '  UPDATE t SET a = 1;\n  COMMIT;\nEND $$;\n'),
        'patch-2211-02-0.sql': 'CREATE PROCEDURE outer_step() LANGUAGE plpgsql AS $$ BEGIN CALL batch_fill(); END $$;\n',
        'patch-2211-03-0.sql': 'SELECT 1;\nCALL outer_step();\n',
        'patch-2211-04-0.sql': 'DO $$ BEGIN CALL s.batch_fill(); END $$;\n',
    })
    assert the_plan.refused == [
        'patch-2211-03-0.sql line 2: CALL outer_step reaches transaction control (patch-2211-01-0.sql line 4: '
        'COMMIT), which PostgreSQL refuses inside the window\'s transaction ("invalid transaction termination"); '
        'run it outside the patch set',
        'patch-2211-04-0.sql line 1: DO block reaches transaction control (patch-2211-01-0.sql line 4: COMMIT), '
        'which PostgreSQL refuses inside the window\'s transaction ("invalid transaction termination"); '
        'remove the COMMIT/ROLLBACK: the tool commits once',
    ]


def test_procedure_in_the_database_that_commits_is_read_through_procedure_source(tmp_path):
    sources = {'nightly': '\nBEGIN\n  DELETE FROM t;\n  COMMIT;\nEND\n', 'harmless': 'BEGIN PERFORM 1; END'}
    the_plan = pending_plan(tmp_path, {'patch-2211-01-0.sql': 'CALL harmless();\nCALL nightly();\nCALL gone();\n'},
                            procedure_source=sources.get)
    assert the_plan.refused == [
        'patch-2211-01-0.sql line 2: CALL nightly reaches transaction control (procedure nightly (in the database) '
        'line 4: COMMIT), which PostgreSQL refuses inside the window\'s transaction ("invalid transaction '
        'termination"); run it outside the patch set']


@pytest.mark.parametrize('patches', [
    {'patch-2211-01-0.sql': 'DO $$ BEGIN PERFORM 1; END $$;\nCALL p();\n'},
    {'patch-2211-01-0.sql': "DO LANGUAGE plpython3u $$ plpy.execute('COMMIT') $$;\n"},
    {'patch-2211-01-0.sql': 'CREATE PROCEDURE p() LANGUAGE plpgsql AS $$ BEGIN COMMIT; END $$;\n'},
    {'patch-2211-01-0.sql': 'CREATE PROCEDURE p() LANGUAGE sql AS $$ SELECT 1 $$;\nCALL p();\n'},
])
def test_do_blocks_and_procedures_without_transaction_control_pass(tmp_path, patches):
    assert pending_plan(tmp_path, patches).refused == []


def test_enum_value_added_and_used_in_the_same_window_is_refused_naming_both_lines(tmp_path):
    the_plan = pending_plan(tmp_path, {
        'patch-2211-01-0.sql': "SELECT 1;\nALTER TYPE status ADD VALUE 'four';\n",
        'patch-2211-02-0.sql': "ALTER TABLE clients ALTER COLUMN status SET DEFAULT 'four';\n",
    })
    assert the_plan.refused == [
        "patch-2211-02-0.sql line 1: uses the enum value 'four' that patch-2211-01-0.sql line 2 adds (ALTER TYPE "
        'status ADD VALUE) in the same transaction; PostgreSQL refuses a new enum value until it is committed '
        '("unsafe use of new value"): deploy the ADD VALUE first, in a deploy of its own']


@pytest.mark.parametrize('use', [
    "UPDATE clients SET status = 'four' WHERE id = 1",
    "INSERT INTO clients (status) VALUES ('four')",
    "SELECT 'four'::status",
    "CREATE INDEX clients_four ON clients (id) WHERE status = 'four'",
    # A LANGUAGE sql body is parsed and its constants cast when the function is created; a DO block runs.
    "CREATE FUNCTION is_four(s status) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT s = 'four' $$",
    "CREATE PROCEDURE set_four() LANGUAGE sql AS $$ UPDATE clients SET status = 'four' $$",
    "DO $$ BEGIN UPDATE clients SET status = 'four' WHERE id = 1; END $$",
])
def test_every_later_use_of_a_new_enum_value_in_the_window_is_refused(tmp_path, use):
    the_plan = pending_plan(tmp_path, {'patch-2211-01-0.sql': "ALTER TYPE status ADD VALUE 'four';\n%s;\n" % use})
    assert len(the_plan.refused) == 1 and the_plan.refused[0].startswith('patch-2211-01-0.sql line 2: uses the '
                                                                         "enum value 'four'")


@pytest.mark.parametrize('patches', [
    # The type is new in the same transaction: PostgreSQL accepts its new values.
    {'patch-2211-01-0.sql': "CREATE TYPE status AS ENUM ('one');\nALTER TYPE status ADD VALUE 'four';\n"
                            "CREATE TABLE c (s status DEFAULT 'four');\n"},
    # Added, not used.
    {'patch-2211-01-0.sql': "ALTER TYPE status ADD VALUE 'four';\nALTER TABLE c ADD COLUMN note text;\n"},
    # A rename is not an added value.
    {'patch-2211-01-0.sql': "ALTER TYPE status RENAME VALUE 'four' TO 'five';\nUPDATE c SET n = 'four';\n"},
    # A PL/pgSQL function's body is not run (nor its constants cast) when it is created.
    {'patch-2211-01-0.sql': "ALTER TYPE status ADD VALUE 'four';\nCREATE FUNCTION is_four(s status) RETURNS boolean "
                            "LANGUAGE plpgsql AS $$ BEGIN RETURN s = 'four'; END $$;\n"},
])
def test_enum_changes_the_window_accepts_pass(tmp_path, patches):
    assert pending_plan(tmp_path, patches).refused == []


def test_launchpad_revision_row_that_is_not_the_file_name_is_refused_hot_or_cold(tmp_path):
    the_plan = pending_plan(tmp_path, {
        'patch-2211-01-0.sql': 'CREATE TABLE a (id int);\nINSERT INTO LaunchpadDatabaseRevision VALUES (2211, 1, 0);\n',
        'patch-2211-02-0.sql': 'CREATE TABLE b (id int);\nINSERT INTO LaunchpadDatabaseRevision VALUES (2211, 1, 0);\n',
        # Named columns in another order: this row is right.
        'patch-2211-03-1.sql': ('CREATE INDEX CONCURRENTLY i ON a (id);\n'
                                'INSERT INTO LaunchpadDatabaseRevision (major, patch, minor) VALUES (2211, 1, 3);\n'),
        'patch-2211-04-0.sql': 'CREATE TABLE c (id int);\nINSERT INTO LaunchpadDatabaseRevision VALUES (2211, 4, 0);\n',
        'patch-2211-05-0.sql': 'CREATE TABLE d (id int);\n',
    }, revision_table='LaunchpadDatabaseRevision')
    assert the_plan.refused == [
        'patch-2211-02-0.sql line 2: inserts LaunchpadDatabaseRevision row 2211-01-0, but the file is revision '
        '2211-02-0; make it INSERT INTO LaunchpadDatabaseRevision VALUES (2211, 2, 0)',
        'patch-2211-05-0.sql line 1: writes no LaunchpadDatabaseRevision row; add: INSERT INTO '
        'LaunchpadDatabaseRevision VALUES (2211, 5, 0);',
    ]
    # Outside the Launchpad layout a patch need not write a row (but a wrong one is still wrong).
    assert [r.split(':')[0] for r in pending_plan(tmp_path, {}).refused] == ['patch-2211-02-0.sql line 2']


def test_launchpad_revision_row_in_a_hot_patch_with_swapped_columns_is_refused(tmp_path):
    the_plan = pending_plan(tmp_path, {
        'patch-2211-03-1.sql': ('CREATE INDEX CONCURRENTLY i ON a (id);\n'
                                'INSERT INTO LaunchpadDatabaseRevision (major, patch, minor) VALUES (2211, 3, 1);\n'),
    }, revision_table='launchpaddatabaserevision')
    assert the_plan.refused == [
        'patch-2211-03-1.sql line 2: inserts LaunchpadDatabaseRevision row 2211-01-3, but the file is revision '
        '2211-03-1; make it INSERT INTO LaunchpadDatabaseRevision VALUES (2211, 3, 1)']
    assert the_plan.pending_hot[0].name == 'patch-2211-03-1.sql'


# -- files: BOM, line endings ------------------------------------------------------

def test_utf8_bom_is_stripped_before_parsing(tmp_path):
    (tmp_path / 'patch-2211-01-0.sql').write_bytes(b'\xef\xbb\xbfCREATE TABLE t (id int);\n')
    [patch] = load_patch_set(str(tmp_path)).patches
    assert [s.sql for s in patch.statements] == ['CREATE TABLE t (id int)']
    assert patch.sha256 == hashlib.sha256(b'CREATE TABLE t (id int);\n').hexdigest()


@pytest.mark.parametrize('applied_as', [
    b'-- x\r\nCREATE TABLE t (id int);\r\n',                 # applied from a CRLF checkout (raw bytes recorded)
    b'-- x\nCREATE TABLE t (id int);\n',                     # applied from an LF checkout
    b'\xef\xbb\xbf-- x\r\nCREATE TABLE t (id int);\r\n',     # applied with a BOM
])
@pytest.mark.parametrize('checked_out_as', [
    b'-- x\nCREATE TABLE t (id int);\n', b'-- x\r\nCREATE TABLE t (id int);\r\n',
    b'\xef\xbb\xbf-- x\nCREATE TABLE t (id int);\n',
])
def test_a_patch_checked_out_with_other_line_endings_or_a_bom_is_not_drift(tmp_path, applied_as, checked_out_as):
    (tmp_path / 'patch-2211-01-0.sql').write_bytes(checked_out_as)
    the_plan = plan(load_patch_set(str(tmp_path)), {(2211, 1, 0): hashlib.sha256(applied_as).hexdigest()})
    assert the_plan.drift == [] and the_plan.applied == ['patch-2211-01-0.sql']


def test_crlf_statements_are_sent_with_lf_and_keep_their_lines(tmp_path):
    (tmp_path / 'patch-2211-01-0.sql').write_bytes(b"-- x\r\nCOMMENT ON TABLE t IS 'a\r\nb';\r\nSELECT 1;\r\n")
    [patch] = load_patch_set(str(tmp_path)).patches
    assert [(s.line, s.sql) for s in patch.statements] == [(2, "COMMENT ON TABLE t IS 'a\nb'"), (4, 'SELECT 1')]


def test_a_real_edit_is_still_drift(tmp_path):
    write(tmp_path, 'patch-2211-01-0.sql', 'CREATE TABLE t (id bigint);\n')
    recorded = hashlib.sha256(b'CREATE TABLE t (id int);\r\n').hexdigest()
    assert len(plan(load_patch_set(str(tmp_path)), {(2211, 1, 0): recorded}).drift) == 1


# -- order: hot and cold keep their numbered order ---------------------------------

def test_hot_patch_numbered_after_the_cold_patch_it_needs_runs_after_the_window(tmp_path):
    the_plan = pending_plan(tmp_path, {
        'patch-2211-01-0.sql': 'CREATE TABLE users (id int, email text);\n',
        'patch-2211-02-0.sql': 'CREATE UNIQUE INDEX CONCURRENTLY users_email_key ON users (email);\n',
    })
    assert the_plan.refused == []
    assert the_plan.phases() == [('cold', ['patch-2211-01-0.sql']),
                                 ('post-window hot', ['patch-2211-02-0.sql'])]
    assert [p.name for p in the_plan.pending] == ['patch-2211-01-0.sql', 'patch-2211-02-0.sql']


def test_phases_follow_the_numbered_order_and_a_cold_patch_after_a_late_hot_one_waits(tmp_path):
    the_plan = pending_plan(tmp_path, {
        'patch-2211-01-1.sql': 'CREATE INDEX CONCURRENTLY a_idx ON a (id);\n',
        'patch-2211-02-0.sql': 'ALTER TABLE a ADD COLUMN b int;\n',
        'patch-2211-03-0.sql': 'ALTER TABLE a ADD COLUMN c int;\n',
        'patch-2211-04-1.sql': 'CREATE INDEX CONCURRENTLY a_b_idx ON a (b);\n',
        'patch-2211-05-0.sql': 'ALTER TABLE a ADD COLUMN d int;\n',
        'patch-2211-06-1.sql': 'CREATE INDEX CONCURRENTLY a_d_idx ON a (d);\n',
    })
    assert list(the_plan.phases()) == [
        ('hot', ['patch-2211-01-1.sql']),
        ('cold', ['patch-2211-02-0.sql', 'patch-2211-03-0.sql']),
        ('post-window hot', ['patch-2211-04-1.sql']),
        ('next deploy', ['patch-2211-05-0.sql', 'patch-2211-06-1.sql'])]
    assert the_plan.as_dict()['phases'][3] == {'phase': 'next deploy',
                                               'patches': ['patch-2211-05-0.sql', 'patch-2211-06-1.sql']}
    # Once the window and the hot patch after it are applied, the next deploy takes the rest.
    applied = dict((p.revision, p.sha256) for p in the_plan.pending)
    again = plan(load_patch_set(str(tmp_path)), applied)
    assert again.phases() == [('cold', ['patch-2211-05-0.sql']),
                              ('post-window hot', ['patch-2211-06-1.sql'])]


def test_enum_value_added_in_the_window_and_used_by_the_next_deploy_is_not_refused(tmp_path):
    the_plan = pending_plan(tmp_path, {
        'patch-2211-01-0.sql': "ALTER TYPE status ADD VALUE 'four';\n",
        'patch-2211-02-1.sql': 'CREATE INDEX CONCURRENTLY c_idx ON clients (status);\n',
        'patch-2211-03-0.sql': "ALTER TABLE clients ALTER COLUMN status SET DEFAULT 'four';\n",
    })
    assert the_plan.refused == [] and [p.name for p in the_plan.deferred] == ['patch-2211-03-0.sql']


@pytest.mark.parametrize('creates', ['CREATE TABLE users (id int, email text)',
                                     'CREATE TABLE users AS SELECT 1 AS id, text \'x\' AS email'])
def test_hot_patch_numbered_before_the_cold_patch_creating_its_table_is_refused_naming_both(tmp_path, creates):
    the_plan = pending_plan(tmp_path, {
        'patch-2211-01-1.sql': ('SET client_min_messages = ERROR;\n'
                                'CREATE INDEX CONCURRENTLY users_email_idx ON users (email);\n'),
        'patch-2211-02-0.sql': creates + ';\n',
    })
    assert the_plan.refused == [
        'patch-2211-01-1.sql line 2: uses users, which patch-2211-02-0.sql line 1 creates, but patch-2211-01-1.sql '
        'is numbered before it and runs first (hot and cold patches keep their numbered order); renumber '
        'patch-2211-01-1.sql after patch-2211-02-0.sql']


def test_a_patch_with_no_schema_statement_between_cold_patches_stays_in_the_window(tmp_path):
    the_plan = pending_plan(tmp_path, {
        'patch-2211-01-0.sql': 'CREATE TABLE a (id int);\n',
        'patch-2211-02-0.sql': '-- reserved\n',
        'patch-2211-03-0.sql': "SET datestyle = 'SQL, DMY';\n",
        'patch-2211-04-0.sql': 'CREATE TABLE b (id int);\n',
        'patch-2211-05-1.sql': '-- nothing either\n',
    })
    assert the_plan.phases() == [
        ('cold', ['patch-2211-01-0.sql', 'patch-2211-02-0.sql', 'patch-2211-03-0.sql',
                  'patch-2211-04-0.sql', 'patch-2211-05-1.sql'])]
    assert [p.kind for p in the_plan.pending_cold] == [COLD] * 5


@pytest.mark.parametrize('sql, words', [
    ('DO $$ BEGIN CREATE INDEX CONCURRENTLY i ON t (a); END $$;', 'CREATE INDEX CONCURRENTLY'),
    ('DO $$ BEGIN IF true THEN ALTER TABLE p DETACH PARTITION c CONCURRENTLY; END IF; END $$;',
     'ALTER TABLE ... DETACH CONCURRENTLY'),
    ("DO $$ BEGIN EXECUTE 'VACUUM t'; END $$;", 'VACUUM'),
])
def test_a_do_block_running_what_cannot_run_in_a_transaction_block_is_refused(sql, words):
    """PL/pgSQL runs every statement inside a transaction (pg_partman issue 387: DETACH PARTITION CONCURRENTLY
    from a function): it fails wherever the DO block runs - refused in one line, naming it, before anything runs."""
    with pytest.raises(patchset.PatchSetError) as refused:
        patchset.split_statements(sql)
    assert str(refused.value) == ('<patch> line 1: a DO block runs %s, which cannot run inside a transaction block, '
                                  'and a DO block is one wherever it runs; make it a statement of its own in a hot '
                                  'patch' % words)


@pytest.mark.parametrize('sql', [
    'DO $$ BEGIN PERFORM 1; END $$;',
    # SQL it builds is not followed; FINALIZE (completing a canceled DETACH CONCURRENTLY) runs in a transaction block.
    "DO $$ BEGIN EXECUTE format('VACUUM %I', 't'); END $$;",
    'ALTER TABLE p DETACH PARTITION c FINALIZE;',
])
def test_what_runs_in_a_transaction_block_stays_a_cold_statement(sql):
    assert patchset.split_statements(sql)[0].kind == patchset.COLD
