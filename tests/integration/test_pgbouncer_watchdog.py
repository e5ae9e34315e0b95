"""The dead-man switch on the real pgbouncer hosts: armed over SSH by the role,
it resumes both pgbouncers after the process that paused them is SIGKILLed."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

PGBOUNCERS = ('pgbouncer1', 'pgbouncer2')
BUDGET = 2.0
GRACE = 1.0


def run_role(lab, tasks_from, extra=()):
    """Run an entry point of the pgbouncer_drain role on the lab's pgbouncers (retry once: sshd may be slow)."""
    playbook = os.path.join(lab.lab_dir, 'pgbouncer-watchdog-test.yml')
    with open(playbook, 'w') as handle:
        handle.write(textwrap.dedent('''\
            - name: Watchdog test
              hosts: fastdowntime_pgbouncers
              gather_facts: false
              tasks:
                - name: Run the entry point
                  ansible.builtin.include_role:
                    name: fastdowntime.postgresql.pgbouncer_drain
                    tasks_from: %s
            ''' % tasks_from))
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK='default',
               FDT_REPORT_PATH=os.path.join(lab.lab_dir, 'pgbouncer-watchdog-test-report.json'))
    cmd = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', lab.inventory(), playbook,
           '-e', 'fastdowntime_budget_seconds=%s' % BUDGET, '-e', 'fastdowntime_watchdog_grace_seconds=%s' % GRACE]
    cmd += list(extra)
    for dummy in range(2):
        proc = subprocess.run(cmd, cwd=lab.repo, env=env, capture_output=True, text=True, timeout=180, check=False)
        if proc.returncode == 0:
            return proc
    raise AssertionError('ansible-playbook %s failed:\n%s%s' % (tasks_from, proc.stdout[-3000:], proc.stderr[-2000:]))


def watchdog_files(lab, host):
    run_dir = os.path.join(lab.lab_dir, 'hosts', host, 'run')
    return [name for name in os.listdir(run_dir) if name.startswith('fastdowntime-pgbouncer-watchdog')]


def watchdog_pids(lab):
    """Pids the watchdogs' pidfiles name (ps cannot tell a forked daemon by its name)."""
    pids = []
    for host in PGBOUNCERS:
        for name in watchdog_files(lab, host):
            with open(os.path.join(lab.lab_dir, 'hosts', host, 'run', name)) as handle:
                pids.append(json.load(handle)['pid'])
    return pids


def alive(pid):
    """Running (a zombie waiting for init to reap it counts as gone)."""
    try:
        with open('/proc/%d/stat' % pid) as handle:
            return handle.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


@pytest.fixture
def consoles(consoles, healthy_lab):
    """conftest's consoles, and no watchdog left armed afterwards."""
    yield consoles
    run_role(healthy_lab, 'disarm')


def test_arm_is_idempotent_and_disarm_leaves_nothing(healthy_lab, consoles):
    first = run_role(healthy_lab, 'arm')
    assert 'changed=1' in first.stdout
    again = run_role(healthy_lab, 'arm')
    assert 'changed=0' in again.stdout and 'changed=1' not in again.stdout
    pids = watchdog_pids(healthy_lab)
    assert len(pids) == 2 and all(alive(pid) for pid in pids)
    run_role(healthy_lab, 'disarm')
    for host in PGBOUNCERS:
        assert watchdog_files(healthy_lab, host) == []
    assert not any(alive(pid) for pid in pids)


def test_a_deploy_of_other_entries_keeps_its_own_switch_beside_this_ones(healthy_lab, consoles):
    """Two deploys at once to two databases of one cluster (here: the deploy entries, and another set named
    with fastdowntime_drain_entries): each arm leaves the other's switch running, each disarm stops its own."""
    run_role(healthy_lab, 'arm')
    mine = watchdog_pids(healthy_lab)
    other = ['-e', '{"fastdowntime_drain_entries": ["%s_ro"]}' % healthy_lab.db_name]
    run_role(healthy_lab, 'arm', other)
    both = watchdog_pids(healthy_lab)
    assert len(mine) == 2 and len(both) == 4 and set(mine) < set(both)
    assert all(alive(pid) for pid in both), 'the second arm stopped the first deploy\'s switch'
    run_role(healthy_lab, 'disarm', other)
    assert sorted(watchdog_pids(healthy_lab)) == sorted(mine) and all(alive(pid) for pid in mine)
    assert not any(alive(pid) for pid in set(both) - set(mine))
    run_role(healthy_lab, 'disarm')
    assert watchdog_pids(healthy_lab) == []


DRAINER = textwrap.dedent('''\
    import json, sys, time
    sys.path.insert(0, %(collections)r)
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils import pgbouncer_console as pc
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.drain import drain
    consoles = pc.open_consoles([pc.Console(e, db_name=%(db)r) for e in json.loads(sys.argv[1])])
    pc.wait_logins_settled(consoles)  # as the outage does: a PAUSE closing a login in flight spoils the pool 15 s
    drain(consoles, deadline_seconds=5)
    print('paused', flush=True)
    time.sleep(600)  # the controller "hangs" holding the pause until it is killed
''')


@pytest.mark.faults
def test_sigkill_of_the_controller_is_undone_by_the_watchdog(healthy_lab, consoles):
    run_role(healthy_lab, 'arm')
    pids = watchdog_pids(healthy_lab)
    script = DRAINER % {'collections': os.path.join(healthy_lab.repo, '.collections'), 'db': healthy_lab.db_name}
    endpoints = json.dumps([healthy_lab.pgbouncer(name) for name in PGBOUNCERS])
    with healthy_lab.load(writers=PGBOUNCERS) as load:
        time.sleep(0.3)
        drainer = subprocess.Popen([sys.executable, '-c', script, endpoints], stdout=subprocess.PIPE, text=True)
        assert drainer.stdout.readline().strip() == 'paused'
        paused_at = time.monotonic()
        assert all(c.drained() for c in consoles)
        os.kill(drainer.pid, signal.SIGKILL)
        drainer.wait()
        while not all(not f['paused'] for c in consoles for f in c.flags().values()):
            assert time.monotonic() - paused_at < BUDGET + GRACE + 2.0, 'the watchdog did not resume in time'
            time.sleep(0.1)
        resumed_after = time.monotonic() - paused_at
        time.sleep(0.5)
    assert BUDGET + GRACE - 0.5 <= resumed_after <= BUDGET + GRACE + 2.0
    assert load.errors == []
    assert load.missing_commits(healthy_lab.primary_dsn()) == []
    # Fired watchdogs exit and remove their pidfiles by themselves.
    deadline = time.monotonic() + 3
    while any(watchdog_files(healthy_lab, h) for h in PGBOUNCERS) and time.monotonic() < deadline:
        time.sleep(0.1)
    for host in PGBOUNCERS:
        assert watchdog_files(healthy_lab, host) == []
        assert not any(alive(pid) for pid in pids)
        with open(os.path.join(healthy_lab.lab_dir, 'hosts', host, 'log', 'watchdog.log')) as handle:
            assert 'sent RESUME' in handle.read()
