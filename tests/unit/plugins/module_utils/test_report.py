"""The report model: entries from module results -> one report dict -> text/JSON."""

import json

import pytest

from ansible_collections.fastdowntime.postgresql.plugins.module_utils.budget import BudgetClock, BudgetExceeded
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.report import (
    SCHEMA_VERSION,
    build_report,
    entry_from_result,
    format_ms,
    heading,
    format_offset,
    is_fastdowntime_result,
    render_text,
    to_json,
)

T0 = 1_780_000_000.0  # the drain starts here in every scenario below


def phase(name, host, start, duration, budget_left=None, status='ok', **detail):
    """A phase record shaped like BudgetClock.phase() makes it (times in s from T0)."""
    return {
        'phase': name, 'host': host, 'start_offset_ms': 0.0, 'started_at': T0 + start,
        'duration_ms': duration * 1000, 'budget_left_ms': budget_left, 'status': status,
        'detail': detail,
    }


def normal_run():
    """pre-flight (before the outage), then one outage module with its outage dict."""
    preflight = entry_from_result({'changed': False, 'phases': [
        phase('pre-flight', 'primary', -5.0, 0.8),
    ]}, task='Pre-flight', host='localhost', action='fastdowntime.postgresql.preflight')
    outage = entry_from_result({
        'changed': True,
        'deploy_id': 'fdt-20260522-1',
        'outcome': 'done',
        'phases': [
            phase('drain', 'pgbouncer1', 0.0, 0.05, 59950),
            phase('drain', 'pgbouncer2', 0.001, 0.06, 59939),
            phase('schema application', 'primary', 0.07, 0.2, 59730),
            phase('replica sync', 'standby1', 0.27, 0.03, 59700),
            phase('replica sync', 'standby2', 0.27, 0.04, 59690),
            phase('resume', 'pgbouncer1', 0.31, 0.01, 59680, max_client_wait_ms=301.5),
            phase('resume', 'pgbouncer2', 0.31, 0.02, 59670, max_client_wait_ms=318.25),
        ],
        'outage': {
            'started_at': T0, 'ended_at': T0 + 0.33, 'outage_ms': 330.4,
            'max_client_wait_ms': 318.25, 'estimate_ms': 400,
            'standby_replay_ms': {'standby1': 30.0, 'standby2': 40.0},
            'patches': [{'file': 'patch-2211-01-0.sql', 'duration_ms': 120.0},
                        {'file': 'patch-2211-02-0.sql', 'duration_ms': 80.0}],
            'budget_ms': 60000,
        },
    }, task='Outage', host='localhost', action='fastdowntime.postgresql.outage')
    return preflight + outage


# -- entries -------------------------------------------------------------------

def test_entry_keeps_what_the_report_needs():
    [entry] = entry_from_result({'phases': [phase('drain', 'pgbouncer1', 0, 0.1)], 'failed': True,
                                 'msg': 'pgbouncer1 (10.213.47.21:6432): drain\n missed   deadline',
                                 'deploy_id': 'd1'},
                                task='Drain', host='localhost', action='fastdowntime.postgresql.pgbouncer')
    assert entry['task'] == 'Drain'
    assert entry['host'] == 'localhost'
    assert entry['failed'] is True
    assert entry['deploy_id'] == 'd1'
    assert entry['msg'] == 'pgbouncer1 (10.213.47.21:6432): drain missed deadline'
    assert [p['phase'] for p in entry['phases']] == ['drain']


def test_entry_message_never_carries_a_password():
    [entry] = entry_from_result({'msg': "connect failed: password='s3cret' host=x", 'failed': True})
    assert 's3cret' not in entry['msg']


def test_entry_walks_loop_items():
    result = {'results': [
        {'phases': [phase('resume', 'pgbouncer1', 0, 0.01)], 'changed': True},
        {'phases': [phase('resume', 'pgbouncer2', 0, 0.01)], 'failed': True, 'msg': 'boom'},
        'not a dict',
    ]}
    entries = entry_from_result(result, task='Resume', host='pgb')
    assert [e['phases'][0]['host'] for e in entries] == ['pgbouncer1', 'pgbouncer2']
    assert [e['failed'] for e in entries] == [False, True]


def test_entry_failed_flag_override():
    result = {'failed': True, 'phases': []}
    assert entry_from_result(result)[0]['failed'] is True
    assert entry_from_result(result, failed=False)[0]['failed'] is False  # ignore_errors
    loop = {'failed': True, 'results': [{'failed': True, 'phases': []}, {'phases': []}]}
    assert [e['failed'] for e in entry_from_result(loop, failed=True)] == [True, False]
    assert [e['failed'] for e in entry_from_result(loop, failed=False)] == [False, False]


def test_entry_ignores_garbage():
    assert entry_from_result(None) == []
    [entry] = entry_from_result({'phases': 'nope', 'outage': 3, 'outcome': 7})
    assert entry['phases'] == [] and entry['outage'] is None and entry['outcome'] is None


@pytest.mark.parametrize('result, action, expected', [
    ({'phases': []}, None, True),
    ({'changed': True}, 'fastdowntime.postgresql.schema_apply', True),
    ({'changed': True}, 'ansible.builtin.command', False),
    # CI checks and reports of the collection are no deploy: no timeline, no report replaced.
    ({'changed': False, 'passed': True}, 'fastdowntime.postgresql.change_rule', False),
    ({'changed': False}, 'fastdowntime.postgresql.cycle_time', False),
    ({'results': [{'phases': []}]}, None, True),
    ({'results': [{'rc': 0}]}, None, False),
    ('x', None, False),
])
def test_is_fastdowntime_result(result, action, expected):
    assert is_fastdowntime_result(result, action) is expected


# -- a normal run -----------------------------------------------------------

def test_normal_run_report():
    report = build_report(normal_run(), generated_at=T0 + 1)
    assert report['schema_version'] == SCHEMA_VERSION == 1
    assert report['outcome'] == 'done'
    assert report['failed_phase'] is None and report['error'] is None
    assert report['deploy_id'] == 'fdt-20260522-1'
    assert report['budget_ms'] == 60000
    assert report['generated_at'] == '2026-05-28T20:26:41.000Z'
    assert report['outage'] == {
        'started_at': '2026-05-28T20:26:40.000Z',
        'ended_at': '2026-05-28T20:26:40.330Z',
        'outage_ms': 330.4,            # the module's own monotonic measurement
        'max_client_wait_ms': 318.2,   # longest wait any pgbouncer reported
        'estimate_ms': 400.0,
        'pgbouncer_state': None,       # no module said what a client saw
        'standby_catch_up': [],        # no module said how far behind the standbys were before the clock
        'resumed_by_others': [],
        'nothing_pending': False,
    }
    assert report['warnings'] == []
    assert report['standby_replay_ms'] == {'standby1': 30.0, 'standby2': 40.0}
    assert report['patches'] == [{'file': 'patch-2211-01-0.sql', 'duration_ms': 120.0},
                                 {'file': 'patch-2211-02-0.sql', 'duration_ms': 80.0}]


def test_an_entry_resumed_by_someone_else_is_kept_and_printed_once_as_a_warning():
    entries = normal_run()
    line = 'RESUMED BY SOMEONE ELSE inside the window: fdtdemo on pgbouncer1 (10.0.0.21:6432) - ...'
    entries[-1]['outage'] = dict(entries[-1]['outage'], warnings=[line], resumed_by_others=[
        {'pgbouncer': 'pgbouncer1 (10.0.0.21:6432)', 'entry': 'fdtdemo', 'restarted': False}])
    report = build_report(entries, generated_at=T0 + 1)
    assert report['outcome'] == 'done' and report['warnings'] == [line]
    assert report['outage']['resumed_by_others'][0]['entry'] == 'fdtdemo'
    text = render_text(report)
    assert [t for t in text if 'RESUMED BY SOMEONE ELSE' in t] == ['WARNING: %s' % line]


def test_rows_are_chronological_with_offsets_from_the_drain_start():
    report = build_report(normal_run())
    rows = report['phases']
    assert [(r['phase'], r['host']) for r in rows] == [
        ('pre-flight', 'primary'),
        ('drain', 'pgbouncer1'), ('drain', 'pgbouncer2'),
        ('schema application', 'primary'),
        ('replica sync', 'standby1'), ('replica sync', 'standby2'),
        ('resume', 'pgbouncer1'), ('resume', 'pgbouncer2'),
    ]
    assert [r['start_offset_ms'] for r in rows] == [-5000.0, 0.0, 1.0, 70.0, 270.0, 270.0, 310.0, 310.0]
    assert rows[0]['budget_left_ms'] is None
    assert rows[3] == {
        'phase': 'schema application', 'patch': None, 'host': 'primary', 'task': 'Outage',
        'start_offset_ms': 70.0, 'started_at': '2026-05-28T20:26:40.070Z', 'duration_ms': 200.0,
        'budget_left_ms': 59730.0, 'status': 'ok', 'error': None, 'detail': {},
    }


def test_outage_from_phases_when_no_module_reports_one():
    """drain start -> end of the last resume, over separate tasks on several hosts."""
    entries = (
        entry_from_result({'phases': [phase('drain', 'pgbouncer1', 0.0, 0.05)]}, task='Pause', host='pgbouncer1')
        + entry_from_result({'phases': [phase('drain', 'pgbouncer2', 0.02, 0.05)]}, task='Pause', host='pgbouncer2')
        + entry_from_result({'phases': [phase('schema application', None, 0.1, 0.5)], 'changed': True},
                            task='Cold', host='localhost')
        + entry_from_result({'phases': [phase('resume', 'pgbouncer1', 0.7, 0.01, max_client_wait_ms=650)]},
                            task='Resume', host='pgbouncer1')
        + entry_from_result({'phases': [phase('resume', 'pgbouncer2', 0.72, 0.03, max_client_wait_ms=700)]},
                            task='Resume', host='pgbouncer2')
    )
    report = build_report(entries)
    assert report['outcome'] == 'done'
    assert report['outage']['outage_ms'] == 750.0
    assert report['outage']['ended_at'] == '2026-05-28T20:26:40.750Z'
    assert report['outage']['max_client_wait_ms'] == 700.0
    # A phase without its own host is attributed to the host that ran the task.
    assert report['phases'][2]['host'] == 'localhost'


def test_several_outage_dicts_span_first_start_to_last_end():
    entries = (entry_from_result({'outage': {'started_at': T0, 'ended_at': T0 + 0.2, 'outage_ms': 200}})
               + entry_from_result({'outage': {'started_at': T0 + 0.1, 'ended_at': T0 + 0.5, 'outage_ms': 400}}))
    report = build_report(entries)
    assert report['outage']['outage_ms'] == 500.0
    assert report['outcome'] == 'done'


def test_patch_durations_merge_by_file():
    entries = entry_from_result({'phases': [
        phase('schema application', 'primary', 0, 0.1, patches=[{'file': 'a.sql', 'duration_ms': 1},
                                                                {'file': 'b.sql', 'duration_ms': 2}]),
    ], 'outage': {'patches': [{'file': 'b.sql', 'duration_ms': 5}, {'file': 'c.sql'}, {'no': 'file'}]}})
    # First-seen order; the module's outage summary has the last word on b.sql.
    assert build_report(entries)['patches'] == [
        {'file': 'a.sql', 'duration_ms': 1.0},
        {'file': 'b.sql', 'duration_ms': 5.0},
        {'file': 'c.sql', 'duration_ms': None},
    ]


# -- outcomes --------------------------------------------------------------------

def test_nothing_to_do():
    entries = entry_from_result({'changed': False, 'phases': [phase('pre-flight', 'primary', 0, 0.3),
                                                              phase('plan', 'primary', 0.3, 0.01)]})
    report = build_report(entries)
    assert report['outcome'] == 'nothing to do'
    assert report['outage']['outage_ms'] is None


def test_a_preflight_alone_passed_and_a_deploy_with_nothing_pending_is_nothing_to_do():
    preflight = entry_from_result({'changed': False, 'outcome': 'passed',
                                   'phases': [phase('pre-flight', 'primary', 0, 0.3)]})
    assert build_report(preflight)['outcome'] == 'passed'
    outage = entry_from_result({'changed': False, 'outcome': 'nothing to do', 'phases': []})
    assert build_report(preflight + outage)['outcome'] == 'nothing to do'
    done = entry_from_result({'changed': True, 'outcome': 'done', 'phases': [phase('drain', 'pgbouncer1', 0, 0.01)]})
    assert build_report(preflight + done)['outcome'] == 'done'


def test_no_results_at_all_is_nothing_to_do():
    assert build_report([])['outcome'] == 'nothing to do'


def test_changed_without_an_outage_is_done():
    entries = entry_from_result({'changed': True, 'phases': [phase('hot patches', 'primary', 0, 2)]})
    assert build_report(entries)['outcome'] == 'done'


def test_abort_names_the_failed_phase_and_its_error():
    """A patch sleeping past a 3 s budget: schema application fails, then
    rollback and resume succeed; the report names schema application."""
    entries = entry_from_result({'failed': True, 'msg': 'aborted: budget spent in phase schema application', 'phases': [
        phase('drain', 'pgbouncer1', 0, 0.05, 2950),
        phase('schema application', 'primary', 0.05, 2.45, 500, status='failed',
              error='budget spent in phase schema application: 0 ms left for work, step needs 1 ms'),
        phase('rollback', 'primary', 2.5, 0.01, 490),
        phase('resume', 'pgbouncer1', 2.51, 0.02, 470, max_client_wait_ms=2520),
    ]}, task='Outage', host='localhost')
    report = build_report(entries, play_failed=True)
    assert report['outcome'] == 'aborted in schema application'
    assert report['failed_phase'] == {'phase': 'schema application', 'host': 'primary', 'task': 'Outage'}
    assert report['error'].startswith('budget spent in phase schema application')
    assert report['play_failed'] is True
    assert report['outage']['outage_ms'] == 2530.0
    assert report['phases'][1]['status'] == 'failed'


def test_nested_phases_blame_the_innermost_failure():
    entries = entry_from_result({'failed': True, 'phases': [
        phase('outage', 'localhost', 0, 1.0, status='failed', error='lock timeout'),
        phase('lock wait', 'primary', 0.1, 0.5, status='failed', error='lock timeout'),
    ]})
    assert build_report(entries)['outcome'] == 'aborted in lock wait'


def test_failed_preflight_phase_is_a_refusal():
    entries = entry_from_result({'failed': True, 'msg': 'standby2 lags 30 s', 'phases': [
        phase('pre-flight', 'standby2', 0, 0.2, status='failed', error='standby2 (10.213.47.12:5432): lags 30 s'),
    ]})
    report = build_report(entries)
    assert report['outcome'] == 'refused by pre-flight'
    assert report['failed_phase']['host'] == 'standby2'
    assert report['error'] == 'standby2 (10.213.47.12:5432): lags 30 s'


def test_a_module_saying_how_it_ended_wins():
    entries = entry_from_result({'failed': True, 'outcome': 'aborted in replica sync', 'phases': [
        phase('replica sync', 'standby1', 0, 3, status='failed', error='standby1 not caught up'),
        phase('outage', 'localhost', 0, 3.1, status='failed', error='x'),
    ]}, task='Outage', host='localhost')
    report = build_report(entries)
    assert report['outcome'] == 'aborted in replica sync'
    assert report['failed_phase'] == {'phase': 'replica sync', 'host': 'localhost', 'task': 'Outage'}
    assert report['error'] == 'standby1 not caught up'


def test_module_refusal():
    entries = entry_from_result({'failed': True, 'outcome': 'refused by pre-flight', 'msg': 'not ready'})
    report = build_report(entries)
    assert report['outcome'] == 'refused by pre-flight'
    assert report['failed_phase']['phase'] is None
    assert report['error'] == 'not ready'


def test_outage_module_abort_as_plugins_outage_returns_it():
    """The shape plugins/module_utils/outage.py returns when a patch sleeps past the budget."""
    error = 'primary (10.213.47.10:5432): budget spent in phase cold_patch; rolled back, nothing applied'
    entries = entry_from_result({
        'failed': True, 'changed': False, 'deploy_id': 'fdt-x', 'outcome': 'aborted in schema application',
        'msg': 'outage aborted in schema application: ' + error, 'budget_ms': 3000.0,
        'phases': [
            phase('drain', 'pgbouncer1 (10.213.47.21:6432)', 0.0, 0.03, 2970),
            phase('drain', 'pgbouncer2 (10.213.47.22:6432)', 0.0, 0.04, 2960),
            phase('cold_transaction', 'primary (10.213.47.10:5432)', 0.04, 2.5, 460, status='failed', error=error),
            phase('cold_patch', 'primary (10.213.47.10:5432)', 0.05, 2.45, 500, status='failed', error=error),
            phase('resume', 'pgbouncer1 (10.213.47.21:6432)', 2.55, 0.01, 440),
            phase('resume', 'pgbouncer2 (10.213.47.22:6432)', 2.55, 0.02, 430),
        ],
        'outage': {'started_at': T0, 'ended_at': T0 + 2.571, 'outage_ms': 2571.0, 'max_client_wait_ms': 2540,
                   'standby_replay_ms': {}, 'patches': [], 'transaction_ms': None, 'commit_lsn': None},
    }, task='Outage', host='localhost')
    report = build_report(entries, play_failed=True)
    assert report['outcome'] == 'aborted in schema application'
    assert report['failed_phase'] == {'phase': 'schema application', 'host': 'localhost', 'task': 'Outage'}
    assert report['error'] == 'outage aborted in schema application: ' + error
    assert report['outage']['outage_ms'] == 2571.0
    assert report['outage']['max_client_wait_ms'] == 2540.0
    assert report['budget_ms'] == 3000.0
    assert report['patches'] == []


def test_a_refusal_worded_by_the_module_is_kept():
    entries = entry_from_result({'failed': True, 'outcome': 'refused before the outage', 'phases': [],
                                 'msg': 'primary (10.213.47.10:5432): cannot connect'}, task='Outage')
    report = build_report(entries)
    assert report['outcome'] == 'refused before the outage'
    assert report['error'] == 'primary (10.213.47.10:5432): cannot connect'


def test_check_mode_plan_is_planned():
    entries = entry_from_result({'changed': True, 'outcome': 'planned', 'phases': []})
    assert build_report(entries, check_mode=True)['outcome'] == 'planned'


def test_patches_named_by_name_as_apply_cold_returns_them():
    entries = entry_from_result({'outage': {'started_at': T0, 'patches': [
        {'name': 'patch-2211-01-0.sql', 'revision': '2211-01-0', 'duration_ms': 3.25}]}})
    assert build_report(entries)['patches'] == [{'file': 'patch-2211-01-0.sql', 'duration_ms': 3.2}]


def test_a_step_failing_after_the_window_committed_heads_the_timeline_with_the_schema_committed():
    # tryit9 r12/r13: app2's restart failed after a committed, replayed window.
    window = entry_from_result({'changed': True, 'outcome': 'done', 'deploy_id': 'fdt-1',
                                'phases': [phase('drain', 'pgbouncer1', 0, 0.01), phase('resume', 'pgbouncer1', 0.05, 0.01)],
                                'outage': {'started_at': T0, 'ended_at': T0 + 0.06, 'outage_ms': 60.0,
                                           'standby_replay_ms': {'standby1': 2.0, 'standby2': 3.0}}},
                               task='Outage', host='localhost', action='fastdowntime.postgresql.outage')
    restart = entry_from_result({'failed': True, 'msg': 'app2: restart failed (exit 3)',
                                 'phases': [phase('app_restart', 'app2', 1.0, 0.5, status='failed')]},
                                task='Restart', host='app2')
    report = build_report(window + restart)
    assert report['outcome'] == 'aborted in app_restart' and report['schema_committed'] is True
    assert render_text(report)[0] == (
        'fastdowntime timeline: schema committed and replayed (standby1, standby2), then app_restart failed on app2 '
        '-> fix the app on app2 (see its log), then restart the apps again: --tags restart (the schema needs no '
        'deploy again)  (deploy fdt-1)')
    # The window's own abort after its commit (the resume): committed on the primary, no replay to name.
    aborted = entry_from_result({'changed': True, 'failed': True, 'outcome': 'aborted in resume', 'msg': 'RESUME FAILED',
                                 'phases': [], 'outage': {'started_at': T0, 'ended_at': T0 + 0.06}},
                                task='Outage', host='localhost')
    assert heading(build_report(aborted)) == (
        'schema committed on the primary, then resume failed on localhost -> do what the error says; the schema stays '
        'committed (a deploy again applies only what is pending)')
    # A post-window hot patch failing (apache/devlake #3113, migtools/mig-controller #790: a migration that
    # succeeded shown as failed): the window's schema stays committed.
    hot = entry_from_result({'failed': True, 'msg': 'patch-2211-03-1.sql line 1: lock timeout',
                             'phases': [phase('hot_patch', 'primary', 0.2, 0.1, status='failed')]},
                            task='Hot patches after the window', host='primary')
    assert heading(build_report(window + hot)).startswith(
        'schema committed and replayed (standby1, standby2), then hot_patch failed on primary -> do what the error '
        'says; the schema stays committed')
    # Nothing committed: the outcome as it was.
    assert heading(build_report(restart)) == 'aborted in app_restart'


def test_failed_task_without_failed_phases():
    entries = (entry_from_result({'phases': [phase('drain', 'pgbouncer1', 0, 0.1)]}, task='Drain')
               + entry_from_result({'failed': True, 'msg': 'unreachable'}, task='Restart app', host='app1'))
    report = build_report(entries)
    assert report['outcome'] == 'aborted in Restart app'
    assert report['failed_phase'] == {'phase': 'Restart app', 'host': 'app1', 'task': 'Restart app'}
    assert report['error'] == 'unreachable'


def test_failed_preflight_module_without_phases_is_a_refusal():
    entries = entry_from_result({'failed': True, 'msg': 'no'}, task='Check', action='fastdowntime.postgresql.preflight')
    assert build_report(entries)['outcome'] == 'refused by pre-flight'


def test_real_budget_clock_records_feed_the_report():
    """The records a BudgetClock makes are exactly what the report reads."""
    now = [100.0]
    clock = BudgetClock(3, reserve_seconds=0.5, clock=lambda: now[0], wall=lambda: T0 + now[0] - 100)
    clock.start()
    with clock.phase('drain', host='pgbouncer1'):
        now[0] += 0.1
    with pytest.raises(BudgetExceeded):
        with clock.phase('schema application', host='primary'):
            now[0] += 2.5
            clock.require('schema application', 0.1)
    with clock.phase('resume', host='pgbouncer1'):
        now[0] += 0.05
    report = build_report(entry_from_result({'failed': True, 'phases': clock.phases}))
    assert report['outcome'] == 'aborted in schema application'
    assert report['outage']['outage_ms'] == 2650.0
    assert [r['budget_left_ms'] for r in report['phases']] == [2900.0, 400.0, 350.0]


# -- rendering -------------------------------------------------------------------

def test_render_text_table():
    lines = render_text(build_report(normal_run()))
    assert lines[0] == 'fastdowntime timeline: done  (deploy fdt-20260522-1)'
    assert lines[1].split() == ['PHASE', 'HOST', 'START', 'DURATION', 'BUDGET', 'LEFT', 'STATUS']
    # Fixed width: every cell of a column starts where its header starts.
    host_col = lines[1].index('HOST')
    for line in lines[3:11]:
        assert line[host_col - 2:host_col] == '  ' and line[host_col] != ' '
    assert lines[6] == ('schema application  primary     +0.070 s  200.0 ms      59.73 s  ok')
    assert lines[2].startswith('------------------  ')
    assert lines[11] == 'outage (drain start -> last resume): 330.4 ms (estimated 400.0 ms) of a 60.00 s budget'
    assert lines[12] == 'longest client wait (pgbouncer): 318.2 ms'
    assert lines[13] == 'standby replay: standby1 30.0 ms, standby2 40.0 ms'
    assert lines[14] == 'patches: patch-2211-01-0.sql 120.0 ms, patch-2211-02-0.sql 80.0 ms'
    assert len(lines) == 15


def test_render_text_of_an_empty_report():
    lines = render_text(build_report([], check_mode=True))
    assert lines[0] == 'fastdowntime timeline: nothing to do  [check mode]'
    # Nothing to say about an outage, a replay or patches: no line for them.
    assert lines == ['fastdowntime timeline: nothing to do  [check mode]', '(no fastdowntime phases were recorded)']


def test_render_text_shows_the_error():
    entries = entry_from_result({'failed': True, 'phases': [phase('drain', 'pgbouncer1', 0, 1, status='failed',
                                                                  error='client 10.0.0.5:4242 holds a transaction')]})
    lines = render_text(build_report(entries))
    assert lines[0] == 'fastdowntime timeline: aborted in drain'
    assert lines[-1] == 'error: client 10.0.0.5:4242 holds a transaction'


def test_json_round_trip():
    report = build_report(normal_run())
    assert json.loads(to_json(report)) == report


@pytest.mark.parametrize('ms, text', [(None, '-'), (0, '0.0 ms'), (999.94, '999.9 ms'), (1000, '1.00 s'),
                                      (61234.5, '61.23 s'), (-1500, '-1.50 s')])
def test_format_ms(ms, text):
    assert format_ms(ms) == text


@pytest.mark.parametrize('ms, text', [(None, '-'), (0, '+0.000 s'), (70, '+0.070 s'), (-5000, '-5.000 s')])
def test_format_offset(ms, text):
    assert format_offset(ms) == text


def test_nothing_pending_says_no_outage_was_taken():
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils import report as rp
    entries = rp.entry_from_result({'phases': [], 'outcome': 'nothing to do', 'deploy_id': 'd1'},
                                   task='Plan the outage', action='fastdowntime.postgresql.outage')
    built = rp.build_report(entries)
    assert built['outage']['nothing_pending'] is True
    assert built['outage']['outage_ms'] is None
    assert 'outage: none - no cold patch was pending, nothing was paused' in rp.render_text(built)


def test_an_outage_is_not_nothing_pending():
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils import report as rp
    phase = {'phase': 'drain', 'host': 'pgbouncer1', 'started_at': 100.0, 'duration_ms': 5.0,
             'budget_left_ms': 9990.0, 'status': 'ok', 'detail': {}}
    resume = dict(phase, phase='resume', started_at=100.05)
    entries = rp.entry_from_result({'phases': [phase, resume], 'outcome': 'done', 'deploy_id': 'd2'},
                                   task='outage', action='fastdowntime.postgresql.outage')
    built = rp.build_report(entries)
    assert built['outage']['nothing_pending'] is False
    assert built['outage']['outage_ms'] > 0


def test_rows_in_the_order_they_ended_so_budget_left_only_goes_down():
    entries = entry_from_result({'phases': [
        phase('drain', 'pgbouncer1', 0, 0.001, budget_left=9999),
        phase('cold_transaction', 'primary', 0.001, 0.005, budget_left=9994, patch_files=['a.sql', 'b.sql']),
        phase('cold_patch', 'primary', 0.002, 0.001, budget_left=9997, patch='a.sql'),
        phase('cold_patch', 'primary', 0.003, 0.001, budget_left=9996, patch='b.sql'),
    ]}, task='Outage', host='localhost')
    lines = render_text(build_report(entries))
    rows = [line.split() for line in lines[3:7]]
    assert [r[0] for r in rows] == ['drain', 'cold_patch', 'cold_patch', 'cold_transaction']
    assert [r[1] for r in rows[1:3]] == ['a.sql', 'b.sql']
    # Rounded down: 9,996 ms left is shown as 9.99 s, never 10.00 s.
    assert [r[-3] for r in rows] == ['9.99', '9.99', '9.99', '9.99']


def test_check_mode_shows_the_plan():
    result = {
        'plan': {'pending_hot': [{'name': 'patch-1-01-0.sql'}], 'pending_cold': [{'name': 'patch-1-02-0.sql'}],
                 'applied': ['patch-1-00-0.sql']},
        'lint': [{'file': 'patch-1-02-0.sql', 'line': 3, 'patch_kind': 'COLD', 'kind': 'table rewrite',
                  'estimate_seconds': 0.25, 'replay_seconds': 0.05}],
        'estimate': {'total_ms': 420.0, 'lint': {'throughput_source': 'measured: 2048 pages of public.t in 0.010s'}},
        'checks': [{'check': 'budget', 'status': 'pass', 'summary': 'estimated outage 0.420s within 9.5s'},
                   {'check': 'pgbouncer', 'status': 'pass', 'host': 'pgb1', 'summary': 'ok'},
                   {'check': 'replication_lag', 'status': 'pass', 'host': 'db2', 'summary': 'ok'}],
        'phases': [phase('preflight', 'primary', 0, 0.1)],
    }
    report = build_report(entry_from_result(result, task='Pre-flight', host='primary'), check_mode=True)
    assert report['plan']['phases'] == [{'phase': 'hot', 'patches': ['patch-1-01-0.sql']},
                                        {'phase': 'cold', 'patches': ['patch-1-02-0.sql']}]
    assert report['plan']['statements'][0]['estimate_ms'] == 300.0
    assert report['plan']['scan_throughput'] == 'measured: 2048 pages of public.t in 0.010s'
    lines = render_text(report)
    start = lines.index('plan:')
    assert lines[start + 1:start + 6] == [
        '  hot patches: patch-1-01-0.sql',
        '  cold patches: patch-1-02-0.sql',
        '  patch-1-02-0.sql line 3 (cold): table rewrite, estimated 300.0 ms',
        '  window: drain pgb1 -> cold patches in one transaction -> wait for db2 -> resume',
        '  budget: estimated outage 0.420s within 9.5s',
    ]


def test_a_refusal_lists_each_failed_check_with_its_fix():
    result = {'checks': [{'check': 'connection', 'status': 'fail', 'summary': 'db2: host unreachable',
                          'action': 'bring db2 up'},
                         {'check': 'connection', 'status': 'pass', 'summary': 'db1: connected'}],
              'phases': [phase('preflight', 'primary', 0, 0.1, status='failed', error='connection: db2: unreachable')]}
    lines = render_text(build_report(entry_from_result(result, task='Pre-flight', host='primary')))
    assert lines[-1] == 'problem: connection: db2: host unreachable -> bring db2 up'
    assert not any(line.startswith('error: ') for line in lines)


def test_the_plan_shows_the_phases_in_numbered_order_when_the_plan_gives_them():
    phases = [{'phase': 'cold', 'patches': ['patch-1-01-0.sql']},
              {'phase': 'post-window hot', 'patches': ['patch-1-02-0.sql']},
              {'phase': 'next deploy', 'patches': ['patch-1-03-0.sql']}]
    result = {'plan': {'pending_hot': [], 'pending_cold': [{'name': 'patch-1-01-0.sql'}], 'phases': phases},
              'phases': [phase('preflight', 'primary', 0, 0.1)]}
    report = build_report(entry_from_result(result, task='Pre-flight', host='primary'), check_mode=True)
    assert report['plan']['phases'] == phases
    lines = render_text(report)
    start = lines.index('plan:')
    assert lines[start + 1:start + 4] == ['  cold patches: patch-1-01-0.sql',
                                          '  post-window hot patches: patch-1-02-0.sql',
                                          '  next deploy patches: patch-1-03-0.sql']


def test_the_schema_now_as_each_database_reported_it():
    entries = normal_run()
    entries[-1]['revisions'] = [
        {'host': 'primary (10.0.0.5:5432)', 'role': 'primary', 'revision': '2211-02-0', 'error': None},
        {'host': 'standby1 (10.0.0.6:5432)', 'role': 'standby', 'revision': '2211-02-0', 'error': None},
        {'host': 'standby2 (10.0.0.7:5432)', 'role': 'standby', 'revision': None, 'error': 'no answer within 2.0 s'},
    ]
    report = build_report(entries)
    assert report['revisions'] == entries[-1]['revisions']
    assert json.loads(to_json(report))['revisions'][2]['error'] == 'no answer within 2.0 s'
    assert 'schema now: 2211-02-0 on primary (10.0.0.5:5432), standby1 (10.0.0.6:5432); '\
        'unknown (no answer within 2.0 s) on standby2 (10.0.0.7:5432)' in render_text(report)


def test_revisions_come_from_the_outage_result_and_are_left_out_when_no_window_opened():
    rows = [{'host': 'primary (h:5432)', 'role': 'primary', 'revision': None, 'error': None}]
    entries = entry_from_result({'changed': True, 'outcome': 'done', 'phases': [], 'revisions': rows + ['junk']},
                                task='Outage', host='localhost', action='fastdowntime.postgresql.outage')
    report = build_report(entries)
    assert report['revisions'] == rows
    assert 'schema now: no revision recorded on primary (h:5432)' in render_text(report)
    nothing = build_report(entry_from_result({'changed': False, 'outcome': 'nothing to do', 'phases': []}))
    assert nothing['revisions'] == [] and not any(line.startswith('schema now') for line in render_text(nothing))


def test_what_a_client_saw_after_the_window_is_reported_and_printed():
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils import report as rp
    statement = 'NOT ANSWERING CLIENTS after RESUME: fdtdemo on pgbouncer1 (a client got no answer)'
    entries = rp.entry_from_result({'phases': [], 'outcome': 'aborted in resume', 'failed': True,
                                    'outage': {'started_at': 100.0, 'ended_at': 100.1, 'outage_ms': 100.0,
                                               'pgbouncer_state': statement}},
                                   task='outage', action='fastdowntime.postgresql.outage')
    built = rp.build_report(entries)
    assert built['outage']['pgbouncer_state'] == statement
    assert 'pgbouncer after the window: ' + statement in rp.render_text(built)


def test_schema_now_is_read_after_the_hot_patches_that_follow_the_window():
    """Defect 12: 2300-13-1 applied after the window, the report said 2300-12-0 (the outage's read)."""
    def rows(primary, standby, behind=False):
        standby_row = {'host': 'standby1 (h2:5432)', 'role': 'standby', 'revision': standby, 'error': None}
        if behind:
            standby_row['behind'] = True
        return [{'host': 'primary (h1:5432)', 'role': 'primary', 'revision': primary, 'error': None}, standby_row]

    outage = entry_from_result({'changed': True, 'outcome': 'done', 'phases': [], 'revisions': rows('2300-12-0',
                                                                                                    '2300-12-0')},
                               task='Outage', host='localhost', action='fastdowntime.postgresql.outage')
    after = entry_from_result({'results': [{'changed': True, 'phases': [phase('post_window_hot_patch', 'primary', 1, 0.1)],
                                            'revisions': rows('2300-13-1', '2300-13-1')}]},
                              task='Apply', host='localhost', action='fastdowntime.postgresql.schema_apply')
    report = build_report(outage + after)
    assert [r['revision'] for r in report['revisions']] == ['2300-13-1', '2300-13-1']
    assert 'schema now: 2300-13-1 on primary (h1:5432), standby1 (h2:5432)' in render_text(report)
    # A standby that had not replayed the last hot patch when read says so.
    after[0]['revisions'] = rows('2300-13-1', '2300-12-0', behind=True)
    assert ('schema now: 2300-13-1 on primary (h1:5432); 2300-12-0 (still replaying when read) on standby1 (h2:5432)'
            in render_text(build_report(outage + after)))


def test_a_standby_is_behind_only_when_both_reads_succeeded_and_differ():
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.replication import behind
    primary = {'revision': '2300-13-1', 'error': None}
    assert behind({'revision': '2300-12-0', 'error': None}, primary)
    assert behind({'revision': None, 'error': None}, primary)
    assert not behind({'revision': '2300-13-1', 'error': None}, primary)
    assert not behind({'revision': None, 'error': 'no answer within 2.0 s'}, primary)
    assert not behind({'revision': '2300-12-0', 'error': None}, {'revision': None, 'error': 'gone'})
