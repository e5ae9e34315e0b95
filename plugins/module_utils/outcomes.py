# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The outcome words: what a deploy (or one of its modules) says it came to.

Pure constants and two helpers, no imports: the modules' ``outcome`` return
value, the timeline report's ``outcome``, the deploy log's ``outcome`` column
and the cycle-time report all speak these words.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DONE = 'done'                          # the schema changed (or a module said so)
NOTHING_TO_DO = 'nothing to do'        # nothing pending: no outage at all
PLANNED = 'planned'                    # check mode: what would be done
PASSED = 'passed'                      # the pre-flight found nothing refusing the deploy
REFUSED_BY_PREFLIGHT = 'refused by pre-flight'
REFUSED_BEFORE_OUTAGE = 'refused before the outage'   # the outage module, before anything is paused
REFUSED_BEFORE_PATCHES = 'refused before any patch'     # the schema_apply module, before any is applied
ABORTED = 'aborted'                    # an unexpected failure, phase unknown
ABORTED_PREFIX = 'aborted in '         # + the phase that failed
UNKNOWN = 'unknown'                    # a deploy-log row whose report said no outcome

REFUSALS = (REFUSED_BY_PREFLIGHT, REFUSED_BEFORE_OUTAGE, REFUSED_BEFORE_PATCHES)
# A run with one of these ended as it should (nothing left to report as a failure).
SUCCESSFUL = (DONE, NOTHING_TO_DO, PLANNED, PASSED)


def aborted_in(phase):
    """'aborted in <phase>'."""
    return ABORTED_PREFIX + phase


def aborted_phase(outcome):
    """The phase named by an 'aborted in <phase>' outcome, else None."""
    if isinstance(outcome, str) and outcome.startswith(ABORTED_PREFIX):
        return outcome[len(ABORTED_PREFIX):]
    return None


def is_refusal(outcome):
    """A refusal (pre-flight, the outage before anything was paused, the patches before any was applied)."""
    return outcome in REFUSALS
