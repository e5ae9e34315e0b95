"""Pure parsing and decision functions of the pgbouncer admin console (no database)."""
import psycopg2.extensions
import pytest

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import drain as dr
from ansible_collections.fastdowntime.postgresql.plugins.module_utils import pgbouncer_console as pc
from ansible_collections.fastdowntime.postgresql.plugins.module_utils import sessions

LABEL = 'pgbouncer1 (10.213.47.21:6432)'

# SHOW DATABASES as pgbouncer 1.18 returns it (columns trimmed to those used).
DATABASES = [
    {'name': 'fdtdemo', 'database': 'fdtdemo', 'paused': 1, 'disabled': 0},
    {'name': 'fdtdemo_ro', 'database': 'fdtdemo', 'paused': 0, 'disabled': 1},
    {'name': 'other', 'database': 'otherdb', 'paused': 0, 'disabled': 0},
    {'name': 'pgbouncer', 'database': 'pgbouncer', 'paused': 0, 'disabled': 0},
]


def test_parse_version():
    assert pc.parse_version('PgBouncer 1.18.0') == (1, 18, 0)
    assert pc.parse_version('PgBouncer 1.21') == (1, 21, 0)
    assert pc.parse_version('garbage') == (0, 0, 0)
    assert pc.version_from_rows([{'version': 'PgBouncer 1.18.0'}]) == ((1, 18, 0), 'PgBouncer 1.18.0')


def test_show_state_only_where_the_version_has_it():
    assert not pc.has_show_state((1, 18, 0))
    assert pc.has_show_state((1, 19, 0))
    assert pc.parse_state([{'key': 'active', 'value': 'yes'}, {'key': 'paused', 'value': 'no'}]) == \
        {'active': True, 'paused': False}


def test_normalize_rows_converts_text_numbers():
    rows = pc.normalize_rows([{'name': 'a', 'paused': '1', 'maxwait_us': '250', 'host': 'x'}])
    assert rows == [{'name': 'a', 'paused': 1, 'maxwait_us': 250, 'host': 'x'}]


def test_entries_by_target_database_exclude_admin_db():
    assert pc.deploy_entries(DATABASES, LABEL, db_name='fdtdemo') == ['fdtdemo', 'fdtdemo_ro']
    assert pc.deploy_entries(DATABASES, LABEL) == ['fdtdemo', 'fdtdemo_ro', 'other']


def test_explicit_entries_win_and_unknown_names_fail_naming_the_host():
    assert pc.deploy_entries(DATABASES, LABEL, db_name='fdtdemo', explicit=['other']) == ['other']
    with pytest.raises(pc.ConsoleError) as err:
        pc.deploy_entries(DATABASES, LABEL, explicit=['fdtdemo', 'nope'])
    assert 'pgbouncer1' in str(err.value) and 'nope' in str(err.value) and '\n' not in str(err.value)


def test_unknown_db_name_fails():
    with pytest.raises(pc.ConsoleError, match='no pgbouncer database points at database missing'):
        pc.deploy_entries(DATABASES, LABEL, db_name='missing')


def test_entry_flags():
    flags = pc.entry_flags(DATABASES, ['fdtdemo', 'fdtdemo_ro'])
    assert flags == {'fdtdemo': {'paused': True, 'disabled': False},
                     'fdtdemo_ro': {'paused': False, 'disabled': True}}


def test_drained_needs_paused_and_no_server_connection():
    servers = [{'database': 'other', 'state': 'active'}]
    assert pc.is_drained(DATABASES, servers, ['fdtdemo'])
    assert not pc.is_drained(DATABASES, servers + [{'database': 'fdtdemo', 'state': 'idle'}], ['fdtdemo'])
    assert not pc.is_drained(DATABASES, [], ['fdtdemo', 'fdtdemo_ro'])  # fdtdemo_ro not paused


def test_max_wait_is_the_longest_over_the_entries_pools():
    pools = [
        {'database': 'fdtdemo', 'maxwait': 1, 'maxwait_us': 250000},
        {'database': 'fdtdemo_ro', 'maxwait': 0, 'maxwait_us': 900000},
        {'database': 'other', 'maxwait': 9, 'maxwait_us': 0},
    ]
    assert pc.max_wait_ms(pools, ['fdtdemo', 'fdtdemo_ro']) == 1250.0
    assert pc.max_wait_ms(pools, ['fdtdemo_ro']) == 900.0
    assert pc.max_wait_ms([], ['fdtdemo']) == 0.0


SERVERS = [
    {'database': 'fdtdemo', 'state': 'active', 'user': 'fdt_app', 'link': '0xc1',
     'local_addr': '10.213.47.21', 'local_port': 40001, 'remote_pid': 777},
    {'database': 'fdtdemo', 'state': 'idle', 'user': 'fdt_app', 'link': '',
     'local_addr': '10.213.47.21', 'local_port': 40002, 'remote_pid': 778},
    {'database': 'other', 'state': 'active', 'user': 'x', 'link': '0xc9',
     'local_addr': '10.213.47.21', 'local_port': 40003, 'remote_pid': 779},
]
CLIENTS = [
    {'ptr': '0xc1', 'user': 'fdt_app', 'addr': '10.213.47.31', 'port': 51234, 'application_name': 'demo'},
    {'ptr': '0xc9', 'user': 'x', 'addr': '10.213.47.32', 'port': 5, 'application_name': ''},
]


def test_holders_join_servers_to_clients_for_the_entries_only():
    found = dr.holders(SERVERS, CLIENTS, ['fdtdemo'], LABEL)
    assert len(found) == 1
    holder = found[0]
    assert (holder['client_user'], holder['client_addr'], holder['client_port']) == ('fdt_app', '10.213.47.31', 51234)
    assert (holder['server_local_addr'], holder['server_local_port'], holder['backend_pid']) == \
        ('10.213.47.21', 40001, 777)


def test_match_backends_by_server_local_address_and_port():
    found = dr.holders(SERVERS, CLIENTS, ['fdtdemo'], LABEL)
    activity = [
        {'pid': 1, 'client_addr': '10.213.47.22', 'client_port': 40001, 'usename': 'wrong host'},
        {'pid': 777, 'client_addr': '10.213.47.21', 'client_port': 40001, 'usename': 'fdt_app',
         'state': 'idle in transaction', 'query': 'UPDATE t\n SET x = 1', 'xact_age_seconds': 12.34},
    ]
    sessions.match_backends(found, activity)
    assert found[0]['backend']['pid'] == 777
    text = dr.describe_holder(found[0])
    assert 'fdt_app@10.213.47.31:51234' in text and 'entry fdtdemo' in text
    assert 'transaction open 12.3 s' in text and '\n' not in text
    # The query's first keyword and length, never its text (its literals may carry secrets).
    assert 'query: UPDATE, 19 characters' in text and 'SET x' not in text
    assert text.endswith('wait for it to finish, or end it (SELECT pg_terminate_backend(777) on the primary)')
    found[0]['server'] = 'standby1 (10.213.47.11:5432)'
    found[0]['backend'] = dict(found[0]['backend'], state='active', state_seconds=9.5)
    text = dr.describe_holder(found[0])
    assert 'backend pid 777 (user fdt_app' in text and 'active for 9.5 s' in text
    assert text.endswith(') on standby1 (10.213.47.11:5432) - wait for it to finish, or end it '
                         '(SELECT pg_cancel_backend(777) on standby1 (10.213.47.11:5432))')


def test_a_pid_of_another_server_is_not_the_holders_backend():
    # pgbouncer's server connection to a standby has remote_pid 777; the primary's pid 777 is
    # another backend (another client port, or a local socket): never matched, never terminated.
    for other in ({'pid': 777, 'client_addr': '10.213.47.21', 'client_port': 40002, 'usename': 'someone'},
                  {'pid': 777, 'client_addr': None, 'client_port': -1, 'usename': 'local psql'}):
        found = sessions.match_backends(dr.holders(SERVERS, CLIENTS, ['fdtdemo'], LABEL), [other])
        assert found[0]['backend'] is None
    # A server connection over a unix socket (pgbouncer shows "unix" and the server's port) is a local backend's.
    unix = [dict(row, local_addr='unix', local_port=5432) for row in SERVERS]
    local = {'pid': 777, 'client_addr': None, 'client_port': -1, 'usename': 'fdt_app'}
    found = sessions.match_backends(dr.holders(unix, CLIENTS, ['fdtdemo'], LABEL), [local])
    assert found[0]['backend'] is local
    tcp = {'pid': 777, 'client_addr': '10.213.47.21', 'client_port': 40001, 'usename': 'elsewhere'}
    assert sessions.match_backends(dr.holders(unix, CLIENTS, ['fdtdemo'], LABEL), [tcp])[0]['backend'] is None


def test_match_backends_leaves_unknown_holders_without_backend():
    found = sessions.match_backends(dr.holders(SERVERS, CLIENTS, ['fdtdemo'], LABEL), [])
    assert found[0]['backend'] is None
    assert 'backend pid' not in dr.describe_holder(found[0])


def test_quote_entry_doubles_quotes():
    assert pc.quote_entry('fdtdemo') == '"fdtdemo"'
    assert pc.quote_entry('we"ird') == '"we""ird"'


def test_drain_refuses_an_unknown_policy_and_needs_a_deadline():
    with pytest.raises(ValueError):
        dr.drain([], deadline_seconds=1, policy='maybe')
    with pytest.raises(ValueError):
        dr.drain([])


class FakeAsyncConsoleConn:
    """An idle async admin connection (its PAUSE returned) that logs what happens, in order,
    and answers at once: a SHOW with ``answers[sql]`` ((columns, rows)), a command with its tag,
    or with the error ``fail[sql]`` (what pgbouncer or libpq said)."""
    closed = False

    def __init__(self, name, log, answers=None, fail=None):
        self.name, self.log = name, log
        self.answers, self.fail = dict(answers or {}), dict(fail or {})
        self.sql = None

    def cursor(self):
        conn = self

        class Cursor:
            # Like psycopg2's, each cursor keeps its own answer: rows may be fetched after the
            # connection has sent another command.
            sql = None

            @property
            def description(self):
                return [(c,) for c in conn.answers[self.sql][0]] if self.sql in conn.answers else None

            @property
            def statusmessage(self):
                return self.sql.split()[0]

            def execute(self, sql):
                conn.sql = self.sql = sql
                conn.log.append(('send', conn.name, sql))

            def fetchall(self):
                columns, rows = conn.answers[self.sql]
                return [tuple(r[c] for c in columns) for r in rows]
        return Cursor()

    def poll(self):
        self.log.append(('answer', self.name))
        if self.sql in self.fail:
            raise psycopg2.OperationalError(self.fail.pop(self.sql))
        return psycopg2.extensions.POLL_OK

    def isexecuting(self):
        return False

    def close(self):
        self.closed = True


def sends_then_answers(log):
    sends = [i for i, item in enumerate(log) if item[0] == 'send']
    answers = [i for i, item in enumerate(log) if item[0] == 'answer']
    return [log[i][2] for i in sends], max(sends) < min(answers)


def no_show(monkeypatch, console):
    monkeypatch.setattr(console, 'show', lambda what: pytest.fail('SHOW %s on the console: it blocks' % what))
    monkeypatch.setattr(console, '_run', lambda sql, conn=None: pytest.fail('%s on the console: it blocks' % sql))


def test_resumes_are_sent_all_at_once_on_the_connections_their_pauses_used(monkeypatch):
    log = []
    console = pc.Console({'host': '10.0.0.21', 'port': 6432, 'user': 'admin', 'name': 'pgb1'})
    console.entries = ['db', 'db_ro']
    console.paused_by_us = {'db', 'db_ro'}
    console.pause_conns = {'db': FakeAsyncConsoleConn('db', log), 'db_ro': FakeAsyncConsoleConn('db_ro', log)}
    # The PAUSEs returned: their connections are kept for the RESUMEs, not closed.
    console.close_pause_connections()
    assert sorted(console.resume_conns) == ['db', 'db_ro'] and console.pause_conns == {}
    del log[:]
    monkeypatch.setattr(console, 'show', lambda what: [])  # SHOW POOLS: no pools connection here
    console.resume(verify=False)
    sent, at_once = sends_then_answers(log)
    assert sent == ['RESUME %s' % pc.quote_entry(e) for e in ('db', 'db_ro')]
    # Both sent before either answer is awaited: one round trip for every entry.
    assert at_once and console.resume_conns == {}
    # One idle connection is kept for resume_verify; the other is closed with the console, not inside the window.
    assert console.verify_conn is not None and len(console.spent_conns) == 1
    assert not console.verify_conn.closed and not console.spent_conns[0].closed
    console.close()
    assert console.spent_conns == [] and console.verify_conn is None


def test_a_resume_answered_not_paused_is_resumed_and_named_as_someone_elses(monkeypatch):
    """The RESUME of an entry someone else resumed first: no failure, but named in
    ``not_paused`` - on the PAUSE's connection and on the console's own alike; the
    verification's RESUME of an entry someone else left paused is not named."""
    log = []
    console = pc.Console({'host': '10.0.0.21', 'port': 6432, 'user': 'admin', 'name': 'pgb1'})
    console.entries = ['db', 'db_ro', 'db_rw']
    console.paused_by_us = {'db', 'db_ro', 'db_rw'}
    console.resume_conns = {
        'db': FakeAsyncConsoleConn('db', log, fail={'RESUME "db"': 'ERROR:  database db is not paused'}),
        'db_ro': FakeAsyncConsoleConn('db_ro', log)}
    own = []

    def run(sql, conn=None):
        own.append(sql)
        if sql == 'RESUME "db_rw"':
            raise pc.ConsoleError('pgb1: RESUME "db_rw" failed: ERROR:  database db_rw is not paused')
        return 'RESUME'
    monkeypatch.setattr(console, 'show', lambda what: [])
    monkeypatch.setattr(console, '_run', run)
    done = console.resume(verify=False)
    assert sorted(done['resumed']) == ['db', 'db_ro', 'db_rw'] and done['not_paused'] == ['db', 'db_rw']
    assert own == ['RESUME "db_rw"'] and console.paused_by_us == set()
    # Any other answer is still a failure naming the pgbouncer.
    console.paused_by_us = {'db'}
    console.resume_conns = {'db': FakeAsyncConsoleConn('db', log, fail={'RESUME "db"': 'ERROR:  no such database'})}
    with pytest.raises(pc.ConsoleError, match='no such database'):
        console.resume(verify=False)
    assert pc.is_not_paused('ERROR:  database db is not paused') and not pc.is_not_paused(None)


POOLS_COLUMNS = ('database', 'user', 'cl_waiting', 'maxwait', 'maxwait_us')


def test_a_show_answer_is_converted_when_first_used_not_as_it_arrives(monkeypatch):
    # Inside the window the other pgbouncers' RESUME answers come first: a SHOW POOLS is read
    # from the wire as it arrives, its rows converted only when the controller asks for them.
    converted = []
    real = pc.rows_as_dicts
    monkeypatch.setattr(pc, 'rows_as_dicts', lambda cursor: converted.append(1) or real(cursor))
    log = []
    row = {'database': 'db', 'user': 'app', 'cl_waiting': 3, 'maxwait': 1, 'maxwait_us': 250000}
    pools = {'SHOW POOLS': (POOLS_COLUMNS, [row])}
    conn = FakeAsyncConsoleConn('pools', log, pools)
    query = pc.Query(conn, 'SHOW POOLS', 'pgb1')
    assert query.poll() is None and query.settled and query.answered_at is not None
    assert converted == []
    # Another command on the same connection before the rows are used: each cursor keeps its answer.
    other = pc.Query(conn, 'RESUME "db"', 'pgb1')
    assert other.poll() is None and other.result() == 'RESUME'
    assert query.rows[0]['maxwait_us'] == 250000 and query.result() == query.rows
    assert converted == [1]   # once
    # The console's longest wait at the RESUMEs, from that answer, once asked.
    console = pc.Console({'host': '10.0.0.21', 'port': 6432, 'user': 'admin', 'name': 'pgb1'})
    console.entries = ['db']
    console._pools_query = pc.Query(FakeAsyncConsoleConn('pools', log, pools), 'SHOW POOLS', 'pgb1')
    console._pools_query.poll()
    assert console.with_maxwait({'entries': ['db']})['maxwait_ms'] == 1250.0
    assert console.pools_at_resume[0]['cl_waiting'] == 3
    # Its connection seen lost before the rows are used (a pgbouncer restarted): psycopg2 refuses to
    # read the cursor; the wait is not measured - no traceback.
    console._pools_query = pc.Query(FakeAsyncConsoleConn('pools', log, pools), 'SHOW POOLS', 'pgb1')
    console._pools_query.poll()

    def lost(cursor):
        raise psycopg2.InterfaceError('cursor already closed')
    monkeypatch.setattr(pc, 'rows_as_dicts', lost)
    assert console.with_maxwait({'entries': ['db']})['maxwait_ms'] is None and console.pools_at_resume is None


DATABASES_COLUMNS = ('name', 'paused', 'disabled')
SERVERS_COLUMNS = ('database', 'state', 'link')


def test_drain_confirmation_reads_databases_and_servers_in_one_round_trip_without_blocking(monkeypatch):
    log = []
    console = pc.Console({'host': '10.0.0.21', 'port': 6432, 'user': 'admin', 'name': 'pgb1'})
    console.entries = ['db']
    no_show(monkeypatch, console)
    databases = {'SHOW DATABASES': (DATABASES_COLUMNS, [{'name': 'db', 'paused': 1, 'disabled': 0}])}
    console.pause_conns = {'db': FakeAsyncConsoleConn('db', log, {'SHOW SERVERS': (SERVERS_COLUMNS, [])})}
    console.pools_conn = FakeAsyncConsoleConn('pools', log, databases)
    assert console.drained() is True
    # Both idle (their PAUSE returned), both SHOWs sent before either answer is read: one round trip.
    assert log == [('answer', 'db'), ('answer', 'pools'), ('send', 'db', 'SHOW SERVERS'),
                   ('send', 'pools', 'SHOW DATABASES'), ('answer', 'db'), ('answer', 'pools')]
    # A server connection still busy: not drained.
    busy = {'SHOW SERVERS': (SERVERS_COLUMNS, [{'database': 'db', 'state': 'active', 'link': 'x'}])}
    console.pause_conns = {'db': FakeAsyncConsoleConn('db', log, busy)}
    assert console.drained() is False
    # One idle connection only (no pools connection): both SHOWs on it, in turn.
    del log[:]
    console.pools_conn = None
    console.pause_conns = {'db': FakeAsyncConsoleConn('db', log, dict(databases, **{'SHOW SERVERS': busy['SHOW SERVERS']}))}
    assert console.drained() is False
    assert [item[2] for item in log if item[0] == 'send'] == ['SHOW SERVERS', 'SHOW DATABASES']


# -- pgbouncer's own settings (SHOW CONFIG) --------------------------------------

def test_budget_cap_is_the_first_timeout_that_hits_a_queued_client_less_a_margin():
    configs = {'pgb1': {'query_wait_timeout': '3', 'query_timeout': '0', 'client_idle_timeout': '1'},
               'pgb2': {'query_wait_timeout': '120', 'query_timeout': '10.5'}}
    cap = pc.budget_cap(configs)
    assert cap == {'pgbouncer': 'pgb1', 'setting': 'query_wait_timeout', 'timeout_seconds': 3.0, 'seconds': 2.0}
    # client_idle_timeout never hits a queued client: it does not cap anything
    assert pc.budget_cap({'pgb': {'client_idle_timeout': '1', 'query_wait_timeout': '0'}}) is None
    assert pc.budget_cap({'pgb': {'query_wait_timeout': '0.5'}})['seconds'] == 0.0


def test_config_seconds_reads_what_pgbouncer_shows():
    assert pc.config_seconds({'a': '120'}, 'a') == 120.0
    assert pc.config_seconds({'a': '2.5'}, 'a') == 2.5
    assert pc.config_seconds({'a': 'garbage'}, 'a') == 0.0
    assert pc.config_seconds({}, 'a') == 0.0
    assert pc.parse_config([{'key': 'pool_mode', 'value': 'transaction', 'changeable': 'yes'}]) == \
        {'pool_mode': 'transaction'}


def test_pool_mode_of_an_entry_falls_back_to_the_global_one():
    databases = [{'name': 'a', 'pool_mode': 'session'}, {'name': 'b', 'pool_mode': None}]
    assert pc.entry_pool_modes(databases, {'pool_mode': 'transaction'}, ['a', 'b']) == \
        {'a': 'session', 'b': 'transaction'}
    pools = [{'database': 'a', 'cl_active': 2, 'cl_waiting': 1}, {'database': 'a', 'cl_active': 1},
             {'database': 'x', 'cl_active': 9}]
    assert pc.clients_per_entry(pools, ['a', 'b']) == {'a': 4, 'b': 0}


def test_a_users_own_session_pool_mode_is_an_entry_of_its_own():
    # [users] fdt_app = pool_mode=session wins over the entry's transaction pooling: SHOW DATABASES
    # and SHOW CONFIG say transaction, only SHOW POOLS tells (a new user's try: the drain stalled 9.5 s).
    databases = [{'name': 'a', 'pool_mode': 'transaction'}, {'name': 'b', 'pool_mode': None}]
    pools = [{'database': 'a', 'user': 'app', 'cl_active': 3, 'cl_waiting': 1, 'pool_mode': 'session'},
             {'database': 'a', 'user': 'deploy', 'cl_active': 2, 'pool_mode': 'transaction'},
             {'database': 'b', 'user': 'app', 'cl_active': 1, 'pool_mode': 'session'},
             {'database': 'x', 'user': 'app', 'cl_active': 9, 'pool_mode': 'session'}]
    modes = pc.entry_pool_modes(databases, {'pool_mode': 'transaction'}, ['a', 'b'], pools)
    assert modes == {'a': 'transaction', 'a (user app)': 'session', 'b': 'transaction', 'b (user app)': 'session'}
    assert pc.clients_per_entry(pools, ['a', 'b'], modes) == {'a': 2, 'a (user app)': 4, 'b': 0, 'b (user app)': 1}


def test_reuses_port():
    assert pc.reuses_port({'so_reuseport': '1'})
    assert not pc.reuses_port({'so_reuseport': '0'})
    assert not pc.reuses_port({})


# -- the client probe ------------------------------------------------------------

PROBED = {'pgb1 (10.0.0.21:6432)': {'db': None, 'db_ro': 'a client got no answer to its SELECT 1 within 2.0 s'},
          'pgb2 (10.0.0.22:6432)': {'db': 'FATAL: password authentication failed for user "x"',
                                    'db_ro': 'ERROR: database "db_ro" is disabled'}}


def test_probe_verdict_tells_silence_refusal_and_an_unknown_login_apart():
    verdict = pc.probe_verdict(PROBED)
    assert verdict['answering'] == [('pgb1 (10.0.0.21:6432)', 'db')]
    assert [item[1] for item in verdict['silent']] == ['db_ro']
    assert [item[1] for item in verdict['refused']] == ['db_ro']
    assert [item[1] for item in verdict['unverified']] == ['db']
    ok, line = pc.describe_verdict(verdict)
    assert not ok and line.startswith('NOT ANSWERING CLIENTS after RESUME: db_ro on pgb1') and '\n' not in line


def test_a_fenced_entry_is_expected_to_refuse_clients():
    fenced = [('pgb2 (10.0.0.22:6432)', 'db_ro'), ('pgb1 (10.0.0.21:6432)', 'db_ro')]
    ok, line = pc.describe_verdict(pc.probe_verdict(PROBED, fenced))
    assert ok and 'NOT verified by a client on db on pgb2' in line
    assert 'left DISABLED (fenced) until its standby catches up: db_ro on pgb1 (10.0.0.21:6432), db_ro on pgb2' in line
    # Every other entry answering: the fenced one is still named, never hidden behind "every entry answering".
    ok, line = pc.describe_verdict(pc.probe_verdict({'pgb1': {'db': None, 'db_ro': 'ERROR: database "db_ro" is '
                                                                                   'disabled'}}, [('pgb1', 'db_ro')]))
    assert ok and line == 'every pgbouncer resumed; left DISABLED (fenced) until its standby catches up: db_ro on pgb1'


def test_every_entry_answering_is_the_only_way_to_say_so():
    ok, line = pc.describe_verdict(pc.probe_verdict({'pgb1': {'db': None, 'db_ro': None}}))
    assert ok and line == 'every pgbouncer entry resumed and answering clients (2 checked)'


def test_probe_logs_in_as_the_probe_user_defaulting_to_the_primary_deploy_user():
    primary = {'user': 'deploy', 'password': 'p1'}
    own = {'host': 'h', 'port': 6432, 'user': 'admin', 'password': 'a', 'probe_user': 'app', 'probe_password': 'p2'}
    plain = {'host': 'h', 'port': 6432, 'user': 'admin', 'password': 'a'}
    with_login = pc.with_probe_login([own, plain], primary)
    assert (with_login[0]['probe_user'], with_login[0]['probe_password']) == ('app', 'p2')
    assert (with_login[1]['probe_user'], with_login[1]['probe_password']) == ('deploy', 'p1')
    console = pc.Console(with_login[1])
    target = pc.probe_target(console, 'db')
    assert (target['user'], target['password'], target['dbname'], target['host']) == ('deploy', 'p1', 'db', 'h')


def test_a_console_declared_for_one_process_must_reach_it():
    console = pc.Console({'host': '/run/pgb/p2', 'port': 6432, 'user': 'fdt_admin', 'unix_socket_dir': '/run/pgb/p2'})
    console.config = {'unix_socket_dir': '/run/pgb/p2/'}
    console.check_process()
    console.config = {'unix_socket_dir': '/run/pgb/p1'}
    with pytest.raises(pc.ConsoleError, match='unix_socket_dir is /run/pgb/p1, not /run/pgb/p2'):
        console.check_process()


def test_show_pools_travels_with_the_resumes_and_costs_no_round_trip(monkeypatch):
    log = []
    console = pc.Console({'host': '10.0.0.21', 'port': 6432, 'user': 'admin', 'name': 'pgb1'})
    console.entries = ['db', 'db_ro']
    console.paused_by_us = {'db', 'db_ro'}
    rows = [{'database': 'db', 'cl_waiting': 2, 'maxwait': 0, 'maxwait_us': 30000},
            {'database': 'other', 'cl_waiting': 1, 'maxwait': 9, 'maxwait_us': 0}]
    console.resume_conns = {'db': FakeAsyncConsoleConn('db', log), 'db_ro': FakeAsyncConsoleConn('db_ro', log)}
    console.pools_conn = FakeAsyncConsoleConn('pools', log, {'SHOW POOLS': (
        ('database', 'cl_waiting', 'maxwait', 'maxwait_us'), rows)})
    no_show(monkeypatch, console)
    done = console.resume(verify=False)
    assert done['maxwait_ms'] == 30.0 and done['resumed'] == ['db', 'db_ro'] and done['enabled'] == []
    sent, at_once = sends_then_answers(log)
    # SHOW POOLS first, then every RESUME, all before any answer is awaited: one round trip.
    assert sent == ['SHOW POOLS', 'RESUME %s' % pc.quote_entry('db'), 'RESUME %s' % pc.quote_entry('db_ro')]
    assert at_once
    assert console.paused_by_us == set() and console.pools_conn is None


def test_without_a_pools_connection_show_pools_is_read_before_the_resumes(monkeypatch):
    log = []
    console = pc.Console({'host': '10.0.0.21', 'port': 6432, 'user': 'admin', 'name': 'pgb1'})
    console.entries = ['db']
    console.paused_by_us = {'db'}
    console.resume_conns = {'db': FakeAsyncConsoleConn('db', log)}
    monkeypatch.setattr(console, 'show', lambda what: log.append(('show', what)) or
                        [{'database': 'db', 'cl_waiting': 1, 'maxwait': 1, 'maxwait_us': 500000}])
    assert console.resume(verify=False)['maxwait_ms'] == 1500.0
    assert log[0] == ('show', 'POOLS') and log[1][:2] == ('send', 'db')


def test_verify_reads_on_the_connection_the_resume_kept_and_resumes_what_it_finds_paused(monkeypatch):
    log = []
    console = pc.Console({'host': '10.0.0.21', 'port': 6432, 'user': 'admin', 'name': 'pgb1'})
    console.entries = ['db', 'db_ro']
    no_show(monkeypatch, console)
    shows = [[{'name': 'db', 'paused': 1, 'disabled': 0}, {'name': 'db_ro', 'paused': 0, 'disabled': 1}],
             [{'name': 'db', 'paused': 0, 'disabled': 0}, {'name': 'db_ro', 'paused': 0, 'disabled': 0}]]

    class Verify(FakeAsyncConsoleConn):
        def cursor(self):
            if self.sql == 'SHOW DATABASES' or self.sql is None:
                self.answers['SHOW DATABASES'] = (DATABASES_COLUMNS, shows.pop(0) if shows else [])
            return FakeAsyncConsoleConn.cursor(self)

    console.verify_conn = Verify('verify', log, fail={'RESUME "db"': 'ERROR: database "db" is not paused'})
    assert console.verify_resumed() == {'resumed': ['db'], 'enabled': ['db_ro']}
    # Someone resumed db meanwhile ("is not paused"): the goal, not a failure.
    assert [item[2] for item in log if item[0] == 'send'] == ['SHOW DATABASES', 'RESUME "db"', 'ENABLE "db_ro"',
                                                              'SHOW DATABASES']


class AlreadyPausedConsole:
    """A console whose one entry someone else paused; reading its flags now is a round trip the window must not pay."""
    label = 'pgb1'
    entries = ['db']

    def __init__(self):
        self.pause_conns, self.pause_queries, self.paused_by_us, self.closed = {}, {}, set(), 0

    def flags(self):
        raise AssertionError('SHOW DATABASES inside the window')

    def open_pause_connections(self, entries):
        assert entries == []

    def drained_steps(self, entries=None):
        assert entries == ['db']
        yield []
        return True

    def close_pause_connections(self):
        self.closed += 1


def test_drain_takes_the_entries_already_paused_from_before_the_window():
    console = AlreadyPausedConsole()
    flags = {console: {'db': {'paused': True, 'disabled': False}}}
    done = dr.drain([console], deadline_seconds=1, flags=flags, poll_interval=0.001)
    assert done['consoles'][0]['already_paused'] == ['db'] and done['consoles'][0]['paused'] == []
    assert console.paused_by_us == set()


@pytest.mark.parametrize('text, lost', [
    ('pgbouncer1 (10.0.0.1:6432): RESUME fdtdemo failed: server closed the connection unexpectedly This probably '
     'means the server terminated abnormally', True),
    ('pgbouncer1: SHOW DATABASES failed: connection already closed', True),
    ('pgbouncer1: RESUME fdtdemo failed: ERROR: no such database: fdtdemo', False),
    ('pgbouncer1: fdtdemo still paused or disabled after RESUME/ENABLE: check the pgbouncer log', False),
    ('pgbouncer1: RESUME fdtdemo: no answer within 5 s', False),
    ('', False),
])
def test_connection_lost_tells_a_gone_process_from_a_refusal(text, lost):
    assert pc.connection_lost(text) is lost


class RestartedConsole(pc.Console):
    """A console whose process restarted mid-window: the RESUMEs on the PAUSE connections
    fail with a lost connection while the console's own connection still looks open."""

    def __init__(self, error):
        pc.Console.__init__(self, {'name': 'pgbouncer1', 'host': '10.0.0.1', 'port': 6432})
        self.conn = type('Conn', (), {'closed': 0})()
        self.error, self.calls, self.reopened = error, 0, 0

    def reopen(self):
        self.reopened += 1
        return self

    def resume_steps(self, entries=None, verify=True):
        self.calls += 1
        yield []
        if self.calls == 1:
            raise pc.ConsoleError(self.error)
        return {'host': self.label, 'resumed': [], 'enabled': [], 'maxwait_ms': None}


def test_resume_reconnects_when_the_process_is_gone_though_the_console_looks_open():
    console = RestartedConsole('pgbouncer1: RESUME fdtdemo failed: server closed the connection unexpectedly')
    result = console.resume_reconnecting(verify=False)
    assert result['reconnected'] is True and console.reopened == 1 and console.calls == 2


def test_resume_does_not_retry_what_a_live_pgbouncer_refused():
    console = RestartedConsole('pgbouncer1: fdtdemo still paused or disabled after RESUME/ENABLE')
    with pytest.raises(pc.ConsoleError):
        console.resume_reconnecting(verify=False)
    assert console.reopened == 0 and console.calls == 1


def test_a_pause_waits_for_a_transaction_as_often_as_one_is_in_flight():
    stats = [{'database': 'app', 'avg_xact_count': 200, 'avg_xact_time': 20000},     # 200/s x 20 ms: 4 in flight
             {'database': 'app_ro', 'avg_xact_count': 10, 'avg_xact_time': 5000},    # 10/s x 5 ms: in flight 5 %
             {'database': 'other', 'avg_xact_count': 500, 'avg_xact_time': 9000000},  # not drained: not waited for
             {'database': 'pgbouncer', 'avg_xact_count': 3, 'avg_xact_time': 0}]
    # Busy: about one transaction's length; nearly idle: that length as often as one is in flight.
    assert pc.xact_wait_seconds(stats, ['app']) == pytest.approx(0.02)
    assert pc.xact_wait_seconds(stats, ['app_ro']) == pytest.approx(0.005 * 0.05)
    assert pc.xact_wait_seconds(stats, ['app', 'app_ro']) == pytest.approx(0.02)
    # No transaction in pgbouncer's last stats period, or no such row: nothing to wait for.
    assert pc.xact_wait_seconds(stats, ['pgbouncer']) == 0.0
    assert pc.xact_wait_seconds([], ['app']) == 0.0


# SHOW POOLS as pgbouncer 1.18 returns it (columns trimmed to those used).
POOLS = [
    {'database': 'fdtdemo', 'user': 'fdt_app', 'cl_active': 8, 'cl_waiting': 2, 'sv_idle': 3, 'sv_login': 1},
    {'database': 'fdtdemo', 'user': 'fdt_deploy', 'cl_active': 0, 'cl_waiting': 0, 'sv_idle': 0, 'sv_login': 0},
    {'database': 'fdtdemo_ro', 'user': 'fdt_app', 'cl_active': 1, 'cl_waiting': 0, 'sv_idle': 1, 'sv_login': '2'},
    {'database': 'other', 'user': 'fdt_app', 'cl_active': 0, 'cl_waiting': 1, 'sv_idle': 0, 'sv_login': 1},
    {'database': 'pgbouncer', 'user': 'pgbouncer', 'cl_active': 1, 'cl_waiting': 0, 'sv_idle': 0, 'sv_login': 0},
]


def test_logins_in_flight_are_those_of_the_entries_pools():
    assert pc.logins_in_flight(POOLS, ['fdtdemo', 'fdtdemo_ro']) == [('fdtdemo', 'fdt_app', 1),
                                                                     ('fdtdemo_ro', 'fdt_app', 2)]
    # another entry's login is not ours to wait for; a settled pool is empty
    assert pc.logins_in_flight(POOLS, ['fdtdemo_x']) == []
    assert pc.logins_in_flight([dict(row, sv_login=0) for row in POOLS], ['fdtdemo', 'other']) == []


class FakeConsole:
    """show('POOLS') answers the next of ``answers`` (the last one for ever)."""

    def __init__(self, label, entries, answers):
        self.label, self.entries, self.answers, self.asked = label, entries, list(answers), 0

    def show(self, what):
        assert what == 'POOLS'
        self.asked += 1
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def test_wait_logins_settled_waits_for_every_console_then_goes_on():
    settled = [dict(row, sv_login=0) for row in POOLS]
    first = FakeConsole('pgbouncer1', ['fdtdemo'], [POOLS, POOLS, settled])
    second = FakeConsole('pgbouncer2', ['fdtdemo_ro'], [settled])
    assert pc.wait_logins_settled([first, second], timeout=5, interval=0) < 5
    assert first.asked == 3 and second.asked == 3  # asked together, until the last one settled
    quiet = FakeConsole('pgbouncer1', ['fdtdemo'], [settled])
    pc.wait_logins_settled([quiet], timeout=5, interval=0)
    assert quiet.asked == 1  # nothing in flight: one round trip


def test_a_login_in_flight_past_the_wait_refuses_in_one_line_naming_host_pool_and_fix():
    stuck = FakeConsole(LABEL, ['fdtdemo', 'fdtdemo_ro'], [POOLS])
    with pytest.raises(pc.ConsoleError) as err:
        pc.wait_logins_settled([stuck], timeout=0.05, interval=0.01)
    message = str(err.value)
    assert '\n' not in message
    assert message.startswith(LABEL + ': a server login has been in flight for ')
    assert 'fdtdemo (user fdt_app, sv_login 1), fdtdemo_ro (user fdt_app, sv_login 2)' in message
    assert 'server_login_retry' in message and 'nothing paused, nothing applied' in message
    assert 'other' not in message


# What libpq says (one_line) when nothing listens, and what pgbouncer answers itself.
REFUSED_TCP = ('connection to server at "10.0.0.21", port 6432 failed: Connection refused Is the server running on '
               'that host and accepting TCP/IP connections?')
REFUSED_UNIX = ('connection to server on socket "/run/pgbouncer/.s.PGSQL.6432" failed: No such file or directory Is '
                'the server running locally and accepting connections on that socket?')


def test_nothing_listening_is_a_refusal_at_the_socket_only():
    assert pc.nothing_listening(REFUSED_TCP)
    assert pc.nothing_listening(REFUSED_UNIX)
    for answered in ('ERROR: server login has been failing, try again later (server_login_retry)',
                     'server closed the connection unexpectedly This probably means the server terminated abnormally',
                     'FATAL: password authentication failed for user "fdt_deploy"',
                     'ERROR: database "db_ro" is disabled',
                     'a client got no answer to its login within 2.0 s', None, ''):
        assert not pc.nothing_listening(answered), answered


def test_a_refused_probe_is_asked_again_only_within_the_probe_time():
    assert pc.probe_again(REFUSED_TCP, refused_since=10.0, now=10.0, timeout=2.0)
    assert pc.probe_again(REFUSED_UNIX, refused_since=10.0, now=11.9, timeout=2.0)
    assert not pc.probe_again(REFUSED_TCP, refused_since=10.0, now=12.0, timeout=2.0)
    assert not pc.probe_again('ERROR: server login has been failing, try again later (server_login_retry)',
                              refused_since=10.0, now=10.0, timeout=2.0)


@pytest.fixture
def local_port(monkeypatch):
    """(a socket bound to a free 127.0.0.1 port, not listening: connections are refused; the
    endpoint a probe asks there; the list of the probe's connection attempts)."""
    import socket
    bound = socket.socket()
    bound.bind(('127.0.0.1', 0))
    connects = []
    real_connect = pc.psycopg2.connect

    def counting(*args, **kwargs):
        connects.append(kwargs.get('port'))
        return real_connect(*args, **kwargs)
    monkeypatch.setattr(pc.psycopg2, 'connect', counting)
    endpoint = {'host': '127.0.0.1', 'port': bound.getsockname()[1], 'user': 'u', 'password': 'p', 'dbname': 'db',
                'ssl_mode': 'disable'}
    yield bound, endpoint, connects
    bound.close()


def test_probe_asks_a_refusing_target_again_until_its_time_is_up(local_port):
    dummy, endpoint, connects = local_port
    found = pc.probe([('key', endpoint)], timeout=0.3)
    assert pc.nothing_listening(found['key']), found
    assert len(connects) > 2, connects  # asked again every PROBE_RETRY_SECONDS, then reported refusing


def test_a_target_that_starts_listening_is_asked_once_more_then_judged_on_its_answer(local_port):
    """Refused, then a listener that accepts and never answers (as a paused pgbouncer): the probe
    connects once more, stops asking again, and reports the login left without an answer."""
    import threading
    bound, endpoint, connects = local_port
    timer = threading.Timer(0.15, bound.listen)
    timer.start()
    try:
        found = pc.probe([('key', endpoint)], timeout=0.5)
    finally:
        timer.join()
    assert found == {'key': 'a client got no answer to its login within 0.5 s'}, found
    assert 2 <= len(connects) <= 0.15 / pc.PROBE_RETRY_SECONDS + 2, connects


def test_a_full_pgbouncer_is_not_verified_never_not_answering():
    # pgbouncer at max_client_conn refuses the probe's connection, not the clients it serves: after RESUME
    # the deploy said "RESUME FAILED: NOT ANSWERING CLIENTS ... RESUME by hand" and failed (a new user's try).
    full = 'FATAL: no more connections allowed (max_client_conn)'
    verdict = pc.probe_verdict({'pgb1 (10.0.0.21:6432)': {'db': full, 'db_ro': full},
                                'pgb2 (10.0.0.22:6432)': {'db': None, 'db_ro': None}})
    assert verdict['refused'] == [] and [item[1] for item in verdict['full']] == ['db', 'db_ro']
    ok, line = pc.describe_verdict(verdict)
    assert ok, line
    assert line == ('every pgbouncer resumed; NOT verified by a client on db on pgb1 (10.0.0.21:6432), db_ro on pgb1 '
                    '(10.0.0.21:6432): pgb1 (10.0.0.21:6432) is full (FATAL: no more connections allowed '
                    '(max_client_conn)): new clients are refused, the connected ones served - raise max_client_conn '
                    'there (SET max_client_conn = N on its console, and in pgbouncer.ini)')


def test_server_login_retry_is_lowered_only_from_a_plain_number_above_zero():
    assert pc.login_retry_to_lower({'server_login_retry': '15'}) == '15'
    assert pc.login_retry_to_lower({'server_login_retry': ' 2.5 '}) == '2.5'
    # Already 0, absent (an old pgbouncer), or not a number pgbouncer would read back as shown: left alone.
    for config in ({'server_login_retry': '0'}, {'server_login_retry': '0.0'}, {}, {'server_login_retry': '15s'},
                   {'server_login_retry': "1'; PAUSE"}):
        assert pc.login_retry_to_lower(config) is None, config


class SettingConsole(pc.Console):
    """A console whose SETs are recorded, or refused once ``refuse`` is set (no pgbouncer)."""

    def __init__(self, label, retry, refuse=None):
        pc.Console.__init__(self, {'host': label, 'port': 6432, 'user': 'a', 'password': 'x'})
        self.config = {'server_login_retry': retry}
        self.sent, self.refuse = [], refuse
        self.conn = type('Open', (), {'closed': False, 'close': lambda self: None})()

    def _run(self, sql, conn=None):
        if self.refuse:
            raise pc.ConsoleError('%s: %s failed: %s' % (self.label, sql, self.refuse))
        self.sent.append(sql)
        return 'SET'


def test_login_retry_is_lowered_on_each_console_and_set_back_to_what_each_had():
    one, two, off = SettingConsole('a', '15'), SettingConsole('b', '1.5'), SettingConsole('c', '0')
    lowered = pc.lower_login_retry([one, two, off])
    assert lowered == {one.label: '15', two.label: '1.5'}
    assert one.sent == ['SET server_login_retry = 0'] and off.sent == []
    assert pc.restore_login_retry([one, two, off]) == []
    assert one.sent[-1] == 'SET server_login_retry = 15' and two.sent[-1] == 'SET server_login_retry = 1.5'
    assert pc.restore_login_retry([one]) == [] and len(one.sent) == 2  # nothing left to restore


def test_a_login_retry_left_lowered_is_named_with_the_command_that_restores_it():
    one = SettingConsole('a', '15')
    pc.lower_login_retry([one])
    one.refuse = 'server closed the connection unexpectedly'
    left = pc.restore_login_retry([one])
    assert len(left) == 1 and left[0].startswith(one.label + ': server_login_retry left at 0 (')
    assert left[0].endswith('run "SET server_login_retry = 15" on its console (or RELOAD it)')


def test_a_console_refusing_the_lowering_refuses_the_window_and_the_others_are_set_back():
    one, two = SettingConsole('a', '15'), SettingConsole('b', '15', refuse='not allowed')
    with pytest.raises(pc.ConsoleError, match='not allowed'):
        pc.lower_login_retry([one, two])
    assert one.sent == ['SET server_login_retry = 0', 'SET server_login_retry = 15']
