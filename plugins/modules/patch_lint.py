#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: patch_lint
short_description: Lint the pending schema patches with the live database's table sizes, against the budget
description:
  - Classifies every statement of every pending patch with the PostgreSQL parser (pglast) - the lock it takes and
    the work it does - and prices it with the primary's live table sizes; no outage, read-only.
  - Rules (each finding names file, line, statement, rule, lock, severity and a suggested safe rewrite) -
    table rewrites C(alter-type-rewrite) (not for binary-compatible changes such as C(varchar(10)) to
    C(varchar(20)) or C(text)), C(add-column-volatile-default) (C(random()), C(nextval), serial, identity; C(now())
    is stable, so cheap), C(add-column-generated-stored), C(vacuum-full), C(cluster), C(rewrite-storage);
    full scans under a lock C(set-not-null-scan) (none when a validated C(CHECK (col IS NOT NULL)) proves it),
    C(add-check-without-not-valid), C(add-foreign-key-without-not-valid), C(validate-constraint),
    C(add-column-constraint), C(add-column-not-null-without-default), C(attach-partition-scan) (the table an
    C(ATTACH PARTITION) attaches, unless its valid CHECK constraints imply the bound), C(default-partition-scan)
    (the DEFAULT partition beside a partition attached or created), C(partition-bound-violated) (an error - rows
    already there that PostgreSQL would refuse, read from the primary); index builds C(create-index) (suggests a
    hot patch with CONCURRENTLY), C(add-primary-key-without-index), C(add-unique-without-index);
    C(concurrently-in-transaction); C(data-change) (UPDATE, DELETE, INSERT ... SELECT - rows from the planner,
    EXPLAIN without ANALYZE); contract changes C(drop-column), C(drop-table), C(rename) (the second half of the
    lockstep rule - an error unless acknowledged in O(acknowledge_contract)); C(cost-unknown) (an error, for a cold
    statement that runs code - C(DO), C(CALL), C(SELECT fn()), a C(SELECT) reading tables, C(CREATE TABLE AS)
    such a query, C(REFRESH MATERIALIZED VIEW) - whose time cannot be known; not in the estimate, listed in its
    C(unknown));
    C(sleep) (C(SELECT pg_sleep(N)), N seconds); C(catalog-only) for the rest.
  - The cost model - every cost is the bytes of the tables involved divided by a scan throughput T measured once on
    the primary (a bounded sequential scan, at most 8192 pages twice and 0.75 s each, of the largest table the cold
    patches work on), times a factor per kind of work - rewrite 18 + 6 per index, index build 6, scan 1, data
    change 1 plus 18 per byte of rows changed (times 1 + indexes); the standbys' replay adds 0.1 per WAL byte.
    Tables created by the patch set itself count as empty. See docs/lint.md.
  - The estimate here is the statements' time only; the pre-flight (M(fastdowntime.postgresql.preflight)) adds the
    measured drain, replay and resume round trips and refuses the deploy when the whole exceeds the budget.
version_added: 0.1.0
author: fastdowntime.postgresql contributors (@fastdowntime)
extends_documentation_fragment:
  - fastdowntime.postgresql.attributes
  - fastdowntime.postgresql.connection
  - fastdowntime.postgresql.attributes.schema_group
  - fastdowntime.postgresql.connection.primary
  - fastdowntime.postgresql.deploy.database
  - fastdowntime.postgresql.deploy.patches
  - fastdowntime.postgresql.deploy.budget
attributes:
  check_mode:
    details: Read-only (one READ ONLY transaction, rolled back), so it runs the same in check mode.
options:
  budget_seconds:
    description: The longest outage allowed; cold statements estimated over it fail the lint.
  severity:
    description: Severity per rule (C(error), C(warning) or C(info)), overriding the rule's default.
    type: dict
    default: {}
  ignore_rules:
    description:
      - Opt-outs, each naming its rule - C(rule) (everywhere), C(rule:file) or C(rule:file:line). An opted-out
        finding is kept with severity C(info); its cost still counts against the budget.
    type: list
    elements: str
    default: []
  acknowledge_contract:
    description:
      - Contract changes (C(drop-column), C(drop-table), C(rename)) that are known to be safe because no running
        code uses the object any more - C(file) or C(file:line).
    type: list
    elements: str
    default: []
  scan_mb_per_second:
    description: The scan throughput to price with (MiB/s); C(0) measures it on the primary.
    type: float
    default: 0
  fail_on_refusal:
    description:
      - Fail the task when the lint refuses the patches - any finding is an error or the estimate exceeds the budget
        (C(false) - report it in RV(passed) only), as O(fastdowntime.postgresql.preflight#module:fail_on_refusal) does.
      - The alias O(fail_on_error) is deprecated and will be removed in 1.0.0.
    type: bool
    default: true
    aliases: [fail_on_error]
requirements:
  - psycopg2 and pglast on the host that runs the module (the playbook runs it on the controller)
seealso:
  - module: fastdowntime.postgresql.preflight
'''

EXAMPLES = r'''
- name: Lint the pending patches against the live primary
  fastdowntime.postgresql.patch_lint:
    primary: "{{ (groups['fastdowntime_primary'] | fastdowntime.postgresql.endpoints(hostvars))[0] }}"
    db_name: launchpad_prod
    patch_dir: /srv/launchpad/database/schema
    budget_seconds: 30
    acknowledge_contract: ['patch-2211-02-0.sql:4']
    ignore_rules: ['create-index:patch-2211-03-0.sql']
  delegate_to: localhost
  run_once: true
'''

RETURN = r'''
passed:
  description: No error finding and the statements' estimate within the budget.
  type: bool
  returned: always
findings:
  description:
    - One per statement of each pending patch - C(file), C(line), C(statement), C(rule) (the statement's costliest or
      most severe), C(rules) (all of them), C(kind), C(lock), C(severity), C(summary), C(suggestion), C(table),
      C(estimate_seconds), C(replay_seconds), C(basis) (the sizes and the formula), C(acknowledged), C(opted_out),
      C(cost_unknown) (true when the statement runs code the estimate cannot price).
  type: list
  elements: dict
  returned: always
estimate:
  description:
    - C(statements_seconds) and C(replay_seconds) of the cold patches, C(costliest) statements, C(scan_mb_per_second)
      and where it came from (C(throughput_source)), C(unknown) (C(file:line what) of the cold statements that run
      code of unknown cost, not in the sums).
  type: dict
  returned: always
counts:
  description: Findings per severity (C(error), C(warning), C(info)).
  type: dict
  returned: always
summary_lines:
  description: The readable summary - errors, warnings with their suggested rewrite, then the rest.
  type: list
  elements: str
  returned: always
pending:
  description: The pending patch names, in order.
  type: list
  elements: str
  returned: always
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fastdowntime.postgresql.plugins.module_utils.specs import (
    BUDGET_SPEC, FAIL_ON_REFUSAL_SPEC, deploy_target_spec, lint_options_spec, renamed)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import (
    HAS_PSYCOPG2, ConnectError, connect, endpoint_argument_spec, endpoint_label, one_line)

try:
    import psycopg2
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils import lint
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.patchset import (
        PatchSetError, load_patch_set, plan, refuse_drift)
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.schema import (
        SchemaError, applied_revisions, procedure_source)
    IMPORT_ERROR = None
except ImportError as exc:  # pglast or psycopg2 missing on the host that runs the module
    IMPORT_ERROR = exc


def run(params):
    """The module's work; raises ConnectError/PatchSetError/LintError/SchemaError
    with an operator message."""
    options = lint.parse_options(params['severity'], params['ignore_rules'], params['acknowledge_contract'])
    patch_set = load_patch_set(params['patch_dir'])
    endpoint = dict(params['primary'], dbname=params['db_name'])
    label = endpoint_label(endpoint)
    conn = connect(endpoint, autocommit=True, application_name='fastdowntime-lint')
    try:
        the_plan = plan(patch_set, applied_revisions(conn, params['revision_table']), revision_table=params['revision_table'],
                        procedure_source=procedure_source(conn))
        refuse_drift(the_plan)
        pending = sorted(the_plan.pending, key=lambda p: p.revision)
        speed = params['scan_mb_per_second'] * 1048576.0 if params['scan_mb_per_second'] else None
        try:
            findings, estimate, dummy = lint.lint_live(conn, pending, options, speed)
        except psycopg2.Error as exc:
            raise ConnectError('%s: cannot read the tables the patches touch: %s'
                               % (label, one_line(exc.pgerror or exc)))
    finally:
        conn.close()
    budget = params['budget_seconds']
    total = estimate['statements_seconds'] + estimate['replay_seconds']
    over = total > budget
    counts = lint.counts(findings)
    lines = lint.summary_lines(findings, total=total, budget_seconds=budget)
    if over:
        lines.insert(1, 'ERROR the cold statements alone are estimated at %.2fs, over the %gs budget; costliest: %s'
                     % (total, budget, ', '.join(estimate['costliest'])))
    return {
        'changed': False, 'passed': counts[lint.ERROR] == 0 and not over, 'findings': findings,
        'estimate': estimate, 'counts': counts, 'summary_lines': lines, 'over_budget': over,
        'pending': [p.name for p in pending],
    }


def argument_spec():
    return dict(
        primary=endpoint_argument_spec(),
        fail_on_refusal=renamed(FAIL_ON_REFUSAL_SPEC['fail_on_refusal'], 'fail_on_error'),
        **dict(deploy_target_spec(), **dict(BUDGET_SPEC, **lint_options_spec()))
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if not HAS_PSYCOPG2 or IMPORT_ERROR is not None:
        module.fail_json(msg='patch_lint needs psycopg2 and pglast on the host that runs it (%s)'
                         % (IMPORT_ERROR or 'psycopg2 missing'))
    try:
        result = run(module.params)
    except (ConnectError, PatchSetError, SchemaError, lint.LintError) as exc:
        module.fail_json(msg=one_line(exc))
    if not result['passed'] and module.params['fail_on_refusal']:
        failing = [line for line in result['summary_lines'] if line.startswith('ERROR ')]
        module.fail_json(msg='patch lint refused the patches: %s' % ' | '.join(failing), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
