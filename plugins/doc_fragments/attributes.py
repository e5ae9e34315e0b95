# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    # check_mode and diff_mode, described once with the support every module of the collection has (full check
    # mode, no diff mode); a module adds its check mode details in its own attributes.
    DOCUMENTATION = r'''
options: {}
attributes:
  check_mode:
    description: Can run in check mode and return the changed status it predicts without changing anything.
    support: full
  diff_mode:
    description: Will return details on what has changed (or would change in check mode), in diff mode.
    support: none
'''

    # Modules in the action group fastdowntime.postgresql.schema (meta/runtime.yml).
    SCHEMA_GROUP = r'''
options: {}
attributes:
  action_group:
    description: Use C(group/fastdowntime.postgresql.schema) in C(module_defaults) to set the options these modules share once.
    support: full
    membership:
      - fastdowntime.postgresql.schema
'''

    # Modules in the action group fastdowntime.postgresql.pgbouncer (meta/runtime.yml).
    PGBOUNCER_GROUP = r'''
options: {}
attributes:
  action_group:
    description: Use C(group/fastdowntime.postgresql.pgbouncer) in C(module_defaults) to set the options these modules share once.
    support: full
    membership:
      - fastdowntime.postgresql.pgbouncer
'''
