"""Primary-side sessions (no database): pgbouncer's server connections are
recognised by their backend pid, whatever address they come from."""

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import drain as dr
from ansible_collections.fastdowntime.postgresql.plugins.module_utils import sessions

LABEL = 'pgbouncer1 (/run/pgbouncer:6432)'


def row(pid, user, addr):
    return {'pid': pid, 'usename': user, 'client_addr': addr, 'state': 'idle', 'application_name': ''}


def test_server_pids_skip_connections_still_logging_in():
    servers = [{'remote_pid': 501}, {'remote_pid': '502'}, {'remote_pid': 0}, {'remote_pid': None}, {}]
    assert sessions.server_pids(servers) == {501, 502}


def test_pgbouncer_pid_wins_over_the_user_lists_over_tcp_and_unix_socket():
    rows = [row(501, 'librarian', '10.0.0.21'), row(502, 'fdt_app', None), row(9, 'fdt_app', None)]
    groups = sessions.classify_connections(rows, {501, 502}, set(), {'librarian'}, {'fdt_app'})
    assert [r['pid'] for r in groups['pgbouncer']] == [501, 502]
    assert [r['pid'] for r in groups['killable']] == [9]
    assert not groups['fragile'] and not groups['unknown']


def test_an_address_alone_does_not_make_a_pgbouncer_connection():
    groups = sessions.classify_connections([row(7, 'cron', '10.0.0.21')], {501}, set(), set(), set())
    assert [r['pid'] for r in groups['unknown']] == [7]


def test_killable_never_includes_a_pgbouncer_server_connection_or_host():
    rows = [{'pid': 501, 'usename': 'fdt_app', 'addr': None},        # pgbouncer over a unix socket
            {'pid': 8, 'usename': 'fdt_app', 'addr': '10.0.0.21'},    # from a pgbouncer host
            {'pid': 9, 'usename': 'fdt_app', 'addr': '10.0.0.50'}]
    assert [r['pid'] for r in sessions.killable_victims(rows, {501}, {'10.0.0.21'})] == [9]


SERVERS = [
    # over a unix socket: pgbouncer shows local_addr "unix"; only the pid ties it to the backend
    {'database': 'fdtdemo', 'state': 'active', 'user': 'fdt_app', 'link': '0xc1',
     'local_addr': 'unix', 'local_port': 6432, 'remote_pid': 4242},
]
CLIENTS = [{'ptr': '0xc1', 'user': 'fdt_app', 'addr': '10.0.0.31', 'port': 51234, 'application_name': 'demo'}]


def test_holder_over_a_unix_socket_is_matched_by_its_backend_pid():
    found = dr.holders(SERVERS, CLIENTS, ['fdtdemo'], LABEL)
    activity = [{'pid': 1, 'client_addr': None, 'client_port': -1, 'usename': 'other'},
                {'pid': 4242, 'client_addr': None, 'client_port': -1, 'usename': 'fdt_app',
                 'state': 'idle in transaction', 'query': 'SELECT 1', 'xact_age_seconds': 3.0}]
    sessions.match_backends(found, activity)
    assert found[0]['backend']['pid'] == 4242


def test_holder_without_a_pid_falls_back_to_the_local_address():
    servers = [dict(SERVERS[0], local_addr='10.0.0.21', local_port=40001, remote_pid=0)]
    found = dr.holders(servers, CLIENTS, ['fdtdemo'], LABEL)
    sessions.match_backends(found, [{'pid': 77, 'client_addr': '10.0.0.21', 'client_port': 40001}])
    assert found[0]['backend']['pid'] == 77


def test_server_pids_are_sorted_by_the_server_each_connection_is_to():
    """A pid names a backend on one server only: a read entry's connections are its standby's."""
    servers = [{'database': 'fdtdemo', 'remote_pid': 501}, {'database': 'fdtdemo_ro', 'remote_pid': 501},
               {'database': 'fdtdemo_ro', 'remote_pid': 777}, {'database': 'fdtdemo', 'remote_pid': 0},
               {'database': 'other', 'remote_pid': 9}]
    found = sessions.server_pids_by_server(servers, {'fdtdemo_ro': 'standby1'}, 'primary')
    assert found == {'primary': {501, 9}, 'standby1': {501, 777}}
    assert sessions.server_pids_by_server([], {}, 'primary') == {}


def test_a_server_connection_names_the_pgbouncer_client_linked_to_it():
    servers = [dict(SERVERS[0]), {'database': 'fdtdemo', 'link': '', 'remote_pid': 4243},
               {'database': 'fdtdemo', 'link': '0xc2', 'remote_pid': 0},
               {'database': 'fdtdemo', 'link': '0xc3', 'remote_pid': 4244}]
    clients = CLIENTS + [{'ptr': '0xc2', 'addr': '10.0.0.32', 'port': 1}, {'ptr': '0xc3', 'addr': 'unix', 'port': 6432}]
    assert sessions.server_clients(servers, clients) == {4242: '10.0.0.31:51234', 4244: 'unix'}


def test_entries_reaching_their_server_over_a_unix_socket():
    databases = [{'name': 'fdtdemo', 'host': '/run/postgresql'}, {'name': 'fdtdemo_ro', 'host': '10.0.0.11'},
                 {'name': 'local', 'host': None}, {'name': 'pgbouncer', 'host': None}]
    assert sessions.unix_socket_backends(databases, ['fdtdemo'])
    assert sessions.unix_socket_backends(databases, ['local'])
    assert not sessions.unix_socket_backends(databases, ['fdtdemo_ro'])
    assert not sessions.unix_socket_backends(databases, [])


def test_query_summary_is_the_first_keyword_and_the_length_never_the_text():
    secret = "ALTER ROLE app PASSWORD 'hunter2'"
    assert sessions.query_summary(secret) == 'ALTER, %d characters' % len(secret)
    assert 'hunter2' not in sessions.query_summary(secret)
    assert sessions.query_summary('/* report */ -- monthly\n (select 1)').startswith('SELECT, ')
    assert sessions.query_summary('x' * 200).endswith('200 characters or more')
    assert sessions.query_summary('') == 'no query text' and sessions.query_summary(None) == 'no query text'


def test_drain_holders_and_how_to_end_each():
    rows = [{'pid': 1, 'state': 'active', 'xact_seconds': 12.0, 'state_seconds': 12.0},
            {'pid': 2, 'state': 'active', 'xact_seconds': 12.0, 'state_seconds': 12.0},
            {'pid': 3, 'state': 'active', 'xact_seconds': 2.0, 'state_seconds': 2.0},
            {'pid': 4, 'state': 'idle in transaction', 'xact_seconds': 2.0, 'state_seconds': 1.5},
            {'pid': 5, 'state': 'idle', 'xact_seconds': None, 'state_seconds': 99.0}]
    through = dict((pid, 'entry fdtdemo_ro on pgbouncer2') for pid in (1, 3, 4, 5))
    # pid 2 is no pgbouncer server connection; 3 is younger than the wait; 5 is in no transaction.
    assert [r['pid'] for r in sessions.drain_holders(rows, through, 9.5)] == [1, 4]
    assert sessions.end_session_fix(rows[0], 'standby2') == 'SELECT pg_cancel_backend(1) on standby2'
    assert sessions.end_session_fix(rows[3], 'standby2') == 'SELECT pg_terminate_backend(4) on standby2'
    text = sessions.describe_session(dict(rows[0], usename='app', application_name='report', query='SELECT 1'),
                                     through[1], '10.0.0.5:4444', with_query=True)
    assert text == ("pid 1 (user app, application 'report', from 10.0.0.5:4444 through entry fdtdemo_ro on pgbouncer2, "
                    "active for 12.0 s, transaction open 12.0 s, query: SELECT, 8 characters)")
