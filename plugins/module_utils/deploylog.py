# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy log: one row per run that reached the outage, in the database.

``fastdowntime.deploy_log`` sits next to the revision table. The row is written
AFTER resume (it must never lengthen the outage), from the report dict built by
``report.build_report``; an aborted run logs its abort too. Writing the same
report twice leaves one row and reports no change.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import outcomes
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import host_port, one_line, psycopg2

SCHEMA = 'fastdowntime'
TABLE = 'fastdowntime.deploy_log'

# Keeps a slow or locked deploy log from holding the play: the log is worth
# less than the time of the operator waiting for it.
WRITE_TIMEOUT_MS = 5000

EXISTS_SQL = "SELECT to_regclass('fastdowntime.deploy_log') IS NOT NULL AS present"
# Columns added since the table was first created: (name, ALTER TABLE statement).
UPGRADES = (
    ('overrides', "ALTER TABLE fastdowntime.deploy_log ADD COLUMN IF NOT EXISTS overrides jsonb NOT NULL "
                  "DEFAULT '[]'::jsonb"),
)
COLUMNS_SQL = ("SELECT attname FROM pg_attribute WHERE attrelid = 'fastdowntime.deploy_log'::regclass "
               "AND attnum > 0 AND NOT attisdropped")

CREATE_SQL = (
    'CREATE SCHEMA IF NOT EXISTS fastdowntime',
    # The schema is shared with the revision table, which app servers read (schema.ensure_revision_table).
    'GRANT USAGE ON SCHEMA fastdowntime TO PUBLIC',
    """CREATE TABLE IF NOT EXISTS fastdowntime.deploy_log (
    deploy_id text PRIMARY KEY,
    started_at timestamptz NOT NULL,
    outage_ms numeric,
    outcome text NOT NULL,
    patches jsonb NOT NULL DEFAULT '[]'::jsonb,
    phases jsonb NOT NULL DEFAULT '[]'::jsonb,
    estimate_ms numeric,
    overrides jsonb NOT NULL DEFAULT '[]'::jsonb
)""",
    "COMMENT ON TABLE fastdowntime.deploy_log IS "
    "'One row per fastdowntime run that reached the outage (written after resume)'",
)

# ``IS DISTINCT FROM`` makes a second write of the same report a no-op, so
# RETURNING yields a row only when something was inserted or changed.
UPSERT_SQL = """INSERT INTO fastdowntime.deploy_log AS log
    (deploy_id, started_at, outage_ms, outcome, patches, phases, estimate_ms, overrides)
VALUES (%(deploy_id)s, COALESCE(%(started_at)s::timestamptz, now()), %(outage_ms)s, %(outcome)s,
        %(patches)s::jsonb, %(phases)s::jsonb, %(estimate_ms)s, %(overrides)s::jsonb)
ON CONFLICT (deploy_id) DO UPDATE SET
    started_at = EXCLUDED.started_at, outage_ms = EXCLUDED.outage_ms, outcome = EXCLUDED.outcome,
    patches = EXCLUDED.patches, phases = EXCLUDED.phases, estimate_ms = EXCLUDED.estimate_ms,
    overrides = EXCLUDED.overrides
WHERE (log.started_at, log.outage_ms, log.outcome, log.patches, log.phases, log.estimate_ms, log.overrides)
    IS DISTINCT FROM (EXCLUDED.started_at, EXCLUDED.outage_ms, EXCLUDED.outcome,
                      EXCLUDED.patches, EXCLUDED.phases, EXCLUDED.estimate_ms, EXCLUDED.overrides)
RETURNING deploy_id"""

READ_SQL = """SELECT deploy_id, started_at, outage_ms, outcome, patches, phases, estimate_ms, overrides
FROM fastdowntime.deploy_log WHERE deploy_id = %(deploy_id)s"""

_DB_ERRORS = (psycopg2.Error,) if psycopg2 is not None else ()


class DeployLogError(Exception):
    """The deploy log could not be read or written; str() is the operator message."""


def new_deploy_id(now=None, suffix=None):
    """A unique, sortable deploy id: 'fdt-20260522T101530Z-3f9a1c'."""
    moment = datetime.datetime.fromtimestamp(now, tz=datetime.timezone.utc) if now is not None \
        else datetime.datetime.now(tz=datetime.timezone.utc)
    return 'fdt-%s-%s' % (moment.strftime('%Y%m%dT%H%M%SZ'), suffix or os.urandom(3).hex())


def log_params(report, deploy_id=None):
    """The query parameters for one report dict (see report.build_report)."""
    deploy_id = deploy_id or report.get('deploy_id')
    if not deploy_id:
        raise DeployLogError('cannot write the deploy log %s: the report has no deploy_id; '
                             'pass one (deploylog.new_deploy_id() makes one)' % TABLE)
    outage = report.get('outage') or {}
    phases = report.get('phases') or []
    started_at = outage.get('started_at') or next((p.get('started_at') for p in phases if p.get('started_at')), None)
    return {
        'deploy_id': str(deploy_id),
        'started_at': started_at,
        'outage_ms': outage.get('outage_ms'),
        # The report's own word (outcomes: the timeline, report.json and this column say the same).
        'outcome': report.get('outcome') or outcomes.UNKNOWN,
        'patches': json.dumps(report.get('patches') or [], sort_keys=True, default=str),
        'phases': json.dumps(phases, sort_keys=True, default=str),
        'estimate_ms': outage.get('estimate_ms'),
        # What the operator overrode (a deploy window, a contract change): who, why, when.
        'overrides': json.dumps(report.get('overrides') or [], sort_keys=True, default=str),
    }


def ensure_deploy_log(conn, check_mode=False):
    """Create the table if it is missing, or add the columns an older
    version lacks (UPGRADES); True when it was (or would be) changed.

    Checks first, so an up-to-date table costs two reads and no DDL lock. Commits.
    """
    def work(cur):
        cur.execute(EXISTS_SQL)
        if cur.fetchone()[0]:
            cur.execute(COLUMNS_SQL)
            present = set(row[0] for row in cur.fetchall())
            missing = [sql for column, sql in UPGRADES if column not in present]
            if not check_mode:
                for statement in missing:
                    cur.execute(statement)
            return bool(missing)
        if not check_mode:
            for statement in CREATE_SQL:
                cur.execute(statement)
        return True
    return _in_transaction(conn, work, 'create')


def write_deploy_log(conn, report, deploy_id=None):
    """Insert (or bring up to date) the row of one run; True when the table changed.

    Runs in its own short transaction with a statement and lock timeout, and
    commits: call it after RESUME, with no transaction of the caller open.
    """
    params = log_params(report, deploy_id)

    def work(cur):
        cur.execute('SET LOCAL statement_timeout = %d' % WRITE_TIMEOUT_MS)
        # Shorter, so a lock held on the table is named as such.
        cur.execute('SET LOCAL lock_timeout = %d' % (WRITE_TIMEOUT_MS // 2))
        cur.execute(UPSERT_SQL, params)
        return cur.fetchone() is not None
    return _in_transaction(conn, work, 'write')


def read_deploy_log(conn, deploy_id):
    """The row of one run as a dict (None when absent)."""
    def work(cur):
        cur.execute(READ_SQL, {'deploy_id': deploy_id})
        row = cur.fetchone()
        if row is None:
            return None
        return dict(zip([c[0] for c in cur.description], row))
    return _in_transaction(conn, work, 'read')


def _in_transaction(conn, work, verb):
    """Run ``work(cursor)`` in one transaction on a blocking connection,
    autocommit or not; any database error rolls back and becomes one line."""
    autocommit = bool(getattr(conn, 'autocommit', False))
    cur = conn.cursor()
    try:
        if autocommit:
            cur.execute('BEGIN')
        result = work(cur)
        if autocommit:
            cur.execute('COMMIT')
        else:
            conn.commit()
        return result
    except _DB_ERRORS as exc:
        _rollback(conn, cur, autocommit)
        raise DeployLogError('%s: cannot %s the deploy log %s: %s%s' % (
            _where(conn), verb, TABLE, _message(exc), _advice(exc)))
    except BaseException:
        _rollback(conn, cur, autocommit)
        raise
    finally:
        cur.close()


def _rollback(conn, cur, autocommit):
    try:
        if autocommit:
            cur.execute('ROLLBACK')
        else:
            conn.rollback()
    except _DB_ERRORS:  # the connection is gone; nothing is left to undo
        pass


def _message(exc):
    diag = getattr(exc, 'diag', None)
    text = getattr(diag, 'message_primary', None) or getattr(exc, 'pgerror', None) or str(exc)
    text = one_line(text)
    return text[len('ERROR: '):] if text.startswith('ERROR: ') else text


def _advice(exc):
    code = getattr(exc, 'pgcode', None) or ''
    if code == '42501':
        return ': grant the deploy user CREATE on the database and rights on schema fastdowntime'
    if code in ('57014', '55P03'):
        return ': the table is locked or slow; the deploy itself is unaffected, retry the write later'
    if code == '25006':
        return ': this is a read-only server; write the deploy log on the primary'
    return ''


def _where(conn):
    info = getattr(conn, 'info', None)
    host, port = getattr(info, 'host', None), getattr(info, 'port', None)
    return host_port(host, port) if host else 'primary'
