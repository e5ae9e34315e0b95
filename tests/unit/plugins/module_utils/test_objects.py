"""objects: what the pending patches need to exist and CREATE anew, as the earlier pending statements
leave the catalog, and what the window would fail on (no database: the catalog's answers are given)."""

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import objects
from ansible_collections.fastdowntime.postgresql.plugins.module_utils import preflight as pf
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.patchset import COLD, Patch, read_statements


def patch_of(sql, name='p.sql', revision=(2300, 1, 0)):
    statements, problems, dummy = read_statements(sql, name)
    assert not problems, problems
    return Patch(name=name, path='', revision=revision, sha256='', kind=COLD, statements=statements)


def asked(*patches):
    return [(l.line, l.kind, l.key, l.expect) for l in objects.pending_lookups(list(patches))]


# What a plain pg_dump of a schema writes (pg_dump 17, trimmed): its own search_path '' and every name qualified.
PG_DUMP = """SELECT pg_catalog.set_config('search_path', '', false);
CREATE SCHEMA app;
ALTER SCHEMA app OWNER TO app_owner;
COMMENT ON SCHEMA app IS 'the app';
CREATE COLLATION app.ci (provider = icu, deterministic = false, locale = 'und-u-ks-level2');
CREATE TYPE app.mood AS ENUM ('sad', 'ok');
CREATE SEQUENCE app.ticket_seq START WITH 1000;
CREATE TABLE app.customer (id bigint NOT NULL, name text COLLATE app.ci, mood app.mood, z public.zone);
CREATE FUNCTION app.greet(c app.customer) RETURNS text LANGUAGE sql AS $$ SELECT 'hi' $$;
CREATE TABLE app.archive (id integer) TABLESPACE archive_ts;
CREATE FOREIGN TABLE app.remote (id integer) SERVER remote_srv OPTIONS (table_name 'orders');
SELECT pg_catalog.setval('app.ticket_seq', 1002, true);
CREATE INDEX customer_name ON app.customer USING btree (name) TABLESPACE archive_ts;
"""


def test_a_pg_dump_of_a_schema_needs_its_tablespace_server_and_the_types_it_does_not_create():
    assert asked(patch_of(PG_DUMP)) == [
        (2, 'schema', (None, 'app'), 'creates'),
        (8, 'schema', (None, 'public'), 'needs'),
        (8, 'type', ('pg_catalog', 'int8'), 'needs'),
        (8, 'type', ('public', 'zone'), 'needs'),
        (10, 'tablespace', (None, 'archive_ts'), 'needs'),
        (10, 'type', ('pg_catalog', 'int4'), 'needs'),
        (11, 'server', (None, 'remote_srv'), 'needs')]
    # what the patch creates in the schema it creates is not looked up, nor a setval of its own sequence
    assert objects.setval_sequences([patch_of(PG_DUMP)]) == []


def test_what_an_earlier_pending_statement_creates_or_drops_is_settled_without_the_catalog():
    first = patch_of('CREATE TABLE public.t (id int);\nDROP TABLE public.old;\nDROP TYPE IF EXISTS public.gone;\n'
                     'CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw;\n')
    second = patch_of('ALTER TABLE public.t ADD COLUMN x int;\nCREATE TABLE public.old (id int);\n'
                      'CREATE TYPE public.gone AS ENUM (\'a\');\nCREATE USER MAPPING FOR CURRENT_USER SERVER s;\n'
                      'CREATE TABLE IF NOT EXISTS public.maybe (id int);\nCREATE VIEW public.v AS SELECT 1;\n'
                      'CREATE OR REPLACE VIEW public.w AS SELECT 1;\nCREATE ROLE r;\nCREATE EXTENSION pg_trgm;\n',
                      revision=(2300, 2, 0))
    assert asked(first, second) == [
        (1, 'schema', (None, 'public'), 'needs'),
        (1, 'type', ('pg_catalog', 'int4'), 'needs'),
        (1, 'relation', ('public', 't'), 'creates'),
        (2, 'relation', ('public', 'old'), 'needs'),     # a DROP without IF EXISTS needs it
        (4, 'foreign-data wrapper', (None, 'postgres_fdw'), 'needs'),
        (4, 'server', (None, 's'), 'creates'),
        (6, 'relation', ('public', 'v'), 'creates'),
        (8, 'role', (None, 'r'), 'creates'),
        (9, 'extension', (None, 'pg_trgm'), 'creates')]


def test_unqualified_names_under_a_search_path_the_patch_sets_need_one_schema_of_it_to_create_in():
    assert asked(patch_of('SET search_path TO app, "$user";\nCREATE TABLE t (id int);\nCREATE TABLE u (id int);\n'
                          'ALTER TABLE elsewhere ADD COLUMN x int;\n')) == [
        (2, 'type', ('pg_catalog', 'int4'), 'needs'),
        (2, 'search_path', (None, ('app',)), 'search_path')]
    # a schema the patch creates first, a temporary table, the deploy session's own path: nothing of the kind
    assert asked(patch_of('CREATE SCHEMA app;\nSET search_path TO app;\nCREATE TABLE t (id text);\n'
                          'CREATE TEMP TABLE tmp (id text);\n')) == [(1, 'schema', (None, 'app'), 'creates')]
    assert asked(patch_of('CREATE TABLE t (id text, n serial);\nCREATE TEMP TABLE x (id text);\nDROP TABLE x;\n')) \
        == [(1, 'type', (None, 'text'), 'needs'), (1, 'relation', (None, 't'), 'creates')]


def found_for(lookups, missing=(), existing=()):
    """The catalog's answers: every probe row exists unless its name is in ``missing``; a CREATE's name
    is missing unless it is in ``existing``."""
    answers = {}
    for row in objects.probe_rows(lookups):
        kind, schema, name, creates, part = row
        name = part or name
        answers[row] = name in existing if creates or kind in objects.TABLE_PARTS else name not in missing
    return answers


def test_failures_in_postgresqls_words_one_per_missing_schema_and_a_warning_after_a_pending_extension():
    lookups = objects.pending_lookups([patch_of(
        'CREATE TABLE nosuch.t (a nosuch.kind, b public.mood);\n'
        'CREATE TABLE public.fdt_item (id int);\n'
        'CREATE EXTENSION IF NOT EXISTS citext;\nCREATE EXTENSION IF NOT EXISTS hstore_plus;\n'
        'CREATE TABLE public.c (e citext, h public.hkind, k public.kind);\n'
        'SET search_path = nowhere;\nCREATE TABLE z (id int8);\n')])
    failed = objects.failures(lookups, found_for(lookups, missing=('nosuch', 'mood', 'citext', 'hkind', 'kind',
                                                                   'nowhere'), existing=('fdt_item',)))
    assert [(l.line, cause, maybe) for l, cause, maybe in failed] == [
        (1, 'schema "nosuch" does not exist', False),          # not nosuch.t, nosuch.kind too
        (1, 'type "public.mood" does not exist', False),
        (2, 'relation "public.fdt_item" already exists', False),
        (5, 'type "public.hkind" does not exist', True),        # citext: the extension's own name, no finding
        (5, 'type "public.kind" does not exist', True),
        (7, 'no schema has been selected to create in (search_path nowhere: none of them exists)', False)]
    # rows the read did not answer are not judged
    assert objects.failures(lookups, {}) == []


def test_setval_of_an_existing_sequence_is_named_not_one_the_patches_create():
    sql = ("SELECT pg_catalog.setval('public.fdt_item_id_seq', 42, true);\n"
           "CREATE SEQUENCE app_seq;\nSELECT setval('app_seq', 5);\nSELECT setval('\"Odd\".\"Seq\"', 1);\n")
    found = [(s.line, key) for p, s, key in objects.setval_sequences([patch_of(sql)])]
    assert found == [(1, ('public', 'fdt_item_id_seq')), (4, ('Odd', 'Seq'))]
    # the sequence a setval names must exist too
    assert (1, 'relation', ('public', 'fdt_item_id_seq'), 'needs') in asked(patch_of(sql))


def test_decide_patch_objects_one_line_each_with_the_fix_of_its_kind():
    lookups = objects.pending_lookups([patch_of(
        'CREATE TABLE public.a (id int) TABLESPACE gone_ts;\nCREATE SCHEMA public;\n'
        'CREATE EXTENSION IF NOT EXISTS some_ext;\nCREATE SERVER s FOREIGN DATA WRAPPER other_fdw;\n',
        name='patch-2300-01-0.sql')])
    failed = objects.failures(lookups, found_for(lookups, missing=('gone_ts', 'other_fdw'), existing=('public',)))
    found = pf.decide_patch_objects('primary (10.0.0.10:5432)', failed, looked_up=5,
                                    setvals=[('patch-2300-01-0.sql', 9, 'public.s')])
    assert [(f['status'], f['summary']) for f in found] == [
        (pf.FAIL, 'primary (10.0.0.10:5432): patch-2300-01-0.sql line 1: CREATE TABLE public.a ...: tablespace '
                  '"gone_ts" does not exist on this server: the window would fail on it and roll back'),
        (pf.FAIL, 'primary (10.0.0.10:5432): patch-2300-01-0.sql line 2: CREATE SCHEMA public ...: schema "public" '
                  'already exists on this server: the window would fail on it and roll back'),
        (pf.WARN, 'primary (10.0.0.10:5432): patch-2300-01-0.sql line 4: CREATE SERVER s ...: foreign-data wrapper '
                  '"other_fdw" does not exist on this server - an earlier pending CREATE EXTENSION (some_ext) may '
                  'create it, so only the window can tell'),
        (pf.WARN, 'primary (10.0.0.10:5432): patch-2300-01-0.sql line 9: setval() of the existing sequence public.s: a '
                  'sequence\'s value is not transactional - if the window rolls back, the sequence keeps the value '
                  'this patch sets')]
    assert '--no-tablespaces' in found[0]['action'] and 'IF NOT EXISTS' in found[1]['action']
    assert 'SELECT last_value FROM public.s' in found[3]['action']
    [passed] = pf.decide_patch_objects('primary', [], looked_up=3)
    assert passed['status'] == pf.PASS and '(3 looked up)' in passed['summary']


def test_a_hot_create_index_concurrently_is_in_the_way_only_of_a_valid_index_of_its_name():
    """A failed CREATE INDEX CONCURRENTLY leaves an INVALID index, which the hot phase drops before it runs the
    statement again: the lookup asks for a valid index; a later statement naming it needs no lookup."""
    lookups = objects.pending_lookups([patch_of('CREATE INDEX CONCURRENTLY fdt_ix ON public.t (a);\n'
                                                "COMMENT ON INDEX public.fdt_ix IS 'x';\n")])
    assert [(l.line, l.kind, l.key, l.expect) for l in lookups if l.kind != 'schema'] == [
        (1, 'relation', ('public', 't'), 'needs'), (1, 'valid index', ('public', 'fdt_ix'), 'creates')]
    assert 'indisvalid' in objects.OBJECTS_SQL
    failed = objects.failures(lookups, found_for(lookups, existing=('fdt_ix',)))
    assert [cause for dummy, cause, dummy2 in failed] == ['relation "public.fdt_ix" already exists']


def test_schema_privileges_create_where_objects_go_usage_where_names_are_looked_up():
    patch = patch_of('CREATE TABLE t (id int);\nCREATE TABLE app.u (id int, k app.kind);\nCREATE INDEX ON app.u (id);\n'
                     'CREATE SCHEMA mine;\nCREATE TABLE mine.x (id pg_catalog.int4);\nCREATE TEMP TABLE tt (id int);\n'
                     'ALTER TABLE other.v ADD COLUMN z int;\nSET search_path = elsewhere;\nCREATE TABLE w (id int);\n')
    assert [(s.line, schema, privilege) for p, s, schema, privilege in objects.schema_privileges([patch])] == [
        (1, None, 'CREATE'),           # the session's creation schema: current_schema()
        (2, 'app', 'USAGE'), (2, 'app', 'CREATE'),
        (7, 'other', 'USAGE')]         # not the index's schema, the schema the patch makes, a temp table, pg_catalog


def test_decide_schema_privileges_one_line_per_schema_with_the_grant():
    [found] = pf.decide_schema_privileges('primary (10.0.0.10:5432)', {'usename': 'deploy'}, [
        ('patch-2300-01-0.sql', 1, 'CREATE TABLE t', 'public', 'pg_database_owner', 'CREATE'),
        ('patch-2300-01-0.sql', 4, 'ALTER TABLE public.v', 'public', 'pg_database_owner', 'USAGE')])
    assert found['summary'] == (
        'primary (10.0.0.10:5432): the deploy user deploy lacks CREATE and USAGE on schema public (owner '
        'pg_database_owner) for patch-2300-01-0.sql line 1: CREATE TABLE t; patch-2300-01-0.sql line 4: ALTER TABLE '
        'public.v, which would fail inside the outage ("permission denied for schema public"; the window rolls back)')
    assert found['evidence']['fix_sql'] == ['GRANT CREATE, USAGE ON SCHEMA public TO deploy']
    assert pf.decide_schema_privileges('p', {'usename': 'deploy'}, []) == []


def test_add_column_or_constraint_of_a_name_the_table_has_and_a_column_it_lacks():
    """ALTER TABLE ... ADD COLUMN of a column the table has ("column ... already exists" - a patch applied by hand
    before), ADD CONSTRAINT of a name it has, ALTER COLUMN / DROP COLUMN of one it lacks: the window failed;
    IF [NOT] EXISTS, and the columns of a table the patches create, are not looked up."""
    lookups = objects.pending_lookups([patch_of(
        'ALTER TABLE public.fdt_item ADD COLUMN body text, ADD COLUMN IF NOT EXISTS created int;\n'
        'ALTER TABLE public.fdt_item ADD CONSTRAINT fdt_item_pkey PRIMARY KEY (id);\n'
        'ALTER TABLE public.fdt_item ALTER COLUMN nope SET NOT NULL, DROP COLUMN IF EXISTS gone;\n'
        'CREATE TABLE public.n (id int);\nALTER TABLE public.n ADD COLUMN id2 int, ALTER COLUMN id SET NOT NULL;\n'
        'ALTER TABLE public.fdt_item RENAME COLUMN body TO body2;\nALTER TABLE public.fdt_item DROP COLUMN body2;\n'
        'ALTER TABLE public.missing ADD COLUMN x int;\n')])
    assert [(l.line, l.kind, l.key, l.expect) for l in lookups if l.kind in objects.TABLE_PARTS] == [
        (1, 'column', ('public', 'fdt_item', 'body'), 'creates'),
        (2, 'constraint', ('public', 'fdt_item', 'fdt_item_pkey'), 'creates'),
        (3, 'column', ('public', 'fdt_item', 'nope'), 'needs'),
        (6, 'column', ('public', 'fdt_item', 'body2'), 'creates'),
        (8, 'column', ('public', 'missing', 'x'), 'creates')]
    failed = objects.failures(lookups, found_for(lookups, missing=('nope', 'missing'),
                                                 existing=('body', 'fdt_item_pkey')))
    assert [(l.line, cause) for l, cause, dummy in failed] == [
        (1, 'column "body" of relation "public.fdt_item" already exists'),
        (2, 'constraint "fdt_item_pkey" of relation "public.fdt_item" already exists'),
        (3, 'column "nope" of relation "public.fdt_item" does not exist'),
        (8, 'relation "public.missing" does not exist')]     # not its column too
