#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only module: times made-up steps with the real BudgetClock and
returns ``phases`` (and ``outage``) the way fastdowntime modules do, so the
timeline callback can be run for real without a database."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: timeline_probe
short_description: Test-only source of real BudgetClock phase records
description:
  - Runs each step (sleeping its C(seconds)) inside C(BudgetClock.phase()). The clock starts at the
    first step whose phase is C(drain). After a failing step only steps with C(always) or
    C(on_abort) run (the rollback and resume of an abort), then the module fails; C(on_abort)
    steps run only then.
options:
  budget_seconds:
    type: float
    default: 5
    description: The outage budget.
  deploy_id:
    type: str
    description: Returned as is.
  steps:
    type: list
    elements: dict
    required: true
    description: C(phase), C(host), C(seconds), C(fail), C(always), C(on_abort), C(detail).
author: fastdowntime.postgresql contributors
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.budget import BudgetClock


def main():
    module = AnsibleModule(argument_spec=dict(
        budget_seconds=dict(type='float', default=5),
        deploy_id=dict(type='str'),
        steps=dict(type='list', elements='dict', required=True),
    ))
    clock = BudgetClock(module.params['budget_seconds'])
    failure = None
    for step in module.params['steps']:
        if failure and not (step.get('always') or step.get('on_abort')):
            continue
        if step.get('on_abort') and not failure:
            continue
        if step['phase'] == 'drain':
            clock.start()
        try:
            with clock.phase(step['phase'], host=step.get('host'), detail=step.get('detail')):
                time.sleep(float(step.get('seconds', 0)))
                if step.get('fail'):
                    clock.require(step['phase'], needed_seconds=clock.budget.seconds * 2)
        except Exception as exc:
            failure = failure or exc

    result = dict(phases=clock.phases, deploy_id=module.params['deploy_id'])
    if clock.started:
        resumes = [p for p in clock.phases if p['phase'] == 'resume']
        ended = max(p['started_at'] + p['duration_ms'] / 1000.0 for p in resumes) if resumes else None
        result['outage'] = dict(started_at=clock.started_wall, ended_at=ended, budget_ms=clock.budget.seconds * 1000)
    if failure:
        module.fail_json(msg='aborted: %s' % failure, **result)
    module.exit_json(changed=True, **result)


if __name__ == '__main__':
    main()
