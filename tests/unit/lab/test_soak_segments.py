"""make soak's segments of lab shapes and its seeded plan (benchmarks/soak.py): pure, no lab."""
import os
import pathlib
import random
import sys

ROOT = str(next(p for p in pathlib.Path(__file__).resolve().parents if (p / 'galaxy.yml').is_file()))
for where in ('lab', os.path.join('tests', 'integration'), 'benchmarks'):
    sys.path.insert(0, os.path.join(ROOT, where))

import labctl  # noqa: E402

# scenarios imports tests/integration/conftest.py as ``conftest``: not the unit tests' own, while importing.
_UNIT_CONFTEST = sys.modules.pop('conftest', None)
try:
    import scenarios  # noqa: E402
    import soak  # noqa: E402
finally:
    if _UNIT_CONFTEST is not None:
        sys.modules['conftest'] = _UNIT_CONFTEST


def test_every_lab_shape_is_soaked_in_a_segment_or_named_with_why_not():
    soaked = [name for segment in soak.SEGMENTS for name in labctl.shape_names(segment)]
    assert soak.SEGMENTS[0] == 'default'
    assert len(soaked) == len(set(soaked)), soaked  # each field shape in one segment
    left = [name for name in labctl.SHAPES if name != 'default' and name not in soaked
            and not name.startswith('scale_') and name not in soak.NOT_SOAKED]
    assert left == [], 'lab shapes neither in soak.SEGMENTS nor in soak.NOT_SOAKED: %s' % left
    assert not set(soak.NOT_SOAKED) & set(soaked)
    assert set(soak.NOT_SOAKED) <= set(labctl.SHAPES)


def test_the_deploys_split_evenly_over_the_segments_in_order_and_a_seed_replays_them():
    chosen = sorted(scenarios.SCENARIOS)
    plan = soak.plan(38322, 100, soak.SEGMENTS, chosen)
    assert [segment for segment, dummy in plan] == [s for s in soak.SEGMENTS for dummy in range(25)]
    assert plan == soak.plan(38322, 100, soak.SEGMENTS, chosen)
    assert [len([1 for s, d in soak.plan(1, 10, soak.SEGMENTS, chosen) if s == seg]) for seg in soak.SEGMENTS] == [
        2, 3, 2, 3]


def test_one_default_segment_draws_as_the_soak_always_did():
    chosen = sorted(scenarios.SCENARIOS)
    draw = random.Random(38322)
    assert [name for dummy, name in soak.plan(38322, 100, ('default',), chosen)] == [
        draw.choice(chosen) for dummy in range(100)]


def test_a_scenario_that_does_not_apply_to_a_shape_is_never_drawn_there():
    chosen = sorted(scenarios.SCENARIOS)
    low = [s for s in soak.SEGMENTS if 'pgbouncer_low_timeouts' in s][0]
    assert scenarios.not_on_shape('pgbouncer_restarted', low.split(',')).startswith('pgbouncer_low_timeouts: ')
    assert scenarios.not_on_shape('pgbouncer_restarted', ['default']) is None
    drawn = [name for segment, name in soak.plan(7, 400, soak.SEGMENTS, chosen) if segment == low]
    assert 'pgbouncer_restarted' not in drawn and len(drawn) == 100
    assert 'pgbouncer_restarted' in [name for segment, name in soak.plan(7, 400, soak.SEGMENTS, chosen)]
