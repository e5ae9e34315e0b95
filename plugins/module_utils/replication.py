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

Pure functions (rows in, decisions out) are unit-tested without a database;
the SQL lives here too, so one module knows what PostgreSQL says about standbys.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

# On a standby: its WAL receiver (one row, NULLs when none runs) and its name.
RECEIVER_SQL = """
SELECT r.status, r.sender_host, r.sender_port, r.slot_name, r.conninfo,
       current_setting('cluster_name') AS cluster_name
  FROM (SELECT 1) AS one LEFT JOIN pg_stat_wal_receiver AS r ON true
"""
# On any upstream (the primary, or a standby feeding a cascade): its walsenders.
WALSENDERS_SQL = """
SELECT r.pid, r.application_name, host(r.client_addr) AS client_addr, r.client_port, r.state, r.sync_state,
       r.replay_lsn::text AS replay_lsn, EXTRACT(EPOCH FROM r.replay_lag)::float8 AS replay_lag_seconds,
       s.slot_name
  FROM pg_stat_replication AS r LEFT JOIN pg_replication_slots AS s ON s.active_pid = r.pid
"""
# On the primary: the synchronous replication set-up, as a client gets it (on a
# connection opened with local_commits=False: postgres.LOCAL_COMMITS overrides it).
SYNCHRONOUS_SQL = """
SELECT current_setting('synchronous_standby_names') AS synchronous_standby_names,
       current_setting('synchronous_commit') AS synchronous_commit
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
    addresses = set(standby.get('addresses') or ())
    found = [row for row in rows if row.get('client_addr') in addresses]
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
    others, so the rules run until nothing changes."""
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


def locate_upstream(receiver, servers):
    """The label of the server a standby streams from, or None when no
    inventory database host is at its receiver's sender_host (a relay, a NAT,
    a virtual address: the caller assumes the primary).

    ``servers``: [{'label', 'addresses' (set, resolved), 'port'}]; the
    sender_host is given resolved too, as ``receiver['sender_addresses']``."""
    sender = set((receiver or {}).get('sender_addresses') or ())
    if (receiver or {}).get('sender_host'):
        sender.add(receiver['sender_host'])
    at_host = [s for s in servers if sender & set(s.get('addresses') or ())]
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


def pause_cause(state, marked, below):
    """Why replay is paused: None (not paused), 'fastdowntime' (a marker of a
    split run), 'postgresql' (settings below the primary's: resuming shuts the
    standby down) or 'operator' (anything else: somebody wanted it)."""
    if state == 'not paused':
        return None
    if below:
        return 'postgresql'
    return 'fastdowntime' if marked else 'operator'


# -- what blocks replay on a standby ---------------------------------------------
# On a standby: how long replay waits for a conflicting query before cancelling it.
REPLAY_CONFLICT_SQL = """
SELECT current_setting('max_standby_streaming_delay') AS max_standby_streaming_delay,
       (SELECT setting::bigint FROM pg_settings WHERE name = 'max_standby_streaming_delay') AS delay_ms,
       current_setting('hot_standby_feedback') AS hot_standby_feedback
"""


def blocking_threshold_seconds(budget_seconds):
    """How old a transaction on a standby may be before it is called a replay
    blocker: half the budget, at most 5 s (a read that has run that long is
    likely to outlast the outage)."""
    return min(5.0, float(budget_seconds) / 2)


def replay_blockers(conflict, activity_rows, budget_seconds):
    """The transactions on one standby that may hold its replay of the outage's
    commit past the budget: only where max_standby_streaming_delay lets them
    (-1: forever, or at least the budget), and only those older than
    blocking_threshold_seconds. ``conflict``: a REPLAY_CONFLICT_SQL row;
    ``activity_rows``: the standby's client backends (pid, usename,
    application_name, state, xact_seconds, query). Returns (can_block, rows)."""
    delay_ms = (conflict or {}).get('delay_ms')
    if delay_ms is None:
        return False, []
    can_block = delay_ms < 0 or delay_ms >= float(budget_seconds) * 1000
    if not can_block:
        return False, []
    threshold = blocking_threshold_seconds(budget_seconds)
    return True, [row for row in activity_rows
                  if row.get('xact_seconds') is not None and row['xact_seconds'] >= threshold]


def split_blocked_by_synchronous(synchronous):
    """A split window pauses replay while writes come back; a synchronous
    standby with synchronous_commit remote_apply would then hold every
    client's COMMIT until replay resumes (forever, if the controller dies):
    the reason to refuse split, or None."""
    if synchronous and synchronous.get('synchronous') and synchronous.get('synchronous_commit') == 'remote_apply':
        return ("synchronous_commit = remote_apply with synchronous_standby_names = '%s': clients' commits would "
                "wait for replay the split window pauses" % synchronous.get('synchronous_standby_names'))
    return None
