"""Split window: which entries are read-write and which read-only, the mode's
validation, and how the report shows the write and read outages."""

import pytest

from ansible_collections.fastdowntime.postgresql.plugins.module_utils.outage import (
    Outage, split_entries, standby_entries_by_pgbouncer)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.report import (
    build_report, entry_from_result, render_text)

LAB_STANDBYS = [
    {'name': 'standby1', 'host': '10.0.0.11', 'pgbouncer_databases': ['pgbouncer1:app_ro']},
    {'name': 'standby2', 'host': '10.0.0.12', 'pgbouncer_databases': ['pgbouncer2:app_ro']},
]


def test_lab_layout_each_pgbouncer_has_one_read_write_and_one_read_only_entry():
    found = {'pgbouncer1': ['app', 'app_ro'], 'pgbouncer2': ['app', 'app_ro']}
    read_write, read_only = split_entries(found, LAB_STANDBYS)
    assert read_write == {'pgbouncer1': ['app'], 'pgbouncer2': ['app']}
    assert read_only == {'pgbouncer1': ['app_ro'], 'pgbouncer2': ['app_ro']}


def test_bare_entry_name_is_read_only_on_every_pgbouncer():
    standbys = [{'name': 's1', 'host': 'h', 'pgbouncer_databases': ['app_ro']}]
    read_write, read_only = split_entries({'b1': ['app', 'app_ro'], 'b2': ['app_ro', 'app']}, standbys)
    assert read_only == {'b1': ['app_ro'], 'b2': ['app_ro']}
    assert read_write == {'b1': ['app'], 'b2': ['app']}


def test_entry_of_one_pgbouncer_stays_read_write_on_another():
    standbys = [{'name': 's1', 'host': 'h', 'pgbouncer_databases': ['b1:reports']}]
    read_write, read_only = split_entries({'b1': ['app', 'reports'], 'b2': ['app', 'reports']}, standbys)
    assert read_only == {'b1': ['reports'], 'b2': []}
    assert read_write == {'b1': ['app'], 'b2': ['app', 'reports']}


def test_standby_entries_that_are_not_deploy_entries_are_ignored():
    standbys = [{'name': 's1', 'host': 'h', 'pgbouncer_databases': ['otherdb_ro', 'b1:app_ro']}]
    read_write, read_only = split_entries({'b1': ['app', 'app_ro']}, standbys)
    assert read_only == {'b1': ['app_ro']} and read_write == {'b1': ['app']}


def test_no_standby_mapping_means_everything_is_read_write():
    read_write, read_only = split_entries({'b1': ['app', 'app_ro']}, [{'name': 's', 'host': 'h'}])
    assert read_write == {'b1': ['app', 'app_ro']} and read_only == {'b1': []}


def test_two_standbys_on_one_entry_both_count_once():
    standbys = [{'name': 's1', 'host': 'a', 'pgbouncer_databases': ['ro']},
                {'name': 's2', 'host': 'b', 'pgbouncer_databases': ['b1:ro']}]
    assert standby_entries_by_pgbouncer(standbys, ['b1'])['s2'] == {'b1': ['ro']}
    read_write, read_only = split_entries({'b1': ['ro', 'rw']}, standbys)
    assert read_only == {'b1': ['ro']} and read_write == {'b1': ['rw']}


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
