"""The fan-out over many pgbouncers on one thread (pgbouncer_console.fan_out, the drain's
PAUSE replies, the resume), with fake consoles whose admin connections are real sockets
(poll(2) works on them), and pgbouncer_console.in_parallel (before the window)."""
import socket
import threading
import time

import psycopg2.extensions
import pytest

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import drain as dr
from ansible_collections.fastdowntime.postgresql.plugins.module_utils import pgbouncer_console as pc
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.budget import BudgetClock


class FakePauseConn:
    """An async PAUSE connection: its reply arrives when answer() is called."""
    closed = False

    def __init__(self, error=None):
        self.ours, self.theirs = socket.socketpair()
        self.ours.setblocking(False)
        self.answered = False
        self.error = error  # what pgbouncer answers instead of the command's tag

    def fileno(self):
        return self.ours.fileno()

    def cursor(self):
        class Cursor:
            description = None
            statusmessage = 'OK'

            def execute(self, sql):
                pass
        return Cursor()

    def answer(self):
        self.theirs.send(b'x')

    def poll(self):
        if not self.answered:
            try:
                self.answered = bool(self.ours.recv(1))
            except BlockingIOError:
                pass
        if self.answered and self.error:
            raise psycopg2.OperationalError(self.error)
        return psycopg2.extensions.POLL_OK if self.answered else psycopg2.extensions.POLL_READ

    def isexecuting(self):
        return not self.answered

    def close(self):
        self.closed = True
        self.ours.close()
        self.theirs.close()


class FakeConsole:
    """One pgbouncer console with one entry; ``on_pause(conn)`` and ``on_drained(conn)``
    script it: each gets the connection its command went on, to answer now or later;
    ``on_drained`` returns whether the console is drained. ``paused``: the entry was
    paused before the window (someone else's PAUSE); ``pause_error``: what pgbouncer
    answers the PAUSE with instead of its tag."""

    def __init__(self, label, on_pause=None, on_drained=None, paused=False, pause_error=None):
        self.label = label
        self.entries = ['db']
        self.paused_by_us = set()
        self.pause_conns = {}
        self.pause_queries = {}
        self.on_pause = on_pause or (lambda conn: conn.answer())
        self.on_drained = on_drained or (lambda conn: conn.answer() or True)
        self.paused, self.pause_error = paused, pause_error
        self.log = []

    def flags(self):
        return {'db': {'paused': self.paused, 'disabled': False}}

    def open_pause_connections(self, entries):
        for entry in entries:
            self.pause_conns[entry] = FakePauseConn(self.pause_error)

    def send_pause(self, entry):
        self.paused_by_us.add(entry)
        self.log.append('PAUSE')
        self.pause_queries[entry] = pc.Query(self.pause_conns[entry], 'PAUSE db', self.label)
        self.on_pause(self.pause_conns[entry])

    def drained_steps(self, entries=None):
        self.log.append('drained? %s' % ','.join(entries or self.entries))
        conn = FakePauseConn()
        query = pc.Query(conn, 'SHOW SERVERS', self.label)
        drained = self.on_drained(conn)
        yield [query]
        conn.close()
        query.result()
        return drained

    def close_pause_connections(self):
        for conn in self.pause_conns.values():
            conn.close()
        self.pause_conns = {}

    def show(self, what):
        raise pc.ConsoleError('%s: no SHOW %s in this fake' % (self.label, what))

    def resume_reconnecting_steps(self, entries=None):
        self.log.append('RESUME %s' % ','.join(entries or self.entries))
        self.paused_by_us.clear()
        yield []


def test_each_console_is_drained_by_its_own_pause_reply_and_nothing_more_is_read():
    # pgbouncer answers a PAUSE only once the entry has no server connection in use
    # (janitor.c per_loop_maint): the reply is the drain. pgbouncer2's PAUSE replies only
    # after pgbouncer1's console is done: each console ends on its own reply.
    second = FakeConsole('pgbouncer2', on_pause=lambda conn: None)
    first = FakeConsole('pgbouncer1')
    # The lambda defers the lookup: the drain opens the PAUSE connections.
    result = dr.drain([first, second], deadline_seconds=10,
                      after_pause_sent=lambda: second.pause_conns['db'].answer())  # pylint: disable=unnecessary-lambda
    assert [c['host'] for c in result['consoles']] == ['pgbouncer1', 'pgbouncer2']
    assert all(c['duration_ms'] is not None for c in result['consoles'])
    # No SHOW inside the window: one round trip per pgbouncer, the PAUSE.
    assert first.log == second.log == ['PAUSE']


def test_an_entry_paused_before_the_window_is_confirmed_until_drained():
    # Someone else's PAUSE, still waiting for a transaction: no reply of ours says when it is drained.
    answers = [False, False, True]
    before = FakeConsole('pgbouncer1', paused=True, on_drained=lambda conn: conn.answer() or answers.pop(0))
    ours = FakeConsole('pgbouncer2')
    result = dr.drain([before, ours], deadline_seconds=10, poll_interval=0.001)
    assert before.log == ['drained? db'] * 3 and ours.log == ['PAUSE']
    assert result['consoles'][0]['already_paused'] == ['db'] and result['consoles'][0]['paused'] == []
    assert before.paused_by_us == set()  # not ours to resume


def test_a_pause_refused_stops_every_wait_and_resumes_every_pause():
    silent = FakeConsole('pgbouncer2', on_pause=lambda conn: None)
    failing = FakeConsole('pgbouncer1', pause_error='ERROR: already suspended/paused')
    with pytest.raises(dr.DrainError) as caught:
        dr.drain([failing, silent], deadline_seconds=30)
    assert 'pgbouncer1: PAUSE db failed: ERROR: already suspended/paused' in str(caught.value)
    assert 'every pgbouncer paused by this drain was resumed' in str(caught.value)
    # The silent console's wait was stopped, not left to the 30 s deadline, and both resumed.
    assert failing.log[-1] == silent.log[-1] == 'RESUME db'


def test_the_deadline_names_the_console_not_drained_and_resumes_every_pause():
    answered = FakeConsole('pgbouncer1')
    silent = FakeConsole('pgbouncer2', on_pause=lambda conn: None)
    with pytest.raises(dr.DrainError) as caught:
        dr.drain([answered, silent], deadline_seconds=0.2, poll_interval=0.01)
    assert 'drain missed its 0.2 s deadline on pgbouncer2;' in str(caught.value)
    assert answered.log == ['PAUSE', 'RESUME db'] and silent.log == ['PAUSE', 'RESUME db']


def test_in_parallel_runs_the_last_item_in_the_calling_thread_and_keeps_every_error():
    seen = {}

    def work(item):
        seen[item] = threading.current_thread()
        if item == 'b':
            raise ValueError('b failed')
        return item.upper()

    outcome = pc.in_parallel(work, ['a', 'b', 'c'])
    assert [(item, result) for item, result, dummy in outcome] == [('a', 'A'), ('b', None), ('c', 'C')]
    assert str(outcome[1][2]) == 'b failed'
    assert seen['c'] is threading.current_thread() and seen['a'] is not threading.current_thread()
    assert pc.in_parallel(work, []) == []


# -- fan_out: the one-thread multiplexer ------------------------------------------

def command(conn, label, sql='SHOW X', timeout=None):
    return pc.Query(conn, sql, label, timeout)


def test_fan_out_resumes_each_task_as_its_own_answers_arrive():
    # The slow task's answer arrives only once the fast task has been resumed with its
    # own: a fan-out that waited for every answer before resuming any task would hang.
    slow, fast = FakePauseConn(), FakePauseConn()
    order = []

    def task(name, conn, after=None):
        query = command(conn, name)
        yield [query]
        order.append(name)
        if after is not None:
            after.answer()
        yield 0.001  # a poll interval
        order.append(name + ' again')
        return query.result()

    fast.answer()
    outcome = pc.fan_out([('slow', task('slow', slow)), ('fast', task('fast', fast, after=slow))])
    assert outcome == [('slow', 'OK', None), ('fast', 'OK', None)]
    assert order[:2] == ['fast', 'slow']


def test_fan_out_keeps_every_error_and_times_out_a_silent_query_naming_it():
    silent, answered = FakePauseConn(), FakePauseConn()
    answered.answer()

    def waits(conn, label, timeout):
        query = command(conn, label, 'RESUME "db"', timeout)
        yield [query]
        return query.result()

    began = time.monotonic()
    outcome = pc.fan_out([('a', waits(silent, 'pgbouncer1', 0.05)), ('b', waits(answered, 'pgbouncer2', 5))])
    assert time.monotonic() - began < 4
    assert str(outcome[0][2]) == 'pgbouncer1: RESUME "db": no answer within 0 s'
    assert outcome[1][1:] == ('OK', None)


def test_fan_out_closes_what_still_runs_at_its_deadline_and_fails_fast_when_asked():
    closed = []

    def forever(name):
        try:
            yield [command(FakePauseConn(), name)]
        finally:
            closed.append(name)

    def broken():
        yield 0.001
        raise pc.ConsoleError('pgbouncer2: SHOW SERVERS failed: connection lost')

    outcome = pc.fan_out([('a', forever('a'))], deadline=time.monotonic() + 0.05)
    assert isinstance(outcome[0][2], pc.FanOutTimeout) and closed == ['a']
    with pytest.raises(pc.ConsoleError, match='pgbouncer2: SHOW SERVERS failed'):
        pc.fan_out([('b', forever('b')), ('c', broken())], fail_fast=True)
    assert closed == ['a', 'b']
    # Without fail_fast every task runs to its end and each error is kept.
    outcome = pc.fan_out([('c', broken()), ('d', iter_result('d'))])
    assert isinstance(outcome[0][2], pc.ConsoleError) and outcome[1][1:] == ('d', None)


def iter_result(value):
    yield []
    return value


class ResumeConsole(pc.Console):
    """A console whose RESUME goes on a socket the test answers (or not)."""

    def __init__(self, name, answer=True):
        pc.Console.__init__(self, {'name': name, 'host': '10.0.0.1', 'port': 6432})
        self.conn = type('Conn', (), {'closed': 0})()
        self.entries, self.paused_by_us = ['db'], {'db'}
        conn = FakePauseConn()
        if answer:
            conn.answer()
        self.resume_conns = {'db': conn}
        self.pools_conn = None

    def show(self, what):
        return []


def test_resume_tries_every_pgbouncer_on_one_thread_and_names_every_failure_in_one_line(monkeypatch):
    monkeypatch.setattr(pc, 'RESUME_TIMEOUT_SECONDS', 0.05)
    consoles = [ResumeConsole('pgbouncer1', answer=False), ResumeConsole('pgbouncer2'),
                ResumeConsole('pgbouncer3', answer=False)]
    threads = threading.active_count()
    clock = BudgetClock(10).start()
    with pytest.raises(pc.ConsoleError) as caught:
        pc.resume(consoles, clock=clock, verify=False)
    # One resume record per pgbouncer, each ended by its own outcome.
    assert [(p['phase'], p['host'].split()[0], p['status']) for p in clock.phases] == [
        ('resume', 'pgbouncer1', 'failed'), ('resume', 'pgbouncer2', 'ok'), ('resume', 'pgbouncer3', 'failed')]
    assert clock.phases[1]['detail'] == {'maxwait_ms': 0.0, 'resumed': ['db'], 'not_paused': []}
    assert 'no answer within' in clock.phases[0]['detail']['error']
    assert clock.phases[1]['duration_ms'] < clock.phases[0]['duration_ms']
    message = str(caught.value)
    assert message.startswith('resume failed: pgbouncer1 (10.0.0.1:6432): RESUME "db": no answer within 0 s; '
                              'pgbouncer3 (10.0.0.1:6432): RESUME "db"')
    assert '\n' not in message and 'pgbouncer2' not in message
    assert consoles[1].paused_by_us == set() and threading.active_count() == threads


def test_terminated_backends_are_one_line_each_from_the_drain_rows():
    phases = [
        {'phase': 'drain', 'host': 'pgbouncer1 (10.0.0.21:6432)', 'detail': {'entries': ['app']}},
        {'phase': 'drain', 'host': 'pgbouncer2 (10.0.0.22:6432)', 'detail': {'terminated': [
            {'pid': 4242, 'usename': 'app', 'xact_age_seconds': 3.14, 'client': 'app@10.0.0.5:5000 on pgbouncer2'},
            {'pid': 4243, 'usename': 'app', 'xact_age_seconds': None, 'client': 'app@10.0.0.6:5001 on pgbouncer2'}]}},
        {'phase': 'cold_transaction', 'host': 'primary', 'detail': {}},
    ]
    assert dr.terminated_lines(phases) == [
        'drain on pgbouncer2 (10.0.0.22:6432): drain_policy terminate ended backend pid 4242 (user app, transaction '
        'open 3.1 s) of client app@10.0.0.5:5000 on pgbouncer2: that client got an error',
        'drain on pgbouncer2 (10.0.0.22:6432): drain_policy terminate ended backend pid 4243 (user app, transaction '
        'open n/a) of client app@10.0.0.6:5001 on pgbouncer2: that client got an error']
    assert dr.terminated_lines([]) == [] and dr.terminated_lines(None) == []


def test_a_killable_users_terminated_connection_is_named_so_not_as_the_drain_policys():
    # try 6: '... drain_policy terminate ended backend pid 25467 (user fdt_app, transaction open n/a) of client None'
    phases = [{'phase': 'terminate_killable', 'host': 'primary (10.0.0.10:5432)', 'detail': {'terminated': [
        {'pid': 25467, 'usename': 'fdt_app', 'addr': '10.0.0.1'}, {'pid': 25468, 'usename': 'ops', 'addr': None}]}}]
    assert dr.terminated_lines(phases) == [
        'terminate_killable on primary (10.0.0.10:5432): fastdowntime_killable_users ended the direct connection pid '
        '25467 (user fdt_app, from 10.0.0.1): that client got an error',
        'terminate_killable on primary (10.0.0.10:5432): fastdowntime_killable_users ended the direct connection pid '
        '25468 (user ops, from local socket): that client got an error']
