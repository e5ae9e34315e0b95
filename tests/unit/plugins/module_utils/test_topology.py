"""The deploy's topology without a database: inventory -> endpoints ->
addresses -> entries (which pgbouncer entries are read-only, which are fenced)."""
import socket

import pytest

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import topology
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.topology import (
    TopologyError, endpoints, resolve_addresses, serving_entries, split_entries, standby_entries_by_pgbouncer)

LAB_STANDBYS = [
    {'name': 'standby1', 'host': '10.0.0.11', 'pgbouncer_entries': ['pgbouncer1:app_ro']},
    {'name': 'standby2', 'host': '10.0.0.12', 'pgbouncer_entries': ['pgbouncer2:app_ro']},
]


# -- inventory -> endpoints -----------------------------------------------------

def test_pg_endpoints_take_the_contract_variables_and_defaults():
    hostvars = {'db1': {'ansible_host': '10.0.0.10', 'fastdowntime_pg_user': 'deploy'},
                'db2': {'fastdowntime_pg_user': 'deploy', 'fastdowntime_pg_host': 'db2.example',
                        'fastdowntime_pg_port': '5433', 'fastdowntime_standby_pgbouncer_entries': ['app_ro'],
                        'fastdowntime_standby_application_name': 'walrcv2'}}
    first, second = endpoints(['db1', 'db2'], hostvars)
    assert (first['name'], first['host'], first['port'], first['ssl_mode'], first['pgbouncer_entries']) == \
        ('db1', '10.0.0.10', 5432, 'prefer', [])
    assert 'standby_application_name' not in first
    assert (second['host'], second['port'], second['pgbouncer_entries'], second['standby_application_name']) == \
        ('db2.example', 5433, ['app_ro'], 'walrcv2')


def test_the_old_standby_entries_variable_is_still_read_and_the_new_one_wins():
    """fastdowntime_standby_pgbouncer_databases (deprecated until 1.0.0) gives the same endpoint; when a host sets
    both, fastdowntime_standby_pgbouncer_entries is the one read (an empty new list included)."""
    user = {'fastdowntime_pg_user': 'deploy'}
    hostvars = {'old': dict(user, fastdowntime_standby_pgbouncer_databases=['b1:app_ro']),
                'both': dict(user, fastdowntime_standby_pgbouncer_databases=['stale'],
                             fastdowntime_standby_pgbouncer_entries=['app_ro']),
                'cleared': dict(user, fastdowntime_standby_pgbouncer_databases=['stale'],
                                fastdowntime_standby_pgbouncer_entries=[])}
    assert [e['pgbouncer_entries'] for e in endpoints(['old', 'both', 'cleared'], hostvars)] == \
        [['b1:app_ro'], ['app_ro'], []]


def test_standby_entries_given_as_one_string_are_comma_separated_not_characters():
    """A new user's try 10: an INI host line `standby1 ... fastdowntime_standby_pgbouncer_entries=pgbouncer1:app_ro`
    gives a string; it was read per character ("no such entry ...: p, g, b, o, u, ...")."""
    user = {'fastdowntime_pg_user': 'deploy'}
    hostvars = {'one': dict(user, fastdowntime_standby_pgbouncer_entries='pgbouncer1:app_ro'),
                'two': dict(user, fastdowntime_standby_pgbouncer_entries='pgbouncer2:app_ro, pgbouncer1:app_ro2,'),
                'old': dict(user, fastdowntime_standby_pgbouncer_databases='app_ro')}
    assert [e['pgbouncer_entries'] for e in endpoints(['one', 'two', 'old'], hostvars)] == \
        [['pgbouncer1:app_ro'], ['pgbouncer2:app_ro', 'pgbouncer1:app_ro2'], ['app_ro']]


def test_an_endpoint_without_its_user_names_the_host_and_the_variable():
    with pytest.raises(TopologyError, match='db1: fastdowntime_pg_user is not set'):
        endpoints(['db1'], {'db1': {'fastdowntime_pg_user': ''}})
    with pytest.raises(TopologyError, match='kind must be pg or pgbouncer'):
        endpoints([], {}, kind='mysql')


def test_pgbouncer_host_with_processes_gives_one_console_each():
    hostvars = {'pgb1': {'ansible_host': '10.0.0.21', 'fastdowntime_pgbouncer_user': 'admin',
                         'fastdowntime_pgbouncer_consoles': [{'unix_socket_dir': '/run/p1'},
                                                             {'unix_socket_dir': '/run/p2', 'port': 16432}]}}
    found = endpoints(['pgb1'], hostvars, kind='pgbouncer')
    assert [(e['host'], e['port'], e['unix_socket_dir']) for e in found] == [
        ('/run/p1', 6432, '/run/p1'), ('/run/p2', 16432, '/run/p2')]
    with pytest.raises(TopologyError, match='item 1 has no unix_socket_dir'):
        topology.pgbouncer_processes('pgb1', found[0], [{'host': '/x'}])


# -- endpoints -> addresses -------------------------------------------------------

def test_resolve_addresses_keeps_names_that_do_not_resolve():
    def resolver(host, port):
        if host == 'bad':
            raise socket.gaierror('no')
        return [(None, None, None, None, ('10.0.0.21', 0))]
    assert resolve_addresses(['good', 'bad'], resolver) == {'10.0.0.21', 'bad'}


# -- endpoints -> entries ---------------------------------------------------------

def test_lab_layout_each_pgbouncer_has_one_read_write_and_one_read_only_entry():
    found = {'pgbouncer1': ['app', 'app_ro'], 'pgbouncer2': ['app', 'app_ro']}
    read_write, read_only = split_entries(found, LAB_STANDBYS)
    assert read_write == {'pgbouncer1': ['app'], 'pgbouncer2': ['app']}
    assert read_only == {'pgbouncer1': ['app_ro'], 'pgbouncer2': ['app_ro']}


def test_bare_entry_name_is_read_only_on_every_pgbouncer():
    standbys = [{'name': 's1', 'host': 'h', 'pgbouncer_entries': ['app_ro']}]
    read_write, read_only = split_entries({'b1': ['app', 'app_ro'], 'b2': ['app_ro', 'app']}, standbys)
    assert read_only == {'b1': ['app_ro'], 'b2': ['app_ro']}
    assert read_write == {'b1': ['app'], 'b2': ['app']}


def test_entry_of_one_pgbouncer_stays_read_write_on_another():
    standbys = [{'name': 's1', 'host': 'h', 'pgbouncer_entries': ['b1:reports']}]
    read_write, read_only = split_entries({'b1': ['app', 'reports'], 'b2': ['app', 'reports']}, standbys)
    assert read_only == {'b1': ['reports'], 'b2': []}
    assert read_write == {'b1': ['app'], 'b2': ['app', 'reports']}


def test_standby_entries_that_are_not_deploy_entries_are_ignored():
    standbys = [{'name': 's1', 'host': 'h', 'pgbouncer_entries': ['otherdb_ro', 'b1:app_ro']}]
    read_write, read_only = split_entries({'b1': ['app', 'app_ro']}, standbys)
    assert read_only == {'b1': ['app_ro']} and read_write == {'b1': ['app']}


def test_no_standby_mapping_means_everything_is_read_write():
    read_write, read_only = split_entries({'b1': ['app', 'app_ro']}, [{'name': 's', 'host': 'h'}])
    assert read_write == {'b1': ['app', 'app_ro']} and read_only == {'b1': []}


def test_two_standbys_on_one_entry_both_count_once():
    standbys = [{'name': 's1', 'host': 'a', 'pgbouncer_entries': ['ro']},
                {'name': 's2', 'host': 'b', 'pgbouncer_entries': ['b1:ro']}]
    assert standby_entries_by_pgbouncer(standbys, ['b1'])['s2'] == {'b1': ['ro']}
    read_write, read_only = split_entries({'b1': ['ro', 'rw']}, standbys)
    assert read_only == {'b1': ['ro']} and read_write == {'b1': ['rw']}
    # Fencing both standbys fences the shared entry once.
    assert serving_entries('b1', ['ro', 'rw'], standbys) == ['ro']


def test_only_the_lagging_standbys_entries_are_fenced():
    assert serving_entries('pgbouncer1', ['app', 'app_ro'], LAB_STANDBYS[1:]) == []
    assert serving_entries('pgbouncer2', ['app', 'app_ro'], LAB_STANDBYS[1:]) == ['app_ro']
    assert serving_entries('pgbouncer2', ['app', 'app_ro'], []) == []


def test_a_standby_without_a_name_goes_by_its_host():
    assert standby_entries_by_pgbouncer([{'host': '10.0.0.11', 'pgbouncer_entries': ['ro']}], ['b1']) == \
        {'10.0.0.11': {'b1': ['ro']}}
