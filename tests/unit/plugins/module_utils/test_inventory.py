"""The inventory contract check (pure logic, no Ansible)."""

from ansible_collections.fastdowntime.postgresql.plugins.module_utils.inventory import inventory_problems

DEPLOY = {'fastdowntime_db_name': 'app', 'fastdowntime_patch_dir': '/srv/patches', 'fastdowntime_pg_user': 'deploy'}


def test_a_complete_inventory_has_no_problem():
    groups = {'fastdowntime_primary': ['db1'], 'fastdowntime_standbys': ['db2'],
              'fastdowntime_pgbouncers': ['pgb1'], 'fastdowntime_appservers': ['app1']}
    hostvars = {'db1': DEPLOY, 'db2': DEPLOY, 'pgb1': {'fastdowntime_pgbouncer_user': 'admin'}, 'app1': {}}
    assert inventory_problems(groups, hostvars) == []


def test_a_missing_primary_group_is_one_line_naming_the_group():
    assert inventory_problems({'fastdowntime_standbys': []}, {}) == [
        'the inventory has no group fastdowntime_primary: add it with the one primary database host']


def test_an_empty_or_crowded_primary_group():
    assert inventory_problems({'fastdowntime_primary': []}, {}) == [
        'the group fastdowntime_primary must hold exactly one host, it holds 0: keep the one primary there']
    [problem] = inventory_problems({'fastdowntime_primary': ['a', 'b']}, {'a': DEPLOY, 'b': DEPLOY})
    assert problem.startswith('the group fastdowntime_primary must hold exactly one host, it holds 2 (a, b)')


def test_missing_credentials_and_deploy_variables_are_named():
    groups = {'fastdowntime_primary': ['db1'], 'fastdowntime_pgbouncers': ['pgb1']}
    problems = inventory_problems(groups, {'db1': {'fastdowntime_pg_user': ' '}, 'pgb1': {}})
    assert problems == [
        'db1 (group fastdowntime_primary): fastdowntime_pg_user is not set: set the fastdowntime_pg_* variables '
        'for the hosts of fastdowntime_primary',
        'pgb1 (group fastdowntime_pgbouncers): fastdowntime_pgbouncer_user is not set: set the '
        'fastdowntime_pgbouncer_* variables for the hosts of fastdowntime_pgbouncers',
        'fastdowntime_db_name is not set: set it in the inventory (group_vars/all) or with -e',
        'fastdowntime_patch_dir is not set: set it in the inventory (group_vars/all) or with -e',
    ]


def test_a_host_in_two_roles():
    groups = {'fastdowntime_primary': ['db1'], 'fastdowntime_standbys': ['db1']}
    assert inventory_problems(groups, {'db1': DEPLOY}) == [
        'db1 is in both fastdowntime_primary and fastdowntime_standbys: a host has one role, fix the inventory']


def test_a_word_where_seconds_are_expected_is_one_line_naming_the_variable():
    variables = dict(DEPLOY, fastdowntime_budget_seconds='ten', fastdowntime_max_lag_seconds='30',
                     fastdowntime_reserve_seconds=0.5, fastdowntime_pgbouncer_drain_timeout_seconds='')
    assert inventory_problems({'fastdowntime_primary': ['db1']}, {'db1': variables}) == [
        "fastdowntime_budget_seconds is 'ten', not a number of seconds: give it as a number, e.g. 60"]


# -- variable names (defect 18: fastdowntime_pg_pasword was accepted) ------------
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.inventory import (  # noqa: E402
    FACTS, known_variables, unknown_variables)

SPECS = {
    'preflight': {'main': {'options': {'fastdowntime_pg_password': {'type': 'str'},
                                       'fastdowntime_budget_seconds': {'type': 'float'},
                                       'fastdowntime_drain_entries': {'aliases': ['fastdowntime_pgbouncer_databases']}}},
                  'inventory': {'options': {}}},
    'schema_apply': {'main': {'options': {'schema_apply_phase': {}, 'fastdowntime_patch_dir': {}}}},
    'empty': {'main': None},
}


def test_known_variables_are_every_entry_points_options_their_aliases_and_the_collections_facts():
    known, prefixes = known_variables(SPECS)
    assert {'fastdowntime_pg_password', 'fastdowntime_budget_seconds', 'fastdowntime_drain_entries',
            'fastdowntime_pgbouncer_databases', 'schema_apply_phase', 'fastdowntime_patch_dir'} <= known
    assert set(FACTS) <= known
    # A role whose options carry its own name owns that prefix too.
    assert prefixes == ('fastdowntime_', 'schema_apply_')


def test_a_misspelled_variable_is_named_with_its_hosts_and_the_closest_known_name():
    known, prefixes = known_variables(SPECS)
    lines = unknown_variables({'primary': ['fastdowntime_pg_pasword', 'fastdowntime_budget_seconds'],
                               'standby1': ['fastdowntime_pg_pasword'], 'app1': []}, known, prefixes)
    assert lines == ['fastdowntime_pg_pasword (set for primary, standby1) is not a variable of '
                     'fastdowntime.postgresql: did you mean fastdowntime_pg_password?']


def test_a_variable_on_every_host_is_said_to_come_from_group_vars_all_or_extra_vars():
    known, prefixes = known_variables(SPECS)
    hosts = dict(('h%d' % i, ['fastdowntime_budget_second']) for i in range(3))
    assert unknown_variables(hosts, known, prefixes) == [
        'fastdowntime_budget_second (set for every host: group_vars/all or -e) is not a variable of '
        'fastdowntime.postgresql: did you mean fastdowntime_budget_seconds?']


def test_many_hosts_are_counted_not_listed():
    known, prefixes = known_variables(SPECS)
    hosts = dict(('db%d' % i, ['fastdowntime_pg_pasword']) for i in range(5))
    hosts['app1'] = []
    [line] = unknown_variables(hosts, known, prefixes)
    assert line.startswith('fastdowntime_pg_pasword (set for db0, db1, db2 and 2 more) is not')


def test_a_name_close_to_nothing_gets_no_guess_and_the_prefix_does_not_count_as_closeness():
    known, prefixes = known_variables(SPECS)
    # fastdowntime_lab_dir shares 'fastdowntime_' and '_dir' with fastdowntime_patch_dir: no guess.
    assert unknown_variables({'h': ['fastdowntime_lab_dir', 'schema_apply_phse']}, known, prefixes) == [
        'fastdowntime_lab_dir (set for h) is not a variable of fastdowntime.postgresql: rename or remove it '
        '(README "The public contract")',
        'schema_apply_phse (set for h) is not a variable of fastdowntime.postgresql: did you mean '
        'schema_apply_phase?']


def test_known_names_old_names_facts_and_other_namespaces_are_not_flagged():
    known, prefixes = known_variables(SPECS)
    assert unknown_variables({'h': ['fastdowntime_pgbouncer_databases', 'fastdowntime_phases', 'schema_apply_result',
                                    '__fastdowntime_internal', 'ansible_host', 'pg_pasword']}, known, prefixes) == []


def test_where_a_variable_was_set_is_named_when_ansible_tells():
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.inventory import origin_text
    assert origin_text('/srv/deploy/inventories/prod/hosts.yml', 4, None, cwd='/srv/deploy') == \
        'inventories/prod/hosts.yml line 4'
    assert origin_text('/etc/ansible/hosts.yml', None, None, cwd='/srv/deploy') == '/etc/ansible/hosts.yml'
    assert origin_text(None, None, "<CLI option '-e'>") == '-e'
    assert origin_text(None, None, None) is None
    known, prefixes = known_variables(SPECS)
    hosts = {'db1': ['fastdowntime_pg_pasword'], 'db2': ['fastdowntime_pg_pasword'], 'app1': []}
    assert unknown_variables(hosts, known, prefixes, {'fastdowntime_pg_pasword': [
        'inventories/prod/host_vars/db1.yml line 3', 'inventories/prod/host_vars/db2.yml line 3']}) == [
        'fastdowntime_pg_pasword (set for db1, db2, from inventories/prod/host_vars/db1.yml line 3, '
        'inventories/prod/host_vars/db2.yml line 3) is not a variable of fastdowntime.postgresql: did you mean '
        'fastdowntime_pg_password?']
    everywhere = dict(('h%d' % i, ['fastdowntime_budget_second']) for i in range(3))
    [line] = unknown_variables(everywhere, known, prefixes, {'fastdowntime_budget_second': ['-e']})
    assert line.startswith('fastdowntime_budget_second (set for every host, from -e) is not')


def test_a_number_of_seconds_out_of_range_is_one_line_naming_the_variable():
    """try 6, defect 11b: -e fastdowntime_budget_seconds=-5 reached the module ("budget_seconds must be
    positive"), naming its option, not the variable."""
    variables = dict(DEPLOY, fastdowntime_budget_seconds='-5', fastdowntime_max_lag_seconds=0,
                     fastdowntime_reserve_seconds=-0.5, fastdowntime_max_transaction_seconds=0,
                     fastdowntime_watchdog_grace_seconds='nan')
    assert inventory_problems({'fastdowntime_primary': ['db1']}, {'db1': variables}) == [
        'fastdowntime_budget_seconds is -5: it must be above zero seconds: give it as a positive number, e.g. 10',
        'fastdowntime_reserve_seconds is -0.5: it must not be below zero seconds: give it as 0 or more',
        'fastdowntime_max_lag_seconds is 0: it must be above zero seconds: give it as a positive number, e.g. 10',
        "fastdowntime_watchdog_grace_seconds is 'nan', not a number of seconds: give it as a number, e.g. 60"]


def test_a_misspelled_key_of_a_pgbouncer_console_is_one_line_from_the_inventory_check():
    """try 6, defect 11c: unix_socket_directory came wrapped in Ansible's "Finalization of task args ...
    filter plugin failed"."""
    groups = {'fastdowntime_primary': ['db1'], 'fastdowntime_pgbouncers': ['pgb1']}

    def problems(consoles):
        return inventory_problems(groups, {'db1': DEPLOY, 'pgb1': {'fastdowntime_pgbouncer_user': 'admin',
                                                                   'fastdowntime_pgbouncer_consoles': consoles}})
    fix = "each item has unix_socket_dir (that process's, as in its pgbouncer.ini) and optionally host and port"
    assert problems([{'unix_socket_dir': '/run/a'}, {'unix_socket_directory': '/run/b'}]) == [
        'pgb1: fastdowntime_pgbouncer_consoles item 2 has unix_socket_directory, which is not one of its keys '
        '(did you mean unix_socket_dir?): ' + fix]
    assert problems([{'host': '10.0.0.1'}]) == ['pgb1: fastdowntime_pgbouncer_consoles item 1 has no '
                                                'unix_socket_dir: ' + fix]
    assert problems([{'unix_socket_dir': '/run/a', 'port': 'six'}])[0].startswith(
        "pgb1: fastdowntime_pgbouncer_consoles item 1 has port 'six', not a port number")
    assert problems('/run/a')[0].startswith("pgb1: fastdowntime_pgbouncer_consoles is '/run/a', not a list")
    assert problems([{'unix_socket_dir': '/run/a', 'port': 6432}, {'unix_socket_dir': '/run/b', 'host': 'x'}]) == []
    assert problems(None) == []
