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
