"""Unit tests of schema.py's pure parts: revision table names, retry policy,
error lines, the lock-retry decision against the budget clock (with a fake
cursor standing in for PostgreSQL), standby matching and lagging messages."""
import psycopg2
import psycopg2.errors
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

class FakeCursor:
    """Fails the patch statement with a lock timeout ``lock_failures`` times;
    every lock wait advances the fake clock by the lock_timeout asked for."""

    def __init__(self, fake_time, lock_failures):
        self.time = fake_time
        self.lock_failures = lock_failures
        self.executed = []

    def execute(self, sql, params=None):
        self.executed.append(sql)
        if sql.startswith('ROLLBACK TO SAVEPOINT'):
            return
        lock_ms = int(sql.split('lock_timeout = ')[1].split(';')[0])
        statement_ms = int(sql.split('statement_timeout = ')[1].split(';')[0])
        assert lock_ms < statement_ms, 'a lock wait must end before the statement timeout'
        if self.lock_failures:
            self.lock_failures -= 1
            self.time.now += lock_ms / 1000.0
            raise LockError('canceling statement due to lock timeout')


class NoWatcher:
    holder = None

    def watching(self, lock_ms):
        import contextlib
        return contextlib.nullcontext()

    def activate(self):
        pass

    def describe(self):
        return 'the lock holder could not be identified'


@pytest.fixture
def sleepless(monkeypatch):
    fake_time = FakeTime()
    monkeypatch.setattr(schema.time, 'sleep', lambda seconds: setattr(fake_time, 'now', fake_time.now + seconds))
    return fake_time


def test_lock_failures_are_retried_while_budget_remains(sleepless):
    clock = BudgetClock(10, reserve_seconds=0.5, clock=sleepless).start()
    cursor = FakeCursor(sleepless, lock_failures=3)
    runner = schema._ColdRunner(cursor, clock, LockRetry(), NoWatcher(), 'primary')
    patch = make_patch('ALTER TABLE t ADD COLUMN a int;')
    assert runner.run(patch, patch.statements[0]) == 3
    assert sum(1 for sql in cursor.executed if sql.startswith('ROLLBACK TO SAVEPOINT')) == 3
    # Each try's lock wait doubled: 200, 400, 800 ms, then the successful one.
    waits = [int(sql.split('lock_timeout = ')[1].split(';')[0]) for sql in cursor.executed if 'lock_timeout' in sql]
    assert waits == [200, 400, 800, 1600]
    # The savepoint of a statement is released by the next one's round trip.
    runner.run(patch, patch.statements[0])
    assert cursor.executed[-1].startswith('RELEASE SAVEPOINT')


def test_lock_failure_gives_up_when_budget_cannot_cover_another_try(sleepless):
    clock = BudgetClock(2, reserve_seconds=0.5, clock=sleepless).start()
    cursor = FakeCursor(sleepless, lock_failures=100)
    runner = schema._ColdRunner(cursor, clock, LockRetry(), NoWatcher(), 'primary')
    patch = make_patch('\nALTER TABLE t ADD COLUMN a int;')
    with pytest.raises(SchemaError) as err:
        runner.run(patch, patch.statements[0])
    assert str(err.value).startswith('patch-2211-01-0.sql line 2: could not lock within the budget after ')
    assert 'nothing applied' in str(err.value)
    # It stopped inside the budget: never past the usable part of it.
    assert clock.elapsed() <= clock.budget - clock.reserve


# -- standbys -------------------------------------------------------------------

def test_replication_row_matched_by_name_then_unique_address():
    rows = [{'application_name': 'walreceiver', 'client_addr': '10.0.0.11', 'state': 'streaming'},
            {'application_name': 'standby2', 'client_addr': '10.0.0.12', 'state': 'streaming'},
            {'application_name': 'walreceiver', 'client_addr': '10.0.0.13', 'state': 'streaming'},
            {'application_name': 'walreceiver', 'client_addr': '10.0.0.13', 'state': 'streaming'}]
    assert schema.match_replication_row(rows, {'name': 'standby2', 'host': '10.9.9.9'}) is rows[1]
    assert schema.match_replication_row(rows, {'name': 'standby1', 'host': '10.0.0.11'}) is rows[0]
    assert schema.match_replication_row(rows, {'name': 'x', 'host': '10.0.0.13'}) is None


def test_lagging_error_names_the_standby_and_lists_all_without_schema():
    states = [{'label': 'standby1 (10.0.0.11:5432)', 'done': True, 'replay_lsn': '0/30'},
              {'label': 'standby2 (10.0.0.12:5432)', 'done': False, 'replay_lsn': '0/10'},
              {'label': 'standby3 (10.0.0.13:5432)', 'done': False, 'replay_lsn': None}]
    error = schema._lagging_error(states, 'at 0/30', 'not caught up within the budget')
    assert str(error) == ('standby standby2 (10.0.0.12:5432): not caught up within the budget: it has not '
                          'replayed the schema change at 0/30 (last replayed 0/10); also behind: '
                          'standby3 (10.0.0.13:5432); clients must not be resumed onto it')
    assert error.lagging == ['standby2 (10.0.0.12:5432)', 'standby3 (10.0.0.13:5432)']


def test_replay_waits_for_the_transaction_itself_when_its_id_is_known():
    sql, params = schema.replay_query('0/3000148', xid='7412')
    assert params == {'xid': '7412'}
    # Exact: the standby's own word on the transaction, no WAL position compared.
    assert "pg_xact_status(%(xid)s::xid8) = 'committed'" in sql and '%(xid)s::xid8 < pg_snapshot_xmax' in sql
    assert 'pg_lsn' not in sql
    # Without an id: a WAL position (only for positions known to be flushed).
    sql, params = schema.replay_query('0/3000148')
    assert params == ('0/3000148',) and '>= %s::pg_lsn' in sql


class FakeStandby:
    """A blocking standby connection answering the replay poll from a script."""
    async_ = False

    def __init__(self, answers):
        self.answers = list(answers)
        self.asked = []

    def cursor(self):
        standby = self

        class Cursor:
            def execute(self, sql, params=None):
                standby.asked.append((sql, params))

            def fetchone(self):
                return standby.answers.pop(0)
        return Cursor()


def test_wait_for_replay_by_transaction_id_is_done_when_the_standby_says_committed(monkeypatch):
    monkeypatch.setattr(schema, '_primary_replication_view', lambda conn, lsn: [])
    monkeypatch.setattr(schema.time, 'sleep', lambda seconds: None)
    standby = FakeStandby([('0/5000000', False), ('0/5000100', True)])
    clock = BudgetClock(10)
    result = schema.wait_for_replay(None, [({'name': 's1', 'host': '10.0.0.11', 'port': 5432}, standby)],
                                    '0/4FFFF00', clock, xid='7412')
    assert [params for _, params in standby.asked] == [{'xid': '7412'}, {'xid': '7412'}]
    assert result['xid'] == '7412' and result['standbys'][0]['replay_lsn'] == '0/5000100'
    assert clock.phases[-1]['detail']['xid'] == '7412'
