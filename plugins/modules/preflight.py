#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: preflight
short_description: Refuse to start an outage the cluster is not ready for, naming every reason
description:
  - Runs every pre-flight check of a fastdowntime deploy and collects ALL findings (it never stops at the
    first), each C(pass), C(warn) or C(fail) with its evidence and, for a warning or failure, what to do.
  - C(connection) - the primary, every standby and every pgbouncer console answer with the given credentials.
    An unreachable host or a wrong password is a failed finding, not an error of the task.
  - C(server_version) - PostgreSQL on the primary and every standby is 13 or later (the supported range is 13 to 18;
    a newer one is a warning); a host below it refuses the deploy alone, in one line naming the host and its version.
  - C(privileges) - on the primary and every standby the deploy user is a superuser, or has the documented set -
    membership in C(pg_monitor) and C(pg_signal_backend) and C(CREATE) on the database on the primary,
    C(pg_monitor) on standbys. A deploy user that is not a superuser must also own (or be a member of the owner of)
    each relation the pending patches ALTER, index, comment, drop, rename or attach a partition to, and this
    collection's own tables (schema C(fastdowntime), the revision table), one failure per owner role, naming the
    relations, the patch and line, and the C(GRANT owner TO user). Data changes, C(TRUNCATE), C(LOCK) and triggers
    need grantable table privileges, which are not checked. Membership means
    the roles' privileges (C(pg_has_role) with C(USAGE)); a member without them (a NOINHERIT user, or from
    PostgreSQL 16 a grant C(WITH INHERIT FALSE)) is named so, with the fix for that server's version.
  - C(patches) - the pending patches in order, each hot or cold; an applied patch whose file changed (drift),
    revisions in the database with no file (the database is ahead of the patch set) and a broken patch set fail.
  - C(patch_settings) - every C(SET), C(RESET) and C(set_config) of constants in the pending patches, tried on the
    primary in one transaction that is rolled back (each patch's in its own savepoint, in order, as the window runs
    them). A setting the server does not know (pg_dump 17 and later write C(SET transaction_timeout = 0), unknown
    before PostgreSQL 17), a value it refuses or one the deploy user may not set fails, naming file, line, statement
    and fix - the window would fail on it and roll back. A value naming what an earlier pending statement creates
    (C(SET ROLE) to a role the deploy creates) is a warning.
  - C(patch_roles) - every role the pending patches name (C(OWNER TO), C(GRANT)/C(REVOKE), C(AUTHORIZATION), a
    policy's roles, C(ALTER DEFAULT PRIVILEGES FOR ROLE)...; not C(PUBLIC), C(CURRENT_USER), C(DROP ROLE)) is looked
    up in the primary's C(pg_roles); one it lacks that no earlier pending C(CREATE ROLE) makes fails, naming file,
    line and role - the window would fail on it and roll back.
  - C(patch_extensions) - every C(CREATE EXTENSION) of the pending patches is looked up in the primary's
    C(pg_available_extension_versions); one the server has no files for, or a C(VERSION) it does not ship, fails,
    naming file, line and what the server has - the window would fail on it and roll back.
  - C(patch_objects) - every object the pending patches name (a schema, relation, type, collation, tablespace,
    foreign server or foreign-data wrapper) and every one they CREATE without C(IF NOT EXISTS) is looked up in the
    primary's catalog (C(to_regclass), C(to_regtype), C(to_regcollation), C(to_regnamespace), the global catalogs;
    no lock), each statement seeing what the earlier pending statements create and drop; one missing, one that
    already exists, or an unqualified C(CREATE) under a C(search_path) of no existing schema fails, naming file,
    line and the statement - the window would fail on it and roll back. A name an earlier pending C(CREATE
    EXTENSION) may create, and a C(setval()) of an existing sequence (not undone when the window rolls back),
    are warnings.
  - C(standbys) - every standby is in recovery, replicates this primary and its WAL receiver is streaming; its
    upstream (the primary, or in a cascade a standby whose chain ends at the primary) has its
    C(pg_stat_replication) row, found by the standby's own facts (its C(pg_stat_wal_receiver) - its slot, its
    application name, its addresses, or by elimination; O(standbys[].standby_application_name) overrides), and no
    upstream streams to a standby not given. Reports the synchronous set-up found.
  - C(replay_paused) - WAL replay runs on every standby. Replay left paused by a split-window deploy that crashed
    between its replay pause and resume (its marker in C(fastdowntime.replay_pause)) is resumed, as Launchpad's
    C(ensure_replication_enabled) did, and reported as a warning; with O(resume_paused_replay=false) or in check
    mode it fails instead. A pause somebody made (no marker) fails unless O(resume_operator_replay_pause=true). A
    pause PostgreSQL made is never resumed - settings below the primary's (resuming shuts the standby down; the
    finding names the parameter to raise) or a recovery target with C(recovery_target_action = pause) (resuming
    promotes it).
  - C(replication_lag) - a small non-transactional WAL message is written on the primary
    (C(pg_logical_emit_message), no data changes) so an idle primary does not look lagged; each standby must replay
    it within O(max_lag_seconds) and be at most O(max_lag_bytes) behind when it is written.
  - C(transactions) - on the primary and every standby, a transaction open longer than O(max_transaction_seconds)
    or a prepared transaction older than that fails; younger prepared transactions and sessions idle in a
    transaction for over a second are warnings.
  - C(replay_blockers) - on every standby, where its C(max_standby_streaming_delay) (or, restoring from the
    archive, C(max_standby_archive_delay)) lets a query hold replay past the budget (C(-1), or at least the
    budget), a transaction older than half the budget (at most 5 s), or a backend replay waits for now (its
    startup process waiting on a recovery conflict), fails naming the pid, the setting and the fix;
    C(hot_standby_feedback = off) there is a warning (a VACUUM on the primary then conflicts with any query).
    Where the delay is below the budget such a transaction is a warning (replay waits up to the delay for it,
    then cancels it).
  - C(recovery_conflicts) - queries replay cancelled on each standby (C(pg_stat_database_conflicts) for
    O(db_name)) are a warning naming the counts per kind.
  - C(direct_connections) - sessions on the primary's O(db_name) that do not come from a pgbouncer host's
    address - users in O(system_users) are ignored, O(fragile_users) fail (stop them first), O(killable_users)
    are listed (the outage terminates them as it starts), anyone else fails.
  - C(blocking_sessions) - sessions on the primary that would hold the outage for its whole budget and then abort it
    (the drain, or the cold transaction's lock wait, waits for them up to the usable budget, capped by pgbouncer's
    timeouts). One counts when its transaction will outlast the window - idle in transaction for over a second (its
    client sends nothing; only the client ends it) or open longer than the usable budget already. A client through
    a pgbouncer in such a transaction holds the drain - it fails with O(drain_policy=abort), and is a warning with
    C(terminate) (the drain terminates it). Any other session holding or waiting for a table-level lock that
    conflicts with the lock a pending cold statement takes on a relation it touches (PostgreSQL's conflict table;
    C(ACCESS EXCLUSIVE) for most C(ALTER TABLE), C(SHARE ROW EXCLUSIVE) on a table a new foreign key references,
    C(SHARE UPDATE EXCLUSIVE) for C(COMMENT ON); an index's table and every inheritance child are checked too;
    C(ATTACH PARTITION), C(DETACH PARTITION) and C(CREATE TABLE ... PARTITION OF) take the partitioned table alone
    and its DEFAULT partition, with each partition of it, in C(ACCESS EXCLUSIVE), named as such)
    fails, naming its pid, user, application name, client address, how long, the relation, both lock modes and
    the patch - unless its user is in O(killable_users) (terminated as the outage starts, so a warning). The
    pre-flight's own session is left out. O(blocking_sessions=warn) reports them as warnings instead. A cold
    statement's unqualified names are resolved in the search_path it runs under in the window (the deploy
    user's own at each patch's start; the patch's C(SET [LOCAL] search_path), C(set_config), C(RESET) after, and
    those at the top level of a C(DO) block; not a function's own C(SET) clause, nor C(ALTER ROLE/DATABASE ... SET),
    which only new sessions get). Where only running the patch would tell (dynamic SQL in a C(DO) block, a computed
    C(set_config) value, a C(SET) inside C(IF)/C(LOOP)/C(EXCEPTION)) every schema's relation of that name counts
    (never fewer locks than the window takes) and the lint warns (C(search-path-unknown)); schema-qualify them.
    A name the patch's own temporary table has (C(CREATE TEMP TABLE), C(pg_temp.x)) is that table, found first
    unless the path lists C(pg_temp) after other schemas - no permanent table's holders.
  - C(hot_patch_waits) - what the pending hot patches (before and after the window) would wait out on the primary -
    a live C(CREATE INDEX CONCURRENTLY) or C(REINDEX CONCURRENTLY) waits for every transaction of the database with
    an older snapshot (a session idle in a C(REPEATABLE READ) transaction, an open cursor) and, like C(DROP INDEX
    CONCURRENTLY), for the lockers of its table (a prepared transaction that wrote it); a live C(ALTER TABLE ...
    DETACH PARTITION ... CONCURRENTLY) (14+) for every locker of the partitioned table itself (not of its other
    partitions) and of the partition. Such a session that will outlast the hot phase's lock retries (O(lock_retry),
    the deploy's C(schema_apply_lock_retry), every try's C(lock_timeout) and pause), or such a prepared transaction
    at any age, fails in one line naming its pid or gid, age and the fix (O(blocking_sessions=warn) warns). A
    C(READ COMMITTED) session idle in a transaction holds no snapshot and passes.
  - C(pgbouncer) - every admin console answers as an admin, has the deploy's entries (and those named by the
    standbys' C(pgbouncer_entries)), and none of them is already paused. pgbouncer 1.18 shows no global PAUSE;
    from 1.19 on SHOW STATE is read as well.
  - C(lint) - one finding per statement of each pending patch, classified with the PostgreSQL parser and priced
    with the primary's live table sizes (module M(fastdowntime.postgresql.patch_lint), docs/lint.md); an C(error)
    fails, a C(warning) warns. Its per-statement estimate replaces O(statement_seconds) when larger.
  - C(budget) - an estimate of the outage against O(budget_seconds) less the reserve the outage keeps for ROLLBACK and
    RESUME. The model is deliberately simple, from what the pre-flight measures on the live cluster now, so it follows
    the machine's load (round trips of the slowest host of each kind) - drain 1 pgbouncer round trip plus how long
    the PAUSE would wait for transactions in flight now (the larger of SHOW STATS C(avg_xact_time) times the chance
    one is in flight, and the oldest transaction open on pgbouncer's server connections) plus, per server connection
    the PAUSEs close, how long a backend of the primary took to exit once closed; cold patches the fixed cost of the
    window's transaction on the primary (round trip, BEGIN, its lock step, a patch's reset and revision row, COMMIT
    with its WAL flush - probe transactions of 20 catalog statements on temporary tables dropped at COMMIT, each the
    second on one of 3 fresh connections, warmed as the window warms its own, the median; at least one round trip)
    plus per statement and per revision row the probe's time per catalog statement, warm (at least
    O(statement_seconds)), or the lint's price; standby replay the slowest catch-up the lag probe measured plus one standby round trip plus the WAL
    tail of the catalog statements (the part of their time written since the WAL writer's last flush, on average half
    of C(wal_writer_delay) at most); resume one pgbouncer round trip (docs/window.md).
  - The result has one structured list (RV(checks)) and one readable summary (RV(summary_lines)); the phase record
    (RV(phases)) and RV(outcome) feed the C(fastdowntime.postgresql.timeline) callback's report.
version_added: 0.1.0
author: fastdowntime.postgresql contributors (@fastdowntime)
extends_documentation_fragment:
  - fastdowntime.postgresql.attributes
  - fastdowntime.postgresql.connection
  - fastdowntime.postgresql.attributes.schema_group
  - fastdowntime.postgresql.connection.primary
  - fastdowntime.postgresql.connection.standbys
  - fastdowntime.postgresql.connection.pgbouncers
  - fastdowntime.postgresql.deploy
  - fastdowntime.postgresql.deploy.database
  - fastdowntime.postgresql.deploy.lock_retry
  - fastdowntime.postgresql.deploy.patches
  - fastdowntime.postgresql.deploy.budget
attributes:
  check_mode:
    details:
      - The module only reads (and writes one WAL message that changes no data), so it runs the same in check mode,
        except that in check mode a paused WAL replay is reported (a failure), not resumed.
options:
  max_lag_seconds:
    description: How long each standby may take to replay the probe written on the primary.
    type: float
    default: 60
  max_lag_bytes:
    description: How far (WAL bytes) a standby may be behind when the probe is written. Default one WAL segment.
    type: int
    default: 16777216
  max_transaction_seconds:
    description: Transactions (and prepared transactions) open longer than this fail the check.
    type: float
    default: 60
  system_users:
    description:
      - Users whose direct connections to the primary are ignored. Not given - the deploy user and every role with
        the REPLICATION attribute that is not a superuser.
    type: list
    elements: str
  fragile_users:
    description: Users whose direct connections fail the pre-flight - they must be stopped before the outage.
    type: list
    elements: str
    default: []
  statement_seconds:
    description: The least server time assumed per cold statement in the budget estimate. The pre-flight measures the
      primary's time per catalog-only statement now (3 probe transactions of 20 such statements on temporary tables
      dropped at COMMIT) and uses it when higher; the lint's price replaces both when higher still.
    type: float
    default: 0.0001
  resume_paused_replay:
    description:
      - Resume WAL replay found paused on a standby (C(pg_wal_replay_resume()); the deploy user must be allowed to
        run it) - the only change the pre-flight makes, reported as C(changed). C(false) fails the check instead.
    type: bool
    default: true
  resume_operator_replay_pause:
    description:
      - Also resume a WAL replay pause somebody made (paused, no marker of this collection), reported as a warning.
        Never a pause PostgreSQL made (see C(replay_paused)), never in check mode.
    type: bool
    default: false
  blocking_sessions:
    description:
      - What the C(blocking_sessions) check does with a session that would hold the outage for its whole budget -
        C(refuse) the deploy (before any PAUSE), or C(warn) and deploy anyway (the outage then waits for it up to
        the budget and aborts if it has not ended). With C(warn) and O(drain_policy=abort) the C(budget) check's
        drain estimate leaves out the clients through pgbouncer it warned about (you vouch that they end in time),
        naming them.
    type: str
    choices: [refuse, warn]
    default: refuse
  lint_severity:
    description: Severity per lint rule (C(error), C(warning), C(info)) overriding its default (docs/lint.md).
    type: dict
    default: {}
  lint_ignore_rules:
    description:
      - Lint opt-outs, each naming its rule - C(rule), C(rule:file) or C(rule:file:line); the finding becomes
        C(info), its cost still counts.
    type: list
    elements: str
    default: []
  lint_acknowledge_contract:
    description: Contract changes (DROP COLUMN, DROP TABLE, RENAME) known safe - C(file) or C(file:line).
    type: list
    elements: str
    default: []
  lint_scan_mb_per_second:
    description: Scan throughput (MiB/s) the lint prices with; C(0) measures it on the primary (bounded sample).
    type: float
    default: 0
  deploy_windows:
    description:
      - The fixed deploy windows (C(fastdowntime_deploy_windows)) - each a string C(DAYS HH:MM[,HH:MM...] DURATION
        [TIMEZONE]) such as C(daily 02:00,10:00,18:00 30m UTC) or C(weekdays 14:00 1h Europe/London), or a dict with
        C(days), C(times), C(duration), C(timezone). DAYS is C(daily), C(weekdays), C(weekends), C(mon,wed,fri) or
        C(mon-fri); a start is local wall-clock time in the zone (an IANA name, default UTC).
      - Check C(deploy_window) - when cold patches are pending (an outage) and now is outside every window, it fails
        naming the next window; inside a window it passes saying until when. Empty - no windows, any time.
      - A window that cannot be read fails the task with one line before any check runs.
    type: list
    elements: raw
    default: []
  deploy_window_override:
    description:
      - The reason an outage must start outside the deploy windows. Set, the C(deploy_window) check warns instead of
        failing, and the override (who, why, when) is returned in RV(overrides) for the deploy log.
    type: str
    default: ''
  operator:
    description: Who runs the deploy, recorded with an override (the role passes C(fastdowntime_operator)).
    type: str
  app_servers:
    description:
      - The app servers asked about a contract change (lockstep, contract after disuse) - each C(name) and
        C(health_url). A pending C(drop-column), C(drop-table) or C(rename) lint finding passes when every one of them
        answers its health URL with a JSON object whose O(app_health_key) holds a manifest whose C(uses) list does not
        name the object (README "The process"); otherwise it stays an error naming who still uses it or reports
        nothing. Asked only when such a patch is pending.
    type: list
    elements: dict
    default: []
  app_health_key:
    description: The key of the health response that holds the running code's manifest.
    type: str
    default: fastdowntime
  contract_acknowledge_reason:
    description:
      - Why the contract changes acknowledged in O(lint_acknowledge_contract) are safe (the manual override of
        contract after disuse); recorded with O(operator) in RV(overrides) for the deploy log.
    type: str
    default: ''
  fail_on_refusal:
    description:
      - Fail the task when any check fails. The C(preflight) role sets it to C(false), prints the summary, then
        fails the play itself so the summary is readable.
    type: bool
    default: true
requirements:
  - psycopg2 and pglast on the host that runs the module (the roles run it on the controller)
seealso:
  - module: fastdowntime.postgresql.outage
  - module: fastdowntime.postgresql.schema_apply
'''

EXAMPLES = r'''
- name: Could we deploy now?
  fastdowntime.postgresql.preflight:
    primary: "{{ (groups['fastdowntime_primary'] | fastdowntime.postgresql.endpoints(hostvars))[0] }}"
    standbys: "{{ groups['fastdowntime_standbys'] | fastdowntime.postgresql.endpoints(hostvars) }}"
    pgbouncers: >-
      {{ groups['fastdowntime_pgbouncers'] | fastdowntime.postgresql.endpoints(hostvars, kind='pgbouncer') }}
    db_name: launchpad_prod
    patch_dir: /srv/launchpad/database/schema
    revision_table: launchpaddatabaserevision
    budget_seconds: 30
    fragile_users: [librarian]
    killable_users: [cronscripts]
  delegate_to: localhost
  run_once: true
'''

RETURN = r'''
passed:
  description: True when no check failed (warnings do not refuse).
  type: bool
  returned: always
outcome:
  description: C(passed) or C(refused by pre-flight).
  type: str
  returned: always
counts:
  description: How many findings passed, warned and failed (keys C(pass), C(warn), C(fail)).
  type: dict
  returned: always
replay_resumed:
  description: Standbys whose paused WAL replay the pre-flight resumed (then C(changed) is true).
  type: list
  elements: str
  returned: always
checks:
  description:
    - Every finding - C(check) (C(connection), C(server_version), C(privileges), C(patches), C(standbys), C(replay_paused), C(replication_lag),
      C(transactions), C(direct_connections), C(pgbouncer), C(lint), C(budget), C(deploy_window)), C(host), C(status) (C(pass), C(warn),
      C(fail)), C(summary) (one line), C(evidence) (what was seen) and C(action) (what to do).
  type: list
  elements: dict
  returned: always
failed_checks:
  description: The names of the checks that failed, in check order.
  type: list
  elements: str
  returned: always
summary_lines:
  description:
    - The readable summary - the verdict, then each failure and warning followed by what to do, then the passes.
  type: list
  elements: str
  returned: always
summary:
  description: RV(summary_lines) joined by newlines.
  type: str
  returned: always
estimate:
  description: The outage estimate (C(drain_ms), C(cold_patches_ms), C(standby_replay_ms), C(resume_ms), C(total_ms)),
    and what it was built from - C(xact_seconds) (how long the drain would wait for transactions in flight now),
    C(transaction_seconds) (the probe transaction's fixed cost, null when the probe could not run),
    C(statement_seconds) and C(statement_seconds_measured) (per catalog statement), C(wal_tail_ms), C(server_closes)
    (the server connections the PAUSEs close) and C(close_seconds) (a backend's exit, each), C(statements),
    C(patches), and the lint's C(lint), C(costliest) and C(unknown) when it priced statements.
  type: dict
  returned: when cold patches are pending and the primary was reached
plan:
  description: The patch plan (pending hot and cold patches, applied, drift, missing files, ignored files).
  type: dict
  returned: when the primary was reached and the patch set loaded
overrides:
  description:
    - What the operator overrode in this run - C(check) (C(deploy_window) with C(next_window), or C(contract) with
      C(patch) and C(object)), C(who), C(why), C(at) (ISO time); the outage module records them in the deploy log.
  type: list
  elements: dict
  returned: always
phases:
  description: One phase record C(preflight) (host, started_at, duration_ms, status C(ok) or C(failed), detail).
  type: list
  elements: dict
  returned: always
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import HAS_PSYCOPG2
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.specs import (
    FAIL_ON_REFUSAL_SPEC, LOCK_RETRY_SPEC, deploy_argument_spec, lint_options_spec)

try:
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.preflight import Preflight
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.lint import LintError, parse_options
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.deploywindows import (
        WindowError, parse_windows)
    PREFLIGHT_IMPORT_ERROR = None
except ImportError as exc:  # pglast missing on the host that runs the module
    PREFLIGHT_IMPORT_ERROR = exc


def argument_spec():
    return deploy_argument_spec(
        max_lag_seconds=dict(type='float', default=60),
        max_lag_bytes=dict(type='int', default=16777216),
        max_transaction_seconds=dict(type='float', default=60),
        system_users=dict(type='list', elements='str'),
        fragile_users=dict(type='list', elements='str', default=[]),
        statement_seconds=dict(type='float', default=0.0001),
        resume_paused_replay=dict(type='bool', default=True),
        resume_operator_replay_pause=dict(type='bool', default=False),
        deploy_windows=dict(type='list', elements='raw', default=[]),
        deploy_window_override=dict(type='str', default=''),
        operator=dict(type='str'),
        app_servers=dict(type='list', elements='dict', default=[]),
        app_health_key=dict(type='str', default='fastdowntime', no_log=False),
        contract_acknowledge_reason=dict(type='str', default=''),
        blocking_sessions=dict(type='str', choices=['refuse', 'warn'], default='refuse'),
        **dict(lint_options_spec('lint_'), **dict(FAIL_ON_REFUSAL_SPEC, **LOCK_RETRY_SPEC))
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if not HAS_PSYCOPG2 or PREFLIGHT_IMPORT_ERROR is not None:
        module.fail_json(msg='the pre-flight needs psycopg2 and pglast on the host that runs it (%s)'
                         % (PREFLIGHT_IMPORT_ERROR or 'psycopg2 missing'))
    p = module.params
    if p['budget_seconds'] <= 0:
        module.fail_json(msg='budget_seconds must be positive, got %s' % p['budget_seconds'])
    try:
        lint_options = parse_options(p['lint_severity'], p['lint_ignore_rules'], p['lint_acknowledge_contract'])
    except LintError as exc:
        module.fail_json(msg=str(exc))
    try:
        windows = parse_windows(p['deploy_windows'])
    except WindowError as exc:
        module.fail_json(msg=str(exc))
    preflight = Preflight(
        primary=p['primary'], standbys=p['standbys'], pgbouncers=p['pgbouncers'], db_name=p['db_name'],
        patch_dir=p['patch_dir'], budget_seconds=p['budget_seconds'], revision_table=p['revision_table'],
        drain_entries=p['drain_entries'], reserve_seconds=p['reserve_seconds'],
        max_lag_seconds=p['max_lag_seconds'], max_lag_bytes=p['max_lag_bytes'],
        max_transaction_seconds=p['max_transaction_seconds'], system_users=p['system_users'],
        fragile_users=p['fragile_users'], killable_users=p['killable_users'],
        statement_seconds=p['statement_seconds'],
        resume_paused_replay=p['resume_paused_replay'] and not module.check_mode,
        resume_operator_replay_pause=p['resume_operator_replay_pause'] and not module.check_mode,
        lint_options=lint_options,
        scan_bytes_per_second=p['lint_scan_mb_per_second'] * 1048576.0 if p['lint_scan_mb_per_second'] else None,
        deploy_windows=windows, window_override_reason=p['deploy_window_override'], operator=p['operator'],
        app_servers=p['app_servers'], app_health_key=p['app_health_key'],
        contract_acknowledge_reason=p['contract_acknowledge_reason'], drain_policy=p['drain_policy'],
        blocking_sessions=p['blocking_sessions'], lock_retry=p['lock_retry'])
    result = preflight.run()
    if not result['passed'] and p['fail_on_refusal']:
        failing = [line for line in result['summary_lines'] if line.startswith('FAIL ')]
        module.fail_json(msg='pre-flight refused the deploy: %s' % ' | '.join(failing), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
