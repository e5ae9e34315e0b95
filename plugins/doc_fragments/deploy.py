# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The options several modules share, as plugins/module_utils/specs.py declares them (type, default, choices,
    # required and aliases checked against it by tests/unit/plugins/doc_fragments/test_doc_fragments.py).
    # A module may restate an option's description in its own options (Ansible merges them over these).

    # The outage and preflight modules (specs.deploy_argument_spec()), with .database, .patches and .budget;
    # their endpoints come from fastdowntime.postgresql.connection.primary/standbys/pgbouncers.
    DOCUMENTATION = r'''
options:
  drain_entries:
    description:
      - Entry names (SHOW DATABASES C(name)) to drain explicitly instead of those found from O(db_name).
      - The alias O(pgbouncer_databases) is deprecated (it is also what a standby's entries are called) and will be
        removed in 1.0.0.
    type: list
    elements: str
    default: []
    aliases: [pgbouncer_databases]
  reserve_seconds:
    description: Part of the budget kept back for ROLLBACK and RESUME (at most a fifth of the budget).
    type: float
    default: 0.5
  killable_users:
    description: Users whose direct connections to the primary (not through a pgbouncer) are terminated as the outage starts.
    type: list
    elements: str
    default: []
  drain_policy:
    description:
      - What to do when a client holds a server connection at the drain deadline. C(abort) resumes everything and fails
        naming the client; C(terminate) terminates its backend on the primary and confirms the drain.
      - The pre-flight's C(blocking_sessions) check refuses a client through a pgbouncer that would hold the drain
        the whole budget when this is C(abort); with C(terminate) it warns that the drain will terminate it.
    type: str
    choices: [abort, terminate]
    default: abort
'''

    # specs.deploy_target_spec('db_name', 'revision_table')
    DATABASE = r'''
options:
  db_name:
    description: The deploy's database. The pgbouncer entries of the deploy are those whose target database is this one.
    type: str
    required: true
  revision_table:
    description:
      - Where applied revisions are recorded.
      - A C(schema.table) name (default C(fastdowntime.schema_revision)) is a table owned by the collection,
        created before the first patch runs, holding major, minor, patch, file name, kind, SHA-256,
        start and end time, duration in ms and the deploy id.
      - C(launchpaddatabaserevision) is Launchpad's C(LaunchpadDatabaseRevision) table. Each patch inserts
        its own row, as Launchpad patches do; after each patch the row must be there, else the deploy fails.
        It keeps no checksum, so applied patches are listed as unverified rather than checked for drift.
    type: str
    default: fastdowntime.schema_revision
'''

    # specs.deploy_target_spec('patch_dir')
    PATCHES = r'''
options:
  patch_dir:
    description: The patch directory (C(patch-MMMM-mm-p.sql) files) on the host that runs the module (the controller, in the roles).
    type: path
    required: true
'''

    # specs.BUDGET_SPEC
    BUDGET = r'''
options:
  budget_seconds:
    description: The longest outage allowed, from the start of the drain to the last RESUME.
    type: float
    default: 60
'''

    # specs.LOCK_RETRY_SPEC: schema_apply applies it, preflight prices the hot statements' waits with it
    LOCK_RETRY = r'''
options:
  lock_retry:
    description:
      - How a statement that cannot get its locks is retried (the roles pass C(schema_apply_lock_retry)). A hot
        statement fails after its O(lock_retry.max_attempts) tries, each waiting up to its C(lock_timeout), then
        pausing; the pre-flight's C(hot_patch_waits) check prices that wait with these same values.
    type: dict
    default: {}
    suboptions:
      timeout_ms:
        description: C(lock_timeout) of the first try, in ms; doubled at every try.
        type: int
        default: 200
      max_timeout_ms:
        description: Largest C(lock_timeout) of a try, in ms.
        type: int
        default: 2000
      pause_ms:
        description: Pause after the first failed try, in ms; doubled at every try (at most 500 ms).
        type: int
        default: 20
      max_attempts:
        description: Tries per statement of a hot patch (cold patches are bounded by O(budget_seconds)).
        type: int
        default: 8
'''

    # specs.PREFLIGHT_CHECK_SPEC: the outage (its window) and schema_apply (hot patches) modules
    PREFLIGHT_CHECK = r'''
options:
  preflight_check:
    description:
      - The roles' guard against a change to the database no pre-flight of this run checked (C(--tags outage),
        C(--tags hot), C(--skip-tags preflight), a role used without the C(preflight) role before it). Given, with
        patches pending that this module would apply (the outage - its cold patches, in check mode too, so the role's
        plan refuses before the dead-man switch is armed; schema_apply - its hot patches), the module fails before it
        changes anything with one line naming the primary, how the pre-flight was left out and the fix, unless
        C(evidence) covers every one of them (this database, this patch directory, each patch's name and checksum).
      - Not given (the default), nothing is checked (the module run on its own).
    type: dict
    suboptions:
      evidence:
        description:
          - The pre-flight's evidence of this run - the fact C(fastdowntime_preflight_passed) the C(preflight) role sets
            on the primary when every check passed (C(db_name), C(patch_dir), C(pending_hot), C(pending_cold),
            C(post_window_hot)); empty when it did not pass in this run.
        type: dict
        default: {}
      run_tags:
        description: C(ansible_run_tags), to name the tags that left the pre-flight out.
        type: list
        elements: str
        default: []
      skip_tags:
        description: C(ansible_skip_tags), likewise.
        type: list
        elements: str
        default: []
'''

    # specs.ENTRIES_SPEC: the pgbouncer and pgbouncer_watchdog modules
    ENTRIES = r'''
options:
  entries:
    description:
      - Entry names (SHOW DATABASES C(name)) to act on explicitly. Unknown names fail before anything is touched.
      - Default, the entries whose target database is O(db_name), or every entry when O(db_name) is not given.
      - The alias O(databases) is deprecated and will be removed in 1.0.0.
    type: list
    elements: str
    default: []
    aliases: [databases]
  db_name:
    description: The deploy's database; selects the entries pointing at it when O(entries) is empty.
    type: str
'''
