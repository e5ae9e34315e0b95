# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Schema application against PostgreSQL: revision store, hot patches and the
one cold transaction (the wait for every standby to replay it lives with the
standbys, in replication.py).

Built so that one process can run drain -> apply_cold -> wait_for_replay ->
resume with nothing in between: every function takes open connections and the
outage's BudgetClock, and every failure is a SchemaError whose str() is the one
line the operator reads (patch file, line, PostgreSQL's message, or the lock
holder, or the lagging standby).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

from ansible_collections.fastdowntime.postgresql.plugins.module_utils.budget import BudgetExceeded, raise_advice
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.patchset import (
    HOT, LAUNCHPAD_REVISION_TABLE, REVISION, detached_concurrently, format_revision)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import (
    host_port, one_line, rows_as_dicts)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.sessions import query_summary

try:
    import psycopg2
    import psycopg2.extensions
except ImportError:  # pragma: no cover - postgres.connect() reports it
    psycopg2 = None

DEFAULT_REVISION_TABLE = 'fastdowntime.schema_revision'
LOCK_NOT_AVAILABLE = '55P03'
QUERY_CANCELED = '57014'
# One key for "a schema deploy is running on this database" (pg_advisory_lock).
DEPLOY_LOCK_KEY = 0x46445453  # 'FDTS'
SAVEPOINT = 'fastdowntime_statement'
# One key for "a deploy's outage is running on this database": held at session level on the
# outage's observer connection from before anything is paused until the outage module ends
# (window_lock), so a second deploy's outage is refused before its first PAUSE: its drain would
# take the first one's paused entries for its own, or for someone else's, and its failure path
# would RESUME them in the middle of the first one's window.
WINDOW_LOCK_KEY = DEPLOY_LOCK_KEY + 2

# What a patch may change in its session, put back to the deploy session's
# defaults after each patch (before the next one and before its revision row
# is written): DISCARD ALL spelled out, because DISCARD ALL itself is refused
# inside a transaction block and every part below is accepted there.
# Session-level advisory locks a patch took are released; the deploy's own
# lock (DEPLOY_LOCK_KEY) is kept. Transaction-level state (locks, SET
# CONSTRAINTS, deferred triggers) belongs to the one cold transaction and ends
# with its COMMIT.
SESSION_RESET_SQL = (
    'SET SESSION AUTHORIZATION DEFAULT; RESET ROLE; RESET ALL; DEALLOCATE ALL; CLOSE ALL; UNLISTEN *; '
    'DISCARD TEMP; DISCARD SEQUENCES; DISCARD PLANS; '
    "DO $fdt_reset$ DECLARE held record; BEGIN "
    "FOR held IN SELECT classid, objid, objsubid, mode FROM pg_locks "
    "WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted "
    "AND NOT (classid = 0 AND objid = %d AND objsubid = 1) LOOP "
    "IF held.objsubid = 1 AND held.mode = 'ShareLock' THEN "
    "WHILE pg_advisory_unlock_shared((held.classid::bigint << 32) | held.objid::bigint) LOOP END LOOP; "
    "ELSIF held.objsubid = 1 THEN "
    "WHILE pg_advisory_unlock((held.classid::bigint << 32) | held.objid::bigint) LOOP END LOOP; "
    "ELSIF held.mode = 'ShareLock' THEN "
    "WHILE pg_advisory_unlock_shared(held.classid::int, held.objid::int) LOOP END LOOP; "
    "ELSE WHILE pg_advisory_unlock(held.classid::int, held.objid::int) LOOP END LOOP; "
    "END IF; END LOOP; END $fdt_reset$; " % DEPLOY_LOCK_KEY)


class SchemaError(Exception):
    """A schema step failed; str() is the operator's one line.

    ``lagging`` names the standbys (endpoint labels) that do not have the new
    schema, so the caller keeps their pgbouncer entries disabled; ``holder``
    describes the session whose lock could not be taken.
    """

    def __init__(self, message, lagging=None, holder=None):
        Exception.__init__(self, message)
        self.lagging = list(lagging or [])
        self.holder = holder


@dataclass
class LockRetry:
    """How a statement that cannot get its lock is retried.

    Each attempt waits at most ``timeout_ms`` for its locks (doubling by
    ``backoff`` up to ``max_timeout_ms``), then pauses ``pause_ms`` (growing the
    same way) so the holder can finish. Inside the outage the budget clock is
    the only limit; for live (hot) patches ``max_attempts`` bounds the retries.
    """
    timeout_ms: int = 200
    max_timeout_ms: int = 2000
    backoff: float = 2.0
    pause_ms: int = 20
    max_pause_ms: int = 500
    max_attempts: int = 8

    # The fields a module's lock_retry option sets (the others keep their defaults).
    OPTIONS = ('timeout_ms', 'max_timeout_ms', 'pause_ms', 'max_attempts')

    @classmethod
    def argument_spec(cls):
        """The lock_retry option's sub-options, defaults from the fields."""
        return dict((name, dict(type='int', default=getattr(cls, name))) for name in cls.OPTIONS)

    def lock_timeout_ms(self, attempt):
        return int(min(self.timeout_ms * self.backoff ** attempt, self.max_timeout_ms))

    def pause_seconds(self, attempt):
        return min(self.pause_ms * self.backoff ** attempt, self.max_pause_ms) / 1000.0

    def hot_wait_seconds(self):
        """How long a live (hot) statement waits for its locks over all its
        max_attempts before the patch fails: every lock timeout and pause."""
        return sum(self.lock_timeout_ms(a) / 1000.0 + self.pause_seconds(a) for a in range(self.max_attempts))

    @classmethod
    def from_value(cls, value):
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        return cls(**value)


@dataclass
class RevisionTable:
    """Where applied revisions are recorded: the collection's own table, or
    Launchpad's LaunchpadDatabaseRevision, which each patch fills itself."""
    name: str
    launchpad: bool
    schema: str
    table: str

    @classmethod
    def from_name(cls, name=None):
        name = (name or DEFAULT_REVISION_TABLE).strip()
        if name.lower() == LAUNCHPAD_REVISION_TABLE:
            return cls(name=LAUNCHPAD_REVISION_TABLE, launchpad=True, schema=None, table=LAUNCHPAD_REVISION_TABLE)
        parts = name.split('.')
        if len(parts) != 2 or not all(re.match(r'^[a-z_][a-z0-9_]*$', part) for part in parts):
            raise SchemaError('revision table %r: give schema.table in lower case (default %s) or %s'
                              % (name, DEFAULT_REVISION_TABLE, LAUNCHPAD_REVISION_TABLE))
        return cls(name=name, launchpad=False, schema=parts[0], table=parts[1])

    @property
    def sql_name(self):
        # from_name() allows only [a-z0-9_] parts, so quoting is plain.
        if self.launchpad:
            return self.table
        return '"%s"."%s"' % (self.schema, self.table)


def _table(revision_table):
    """A RevisionTable from a RevisionTable or its name."""
    return revision_table if isinstance(revision_table, RevisionTable) else RevisionTable.from_name(revision_table)


def _utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def _ms(seconds):
    return round(seconds * 1000, 1)


# -- revision store ---------------------------------------------------------

def revision_table_exists(conn, revision_table):
    table = _table(revision_table)
    rows = _query(conn, 'SELECT to_regclass(%s) IS NOT NULL AS present', (table.sql_name,))
    return bool(rows[0]['present'])


def ensure_revision_table(conn, revision_table=DEFAULT_REVISION_TABLE, check_mode=False):
    """Create the collection's revision table if missing (call it BEFORE the
    outage: DDL on a new table is cheap but still takes locks). Returns True
    when it was (or, in check mode, would be) created. In Launchpad mode the
    table belongs to Launchpad and must exist."""
    table = _table(revision_table)
    if revision_table_exists(conn, table):
        _end_read(conn)
        return False
    if table.launchpad:
        _end_read(conn)
        raise SchemaError('database %s has no LaunchpadDatabaseRevision table: is it a Launchpad database? '
                          'Set revision_table to %s for other databases'
                          % (_dbname(conn), DEFAULT_REVISION_TABLE))
    if check_mode:
        _end_read(conn)
        return True
    _query(conn, 'CREATE SCHEMA IF NOT EXISTS "%s"' % table.schema)
    _query(conn, '''CREATE TABLE IF NOT EXISTS %s (
        major integer NOT NULL,
        minor integer NOT NULL,
        patch integer NOT NULL,
        file_name text NOT NULL,
        kind text NOT NULL,
        sha256 text NOT NULL,
        start_time timestamptz NOT NULL,
        end_time timestamptz NOT NULL,
        duration_ms numeric NOT NULL,
        deploy_id text,
        -- The top-level transaction (also from inside a savepoint): every cold
        -- patch of one deploy shows the same one.
        transaction_id bigint NOT NULL DEFAULT txid_current(),
        PRIMARY KEY (major, minor, patch))''' % table.sql_name)
    _query(conn, "COMMENT ON TABLE %s IS 'Schema patches applied by fastdowntime.postgresql'" % table.sql_name)
    # App servers check which revision their database has (health checks, the
    # lockstep rule): the revision list is readable by every role.
    _query(conn, 'GRANT USAGE ON SCHEMA "%s" TO PUBLIC' % table.schema)
    _query(conn, 'GRANT SELECT ON %s TO PUBLIC' % table.sql_name)
    if not conn.autocommit:
        conn.commit()
    return True


def applied_revisions(conn, revision_table=DEFAULT_REVISION_TABLE):
    """{(major, minor, patch): sha256 or None} of the revisions in the database.
    A missing collection table means nothing applied yet."""
    table = _table(revision_table)
    if not revision_table_exists(conn, table):
        _end_read(conn)
        if table.launchpad:
            raise SchemaError('database %s has no LaunchpadDatabaseRevision table: is it a Launchpad database?'
                              % _dbname(conn))
        return {}
    sha = 'NULL' if table.launchpad else 'sha256'
    rows = _query(conn, 'SELECT major, minor, patch, %s AS sha256 FROM %s' % (sha, table.sql_name))
    _end_read(conn)
    return {(row['major'], row['minor'], row['patch']): row['sha256'] for row in rows}


def newest_revision_sql(revision_table=DEFAULT_REVISION_TABLE):
    """One statement that returns one row, (revision text or NULL,): the newest
    revision recorded in the revision table, as '2211-01-0' (NULL when the
    table is empty). Runs on a standby too (read-only), so it works on the
    async connections of the window's standbys."""
    table = _table(revision_table)
    return ("SELECT (SELECT format('%%s-%%s-%%s', major, lpad(minor::text, 2, '0'), patch) FROM %s "
            "ORDER BY major DESC, minor DESC, patch DESC LIMIT 1) AS revision" % table.sql_name)


def _record_revision(cur, table, patch, started, duration_seconds, deploy_id, prefix=''):
    """Write (collection table) or verify (Launchpad) the patch's revision row,
    inside whatever transaction ``cur`` is in; ``prefix`` (SQL without ``%``,
    e.g. the session reset) is sent in the same round trip, first."""
    if table.launchpad:
        cur.execute(prefix + 'SELECT 1 FROM %s WHERE major = %%s AND minor = %%s AND patch = %%s' % table.sql_name,
                    patch.revision)
        if cur.fetchone() is None:
            raise SchemaError('%s: patch %s did not insert its LaunchpadDatabaseRevision row '
                              '(add: INSERT INTO LaunchpadDatabaseRevision VALUES (%d, %d, %d);)'
                              % ((patch.name, format_revision(patch.revision)) + patch.revision))
        return
    cur.execute(prefix + 'INSERT INTO %s (major, minor, patch, file_name, kind, sha256, start_time, end_time, '
                'duration_ms, deploy_id) VALUES (%%s, %%s, %%s, %%s, %%s, %%s, %%s, %%s, %%s, %%s)' % table.sql_name,
                patch.revision + (patch.name, patch.kind, patch.sha256, started,
                                  started + datetime.timedelta(seconds=duration_seconds),
                                  round(duration_seconds * 1000, 3), deploy_id))


def procedure_source(conn):
    """A function name -> the PL/pgSQL source of a procedure of that name in
    the database (None if there is none), for patchset.plan(): a CALL to a
    procedure that COMMITs cannot run inside the window."""
    def source(name):
        rows = _query(conn, "SELECT p.prosrc FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang "
                            "WHERE p.prokind = 'p' AND l.lanname = 'plpgsql' AND p.proname = %s "
                            "ORDER BY p.oid LIMIT 1", (name,))
        _end_read(conn)
        return rows[0]['prosrc'] if rows else None
    return source


# -- helpers ----------------------------------------------------------------

def _query(conn, sql, params=None):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return rows_as_dicts(cur) if cur.description else []


def _end_read(conn):
    """Close the implicit transaction a read opened on a non-autocommit
    connection, so nothing holds a snapshot or locks afterwards."""
    if not conn.autocommit and conn.status != psycopg2.extensions.STATUS_READY:
        conn.rollback()


def _dbname(conn):
    try:
        return conn.get_dsn_parameters().get('dbname', '?')
    except Exception:  # pragma: no cover - closed connection
        return '?'


def _conn_label(conn):
    params = conn.get_dsn_parameters()
    return host_port(params.get('host'), params.get('port'))


def _pg_message(exc, detail=False):
    """PostgreSQL's primary message, on one line; with ``detail``, its DETAIL too
    (what a unique violation's key was, which rows a constraint saw)."""
    diag = getattr(exc, 'diag', None)
    primary = diag.message_primary if diag is not None and diag.message_primary else str(exc)
    more = getattr(diag, 'message_detail', None) if detail and diag is not None else None
    return one_line(primary + (' (DETAIL: %s)' % more if more else ''))


def _error_line(stmt, exc, prefix_length):
    """The patch-file line of a statement error: the statement's first line plus
    the newlines before PostgreSQL's error position (1-based, in characters,
    counted in the text we sent, which starts with ``prefix_length`` chars of
    our own)."""
    diag = getattr(exc, 'diag', None)
    position = getattr(diag, 'statement_position', None) if diag is not None else None
    try:
        offset = int(position) - 1 - prefix_length
    except (TypeError, ValueError):
        return stmt.line
    if offset < 0:
        return stmt.line
    return stmt.line + stmt.sql.count('\n', 0, offset)


def _statement_failure(patch, stmt, exc, prefix_length=0, suffix='', host=None):
    """'[host: ]file line N: PostgreSQL's message (DETAIL) (SQLSTATE)suffix'."""
    code = getattr(exc, 'pgcode', None)
    return SchemaError('%s%s line %d: %s%s%s' % (
        '%s: ' % host if host else '', patch.name, _error_line(stmt, exc, prefix_length), _pg_message(exc, detail=True),
        ' (SQLSTATE %s)' % code if code else '', suffix))


class _LockWatcher:
    """Names the session a waiting statement is blocked by.

    While a statement waits for a lock, a timer samples pg_blocking_pids() of
    our backend from a second connection, so a lock failure can name the holder
    (pid, user, query, age). The second connection is opened only after the
    first lock failure, so the happy path costs nothing.
    """

    def __init__(self, backend_pid, observer):
        self.backend_pid = backend_pid
        self._observer = observer   # a connection, a factory, or None
        self._conn = None
        self.holder = None

    def activate(self):
        if self._conn is not None or self._observer is None:
            return
        try:
            conn = self._observer() if callable(self._observer) else self._observer
            conn.autocommit = True
            self._conn = conn
        except Exception:  # naming the holder is best effort: ConnectError or anything
            self._observer = None

    def _sample(self):
        try:
            rows = _query(self._conn, '''
                SELECT a.pid, a.usename, a.application_name, a.state, a.query,
                       round(extract(epoch FROM clock_timestamp() - coalesce(a.xact_start, a.query_start))::numeric, 1)
                           AS age_seconds
                  FROM pg_stat_activity a
                 WHERE a.pid = ANY (pg_blocking_pids(%s))
                 ORDER BY a.xact_start NULLS LAST''', (self.backend_pid,))
        except Exception:  # best effort: never let the observer fail the deploy
            return
        if rows:
            self.holder = rows[0]

    @contextmanager
    def watching(self, lock_timeout_ms):
        if self._conn is None:
            yield
            return
        timer = threading.Timer(max(lock_timeout_ms * 0.6, 5) / 1000.0, self._sample)
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
            timer.join()

    def describe(self):
        holder = self.holder
        if not holder:
            return 'the lock holder could not be identified'
        query = query_summary(holder.get('query'))  # never the text: its literals may carry secrets
        return ('held by pid %s (user %s, application %r, %s for %ss, query: %s); end it with '
                'SELECT pg_terminate_backend(%s) or deploy when it is done'
                % (holder['pid'], holder['usename'], holder.get('application_name') or '',
                   holder.get('state') or '?', holder.get('age_seconds'), query, holder['pid']))

    def close(self):
        if self._conn is not None and not (self._observer is self._conn):
            try:
                self._conn.close()
            except Exception:  # pragma: no cover
                pass
        self._conn = None


# -- cold: the one transaction, sent in one round trip ------------------------
#
# The whole transaction travels as ONE simple-query string: BEGIN, the deploy
# lock, every statement (each in its own savepoint, with its statement_timeout
# and lock_timeout computed by the server from the budget left), each patch's
# session reset and revision row, COMMIT, and a last SELECT that hands back the
# transaction's id, its WAL position and the per-patch durations. A statement
# that cannot get its lock fails only its savepoint: the controller rolls back
# to it, waits, and sends the rest again from that statement (one more round
# trip per retry, as before). docs/window.md says why.

STEP_SETTING = 'fastdowntime.step'            # the running step's number (transaction-local)
PATCH_START_SETTING = 'fastdowntime.patch_started'
PATCH_MS_SETTING = 'fastdowntime.patch_ms'    # comma-separated per-patch durations so far
RESULT_SETTING = 'fastdowntime.result'        # JSON, set just before COMMIT, read after it
ANOTHER_DEPLOY = 'fastdowntime: another schema deploy is running'
REVISION_MISSING = 'fastdowntime: revision row missing'


def _cold_session_reset(names):
    """SESSION_RESET_SQL for a patch inside the cold transaction: RESET ALL
    keeps the batch's own settings ``names``, and the session-level advisory
    locks a patch took go with pg_advisory_unlock_all() - the deploy's lock is
    transaction-level there, so it stays - instead of a walk over pg_locks,
    which grows with every lock the transaction holds."""
    declare = ' '.join("v%d text := current_setting('%s', true);" % (i, n) for i, n in enumerate(names))
    restore = ' '.join("PERFORM set_config('%s', coalesce(v%d, ''), false);" % (n, i) for i, n in enumerate(names))
    keeping = 'DO $fdt_keep$ DECLARE %s BEGIN RESET ALL; %s END $fdt_keep$; ' % (declare, restore)
    head, found, rest = SESSION_RESET_SQL.partition('DO $fdt_reset$')
    if 'RESET ALL; ' not in head or not found or not rest.endswith('END $fdt_reset$; '):
        raise AssertionError('SESSION_RESET_SQL changed shape: RESET ALL, then the advisory-lock DO block last')
    return head.replace('RESET ALL; ', keeping, 1) + 'SELECT pg_advisory_unlock_all(); '


# With no synchronous standbys the commit does not wait, but each standby then
# reports replaying it at once (apply feedback), so the primary's
# pg_stat_replication confirms it promptly. With synchronous standbys the COMMIT
# must not wait for them without a bound (remote_apply, a query holding replay):
# it commits locally, and the replay wait, inside the budget, does the waiting.
# Set again after each session reset.
SYNC_SETUP_SQL = ("SELECT set_config('synchronous_commit', CASE current_setting('synchronous_standby_names') "
                  "WHEN '' THEN 'remote_apply' ELSE 'local' END, true); ")


# The pre-flight's probe transaction takes its own advisory key, never the deploy's.
PROBE_LOCK_KEY = DEPLOY_LOCK_KEY + 1


def cold_overhead_sql(revision_table=None, keep=()):
    """(before, after): the cold transaction's own steps around its
    statements, as ColdBatch writes them, for a probe that writes nothing
    (lint.measure_cold_transaction). ``before``: the deploy-lock step (its DO
    block, here on PROBE_LOCK_KEY and never failing) and the synchronous
    set-up; ``after``: one patch's session reset (keeping the settings named
    in ``keep``) and its revision row's key looked up in ``revision_table``
    (a RevisionTable or its name; None when it does not exist yet): read,
    not inserted, but its first use in a fresh session opens the table and
    its primary key as the INSERT does."""
    before = ("SELECT set_config('%s', '0', true); DO $fdt_probe_lock$ BEGIN PERFORM pg_try_advisory_xact_lock(%d); "
              "END $fdt_probe_lock$; %s" % (STEP_SETTING, PROBE_LOCK_KEY, SYNC_SETUP_SQL))
    after = _cold_session_reset(tuple(keep)) + SYNC_SETUP_SQL
    if revision_table is not None:
        after += 'SELECT 1 FROM %s WHERE major = 0 AND minor = 0 AND patch = 0; ' % _table(revision_table).sql_name
    return before, after


def warm_session(conn, revision_table=None):
    """Before the window's clock: run the cold transaction's own steps
    (cold_overhead_sql: the lock step's PL/pgSQL, the synchronous set-up, a
    patch's session reset, the revision row's key looked up in
    ``revision_table``: a RevisionTable or its name, None for the default;
    it must exist) on ``conn``, the window's non-autocommit connection, and roll
    them back: nothing written, no lock kept, every setting undone. A fresh
    backend pays its first use of PL/pgSQL, the catalog entries and the
    revision table and its key (measured on the lab: a 1-statement window's
    transaction took 8.8 ms as a connection's first, 4.2 ms as its second);
    the window's transaction then finds them cached. psycopg2.Error goes up."""
    before, after = cold_overhead_sql(_table(revision_table))
    try:
        with conn.cursor() as cur:
            cur.execute(before + after)
    finally:
        conn.rollback()


def _budget_left_sql(budget_ms):
    """SQL: ms left of the budget as the statement starts, by the server's
    clock (now() is the transaction's start; never below 1)."""
    return 'greatest(1, (%d - extract(epoch FROM clock_timestamp() - now()) * 1000))::int' % budget_ms


class ColdBatch:
    """The cold transaction as numbered steps, and the SQL that runs them.

    Steps: 0 takes the deploy lock; then per patch one step per statement and
    one for its session reset + revision row; the COMMIT tail is not a step.
    ``steps[i]`` is (kind, patch index, statement index): kind 'lock',
    'statement' or 'revision'.
    """

    def __init__(self, patches, table, deploy_id, policy, quote):
        self.patches = list(patches)
        self.table = table
        self.deploy_id = deploy_id
        self.policy = policy
        self.quote = quote        # value -> SQL literal (cursor.mogrify)
        self.steps = [('lock', None, None)]
        for p, patch in enumerate(self.patches):
            self.steps.extend(('statement', p, s) for s in range(len(patch.statements)))
            self.steps.append(('revision', p, None))
        self.reset = _cold_session_reset((PATCH_START_SETTING, PATCH_MS_SETTING))
        self.budget = None  # the outage's Budget, for the fix of work it cut off (apply_cold sets it)

    def sql(self, start, attempt, budget_ms):
        """(sql, offsets) running steps ``start``.. then COMMIT. ``attempt``:
        lock retries so far of step ``start``; ``budget_ms``: how long after the
        transaction's start (now()) the work must be done. ``offsets``: {step:
        character offset of its patch statement in sql}."""
        parts = [] if start else ['BEGIN; ']
        offsets = {}
        length = sum(len(part) for part in parts)
        for index in range(start, len(self.steps)):
            kind, p, s = self.steps[index]
            lock_ms = self.policy.lock_timeout_ms(attempt if index == start else 0)
            text = self._step(index, kind, p, s, lock_ms, budget_ms)
            if kind == 'statement':
                offsets[index] = length + text.index('\x00')
                text = text.replace('\x00', '', 1)
            parts.append(text)
            length += len(text)
        parts.append(
            "RELEASE SAVEPOINT %s; SELECT set_config('%s', json_build_object("
            "'xid', pg_current_xact_id()::text, 'lsn', pg_current_wal_insert_lsn()::text, "
            "'patch_ms', current_setting('%s'), 'commit_started', extract(epoch FROM clock_timestamp()))::text, false); "
            "COMMIT; SELECT current_setting('%s', true), extract(epoch FROM clock_timestamp())"
            % (SAVEPOINT, RESULT_SETTING, PATCH_MS_SETTING, RESULT_SETTING))
        return ''.join(parts), offsets

    @staticmethod
    def _timeouts(lock_ms, budget_ms):
        left = _budget_left_sql(budget_ms)
        # The lock wait ends before the statement timeout does, so a lock
        # failure is told apart from a statement out of budget.
        return ("set_config('statement_timeout', t::text, true), "
                "set_config('lock_timeout', greatest(1, least(%d, (t * 0.8)::int))::text, true) "
                "FROM (SELECT %s AS t) AS budget" % (lock_ms, left))

    def _step(self, index, kind, p, s, lock_ms, budget_ms):
        head = '' if index == 0 else 'RELEASE SAVEPOINT %s; ' % SAVEPOINT
        marker = "set_config('%s', '%d', true)" % (STEP_SETTING, index)
        if kind == 'lock':
            return ("%sSELECT %s, set_config('%s', '', false); SAVEPOINT %s; "
                    "DO $fdt_lock$ BEGIN IF NOT pg_try_advisory_xact_lock(%d) THEN RAISE EXCEPTION '%s' "
                    "USING ERRCODE = 'P0001'; END IF; END $fdt_lock$; %s"
                    % (head, marker, PATCH_MS_SETTING, SAVEPOINT, DEPLOY_LOCK_KEY, ANOTHER_DEPLOY, SYNC_SETUP_SQL))
        patch = self.patches[p]
        if kind == 'statement':
            started = (", set_config('%s', clock_timestamp()::text, false)" % PATCH_START_SETTING) if s == 0 else ''
            # \x00 marks where the patch's statement starts (its error positions count from there).
            return '%sSELECT %s%s, %s; SAVEPOINT %s; \x00%s;\n' % (
                head, marker, started, self._timeouts(lock_ms, budget_ms), SAVEPOINT, patch.statements[s].sql)
        # The patch's duration, then the deploy session's defaults, then its revision row.
        started = '' if patch.statements else \
            "SELECT set_config('%s', clock_timestamp()::text, false); " % PATCH_START_SETTING
        duration = ("(extract(epoch FROM clock_timestamp() - current_setting('%s')::timestamptz) * 1000)"
                    "::numeric(14, 3)::text" % PATCH_START_SETTING)
        text = ("%s%sSELECT %s, set_config('%s', concat_ws(',', nullif(current_setting('%s'), ''), %s), false); "
                "SAVEPOINT %s; %s%sSELECT set_config('statement_timeout', %s::text, true); "
                % (head, started, marker, PATCH_MS_SETTING, PATCH_MS_SETTING, duration, SAVEPOINT, self.reset,
                   SYNC_SETUP_SQL, _budget_left_sql(budget_ms)))
        return text + self._revision_sql(patch)

    def _revision_sql(self, patch):
        table = self.table
        if table.launchpad:
            return ("DO $fdt_revision$ BEGIN IF NOT EXISTS (SELECT 1 FROM %s WHERE major = %d AND minor = %d "
                    "AND patch = %d) THEN RAISE EXCEPTION '%s' USING ERRCODE = 'P0002'; END IF; END $fdt_revision$; "
                    % ((table.sql_name,) + tuple(patch.revision) + (REVISION_MISSING,)))
        values = ', '.join(self.quote(v) for v in (patch.name, patch.kind, patch.sha256, self.deploy_id))
        return ("INSERT INTO %s (major, minor, patch, file_name, kind, sha256, deploy_id, start_time, end_time, "
                "duration_ms) SELECT %d, %d, %d, %s, d.started, d.started + d.ms * interval '1 millisecond', d.ms "
                "FROM (SELECT current_setting('%s')::timestamptz AS started, "
                "split_part(current_setting('%s'), ',', -1)::numeric AS ms) AS d; "
                % ((table.sql_name,) + tuple(patch.revision) + (values, PATCH_START_SETTING, PATCH_MS_SETTING)))

    def locate(self, exc, offsets, step_setting):
        """The step that failed: the server's step setting (read after ROLLBACK
        TO SAVEPOINT), else the statement holding the error position, else None."""
        if step_setting not in (None, ''):
            return int(step_setting)
        diag = getattr(exc, 'diag', None)
        try:
            position = int(getattr(diag, 'statement_position', None)) - 1
        except (TypeError, ValueError):
            return None
        found = None
        for index, offset in sorted(offsets.items(), key=lambda item: item[1]):
            if offset <= position:
                found = index
        return found

    def failure(self, index, exc, offsets, host):
        """The SchemaError for a non-retried failure of step ``index`` (or None: unknown)."""
        code = getattr(exc, 'pgcode', None)
        if index is None:
            return SchemaError('%s: cold transaction failed: %s; rolled back, nothing applied' % (host, _pg_message(exc)))
        kind, p, s = self.steps[index]
        if kind == 'lock':
            if ANOTHER_DEPLOY in str(exc):
                return SchemaError('%s: another schema deploy is running on this database; wait for it to finish'
                                   % host)
            return SchemaError('%s: cold transaction failed: %s; rolled back, nothing applied' % (host, _pg_message(exc)))
        patch = self.patches[p]
        if kind == 'revision':
            if REVISION_MISSING in str(exc):
                return SchemaError('%s: patch %s did not insert its LaunchpadDatabaseRevision row '
                                   '(add: INSERT INTO LaunchpadDatabaseRevision VALUES (%d, %d, %d);)'
                                   % ((patch.name, format_revision(patch.revision)) + tuple(patch.revision)))
            if code == QUERY_CANCELED:
                return SchemaError('%s: %s: the budget ran out recording revision %s (%s); rolled back, nothing '
                                   'applied: %s' % (host, patch.name, format_revision(patch.revision), _pg_message(exc),
                                                    raise_advice(self.budget)))
            return SchemaError('%s: recording revision %s in %s failed: %s; nothing applied'
                               % (patch.name, format_revision(patch.revision), self.table.name, _pg_message(exc)))
        stmt = patch.statements[s]
        if code == QUERY_CANCELED:
            return SchemaError('%s: %s line %d: still running when the budget ran out (%s); rolled back, '
                               'nothing applied: %s' % (host, patch.name, stmt.line, _pg_message(exc),
                                                        raise_advice(self.budget)))
        return _statement_failure(patch, stmt, exc, offsets.get(index, 0), suffix='; rolled back, nothing applied',
                                  host=host)


def apply_cold(conn, patches, clock, deploy_id=None, revision_table=DEFAULT_REVISION_TABLE, lock_retry=None,
               observer=None, host=None):
    """Apply ``patches`` (cold, in order) in ONE transaction on the primary and
    COMMIT once; any failure rolls everything back and raises SchemaError.

    The transaction is sent as one round trip (ColdBatch), plus one per lock
    retry. ``conn``: a non-autocommit connection to the primary's database,
    idle (switched to autocommit while the batch, which carries its own BEGIN
    and COMMIT, runs). ``clock``: the outage's BudgetClock (started here if it
    is not yet); every statement's statement_timeout and lock_timeout come from
    its usable budget, computed by the server as each statement starts.
    ``observer``: a connection or a zero-argument factory for one, used only to
    name a lock holder. Returns {'patches': [...], 'transaction_ms',
    'commit_lsn', 'commit_xid', 'round_trips'}: ``commit_xid`` is the
    transaction's full id (xid8, as text), what wait_for_replay() waits for;
    ``commit_lsn`` is the WAL insert position read just before COMMIT (the
    commit record begins at or after it), for the report and the primary's
    cross-check only.
    """
    table = _table(revision_table)
    policy = LockRetry.from_value(lock_retry)
    host = host or _conn_label(conn)
    clock.start()
    if conn.autocommit:
        raise SchemaError('%s: apply_cold needs a connection outside autocommit' % host)
    _end_read(conn)
    watcher = _LockWatcher(conn.get_backend_pid(), observer)
    retries = [0] * len(patches)
    began = time.monotonic()
    round_trips = 0
    conn.autocommit = True
    try:
        with clock.phase('cold_transaction', host=host, detail={'patch_files': [p.name for p in patches]}) as record:
            with conn.cursor() as cur:
                batch = ColdBatch(patches, table, deploy_id, policy,
                                  lambda value: cur.mogrify('%s', (value,)).decode())
                batch.budget = clock.budget
                budget_ms = clock.timeout_ms('cold_patch')
                sent_at = clock.elapsed()
                start, attempt = 0, 0
                while True:
                    sql, offsets = batch.sql(start, attempt, budget_ms)
                    round_trips += 1
                    try:
                        with watcher.watching(policy.lock_timeout_ms(attempt)):
                            cur.execute(sql)
                        row = cur.fetchone()
                        break
                    except psycopg2.Error as exc:
                        index, step_error = _failed_step(conn, cur, batch, exc, offsets, host, patches, table)
                        round_trips += 1
                        if step_error is not None:
                            raise step_error
                        kind, p, dummy = batch.steps[index]
                        if kind != 'statement' or getattr(exc, 'pgcode', None) != LOCK_NOT_AVAILABLE:
                            raise batch.failure(index, exc, offsets, host)
                        # Only this statement's savepoint was lost: wait, then
                        # send the rest again from it with a longer lock wait.
                        pause = policy.pause_seconds(attempt if index == start else 0)
                        attempt = attempt + 1 if index == start else 1
                        retries[p] += 1
                        watcher.activate()
                        if clock.usable() < pause + policy.timeout_ms / 1000.0:
                            stmt = patches[p].statements[batch.steps[index][2]]
                            raise SchemaError(
                                '%s: %s line %d: could not lock within the budget after %d attempts, %s; rolled back, '
                                'nothing applied' % (host, patches[p].name, stmt.line, attempt, watcher.describe()),
                                holder=watcher.holder)
                        time.sleep(pause)
                        start = index
            ended = clock.elapsed()
            outcome = json.loads(row[0])
            patch_ms = [float(ms) for ms in outcome['patch_ms'].split(',')] if outcome['patch_ms'] else []
            commit_ms = max((float(row[1]) - float(outcome['commit_started'])) * 1000, 0.0)
            # Each patch and the COMMIT as the server timed them, inside this phase.
            offset = sent_at * 1000
            results = []
            for patch, ms, tries in zip(patches, patch_ms, retries):
                clock.add_phase('cold_patch', host, offset, ms, detail={'patch': patch.name, 'lock_retries': tries})
                offset += ms
                results.append({'name': patch.name, 'revision': format_revision(patch.revision),
                                'duration_ms': round(ms, 1), 'statements': len(patch.statements),
                                'lock_retries': tries})
            clock.add_phase('commit', host, max(ended * 1000 - commit_ms, offset), commit_ms)
            # The keys the timeline report reads (report.py).
            record['detail']['patches'] = [{'file': r['name'], 'duration_ms': r['duration_ms']} for r in results]
            record['detail']['round_trips'] = round_trips
    except SchemaError:
        _rollback(conn)
        raise
    except BudgetExceeded as exc:
        _rollback(conn)
        raise SchemaError('%s: %s; rolled back, nothing applied' % (host, exc))
    except psycopg2.Error as exc:
        _rollback(conn)
        raise SchemaError('%s: cold transaction failed: %s; rolled back, nothing applied' % (host, _pg_message(exc)))
    finally:
        watcher.close()
        if not conn.closed:
            conn.autocommit = False
    transaction_ms = _ms(time.monotonic() - began)
    return {'patches': results, 'transaction_ms': transaction_ms, 'commit_lsn': outcome['lsn'],
            'commit_xid': outcome['xid'], 'round_trips': round_trips}


def _failed_step(conn, cur, batch, exc, offsets, host, patches, table):
    """After the batch failed: (step index or None, SchemaError to raise at once or None).

    Inside the failed transaction, roll back to the failed step's savepoint and
    read which step it was. The transaction is gone when the failure was the
    COMMIT (rolled back) or the string never ran (a syntax error): the error
    position names the statement then. A lost connection may have lost it
    during COMMIT: the outcome is unknown and the operator must hear so."""
    if conn.closed:
        return None, SchemaError('%s: connection lost during the cold transaction (%s): the patches %s may or may '
                                 'not be applied; check %s before deploying again'
                                 % (host, _pg_message(exc), ', '.join(p.name for p in patches), table.name))
    if conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INERROR:
        try:
            cur.execute("ROLLBACK TO SAVEPOINT %s; SELECT current_setting('%s', true)" % (SAVEPOINT, STEP_SETTING))
            return batch.locate(exc, offsets, cur.fetchone()[0]), None
        except psycopg2.Error:
            return batch.locate(exc, offsets, None), None
    return batch.locate(exc, offsets, None), None


def _rollback(conn):
    try:
        if conn.autocommit and conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            # A batch that carried its own BEGIN: psycopg2 does not know of it.
            with conn.cursor() as cur:
                cur.execute('ROLLBACK')
        conn.rollback()
    except Exception:  # the connection may be gone; the server rolls back then
        pass


# -- hot: live, statement by statement --------------------------------------

def _quote_ident(part):
    return '"%s"' % part.replace('"', '""')


def _index_regclass_name(index):
    schema, name = index
    return '%s.%s' % (_quote_ident(schema), _quote_ident(name)) if schema else _quote_ident(name)


def _drop_invalid_index(cur, stmt):
    """Drop the INVALID index a failed CREATE INDEX CONCURRENTLY left behind;
    returns its name when one was dropped."""
    if not stmt.index or not stmt.index[1]:
        return None
    regname = _index_regclass_name(stmt.index)
    cur.execute('SELECT NOT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass(%s)', (regname,))
    row = cur.fetchone()
    if not row or not row[0]:
        return None
    cur.execute('DROP INDEX CONCURRENTLY IF EXISTS %s' % regname)
    return regname


# A DETACH PARTITION ... CONCURRENTLY (14+) canceled in its second transaction - lock_timeout while it waits out
# the partitioned table's lockers - leaves the partition pending detach, and the statement run again fails
# ("already pending detach"): ALTER TABLE ... DETACH PARTITION ... FINALIZE completes it.
PENDING_DETACH_SQL = """
SELECT i.inhparent::regclass::text, i.inhrelid::regclass::text
  FROM pg_inherits i WHERE i.inhrelid = to_regclass(%s) AND i.inhdetachpending
"""


def _pending_detach(cur, stmt):
    """The FINALIZE that completes the DETACH PARTITION ... CONCURRENTLY of
    ``stmt`` an earlier try (or run) left pending, else None."""
    pairs = detached_concurrently(stmt.node) if stmt.node is not None else []
    if len(pairs) != 1:
        return None
    cur.execute(PENDING_DETACH_SQL, (_index_regclass_name(pairs[0][1]),))
    row = cur.fetchone()
    return 'ALTER TABLE %s DETACH PARTITION %s FINALIZE' % tuple(row) if row else None


def apply_hot(conn, patch, deploy_id=None, revision_table=DEFAULT_REVISION_TABLE, lock_retry=None, observer=None,
              host=None, clock=None, phase='hot_patch'):
    """Apply one hot patch live: autocommit, statement by statement, each with
    lock_timeout retries; an INVALID index from a failed concurrent build is
    dropped and the build retried, a partition a canceled DETACH PARTITION ...
    CONCURRENTLY left pending detach is detached with FINALIZE. The revision row is recorded after the last
    statement. ``clock`` (optional) only times the phase, named ``phase``
    (``post_window_hot_patch`` for the hot patches numbered after the window's)."""
    table = _table(revision_table)
    policy = LockRetry.from_value(lock_retry)
    host = host or _conn_label(conn)
    _end_read(conn)
    conn.autocommit = True
    watcher = _LockWatcher(conn.get_backend_pid(), observer)
    dropped = []
    retries = 0
    started = _utcnow()
    began = time.monotonic()
    timed = clock.phase(phase, host=host, detail={'patch': patch.name}) if clock else _no_phase()
    try:
        with timed as record, conn.cursor() as cur:
            cur.execute('SELECT pg_try_advisory_lock(%s)', (DEPLOY_LOCK_KEY,))
            if not cur.fetchone()[0]:
                raise SchemaError('%s: another schema deploy is running on database %s; wait for it to finish'
                                  % (host, _dbname(conn)))
            try:
                cur.execute('SET statement_timeout = 0')
                # A Launchpad revision row goes in last: a build that fails
                # must not leave the patch recorded.
                for stmt in sorted(patch.statements, key=lambda s: s.kind == REVISION):
                    retries += _run_hot_statement(cur, patch, stmt, policy, watcher, dropped, host)
                duration = time.monotonic() - began
                _record_revision(cur, table, patch, started, duration, deploy_id, prefix=SESSION_RESET_SQL)
                if record is not None:
                    record['detail']['patches'] = [{'file': patch.name, 'duration_ms': _ms(duration)}]
            finally:
                _release_session_lock(conn)
    except psycopg2.Error as exc:
        raise SchemaError('%s: %s: %s' % (host, patch.name, _pg_message(exc)))
    finally:
        watcher.close()
    return {'name': patch.name, 'revision': format_revision(patch.revision),
            'duration_ms': _ms(time.monotonic() - began), 'statements': len(patch.statements),
            'lock_retries': retries, 'dropped_invalid_indexes': dropped}


WINDOW_HOLDER_SQL = """
SELECT a.pid, a.usename, host(a.client_addr) AS client_addr, a.application_name,
       EXTRACT(EPOCH FROM clock_timestamp() - a.backend_start)::float8 AS connected_seconds
  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND l.classid = 0 AND l.objid = %s
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND l.pid <> pg_backend_pid()
"""


def window_lock(conn, take=True):
    """The window lock (WINDOW_LOCK_KEY) on ``conn``, an autocommit connection
    to the primary kept open for the whole outage: taken (``take``) or only
    looked for. Returns None when it was free (and is now held, with ``take``),
    else who holds it: a WINDOW_HOLDER_SQL row (pid, usename, client_addr,
    application_name, connected_seconds), {} when the holder ended meanwhile.
    psycopg2.Error goes up."""
    if take and _query(conn, 'SELECT pg_try_advisory_lock(%s) AS taken', (WINDOW_LOCK_KEY,))[0]['taken']:
        return None
    rows = _query(conn, WINDOW_HOLDER_SQL, (WINDOW_LOCK_KEY,))
    if not take and not rows:
        return None
    return rows[0] if rows else {}


def another_window_message(host, db_name, holder):
    """The one line refusing an outage while ``holder`` (window_lock's row, or
    {}) holds another deploy's window on ``host`` (its label)."""
    holder = holder or {}
    who = []
    if holder.get('pid') is not None:
        who.append('pid %s' % holder['pid'])
    if holder.get('usename'):
        who.append('user %s' % holder['usename'])
    if holder.get('application_name'):
        who.append("application '%s'" % holder['application_name'])
    if holder.get('client_addr'):
        who.append('from %s' % holder['client_addr'])
    if holder.get('connected_seconds') is not None:
        who.append('connected %.0f s ago' % holder['connected_seconds'])
    dead = (' (no deploy running? its controller died: SELECT pg_terminate_backend(%s) on %s)'
            % (holder['pid'], host)) if holder.get('pid') is not None else ''
    return ("%s: another deploy's outage is running on database %s%s: refused before any PAUSE, nothing paused or "
            "applied; wait for it to finish%s, then deploy again"
            % (host, db_name, ' (%s)' % ', '.join(who) if who else '', dead))


def _release_session_lock(conn):
    try:
        _query(conn, 'RESET lock_timeout; SELECT pg_advisory_unlock(%s)', (DEPLOY_LOCK_KEY,))
    except psycopg2.Error:  # a dead session has released it already
        pass


@contextmanager
def _no_phase():
    yield None


def _run_hot_statement(cur, patch, stmt, policy, watcher, dropped, host=None):
    attempt = 0
    while True:
        lock_ms = policy.lock_timeout_ms(attempt)
        # Its own round trip: a multi-statement string is an implicit
        # transaction block, which CREATE INDEX CONCURRENTLY refuses.
        cur.execute('SET lock_timeout = %d' % lock_ms)
        try:
            with watcher.watching(lock_ms):
                sql = stmt.sql
                if stmt.kind == HOT:
                    # Left by an earlier try or run; dropping it waits for locks too.
                    name = _drop_invalid_index(cur, stmt)
                    if name:
                        dropped.append(name)
                    sql = _pending_detach(cur, stmt) or sql
                cur.execute(sql)
            return attempt
        except psycopg2.Error as exc:
            if getattr(exc, 'pgcode', None) != LOCK_NOT_AVAILABLE:
                raise _statement_failure(patch, stmt, exc, host=host, suffix='; the patch is not recorded (statements '
                                         'before this one stay applied: hot patches run live)%s; fix the patch '
                                         '(it runs again from its first statement) and deploy again'
                                         % _cleanup_note(cur, stmt, dropped))
            watcher.activate()
            attempt += 1
            if attempt >= policy.max_attempts:
                raise SchemaError('%s%s line %d: could not lock after %d attempts, %s%s'
                                  % ('%s: ' % host if host else '', patch.name, stmt.line, attempt, watcher.describe(),
                                     _cleanup_note(cur, stmt, dropped)),
                                  holder=watcher.holder)
            time.sleep(policy.pause_seconds(attempt - 1))


def _cleanup_note(cur, stmt, dropped):
    """Drop the INVALID index a failed build left, if it can be done now; the
    words saying what happened, for the error message."""
    if stmt.kind == HOT and not stmt.index:
        try:
            finalize = _pending_detach(cur, stmt)
        except psycopg2.Error:
            finalize = None
        return '; its partition is left pending detach: the next run completes it (%s)' % finalize if finalize else ''
    if stmt.kind != HOT or not stmt.index or not stmt.index[1]:
        return ''
    try:
        name = _drop_invalid_index(cur, stmt)
    except psycopg2.Error:
        return '; an INVALID index %s may be left: the next run drops it' % _index_regclass_name(stmt.index)
    if not name:
        return ''
    dropped.append(name)
    return '; dropped the INVALID index %s' % name
