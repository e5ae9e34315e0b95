# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The budget clock: one budget for the whole outage, every phase timed against it.

Pure logic (no database, no Ansible): the clock is started when the drain
begins; every step inside the outage asks it how much time is left, refuses to
start a step the remaining budget cannot cover, and derives its database
timeouts from it. A reserve is always kept back so that ROLLBACK and RESUME
still fit after the budget for work is spent.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time
from contextlib import contextmanager

# What ROLLBACK + RESUME of every pgbouncer need at most, kept out of the
# budget that work may spend. Small: both are a round trip each, in parallel.
DEFAULT_RESERVE_SECONDS = 0.5


class BudgetExceeded(Exception):
    """The budget cannot cover the step; ``phase`` names the step refused."""

    def __init__(self, phase, needed, usable):
        self.phase = phase
        self.needed = needed
        self.usable = usable
        Exception.__init__(self, 'budget spent in phase %s: %.0f ms left for work, step needs %.0f ms'
                           % (phase, max(usable, 0) * 1000, needed * 1000))


class BudgetClock:
    """Deadline arithmetic for one outage.

    ``clock`` and ``wall`` are injectable for unit tests; in production they are
    ``time.monotonic`` (for arithmetic) and ``time.time`` (for the report).
    """

    def __init__(self, budget_seconds, reserve_seconds=DEFAULT_RESERVE_SECONDS,
                 clock=time.monotonic, wall=time.time):
        if budget_seconds <= 0:
            raise ValueError('budget_seconds must be positive, got %r' % (budget_seconds,))
        self.budget = float(budget_seconds)
        # The reserve never eats more than a fifth of a small budget.
        self.reserve = min(float(reserve_seconds), self.budget / 5.0)
        self._clock = clock
        self._wall = wall
        self.started_mono = None
        self.started_wall = None
        self.phases = []

    # -- the clock -------------------------------------------------------
    def start(self):
        if self.started_mono is None:
            self.started_mono = self._clock()
            self.started_wall = self._wall()
        return self

    @property
    def started(self):
        return self.started_mono is not None

    def elapsed(self):
        return 0.0 if self.started_mono is None else self._clock() - self.started_mono

    def remaining(self):
        """Seconds until the budget's deadline (negative once past it)."""
        return self.budget - self.elapsed()

    def usable(self):
        """Seconds that work may still spend: what remains minus the reserve."""
        return self.remaining() - self.reserve

    def deadline_monotonic(self):
        self.start()
        return self.started_mono + self.budget

    def deadline_wall(self):
        """The deadline as epoch seconds (for a watchdog on another host)."""
        self.start()
        return self.started_wall + self.budget

    # -- decisions -------------------------------------------------------
    def require(self, phase, needed_seconds=0.0):
        """Refuse (raise BudgetExceeded) a step the usable budget cannot cover."""
        usable = self.usable()
        if usable <= 0 or usable < needed_seconds:
            raise BudgetExceeded(phase, needed_seconds, usable)
        return usable

    def timeout_ms(self, phase, fraction=1.0, floor_ms=1):
        """A database timeout (statement_timeout, lock_timeout) in ms taken from
        the usable budget; raises BudgetExceeded when nothing is left."""
        usable = self.require(phase)
        return max(int(usable * fraction * 1000), floor_ms)

    def work_timeout(self, phase):
        """Seconds a blocking wait inside ``phase`` may take (the usable budget)."""
        return self.require(phase)

    # -- phases ----------------------------------------------------------
    @contextmanager
    def phase(self, name, host=None, detail=None):
        """Time a phase; it is recorded whether it ends well or not."""
        record = {
            'phase': name,
            'host': host,
            'start_offset_ms': round(self.elapsed() * 1000, 1),
            'started_at': self._wall(),
            'duration_ms': None,
            'budget_left_ms': None,
            'status': 'running',
            'detail': dict(detail or {}),
        }
        self.phases.append(record)
        began = self._clock()
        try:
            yield record
        except BaseException as exc:
            record['status'] = 'failed'
            record.setdefault('detail', {})['error'] = str(exc)
            raise
        else:
            record['status'] = 'ok'
        finally:
            record['duration_ms'] = round((self._clock() - began) * 1000, 1)
            record['budget_left_ms'] = round(self.remaining() * 1000, 1) if self.started else None

    def add_phase(self, name, host, start_offset_ms, duration_ms, detail=None):
        """Record a phase timed elsewhere (e.g. by the server, inside one round
        trip): offsets and durations in ms from the clock's start."""
        start_offset_ms = max(float(start_offset_ms), 0.0)
        record = {
            'phase': name,
            'host': host,
            'start_offset_ms': round(start_offset_ms, 1),
            'started_at': (self.started_wall or self._wall()) + start_offset_ms / 1000.0,
            'duration_ms': round(float(duration_ms), 1),
            'budget_left_ms': round(self.budget * 1000 - start_offset_ms - float(duration_ms), 1),
            'status': 'ok',
            'detail': dict(detail or {}),
        }
        self.phases.append(record)
        return record

    def summary(self):
        return {
            'budget_ms': round(self.budget * 1000, 1),
            'reserve_ms': round(self.reserve * 1000, 1),
            'started_at': self.started_wall,
            'elapsed_ms': round(self.elapsed() * 1000, 1),
            'phases': list(self.phases),
        }
