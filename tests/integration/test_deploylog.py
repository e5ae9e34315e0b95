"""The deploy log on a real PostgreSQL (the lab's primary)."""

import time

import pytest

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import deploylog
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import connect, query
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.report import build_report, entry_from_result


@pytest.fixture
def primary(lab):
    return lab.pg('primary')


@pytest.fixture
def conn(primary):
    conn = connect(primary)
    deploylog.ensure_deploy_log(conn)
    yield conn
    conn.rollback()
    conn.autocommit = True
    query(conn, "DELETE FROM fastdowntime.deploy_log WHERE deploy_id LIKE 'test-deploylog-%%'")
    conn.close()


def a_report(deploy_id, failed=True, started=None):
    t0 = started or time.time()
    status = 'failed' if failed else 'ok'
    return build_report(entry_from_result({
        'failed': failed, 'deploy_id': deploy_id,
        'phases': [
            {'phase': 'drain', 'host': 'pgbouncer1', 'started_at': t0, 'duration_ms': 40.0,
             'budget_left_ms': 2960.0, 'status': 'ok', 'detail': {}},
            {'phase': 'schema application', 'host': 'primary', 'started_at': t0 + 0.04, 'duration_ms': 2500.0,
             'budget_left_ms': 460.0, 'status': status,
             'detail': {'error': 'budget spent'} if failed else {}},
            {'phase': 'resume', 'host': 'pgbouncer1', 'started_at': t0 + 2.54, 'duration_ms': 15.0,
             'budget_left_ms': 445.0, 'status': 'ok', 'detail': {}},
        ],
        'outage': {'started_at': t0, 'ended_at': t0 + 2.555, 'outage_ms': 2555.5,
                   'patches': [{'file': 'patch-2211-01-0.sql', 'duration_ms': 2500.0}]},
    }, task='Outage', host='localhost'))


def test_table_has_the_documented_columns(conn):
    assert deploylog.ensure_deploy_log(conn) is False  # present now: no DDL the second time
    columns = query(conn, "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                          "WHERE table_schema = 'fastdowntime' AND table_name = 'deploy_log' ORDER BY ordinal_position")
    assert [(c['column_name'], c['data_type']) for c in columns] == [
        ('deploy_id', 'text'), ('started_at', 'timestamp with time zone'), ('outage_ms', 'numeric'),
        ('outcome', 'text'), ('patches', 'jsonb'), ('phases', 'jsonb'), ('estimate_ms', 'numeric'),
        ('overrides', 'jsonb')]


@pytest.mark.parametrize('autocommit', [False, True])
def test_an_aborted_run_logs_its_abort(conn, autocommit):
    conn.autocommit = autocommit
    deploy_id = 'test-deploylog-abort-%s' % autocommit
    started = time.time()
    assert deploylog.write_deploy_log(conn, a_report(deploy_id, started=started)) is True
    row = deploylog.read_deploy_log(conn, deploy_id)
    assert row['outcome'] == 'aborted in schema application'
    assert float(row['outage_ms']) == 2555.5
    assert abs(row['started_at'].timestamp() - started) < 0.002
    assert [(p['phase'], p['status']) for p in row['phases']] == [
        ('drain', 'ok'), ('schema application', 'failed'), ('resume', 'ok')]
    assert row['patches'] == [{'file': 'patch-2211-01-0.sql', 'duration_ms': 2500.0}]
    assert row['estimate_ms'] is None


def test_rewriting_is_idempotent_and_an_update_is_a_change(conn):
    deploy_id = 'test-deploylog-idem'
    started = time.time()
    assert deploylog.write_deploy_log(conn, a_report(deploy_id, started=started)) is True
    assert deploylog.write_deploy_log(conn, a_report(deploy_id, started=started)) is False
    assert deploylog.write_deploy_log(conn, a_report(deploy_id, failed=False, started=started)) is True
    rows = query(conn, 'SELECT outcome FROM fastdowntime.deploy_log WHERE deploy_id = %s', (deploy_id,))
    assert rows == [{'outcome': 'done'}]


def test_a_locked_table_fails_fast_with_advice(conn, primary, monkeypatch):
    monkeypatch.setattr(deploylog, 'WRITE_TIMEOUT_MS', 300)
    holder = connect(primary)
    try:
        query(holder, 'LOCK TABLE fastdowntime.deploy_log IN ACCESS EXCLUSIVE MODE')
        began = time.monotonic()
        with pytest.raises(deploylog.DeployLogError) as info:
            deploylog.write_deploy_log(conn, a_report('test-deploylog-locked'))
        assert time.monotonic() - began < 2
    finally:
        holder.rollback()
        holder.close()
    message = str(info.value)
    assert 'cannot write the deploy log fastdowntime.deploy_log: canceling statement due to lock timeout' in message
    assert 'the table is locked or slow' in message
    assert '\n' not in message
    # The connection is usable again after the failed write.
    assert deploylog.write_deploy_log(conn, a_report('test-deploylog-locked')) is True


def test_a_read_only_server_is_named(conn):
    conn.autocommit = True
    query(conn, 'SET default_transaction_read_only = on')
    with pytest.raises(deploylog.DeployLogError, match='read-only server; write the deploy log on the primary'):
        deploylog.write_deploy_log(conn, a_report('test-deploylog-ro'))
    query(conn, 'SET default_transaction_read_only = off')
