#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: schema_apply
short_description: Plan or apply a directory of PostgreSQL schema patches, cold patches in one transaction
description:
  - Reads a directory of patch files named as Launchpad names them, C(patch-MMMM-mm-p.sql), ordered by
    (major, minor, patch) as integers. Other files are listed as ignored; a file named C(patch-*.sql) that
    does not follow the pattern (for example C(patch-2211-1-0.sql)), a file named as another tool's migration
    (Flyway C(V3__x.sql), golang-migrate C(1_x.up.sql), goose/dbmate C(20240101093158_x.sql)) and a sqitch
    project are errors naming them.
  - A patch holds plain SQL. psql meta-commands, C(COPY ... FROM stdin) data, a goose/sql-migrate/dbmate down
    section, transaction control, and other tools' annotations that change what runs are errors naming the
    file and line (README, "What a patch file may contain"); every problem of every file is reported at once.
  - Each patch is parsed with pglast (the PostgreSQL parser) and classified. A hot patch holds only statements
    that cannot run in a transaction block but are built to run live (C(CREATE INDEX CONCURRENTLY),
    C(DROP INDEX CONCURRENTLY), C(REINDEX ... CONCURRENTLY), C(DETACH PARTITION ... CONCURRENTLY), C(VACUUM));
    a cold patch holds anything else. A patch mixing both is an error naming the file and lines.
  - The applied revisions are read from the revision table; an applied patch whose file changed since
    (SHA-256) is refused before anything runs; revisions in the database with no file are reported.
  - O(phase=plan) only reports. O(phase=hot) applies the pending hot patches live, statement by statement in
    autocommit with C(lock_timeout) retries; an INVALID index left by a failed concurrent build is dropped and
    the build retried. O(phase=cold) applies every pending cold patch in one transaction on the primary
    (revision rows in the same transaction, one COMMIT), with C(statement_timeout) and C(lock_timeout) taken
    from the remaining O(budget_seconds), lock failures retried while the budget lasts, then waits until every
    standby has replayed the commit. Any error rolls the whole transaction back and names the patch file, the
    line in it and PostgreSQL's message.
  - This module does not touch pgbouncer; the outage (pause, cold patches, replay, resume) is run by the
    collection's deploy. Use O(phase=cold) directly only where a short lock on the changed tables is acceptable.
version_added: 0.1.0
author: fastdowntime.postgresql contributors (@fastdowntime)
extends_documentation_fragment:
  - fastdowntime.postgresql.attributes
  - fastdowntime.postgresql.connection
  - fastdowntime.postgresql.attributes.schema_group
  - fastdowntime.postgresql.connection.primary
  - fastdowntime.postgresql.connection.standbys
  - fastdowntime.postgresql.deploy.database
  - fastdowntime.postgresql.deploy.patches
  - fastdowntime.postgresql.deploy.budget
  - fastdowntime.postgresql.deploy.lock_retry
  - fastdowntime.postgresql.deploy.preflight_check
attributes:
  check_mode:
    details: Check mode runs the plan (pending hot and cold patches, checksums, revision table state) and
      executes no patch; C(changed) tells whether the requested O(phase) would apply anything.
options:
  primary:
    description: The primary PostgreSQL server; its O(primary.dbname) is replaced by O(db_name).
  standbys:
    description:
      - The standbys that must replay the cold transaction before the task succeeds.
      - Each is checked to be a replica of O(primary) (same system identifier, in recovery) before anything
        is applied.
  db_name:
    description: The database the patches apply to.
  phase:
    description:
      - The phase of the deploy to run. C(plan) reports what would be done. C(hot) applies the pending hot patches
        live. C(cold) applies the pending cold patches in one transaction and waits for the standbys; it refuses to
        run while hot patches are pending (apply them first with C(hot)).
      - Hot and cold patches keep their numbered order. C(hot) applies the hot patches numbered before the
        first pending cold patch; C(cold) the cold patches that follow, up to the next hot one;
        C(hot_after_window) the hot patches that follow those (phase C(post_window_hot_patch)); a cold patch
        numbered after those waits for the next run. The plan lists the four (RV(plan.phases)).
      - The alias O(state) is deprecated (this is a phase to run, not a state to reach) and will be removed in 1.0.0.
    type: str
    choices: [plan, hot, cold, hot_after_window]
    default: plan
    aliases: [state]
  budget_seconds:
    description:
      - Budget of O(phase=cold), from the start of the transaction to the last standby having replayed it.
        Statement and lock timeouts come from what is left of it; lock failures are retried only while it
        lasts.
  deploy_id:
    description: Identifier of this deploy, stored with each revision row. Default, a timestamp.
    type: str
notes:
  - Needs pglast and psycopg2 on the host that runs it; the role runs it on the controller.
seealso:
  - name: Launchpad's FastDowntime
    description: The deployment model this collection follows.
    link: https://dev.launchpad.net/Database/LivePatching
'''

EXAMPLES = r'''
- name: What would be applied
  fastdowntime.postgresql.schema_apply:
    primary: {host: 10.0.0.10, user: deploy, password: "{{ vault_deploy_password }}"}
    db_name: appdb
    patch_dir: "{{ playbook_dir }}/schema"
    phase: plan
  register: schema_plan

- name: Build the new indexes live
  fastdowntime.postgresql.schema_apply:
    primary: "{{ primary_endpoint }}"
    db_name: appdb
    patch_dir: "{{ playbook_dir }}/schema"
    phase: hot

- name: Apply the cold patches in one transaction, wait for both standbys
  fastdowntime.postgresql.schema_apply:
    primary: "{{ primary_endpoint }}"
    standbys: "{{ standby_endpoints }}"
    db_name: appdb
    patch_dir: "{{ playbook_dir }}/schema"
    phase: cold
    budget_seconds: 10

- name: A Launchpad database and its patch directory, as they are
  fastdowntime.postgresql.schema_apply:
    primary: "{{ primary_endpoint }}"
    db_name: launchpad_prod
    patch_dir: /srv/launchpad/database/schema
    revision_table: launchpaddatabaserevision
    phase: plan
'''

RETURN = r'''
plan:
  description: The plan, computed before anything ran.
  returned: always
  type: dict
  contains:
    pending_hot:
      description: Pending hot patches numbered before the first pending cold one (name, revision, sha256, kind,
        statements), applied live before the window.
      type: list
      elements: dict
    pending_cold:
      description: The cold patches of the window, in the order they run.
      type: list
      elements: dict
    post_window_hot:
      description: Hot patches numbered after the window's cold patches, applied live after it.
      type: list
      elements: dict
    deferred:
      description: Patches numbered after the post-window hot patches (a cold patch waits for the hot one before
        it), left for the next run.
      type: list
      elements: dict
    phases:
      description: The phases in the order they run, each C(phase) (a name) and C(patches) (file names).
      type: list
      elements: dict
    refused:
      description: What the window would reject, one line each naming the file, the line and the cause; the task fails when not empty.
      type: list
      elements: str
    applied:
      description: Patch files already applied.
      type: list
      elements: str
    drift:
      description: Applied patches whose file changed (name, revision, applied_sha256, file_sha256).
      type: list
      elements: dict
    missing_files:
      description: Revisions recorded in the database with no patch file, as C(MMMM-mm-p).
      type: list
      elements: str
    renamed:
      description: Pending patch files whose SHA-256 is the one recorded for a revision with no file (the applied
        patch renamed since), each C(name), C(applied_revision) (C(MMMM-mm-p)) and C(applied_name).
      type: list
      elements: dict
    unverified:
      description: Applied patches whose revision row holds no checksum (Launchpad's table).
      type: list
      elements: str
    ignored:
      description: Files in the patch directory that are not patches (name, reason).
      type: list
      elements: dict
revision_table:
  description: The revision table, whether it existed before this task, and whether this task created it.
  returned: always
  type: dict
  sample: {name: fastdowntime.schema_revision, launchpad: false, present: true, created: false}
hot:
  description: Per hot patch applied - name, revision, duration_ms, statements, lock_retries, dropped_invalid_indexes.
  returned: when phase is hot or hot_after_window
  type: list
  elements: dict
cold:
  description: The cold transaction - per-patch C(patches) (name, revision, duration_ms, statements, lock_retries),
    C(transaction_ms), C(commit_xid) (the transaction's id, what the standbys are asked about) and C(commit_lsn)
    (the WAL position the commit record follows).
  returned: when phase is cold and patches were applied
  type: dict
  sample: {patches: [{name: patch-2211-01-0.sql, duration_ms: 3.1, lock_retries: 0}], transaction_ms: 8.4,
           commit_xid: '7412', commit_lsn: 0/3000148}
replay:
  description: The standbys' replay of the commit, each done once it reports the transaction C(commit_xid)
    committed - C(standbys) (name, replay_ms, replay_lsn, primary_replay_lsn, primary_confirms, primary_state)
    and C(total_ms).
  returned: when phase is cold and patches were applied
  type: dict
outcome:
  description:
    - C(refused before any patch) when O(preflight_check) refused the patches (this run's pre-flight did not check
      them), before any was applied.
  returned: when refused by O(preflight_check)
  type: str
  sample: refused before any patch
lagging:
  description: Standbys without the new schema when a cold run failed waiting for them.
  returned: on failure
  type: list
  elements: str
phases:
  description: Timed phases from the budget clock (phase, host, start_offset_ms, duration_ms, budget_left_ms, status).
  returned: always
  type: list
  elements: dict
revisions:
  description:
    - What the schema is once this phase's patches are applied (also when one failed), as each database reports it -
      the primary first, then every standby. C(revision) is the newest revision in the revision table; C(error)
      says why a database could not be read. After hot patches a standby is asked again until it reports the
      primary's revision, for at most 5 s; C(behind) is true when it still did not.
    - The timeline report's C(schema now) is the last one read in the run - after the hot patches that follow the
      window when there are some.
  returned: when patches were applied (not in check mode)
  type: list
  elements: dict
  sample:
    - {host: "primary (10.0.0.5:5432)", role: primary, revision: 2300-13-1, error: null}
    - {host: "standby1 (10.0.0.6:5432)", role: standby, revision: 2300-13-1, error: null}
'''

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import outcomes
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.budget import BudgetClock, BudgetExceeded
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.preflight_evidence import preflight_missing
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.patchset import (
    PatchSetError, load_patch_set, plan, refuse_drift)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import (
    ConnectError, connect, endpoint_argument_spec, endpoint_label, one_line)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.specs import (
    BUDGET_SPEC, LOCK_RETRY_SPEC, deploy_target_spec, preflight_check_spec, renamed)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.schema import (
    LockRetry, RevisionTable, SchemaError, applied_revisions, apply_cold, apply_hot, ensure_revision_table,
    procedure_source, revision_table_exists)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.replication import (
    CATCH_UP_SECONDS, REVISION_READ_SECONDS, check_standbys, schema_now, wait_for_replay)

try:
    from psycopg2 import Error as DriverError
except ImportError:  # pragma: no cover - connect() reports the missing driver
    class DriverError(Exception):
        """Stands in for psycopg2.Error where psycopg2 is missing (never raised then)."""


def argument_spec():
    spec = dict(
        primary=endpoint_argument_spec(),
        standbys=endpoint_argument_spec(list_of=True),
        phase=renamed(dict(type='str', choices=['plan', 'hot', 'cold', 'hot_after_window'], default='plan'), 'state'),
        deploy_id=dict(type='str'),
    )
    spec.update(deploy_target_spec())
    spec.update(BUDGET_SPEC)
    spec.update(LOCK_RETRY_SPEC)
    spec.update(preflight_check_spec())
    return spec


class Run:
    """One task: its connections and the result it returns."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.primary = dict(module.params['primary'], dbname=module.params['db_name'])
        self.label = endpoint_label(self.primary)
        self.table = RevisionTable.from_name(module.params['revision_table'])
        self.policy = LockRetry(**module.params['lock_retry'])
        self.deploy_id = module.params['deploy_id'] or time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())
        self.clock = BudgetClock(module.params['budget_seconds'])
        self.connections = []
        self.standby_conns = []   # (endpoint, async connection), once the cold phase opened them
        self.result = dict(changed=False, phases=self.clock.phases)

    def connect(self, endpoint, **kwargs):
        conn = connect(endpoint, dbname=self.params['db_name'], **kwargs)
        self.connections.append(conn)
        return conn

    def close(self):
        for conn in self.connections:
            try:
                conn.close()
            except Exception:  # pragma: no cover - already gone
                pass

    def execute(self):
        phase = self.params['phase']
        patch_set = load_patch_set(self.params['patch_dir'])
        conn = self.connect(self.primary)
        present = revision_table_exists(conn, self.table)
        conn.rollback()
        self.result['revision_table'] = dict(name=self.table.name, launchpad=self.table.launchpad,
                                             present=present, created=False)
        applied = applied_revisions(conn, self.table)
        the_plan = plan(patch_set, applied, revision_table=self.table.name, procedure_source=procedure_source(conn))
        self.result['plan'] = the_plan.as_dict()
        refuse_drift(the_plan)
        if phase == 'plan':
            return
        if phase == 'hot_after_window' and self.module.check_mode:
            # Nothing was applied: the hot patches after the planned window.
            pending = the_plan.post_window_hot
        else:
            pending = the_plan.pending_cold if phase == 'cold' else the_plan.pending_hot
        # In check mode the hot patches are not applied, so a cold plan after
        # them is still worth showing.
        if phase == 'cold' and the_plan.pending_hot and not self.module.check_mode:
            raise SchemaError('%s: hot patches pending (%s): apply them first with phase=hot'
                              % (self.label, ', '.join(p.name for p in the_plan.pending_hot)))
        if not pending:
            return
        self.result['changed'] = True
        if self.module.check_mode:
            return
        check = self.params['preflight_check']
        refused = check and preflight_missing(
            check['evidence'], {'pending_cold' if phase == 'cold' else 'pending_hot': [p.as_dict() for p in pending]},
            self.label, self.params['db_name'], self.params['patch_dir'], check['run_tags'], check['skip_tags'],
            step='cold' if phase == 'cold' else 'hot')
        if refused:
            self.result.update(changed=False, outcome=outcomes.REFUSED_BEFORE_PATCHES)
            raise SchemaError(refused)
        self.result['revision_table']['created'] = ensure_revision_table(conn, self.table)
        try:
            if phase in ('hot', 'hot_after_window'):
                self.apply_hot(conn, pending, 'post_window_hot_patch' if phase == 'hot_after_window' else 'hot_patch')
            else:
                self.apply_cold(conn, pending)
        finally:
            # Read once this phase's last change is made (also when it failed): the report's
            # "schema now" is the last one read in the run, after the hot patches that follow the window.
            self.result['revisions'] = self.schema_now(catch_up_seconds=0 if phase == 'cold' else CATCH_UP_SECONDS)

    def schema_now(self, catch_up_seconds):
        """What each database reports now (replication.schema_now), the standbys
        given time to replay hot patches just applied; a database that cannot be
        reached is a row with its error, never a failed task."""
        label = self.label
        try:
            observer = self.observer()
        except (ConnectError, DriverError) as exc:
            return [{'host': label, 'role': 'primary', 'revision': None, 'error': one_line(exc)}]
        self.connections.append(observer)
        conns, unreachable = list(self.standby_conns), {}
        if not conns:
            for endpoint in self.params['standbys']:
                try:
                    conns.append((endpoint, self.connect(endpoint, async_=True)))
                except (ConnectError, DriverError) as exc:
                    unreachable[endpoint_label(endpoint)] = one_line(exc)
        read = schema_now(observer, label, conns, self.table, REVISION_READ_SECONDS, catch_up_seconds=catch_up_seconds)
        by_host = dict((row['host'], row) for row in read[1:])
        return read[:1] + [by_host.get(endpoint_label(e)) or {'host': endpoint_label(e), 'role': 'standby',
                                                              'revision': None, 'error': unreachable[endpoint_label(e)]}
                           for e in self.params['standbys']]

    def observer(self):
        return connect(self.primary, dbname=self.params['db_name'], autocommit=True,
                       application_name='fastdowntime-observer')

    def apply_hot(self, conn, pending, phase):
        self.result['hot'] = []
        for patch in pending:
            self.result['hot'].append(apply_hot(conn, patch, deploy_id=self.deploy_id, revision_table=self.table,
                                                lock_retry=self.policy, observer=self.observer,
                                                host=self.label, clock=self.clock, phase=phase))

    def apply_cold(self, conn, pending):
        # Standbys are opened and checked before the clock starts: a wrong or
        # unreachable standby fails the task before anything is applied.
        standbys = self.standby_conns = [(endpoint, self.connect(endpoint, async_=True))
                                         for endpoint in self.params['standbys']]
        identities = check_standbys(conn, standbys)
        self.clock.start()
        self.result['cold'] = apply_cold(conn, pending, self.clock, deploy_id=self.deploy_id, revision_table=self.table,
                                         lock_retry=self.policy, observer=self.observer, host=self.label)
        self.result['replay'] = wait_for_replay(conn, standbys, self.result['cold']['commit_lsn'], self.clock,
                                                xid=self.result['cold']['commit_xid'], identities=identities,
                                                label=self.label)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if module.params['budget_seconds'] <= 0:
        module.fail_json(msg='budget_seconds must be positive, got %s' % module.params['budget_seconds'])
    try:
        run = Run(module)
    except SchemaError as exc:
        module.fail_json(msg=str(exc))
    try:
        run.execute()
    except SchemaError as exc:
        if exc.lagging:
            run.result['lagging'] = exc.lagging
        module.fail_json(msg=str(exc), **run.result)
    except (PatchSetError, ConnectError) as exc:
        module.fail_json(msg=str(exc), **run.result)
    except BudgetExceeded as exc:
        module.fail_json(msg='%s: %s' % (run.label, exc), **run.result)
    except DriverError as exc:
        module.fail_json(msg='%s: %s' % (run.label, one_line(exc)), **run.result)
    finally:
        run.close()
    for line in (run.result.get('replay') or {}).get('warnings') or []:  # a replay cross-check not read
        module.warn(line)
    module.exit_json(**run.result)


if __name__ == '__main__':
    main()
