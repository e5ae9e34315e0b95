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
    ('CREATE DATABASE x', 'CreatedbStmt cannot run in a transaction block'),
    ('ALTER SYSTEM SET work_mem = 1', 'AlterSystemStmt cannot run'),
    ('REINDEX DATABASE x', 'REINDEX SYSTEM/DATABASE'),
    ('CLUSTER', 'CLUSTER without a table'),
])
def test_statements_that_cannot_be_patched_name_file_and_line(sql, words):
    with pytest.raises(PatchSetError) as err:
        split_statements('SELECT 1;\n\n' + sql + ';\n', 'patch-2211-01-0.sql')
    assert str(err.value).startswith('patch-2211-01-0.sql line 3: ')
    assert words in str(err.value)


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


def test_empty_patch_is_cold_with_no_statements(tmp_path):
    write(tmp_path, 'patch-2211-01-0.sql', '-- nothing yet\n')
    [patch] = load_patch_set(str(tmp_path)).patches
    assert patch.kind == COLD and patch.statements == []


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


def test_plan_launchpad_rows_without_checksum_are_unverified_not_drift(three_patches):
    applied = {p.revision: None for p in three_patches.patches}
    result = plan(three_patches, applied)
    assert result.drift == []
    assert result.unverified == [p.name for p in three_patches.patches]
    assert result.pending == []


def test_format_revision_is_launchpad_spelling():
    assert patchset.format_revision((2211, 1, 0)) == '2211-01-0'
