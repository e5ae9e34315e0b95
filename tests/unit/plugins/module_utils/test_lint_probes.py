"""The lint's measurements of the primary (scan throughput sample, time per catalog
statement) against fake connections, and the validating scan's price."""
import socket

import psycopg2
import pytest

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import lint, schema
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.patchset import (
    Patch, patch_kind, split_statements)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import ConnectError

MB = 1024.0 * 1024.0


class FakeConn:
    """A connection that is its own cursor: ``answer(sql)`` gives the row (or the exception) of each query."""

    def __init__(self, answer):
        self.answer = answer
        self.sent = []
        self.row = None
        self.rolled_back = False
        self.closed = False
        self.description = [('present',)]

    def cursor(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, sql, params=None):
        self.sent.append(sql)
        self.row = self.answer(sql)
        if isinstance(self.row, Exception):
            raise self.row

    def fetchone(self):
        return self.row

    def fetchall(self):
        return [self.row]

    def rollback(self):
        self.rolled_back = True

    def get_backend_pid(self):
        return 4242

    def close(self):
        self.closed = True


def cold(sql, name='patch-2211-01-0.sql'):
    statements = split_statements(sql, name)
    return Patch(name=name, path='/x/' + name, revision=(2211, 1, 0), sha256='0' * 64,
                 kind=patch_kind(statements, name), statements=statements)


def big(**info):
    table = {'exists': True, 'nspname': 'public', 'relname': 'big', 'reltuples': 0.0, 'relpages': 12800,
             'heap_bytes': 100 * MB, 'index_bytes': 0.0, 'toast_bytes': 0, 'indexes': 0,
             'columns': {'id': ('integer', ()), 'n': ('integer', ())}, 'not_null_checks': []}
    table.update(info)
    return lint.Catalog(tables={('public', 'big'): table})


def test_the_scan_sample_reads_pages_by_tid_range_and_counts_rows_a_table_without_statistics_lacks():
    catalog = big()
    # Five runs: 0.5 s (from disk, or preempted), 0.2, 0.25, 0.22, 0.21 s: the median counts - one slow sample in
    # five does not decide (the slowest swung 5 x between pre-flights of one table on a quiet lab); the factors
    # carry the margin.
    ticks = iter([0.0, 0.5, 1.0, 1.2, 2.0, 2.25, 3.0, 3.22, 4.0, 4.21])
    conn = FakeConn(lambda sql: (100000,) if 'count(*)' in sql else None)
    seen = lint.measure_throughput(conn, catalog, [cold('CREATE INDEX big_n ON big (n);')], clock=lambda: next(ticks))
    sample = [sql for sql in conn.sent if 'count(*)' in sql]
    assert sample == ['SELECT count(*) FROM ONLY "public"."big" WHERE ctid < ' + "'(8192,0)'::tid"] * 5
    # 8192 of 12800 pages = 64 MB read in 0.22 s, the median (the slowest, 0.5 s, is in the source).
    assert seen == pytest.approx(64 * MB / 0.22)
    assert 'median of 5' in catalog.throughput_source and 'slowest 0.500s' in catalog.throughput_source
    # No statistics (reltuples 0, as after a rewrite): the sample's density stands in.
    assert catalog.table(('public', 'big'))['reltuples'] == pytest.approx(100000 * 12800 / 8192.0)


def test_the_scan_sample_keeps_the_statistics_rows_where_there_are_some():
    catalog = big(reltuples=1.5e6)
    ticks = iter([0.0, 0.2, 1.0, 1.2, 2.0, 2.2, 3.0, 3.2, 4.0, 4.2])
    lint.measure_throughput(FakeConn(lambda sql: (100000,) if 'count(*)' in sql else None), catalog,
                            [cold('CREATE INDEX big_n ON big (n);')], clock=lambda: next(ticks))
    assert catalog.table(('public', 'big'))['reltuples'] == 1.5e6


def test_a_validating_check_is_priced_as_a_scan_with_its_factor():
    catalog = big(reltuples=1.5e6)
    catalog.scan_bytes_per_second = 100 * MB
    [found] = lint.lint_patches([cold('ALTER TABLE big ADD CONSTRAINT big_n CHECK (n >= 0);')], catalog,
                                lint.parse_options())
    assert found['rule'] == 'add-check-without-not-valid'
    assert found['estimate_seconds'] == pytest.approx(lint.SCAN_FACTOR)


def test_the_probe_is_the_windows_transaction_shape_with_catalog_statements_in_savepoints_timed_by_the_server():
    sql, statements, tables = lint.probe_sql('fastdowntime.schema_revision')
    assert statements == 20 and tables == 4 and sql.count('CREATE TEMP TABLE') == 4 and sql.count('ON COMMIT DROP') == 4
    # Each CREATE TABLE timed apart too (set around it, summed in a setting of its own), inside the timed part.
    assert sql.count("set_config('fastdowntime.probe_table_start'") == 4
    assert "current_setting('fastdowntime.probe_table_seconds', true)" in sql   # kept across RESET ALL
    assert sql.endswith("SELECT current_setting('fastdowntime.probe_seconds')::float8, "
                        "current_setting('fastdowntime.probe_table_seconds')::float8")
    assert sql.count('SAVEPOINT fastdowntime_probe;') == 2 * 20   # as schema.ColdBatch runs each statement
    assert sql.startswith('BEGIN;') and 'clock_timestamp()' in sql and '; COMMIT; SELECT current_setting' in sql
    # The window's own steps around the statements, outside the server-timed part: the lock step's DO block
    # (on the probe's own advisory key: never the deploy's), the synchronous set-up, a patch's session reset
    # (keeping the probe's result) and its revision row's key read - never written - in the revision table.
    timed = sql.index("set_config('fastdowntime.probe_start'"), sql.index("set_config('fastdowntime.probe_seconds'")
    assert sql.index('pg_try_advisory_xact_lock(%d)' % schema.PROBE_LOCK_KEY) < timed[0]
    assert schema.PROBE_LOCK_KEY != schema.DEPLOY_LOCK_KEY
    assert timed[1] < sql.index('RESET ALL') < sql.index('FROM "fastdowntime"."schema_revision" WHERE major = 0') \
        < sql.index('COMMIT;')
    assert "current_setting('fastdowntime.probe_seconds', true)" in sql   # kept across RESET ALL
    assert 'INSERT INTO "fastdowntime"' not in sql and 'INSERT INTO fastdowntime.' not in sql
    # No revision table yet (the first deploy creates it before the window): nothing to read.
    assert 'schema_revision' not in lint.probe_sql(None)[0]


def fresh_connections(answer, kind=None):
    """A connect() giving a new FakeConn (or ``kind``) each call (kept in .made), each answering with ``answer``."""
    def connect():
        conn = (kind or FakeConn)(answer)
        connect.made.append(conn)
        return conn
    connect.made = []
    return connect


def test_the_probe_prices_the_windows_warmed_transaction_from_the_second_run_of_each_fresh_connection():
    # Three fresh connections, each running the probe twice, as the controller times them: the first
    # transaction of each (0.03, 0.07, 0.02 s) a fresh session's (the warm-up, as schema.warm_session's
    # before the window's clock), the second (0.012, 0.014, 0.011 s) warm, as the window's transaction;
    # the server's time for the 20 statements 0.012, 0.02, 0.011 s, then 0.01, 0.012, 0.009 s.
    ticks = iter([0.0, 0.03, 1.0, 1.012, 2.0, 2.07, 3.0, 3.014, 4.0, 4.02, 5.0, 5.011])
    # (all 20 statements, of which the 4 CREATE TABLEs) as the server timed them.
    server = iter([(0.012, 0.004), (0.01, 0.0036), (0.02, 0.008), (0.012, 0.004), (0.011, 0.004), (0.009, 0.0042)])
    connect = fresh_connections(lambda text: next(server) if text.startswith('BEGIN') else None)
    measured = lint.measure_cold_transaction(connect, clock=lambda: next(ticks))
    # Per statement other than CREATE TABLE: the warm runs' (0.01 - 0.0036) / 16, (0.012 - 0.004) / 16,
    # (0.009 - 0.0042) / 16 s - the median, 0.0004. Per CREATE TABLE: 0.0009, 0.001, 0.00105 s - the median.
    # The fixed cost: each second transaction less its statements' server time (0.002, 0.002, 0.002 s) - the
    # median; what a fresh session pays first (0.02-0.06 s here) is not the window's: it warms its connection first.
    assert measured['statement_seconds'] == pytest.approx(0.0004)
    assert measured['table_seconds'] == pytest.approx(0.001)
    assert measured['transaction_seconds'] == pytest.approx(0.002)
    assert measured['close_seconds'] is None   # no socket to watch: not timed
    # Over real sockets: each closed connection timed until the server's end closes
    # (4, 2 and 3 ms after its close), the median counting.
    clock = iter([0.0, 0.03, 1.0, 1.012, 10.0, 10.0, 10.004,
                  2.0, 2.07, 3.0, 3.014, 20.0, 20.0, 20.002,
                  4.0, 4.02, 5.0, 5.011, 30.0, 30.0, 30.003])
    server = iter([(0.012, 0.004), (0.01, 0.0036), (0.02, 0.008), (0.012, 0.004), (0.011, 0.004), (0.009, 0.0042)])
    connect = fresh_connections(lambda text: next(server) if text.startswith('BEGIN') else None, SocketConn)
    timed = lint.measure_cold_transaction(connect, clock=lambda: next(clock))
    assert timed['close_seconds'] == pytest.approx(0.003)
    assert timed['transaction_seconds'] == pytest.approx(0.002)
    assert len(connect.made) == 3 and all(c.closed and len(c.sent) == 2 for c in connect.made)
    assert not any('ROLLBACK' in c.sent for c in connect.made)   # committed: ON COMMIT DROP leaves nothing


class SocketConn(FakeConn):
    """FakeConn over one end of a real socket pair: its close() closes the other end too, as the server closes
    its end once its backend has exited; ``farewell`` is sent first (TLS's close_notify)."""

    def __init__(self, answer, farewell=b''):
        super().__init__(answer)
        self.client, self.server = socket.socketpair()
        self.farewell = farewell

    def fileno(self):
        return self.client.fileno()

    def close(self):
        super().close()
        self.client.close()
        if self.farewell:
            self.server.sendall(self.farewell)
        self.server.close()


def test_a_closed_connection_is_timed_until_the_server_closes_its_end_not_before():
    # The server's close_notify arrives first, its end-of-file 1.5 ms after the client's close.
    conn = SocketConn(None, farewell=b'\x15\x03\x03\x00\x02\x01\x00')
    sock = lint.watch_close(conn)
    conn.close()
    ticks = iter([0.0004, 0.0009, 0.0015])
    assert lint.server_close_seconds(sock, 0.0, clock=lambda: next(ticks)) == pytest.approx(0.0015)
    assert sock.fileno() == -1   # closed here
    # A server that never closes its end is counted as CLOSE_WAIT_SECONDS, waited for no longer.
    client, server = socket.socketpair()
    late = iter([0.09, 0.2])
    assert lint.server_close_seconds(client, 0.0, clock=lambda: next(late)) == lint.CLOSE_WAIT_SECONDS
    server.close()
    # A connection with no socket to watch is not timed.
    assert lint.watch_close(FakeConn(None)) is None


def test_a_probe_the_primary_refuses_gives_no_measurement():
    def refuse(text):
        if text.startswith('BEGIN'):
            return psycopg2.ProgrammingError('permission denied to create temporary tables in database "fdtdemo"')
        return None
    connect = fresh_connections(refuse)
    assert lint.measure_cold_transaction(connect) is None
    [conn] = connect.made
    assert conn.sent[-1] == 'ROLLBACK' and conn.closed


def test_a_probe_that_cannot_connect_gives_no_measurement():
    def refuse():
        raise ConnectError('primary: cannot connect as fdt_deploy to database fdtdemo: too many clients')
    assert lint.measure_cold_transaction(refuse) is None
