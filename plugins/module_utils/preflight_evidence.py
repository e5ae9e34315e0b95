# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""No change to the database without this deploy's pre-flight.

The ``preflight`` role sets the fact ``fastdowntime_preflight_passed`` on the
primary when every check passed: its evidence, {'db_name', 'patch_dir',
'pending_hot', 'pending_cold', 'post_window_hot': [{'name', 'sha256', ...}]}
(the plan it checked). A step that changes the database - the outage's window
(module outage), the hot patches before and after it (module schema_apply) -
is refused before it changes anything when that evidence does not cover the
patches it would apply: the pre-flight's play left out by tags (``--tags
outage``, ``--tags hot``, ``--skip-tags preflight``) or a role used without
the ``preflight`` role before it. ``fastdowntime_preflight_skipped_on_purpose:
true`` is the opt-in; check mode is never refused.

Pure: evidence and plans in, one line (or '') out.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

# The role option that lets a step run with no pre-flight of this run (outage and schema_apply roles).
PREFLIGHT_OPT_IN = 'fastdowntime_preflight_skipped_on_purpose'

# What each step would change, in the operator's words: (what the pre-flight checks for it, the
# refusal's "before ...", the opt-in's "to ...").
STEPS = {
    'window': ('nothing checked that this window can finish (standbys, sessions, locks, budget)',
               'refused before any PAUSE, nothing paused or applied', 'open the window without a pre-flight'),
    'cold': ('nothing checked these cold patches (their statements, the sessions and locks they would wait on, the '
             'standbys, the budget)', 'refused before any was applied, nothing applied',
             'apply them without a pre-flight'),
    'hot': ('nothing checked these hot patches (their statements, the sessions and locks they would wait on, the '
            'standbys)', 'refused before any was applied, nothing applied', 'apply them without a pre-flight'),
}
# The plan's pending patches each step applies (patchset.Plan.as_dict() keys).
PENDING_KEY = {'window': 'pending_cold', 'cold': 'pending_cold', 'hot': 'pending_hot'}
EVIDENCE_KEYS = ('pending_hot', 'pending_cold', 'post_window_hot')


def _patch_keys(patches):
    return [(p.get('name'), p.get('sha256')) for p in patches or [] if isinstance(p, dict)]


def preflight_left_out_by(run_tags, skip_tags):
    """How the pre-flight's play (tag ``preflight``) was left out, in the operator's words."""
    run_tags, skip_tags = list(run_tags or []), list(skip_tags or [])
    if 'preflight' in skip_tags or 'all' in skip_tags:
        return '--skip-tags %s left its play out' % ','.join(skip_tags)
    if run_tags and 'all' not in run_tags and 'preflight' not in run_tags:
        return '--tags %s left its play (tag preflight) out' % ','.join(run_tags)
    return 'the role fastdowntime.postgresql.preflight must run first'


def _same_path(path):
    return os.path.normpath(os.path.expanduser(str(path))) if path else path


def preflight_missing(passed, plan, primary, db_name, patch_dir, run_tags=None, skip_tags=None, step='window'):
    """Why ``step`` may not change the database without the pre-flight: '' when it may, else one line.

    ``passed``: the pre-flight's evidence of this run (the fact fastdowntime_preflight_passed,
    see the module docstring), empty when it did not pass in this run; ``plan``: the plan of
    the step about to run (patchset.Plan.as_dict()); ``step``: 'window' (the outage: its
    ``pending_cold``), 'hot' (the hot patches: its ``pending_hot``, before the window or,
    once the window's cold patches are applied, after it) or 'cold' (schema_apply's cold
    phase, no window: its ``pending_cold``). It may run when it has nothing
    pending, or when the evidence is of this database and patch directory and covers every
    patch it would apply (name and checksum) among those the pre-flight saw pending."""
    checks, refused, opt_in = STEPS[step]
    pending = _patch_keys((plan or {}).get(PENDING_KEY[step]))
    if not pending:
        return ''
    passed = passed if isinstance(passed, dict) else {}
    if not passed:
        why = 'the pre-flight did not run in this play (%s)' % preflight_left_out_by(run_tags, skip_tags)
    elif passed.get('db_name') != db_name or _same_path(passed.get('patch_dir')) != _same_path(patch_dir):
        why = ('the pre-flight that passed in this run checked database %s, patches %s - not this deploy (database %s, '
               'patches %s)' % (passed.get('db_name'), passed.get('patch_dir'), db_name, patch_dir))
    else:
        checked = set(key for name in EVIDENCE_KEYS for key in _patch_keys(passed.get(name)))
        unchecked = [name for name, sha256 in pending if (name, sha256) not in checked]
        if not unchecked:
            return ''
        why = 'the pre-flight that passed in this run did not check %s (new or changed since)' % ', '.join(unchecked)
    return ('%s: %s: %s; %s: run the whole playbook (no --tags/--skip-tags leaving out preflight), or set %s: true to '
            '%s' % (primary, why, checks, refused, PREFLIGHT_OPT_IN, opt_in))
