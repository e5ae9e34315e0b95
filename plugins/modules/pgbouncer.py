#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: pgbouncer
short_description: Pause, resume, disable, enable, kill, reconnect or inspect pgbouncer databases
description:
  - Talks to a pgbouncer admin console (database C(pgbouncer)) with psycopg2, autocommit and the simple
    query protocol only.
  - C(pause) issues PAUSE for the selected entries and waits for the replies - pgbouncer answers a PAUSE
    only once no server connection of a paused entry is in use (janitor.c); an entry someone else paused
    before is confirmed from SHOW DATABASES and SHOW SERVERS instead. If the drain is not
    done within O(timeout_seconds), the waiting PAUSE connections are closed (pgbouncer issue 715),
    every entry this task paused is resumed, and the task fails naming each client still holding a server
    connection (and, given O(primary), its backend's query, user and transaction age).
  - C(resume) reads the longest client wait (SHOW POOLS C(maxwait)/C(maxwait_us)) first, then sends RESUME
    for paused entries and ENABLE for disabled ones, and verifies they are neither any more.
  - C(info) returns SHOW VERSION, DATABASES, POOLS, CLIENTS, SERVERS (and SHOW STATE where the version
    has it, 1.19 and later) parsed into lists of dicts.
  - pgbouncer 1.18 shows a global PAUSE nowhere; this module only ever pauses named entries, whose state
    SHOW DATABASES shows.
version_added: 0.1.0
author: fastdowntime.postgresql contributors (@fastdowntime)
extends_documentation_fragment:
  - fastdowntime.postgresql.attributes
  - fastdowntime.postgresql.connection
  - fastdowntime.postgresql.attributes.pgbouncer_group
  - fastdowntime.postgresql.connection.console
  - fastdowntime.postgresql.connection.primary
  - fastdowntime.postgresql.deploy.entries
options:
  action:
    description:
      - What to do with the selected entries.
      - C(kill) drops their client and server connections; pgbouncer leaves a killed entry paused, so
        follow it with C(resume).
    type: str
    choices: [pause, resume, disable, enable, kill, reconnect, info]
    default: info
  timeout_seconds:
    description: Deadline for C(pause) to be confirmed drained.
    type: float
    default: 30
  primary:
    description:
      - Optional endpoint of the primary PostgreSQL server. When a pause misses its deadline, the clients
        holding server connections are matched to its C(pg_stat_activity) to name their query, user and
        transaction age.
    required: false
'''

EXAMPLES = r'''
- name: Pause the deploy's entries, at most 5 seconds
  fastdowntime.postgresql.pgbouncer:
    console:
      host: "{{ fastdowntime_pgbouncer_host }}"
      port: 6432
      user: fdt_admin
      password: "{{ vault_pgbouncer_admin_password }}"
    action: pause
    db_name: appdb
    timeout_seconds: 5

- name: Resume them and learn how long clients waited
  fastdowntime.postgresql.pgbouncer:
    console: "{{ pgbouncer_console }}"
    action: resume
    db_name: appdb
  register: resumed

- name: Show what pgbouncer sees
  fastdowntime.postgresql.pgbouncer:
    console: "{{ pgbouncer_console }}"
    action: info
  register: pgb

- name: Drop the server connections of one entry after a failover
  fastdowntime.postgresql.pgbouncer:
    console: "{{ pgbouncer_console }}"
    action: reconnect
    entries: [appdb]
'''

RETURN = r'''
entries:
  description: The entries acted on.
  returned: always
  type: list
  elements: str
  sample: [appdb, appdb_ro]
acted_on:
  description: The entries whose state this task changed (or would change, in check mode).
  returned: always
  type: list
  elements: str
duration_ms:
  description: Wall time of the action in milliseconds.
  returned: always
  type: float
  sample: 3.2
maxwait_ms:
  description: Longest client wait pgbouncer reported (SHOW POOLS) just before resuming.
  returned: when action is resume
  type: float
  sample: 412.5
holders:
  description: Clients still holding a server connection when a pause missed its deadline.
  returned: when a pause fails at its deadline
  type: list
  elements: dict
info:
  description: Parsed SHOW output (version, state, entries, databases, pools, clients, servers).
  returned: when action is info
  type: dict
phases:
  description: Timed steps of the action (phase, host, duration_ms, status).
  returned: always
  type: list
  elements: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fastdowntime.postgresql.plugins.module_utils.budget import BudgetClock
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.specs import ENTRIES_SPEC
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.drain import (
    DrainError,
    drain,
)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.pgbouncer_console import (
    Console,
    ConsoleError,
    open_consoles,
)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import (
    ConnectError,
    connect,
    endpoint_argument_spec,
)

ACTIONS = ['pause', 'resume', 'disable', 'enable', 'kill', 'reconnect', 'info']


def would_change(action, console):
    """Entries the action changes: the idempotence decision, shared by check mode."""
    if action in ('pause', 'resume', 'disable', 'enable'):
        flags = console.flags()
        wanted = {'pause': ('paused', False), 'resume': ('paused', True),
                  'disable': ('disabled', False), 'enable': ('disabled', True)}[action]
        targets = [e for e in console.entries if flags[e][wanted[0]] == wanted[1]]
        if action == 'resume':
            targets += [e for e in console.entries if flags[e]['disabled'] and e not in targets]
        return targets
    servers = console.show('SERVERS')
    with_servers = set(row.get('database') for row in servers)
    if action == 'reconnect':
        return [e for e in console.entries if e in with_servers]
    if action == 'kill':
        with_clients = set(row.get('database') for row in console.show('CLIENTS'))
        flags = console.flags()
        return [e for e in console.entries
                if e in with_servers or e in with_clients or not flags[e]['paused']]
    return []


def run_action(module, console, result):
    action = module.params['action']
    if action == 'info':
        result['info'] = console.info()
        return
    targets = would_change(action, console)
    result['acted_on'] = targets
    result['changed'] = bool(targets)
    if module.check_mode:
        return
    if action == 'pause':
        primary_conn = None
        if module.params['primary']:
            try:
                primary_conn = connect(module.params['primary'], autocommit=True)
            except ConnectError:
                primary_conn = None  # naming the query is a nicety, not a reason to fail
        try:
            outcome = drain([console], deadline_seconds=module.params['timeout_seconds'],
                            primary_conn=primary_conn)
        finally:
            if primary_conn is not None:
                primary_conn.close()
        result['drain'] = outcome['consoles'][0]
    elif action == 'resume':
        outcome = console.resume()
        result['maxwait_ms'] = outcome['maxwait_ms']
    else:
        verb = action.upper()
        for entry in targets:
            console.command(verb, entry)


def argument_spec():
    return dict(
        console=endpoint_argument_spec(console=True),
        action=dict(type='str', choices=ACTIONS, default='info'),
        timeout_seconds=dict(type='float', default=30.0),
        primary=endpoint_argument_spec(required=False),
        **ENTRIES_SPEC
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    if params['timeout_seconds'] <= 0:
        module.fail_json(msg='timeout_seconds must be positive, got %s' % params['timeout_seconds'])
    console = Console(params['console'], db_name=params['db_name'], databases=params['entries'])
    # The action is timed as one phase record (budget.phase_record), its budget the timeout.
    clock = BudgetClock(params['timeout_seconds'])
    result = dict(changed=False, entries=[], acted_on=[], phases=clock.phases)
    try:
        with clock.phase(params['action'], host=console.label):
            open_consoles([console])
            result['entries'] = list(console.entries)
            run_action(module, console, result)
    except DrainError as exc:
        result.update(duration_ms=clock.phases[0]['duration_ms'], holders=exc.holders)
        module.fail_json(msg=str(exc), **result)
    except ConsoleError as exc:
        result['duration_ms'] = clock.phases[0]['duration_ms']
        module.fail_json(msg=str(exc), **result)
    finally:
        console.close()
    result['duration_ms'] = clock.phases[0]['duration_ms']
    module.exit_json(**result)


if __name__ == '__main__':
    main()
