"""The budget clock, driven by a fake clock: no sleeping, exact arithmetic."""

import pytest

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import outcomes
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.budget import (
    PHASE_FIELDS,
    Budget,
    BudgetClock,
    BudgetExceeded,
    DEFAULT_BUDGET_SECONDS,
    DEFAULT_RESERVE_SECONDS,
    phase_record,
    timed_phase_record,
)


class FakeTime:
    """A monotonic clock and a wall clock that move only when told to."""

    def __init__(self, mono=1000.0, wall=1_700_000_000.0):
        self.mono = mono
        self.wall_now = wall

    def monotonic(self):
        return self.mono

    def wall(self):
        return self.wall_now

    def advance(self, seconds):
        self.mono += seconds
        self.wall_now += seconds


@pytest.fixture
def fake():
    return FakeTime()


def make_clock(fake, budget=10.0, reserve=0.5):
    return BudgetClock(budget, reserve_seconds=reserve, clock=fake.monotonic, wall=fake.wall)


# -- deadline arithmetic ------------------------------------------------------

def test_unstarted_clock_has_the_whole_budget(fake):
    clock = make_clock(fake)
    fake.advance(100)
    assert not clock.started
    assert clock.elapsed() == 0.0
    assert clock.remaining() == 10.0


def test_remaining_counts_down_from_start(fake):
    clock = make_clock(fake).start()
    fake.advance(3.25)
    assert clock.elapsed() == pytest.approx(3.25)
    assert clock.remaining() == pytest.approx(6.75)


def test_remaining_goes_negative_past_the_deadline(fake):
    clock = make_clock(fake, budget=2).start()
    fake.advance(2.5)
    assert clock.remaining() == pytest.approx(-0.5)


def test_start_is_idempotent(fake):
    clock = make_clock(fake).start()
    fake.advance(4)
    clock.start()
    assert clock.elapsed() == pytest.approx(4)


def test_deadlines_are_start_plus_budget(fake):
    clock = make_clock(fake, budget=60)
    started_mono, started_wall = fake.mono, fake.wall_now
    assert clock.deadline_monotonic() == pytest.approx(started_mono + 60)
    fake.advance(5)
    # The deadline does not move once the clock runs.
    assert clock.deadline_wall() == pytest.approx(started_wall + 60)


def test_deadline_starts_an_unstarted_clock(fake):
    clock = make_clock(fake)
    clock.deadline_wall()
    assert clock.started


@pytest.mark.parametrize('budget', [0, -1])
def test_budget_must_be_positive(budget):
    with pytest.raises(ValueError, match='positive'):
        BudgetClock(budget)


# -- reserve ------------------------------------------------------------------

def test_usable_keeps_the_reserve_back(fake):
    clock = make_clock(fake, budget=10, reserve=0.5).start()
    fake.advance(2)
    assert clock.usable() == pytest.approx(7.5)


def test_default_reserve(fake):
    clock = BudgetClock(60, clock=fake.monotonic, wall=fake.wall)
    assert clock.budget.reserve == DEFAULT_RESERVE_SECONDS


def test_reserve_is_capped_at_a_fifth_of_a_small_budget(fake):
    clock = make_clock(fake, budget=1, reserve=0.5)
    assert clock.budget.reserve == pytest.approx(0.2)
    assert clock.usable() == pytest.approx(0.8)


# -- refusal ------------------------------------------------------------------

def test_require_returns_usable_when_the_step_fits(fake):
    clock = make_clock(fake).start()
    fake.advance(1)
    assert clock.require('drain', 2.0) == pytest.approx(8.5)


def test_require_refuses_a_step_larger_than_usable(fake):
    clock = make_clock(fake).start()
    fake.advance(8)
    with pytest.raises(BudgetExceeded) as info:
        clock.require('schema application', 2.0)
    exc = info.value
    assert exc.phase == 'schema application'
    assert exc.needed == 2.0
    assert exc.usable == pytest.approx(1.5)
    assert str(exc) == ('budget spent in phase schema application: '
                        '1500 ms left for work, step needs 2000 ms')


def test_require_refuses_once_only_the_reserve_is_left(fake):
    clock = make_clock(fake).start()
    fake.advance(9.6)  # 0.4 s remain, all of it reserve
    with pytest.raises(BudgetExceeded, match='phase replica sync: 0 ms left'):
        clock.require('replica sync')


def test_timeout_ms_is_a_fraction_of_usable(fake):
    clock = make_clock(fake).start()
    fake.advance(1.5)  # usable 8.0 s
    assert clock.timeout_ms('schema application') == 8000
    assert clock.timeout_ms('schema application', fraction=0.25) == 2000


def test_timeout_ms_has_a_floor(fake):
    clock = make_clock(fake).start()
    fake.advance(9.4999)  # usable 0.1 ms
    assert clock.timeout_ms('resume', fraction=0.001) == 1


def test_timeout_ms_refuses_when_the_budget_is_spent(fake):
    clock = make_clock(fake).start()
    fake.advance(12)
    with pytest.raises(BudgetExceeded) as info:
        clock.timeout_ms('drain')
    assert info.value.phase == 'drain'
    assert 'phase drain' in str(info.value)


def test_work_timeout_is_the_usable_budget(fake):
    clock = make_clock(fake).start()
    fake.advance(4)
    assert clock.work_timeout('replica sync') == pytest.approx(5.5)


# -- phase recording ----------------------------------------------------------

def test_phase_records_a_successful_step(fake):
    clock = make_clock(fake).start()
    fake.advance(0.25)
    with clock.phase('drain', host='pgbouncer1', detail={'entries': ['fdtdemo']}) as record:
        assert record['status'] == 'running'
        fake.advance(0.040)
    assert clock.phases == [{
        'phase': 'drain',
        'host': 'pgbouncer1',
        'start_offset_ms': 250.0,
        'started_at': pytest.approx(1_700_000_000.25),
        'duration_ms': 40.0,
        'budget_left_ms': 9710.0,
        'status': 'ok',
        'detail': {'entries': ['fdtdemo']},
    }]


def test_phase_detail_may_be_filled_inside_the_step(fake):
    clock = make_clock(fake).start()
    with clock.phase('resume', host='pgbouncer2') as record:
        record['detail']['max_client_wait_ms'] = 812.0
    assert clock.phases[0]['detail'] == {'max_client_wait_ms': 812.0}


def test_phase_records_a_failed_step_and_reraises(fake):
    clock = make_clock(fake, budget=3).start()
    with pytest.raises(BudgetExceeded):
        with clock.phase('schema application', host='primary'):
            fake.advance(2.9)
            clock.require('schema application', 1.0)
    record = clock.phases[0]
    assert record['status'] == 'failed'
    assert record['duration_ms'] == pytest.approx(2900.0)
    assert record['budget_left_ms'] == pytest.approx(100.0)
    assert record['detail']['error'].startswith('budget spent in phase schema application')


def test_phase_records_any_exception(fake):
    clock = make_clock(fake).start()
    with pytest.raises(RuntimeError):
        with clock.phase('replica sync', host='standby1'):
            raise RuntimeError('standby1 (10.213.47.11:5432): not caught up')
    assert clock.phases[0]['status'] == 'failed'
    assert clock.phases[0]['detail'] == {'error': 'standby1 (10.213.47.11:5432): not caught up'}


def test_phases_keep_their_order_and_offsets(fake):
    clock = make_clock(fake).start()
    for name, spend in (('drain', 0.1), ('schema application', 0.3), ('resume', 0.05)):
        with clock.phase(name):
            fake.advance(spend)
    assert [p['phase'] for p in clock.phases] == ['drain', 'schema application', 'resume']
    assert [p['start_offset_ms'] for p in clock.phases] == [0.0, 100.0, 400.0]
    assert [p['budget_left_ms'] for p in clock.phases] == [9900.0, 9600.0, 9550.0]


class TickingTime(FakeTime):
    """A clock that moves 13 us at every reading, as a real one does between two reads."""

    def monotonic(self):
        self.advance(0.000013)
        return self.mono


def test_phases_closed_at_the_same_moment_end_in_the_order_their_budget_goes_down():
    # Two pgbouncers' resumes close on two threads within microseconds; the
    # report sorts rows by started_at + duration_ms, and the budget left must
    # go down in that order (CI once saw 9984.4 before 9984.5): each record's
    # budget left is what its own start and duration leave, to the 0.1 ms.
    fake = TickingTime()
    clock = make_clock(fake).start()
    fake.advance(0.01523)
    first = clock.phase('resume', host='pgbouncer1')
    second = clock.phase('resume', host='pgbouncer2')
    first.__enter__()
    second.__enter__()
    fake.advance(0.00231)
    second.__exit__(None, None, None)
    first.__exit__(None, None, None)
    clock.add_phase('commit', 'primary', 17.56, 0.04)
    records = sorted(clock.phases, key=lambda r: r['started_at'] + r['duration_ms'] / 1000.0)
    for record in records:
        assert record['budget_left_ms'] == round(10000 - record['start_offset_ms'] - record['duration_ms'], 1)
        assert record['started_at'] == pytest.approx(clock.started_wall + record['start_offset_ms'] / 1000.0, abs=1e-6)
    left = [r['budget_left_ms'] for r in records]
    assert left == sorted(left, reverse=True)


def test_phase_before_start_has_no_budget_left(fake):
    clock = make_clock(fake)
    with clock.phase('pre-flight', host='primary'):
        fake.advance(1)
    record = clock.phases[0]
    assert record['start_offset_ms'] == 0.0
    assert record['duration_ms'] == 1000.0
    assert record['budget_left_ms'] is None


def test_summary(fake):
    clock = make_clock(fake, budget=5, reserve=0.5).start()
    with clock.phase('drain'):
        fake.advance(1)
    summary = clock.summary()
    assert summary['budget_ms'] == 5000.0
    assert summary['reserve_ms'] == 500.0
    assert summary['started_at'] == 1_700_000_000.0
    assert summary['elapsed_ms'] == 1000.0
    assert [p['phase'] for p in summary['phases']] == ['drain']
    # A copy: later phases do not change a summary already returned.
    with clock.phase('resume'):
        pass
    assert len(summary['phases']) == 1


# -- the budget as a value: reserve rule and cap in one place -------------------

def test_budget_keeps_the_reserve_back_at_most_a_fifth():
    assert Budget(10, 0.5).usable == pytest.approx(9.5)
    assert Budget(1, 0.5).reserve == pytest.approx(0.2) and Budget(1, 0.5).usable == pytest.approx(0.8)
    assert Budget().seconds == DEFAULT_BUDGET_SECONDS and Budget().reserve == DEFAULT_RESERVE_SECONDS
    assert Budget(5, None).reserve == DEFAULT_RESERVE_SECONDS
    assert Budget(10, 0.5).as_dict() == {'budget_ms': 10000.0, 'reserve_ms': 500.0, 'usable_ms': 9500.0}


def test_a_cap_shortens_the_budget_and_says_by_what():
    cap = {'pgbouncer': 'pgb1', 'setting': 'query_wait_timeout', 'timeout_seconds': 3.0, 'seconds': 2.0}
    budget = Budget(10, 0.5)
    assert budget.capped(None) is budget
    assert budget.capped(dict(cap, seconds=12.0)) is budget
    capped = budget.capped(cap)
    assert capped.seconds == 2.0 and capped.reserve == pytest.approx(0.4)
    assert capped.capped_by == dict(cap, budget_seconds=10.0)
    with pytest.raises(BudgetExceeded):
        budget.capped(dict(cap, seconds=0.0))


def test_the_clock_takes_a_cap_only_before_it_starts(fake):
    clock = make_clock(fake, budget=10)
    cap = {'pgbouncer': 'pgb1', 'setting': 'query_timeout', 'timeout_seconds': 5.0, 'seconds': 4.0}
    assert clock.cap(cap).seconds == 4.0
    clock.start()
    assert clock.remaining() == 4.0 and clock.deadline_wall() == fake.wall_now + 4.0
    with pytest.raises(ValueError, match='once the clock runs'):
        clock.cap(cap)


def test_every_phase_record_has_the_same_fields(fake):
    clock = make_clock(fake).start()
    with clock.phase('drain'):
        pass
    clock.add_phase('cold_transaction', 'primary', 1.0, 2.0)
    built = phase_record('preflight', host='primary')
    timed = timed_phase_record('app_restart', host='app1', started_at=100.0, ended_at=100.5, budget_ends_at=160.0,
                               status='failed', error='HTTP 500')
    for record in clock.phases + [built, timed]:
        assert tuple(record) == PHASE_FIELDS
    assert (timed['duration_ms'], timed['budget_left_ms'], timed['detail']) == (500.0, 59500.0, {'error': 'HTTP 500'})
    unfinished = timed_phase_record('app_restart', started_at=100.0, status='planned')
    assert unfinished['duration_ms'] is None and unfinished['budget_left_ms'] is None


def test_outcome_words_and_the_aborted_phase():
    assert outcomes.aborted_in('drain') == 'aborted in drain'
    assert outcomes.aborted_phase(outcomes.aborted_in('standby replay')) == 'standby replay'
    assert outcomes.aborted_phase(outcomes.DONE) is None and outcomes.aborted_phase(None) is None
    assert outcomes.is_refusal(outcomes.REFUSED_BY_PREFLIGHT) and outcomes.is_refusal(outcomes.REFUSED_BEFORE_OUTAGE)
    assert not outcomes.is_refusal(outcomes.aborted_in('drain'))
