"""Split window: the mode's validation and how the report shows the write and
read outages (which entries are read-only: test_topology)."""

import pytest

from ansible_collections.fastdowntime.postgresql.plugins.module_utils.outage import Outage
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.report import (
    build_report, entry_from_result, render_text)


def test_unknown_window_mode_is_refused():
    with pytest.raises(ValueError, match='window_mode'):
        Outage(primary={'host': 'p'}, standbys=[], pgbouncers=[], db_name='app', patch_dir='/nowhere',
               budget_seconds=10, window_mode='halves')
    outage = Outage(primary={'host': 'p'}, standbys=[], pgbouncers=[], db_name='app', patch_dir='/nowhere',
                    budget_seconds=10, window_mode='split')
    assert outage.window_mode == 'split' and outage.read_consoles == []


def _result(outage):
    return {'changed': True, 'outcome': 'done', 'deploy_id': 'd1', 'budget_ms': 60000.0,
            'phases': [{'phase': 'drain_write', 'host': 'b1', 'started_at': 1000.0, 'start_offset_ms': 2.0,
                        'duration_ms': 10.0, 'budget_left_ms': 59000.0, 'status': 'ok', 'detail': {}},
                       {'phase': 'resume_read', 'host': 'b1', 'started_at': 1000.3, 'start_offset_ms': 300.0,
                        'duration_ms': 5.0, 'budget_left_ms': 58000.0, 'status': 'ok', 'detail': {}}],
            'outage': outage}


def test_report_shows_write_and_read_outage_of_a_split_window():
    outage = {'started_at': 1000.0, 'ended_at': 1000.305, 'outage_ms': 305.0, 'window_mode': 'split',
              'write_outage_ms': 180.5, 'read_outage_ms': 60.0, 'max_write_wait_ms': 170,
              'max_read_wait_ms': 55.0, 'max_client_wait_ms': 170}
    report = build_report(entry_from_result(_result(outage), task='outage'))
    assert report['split_window'] == {'write_outage_ms': 180.5, 'read_outage_ms': 60.0,
                                      'max_write_wait_ms': 170.0, 'max_read_wait_ms': 55.0}
    assert report['outage']['outage_ms'] == 305.0
    lines = render_text(report)
    assert 'split window: writes out 180.5 ms (longest wait 170.0 ms), reads out 60.0 ms ' \
           '(longest wait 55.0 ms)' in lines, lines


def test_report_of_an_all_window_has_no_split_part():
    outage = {'started_at': 1000.0, 'ended_at': 1000.305, 'outage_ms': 305.0, 'max_client_wait_ms': 300}
    report = build_report(entry_from_result(_result(outage), task='outage'))
    assert report['split_window'] is None
    assert not [line for line in render_text(report) if line.startswith('split window')]


def test_preflight_replay_running_passes_paused_and_resumed_warns_paused_and_kept_fails():
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.preflight import (
        CHECKS, FAIL, PASS, WARN, decide_replay)
    assert 'replay_paused' in CHECKS
    assert decide_replay('s1', 'not paused')['status'] == PASS
    resumed = decide_replay('s1', 'paused', resumed=True)
    assert resumed['status'] == WARN and 'resumed it' in resumed['summary']
    kept = decide_replay('s1', 'pause requested')
    assert kept['status'] == FAIL and 'pause requested' in kept['summary']
    assert 'pg_wal_replay_resume()' in kept['action']
    refused = decide_replay('s1', 'paused', error='permission denied for function pg_wal_replay_resume')
    assert refused['status'] == FAIL and 'permission denied' in refused['summary']
