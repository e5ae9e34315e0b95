"""The pgbouncer drain against the real lab: real pgbouncers, real clients, real primary."""
import os
import signal
import threading
import time

import psycopg2
import pytest

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import drain as dr
from ansible_collections.fastdowntime.postgresql.plugins.module_utils import pgbouncer_console as pc
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.budget import BudgetClock
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import connect

PGBOUNCERS = ('pgbouncer1', 'pgbouncer2')


@pytest.fixture
def primary(healthy_lab):
    conn = connect(healthy_lab.pg('primary'), autocommit=True)
    yield conn
    conn.close()


def drain(consoles, **kwargs):
    """drain.drain as the outage calls it: server_login_retry lowered (restored by
    the consoles fixture), then once no server login is in flight on the entries'
    pools (Outage.prepare does both before its clock). A PAUSE closing a login in
    flight made pgbouncer refuse that pool's clients for server_login_retry (its PR
    420, unmerged): 15 s by default - what spoiled the tests after one whose load
    was still logging in (test_a_server_login_the_pause_closes_...)."""
    pc.lower_login_retry(consoles)
    pc.wait_logins_settled(consoles)
    return dr.drain(consoles, **kwargs)


def all_active(consoles):
    return all(not flag['paused'] and not flag['disabled']
               for console in consoles for flag in console.flags().values())


def test_entries_found_from_the_deploy_db(consoles):
    assert [c.entries for c in consoles] == [['fdtdemo', 'fdtdemo_ro'], ['fdtdemo', 'fdtdemo_ro']]
    assert consoles[0].version >= (1, 18, 0)


def test_pause_resume_under_load_loses_nothing(healthy_lab, consoles):
    with healthy_lab.load(writers=PGBOUNCERS, readers=PGBOUNCERS) as load:
        time.sleep(0.5)
        clock = BudgetClock(10).start()  # the window's clock: the load's start on a busy machine is not in it
        drained = drain(consoles, clock=clock)
        assert all(c.drained() for c in consoles)
        time.sleep(0.3)  # the outage: clients queue in pgbouncer
        resumed = pc.resume(consoles, clock=clock)
        time.sleep(0.5)
    assert load.errors == []
    assert load.transactions() > 0
    assert load.missing_commits(healthy_lab.primary_dsn()) == []
    assert all_active(consoles)
    assert [r['resumed'] for r in resumed] == [['fdtdemo', 'fdtdemo_ro']] * 2
    # Clients queued through the 0.3 s outage; pgbouncer measured it before RESUME.
    assert max(r['maxwait_ms'] for r in resumed) >= 200
    assert drained['duration_ms'] < 5000
    assert [p['phase'] for p in clock.phases].count('drain') == 2
    assert [p['phase'] for p in clock.phases].count('resume') == 2


def test_a_pause_reply_comes_only_once_the_held_transaction_ended_and_is_the_drain(healthy_lab, consoles):
    """The window reads nothing after the PAUSE replies: pgbouncer answers a PAUSE only
    once no server connection of a paused entry is in use (janitor.c per_loop_maint).
    A transaction held open through pgbouncer1 keeps its PAUSE unanswered; the moment
    it commits the reply comes, and SHOW DATABASES/SERVERS then find every entry
    paused with no server connection left."""
    holder = psycopg2.connect(healthy_lab.client_dsn('pgbouncer1'))
    done = {}
    try:
        holder.cursor().execute("INSERT INTO fdt_item (body) VALUES ('held over the PAUSE') RETURNING id")
        clock = BudgetClock(10).start()
        drainer = threading.Thread(target=lambda: done.update(result=drain(consoles, deadline_seconds=10,
                                                                           clock=clock)))
        drainer.start()
        time.sleep(0.5)
        assert drainer.is_alive(), 'the drain ended while a transaction held a server connection'
        committed = time.monotonic()
        holder.commit()
        drainer.join(10)
        ended = time.monotonic()
        assert not drainer.is_alive() and 'result' in done
        assert all(c.drained() for c in consoles)
        # pgbouncer1 answered after the commit; pgbouncer2, with nothing held, long before (each console's
        # drain record ends at its PAUSE replies, on the clock started before the drain's thread).
        answered = dict((p['host'].split()[0], clock.started_mono + (p['start_offset_ms'] + p['duration_ms']) / 1000.0)
                        for p in clock.phases if p['phase'] == 'drain')
        assert answered['pgbouncer1'] >= committed - 0.0002 and answered['pgbouncer2'] < committed
        assert ended - committed < 5
    finally:
        holder.close()
        pc.resume(consoles)
    assert all_active(consoles)


def test_the_window_reads_no_pgbouncer_state_and_still_measures_the_clients_wait(healthy_lab, consoles):
    """As the outage does: what is paused read before the clock, SHOW POOLS sent
    with the RESUMEs on a connection of its own, the verification once the
    clients flow again."""
    flags = dict((console, console.flags()) for console in consoles)
    for console in consoles:
        console.open_pools_connection()
    reads = []
    for console in consoles:
        show = console.show
        console.show = lambda what, show=show: reads.append(what) or show(what)
    clock = BudgetClock(10).start()
    with healthy_lab.load(writers=PGBOUNCERS) as load:
        time.sleep(0.5)
        pc.lower_login_retry(consoles)  # as the outage (see drain above)
        pc.wait_logins_settled(consoles)
        del reads[:]  # the outage reads SHOW POOLS for logins in flight before its clock
        dr.drain(consoles, clock=clock, flags=flags)
        drain_reads, reads[:] = list(reads), []
        time.sleep(0.3)  # the cold transaction and the replay: clients queue in pgbouncer
        resumed = pc.resume(consoles, clock=clock, verify=False)
        window_reads = list(reads)
        fixed = pc.verify_resumed(consoles, clock=clock)
        time.sleep(0.5)
    # Nothing on the consoles' own (blocking) connections inside the window: the PAUSE replies are the
    # drain, SHOW POOLS goes beside the RESUMEs, and no SHOW DATABASES before the PAUSEs.
    assert drain_reads == [] and window_reads == []
    assert fixed == [{'host': c.label, 'resumed': [], 'enabled': []} for c in consoles]
    assert all_active(consoles)
    # The writers queued through the 0.3 s: pgbouncer read their wait as the RESUMEs came.
    assert max(r['maxwait_ms'] for r in resumed) >= 200
    assert load.errors == []
    assert load.missing_commits(healthy_lab.primary_dsn()) == []


@pytest.mark.faults
def test_a_pgbouncer_wide_pause_made_after_the_read_is_refused_by_our_pause(healthy_lab, consoles):
    """The entries already paused are read before the outage's clock; an operator's
    pgbouncer-wide PAUSE made after that makes our PAUSE fail ("already
    suspended/paused"): the drain undoes what it paused and leaves the operator's pause."""
    flags = dict((console, console.flags()) for console in consoles)
    operator = pc.Console(healthy_lab.pgbouncer('pgbouncer1')).open()
    try:
        operator.command('PAUSE')
        with pytest.raises(dr.DrainError) as err:
            drain(consoles, deadline_seconds=2.0, flags=flags)
        message = str(err.value)
        assert '\n' not in message and 'already suspended/paused' in message and 'pgbouncer1' in message
        assert 'resumed' in message
        # pgbouncer2 is not left paused by the failed drain.
        assert not any(flag['paused'] for flag in consoles[1].flags().values())
        # The operator's PAUSE is theirs: a client of pgbouncer1 still waits.
        assert client_waits(healthy_lab, 'pgbouncer1')
    finally:
        operator.command('RESUME')
        operator.close()
    assert all_active(consoles)


def client_waits(lab, pgbouncer, timeout=1.0):
    """True when a client of ``pgbouncer`` gets no answer to SELECT 1 within ``timeout`` seconds."""
    outcome = pc.probe([('c', lab.pgbouncer(pgbouncer, admin=False))], timeout)
    return 'no answer' in (outcome['c'] or '')


@pytest.mark.faults
def test_open_transaction_makes_the_drain_miss_its_deadline_and_resumes_all(healthy_lab, consoles, primary):
    with healthy_lab.load(writers=PGBOUNCERS) as load:
        holder = psycopg2.connect(healthy_lab.client_dsn('pgbouncer1'))
        try:
            cur = holder.cursor()
            cur.execute("INSERT INTO fdt_item (body) VALUES ('held open') RETURNING id")
            began = time.monotonic()
            with pytest.raises(dr.DrainError) as err:
                drain(consoles, deadline_seconds=1.0, primary_conn=primary)
            took = time.monotonic() - began
            assert all_active(consoles)
            holder.commit()  # the held transaction still commits: nothing was killed
        finally:
            holder.close()
        time.sleep(0.3)
    message = str(err.value)
    assert '\n' not in message and 'deadline' in message
    assert 'fdt_app@' in message and 'pgbouncer1' in message and 'entry fdtdemo' in message
    assert 'transaction open' in message  # from the primary's pg_stat_activity
    # Its query named by its first keyword and length, never its text; and how to end it.
    assert 'query: INSERT, ' in message and 'held open' not in message and 'pg_terminate_backend(' in message
    assert 'resumed' in message
    assert len(err.value.holders) == 1
    assert took < 3.0
    assert load.errors == []
    assert load.missing_commits(healthy_lab.primary_dsn()) == []


def test_terminate_policy_ends_the_old_transaction_and_drains(healthy_lab, consoles, primary):
    holder = psycopg2.connect(healthy_lab.client_dsn('pgbouncer2'))
    cur = holder.cursor()
    cur.execute("INSERT INTO fdt_item (body) VALUES ('to be terminated') RETURNING id")
    time.sleep(0.5)
    outcome = drain(consoles, deadline_seconds=5.0, policy='terminate', primary_conn=primary,
                    terminate_after_seconds=0.3, terminate_min_xact_age_seconds=0.2)
    assert all(c.drained() for c in consoles)
    assert len(outcome['terminated']) == 1 and outcome['terminated'][0]['usename'] == 'fdt_app'
    pc.resume(consoles)
    with pytest.raises(psycopg2.Error):
        holder.commit()
    holder.close()


@pytest.mark.faults
def test_timeout_then_resume_never_hangs(healthy_lab, consoles, primary):
    """pgbouncer issue 715: RESUME while a PAUSE waits can hang that PAUSE forever.
    Repeat drain-timeout-resume; every round must end in time, and a normal drain
    must still work afterwards."""
    holder = psycopg2.connect(healthy_lab.client_dsn('pgbouncer1'))
    cur = holder.cursor()
    cur.execute('SELECT 1')  # a transaction left open: every drain times out
    try:
        for round_number in range(20):
            outcome = {}

            def attempt():
                try:
                    drain(consoles, deadline_seconds=0.3, primary_conn=primary)
                except dr.DrainError as exc:
                    outcome['error'] = exc

            worker = threading.Thread(target=attempt, daemon=True)
            began = time.monotonic()
            worker.start()
            worker.join(timeout=5)
            assert not worker.is_alive(), 'round %d hung' % round_number
            assert 'error' in outcome and time.monotonic() - began < 3
            assert all_active(consoles), 'round %d left a pgbouncer paused' % round_number
            assert all(not c.pause_conns for c in consoles)
    finally:
        holder.rollback()
        holder.close()
    began = time.monotonic()
    drain(consoles, deadline_seconds=2.0)
    pc.resume(consoles)
    assert time.monotonic() - began < 2.0
    assert all_active(consoles)


@pytest.mark.faults
def test_bad_input_fails_in_one_line_before_touching_any_pool(healthy_lab):
    good = healthy_lab.pgbouncer('pgbouncer1')
    cases = [
        (dict(good, password='wrong'), 'authentication failed'),
        (dict(good, user='fdt_app', password='app-secret'), 'not allowed'),
        (dict(good, port=6499), 'connection refused'),
    ]
    for endpoint, cause in cases:
        with pytest.raises(pc.ConsoleError) as err:
            pc.open_consoles([pc.Console(endpoint, db_name=healthy_lab.db_name),
                              pc.Console(healthy_lab.pgbouncer('pgbouncer2'), db_name=healthy_lab.db_name)])
        message = str(err.value)
        assert cause in message and healthy_lab.addr('pgbouncer1') in message and '\n' not in message
        assert 'wrong' not in message and 'secret' not in message
    with pytest.raises(pc.ConsoleError, match='unknown pgbouncer database.*nope'):
        pc.open_consoles([pc.Console(good, databases=['nope'])])
    with pytest.raises(pc.ConsoleError, match='no pgbouncer database points at database nodb'):
        pc.open_consoles([pc.Console(good, db_name='nodb')])
    check = pc.open_consoles([pc.Console(good)])[0]
    assert not any(flag['paused'] for flag in check.flags().values())
    check.close()


class BusyController(psycopg2.extensions.connection):
    """A client connection on a busy controller: each step of its login costs
    this process 30 ms before anything is sent (a SCRAM exchange costs a few ms
    of CPU per login, hundreds of logins at once on a loaded host cost seconds)."""

    def poll(self):
        time.sleep(0.03)
        return psycopg2.extensions.connection.poll(self)


def test_the_probe_reports_a_paused_entry_never_the_controllers_own_slowness(healthy_lab, consoles, monkeypatch):
    """pgbouncer_console.probe: the timeout is a client's wait for pgbouncer's next
    answer, counted from when the probe last heard from it. 12 logins at 30 ms of
    this controller's work per step take well over the 0.5 s timeout in all: none
    is reported but the entry someone paused."""
    connect_ = psycopg2.connect
    monkeypatch.setattr(pc.psycopg2, 'connect', lambda *args, **kwargs: connect_(
        *args, connection_factory=BusyController, **kwargs))
    targets = [((name, entry, n), healthy_lab.pgbouncer(name, admin=False, entry=entry))
               for name in PGBOUNCERS for entry in ('fdtdemo', 'fdtdemo_ro') for n in range(3)]
    operator = pc.Console(healthy_lab.pgbouncer('pgbouncer2')).open()
    pc.lower_login_retry(consoles)  # as the outage: see drain above
    pc.wait_logins_settled(consoles)
    operator.command('PAUSE', 'fdtdemo_ro')
    try:
        began = time.monotonic()
        found = pc.probe(targets, timeout=0.5)
        took = time.monotonic() - began
    finally:
        operator.command('RESUME', 'fdtdemo_ro')
        operator.close()
    silent = sorted(key for key, error in found.items() if error is not None)
    assert took > 1.0  # the controller's own work alone exceeds the timeout many times over
    assert [(name, entry) for name, entry, dummy in silent] == [('pgbouncer2', 'fdtdemo_ro')] * 3, found
    # Its login or its SELECT 1 (pgbouncer logs a client in without a server connection once it has had one).
    assert all(found[key].startswith('a client got no answer to its ') and found[key].endswith(' within 0.5 s')
               for key in silent)
    assert all_active(consoles)


def test_a_full_pgbouncer_refuses_the_probe_and_is_not_said_to_be_not_answering(healthy_lab):
    """A pgbouncer at max_client_conn refuses new connections, the probe's too, while it serves the
    clients it has: after RESUME the outage said "RESUME FAILED: NOT ANSWERING CLIENTS ... RESUME by
    hand" and failed the deploy (a new user's try at a traffic peak). Now: not verified, and why."""
    operator = pc.Console(healthy_lab.pgbouncer('pgbouncer1')).open()
    limit = dict((row['key'], row['value']) for row in operator.show('CONFIG'))['max_client_conn']
    try:
        # Every client connection it has now (this console's among them): full.
        operator.command('SET max_client_conn = %d' % len(operator.show('CLIENTS')))
        found = pc.probe([('db', healthy_lab.pgbouncer('pgbouncer1', admin=False))])
    finally:
        operator.command('SET max_client_conn = %s' % limit)
        operator.close()
    assert 'no more connections allowed (max_client_conn)' in found['db'], found
    verdict = pc.probe_verdict({'pgbouncer1': found})
    ok, line = pc.describe_verdict(verdict)
    assert ok and line.startswith('every pgbouncer resumed; NOT verified by a client on db on pgbouncer1: '
                                  'pgbouncer1 is full'), line


def pool_row(console, entry, user='fdt_app'):
    return [row for row in console.show('POOLS') if row['database'] == entry and row['user'] == user][0]


def test_a_server_login_the_pause_closes_is_logged_in_again_at_resume_not_refused_for_server_login_retry(
        healthy_lab, consoles):
    """The race wait_logins_settled narrows but cannot close (the CI failure of stop
    27: a load still logging in while the drain paused): a server login in flight
    at the PAUSE. Made certain here - the primary's postmaster stopped (SIGSTOP),
    so pgbouncer1's login for a queued client hangs - then PAUSE, the postmaster
    continued, RESUME. pgbouncer counts the closed login as failed: with
    server_login_retry as configured the queued client waits it out and a new
    client is refused ("server login has been failing"). With the outage's
    lower_login_retry the queued client is served at RESUME, a new one too, and
    restore_login_retry puts the setting back."""
    console = consoles[0]
    pid_file = os.path.join(healthy_lab.lab_dir, 'hosts', 'primary', 'pgdata', 'postmaster.pid')
    with open(pid_file) as handle:
        postmaster = int(handle.readline())

    def queued_over_a_closed_login(lower):
        console.command('PAUSE', 'fdtdemo')  # no idle server left: the client's query needs a login
        console.command('RESUME', 'fdtdemo')
        client = psycopg2.connect(healthy_lab.client_dsn('pgbouncer1'))
        client.autocommit = True
        served = {}

        def query():
            try:
                client.cursor().execute('SELECT 1')
                served['at'] = time.monotonic()
            except psycopg2.Error as exc:
                served['error'] = str(exc).strip()
        os.kill(postmaster, signal.SIGSTOP)
        try:
            worker = threading.Thread(target=query, daemon=True)
            worker.start()
            deadline = time.monotonic() + 5
            while pool_row(console, 'fdtdemo')['sv_login'] == 0 and time.monotonic() < deadline:
                time.sleep(0.005)
            assert pool_row(console, 'fdtdemo')['sv_login'] == 1
            if lower:
                assert pc.lower_login_retry([console]) == {console.label: '3'}
            console.command('PAUSE', 'fdtdemo')  # closes the login in flight
        finally:
            os.kill(postmaster, signal.SIGCONT)
        resumed = time.monotonic()
        console.command('RESUME', 'fdtdemo')
        worker.join(1.5)
        newcomer = None
        try:
            other = psycopg2.connect(healthy_lab.client_dsn('pgbouncer1'))
            other.cursor().execute('SELECT 1')
            other.close()
        except psycopg2.Error as exc:
            newcomer = str(exc).strip()
        waited = None if 'at' not in served else served['at'] - resumed
        worker.join(10)  # pgbouncer logs in again after server_login_retry (3 s) at the latest
        client.close()
        return waited, newcomer, served

    console.command('SET server_login_retry = 3')  # pgbouncer's default is 15 s; 3 s keeps the test short
    console.config['server_login_retry'] = '3'
    try:
        waited, newcomer, served = queued_over_a_closed_login(lower=False)
        assert waited is None and 'error' not in served, served  # still queued 1.5 s after RESUME
        assert newcomer is not None, 'a new client was served in a pool pgbouncer holds failed'
        assert 'at' in served, served  # served once server_login_retry ran out: the pool is sound again
        waited, newcomer, served = queued_over_a_closed_login(lower=True)
        assert waited is not None and newcomer is None, (served, newcomer)
        assert pc.restore_login_retry([console]) == []
        assert pc.parse_config(console.show('CONFIG'))['server_login_retry'] == '3'
    finally:
        console.command('SET server_login_retry = 15')
        console.config['server_login_retry'] = '15'
    assert all_active(consoles)
