# -*- coding: utf-8 -*-
# Copyright: fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What differs between the PostgreSQL server versions the collection supports, in one place.

Every version-dependent query or rule asks here, by ``server_version_num``: the integer a
server reports when a connection starts (psycopg2's ``connection.server_version``, no round
trip), major * 10000 + minor since PostgreSQL 10 (180006 is 18.6, 150014 is 15.14).

What differs from 13 to 18, for the statements this collection sends:

- the replay pause state: ``pg_get_wal_replay_pause_state()`` ('not paused', 'pause
  requested', 'paused') exists from 14; 13 has only ``pg_is_wal_replay_paused()``, true
  from the moment a pause is requested (13's startup process checks the request before
  each WAL record, so nothing is replayed after it is set: 'paused' for the window);
- the statements PostgreSQL refuses inside a transaction block
  (``patchset.NO_TRANSACTION_BLOCK``, each entry with its versions: DETACH PARTITION
  CONCURRENTLY from 14, ALTER SUBSCRIPTION ... SET (failover) from 17, SET (two_phase)
  from 18; lint.PARTITIONED_NO_TRANSACTION_BLOCK: REINDEX of a partitioned table from 14,
  CLUSTER of one from 15);
- role membership: from 16 each GRANT of a role carries its own INHERIT option (``GRANT r TO u
  WITH INHERIT TRUE``; a plain GRANT takes the member's rolinherit, and a GRANT of a membership
  that exists changes nothing without an option), before 16 a member inherits its roles'
  privileges when the member role has INHERIT (``ALTER ROLE u INHERIT``, the default):
  ``inherit_fix_sql``;
- the columns of the views the collection reads (pg_stat_replication, pg_stat_wal_receiver,
  pg_replication_slots, pg_stat_activity, pg_stat_database_conflicts): ``VIEW_COLUMNS`` lists the ones it uses, each
  with the first major that has it; every one is there from ``OLDEST``, which a unit test
  checks against the queries.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

# The oldest major supported: the window's exact replay wait uses the xid8 functions
# (pg_current_xact_id(), pg_xact_status(xid8), pg_current_snapshot()), new in 13.
OLDEST = 13
NEWEST = 18          # the newest major tested (the lab's postgresql18 shape; postgresql16, 17 beside it)
PAUSE_STATE_FUNCTION = 14   # pg_get_wal_replay_pause_state()
GRANT_INHERIT_OPTION = 16   # GRANT role TO member WITH INHERIT TRUE|FALSE (per membership)
LOCK_PRIVILEGES_ANY_MODE = 16   # LOCK TABLE: UPDATE/DELETE/TRUNCATE permit any mode (lockcmds.c LockTableAclCheck)
MAINTAIN_PRIVILEGE = 17     # the MAINTAIN table privilege; it permits any LOCK TABLE mode

# view.column -> the first major that has it, for every column the collection's queries read.
VIEW_COLUMNS = {
    'pg_stat_replication.pid': 10, 'pg_stat_replication.application_name': 10,
    'pg_stat_replication.client_addr': 10, 'pg_stat_replication.client_hostname': 10,
    'pg_stat_replication.client_port': 10,
    'pg_stat_replication.state': 10, 'pg_stat_replication.sync_state': 10,
    'pg_stat_replication.replay_lsn': 10, 'pg_stat_replication.replay_lag': 10,
    'pg_stat_wal_receiver.status': 10, 'pg_stat_wal_receiver.sender_host': 11,
    'pg_stat_wal_receiver.sender_port': 11, 'pg_stat_wal_receiver.slot_name': 10,
    'pg_stat_wal_receiver.conninfo': 10,
    'pg_replication_slots.slot_name': 10, 'pg_replication_slots.active_pid': 10,
    'pg_replication_slots.slot_type': 10,
    # the confl_* counters differ (16 adds confl_active_logicalslot): read whole, as JSON
    'pg_stat_database_conflicts.datid': 10, 'pg_stat_database_conflicts.datname': 10,
    'pg_stat_database.datid': 10, 'pg_stat_database.stats_reset': 10,
    'pg_stat_activity.pid': 10, 'pg_stat_activity.usename': 10, 'pg_stat_activity.datname': 10,
    'pg_stat_activity.client_addr': 10, 'pg_stat_activity.client_port': 10,
    'pg_stat_activity.application_name': 10, 'pg_stat_activity.state': 10,
    'pg_stat_activity.xact_start': 10, 'pg_stat_activity.state_change': 10,
    'pg_stat_activity.query_start': 10, 'pg_stat_activity.query': 10,
    'pg_stat_activity.backend_type': 10, 'pg_stat_activity.backend_xmin': 10,
}


def major(server_version_num):
    """150014 -> 15."""
    return int(server_version_num) // 10000


def version_text(server_version_num):
    """150014 -> '15.14'."""
    num = int(server_version_num)
    return '%d.%d' % (num // 10000, num % 10000)


def supported_range():
    """'13 to 18': the majors supported, as README and galaxy.yml say them."""
    return '%d to %d' % (OLDEST, NEWEST)


def support_problem(server_version_num):
    """None when the server is in the supported range (or newer: see newer_than_tested);
    else why not, in words naming the version and the range."""
    if major(server_version_num) < OLDEST:
        return 'PostgreSQL %s is older than this collection supports (%s): upgrade the server' % (
            version_text(server_version_num), supported_range())
    return None


def newer_than_tested(server_version_num):
    """True for a major newer than the newest tested (a warning, not a refusal)."""
    return major(server_version_num) > NEWEST


def replay_pause_state_sql(server_version_num):
    """One row, one column ``state``: 'not paused', 'pause requested' or 'paused' (13: never
    'pause requested', see the module docstring)."""
    if major(server_version_num) >= PAUSE_STATE_FUNCTION:
        return 'SELECT pg_get_wal_replay_pause_state() AS state'
    return "SELECT CASE WHEN pg_is_wal_replay_paused() THEN 'paused' ELSE 'not paused' END AS state"


def grant_roles_sql(roles, member, server_version_num, inherit, member_of=()):
    """The statements that give ``member`` (a role name, quoted as needed by the caller) the
    privileges of ``roles`` (predefined roles such as pg_monitor) on that server: ``inherit`` is the
    member's rolinherit, ``member_of`` the roles of ``roles`` it is already a member of without
    their privileges (pg_has_role MEMBER but not USAGE). From 16 one GRANT ... WITH INHERIT TRUE
    (a new membership, or the option set on the existing one) when a plain GRANT would not
    inherit; before 16 a plain GRANT and, for a NOINHERIT member, ALTER ROLE ... INHERIT.
    [] for no roles."""
    if not roles:
        return []
    grant = 'GRANT %s TO %s' % (', '.join(roles), member)
    if major(server_version_num) >= GRANT_INHERIT_OPTION:
        return [grant + ' WITH INHERIT TRUE' if not inherit or member_of else grant]
    granted = [r for r in roles if r not in member_of or inherit]
    return (['GRANT %s TO %s' % (', '.join(granted), member)] if granted else []) + \
        ([] if inherit else ['ALTER ROLE %s INHERIT' % member])


def parse_versions(versions):
    """A rule's versions ('13+', '14-17', '17') -> (first major, last major or None)."""
    text = versions.strip()
    if text.endswith('+'):
        return int(text[:-1]), None
    low, dummy, high = text.partition('-')
    return int(low), int(high or low)


def covers(versions, server_version_num=None):
    """True when a rule of ``versions`` holds on the server; with no server version (patches
    read before any connection), True for every rule of a supported major: the union, the
    strictest reading."""
    low, high = parse_versions(versions)
    if server_version_num is None:
        return high is None or high >= OLDEST
    server = major(server_version_num)
    return low <= server and (high is None or server <= high)


def lock_table_privileges(mode, server_version_num):
    """The table privileges any one of which lets a non-owner LOCK TABLE ... IN ``mode`` (locks.MODES'
    words), as lockcmds.c LockTableAclCheck checks them: before 16, ACCESS SHARE needs SELECT, ROW EXCLUSIVE
    one of INSERT, UPDATE, DELETE, TRUNCATE and every other mode one of UPDATE, DELETE, TRUNCATE; from 16,
    UPDATE, DELETE, TRUNCATE (and from 17 MAINTAIN) permit any mode, INSERT also ROW EXCLUSIVE and weaker,
    SELECT also ACCESS SHARE."""
    order = ('ACCESS SHARE', 'ROW SHARE', 'ROW EXCLUSIVE')
    weak = order.index(mode) if mode in order else len(order)
    if (server_version_num or 0) < LOCK_PRIVILEGES_ANY_MODE * 10000:
        if weak == 0:
            return ['SELECT']
        return (['INSERT'] if weak == 2 else []) + ['UPDATE', 'DELETE', 'TRUNCATE']
    found = ['SELECT'] if weak == 0 else []
    found += ['INSERT'] if weak <= 2 else []
    found += ['UPDATE', 'DELETE', 'TRUNCATE'] + (['MAINTAIN'] if server_version_num >= MAINTAIN_PRIVILEGE * 10000
                                                 else [])
    return found
