"""The lint's measurements of the primary (scan throughput sample, time per catalog
statement) against fake connections, and the validating scan's price."""
import psycopg2
import pytest

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import lint
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.patchset import (
    Patch, patch_kind, split_statements)

MB = 1024.0 * 1024.0


class FakeConn:
    """A connection that is its own cursor: ``answer(sql)`` gives the row (or the exception) of each query."""

    def __init__(self, answer):
        self.answer = answer
        self.sent = []
        self.row = None
        self.rolled_back = False

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

    def rollback(self):
        self.rolled_back = True


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
    # Three runs: 0.5 s (from disk), 0.2 s, 0.25 s: the median counts, neither the first nor the quietest moment.
    ticks = iter([0.0, 0.5, 1.0, 1.2, 2.0, 2.25])
    conn = FakeConn(lambda sql: (100000,) if 'count(*)' in sql else None)
    seen = lint.measure_throughput(conn, catalog, [cold('CREATE INDEX big_n ON big (n);')], clock=lambda: next(ticks))
    sample = [sql for sql in conn.sent if 'count(*)' in sql]
    assert sample == ['SELECT count(*) FROM ONLY "public"."big" WHERE ctid < ' + "'(8192,0)'::tid"] * 3
    # 8192 of 12800 pages = 64 MB read in 0.25 s.
    assert seen == pytest.approx(64 * MB / 0.25)
    # No statistics (reltuples 0, as after a rewrite): the sample's density stands in.
    assert catalog.table(('public', 'big'))['reltuples'] == pytest.approx(100000 * 12800 / 8192.0)


def test_the_scan_sample_keeps_the_statistics_rows_where_there_are_some():
    catalog = big(reltuples=1.5e6)
    ticks = iter([0.0, 0.2, 1.0, 1.2, 2.0, 2.2])
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


def test_the_probe_is_one_committed_transaction_of_catalog_statements_in_savepoints_timed_by_the_server():
    sql, statements = lint.probe_sql()
    assert statements == 20 and sql.count('CREATE TEMP TABLE') == 4 and sql.count('ON COMMIT DROP') == 4
    assert sql.count('SAVEPOINT fastdowntime_probe;') == 2 * 20   # as schema.ColdBatch runs each statement
    assert sql.startswith('BEGIN;') and 'clock_timestamp()' in sql and '; COMMIT; SELECT current_setting' in sql


def test_the_probe_splits_the_transactions_fixed_cost_from_the_statements_time():
    # Three probes as the controller times them (0.03 s, 0.07 s, 0.02 s) around the server's
    # time for the 20 statements (0.01, 0.02, 0.01 s): the rest is the round trip, BEGIN and COMMIT.
    ticks = iter([0.0, 0.03, 1.0, 1.07, 2.0, 2.02])
    server = iter([0.01, 0.02, 0.01])
    conn = FakeConn(lambda text: (next(server),) if text.startswith('BEGIN') else None)
    measured = lint.measure_cold_transaction(conn, clock=lambda: next(ticks))
    # Per statement 0.0005, 0.001, 0.0005: the median; fixed 0.02, 0.05, 0.01: the slowest (the window's
    # one transaction is one more draw, no slower than the slowest of 3 in 3 cases of 4).
    assert measured['statement_seconds'] == pytest.approx(0.0005)
    assert measured['transaction_seconds'] == pytest.approx(0.05)
    assert len(conn.sent) == 3 and 'ROLLBACK' not in conn.sent   # committed: ON COMMIT DROP leaves nothing


def test_a_probe_the_primary_refuses_gives_no_measurement():
    def refuse(text):
        if text.startswith('BEGIN'):
            return psycopg2.ProgrammingError('permission denied to create temporary tables in database "fdtdemo"')
        return None
    conn = FakeConn(refuse)
    assert lint.measure_cold_transaction(conn) is None
    assert conn.sent[-1] == 'ROLLBACK'
