"""The app_restart role's systemd path and its settings checks, without systemd.

The lab has no systemd, so these runs use two inventory hosts on the local
connection, a stand-in `systemctl` first on PATH that logs every call (what
ansible.builtin.systemd_service asks systemd to do), and a health endpoint on
127.0.0.1 served by the test.
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

REPO = str(next(p for p in pathlib.Path(__file__).resolve().parents if (p / 'galaxy.yml').is_file()))
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')

# Answers `show` like a loaded, running unit; fails restart/reload of units
# named broken*; restarts units named slow* in FAKE_SYSTEMCTL_SLOW_SECONDS; logs "<epoch> <args>" for every call.
FAKE_SYSTEMCTL = textwrap.dedent("""\
    #!/bin/sh
    echo "$(date +%s.%N) $*" >> "$FAKE_SYSTEMCTL_LOG"
    case "$1" in
      show) printf 'Id=%s\\nLoadState=loaded\\nActiveState=active\\nSubState=running\\n' "$2" ;;
      restart|reload)
        case "$2" in slow*) sleep "${FAKE_SYSTEMCTL_SLOW_SECONDS:-0}" ;; esac
        case "$2" in broken*) echo "Job for $2 failed because the control process exited with error code." >&2; exit 1 ;; esac ;;
    esac
    exit 0
    """)

PLAY = textwrap.dedent("""\
    - name: Restart the app servers
      hosts: fastdowntime_appservers
      gather_facts: false
      roles:
        - role: fastdowntime.postgresql.app_restart
    """)


class HealthServer:
    """/health?host=NAME answers 200 {"revision": ...}; every request is logged."""

    def __init__(self, revision='2300-03-0'):
        self.revision = revision
        self.requests = []  # (epoch, host)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                url = urlparse(self.path)
                outer.requests.append((time.time(), parse_qs(url.query).get('host', ['?'])[0]))
                body = json.dumps({'status': 'ok', 'revision': outer.revision}).encode()
                self.send_response(200)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def health():
    server = HealthServer()
    yield server
    server.close()


def run_role(tmp_path, health, units=None, extra_vars=None, check=False, slow_seconds=0):
    """Run the role on web1 and web2 (local connection); returns
    (process, systemctl calls as (epoch, [args]), report dict or None)."""
    units = units or {'web1': 'web1.service', 'web2': 'web2.service'}
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir(exist_ok=True)
    systemctl = bin_dir / 'systemctl'
    systemctl.write_text(FAKE_SYSTEMCTL)
    systemctl.chmod(0o755)
    log = tmp_path / 'systemctl.log'
    log.write_text('')

    hosts = {name: {'ansible_connection': 'local',
                    'ansible_python_interpreter': sys.executable,
                    'fastdowntime_app_service': unit,
                    'fastdowntime_app_health_url': 'http://127.0.0.1:%d/health?host=%s' % (health.port, name)}
             for name, unit in units.items()}
    (tmp_path / 'hosts.yml').write_text(json.dumps(
        {'all': {'children': {'fastdowntime_appservers': {'hosts': hosts}}}}))
    (tmp_path / 'play.yml').write_text(PLAY)

    env = {name: value for name, value in os.environ.items()
           if not name.startswith('ANSIBLE_') and name != 'FASTDOWNTIME_REPORT_PATH'}
    env.update({
        'PATH': '%s%s%s%s%s' % (bin_dir, os.pathsep, os.path.dirname(sys.executable), os.pathsep,
                                os.environ.get('PATH', '')),
        'FAKE_SYSTEMCTL_LOG': str(log),
        'FAKE_SYSTEMCTL_SLOW_SECONDS': str(slow_seconds),
        'ANSIBLE_CONFIG': str(tmp_path / 'none.cfg'),  # not the repo's: no lab inventory
        'ANSIBLE_COLLECTIONS_PATH': os.path.join(REPO, '.collections'),
        'ANSIBLE_CALLBACKS_ENABLED': 'fastdowntime.postgresql.timeline',
        'FASTDOWNTIME_REPORT_PATH': str(tmp_path / 'report.json'),
        'ANSIBLE_LOCAL_TEMP': str(tmp_path / 'tmp'),
        'ANSIBLE_NOCOLOR': '1',
    })
    command = [ANSIBLE_PLAYBOOK, '-i', str(tmp_path / 'hosts.yml'), str(tmp_path / 'play.yml')]
    for name, value in (extra_vars or {}).items():
        command += ['-e', json.dumps({name: value})]
    if check:
        command.append('--check')
    proc = subprocess.run(command, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=120, check=False)
    calls = [(float(line.split()[0]), line.split()[1:]) for line in log.read_text().splitlines()]
    report_path = tmp_path / ('report.check.json' if check else 'report.json')  # check mode: beside the deploy's
    report = json.loads(report_path.read_text()) if report_path.exists() else None
    return proc, calls, report


def changes(calls):
    """The systemctl calls that change something: [['restart', 'web1.service'], ...]."""
    return [args for dummy, args in calls if args[0] != 'show']


def test_rolling_systemd_restart_one_host_after_the_other(tmp_path, health):
    proc, calls, report = run_role(tmp_path, health)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert changes(calls) == [['restart', 'web1.service'], ['restart', 'web2.service']]
    # web1 was healthy before web2 restarted.
    web2_restart = next(at for at, args in calls if args == ['restart', 'web2.service'])
    assert any(host == 'web1' and at < web2_restart for at, host in health.requests)
    assert not any(host == 'web2' and at < web2_restart for at, host in health.requests)

    rows = [r for r in report['phases'] if r['phase'] == 'app_restart']
    assert [(r['host'], r['status']) for r in rows] == [('web1', 'ok'), ('web2', 'ok')]
    assert all(r['detail']['method'] == 'systemd' and r['detail']['health_status'] == 200 for r in rows)
    assert report['outcome'] == 'done'
    assert '[timeline] end app_restart on web1: ok' in proc.stdout


def test_reload_and_all_at_once(tmp_path, health):
    proc, calls, dummy = run_role(tmp_path, health, extra_vars={
        'fastdowntime_app_systemd_action': 'reload', 'fastdowntime_app_restart_batch_size': 'all'})
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert sorted(changes(calls)) == [['reload', 'web1.service'], ['reload', 'web2.service']]
    # One batch: both reloads happen before the first health poll.
    last_reload = max(at for at, args in calls if args[0] == 'reload')
    assert last_reload < min(at for at, dummy in health.requests)


def test_check_mode_changes_nothing_and_polls_nothing(tmp_path, health):
    proc, calls, report = run_role(tmp_path, health, check=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert changes(calls) == []
    assert [args for dummy, args in calls] == [['show', 'web1.service'], ['show', 'web2.service']]
    assert health.requests == []
    assert all(r['detail']['check_mode'] for r in report['phases'])


def test_failed_systemd_restart_stops_the_roll(tmp_path, health):
    proc, calls, report = run_role(tmp_path, health, units={'web1': 'broken.service', 'web2': 'web2.service'})
    assert proc.returncode != 0
    assert changes(calls) == [['restart', 'broken.service']], 'web2 must be left untouched'
    assert ('app restart stopped at web1: web1 failed after' in proc.stdout
            and 'systemd restart of broken.service failed: Unable to restart service broken.service: '
                'Job for broken.service failed' in proc.stdout
            and 'not restarted: web2' in proc.stdout), proc.stdout[-3000:]
    assert report['outcome'] == 'aborted in app_restart'


def test_expected_revision_mismatch_names_both_revisions(tmp_path, health):
    proc, calls, dummy = run_role(tmp_path, health, extra_vars={
        'fastdowntime_app_expected_revision_check': True, 'fastdowntime_app_expected_revision': '2300-04-0',
        # The timeout leaves room for several polls even on a loaded machine.
        'fastdowntime_app_health_timeout_seconds': 8, 'fastdowntime_app_health_interval_seconds': 0.2})
    assert proc.returncode != 0
    assert 'last response: HTTP 200 with revision "2300-03-0", expected "2300-04-0"' in proc.stdout
    assert 'not restarted: web2' in proc.stdout
    assert changes(calls) == [['restart', 'web1.service']]
    assert len([h for dummy, h in health.requests if h == 'web1']) >= 2, 'the health check must retry'


def test_no_batch_starts_once_the_budget_is_spent(tmp_path, health):
    # web1's restart alone outlasts the budget, so the budget is spent before
    # web2's batch whatever the machine's load adds before web1's.
    proc, calls, report = run_role(tmp_path, health, units={'web1': 'slow1.service', 'web2': 'web2.service'},
                                   extra_vars={'fastdowntime_restart_budget_seconds': 6}, slow_seconds=7)
    assert proc.returncode != 0
    assert ('app restart stopped before web2: the restart budget of 6 s is spent; not restarted: web2'
            in proc.stdout), proc.stdout[-3000:]
    assert changes(calls) == [['restart', 'slow1.service']]
    web1 = next(r for r in report['phases'] if r['host'] == 'web1')
    assert web1['budget_left_ms'] < 0


@pytest.mark.parametrize('extra_vars, error', [
    ({'fastdowntime_app_restart_method': 'upstart'},
     'value of fastdowntime_app_restart_method must be one of: systemd, command, got: upstart'),
    ({'fastdowntime_app_restart_batch_size': 0},
     # single quotes: ansible-core 2.16 shows the message only inside the result's JSON, which escapes double ones
     "fastdowntime_app_restart_batch_size must be a positive integer or 'all', it is '0'"),
    ({'fastdowntime_restart_budget_seconds': 0}, 'fastdowntime_restart_budget_seconds must be positive'),
    ({'fastdowntime_app_restart_method': 'command'},
     'fastdowntime_app_restart_command is empty, method command needs it'),
])
def test_bad_settings_refuse_before_any_restart(tmp_path, health, extra_vars, error):
    proc, calls, dummy = run_role(tmp_path, health, extra_vars=extra_vars)
    assert proc.returncode != 0
    assert error in proc.stdout, proc.stdout[-3000:]
    assert changes(calls) == []
    assert 'Traceback' not in proc.stdout + proc.stderr


def test_a_failed_restart_of_a_later_host_is_counted_against_that_host(tmp_path, health):
    """The roll's stop ran once, on the first host: its recap (and the timeline's 'hosts:' line) named web1
    failed when web2's restart failed."""
    proc, calls, report = run_role(tmp_path, health, units={'web1': 'web1.service', 'web2': 'broken.service'})
    assert proc.returncode != 0
    assert changes(calls) == [['restart', 'web1.service'], ['restart', 'broken.service']]
    recap = dict((line.split()[0], line) for line in proc.stdout.split('PLAY RECAP')[-1].splitlines() if ' : ' in line)
    assert 'failed=1' in recap['web2'] and 'failed=0' in recap['web1'], proc.stdout[-2000:]
    assert 'app restart stopped at web2: web2 failed after' in proc.stdout
    assert 'then restart them again (--tags restart: the restarts alone)' in proc.stdout
