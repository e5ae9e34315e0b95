"""logins: pgbouncer's server logins after RESUME - the pure decisions."""

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import logins, preflight

DATABASES = [{'name': 'app', 'database': 'appdb'}, {'name': 'app_ro', 'database': 'appdb'},
             {'name': 'other', 'database': 'otherdb'}]
SERVERS = [{'database': 'app', 'user': 'web'}, {'database': 'app', 'user': 'web'},
           {'database': 'app', 'user': 'batch'}, {'database': 'other', 'user': 'web'}]
POOLS = [{'database': 'app', 'user': 'web', 'cl_active': 1, 'cl_waiting': 0},
         {'database': 'app', 'user': 'batch', 'cl_active': 0, 'cl_waiting': 0},
         {'database': 'app_ro', 'user': 'web', 'cl_active': 3, 'cl_waiting': 1},
         {'database': 'other', 'user': 'web', 'cl_active': 5, 'cl_waiting': 0}]


def role(name, **kw):
    row = {'rolname': name, 'rolcanlogin': True, 'rolsuper': False, 'rolconnlimit': -1, 'rolvaliduntil': None,
           'expires': False, 'connections': 0}
    row.update(kw)
    return row


def database(name, **kw):
    row = {'datname': name, 'datallowconn': True, 'datconnlimit': -1, 'connections': 0}
    row.update(kw)
    return row


def stake():
    return logins.pools_at_stake(DATABASES, SERVERS, POOLS, ['app', 'app_ro'], 'pgbouncer1')


def test_the_pools_at_stake_are_the_deploy_entries_pools_with_servers_or_clients():
    assert stake() == [
        {'pgbouncer': 'pgbouncer1', 'entry': 'app', 'user': 'batch', 'database': 'appdb', 'servers': 1,
         'clients': 0, 'relogins': 0},
        {'pgbouncer': 'pgbouncer1', 'entry': 'app', 'user': 'web', 'database': 'appdb', 'servers': 2,
         'clients': 1, 'relogins': 1},
        # Clients and no server yet: the PAUSE closes nothing, nothing logs in again for them either.
        {'pgbouncer': 'pgbouncer1', 'entry': 'app_ro', 'user': 'web', 'database': 'appdb', 'servers': 0,
         'clients': 4, 'relogins': 0},
    ]


def test_roles_that_can_log_in_pass():
    assert logins.login_problems(stake(), [role('web'), role('batch')], [database('appdb')]) == []


def test_a_role_made_nologin_since_its_connections_logged_in_is_named_with_its_fix():
    [(cause, fix)] = logins.login_problems(stake(), [role('web', rolcanlogin=False), role('batch')],
                                           [database('appdb')])
    assert 'role web is NOLOGIN now' in cause and '2 server connection(s)' in cause
    assert 'app on pgbouncer1, app_ro on pgbouncer1' in cause
    assert fix.startswith('ALTER ROLE web LOGIN')


def test_a_role_dropped_while_connected_cannot_log_in_again():
    [(cause, fix)] = logins.login_problems(stake(), [role('web')], [database('appdb')])
    assert cause.startswith('role batch no longer exists') and 'create the role batch again' in fix


def test_an_expired_password_is_refused_and_a_later_one_passes():
    [(cause, fix)] = logins.login_problems(
        stake(), [role('web', expires=True, rolvaliduntil='2026-11-30 03:00:00+00'), role('batch')],
        [database('appdb')])
    assert 'valid until 2026-11-30 03:00:00+00 (VALID UNTIL)' in cause
    assert fix == "ALTER ROLE web VALID UNTIL 'infinity' (or a later date), then deploy"
    assert logins.login_problems(stake(), [role('web', rolvaliduntil='2099-01-01'), role('batch')],
                                 [database('appdb')]) == []


def test_a_role_connection_limit_counts_the_connections_after_the_pause_and_the_logins_again():
    # web: 5 connections now, the PAUSE closes its 2, pgbouncer logs in again once (1 client) -> 4.
    ok = [role('web', rolconnlimit=4, connections=5), role('batch')]
    assert logins.login_problems(stake(), ok, [database('appdb')]) == []
    # The limit lowered below what is open now (ALTER ROLE ... CONNECTION LIMIT keeps open sessions).
    [(cause, fix)] = logins.login_problems(stake(), [role('web', rolconnlimit=3, connections=5), role('batch')],
                                           [database('appdb')])
    assert 'CONNECTION LIMIT 3 and 5 connection(s) now' in cause and ' - 4, over the limit' in cause
    assert fix.startswith('ALTER ROLE web CONNECTION LIMIT 4')
    # The client probe logging in as the same role counts too; a superuser has no limit.
    assert logins.login_problems(stake(), ok, [database('appdb')], probe_logins={'web': 1})
    assert logins.login_problems(stake(), [role('web', rolconnlimit=0, connections=9, rolsuper=True),
                                           role('batch')], [database('appdb')]) == []


def test_a_database_closed_to_connections_or_at_its_limit_is_named():
    problems = logins.login_problems(stake(), [role('web'), role('batch')],
                                     [database('appdb', datallowconn=False)])
    assert [fix for dummy, fix in problems] == ['ALTER DATABASE appdb ALLOW_CONNECTIONS true, then deploy']
    # 10 now, 3 closed, 1 again + 2 probe logins: 10, over 9.
    [(cause, fix)] = logins.login_problems(stake(), [role('web'), role('batch')],
                                           [database('appdb', datconnlimit=9, connections=10)],
                                           probe_logins={'deployer': 2})
    assert 'database appdb has CONNECTION LIMIT 9' in cause and ' - 10, over the limit' in cause
    assert fix.startswith('ALTER DATABASE appdb CONNECTION LIMIT 10')
    assert logins.login_problems(stake(), [role('web'), role('batch')],
                                 [database('appdb', datconnlimit=10, connections=10)],
                                 probe_logins={'deployer': 2}) == []


def test_the_preflight_finding_is_one_line_per_server_with_every_cause_and_fix():
    found = preflight.decide_server_logins('primary (10.0.0.5:5432)', stake(),
                                           [role('web', rolcanlogin=False), role('batch', expires=True)],
                                           [database('appdb')])
    assert found['status'] == preflight.FAIL and found['check'] == 'server_logins'
    assert found['summary'].startswith('primary (10.0.0.5:5432): the password of role batch')
    assert 'role web is NOLOGIN' in found['summary'] and '\n' not in found['summary']
    assert found['action'].count('ALTER ROLE') == 2
    passed = preflight.decide_server_logins('primary', stake(), [role('web'), role('batch')], [database('appdb')])
    assert passed['status'] == preflight.PASS and '(batch, web)' in passed['summary']
    assert preflight.decide_server_logins('primary', [], None, None)['status'] == preflight.PASS
    assert preflight.decide_server_logins('primary', stake(), None, None)['status'] == preflight.WARN


def test_after_resume_only_waiting_clients_without_any_server_connection_count():
    rows = [
        {'database': 'app', 'user': 'web', 'cl_waiting': 4, 'sv_active': 0, 'sv_idle': 0, 'sv_used': 0,
         'sv_tested': 0, 'sv_login': 0, 'maxwait': 2, 'maxwait_us': 500000},
        # A login in flight is not a server yet.
        {'database': 'app_ro', 'user': 'web', 'cl_waiting': 1, 'sv_login': 1, 'maxwait': 0, 'maxwait_us': 3000},
        # A busy pool: clients wait for a server in use.
        {'database': 'app', 'user': 'batch', 'cl_waiting': 7, 'sv_active': 2},
        {'database': 'app', 'user': 'idle', 'cl_waiting': 0},
        {'database': 'other', 'user': 'web', 'cl_waiting': 9},
    ]
    assert logins.waiting_without_server(rows, ['app', 'app_ro']) == [
        ('app', 'web', 4, 2.5), ('app_ro', 'web', 1, 0.003)]
    line = logins.describe_unserved({'pgbouncer1 (10.0.0.7:6432)': [('app', 'web', 4, 2.5)]})
    assert line.startswith('NO SERVER LOGIN after RESUME: app user web on pgbouncer1 (10.0.0.7:6432): '
                           '4 client(s) waiting 2.5 s, with no server connection')
    assert "auth_file" in line and '\n' not in line


def test_a_pool_whose_queued_clients_were_disconnected_with_no_server_counts_too():
    """From pgbouncer 1.22 a failed login disconnects the pool's waiting clients (kill_pool_logins): no client
    waits any more, but the pool that had clients queued at RESUME still has no server connection."""
    at_resume = [{'database': 'app', 'user': 'web', 'cl_waiting': 3},
                 {'database': 'app', 'user': 'batch', 'cl_waiting': 2},
                 {'database': 'app', 'user': 'quiet', 'cl_waiting': 0},
                 {'database': 'other', 'user': 'web', 'cl_waiting': 1}]
    queued = logins.queued_pools(at_resume, ['app'])
    assert queued == [('app', 'batch'), ('app', 'web')]
    now = [{'database': 'app', 'user': 'web', 'cl_waiting': 0, 'cl_active': 0},
           # served: its new server connection stays in the pool
           {'database': 'app', 'user': 'batch', 'cl_waiting': 0, 'sv_idle': 1},
           {'database': 'app', 'user': 'quiet', 'cl_waiting': 0}]
    assert logins.waiting_without_server(now, ['app'], queued) == [('app', 'web', 0, 0.0)]
    line = logins.describe_unserved({'pgbouncer1': [('app', 'web', 0, 0.0)]})
    assert 'app user web on pgbouncer1: its clients queued at RESUME were disconnected' in line
    assert logins.queued_pools(None, ['app']) == []


def test_a_client_queued_before_the_moment_and_not_served_yet_is_found_one_queued_since_is_not():
    rows = [{'database': 'app', 'user': 'web', 'cl_waiting': 3, 'maxwait': 0, 'maxwait_us': 120000},
            {'database': 'app', 'user': 'batch', 'cl_waiting': 1, 'maxwait': 0, 'maxwait_us': 40000},
            {'database': 'app_ro', 'user': 'web', 'cl_waiting': 0, 'maxwait': 0, 'maxwait_us': 0},
            {'database': 'other', 'user': 'web', 'cl_waiting': 9, 'maxwait': 5, 'maxwait_us': 0}]
    # 100 ms since the RESUME: web's oldest client waited 120 ms (queued in the window), batch's 40 ms (after it).
    assert logins.queued_before(rows, ['app', 'app_ro'], 0.1) == [('app', 'web')]
    assert logins.queued_before(rows, ['app', 'app_ro'], 0.01) == [('app', 'batch'), ('app', 'web')]
    assert logins.queued_before(None, ['app'], 0.1) == []


class QueueConsole:
    """A console whose SHOW POOLS answers come from a list, the last repeated (show_steps as fan_out runs it)."""

    def __init__(self, label, answers):
        self.label, self.entries, self.answers, self.asked = label, ['app'], list(answers), 0

    def show_steps(self, what):
        assert what == 'POOLS'
        self.asked += 1
        # A generator (a fan_out task step) that answers without waiting.
        return self.answers[min(self.asked, len(self.answers)) - 1]
        yield  # pylint: disable=unreachable


def queued(seconds):
    return [{'database': 'app', 'user': 'web', 'cl_waiting': 2, 'maxwait': int(seconds),
             'maxwait_us': int((seconds % 1) * 1e6)}]


def test_the_probe_waits_until_the_clients_queued_in_the_window_are_served_on_every_console():
    import time
    since = time.monotonic() - 0.05  # the last RESUME, 50 ms ago
    served_at_once = QueueConsole('pgbouncer1', [[]])
    served_later = QueueConsole('pgbouncer2', [queued(0.3), queued(0.3), []])
    waited = logins.wait_queued_served([served_at_once, served_later], since, timeout=5.0, interval=0.001)
    assert (served_at_once.asked, served_later.asked) == (1, 3)
    assert 0 < waited < 5.0


def test_clients_queued_after_the_resume_do_not_hold_the_probe_and_an_unserved_queue_holds_it_only_so_long():
    import time
    since = time.monotonic() - 1.0
    busy = QueueConsole('pgbouncer1', [queued(0.2)])  # a busy pool's own queue, begun after the RESUME
    assert logins.wait_queued_served([busy], since, timeout=5.0, interval=0.001) < 5.0 and busy.asked == 1
    stuck = QueueConsole('pgbouncer1', [queued(30.0)])  # logins failing: pgbouncer keeps them queued
    waited = logins.wait_queued_served([stuck], since, timeout=0.05, interval=0.001)
    assert stuck.asked > 1 and waited >= 0.04
