# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Renamed options (issue 19) keep their old names as deprecated aliases: an old playbook still works and warns.

Each module's own argument spec (its argument_spec()) is validated by Ansible's validator with the old spelling;
then a real playbook run shows the deprecation warning the way an operator sees it."""
import importlib
import os
import pathlib
import socket
import subprocess
import sys

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

REPO = str(next(p for p in pathlib.Path(__file__).resolve().parents if (p / 'galaxy.yml').is_file()))
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
MODULES = 'ansible_collections.fastdowntime.postgresql.plugins.modules.'

ENDPOINT = {'host': '127.0.0.1', 'user': 'nobody'}
TARGET = {'primary': ENDPOINT, 'db_name': 'app', 'patch_dir': '/nonexistent'}
# (module, required options, old name, value, new name)
RENAMED = [
    ('schema_apply', TARGET, 'state', 'cold', 'phase'),
    ('patch_lint', TARGET, 'fail_on_error', False, 'fail_on_refusal'),
    ('outage', TARGET, 'pgbouncer_databases', ['app_rw'], 'drain_entries'),
    ('preflight', TARGET, 'pgbouncer_databases', ['app_rw'], 'drain_entries'),
    ('pgbouncer', {'console': ENDPOINT}, 'databases', ['app_rw'], 'entries'),
    ('pgbouncer_watchdog', {'console': ENDPOINT}, 'databases', ['app_rw'], 'entries'),
]


@pytest.mark.parametrize('module, required, old, value, new', RENAMED, ids=[r[0] + '.' + r[2] for r in RENAMED])
def test_the_old_name_still_sets_the_option_and_is_deprecated(module, required, old, value, new):
    spec = importlib.import_module(MODULES + module).argument_spec()
    result = ArgumentSpecValidator(spec).validate(dict(required, **{old: value}))
    assert result.error_messages == []
    assert result.validated_parameters[new] == value
    [deprecation] = result._deprecations
    assert deprecation['msg'].startswith("Alias '%s' is deprecated" % old)
    assert (deprecation['version'], deprecation['collection_name']) == ('1.0.0', 'fastdowntime.postgresql')
    # The new name alone: no warning.
    assert not ArgumentSpecValidator(spec).validate(dict(required, **{new: value}))._deprecations


# The modules whose standbys carry the entries serving them (a suboption renamed).
STANDBY_MODULES = [('outage', TARGET), ('preflight', TARGET), ('schema_apply', TARGET),
                   ('lockstep', {'primary': ENDPOINT, 'db_name': 'app', 'apps': []})]


@pytest.mark.parametrize('module, required', STANDBY_MODULES, ids=[m[0] for m in STANDBY_MODULES])
def test_a_standbys_old_pgbouncer_databases_still_sets_its_entries_and_is_deprecated(module, required):
    spec = importlib.import_module(MODULES + module).argument_spec()
    standby = dict(ENDPOINT, host='10.0.0.11')
    result = ArgumentSpecValidator(spec).validate(dict(required, standbys=[
        dict(standby, pgbouncer_entries=['app_ro']), dict(standby, pgbouncer_databases=['b1:app_ro'])]))
    assert result.error_messages == []
    assert [s['pgbouncer_entries'] for s in result.validated_parameters['standbys']] == [['app_ro'], ['b1:app_ro']]
    [deprecation] = result._deprecations
    assert deprecation['msg'].startswith("Alias 'standbys[1].pgbouncer_databases' is deprecated")
    assert (deprecation['version'], deprecation['collection_name']) == ('1.0.0', 'fastdowntime.postgresql')


PLAY = '''
- hosts: localhost
  gather_facts: false
  tasks:
    - name: An old playbook's schema_apply task (state, not phase)
      fastdowntime.postgresql.schema_apply:
        primary: {host: 127.0.0.1, port: %(port)d, user: nobody, connect_timeout: 2}
        db_name: app
        patch_dir: %(patch_dir)s
        state: plan
      register: old_spelling
      ignore_errors: true
    - name: It ran (and failed only on the closed port)
      ansible.builtin.assert:
        that:
          - "'connection refused' in old_spelling.msg"
'''


@pytest.mark.parametrize('quiet', [False, True], ids=['default callback', 'quiet timeline'])
def test_an_old_playbook_runs_and_the_operator_sees_the_deprecation(tmp_path, quiet):
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    (tmp_path / 'patches').mkdir()
    (tmp_path / 'play.yml').write_text(PLAY % dict(port=port, patch_dir=tmp_path / 'patches'))
    proc, output = run_local_play(tmp_path, quiet=quiet)
    assert proc.returncode == 0, output
    assert "Alias 'state' is deprecated" in output, output


ROLE_PLAY = '''
- hosts: localhost
  gather_facts: false
  vars:
    fastdowntime_pgbouncer_databases: [app_rw]
  vars_files:
    - %(defaults)s
  tasks:
    - name: The inventory check of every playbook warns about the old name
      block:
        - name: Check the inventory
          ansible.builtin.include_role:
            name: fastdowntime.postgresql.preflight
            tasks_from: inventory
      rescue:
        - name: This inventory has no fastdowntime groups
          ansible.builtin.assert:
            that: "'no group fastdowntime_primary' in ansible_failed_result.msg"
    - name: The roles read the old name through the new one
      ansible.builtin.copy:
        content: "{{ fastdowntime_drain_entries | to_json }}"
        dest: %(out)s
        mode: '0600'
'''


def run_local_play(tmp_path, inventory='localhost,', quiet=False):
    """ansible-playbook on tmp_path/play.yml against localhost (or ``inventory``, every host local), with this
    checkout's collection and no ansible.cfg (``quiet``: the timeline as the stdout callback, as the README
    sets it up): (the completed process, its output on one line)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith('ANSIBLE_')}
    env.update(ANSIBLE_CONFIG=str(tmp_path / 'none.cfg'),
               ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, '.collections'),
               ANSIBLE_LOCAL_TEMP=str(tmp_path / 'tmp'), ANSIBLE_NOCOLOR='1',
               ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    if quiet:
        env.update(ANSIBLE_STDOUT_CALLBACK='fastdowntime.postgresql.timeline')
    proc = subprocess.run([ANSIBLE_PLAYBOOK, '-i', inventory, '-c', 'local', str(tmp_path / 'play.yml')],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=120, check=False)
    return proc, ' '.join((proc.stdout + proc.stderr).split())


def test_the_old_drain_entries_variable_is_still_read_and_warned_about(tmp_path):
    out = tmp_path / 'out.json'
    for role in ('outage', 'preflight', 'pgbouncer_drain'):
        (tmp_path / 'play.yml').write_text(ROLE_PLAY % dict(
            defaults=os.path.join(REPO, 'roles', role, 'defaults', 'main.yml'), out=out))
        proc, output = run_local_play(tmp_path)
        assert proc.returncode == 0, output
        assert out.read_text() == '["app_rw"]', role
        assert 'fastdowntime_pgbouncer_databases is renamed fastdowntime_drain_entries' in output, output


STANDBY_INVENTORY = '''
all:
  vars: {fastdowntime_db_name: app, fastdowntime_patch_dir: /nonexistent, fastdowntime_pg_user: deploy}
  children:
    fastdowntime_primary: {hosts: {db0: {}}}
    fastdowntime_standbys:
      hosts:
        db1: {fastdowntime_standby_pgbouncer_databases: ["pgbouncer1:app_ro"]}
        db2: {fastdowntime_standby_pgbouncer_entries: [app_ro]}
'''

STANDBY_PLAY = '''
- hosts: localhost
  gather_facts: false
  tasks:
    - name: The inventory check of every playbook warns about the old name, once
      ansible.builtin.include_role:
        name: fastdowntime.postgresql.preflight
        tasks_from: inventory
    - name: The standbys' endpoints read the old name as the new one
      ansible.builtin.copy:
        content: "{{ groups['fastdowntime_standbys'] | fastdowntime.postgresql.endpoints(hostvars)
                     | map(attribute='pgbouncer_entries') | list | to_json }}"
        dest: %(out)s
        mode: '0600'
'''


@pytest.mark.parametrize('quiet', [False, True], ids=['default callback', 'quiet timeline'])
def test_the_old_standby_entries_variable_is_still_read_and_warned_about(tmp_path, quiet):
    """The inventory path: a standby's fastdowntime_standby_pgbouncer_databases reaches the modules as its
    pgbouncer_entries, and the inventory check names the hosts still using it, once."""
    out = tmp_path / 'out.json'
    (tmp_path / 'hosts.yml').write_text(STANDBY_INVENTORY)
    (tmp_path / 'play.yml').write_text(STANDBY_PLAY % dict(out=out))
    proc, output = run_local_play(tmp_path, inventory=str(tmp_path / 'hosts.yml'), quiet=quiet)
    assert proc.returncode == 0, output
    assert out.read_text() == '[["pgbouncer1:app_ro"], ["app_ro"]]'
    warning = ('fastdowntime_standby_pgbouncer_databases (set for db1) is renamed '
               'fastdowntime_standby_pgbouncer_entries')
    assert output.count(warning) == 1, output


PHASE_PLAY = '''
- hosts: localhost
  gather_facts: false
  vars:
    schema_apply_state: cold
    fastdowntime_db_name: app
    fastdowntime_patch_dir: /nonexistent
  vars_files:
    - %(defaults)s
  tasks:
    - name: The role warns about the old name before it checks the inventory
      block:
        - name: Apply the schema patches
          ansible.builtin.include_role:
            name: fastdowntime.postgresql.schema_apply
      rescue:
        - name: This inventory has no fastdowntime groups
          ansible.builtin.assert:
            that: "'no group fastdowntime_primary' in ansible_failed_result.msg"
    - name: The role reads the old name through the new one
      ansible.builtin.copy:
        content: "{{ schema_apply_phase }}"
        dest: %(out)s
        mode: '0600'
'''


def test_the_old_schema_apply_state_variable_is_still_read_and_warned_about(tmp_path):
    out = tmp_path / 'out.txt'
    (tmp_path / 'play.yml').write_text(PHASE_PLAY % dict(
        defaults=os.path.join(REPO, 'roles', 'schema_apply', 'defaults', 'main.yml'), out=out))
    proc, output = run_local_play(tmp_path)
    assert proc.returncode == 0, output
    assert out.read_text() == 'cold'
    assert 'schema_apply_state is renamed schema_apply_phase' in output, output
