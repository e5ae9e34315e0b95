"""What a failed connection is, from libpq's words (pure logic)."""

import pytest

from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import (
    classify_connect_failure, connect_action)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.preflight import decide_connection
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import ConnectError

SERVER = 'connection to server at "10.213.52.12", port 5432 failed: '
HINT = '\n\tIs the server running on that host and accepting TCP/IP connections?'


@pytest.mark.parametrize('message, kind', [
    (SERVER + 'Invalid argument' + HINT, 'unreachable'),          # a blackhole route (the lab when down)
    (SERVER + 'No route to host' + HINT, 'unreachable'),
    ('could not translate host name "db9" to address: Name or service not known', 'unreachable'),
    (SERVER + 'Connection refused' + HINT, 'refused'),
    (SERVER + 'timeout expired', 'timeout'),
    (SERVER + 'FATAL:  password authentication failed for user "fdt_deploy"', 'authentication'),
    (SERVER + 'fe_sendauth: no password supplied', 'authentication'),
    (SERVER + 'FATAL:  no pg_hba.conf entry for host "10.0.0.1", user "x", database "y", no encryption',
     'authentication'),
    (SERVER + 'server does not support SSL, but SSL was required', 'tls'),
    (SERVER + 'SSL error: certificate verify failed', 'tls'),
    (SERVER + 'FATAL:  database "nope" does not exist', 'database'),
    (SERVER + 'FATAL:  role "nope" does not exist', 'authentication'),
])
def test_each_failure_has_its_kind(message, kind):
    assert classify_connect_failure(message)[0] == kind


def test_an_unreachable_host_is_not_called_a_credentials_problem():
    kind, text = classify_connect_failure(SERVER + 'Invalid argument' + HINT)
    assert text == 'host unreachable (no route to it): check the address in the inventory and that the host is up'
    assert 'password' not in connect_action(kind, 'standby2')
    finding = decide_connection('standby2 (10.213.52.12:5432)', ConnectError('standby2: cannot connect: ' + text,
                                                                             kind=kind))
    assert finding['action'] == ('bring standby2 (10.213.52.12:5432) up or fix its address in the inventory '
                                 '(fastdowntime_pg_* variables), then run the pre-flight again')


def test_the_cause_is_kept_without_the_libpq_boilerplate():
    kind, text = classify_connect_failure(SERVER + 'FATAL:  password authentication failed for user "u"')
    assert text.startswith('authentication failed (password authentication failed for user "u"): ')
    assert classify_connect_failure(SERVER + 'FATAL:  database "nope" does not exist') == (
        'database', 'database "nope" does not exist: check fastdowntime_db_name')
    # try 6, defect 11d: not "answer with the inventory's credentials".
    assert connect_action('database', 'standby1') == ("set fastdowntime_db_name to the deploy's database "
                                                      '(standby1 has none of that name)')


def test_an_ipv6_address_is_bracketed_wherever_a_port_follows_it():
    """try 6, defect 11a: 'primary (fd13:213:51::10:5432)' read the port as part of the address."""
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils import drain, sessions
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import endpoint_label, host_port
    assert endpoint_label({'name': 'primary', 'host': 'fd13:213:51::10', 'port': 5432}) == \
        'primary ([fd13:213:51::10]:5432)'
    assert endpoint_label({'host': 'fd13:213:51::10'}) == '[fd13:213:51::10]:5432'
    assert endpoint_label({'name': 'primary', 'host': '10.0.0.1', 'port': 5433}) == 'primary (10.0.0.1:5433)'
    assert endpoint_label({'host': '/var/run/postgresql', 'port': 5432}) == '/var/run/postgresql:5432'
    assert host_port('db1.example', 6432) == 'db1.example:6432' and host_port('[::1]', 1) == '[::1]:1'
    # A pgbouncer client's address (SHOW CLIENTS addr/port), in blocking_sessions and the drain's error.
    assert sessions.server_clients([{'link': '0x1', 'remote_pid': 7}],
                                   [{'ptr': '0x1', 'addr': 'fd13::1', 'port': 40000}]) == {7: '[fd13::1]:40000'}
    holder = {'client_user': 'fdt_app', 'client_addr': 'fd13::1', 'client_port': 40000, 'pgbouncer': 'pgbouncer1',
              'entry': 'fdtdemo'}
    assert drain.describe_holder(holder).startswith('fdt_app@[fd13::1]:40000 on pgbouncer1 entry fdtdemo')
