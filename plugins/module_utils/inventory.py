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

import difflib
import math

from ansible_collections.fastdowntime.postgresql.plugins.module_utils.topology import CONSOLES_VAR, consoles_problem

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
# Of NUMERIC_VARS, those that must be above zero; the others may be zero, never below.
POSITIVE_VARS = ('fastdowntime_budget_seconds', 'fastdowntime_max_lag_seconds',
                 'fastdowntime_pgbouncer_drain_timeout_seconds', 'fastdowntime_restart_budget_seconds',
                 'fastdowntime_app_health_timeout_seconds', 'fastdowntime_app_health_interval_seconds')
# Per-host credentials: group -> the variable prefix of the inventory contract.
CREDENTIALS = ((PRIMARY, 'fastdowntime_pg_'), (STANDBYS, 'fastdowntime_pg_'), (PGBOUNCERS, 'fastdowntime_pgbouncer_'))
# Every variable inventory_problems reads (the filter hands it these from Ansible's hostvars).
CHECKED_VARS = tuple(prefix + 'user' for dummy, prefix in CREDENTIALS) + DEPLOY_VARS + NUMERIC_VARS + (CONSOLES_VAR,)


def _unset(value):
    return value is None or (isinstance(value, str) and not value.strip())


def not_a_number(name, value):
    """The problem line when ``value`` (of variable ``name``) is set but no
    number of seconds - a word, not finite, below zero, or zero for one of
    POSITIVE_VARS - else None."""
    if _unset(value):
        return None
    try:
        if isinstance(value, bool):
            raise ValueError(value)
        seconds = float(str(value))
    except ValueError:
        return '%s is %r, not a number of seconds: give it as a number, e.g. 60' % (name, str(value))
    if not math.isfinite(seconds):
        return '%s is %r, not a number of seconds: give it as a number, e.g. 60' % (name, str(value))
    if name in POSITIVE_VARS and seconds <= 0:
        return '%s is %s: it must be above zero seconds: give it as a positive number, e.g. 10' % (name, value)
    if seconds < 0:
        return '%s is %s: it must not be below zero seconds: give it as 0 or more' % (name, value)
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
            if group == PGBOUNCERS:
                problems.extend(line for line in [consoles_problem(
                    host, (hostvars.get(host) or {}).get(CONSOLES_VAR))] if line)
    if primary and len(primary) == 1:
        variables = hostvars.get(primary[0]) or {}
        for name in DEPLOY_VARS:
            if _unset(variables.get(name)):
                problems.append('%s is not set: set it in the inventory (group_vars/all) or with -e' % name)
        problems.extend(line for line in (not_a_number(name, variables.get(name)) for name in NUMERIC_VARS) if line)
    return problems


# -- variable names: a misspelled one silently gets its default ---------------
COLLECTION = 'fastdowntime.postgresql'
# Every variable of the collection is named so; role options named after their
# role (schema_apply_phase) add that role's prefix (known_variables()).
PREFIX = 'fastdowntime_'
# fail (default): an unknown variable in the collection's namespaces refuses the
# run before anything changes; warn: one warning, and the run goes on.
UNKNOWN_VARIABLES_VAR = 'fastdowntime_unknown_variables'
UNKNOWN_VARIABLES_MODES = ('fail', 'warn')
# Results the collection's roles and playbooks register or set as facts (they
# are host variables too, once set): never "unknown". Checked against the
# roles' and playbooks' register:/set_fact: by tests/unit (test_inventory.py).
FACTS = ('fastdowntime_app_restart_phases', 'fastdowntime_cycle_time', 'fastdowntime_hot_changed_before_window',
         'fastdowntime_lint_result', 'fastdowntime_phases', 'fastdowntime_preflight_passed',
         'fastdowntime_preflight_result', 'schema_apply_result')
# Hosts named in a line before "and N more".
HOSTS_NAMED = 3


def known_variables(argument_specs):
    """The variables the collection knows and the prefixes it owns.

    ``argument_specs``: {role name: the ``argument_specs`` mapping of that role's
    meta/argument_specs.yml} (entry point -> {'options': {name: spec}}). Every
    option of every entry point is known, its ``aliases`` too (a renamed
    variable's old name), and FACTS. Returns (frozenset of names, tuple of
    prefixes): PREFIX, and ``<role>_`` for a role whose options are named so.
    """
    names = set(FACTS)
    prefixes = [PREFIX]
    for role, entry_points in sorted((argument_specs or {}).items()):
        for entry in (entry_points or {}).values():
            for name, spec in ((entry or {}).get('options') or {}).items():
                names.add(name)
                names.update((spec or {}).get('aliases') or [])
                if name.startswith(role + '_') and role + '_' not in prefixes:
                    prefixes.append(role + '_')
    return frozenset(names), tuple(prefixes)


def _closest(name, known, prefixes):
    """The known name closest to ``name``, or None: compared without the prefix they
    share (fastdowntime_lab_dir is not close to fastdowntime_patch_dir)."""
    prefix = max((p for p in prefixes if name.startswith(p)), key=len, default='')
    by_rest = dict((k[len(prefix):], k) for k in known if k.startswith(prefix))
    close = difflib.get_close_matches(name[len(prefix):], sorted(by_rest), n=1, cutoff=0.75)
    return by_rest[close[0]] if close else None


def origin_text(path=None, line=None, description=None, cwd=None):
    """Where a value was set, for a line: 'inventories/prod/hosts.yml line 4'
    (relative to ``cwd`` when under it), '-e', or None when nothing is known."""
    if path:
        if cwd and path.startswith(cwd.rstrip('/') + '/'):
            path = path[len(cwd.rstrip('/')) + 1:]
        return '%s line %d' % (path, line) if line else path
    if description:
        return '-e' if "'-e'" in description else description.strip('<>')
    return None


def unknown_variables(names_by_host, known, prefixes, origins=None):
    """One line per variable named in the collection's namespaces that it does not know.

    ``names_by_host``: {host: iterable of its variable names} (inventory, group_vars,
    extra vars - every host of the inventory); ``known``/``prefixes`` from
    known_variables(); ``origins``: {name: [where it was set (origin_text), ...]},
    when Ansible tells (ansible-core 2.19 on).
    Each line names the variable, the hosts it is set for ("every host" when all
    of them), where (the file and line, or -e; without origins, for every host:
    "group_vars/all or -e"), the closest known name (difflib) and the fix.
    """
    hosts_of = {}
    for host, names in (names_by_host or {}).items():
        for name in names:
            if name.startswith(tuple(prefixes)) and name not in known:
                hosts_of.setdefault(name, []).append(host)
    lines = []
    everywhere = len(names_by_host or {})
    for name in sorted(hosts_of):
        hosts = hosts_of[name]
        sources = [o for o in (origins or {}).get(name) or [] if o]
        if len(hosts) == everywhere and everywhere > 1:
            where = 'set for every host' + ('' if sources else ': group_vars/all or -e')
        else:
            where = 'set for %s' % ', '.join(hosts[:HOSTS_NAMED])
            if len(hosts) > HOSTS_NAMED:
                where += ' and %d more' % (len(hosts) - HOSTS_NAMED)
        if sources:
            where += ', from %s' % ', '.join(sources[:HOSTS_NAMED - 1])
            if len(sources) > HOSTS_NAMED - 1:
                where += ' and %d more' % (len(sources) - HOSTS_NAMED + 1)
        close = _closest(name, known, prefixes)
        fix = 'did you mean %s?' % close if close else 'rename or remove it (README "The public contract")'
        lines.append('%s (%s) is not a variable of %s: %s' % (name, where, COLLECTION, fix))
    return lines
