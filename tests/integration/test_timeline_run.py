"""The timeline callback in a real ansible-playbook run (no database needed).

A test-only module (library/timeline_probe.py) times made-up steps with the
real BudgetClock and returns ``phases`` like the fastdowntime modules do.
"""

import json
import os
import subprocess
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')

PLAYBOOK = textwrap.dedent("""\
    - name: A deploy made of probes
      hosts: localhost
      gather_facts: false
      vars:
        fastdowntime_report_path: "{{ report_dir }}/deploy.json"
      tasks:
        - name: Pre-flight
          timeline_probe:
            steps:
              - {phase: pre-flight, host: primary, seconds: 0.05}
        - name: Outage
          timeline_probe:
            budget_seconds: 3
            deploy_id: probe-1
            steps:
              - {phase: drain, host: pgbouncer1, seconds: 0.05}
              - {phase: schema application, host: primary, seconds: 0.2, fail: %(fail)s,
                 detail: {patches: [{file: patch-2211-01-0.sql, duration_ms: 150}]}}
              - {phase: replica sync, host: standby1, seconds: 0.02,
                 detail: {standby_replay_ms: {standby1: 20}}}
              - {phase: rollback, host: primary, seconds: 0.01, on_abort: true}
              - {phase: resume, host: pgbouncer1, seconds: 0.02, always: true,
                 detail: {max_client_wait_ms: 290}}
    """)


def run_playbook(tmp_path, fail, extra_env=None):
    (tmp_path / 'deploy.yml').write_text(PLAYBOOK % {'fail': 'true' if fail else 'false'})
    (tmp_path / 'hosts').write_text('localhost ansible_connection=local ansible_python_interpreter=%s\n'
                                    % sys.executable)
    env = dict(os.environ)
    for name in list(env):
        if name.startswith('ANSIBLE_') or name == 'FASTDOWNTIME_REPORT_PATH':
            del env[name]
    env.update({
        'ANSIBLE_CALLBACKS_ENABLED': 'fastdowntime.postgresql.timeline',
        'ANSIBLE_COLLECTIONS_PATH': os.path.join(REPO, '.collections'),
        'ANSIBLE_LIBRARY': os.path.join(HERE, 'library'),
        'ANSIBLE_LOCAL_TEMP': str(tmp_path / 'tmp'),
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_CONFIG': str(tmp_path / 'none.cfg'),
    })
    env.update(extra_env or {})
    proc = subprocess.run([ANSIBLE_PLAYBOOK, '-i', str(tmp_path / 'hosts'), str(tmp_path / 'deploy.yml'),
                           '-e', 'report_dir=%s' % (tmp_path / 'reports')],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=120, check=False)
    return proc, proc.stdout.splitlines()


def test_aborted_run_prints_phases_and_writes_the_report_from_the_play_variable(tmp_path):
    proc, lines = run_playbook(tmp_path, fail=True)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert 'Traceback' not in proc.stdout + proc.stderr

    ends = [line for line in lines if line.startswith('[timeline] end ')]
    assert [line.split(' on ')[0] for line in ends] == [
        '[timeline] end pre-flight', '[timeline] end drain', '[timeline] end schema application',
        '[timeline] end rollback', '[timeline] end resume']
    assert ends[0].startswith('[timeline] end pre-flight on primary: ok in ')
    assert ends[0].endswith('budget left -')
    assert ends[2].startswith('[timeline] end schema application on primary: failed in ')
    assert 'budget spent in phase schema application' in ends[2]

    assert 'fastdowntime timeline: aborted in schema application  (deploy probe-1)' in lines
    path = tmp_path / 'reports' / 'deploy.json'
    assert '[timeline] report written to %s' % path in lines

    report = json.loads(path.read_text())
    assert report['outcome'] == 'aborted in schema application'
    assert report['play_failed'] is True
    assert report['deploy_id'] == 'probe-1'
    assert [(p['phase'], p['status']) for p in report['phases']] == [
        ('pre-flight', 'ok'), ('drain', 'ok'), ('schema application', 'failed'), ('rollback', 'ok'), ('resume', 'ok')]
    assert report['phases'][0]['start_offset_ms'] < 0  # before the drain started
    # The drain opens the outage: it starts at the clock's start, before the schema application
    # (not asserted to the 0.1 ms: a loaded host may run the module's loop in between).
    assert 0.0 <= report['phases'][1]['start_offset_ms'] < report['phases'][2]['start_offset_ms']
    assert report['budget_ms'] == 3000.0
    # drain start -> end of resume: at least the sleeps of drain, schema application, rollback,
    # resume, and what the rows say, to their rounding.
    resume = report['phases'][4]
    assert report['outage']['outage_ms'] >= 280
    assert abs(report['outage']['outage_ms'] - (resume['start_offset_ms'] + resume['duration_ms'])) <= 0.3
    assert report['outage']['max_client_wait_ms'] == 290.0
    assert report['patches'] == [{'file': 'patch-2211-01-0.sql', 'duration_ms': 150.0}]
    assert report['standby_replay_ms'] == {}  # replica sync never ran


def test_normal_run_writes_the_report_named_by_the_environment(tmp_path):
    path = tmp_path / 'from-env.json'
    proc, lines = run_playbook(tmp_path, fail=False, extra_env={'FASTDOWNTIME_REPORT_PATH': str(path)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'fastdowntime timeline: done  (deploy probe-1)' in lines
    report = json.loads(path.read_text())
    assert report['outcome'] == 'done'
    assert [p['phase'] for p in report['phases']] == ['pre-flight', 'drain', 'schema application', 'replica sync',
                                                      'resume']
    assert report['standby_replay_ms'] == {'standby1': 20.0}
    assert not (tmp_path / 'reports').exists()  # the option wins over the play variable


def test_report_path_from_ansible_cfg(tmp_path):
    path = tmp_path / 'from-ini.json'
    (tmp_path / 'none.cfg').write_text('[callback_timeline]\nreport_path = %s\n' % path)
    proc, lines = run_playbook(tmp_path, fail=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(path.read_text())['outcome'] == 'done'


def test_a_playbook_without_fastdowntime_tasks_reports_nothing(tmp_path):
    (tmp_path / 'plain.yml').write_text(textwrap.dedent("""\
        - name: Nothing to do with a deploy
          hosts: localhost
          gather_facts: false
          tasks:
            - name: Say hello
              ansible.builtin.debug:
                msg: hello
        """))
    env = dict(os.environ, ANSIBLE_CALLBACKS_ENABLED='fastdowntime.postgresql.timeline',
               ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, '.collections'),
               FASTDOWNTIME_REPORT_PATH=str(tmp_path / 'r.json'), ANSIBLE_LOCALHOST_WARNING='false')
    proc = subprocess.run([ANSIBLE_PLAYBOOK, '-i', 'localhost,', '-c', 'local', str(tmp_path / 'plain.yml')],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '[timeline]' not in proc.stdout and 'FASTDOWNTIME TIMELINE' not in proc.stdout
    assert not (tmp_path / 'r.json').exists()


def test_a_report_path_no_loaded_callback_writes_is_a_warning_naming_the_setting(tmp_path):
    """A new user's try 10: under the operator's own ansible.cfg (stdout_callback default, no
    callbacks_enabled) fastdowntime_report_path was silently never written - only the timeline
    callback writes it - and the window's numbers showed only at -v. The inventory check says so
    in one line naming the setting; with the callback loaded it says nothing."""
    (tmp_path / 'check.yml').write_text(textwrap.dedent("""\
        - name: The inventory check of every playbook
          hosts: localhost
          gather_facts: false
          vars:
            __fastdowntime_inventory_contract: false
            fastdowntime_report_path: /srv/deploys/report.json
          tasks:
            - name: Check the inventory
              ansible.builtin.import_role:
                name: fastdowntime.postgresql.preflight
                tasks_from: inventory
            # As every role reading the groups does again, later in the run.
            - name: Check the inventory again
              ansible.builtin.import_role:
                name: fastdowntime.postgresql.preflight
                tasks_from: inventory
        """))
    (tmp_path / 'none.cfg').write_text('')
    warning = ('[WARNING]: fastdowntime_report_path is /srv/deploys/report.json, but the callback that writes it, '
               'fastdowntime.postgresql.timeline, is not loaded (stdout_callback = %s, callbacks_enabled = none): no '
               'report will be written and the outage\'s numbers show only with -v -> add it to ansible.cfg, '
               '[defaults] callbacks_enabled = fastdowntime.postgresql.timeline (or '
               'ANSIBLE_CALLBACKS_ENABLED=fastdowntime.postgresql.timeline)')
    outputs = {}
    for stdout_callback, enabled in (('default', ''), ('minimal', ''), ('default', 'fastdowntime.postgresql.timeline'),
                                     ('fastdowntime.postgresql.timeline', '')):
        env = {name: value for name, value in os.environ.items() if not name.startswith('ANSIBLE_')}
        env.update({'ANSIBLE_CALLBACKS_ENABLED': enabled} if enabled else {})
        env.update(ANSIBLE_CONFIG=str(tmp_path / 'none.cfg'), ANSIBLE_STDOUT_CALLBACK=stdout_callback,
                   ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, '.collections'),
                   ANSIBLE_LOCALHOST_WARNING='false', ANSIBLE_NOCOLOR='1')
        proc = subprocess.run([ANSIBLE_PLAYBOOK, '-i', 'localhost,', '-c', 'local', str(tmp_path / 'check.yml')],
                              cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        outputs[stdout_callback, enabled] = proc.stdout
    for stdout_callback in ('default', 'minimal'):
        assert outputs[stdout_callback, ''].count(warning % stdout_callback) == 1, outputs[stdout_callback, '']
    for key in (('default', 'fastdowntime.postgresql.timeline'), ('fastdowntime.postgresql.timeline', '')):
        assert 'fastdowntime_report_path is' not in outputs[key], outputs[key]
