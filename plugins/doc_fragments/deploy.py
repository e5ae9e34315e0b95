# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The deploy options shared by the outage and preflight modules (plugins/module_utils/postgres.py
    # deploy_argument_spec()); their endpoints come from fastdowntime.postgresql.connection.primary/standbys/pgbouncers.
    DOCUMENTATION = r'''
options:
  db_name:
    description: The deploy's database. The pgbouncer entries of the deploy are those whose target database is this one.
    type: str
    required: true
  pgbouncer_databases:
    description: Entry names to drain explicitly instead of those found from O(db_name).
    type: list
    elements: str
    default: []
  patch_dir:
    description: The patch directory (C(patch-MMMM-mm-p.sql) files) on the host that runs the module.
    type: path
    required: true
  revision_table:
    description:
      - C(fastdowntime.schema_revision) (the collection's own table, created before the first outage) or
        C(launchpaddatabaserevision) (Launchpad's table; each patch inserts its own row).
    type: str
    default: fastdowntime.schema_revision
  budget_seconds:
    description: The longest outage allowed, from the start of the drain to the last RESUME.
    type: float
    default: 60
  reserve_seconds:
    description: Part of the budget kept back for ROLLBACK and RESUME (at most a fifth of the budget).
    type: float
    default: 0.5
  killable_users:
    description: Users whose direct connections to the primary (not through a pgbouncer) are terminated as the outage starts.
    type: list
    elements: str
    default: []
'''
