"""Unit tests of schema.py's pure parts: revision table names, retry policy,
error lines, the lock-retry decision against the budget clock (with a fake
cursor standing in for PostgreSQL)."""
import re

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import pytest

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import schema
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.budget import BudgetClock
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.patchset import Patch, split_statements
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.schema import (
    LockRetry, RevisionTable, SchemaError)


class FakeTime:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class LockError(psycopg2.errors.LockNotAvailable):
    pgcode = '55P03'


class Diag:
    def __init__(self, message, position=None):
        self.message_primary = message
        self.statement_position = position


class SyntaxErr(psycopg2.errors.SyntaxError):
    pgcode = '42601'

    def __init__(self, message, position):
        super().__init__(message)
        self._diag = Diag(message, position)

    @property
    def diag(self):
        return self._diag


def make_patch(text, name='patch-2211-01-0.sql'):
    return Patch(name=name, path=name, revision=(2211, 1, 0), sha256='0' * 64, kind='cold',
                 statements=split_statements(text, name))


# -- revision table -----------------------------------------------------------

def test_revision_table_default_and_launchpad():
    default = RevisionTable.from_name(None)
    assert (default.launchpad, default.schema, default.table) == (False, 'fastdowntime', 'schema_revision')
    assert default.sql_name == '"fastdowntime"."schema_revision"'
    launchpad = RevisionTable.from_name('LaunchpadDatabaseRevision')
    assert launchpad.launchpad and launchpad.sql_name == 'launchpaddatabaserevision'


@pytest.mark.parametrize('name', ['schema_revision', 'a.b.c', 'x."y"', 'Fast.Rev', 'a;drop.b'])
def test_revision_table_refuses_unsafe_names(name):
    with pytest.raises(SchemaError, match='give schema.table in lower case'):
        RevisionTable.from_name(name)


# -- retry policy -----------------------------------------------------------

def test_lock_retry_backs_off_up_to_its_caps():
    policy = LockRetry(timeout_ms=100, max_timeout_ms=500, backoff=2.0, pause_ms=10, max_pause_ms=30)
    assert [policy.lock_timeout_ms(n) for n in range(5)] == [100, 200, 400, 500, 500]
    assert [policy.pause_seconds(n) for n in range(3)] == [0.01, 0.02, 0.03]
    assert LockRetry.from_value({'timeout_ms': 50}).timeout_ms == 50
    assert LockRetry.from_value(None) == LockRetry()


# -- error lines ----------------------------------------------------------------

def test_error_line_adds_newlines_before_the_error_position():
    patch = make_patch('SELECT 1;\n\nINSERT INTO t\n  SELECT nosuch\n  FROM u;\n')
    stmt = patch.statements[1]
    assert stmt.line == 3
    prefix = 'SAVEPOINT s; '
    position = len(prefix) + stmt.sql.index('nosuch') + 1  # PostgreSQL counts from 1
    error = SyntaxErr('column "nosuch" does not exist', str(position))
    message = str(schema._statement_failure(patch, stmt, error, len(prefix), suffix='; nothing applied'))
    assert message == ('patch-2211-01-0.sql line 4: column "nosuch" does not exist (SQLSTATE 42601); '
                       'nothing applied')


def test_error_line_without_position_is_the_statement_line():
    patch = make_patch('SELECT 1;\nSELECT 2;\n')
    error = SyntaxErr('boom', None)
    assert schema._error_line(patch.statements[1], error, 0) == 2


# -- the lock-retry decision ---------------------------------------------------

class FakeBatchConnection:
    """The primary as apply_cold() sees it: the first statement of each batch
    fails with a lock timeout ``lock_failures`` times (each wait advancing the
    fake clock by the lock_timeout the batch asked for), then the batch commits."""
    autocommit = False
    closed = False

    def __init__(self, fake_time, lock_failures):
        self.time = fake_time
        self.lock_failures = lock_failures
        self.status = psycopg2.extensions.TRANSACTION_STATUS_IDLE
        self.batches = []
        self.failed_step = None

    def get_backend_pid(self):
        return 4242

    def get_transaction_status(self):
        return self.status

    def get_dsn_parameters(self):
        return {'host': 'primary', 'port': '5432', 'dbname': 'db'}

    def rollback(self):
        pass

    def cursor(self):
        return FakeBatchCursor(self)


class FakeBatchCursor:
    def __init__(self, conn):
        self.conn = conn
        self.row = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def mogrify(self, sql, params):
        return ("'%s'" % params[0]).encode()

    def execute(self, sql, params=None):
        conn = self.conn
        if sql.startswith('ROLLBACK TO SAVEPOINT'):
            conn.status = psycopg2.extensions.TRANSACTION_STATUS_INTRANS
            self.row = (str(conn.failed_step),)
            return
        if sql == 'ROLLBACK':
            conn.status = psycopg2.extensions.TRANSACTION_STATUS_IDLE
            return
        conn.batches.append(sql)
        statement_steps = re.findall(r"set_config\('fastdowntime.step', '(\d+)', true\), "
                                     r"(?:set_config\('fastdowntime.patch_started', clock_timestamp\(\)::text, false\), )?"
                                     r"set_config\('statement_timeout'", sql)
        if conn.lock_failures:
            conn.lock_failures -= 1
            conn.time.now += lock_waits([sql])[0] / 1000.0
            conn.failed_step = int(statement_steps[0])
            conn.status = psycopg2.extensions.TRANSACTION_STATUS_INERROR
            raise LockError('canceling statement due to lock timeout')
        self.row = ('{"xid": "7412", "lsn": "0/3000148", "patch_ms": "1.500", "commit_started": 100.0}', 100.002)

    def fetchone(self):
        return self.row


def lock_waits(batches):
    """The lock_timeout each batch asked for its first statement."""
    return [int(re.search(r'least\((\d+), \(t \* 0.8\)', sql).group(1)) for sql in batches]


class NoWatcher:
    holder = None

    def watching(self, lock_ms):
        import contextlib
        return contextlib.nullcontext()

    def activate(self):
        pass

    def describe(self):
        return 'the lock holder could not be identified'

    def close(self):
        pass


@pytest.fixture
def sleepless(monkeypatch):
    fake_time = FakeTime()
    monkeypatch.setattr(schema.time, 'sleep', lambda seconds: setattr(fake_time, 'now', fake_time.now + seconds))
    monkeypatch.setattr(schema, '_LockWatcher', lambda pid, observer: NoWatcher())
    return fake_time


def test_whole_transaction_is_one_round_trip_when_nothing_waits(sleepless):
    clock = BudgetClock(10, reserve_seconds=0.5, clock=sleepless).start()
    conn = FakeBatchConnection(sleepless, lock_failures=0)
    patch = make_patch('ALTER TABLE t ADD COLUMN a int;\nCREATE TABLE u (id int);\n')
    result = schema.apply_cold(conn, [patch], clock, deploy_id='d', host='primary')
    assert len(conn.batches) == 1 and result['round_trips'] == 1
    sql = conn.batches[0]
    # BEGIN, the deploy lock, both statements in savepoints, the revision row, COMMIT: one string.
    assert sql.startswith('BEGIN; ') and 'pg_try_advisory_xact_lock' in sql and 'COMMIT; ' in sql
    assert sql.count('SAVEPOINT fastdowntime_statement; ALTER TABLE t ADD COLUMN a int;') == 1
    assert 'INSERT INTO "fastdowntime"."schema_revision"' in sql
    assert result['commit_xid'] == '7412' and result['patches'][0]['duration_ms'] == 1.5
    assert [p['phase'] for p in clock.phases] == ['cold_transaction', 'cold_patch', 'commit']
    assert conn.autocommit is False


def test_lock_failures_are_retried_from_the_statement_while_budget_remains(sleepless):
    clock = BudgetClock(10, reserve_seconds=0.5, clock=sleepless).start()
    conn = FakeBatchConnection(sleepless, lock_failures=3)
    patch = make_patch('ALTER TABLE t ADD COLUMN a int;')
    result = schema.apply_cold(conn, [patch], clock, deploy_id='d', host='primary')
    assert result['patches'][0]['lock_retries'] == 3
    # Each try's lock wait doubled: 200, 400, 800 ms, then the successful one;
    # each retry costs a ROLLBACK TO SAVEPOINT and the rest of the batch again.
    assert lock_waits(conn.batches) == [200, 400, 800, 1600]
    assert result['round_trips'] == 1 + 3 * 2
    assert conn.batches[0].startswith('BEGIN; ') and not conn.batches[1].startswith('BEGIN; ')


def test_lock_failure_gives_up_when_budget_cannot_cover_another_try(sleepless):
    clock = BudgetClock(2, reserve_seconds=0.5, clock=sleepless).start()
    conn = FakeBatchConnection(sleepless, lock_failures=100)
    patch = make_patch('\nALTER TABLE t ADD COLUMN a int;')
    with pytest.raises(SchemaError) as err:
        schema.apply_cold(conn, [patch], clock, deploy_id='d', host='primary')
    assert str(err.value).startswith('primary: patch-2211-01-0.sql line 2: could not lock within the budget after ')
    assert str(err.value).endswith('; rolled back, nothing applied')
    # It stopped inside the budget: never past the usable part of it.
    assert clock.elapsed() <= clock.budget.usable
    assert conn.status == psycopg2.extensions.TRANSACTION_STATUS_IDLE  # rolled back


def test_batch_step_is_found_from_the_server_marker_or_the_error_position():
    first = make_patch('ALTER TABLE t ADD COLUMN a int;\nCREATE TABLE u (id int);\n')
    second = make_patch('CREATE TABLE v (id int);\n', name='patch-2211-02-0.sql')
    batch = schema.ColdBatch([first, second], RevisionTable.from_name(None), 'd', LockRetry(), repr)
    assert batch.steps == [('lock', None, None), ('statement', 0, 0), ('statement', 0, 1), ('revision', 0, None),
                           ('statement', 1, 0), ('revision', 1, None)]
    sql, offsets = batch.sql(0, 0, 5000)
    assert sql[offsets[4]:].startswith('CREATE TABLE v (id int);')
    assert batch.locate(SyntaxErr('boom', None), offsets, '2') == 2
    # No marker (the string never ran): the statement holding the error position.
    assert batch.locate(SyntaxErr('boom', offsets[4] + 8), offsets, None) == 4
    assert batch.locate(SyntaxErr('boom', None), offsets, None) is None
    # A resend starts at the failed statement, without BEGIN, with its longer lock wait.
    again, again_offsets = batch.sql(4, 2, 5000)
    assert not again.startswith('BEGIN') and again_offsets[4] < len(again)
    assert lock_waits([again]) == [800]
    error = batch.failure(4, SyntaxErr('column "x" does not exist', offsets[4] + 8), offsets, 'primary')
    assert str(error) == ('primary: patch-2211-02-0.sql line 1: column "x" does not exist (SQLSTATE 42601); '
                          'rolled back, nothing applied')


class UniqueErr(psycopg2.errors.UniqueViolation):
    pgcode = '23505'

    def __init__(self, message, detail):
        super().__init__(message)
        self._diag = Diag(message)
        self._diag.message_detail = detail

    @property
    def diag(self):
        return self._diag


def test_a_statement_error_keeps_postgresqls_detail_and_names_the_host():
    patch = make_patch('INSERT INTO t VALUES (1);\n')
    error = UniqueErr('duplicate key value violates unique constraint "t_pkey"', 'Key (id)=(1) already exists.')
    message = str(schema._statement_failure(patch, patch.statements[0], error, host='primary (10.0.0.5:5432)',
                                            suffix='; fix it'))
    assert message == ('primary (10.0.0.5:5432): patch-2211-01-0.sql line 1: duplicate key value violates unique '
                       'constraint "t_pkey" (DETAIL: Key (id)=(1) already exists.) (SQLSTATE 23505); fix it')


def test_budget_advice_names_the_variable_or_the_pgbouncer_setting_that_caps_it():
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.budget import Budget, raise_advice
    assert raise_advice(Budget(10)) == 'raise fastdowntime_budget_seconds (now 10 s) or make the patch cheaper'
    capped = Budget(10).capped({'seconds': 2.5, 'pgbouncer': 'pgbouncer1 (10.0.0.21:6432)',
                                'setting': 'query_wait_timeout', 'timeout_seconds': 3})
    assert raise_advice(capped) == (
        'raising fastdowntime_budget_seconds does nothing: the budget is capped at 2.5 s by pgbouncer1 '
        '(10.0.0.21:6432) query_wait_timeout = 3 s - raise that setting, or make the patch cheaper')


def test_another_deploys_window_is_refused_naming_its_session_and_the_fix_for_a_dead_one():
    line = schema.another_window_message('primary (10.0.0.10:5432)', 'fdtdemo', {
        'pid': 4242, 'usename': 'deploy', 'application_name': 'fastdowntime-observer', 'client_addr': '10.0.0.5',
        'connected_seconds': 12.4})
    assert line == ("primary (10.0.0.10:5432): another deploy's outage is running on database fdtdemo (pid 4242, "
                    "user deploy, application 'fastdowntime-observer', from 10.0.0.5, connected 12 s ago): refused "
                    "before any PAUSE, nothing paused or applied; wait for it to finish (no deploy running? its "
                    "controller died: SELECT pg_terminate_backend(4242) on primary (10.0.0.10:5432)), then deploy "
                    "again")
    # The holder ended between the failed try and the look-up: no pid to name, no terminate advice.
    assert schema.another_window_message('primary (10.0.0.10:5432)', 'fdtdemo', {}) == (
        "primary (10.0.0.10:5432): another deploy's outage is running on database fdtdemo: refused before any PAUSE, "
        "nothing paused or applied; wait for it to finish, then deploy again")


def test_the_window_lock_is_a_key_of_its_own():
    # The cold transaction's deploy lock, the pre-flight's probe and the window each have their own key.
    assert len({schema.DEPLOY_LOCK_KEY, schema.PROBE_LOCK_KEY, schema.WINDOW_LOCK_KEY}) == 3
