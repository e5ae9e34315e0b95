# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The inventory contract's problems, for the check every playbook runs first."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: inventory_problems
short_description: What is wrong with an inventory for a fastdowntime deploy
description:
  - Checks the groups C(fastdowntime_primary) (exactly one host), C(fastdowntime_standbys),
    C(fastdowntime_pgbouncers) and C(fastdowntime_appservers), the credentials of each database host
    (C(fastdowntime_pg_user)) and pgbouncer host (C(fastdowntime_pgbouncer_user)), and the deploy's
    C(fastdowntime_db_name) and C(fastdowntime_patch_dir).
  - Returns one line per problem naming the group or variable and the fix; an empty list when the
    inventory can run a deploy. Every playbook of the collection runs it before its first play.
extends_documentation_fragment:
  - fastdowntime.postgresql.inventory_filter
'''

EXAMPLES = r'''
- name: Check the inventory
  ansible.builtin.assert:
    that: __problems | length == 0
    fail_msg: "{{ __problems | join('; ') }}"
    quiet: true
  vars:
    __problems: "{{ groups | fastdowntime.postgresql.inventory_problems(hostvars) }}"
'''

RETURN = r'''
_value:
  description: One line per problem, empty when there is none.
  type: list
  elements: str
'''

from ansible_collections.fastdowntime.postgresql.plugins.module_utils.inventory import (
    CHECKED_VARS, inventory_problems as _problems)


class _Vars(object):
    """The few variables the check reads, from Ansible's lazy hostvars."""

    def __init__(self, hostvars):
        self.hostvars = hostvars

    def get(self, host, default=None):
        try:
            variables = self.hostvars[host]
        except KeyError:
            return default
        return dict((name, variables.get(name)) for name in CHECKED_VARS)


def inventory_problems(groups, hostvars):
    return _problems(dict(groups or {}), _Vars(hostvars))


class FilterModule(object):
    def filters(self):
        return {'inventory_problems': inventory_problems}
