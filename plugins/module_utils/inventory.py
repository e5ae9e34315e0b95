# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The inventory contract, checked before any play touches a host.

Pure logic (no Ansible objects): ``inventory_problems(groups, hostvars)`` takes
the ``groups`` magic variable (group name -> host names) and a mapping of host
name -> that host's variables, and returns one line per problem, each naming
the group or variable and the fix. Every playbook runs it first (through the
filter ``fastdowntime.postgresql.inventory_problems``); so do the roles that
read the groups.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

PRIMARY = 'fastdowntime_primary'
STANDBYS = 'fastdowntime_standbys'
PGBOUNCERS = 'fastdowntime_pgbouncers'
APPSERVERS = 'fastdowntime_appservers'
GROUPS = (PRIMARY, STANDBYS, PGBOUNCERS, APPSERVERS)

# Variables every deploy needs, read on the primary (usually set in group_vars/all).
DEPLOY_VARS = ('fastdowntime_db_name', 'fastdowntime_patch_dir')
# Variables that must be numbers (seconds), read on the primary when set; a word
# there would otherwise fail a module with Ansible's internal words (type names).
NUMERIC_VARS = ('fastdowntime_budget_seconds', 'fastdowntime_reserve_seconds', 'fastdowntime_max_lag_seconds',
                'fastdowntime_max_transaction_seconds', 'fastdowntime_pgbouncer_drain_timeout_seconds',
                'fastdowntime_watchdog_grace_seconds', 'fastdowntime_restart_budget_seconds',
                'fastdowntime_app_health_timeout_seconds', 'fastdowntime_app_health_interval_seconds')
# Per-host credentials: group -> the variable prefix of the inventory contract.
CREDENTIALS = ((PRIMARY, 'fastdowntime_pg_'), (STANDBYS, 'fastdowntime_pg_'), (PGBOUNCERS, 'fastdowntime_pgbouncer_'))


def _unset(value):
    return value is None or (isinstance(value, str) and not value.strip())


def not_a_number(name, value):
    """The problem line when ``value`` (of variable ``name``) is set but no number, else None."""
    if _unset(value):
        return None
    try:
        if isinstance(value, bool):
            raise ValueError(value)
        float(str(value))
    except ValueError:
        return '%s is %r, not a number of seconds: give it as a number, e.g. 60' % (name, str(value))
    return None


def inventory_problems(groups, hostvars):
    """One line per problem of the inventory, [] when it can run a deploy.

    ``groups``: {group: [host, ...]}; ``hostvars``: {host: {variable: value}}
    (only the fastdowntime_* variables are read, with ``.get``).
    """
    groups = groups or {}
    problems = []
    primary = groups.get(PRIMARY)
    if primary is None:
        problems.append('the inventory has no group %s: add it with the one primary database host' % PRIMARY)
    elif len(primary) != 1:
        problems.append('the group %s must hold exactly one host, it holds %d%s: keep the one primary there' % (
            PRIMARY, len(primary), ' (%s)' % ', '.join(primary) if primary else ''))
    for group in GROUPS[1:]:
        members = groups.get(group) or []
        if primary and set(members) & set(primary):
            problems.append('%s is in both %s and %s: a host has one role, fix the inventory'
                            % (', '.join(sorted(set(members) & set(primary))), PRIMARY, group))
    seen = set()
    for group, prefix in CREDENTIALS:
        for host in groups.get(group) or []:
            if (host, prefix) in seen:
                continue
            seen.add((host, prefix))
            if _unset((hostvars.get(host) or {}).get(prefix + 'user')):
                problems.append('%s (group %s): %suser is not set: set the %s* variables for the hosts of %s'
                                % (host, group, prefix, prefix, group))
    if primary and len(primary) == 1:
        variables = hostvars.get(primary[0]) or {}
        for name in DEPLOY_VARS:
            if _unset(variables.get(name)):
                problems.append('%s is not set: set it in the inventory (group_vars/all) or with -e' % name)
        problems.extend(line for line in (not_a_number(name, variables.get(name)) for name in NUMERIC_VARS) if line)
    return problems
