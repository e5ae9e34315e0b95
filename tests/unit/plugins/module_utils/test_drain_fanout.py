"""The drain's fan-out over many pgbouncers (drain._Drain, pgbouncer_console.in_parallel),
with fake consoles whose PAUSE connections are real sockets (select works on them)."""
import socket
import threading

import psycopg2.extensions
import pytest

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import drain as dr
from ansible_collections.fastdowntime.postgresql.plugins.module_utils import pgbouncer_console as pc


class FakePauseConn:
    """An async PAUSE connection: its reply arrives when answer() is called."""
    closed = False

    def __init__(self):
        self.ours, self.theirs = socket.socketpair()
        self.ours.setblocking(False)
        self.answered = False

    def fileno(self):
        return self.ours.fileno()

    def answer(self):
        self.theirs.send(b'x')

    def poll(self):
        if not self.answered:
            try:
                self.answered = bool(self.ours.recv(1))
            except BlockingIOError:
                pass
        return psycopg2.extensions.POLL_OK if self.answered else psycopg2.extensions.POLL_READ

    def close(self):
        self.closed = True
        self.ours.close()
        self.theirs.close()


class FakeConsole:
    """One pgbouncer console with one entry; ``on_pause`` and ``on_drained`` script it."""

    def __init__(self, label, on_pause=None, on_drained=None):
        self.label = label
        self.entries = ['db']
        self.paused_by_us = set()
        self.pause_conns = {}
        self.on_pause = on_pause or (lambda conn: conn.answer())
        self.on_drained = on_drained or (lambda: True)
        self.log = []

    def flags(self):
        return {'db': {'paused': False, 'disabled': False}}

    def open_pause_connections(self, entries):
        for entry in entries:
            self.pause_conns[entry] = FakePauseConn()

    def send_pause(self, entry):
        self.paused_by_us.add(entry)
        self.log.append('PAUSE')
        self.on_pause(self.pause_conns[entry])

    def drained(self):
        self.log.append('drained?')
        return self.on_drained()

    def close_pause_connections(self):
        for conn in self.pause_conns.values():
            conn.close()
        self.pause_conns = {}

    def show(self, what):
        raise pc.ConsoleError('%s: no SHOW %s in this fake' % (self.label, what))

    def resume_reconnecting(self, entries=None):
        self.log.append('RESUME %s' % ','.join(entries or self.entries))
        self.paused_by_us.clear()


def test_each_console_is_confirmed_as_soon_as_its_own_pause_returns():
    # pgbouncer2's PAUSE returns only while pgbouncer1's confirmation is under way, and
    # pgbouncer1's confirmation waits for pgbouncer2 to be confirmed: a drain that
    # confirmed consoles in batches would leave pgbouncer2 for the next batch and
    # pgbouncer1 would give up (not drained) - so both drained proves no batch barrier.
    second_confirmed = threading.Event()
    second = FakeConsole('pgbouncer2', on_pause=lambda conn: None,
                         on_drained=lambda: second_confirmed.set() or True)

    def first_drained():
        second.pause_conns['db'].answer()
        return second_confirmed.wait(5)

    first = FakeConsole('pgbouncer1', on_drained=first_drained)
    result = dr.drain([first, second], deadline_seconds=10)
    assert [c['host'] for c in result['consoles']] == ['pgbouncer1', 'pgbouncer2']
    assert all(c['duration_ms'] is not None for c in result['consoles'])
    assert first.log == second.log == ['PAUSE', 'drained?']


def test_a_console_error_stops_every_wait_and_resumes_every_pause():
    silent = FakeConsole('pgbouncer2', on_pause=lambda conn: None)

    def broken():
        raise pc.ConsoleError('pgbouncer1: SHOW SERVERS failed: connection lost')

    failing = FakeConsole('pgbouncer1', on_drained=broken)
    with pytest.raises(dr.DrainError) as caught:
        dr.drain([failing, silent], deadline_seconds=30)
    assert 'pgbouncer1: SHOW SERVERS failed' in str(caught.value)
    assert 'every pgbouncer paused by this drain was resumed' in str(caught.value)
    # The silent console's wait was stopped, not left to the 30 s deadline, and both resumed.
    assert failing.log[-1] == silent.log[-1] == 'RESUME db'


def test_the_deadline_names_the_console_not_drained_and_resumes_every_pause():
    answered = FakeConsole('pgbouncer1')
    silent = FakeConsole('pgbouncer2', on_pause=lambda conn: None)
    with pytest.raises(dr.DrainError) as caught:
        dr.drain([answered, silent], deadline_seconds=0.2, poll_interval=0.01)
    assert 'drain missed its 0.2 s deadline on pgbouncer2;' in str(caught.value)
    assert answered.log == ['PAUSE', 'drained?', 'RESUME db'] and silent.log == ['PAUSE', 'RESUME db']


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
