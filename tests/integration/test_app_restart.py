"""The app_restart role on the lab's two demo app servers (real sshd, real restarts).

Each test runs ansible-playbook against the lab inventory, as a user would, and
checks what happened from outside: the apps' pids (from /health), HTTP probes
running during the roll, the playbook's error and the timeline JSON report.
"""

import http.client
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime

import psycopg2
import pytest

ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
APPS = ('app1', 'app2')

RESTART_PLAY = textwrap.dedent("""\
    - name: Restart the app servers
      hosts: fastdowntime_appservers
      gather_facts: false
      roles:
        - role: fastdowntime.postgresql.app_restart
    """)

DEPLOY_PLAY = textwrap.dedent("""\
    - name: Apply the lab's schema patches
      hosts: fastdowntime_primary
      gather_facts: false
      roles:
        - role: fastdowntime.postgresql.schema_apply
    """)

NEWEST_REVISION_SQL = """
SELECT format('%s-%s-%s', major, lpad(minor::text, 2, '0'), patch)
  FROM fastdowntime.schema_revision ORDER BY major DESC, minor DESC, patch DESC LIMIT 1
"""


def health(lab, app, timeout=2.0):
    """(HTTP status, JSON body or None); status 0 when there was no HTTP answer."""
    url = 'http://%s:8080/health' % lab.addr(app)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (OSError, ValueError, http.client.HTTPException):  # refused, reset, cut mid-answer
        return 0, None


def wait_healthy(lab, app, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        status, body = health(lab, app)
        if status == 200:
            return body
        assert time.monotonic() < deadline, '%s not healthy within %ss (last HTTP %s)' % (app, timeout, status)
        time.sleep(0.2)


def pids(lab):
    return {app: wait_healthy(lab, app)['pid'] for app in APPS}


def newest_revision(lab):
    with psycopg2.connect(lab.primary_dsn()) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('fastdowntime.schema_revision') IS NOT NULL")
        if not cur.fetchone()[0]:
            return None
        cur.execute(NEWEST_REVISION_SQL)
        row = cur.fetchone()
        return row[0] if row else None


def run_playbook(lab, tmp_path, play=RESTART_PLAY, extra_vars=None, host_vars=None):
    """Run a play against the lab inventory; host_vars ({host: {var: value}})
    go in a second inventory file, which overrides the lab's group_vars."""
    (tmp_path / 'play.yml').write_text(play)
    command = [ANSIBLE_PLAYBOOK, '-i', lab.inventory()]
    if host_vars:
        overrides = {'all': {'children': {'fastdowntime_appservers': {'hosts': host_vars}}}}
        (tmp_path / 'overrides.yml').write_text(json.dumps(overrides))
        command += ['-i', str(tmp_path / 'overrides.yml')]
    for name, value in (extra_vars or {}).items():
        command += ['-e', json.dumps({name: value})]
    report_path = tmp_path / 'report.json'
    env = dict(os.environ, ANSIBLE_NOCOLOR='1', FDT_REPORT_PATH=str(report_path),
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', ''))
    env.pop('FASTDOWNTIME_REPORT_PATH', None)
    proc = subprocess.run(command + [str(tmp_path / 'play.yml')], cwd=lab.repo, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    report = json.loads(report_path.read_text()) if report_path.exists() else None
    return proc, report


def window(row):
    """(start, end) in epoch seconds of a report row (its started_at is ISO 8601)."""
    started = datetime.fromisoformat(row['started_at'].replace('Z', '+00:00')).timestamp()
    return started, started + row['duration_ms'] / 1000.0


def restart_phases(report):
    return {row['host']: row for row in report['phases'] if row['phase'] == 'app_restart'}


@pytest.fixture(scope='module')
def apps(lab, tmp_path_factory):
    """Both demo apps healthy and reporting a schema revision.

    The apps read fastdowntime.schema_revision as fdt_app: on a fresh lab the
    lab's patches are deployed first, and fdt_app is granted read access (the
    schema engine creates the table readable by its owner only)."""
    if newest_revision(lab) is None:
        proc, dummy = run_playbook(lab, tmp_path_factory.mktemp('deploy'), play=DEPLOY_PLAY)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    with psycopg2.connect(lab.primary_dsn()) as conn, conn.cursor() as cur:
        cur.execute('GRANT USAGE ON SCHEMA fastdowntime TO fdt_app; '
                    'GRANT SELECT ON fastdowntime.schema_revision TO fdt_app')
    for app in APPS:
        wait_healthy(lab, app)
    return lab


class Probe(threading.Thread):
    """GETs /health of one app in a loop, recording (start, end, ok, status).

    A request may wait up to 10 s: the lab is shared, and another test's
    outage (pgbouncer PAUSE) delays /health without failing it."""

    def __init__(self, lab, app):
        super().__init__(daemon=True)
        self.lab, self.app = lab, app
        self.samples = []
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            began = time.time()
            status, dummy = health(self.lab, self.app, timeout=10.0)
            self.samples.append((began, time.time(), status == 200, status))
            time.sleep(0.02)

    def during(self, window_start, window_end):
        """Requests that overlapped [window_start, window_end]."""
        return [s for s in self.samples if s[1] >= window_start and s[0] <= window_end]

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.join(timeout=5)


def test_rolling_restart_keeps_the_other_app_serving(apps, tmp_path):
    before = pids(apps)
    probes = {app: Probe(apps, app) for app in APPS}
    with probes['app1'], probes['app2']:
        proc, report = run_playbook(apps, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]

    after = pids(apps)
    for app in APPS:
        assert after[app] != before[app], '%s was not restarted (pid %s)' % (app, before[app])

    phases = restart_phases(report)
    assert set(phases) == set(APPS)
    assert all(phases[app]['status'] == 'ok' for app in APPS)
    assert report['outcome'] == 'done'
    windows = {app: window(phases[app]) for app in APPS}
    # Rolling: app2 starts only once app1 is done.
    assert windows['app1'][1] <= windows['app2'][0] + 0.01, windows

    for restarting, serving in (('app1', 'app2'), ('app2', 'app1')):
        # The probe can see an outage: the restarted app was down for a moment.
        own = probes[restarting].during(*windows[restarting])
        assert any(not ok for dummy, dummy, ok, dummy in own), \
            'the probe saw no failure on %s while it restarted: is it really probing?' % restarting
        served = probes[serving].during(*windows[restarting])
        assert len(served) >= 5, 'too few requests to %s while %s restarted' % (serving, restarting)
        failed = [(status, end - start) for start, end, ok, status in served if not ok]
        assert failed == [], '%s failed requests while %s restarted: %s' % (serving, restarting, failed)


@pytest.mark.faults
def test_failed_restart_stops_the_roll_and_names_the_host(apps, tmp_path):
    before = pids(apps)
    proc, report = run_playbook(apps, tmp_path,
                                host_vars={'app1': {'fastdowntime_app_restart_command': '/bin/false'}})
    assert proc.returncode != 0
    assert 'app restart stopped at app1: app1 failed after' in proc.stdout
    assert 'restart command "/bin/false" failed with rc 1' in proc.stdout
    assert 'not restarted: app2' in proc.stdout
    assert 'Traceback' not in proc.stdout + proc.stderr

    assert pids(apps) == before, 'app2 must be left untouched, and /bin/false restarts nothing'
    phases = restart_phases(report)
    assert list(phases) == ['app1']
    assert phases['app1']['status'] == 'failed'
    assert report['outcome'] == 'aborted in app_restart'
    assert report['failed_phase']['host'] == 'app1'


def test_expected_revision_check_passes_with_the_deployed_revision(apps, tmp_path):
    revision = newest_revision(apps)
    before = pids(apps)
    proc, report = run_playbook(apps, tmp_path, extra_vars={
        'fastdowntime_app_expected_revision_check': True,
        'fastdowntime_app_expected_revision': revision,
        'fastdowntime_app_restart_batch_size': 'all',
    })
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    after = pids(apps)
    assert all(after[app] != before[app] for app in APPS)
    phases = restart_phases(report)
    assert {app: phases[app]['detail']['revision'] for app in APPS} == {'app1': revision, 'app2': revision}
    # All at once: both restarts began before either was healthy.
    windows = [window(phases[app]) for app in APPS]
    assert max(start for start, dummy in windows) < min(end for dummy, end in windows)


def test_expected_revision_check_fails_on_an_app_that_sees_another_revision(apps, tmp_path):
    revision = newest_revision(apps)
    stale_for = '9999-99-0'  # newer than anything: the apps look like they read a stale standby
    before = pids(apps)
    began = time.monotonic()
    proc, report = run_playbook(apps, tmp_path, extra_vars={
        'fastdowntime_app_expected_revision_check': True,
        'fastdowntime_app_expected_revision': stale_for,
        'fastdowntime_app_health_timeout_seconds': 3,
        'fastdowntime_app_health_interval_seconds': 0.5,
    })
    assert proc.returncode != 0
    assert time.monotonic() - began < 60
    out = proc.stdout
    assert 'app restart stopped at app1: app1 failed after' in out
    assert 'not healthy at http://%s:8080/health after waiting' % apps.addr('app1') in out
    assert 'HTTP 200 with revision "%s", expected "%s"' % (revision, stale_for) in out
    assert 'not restarted: app2' in out

    after = pids(apps)
    assert after['app1'] != before['app1'], 'app1 was restarted, then found stale'
    assert after['app2'] == before['app2'], 'app2 must be left untouched'
    phases = restart_phases(report)
    assert list(phases) == ['app1'] and phases['app1']['status'] == 'failed'
    waited = float(out.split('after waiting ')[1].split(' s')[0])
    assert 3 <= waited < 10, waited
