"""The deploy log's SQL and parameters, checked against a fake connection."""

import json

import psycopg2
import pytest

from ansible_collections.fastdowntime.postgresql.plugins.module_utils.deploylog import (
    COLUMNS_SQL,
    CREATE_SQL,
    EXISTS_SQL,
    READ_SQL,
    UPGRADES,
    UPSERT_SQL,
    DeployLogError,
    ensure_deploy_log,
    log_params,
    new_deploy_id,
    read_deploy_log,
    write_deploy_log,
)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.report import build_report, entry_from_result

T0 = 1_780_000_000.0


class FakeCursor:
    def __init__(self, conn):
        self.conn = conn
        self.description = None

    def execute(self, sql, params=None):
        self.conn.executed.append((sql, params))
        for needle, error in self.conn.errors.items():
            if needle in sql:
                raise error
        self._rows = list(self.conn.answers.get(sql, []))
        self.description = [('deploy_id',), ('outcome',)] if self._rows else None

    def fetchone(self):
        return self._rows.pop(0) if self._rows else None

    def fetchall(self):
        rows, self._rows = self._rows, []
        return rows

    def close(self):
        self.conn.closed_cursors += 1


class FakeInfo:
    host, port = '10.213.47.10', 5432


class FakeConn:
    def __init__(self, autocommit=False, answers=None, errors=None):
        self.autocommit = autocommit
        self.answers = answers or {}
        self.errors = errors or {}
        self.executed = []
        self.commits = self.rollbacks = self.closed_cursors = 0
        self.info = FakeInfo()

    def cursor(self):
        return FakeCursor(self)

    def commit(self):
        self.commits += 1

    def rollback(self):
        self.rollbacks += 1

    def statements(self):
        return [sql for sql, dummy in self.executed]


class PermissionDenied(psycopg2.Error):
    pgcode = '42501'
    pgerror = 'ERROR:  permission denied for schema fastdowntime\n'


class LockTimeout(psycopg2.Error):
    pgcode = '55P03'
    pgerror = 'ERROR:  canceling statement due to lock timeout\n'


def aborted_report():
    return build_report(entry_from_result({
        'failed': True, 'deploy_id': 'fdt-20260528T202640Z-abc123',
        'phases': [
            {'phase': 'drain', 'host': 'pgbouncer1', 'started_at': T0, 'duration_ms': 50.0,
             'budget_left_ms': 2950.0, 'status': 'ok', 'detail': {}},
            {'phase': 'schema application', 'host': 'primary', 'started_at': T0 + 0.05, 'duration_ms': 2450.0,
             'budget_left_ms': 500.0, 'status': 'failed', 'detail': {'error': 'budget spent'}},
            {'phase': 'resume', 'host': 'pgbouncer1', 'started_at': T0 + 2.5, 'duration_ms': 20.0,
             'budget_left_ms': 480.0, 'status': 'ok', 'detail': {}},
        ],
        'outage': {'started_at': T0, 'ended_at': T0 + 2.52, 'outage_ms': 2520.3, 'estimate_ms': 700,
                   'patches': [{'file': 'patch-2211-01-0.sql', 'duration_ms': 2400}]},
    }, task='Outage', host='localhost'), generated_at=T0 + 3)


# -- parameters ----------------------------------------------------------------

def test_params_from_an_aborted_report():
    report = aborted_report()
    params = log_params(report)
    assert params['deploy_id'] == 'fdt-20260528T202640Z-abc123'
    assert params['started_at'] == '2026-05-28T20:26:40.000Z'
    assert params['outage_ms'] == 2520.3
    assert params['outcome'] == 'aborted in schema application'
    assert params['estimate_ms'] == 700.0
    assert json.loads(params['patches']) == [{'file': 'patch-2211-01-0.sql', 'duration_ms': 2400.0}]
    phases = json.loads(params['phases'])
    assert [(p['phase'], p['status']) for p in phases] == [
        ('drain', 'ok'), ('schema application', 'failed'), ('resume', 'ok')]
    assert phases[1]['error'] == 'budget spent'
    assert set(params) == {'deploy_id', 'started_at', 'outage_ms', 'outcome', 'patches', 'phases', 'estimate_ms',
                           'overrides'}
    assert json.loads(params['overrides']) == []


def test_the_outcome_column_speaks_the_reports_words():
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils import outcomes
    assert log_params(aborted_report())['outcome'] == outcomes.aborted_in('schema application')
    assert log_params({'deploy_id': 'd', 'outcome': outcomes.DONE})['outcome'] == outcomes.DONE
    assert log_params({'deploy_id': 'd'})['outcome'] == outcomes.UNKNOWN


def test_every_param_is_used_by_the_query_and_nothing_is_interpolated():
    params = log_params(aborted_report())
    for name in params:
        assert '%%(%s)s' % name in UPSERT_SQL
    assert 'fdt-20260528T202640Z' not in UPSERT_SQL


def test_started_at_falls_back_to_the_first_phase():
    report = {'deploy_id': 'd', 'outcome': 'aborted in drain', 'outage': {'started_at': None},
              'phases': [{'phase': 'drain', 'started_at': '2026-05-28T20:26:40.000Z'}]}
    assert log_params(report)['started_at'] == '2026-05-28T20:26:40.000Z'


def test_explicit_deploy_id_wins():
    assert log_params(aborted_report(), deploy_id='other')['deploy_id'] == 'other'


def test_a_report_without_deploy_id_is_refused():
    with pytest.raises(DeployLogError, match='the report has no deploy_id'):
        log_params({'outcome': 'done'})


def test_new_deploy_id_is_sortable_and_unique():
    assert new_deploy_id(T0, suffix='abc123') == 'fdt-20260528T202640Z-abc123'
    first, second = new_deploy_id(T0), new_deploy_id(T0)
    assert first != second and first[:20] == second[:20] == 'fdt-20260528T202640Z'


# -- ensure ------------------------------------------------------------------------

def test_ensure_creates_a_missing_table_and_commits():
    conn = FakeConn(answers={EXISTS_SQL: [(False,)]})
    assert ensure_deploy_log(conn) is True
    assert conn.statements() == [EXISTS_SQL] + list(CREATE_SQL)
    assert conn.commits == 1 and conn.rollbacks == 0 and conn.closed_cursors == 1
    table = CREATE_SQL[2]
    assert CREATE_SQL[1] == 'GRANT USAGE ON SCHEMA fastdowntime TO PUBLIC'  # app servers read the revision table
    for column in ('deploy_id text PRIMARY KEY', 'started_at timestamptz', 'outage_ms numeric', 'outcome text',
                   'patches jsonb', 'phases jsonb', 'estimate_ms numeric'):
        assert column in table


def test_ensure_does_nothing_when_the_table_exists():
    columns = [(c,) for c in ('deploy_id', 'started_at', 'outage_ms', 'outcome', 'patches', 'phases', 'estimate_ms',
                              'overrides')]
    conn = FakeConn(answers={EXISTS_SQL: [(True,)], COLUMNS_SQL: columns})
    assert ensure_deploy_log(conn) is False
    assert conn.statements() == [EXISTS_SQL, COLUMNS_SQL]


def test_ensure_adds_the_overrides_column_to_an_older_table():
    columns = [(c,) for c in ('deploy_id', 'started_at', 'outage_ms', 'outcome', 'patches', 'phases', 'estimate_ms')]
    conn = FakeConn(answers={EXISTS_SQL: [(True,)], COLUMNS_SQL: columns})
    assert ensure_deploy_log(conn) is True
    assert conn.statements() == [EXISTS_SQL, COLUMNS_SQL] + [sql for dummy, sql in UPGRADES]
    assert 'ADD COLUMN IF NOT EXISTS overrides jsonb' in UPGRADES[0][1] and conn.commits == 1


def test_ensure_in_check_mode_only_looks():
    conn = FakeConn(answers={EXISTS_SQL: [(False,)]})
    assert ensure_deploy_log(conn, check_mode=True) is True
    assert conn.statements() == [EXISTS_SQL]


def test_ensure_on_an_autocommit_connection_uses_its_own_transaction():
    conn = FakeConn(autocommit=True, answers={EXISTS_SQL: [(False,)]})
    ensure_deploy_log(conn)
    assert conn.statements()[0] == 'BEGIN' and conn.statements()[-1] == 'COMMIT'
    assert conn.commits == 0


def test_ensure_without_rights_is_one_line_naming_host_cause_and_fix():
    conn = FakeConn(answers={EXISTS_SQL: [(False,)]}, errors={'CREATE SCHEMA': PermissionDenied()})
    with pytest.raises(DeployLogError) as info:
        ensure_deploy_log(conn)
    assert str(info.value) == (
        '10.213.47.10:5432: cannot create the deploy log fastdowntime.deploy_log: '
        'permission denied for schema fastdowntime: grant the deploy user CREATE on the database '
        'and rights on schema fastdowntime')
    assert conn.rollbacks == 1 and conn.commits == 0


# -- write -------------------------------------------------------------------------

def test_write_runs_one_bounded_upsert_and_commits():
    conn = FakeConn(answers={UPSERT_SQL: [('fdt-20260528T202640Z-abc123',)]})
    assert write_deploy_log(conn, aborted_report()) is True
    assert conn.statements() == ['SET LOCAL statement_timeout = 5000', 'SET LOCAL lock_timeout = 2500', UPSERT_SQL]
    assert conn.executed[2][1] == log_params(aborted_report())
    assert conn.commits == 1


def test_writing_the_same_report_again_is_no_change():
    conn = FakeConn(answers={UPSERT_SQL: []})  # IS DISTINCT FROM filtered the update: no row back
    assert write_deploy_log(conn, aborted_report()) is False
    assert conn.commits == 1


def test_write_on_autocommit_connection_keeps_set_local_inside_begin():
    conn = FakeConn(autocommit=True, answers={UPSERT_SQL: [('x',)]})
    write_deploy_log(conn, aborted_report())
    assert conn.statements()[0] == 'BEGIN'
    assert conn.statements()[-1] == 'COMMIT'


def test_write_lock_timeout_rolls_back_with_advice():
    conn = FakeConn(autocommit=True, errors={'INSERT INTO': LockTimeout()})
    with pytest.raises(DeployLogError) as info:
        write_deploy_log(conn, aborted_report())
    message = str(info.value)
    assert message.startswith('10.213.47.10:5432: cannot write the deploy log fastdowntime.deploy_log: '
                              'canceling statement due to lock timeout: the table is locked')
    assert '\n' not in message
    assert conn.statements()[-1] == 'ROLLBACK'


def test_non_database_errors_roll_back_and_propagate():
    conn = FakeConn(errors={'INSERT INTO': KeyboardInterrupt()})
    with pytest.raises(KeyboardInterrupt):
        write_deploy_log(conn, aborted_report())
    assert conn.rollbacks == 1 and conn.closed_cursors == 1


def test_read_returns_a_dict_or_none():
    conn = FakeConn(answers={})
    assert read_deploy_log(conn, 'nope') is None
    conn = FakeConn(answers={READ_SQL: [('d1', 'done')]})
    assert read_deploy_log(conn, 'd1') == {'deploy_id': 'd1', 'outcome': 'done'}
    assert conn.executed[0][1] == {'deploy_id': 'd1'}
