# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A phase record for a step timed by a role, in the shape the modules return."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: phase_record
short_description: A phase record, the shape of the collection's budget clock records
version_added: 0.1.0
description:
  - Builds one phase record (C(phase), C(host), C(start_offset_ms), C(started_at), C(duration_ms), C(budget_left_ms),
    C(status), C(detail)) for a step a role times itself, so the C(fastdowntime.postgresql.timeline) callback shows it
    beside the modules' phases. The record is built by the same code as the modules' (module_utils budget.py).
options:
  _input:
    description: The phase's name.
    type: str
    required: true
  host:
    description: Where the phase ran (an inventory host name).
    type: str
  started_at:
    description: When the phase started, epoch seconds.
    type: float
  ended_at:
    description: When it ended, epoch seconds; empty leaves the duration unknown (check mode).
    type: float
  budget_ends_at:
    description: When the phase's budget ends, epoch seconds; gives C(budget_left_ms).
    type: float
  status:
    description: C(ok), C(failed), C(planned), C(skipped).
    type: str
    default: ok
  detail:
    description: What else the report shows for the phase.
    type: dict
  error:
    description: Why the phase failed (kept in C(detail.error)); empty for none.
    type: str
'''

EXAMPLES = r'''
- name: Record the restart
  ansible.builtin.set_fact:
    restart_record: >-
      {{ 'app_restart' | fastdowntime.postgresql.phase_record(host=inventory_hostname, started_at=restart_started,
                                                              ended_at=now().timestamp(), status='ok') }}
'''

RETURN = r'''
_value:
  description: The phase record.
  type: dict
'''

from ansible_collections.fastdowntime.postgresql.plugins.module_utils.budget import timed_phase_record


def _seconds(value):
    return None if value is None or value == '' else float(value)


def phase_record(phase, host=None, started_at=None, ended_at=None, budget_ends_at=None, status='ok', detail=None,
                 error=None):
    return timed_phase_record(phase, host=host, started_at=_seconds(started_at), ended_at=_seconds(ended_at),
                              budget_ends_at=_seconds(budget_ends_at), status=status, detail=detail,
                              error=error or None)


class FilterModule(object):
    def filters(self):
        return {'phase_record': phase_record}
