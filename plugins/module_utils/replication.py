# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Standbys as PostgreSQL sees them: who streams from whom, and who is who.

A standby is who it says it is. Each standby is asked (``pg_stat_wal_receiver``:
status, sender host and port, slot, the application name it connects with) and
its upstream's ``pg_stat_replication`` row is found through facts, in this order:

1. the per-standby override ``standby_application_name`` (the inventory's
   ``fastdowntime_standby_application_name``): the application_name its upstream
   shows for it - when given, nothing else is tried;
2. its replication slot: ``pg_replication_slots.active_pid`` on the upstream is
   the pid of the walsender serving it;
3. the application_name it connects with (``application_name`` of its
   ``primary_conninfo``, else its ``cluster_name``, else ``walreceiver``), when
   only one row has it;
4. its addresses (the inventory host, resolved), when only one row comes from them;
5. elimination: the standbys left and the rows left are as many, and each of
   those standbys says it streams from this upstream (default names from one
   address without slots: who is who is unknown, that each streams is not).

A row claimed twice counts for neither. The upstream of a standby is the
inventory database host its ``sender_host``/``sender_port`` resolve to (the
primary when none does: a relay, a NAT, a virtual address); a cascade is fine
as long as every chain ends at the primary.

The same rules serve the pre-flight (``assign`` over every upstream), the
outage's cross-check of the primary's view after the replay wait
(``match_replication_rows``) and the standbys' facts gathered before the
window (``check_standbys``).

Also here, everything else about standbys: whose replay pause it is (markers,
settings below the primary's), what blocks replay (recovery conflicts,
hot_standby_feedback, long transactions against max_standby_*_delay), pausing
and resuming replay (the split window), the replay wait (commit-exact: the
standby's own pg_xact_status() of the deploy's transaction) and which pgbouncer
entries are fenced when a standby lacks the schema.

Pure functions (rows in, decisions out) are unit-tested without a database;
the SQL lives here too, so one module knows what PostgreSQL says about standbys.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re
import select
import time

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import pgversion
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import (
    ConnectError, connect, endpoint_label, one_line, psycopg2, query, rows_as_dicts, wait)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.schema import (
    DEFAULT_REVISION_TABLE, SchemaError, _end_read, _pg_message, newest_revision_sql)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.topology import (
    resolve_addresses, serving_entries)


class ReplicationError(SchemaError):
    """A standby does not have (or cannot be shown to have) the new schema, or
    its replay could not be paused; str() is the operator's one line and
    ``lagging`` lists the standbys (endpoint labels) whose entries stay fenced.
    A SchemaError, so a window has one failure path for both."""


# On a standby: its WAL receiver (one row, NULLs when none runs) and its name.
RECEIVER_SQL = """
SELECT r.status, r.sender_host, r.sender_port, r.slot_name, r.conninfo,
       current_setting('cluster_name') AS cluster_name
  FROM (SELECT 1) AS one LEFT JOIN pg_stat_wal_receiver AS r ON true
"""
# On any upstream (the primary, or a standby feeding a cascade): its walsenders.
WALSENDERS_SQL = """
SELECT r.pid, r.application_name, host(r.client_addr) AS client_addr, r.client_hostname, r.client_port, r.state,
       r.sync_state, r.replay_lsn::text AS replay_lsn, EXTRACT(EPOCH FROM r.replay_lag)::float8 AS replay_lag_seconds,
       s.slot_name, s.slot_type
  FROM pg_stat_replication AS r LEFT JOIN pg_replication_slots AS s ON s.active_pid = r.pid
"""
# On the primary: the synchronous replication set-up, as a client gets it (on a
# connection opened with local_commits=False: postgres.LOCAL_COMMITS overrides it).
# ``remote_apply_by``: the roles and databases whose own setting (ALTER ROLE / ALTER DATABASE ...
# SET synchronous_commit = remote_apply) makes their clients' commits wait for replay in this
# database, whatever the server's and the deploy user's setting.
SYNCHRONOUS_SQL = """
SELECT current_setting('synchronous_standby_names') AS synchronous_standby_names,
       current_setting('synchronous_commit') AS synchronous_commit,
       ARRAY(SELECT concat_ws(' ', 'role ' || quote_ident(r.rolname), CASE WHEN s.setrole = 0 THEN 'database '
                              ELSE 'in database ' END || quote_ident(d.datname))
               FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole
                    LEFT JOIN pg_database d ON d.oid = s.setdatabase
              WHERE s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
                AND 'synchronous_commit=remote_apply' = ANY (s.setconfig)
              ORDER BY 1) AS remote_apply_by
"""

DEFAULT_RECEIVER_NAME = 'walreceiver'
PRIMARY = 'primary'  # the upstream key of the primary in upstream maps

_CONNINFO_APPNAME = re.compile(r"(?:^|\s)application_name\s*=\s*('(?:[^'\\]|\\.)*'|\S+)")


def receiver_application_name(receiver):
    """The application_name a standby's WAL receiver connects with, as its
    upstream shows it: ``application_name`` in its conninfo, else its
    ``cluster_name``, else ``walreceiver`` (PostgreSQL's rule).
    ``receiver``: a RECEIVER_SQL row (dict)."""
    match = _CONNINFO_APPNAME.search((receiver or {}).get('conninfo') or '')
    if match:
        value = match.group(1)
        if value.startswith("'"):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        if value:
            return value
    return (receiver or {}).get('cluster_name') or DEFAULT_RECEIVER_NAME


# On a standby whose WAL receiver is not running (pg_stat_wal_receiver empty): the
# upstream it is configured to stream from (a row only where the user may read it:
# pg_read_all_settings, part of pg_monitor).
CONFIGURED_UPSTREAM_SQL = "SELECT setting AS primary_conninfo FROM pg_settings WHERE name = 'primary_conninfo'"
_CONNINFO_KEYWORD = r"(?:^|\s)%s\s*=\s*('(?:[^'\\]|\\.)*'|\S+)"
_CONNINFO_URI = re.compile(r"^postgres(?:ql)?://(?:[^@/]*@)?(\[[^\]]+\]|[^:/?,]+)(?::(\d+))?")


def configured_sender(conninfo):
    """{'sender_host', 'sender_port'} of a ``primary_conninfo`` (keyword=value
    or URI form; the first host of a list), as locate_upstream() takes them,
    or None when it names no host."""
    conninfo = (conninfo or '').strip()
    uri = _CONNINFO_URI.match(conninfo)
    if uri:
        return {'sender_host': uri.group(1).strip('[]'), 'sender_port': int(uri.group(2) or 5432)}
    values = {}
    for key in ('host', 'hostaddr', 'port'):
        match = re.search(_CONNINFO_KEYWORD % key, conninfo)
        if match:
            value = match.group(1)
            values[key] = re.sub(r"\\(.)", r"\1", value[1:-1]) if value.startswith("'") else value
    host = (values.get('hostaddr') or values.get('host') or '').split(',')[0]
    if not host or host.startswith('/'):
        return None
    port = (values.get('port') or '5432').split(',')[0]
    return {'sender_host': host, 'sender_port': int(port) if port.isdigit() else 5432}


def normalize_address(text):
    """An address as PostgreSQL's host() prints it, so addresses compare: IPv6
    compressed and lower case, a zone id (fe80::1%eth0) dropped, an IPv4-mapped
    IPv6 address (::ffff:10.0.0.1, a dual-stack listener) as IPv4. A name, a
    unix socket directory or None stays as it is."""
    if not text:
        return text
    try:
        address = ipaddress.ip_address(str(text).split('%', 1)[0].strip('[]'))
    except ValueError:
        return text
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


def _addresses(values):
    return set(normalize_address(value) for value in values or () if value)


def standby_rows(rows):
    """The walsender rows that can be a standby: not a logical decoding client
    (a logical slot: CDC, a subscription), not a base backup (state 'backup')
    and not a WAL stream nobody replays (replay_lsn NULL: pg_basebackup's WAL
    stream, pg_receivewal, barman) - those stream too, but never serve a read."""
    return [row for row in rows or () if row.get('slot_type') != 'logical' and row.get('state') != 'backup'
            and row.get('replay_lsn') is not None]


def identify(rows, standby, claimed=()):
    """The upstream's row of one standby: (row, how) or (None, why).

    ``rows``: the upstream's WALSENDERS_SQL rows. ``standby``: {'label',
    'override' (the name the upstream sees, or None), 'receiver' (its
    RECEIVER_SQL row), 'addresses' (set of its resolved addresses)}.
    ``claimed``: pids already given to other standbys (skipped)."""
    rows = [row for row in rows if row.get('pid') not in set(claimed)]
    override = standby.get('override')
    if override:
        found = [row for row in rows if row.get('application_name') == override]
        if len(found) == 1:
            return found[0], 'application_name %s (fastdowntime_standby_application_name)' % override
        return None, ('%s rows have application_name %s (fastdowntime_standby_application_name)'
                      % ('several' if found else 'no', override))
    receiver = standby.get('receiver') or {}
    tried = []
    slot = receiver.get('slot_name')
    if slot:
        found = [row for row in rows if row.get('slot_name') == slot]
        if len(found) == 1:
            return found[0], 'slot %s' % slot
        tried.append('slot %s' % slot)
    name = receiver_application_name(receiver)
    found = [row for row in rows if row.get('application_name') == name]
    if len(found) == 1:
        return found[0], 'application_name %s' % name
    tried.append('application_name %s (%s rows)' % (name, len(found)))
    addresses = _addresses(standby.get('addresses'))
    found = [row for row in rows if normalize_address(row.get('client_addr')) in addresses]
    if len(found) == 1:
        return found[0], 'client_addr %s' % found[0]['client_addr']
    tried.append('client_addr in %s (%s rows)' % (', '.join(sorted(addresses)) or 'nothing', len(found)))
    return None, 'matched by none of: ' + '; '.join(tried)


def assign(rows, standbys):
    """Match every standby streaming from one upstream to that upstream's rows.

    Returns {label: {'row': row or None, 'how': str, 'matched': bool}}:
    ``matched`` is True when the row is this standby's (or, by elimination, when
    the standbys left and the rows left are as many). A row two standbys claim
    is given to neither; standbys matched later (slots first) free rows for the
    others, so the rules run until nothing changes. Only standby_rows() count."""
    rows = standby_rows(rows)
    result = dict((s['label'], {'row': None, 'how': '', 'matched': False}) for s in standbys)
    claimed = {}
    progress = True
    while progress:
        progress = False
        wanted = {}
        for standby in standbys:
            if result[standby['label']]['matched']:
                continue
            row, how = identify(rows, standby, claimed)
            result[standby['label']]['how'] = how
            if row is not None:
                wanted.setdefault(row['pid'], []).append((standby['label'], row, how))
        for pid, claims in wanted.items():
            if len(claims) == 1:
                label, row, how = claims[0]
                result[label] = {'row': row, 'how': how, 'matched': True}
                claimed[pid] = label
                progress = True
            else:
                for label in [c[0] for c in claims]:
                    result[label]['how'] = 'the same row as %s' % ', '.join(c[0] for c in claims if c[0] != label)
    left = [s for s in standbys if not result[s['label']]['matched'] and not s.get('override')]
    rows_left = [row for row in rows if row.get('pid') not in claimed and row.get('state') == 'streaming']
    if left and len(left) == len(rows_left) \
            and all((s.get('receiver') or {}).get('status') == 'streaming' for s in left):
        for standby in left:
            result[standby['label']] = {'row': None, 'matched': True,
                                        'how': 'elimination (%d unnamed rows for %d standbys)'
                                               % (len(rows_left), len(left))}
    return result


def unmatched_rows(rows, identities):
    """The rows of one upstream's pg_stat_replication (WALSENDERS_SQL) that
    stream to a standby (standby_rows(), state 'streaming') and that no
    inventory standby was matched to: what assign() did not match.

    ``identities``: assign()'s values for every standby matched against these
    rows (a standby matched by elimination took every row left: then none is
    unmatched). Returns the rows, in the upstream's order."""
    identities = list(identities or ())
    if any(found.get('matched') and found.get('row') is None for found in identities):
        return []
    taken = set(found['row'].get('pid') for found in identities if found.get('matched') and found.get('row'))
    return [row for row in standby_rows(rows) if row.get('state') == 'streaming' and row.get('pid') not in taken]


def _alike(row):
    """What tells a walsender row apart for an operator, slot aside."""
    return (row.get('application_name'), normalize_address(row.get('client_addr')), row.get('client_hostname'))


def describe_row(row, upstream, primary_label, rows=()):
    """One pg_stat_replication row as the operator finds it again, e.g.
    ``application_name 'standby2' from 10.0.0.12 (slot standby2, streaming,
    async) on primary (10.0.0.10:5432)``; on a standby of the inventory, ``a
    cascade: it streams from standby1 (...)``. ``rows``: every row of that
    upstream, to say when others look the same (same application_name and
    address, no slot: which standby it is cannot be told from the upstream)."""
    source = row.get('client_addr')
    if source and row.get('client_hostname'):
        source = '%s (%s)' % (source, row['client_hostname'])
    text = "application_name '%s' from %s (%s%s, %s) on %s" % (
        row.get('application_name') or '', source or 'a local socket',
        'slot %s, ' % row['slot_name'] if row.get('slot_name') else '', row.get('state'),
        row.get('sync_state') or 'async', upstream)
    if upstream != primary_label:
        text += ' (a cascade: it streams from %s, not from the primary)' % upstream
    alike = [r for r in rows or () if r is not row and r.get('pid') != row.get('pid') and _alike(r) == _alike(row)]
    if alike and not row.get('slot_name'):
        text += ' - like %d other row(s) there, without a slot' % len(alike)
    return text


def locate_upstream(receiver, servers):
    """The label of the server a standby streams from, or None when no
    inventory database host is at its receiver's sender_host (a relay, a NAT,
    a virtual address: the caller assumes the primary).

    ``servers``: [{'label', 'addresses' (set, resolved), 'port'}]; the
    sender_host is given resolved too, as ``receiver['sender_addresses']``."""
    sender = _addresses((receiver or {}).get('sender_addresses'))
    if (receiver or {}).get('sender_host'):
        sender.add(normalize_address(receiver['sender_host']))
    at_host = [s for s in servers if sender & _addresses(s.get('addresses'))]
    at_port = [s for s in at_host if s.get('port') == (receiver or {}).get('sender_port')]
    if len(at_port) == 1:
        return at_port[0]['label']
    if len(at_host) == 1:  # that host, another port: a relay or pooler in front of it
        return at_host[0]['label']
    return None


def chain_problems(upstreams, primary_label):
    """Every chain of upstreams ends at the primary. ``upstreams``: {standby
    label: upstream label}. Returns {standby label: problem text} for the
    standbys whose chain loops."""
    problems = {}
    for label in upstreams:
        seen, current = [label], upstreams[label]
        while current != primary_label:
            if current in seen:
                problems[label] = 'its upstream chain loops (%s)' % ' -> '.join(seen + [current])
                break
            seen.append(current)
            if current not in upstreams:
                problems[label] = 'its upstream %s is not a standby of this primary' % current
                break
            current = upstreams[current]
    return problems


def describe_synchronous(settings, rows_by_upstream):
    """The synchronous set-up in one line, and whether a COMMIT on the primary
    waits for a standby's replay (synchronous_commit remote_apply with
    synchronous standbys). ``settings``: a SYNCHRONOUS_SQL row of the primary;
    ``rows_by_upstream``: {upstream label: walsender rows}."""
    names = (settings or {}).get('synchronous_standby_names') or ''
    commit = (settings or {}).get('synchronous_commit') or 'on'
    sync = sorted(row.get('application_name') or '?' for row in rows_by_upstream.get(PRIMARY, [])
                  if row.get('sync_state') in ('sync', 'quorum'))
    if not names.strip():
        return {'synchronous': False, 'waits_for_replay': False, 'text': 'no synchronous standbys'}
    return {'synchronous': True, 'waits_for_replay': commit == 'remote_apply' and bool(sync),
            'synchronous_standby_names': names, 'synchronous_commit': commit, 'sync_rows': sync,
            'remote_apply_by': list((settings or {}).get('remote_apply_by') or []),
            'text': "synchronous_standby_names = '%s', synchronous_commit = %s, synchronous now: %s"
                    % (names, commit, ', '.join(sync) or 'none')}


# -- replay paused: whose pause is it? ------------------------------------------
# A split window leaves a marker on the primary (one row per standby) before it
# pauses replay and removes it once replay is resumed: a pause with a marker is
# this collection's own (a crashed run); one without is PostgreSQL's or an operator's.
PAUSE_MARKER_TABLE = 'fastdowntime.replay_pause'
PAUSE_MARKER_CREATE = ('CREATE SCHEMA IF NOT EXISTS fastdowntime',
                       'CREATE TABLE IF NOT EXISTS %s (standby text PRIMARY KEY, deploy_id text NOT NULL, '
                       'paused_at timestamptz NOT NULL DEFAULT now())' % PAUSE_MARKER_TABLE)
# The settings a hot standby needs at least as high as the primary's: below
# them, PostgreSQL pauses replay at the primary's parameter change, and the
# standby shuts down once replay is resumed.
HOT_STANDBY_SETTINGS = ('max_connections', 'max_worker_processes', 'max_wal_senders',
                        'max_prepared_transactions', 'max_locks_per_transaction')
SETTINGS_SQL = ('SELECT name, setting::bigint AS value FROM pg_settings WHERE name IN (%s)'
                % ', '.join("'%s'" % name for name in HOT_STANDBY_SETTINGS))


def marker_key(endpoint):
    """The marker's name for a standby endpoint: its inventory name, else host:port."""
    return endpoint.get('name') or '%s:%s' % (endpoint.get('host'), endpoint.get('port') or 5432)


def mark_pauses(conn, deploy_id, endpoints):
    """Record that ``deploy_id`` is about to pause replay on ``endpoints``
    (committed before any pause). ``conn``: an autocommit connection to the primary."""
    with conn.cursor() as cur:
        if not _marker_table_exists(cur):
            for statement in PAUSE_MARKER_CREATE:
                cur.execute(statement)
        for endpoint in endpoints:
            cur.execute('INSERT INTO %s (standby, deploy_id) VALUES (%%s, %%s) ON CONFLICT (standby) DO UPDATE '
                        'SET deploy_id = EXCLUDED.deploy_id, paused_at = now()' % PAUSE_MARKER_TABLE,
                        (marker_key(endpoint), deploy_id))


def read_pauses(conn):
    """{standby marker key: deploy_id} of the markers on the primary (none when the table is missing)."""
    with conn.cursor() as cur:
        if not _marker_table_exists(cur):
            return {}
        cur.execute('SELECT standby, deploy_id FROM %s' % PAUSE_MARKER_TABLE)
        return dict(cur.fetchall())


def clear_pauses(conn, keys):
    """Forget the markers of ``keys`` (replay resumed there)."""
    with conn.cursor() as cur:
        if keys and _marker_table_exists(cur):
            # Its own transaction committing locally: a synchronous standby whose
            # replay is held must not hold this commit.
            cur.execute('BEGIN; SET LOCAL synchronous_commit = local; DELETE FROM %s WHERE standby = ANY(%%s); COMMIT'
                        % PAUSE_MARKER_TABLE, (list(keys),))


def _marker_table_exists(cur):
    cur.execute("SELECT to_regclass('%s') IS NOT NULL" % PAUSE_MARKER_TABLE)
    return cur.fetchone()[0]


def settings_below(standby_settings, primary_settings):
    """[(name, standby value, primary value)] for every hot-standby setting the
    standby has below the primary's. Both: {name: int}."""
    return [(name, standby_settings[name], primary_settings[name]) for name in HOT_STANDBY_SETTINGS
            if name in standby_settings and name in primary_settings
            and standby_settings[name] < primary_settings[name]]


# A standby with a recovery target and recovery_target_action = pause stops
# there: pg_wal_replay_resume() then ENDS recovery (it promotes).
RECOVERY_TARGET_SQL = ("SELECT name, setting FROM pg_settings WHERE name IN ('recovery_target', "
                       "'recovery_target_lsn', 'recovery_target_name', 'recovery_target_time', "
                       "'recovery_target_xid', 'recovery_target_action')")


def recovery_target(settings):
    """The recovery target a standby pauses at, as text ('recovery_target_lsn =
    0/5000000'), or None when it has none or does not pause there.
    ``settings``: {name: setting} of RECOVERY_TARGET_SQL."""
    if (settings or {}).get('recovery_target_action') != 'pause':
        return None
    targets = ['%s = %s' % (name, value) for name, value in sorted(settings.items())
               if name != 'recovery_target_action' and value not in (None, '')]
    return ', '.join(targets) or None


# Whose pause a run may resume: its own split window's (a marker) unless told
# not to, an operator's only when told to, PostgreSQL's never.
PAUSE_CAUSES = ('fastdowntime', 'operator', 'postgresql', 'recovery_target')


def pause_cause(state, marked, below, target=None):
    """Why replay is paused: None (not paused), 'recovery_target' (``target``,
    recovery_target() of the standby: resuming promotes it), 'postgresql'
    (``below``, settings below the primary's: resuming shuts the standby down),
    'fastdowntime' (``marked``, a marker of a split run) or 'operator'
    (anything else: somebody wanted it)."""
    if state == 'not paused':
        return None
    if target:
        return 'recovery_target'
    if below:
        return 'postgresql'
    return 'fastdowntime' if marked else 'operator'


def may_resume(cause, resume_ours=True, resume_operators=False):
    """Whether the pre-flight resumes a pause of ``cause`` (pause_cause):
    ours when ``resume_ours`` (fastdowntime_resume_paused_replay), an
    operator's only when ``resume_operators``
    (fastdowntime_resume_operator_replay_pause), PostgreSQL's never."""
    if cause == 'fastdowntime':
        return bool(resume_ours)
    if cause == 'operator':
        return bool(resume_operators)
    return False


# -- what blocks replay on a standby ---------------------------------------------
# On a standby: how long replay waits for a conflicting query before cancelling
# it (streaming, or restoring from the archive), whether it sends feedback, and
# what its startup process (replay) waits for now, behind which backends.
REPLAY_CONFLICT_SQL = """
SELECT current_setting('max_standby_streaming_delay') AS max_standby_streaming_delay,
       (SELECT setting::bigint FROM pg_settings WHERE name = 'max_standby_streaming_delay') AS delay_ms,
       current_setting('max_standby_archive_delay') AS max_standby_archive_delay,
       (SELECT setting::bigint FROM pg_settings WHERE name = 'max_standby_archive_delay') AS archive_delay_ms,
       current_setting('hot_standby_feedback') AS hot_standby_feedback,
       current_setting('recovery_min_apply_delay') AS recovery_min_apply_delay,
       (SELECT setting::bigint FROM pg_settings WHERE name = 'recovery_min_apply_delay') AS apply_delay_ms,
       (SELECT status FROM pg_stat_wal_receiver) AS receiver_status,
       s.wait_event_type AS startup_wait_event_type, s.wait_event AS startup_wait_event,
       ARRAY(SELECT DISTINCT h.pid FROM pg_locks AS w JOIN pg_locks AS h
                    ON h.locktype = w.locktype AND h.database IS NOT DISTINCT FROM w.database
                   AND h.relation IS NOT DISTINCT FROM w.relation AND h.granted AND h.pid <> w.pid
              WHERE w.pid = s.pid AND NOT w.granted ORDER BY h.pid) AS startup_blocked_by
  FROM (SELECT 1) AS one LEFT JOIN pg_stat_activity AS s ON s.backend_type = 'startup'
"""
# (pg_blocking_pids() of the startup process is empty: it waits for a lock in
# hot standby outside the lock manager's graph; the backends holding a granted
# lock on what it waits for are the ones holding replay.)
# On a standby: queries its replay cancelled (recovery conflicts), per kind,
# for the deploy's database since its statistics were reset. to_jsonb keeps
# every confl_* column the server version has.
RECOVERY_CONFLICTS_SQL = """
SELECT to_jsonb(c) - 'datid' - 'datname' AS counts, d.stats_reset::text AS stats_reset
  FROM pg_stat_database_conflicts AS c JOIN pg_stat_database AS d ON d.datid = c.datid
 WHERE c.datname = current_database()
"""
# What the startup process waits on while a query holds replay (PostgreSQL's
# wait events: a lock it must take, a buffer pin, a snapshot or tablespace conflict).
CONFLICT_WAIT_EVENT_TYPES = ('Lock', 'BufferPin')
CONFLICT_WAIT_EVENTS = ('RecoveryConflictSnapshot', 'RecoveryConflictTablespace')


def blocking_threshold_seconds(budget_seconds):
    """How old a transaction on a standby may be before it is called a replay
    blocker: half the budget, at most 5 s (a read that has run that long is
    likely to outlast the outage)."""
    return min(5.0, float(budget_seconds) / 2)


def replay_delay(conflict):
    """(setting name, setting text, milliseconds) of the max_standby_*_delay
    that bounds how long replay waits for a conflicting query on this standby:
    max_standby_streaming_delay while its WAL receiver streams, else
    max_standby_archive_delay (WAL restored from the archive). ms -1: forever;
    None: unknown. ``conflict``: a REPLAY_CONFLICT_SQL row."""
    conflict = conflict or {}
    if conflict.get('receiver_status') in (None, 'streaming') or conflict.get('archive_delay_ms') is None:
        return 'max_standby_streaming_delay', conflict.get('max_standby_streaming_delay'), conflict.get('delay_ms')
    return 'max_standby_archive_delay', conflict.get('max_standby_archive_delay'), conflict.get('archive_delay_ms')


def held_now(conflict):
    """Replay held right now by a recovery conflict: {'wait_event', 'blocked_by'
    (pids)} from the startup process's wait, or None."""
    conflict = conflict or {}
    kind, event = conflict.get('startup_wait_event_type'), conflict.get('startup_wait_event')
    if kind in CONFLICT_WAIT_EVENT_TYPES or event in CONFLICT_WAIT_EVENTS:
        return {'wait_event': '%s:%s' % (kind, event), 'blocked_by': list(conflict.get('startup_blocked_by') or [])}
    return None


def queries_can_hold(conflict, budget_seconds):
    """Whether a query on this standby can hold its replay past the budget:
    its max_standby_*_delay (replay_delay) is -1 (forever) or at least the budget."""
    dummy, dummy, delay_ms = replay_delay(conflict)
    return delay_ms is not None and (delay_ms < 0 or delay_ms >= float(budget_seconds) * 1000)


def replay_stuck(conflict, budget_seconds):
    """Replay on this standby cannot reach a new commit inside the budget, now:
    a delayed standby (apply_delay_late) or replay held by a query that may hold
    it past the budget (held_now where queries_can_hold). The pre-flight does
    not wait for such a standby to replay its lag probe."""
    return apply_delay_late(conflict, budget_seconds) or bool(
        held_now(conflict) and queries_can_hold(conflict, budget_seconds))


def replay_blockers(conflict, activity_rows, budget_seconds):
    """What may hold one standby's replay of the outage's commit past the
    budget. Only where its max_standby_*_delay (replay_delay) lets a query hold
    replay that long (-1: forever, or at least the budget) - below that,
    replay cancels the query instead and the budget is at most that delay
    shorter.

    ``conflict``: a REPLAY_CONFLICT_SQL row; ``activity_rows``: the standby's
    client backends (pid, usename, application_name, state, xact_seconds,
    query). Returns (can_block, rows): the transactions older than
    blocking_threshold_seconds plus the backends replay waits for now
    (held_now), each once."""
    if not queries_can_hold(conflict, budget_seconds):
        return False, []
    threshold = blocking_threshold_seconds(budget_seconds)
    holding = set((held_now(conflict) or {}).get('blocked_by') or [])
    return True, [row for row in activity_rows
                  if row.get('pid') in holding
                  or (row.get('xact_seconds') is not None and row['xact_seconds'] >= threshold)]


def apply_delay_late(conflict, budget_seconds):
    """A delayed standby (recovery_min_apply_delay, ms) replays every commit at
    least that late: True when that is the budget or more - it cannot have the
    schema inside the outage."""
    return ((conflict or {}).get('apply_delay_ms') or 0) >= float(budget_seconds) * 1000


def feedback_effect(conflict, can_block):
    """What hot_standby_feedback means for the outage, in one phrase, and
    whether it is a risk: off, VACUUM on the primary conflicts with any query
    on this standby (snapshot conflicts), which then holds replay when the
    delay lets it (can_block); on, only queries on what the patches lock
    conflict (the primary keeps dead rows the standby's queries still see)."""
    if (conflict or {}).get('hot_standby_feedback') == 'off':
        return ('hot_standby_feedback = off: a VACUUM on the primary conflicts with any query here, not only with '
                'queries on the patched tables', bool(can_block))
    return ('hot_standby_feedback = on: only queries on what the patches lock conflict with replay (no vacuum '
            'conflicts)', False)


def conflict_counts(row):
    """{kind: count} of the queries replay cancelled on this standby (nonzero
    only, 'confl_' dropped), and since when. ``row``: a
    RECOVERY_CONFLICTS_SQL row (None: the database has no row)."""
    counts = dict((name[6:] if name.startswith('confl_') else name, int(value or 0))
                  for name, value in ((row or {}).get('counts') or {}).items())
    return dict((k, v) for k, v in counts.items() if v), (row or {}).get('stats_reset')


def split_blocked_by_synchronous(synchronous):
    """A split window pauses replay while writes come back; a synchronous
    standby with synchronous_commit remote_apply would then hold every
    client's COMMIT until replay resumes (forever, if the controller dies):
    the reason to refuse split, or None."""
    if not synchronous or not synchronous.get('synchronous'):
        return None
    if synchronous.get('synchronous_commit') == 'remote_apply':
        return ("synchronous_commit = remote_apply with synchronous_standby_names = '%s': clients' commits would "
                "wait for replay the split window pauses" % synchronous.get('synchronous_standby_names'))
    if synchronous.get('remote_apply_by'):
        # The server's setting is not remote_apply, but these roles' or databases' own is.
        return ("synchronous_commit = remote_apply set for %s, with synchronous_standby_names = '%s': those clients' "
                "commits would wait for replay the split window pauses, and the drain for those commits"
                % (', '.join(synchronous['remote_apply_by']), synchronous.get('synchronous_standby_names')))
    return None


# -- lag: how long a standby takes to replay a new WAL record ------------------------
# The lag probe: a transactional message, so its COMMIT flushes it and the
# walsenders send it at once. A non-transactional one (PostgreSQL < 17 has no
# flush argument) stays unflushed until some unrelated flush - up to
# wal_writer_delay (200 ms) measured as "catch-up" on an idle lab, inflating
# the outage estimate ten-fold for a one-statement patch. No data touched.
# Its COMMIT is local (set_config ... true: this statement's transaction only), whatever the session's
# synchronous_commit: the pre-flight's and the outage observer's sessions keep a client's settings to read
# them, and with a synchronous standby unreachable (or its replay held, remote_apply) the probe's COMMIT
# waited for it without a bound - the pre-flight hung instead of naming the standby. measure_lag's polls,
# within their deadline, are what wait for the standbys.
# The lag probe polls a standby behind it every REPLAY_WAIT_POLL_SECONDS (as the window's replay wait) for this
# long, then at a pause that doubles up to 0.1 s.
LAG_PROBE_FIXED_POLL_SECONDS = 0.05
LAG_PROBE_SQL = ("SELECT pg_logical_emit_message(true, 'fastdowntime', 'preflight')::text AS lsn, "
                 "set_config('synchronous_commit', 'local', true) AS probe_commit")
LAG_SQL = ('SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn AS caught_up, '
           'pg_wal_lsn_diff(%s::pg_lsn, pg_last_wal_replay_lsn())::float8 AS bytes_behind, '
           'CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END AS replay_paused')
# measure_lag's answer for a standby whose replay is paused: it cannot catch up, so it is not waited for.
REPLAY_PAUSED_TEXT = 'its WAL replay is paused (pg_wal_replay_resume() on it, unless it was paused on purpose)'


def measure_lag(standbys, lsn, max_seconds, lost=None, clock=None, sleep=None):
    """Poll every standby until it has replayed ``lsn`` (LAG_PROBE_SQL's, just
    written on the primary) or ``max_seconds`` pass. ``standbys``: [(label,
    blocking connection)]; ``lost(label, conn, exc)``: True when a failed query
    means the connection is gone (that standby is then left out: the caller
    reports it). Returns [{'label', 'probe_lsn', 'bytes_behind' (when the probe
    was written), 'catch_up_seconds' (None: not within max_seconds),
    'replay_wait_seconds', 'error'}].

    The standbys are asked one after the other (blocking connections), so a
    standby's ``catch_up_seconds`` also holds the round trips of the standbys
    asked before it in the same sweep. ``replay_wait_seconds`` leaves them
    out: it is the sweep's start plus that standby's own question - what the
    window's replay wait (wait_for_replay), which asks every standby at once,
    would have waited for it (one round trip when the standby had replayed
    the probe by the first question), in seconds; None when not caught up.
    ``clock``, ``sleep``: time.monotonic, time.sleep unless given (tests)."""
    clock, sleep = clock or time.monotonic, sleep or time.sleep
    began = clock()
    deadline = began + max_seconds
    states = dict((label, {'label': label, 'probe_lsn': lsn, 'bytes_behind': None, 'catch_up_seconds': None,
                           'replay_wait_seconds': None, 'error': None}) for label, dummy in standbys)
    pending = dict(standbys)
    interval = REPLAY_WAIT_POLL_SECONDS
    while pending:
        sweep = clock()
        for label, conn in list(pending.items()):
            state = states[label]
            asked = clock()
            try:
                row = _rows_within(conn, LAG_SQL, (lsn, lsn), max(deadline - asked, LAG_ANSWER_SECONDS))[0]
            except TimeoutError:
                state['error'] = 'no answer within %.1f s' % max(deadline - asked, LAG_ANSWER_SECONDS)
                del pending[label]
                continue
            except psycopg2.Error as exc:
                state['error'] = one_line(exc.pgerror or exc)
                del pending[label]
                if lost is not None and lost(label, conn, exc):
                    del states[label]
                continue
            if row['caught_up'] is None:
                state['error'] = 'not in recovery'
                del pending[label]
                continue
            if state['bytes_behind'] is None:
                state['bytes_behind'] = max(int(row['bytes_behind'] or 0), 0)
            if row.get('replay_paused') and not row['caught_up']:
                state['error'] = REPLAY_PAUSED_TEXT
                del pending[label]
                continue
            if row['caught_up']:
                answered = clock()
                state['catch_up_seconds'] = round(answered - began, 4)
                state['replay_wait_seconds'] = round(sweep - began + answered - asked, 4)
                del pending[label]
        if not pending or clock() >= deadline:
            break
        sleep(interval)
        # As the window's replay wait polls at first, so a quick catch-up is timed as the window would see it;
        # a standby still behind after LAG_PROBE_FIXED_POLL_SECONDS is asked less and less often.
        if clock() - began >= LAG_PROBE_FIXED_POLL_SECONDS:
            interval = min(interval * 2, 0.1)
    return [states[label] for label, dummy in standbys if label in states]


# The least a lag question on a non-blocking connection is given to be answered (seconds).
LAG_ANSWER_SECONDS = 1.0


def _rows_within(conn, sql, params, timeout):
    """Rows (dicts) of ``sql`` on a blocking or a non-blocking connection;
    TimeoutError after ``timeout`` seconds on a non-blocking one (the question
    is left in flight: that connection is of no more use)."""
    if not getattr(conn, 'async_', False):
        return query(conn, sql, params)
    cur = conn.cursor()
    cur.execute(sql, params)
    wait(conn, timeout)
    return rows_as_dicts(cur)


# -- a standby fallen behind since the pre-flight --------------------------------------
# The pre-flight measured the lag (measure_lag), but the window opens later: after the hot
# patches (an index built CONCURRENTLY sends its whole size through the WAL), a network blip
# (TCP's retransmission back-off keeps a standby behind for seconds after its link is back)
# or a replay conflict started since. The window would then wait for that standby after
# COMMIT - with every client queued - and fence it when the budget is spent: an outage
# opened that could not finish. So the outage waits before its clock, nothing paused, until
# every standby has replayed a fresh WAL record (the lag probe), at most this long (seconds;
# well inside the dead-man switch's arming margin, watchdog.ARMING_MARGIN_SECONDS), and
# refuses otherwise.
CATCH_UP_SECONDS = 30.0


def catch_up(primary_conn, standbys, max_seconds=CATCH_UP_SECONDS, clock=None, sleep=None):
    """Write the lag probe (LAG_PROBE_SQL) on the primary (``primary_conn``,
    autocommit: its COMMIT flushes it) and wait until every standby has replayed
    it, at most ``max_seconds``. ``standbys``: [(endpoint, connection)],
    blocking or non-blocking. Returns measure_lag's states, one per standby
    ('label', 'bytes_behind', 'catch_up_seconds' - None when not caught up -,
    'error'); catch_up_refusal reads them. psycopg2.Error from the primary."""
    lsn = query(primary_conn, LAG_PROBE_SQL)[0]['lsn']
    return measure_lag([(endpoint_label(endpoint), conn) for endpoint, conn in standbys], lsn, max_seconds,
                       clock=clock, sleep=sleep)


def catch_up_refusal(states, max_seconds=CATCH_UP_SECONDS):
    """The outage's one-line refusal (nothing paused yet) naming every standby
    of ``states`` (catch_up's) that did not replay the probe within
    ``max_seconds``, how far behind it was and what to do; None when every one did."""
    behind = []
    for state in states:
        if state.get('error'):
            behind.append('%s: %s' % (state['label'], state['error']))
        elif state.get('catch_up_seconds') is None:
            behind.append('%s: %s behind the primary and not caught up within %g s'
                          % (state['label'], _bytes_text(state.get('bytes_behind')), max_seconds))
    if not behind:
        return None
    return ('refused before any PAUSE: %s. The window would hold every client while it waits for that standby '
            'after COMMIT, then fence it. Wait until it has caught up (pg_stat_replication.replay_lsn on the '
            'primary; on the standby pg_stat_wal_receiver, pg_get_wal_replay_pause_state() and the queries '
            'holding its replay) and run the deploy again' % '; '.join(behind))


def _bytes_text(count):
    """'2.1 MB', '512 bytes'; 'an unknown amount' for None."""
    if count is None:
        return 'an unknown amount'
    for unit, size in (('GB', 1 << 30), ('MB', 1 << 20), ('kB', 1 << 10)):
        if count >= size:
            return '%.1f %s' % (count / float(size), unit)
    return '%d bytes' % count


# -- the standbys before the window ----------------------------------------------
# On each standby, in one round trip: is it a replica of this primary, in
# recovery, and what its WAL receiver says (the facts identify() matches with).
STANDBY_FACTS_SQL = """
SELECT c.system_identifier::text AS system_identifier, pg_is_in_recovery() AS in_recovery,
       r.status, r.sender_host, r.sender_port, r.slot_name, r.conninfo,
       current_setting('cluster_name') AS cluster_name
  FROM pg_control_system() AS c LEFT JOIN pg_stat_wal_receiver AS r ON true
"""
RECEIVER_COLUMNS = ('status', 'sender_host', 'sender_port', 'slot_name', 'conninfo', 'cluster_name')


def standby_identity(endpoint, receiver, addresses):
    """What identify()/assign() take for one standby: {'label', 'override',
    'receiver', 'addresses'}. ``endpoint``: its connection endpoint (the
    override is its ``standby_application_name``); ``receiver``: its
    RECEIVER_SQL row (or the receiver columns of STANDBY_FACTS_SQL);
    ``addresses``: its host resolved (set)."""
    return {'label': endpoint_label(endpoint), 'override': endpoint.get('standby_application_name'),
            'receiver': dict((k, (receiver or {}).get(k)) for k in RECEIVER_COLUMNS),
            'addresses': set(addresses or ())}


def check_standbys(primary_conn, standbys, resolver=resolve_addresses):
    """Refuse standbys that are not replicas of this primary (wrong cluster or
    promoted), and return each one's identity (standby_identity) for the replay
    wait's cross-check. Call before the clock starts; ``standbys`` is
    [(endpoint, conn)] (blocking or async connections). -> ReplicationError
    naming the standby."""
    system_id = query_rows(primary_conn, 'SELECT system_identifier::text AS id FROM pg_control_system()')[0]['id']
    identities = []
    for endpoint, conn in standbys:
        label = endpoint_label(endpoint)
        facts = run_on(conn, STANDBY_FACTS_SQL, timeout=endpoint.get('connect_timeout') or 5, label=label)[0]
        if facts['system_identifier'] != system_id:
            raise ReplicationError('%s: not a standby of this primary (system identifier %s, primary %s): '
                                   'check fastdowntime_standbys' % (label, facts['system_identifier'], system_id),
                                   lagging=[label])
        if not facts['in_recovery']:
            raise ReplicationError('%s: not in recovery (promoted?): it is not a standby; check fastdowntime_standbys'
                                   % label, lagging=[label])
        identities.append(standby_identity(endpoint, facts, resolver([endpoint['host']])))
    return identities


def query_rows(conn, sql, params=None):
    """Rows as dicts on a blocking connection, leaving no transaction open."""
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return rows_as_dicts(cur) if cur.description else []
    finally:
        _end_read(conn)


def run_on(conn, sql, params=None, timeout=5.0, label='?'):
    """One query on a blocking or async connection, bounded by ``timeout``."""
    try:
        cur = conn.cursor()
        cur.execute(sql, params)
        if conn.async_:
            wait(conn, timeout)
        return rows_as_dicts(cur)
    except TimeoutError:
        raise ReplicationError('%s: no answer within %.1fs' % (label, timeout), lagging=[label])
    except psycopg2.Error as exc:
        raise ReplicationError('%s: %s' % (label, _pg_message(exc)), lagging=[label])


# -- the replay wait ---------------------------------------------------------------
REPLAY_SQL = ('SELECT pg_last_wal_replay_lsn()::text AS replay_lsn, '
              'coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, false) AS caught_up')

# A transaction is replayed on a standby when the standby itself reports it
# committed. pg_xact_status() raises "transaction ID ... is in the future" for
# an id the standby has not seen yet; the standby's snapshot xmax (its latest
# completed transaction + 1) is never past its next id, so an id below it is
# safe to ask about, and an id at or above it has not completed there.
REPLAY_XACT_SQL = ('SELECT pg_last_wal_replay_lsn()::text AS replay_lsn, '
                   'coalesce(CASE WHEN %(xid)s::xid8 < pg_snapshot_xmax(pg_current_snapshot()) '
                   "THEN pg_xact_status(%(xid)s::xid8) = 'committed' END, false) AS caught_up")

# On the primary after the wait: its walsenders (WALSENDERS_SQL's columns) and
# whether each has confirmed replay of a position.
PRIMARY_VIEW_SQL = """
SELECT r.pid, r.application_name, host(r.client_addr) AS client_addr, r.state, r.sync_state,
       r.replay_lsn::text AS replay_lsn, coalesce(r.replay_lsn >= %s::pg_lsn, false) AS caught_up, s.slot_name,
       s.slot_type
  FROM pg_stat_replication AS r LEFT JOIN pg_replication_slots AS s ON s.active_pid = r.pid
"""


def replay_query(lsn, xid=None):
    """(sql, params) asking a standby whether it has replayed the deploy.

    With ``xid`` (the committed transaction's full id, xid8 as text) the answer
    is exact: true once the standby has replayed that transaction's commit
    record, whatever other sessions wrote to the WAL after it (WAL inserted
    after our commit may stay unflushed, hence unsent, for seconds on an idle
    primary). Without it, true once the standby has replayed up to ``lsn``:
    only for positions known to be flushed (tests, set-up)."""
    if xid is not None:
        return REPLAY_XACT_SQL, {'xid': xid}
    return REPLAY_SQL, (lsn,)


def match_replication_rows(rows, identities):
    """{standby label: its row of the primary's ``rows`` or None}, by the
    identity rules of assign() (slot, application name, address, override): a
    standby of a cascade, or one matched only by elimination, has no row of its
    own. ``identities``: standby_identity dicts."""
    return dict((label, found['row']) for label, found in assign(rows, list(identities or [])).items())


# How long the primary's view of the standbys may take to confirm the replay (a report, not a gate).
CROSS_CHECK_GRACE_SECONDS = 0.5


# The replay wait asks a standby again this long after its "not yet" arrived: fixed, so a standby is reported
# at most one poll (this interval and one round trip) after it replayed the commit, however long it takes. A
# 1-statement commit is replayed 0.7-1.6 ms after COMMIT on the lab, past the first question's answer: at 2 ms
# the replay phase was 2.6-3.2 ms, at 0.5 ms 1.4-1.7 ms (size-1 deploys, engines alternating, 6 each).
REPLAY_WAIT_POLL_SECONDS = 0.0005


def next_polls(now, due, usable_seconds):
    """The replay wait's next step: which standbys to ask now and how long to
    wait for answers before looking again.

    ``now``: monotonic seconds. ``due``: {key: monotonic seconds at which that
    pending standby's next question is due (0 for the first), or None while a
    question to it is in flight}. ``usable_seconds``: the clock's usable budget.
    Returns (keys to ask now, seconds to wait): the wait lasts until the next
    standby not asked now is due, never past the usable budget (0 when it is
    spent). Answers in flight are read the moment they arrive (the caller waits
    on their sockets), so no standby's answer ever waits for a sleep."""
    ask = sorted((key for key, at in due.items() if at is not None and at <= now), key=str)
    later = [at - now for key, at in due.items() if at is not None and at > now]
    return ask, max(min(later + [usable_seconds]), 0.0)


# A standby whose question has waited this much longer than its slowest answer of the wait is silent (cut off,
# hung), not merely behind: the budget's end names it "no answer", a standby still answering "not caught up".
SILENT_AFTER_SECONDS = 0.1


def is_silent(state, now):
    """Whether a standby with a question in flight since ``state['asked_at']``
    (monotonic seconds) is silent at ``now``: it never answered during the wait
    (``state['slowest']`` None: its slowest round trip so far), or this
    question has waited SILENT_AFTER_SECONDS longer than its slowest answer."""
    slowest = state.get('slowest')
    return slowest is None or now - state['asked_at'] > slowest + SILENT_AFTER_SECONDS


def wait_for_replay(primary_conn, standbys, lsn, clock, poll_seconds=REPLAY_WAIT_POLL_SECONDS, xid=None,
                    identities=None, cross_check=True, label=None):
    """Wait until every standby has replayed the deploy, each standby polled on
    its own schedule (async connections are asked in parallel).

    Each standby is asked at once; its answer is read the moment it arrives
    (the wait is on the sockets of the questions in flight); a "not yet" has it
    asked again ``poll_seconds`` later (fixed, REPLAY_WAIT_POLL_SECONDS), while
    the others' answers are still read as they come. A standby's ``replay_ms``
    is when its "replayed" answer arrived, from the ``standby_replay`` phase's
    start: at most one poll (``poll_seconds`` and a round trip) after it
    replayed the commit.

    ``xid``: the deploy transaction's full id (apply_cold()'s ``commit_xid``):
    a standby is caught up when it reports that transaction committed - exactly
    our commit, never other sessions' WAL. ``lsn``: without ``xid``, the WAL
    position to reach; with it, only the primary's cross-check compares its
    view of each standby with it. ``identities``: check_standbys()'s answer,
    for the cross-check (without it the primary's view is not matched).
    Returns {'lsn', 'xid', 'total_ms', 'standbys': [{'name', 'replay_ms',
    'replay_lsn'}]} (plus cross_check_replay()'s fields unless
    ``cross_check=False``: the outage runs it after RESUME, a report, not a
    gate). Every wait is bounded by the clock's usable budget. A standby whose
    question fails (its connection lost: stopped, crashed, cut off; or no
    longer a standby) leaves the wait, and the others are still waited for
    until each has replayed or the budget is spent. Then, if any standby lacks
    the schema -> ReplicationError naming each with its own reason (lost, not
    a standby, silent, not caught up: failure_reason), with ``lagging``
    listing exactly those (never one that replayed: only their entries are
    fenced). A question still in flight at the budget's end stays on its
    connection: on_standbys() settles it before asking anything else.
    """
    sql, params = replay_query(lsn, xid)
    target = 'of transaction %s (committed after %s)' % (xid, lsn) if xid is not None else 'at %s' % lsn
    clock.start()
    states = [{'endpoint': endpoint, 'conn': conn, 'label': endpoint_label(endpoint), 'done': False,
               'failed': None, 'replay_ms': None, 'replay_lsn': None, 'due': 0.0} for endpoint, conn in standbys]
    names = ', '.join(endpoint.get('name') or endpoint['host'] for endpoint, dummy in standbys)
    with clock.phase('standby_replay', host=names or None,
                     detail=dict({'lsn': lsn}, **({'xid': xid} if xid is not None else {}))) as record:
        began = time.monotonic()
        in_flight = {}  # id(state) -> (state, cursor): asked, answer not read yet
        while True:
            # A standby that failed (connection lost, not a standby) is out of the wait; the others are
            # still waited for, so each is reported by its own answer.
            pending = dict((id(s), s) for s in states if not s['done'] and not s['failed'])
            if not pending:
                break
            usable = clock.usable()
            if usable <= 0:
                now = time.monotonic()
                for st, dummy in in_flight.values():
                    st['failed'] = 'no answer within the budget' if is_silent(st, now) else None
                break
            ask, wait_seconds = next_polls(time.monotonic(), dict((key, s['due']) for key, s in pending.items()),
                                           usable)
            for key in ask:
                state = pending[key]
                try:
                    cur = state['conn'].cursor()
                    cur.execute(sql, params)
                except psycopg2.Error as exc:
                    state['failed'] = failure_reason(state['conn'], exc)
                    continue
                state['due'], state['asked_at'] = None, time.monotonic()
                in_flight[key] = (state, cur)
            if not in_flight:
                if any(not s['done'] and not s['failed'] for s in states):
                    time.sleep(wait_seconds)
                continue
            answers = _answers(list(in_flight.values()), wait_seconds)
            arrived = time.monotonic()
            for state, cur in answers:
                del in_flight[id(state)]
                try:
                    row = cur.fetchone()
                except psycopg2.Error as exc:
                    state['failed'] = failure_reason(state['conn'], exc)
                    continue
                if row[0] is None:
                    state['failed'] = 'not in recovery (promoted? not a standby)'
                    continue
                state['replay_lsn'] = row[0]
                state['slowest'] = max(state.get('slowest') or 0.0, arrived - state['asked_at'])
                if row[1]:
                    state['done'] = True
                    state['replay_ms'] = _ms(arrived - began)
                else:
                    state['due'] = arrived + poll_seconds
        results = [{'name': state['label'], 'replay_ms': state['replay_ms'], 'replay_lsn': state['replay_lsn']}
                   for state in states]
        record['detail']['standby_replay_ms'] = dict((r['name'], r['replay_ms']) for r in results)
        if any(not s['done'] for s in states):
            record['detail']['failed'] = dict((s['label'], s['failed'] or 'not caught up within the budget')
                                              for s in states if not s['done'])
            raise _lagging_error(states, target)
    replay = {'lsn': lsn, 'xid': xid, 'standbys': results, 'total_ms': _ms(time.monotonic() - began)}
    if cross_check:
        cross_check_replay(primary_conn, replay, identities, min(max(clock.usable(), 0), CROSS_CHECK_GRACE_SECONDS),
                           label=label)
    return replay


def cross_check_warning(primary_label, standbys, cause):
    """The one warning line of a replay cross-check that could not be read:
    the standbys (labels) it was for, the cause and what it means."""
    return ('replay cross-check not read on %s: %s -> the primary\'s own view (pg_stat_replication) of %s is unknown '
            '(primary_confirms: null); each standby\'s own answer, which the window waited for, confirmed its replay, '
            'so nothing is lost - if it repeats, check the deploy user\'s pg_monitor membership and the primary\'s '
            'log at that time' % (primary_label or 'the primary', cause, ', '.join(standbys) or 'no standby'))


def cross_check_replay(primary_conn, replay, identities, grace_seconds=None, label=None):
    """The primary's own view of each standby (pg_stat_replication), added to
    each of ``replay['standbys']`` (wait_for_replay's result): primary_replay_lsn,
    primary_confirms (its replay_lsn has reached ``replay['lsn']``),
    primary_state. Each standby's row is found by the identity rules
    (match_replication_rows over ``identities``, check_standbys()'s answer): a
    cascaded standby, or one the rules cannot tell apart, has none. The
    feedback trails the standby by a message, so the view is read again for up
    to ``grace_seconds`` (default CROSS_CHECK_GRACE_SECONDS) until it confirms
    every standby it shows. A report, never a gate: the standby's own answer
    is the authority: a failure to read the view (a psycopg2 error) leaves
    each standby's primary_confirms None, the cause in
    ``replay['cross_check_error']`` and one line (cross_check_warning, naming
    the primary ``label`` and every standby) in ``replay['warnings']``."""
    grace = CROSS_CHECK_GRACE_SECONDS if grace_seconds is None else grace_seconds
    grace_until = time.monotonic() + grace
    try:
        while True:
            seen = match_replication_rows(query_rows(primary_conn, PRIMARY_VIEW_SQL, (replay['lsn'],)), identities)
            if all(row is None or row['caught_up'] for row in seen.values()) or time.monotonic() >= grace_until:
                break
            time.sleep(0.005)
    except psycopg2.Error as exc:
        cause = _pg_message(exc)
        for result in replay['standbys']:
            result.update(primary_replay_lsn=None, primary_confirms=None, primary_state=None)
        replay['cross_check_error'] = cause
        replay.setdefault('warnings', []).append(cross_check_warning(label, [r['name'] for r in replay['standbys']],
                                                                     cause))
        return replay
    for result in replay['standbys']:
        row = seen.get(result['name'])
        result.update(primary_replay_lsn=row['replay_lsn'] if row else None,
                      primary_confirms=bool(row and row['caught_up']),
                      primary_state=row['state'] if row else None)
    return replay


def _ms(seconds):
    return round(seconds * 1000, 1)


def _answers(asked, timeout):
    """The (state, cursor) pairs of ``asked`` whose answer has arrived within
    ``timeout`` seconds. Async connections are watched together; a blocking one
    has its answer already."""
    ready, waiting = [], []
    for state, cur in asked:
        if not state['conn'].async_:
            ready.append((state, cur))
            continue
        try:
            done = state['conn'].poll() == psycopg2.extensions.POLL_OK
        except psycopg2.Error:
            done = True  # fetchone() reports the error
        (ready if done else waiting).append((state, cur))
    if ready or not waiting:
        return ready
    readable, dummy, dummy = select.select([st['conn'].fileno() for st, dummy in waiting], [], [], timeout)
    for state, cur in waiting:
        if state['conn'].fileno() in readable:
            try:
                if state['conn'].poll() == psycopg2.extensions.POLL_OK:
                    ready.append((state, cur))
            except psycopg2.Error:
                ready.append((state, cur))
    return ready


def failure_reason(conn, exc):
    """Why a question to a standby failed, in a few words: 'connection lost
    (<libpq's words>)' when its connection is gone (stopped, crashed, cut
    off: psycopg2 then says only "cursor already closed" or "connection already
    closed"), else 'query failed (<PostgreSQL's message>)'."""
    message = _pg_message(exc)
    if getattr(conn, 'closed', 0) or isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)):
        closed_words = ('cursor already closed', 'connection already closed')
        return 'connection lost' if message in closed_words else 'connection lost (%s)' % message
    return 'query failed (%s)' % message


def _lagging_error(states, target):
    """The replay wait's failure: every standby without the schema (``lagging``,
    the entries fenced) named with its own reason (``state['failed']``: lost,
    not a standby, silent; else not caught up within the budget); a standby
    whose connection was lost is named as lost, not as behind. The standbys
    that replayed are not in it."""
    behind = [s for s in states if not s['done']]
    parts = []
    for state in sorted(behind, key=lambda s: (not s['failed'], s['label'])):
        why = state['failed'] or 'not caught up within the budget'
        if why.startswith('connection lost'):
            parts.append('standby %s: %s while waiting for it to replay the schema change %s (last replayed %s): '
                         'its entries stay DISABLED until it is back and has replayed it'
                         % (state['label'], why, target, state['replay_lsn'] or 'unknown'))
        else:
            parts.append('standby %s: %s: it has not replayed the schema change %s (last replayed %s)'
                         % (state['label'], why, target, state['replay_lsn'] or 'unknown'))
    return ReplicationError('%s; clients must not be resumed onto %s'
                            % ('; '.join(parts), 'it' if len(behind) == 1 else 'them'),
                            lagging=[s['label'] for s in behind])


# -- pausing and resuming replay (the split window) ----------------------------------
# How long a standby may take to confirm pg_wal_replay_pause(): nothing is
# drained yet, but a startup process stuck in a recovery conflict must not eat
# the whole budget before the primary's outage even starts.
REPLAY_PAUSE_SECONDS = 5.0
REPLAY_POLL_SECONDS = 0.002
# A standby connection lost mid-window is reopened to resume replay; this bounds it.
REPLAY_RESUME_CONNECT_SECONDS = 3


def on_standbys(standby_conns, sql, timeout):
    """Run ``sql`` (text, or connection -> text: a query that depends on the server's
    version) on every standby's async connection at once (send all, then collect).
    Returns [(endpoint, first row or None, one-line error or None)]."""
    sent = []
    for endpoint, conn in standby_conns:
        if getattr(conn, 'closed', 0):
            sent.append((endpoint, conn, None, 'connection lost'))
            continue
        try:
            _settle(conn, timeout)
            cur = conn.cursor()
            cur.execute(sql(conn) if callable(sql) else sql)
            sent.append((endpoint, conn, cur, None))
        except TimeoutError:
            sent.append((endpoint, conn, None, 'its replay question still unanswered after %.1f s' % timeout))
        except psycopg2.Error as exc:
            sent.append((endpoint, conn, None, failure_reason(conn, exc) if conn.closed else one_line(exc)))
    deadline = time.monotonic() + timeout
    results = []
    for endpoint, conn, cur, error in sent:
        row = None
        if error is None:
            try:
                wait(conn, max(deadline - time.monotonic(), 0.001))
                row = cur.fetchone()
            except TimeoutError:
                error = 'no answer within %.1f s' % timeout
            except psycopg2.Error as exc:
                error = failure_reason(conn, exc) if conn.closed else one_line(exc)
        results.append((endpoint, row, error))
    return results


# "Schema now": each database's answer (outside the window, but the module's
# result waits for it); how long a standby may take to replay hot patches just
# applied before it is reported behind; how often it is asked again meanwhile.
REVISION_READ_SECONDS = 2.0
CATCH_UP_SECONDS = 5.0
CATCH_UP_POLL_SECONDS = 0.05


def schema_now(primary_conn, primary_label, standby_conns, revision_table, timeout, catch_up_seconds=0.0):
    """What the schema is now, as each database reports it, read once the last
    change of the run is made (after RESUME; after the hot patches that follow
    the window): [{'host': endpoint label, 'role': 'primary' or 'standby',
    'revision': '2211-01-0' or None (no revision recorded), 'error': one line or
    None, 'behind': True when a standby still reported an older revision than
    the primary after ``catch_up_seconds``}], the primary first.

    ``primary_conn``: a blocking autocommit connection; ``standby_conns``:
    [(endpoint, async connection)], asked at once (``timeout`` seconds for each
    answer). ``catch_up_seconds`` > 0 (hot patches just applied, replayed
    asynchronously): a standby reporting another revision than the primary is
    asked again until it reports the primary's or that many seconds passed.
    Never raises: a database that cannot be read is a row with its error."""
    sql = newest_revision_sql(revision_table or DEFAULT_REVISION_TABLE)
    try:
        primary = {'host': primary_label, 'role': 'primary', 'revision': query(primary_conn, sql)[0]['revision'],
                   'error': None}
    except Exception as exc:  # noqa: B902 - a report line, never a failed deploy
        primary = {'host': primary_label, 'role': 'primary', 'revision': None, 'error': one_line(exc)}
    deadline = time.monotonic() + catch_up_seconds
    rows = {}
    asking = list(standby_conns)
    while asking:
        for endpoint, row, error in on_standbys(asking, sql, timeout):
            rows[endpoint_label(endpoint)] = {'host': endpoint_label(endpoint), 'role': 'standby',
                                              'revision': row[0] if row else None, 'error': error}
        asking = [(e, c) for e, c in asking if behind(rows[endpoint_label(e)], primary)]
        if asking and time.monotonic() + CATCH_UP_POLL_SECONDS < deadline:
            time.sleep(CATCH_UP_POLL_SECONDS)
            continue
        for endpoint, dummy in asking:
            rows[endpoint_label(endpoint)]['behind'] = True
        break
    return [primary] + [rows[endpoint_label(e)] for e, dummy in standby_conns]


def behind(standby_row, primary_row):
    """Does a standby's "schema now" row report another revision than the primary's
    (both read without error)? The standby has not replayed the last patch yet."""
    return (not standby_row.get('error') and not primary_row.get('error')
            and standby_row.get('revision') != primary_row.get('revision'))


def _settle(conn, timeout):
    """An async connection with a question still in flight (the replay wait's,
    cut off by the budget) has it answered and dropped first: psycopg2 refuses
    a new query while one is underway. TimeoutError when it stays unanswered."""
    if getattr(conn, 'async_', False) and getattr(conn, 'isexecuting', lambda: False)():
        wait(conn, timeout)


def pause_replay(standby_conns, clock, paused, timeout=REPLAY_PAUSE_SECONDS):
    """pg_wal_replay_pause() on every standby, confirmed by its pause state =
    'paused' (pgversion.replay_pause_state_sql). Every standby asked is added to
    ``paused`` first (the caller resumes them whatever happens); a standby that
    refuses or does not confirm within ``timeout`` -> ReplicationError naming it."""
    names = ', '.join(endpoint_label(e) for e, dummy in standby_conns)
    with clock.phase('replay_pause', host=names or None) as record:
        deadline = time.monotonic() + min(timeout, max(clock.usable(), 0.001))
        paused.extend(endpoint for endpoint, dummy in standby_conns)
        failed = [(e, err) for e, dummy, err in on_standbys(standby_conns, 'SELECT pg_wal_replay_pause()',
                                                            deadline - time.monotonic()) if err]
        if failed:
            raise ReplicationError('; '.join('standby %s: pg_wal_replay_pause() failed: %s' % (endpoint_label(e), err)
                                             for e, err in failed))
        waiting = list(standby_conns)
        interval = REPLAY_POLL_SECONDS
        while waiting:
            states = on_standbys(waiting, lambda conn: pgversion.replay_pause_state_sql(conn.server_version),
                                 max(deadline - time.monotonic(), 0.001))
            errors = ['standby %s: %s' % (endpoint_label(e), err) for e, dummy, err in states if err]
            if errors:
                raise ReplicationError('; '.join('%s: replay pause not confirmed' % text for text in errors))
            record['detail']['states'] = dict((endpoint_label(e), row[0]) for e, row, dummy in states)
            not_yet = set(endpoint_label(e) for e, row, dummy in states if row[0] != 'paused')
            waiting = [(e, c) for e, c in waiting if endpoint_label(e) in not_yet]
            if not waiting:
                break
            if time.monotonic() >= deadline:
                raise ReplicationError('standby %s: replay pause not confirmed within %.1f s (state: %s): a recovery '
                                       'conflict may hold its startup process; check its log'
                                       % (', '.join(sorted(not_yet)), timeout,
                                          ', '.join(record['detail']['states'][n] for n in sorted(not_yet))))
            time.sleep(interval)
            interval = min(interval * 2, 0.05)
    return record


def resume_replay(standby_conns, clock=None):
    """pg_wal_replay_resume() on every standby of ``standby_conns`` (endpoint,
    async connection); a standby whose connection fails is tried once more on a
    fresh connection. Returns [(endpoint, error or None)] - resuming replay that
    is not paused is harmless, so this is always safe to call."""
    def attempt():
        outcome = []
        for endpoint, dummy, error in on_standbys(standby_conns, 'SELECT pg_wal_replay_resume()', 5.0):
            if error is not None:
                error = _resume_on_fresh_connection(endpoint, error)
            outcome.append((endpoint, error))
        return outcome

    if clock is None or not standby_conns:
        return attempt()
    names = ', '.join(endpoint_label(e) for e, dummy in standby_conns)
    with clock.phase('replay_resume', host=names) as record:
        outcome = attempt()
        failed = [(e, err) for e, err in outcome if err]
        if failed:
            record['status'] = 'failed'
            record['detail']['error'] = '; '.join('%s: %s' % (endpoint_label(e), err) for e, err in failed)
    return outcome


def _resume_on_fresh_connection(endpoint, first_error):
    try:
        conn = connect(dict(endpoint, connect_timeout=REPLAY_RESUME_CONNECT_SECONDS), autocommit=True,
                       application_name='fastdowntime-replay')
    except ConnectError as exc:
        return '%s; reconnect failed: %s' % (first_error, one_line(exc))
    try:
        query(conn, 'SELECT pg_wal_replay_resume()')
        return None
    except psycopg2.Error as exc:
        return '%s; on a new connection: %s' % (first_error, one_line(exc))
    finally:
        conn.close()


# -- fencing: no client resumed onto a standby without the schema -----------------------
def fenced_entries(lagging, standbys, consoles):
    """Which entries each console keeps fenced (DISABLE, KILL, RESUME) because
    they serve a standby without the new schema (the Launchpad rule: no client
    is resumed onto it).

    ``lagging``: endpoint labels of the standbys without the schema (a
    ReplicationError's ``lagging``); ``standbys``: the standby endpoints;
    ``consoles``: [(pgbouncer name, [entries this console drains])]. Returns
    [[entries to fence] per console, in order]: only entries the console
    drains that serve a lagging standby (topology.serving_entries), none for
    a standby not in ``lagging``."""
    lagging = set(lagging or ())
    behind = [s for s in standbys if endpoint_label(s) in lagging]
    return [serving_entries(name, entries, behind) if behind else [] for name, entries in consoles]


# The fence's record: the window that fences an entry records it on the primary (one row per pgbouncer
# and entry: the standby it serves, the deploy, the primary's WAL position then), so a later run - one
# with nothing pending too - can tell a deploy's fence from an operator's DISABLE and ENABLEs the entry
# once that standby has replayed past the position (unfence_plan).
FENCE_TABLE = 'fastdowntime.fenced_entry'
FENCE_CREATE = ('CREATE SCHEMA IF NOT EXISTS fastdowntime',
                'CREATE TABLE IF NOT EXISTS %s (pgbouncer text NOT NULL, entry text NOT NULL, standby text NOT NULL, '
                'deploy_id text NOT NULL, lsn pg_lsn NOT NULL, fenced_at timestamptz NOT NULL DEFAULT now(), '
                'PRIMARY KEY (pgbouncer, entry))' % FENCE_TABLE)
# On the standby: has it replayed past the fence's position?
FENCE_REPLAYED_SQL = ('SELECT pg_last_wal_replay_lsn()::text AS replay_lsn, '
                      'coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, false) AS replayed')


def fence_rows(disabled, lagging, standbys, consoles):
    """The fences to record: [{'pgbouncer', 'entry', 'standby'}] for each
    (pgbouncer label, entry) of ``disabled`` (the window's fenced entries),
    the standby being the one of ``lagging`` the entry serves
    (topology.serving_entries). ``consoles``: {pgbouncer label: its name in
    the inventory}."""
    rows = []
    behind = [s for s in standbys if endpoint_label(s) in set(lagging or ())]
    for label, entry in disabled:
        serving = [s for s in behind if serving_entries(consoles.get(label), [entry], [s])]
        rows.append({'pgbouncer': label, 'entry': entry,
                     'standby': ', '.join(endpoint_label(s) for s in serving) or ', '.join(lagging or ())})
    return rows


def mark_fenced(conn, deploy_id, rows):
    """Record ``rows`` (fence_rows) for ``deploy_id`` at the primary's current WAL
    position, committed locally. ``conn``: an autocommit connection to the primary."""
    if not rows:
        return
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('%s') IS NOT NULL" % FENCE_TABLE)
        if not cur.fetchone()[0]:
            for statement in FENCE_CREATE:
                cur.execute(statement)
        for row in rows:
            cur.execute('INSERT INTO %s (pgbouncer, entry, standby, deploy_id, lsn) '
                        'VALUES (%%s, %%s, %%s, %%s, pg_current_wal_lsn()) ON CONFLICT (pgbouncer, entry) DO UPDATE '
                        'SET standby = EXCLUDED.standby, deploy_id = EXCLUDED.deploy_id, lsn = EXCLUDED.lsn, '
                        'fenced_at = now()' % FENCE_TABLE, (row['pgbouncer'], row['entry'], row['standby'], deploy_id))


def read_fences(conn):
    """[{'pgbouncer', 'entry', 'standby', 'deploy_id', 'lsn'}] recorded on the primary (none without the table)."""
    rows = query_rows(conn, "SELECT to_regclass('%s') IS NOT NULL AS present" % FENCE_TABLE)
    if not rows[0]['present']:
        return []
    return query_rows(conn, 'SELECT pgbouncer, entry, standby, deploy_id, lsn::text AS lsn FROM %s '
                            'ORDER BY pgbouncer, entry' % FENCE_TABLE)


def clear_fences(conn, keys):
    """Forget the fences of ``keys`` ([(pgbouncer label, entry)])."""
    if not keys:
        return
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('%s') IS NOT NULL" % FENCE_TABLE)
        if cur.fetchone()[0]:
            for pgbouncer, entry in keys:
                cur.execute('DELETE FROM %s WHERE pgbouncer = %%s AND entry = %%s' % FENCE_TABLE, (pgbouncer, entry))


def unfence_plan(fences, disabled, replayed):
    """What to do with each recorded fence: [dict(fence, action=..., why=...)].

    ``fences``: read_fences() rows; ``disabled``: {pgbouncer label: set of its
    entries disabled now, or None when its console could not be read};
    ``replayed``: {standby label: (True/False, what it said: its replay
    position or its error)}. Actions: 'enable' (still disabled, every standby
    it serves has replayed past the fence's position), 'forget' (no longer
    disabled: someone ENABLEd it), 'keep' (its standby is still behind or
    unknown, or its pgbouncer did not answer: it stays DISABLED)."""
    plan = []
    for fence in fences:
        now = disabled.get(fence['pgbouncer'])
        standbys = [s.strip() for s in fence['standby'].split(',') if s.strip()]
        answers = [(s,) + tuple(replayed.get(s) or (False, 'not asked')) for s in standbys]
        if now is None:
            action, why = 'keep', 'its pgbouncer did not answer'
        elif fence['entry'] not in now:
            action, why = 'forget', 'no longer disabled'
        elif answers and all(ok for dummy, ok, dummy in answers):
            action, why = 'enable', '%s replayed past %s' % (', '.join(s for s, dummy, dummy in answers), fence['lsn'])
        else:
            action, why = 'keep', '; '.join('%s has not replayed past %s (%s)' % (s, fence['lsn'], said)
                                            for s, ok, said in answers if not ok) or 'no standby recorded'
        plan.append(dict(fence, action=action, why=why))
    return plan


def still_fenced_line(step):
    """The operator's one line for a fence that stays ('keep' of unfence_plan)."""
    return ('%s: %s stays DISABLED (fenced by deploy %s): %s -> bring %s back streaming; the next deploy ENABLEs '
            'it once it has replayed (or ENABLE %s on that pgbouncer by hand once sure)'
            % (step['pgbouncer'], step['entry'], step['deploy_id'], step['why'], step['standby'], step['entry']))
