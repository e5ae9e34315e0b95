"""The cycle-time report on the lab: patches landed in a real git repository, deployed through the
playbook, the report built by the cycle_time playbook (FQCN) from the real deploy log, its numbers
checked against the deploy log, and its HTML page looked at in headless Chromium."""

import datetime
import json
import os
import subprocess
import sys

import pytest

from deploy import pg_one, run_playbook, unique_major

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from browser import colored_pixels, distinct_colors, dump_dom, screenshot  # noqa: E402

pytestmark = pytest.mark.usefixtures('scratch')
BLUE, ORANGE = (0x2f, 0x6d, 0xb5), (0xe0, 0x80, 0x2c)  # htmlchart.COLORS: first and second series


def git(repo, *args, **env):
    return subprocess.run(['git', '-C', str(repo)] + list(args), check=True, capture_output=True, text=True,
                          env=dict(os.environ, **env)).stdout.strip()


def land(repo, name, body, hours_ago):
    """Commit one patch on main, dated ``hours_ago``; returns the commit time."""
    moment = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) - datetime.timedelta(hours=hours_ago)
    (repo / 'db' / name).write_text(body)
    stamp = moment.isoformat()
    git(repo, 'add', '-A')
    git(repo, 'commit', '-q', '-m', 'land %s' % name, GIT_AUTHOR_DATE=stamp, GIT_COMMITTER_DATE=stamp)
    return moment


def test_cycle_time_report_from_the_deploy_log_and_git(healthy_lab, tmp_path):
    lab = healthy_lab
    major = unique_major()
    repo = tmp_path / 'app'
    (repo / 'db').mkdir(parents=True)
    git(repo, 'init', '-q', '-b', 'main')
    git(repo, 'config', 'user.email', 'dev@example.com')
    git(repo, 'config', 'user.name', 'Dev')
    old, new = 'patch-%d-01-0.sql' % major, 'patch-%d-02-0.sql' % major
    landed = {old: land(repo, old, 'CREATE TABLE fdt_ct%d (id int);\n' % major, 30),
              new: land(repo, new, 'ALTER TABLE fdt_ct%d ADD COLUMN note text;\n' % major, 2)}
    with lab.load(writers=('pgbouncer1', 'pgbouncer2')):
        proc, report_path = run_playbook(lab, tmp_path, str(repo / 'db'), tags='preflight,outage')
    assert proc.returncode == 0, proc.stdout[-3000:]
    deploy_id = json.load(open(report_path))['deploy_id']

    out = tmp_path / 'cycle-time'
    extra = {'fastdowntime_cycle_time_dir': str(out), 'fastdowntime_cycle_time_repo': str(repo),
             'fastdowntime_cycle_time_patch_dir': 'db', 'fastdowntime_cycle_time_branch': 'main'}
    proc, dummy = run_playbook(lab, tmp_path, str(repo / 'db'), tags='all', extra=extra,
                               playbook='fastdowntime.postgresql.cycle_time')
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert 'FASTDOWNTIME TIMELINE' not in proc.stdout  # a report is no deploy
    report = json.load(open(out / 'cycle-time.json'))

    # The deploy's numbers are the deploy log's.
    [deploy] = [d for d in report['deploys'] if d['deploy_id'] == deploy_id]
    logged = pg_one(lab, 'primary', "SELECT json_build_object('outage_ms', outage_ms::float8, 'started_at', started_at, "
                                    "'wait', (SELECT max((p->'detail'->>'maxwait_ms')::float8) FROM "
                                    "jsonb_array_elements(phases) p WHERE p->'detail' ? 'maxwait_ms')) "
                                    "FROM fastdowntime.deploy_log WHERE deploy_id = %s", (deploy_id,))
    assert deploy['outcome'] == 'done' and deploy['outage_ms'] == logged['outage_ms'] > 0
    assert logged['wait'] is not None and deploy['max_client_wait_ms'] == logged['wait']
    assert deploy['patches'] == [old, new]
    live = datetime.datetime.fromisoformat(logged['started_at']) + datetime.timedelta(milliseconds=logged['outage_ms'])
    patches = {p['file']: p for p in report['patches']}
    for name, hours_ago in ((old, 30), (new, 2)):
        patch = patches[name]
        assert patch['deploy_id'] == deploy_id
        assert patch['landed_commit'] == git(repo, 'log', '-1', '--format=%H', '--', 'db/' + name)
        assert patch['lead_time_hours'] == round((live - landed[name]).total_seconds() / 3600.0, 2)
        assert hours_ago <= patch['lead_time_hours'] < hours_ago + 0.1
    assert patches[old]['within_target'] is False and patches[new]['within_target'] is True
    total = pg_one(lab, 'primary', 'SELECT count(*) FROM fastdowntime.deploy_log')
    assert report['summary']['deploys'] == total
    csv_lines = open(out / 'deploys.csv').read().splitlines()
    assert len(csv_lines) == total + 1 and any(line.startswith(deploy_id + ',') for line in csv_lines)

    # The page, as a browser shows it: three plots drawn, the deploy's numbers on it.
    png = screenshot(out / 'cycle-time.html', tmp_path / 'cycle-time.png')
    assert distinct_colors(png) > 20
    assert colored_pixels(png, BLUE) > 500  # outage bars and lead-time bars
    dom = dump_dom(out / 'cycle-time.html')
    assert dom.count('<svg') == 3 and deploy_id in dom and 'target 24h' in dom
    assert '%s ms' % '{:,.1f}'.format(report['summary']['median_outage_ms']) in dom
    assert '{:,.2f}'.format(patches[old]['lead_time_hours']) in dom or \
        '{:,.1f}'.format(patches[old]['lead_time_hours']) in dom


def test_cycle_time_bad_repository_is_one_line(healthy_lab, tmp_path):
    extra = {'fastdowntime_cycle_time_dir': str(tmp_path / 'out'), 'fastdowntime_cycle_time_repo': str(tmp_path),
             'fastdowntime_cycle_time_patch_dir': 'db'}
    proc, dummy = run_playbook(healthy_lab, tmp_path, str(tmp_path), tags='all', extra=extra,
                               playbook='fastdowntime.postgresql.cycle_time')
    assert proc.returncode != 0
    assert 'cycle time: %s is not a git repository' % tmp_path in proc.stdout, proc.stdout[-2000:]
    assert 'Traceback' not in proc.stdout + proc.stderr
    assert not (tmp_path / 'out').exists()


def test_a_misspelled_variable_is_refused_before_the_report(healthy_lab, tmp_path):
    """As every playbook of the collection: the inventory check first, so a misspelled fastdowntime_*
    name (here the report's directory, which would silently default to ./cycle-time) refuses the run in
    one line naming it, where it was set and the closest known name, before any report is written."""
    extra = {'fastdowntime_cycle_time_dirr': str(tmp_path / 'out')}
    proc, dummy = run_playbook(healthy_lab, tmp_path, str(tmp_path), tags='all', extra=extra,
                               playbook='fastdowntime.postgresql.cycle_time')
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-2000:]
    assert out.count('FAILED inventory: fastdowntime_cycle_time_dirr (set for every host, from -e) is not a variable '
                     'of fastdowntime.postgresql: did you mean fastdowntime_cycle_time_dir?') == 1, out[-2000:]
    assert 'Build the cycle-time report' not in out and 'Traceback' not in out
    assert not (tmp_path / 'out').exists() and not os.path.exists(os.path.join(healthy_lab.repo, 'cycle-time'))
