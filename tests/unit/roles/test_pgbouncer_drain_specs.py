# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pgbouncer_drain role's argument specs: each option written once (YAML anchors), every entry point
taking the console options, which say what the modules' CONSOLE_SPEC says."""
import os
import pathlib
import re

import yaml

from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import CONSOLE_SPEC

REPO = str(next(p for p in pathlib.Path(__file__).resolve().parents if (p / 'galaxy.yml').is_file()))
SPECS = os.path.join(REPO, 'roles', 'pgbouncer_drain', 'meta', 'argument_specs.yml')
CONSOLE = {'host': 'fastdowntime_pgbouncer_host', 'port': 'fastdowntime_pgbouncer_port',
           'user': 'fastdowntime_pgbouncer_user', 'password': 'fastdowntime_pgbouncer_password',
           'ssl_mode': 'fastdowntime_pgbouncer_ssl_mode', 'ca_cert': 'fastdowntime_pgbouncer_ca_cert'}
ENTRIES = {'fastdowntime_db_name', 'fastdowntime_drain_entries', 'fastdowntime_pgbouncer_databases'}


def load():
    with open(SPECS) as f:
        return yaml.safe_load(f)['argument_specs']


def test_every_entry_point_takes_the_console_options_as_the_console_spec_says():
    entry_points = load()
    assert set(entry_points) == {'info', 'main', 'pause', 'resume', 'arm', 'disarm'}
    for name, entry in entry_points.items():
        options = entry['options']
        for key, variable in CONSOLE.items():
            option, spec = options[variable], CONSOLE_SPEC[key]
            assert option.get('default') == spec.get('default') and option.get('choices') == spec.get('choices'), \
                (name, variable)
            assert option['type'] == spec['type'] or (option['type'], spec['type']) == ('str', 'path'), (name, variable)
        assert options['fastdowntime_pgbouncer_user'].get('required') is True, name
        assert options['fastdowntime_pgbouncer_password'].get('no_log') is True, name
        assert ENTRIES <= set(options) or name == 'disarm', name


def test_each_option_is_written_once():
    """The console options' keys appear once in the file (the other entry points merge them)."""
    with open(SPECS) as f:
        text = f.read()
    for variable in list(CONSOLE.values()) + sorted(ENTRIES) + ['fastdowntime_budget_seconds',
                                                                'fastdowntime_watchdog_log_file']:
        assert len(re.findall(r'^ +%s:(?! \*)' % variable, text, flags=re.M)) == 1, variable


def test_the_main_entry_point_is_the_deprecated_info():
    tasks = os.path.join(REPO, 'roles', 'pgbouncer_drain', 'tasks')
    with open(os.path.join(tasks, 'main.yml')) as f:
        main = yaml.safe_load(f)
    assert 'DEPRECATION' in main[0]['ansible.builtin.debug']['msg']
    assert main[1]['ansible.builtin.include_tasks'] == 'info.yml'
    assert load()['main']['options'] == load()['info']['options']
