# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The argument specs several modules share, each option declared once.

- ``deploy_target_spec()``: the deploy target - ``db_name`` (the deploy's
  database), ``patch_dir`` (the patch files) and ``revision_table`` (where their
  revisions are recorded); documented once in the doc fragment
  ``fastdowntime.postgresql.deploy.target``.
- ``BUDGET_SPEC``: ``budget_seconds`` (default budget.DEFAULT_BUDGET_SECONDS).
- ``deploy_argument_spec()``: what the outage and preflight modules take -
  the endpoints (primary, standbys, pgbouncers), the deploy target, the budget
  and its reserve, the entries to drain, the killable users, the drain policy; documented once in
  the doc fragment ``fastdowntime.postgresql.deploy``.
- ``lint_options_spec(prefix)``: the patch lint's options (``patch_lint`` takes
  them as they are, ``preflight`` with the prefix ``lint_``).
- ``LOCK_RETRY_SPEC``: ``lock_retry`` (schema.LockRetry's options): how the hot
  phase retries a statement that cannot get its locks; ``schema_apply`` applies
  it, ``preflight`` prices the hot statements' waits with it. Documented once in
  ``fastdowntime.postgresql.deploy.lock_retry``.

tests/unit/plugins/doc_fragments/test_doc_fragments.py checks that the doc
fragments document each option with the type, default, choices, required
and aliases given here. Pure: no database, no Ansible.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.fastdowntime.postgresql.plugins.module_utils.budget import (
    DEFAULT_BUDGET_SECONDS, DEFAULT_RESERVE_SECONDS)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import endpoint_argument_spec, renamed
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.schema import LockRetry

DEFAULT_REVISION_TABLE = 'fastdowntime.schema_revision'


DEPLOY_TARGET_SPEC = dict(
    db_name=dict(type='str', required=True),
    patch_dir=dict(type='path', required=True),
    revision_table=dict(type='str', default=DEFAULT_REVISION_TABLE),
)

BUDGET_SPEC = dict(budget_seconds=dict(type='float', default=DEFAULT_BUDGET_SECONDS))

LOCK_RETRY_SPEC = dict(lock_retry=dict(type='dict', default={}, options=LockRetry.argument_spec()))

# The entries to drain: named explicitly, instead of those found from db_name.
DRAIN_ENTRIES_SPEC = dict(drain_entries=renamed(dict(type='list', elements='str', default=[]),
                                                'pgbouncer_databases'))

# The entries a pgbouncer module acts on: named, else those whose target database is db_name, else all.
ENTRIES_SPEC = dict(entries=renamed(dict(type='list', elements='str', default=[]), 'databases'),
                    db_name=dict(type='str'))

# The patch lint's options; the pre-flight takes them prefixed with lint_.
LINT_OPTIONS_SPEC = dict(
    severity=dict(type='dict', default={}),
    ignore_rules=dict(type='list', elements='str', default=[]),
    acknowledge_contract=dict(type='list', elements='str', default=[]),
    scan_mb_per_second=dict(type='float', default=0),
)


def _copy(spec):
    return dict((name, dict(option)) for name, option in spec.items())


def deploy_target_spec(*names):
    """The deploy target options (all of them, or those ``names``)."""
    return dict((name, dict(option)) for name, option in DEPLOY_TARGET_SPEC.items() if not names or name in names)


def lint_options_spec(prefix=''):
    """The lint options, their names prefixed with ``prefix`` (the pre-flight's ``lint_``)."""
    return dict((prefix + name, dict(option)) for name, option in LINT_OPTIONS_SPEC.items())


# The roles' guard against a change no pre-flight of this run checked (preflight_evidence.preflight_missing):
# the outage module (its window) and the schema_apply module (hot patches).
PREFLIGHT_CHECK_SPEC = dict(preflight_check=dict(type='dict', options=dict(
    evidence=dict(type='dict', default={}),
    run_tags=dict(type='list', elements='str', default=[]),
    skip_tags=dict(type='list', elements='str', default=[]))))


def preflight_check_spec():
    """PREFLIGHT_CHECK_SPEC, a copy for one module's argument spec."""
    return _copy(PREFLIGHT_CHECK_SPEC)


# A module that refuses (a finding that is an error) fails its task unless told otherwise.
FAIL_ON_REFUSAL_SPEC = dict(fail_on_refusal=dict(type='bool', default=True))


def deploy_argument_spec(**extra):
    """The cluster and deploy options the outage and preflight modules share
    (documented once in the doc fragment fastdowntime.postgresql.deploy)."""
    spec = dict(
        primary=endpoint_argument_spec(),
        standbys=endpoint_argument_spec(list_of=True),
        pgbouncers=endpoint_argument_spec(list_of=True, console=True),
        reserve_seconds=dict(type='float', default=DEFAULT_RESERVE_SECONDS),
        killable_users=dict(type='list', elements='str', default=[], no_log=False),
        drain_policy=dict(type='str', choices=['abort', 'terminate'], default='abort'),
    )
    spec.update(deploy_target_spec())
    spec.update(_copy(BUDGET_SPEC))
    spec.update(_copy(DRAIN_ENTRIES_SPEC))
    spec.update(extra)
    return spec
