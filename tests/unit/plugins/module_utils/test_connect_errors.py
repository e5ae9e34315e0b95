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
    (SERVER + 'FATAL:  database "nope" does not exist', 'other'),
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
        'other', 'database "nope" does not exist')
