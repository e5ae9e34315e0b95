"""Dead-man switch decisions, driven by a fake clock and fake SHOW DATABASES flags."""
import json
import os

import pytest

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import watchdog as wd
from ansible_collections.fastdowntime.postgresql.plugins.module_utils import watchdog_daemon as daemon

ENTRIES = ['fdtdemo', 'fdtdemo_ro']
PAUSED = {'fdtdemo': True, 'fdtdemo_ro': True}
ACTIVE = {'fdtdemo': False, 'fdtdemo_ro': False}


def dog(**kw):
    args = dict(budget_seconds=5, grace_seconds=2, max_lifetime_seconds=100, started_at=0.0)
    args.update(kw)
    return wd.Watchdog(ENTRIES, **args)


def test_waits_while_nothing_is_paused_then_exits_at_end_of_lifetime():
    d = dog()
    assert d.observe(10, ACTIVE) == wd.WAIT
    assert d.observe(99.9, ACTIVE) == wd.WAIT
    assert d.observe(100, ACTIVE) == wd.EXIT_LIFETIME


def test_countdown_starts_at_first_pause_and_fires_at_budget_plus_grace():
    d = dog()
    assert d.observe(3, PAUSED) == wd.COUNTDOWN_STARTED
    assert d.deadline == 10
    assert d.observe(9.99, PAUSED) == wd.WAIT
    assert d.observe(10, PAUSED) == wd.FIRE
    # still paused after firing: keep trying; resumed: exit
    assert d.observe(10.2, PAUSED) == wd.FIRE
    assert d.observe(10.4, ACTIVE) == wd.EXIT_FIRED


def test_normal_resume_ends_the_watch_without_firing():
    d = dog()
    d.observe(1, {'fdtdemo': True})
    assert d.observe(2, ACTIVE) == wd.EXIT_RESUMED


def test_one_paused_entry_is_enough_and_other_entries_are_ignored():
    d = dog()
    assert d.observe(1, {'unrelated': True}) == wd.WAIT
    assert d.observe(2, {'fdtdemo_ro': True, 'fdtdemo': False}) == wd.COUNTDOWN_STARTED
    assert d.paused({'fdtdemo_ro': True, 'fdtdemo': False}) == ['fdtdemo_ro']


def test_lifetime_never_cuts_a_running_countdown():
    d = dog(max_lifetime_seconds=4)
    d.observe(3, PAUSED)
    assert d.observe(6, PAUSED) == wd.WAIT
    assert d.observe(10, PAUSED) == wd.FIRE


def test_unreachable_console_during_countdown_still_fires_at_deadline():
    d = dog()
    d.observe(0, PAUSED)
    assert d.observe(5, None) == wd.WAIT
    assert d.observe(7, None) == wd.FIRE


def test_unreachable_console_before_any_pause_does_not_start_counting():
    d = dog()
    assert d.observe(1, None) == wd.WAIT
    assert d.deadline is None


def test_gives_up_after_the_retry_window():
    d = dog(fire_retry_seconds=3)
    d.observe(0, PAUSED)
    assert d.observe(7, PAUSED) == wd.FIRE
    assert d.observe(9.9, PAUSED) == wd.FIRE
    assert d.observe(10, PAUSED) == wd.EXIT_GAVE_UP


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        wd.Watchdog([], 5)
    with pytest.raises(ValueError):
        wd.Watchdog(ENTRIES, 0)


class FakeWorld:
    """A pgbouncer whose entries get paused at t=1 and a clock that the loop's sleep advances."""

    def __init__(self, resume_by_deploy_at=None, resume_fails=0):
        self.now = 0.0
        self.flags = dict(ACTIVE)
        self.resume_by_deploy_at = resume_by_deploy_at
        self.resume_fails = resume_fails
        self.resumed = []
        self.logs = []

    def read_flags(self):
        if self.now >= 1 and not self.resumed and (self.resume_by_deploy_at is None or self.now < self.resume_by_deploy_at):
            self.flags = dict(PAUSED)
        else:
            self.flags = dict(ACTIVE)
        return self.flags

    def resume(self, entries):
        if self.resume_fails:
            self.resume_fails -= 1
            raise RuntimeError('connection refused')
        self.resumed.append(list(entries))

    def sleep(self, seconds):
        self.now += seconds


def run_world(world, **kw):
    d = dog(**kw)
    return wd.run(d, world.read_flags, world.resume, world.logs.append, lambda: world.now, world.sleep, 0.5)


def test_run_fires_once_and_logs_what_it_did():
    world = FakeWorld()
    assert run_world(world) == wd.EXIT_FIRED
    assert world.resumed == [ENTRIES]
    assert any('sent RESUME' in line for line in world.logs)
    assert 8.0 <= world.now <= 9.0  # paused at 1, fired at 1 + 5 + 2


def test_run_exits_quietly_when_the_deploy_resumes_first():
    world = FakeWorld(resume_by_deploy_at=3)
    assert run_world(world) == wd.EXIT_RESUMED
    assert world.resumed == []


def test_run_retries_a_failed_resume():
    world = FakeWorld(resume_fails=2)
    assert run_world(world) == wd.EXIT_FIRED
    assert world.resumed == [ENTRIES]
    assert sum('failed' in line for line in world.logs) == 2


# -- the daemon's pidfile (watchdog_daemon) --------------------------------------

def test_one_pidfile_per_pgbouncer_process(tmp_path):
    assert daemon.pidfile_name({'host': '10.0.0.21', 'port': 6432}) == 'fastdowntime-pgbouncer-watchdog-6432.pid'
    assert daemon.pidfile_name({'host': '/run/p1', 'port': 6432, 'unix_socket_dir': '/run/p1'}) == \
        'fastdowntime-pgbouncer-watchdog-6432-run_p1.pid'
    assert daemon.pidfile_path(str(tmp_path), {'host': 'h', 'port': 1}).startswith(str(tmp_path) + '/')


def test_each_database_watched_has_its_own_pidfile_on_a_pgbouncer_process(tmp_path):
    """Two deploys to two databases of one cluster at once: the second's arm replaced the first's switch
    (one pidfile per process) while the first's window ran, and the second's disarm left it unguarded."""
    process = {'host': '10.0.0.21', 'port': 6432}
    shared = {'host': '/run/p1', 'port': 6432, 'unix_socket_dir': '/run/p1'}
    assert daemon.pidfile_name(process, ['appdb']) == 'fastdowntime-pgbouncer-watchdog-6432.appdb.pid'
    assert daemon.pidfile_name(shared, ['appdb']) == 'fastdowntime-pgbouncer-watchdog-6432-run_p1.appdb.pid'
    assert daemon.pidfile_name(process, ['appdb']) != daemon.pidfile_name(process, ['sessiondb'])
    assert daemon.pidfile_name(process, ['b_ro', 'a']) == daemon.pidfile_name(process, ['a', 'b_ro']) == \
        'fastdowntime-pgbouncer-watchdog-6432.a_b_ro.pid'
    long_names = ['entry_%02d' % n for n in range(20)]
    name = daemon.pidfile_name(process, long_names)
    assert len(name) < 110 and name != daemon.pidfile_name(process, long_names[:-1])
    for watched in ([], ['appdb'], ['sessiondb']):
        (tmp_path / daemon.pidfile_name(process, watched)).write_text('{}')
    (tmp_path / daemon.pidfile_name(shared, ['appdb'])).write_text('{}')
    (tmp_path / 'fastdowntime-pgbouncer-watchdog-64320.appdb.pid').write_text('{}')
    assert [os.path.basename(p) for p in daemon.pidfile_paths(str(tmp_path), process)] == [
        'fastdowntime-pgbouncer-watchdog-6432.appdb.pid', 'fastdowntime-pgbouncer-watchdog-6432.pid',
        'fastdowntime-pgbouncer-watchdog-6432.sessiondb.pid']
    assert daemon.pidfile_paths(str(tmp_path / 'missing'), process) == []


def test_a_pidfile_is_alive_only_for_the_process_that_wrote_it(tmp_path):
    path = str(tmp_path / 'w.pid')
    assert daemon.current(path) == (None, False)
    mine = {'pid': os.getpid(), 'start_time': daemon.process_start_time(os.getpid())}
    with open(path, 'w') as handle:
        json.dump(mine, handle)
    assert daemon.current(path) == (mine, True)
    recycled = dict(mine, start_time='1')  # the same pid, another process
    with open(path, 'w') as handle:
        json.dump(recycled, handle)
    assert daemon.current(path) == (recycled, False)
    assert daemon.disarm(path) == recycled and not os.path.exists(path)


def test_a_deploys_switch_lives_the_arming_margin_then_a_whole_countdown():
    """The outage role arms the switch with deploy_max_lifetime_seconds (from the outage module's plan): a
    pause as late as the end of the arming margin still gets its whole budget + grace, and a switch whose deploy
    never paused goes away right after."""
    lifetime = wd.deploy_max_lifetime_seconds(budget_seconds=5, grace_seconds=2)
    assert lifetime == wd.ARMING_MARGIN_SECONDS + 7 == 307
    late = dog(max_lifetime_seconds=lifetime)
    assert late.observe(wd.ARMING_MARGIN_SECONDS - 0.1, ACTIVE) == wd.WAIT
    assert late.observe(wd.ARMING_MARGIN_SECONDS, PAUSED) == wd.COUNTDOWN_STARTED
    assert late.observe(lifetime - 0.01, PAUSED) == wd.WAIT
    assert late.observe(lifetime, PAUSED) == wd.FIRE
    never_paused = dog(max_lifetime_seconds=lifetime)
    assert never_paused.observe(lifetime - 0.01, ACTIVE) == wd.WAIT
    assert never_paused.observe(lifetime, ACTIVE) == wd.EXIT_LIFETIME
    assert wd.deploy_switch(60, 10) == {'countdown_seconds': 70.0, 'max_lifetime_seconds': 370.0}  # the defaults


def test_a_queued_client_timeout_shorter_than_budget_plus_grace_cuts_the_countdown():
    """pgbouncer disconnects a client queued past its query_wait_timeout: a switch whose budget + grace
    outlasts its process's timeout fires half a second before it (after the outage's budget, capped a
    second before it); a longer timeout, or none, leaves budget + grace."""
    assert wd.countdown_seconds(4, 2, 3) == 2.5
    assert wd.countdown_seconds(4, 2, 120) == 6.0
    assert wd.countdown_seconds(4, 2, None) == wd.countdown_seconds(4, 2, 0) == 6.0
    d = dog(budget_seconds=4, grace_seconds=2, queue_timeout_seconds=3)
    assert d.observe(1, PAUSED) == wd.COUNTDOWN_STARTED
    assert d.observe(3.49, PAUSED) == wd.WAIT
    assert d.observe(3.5, PAUSED) == wd.FIRE
    assert 'cut to 0.5 s before' in d.countdown_text() and "queued-client timeout of 3 s" in d.countdown_text()
    assert dog().countdown_text() == 'budget 5.0 s + grace 2.0 s'
