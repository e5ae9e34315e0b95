# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""meta/runtime.yml action groups: options set once with module_defaults reach every module of the group.

The endpoints point at a closed loopback port, so each module fails with its one-line connection error
naming the endpoint it got from module_defaults (no database needed)."""
import json
import os
import pathlib
import socket
import subprocess
import sys

import yaml

REPO = str(next(p for p in pathlib.Path(__file__).resolve().parents if (p / 'galaxy.yml').is_file()))
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')

PLAY = '''
- hosts: localhost
  gather_facts: false
  module_defaults:
    group/fastdowntime.postgresql.schema:
      primary: {host: 127.0.0.1, port: %(port)d, user: nobody, name: defaults-primary, connect_timeout: 2}
      db_name: app
      patch_dir: %(patch_dir)s
    group/fastdowntime.postgresql.pgbouncer:
      console: {host: 127.0.0.1, port: %(port)d, user: nobody, name: defaults-console, connect_timeout: 2}
  tasks:
    - name: schema_apply takes primary, db_name and patch_dir from the group
      fastdowntime.postgresql.schema_apply:
      register: schema_apply
      ignore_errors: true
    - name: pgbouncer takes console from the group
      fastdowntime.postgresql.pgbouncer:
        action: info
      register: pgbouncer
      ignore_errors: true
    - name: Results
      ansible.builtin.copy:
        content: "{{ {'schema_apply': schema_apply.msg, 'pgbouncer': pgbouncer.msg} | to_json }}"
        dest: %(out)s
        mode: '0600'
'''


def closed_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_runtime_groups_list_existing_modules():
    with open(os.path.join(REPO, 'meta', 'runtime.yml')) as f:
        groups = yaml.safe_load(f)['action_groups']
    modules = sorted(n[:-3] for n in os.listdir(os.path.join(REPO, 'plugins', 'modules')) if n.endswith('.py'))
    assert set(groups) == {'schema', 'pgbouncer'}
    for members in groups.values():
        assert set(members) <= set(modules)


def test_module_defaults_group_reaches_the_modules(tmp_path):
    (tmp_path / 'patches').mkdir()
    out = tmp_path / 'out.json'
    (tmp_path / 'play.yml').write_text(PLAY % dict(port=closed_port(), patch_dir=tmp_path / 'patches', out=out))
    env = {k: v for k, v in os.environ.items() if not k.startswith('ANSIBLE_')}
    env.update(ANSIBLE_CONFIG=str(tmp_path / 'none.cfg'), ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, '.collections'),
               ANSIBLE_LOCAL_TEMP=str(tmp_path / 'tmp'), ANSIBLE_NOCOLOR='1',
               ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    proc = subprocess.run([ANSIBLE_PLAYBOOK, '-i', 'localhost,', '-c', 'local', str(tmp_path / 'play.yml')],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    msgs = json.loads(out.read_text())
    assert 'defaults-primary' in msgs['schema_apply'] and 'connection refused' in msgs['schema_apply'], msgs
    assert 'defaults-console' in msgs['pgbouncer'] and 'connection refused' in msgs['pgbouncer'], msgs
