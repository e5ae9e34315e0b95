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
    ('CREATE TABLE c () INHERITS (s.p, q);', [(('s', 'p'), SUE), ((None, 'q'), SUE)]),
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
    # The partition attached or detached: ACCESS EXCLUSIVE (a table being attached is no partition yet).
    ('ALTER TABLE p ATTACH PARTITION s.p2 FOR VALUES IN (2);', [((None, 'p'), SUE), (('s', 'p2'), AE)]),
    ('ALTER TABLE p DETACH PARTITION p1;', [((None, 'p'), AE), ((None, 'p1'), AE)]),
    ('ALTER TABLE p DETACH PARTITION p1 FINALIZE;', [((None, 'p'), SUE), ((None, 'p1'), AE)]),
    # REFRESH MATERIALIZED VIEW CONCURRENTLY runs in a transaction block (a cold statement): EXCLUSIVE, readers go on.
    ('REFRESH MATERIALIZED VIEW s.mv;', [(('s', 'mv'), AE)]),
    ('REFRESH MATERIALIZED VIEW CONCURRENTLY mv;', [((None, 'mv'), locks.EXCLUSIVE)]),
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


def patch_paths(sql, tmp_path):
    (tmp_path / 'patch-0001-01-0.sql').write_text(sql)
    patch = load_patch_set(str(tmp_path)).patches[0]
    return locks.search_paths(patch.statements)


@pytest.mark.parametrize('sql, expected', [
    # tryit6 defect 4: the patch's own SET, then an unqualified name.
    ('SET search_path = tryit, public;\nALTER TABLE t ADD COLUMN z int;', [None, ('tryit', 'public')]),
    ('SET LOCAL search_path TO "My S", "$user";\nALTER TABLE t ADD z int;', [None, ('My S', '$user')]),
    # One quoted string is ONE schema name (GUC_LIST_QUOTE), however many commas it has.
    ("SET search_path TO 'a,b';\nALTER TABLE t ADD z int;", [None, ('a,b',)]),
    ("SELECT set_config('search_path', 'tryit, \"Pub\"', false);\nALTER TABLE t ADD z int;",
     [None, ('tryit', 'Pub')]),
    ("SELECT pg_catalog.set_config('search_path', 'Tryit', true);\nALTER TABLE t ADD z int;", [None, ('tryit',)]),
    # A value the patch computes: any schema.
    ("SELECT set_config('search_path', current_setting('x.y'), false);\nALTER TABLE t ADD z int;",
     [None, locks.ANY_SCHEMA]),
    ('SET search_path = tryit;\nRESET search_path;\nALTER TABLE t ADD z int;', [None, ('tryit',), None]),
    ('SET search_path = tryit;\nSET search_path TO DEFAULT;\nALTER TABLE t ADD z int;', [None, ('tryit',), None]),
    ('SET search_path = tryit;\nRESET ALL;\nALTER TABLE t ADD z int;', [None, ('tryit',), None]),
    ("SELECT set_config('application_name', 'x', false);\nALTER TABLE t ADD z int;", [None, None]),
    # SET ROLE makes "$user" that role's schema.
    ('SET ROLE owner;\nSET search_path = "$user", public;\nALTER TABLE t ADD z int;\nRESET ROLE;\nALTER TABLE t ADD y int;',
     [None, None, ('owner', 'public'), ('owner', 'public'), ('$user', 'public')]),
])
def test_each_statement_runs_under_the_search_path_its_patch_set(sql, expected, tmp_path):
    assert patch_paths(sql, tmp_path) == expected


def test_search_path_values_split_as_postgresql_splits_them():
    assert locks.split_identifiers(' a ,"B c", $user,"x""y"') == ('a', 'B c', '$user', 'x"y')
    assert locks.split_identifiers('') == ()
    assert locks.split_identifiers('a b') is None and locks.split_identifiers('"a') is None


def test_every_patch_starts_with_the_deploy_sessions_search_path(tmp_path):
    """The window resets the session after each patch (RESET ALL): a SET of one patch does not
    reach the next; unqualified names under a patch's path are keys of their own."""
    (tmp_path / 'patch-0001-01-0.sql').write_text('SET search_path = tryit, public;\nALTER TABLE t ADD z int;')
    (tmp_path / 'patch-0001-02-0.sql').write_text('ALTER TABLE t ADD y int;\nALTER TABLE s.t ADD y int;')
    required = locks.required_locks(load_patch_set(str(tmp_path)).patches)
    assert [r['relation'] for r in required] == [(None, 't', ('tryit', 'public')), (None, 't'), ('s', 't')]
    assert [locks.relation_text(r['relation']) for r in required] == [
        't (search_path tryit, public)', 't', 's.t']
    targets, schemas, names, recurse, defaults = locks.lookup(required, 'fdt_deploy')
    assert list(zip(targets, schemas, names)) == [
        (1, 'pg_catalog', 't'), (1, 'tryit', 't'), (1, 'public', 't'), (2, None, '"t"'), (3, 's', 't')]
    assert all(recurse) and not any(defaults)
    any_schema = [{'relation': (None, 't', locks.ANY_SCHEMA), 'mode': AE},
                  {'relation': (None, 't', ('$user', 'pg_catalog')), 'mode': AE, 'only': True}]
    assert list(zip(*locks.lookup(any_schema, 'fdt_deploy'))) == [
        (1, '', 't', True, False), (2, 'fdt_deploy', 't', False, False), (2, 'pg_catalog', 't', False, False)]


def test_what_each_live_statement_waits_out(tmp_path):
    """CREATE INDEX CONCURRENTLY waits for its table's lockers conflicting with SHARE and for every
    older snapshot; REINDEX CONCURRENTLY's swap for every locker and the snapshots; DROP INDEX
    CONCURRENTLY for every locker only. Other live statements (VACUUM) are not modelled here."""
    (tmp_path / 'patch-0001-01-1.sql').write_text(
        'SET search_path = s1;\nCREATE INDEX CONCURRENTLY i ON t (id);\nREINDEX INDEX CONCURRENTLY j;\n'
        'DROP INDEX CONCURRENTLY s.k;\nVACUUM t;')
    lockers, snapshots = locks.hot_waits(load_patch_set(str(tmp_path)).patches)
    assert [(w['relation'], w['mode'], w['line'], w['words']) for w in lockers] == [
        ((None, 't', ('s1',)), locks.SHARE, 2, 'CREATE INDEX CONCURRENTLY'),
        ((None, 'j', ('s1',)), AE, 3, 'REINDEX CONCURRENTLY'),
        (('s', 'k'), AE, 4, 'DROP INDEX CONCURRENTLY')]
    assert [(w['line'], w['words']) for w in snapshots] == [(2, 'CREATE INDEX CONCURRENTLY'),
                                                            (3, 'REINDEX CONCURRENTLY')]
    # A writer (ROW EXCLUSIVE) holds a CREATE INDEX CONCURRENTLY up; a reader (ACCESS SHARE) does not.
    rows = [{'target': 0, 'mode': 'RowExclusiveLock', 'pid': 1}, {'target': 0, 'mode': 'AccessShareLock', 'pid': 2}]
    assert [r['pid'] for r in locks.conflicting(rows, lockers)] == [1]


# Field gaps: where a patch sets the search_path and where it only seems to. Each case: the patch, then the
# path of each statement in the window (cold) and why the path after a statement cannot be known.
UNKNOWN_DYNAMIC = 'a DO block building SQL that names search_path (dynamic SQL: EXECUTE)'
UNKNOWN_NESTED = 'a DO block setting search_path inside IF, LOOP or an EXCEPTION block'


@pytest.mark.parametrize('sql, paths, unknown', [
    # A DO block's own SET / set_config at the top level of its body: followed, like the patch's own.
    ("DO $$ BEGIN PERFORM set_config('search_path', 'app', true); END $$;\nALTER TABLE t ADD z int;",
     [None, ('app',)], [None, None]),
    ('DO $$ BEGIN SET search_path = app, public; END $$;\nALTER TABLE t ADD z int;',
     [None, ('app', 'public')], [None, None]),
    # ... reading it is no change; a DO block not naming it changes nothing (code it calls is not followed).
    ("DO $$ BEGIN RAISE NOTICE '%', current_setting('search_path'); END $$;\nALTER TABLE t ADD z int;",
     [None, None], [None, None]),
    # Dynamic SQL (EXECUTE, SQL text kept in a variable), a SET in IF or in a block with EXCEPTION (undone when
    # it raises), another language: only running it would tell - every schema.
    ("DO $$ BEGIN EXECUTE 'SET search_path TO app'; END $$;\nALTER TABLE t ADD z int;",
     [None, locks.ANY_SCHEMA], [UNKNOWN_DYNAMIC, None]),
    ("DO $$ DECLARE s text := 'SET search_path = app'; BEGIN EXECUTE s; END $$;\nALTER TABLE t ADD z int;",
     [None, locks.ANY_SCHEMA], [UNKNOWN_DYNAMIC, None]),
    ("DO $$ BEGIN EXECUTE format('SET search_path = %I', 'app'); END $$;\nALTER TABLE t ADD z int;",
     [None, locks.ANY_SCHEMA], [UNKNOWN_DYNAMIC, None]),
    ('DO $$ BEGIN IF now() > now() THEN SET search_path = app; END IF; END $$;\nALTER TABLE t ADD z int;',
     [None, locks.ANY_SCHEMA], [UNKNOWN_NESTED, None]),
    ('DO $$ BEGIN SET search_path = app; EXCEPTION WHEN others THEN NULL; END $$;\nALTER TABLE t ADD z int;',
     [None, locks.ANY_SCHEMA], [UNKNOWN_NESTED, None]),
    ("DO LANGUAGE plpython3u $$ plpy.execute('SET search_path = app') $$;\nALTER TABLE t ADD z int;",
     [None, locks.ANY_SCHEMA], ['a DO block in another language, or one the parser cannot read, naming search_path',
                                None]),
    # A constant path after an unknown one is known again.
    ("DO $$ BEGIN EXECUTE 'SET search_path TO app'; END $$;\nSET search_path = b;\nALTER TABLE t ADD z int;",
     [None, locks.ANY_SCHEMA, ('b',)], [UNKNOWN_DYNAMIC, None, None]),
    # A function's own SET clause is in force only while it runs; a body (BEGIN ATOMIC), a view are stored, not run.
    ("CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path = app AS 'SELECT 1';\nSELECT f();\n"
     "ALTER TABLE t ADD z int;", [None, None, None], [None, None, None]),
    ("CREATE FUNCTION g() RETURNS text LANGUAGE sql BEGIN ATOMIC SELECT set_config('search_path', 'app', false); "
     "END;\nALTER TABLE t ADD z int;", [None, None], [None, None]),
    ("CREATE VIEW v AS SELECT set_config('search_path', 'app', false);\nALTER TABLE t ADD z int;",
     [None, None], [None, None]),
    # ALTER ROLE / DATABASE ... SET: for new sessions only; the window's keeps its own, and RESET ALL goes back
    # to what it logged in with.
    ('ALTER ROLE fdt_deploy SET search_path = app;\nALTER DATABASE d SET search_path = app;\nRESET ALL;\n'
     'ALTER TABLE t ADD z int;', [None, None, None, None], [None, None, None, None]),
    ("SELECT set_config('search_path', 'app', current_setting('x.local')::bool);\nALTER TABLE t ADD z int;",
     [None, locks.ANY_SCHEMA], ['set_config() whose is_local is computed when it runs', None]),
    ("SELECT set_config('search_path', current_setting('x.y'), false);\nALTER TABLE t ADD z int;",
     [None, locks.ANY_SCHEMA], ['set_config() whose value is computed when it runs', None]),
    # pg_catalog and "$user" are kept as written (lookup puts pg_catalog first unless listed, "$user" the user).
    ('SET search_path = pg_catalog, "$user";\nALTER TABLE t ADD z int;', [None, ('pg_catalog', '$user')], [None, None]),
])
def test_where_a_patch_sets_the_search_path_and_where_only_running_it_would_tell(sql, paths, unknown, tmp_path):
    (tmp_path / 'patch-0001-01-0.sql').write_text(sql)
    patch = load_patch_set(str(tmp_path)).patches[0]
    states = locks.path_states(patch.statements)
    assert [state[0] for state in states] == paths
    assert [state[1] for state in states] == unknown


@pytest.mark.parametrize('sql, path', [
    # A hot patch runs each statement in autocommit: SET LOCAL ends with its own statement (PostgreSQL warns
    # 'SET LOCAL can only be used in transaction blocks'). A hot patch holds no SELECT or DO (patchset refuses it).
    ('SET LOCAL search_path = app;\nCREATE INDEX CONCURRENTLY i ON t (a);', None),
    ('SET search_path = app;\nCREATE INDEX CONCURRENTLY i ON t (a);', ('app',)),
])
def test_a_hot_patch_s_local_settings_end_with_their_statement(sql, path, tmp_path):
    (tmp_path / 'patch-0001-01-1.sql').write_text(sql)
    [patch] = load_patch_set(str(tmp_path)).patches
    assert locks.search_paths(patch.statements, live=True)[-1] == path
    lockers, dummy = locks.hot_waits([patch])
    assert [w['relation'] for w in lockers] == [(None, 't', path) if path else (None, 't')]


def test_detach_partition_concurrently_waits_out_the_partitioned_table_s_own_lockers(tmp_path):
    """ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY (14+): every locker of the partitioned table itself
    (ACCESS EXCLUSIVE conflicts with every mode; its other partitions' lockers not: only) and the partition's;
    no snapshot wait. One row per kind in locks.HOT_WAITS."""
    (tmp_path / 'patch-0001-01-1.sql').write_text('ALTER TABLE s.p DETACH PARTITION p2 CONCURRENTLY;')
    lockers, snapshots = locks.hot_waits(load_patch_set(str(tmp_path)).patches)
    assert [(w['relation'], w['mode'], w['only'], w['words']) for w in lockers] == [
        (('s', 'p'), AE, True, locks.DETACH_WORDS), ((None, 'p2'), AE, False, locks.DETACH_WORDS)]
    assert snapshots == []
    rows = [{'target': 0, 'mode': 'AccessShareLock', 'pid': 1}, {'target': 1, 'mode': 'AccessShareLock', 'pid': 2}]
    assert [r['pid'] for r in locks.conflicting(rows, lockers)] == [1, 2]
    assert list(zip(*locks.lookup(lockers, 'u'))) == [(1, 's', 'p', False, False), (2, None, '"p2"', True, False)]
    # Every live statement that waits out others is a row of the one table.
    assert set(locks.HOT_WAITS) >= {'CREATE INDEX CONCURRENTLY', 'REINDEX CONCURRENTLY', 'DROP INDEX CONCURRENTLY',
                                    'DETACH PARTITION CONCURRENTLY'}


def lock_targets(sql, tmp_path):
    (tmp_path / 'patch-0001-01-0.sql').write_text(sql)
    patch = load_patch_set(str(tmp_path)).patches[0]
    return [lock for statement in patch.statements for lock in locks.lock_targets(statement.node)]


@pytest.mark.parametrize('sql, expected', [
    # ATTACH (tablecmds.c ATExecAttachPartition): the partitioned table alone in SHARE UPDATE EXCLUSIVE, the
    # table attached and every partition of it in ACCESS EXCLUSIVE, the DEFAULT partition (and its partitions)
    # in ACCESS EXCLUSIVE - its constraint changes and its rows are scanned.
    ('ALTER TABLE p ATTACH PARTITION s.p2 FOR VALUES IN (2);',
     [((None, 'p'), SUE, locks.ONLY), (('s', 'p2'), AE, locks.TREE), ((None, 'p'), AE, locks.DEFAULT_PARTITION)]),
    # Attached as the DEFAULT partition: there is no other DEFAULT partition to lock.
    ('ALTER TABLE p ATTACH PARTITION p9 DEFAULT;', [((None, 'p'), SUE, locks.ONLY), ((None, 'p9'), AE, locks.TREE)]),
    # DETACH: the partitioned table alone, the partition, the DEFAULT partition (its constraint changes; no scan).
    ('ALTER TABLE p DETACH PARTITION p1;',
     [((None, 'p'), AE, locks.ONLY), ((None, 'p1'), AE, locks.TREE), ((None, 'p'), AE, locks.DEFAULT_PARTITION)]),
    ('ALTER TABLE p DETACH PARTITION p1 FINALIZE;', [((None, 'p'), SUE, locks.ONLY), ((None, 'p1'), AE, locks.TREE)]),
    # CREATE TABLE ... PARTITION OF (DefineRelation): the parent alone in ACCESS EXCLUSIVE, its DEFAULT partition.
    ('CREATE TABLE p1 PARTITION OF s.p FOR VALUES FROM (1) TO (2);',
     [(('s', 'p'), AE, locks.ONLY), (('s', 'p'), AE, locks.DEFAULT_PARTITION)]),
    ('CREATE TABLE p0 PARTITION OF p DEFAULT;', [((None, 'p'), AE, locks.ONLY)]),
    ('ALTER TABLE p ADD COLUMN x int;', [((None, 'p'), AE, locks.TREE)]),
])
def test_partition_commands_lock_the_partitioned_table_alone_and_its_default_partition(sql, expected, tmp_path):
    assert lock_targets(sql, tmp_path) == expected
    assert statement_locks(sql, tmp_path) == [(k, m) for k, m, reach in expected if reach != locks.DEFAULT_PARTITION]


def test_the_default_partition_is_looked_up_through_its_partitioned_table(tmp_path):
    """required_locks keeps the DEFAULT partition's entry apart from the partitioned table's own (another
    reach, another mode); lookup asks HOLDERS_SQL for the DEFAULT partition of the table it finds
    (defaults), with its partitions (recurse); the operator reads which DEFAULT partition it is."""
    (tmp_path / 'patch-0001-01-0.sql').write_text(
        'ALTER TABLE ev ATTACH PARTITION ev_2027 FOR VALUES FROM (1) TO (2);\nCOMMENT ON TABLE ev IS $$x$$;')
    required = locks.required_locks(load_patch_set(str(tmp_path)).patches)
    assert [(r['relation'], r['mode'], r.get('only'), r.get('default_partition'), r['line']) for r in required] == [
        ((None, 'ev'), SUE, True, None, 1), ((None, 'ev_2027'), AE, None, None, 1),
        ((None, 'ev'), AE, None, True, 1), ((None, 'ev'), SUE, None, None, 2)]
    assert list(zip(*locks.lookup(required, 'u'))) == [
        (1, None, '"ev"', False, False), (2, None, '"ev_2027"', True, False), (3, None, '"ev"', True, True),
        (4, None, '"ev"', True, False)]
    assert [locks.entry_text(r) for r in required] == ['ev', 'ev_2027', 'the DEFAULT partition of ev', 'ev']
    # A reader of the DEFAULT partition only (ACCESS SHARE) conflicts with its ACCESS EXCLUSIVE.
    rows = [{'target': 2, 'pid': 7, 'mode': 'AccessShareLock', 'granted': True, 'relation': 'ev_default'},
            {'target': 0, 'pid': 8, 'mode': 'RowExclusiveLock', 'granted': True, 'relation': 'ev'}]
    assert [(r['pid'], r['wanted']['mode']) for r in locks.conflicting(rows, required)] == [(7, AE)]


def required_of(sql, tmp_path, kind='0'):
    (tmp_path / ('patch-0001-01-%s.sql' % kind)).write_text(sql)
    return [r['relation'] for r in locks.required_locks(load_patch_set(str(tmp_path)).patches)]


@pytest.mark.parametrize('sql, expected', [
    # The patch's own TEMP table of a permanent table's name: pg_temp is searched first - no permanent relation.
    ('CREATE TEMP TABLE fdt_item (id int);\nALTER TABLE fdt_item ADD COLUMN x int;\nALTER TABLE t ADD y int;',
     [(None, 't')]),
    ('CREATE TEMPORARY TABLE stage AS SELECT 1 AS id;\nUPDATE stage SET id = 2;\nLOCK TABLE stage;', []),
    ('SELECT 1 AS id INTO TEMP stage;\nTRUNCATE stage;', []),
    ('CREATE TABLE pg_temp.stage (id int);\nDELETE FROM stage;\nDELETE FROM pg_temp.other;', []),
    # Before it is created, and after it is dropped (or DISCARD TEMP), the name is the permanent table's.
    ('UPDATE stage SET id = 1;\nCREATE TEMP TABLE stage (id int);\nDROP TABLE stage;\nUPDATE stage SET id = 2;',
     [(None, 'stage')]),
    ('CREATE TEMP TABLE stage (id int);\nDISCARD TEMP;\nUPDATE stage SET id = 2;', [(None, 'stage')]),
    # Under the patch's own path: pg_temp unlisted is searched first; listed later, the schemas before it first.
    ('SET search_path = app;\nCREATE TEMP TABLE stage (id int);\nUPDATE stage SET id = 2;', []),
    ('SET search_path = pg_temp, app;\nCREATE TEMP TABLE stage (id int);\nUPDATE stage SET id = 2;', []),
    ('SET search_path = app, pg_temp;\nCREATE TEMP TABLE stage (id int);\nUPDATE stage SET id = 2;\n'
     'UPDATE other SET id = 2;', [(None, 'stage', ('app',)), (None, 'other', ('app', 'pg_temp'))]),
    # A path only running the patch would tell: any schema, as before.
    ("SELECT set_config('search_path', current_setting('x.y'), false);\nCREATE TEMP TABLE stage (id int);\n"
     "UPDATE stage SET id = 2;", [(None, 'stage', locks.ANY_SCHEMA)]),
])
def test_a_patch_s_own_temporary_table_is_not_the_permanent_one(sql, expected, tmp_path):
    assert required_of(sql, tmp_path) == expected


def test_a_temporary_table_is_its_own_patch_s(tmp_path):
    """The window's DISCARD TEMP after each patch: the next patch's name is the permanent table again."""
    (tmp_path / 'patch-0001-01-0.sql').write_text('CREATE TEMP TABLE stage (id int);\nUPDATE stage SET id = 1;')
    (tmp_path / 'patch-0001-02-0.sql').write_text('UPDATE stage SET id = 2;')
    required = locks.required_locks(load_patch_set(str(tmp_path)).patches)
    assert [(r['relation'], r['patch']) for r in required] == [((None, 'stage'), 'patch-0001-02-0.sql')]


def test_a_hot_patch_waits_for_no_lock_on_a_temporary_table(tmp_path):
    """A live statement on a table of schema pg_temp (the session's own: PostgreSQL builds such an index
    without CONCURRENTLY) waits for no other session's lock."""
    (tmp_path / 'patch-0001-01-1.sql').write_text(
        'CREATE INDEX CONCURRENTLY stage_id ON pg_temp.stage (id);\nCREATE INDEX CONCURRENTLY t_id ON t (id);')
    lockers, dummy = locks.hot_waits(load_patch_set(str(tmp_path)).patches)
    assert [(w['relation'], w['line']) for w in lockers] == [((None, 't'), 2)]


def test_the_deploy_session_s_own_path_places_pg_temp_where_the_patch_sets_none(tmp_path):
    """A role or database setting 'public, pg_temp' (timescaledb PR 4288's placement) as the deploy session's
    own search_path: public.stage is found before the patch's TEMP stage; unknown (None) or unlisted: the TEMP one."""
    (tmp_path / 'patch-0001-01-0.sql').write_text('CREATE TEMP TABLE stage (id int);\nUPDATE stage SET id = 2;')
    patches = load_patch_set(str(tmp_path)).patches
    assert [r['relation'] for r in locks.required_locks(patches, ('public', 'pg_temp'))] == [(None, 'stage', ('public',))]
    assert locks.required_locks(patches, ('"$user"', 'public')) == locks.required_locks(patches) == []
    assert locks.required_locks(patches, ('pg_temp', 'public')) == []
