"""The cycle-time report: built from deploy-log rows (pure), landing times from a real git history."""

import datetime
import json
import os
import subprocess

import pytest

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import cycletime as ct
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.changerule import ChangeRuleError

UTC = datetime.timezone.utc
T0 = datetime.datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday


def row(deploy_id, hours, outage_ms, patches, outcome='done', waits=(), overrides=()):
    return {'deploy_id': deploy_id, 'started_at': T0 + datetime.timedelta(hours=hours), 'outage_ms': outage_ms,
            'outcome': outcome, 'estimate_ms': 80.0,
            'patches': [{'file': p, 'duration_ms': 1.0} for p in patches],
            'phases': [{'phase': 'drain', 'detail': {}}] + [{'phase': 'resume', 'detail': {'maxwait_ms': w}}
                                                            for w in waits],
            'overrides': list(overrides)}


ROWS = [
    row('d1', 0, 40.0, ['patch-2300-01-0.sql'], waits=(12.5, 30.0)),
    row('d2', 24, 9000.0, ['patch-2300-02-0.sql'], outcome='aborted in cold_transaction', waits=(2.0,)),
    row('d3', 30, 60.0, ['patch-2300-02-0.sql', 'patch-2300-03-0.sql'], waits=(45.0,),
        overrides=[{'check': 'deploy_window', 'who': 'alice', 'why': 'hotfix'}]),
    row('d4', 24 * 8, 50.0, ['patch-2300-04-0.sql']),
]
LANDINGS = {
    'patch-2300-01-0.sql': {'at': T0 - datetime.timedelta(hours=3), 'commit': 'a' * 40},
    'patch-2300-02-0.sql': {'at': T0 - datetime.timedelta(hours=2), 'commit': 'b' * 40},
    'patch-2300-05-0.sql': {'at': T0, 'commit': 'c' * 40},  # landed, not deployed yet
}


def test_build_per_deploy_per_patch_per_week():
    report = ct.build(ROWS, LANDINGS, generated_at=T0)
    d1 = report['deploys'][0]
    assert d1 == {'deploy_id': 'd1', 'started_at': '2026-11-23T10:00:00.000Z', 'outcome': 'done', 'outage_ms': 40.0,
                  'max_client_wait_ms': 30.0, 'estimate_ms': 80.0, 'patches': ['patch-2300-01-0.sql'],
                  'overrides': []}
    patches = {p['file']: p for p in report['patches']}
    # Live at the end of the first DONE deploy that applied it (d3, not the aborted d2).
    assert patches['patch-2300-02-0.sql']['deploy_id'] == 'd3'
    assert patches['patch-2300-02-0.sql']['live_at'] == '2026-11-24T16:00:00.060Z'
    assert patches['patch-2300-02-0.sql']['lead_time_hours'] == 32.0
    assert patches['patch-2300-02-0.sql']['within_target'] is False
    assert patches['patch-2300-01-0.sql']['lead_time_hours'] == 3.0 and patches['patch-2300-01-0.sql']['within_target']
    assert patches['patch-2300-05-0.sql']['live_at'] is None and patches['patch-2300-05-0.sql']['lead_time_hours'] is None
    assert patches['patch-2300-04-0.sql']['landed_at'] is None
    assert [p['file'] for p in report['patches']] == ['patch-2300-0%d-0.sql' % n for n in range(1, 6)]
    assert report['weeks'] == [
        {'week': '2026-W48', 'deploys': 2, 'aborted': 1, 'patches_live': 3, 'median_outage_ms': 50.0,
         'max_client_wait_ms': 45.0},
        {'week': '2026-W49', 'deploys': 1, 'aborted': 0, 'patches_live': 1, 'median_outage_ms': 50.0,
         'max_client_wait_ms': None}]
    s = report['summary']
    assert (s['deploys'], s['done'], s['not_done'], s['median_outage_ms'], s['max_outage_ms']) == (4, 3, 1, 50.0, 60.0)
    assert (s['max_client_wait_ms'], s['patches_live'], s['median_lead_time_hours'], s['within_target']) == \
        (45.0, 4, 17.5, 1)
    assert s['deploys_per_week'] == 1.5 and s['overrides'] == 1


def test_csv_and_html(tmp_path):
    report = ct.build(ROWS, LANDINGS, generated_at=T0, source={'deploy_log': 'the lab', 'git': '/srv/app'})
    paths = ct.write_outputs(report, str(tmp_path / 'out'))
    assert sorted(os.path.basename(p) for p in paths.values()) == [
        'cycle-time.html', 'cycle-time.json', 'deploys.csv', 'patches.csv', 'weeks.csv']
    assert json.load(open(paths['json']))['summary']['done'] == 3
    lines = open(paths['deploys_csv']).read().splitlines()
    assert lines[0] == 'deploy_id,started_at,outcome,outage_ms,max_client_wait_ms,estimate_ms,patches,overrides'
    assert lines[3] == ('d3,2026-11-24T16:00:00.000Z,done,60.0,45.0,80.0,patch-2300-02-0.sql patch-2300-03-0.sql,'
                        '"{""check"": ""deploy_window"", ""who"": ""alice"", ""why"": ""hotfix""}"')
    page = open(paths['html']).read()
    assert page.startswith('<!DOCTYPE html>') and '<script' not in page and 'http://' not in page.replace(
        'http://www.w3.org/2000/svg', '')
    assert page.count('<svg') == 3 and 'deploy_window by alice: hotfix' in page and 'target 24h' in page


def test_html_escapes_what_it_shows():
    rows = [row('<script>alert(1)</script>', 0, 10.0, ['patch-2300-01-0.sql'])]
    page = ct.to_html(ct.build(rows, {}, generated_at=T0))
    assert '<script>' not in page and '&lt;script&gt;' in page


def git(repo, *args, **env):
    return subprocess.run(['git', '-C', str(repo)] + list(args), check=True, capture_output=True, text=True,
                          env=dict(os.environ, **env)).stdout


def commit_at(repo, message, moment):
    stamp = moment.strftime('%Y-%m-%dT%H:%M:%S+00:00')
    git(repo, 'add', '-A')
    git(repo, 'commit', '-q', '-m', message, GIT_AUTHOR_DATE=stamp, GIT_COMMITTER_DATE=stamp)


def test_landing_times_follow_the_first_parent(tmp_path):
    repo = tmp_path / 'app'
    repo.mkdir()
    git(repo, 'init', '-q', '-b', 'main')
    git(repo, 'config', 'user.email', 'dev@example.com')
    git(repo, 'config', 'user.name', 'Dev')
    (repo / 'db').mkdir()
    (repo / 'db' / 'patch-2300-01-0.sql').write_text('SELECT 1;\n')
    commit_at(repo, 'first', T0)
    git(repo, 'checkout', '-q', '-b', 'feature')
    (repo / 'db' / 'patch-2300-02-0.sql').write_text('SELECT 2;\n')
    commit_at(repo, 'on the branch', T0 + datetime.timedelta(hours=1))
    git(repo, 'checkout', '-q', 'main')
    stamp = (T0 + datetime.timedelta(hours=5)).strftime('%Y-%m-%dT%H:%M:%S+00:00')
    git(repo, 'merge', '-q', '--no-ff', '-m', 'land it', 'feature', GIT_AUTHOR_DATE=stamp, GIT_COMMITTER_DATE=stamp)
    found = ct.landing_times(str(repo), 'db', 'main')
    assert found['patch-2300-01-0.sql']['at'] == T0
    # Landed when merged into main, not when written on the branch.
    assert found['patch-2300-02-0.sql']['at'] == T0 + datetime.timedelta(hours=5)
    assert found['patch-2300-02-0.sql']['commit'] == git(repo, 'rev-parse', 'main').strip()
    with pytest.raises(ChangeRuleError, match="'nope' is not a commit of the repository"):
        ct.landing_times(str(repo), 'db', 'nope')
    with pytest.raises(ChangeRuleError, match='has no patch added under schema/ on main'):
        ct.landing_times(str(repo), 'schema', 'main')
    with pytest.raises(ChangeRuleError, match='is not a git repository'):
        ct.landing_times(str(tmp_path), 'db', 'main')


@pytest.mark.parametrize('value, top', [(30.5, 40.0), (99.5, 100.0), (0.4, 0.4), (7, 8.0), (0, 4.0), (101, 200.0)])
def test_axis_maximum_is_round(value, top):
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.htmlchart import nice_max
    assert nice_max(value) == pytest.approx(top)
