#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: outage
short_description: The whole outage window in one task - drain, cold patches, standbys replayed, resume
description:
  - Runs the outage of a fastdowntime deploy in one process, so that no Ansible task boundary
    (0.3-0.5 s each) lands inside it.
  - Before the clock starts it loads the patch set, connects to the primary, every standby and every
    pgbouncer admin console, checks the pgbouncer users are admins and resolves the deploy's entries;
    any problem there fails the task with nothing paused.
  - The window, timed against one budget (O(budget_seconds)) - terminate the direct connections of
    O(killable_users); PAUSE the deploy's entries on every pgbouncer in parallel (their replies are the drain);
    apply every pending cold patch in ONE transaction on the primary (revision rows in the same
    transaction); wait until every standby has replayed the commit; RESUME every pgbouncer.
  - Any failure inside the window (bad patch, lock not granted, budget spent, standby behind, pgbouncer
    lost) takes one path - ROLLBACK, RESUME of every pgbouncer - and fails with one message naming the
    phase, the host and the cause. Entries that serve a standby without the new schema are fenced
    (DISABLE, KILL, RESUME) and named, so no client lands on the old schema.
  - With O(window_mode=split) (Launchpad's last FastDowntime design) the standbys keep serving reads while the
    primary is patched - WAL replay is paused on every standby (confirmed with C(pg_get_wal_replay_pause_state()),
    C(pg_is_wal_replay_paused()) before PostgreSQL 14); only the read-write entries are drained; the cold patches
    are applied; the read-only entries are drained as the read-write ones are resumed (writes are back); replay is
    resumed, every standby replays the commit, and the read-only entries are resumed. Every failure path resumes
    replay and every entry, within the same budget.
  - Read-only entries are those a standby lists in C(pgbouncer_entries); every other deploy entry is read-write.
  - Nothing pending means no outage at all - nothing is paused.
  - Hot patches must be applied live before (M(fastdowntime.postgresql.schema_apply) with C(phase=hot));
    the module refuses to start an outage while any is pending.
  - Before the clock starts, the module waits (up to 5 s) until no pool of the deploy's entries has a server login
    in flight (C(SHOW POOLS) C(sv_login)) - pgbouncer takes a PAUSE closing one for a failed login and then fails
    or holds that pool's clients for C(server_login_retry) - and refuses, nothing paused, if one still is.
  - A login may still start in the round trip between that read and the PAUSE, so the module also sets
    C(server_login_retry) to 0 on every pgbouncer process (C(SET) on its console) before the clock starts -
    a login the PAUSE closes is then made again at RESUME for the clients queued, instead of
    C(server_login_retry) later. The value it had is set back after the window's verification (on any error
    path too, and by the dead-man switch if the controller dies); a process it cannot be set back on is a
    warning naming the command to run. Check mode changes nothing.
  - While the window runs the module ignores SIGINT, SIGTERM and SIGHUP (Ansible sends the Ctrl-C or kill of
    ansible-playbook on to it), so the window ends as planned, within its budget, and writes its deploy-log row.
    A SIGKILL leaves the pgbouncers to the dead-man switch.
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
  - fastdowntime.postgresql.deploy.patches
  - fastdowntime.postgresql.deploy.budget
  - fastdowntime.postgresql.deploy.preflight_check
attributes:
  check_mode:
    details: In check mode the module connects, computes the plan and returns it; nothing is paused or applied.
options:
  blocking_sessions:
    description:
      - Just before the window's clock (nothing paused yet) the outage looks again, on every server an entry to be
        paused points at (the primary and the standby behind each read-only entry), for a client through pgbouncer
        in a transaction that will outlast the drain's deadline (open longer than it, or idle in it) - one that
        began after the pre-flight passed - and C(refuse)s to open the window, in one line naming the host, entry,
        backend pid, user, application, how long it has run and the fix. C(warn), as the pre-flight's
        O(fastdowntime.postgresql.preflight#module:blocking_sessions=warn) (you vouch that such sessions end in
        time), opens the window anyway. A primary backend with O(drain_policy=terminate) is left to the drain.
    type: str
    choices: [refuse, warn]
    default: refuse
  estimate_ms:
    description:
      - The pre-flight's estimate of this outage (its RV(fastdowntime.postgresql.preflight#module:estimate.total_ms)),
        copied into RV(outage) (its C(estimate_ms)) so the timeline shows it next to the actual outage.
    type: float
  deploy_id:
    description: An identifier for this deploy, recorded with every revision row; generated when not given.
    type: str
  window_mode:
    description:
      - C(all) drains every deploy entry on every pgbouncer for the whole window.
      - C(split) pauses WAL replay on the standbys and drains the read-only entries (those listed in a standby's
        C(pgbouncer_entries)) only for the standbys' catch-up after the commit, so reads wait only that long and
        writes only for the primary's part. The deploy user needs to run C(pg_wal_replay_pause()) and
        C(pg_wal_replay_resume()) on the standbys (a superuser, or EXECUTE granted on both).
    type: str
    choices: [all, split]
    default: all
  watchdog_grace_seconds:
    description:
      - The grace of the pgbouncer dead-man switch the deploy arms (M(fastdowntime.postgresql.pgbouncer_watchdog)'s
        O(fastdowntime.postgresql.pgbouncer_watchdog#module:grace_seconds)); in check mode the plan returns the
        switch's lifetime computed from it (RV(watchdog)). The window itself does not use it.
    type: float
    default: 10
  unfence:
    description:
      - Instead of the window, outside any PAUSE - ENABLE the read entries an earlier window left fenced
        (DISABLEd because their standby lacked the schema; it records each fence on the primary, table
        C(fastdowntime.fenced_entry)) whose standby has now replayed past the fence, forget the fences someone
        else ENABLEd, and warn in one line for each entry whose standby is still behind (it stays DISABLEd).
        An entry DISABLEd by someone else (no fence recorded) is never touched. In check mode nothing changes
        (RV(fences) says what would be done). The outage role runs it when the plan returns fences.
    type: bool
    default: false
  overrides:
    description:
      - What the operator overrode in the pre-flight (its RV(fastdowntime.postgresql.preflight#module:overrides) - a
        deploy window, a contract change; who, why, when), kept in the C(overrides) column of the deploy log row.
    type: list
    elements: dict
    default: []
requirements:
  - psycopg2 and pglast on the host that runs the module (the roles run it on the controller)
seealso:
  - module: fastdowntime.postgresql.pgbouncer
  - module: fastdowntime.postgresql.schema_apply
  - module: fastdowntime.postgresql.pgbouncer_watchdog
'''

EXAMPLES = r'''
- name: The outage, in one task on the controller
  fastdowntime.postgresql.outage:
    primary: "{{ (groups['fastdowntime_primary'] | fastdowntime.postgresql.endpoints(hostvars))[0] }}"
    standbys: "{{ groups['fastdowntime_standbys'] | fastdowntime.postgresql.endpoints(hostvars) }}"
    pgbouncers: "{{ groups['fastdowntime_pgbouncers'] | fastdowntime.postgresql.endpoints(hostvars, kind='pgbouncer') }}"
    db_name: launchpad_prod
    patch_dir: /srv/launchpad/database/schema
    revision_table: launchpaddatabaserevision
    budget_seconds: 30
  delegate_to: localhost
  run_once: true

- name: The outage with the standbys serving reads while the primary is patched
  fastdowntime.postgresql.outage:
    primary: "{{ (groups['fastdowntime_primary'] | fastdowntime.postgresql.endpoints(hostvars))[0] }}"
    # each standby carries pgbouncer_entries (from fastdowntime_standby_pgbouncer_entries): its read-only entries
    standbys: "{{ groups['fastdowntime_standbys'] | fastdowntime.postgresql.endpoints(hostvars) }}"
    pgbouncers: "{{ groups['fastdowntime_pgbouncers'] | fastdowntime.postgresql.endpoints(hostvars, kind='pgbouncer') }}"
    db_name: launchpad_prod
    patch_dir: /srv/launchpad/database/schema
    window_mode: split
  delegate_to: localhost
  run_once: true
'''

RETURN = r'''
outcome:
  description: C(done), C(nothing to do), or C(aborted in <phase>) (on failure).
  type: str
  returned: always
deploy_id:
  description: The deploy's identifier.
  type: str
  returned: always
plan:
  description: The plan (pending hot and cold patches, applied, drift, files missing, ignored files).
  type: dict
  returned: always
watchdog:
  description:
    - The dead-man switch of this deploy - C(countdown_seconds) (O(budget_seconds) + O(watchdog_grace_seconds), how
      long it lets the entries stay paused) and C(max_lifetime_seconds) (how long it lives once armed - a margin of
      300 s for the arming and the task boundaries before the window's PAUSE, then the countdown - so it never
      outlives the deploy). The outage role arms the switch with these.
  type: dict
  returned: in check mode (the plan)
  sample:
    countdown_seconds: 70.0
    max_lifetime_seconds: 370.0
fences:
  description:
    - The fences an earlier window recorded (C(pgbouncer), C(entry), C(standby), C(deploy_id), C(lsn)); with
      O(unfence), each with C(action) (C(enable), C(forget), C(keep)) and C(why).
  type: list
  elements: dict
  returned: in check mode (the plan), and with O(unfence)
unfenced:
  description: The entries O(unfence) ENABLEd, each as C(<entry> on <pgbouncer> (<why>)).
  type: list
  elements: str
  returned: with O(unfence)
still_fenced:
  description: One line per entry left DISABLEd (its standby still behind), naming pgbouncer, entry, standby and the fix.
  type: list
  elements: str
  returned: with O(unfence)
deploy_log:
  description:
    - "C(written), or C(not written: <cause>) when this run's row of C(fastdowntime.deploy_log) could not be
      written after the window (never a failed deploy); then C(outage.warnings) also has a line naming the primary,
      the cause and the fix (printed under the timeline, kept in the report)."
  type: str
  returned: when a window ran
fences_recorded:
  description:
    - "How many fence records (entries left DISABLEd) were written, or C(not written: <cause>) (then also a line
      in C(outage.warnings) naming the entries to ENABLE by hand)."
  type: raw
  returned: when a window ran
pause_marks:
  description:
    - "C(not written: <cause>) when the split window's replay-pause markers could not be removed after it (then
      also a line in C(outage.warnings))."
  type: str
  returned: when the markers could not be removed
phases:
  description: Every phase timed against the budget (phase, host, start_offset_ms, duration_ms, budget_left_ms, status, detail).
  type: list
  elements: dict
  returned: always
outage:
  description:
    - C(started_at)/C(ended_at) (epoch seconds), C(outage_ms) (drain start to last RESUME; to the end of the
      verification after it when that had to resume or enable an entry), C(max_client_wait_ms) (the longest wait
      pgbouncer saw, SHOW POOLS read with the RESUMEs), C(standby_replay_ms) per standby, C(primary_confirms) per
      standby (the primary's pg_stat_replication shows the commit replayed, read after RESUME - a report, not a
      gate), C(patches) (per-patch duration_ms), C(transaction_ms), C(commit_xid) (the transaction the standbys
      confirmed), C(commit_lsn), C(controller_cpu_ms) (CPU time the controller's own process spent inside the
      outage, every thread - the part of the outage that grows with the number of pgbouncers on a controller with
      cores of its own), C(standby_catch_up) (before the clock, nothing paused, C(label), C(bytes_behind) and
      C(catch_up_seconds) per standby - how far behind it was and how long it took to replay a fresh WAL record;
      the outage waits up to 30 s for that and refuses the window, before any PAUSE, for a standby still behind
      or whose replay is paused).
    - C(resumed_by_others) - C(pgbouncer), C(entry), C(restarted) for each entry whose own RESUME was answered
      C(is not paused) (someone else - an operator, a process manager, a health script - resumed it inside the
      window, or with C(restarted) that pgbouncer restarted), so clients may have reached the primary inside the
      window or a standby before its replay. The outcome stays C(done) (the patches are committed and replayed);
      C(warnings) holds one line naming them, what it means and what to do, also given as the task's warning and
      printed by the timeline report.
  type: dict
  returned: when an outage took place
  sample:
    outage_ms: 184.2
    controller_cpu_ms: 9.6
    window_mode: split
    write_outage_ms: 71.3
    read_outage_ms: 64.0
    max_write_wait_ms: 69.1
    max_read_wait_ms: 61.8
window_mode:
  description:
    - C(all) or C(split). In split mode the C(outage) dict also has C(write_outage_ms) (read-write drain start
      to their RESUME), C(read_outage_ms) (read-only drain start to their RESUME), C(max_write_wait_ms) and
      C(max_read_wait_ms); C(outage_ms) then runs from the replay pause to the last RESUME.
  type: str
  returned: always
replay_left_paused:
  description: Standbys whose replay could not be resumed (split mode; the next pre-flight resumes it).
  type: list
  elements: str
  returned: split mode, when an outage took place
resumed:
  description: Per pgbouncer, what RESUME did and the longest client wait it reported.
  type: list
  elements: dict
  returned: when an outage took place
revisions:
  description:
    - What the schema is after the window, as each database reports it (read after RESUME on the window's
      connections, never inside the window) - the primary first, then every standby. C(revision) is the newest
      revision in the revision table (C(2211-01-0)); C(error) says why a database could not be read.
  type: list
  elements: dict
  returned: when an outage took place (also when it aborted)
  sample:
    - {host: "primary (10.0.0.5:5432)", role: primary, revision: 2211-01-0, error: null}
    - {host: "standby1 (10.0.0.6:5432)", role: standby, revision: 2211-01-0, error: null}
disabled_entries:
  description: C([pgbouncer, entry]) pairs left disabled because their standby lacks the new schema.
  type: list
  elements: list
  returned: when an outage took place
pgbouncer_state:
  description:
    - What a client saw after the window, asked through every deploy entry of every pgbouncer process
      (connect and C(SELECT 1), as the probe user). C(probe) maps each console to each entry's answer
      (null = answered, else what the client saw); C(answering_clients) is true only when every entry not
      left disabled answered; C(statement) is the report's sentence (also C(outage.pgbouncer_state)).
    - C(waiting_without_server) maps each console to the pools of its deploy entries with clients to serve
      (waiting, or queued at RESUME) and still no server connection 2 s after RESUME (C(entry), C(user),
      C(waiting) - clients waiting now, C(maxwait_s)), so pgbouncer could not log in again as that user (a password
      rotated in PostgreSQL but not in its auth_file, pg_hba.conf).
      C(pools_not_read) maps a console whose SHOW POOLS failed to the error.
    - C(probe_waited_for_queue_ms) is how long the probe waited, after the last RESUME, for the clients queued in
      the window to be served first (at most 500 ms; its logins would be served between theirs).
    - An entry that does not answer, or a pool waiting without a server, fails the task even when the patches
      are committed.
  type: dict
  returned: when an outage took place
server_login_retry:
  description:
    - C(server_login_retry) lowered for the window - C(lowered_to) (C(0)), C(restored) (each pgbouncer process
      and the value set back) and C(not_restored) (one line per process left lowered, with the command that
      sets it back; also in C(outage.warnings)).
  type: dict
  returned: when an outage took place on a pgbouncer whose server_login_retry was above 0
budget_capped_by:
  description:
    - The pgbouncer timeout that shortened the budget - C(pgbouncer), C(setting) (C(query_wait_timeout) or
      C(query_timeout)), C(timeout_seconds), C(seconds) (the budget used, a margin below it) and
      C(budget_seconds) (the one asked for).
  type: dict
  returned: when a pgbouncer timeout is shorter than the budget
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import outcomes, watchdog
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import (
    HAS_PSYCOPG2, endpoint_label, one_line)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.preflight_evidence import preflight_missing
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.specs import (
    deploy_argument_spec, preflight_check_spec)

try:
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.drain import terminated_lines
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.outage import (
        Outage, OutageError, signals_deferred)
    OUTAGE_IMPORT_ERROR = None
except ImportError as exc:  # pglast missing on the host that runs the module
    OUTAGE_IMPORT_ERROR = exc


def argument_spec():
    return deploy_argument_spec(
        deploy_id=dict(type='str'),
        estimate_ms=dict(type='float'),
        blocking_sessions=dict(type='str', choices=['refuse', 'warn'], default='refuse'),
        window_mode=dict(type='str', choices=['all', 'split'], default='all'),
        overrides=dict(type='list', elements='dict', default=[]),
        watchdog_grace_seconds=dict(type='float', default=watchdog.DEFAULT_GRACE_SECONDS),
        unfence=dict(type='bool', default=False),
        **preflight_check_spec()
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if not HAS_PSYCOPG2 or OUTAGE_IMPORT_ERROR is not None:
        module.fail_json(msg='the outage needs psycopg2 and pglast on the host that runs it (%s)'
                         % (OUTAGE_IMPORT_ERROR or 'psycopg2 missing'))
    p = module.params
    outage = Outage(
        primary=p['primary'], standbys=p['standbys'], pgbouncers=p['pgbouncers'], db_name=p['db_name'],
        patch_dir=p['patch_dir'], budget_seconds=p['budget_seconds'], revision_table=p['revision_table'],
        deploy_id=p['deploy_id'], drain_policy=p['drain_policy'], drain_entries=p['drain_entries'],
        killable_users=p['killable_users'], reserve_seconds=p['reserve_seconds'], window_mode=p['window_mode'],
        overrides=p['overrides'], estimate_ms=p['estimate_ms'], blocking_sessions=p['blocking_sessions'])
    try:
        if p['unfence']:
            outage.prepare(check_mode=True)
            result = outage.unfence(check_mode=module.check_mode)
            for line in result['still_fenced']:
                module.warn(line)
            module.exit_json(**result)
        plan = outage.prepare(check_mode=module.check_mode)
        check = p['preflight_check']
        refused = check and preflight_missing(check['evidence'], plan.as_dict(), endpoint_label(p['primary']),
                                              p['db_name'], p['patch_dir'], check['run_tags'], check['skip_tags'])
        if refused:
            raise OutageError(refused)
        if module.check_mode:
            outcome = outcomes.PLANNED if plan.pending_hot or plan.pending_cold else outcomes.NOTHING_TO_DO
            module.exit_json(changed=bool(plan.pending_cold), outcome=outcome, deploy_id=outage.deploy_id,
                             plan=plan.as_dict(), phases=[], fences=outage.fences,
                             watchdog=watchdog.deploy_switch(p['budget_seconds'], p['watchdog_grace_seconds']))
        with signals_deferred():  # a Ctrl-C or kill of ansible-playbook reaches this process too
            result = outage.run()
    except OutageError as exc:
        result = dict(exc.result)
        result.setdefault('deploy_id', outage.deploy_id)
        result.setdefault('outcome', outcomes.REFUSED_BEFORE_OUTAGE)
        result.setdefault('phases', outage.clock.phases)
        _warn(module, result)
        module.fail_json(msg=str(exc), **result)
    except Exception as exc:  # a bug, not an expected failure; the window resumes in its finally
        module.fail_json(msg='outage failed unexpectedly: %s: %s - check every pgbouncer (module '
                             'fastdowntime.postgresql.pgbouncer, action info; the dead-man switch resumes any '
                             'left paused) and the schema revisions (schema_apply phase=plan)'
                         % (type(exc).__name__, one_line(exc)),
                         deploy_id=outage.deploy_id, outcome=outcomes.ABORTED, phases=outage.clock.phases)
    finally:
        outage.close()
    _warn(module, result)
    module.exit_json(**result)


def _warn(module, result):
    """One warning per client the drain's terminate policy ended and per line of the
    outage's own warnings (entries resumed by someone else inside the window)."""
    outage = result.get('outage') if isinstance(result.get('outage'), dict) else {}
    for line in terminated_lines(result.get('phases')) + list(outage.get('warnings') or []):
        module.warn(line)


if __name__ == '__main__':
    main()
