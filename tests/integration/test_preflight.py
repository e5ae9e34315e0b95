"""Pre-flight against the real lab: each check made to fail for real, and a healthy lab passing.

The lab is shared: whatever a test breaks (a stopped standby, a paused entry, an
open transaction, a direct connection) is restored in its own ``finally``. The
patches check reads a revision table of its own (``fdt_preflight_test``), so
other tests' revision rows in fastdowntime.schema_revision do not matter.
"""

import contextlib
import os
import re
import select
import shutil
import subprocess
import sys
import threading
import time

import psycopg2
import pytest
from deploy import pg_one

from scenarios import pg_ctl, wait_streaming
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.patchset import load_patch, split_statements
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.pgbouncer_console import Console, probe
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import connect
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.preflight import CHECKS, CONNECTION_SLOTS_SQL, Preflight
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.schema import (
    SESSION_RESET_SQL, SchemaError, apply_hot, ensure_revision_table)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
LAB_PATCHES = os.path.join(REPO, 'lab', 'patches')
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
TEST_SCHEMA = 'fdt_preflight_test'
REVISION_TABLE = TEST_SCHEMA + '.schema_revision'
PG_CTL = '/usr/lib/postgresql/15/bin/pg_ctl'


@pytest.fixture
def revision_table(lab):
    """An empty revision table of this test's own on the primary, dropped afterwards."""
    with own_revision_table(lab) as conn:
        yield conn


@contextlib.contextmanager
def own_revision_table(lab):
    """revision_table's body, for a lab of another shape (test_postgresql_versions)."""
    conn = connect(lab.pg('primary'), autocommit=True)
    try:
        conn.cursor().execute('DROP SCHEMA IF EXISTS %s CASCADE' % TEST_SCHEMA)
        ensure_revision_table(conn, REVISION_TABLE)
        yield conn
    finally:
        try:
            conn.cursor().execute('DROP SCHEMA IF EXISTS %s CASCADE' % TEST_SCHEMA)
        except psycopg2.OperationalError:  # the test restarted the primary
            conn = connect(lab.pg('primary'), autocommit=True)
            conn.cursor().execute('DROP SCHEMA IF EXISTS %s CASCADE' % TEST_SCHEMA)
        conn.close()


@pytest.fixture
def patch_dir(tmp_path):
    """A copy of the lab's patches (one hot, three cold), free to change."""
    directory = tmp_path / 'patches'
    shutil.copytree(LAB_PATCHES, directory)
    return str(directory)


def run(lab, patch_dir, **options):
    standbys = []
    for name in ('standby1', 'standby2'):
        bouncer = 'pgbouncer1' if name == 'standby1' else 'pgbouncer2'
        standbys.append(dict(lab.pg(name), pgbouncer_entries=['%s:%s_ro' % (bouncer, lab.db_name)]))
    kwargs = dict(primary=lab.pg('primary'), standbys=standbys,
                  pgbouncers=[lab.pgbouncer('pgbouncer1'), lab.pgbouncer('pgbouncer2')], db_name=lab.db_name,
                  patch_dir=patch_dir, budget_seconds=10, revision_table=REVISION_TABLE, max_lag_seconds=10)
    kwargs.update(options)
    return Preflight(**kwargs).run()


# What a session forgotten in a transaction read: ACCESS SHARE on the table the lab's cold patches ALTER.
READ_ITEMS = 'SELECT pg_backend_pid(), count(*) FROM fdt_item'


def admin_scalar(conn, sql, params=None):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone()[0]


def open_transaction(conn, sql='SELECT pg_backend_pid()'):
    """Run ``sql`` (first column: the backend's pid) on ``conn`` and leave its
    transaction open (idle in transaction); returns the pid."""
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()[0]


def findings(result, check, status=None):
    return [f for f in result['checks'] if f['check'] == check and (status is None or f['status'] == status)]


def assert_refused_by(result, check, text):
    assert not result['passed'] and result['outcome'] == 'refused by pre-flight', result['summary']
    failed = findings(result, check, 'fail')
    assert failed, result['summary']
    assert any(text in f['summary'] for f in failed), result['summary']
    assert all(f['action'] for f in failed)
    assert any(line.startswith('FAIL %s:' % check) and text in line for line in result['summary_lines'])
    assert result['phases'][0]['phase'] == 'preflight' and result['phases'][0]['status'] == 'failed'


def test_healthy_lab_passes_every_check(lab, revision_table, patch_dir):
    result = run(lab, patch_dir)
    assert result['passed'], result['summary']
    assert result['outcome'] == 'passed' and result['counts']['fail'] == 0
    assert {f['check'] for f in result['checks']} == set(CHECKS)
    patches = findings(result, 'patches')[0]
    assert [p['name'] for p in patches['evidence']['pending']] == sorted(
        n for n in os.listdir(patch_dir) if n.endswith('.sql'))
    assert patches['evidence']['pending'][0]['kind'] == 'hot'
    assert len(findings(result, 'replication_lag', 'pass')) == 2
    assert 0 < result['estimate']['total_ms'] < 10000
    # The primary's time per catalog statement, measured by a probe rolled back (nothing of it is left).
    measured = result['estimate']['statement_seconds_measured']
    assert 0 < measured < 0.1 and result['estimate']['statement_seconds'] == pytest.approx(max(measured, 0.0001), abs=1e-6)
    assert pg_one(lab, 'primary', "SELECT count(*) FROM pg_class WHERE relname LIKE 'fastdowntime_probe%%'") == 0
    # The cold transaction's fixed cost (round trip, BEGIN, COMMIT and its WAL flush), as the probe took it.
    assert 0 < result['estimate']['transaction_seconds'] < 1
    assert result['estimate']['cold_patches_ms'] >= result['estimate']['transaction_seconds'] * 1000 - 0.1
    assert result['phases'][0]['status'] == 'ok' and result['phases'][0]['duration_ms'] > 0


def test_the_estimated_drain_waits_for_a_transaction_open_through_pgbouncer(lab, revision_table, patch_dir):
    """A query running through pgbouncer1 when the pre-flight looks: a PAUSE then would wait for it,
    so the estimate's drain counts it (pg_stat_activity on pgbouncer's server connection)."""
    client = psycopg2.connect(lab.client_dsn('pgbouncer1'))
    client.autocommit = True
    sleeper = threading.Thread(target=lambda: client.cursor().execute('SELECT pg_sleep(5)'))
    sleeper.start()
    try:
        time.sleep(1)
        result = run(lab, patch_dir)
    finally:
        sleeper.join()
        client.close()
    estimate = result['estimate']
    assert 1.0 <= estimate['xact_seconds'] < 5.5, estimate
    assert estimate['drain_ms'] >= estimate['xact_seconds'] * 1000


def test_lag_probe_is_flushed_so_the_standbys_get_it_at_once(lab):
    """The probe the replay estimate is measured with must not sit unflushed
    in the WAL buffers (a non-transactional message does, up to
    wal_writer_delay, and was measured as the standbys' catch-up)."""
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.replication import LAG_PROBE_SQL
    conn = connect(lab.pg('primary'), autocommit=True)
    try:
        cur = conn.cursor()
        cur.execute(LAG_PROBE_SQL)
        lsn = cur.fetchone()[0]
        cur.execute('SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn', (lsn,))
        assert cur.fetchone()[0] is True
    finally:
        conn.close()


@pytest.mark.faults
def test_stopped_standby_is_refused(lab, revision_table, patch_dir):
    pgdata = os.path.join(lab.lab_dir, 'hosts', 'standby1', 'pgdata')
    log = os.path.join(lab.lab_dir, 'hosts', 'standby1', 'log', 'postgresql.log')
    lab.ns_exec('standby1', 'runuser', '-u', 'postgres', '--', PG_CTL, '-D', pgdata, 'stop', '-m', 'fast')
    try:
        result = run(lab, patch_dir)
    finally:
        lab.ns_exec('standby1', 'runuser', '-u', 'postgres', '--', PG_CTL, '-D', pgdata, '-l', log, '-w', 'start')
        wait_streaming(lab, 2)
    assert_refused_by(result, 'standbys', 'standby1 (%s:5432): not reached' % lab.addr('standby1'))
    assert_refused_by(result, 'connection', 'standby1')
    assert 'connection refused' in findings(result, 'connection', 'fail')[0]['summary']
    # The other checks still ran: every finding is collected.
    assert findings(result, 'pgbouncer', 'pass') and findings(result, 'budget')
    # One cause, one line: pgbouncer1's standby entry gets no answer because standby1 is down,
    # not because someone paused it.
    assert findings(result, 'pgbouncer', 'fail') == [], result['summary']
    assert 'got no answer' not in result['summary'], result['summary']


@pytest.mark.faults
def test_transaction_open_past_the_threshold_is_refused(lab, revision_table, patch_dir):
    holder = connect(lab.pg('primary'), application_name='preflight-test-holder')
    try:
        cur = holder.cursor()
        cur.execute('SELECT pg_backend_pid(), txid_current()')
        pid = cur.fetchone()[0]
        time.sleep(1.5)
        result = run(lab, patch_dir, max_transaction_seconds=1)
    finally:
        holder.close()
    assert_refused_by(result, 'transactions', 'pid %d' % pid)
    failed = findings(result, 'transactions', 'fail')[0]
    assert 'pg_terminate_backend(%d)' % pid in failed['action']
    assert failed['host'].startswith('primary')


@pytest.mark.faults
def test_sessions_that_would_hold_the_outage_are_refused_and_the_knobs_warn(lab, revision_table, patch_dir):
    """The lab's cold patches ALTER fdt_item (ACCESS EXCLUSIVE): a direct session idle in a
    transaction that read it (ACCESS SHARE) and a client through pgbouncer1 idle in a
    transaction are refused, each named; drain_policy terminate and blocking_sessions warn
    turn them into warnings. A client that ends its transaction at once is ordinary traffic."""
    direct = connect(lab.pg('primary'), application_name='dba_psql')
    through = psycopg2.connect(lab.client_dsn('pgbouncer1'), application_name='stuck-client')
    try:
        direct_pid = open_transaction(direct, READ_ITEMS)
        through_pid = open_transaction(through, READ_ITEMS)
        time.sleep(1.2)  # idle in transaction for longer than a pause between two statements
        # Ordinary traffic meanwhile: short transactions on the same table through pgbouncer2, never
        # named (a client left idle in a transaction for a fixed time before the pre-flight was: the
        # pre-flight itself takes about a second on a busy machine).
        with lab.load(writers=('pgbouncer2',)) as load:
            refused = run(lab, patch_dir)
        assert load.transactions() > 0 and not load.errors
        terminate = run(lab, patch_dir, drain_policy='terminate', blocking_sessions='warn')
    finally:
        direct.close()
        through.close()
    assert_refused_by(refused, 'blocking_sessions', 'pid %d (user fdt_deploy, application \'dba_psql\', from '
                      % direct_pid)
    failed = findings(refused, 'blocking_sessions', 'fail')
    assert len(failed) == 1 and failed[0]['host'].startswith('primary'), refused['summary']
    summary = failed[0]['summary']
    assert 'holds ACCESS SHARE on fdt_item, which patch-2300-01-0.sql line 3 needs in ACCESS EXCLUSIVE' in summary
    assert 'pid %d (user fdt_app, application \'stuck-client\'' % through_pid in summary
    assert 'through pgbouncer1, idle in transaction for' in summary
    assert len(re.findall(r'pid \d+ \(user ', summary)) == 2, summary
    assert [line for line in refused['summary_lines'] if line.startswith('FAIL blocking_sessions:')] == [
        'FAIL blocking_sessions: ' + summary]
    warned = findings(terminate, 'blocking_sessions', 'warn')
    assert len(warned) == 1 and not findings(terminate, 'blocking_sessions', 'fail'), terminate['summary']
    assert 'with drain_policy terminate, terminates it' in warned[0]['summary']
    assert '(fastdowntime_blocking_sessions: warn)' in warned[0]['summary']


def test_blocking_sessions_warn_vouches_for_a_client_the_drain_estimate_then_leaves_out(
        lab, revision_table, patch_dir):
    """try 6, defect 3b: a client idle in a transaction through pgbouncer1 for longer than the
    usable budget (2 s budget: 1.6 s). Refused by blocking_sessions, and the budget's refusal names
    the drain, not the statements. With fastdowntime_blocking_sessions: warn (the operator knows it
    ends in time) the budget prices the drain without it and says so: no refusal left."""
    through = psycopg2.connect(lab.client_dsn('pgbouncer1'), application_name='stuck-client')
    try:
        pid = open_transaction(through, READ_ITEMS)
        time.sleep(2.2)  # open longer than the usable budget
        refused = run(lab, patch_dir, budget_seconds=2)
        warned = run(lab, patch_dir, budget_seconds=2, blocking_sessions='warn')
    finally:
        through.close()
    assert_refused_by(refused, 'blocking_sessions', 'pid %d (user fdt_app' % pid)
    [budget] = findings(refused, 'budget', 'fail')
    assert 'the drain dominates: the PAUSE waits' in budget['summary'], budget['summary']
    assert budget['action'].startswith('end the transactions open through pgbouncer'), budget['action']
    assert warned['passed'], warned['summary']
    assert findings(warned, 'blocking_sessions', 'warn'), warned['summary']
    [budget] = findings(warned, 'budget')
    assert budget['status'] != 'fail', budget['summary']
    assert 'the drain leaves out pid %d on primary, which fastdowntime_blocking_sessions: warn vouches for' % pid \
        in budget['summary'], budget['summary']
    assert warned['estimate']['xact_seconds'] < 1.6, warned['estimate']


@pytest.mark.faults
def test_what_a_hot_create_index_concurrently_would_wait_out_is_named_before_anything_runs(
        lab, revision_table, patch_dir):
    """A hot CREATE INDEX CONCURRENTLY waits for every transaction of the database with an older
    snapshot (a session idle in a REPEATABLE READ transaction, whatever it read) and for the lockers
    of its table (a prepared transaction that wrote it). Today's hot phase retries its lock and fails
    after its attempts (apply_hot, shown with 2); the pre-flight names both, in one line, before
    anything runs. A READ COMMITTED session idle in a transaction holds no snapshot: not named."""
    gid = 'fdt-hot-wait-test'
    reader = connect(lab.pg('primary', user='fdt_app'), application_name='report-rr')
    plain = connect(lab.pg('primary', user='fdt_app'), application_name='idle-rc')
    coordinator = psycopg2.connect(lab.dsn(lab.pg('primary', user='fdt_app')))
    admin = connect(lab.pg('primary'), autocommit=True)
    hot_dir = os.path.join(os.path.dirname(patch_dir), 'hot')
    os.makedirs(hot_dir)
    with open(os.path.join(hot_dir, 'patch-2300-00-1.sql'), 'w') as out:
        out.write('CREATE INDEX CONCURRENTLY fdt_hot_wait_idx ON fdt_item (id);\n')
    try:
        reader.set_session(isolation_level='REPEATABLE READ')
        reader_pid = open_transaction(reader)
        plain_pid = open_transaction(plain)
        time.sleep(1.2)  # idle in transaction for longer than a pause between two statements
        hot = load_patch(os.path.join(hot_dir, 'patch-2300-00-1.sql'))
        with pytest.raises(SchemaError) as failed_hot:
            apply_hot(admin, hot, revision_table=REVISION_TABLE, lock_retry={'max_attempts': 2})
        with coordinator.cursor() as cur:
            cur.execute('UPDATE fdt_item SET body = body WHERE false')
            cur.execute('PREPARE TRANSACTION %s', (gid,))
        result = run(lab, patch_dir)
    finally:
        for conn in (reader, plain, coordinator):
            conn.close()
        with admin.cursor() as cur:
            cur.execute('SELECT gid FROM pg_prepared_xacts WHERE gid = %s', (gid,))
            if cur.fetchone():
                cur.execute('ROLLBACK PREPARED %s', (gid,))
            cur.execute('DROP INDEX IF EXISTS fdt_hot_wait_idx')
        admin.close()
    # Today's hot phase: no hang - its lock attempts run out, the INVALID index is dropped.
    message = str(failed_hot.value)
    assert 'patch-2300-00-1.sql line 1: could not lock after 2 attempts' in message, message
    assert 'dropped the INVALID index' in message, message
    assert_refused_by(result, 'hot_patch_waits', "pid %d (user fdt_app, application 'report-rr'" % reader_pid)
    [failed] = findings(result, 'hot_patch_waits', 'fail')
    summary = failed['summary']
    assert failed['host'].startswith('primary (') and summary.startswith(failed['host'] + ': pid %d' % reader_pid)
    assert ('holds a snapshot, which patch-2300-00-1.sql line 4 (CREATE INDEX CONCURRENTLY) waits out (every '
            'transaction of database %s with an older snapshot)' % lab.db_name) in summary, summary
    assert ("prepared transaction 'fdt-hot-wait-test' (owner fdt_app, database %s, prepared " % lab.db_name) in summary
    assert 'holds ROW EXCLUSIVE on fdt_item, which patch-2300-00-1.sql line 4 (CREATE INDEX CONCURRENTLY) waits out' \
        in summary, summary
    assert 'pid %d ' % plain_pid not in summary, summary
    assert 'SELECT pg_terminate_backend(pid) for pid %d' % reader_pid in summary
    assert "ROLLBACK PREPARED 'fdt-hot-wait-test'" in summary
    assert [line for line in result['summary_lines'] if line.startswith('FAIL hot_patch_waits:')] == [
        'FAIL hot_patch_waits: ' + summary]


def run_until_canceled(conn, sql):
    """Run ``sql`` on ``conn`` until pg_cancel_backend ends it (the test's own cancel)."""
    try:
        conn.cursor().execute(sql)
    except psycopg2.errors.QueryCanceled:
        pass


# The deploy's own lock retries (role schema_apply's schema_apply_lock_retry): 3 tries of 1 s, no pause - 3 s.
THREE_SECONDS_OF_RETRIES = {'timeout_ms': 1000, 'max_timeout_ms': 1000, 'pause_ms': 0, 'max_attempts': 3}


@pytest.mark.faults
def test_a_hot_detach_partition_concurrently_is_priced_with_the_deploy_s_own_lock_retries(
        lab, revision_table, patch_dir):
    """A hot ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY waits out every locker of the partitioned table
    itself: a report reading fdt_dp for 4 s (active) outlasts the deploy's 3 s of lock retries (named before
    anything runs), not the default 13 s (passed); a session that read only the other partition holds nothing it
    waits for (never named). The hot phase, canceled by lock_timeout after the detach's first transaction,
    leaves the partition pending detach; its next run completes it with FINALIZE (the statement again failed:
    'already pending detach')."""
    admin = connect(lab.pg('primary'), autocommit=True)
    report = connect(lab.pg('primary', user='fdt_app'), application_name='report-parent')
    sibling = connect(lab.pg('primary', user='fdt_app'), application_name='report-sibling')
    admin.cursor().execute(
        'DROP TABLE IF EXISTS fdt_dp, fdt_dp2; CREATE TABLE fdt_dp (id int) PARTITION BY LIST (id); '
        'CREATE TABLE fdt_dp1 PARTITION OF fdt_dp FOR VALUES IN (1); '
        'CREATE TABLE fdt_dp2 PARTITION OF fdt_dp FOR VALUES IN (2); GRANT SELECT ON fdt_dp, fdt_dp1 TO fdt_app')
    path = os.path.join(patch_dir, 'patch-2300-04-1.sql')
    with open(path, 'w') as out:
        out.write('ALTER TABLE fdt_dp DETACH PARTITION fdt_dp2 CONCURRENTLY;\n')
    sleeping = None
    try:
        report_pid = open_transaction(report, 'SELECT pg_backend_pid(), count(*) FROM fdt_dp')
        sibling_pid = open_transaction(sibling, 'SELECT pg_backend_pid(), count(*) FROM fdt_dp1')
        sleeping = threading.Thread(target=run_until_canceled, args=(report, 'SELECT pg_sleep(60)'), daemon=True)
        sleeping.start()   # the report's transaction stays active
        time.sleep(4)
        own = run(lab, patch_dir, lock_retry=THREE_SECONDS_OF_RETRIES)
        default = run(lab, patch_dir)
        hot = load_patch(path)
        with pytest.raises(SchemaError) as canceled:
            apply_hot(admin, hot, revision_table=REVISION_TABLE, lock_retry={'timeout_ms': 300, 'max_attempts': 2})
        with admin.cursor() as cur:
            cur.execute("SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = 'fdt_dp2'::regclass")
            pending = cur.fetchall()
            cur.execute('SELECT pg_cancel_backend(%s)', (report_pid,))
        sleeping.join(10)
        report.rollback()
        applied = apply_hot(admin, hot, revision_table=REVISION_TABLE, lock_retry=THREE_SECONDS_OF_RETRIES)
        with admin.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_inherits WHERE inhrelid = 'fdt_dp2'::regclass")
            still_partition = cur.fetchone()[0]
    finally:
        for conn in (report, sibling):
            conn.close()
        admin.cursor().execute('DROP TABLE IF EXISTS fdt_dp, fdt_dp2')
        admin.close()
    assert_refused_by(own, 'hot_patch_waits', "pid %d (user fdt_app, application 'report-parent'" % report_pid)
    [failed] = findings(own, 'hot_patch_waits', 'fail')
    assert ('holds ACCESS SHARE on fdt_dp, which patch-2300-04-1.sql line 1 (ALTER TABLE ... DETACH PARTITION ... '
            'CONCURRENTLY) waits out') in failed['summary'], failed['summary']
    assert 'the hot phase would wait for them 3 s, then fail' in failed['summary'], failed['summary']
    assert failed['evidence']['wait_seconds'] == 3.0
    assert 'pid %d ' % sibling_pid not in failed['summary'], failed['summary']
    [passed] = findings(default, 'hot_patch_waits', 'pass')
    assert passed['evidence']['wait_seconds'] > 13, passed['evidence']
    # The hot DETACH ... CONCURRENTLY is no lint error (it was 'CONCURRENTLY cannot run inside the outage's
    # transaction', refusing every such deploy).
    assert not [f for f in findings(default, 'lint', 'fail') if 'patch-2300-04-1.sql' in f['summary']], \
        default['summary_lines']
    message = str(canceled.value)
    assert 'patch-2300-04-1.sql line 1: could not lock after 2 attempts' in message, message
    assert ('its partition is left pending detach: the next run completes it (ALTER TABLE fdt_dp DETACH PARTITION '
            'fdt_dp2 FINALIZE)') in message, message
    assert pending == [(True,)]
    assert applied['name'] == 'patch-2300-04-1.sql' and still_partition == 0


def test_a_holder_of_the_table_a_cold_patch_attaches_as_a_partition_is_refused(lab, revision_table, patch_dir):
    """ATTACH PARTITION takes the partitioned table in SHARE UPDATE EXCLUSIVE and the table it attaches in
    ACCESS EXCLUSIVE; that table is no partition yet, so no pg_inherits row leads from the one to the other. A
    session idle in a transaction that read it held the window its whole budget; refused naming it."""
    admin = connect(lab.pg('primary'), autocommit=True)
    holder = connect(lab.pg('primary'), application_name='loader')
    try:
        admin.cursor().execute('DROP TABLE IF EXISTS fdt_ap, fdt_ap2; CREATE TABLE fdt_ap (id int) PARTITION BY LIST '
                               '(id); CREATE TABLE fdt_ap2 (id int)')
        with open(os.path.join(patch_dir, 'patch-2300-09-0.sql'), 'w') as out:
            out.write('ALTER TABLE fdt_ap ATTACH PARTITION fdt_ap2 FOR VALUES IN (2);\n')
        pid = open_transaction(holder, 'SELECT pg_backend_pid(), count(*) FROM fdt_ap2')
        time.sleep(1.2)  # idle in transaction for longer than a pause between two statements
        result = run(lab, patch_dir)
    finally:
        holder.close()
        admin.cursor().execute('DROP TABLE IF EXISTS fdt_ap, fdt_ap2')
        admin.close()
    assert_refused_by(result, 'blocking_sessions', "pid %d (user fdt_deploy, application 'loader'" % pid)
    [failed] = findings(result, 'blocking_sessions', 'fail')
    assert 'holds ACCESS SHARE on fdt_ap2, which patch-2300-09-0.sql line 1 needs in ACCESS EXCLUSIVE' \
        in failed['summary'], failed['summary']


# tryit6 defect 4 and its kind: the window resolves a cold statement's unqualified name in the search_path
# its patch set (each patch starts from the deploy session's own: the window's RESET ALL between patches).
SEARCH_PATH_PATCHES = {
    'set': ['SET search_path = fdt_sp, public;\nALTER TABLE t_sp ADD COLUMN z int;'],
    'set_config': ["SELECT set_config('search_path', 'fdt_sp, public', false);\nALTER TABLE t_sp ADD COLUMN z int;"],
    'set_local': ['SET LOCAL search_path = fdt_sp;\nALTER TABLE t_sp ADD COLUMN z int;'],
    'role_setting': ['ALTER TABLE t_sp ADD COLUMN z int;'],
    'database_setting': ['ALTER TABLE t_sp ADD COLUMN z int;'],
    # A DO block's own SET at the top of its body: followed.
    'do_block': ['DO $$ BEGIN SET search_path = fdt_sp, public; END $$;\nALTER TABLE t_sp ADD COLUMN z int;'],
    # Dynamic SQL in a DO block: only running it would tell, so every schema's t_sp counts (and the lint warns).
    'do_execute': ["DO $$ BEGIN EXECUTE format('SET search_path = %I, public', 'fdt_sp'); END $$;\n"
                   'ALTER TABLE t_sp ADD COLUMN z int;'],
    # Not the held table: public.t_sp after RESET, and after the patch that SET the path.
    'reset': ['SET search_path = fdt_sp;\nRESET search_path;\nALTER TABLE t_sp ADD COLUMN z int;'],
    'next_patch': ['SET search_path = fdt_sp;\nSELECT 1;', 'ALTER TABLE t_sp ADD COLUMN z int;'],
    # ... nor under a function's own SET clause (in force while it runs), nor after ALTER ROLE ... SET (new
    # sessions only: the window's keeps the path it logged in with, RESET ALL included).
    'function_set': ["CREATE FUNCTION fdt_sp_f() RETURNS int LANGUAGE sql SET search_path = fdt_sp AS 'SELECT 1';\n"
                     'SELECT fdt_sp_f();\nALTER TABLE t_sp ADD COLUMN z int;'],
    'alter_role': ['ALTER ROLE CURRENT_USER SET search_path = fdt_sp, public;\nRESET ALL;\n'
                   'ALTER TABLE t_sp ADD COLUMN z int;'],
}
PASSED_SEARCH_PATH_CASES = ('reset', 'next_patch', 'function_set', 'alter_role')


def altered_by_the_patches(lab, texts):
    """Which t_sp the patches ALTER when PostgreSQL runs them as the window does (the deploy user's
    session, one transaction, the session reset between patches), rolled back: its schema."""
    conn = connect(lab.pg('primary'))
    try:
        with conn.cursor() as cur:
            cur.execute("SET LOCAL lock_timeout = '5s'")
            for text in texts:
                for statement in split_statements(text):
                    cur.execute(statement.sql)
                cur.execute(SESSION_RESET_SQL)
            cur.execute("SELECT c.relnamespace::regnamespace::text FROM pg_attribute a JOIN pg_class c "
                        "ON c.oid = a.attrelid WHERE a.attname = 'z' AND c.relname = 't_sp'")
            return [row[0] for row in cur.fetchall()]
    finally:
        conn.rollback()
        conn.close()


@pytest.mark.parametrize('case', sorted(SEARCH_PATH_PATCHES))
def test_a_lock_holder_is_found_in_the_search_path_the_patch_sets(lab, revision_table, patch_dir, case):
    """fdt_sp.t_sp is held (ACCESS SHARE) by a forgotten psql; public.t_sp is not. A cold patch
    ALTERs t_sp under a search_path of its own (SET, set_config, SET LOCAL, the database's or the deploy user's
    role setting in the database): refused naming the holder and the table; RESET search_path, or
    the next patch (the window resets the session between patches), resolve t_sp in public: passed."""
    admin = connect(lab.pg('primary'), autocommit=True)
    holder = connect(lab.pg('primary'), application_name='dba_psql')
    try:
        admin.cursor().execute('DROP SCHEMA IF EXISTS fdt_sp CASCADE; DROP TABLE IF EXISTS public.t_sp; '
                               'CREATE SCHEMA fdt_sp; CREATE TABLE fdt_sp.t_sp (id int); CREATE TABLE public.t_sp (id int)')
        if case == 'role_setting':
            admin.cursor().execute('ALTER ROLE fdt_deploy IN DATABASE %s SET search_path = fdt_sp, public' % lab.db_name)
        if case == 'database_setting':
            admin.cursor().execute('ALTER DATABASE %s SET search_path = fdt_sp, public' % lab.db_name)
        for number, text in enumerate(SEARCH_PATH_PATCHES[case], start=1):
            with open(os.path.join(patch_dir, 'patch-2300-%02d-0.sql' % (8 + number)), 'w') as out:
                out.write(text + '\n')
        # What PostgreSQL itself does with the patches: the table the model must name.
        altered = altered_by_the_patches(lab, SEARCH_PATH_PATCHES[case])
        pid = open_transaction(holder, 'SELECT pg_backend_pid(), count(*) FROM fdt_sp.t_sp')
        time.sleep(1.2)  # idle in transaction for longer than a pause between two statements
        result = run(lab, patch_dir)
    finally:
        holder.close()
        admin.cursor().execute('ALTER ROLE fdt_deploy IN DATABASE {0} RESET search_path; ALTER DATABASE {0} RESET '
                               'search_path; DROP SCHEMA IF EXISTS fdt_sp CASCADE; DROP TABLE IF EXISTS public.t_sp'
                               .format(lab.db_name))
        admin.close()
    assert altered == (['public'] if case in PASSED_SEARCH_PATH_CASES else ['fdt_sp']), altered
    if case in PASSED_SEARCH_PATH_CASES:
        assert findings(result, 'blocking_sessions', 'pass'), result['summary']
        assert not findings(result, 'blocking_sessions', 'fail'), result['summary']
        return
    assert_refused_by(result, 'blocking_sessions', "pid %d (user fdt_deploy, application 'dba_psql'" % pid)
    [failed] = findings(result, 'blocking_sessions', 'fail')
    # Named as the deploy user's own search_path shows it (with a role or database setting: t_sp is fdt_sp's).
    setting = case.endswith('_setting')
    unknown = [f for f in result['lint'] if 'search-path-unknown' in f['rules']]
    assert [(f['file'], f['line']) for f in unknown] == ([('patch-2300-09-0.sql', 1)] if case == 'do_execute' else [])
    assert all('dynamic SQL' in f['summary'] and 'looked for in every schema' in f['summary'] for f in unknown)
    assert 'holds ACCESS SHARE on %s, which patch-2300-09-0.sql line %d needs in ACCESS EXCLUSIVE' % (
        ('t_sp', 1) if setting else ('fdt_sp.t_sp', 2)) in failed['summary'], failed['summary']
    needed = [r['relation'] for r in failed['evidence']['required_locks'] if r['patch'] == 'patch-2300-09-0.sql']
    assert needed == [{'set': 't_sp (search_path fdt_sp, public)', 'set_config': 't_sp (search_path fdt_sp, public)',
                       'set_local': 't_sp (search_path fdt_sp)', 'role_setting': 't_sp', 'database_setting': 't_sp',
                       'do_block': 't_sp (search_path fdt_sp, public)',
                       'do_execute': 't_sp (search_path unknown until the patch runs: any schema)'}[case]]


# ATTACH/DETACH PARTITION and CREATE TABLE ... PARTITION OF take the partitioned table alone and its DEFAULT
# partition in ACCESS EXCLUSIVE; a patch's own TEMP table shadows a permanent one of its name (pg_temp is
# searched first unless the path lists it later). case -> (the patch, what a forgotten psql holds), each
# checked against PostgreSQL itself: does the patch, run as the window runs it, wait for that session?
PARTITION_SETUP = (
    'DROP TABLE IF EXISTS fdt_pf_ev, fdt_pf_new, fdt_stage; '
    'CREATE TABLE fdt_pf_ev (id int, k int) PARTITION BY RANGE (k); '
    'CREATE TABLE fdt_pf_ev_1 PARTITION OF fdt_pf_ev FOR VALUES FROM (0) TO (100); '
    'CREATE TABLE fdt_pf_ev_default PARTITION OF fdt_pf_ev DEFAULT; '
    'CREATE TABLE fdt_pf_new (id int, k int); CREATE TABLE fdt_stage (id int)')
ATTACH_NEW = 'ALTER TABLE fdt_pf_ev ATTACH PARTITION fdt_pf_new FOR VALUES FROM (100) TO (200);'
FIELD_LOCK_CASES = {
    'attach_default_reader': (ATTACH_NEW, 'SELECT pg_backend_pid(), count(*) FROM fdt_pf_ev_default'),
    'attach_sibling_reader': (ATTACH_NEW, 'SELECT pg_backend_pid(), count(*) FROM fdt_pf_ev_1'),
    'create_partition_default_writer': (
        'CREATE TABLE fdt_pf_ev_2 PARTITION OF fdt_pf_ev FOR VALUES FROM (200) TO (300);',
        'INSERT INTO fdt_pf_ev_default VALUES (1, 1000) RETURNING pg_backend_pid()'),
    'detach_default_reader': ('ALTER TABLE fdt_pf_ev DETACH PARTITION fdt_pf_ev_1;',
                              'SELECT pg_backend_pid(), count(*) FROM fdt_pf_ev_default'),
    # sqlc issue 181's and atlas issue 3574's patches: a scratch TEMP table, the same name in two patches.
    'temp_table': ('CREATE TEMP TABLE fdt_stage (id int);\nALTER TABLE fdt_stage ADD COLUMN z int;\n'
                   'INSERT INTO pg_temp.fdt_stage SELECT 1;\nUPDATE fdt_stage SET z = 1;\n\n'
                   'CREATE TEMP TABLE fdt_stage (id int);\nLOCK TABLE fdt_stage;',
                   'SELECT pg_backend_pid(), count(*) FROM fdt_stage'),
    # timescaledb PR 4288's placement: pg_temp listed last - the permanent table is found first.
    'temp_table_listed_last': ('SET search_path = public, pg_temp;\nCREATE TEMP TABLE fdt_stage (id int);\n'
                               'ALTER TABLE fdt_stage ADD COLUMN z int;',
                               'SELECT pg_backend_pid(), count(*) FROM fdt_stage'),
    # ... and where the deploy user's own search_path (a role setting, ROLE_PATHS) lists it last.
    'temp_table_role_path_last': ('CREATE TEMP TABLE fdt_stage (id int);\nALTER TABLE fdt_stage ADD COLUMN z int;',
                                  'SELECT pg_backend_pid(), count(*) FROM fdt_stage'),
}
ROLE_PATHS = {'temp_table_role_path_last': 'public, pg_temp'}


def waits_for_the_holder(lab, text):
    """Does PostgreSQL, running ``text`` as the window does (the deploy user's session, one transaction,
    the session reset between patches - a blank line splits two here), wait for a lock? Rolled back."""
    conn = connect(lab.pg('primary'))
    try:
        with conn.cursor() as cur:
            cur.execute("SET LOCAL lock_timeout = '1s'")
            for patch_text in text.split('\n\n'):
                for statement in split_statements(patch_text):
                    cur.execute(statement.sql)
                cur.execute(SESSION_RESET_SQL)
        return False
    except psycopg2.errors.LockNotAvailable:
        return True
    finally:
        conn.rollback()
        conn.close()


@pytest.mark.parametrize('case', sorted(FIELD_LOCK_CASES))
def test_a_partition_s_default_partition_and_a_temporary_table_are_resolved_as_postgresql_locks_them(
        lab, revision_table, patch_dir, case):
    """A forgotten psql idle in its transaction: refused before any PAUSE exactly when PostgreSQL would make the
    cold patches wait for it - a reader or writer of the DEFAULT partition of a table a patch attaches to,
    detaches from or creates a partition of (named as that DEFAULT partition); not a reader of another
    partition (the partitioned table is locked alone), nor of a permanent table a patch's own TEMP table
    shadows."""
    field_lock_case(lab, patch_dir, case)


def field_lock_case(lab, patch_dir, case):
    """FIELD_LOCK_CASES[case] on ``lab`` (test_postgresql_versions runs it on each version's shape)."""
    admin = connect(lab.pg('primary'), autocommit=True)
    holder = connect(lab.pg('primary'), application_name='dba_psql')
    text, held = FIELD_LOCK_CASES[case]
    try:
        admin.cursor().execute(PARTITION_SETUP)
        if case in ROLE_PATHS:
            admin.cursor().execute('ALTER ROLE fdt_deploy IN DATABASE %s SET search_path = %s' % (
                lab.db_name, ROLE_PATHS[case]))
        for number, patch_text in enumerate(text.split('\n\n'), start=1):
            with open(os.path.join(patch_dir, 'patch-2300-%02d-0.sql' % (8 + number)), 'w') as out:
                out.write(patch_text + '\n')
        pid = open_transaction(holder, held)
        time.sleep(1.2)  # idle in transaction for longer than a pause between two statements
        waits = waits_for_the_holder(lab, text)
        result = run(lab, patch_dir)
    finally:
        holder.close()
        admin.cursor().execute('ALTER ROLE fdt_deploy IN DATABASE %s RESET search_path; '
                               'DROP TABLE IF EXISTS fdt_pf_ev, fdt_pf_new, fdt_stage' % lab.db_name)
        admin.close()
    assert waits == (case in ('attach_default_reader', 'create_partition_default_writer', 'detach_default_reader',
                              'temp_table_listed_last', 'temp_table_role_path_last')), (case, waits)
    if not waits:
        assert findings(result, 'blocking_sessions', 'pass'), result['summary']
        return
    assert_refused_by(result, 'blocking_sessions', "pid %d (user fdt_deploy, application 'dba_psql'" % pid)
    [failed] = findings(result, 'blocking_sessions', 'fail')
    if not case.startswith('temp_table'):
        assert 'on fdt_pf_ev_default, which patch-2300-09-0.sql line 1 needs in ACCESS EXCLUSIVE (as the DEFAULT ' \
               'partition of fdt_pf_ev)' in failed['summary'], failed['summary']
        assert 'the DEFAULT partition of fdt_pf_ev' in [r['relation'] for r in failed['evidence']['required_locks']]
    else:
        assert 'holds ACCESS SHARE on fdt_stage, which patch-2300-09-0.sql line %d needs in ACCESS EXCLUSIVE' % (
            2 if case in ROLE_PATHS else 3) in failed['summary'], failed['summary']


@pytest.mark.faults
def test_a_prepared_transaction_holding_a_lock_the_cold_patches_need_is_refused(
        lab, revision_table, patch_dir, consoles):
    """Two-phase commit: an application's transaction manager PREPAREd a transaction that wrote
    fdt_item (ROW EXCLUSIVE), which the lab's cold patches ALTER (ACCESS EXCLUSIVE). It has no
    session: the cold transaction would wait for it the whole budget. Refused in one line naming the
    gid, owner, database, age, lock and patch line and how to end it, however young; nothing paused
    (the clients' load through pgbouncer1 runs on, every entry unpaused)."""
    gid = "fdt-preflight-test:xa'1"
    coordinator = psycopg2.connect(lab.dsn(lab.pg('primary', user='fdt_app')))
    cleanup = connect(lab.pg('primary'), autocommit=True)
    try:
        with coordinator.cursor() as cur:
            cur.execute("UPDATE fdt_item SET body = body WHERE false")
        with coordinator.cursor() as cur:
            cur.execute('PREPARE TRANSACTION %s', (gid,))
        with lab.load(writers=('pgbouncer1',)) as load:
            result = run(lab, patch_dir)
        assert load.transactions() > 0 and not load.errors
        assert all(not flags['paused'] for console in consoles for flags in console.flags().values())
        # Forgotten across a restart: recovered, it holds the same locks under virtual transaction -1/<xid>.
        cleanup.close()
        assert pg_ctl(lab, 'primary', '-m', 'fast', 'stop').returncode == 0
        assert pg_ctl(lab, 'primary', 'start').returncode == 0
        cleanup = connect(lab.pg('primary'), autocommit=True)
        with cleanup.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_locks WHERE pid IS NULL AND virtualtransaction LIKE '-1/%%'")
            assert cur.fetchone()[0] > 0
        recovered = run(lab, patch_dir)
    finally:
        coordinator.close()
        if cleanup.closed:
            cleanup = connect(lab.pg('primary'), autocommit=True)
        with cleanup.cursor() as cur:
            cur.execute('SELECT gid FROM pg_prepared_xacts WHERE gid = %s', (gid,))
            if cur.fetchone():
                cur.execute('ROLLBACK PREPARED %s', (gid,))
        cleanup.close()
        wait_streaming(lab)
    quoted = "'fdt-preflight-test:xa''1'"
    assert_refused_by(result, 'blocking_sessions', 'prepared transaction %s (owner fdt_app, database %s, prepared '
                      % (quoted, lab.db_name))
    [failed] = findings(result, 'blocking_sessions', 'fail')
    summary = failed['summary']
    assert failed['host'].startswith('primary') and summary.startswith(failed['host'] + ': prepared transaction')
    assert 'holds ROW EXCLUSIVE on fdt_item, which patch-2300-01-0.sql line 3 needs in ACCESS EXCLUSIVE' in summary
    assert 'COMMIT PREPARED %s / ROLLBACK PREPARED %s' % (quoted, quoted) in summary
    assert 'connected to database %s' % lab.db_name in summary and 'pg_terminate_backend' not in summary
    assert [line for line in result['summary_lines'] if line.startswith('FAIL blocking_sessions:')] == [
        'FAIL blocking_sessions: ' + summary]
    assert_refused_by(recovered, 'blocking_sessions', 'prepared transaction %s (owner fdt_app, database %s, '
                      % (quoted, lab.db_name))


@pytest.mark.faults
def test_a_client_idle_in_transaction_through_a_read_entry_is_refused_on_its_standby(lab, revision_table,
                                                                                     patch_dir):
    """The window drains every deploy entry, the read entries (fdtdemo_ro, serving standby1 on
    pgbouncer1) too: a client of one idle in a transaction holds that pgbouncer's drain the whole
    budget. Refused on standby1, naming the client and pgbouncer1, with either drain policy (the
    drain's terminate ends only the primary's backends); the primary's own check passes."""
    reader = psycopg2.connect(lab.client_dsn('pgbouncer1', lab.db_name + '_ro'), application_name='report-tool')
    try:
        pid = open_transaction(reader, READ_ITEMS)
        time.sleep(1.2)  # idle in transaction for longer than a pause between two statements
        refused = run(lab, patch_dir)
        terminate = run(lab, patch_dir, drain_policy='terminate')
    finally:
        reader.close()
    # The client by its own address (SHOW CLIENTS): the controller's, on the lab's bridge.
    text = "pid %d (user fdt_app, application 'report-tool', from %s:" % (
        pid, lab.addr('primary').rsplit('.', 1)[0] + '.1')
    for result in (refused, terminate):
        assert_refused_by(result, 'blocking_sessions', text)
        [failed] = findings(result, 'blocking_sessions', 'fail')
        assert failed['host'].startswith('standby1 (') and failed['summary'].startswith(failed['host'] + ': ' + text)
        assert ' through pgbouncer1, idle in transaction for ' in failed['summary']
        assert 'for pid %d on standby1)' % pid in failed['summary']
    assert [f['host'].split(' ')[0] for f in findings(refused, 'blocking_sessions', 'pass')] == ['primary', 'standby2']
    # One cause, one line: the transactions warning of standby1 leaves the client to blocking_sessions.
    [standby1] = [f for f in findings(refused, 'transactions') if f['host'].startswith('standby1')]
    assert standby1['summary'].endswith('(apart from pid %d: named under blocking_sessions)' % pid), standby1
    assert len([line for line in refused['summary_lines'] if 'pid %d (' % pid in line]) == 1, refused['summary_lines']


@pytest.mark.faults
def test_direct_connection_by_a_fragile_user_is_refused(lab, revision_table, patch_dir):
    direct = connect(lab.pg('primary', user='fdt_app'), autocommit=True)
    try:
        fragile = run(lab, patch_dir, fragile_users=['fdt_app'])
        unknown = run(lab, patch_dir)
        killable = run(lab, patch_dir, killable_users=['fdt_app'])
    finally:
        direct.close()
    assert_refused_by(fragile, 'direct_connections', 'fragile users connected directly: fdt_app@')
    assert 'stop them first' in findings(fragile, 'direct_connections')[0]['action']
    assert_refused_by(unknown, 'direct_connections', 'unknown direct connections')
    # Killable users are listed (terminated at the start of the outage), not refused.
    assert findings(killable, 'direct_connections', 'warn'), killable['summary']
    # fdt_app through pgbouncer is pgbouncer's own, never a direct connection.
    assert findings(killable, 'direct_connections')[0]['evidence']['pgbouncer'] is not None


@pytest.mark.faults
def test_already_paused_pgbouncer_is_refused(lab, revision_table, patch_dir):
    entry = lab.db_name + '_ro'
    console = Console(lab.pgbouncer('pgbouncer2'), databases=[entry]).open()
    try:
        console.open_pause_connections([entry])
        console.send_pause(entry)
        conn = console.pause_conns[entry]
        select.select([conn.fileno()], [], [], 5)
        result = run(lab, patch_dir)
    finally:
        console.resume([entry])   # closes the waiting PAUSE first (pgbouncer issue 715)
        console.close()
    assert_refused_by(result, 'pgbouncer', 'already paused: %s' % entry)
    assert [f['host'].split()[0] for f in findings(result, 'pgbouncer', 'fail')] == ['pgbouncer2']
    # pgbouncer1 is not refused (it may warn: an earlier test's stopped standby leaves its
    # read-only entry refusing clients for server_login_retry, which its client probe sees)
    assert len(findings(result, 'pgbouncer', 'pass') + findings(result, 'pgbouncer', 'warn')) == 1


def recorded_applied(revision_table, patch_dir):
    """patch-2300-01-0.sql of ``patch_dir``, recorded as applied in the test's revision table."""
    applied = load_patch(os.path.join(patch_dir, 'patch-2300-01-0.sql'))
    revision_table.cursor().execute(
        'INSERT INTO %s VALUES (2300, 1, 0, %%s, %%s, %%s, now(), now(), 1, %%s)' % REVISION_TABLE,
        (applied.name, applied.kind, applied.sha256, 'preflight-test'))
    return applied


@pytest.mark.faults
def test_drifted_patch_is_refused(lab, revision_table, patch_dir):
    applied = recorded_applied(revision_table, patch_dir)
    with open(applied.path, 'a') as handle:
        handle.write('\nCOMMENT ON COLUMN fdt_item.author IS $$changed after it was applied$$;\n')
    result = run(lab, patch_dir)
    assert_refused_by(result, 'patches', 'changed since applied: patch-2300-01-0.sql (database sha256 %s...'
                      % applied.sha256[:12])


@pytest.mark.faults
def test_a_patch_renamed_after_it_was_applied_is_named_with_the_applied_revision(lab, revision_table, patch_dir):
    # tryit9 c03: 2300-01-0 applied, then its file renamed to 2300-04-0 (0-level, after the others).
    applied = recorded_applied(revision_table, patch_dir)
    os.rename(applied.path, os.path.join(patch_dir, 'patch-2300-04-0.sql'))
    result = run(lab, patch_dir)
    assert_refused_by(result, 'patches', 'the database has revisions with no file (it is ahead of the patch set): '
                      '2300-01-0; patch-2300-04-0.sql has the checksum of the applied 2300-01-0: renamed?; pending:')
    lines = result['summary_lines']
    [at] = [i for i, line in enumerate(lines) if line.startswith('FAIL patches:')]
    assert lines[at + 1] == '    -> restore its name (patch-2300-01-0.sql)', lines


@pytest.mark.faults
def test_tiny_budget_is_refused(lab, revision_table, patch_dir):
    result = run(lab, patch_dir, budget_seconds=0.001)
    assert_refused_by(result, 'budget', 'exceeds the usable budget')
    assert result['estimate']['total_ms'] > 1


@pytest.mark.faults
def test_wrong_credentials_are_findings_not_errors(lab, revision_table, patch_dir):
    bad_bouncer = dict(lab.pgbouncer('pgbouncer1'), password='wrong')
    result = run(lab, patch_dir, pgbouncers=[bad_bouncer, lab.pgbouncer('pgbouncer2')],
                 primary=dict(lab.pg('primary'), password='wrong'))
    assert_refused_by(result, 'connection', 'authentication failed')
    assert_refused_by(result, 'pgbouncer', 'authentication failed')
    assert 'wrong' not in result['summary']
    # Checks that need the primary say so instead of guessing.
    assert findings(result, 'standbys', 'warn') and findings(result, 'budget', 'warn')
    # The client probe logs in as the deploy user PostgreSQL just refused: no second line about it.
    assert 'the client probe could not log in' not in result['summary'], result['summary']

    # Only pgbouncer1's password wrong, while it holds a server connection to the primary: that
    # connection is pgbouncer's own (its console failed: one finding), never "unknown direct".
    client = psycopg2.connect(lab.client_dsn('pgbouncer1'))
    try:
        with client.cursor() as cur:
            cur.execute('SELECT 1')
        client.commit()
        result = run(lab, patch_dir, pgbouncers=[bad_bouncer, lab.pgbouncer('pgbouncer2')])
    finally:
        client.close()
    assert [f['summary'] for f in findings(result, 'pgbouncer', 'fail')] == [
        f['summary'] for f in result['checks'] if f['status'] == 'fail'], result['summary']
    assert len(findings(result, 'pgbouncer', 'fail')) == 1, result['summary']
    assert findings(result, 'direct_connections', 'pass'), result['summary']


def test_a_database_name_no_host_has_is_one_line_naming_fastdowntime_db_name(lab, patch_dir):
    """try 6, defect 11d: -e fastdowntime_db_name=fdtdemox gave five lines, three of them telling the
    user to fix the credentials."""
    result = run(lab, patch_dir, db_name='fdtdemox', revision_table=None)
    assert_refused_by(result, 'connection', 'database "fdtdemox" does not exist (nor on standby1, standby2)')
    assert [line for line in result['summary_lines'] if not line.startswith('pre-flight REFUSED')] == [
        'FAIL connection: primary (%s:5432): database "fdtdemox" does not exist (nor on standby1, standby2): '
        'fastdowntime_db_name names no database there' % lab.addr('primary'),
        "    -> set fastdowntime_db_name to the deploy's database (it is fdtdemox now), then run the pre-flight again"]


def playbook(lab, tmp_path, patch_dir, *extra):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, 'ansible.cfg'), ANSIBLE_FORCE_COLOR='0',
               FDT_REPORT_PATH=str(tmp_path / 'report.json'),
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', ''))
    return subprocess.run([ANSIBLE_PLAYBOOK, '-i', lab.inventory(), 'fastdowntime.postgresql.preflight',
                           '-e', 'fastdowntime_patch_dir=%s' % patch_dir,
                           '-e', 'fastdowntime_revision_table=%s' % REVISION_TABLE] + list(extra),
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_standalone_playbook_passes_on_a_healthy_lab_and_refuses_in_check_mode(lab, revision_table, patch_dir,
                                                                               tmp_path):
    ok = playbook(lab, tmp_path, patch_dir)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert 'pre-flight PASSED' in ok.stdout
    refused = playbook(lab, tmp_path, patch_dir, '--check', '-e', 'fastdowntime_budget_seconds=0.001')
    assert refused.returncode != 0, refused.stdout
    assert 'pre-flight REFUSED the deploy' in refused.stdout
    # Each failed check once, with its fix, at the end of the quiet run.
    assert 'problem: budget: estimated outage' in refused.stdout
    assert 'Traceback' not in refused.stdout + refused.stderr
    assert 'fastdowntime timeline: refused by pre-flight' in refused.stdout


def test_deploy_user_without_privileges_is_refused_naming_the_grants(lab, revision_table, patch_dir):
    def as_app(endpoint):
        return dict(endpoint, user='fdt_app', password=lab.users['fdt_app'])
    result = run(lab, patch_dir, primary=as_app(lab.pg('primary')),
                 standbys=[as_app(lab.pg('standby1')), as_app(lab.pg('standby2'))])
    assert_refused_by(result, 'privileges', 'deploy user fdt_app is not a superuser and lacks: member of pg_monitor')
    primary = [f for f in findings(result, 'privileges', 'fail') if f['host'].startswith('primary')][0]
    assert 'GRANT pg_monitor, pg_signal_backend TO fdt_app' in primary['action']
    # ... and the revision table, which another role owns (test_a_deploy_user_not_owning_what_the_patches_change...)
    assert_refused_by(result, 'privileges', 'the deploy user fdt_app is neither the owner fdt_deploy of ')
    assert REVISION_TABLE in findings(result, 'privileges', 'fail')[-1]['evidence']['relations']
    assert len(findings(result, 'privileges', 'fail')) == 4
    # Without pg_monitor the session and replication views are blind: not checked, never a false pass.
    assert findings(result, 'standbys', 'warn') and not findings(result, 'transactions', 'pass')
    assert findings(result, 'direct_connections', 'warn')


def test_a_deploy_user_not_owning_what_the_patches_change_is_refused_before_the_window(lab, revision_table,
                                                                                       patch_dir):
    """A deploy user with the documented privileges (pg_monitor, pg_signal_backend, CREATE on the database) that
    is not the owner of fdt_item (the app's role owns it) passed the pre-flight; the window then rolled back:
    'must be owner of table fdt_item' - and the deploy log, another role's table, went unwritten. Refused now,
    one line per owner role with the GRANT; once granted, it passes."""
    user, password = 'fdt_tryit_deploy', 'tryit-secret'
    admin = revision_table
    admin.cursor().execute("DROP ROLE IF EXISTS %s; CREATE ROLE %s LOGIN PASSWORD '%s'; GRANT pg_monitor, "
                           'pg_signal_backend TO %s; GRANT CREATE ON DATABASE %s TO %s'
                           % (user, user, password, user, lab.db_name, user))
    try:
        def as_user(endpoint):
            return dict(endpoint, user=user, password=password)
        pgbouncers = [dict(lab.pgbouncer(name), probe_user='fdt_app', probe_password=lab.users['fdt_app'])
                      for name in ('pgbouncer1', 'pgbouncer2')]
        standbys = [dict(as_user(lab.pg(name)), pgbouncer_entries=['%s:%s_ro' % (bouncer, lab.db_name)])
                    for name, bouncer in (('standby1', 'pgbouncer1'), ('standby2', 'pgbouncer2'))]
        # This test's own admin session (the lab's deploy user) is a known direct connection.
        kwargs = dict(primary=as_user(lab.pg('primary')), standbys=standbys, pgbouncers=pgbouncers,
                      system_users=[lab.pg('primary')['user']])
        result = run(lab, patch_dir, **kwargs)
        assert_refused_by(result, 'privileges', 'the deploy user %s is neither the owner fdt_app of fdt_item '
                                                '(patch-2300-00-1.sql line 4: CREATE INDEX CONCURRENTLY) nor a member of it'
                          % user)
        assert_refused_by(result, 'privileges', 'the deploy user %s is neither the owner fdt_deploy of ' % user)
        owned = [f for f in findings(result, 'privileges', 'fail') if 'neither the owner' in f['summary']]
        assert sorted(f['evidence']['owner'] for f in owned) == ['fdt_app', 'fdt_deploy'], result['summary']
        assert REVISION_TABLE in owned[1]['evidence']['relations']
        assert [f['action'].split(' on ')[0] for f in owned] == ['GRANT fdt_app TO %s' % user,
                                                                 'GRANT fdt_deploy TO %s' % user]
        # The lab's patch-2300-02-0 creates fdt_item_tag in public with a FOREIGN KEY to fdt_item: without the
        # owner's role, REFERENCES on fdt_item.id and CREATE on public (the database owner's, from 15) fail too.
        assert_refused_by(result, 'privileges', 'lacks REFERENCES (id) (patch-2300-02-0.sql line 2: CREATE TABLE '
                                                'fdt_item_tag)')
        assert_refused_by(result, 'privileges', 'lacks CREATE on schema public (owner pg_database_owner) for '
                                                'patch-2300-02-0.sql line 2: CREATE TABLE fdt_item_tag')

        admin.cursor().execute('GRANT fdt_app, fdt_deploy TO %s' % user)
        result = run(lab, patch_dir, **kwargs)
        assert not findings(result, 'privileges', 'fail'), result['summary']
        assert result['passed'], result['summary']
    finally:
        admin.cursor().execute('REVOKE CREATE ON DATABASE %s FROM %s; DROP ROLE %s' % (lab.db_name, user, user))


def test_a_deploy_user_lacking_a_tables_privileges_or_their_grant_option_is_refused(lab, revision_table, tmp_path):
    """Real roles. A deploy user that does not own fdt_item (the app's role does): a cold UPDATE of it fails
    inside the window ("permission denied for table"); a GRANT on it, without the grant option, grants nothing
    (PostgreSQL only warns) and the deploy goes on without it. Refused before the window, one line per table
    with the GRANTs; the privilege alone passes the UPDATE, not the GRANT; the grant option passes it; the owner
    role inherited passes everything, and the same membership without INHERIT is named as such."""
    user, password = 'fdt_tryit_grants', 'tryit-secret'
    admin = revision_table
    admin.cursor().execute("DROP ROLE IF EXISTS %s; CREATE ROLE %s LOGIN PASSWORD '%s'; GRANT pg_monitor, "
                           'pg_signal_backend, fdt_deploy TO %s; GRANT CREATE ON DATABASE %s TO %s'
                           % (user, user, password, user, lab.db_name, user))
    directory = tmp_path / 'grants'
    directory.mkdir()
    patch = 'UPDATE fdt_item SET body = body WHERE false;\nGRANT SELECT ON fdt_item TO pg_monitor;\n'
    (directory / 'patch-2390-01-0.sql').write_text(patch)

    def as_user(endpoint):
        return dict(endpoint, user=user, password=password)

    def privileges():
        pgbouncers = [dict(lab.pgbouncer(name), probe_user='fdt_app', probe_password=lab.users['fdt_app'])
                      for name in ('pgbouncer1', 'pgbouncer2')]
        standbys = [dict(as_user(lab.pg(name)), pgbouncer_entries=['%s:%s_ro' % (bouncer, lab.db_name)])
                    for name, bouncer in (('standby1', 'pgbouncer1'), ('standby2', 'pgbouncer2'))]
        result = run(lab, str(directory), primary=as_user(lab.pg('primary')), standbys=standbys,
                     pgbouncers=pgbouncers, system_users=[lab.pg('primary')['user']])
        return findings(result, 'privileges', 'fail')

    try:
        [found] = privileges()
        assert found['summary'].startswith('primary (%s:5432): the deploy user %s is not the owner fdt_app of '
                                           'fdt_item, nor a member of it, and lacks UPDATE (body), SELECT (body) '
                                           '(patch-2390-01-0.sql line 1: UPDATE fdt_item SET), which would fail inside '
                                           'the outage' % (lab.addr('primary'), user)), found['summary']
        assert 'and SELECT WITH GRANT OPTION (patch-2390-01-0.sql line 2: GRANT SELECT ON), without which ' \
            'PostgreSQL grants or revokes nothing' in found['summary'], found['summary']
        assert found['evidence']['fix_sql'] == ['GRANT UPDATE (body), SELECT (body) ON fdt_item TO %s' % user,
                                                'GRANT SELECT ON fdt_item TO %s WITH GRANT OPTION' % user]

        admin.cursor().execute('GRANT UPDATE, SELECT ON fdt_item TO %s' % user)  # no grant option
        [found] = privileges()
        assert 'lacks SELECT WITH GRANT OPTION' in found['summary'] and 'UPDATE (' not in found['summary']

        admin.cursor().execute('GRANT SELECT ON fdt_item TO %s WITH GRANT OPTION' % user)
        assert privileges() == []

        # The owner's role, inherited: the owner's privileges (grant options included). Without INHERIT: none.
        admin.cursor().execute('REVOKE ALL ON fdt_item FROM %s CASCADE; GRANT fdt_app TO %s' % (user, user))
        assert privileges() == []
        admin.cursor().execute('ALTER ROLE %s NOINHERIT' % user)
        found = privileges()
        assert any('is not the owner fdt_app of fdt_item, a member of it without its privileges' in f['summary']
                   for f in found), [f['summary'] for f in found]
    finally:
        admin.cursor().execute('REVOKE ALL ON fdt_item FROM %s CASCADE; REVOKE CREATE ON DATABASE %s FROM %s; '
                               'DROP ROLE %s' % (user, lab.db_name, user, user))


def privileges_refused_as(lab, directory, user, password):
    """The pre-flight on ``directory``'s patches as ``user`` (the lab's pgbouncers probed as fdt_app): its
    failed privileges findings."""
    pgbouncers = [dict(lab.pgbouncer(name), probe_user='fdt_app', probe_password=lab.users['fdt_app'])
                  for name in ('pgbouncer1', 'pgbouncer2')]
    standbys = [dict(lab.pg(name), user=user, password=password, pgbouncer_entries=['%s:%s_ro' % (bouncer, lab.db_name)])
                for name, bouncer in (('standby1', 'pgbouncer1'), ('standby2', 'pgbouncer2'))]
    result = run(lab, str(directory), primary=dict(lab.pg('primary'), user=user, password=password),
                 standbys=standbys, pgbouncers=pgbouncers, system_users=[lab.pg('primary')['user']])
    return findings(result, 'privileges', 'fail')


def server_says_as(lab, user, password, sql):
    """``sql`` as the window runs it, as ``user``, rolled back: None, or PostgreSQL's error."""
    conn = psycopg2.connect(lab.dsn(dict(lab.pg('primary'), user=user, password=password)))
    try:
        with conn.cursor() as cur:
            cur.execute("SET lock_timeout = '2s'")
            cur.execute(sql)
        return None
    except psycopg2.Error as exc:
        return exc.diag.message_primary
    finally:
        conn.rollback()
        conn.close()


def test_column_privileges_the_select_a_where_reads_lock_table_and_references_are_checked(lab, revision_table, tmp_path):
    """Real roles, PostgreSQL's own rules. A deploy user that does not own fdt_item: a cold UPDATE of one column
    with a WHERE needs UPDATE on that column and SELECT on the column the WHERE reads, a DELETE ... WHERE
    needs SELECT too, LOCK TABLE ... IN SHARE MODE one of UPDATE, DELETE, TRUNCATE (before 16), a FOREIGN KEY
    to fdt_item REFERENCES on its column. Without them each failed inside the window ("permission denied");
    now the pre-flight names them, one line, with the GRANT; the column privileges alone (no table-wide
    UPDATE) pass - and the same statements, run as that user in a transaction rolled back, agree each time."""
    user, password = 'fdt_tryit_columns', 'tryit-secret'
    admin = revision_table
    admin.cursor().execute("DROP ROLE IF EXISTS %s; CREATE ROLE %s LOGIN PASSWORD '%s'; GRANT pg_monitor, "
                           'pg_signal_backend, fdt_deploy TO %s; GRANT CREATE ON DATABASE %s TO %s; '
                           'GRANT USAGE, CREATE ON SCHEMA %s TO %s'
                           % (user, user, password, user, lab.db_name, user, TEST_SCHEMA, user))
    directory = tmp_path / 'columns'
    directory.mkdir()
    patch = ("UPDATE fdt_item SET body = 'x' WHERE id = -1;\nDELETE FROM fdt_item WHERE id = -1;\n"
             'LOCK TABLE fdt_item IN SHARE MODE;\n'
             'CREATE TABLE %s.fdt_ref (item_id bigint REFERENCES fdt_item (id));\n' % TEST_SCHEMA)
    (directory / 'patch-2391-01-0.sql').write_text(patch)
    version = pg_one(lab, 'primary', "SELECT current_setting('server_version_num')::int")

    def privileges():
        return privileges_refused_as(lab, directory, user, password)

    def server_says():
        return server_says_as(lab, user, password, patch)

    try:
        [found] = privileges()
        lock = 'one of UPDATE, DELETE, TRUNCATE' if version < 160000 else None
        assert ('lacks UPDATE (body), SELECT (id), DELETE, %sREFERENCES (id) (patch-2391-01-0.sql line 1: UPDATE '
                'fdt_item SET; patch-2391-01-0.sql line 2: DELETE FROM fdt_item; %spatch-2391-01-0.sql line 4: CREATE '
                'TABLE fdt_preflight_test.fdt_ref), which would fail inside the outage' % (
                    lock + ', ' if lock else '', 'patch-2391-01-0.sql line 3: LOCK TABLE fdt_item; ' if lock else '')
                in found['summary']), found['summary']
        assert found['evidence']['fix_sql'] == ['GRANT UPDATE (body), SELECT (id), DELETE, %sREFERENCES (id) ON '
                                                'fdt_item TO %s' % ('UPDATE, ' if lock else '', user)]
        assert server_says() == 'permission denied for table fdt_item'

        # Column privileges, not the table's UPDATE: the UPDATE passes; DELETE lets the LOCK pass too.
        admin.cursor().execute('GRANT UPDATE (body), SELECT (id), DELETE ON fdt_item TO %s' % user)
        [found] = privileges()
        assert 'lacks REFERENCES (id) (patch-2391-01-0.sql line 4' in found['summary'], found['summary']
        assert 'UPDATE' not in found['summary'].split('lacks')[1] and 'SELECT' not in found['summary']
        assert server_says() == 'permission denied for table fdt_item'

        admin.cursor().execute('GRANT REFERENCES (id) ON fdt_item TO %s' % user)
        assert privileges() == []
        assert server_says() is None
    finally:
        admin.cursor().execute('REVOKE ALL ON fdt_item FROM %s CASCADE; REVOKE CREATE ON DATABASE %s FROM %s; '
                               'REVOKE ALL ON SCHEMA %s FROM %s; DROP ROLE %s'
                               % (user, lab.db_name, user, TEST_SCHEMA, user, user))


def test_create_and_usage_on_the_schemas_a_patch_uses_are_checked(lab, revision_table, tmp_path):
    """Real roles. From PostgreSQL 15 schema public grants CREATE to its database's owner only: a deploy user
    that is not the owner created a table there inside the window and failed ("permission denied for schema
    public", rolled back); so did one lacking USAGE on the schema of a name it looks up. The pre-flight names
    each schema, one line, with the GRANT; granted, it passes - and the patch run as that user (rolled back)
    agrees each time."""
    user, password = 'fdt_tryit_schemas', 'tryit-secret'
    admin = revision_table
    hidden = 'fdt_preflight_hidden'
    admin.cursor().execute("DROP ROLE IF EXISTS %s; CREATE ROLE %s LOGIN PASSWORD '%s'; GRANT pg_monitor, "
                           'pg_signal_backend TO %s; GRANT USAGE ON SCHEMA %s TO %s; GRANT SELECT ON %s TO %s; '
                           "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s; CREATE TYPE %s.kind AS ENUM ('a')"
                           % (user, user, password, user, TEST_SCHEMA, user, REVISION_TABLE, user, hidden, hidden,
                              hidden))
    directory = tmp_path / 'schemas'
    directory.mkdir()
    patch = 'CREATE TABLE fdt_schema_t (id int);\nCREATE TABLE fdt_schema_u (k %s.kind);\n' % hidden
    (directory / 'patch-2392-01-0.sql').write_text(patch)

    def privileges():
        return [f for f in privileges_refused_as(lab, directory, user, password) if 'on schema' in f['summary']]

    def server_says():
        return server_says_as(lab, user, password, patch)

    try:
        found = privileges()
        assert [f['summary'].split(': ', 1)[1] for f in found] == [
            'the deploy user %s lacks USAGE on schema %s (owner fdt_deploy) for patch-2392-01-0.sql line 2: CREATE '
            'TABLE fdt_schema_u, which would fail inside the outage ("permission denied for schema %s"; the window '
            'rolls back)' % (user, hidden, hidden),
            'the deploy user %s lacks CREATE on schema public (owner pg_database_owner) for patch-2392-01-0.sql line '
            '1: CREATE TABLE fdt_schema_t, which would fail inside the outage ("permission denied for schema public"; '
            'the window rolls back)' % user], [f['summary'] for f in found]
        assert found[1]['evidence']['fix_sql'] == ['GRANT CREATE ON SCHEMA public TO %s' % user]
        assert server_says() == 'permission denied for schema public'

        admin.cursor().execute('GRANT CREATE ON SCHEMA public TO %s' % user)
        assert [f['evidence']['schema'] for f in privileges()] == [hidden]
        assert server_says() == 'permission denied for schema %s' % hidden

        admin.cursor().execute('GRANT USAGE ON SCHEMA %s TO %s' % (hidden, user))
        assert privileges() == []
        assert server_says() is None
    finally:
        admin.cursor().execute('DROP SCHEMA %s CASCADE; REVOKE ALL ON SCHEMA public FROM %s; REVOKE ALL ON %s FROM %s; '
                               'REVOKE ALL ON SCHEMA %s FROM %s; DROP ROLE %s'
                               % (hidden, user, REVISION_TABLE, user, TEST_SCHEMA, user, user))


def _role_setting_everywhere(lab, admin, user, sql, expected):
    """ALTER ROLE ``user`` ``sql`` on the primary (``admin``: a session that may write), then
    until every standby has its pg_db_role_setting row as ``expected`` (a setting, or None)."""
    admin.cursor().execute('ALTER ROLE %s %s' % (user, sql))
    for host in ('standby1', 'standby2'):
        deadline = time.monotonic() + 30
        while True:
            # Read committed, whatever the role's default: a hot standby refuses serializable.
            conn = psycopg2.connect(lab.dsn(lab.pg(host)), options='-c default_transaction_isolation=read\\ committed')
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT coalesce(array_to_string(setconfig, ','), '') FROM pg_db_role_setting "
                                "WHERE setrole = %s::regrole AND setdatabase = 0", (user,))
                    row = cur.fetchone()
            finally:
                conn.close()
            if (expected is None and not (row and row[0])) or (expected and row and expected in row[0]):
                break
            assert time.monotonic() < deadline, (host, row)
            time.sleep(0.1)


def test_deploy_user_defaults_serializable_and_read_only(lab, revision_table, patch_dir):
    """Settings of the deploy user's role (replicated to every standby). default_transaction_isolation =
    serializable: a hot standby refused every query of its sessions (15 pre-flight lines with wrong fixes),
    and the client probe through a read entry, after RESUME, reported the entry NOT ANSWERING; the
    collection's sessions and the probe run READ COMMITTED whatever the default. default_transaction_read_only
    = on passed the pre-flight and made the window fail: refused in one line naming where it is set."""
    user = lab.pg('primary')['user']
    admin = psycopg2.connect(lab.primary_dsn(), options='-c default_transaction_read_only=off')
    admin.autocommit = True
    try:
        _role_setting_everywhere(lab, admin, user, 'SET default_transaction_isolation = serializable',
                                 'default_transaction_isolation=serializable')
        result = run(lab, patch_dir)
        assert result['passed'], result['summary']
        read_entry = dict(lab.pgbouncer('pgbouncer1'), dbname=lab.db_name + '_ro', user=user,
                          password=lab.pg('primary')['password'])
        assert probe([('ro', read_entry)]) == {'ro': None}

        _role_setting_everywhere(lab, admin, user, 'RESET default_transaction_isolation', None)
        _role_setting_everywhere(lab, admin, user, 'SET default_transaction_read_only = on',
                                 'default_transaction_read_only=on')
        result = run(lab, patch_dir)
        assert_refused_by(result, 'privileges', "the deploy user %s's sessions are read-only "
                                                "(default_transaction_read_only = on, pg_settings source: user)" % user)
        failed = findings(result, 'privileges', 'fail')
        assert len(failed) == 1 and failed[0]['host'].startswith('primary'), result['summary']
        assert failed[0]['action'].endswith(
            'SET default_transaction_read_only = off; ALTER ROLE %s RESET default_transaction_read_only' % user)
        assert result['counts']['fail'] == 1, result['summary']
    finally:
        admin.cursor().execute('ALTER ROLE %s RESET default_transaction_isolation' % user)
        admin.cursor().execute('ALTER ROLE %s RESET default_transaction_read_only' % user)
        admin.close()


def test_what_the_window_would_reject_is_refused_naming_file_line_and_cause(lab, revision_table, patch_dir):
    """Issue 15's failures that opened an outage for nothing: each is now a
    pre-flight refusal (nothing paused), naming file, line and cause."""
    revision_table.cursor().execute(
        "CREATE TYPE %(s)s.status AS ENUM ('one');"
        'CREATE TABLE %(s)s.clients (id int, status %(s)s.status);'
        'CREATE TABLE %(s)s.parted (id int) PARTITION BY RANGE (id);'
        'CREATE PROCEDURE %(s)s.nightly() LANGUAGE plpgsql AS $$\nBEGIN\n  DELETE FROM %(s)s.clients;\n'
        '  COMMIT;\nEND $$;' % {'s': TEST_SCHEMA})
    for name, text in {
        'patch-2301-01-0.sql': "ALTER TYPE %s.status ADD VALUE 'four';\n",
        'patch-2301-02-0.sql': "ALTER TABLE %s.clients ALTER COLUMN status SET DEFAULT 'four';\n",
        'patch-2301-03-0.sql': '-- a batch\nDO $$\nBEGIN\n  COMMIT;\nEND $$;\n',
        'patch-2301-04-0.sql': 'CALL %s.nightly();\n',
        'patch-2301-05-0.sql': 'REINDEX TABLE %s.parted;\n',
    }.items():
        with open(os.path.join(patch_dir, name), 'w') as handle:
            handle.write(text.replace('%s', TEST_SCHEMA))
    result = run(lab, patch_dir)
    assert_refused_by(result, 'patches', "patch-2301-02-0.sql line 1: uses the enum value 'four' that "
                                         'patch-2301-01-0.sql line 1 adds')
    assert_refused_by(result, 'patches', 'patch-2301-03-0.sql line 2: DO block reaches transaction control '
                                         '(patch-2301-03-0.sql line 4: COMMIT)')
    assert_refused_by(result, 'patches', 'patch-2301-04-0.sql line 1: CALL nightly reaches transaction control '
                                         '(procedure nightly (in the database) line 4: COMMIT)')
    [parted] = [f for f in findings(result, 'lint', 'fail') if 'patch-2301-05-0.sql line 1' in f['summary']]
    assert 'cannot run inside a transaction block' in parted['summary']

    # REINDEX SCHEMA was classified cold and aborted the outage.
    with open(os.path.join(patch_dir, 'patch-2301-06-0.sql'), 'w') as handle:
        handle.write('SELECT 1;\nREINDEX SCHEMA public;\n')
    result = run(lab, patch_dir)
    assert_refused_by(result, 'patches', 'patch-2301-06-0.sql line 2: REINDEX SCHEMA cannot run inside a '
                                         'transaction block (the window is one); make it REINDEX SCHEMA ... '
                                         'CONCURRENTLY in a hot patch')


def test_lint_reads_from_the_catalog_which_sequence_a_column_owns(lab, revision_table, tmp_path):
    """A sequence owned by a column (serial, identity) is renamed without breaking app code; a
    free-standing one may be named by it (nextval('...')); an index rename never is."""
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils import lint
    revision_table.cursor().execute(
        'CREATE TABLE %(s)s.owner (id serial, n int GENERATED ALWAYS AS IDENTITY);'
        'CREATE SEQUENCE %(s)s.free_seq; CREATE INDEX owner_n_idx ON %(s)s.owner (n)' % {'s': TEST_SCHEMA})
    path = tmp_path / 'patch-2302-01-0.sql'
    path.write_text('ALTER SEQUENCE %(s)s.owner_id_seq RENAME TO owner_id_seq2;\n'
                    'ALTER SEQUENCE %(s)s.owner_n_seq RENAME TO owner_n_seq2;\n'
                    'ALTER SEQUENCE %(s)s.free_seq RENAME TO free_seq2;\n'
                    'ALTER INDEX %(s)s.owner_n_idx RENAME TO old__owner_n_idx;\n' % {'s': TEST_SCHEMA})
    found = lint.lint_live(revision_table, [load_patch(str(path))])[0]
    assert [(f['line'], f['rule'], f['severity']) for f in found] == [
        (1, 'rename-internal', 'info'), (2, 'rename-internal', 'info'), (3, 'rename', 'error'),
        (4, 'rename-internal', 'info')]


def test_a_primary_without_room_for_the_logins_after_resume_is_refused(lab, revision_table, patch_dir):
    """PAUSE closes the pools' server connections; after RESUME every pgbouncer logs in again and the
    client probe logs in through each entry: on a primary with fewer free slots than that, a login gets
    "too many clients" and pgbouncer refuses that pool's clients for server_login_retry (seen with 100
    pgbouncers on the lab). The PAUSE frees the slots of the server connections it closes, but pgbouncer
    logs in again for its connected clients: idle clients here, as many as each pgbouncer's server
    connections to the primary, make every one of those a login after RESUME. Sessions held open leave
    one free slot on the primary, fewer than its 2 entries (one per pgbouncer) need beyond those: refused
    before any PAUSE, in one line, the standbys untouched."""
    watcher = psycopg2.connect(lab.primary_dsn())
    watcher.autocommit = True
    held, clients = [], []
    try:
        for name in ('pgbouncer1', 'pgbouncer2'):
            console = Console(lab.pgbouncer(name), db_name=lab.db_name).open()
            try:
                on_primary = [r for r in console.show('SERVERS') if r.get('database') == lab.db_name]
            finally:
                console.close()
            clients += [psycopg2.connect(lab.client_dsn(name)) for dummy in range(len(on_primary) + 1)]
        with watcher.cursor() as cur:
            cur.execute(CONNECTION_SLOTS_SQL)
            max_connections, reserved, used = cur.fetchone()
        # The pre-flight's own connection to the primary takes one more: one slot is left.
        for dummy in range(max_connections - reserved - used - 2):
            held.append(psycopg2.connect(lab.primary_dsn()))
        result = run(lab, patch_dir)
        assert_refused_by(result, 'connection_slots', 'too many clients')
        [refused] = findings(result, 'connection_slots', 'fail')
        assert refused['host'].startswith('primary') and 'max_connections' in refused['action']
        evidence = refused['evidence']
        assert evidence['probe_logins'] == 2 and evidence['free'] < 2
        # Every server connection the PAUSE would close is one pgbouncer logs in again for a client.
        assert evidence['logins_after_resume'] == 2 + evidence['closed_by_pause']
        assert evidence['closed_by_pause'] >= 2, evidence  # the probe's own logins at least (one per pgbouncer)
        # The same server connections with no client left to serve (idle, kept from a past peak): the PAUSE
        # frees their slots and nothing logs in again for them - room enough (a new user's false refusal).
        for conn in clients:
            conn.close()
        clients = []
        [primary] = [f for f in findings(run(lab, patch_dir), 'connection_slots', 'pass')
                     if f['host'].startswith('primary')]
        evidence = primary['evidence']
        assert evidence['free'] < 2 and evidence['logins_after_resume'] == 2, evidence
        assert [f['host'] for f in findings(result, 'connection_slots', 'pass')] == [
            f['host'] for f in findings(result, 'connection_slots') if f['host'].startswith('standby')]
        assert not findings(result, 'connection', 'fail'), result['summary']
    finally:
        for conn in held + clients:
            conn.close()
        watcher.close()
    assert findings(run(lab, patch_dir), 'connection_slots', 'fail') == []


def test_a_pool_user_that_could_not_log_in_again_after_the_pause_is_refused(lab, revision_table, patch_dir):
    """The application's server connections logged in long ago; the PAUSE closes them and after RESUME
    pgbouncer logs in again as their user. A role made NOLOGIN, a password past its VALID UNTIL or a
    CONNECTION LIMIT below what is open now leaves the sessions open working, and would fail those logins:
    each is refused before any PAUSE, in one line naming the server, the role, the entries and the fix;
    fixed as it says, the pre-flight passes. (What no catalog shows - a password rotated in PostgreSQL but
    not in pgbouncer - test_outage.py's test_a_pool_whose_login_fails_after_resume_fails_the_deploy.)"""
    admin = psycopg2.connect(lab.primary_dsn())
    admin.autocommit = True
    cur = admin.cursor()
    clients = [psycopg2.connect(lab.client_dsn(name)) for name in ('pgbouncer1', 'pgbouncer1', 'pgbouncer2')]
    try:
        for conn in clients:  # each holds a server connection as fdt_app, then idles on it
            conn.autocommit = True
            conn.cursor().execute('SELECT 1')
        passed = findings(run(lab, patch_dir), 'server_logins')
        assert [f['status'] for f in passed] == ['pass'] * len(passed) and passed, passed
        [primary] = [f for f in passed if f['host'].startswith('primary')]
        assert 'fdt_app' in primary['summary'], primary
        assert {(p['pgbouncer'], p['user']) for p in primary['evidence']['pools']} >= {
            ('pgbouncer1', 'fdt_app'), ('pgbouncer2', 'fdt_app')}
        cases = [
            ("ALTER ROLE fdt_app VALID UNTIL '2000-01-01'", 'the password of role fdt_app is valid until 2000-01-01',
             "ALTER ROLE fdt_app VALID UNTIL 'infinity'"),
            ('ALTER ROLE fdt_app NOLOGIN', 'role fdt_app is NOLOGIN now', 'ALTER ROLE fdt_app LOGIN'),
            ('ALTER ROLE fdt_app CONNECTION LIMIT 0', 'role fdt_app has CONNECTION LIMIT 0', None),
        ]
        for change, cause, fix in cases:
            cur.execute(change)
            result = run(lab, patch_dir)
            assert_refused_by(result, 'server_logins', cause)
            # The primary; a standby too where an earlier test's readers left pgbouncer's server connections as fdt_app.
            failed = findings(result, 'server_logins', 'fail')
            assert all(cause in f['summary'] for f in failed), failed
            [refused] = [f for f in failed if f['host'].startswith('primary')]
            assert 'on pgbouncer1' in refused['summary'], refused
            fix = fix or refused['action'].split(' (or')[0]
            assert refused['action'].startswith(fix), refused
            cur.execute(fix)
            assert [f for f in findings(run(lab, patch_dir), 'server_logins') if f['status'] != 'pass'] == []
    finally:
        cur.execute("ALTER ROLE fdt_app LOGIN VALID UNTIL 'infinity' CONNECTION LIMIT -1")
        for conn in clients:
            conn.close()
        admin.close()


def test_a_long_read_on_a_standby_whose_replay_cancels_queries_within_the_budget_is_named(
        lab, revision_table, patch_dir):
    """standby1 with max_standby_streaming_delay = 2s (below the budget) and a read open on it: the pre-flight
    passed it silently; the window then waited those 2 s for its replay (every client with it) and PostgreSQL
    cancelled the read ("conflict with recovery"). Now a warning names the read, the lock it holds on the
    patched table, the wait and the cancel; a read as old of another table (the test's revision table: replay
    of the commit does not wait for it) is not named."""
    admin = connect(lab.pg('standby1'), autocommit=True)
    reader = psycopg2.connect(lab.dsn(lab.pg('standby1')))
    other = psycopg2.connect(lab.dsn(lab.pg('standby1')))
    try:
        admin.cursor().execute("ALTER SYSTEM SET max_standby_streaming_delay = '2s'")
        admin.cursor().execute('SELECT pg_reload_conf()')
        deadline = time.monotonic() + 10
        while not admin_scalar(admin, 'SELECT to_regclass(%s) IS NOT NULL', (REVISION_TABLE,)):
            assert time.monotonic() < deadline, 'standby1 did not replay the revision table'
            time.sleep(0.05)
        pid = open_transaction(reader, READ_ITEMS)
        other_pid = open_transaction(other, 'SELECT pg_backend_pid(), count(*) FROM %s' % REVISION_TABLE)
        time.sleep(2.2)   # older than the threshold of a 4 s budget (half of it)
        result = run(lab, patch_dir, budget_seconds=4)
        [warned] = [f for f in findings(result, 'replay_blockers', 'warn') if f['host'].startswith('standby1')]
        assert 'pid %d' % pid in warned['summary'], result['summary']
        assert 'pid %d (' % other_pid not in warned['summary'], warned['summary']
        assert ('holds a lock on fdt_item (ACCESS SHARE), which patch-2300-01-0.sql line 3 locks ACCESS EXCLUSIVE: '
                'replay') in warned['summary'], warned['summary']
        assert 'waits up to max_standby_streaming_delay = 2s for it' in warned['summary']
        assert 'PostgreSQL cancels it ("canceling statement due to conflict with recovery")' in warned['summary']
        assert warned['action'].startswith('let it finish (or end it) on standby1')
        # The estimate waits for it too (try 9 r18: 33 ms estimated, 2.03 s outage).
        assert result['estimate']['replay_conflict_seconds'] == 2.0
        assert result['estimate']['standby_replay_ms'] >= 2000 and result['estimate']['total_ms'] > 2000
    finally:
        reader.close()
        other.close()
        admin.cursor().execute('ALTER SYSTEM RESET max_standby_streaming_delay')
        admin.cursor().execute('SELECT pg_reload_conf()')
        admin.close()


def test_a_standby_reader_idle_in_transaction_is_one_line_the_replay_refusal(lab, revision_table, patch_dir):
    """tryit9 r14: a direct client on standby1 idle in a transaction on the patched table, the lab's
    max_standby_streaming_delay = -1: refused by replay_blockers naming it, and no second line
    (transactions' idle-in-transaction warning) for the same session."""
    reader = psycopg2.connect(lab.dsn(lab.pg('standby1')), application_name='r14-reader')
    try:
        pid = open_transaction(reader, READ_ITEMS)
        time.sleep(2.2)  # idle in transaction, and older than the threshold of a 4 s budget (half of it)
        result = run(lab, patch_dir, budget_seconds=4)
    finally:
        reader.close()
    assert_refused_by(result, 'replay_blockers', 'pid %d (' % pid)
    named = [line for line in result['summary_lines'] if 'pid %d (' % pid in line]
    assert len(named) == 1 and named[0].startswith('FAIL replay_blockers: standby1'), result['summary_lines']
    [standby1] = [f for f in findings(result, 'transactions') if f['host'].startswith('standby1')]
    assert standby1['summary'].endswith('(apart from pid %d: named under replay_blockers)' % pid), standby1
