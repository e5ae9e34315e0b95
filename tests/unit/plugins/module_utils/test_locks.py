"""Table-level locks of the cold patches and their conflicts (no database): the
modes each statement takes on which relations, PostgreSQL's conflict table, and
which holders' locks conflict."""
import pytest

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import locks
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.patchset import load_patch_set

AE, SUE, SRE = locks.ACCESS_EXCLUSIVE, locks.SHARE_UPDATE_EXCLUSIVE, locks.SHARE_ROW_EXCLUSIVE


def statement_locks(sql, tmp_path):
    (tmp_path / 'patch-0001-01-0.sql').write_text(sql)
    patch = load_patch_set(str(tmp_path)).patches[0]
    return [lock for statement in patch.statements for lock in locks.statement_locks(statement.node)]


@pytest.mark.parametrize('sql, expected', [
    ('ALTER TABLE fdt_item ADD COLUMN author text;', [((None, 'fdt_item'), AE)]),
    ('ALTER TABLE public.Fdt_Item ALTER COLUMN body SET STATISTICS 200;', [(('public', 'fdt_item'), SUE)]),
    ('ALTER TABLE a VALIDATE CONSTRAINT c;', [((None, 'a'), SUE)]),
    ('ALTER TABLE a SET (fillfactor = 70), ADD COLUMN x int;', [((None, 'a'), AE)]),
    ('ALTER TABLE a DISABLE TRIGGER t;', [((None, 'a'), SRE)]),
    ('ALTER TABLE a ADD CONSTRAINT f FOREIGN KEY (b) REFERENCES s.b (id) NOT VALID;',
     [((None, 'a'), SRE), (('s', 'b'), SRE)]),
    ('CREATE TABLE t (id int REFERENCES fdt_item (id), b int, FOREIGN KEY (b) REFERENCES other (id));',
     [((None, 'fdt_item'), SRE), ((None, 'other'), SRE)]),
    ('CREATE TABLE p1 PARTITION OF p FOR VALUES IN (1);', [((None, 'p'), AE)]),
    ('CREATE INDEX i ON a (id);', [((None, 'a'), locks.SHARE)]),
    ('DROP TABLE a, s.b;', [((None, 'a'), AE), (('s', 'b'), AE)]),
    ('DROP INDEX s.i;', [(('s', 'i'), AE)]),
    ('DROP FUNCTION f();', []),
    ('ALTER TABLE a RENAME COLUMN x TO y;', [((None, 'a'), AE)]),
    ('ALTER INDEX i RENAME TO j;', [((None, 'i'), SUE)]),
    ('TRUNCATE a, b;', [((None, 'a'), AE), ((None, 'b'), AE)]),
    ('LOCK TABLE a IN SHARE MODE;', [((None, 'a'), locks.SHARE)]),
    ('LOCK TABLE a;', [((None, 'a'), AE)]),
    ('COMMENT ON TABLE fdt_item IS $$x$$;', [((None, 'fdt_item'), SUE)]),
    ('COMMENT ON COLUMN s.fdt_item.author IS $$x$$;', [(('s', 'fdt_item'), SUE)]),
    ('COMMENT ON FUNCTION f() IS $$x$$;', []),
    ('CREATE TRIGGER t AFTER INSERT ON a FOR EACH ROW EXECUTE FUNCTION f();', [((None, 'a'), SRE)]),
    ('UPDATE a SET x = 1;', [((None, 'a'), locks.ROW_EXCLUSIVE)]),
    ('GRANT SELECT ON a TO b;', []),
])
def test_each_statement_takes_its_documented_lock(sql, expected, tmp_path):
    assert statement_locks(sql, tmp_path) == expected


def test_conflict_table_is_postgresqls_and_symmetric():
    # Rows of the documentation's "Conflicting Lock Modes".
    assert locks.conflicts(locks.ACCESS_SHARE, AE) and not locks.conflicts(locks.ACCESS_SHARE, locks.EXCLUSIVE)
    assert locks.conflicts(locks.ROW_EXCLUSIVE, locks.SHARE) and not locks.conflicts(locks.ROW_EXCLUSIVE, SUE)
    assert locks.conflicts(SUE, SUE) and not locks.conflicts(SUE, locks.ROW_EXCLUSIVE)
    assert not locks.conflicts(locks.SHARE, locks.SHARE) and locks.conflicts(SRE, SRE)
    assert not locks.conflicts(locks.ROW_SHARE, SRE) and locks.conflicts(locks.ROW_SHARE, locks.EXCLUSIVE)
    assert all(locks.conflicts(mode, AE) for mode in locks.MODES)
    for first in locks.MODES:
        for second in locks.MODES:
            assert locks.conflicts(first, second) == locks.conflicts(second, first), (first, second)


def test_pg_locks_mode_names_become_the_documentations():
    assert locks.mode_name('AccessExclusiveLock') == AE
    assert locks.mode_name('ShareUpdateExclusiveLock') == SUE
    assert locks.mode_name('RowExclusiveLock') == locks.ROW_EXCLUSIVE
    assert locks.mode_name('SIReadLock') is None and locks.mode_name(None) is None
    assert locks.mode_name(AE) == AE


def test_required_locks_keep_the_strongest_per_relation_from_cold_statements_only(tmp_path):
    (tmp_path / 'patch-0001-01-0.sql').write_text('CREATE INDEX CONCURRENTLY i ON fdt_item (id);')
    (tmp_path / 'patch-0001-02-0.sql').write_text(
        'COMMENT ON TABLE fdt_item IS $$x$$;\n\nALTER TABLE fdt_item ADD COLUMN note text;\n'
        'CREATE TABLE t (id int REFERENCES other (id));')
    patches = load_patch_set(str(tmp_path)).patches
    required = locks.required_locks(patches)
    assert required == [
        {'relation': (None, 'fdt_item'), 'mode': AE, 'patch': 'patch-0001-02-0.sql', 'line': 3},
        {'relation': (None, 'other'), 'mode': SRE, 'patch': 'patch-0001-02-0.sql', 'line': 4}]


def test_names_are_quoted_as_the_parser_folded_them():
    assert locks.quoted((None, 'fdt_item')) == '"fdt_item"'
    assert locks.quoted(('My', 'we"ird')) == '"My"."we""ird"'
    assert locks.relation_text(('s', 't')) == 's.t' and locks.relation_text((None, 't')) == 't'


def test_only_conflicting_holders_are_kept():
    required = [{'relation': (None, 'a'), 'mode': AE, 'patch': 'p', 'line': 1},
                {'relation': (None, 'b'), 'mode': SUE, 'patch': 'p', 'line': 2}]
    rows = [{'target': 0, 'pid': 1, 'mode': 'AccessShareLock', 'granted': True},
            {'target': 1, 'pid': 2, 'mode': 'RowExclusiveLock', 'granted': True},
            {'target': 1, 'pid': 3, 'mode': 'ShareLock', 'granted': False},
            {'target': 7, 'pid': 4, 'mode': 'AccessExclusiveLock', 'granted': True}]
    kept = locks.conflicting(rows, required)
    assert [(r['pid'], r['mode'], r['wanted']['mode']) for r in kept] == [
        (1, locks.ACCESS_SHARE, AE), (3, locks.SHARE, SUE)]
