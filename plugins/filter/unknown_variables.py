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
  - Returns one line per such variable naming the hosts it is set for and the closest known name - a
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
    - "fastdowntime_pg_pasword (set for primary) is not a variable of fastdowntime.postgresql: did you mean
      fastdowntime_pg_password?"
'''

import glob
import os

import yaml

from ansible_collections.fastdowntime.postgresql.plugins.module_utils.inventory import (
    known_variables, unknown_variables as _unknown)

# The collection's root: plugins/filter/ -> ../..
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def argument_specs(root=ROOT):
    """{role: its meta/argument_specs.yml's argument_specs mapping}, for every role of the collection."""
    specs = {}
    for path in sorted(glob.glob(os.path.join(root, 'roles', '*', 'meta', 'argument_specs.yml'))):
        with open(path) as f:
            specs[path.split(os.sep)[-3]] = (yaml.safe_load(f) or {}).get('argument_specs') or {}
    return specs


def unknown_variables(groups, hostvars):
    known, prefixes = known_variables(argument_specs())
    names = {}
    for host in (groups or {}).get('all') or []:
        try:
            names[host] = [name for name in hostvars[host] if name.startswith(prefixes)]
        except KeyError:
            continue
    return _unknown(names, known, prefixes)


class FilterModule(object):
    def filters(self):
        return {'unknown_variables': unknown_variables}
