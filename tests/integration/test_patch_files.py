"""Patch files written for other tools, through the real pre-flight on the lab.

A goose file with a Down section (once applied and recorded with its function dropped
again), psql meta-commands, pg_dump COPY data, a Flyway-named file and transaction
control, Flyway's script configuration (inline, and a .sql.conf file), COPY from a server file,
CHECKPOINT: all refused in one run, before any PAUSE, each naming its file and line; the goose file's up
part alone then deploys. A cold statement running code of unknown cost
is refused by the lint, and a constant pg_sleep is priced at its seconds. A pg_dump's settings, roles,
extensions and the objects it names or creates that the primary lacks or has: refused before any PAUSE."""

import json
import os
import re
import subprocess

import psycopg2

from deploy import (REVISION_TABLE, assert_clean_error, deploy_under_load, pg_one, run_playbook, table_exists,
                    unique_major)
import test_preflight
from test_preflight import findings, run

revision_table = test_preflight.revision_table  # the pre-flight tests' own revision table, as a fixture here

GOOSE_UP = """-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION fdt_goose%(m)d() RETURNS int LANGUAGE plpgsql AS $$
BEGIN
  RETURN 1;
END;
$$;
-- +goose StatementEnd
"""
GOOSE_DOWN = """
-- +goose Down
DROP FUNCTION fdt_goose%(m)d();
"""


def function_exists(lab, name):
    return pg_one(lab, 'primary', 'SELECT to_regproc(%s) IS NOT NULL', (name,))


def refused_before_any_pause(lab, tmp_path, files, check, count, *lines):
    """Write ``files`` ({name: text}) into the patch directory and run the playbook (pre-flight, hot
    patches, outage): it must be refused by the pre-flight in one line each naming ``lines``, with
    ``count`` problems of ``check`` in the report and no drain, cold transaction or resume (nothing
    paused). Returns (the patch directory, the playbook's output, the report)."""
    directory = tmp_path / 'patches'
    directory.mkdir(exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    proc, report_path = run_playbook(lab, tmp_path, str(directory), tags='preflight,hot,outage')
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert_clean_error(out, 'refused by pre-flight', *lines)
    report = json.load(open(report_path))
    assert report['outcome'] == 'refused by pre-flight'
    assert len([p for p in report['problems'] if p.startswith(check + ': ')]) == count, report['problems']
    assert not [p for p in report['phases'] if p['phase'] in ('drain', 'cold_transaction', 'resume')], report['phases']
    return directory, out, report


def test_goose_down_and_other_tools_files_refused_before_any_pause_in_one_run(healthy_lab, scratch, tmp_path):
    lab = healthy_lab
    major = unique_major()
    names = {'m': major}
    directory = tmp_path / 'patches'
    directory.mkdir()
    files = {
        'patch-%d-01-0.sql' % major: (GOOSE_UP + GOOSE_DOWN) % names,
        'patch-%d-02-0.sql' % major: '\\set ON_ERROR_STOP on\nCREATE TABLE fdt_p%(m)d (id int);\n' % names,
        'patch-%d-03-0.sql' % major: 'CREATE TABLE fdt_c%(m)d (id int, v text);\nCOPY fdt_c%(m)d (id, v) FROM stdin;'
                                     '\n1\tone\n2\ttwo\n\\.\n' % names,
        'patch-%d-04-0.sql' % major: 'BEGIN;\nCREATE TABLE fdt_b%(m)d (id int);\nCOMMIT;\n' % names,
        'V3__add_col.sql': 'ALTER TABLE fdt_p%(m)d ADD COLUMN x int;\n' % names,
        'patch-%d-05-0.sql' % major: '-- flyway:executeInTransaction=false\nCREATE TABLE fdt_f%(m)d (id int);\n' % names,
        'patch-%d-05-0.sql.conf' % major: 'executeInTransaction=false\n',
        'patch-%d-06-0.sql' % major: "CREATE TABLE fdt_y%(m)d (id int);\nCOPY fdt_y%(m)d FROM '/tmp/fdt-no-such.csv';\n"
                                     % names,
        'patch-%d-07-0.sql' % major: 'CHECKPOINT;\nCREATE TABLE fdt_k%(m)d (id int);\n' % names,
    }
    for name, text in files.items():
        (directory / name).write_text(text)

    proc, report_path = run_playbook(lab, tmp_path, str(directory), tags='preflight,hot,outage')
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert_clean_error(
        out, 'refused by pre-flight',
        'patch-%d-01-0.sql line 10: goose down section (-- +goose Down): it runs in the same transaction as the up '
        'part, undoing it; keep only the up part in the patch file' % major,
        'patch-%d-02-0.sql line 1: psql meta-command \\set: not SQL, run it outside the deploy' % major,
        'patch-%d-03-0.sql line 2: COPY FROM stdin data (2 row(s) follow it): not supported' % major,
        'patch-%d-04-0.sql line 1: transaction control is not allowed in a patch' % major,
        'patch-%d-04-0.sql line 3: transaction control' % major,
        'V3__add_col.sql: a Flyway versioned migration, not a patch: it would never be applied',
        'patch-%d-05-0.sql line 1: flyway annotation -- flyway:executeInTransaction=false asks to run the file '
        'outside a transaction' % major,
        'patch-%d-05-0.sql.conf: a Flyway script configuration file: this tool does not read it' % major,
        'patch-%d-06-0.sql line 2: COPY FROM a file on the database server: the pre-flight can neither check nor '
        'price what it reads, and the window fails if it is missing' % major,
        'patch-%d-07-0.sql line 1: CHECKPOINT: it writes every dirty buffer of the server to disk, while every client '
        'waits in the window' % major)
    assert 'does not parse' not in out
    assert 'Drain, cold patches' not in out  # refused before the outage play: nothing paused
    assert json.load(open(report_path))['outcome'] == 'refused by pre-flight'
    assert not function_exists(lab, 'fdt_goose%d' % major)
    created = ('fdt_p%d', 'fdt_c%d', 'fdt_b%d', 'fdt_f%d', 'fdt_y%d', 'fdt_k%d')
    assert not any(table_exists(lab, 'primary', t % major) for t in created)

    # As the message says: only the up part kept, the other files out. The goose markers are comments.
    for name in files:
        os.remove(str(directory / name))
    (directory / ('patch-%d-01-0.sql' % major)).write_text(GOOSE_UP % names)
    proc, report_path = run_playbook(lab, tmp_path, str(directory), tags='preflight,hot,outage')
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert function_exists(lab, 'fdt_goose%d' % major)
    assert pg_one(lab, 'primary', 'SELECT count(*) FROM %s WHERE major = %%s' % REVISION_TABLE, (major,)) == 1
    conn = psycopg2.connect(lab.primary_dsn())
    conn.autocommit = True
    conn.cursor().execute('DROP FUNCTION fdt_goose%d()' % major)
    conn.close()


def test_cold_code_of_unknown_cost_is_refused_and_a_constant_sleep_priced(lab, revision_table, tmp_path):
    directory = tmp_path / 'patches'
    directory.mkdir()
    (directory / 'patch-2303-01-0.sql').write_text(
        "CREATE FUNCTION fdt_preflight_test.backfill() RETURNS void LANGUAGE sql AS $$ SELECT $$;\n"
        "SELECT fdt_preflight_test.backfill();\n"
        "DO $$ BEGIN PERFORM 1; END $$;\n")
    result = run(lab, str(directory))
    failed = findings(result, 'lint', 'fail')
    assert [f['summary'].split(':')[0] for f in failed] == ['patch-2303-01-0.sql line 2', 'patch-2303-01-0.sql line 3']
    assert all('cost unknown' in f['summary'] and 'cost-unknown:FILE:LINE' in f['action'] for f in failed)
    assert result['estimate']['unknown'] == ['patch-2303-01-0.sql:2 SELECT backfill()',
                                             'patch-2303-01-0.sql:3 DO block']
    assert findings(result, 'budget', 'warn') and not result['passed']

    # The tester's SELECT pg_sleep(25): now 25 s of the estimate, over a 10 s budget.
    (directory / 'patch-2303-01-0.sql').write_text('SELECT pg_sleep(25);\n')
    result = run(lab, str(directory))
    assert result['estimate']['total_ms'] > 25000 and not result['estimate']['unknown']
    [budget] = findings(result, 'budget', 'fail')
    assert 'patch-2303-01-0.sql:1 sleep (25.00s)' in budget['summary']


PG_DUMP_17_HEADER = """--
-- PostgreSQL database dump
--

-- Dumped from database version 17.2
-- Dumped by pg_dump version 17.2

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET transaction_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

"""


def test_a_patchs_settings_the_primary_refuses_are_refused_before_any_pause(healthy_lab, scratch, tmp_path):
    """pg_dump 17 and later write SET transaction_timeout = 0 (the public discourse #41632,
    databasement #590: restores into 16 and older fail on it): as a cold patch it passed the
    pre-flight and failed inside the window (rolled back, every client paused for nothing). Now
    every SET / set_config of the pending patches is tried on the primary, rolled back: a setting it
    does not know, a value it refuses, a server-only setting fail the pre-flight in one line each,
    naming file, line and fix; a SET ROLE to a role an earlier pending statement creates is only a
    warning. With the lines the pre-flight named removed, the same dump deploys under load."""
    lab = healthy_lab
    major = unique_major()
    names = {'m': major}
    pg17 = pg_one(lab, 'primary', 'SELECT current_setting(\'server_version_num\')::int') >= 170000
    table = 'CREATE TABLE public.fdt_dump%(m)d (\n    id integer NOT NULL,\n    name text\n);\n' % names
    name = 'patch-%d-01-0.sql' % major
    expected = [
        '%s line 24: SET default_table_access_method = fdt_no_such_am: invalid value for parameter '
        '"default_table_access_method"' % name,
        'patch-%d-02-0.sql line 4: SET wal_level = logical: parameter "wal_level" cannot be changed without '
        'restarting the server (SQLSTATE 55P02): the window would fail on it and roll back' % major,
        'patch-%d-02-0.sql line 2: SET ROLE fdt_role%d: role "fdt_role%d" does not exist (SQLSTATE 22023) - an '
        'earlier pending statement creates fdt_role%d, so only the window can tell' % (major, major, major, major)]
    if not pg17:
        expected.append('%s line 11: SET transaction_timeout = 0: unrecognized configuration parameter '
                        '"transaction_timeout" (SQLSTATE 42704): the window would fail on it and roll back -> this '
                        'server has no such setting (pg_dump 17 and later write SET transaction_timeout = 0' % name)
    directory = refused_before_any_pause(lab, tmp_path, {
        name: PG_DUMP_17_HEADER + 'SET default_table_access_method = fdt_no_such_am;\n' + table,
        'patch-%d-02-0.sql' % major: 'CREATE ROLE fdt_role%(m)d;\nSET ROLE fdt_role%(m)d;\nRESET ROLE;\n'
                                     'SET wal_level = logical;\nDROP ROLE fdt_role%(m)d;\n' % names},
        'patch_settings', 3 - pg17, *expected)[0]
    dump = directory / name
    assert not table_exists(lab, 'primary', 'fdt_dump%d' % major)
    assert not pg_one(lab, 'primary', 'SELECT count(*) FROM pg_roles WHERE rolname = %s', ('fdt_role%d' % major,))

    # As the messages say: the lines named deleted; the rest of pg_dump's header runs in the window.
    os.remove(str(directory / ('patch-%d-02-0.sql' % major)))
    dump.write_text((PG_DUMP_17_HEADER + table).replace('SET transaction_timeout = 0;\n', '-- (deleted)\n'))
    proc, out, load = deploy_under_load(lab, tmp_path, str(directory))
    assert proc.returncode == 0, out[-3000:]
    assert 'patch_settings' not in out
    assert table_exists(lab, 'primary', 'fdt_dump%d' % major)
    assert not load.errors, load.error_texts()


def test_roles_a_patch_names_that_the_primary_lacks_are_refused_before_any_pause(healthy_lab, scratch, tmp_path):
    """A pg_dump taken where other roles exist writes OWNER TO and GRANT lines for them: as a cold
    patch it passed the pre-flight and failed inside the window on 'role ... does not exist' (rolled
    back, clients paused for nothing). Now every role the pending patches name is looked up on the
    primary: each missing one refused before any PAUSE, naming file, line and role - not PUBLIC, not a
    role an earlier pending statement creates."""
    lab = healthy_lab
    major = unique_major()
    names = {'m': major}
    name = 'patch-%d-01-0.sql' % major
    refused_before_any_pause(lab, tmp_path, {name: (
        'CREATE TABLE public.fdt_own%(m)d (id integer);\n'
        'ALTER TABLE public.fdt_own%(m)d OWNER TO fdt_no_such_owner%(m)d;\n'
        'GRANT SELECT ON TABLE public.fdt_own%(m)d TO fdt_no_such_reader%(m)d, PUBLIC;\n'
        'CREATE ROLE fdt_role%(m)d;\n'
        'GRANT SELECT ON TABLE public.fdt_own%(m)d TO fdt_role%(m)d, fdt_deploy;\n' % names)}, 'patch_roles', 2,
        '%s line 2: role "fdt_no_such_owner%d" does not exist on this server: the window would fail on it and roll '
        'back -> create the role first (CREATE ROLE in an earlier patch, or outside the deploy), or delete the '
        'statement' % (name, major),
        '%s line 3: role "fdt_no_such_reader%d" does not exist on this server' % (name, major))
    assert not table_exists(lab, 'primary', 'fdt_own%d' % major)
    assert not pg_one(lab, 'primary', 'SELECT count(*) FROM pg_roles WHERE rolname = %s', ('fdt_role%d' % major,))


def test_an_extension_the_primary_cannot_create_is_refused_before_any_pause(healthy_lab, scratch, tmp_path):
    """A pg_dump of a database with an extension writes CREATE EXTENSION for it: one whose files the
    primary lacks (or a version it does not ship) passed the pre-flight and failed inside the window
    ('extension ... is not available', rolled back). Now each is looked up in the primary's
    pg_available_extension_versions and refused before any PAUSE; IF NOT EXISTS of one installed passes."""
    lab = healthy_lab
    major = unique_major()
    name = 'patch-%d-01-0.sql' % major
    refused_before_any_pause(lab, tmp_path, {name: (
        'CREATE TABLE public.fdt_ext%d (id integer);\n'
        'CREATE EXTENSION IF NOT EXISTS fdt_no_such_ext WITH SCHEMA public;\n'
        "CREATE EXTENSION IF NOT EXISTS plpgsql VERSION '99.0';\n"
        "CREATE EXTENSION plpgsql_fdt VERSION '1.0';\n" % major)}, 'patch_extensions', 2,
        '%s line 2: extension "fdt_no_such_ext" is not available on this server (no fdt_no_such_ext.control in its '
        'extension directory): the window would fail on it and roll back -> install the extension' % name,
        '%s line 4: extension "plpgsql_fdt" is not available' % name)
    assert not table_exists(lab, 'primary', 'fdt_ext%d' % major)


def pg_dump_of(lab, database, *options):
    """The lab's own pg_dump (plain format) of ``database`` with ``options``, less its COPY ... FROM stdin
    data (refused in a patch: data is loaded with INSERTs): what a user keeps of it as a cold patch."""
    proc = subprocess.run([os.path.join(lab.topology['pg_bin'], 'pg_dump'), '-h', lab.addr('primary'), '-U',
                           'fdt_deploy', '-d', database] + list(options), capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PGPASSWORD=lab.users['fdt_deploy']), check=False)
    assert proc.returncode == 0, proc.stderr
    return re.sub(r'^COPY .*? FROM stdin;\n.*?^\\\.\n', '', proc.stdout, flags=re.M | re.S)


def test_objects_a_pg_dump_names_that_the_primary_lacks_or_has_are_refused_before_any_pause(healthy_lab, scratch,
                                                                                            tmp_path):
    """A real pg_dump -n of a schema (with a collation, an enum type, a sequence and its setval, a table
    in a tablespace, a foreign table) as a cold patch: the foreign server it names (a schema's dump leaves
    servers out) and the tablespace the target lacks passed the pre-flight and failed inside the window
    ("server ... does not exist", rolled back, clients paused for nothing); so did a hand-written patch's
    TABLESPACE clause, CREATE of a table that exists, COMMENT ON a schema that does not, a collation that
    does not, and a CREATE under a search_path of no existing schema. Now each is refused before any PAUSE,
    one line each. Dumped again as the lines say (--no-tablespaces, the foreign table left out), it
    deploys under load; the same dump once more is refused: its schema already exists."""
    lab = healthy_lab
    major = unique_major()
    names = {'m': major}
    schema, source, space = 'fdt_app%d' % major, 'fdt_src%d' % major, 'fdt_ts%d' % major
    admin = psycopg2.connect(lab.primary_dsn())
    admin.autocommit = True
    try:
        admin.cursor().execute('CREATE DATABASE %s' % source)
        conn = psycopg2.connect(lab.primary_dsn().replace('dbname=%s' % lab.db_name, 'dbname=%s' % source))
        conn.autocommit = True
        conn.cursor().execute('SET allow_in_place_tablespaces = on')   # inside the data directory: no
        conn.cursor().execute("CREATE TABLESPACE %s LOCATION ''" % space)  # directory shared by the lab's hosts
        conn.cursor().execute(
            "CREATE SCHEMA %(s)s; COMMENT ON SCHEMA %(s)s IS 'the app';"
            "CREATE COLLATION %(s)s.c_bytes (locale = 'C');"
            "CREATE TYPE %(s)s.mood AS ENUM ('sad', 'ok', 'happy');"
            "CREATE SEQUENCE %(s)s.ticket_seq START 1000; SELECT nextval('%(s)s.ticket_seq');"
            "CREATE TABLE %(s)s.customer (id bigserial PRIMARY KEY, name text COLLATE %(s)s.c_bytes, "
            "  mood %(s)s.mood DEFAULT 'ok', ticket int DEFAULT nextval('%(s)s.ticket_seq'));"
            "INSERT INTO %(s)s.customer (name) VALUES ('Ann');"
            "CREATE TABLE %(s)s.archive (id int, note text) TABLESPACE %(ts)s;"
            "CREATE EXTENSION postgres_fdw;"
            "CREATE SERVER fdt_srv%(m)d FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '127.0.0.1', dbname 'x');"
            "CREATE FOREIGN TABLE %(s)s.remote (id int) SERVER fdt_srv%(m)d OPTIONS (table_name 'orders');"
            % dict(names, s=schema, ts=space))
        conn.close()
        dump = pg_dump_of(lab, source, '-n', schema)
        again = pg_dump_of(lab, source, '-n', schema, '--no-tablespaces', '--exclude-table=%s.remote' % schema)
        assert 'CREATE FOREIGN TABLE' in dump and 'SET default_tablespace = %s;' % space in dump
        assert "SELECT pg_catalog.setval('%s.ticket_seq', 1001, true);" % schema in dump   # Ann's ticket
        admin.cursor().execute('DROP DATABASE %s WITH (FORCE)' % source)
        admin.cursor().execute('DROP TABLESPACE %s' % space)   # the target's server has none of that name

        dumped, written = 'patch-%d-01-0.sql' % major, 'patch-%d-02-0.sql' % major
        directory = refused_before_any_pause(lab, tmp_path, {
            dumped: dump,
            written: ('CREATE INDEX fdt_ix%(m)d ON public.fdt_item (created) TABLESPACE fdt_ts%(m)d;\n'
                      'CREATE TABLE public.fdt_item (id bigint);\n'
                      "COMMENT ON SCHEMA fdt_nowhere%(m)d IS 'x';\n"
                      'CREATE TABLE public.fdt_coll%(m)d (n text COLLATE public.fdt_nocoll%(m)d);\n'
                      'SET search_path TO fdt_nowhere%(m)d;\n'
                      'CREATE TABLE fdt_sp%(m)d (id int);\n' % names)},
            'patch_objects', 6,
            'SET default_tablespace = %s: invalid value for parameter "default_tablespace"' % space,
            'CREATE FOREIGN TABLE ...: server "fdt_srv%d" does not exist on this server: the window would fail on it '
            'and roll back -> create the foreign server first' % major,
            '%s line 1: CREATE INDEX fdt_ix%d ...: tablespace "%s" does not exist on this server' % (
                written, major, space),
            '%s line 2: CREATE TABLE public.fdt_item ...: relation "public.fdt_item" already exists on this server: '
            'the window would fail on it and roll back -> it is already there' % written,
            '%s line 3: COMMENT ON SCHEMA ...: schema "fdt_nowhere%d" does not exist on this server' % (written, major),
            '%s line 4: CREATE TABLE public.fdt_coll%d ...: collation "public.fdt_nocoll%d" does not exist' % (
                written, major, major),
            '%s line 6: CREATE TABLE fdt_sp%d ...: no schema has been selected to create in (search_path fdt_nowhere%d: '
            'none of them exists)' % (written, major, major))[0]
        assert not pg_one(lab, 'primary', 'SELECT to_regnamespace(%s) IS NOT NULL', (schema,))

        # As the lines say: dumped again without tablespaces and the foreign table, the patch written left out.
        os.remove(str(directory / written))
        (directory / dumped).write_text(again)
        proc, out, load = deploy_under_load(lab, tmp_path, str(directory))
        assert proc.returncode == 0, out[-3000:]
        assert 'patch_objects' not in out
        assert pg_one(lab, 'primary', "SELECT last_value FROM %s.ticket_seq" % schema) == 1001
        assert not load.errors, load.error_texts()

        # The same dump once more (a new revision): everything in it is there already.
        refused_before_any_pause(lab, tmp_path, {'patch-%d-02-0.sql' % major: again}, 'patch_objects', 1,
                                 'patch-%d-02-0.sql line ' % major,
                                 'CREATE SCHEMA %s ...: schema "%s" already exists on this server: the window would fail '
                                 'on it and roll back' % (schema, schema))
    finally:
        admin.cursor().execute('DROP SCHEMA IF EXISTS %s CASCADE' % schema)
        admin.cursor().execute('DROP DATABASE IF EXISTS %s WITH (FORCE)' % source)
        admin.cursor().execute('DROP TABLESPACE IF EXISTS %s' % space)
        admin.close()


def test_a_hot_index_build_is_refused_for_a_valid_index_of_its_name_not_for_an_invalid_one(lab, revision_table,
                                                                                           tmp_path):
    """A failed CREATE INDEX CONCURRENTLY leaves an INVALID index of its name, which the hot phase drops
    before it runs the statement again: patch_objects lets that run be; a valid index of the name would
    fail the hot phase ("relation ... already exists"), refused before anything runs."""
    admin = revision_table
    directory = tmp_path / 'patches'
    directory.mkdir()
    (directory / 'patch-2304-01-1.sql').write_text(
        'CREATE UNIQUE INDEX CONCURRENTLY fdt_dup_key ON fdt_preflight_test.dup (v);\n')
    admin.cursor().execute('CREATE TABLE fdt_preflight_test.dup (v int); INSERT INTO fdt_preflight_test.dup '
                           'VALUES (1), (1)')
    try:
        admin.cursor().execute('CREATE UNIQUE INDEX CONCURRENTLY fdt_dup_key ON fdt_preflight_test.dup (v)')
    except psycopg2.Error:
        pass   # the duplicate: the build fails, its INVALID index stays
    assert pg_one(lab, 'primary', "SELECT NOT indisvalid FROM pg_index WHERE indexrelid = "
                                  "'fdt_preflight_test.fdt_dup_key'::regclass")
    assert findings(run(lab, str(directory)), 'patch_objects', 'fail') == []

    admin.cursor().execute('DROP INDEX fdt_preflight_test.fdt_dup_key; DELETE FROM fdt_preflight_test.dup; '
                           'CREATE UNIQUE INDEX fdt_dup_key ON fdt_preflight_test.dup (v)')
    [failed] = findings(run(lab, str(directory)), 'patch_objects', 'fail')
    assert failed['summary'].endswith('patch-2304-01-1.sql line 1: CREATE UNIQUE INDEX ...: relation '
                                      '"fdt_preflight_test.fdt_dup_key" already exists on this server: the hot '
                                      'patch would fail on it, live, before the outage'), failed['summary']


def test_add_column_of_a_column_the_table_has_is_refused_and_if_not_exists_passes(lab, revision_table, tmp_path):
    """A patch applied once by hand, then deployed (the public immich #20676, hasura preview-apps #102 kind:
    "already exists" mid-migration): ALTER TABLE ... ADD COLUMN of a column the table has, ADD CONSTRAINT of a
    name it has, ALTER COLUMN of one it lacks passed the pre-flight and failed inside the window. Refused,
    one line each; ADD COLUMN IF NOT EXISTS passes."""
    directory = tmp_path / 'patches'
    directory.mkdir()
    patch = directory / 'patch-2305-01-0.sql'
    patch.write_text('ALTER TABLE public.fdt_item ADD COLUMN body text;\n'
                     'ALTER TABLE public.fdt_item ADD CONSTRAINT fdt_item_pkey PRIMARY KEY (id);\n'
                     'ALTER TABLE public.fdt_item ALTER COLUMN fdt_no_such_column SET NOT NULL;\n')
    failed = findings(run(lab, str(directory)), 'patch_objects', 'fail')
    assert [f['summary'].split(': ', 1)[1] for f in failed] == [
        'patch-2305-01-0.sql line 1: ALTER TABLE public.fdt_item ...: column "body" of relation "public.fdt_item" '
        'already exists on this server: the window would fail on it and roll back',
        'patch-2305-01-0.sql line 2: ALTER TABLE public.fdt_item ...: constraint "fdt_item_pkey" of relation '
        '"public.fdt_item" already exists on this server: the window would fail on it and roll back',
        'patch-2305-01-0.sql line 3: ALTER TABLE public.fdt_item ...: column "fdt_no_such_column" of relation '
        '"public.fdt_item" does not exist on this server: the window would fail on it and roll back']
    assert 'ADD COLUMN IF NOT EXISTS' in failed[0]['action']
    patch.write_text('ALTER TABLE public.fdt_item ADD COLUMN IF NOT EXISTS body text;\n')
    assert findings(run(lab, str(directory)), 'patch_objects', 'fail') == []
