"""The endpoints filter: a pgbouncer host with several processes gives one console per process."""
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.fastdowntime.postgresql.plugins.filter.endpoints import endpoints

HOSTVARS = {
    'pgb1': {'ansible_host': '10.0.0.21', 'fastdowntime_pgbouncer_user': 'admin',
             'fastdowntime_pgbouncer_consoles': [{'unix_socket_dir': '/run/pgb/p1'},
                                                 {'unix_socket_dir': '/run/pgb/p2', 'host': '127.0.0.1',
                                                  'port': 16432}]},
    'pgb2': {'ansible_host': '10.0.0.22', 'fastdowntime_pgbouncer_user': 'admin',
             'fastdowntime_pgbouncer_probe_user': 'app', 'fastdowntime_pgbouncer_probe_password': 'x'},
}


def test_one_console_per_declared_process_else_one_per_host():
    found = endpoints(['pgb1', 'pgb2'], HOSTVARS, kind='pgbouncer')
    assert [(e['name'], e['host'], e['port'], e.get('unix_socket_dir')) for e in found] == [
        ('pgb1', '/run/pgb/p1', 6432, '/run/pgb/p1'),
        ('pgb1', '127.0.0.1', 16432, '/run/pgb/p2'),
        ('pgb2', '10.0.0.22', 6432, None)]
    assert (found[2]['probe_user'], found[2]['probe_password']) == ('app', 'x')
    assert 'probe_user' not in found[0]


def test_a_process_without_its_socket_dir_is_an_inventory_error():
    hostvars = {'pgb1': dict(HOSTVARS['pgb1'], fastdowntime_pgbouncer_consoles=[{'host': '/x'}])}
    with pytest.raises(AnsibleFilterError, match='pgb1: fastdowntime_pgbouncer_consoles item 1 has no unix_socket_dir'):
        endpoints(['pgb1'], hostvars, kind='pgbouncer')
