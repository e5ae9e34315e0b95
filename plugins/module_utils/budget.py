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

# The longest outage allowed when none is given, drain start -> last RESUME
# (fastdowntime_budget_seconds, every module's budget_seconds).
DEFAULT_BUDGET_SECONDS = 60.0
# What ROLLBACK + RESUME of every pgbouncer need at most, kept out of the
# budget that work may spend. Small: both are a round trip each, in parallel.
DEFAULT_RESERVE_SECONDS = 0.5
# The reserve never eats more than this share of a small budget.
RESERVE_MAX_SHARE = 0.2

# The keys of a phase record, in the order the report shows them.
PHASE_FIELDS = ('phase', 'host', 'start_offset_ms', 'started_at', 'duration_ms', 'budget_left_ms', 'status',
                'detail')


def phase_record(phase, host=None, start_offset_ms=None, started_at=None, duration_ms=None, budget_left_ms=None,
                 status='running', detail=None):
    """One phase record, the shape every fastdowntime module returns in ``phases``
    and the timeline report reads: ``phase`` (a name), ``host`` (a label or None),
    ``start_offset_ms`` (ms from the outage clock's start, None outside the
    outage), ``started_at`` (epoch seconds), ``duration_ms``, ``budget_left_ms``
    (ms of the budget left when it ended, None where no budget runs), ``status``
    (running, ok, failed, skipped, planned) and ``detail`` (a dict; ``error`` on
    failure)."""
    return {
        'phase': phase,
        'host': host,
        'start_offset_ms': None if start_offset_ms is None else round(float(start_offset_ms), 1),
        'started_at': started_at,
        'duration_ms': None if duration_ms is None else round(float(duration_ms), 1),
        'budget_left_ms': None if budget_left_ms is None else round(float(budget_left_ms), 1),
        'status': status,
        'detail': dict(detail or {}),
    }


def timed_phase_record(phase, host=None, started_at=None, ended_at=None, budget_ends_at=None, status='ok',
                       detail=None, error=None):
    """A phase record from epoch seconds (a phase timed outside any BudgetClock,
    e.g. by a role): ``ended_at`` None leaves the duration unknown,
    ``budget_ends_at`` (epoch seconds the phase's own budget ends) gives
    ``budget_left_ms``; ``error`` goes into ``detail``."""
    detail = dict(detail or {})
    if error:
        detail['error'] = error
    timed = started_at is not None and ended_at is not None
    return phase_record(
        phase, host=host, started_at=started_at, status=status, detail=detail,
        duration_ms=(float(ended_at) - float(started_at)) * 1000 if timed else None,
        budget_left_ms=(float(budget_ends_at) - float(ended_at)) * 1000
        if budget_ends_at is not None and ended_at is not None else None)


class Budget:
    """The outage's budget: ``seconds`` (drain start -> last RESUME), the
    ``reserve`` kept back for ROLLBACK and RESUME (at most RESERVE_MAX_SHARE of
    it) and what work may spend, ``usable``. ``capped_by`` says what shortened
    it (pgbouncer_console.budget_cap's dict plus the ``budget_seconds`` asked
    for), None when nothing did. Raises ValueError for a budget that is not
    positive."""

    def __init__(self, seconds=DEFAULT_BUDGET_SECONDS, reserve_seconds=DEFAULT_RESERVE_SECONDS, capped_by=None):
        if seconds is None or seconds <= 0:
            raise ValueError('budget_seconds must be positive, got %r' % (seconds,))
        self.seconds = float(seconds)
        self.reserve_seconds = float(DEFAULT_RESERVE_SECONDS if reserve_seconds is None else reserve_seconds)
        self.reserve = min(self.reserve_seconds, self.seconds * RESERVE_MAX_SHARE)
        self.capped_by = capped_by

    @property
    def usable(self):
        """Seconds that work may spend: the budget less the reserve."""
        return self.seconds - self.reserve

    @property
    def budget_ms(self):
        return round(self.seconds * 1000, 1)

    def capped(self, cap):
        """This budget shortened to ``cap['seconds']`` (pgbouncer_console.budget_cap:
        a pgbouncer timeout disconnects queued clients then); itself when ``cap``
        is None or no shorter. Raises BudgetExceeded('before the outage', ...) when
        the cap leaves nothing."""
        if cap is None or cap['seconds'] >= self.seconds:
            return self
        if cap['seconds'] <= 0:
            raise BudgetExceeded('before the outage', 0.0, 0.0)
        return Budget(cap['seconds'], self.reserve_seconds, capped_by=dict(cap, budget_seconds=self.seconds))

    def as_dict(self):
        return {'budget_ms': self.budget_ms, 'reserve_ms': round(self.reserve * 1000, 1),
                'usable_ms': round(self.usable * 1000, 1)}


BUDGET_VAR = 'fastdowntime_budget_seconds'


def raise_advice(budget):
    """The fix for work the budget ``budget`` (a Budget, or None: unknown) cut
    off: raise the inventory variable - or, when a pgbouncer timeout capped the
    budget (``capped_by``), that raising it does nothing and which setting caps it."""
    cap = getattr(budget, 'capped_by', None)
    if cap:
        return ('raising %s does nothing: the budget is capped at %g s by %s %s = %g s - raise that setting, or '
                'make the patch cheaper' % (BUDGET_VAR, cap['seconds'], cap['pgbouncer'], cap['setting'],
                                            cap['timeout_seconds']))
    now = ' (now %g s)' % budget.seconds if budget is not None else ''
    return 'raise %s%s or make the patch cheaper' % (BUDGET_VAR, now)


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

    def __init__(self, budget, reserve_seconds=None, clock=time.monotonic, wall=time.time):
        """``budget``: a Budget, or its seconds (then with ``reserve_seconds``,
        default DEFAULT_RESERVE_SECONDS). ``clock.budget`` is the Budget."""
        self.budget = budget if isinstance(budget, Budget) else Budget(budget, reserve_seconds)
        self._clock = clock
        self._wall = wall
        self.started_mono = None
        self.started_wall = None
        self.phases = []

    def cap(self, cap):
        """Shorten the budget before the clock starts (Budget.capped); returns
        the Budget now in force."""
        if self.started:
            raise ValueError('the budget cannot change once the clock runs')
        self.budget = self.budget.capped(cap)
        return self.budget

    # -- the clock -------------------------------------------------------
    def start(self):
        if self.started_mono is None:
            self.started_mono = self._clock()
            self.started_wall = self._wall()
        return self

    def now(self):
        """This clock's time source now (seconds; phase(began=...) takes it)."""
        return self._clock()

    @property
    def started(self):
        return self.started_mono is not None

    def elapsed(self):
        return 0.0 if self.started_mono is None else self._clock() - self.started_mono

    def remaining(self):
        """Seconds until the budget's deadline (negative once past it)."""
        return self.budget.seconds - self.elapsed()

    def usable(self):
        """Seconds that work may still spend: what remains minus the reserve."""
        return self.remaining() - self.budget.reserve

    def deadline_monotonic(self):
        self.start()
        return self.started_mono + self.budget.seconds

    def deadline_wall(self):
        """The deadline as epoch seconds (for a watchdog on another host)."""
        self.start()
        return self.started_wall + self.budget.seconds

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
    def phase(self, name, host=None, detail=None, began=None):
        """Time a phase; it is recorded whether it ends well or not. ``began``:
        when it started, if before now (seconds of this clock's time source)."""
        began = self._clock() if began is None else began
        started = self.started
        record = phase_record(name, host=host, start_offset_ms=(began - self.started_mono) * 1000 if started else 0.0,
                              detail=detail)
        record['started_at'] = self.started_wall + record['start_offset_ms'] / 1000.0 if started else self._wall()
        self.phases.append(record)
        try:
            yield record
        except BaseException as exc:
            record['status'] = 'failed'
            record.setdefault('detail', {})['error'] = str(exc)
            raise
        else:
            record['status'] = 'ok'
        finally:
            # One reading of the clock for the duration and the budget left, both
            # from the record's rounded start and duration: rows sorted by their
            # end have their budget left going down, even when threads close
            # phases at the same moment.
            record['duration_ms'] = round((self._clock() - began) * 1000, 1)
            record['budget_left_ms'] = self._left_after(record) if started else None

    def _left_after(self, record):
        return round(self.budget.seconds * 1000 - record['start_offset_ms'] - record['duration_ms'], 1)

    def add_phase(self, name, host, start_offset_ms, duration_ms, detail=None):
        """Record a phase timed elsewhere (e.g. by the server, inside one round
        trip): offsets and durations in ms from the clock's start."""
        record = phase_record(name, host=host, start_offset_ms=max(float(start_offset_ms), 0.0),
                              duration_ms=duration_ms, status='ok', detail=detail)
        record['started_at'] = (self.started_wall or self._wall()) + record['start_offset_ms'] / 1000.0
        record['budget_left_ms'] = self._left_after(record)
        self.phases.append(record)
        return record

    def summary(self):
        return dict(self.budget.as_dict(), started_at=self.started_wall, elapsed_ms=round(self.elapsed() * 1000, 1),
                    phases=list(self.phases))
