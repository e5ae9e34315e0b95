# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The inventory's variables the collection does not know (a misspelled name silently gets its default)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: unknown_variables
short_description: The variables of an inventory named like the collection's that it does not know
description:
  - Looks at every host of the inventory (inventory, C(group_vars), C(host_vars), extra variables) for variables
    named C(fastdowntime_*) (or C(schema_apply_*), the options of the role C(schema_apply)) that no role of the
    collection declares in its C(meta/argument_specs.yml) (an option, or its old name while it is deprecated).
  - Returns one line per such variable naming the hosts it is set for, where (the file and line, or C(-e); from
    ansible-core 2.19 on) and the closest known name - a
    misspelled C(fastdowntime_pg_pasword) would otherwise leave the password unset, far from its cause.
  - Every playbook of the collection runs it before its first play (role C(preflight), entry point
    C(inventory)); C(fastdowntime_unknown_variables) decides whether such a line refuses the run (C(fail), the
    default) or only warns (C(warn)).
extends_documentation_fragment:
  - fastdowntime.postgresql.inventory_filter
'''

EXAMPLES = r'''
- name: Show the variables the collection does not know (misspellings), one line each
  ansible.builtin.debug:
    msg: "{{ groups | fastdowntime.postgresql.unknown_variables(hostvars) }}"
  run_once: true
'''

RETURN = r'''
_value:
  description: One line per unknown variable, empty when there is none.
  type: list
  elements: str
  sample:
    - "fastdowntime_pg_pasword (set for primary, from inventories/prod/host_vars/primary.yml line 3) is not a variable
      of fastdowntime.postgresql: did you mean fastdowntime_pg_password?"
'''

import glob
import os

import yaml

from ansible_collections.fastdowntime.postgresql.plugins.module_utils.inventory import (
    known_variables, origin_text, unknown_variables as _unknown)

# The collection's root: plugins/filter/ -> ../..
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def argument_specs(root=ROOT):
    """{role: its meta/argument_specs.yml's argument_specs mapping}, for every role of the collection."""
    specs = {}
    for path in sorted(glob.glob(os.path.join(root, 'roles', '*', 'meta', 'argument_specs.yml'))):
        with open(path) as f:
            specs[path.split(os.sep)[-3]] = (yaml.safe_load(f) or {}).get('argument_specs') or {}
    return specs


try:  # ansible-core 2.19 on: where each value was read (file and line, or -e)
    from ansible._internal._datatag._tags import Origin
except ImportError:  # older: the lines name the hosts only
    Origin = None


def _origin(value):
    tag = Origin.get_tag(value) if Origin is not None else None
    if tag is None:
        return None
    return origin_text(tag.path, tag.line_num, tag.description, cwd=os.getcwd())


def unknown_variables(groups, hostvars):
    known, prefixes = known_variables(argument_specs())
    names, origins = {}, {}
    for host in (groups or {}).get('all') or []:
        try:
            # Not templated: only names, and where each value came from.
            variables = hostvars.raw_get(host) if hasattr(hostvars, 'raw_get') else hostvars[host]
        except KeyError:
            continue
        names[host] = [name for name in variables if name.startswith(prefixes)]
        for name in names[host]:
            if name not in known:
                where = _origin(variables[name])
                if where and where not in origins.setdefault(name, []):
                    origins[name].append(where)
    return _unknown(names, known, prefixes, origins)


class FilterModule(object):
    def filters(self):
        return {'unknown_variables': unknown_variables}
