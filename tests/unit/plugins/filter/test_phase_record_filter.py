"""The phase_record filter builds the modules' phase record for a role's step."""
from ansible_collections.fastdowntime.postgresql.plugins.filter.phase_record import FilterModule
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.budget import PHASE_FIELDS


def test_the_filter_gives_the_module_record_shape_from_templated_strings():
    record = FilterModule().filters()['phase_record'](
        'app_restart', host='app1', started_at='1700000000.0', ended_at=1700000001.25, budget_ends_at='1700000600',
        status='ok', detail={'batch': 1}, error='')
    assert tuple(record) == PHASE_FIELDS
    assert record['duration_ms'] == 1250.0 and record['budget_left_ms'] == 598750.0
    assert record['detail'] == {'batch': 1} and record['status'] == 'ok'


def test_check_mode_has_no_duration_and_a_failure_keeps_its_error():
    phase_record = FilterModule().filters()['phase_record']
    planned = phase_record('app_restart', started_at=1.0, ended_at=None, budget_ends_at=60.0, status='planned')
    assert planned['duration_ms'] is None and planned['budget_left_ms'] is None
    failed = phase_record('app_restart', started_at=1.0, ended_at=2.0, status='failed', error='HTTP 500')
    assert failed['detail'] == {'error': 'HTTP 500'}
