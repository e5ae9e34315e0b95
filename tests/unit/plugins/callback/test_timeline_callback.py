"""The timeline callback fed with fake Ansible objects (pure logic: mocks are fine here)."""

import json
import os

import pytest
import yaml
try:
    from ansible.template import trust_as_template
except ImportError:  # ansible-core before 2.19 trusts every template
    def trust_as_template(value):
        return value

from ansible_collections.fastdowntime.postgresql.plugins.callback import timeline
from ansible_collections.fastdowntime.postgresql.plugins.callback.timeline import CallbackModule

T0 = 1_780_000_000.0


class FakeDisplay:
    verbosity = 0

    def __init__(self):
        self.lines = []
        self.warnings = []

    def display(self, msg, color=None, **kwargs):
        self.lines.extend(msg.split('\n'))

    def banner(self, msg, color=None, **kwargs):
        self.lines.append('== %s ==' % msg)

    def warning(self, msg, **kwargs):
        self.warnings.append(msg)


class FakeHost:
    def __init__(self, name):
        self.name = name

    def get_name(self):
        return self.name


class FakeTask:
    def __init__(self, name, action):
        self._uuid = 'uuid-%s' % name
        self.name = name
        self.action = action
        self.resolved_action = action

    def get_name(self):
        return self.name


class FakeResult:
    def __init__(self, task, host, result):
        self.task, self.host, self.result = task, host, result


class FakeStats:
    def __init__(self, failures=None, dark=None):
        self.failures = failures or {}
        self.dark = dark or {}


class FakeVariableManager:
    def __init__(self, variables):
        self.variables = variables
        self.asked = []

    def get_vars(self, play=None, host=None):
        self.asked.append(host)
        return dict(self.variables)


class FakePlay:
    def __init__(self, variables=None):
        self.manager = FakeVariableManager(variables or {})

    def get_variable_manager(self):
        return self.manager


def phase(name, host, start, duration, budget_left=None, status='ok', **detail):
    return {'phase': name, 'host': host, 'start_offset_ms': 0.0, 'started_at': T0 + start,
            'duration_ms': duration * 1000, 'budget_left_ms': budget_left, 'status': status, 'detail': detail}


@pytest.fixture
def display():
    return FakeDisplay()


def make_callback(display, report_path=None, play_vars=None, stdout=False):
    """The aggregate callback (``stdout=True``: the quiet stdout callback)."""
    callback = CallbackModule(display=display, stdout=stdout)
    # What set_options() would load from ini/env; the real run test covers that path.
    callback._plugin_options = {'report_path': report_path}
    callback.v2_playbook_on_play_start(FakePlay(play_vars))
    return callback


LOCALHOST = FakeHost('localhost')
OUTAGE_TASK = FakeTask('Run the outage', 'fastdowntime.postgresql.outage')

ABORTED_OUTAGE = {
    'failed': True, 'changed': False, 'deploy_id': 'fdt-1',
    'msg': 'localhost: aborted in schema application: budget spent; rolled back and resumed',
    'phases': [
        phase('drain', 'pgbouncer1', 0.0, 0.05, 2950),
        phase('schema application', 'primary', 0.05, 2.45, 500, status='failed',
              error='budget spent in phase schema application: 0 ms left for work, step needs 1 ms'),
        phase('rollback', 'primary', 2.5, 0.01, 490),
        phase('resume', 'pgbouncer1', 2.51, 0.02, 470, max_client_wait_ms=2520),
    ],
}


def run_outage(callback, result, failed=False):
    callback.v2_runner_on_start(LOCALHOST, OUTAGE_TASK)
    if failed:
        callback.v2_runner_on_failed(FakeResult(OUTAGE_TASK, LOCALHOST, result))
    else:
        callback.v2_runner_on_ok(FakeResult(OUTAGE_TASK, LOCALHOST, result))


# -- documentation ----------------------------------------------------------------

def test_documentation_declares_the_report_path_option():
    doc = yaml.safe_load(timeline.DOCUMENTATION)
    assert doc['name'] == 'timeline' and doc['type'] == 'aggregate'
    option = doc['options']['report_path']
    assert option['env'] == [{'name': 'FASTDOWNTIME_REPORT_PATH'}]
    assert option['ini'] == [{'section': 'callback_timeline', 'key': 'report_path'}]
    assert CallbackModule.CALLBACK_NEEDS_ENABLED is True
    assert CallbackModule.CALLBACK_NAME == 'fastdowntime.postgresql.timeline'


# -- live lines --------------------------------------------------------------------

def test_start_line_for_fastdowntime_tasks_only_with_v(display):
    display.verbosity = 1
    callback = make_callback(display)
    callback.v2_runner_on_start(LOCALHOST, OUTAGE_TASK)
    callback.v2_runner_on_start(LOCALHOST, FakeTask('Gather', 'ansible.builtin.setup'))
    assert display.lines == ['[timeline] start Run the outage (fastdowntime.postgresql.outage) on localhost']


def test_end_lines_one_per_phase(display):
    callback = make_callback(display)
    run_outage(callback, ABORTED_OUTAGE, failed=True)
    assert display.lines == [
        '[timeline] end drain on pgbouncer1: ok in 50.0 ms, budget left 2.95 s',
        '[timeline] end schema application on primary: failed in 2.45 s, budget left 500.0 ms: '
        'budget spent in phase schema application: 0 ms left for work, step needs 1 ms',
        '[timeline] end rollback on primary: ok in 10.0 ms, budget left 490.0 ms',
        '[timeline] end resume on pgbouncer1: ok in 20.0 ms, budget left 470.0 ms',
    ]


def test_phase_without_host_is_shown_on_the_task_host(display):
    callback = make_callback(display)
    callback.v2_runner_on_ok(FakeResult(FakeTask('Probe', 'my.own.module'), FakeHost('db1'),
                                        {'phases': [phase('plan', None, 0, 0.001)]}))
    assert display.lines == ['[timeline] end plan on db1: ok in 1.0 ms, budget left -']


def test_failed_phase_without_error_shows_the_task_message(display):
    callback = make_callback(display)
    task = FakeTask('Info', 'fastdowntime.postgresql.pgbouncer')
    callback.v2_runner_on_failed(FakeResult(task, LOCALHOST, {
        'failed': True, 'msg': '127.0.0.1:25999: cannot connect: connection refused',
        'phases': [{'phase': 'info', 'host': '127.0.0.1:25999', 'duration_ms': 1.6, 'status': 'failed'}]}))
    assert display.lines == ['[timeline] end info on 127.0.0.1:25999: failed in 1.6 ms, budget left -: '
                             '127.0.0.1:25999: cannot connect: connection refused']


def test_end_line_for_a_fastdowntime_task_without_phases_with_v(display, monkeypatch):
    display.verbosity = 1
    now = [50.0]
    monkeypatch.setattr(timeline.time, 'monotonic', lambda: now[0])
    callback = make_callback(display)
    callback.v2_runner_on_start(LOCALHOST, OUTAGE_TASK)
    now[0] += 1.5
    callback.v2_runner_on_failed(FakeResult(OUTAGE_TASK, LOCALHOST, {
        'failed': True, 'msg': 'primary (10.213.47.10:5432): cannot connect\nrefused'}))
    assert display.lines[-1] == ('[timeline] end Run the outage on localhost: failed in 1.50 s: '
                                 'primary (10.213.47.10:5432): cannot connect refused')


def test_other_tasks_print_nothing(display):
    callback = make_callback(display)
    task = FakeTask('Copy', 'ansible.builtin.copy')
    callback.v2_runner_on_start(LOCALHOST, task)
    callback.v2_runner_on_ok(FakeResult(task, LOCALHOST, {'changed': True}))
    callback.v2_playbook_on_stats(FakeStats())
    assert display.lines == []


def test_loop_items_are_read(display):
    callback = make_callback(display)
    task = FakeTask('Resume each', 'fastdowntime.postgresql.pgbouncer')
    callback.v2_runner_on_ok(FakeResult(task, LOCALHOST, {'results': [
        {'phases': [phase('resume', 'pgbouncer1', 0, 0.01)]},
        {'phases': [phase('resume', 'pgbouncer2', 0, 0.02)]},
    ]}))
    assert display.lines == ['[timeline] end resume on pgbouncer1: ok in 10.0 ms, budget left -',
                             '[timeline] end resume on pgbouncer2: ok in 20.0 ms, budget left -']


# -- the end-of-playbook report ----------------------------------------------------

def test_aborted_run_prints_the_table_and_writes_json_from_the_option(display, tmp_path):
    path = tmp_path / 'reports' / 'deploy.json'
    callback = make_callback(display, report_path=str(path),
                             play_vars={'fastdowntime_report_path': str(tmp_path / 'ignored.json')})
    run_outage(callback, ABORTED_OUTAGE, failed=True)
    del display.lines[:]
    callback.v2_playbook_on_stats(FakeStats(failures={'localhost': 1}))

    assert display.lines[0] == '== FASTDOWNTIME TIMELINE =='
    assert display.lines[1] == 'fastdowntime timeline: aborted in schema application  (deploy fdt-1)'
    assert any(line.startswith('schema application  primary') and line.endswith('failed')
               for line in display.lines)
    assert 'outage (drain start -> last resume): 2.53 s' in display.lines
    assert 'longest client wait (pgbouncer): 2.52 s' in display.lines
    assert display.lines[-2:] == ['[timeline] report written to %s' % path,
                                  '[timeline] picture: %s' % path.with_suffix('.html')]
    assert 'aborted in schema application' in path.with_suffix('.html').read_text()

    report = json.loads(path.read_text())
    assert report['schema_version'] == 1
    assert report['outcome'] == 'aborted in schema application'
    assert report['play_failed'] is True
    assert report['failed_phase'] == {'phase': 'schema application', 'host': 'primary', 'task': 'Run the outage'}
    assert [p['phase'] for p in report['phases']] == ['drain', 'schema application', 'rollback', 'resume']
    assert [p['start_offset_ms'] for p in report['phases']] == [0.0, 50.0, 2500.0, 2510.0]
    assert not (tmp_path / 'ignored.json').exists()
    assert sorted(os.listdir(path.parent)) == ['deploy.html', 'deploy.json']  # no temporary file left


def test_report_path_from_the_play_variable_templated(display, tmp_path):
    play_vars = {'report_dir': str(tmp_path),
                 'fastdowntime_report_path': trust_as_template('{{ report_dir }}/timeline.json')}
    callback = make_callback(display, play_vars=play_vars)
    run_outage(callback, {'changed': True, 'phases': [phase('drain', 'pgbouncer1', 0, 0.1),
                                                      phase('resume', 'pgbouncer1', 0.2, 0.1)]})
    callback.v2_playbook_on_stats(FakeStats())
    report = json.loads((tmp_path / 'timeline.json').read_text())
    assert report['outcome'] == 'done'
    assert report['outage']['outage_ms'] == 300.0
    # The variable is read as the first host that ran a task of the play sees it (so are the deploy id
    # and database the window task's interrupted line would name).
    assert set(callback._play.manager.asked) == {LOCALHOST}


def test_no_path_prints_only_the_table(display):
    callback = make_callback(display)
    run_outage(callback, {'changed': False, 'phases': [phase('plan', 'primary', 0, 0.01)]})
    callback.v2_playbook_on_stats(FakeStats())
    assert 'fastdowntime timeline: nothing to do' in display.lines
    assert not any('report written' in line for line in display.lines)


def test_a_deploy_failing_in_another_module_after_a_fastdowntime_task_reports_it(display, tmp_path):
    path = tmp_path / 'r.json'
    callback = make_callback(display, play_vars={'fastdowntime_report_path': str(path)})
    run_outage(callback, {'changed': True, 'phases': [phase('drain', 'pgbouncer1', 0, 0.1),
                                                      phase('resume', 'pgbouncer1', 0.2, 0.1)]})
    task = FakeTask('Restart the app', 'ansible.builtin.systemd_service')
    callback.v2_runner_on_start(FakeHost('app1'), task)
    callback.v2_runner_on_failed(FakeResult(task, FakeHost('app1'), {'failed': True, 'msg': 'unit not found'}))
    callback.v2_playbook_on_stats(FakeStats(failures={'app1': 1}))
    report = json.loads(path.read_text())
    assert report['outcome'] == 'aborted in Restart the app'
    assert report['failed_phase']['host'] == 'app1'
    assert report['error'] == 'unit not found'


def test_a_report_variable_alone_does_not_replace_the_last_report(display, tmp_path):
    """group_vars/all often sets fastdowntime_report_path for every playbook."""
    path = tmp_path / 'r.json'
    path.write_text('{"outcome": "done"}')
    callback = make_callback(display, play_vars={'fastdowntime_report_path': str(path)})
    task = FakeTask('Set up the lab', 'ansible.builtin.stat')
    callback.v2_runner_on_start(LOCALHOST, task)
    callback.v2_runner_on_failed(FakeResult(task, LOCALHOST, {'failed': True, 'msg': 'no such dir'}))
    callback.v2_playbook_on_stats(FakeStats(failures={'localhost': 1}))
    assert json.loads(path.read_text()) == {'outcome': 'done'}
    assert display.lines == []


def test_global_report_path_is_not_overwritten_by_playbooks_that_deploy_nothing(display, tmp_path):
    path = tmp_path / 'r.json'
    callback = make_callback(display, report_path=str(path))
    task = FakeTask('Ping', 'ansible.builtin.ping')
    callback.v2_runner_on_ok(FakeResult(task, LOCALHOST, {'ping': 'pong'}))
    callback.v2_playbook_on_stats(FakeStats())
    assert not path.exists()
    assert display.lines == []


def test_a_rescued_failure_of_another_module_does_not_abort(display):
    callback = make_callback(display)
    task = FakeTask('Try something', 'ansible.builtin.command')
    callback.v2_runner_on_failed(FakeResult(task, LOCALHOST, {'failed': True, 'msg': 'rc 1'}))
    run_outage(callback, {'changed': True, 'phases': [phase('drain', 'pgbouncer1', 0, 0.1),
                                                      phase('resume', 'pgbouncer1', 0.2, 0.1)]})
    callback.v2_playbook_on_stats(FakeStats())  # the play succeeded: the failure was rescued
    assert 'fastdowntime timeline: done' in display.lines


def test_ignored_errors_do_not_abort(display):
    callback = make_callback(display)
    task = FakeTask('Optional', 'ansible.builtin.command')
    callback.v2_runner_on_failed(FakeResult(task, LOCALHOST, {'failed': True, 'msg': 'rc 1'}), ignore_errors=True)
    run_outage(callback, {'changed': True, 'phases': [phase('drain', 'pgbouncer1', 0, 0.1)]})
    callback.v2_playbook_on_stats(FakeStats(failures={'app1': 1}))
    assert 'fastdowntime timeline: done' in display.lines


def test_ignored_failure_of_a_fastdowntime_task_is_not_a_failed_task(display):
    callback = make_callback(display)
    task = FakeTask('Optional info', 'fastdowntime.postgresql.pgbouncer')
    callback.v2_runner_on_failed(FakeResult(task, LOCALHOST, {'failed': True, 'msg': 'refused', 'changed': False}),
                                 ignore_errors=True)
    run_outage(callback, {'changed': True, 'phases': [phase('drain', 'pgbouncer1', 0, 0.1)]})
    callback.v2_playbook_on_stats(FakeStats())
    assert 'fastdowntime timeline: done' in display.lines


def test_unreachable_host_aborts(display):
    callback = make_callback(display)
    run_outage(callback, {'changed': True, 'phases': [phase('drain', 'pgbouncer1', 0, 0.1)]})
    task = FakeTask('Restart', 'ansible.builtin.systemd')
    callback.v2_runner_on_unreachable(FakeResult(task, FakeHost('app1'), {'unreachable': True,
                                                                          'msg': 'ssh: timed out'}))
    callback.v2_playbook_on_stats(FakeStats(dark={'app1': 1}))
    assert 'fastdowntime timeline: aborted in Restart' in display.lines


def test_unwritable_report_path_is_a_warning_not_a_traceback(display, tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    callback = make_callback(display, report_path=str(blocker / 'r.json'))
    run_outage(callback, {'phases': [phase('drain', 'pgbouncer1', 0, 0.1)]})
    callback.v2_playbook_on_stats(FakeStats())
    [warning] = display.warnings
    assert warning.startswith('[timeline] cannot write the report to %s' % (blocker / 'r.json'))
    assert '\n' not in warning


def test_broken_report_variable_is_a_warning(display):
    play_vars = {'fastdowntime_report_path': trust_as_template('{{ undefined_thing }}/r.json')}
    callback = make_callback(display, play_vars=play_vars)
    run_outage(callback, {'phases': [phase('drain', 'pgbouncer1', 0, 0.1)]})
    callback.v2_playbook_on_stats(FakeStats())
    assert len(display.warnings) == 1 and 'fastdowntime_report_path' in display.warnings[0]
    assert 'fastdowntime timeline: done' in display.lines


def test_check_mode_is_reported(display, monkeypatch, tmp_path):
    monkeypatch.setattr(timeline.context, 'CLIARGS', {'check': True})
    callback = make_callback(display, report_path=str(tmp_path / 'r.json'))
    run_outage(callback, {'changed': True, 'phases': [phase('plan', 'primary', 0, 0.01)]})
    callback.v2_playbook_on_stats(FakeStats())
    assert json.loads((tmp_path / 'r.check.json').read_text())['check_mode'] is True
    assert 'fastdowntime timeline: done  [check mode]' in display.lines
    # no deploy's report there yet: nothing said to be left as it was
    assert not (tmp_path / 'r.json').exists() and not [line for line in display.lines if 'left as it was' in line]


def test_check_mode_leaves_the_last_deploys_report_and_writes_the_plan_beside_it(display, monkeypatch, tmp_path):
    # tryit8 #4: a look at the plan replaced the last real deploy's report
    last = tmp_path / 'r.json'
    last.write_text('{"outcome": "done", "deploy_id": "the last deploy"}')
    (tmp_path / 'r.html').write_text('<p>the last deploy</p>')
    monkeypatch.setattr(timeline.context, 'CLIARGS', {'check': True})
    callback = make_callback(display, report_path=str(last))
    run_outage(callback, {'changed': True, 'phases': [phase('plan', 'primary', 0, 0.01)]})
    callback.v2_playbook_on_stats(FakeStats())
    assert last.read_text() == '{"outcome": "done", "deploy_id": "the last deploy"}'
    assert (tmp_path / 'r.html').read_text() == '<p>the last deploy</p>'
    assert json.loads((tmp_path / 'r.check.json').read_text())['check_mode'] is True
    assert (tmp_path / 'r.check.html').exists()
    assert display.lines[-3:] == ['[timeline] report written to %s' % (tmp_path / 'r.check.json'),
                                  '[timeline] picture: %s' % (tmp_path / 'r.check.html'),
                                  "[timeline] check mode: the last deploy's report %s is left as it was" % last]
    # a real run replaces it
    monkeypatch.setattr(timeline.context, 'CLIARGS', {'check': False})
    callback = make_callback(display, report_path=str(last))
    run_outage(callback, {'changed': True, 'phases': [phase('drain', 'pgbouncer1', 0, 0.1)]})
    callback.v2_playbook_on_stats(FakeStats())
    assert json.loads(last.read_text())['check_mode'] is False


def test_the_check_mode_report_path_is_beside_the_deploys():
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.report import check_report_path
    assert check_report_path('/r/fastdowntime-report.json') == '/r/fastdowntime-report.check.json'
    assert check_report_path('/r/report') == '/r/report.check'
    assert check_report_path('reports/a.b/report.json') == 'reports/a.b/report.check.json'


# -- the quiet stdout callback ------------------------------------------------------

class RecapStats(FakeStats):
    def __init__(self, hosts, failures=None):
        super().__init__(failures=failures)
        self.processed = dict((h, 1) for h in hosts)

    def summarize(self, host):
        return {'failures': self.failures.get(host, 0), 'unreachable': 0}


class FakePlayNamed(FakePlay):
    def __init__(self, name):
        super().__init__()
        self.name = name

    def get_name(self):
        return self.name


def test_quiet_run_prints_the_play_once_its_first_task_runs_and_no_start_lines(display):
    callback = make_callback(display, stdout=True)
    callback.v2_playbook_on_play_start(FakePlayNamed('The outage'))
    callback.v2_runner_on_start(LOCALHOST, OUTAGE_TASK)
    callback.v2_runner_on_start(FakeHost('pgbouncer1'), OUTAGE_TASK)
    assert display.lines == ['== The outage']


def test_quiet_run_prints_a_failure_once_at_the_end(display):
    callback = make_callback(display, stdout=True)
    run_outage(callback, ABORTED_OUTAGE, failed=True)
    # The role's own restatement of the failure, on the same host.
    task = FakeTask('Refuse', 'ansible.builtin.fail')
    callback.v2_runner_on_failed(FakeResult(task, LOCALHOST, {'failed': True, 'msg': 'deploy refused: see above'}))
    callback.v2_playbook_on_stats(RecapStats(['localhost'], failures={'localhost': 1}))
    text = '\n'.join(display.lines)
    # The live phase line says where; the error itself is printed once, at the end.
    assert text.count('budget spent in phase schema application') == 1
    assert display.lines[-2].startswith('error: ') or any(line.startswith('error: ') for line in display.lines)
    assert 'deploy refused: see above' not in text
    assert display.lines[-1] == 'hosts: 0 ok, 1 failed (localhost); details: rerun with -v'


def test_quiet_run_prints_a_failure_of_another_task_once(display):
    callback = make_callback(display, stdout=True)
    task = FakeTask('Check the inventory', 'ansible.builtin.assert')
    task.run_once = True
    callback.v2_runner_on_failed(FakeResult(task, FakeHost('app1'), {
        'failed': True, 'msg': 'inventory: the inventory has no group fastdowntime_primary'}))
    callback.v2_playbook_on_stats(RecapStats(['app1', 'app2'], failures={'app1': 1}))
    assert display.lines == ['FAILED inventory: the inventory has no group fastdowntime_primary',
                             'hosts: 1 ok, 1 failed (app1); details: rerun with -v']


def test_quiet_run_shows_the_pre_flight_verdict_and_warnings(display):
    callback = make_callback(display, stdout=True)
    task = FakeTask('Pre-flight checks', 'fastdowntime.postgresql.preflight')
    callback.v2_runner_on_ok(FakeResult(task, FakeHost('primary'), {
        'summary_lines': ['pre-flight PASSED: 0 failed, 1 warnings, 3 passed',
                          'WARN pgbouncer: pgb1: entry fdtdemo disabled', '    -> it is enabled by the outage',
                          'PASS connection: primary: connected'],
        'phases': [phase('preflight', 'primary', 0, 0.1)]}))
    assert display.lines[1:] == ['  pre-flight PASSED: 0 failed, 1 warnings, 3 passed',
                                 '  WARN pgbouncer: pgb1: entry fdtdemo disabled -> it is enabled by the outage']


def test_quiet_run_prints_the_outages_own_warning_once_in_the_timeline_and_other_warnings_live(display):
    """The outage module warns (module.warn) and puts the same line in its outage's
    ``warnings``: the quiet screen shows it once, under the timeline; the task's other
    warnings stay where they were."""
    callback = make_callback(display, stdout=True)
    line = 'RESUMED BY SOMEONE ELSE inside the window: fdtdemo on pgbouncer1 - find who resumes pgbouncer'
    other = 'drain on pgbouncer1: drain_policy terminate ended backend pid 42'
    result = {'changed': True, 'outcome': 'done', 'deploy_id': 'fdt-2', 'warnings': [other, line],
              'phases': [phase('drain', 'pgbouncer1', 0.0, 0.05, 2950), phase('resume', 'pgbouncer1', 0.1, 0.01)],
              'outage': {'started_at': T0, 'ended_at': T0 + 0.11, 'outage_ms': 110.0, 'warnings': [line]}}
    run_outage(callback, result)
    assert display.warnings == [other]
    callback.v2_playbook_on_stats(RecapStats(['localhost']))
    assert [t for t in display.lines if 'RESUMED BY SOMEONE ELSE' in t] == ['WARNING: %s' % line]
    assert timeline.warning_text({'event': {'msg': line}}) == line and timeline.warning_text(other) == other


def test_a_set_fact_with_fastdowntime_phases_is_a_timeline_row(display):
    callback = make_callback(display)
    task = FakeTask('Skip the restarts', 'ansible.builtin.set_fact')
    callback.v2_runner_on_ok(FakeResult(task, FakeHost('app1'), {'ansible_facts': {'fastdowntime_phases': [
        {'phase': 'app_restart', 'host': 'app1, app2', 'status': 'skipped', 'detail': {'reason': 'no schema change'}}]}}))
    assert display.lines == ['[timeline] app_restart on app1, app2: skipped: no schema change']


def test_the_report_path_comes_from_the_play_that_ran_the_deploy(display, tmp_path):
    callback = make_callback(display, play_vars={'fastdowntime_report_path': str(tmp_path / 'r.json')})
    run_outage(callback, {'phases': [phase('drain', 'pgbouncer1', 0, 0.1)]})
    # A later play (restarts skipped by --skip-tags) sees no host and no variable.
    callback.v2_playbook_on_play_start(FakePlay({}))
    callback.v2_playbook_on_stats(FakeStats())
    assert json.loads((tmp_path / 'r.json').read_text())['phases'][0]['phase'] == 'drain'


def test_quiet_run_leaves_out_a_resume_check_that_found_nothing_to_do(display):
    callback = make_callback(display, stdout=True)
    run_outage(callback, {'changed': True, 'phases': [
        phase('resume', 'pgbouncer1', 0.0, 0.001, 9000),
        phase('resume_verify', 'pgbouncer1', 0.001, 0.0002, 9000, resumed=[], enabled=[]),
        phase('resume_verify', 'pgbouncer2', 0.001, 0.0003, 9000, resumed=['app_rw'], enabled=[]),
    ]})
    assert display.lines == [
        '[timeline] end resume on pgbouncer1: ok in 1.0 ms, budget left 9.00 s',
        '[timeline] end resume_verify on pgbouncer2: ok in 0.3 ms, budget left 9.00 s',
    ]
    loud = FakeDisplay()
    run_outage(make_callback(loud), {'changed': True, 'phases': [
        phase('resume_verify', 'pgbouncer1', 0.0, 0.0002, 9000, resumed=[], enabled=[])]})
    assert loud.lines == ['[timeline] end resume_verify on pgbouncer1: ok in 0.2 ms, budget left 9.00 s']


def test_quiet_run_shows_a_roles_warning_once_though_every_play_checks_the_inventory(display):
    callback = make_callback(display, stdout=True)
    message = ('[WARNING]: fastdowntime_pg_pasword (set for primary) is not a variable of fastdowntime.postgresql: '
               'did you mean fastdowntime_pg_password? (fastdowntime_unknown_variables is warn: the run goes on)')
    for dummy in range(2):
        task = FakeTask('Warn about variables the collection does not know', 'ansible.builtin.debug')
        callback.v2_runner_on_ok(FakeResult(task, FakeHost('primary'), {'msg': message}))
    # Another debug message is no warning.
    callback.v2_runner_on_ok(FakeResult(FakeTask('Say', 'ansible.builtin.debug'), FakeHost('primary'), {'msg': 'hi'}))
    assert display.lines == [message]


def test_the_default_callbacks_own_events_print_only_with_v_on_any_ansible_core(display, monkeypatch):
    """ansible-core 2.16 (the oldest declared) sends every event a callback has a method for: the
    quiet stdout callback printed all 87 task banners of a deploy, and as an aggregate callback it
    would print them beside the run's own stdout callback."""
    seen = []
    monkeypatch.setattr(timeline.DefaultCallback, 'v2_playbook_on_task_start',
                        lambda self, task, is_conditional: seen.append(task.get_name()))
    for stdout in (True, False):
        make_callback(display, stdout=stdout).v2_playbook_on_task_start(OUTAGE_TASK, False)
    assert seen == [] and display.lines == []
    monkeypatch.setattr(display, 'verbosity', 1)
    CallbackModule(display=display, stdout=True).v2_playbook_on_task_start(OUTAGE_TASK, False)
    assert seen == ['Run the outage']


def test_an_exit_inside_the_window_says_it_runs_on_only_while_the_window_task_runs(display):
    """ansible-playbook ending (Ctrl-C) while the window task runs: one line at exit saying the window
    goes on and what to do; never for the outage's read-only plan or its unfence, nor once the
    window task has answered."""
    callback = make_callback(display, stdout=True)
    plan = FakeTask('Plan the outage', 'fastdowntime.postgresql.outage')
    plan.check_mode = True
    unfence = FakeTask('Re-enable', 'fastdowntime.postgresql.outage')
    unfence.args = {'unfence': True}
    for task in (plan, unfence):
        callback.v2_runner_on_start(LOCALHOST, task)
        callback._exit_inside_the_window()
        callback.v2_runner_on_ok(FakeResult(task, LOCALHOST, {'changed': False}))
    run_outage(callback, ABORTED_OUTAGE, failed=True)
    callback._exit_inside_the_window()
    assert not [line for line in display.lines if 'INTERRUPTED' in line]
    callback.v2_runner_on_start(LOCALHOST, OUTAGE_TASK)
    callback._exit_inside_the_window()
    interrupted = [line for line in display.lines if 'INTERRUPTED' in line]
    assert len(interrupted) == 1
    assert interrupted[0].startswith('[timeline] INTERRUPTED INSIDE THE OUTAGE WINDOW (the outage task for localhost, ')
    assert 'do not RESUME by hand' in interrupted[0]
    # Said once, though the hook may be called again.
    callback._exit_inside_the_window()
    assert len([line for line in display.lines if 'INTERRUPTED' in line]) == 1


def test_a_kill_inside_the_window_says_so_then_hands_the_signal_on_and_names_where_the_outcome_is(display):
    """SIGTERM (a CI timeout, a job cancel) ends ansible-playbook by the default action after Ansible sends
    it on: no atexit. While the window task runs the callback's handler stands in front of the one it
    found, says the line - naming the deploy log row of this run, which writes no report - and hands the
    signal on; the handler is restored when the window task ends."""
    import signal
    handed = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: handed.append(signum))
    try:
        callback = make_callback(display, stdout=True, play_vars={'fastdowntime_db_name': 'fdtdemo'})
        plan = FakeTask('Plan the outage', 'fastdowntime.postgresql.outage')
        plan.check_mode = True
        callback.v2_runner_on_start(LOCALHOST, plan)
        callback.v2_runner_on_ok(FakeResult(plan, LOCALHOST, {'changed': False, 'deploy_id': '20261130T181500Z'}))
        callback.v2_runner_on_start(LOCALHOST, OUTAGE_TASK)
        assert signal.getsignal(signal.SIGTERM) == callback._on_sigterm
        signal.raise_signal(signal.SIGTERM)
        assert handed == [signal.SIGTERM]
        interrupted = [line for line in display.lines if 'INTERRUPTED' in line]
        assert len(interrupted) == 1 and (
            'no timeline report is written for this run: its outcome and timeline are then in the deploy log on the '
            "primary, database fdtdemo: SELECT outcome, outage_ms, phases FROM fastdowntime.deploy_log WHERE "
            "deploy_id = '20261130T181500Z' -> do not RESUME by hand") in interrupted[0], interrupted
        assert signal.getsignal(signal.SIGTERM) != callback._on_sigterm  # handed back
        # the window task answering restores the handler it found
        callback.v2_runner_on_start(LOCALHOST, OUTAGE_TASK)
        callback.v2_runner_on_ok(FakeResult(OUTAGE_TASK, LOCALHOST, {'changed': True, 'phases': []}))
        assert signal.getsignal(signal.SIGTERM) != callback._on_sigterm
        # fastdowntime_deploy_id set: the window's id is that one
        callback = make_callback(display, stdout=True, play_vars={'fastdowntime_deploy_id': 'release-42'})
        callback.v2_runner_on_start(LOCALHOST, OUTAGE_TASK)
        callback._exit_inside_the_window()
        callback._window_ended()
        assert "WHERE deploy_id = 'release-42' ->" in display.lines[-1]
    finally:
        signal.signal(signal.SIGTERM, previous)
