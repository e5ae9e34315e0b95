#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: pgbouncer_watchdog
short_description: Dead-man switch that resumes a paused pgbouncer if the deploy dies
description:
  - Runs B(on the pgbouncer host) with its system python3 and python3-psycopg2.
  - C(state=armed) starts a small daemon (double fork, new session, no terminal, standard streams
    on /dev/null, so the SSH session does not wait for it) that polls the local admin console
    (SHOW DATABASES, every O(poll_seconds)).
  - Once it sees the deploy's entries paused, it counts down O(budget_seconds) + O(grace_seconds),
    or less when that pgbouncer process's C(query_wait_timeout) or C(query_timeout) (SHOW CONFIG when
    armed) would disconnect the queued clients first - half a second before that timeout, still after
    the outage's own budget (capped a second before it). If they are still paused at the end, it sends RESUME for them itself and exits. If it sees them
    resumed first (the normal end of the outage) it exits. Armed and never seeing a pause, it exits
    after O(max_lifetime_seconds).
  - It survives the death of the controller (SIGKILL of ansible-playbook, a dropped SSH connection).
  - C(state=disarmed) stops the daemon through its pidfile and removes the pidfile (the switch of the
    O(entries) given, else of O(db_name), else every switch of that pgbouncer process).
    Nothing is left behind once it is disarmed or has exited (pidfile, process).
  - Each pgbouncer process has one switch per O(entries) (else O(db_name)) watched, so the deploys of
    two databases of one cluster, at the same time, each keep their own.
  - Every decision is logged to syslog (ident C(fastdowntime-watchdog), facility daemon) and to O(log_file).
version_added: 0.1.0
author: fastdowntime.postgresql contributors (@fastdowntime)
extends_documentation_fragment:
  - fastdowntime.postgresql.attributes
  - fastdowntime.postgresql.connection
  - fastdowntime.postgresql.attributes.pgbouncer_group
  - fastdowntime.postgresql.connection.console
  - fastdowntime.postgresql.deploy.entries
  - fastdowntime.postgresql.deploy.budget
options:
  state:
    description: Arm (start) or disarm (stop) the watchdog.
    type: str
    choices: [armed, disarmed]
    default: armed
  budget_seconds:
    description: The deploy's outage budget; the countdown is this plus O(grace_seconds).
  grace_seconds:
    description: Extra time after the budget before the watchdog resumes by itself.
    type: float
    default: 10
  max_lifetime_seconds:
    description: An armed watchdog that never sees a pause exits after this long.
    type: float
    default: 3600
  poll_seconds:
    description: How often the daemon looks at SHOW DATABASES.
    type: float
    default: 0.2
  state_dir:
    description:
      - Directory of the pidfile C(fastdowntime-pgbouncer-watchdog-<port>.<db_name or entries>.pid)
        (C(-<port>-<unix socket dir>.<db_name or entries>.pid) for one of several processes sharing a port);
        created when missing.
    type: path
    default: /run/fastdowntime
  log_file:
    description: The watchdog's log file (also logged to syslog); its directory is created when missing.
    type: path
    default: /var/log/fastdowntime/watchdog.log
notes:
  - An armed watchdog with the same settings is left alone (not changed); with other settings it is
    replaced.
  - The pidfile records the daemon's pid and process start time, so a recycled pid is never signalled.
seealso:
  - module: fastdowntime.postgresql.pgbouncer
  - name: The pgbouncer_drain role
    description: Arms this watchdog on every pgbouncer host before the outage and disarms it after.
    link: https://example.invalid/fastdowntime/postgresql/roles/pgbouncer_drain
'''

EXAMPLES = r'''
- name: Arm the dead-man switch before the outage
  fastdowntime.postgresql.pgbouncer_watchdog:
    console:
      host: 127.0.0.1
      port: 6432
      user: fdt_admin
      password: "{{ vault_pgbouncer_admin_password }}"
    db_name: appdb
    budget_seconds: 30
    grace_seconds: 10

- name: Disarm it once the deploy resumed every pgbouncer
  fastdowntime.postgresql.pgbouncer_watchdog:
    console:
      host: 127.0.0.1
      port: 6432
      user: fdt_admin
    state: disarmed
'''

RETURN = r'''
pid:
  description: Pid of the running daemon (armed), or of the daemon stopped (disarmed), if any.
  returned: always
  type: int
  sample: 12345
pid_file:
  description: The pidfile path.
  returned: always
  type: str
  sample: /run/fastdowntime/fastdowntime-pgbouncer-watchdog-6432.appdb.pid
log_file:
  description: Where the daemon logs.
  returned: always
  type: str
entries:
  description: The pgbouncer entries watched (armed only).
  returned: when armed
  type: list
  elements: str
  sample: [appdb, appdb_ro]
countdown_seconds:
  description:
    - Budget plus grace, counted from the moment the entries are seen paused.
    - Less when this pgbouncer process's C(query_wait_timeout) or C(query_timeout) (read when armed) would
      disconnect the queued clients first - half a second before that timeout.
  returned: when armed
  type: float
  sample: 40.0
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import watchdog, watchdog_daemon
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.pgbouncer_console import (
    Console,
    ConsoleError,
    budget_cap,
    open_consoles,
)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import endpoint_argument_spec
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.specs import BUDGET_SPEC, ENTRIES_SPEC


def argument_spec():
    return dict(
        console=endpoint_argument_spec(console=True),
        state=dict(type='str', choices=['armed', 'disarmed'], default='armed'),
        budget_seconds=BUDGET_SPEC['budget_seconds'],
        grace_seconds=dict(type='float', default=watchdog.DEFAULT_GRACE_SECONDS),
        max_lifetime_seconds=dict(type='float', default=watchdog.DEFAULT_MAX_LIFETIME_SECONDS),
        poll_seconds=dict(type='float', default=watchdog.DEFAULT_POLL_SECONDS),
        state_dir=dict(type='path', default='/run/fastdowntime'),
        log_file=dict(type='path', default='/var/log/fastdowntime/watchdog.log'),
        **ENTRIES_SPEC
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    endpoint = params['console']
    # What the switch watches names its pidfile: the deploys of two databases keep one each.
    watched = params['entries'] or ([params['db_name']] if params['db_name'] else [])
    pid_path = watchdog_daemon.pidfile_path(params['state_dir'], endpoint, watched)
    result = dict(changed=False, pid=None, pid_file=pid_path, log_file=params['log_file'])
    record, alive = watchdog_daemon.current(pid_path)

    if params['state'] == 'disarmed':
        # Neither entries nor db_name: every switch of this pgbouncer process.
        paths = [pid_path] if watched else watchdog_daemon.pidfile_paths(params['state_dir'], endpoint)
        for path in paths:
            found = watchdog_daemon.current(path)[0]
            if found is not None:
                result.update(changed=True, pid=found.get('pid'), pid_file=path)
                if not module.check_mode:
                    watchdog_daemon.disarm(path)
        module.exit_json(**result)

    for name, value in (('budget_seconds', params['budget_seconds']), ('poll_seconds', params['poll_seconds'])):
        if value <= 0:
            module.fail_json(msg='%s must be positive, got %s' % (name, value), **result)
    console = Console(endpoint, db_name=params['db_name'], databases=params['entries'])
    try:
        open_consoles([console])
    except ConsoleError as exc:
        module.fail_json(msg='cannot arm the watchdog: %s' % exc, **result)
    entries = list(console.entries)
    # This process's first queued-client timeout (query_wait_timeout, query_timeout): the countdown ends before it.
    cap = budget_cap({console.label: console.config}, margin=0)
    console.close()
    config = dict(entries=entries, budget_seconds=params['budget_seconds'], grace_seconds=params['grace_seconds'],
                  max_lifetime_seconds=params['max_lifetime_seconds'], poll_seconds=params['poll_seconds'],
                  console='%s@%s:%s' % (endpoint['user'], endpoint['host'], endpoint['port']),
                  queue_timeout_seconds=cap['timeout_seconds'] if cap else None)
    countdown = watchdog.countdown_seconds(params['budget_seconds'], params['grace_seconds'],
                                           config['queue_timeout_seconds'])
    result.update(entries=entries, countdown_seconds=countdown)
    if alive and record.get('config') == config:
        result['pid'] = record['pid']
        module.exit_json(**result)
    result['changed'] = True
    if module.check_mode:
        module.exit_json(**result)
    try:
        result['pid'] = watchdog_daemon.arm(endpoint, config, pid_path, params['log_file'], console.label)
    except OSError as exc:
        module.fail_json(msg='%s: cannot create the watchdog directories: %s' % (console.label, exc), **result)
    if not result['pid']:
        module.fail_json(msg='%s: the watchdog daemon did not start (see %s and syslog)'
                         % (console.label, params['log_file']), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
