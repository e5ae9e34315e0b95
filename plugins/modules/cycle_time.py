#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: cycle_time
short_description: The cycle-time report - outages, client waits and lead time from landing to live, from the deploy log
description:
  - Launchpad measured FastDowntime by cycle time - a schema change live within 24 hours of landing, with a short
    outage. This module reads the deploy log (C(fastdowntime.deploy_log) on the primary) and, when O(repo) is
    given, the git history of the patch directory, and writes the report in O(output_dir).
  - Per deploy - start, outcome, the outage (drain start to last resume), the longest client wait pgbouncer reported
    at resume, the estimate, the patches and any operator override.
  - Per patch - when it landed (the first-parent commit of O(branch) that added it - the merge into the branch),
    when it went live (the end of the first deploy with outcome C(done) that applied it - every database had it,
    the standbys' replay confirmed inside the outage) and the lead time between, against O(target_hours).
  - Per ISO week - deploys done and not done, patches made live, the median outage.
  - Files - C(cycle-time.json), C(deploys.csv), C(patches.csv), C(weeks.csv) and C(cycle-time.html), a
    self-contained page with plots (inline SVG, no script, nothing fetched), readable offline.
  - No deploy log yet, a bad repository, branch or patch directory end in one line, never a traceback.
version_added: 0.1.0
author: fastdowntime.postgresql contributors (@fastdowntime)
extends_documentation_fragment:
  - fastdowntime.postgresql.attributes
  - fastdowntime.postgresql.connection
  - fastdowntime.postgresql.connection.primary
attributes:
  check_mode:
    details: In check mode the report is built and returned but no file is written.
options:
  db_name:
    description: The deploy's database.
    type: str
    required: true
  repo:
    description: The application repository (a git work tree) on the host that runs the module, for landing times.
    type: path
  patch_dir:
    description: The patch directory, relative to O(repo) (an absolute path inside it works). Required with O(repo).
    type: str
  branch:
    description: The branch the patches land on.
    type: str
    default: HEAD
  since_days:
    description: Only deploys of the last N days (C(0) - all).
    type: int
    default: 0
  target_hours:
    description: The lead-time target, landing to live.
    type: float
    default: 24
  output_dir:
    description: Where the files are written (created), on the host that runs the module.
    type: path
    required: true
requirements:
  - psycopg2 on the host that runs the module; git when O(repo) is given
seealso:
  - module: fastdowntime.postgresql.outage
'''

EXAMPLES = r'''
- name: Cycle time of the last 90 days
  fastdowntime.postgresql.cycle_time:
    primary: "{{ (groups['fastdowntime_primary'] | fastdowntime.postgresql.endpoints(hostvars))[0] }}"
    db_name: launchpad_prod
    repo: /srv/launchpad/checkout
    patch_dir: database/schema
    branch: origin/db-stable
    since_days: 90
    output_dir: /srv/reports/cycle-time
  delegate_to: localhost
  run_once: true
'''

RETURN = r'''
summary:
  description:
    - C(deploys), C(done), C(not_done), C(median_outage_ms), C(max_outage_ms), C(max_client_wait_ms),
      C(patches_live), C(patches_with_lead_time), C(median_lead_time_hours), C(within_target), C(target_hours),
      C(deploys_per_week), C(overrides).
  type: dict
  returned: always
deploys:
  description: Per deploy - C(deploy_id), C(started_at), C(outcome), C(outage_ms), C(max_client_wait_ms),
    C(estimate_ms), C(patches), C(overrides).
  type: list
  elements: dict
  returned: always
patches:
  description: Per patch - C(file), C(landed_at), C(landed_commit), C(live_at), C(deploy_id), C(lead_time_hours),
    C(within_target).
  type: list
  elements: dict
  returned: always
weeks:
  description: Per ISO week - C(week), C(deploys), C(aborted), C(patches_live), C(median_outage_ms),
    C(max_client_wait_ms).
  type: list
  elements: dict
  returned: always
outputs:
  description: The files written - C(json), C(deploys_csv), C(patches_csv), C(weeks_csv), C(html) (empty in check mode).
  type: dict
  returned: always
'''

import datetime

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fastdowntime.postgresql.plugins.module_utils.changerule import ChangeRuleError
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.cycletime import (
    CycleTimeError, build, landing_times, read_deploy_log, write_outputs)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import (
    ConnectError, connect, endpoint_argument_spec, endpoint_label, one_line, psycopg2)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            primary=endpoint_argument_spec(),
            db_name=dict(type='str', required=True),
            repo=dict(type='path'),
            patch_dir=dict(type='str'),
            branch=dict(type='str', default='HEAD'),
            since_days=dict(type='int', default=0),
            target_hours=dict(type='float', default=24),
            output_dir=dict(type='path', required=True),
        ),
        required_by={'repo': 'patch_dir'},
        supports_check_mode=True,
    )
    p = module.params
    endpoint = dict(p['primary'], dbname=p['db_name'])
    since = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=p['since_days']) \
        if p['since_days'] > 0 else None
    try:
        landings = landing_times(p['repo'], p['patch_dir'], p['branch']) if p['repo'] else None
        conn = connect(endpoint, autocommit=True, application_name='fastdowntime-cycle-time')
        try:
            rows = read_deploy_log(conn, since)
        except psycopg2.Error as exc:
            raise CycleTimeError('%s: cannot read fastdowntime.deploy_log: %s' % (endpoint_label(endpoint),
                                                                                  one_line(exc.pgerror or exc)))
        finally:
            conn.close()
        report = build(rows, landings, target_hours=p['target_hours'], source={
            'deploy_log': 'fastdowntime.deploy_log on %s' % endpoint_label(endpoint),
            'git': '%s (%s, %s)' % (p['repo'], p['patch_dir'], p['branch']) if p['repo'] else None})
        outputs = {} if module.check_mode else write_outputs(report, p['output_dir'])
    except (ChangeRuleError, CycleTimeError, ConnectError) as exc:
        module.fail_json(msg='cycle time: %s' % one_line(exc))
    module.exit_json(changed=bool(outputs), outputs=outputs, summary=report['summary'], deploys=report['deploys'],
                     patches=report['patches'], weeks=report['weeks'])


if __name__ == '__main__':
    main()
