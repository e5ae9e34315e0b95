# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cycle-time measure: how fast a schema change goes live, and at what cost.

Launchpad measured FastDowntime by cycle time - a schema change live within 24
hours of landing, with a short outage. From the deploy log
(``fastdowntime.deploy_log``, one row per run that reached the outage) and,
when given, the git history of the patch directory:

- per deploy: when, outcome, the outage (drain start to last resume), the
  longest client wait pgbouncer reported at resume, the estimate, the patches;
- per patch: landed (the commit that added it on the branch, first-parent
  history: the merge into the branch, not the commit on a feature branch),
  live (the end of the deploy that applied it: every database had it, the
  standbys' replay confirmed inside the outage) and the lead time between;
- per ISO week: deploys done, patches made live, the median outage.

``build`` is pure (rows in, report dict out); ``read_deploy_log`` and
``landing_times`` gather; ``to_csv`` and ``to_html`` render. Times are UTC
ISO 8601 strings in the output, durations in ms (outages) and hours (lead time).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import csv
import datetime
import io
import json
import os

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import htmlchart, outcomes
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.changerule import (
    ChangeRuleError, normalize_dir, open_repository, run_git)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.patchset import PatchSetError, parse_patch_name

TARGET_HOURS = 24.0
UTC = datetime.timezone.utc

READ_SQL = """SELECT deploy_id, started_at, outage_ms::float8 AS outage_ms, outcome, patches, phases,
       estimate_ms::float8 AS estimate_ms, overrides
  FROM fastdowntime.deploy_log
 WHERE started_at >= %(since)s
 ORDER BY started_at, deploy_id"""
READ_SQL_V1 = READ_SQL.replace(', overrides', ", '[]'::jsonb AS overrides")
HAS_OVERRIDES_SQL = ("SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('fastdowntime.deploy_log') "
                     "AND attname = 'overrides' AND NOT attisdropped)")
EXISTS_SQL = "SELECT to_regclass('fastdowntime.deploy_log') IS NOT NULL"

DEPLOY_FIELDS = ('deploy_id', 'started_at', 'outcome', 'outage_ms', 'max_client_wait_ms', 'estimate_ms', 'patches',
                 'overrides')
PATCH_FIELDS = ('file', 'landed_at', 'landed_commit', 'live_at', 'deploy_id', 'lead_time_hours', 'within_target')
WEEK_FIELDS = ('week', 'deploys', 'aborted', 'patches_live', 'median_outage_ms', 'max_client_wait_ms')


class CycleTimeError(Exception):
    """The report cannot be built; str() is the one-line message."""


# -- pure -----------------------------------------------------------------------------

def _utc(moment):
    if moment is None:
        return None
    if isinstance(moment, (int, float)):
        return datetime.datetime.fromtimestamp(moment, tz=UTC)
    if isinstance(moment, str):
        moment = datetime.datetime.fromisoformat(moment.replace('Z', '+00:00'))
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment):
    return moment.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3] + 'Z' if moment else None


def _median(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2.0


def _json(value):
    return json.loads(value) if isinstance(value, str) else (value or [])


def max_client_wait_ms(phases):
    """The longest client wait pgbouncer reported at resume (SHOW POOLS
    maxwait at RESUME, kept in each resume phase's detail), in ms."""
    waits = []
    for phase in phases or []:
        detail = phase.get('detail') if isinstance(phase, dict) else None
        if isinstance(detail, dict):
            for key in ('maxwait_ms', 'max_client_wait_ms'):
                if isinstance(detail.get(key), (int, float)):
                    waits.append(float(detail[key]))
    return max(waits) if waits else None


def deploy_row(row):
    """One deploy-log row (a dict as read_deploy_log returns it) as a report row."""
    started = _utc(row['started_at'])
    outage = float(row['outage_ms']) if row.get('outage_ms') is not None else None
    patches = [p.get('file') or p.get('name') for p in _json(row.get('patches')) if isinstance(p, dict)]
    return {
        'deploy_id': row['deploy_id'],
        'started_at': _iso(started),
        'outcome': row.get('outcome'),
        'outage_ms': outage,
        'max_client_wait_ms': max_client_wait_ms(_json(row.get('phases'))),
        'estimate_ms': float(row['estimate_ms']) if row.get('estimate_ms') is not None else None,
        'patches': [p for p in patches if p],
        'overrides': _json(row.get('overrides')),
        '_started': started,
        '_live': started + datetime.timedelta(milliseconds=outage or 0),
    }


def build(rows, landings=None, generated_at=None, target_hours=TARGET_HOURS, source=None):
    """The report dict from deploy-log rows and {patch file: {'at': datetime,
    'commit': hash}} landing times. A patch is live at the end of the first
    deploy that applied it with outcome ``done``."""
    landings = landings or {}
    deploys = sorted((deploy_row(r) for r in rows), key=lambda d: (d['_started'], d['deploy_id']))
    live = {}
    for deploy in deploys:
        if deploy['outcome'] != outcomes.DONE:
            continue
        for name in deploy['patches']:
            live.setdefault(name, deploy)
    patches = []
    for name in sorted(set(live) | set(landings), key=_patch_order):
        deploy = live.get(name)
        landed = landings.get(name) or {}
        landed_at = _utc(landed.get('at'))
        lead = None
        if deploy is not None and landed_at is not None:
            lead = round((deploy['_live'] - landed_at).total_seconds() / 3600.0, 2)
        patches.append({
            'file': name, 'landed_at': _iso(landed_at), 'landed_commit': landed.get('commit'),
            'live_at': _iso(deploy['_live']) if deploy else None, 'deploy_id': deploy['deploy_id'] if deploy else None,
            'lead_time_hours': lead, 'within_target': None if lead is None else lead <= target_hours,
        })
    weeks = {}
    for deploy in deploys:
        year, week = deploy['_started'].isocalendar()[:2]
        entry = weeks.setdefault('%d-W%02d' % (year, week), {'deploys': [], 'aborted': 0, 'patches_live': 0})
        if deploy['outcome'] == outcomes.DONE:
            entry['deploys'].append(deploy)
            entry['patches_live'] += sum(1 for name in deploy['patches'] if live.get(name) is deploy)
        else:
            entry['aborted'] += 1
    week_rows = [{'week': key, 'deploys': len(value['deploys']), 'aborted': value['aborted'],
                  'patches_live': value['patches_live'],
                  'median_outage_ms': _median(d['outage_ms'] for d in value['deploys']),
                  'max_client_wait_ms': max([d['max_client_wait_ms'] for d in value['deploys']
                                             if d['max_client_wait_ms'] is not None] or [None]) if value['deploys']
                  else None} for key, value in sorted(weeks.items())]
    done = [d for d in deploys if d['outcome'] == outcomes.DONE]
    leads = [p['lead_time_hours'] for p in patches if p['lead_time_hours'] is not None]
    summary = {
        'deploys': len(deploys), 'done': len(done), 'not_done': len(deploys) - len(done),
        'median_outage_ms': _median(d['outage_ms'] for d in done),
        'max_outage_ms': max([d['outage_ms'] for d in done if d['outage_ms'] is not None] or [None]),
        'max_client_wait_ms': max([d['max_client_wait_ms'] for d in done if d['max_client_wait_ms'] is not None]
                                  or [None]),
        'patches_live': len(live), 'patches_with_lead_time': len(leads),
        'median_lead_time_hours': _median(leads),
        'within_target': sum(1 for p in patches if p['within_target']),
        'target_hours': target_hours,
        'deploys_per_week': round(len(done) / float(len(week_rows)), 2) if week_rows else 0.0,
        'overrides': sum(len(d['overrides']) for d in deploys),
    }
    return {
        'generated_at': _iso(_utc(generated_at) or datetime.datetime.now(tz=UTC)),
        'source': source or {},
        'summary': summary,
        'deploys': [dict((k, d[k]) for k in DEPLOY_FIELDS) for d in deploys],
        'patches': patches,
        'weeks': week_rows,
    }


def _patch_order(name):
    try:
        return (0, parse_patch_name(name) or (), name)
    except PatchSetError:
        return (1, (), name)


def to_csv(rows, fields):
    """CSV text of report rows (lists joined with spaces)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator='\n')
    writer.writerow(fields)
    for row in rows:
        writer.writerow([' '.join(str(x) if not isinstance(x, dict) else json.dumps(x, sort_keys=True) for x in value)
                         if isinstance(value, list) else ('' if value is None else value)
                         for value in (row.get(f) for f in fields)])
    return out.getvalue()


def to_html(report):
    """The report as one self-contained page: headline numbers, three plots
    (outage and longest client wait per deploy, lead time per patch against
    the target, deploys per week) and the tables behind them."""
    s = report['summary']
    deploys, patches, weeks = report['deploys'], report['patches'], report['weeks']
    done = [d for d in deploys if d['outcome'] == outcomes.DONE]
    hours = s['target_hours']
    parts = [htmlchart.cards([
        ('deploys done (of %d)' % s['deploys'], htmlchart.fmt(s['done'])),
        ('median outage', '%s ms' % htmlchart.fmt(s['median_outage_ms'])),
        ('longest client wait', '%s ms' % htmlchart.fmt(s['max_client_wait_ms'])),
        ('median lead time, landing to live', '%s h' % htmlchart.fmt(s['median_lead_time_hours'])),
        ('patches live within %gh' % hours, '%d of %d' % (s['within_target'], s['patches_with_lead_time'])),
        ('deploys per week', htmlchart.fmt(s['deploys_per_week'], 2)),
    ])]
    parts.append(htmlchart.heading('Outage per deploy'))
    parts.append(htmlchart.bar_chart('Outage and longest client wait per deploy (ms)',
                                     [d['started_at'][:16].replace('T', ' ') for d in done],
                                     [('outage (drain to last resume)', [d['outage_ms'] for d in done]),
                                      ('longest client wait', [d['max_client_wait_ms'] for d in done])], unit=' ms'))
    timed = [p for p in patches if p['lead_time_hours'] is not None]
    parts.append(htmlchart.heading('Lead time per patch: landed to live on every database'))
    parts.append(htmlchart.bar_chart('Lead time per patch (hours)', [p['file'] for p in timed],
                                     [('lead time', [p['lead_time_hours'] for p in timed])], unit=' h',
                                     target=hours, target_label='target %gh' % hours))
    if not timed:
        parts.append(htmlchart.note('No lead times: give the application repository (its git history dates each '
                                    'patch\'s landing).'))
    parts.append(htmlchart.heading('Deploys per week'))
    parts.append(htmlchart.bar_chart('Deploys per ISO week', [w['week'] for w in weeks],
                                     [('deploys done', [w['deploys'] for w in weeks]),
                                      ('not done', [w['aborted'] for w in weeks])]))
    parts.append(htmlchart.heading('Deploys'))
    parts.append(htmlchart.table(['deploy', 'started (UTC)', 'outcome', 'outage ms', 'longest client wait ms',
                                  'estimate ms', 'patches', 'overrides'],
                                 [[d['deploy_id'], d['started_at'], d['outcome'], d['outage_ms'],
                                   d['max_client_wait_ms'], d['estimate_ms'], ', '.join(d['patches']),
                                   '; '.join('%s by %s: %s' % (o.get('check'), o.get('who'), o.get('why'))
                                             for o in d['overrides'])] for d in deploys]))
    parts.append(htmlchart.heading('Patches'))
    parts.append(htmlchart.table(['patch', 'landed (UTC)', 'commit', 'live (UTC)', 'deploy', 'lead time h',
                                  'within %gh' % hours],
                                 [[p['file'], p['landed_at'], (p['landed_commit'] or '')[:12], p['live_at'],
                                   p['deploy_id'], p['lead_time_hours'],
                                   '' if p['within_target'] is None else ('yes' if p['within_target'] else 'no')]
                                  for p in patches]))
    source = report.get('source') or {}
    parts.append(htmlchart.note('From %s%s. Generated %s.' % (
        source.get('deploy_log', 'the deploy log'),
        ' and the git history of %s' % source['git'] if source.get('git') else '', report['generated_at'])))
    return htmlchart.page('FastDowntime cycle time', parts,
                          subtitle='A schema change live within %gh of landing, with a short outage.' % hours)


def write_outputs(report, directory):
    """cycle-time.json, deploys.csv, patches.csv, weeks.csv and cycle-time.html
    in ``directory`` (created); returns {kind: path}. Files are replaced atomically."""
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise CycleTimeError('cannot create the report directory %s: %s' % (directory, exc.strerror or exc))
    outputs = {
        'json': ('cycle-time.json', json.dumps(report, indent=2, sort_keys=True) + '\n'),
        'deploys_csv': ('deploys.csv', to_csv(report['deploys'], DEPLOY_FIELDS)),
        'patches_csv': ('patches.csv', to_csv(report['patches'], PATCH_FIELDS)),
        'weeks_csv': ('weeks.csv', to_csv(report['weeks'], WEEK_FIELDS)),
        'html': ('cycle-time.html', to_html(report)),
    }
    paths = {}
    for kind, (name, text) in outputs.items():
        path = os.path.join(directory, name)
        try:
            with open(path + '.tmp', 'w') as handle:
                handle.write(text)
            os.replace(path + '.tmp', path)
        except OSError as exc:
            raise CycleTimeError('cannot write %s: %s' % (path, exc.strerror or exc))
        paths[kind] = path
    return paths


# -- gathering -------------------------------------------------------------------------

def read_deploy_log(conn, since=None):
    """Every deploy-log row since ``since`` (aware datetime; None: all), as dicts."""
    since = since or datetime.datetime(1970, 1, 1, tzinfo=UTC)
    with conn.cursor() as cur:
        cur.execute(EXISTS_SQL)
        if not cur.fetchone()[0]:
            raise CycleTimeError('there is no deploy log (fastdowntime.deploy_log) in this database yet: it is '
                                 'created by the first deploy that reaches the outage')
        cur.execute(HAS_OVERRIDES_SQL)
        cur.execute(READ_SQL if cur.fetchone()[0] else READ_SQL_V1, {'since': since})
        names = [c[0] for c in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]


def landing_times(repo, patch_dir, branch='HEAD'):
    """{patch file: {'at': aware datetime, 'commit': hash}}: when each patch
    landed on ``branch`` (the first-parent commit that added it; a patch added
    twice keeps the first). ChangeRuleError (one line) for a bad repository,
    branch or patch directory."""
    top = open_repository(repo)
    rel = normalize_dir(os.path.relpath(patch_dir, top) if os.path.isabs(patch_dir) else patch_dir)
    if not rel or rel.startswith('..'):
        raise ChangeRuleError('patch_dir %r is not a directory inside the repository %s' % (patch_dir, top))
    try:
        run_git(top, 'rev-parse', '--verify', '--quiet', '--end-of-options', '%s^{commit}' % branch)
    except ChangeRuleError:
        raise ChangeRuleError('%r is not a commit of the repository %s: give the branch the patches land on' %
                              (branch, top))
    text = run_git(top, 'log', '--first-parent', '--diff-merges=first-parent', '--reverse', '--diff-filter=A',
                   '--format=%x00%H %ct', '--name-only', branch, '--', rel + '/')
    if not text.strip():
        raise ChangeRuleError('the repository %s has no patch added under %s/ on %s: check patch_dir' %
                              (top, rel, branch))
    found = {}
    for block in text.split('\0')[1:]:
        lines = [line for line in block.splitlines() if line.strip()]
        commit, stamp = lines[0].split()
        for path in lines[1:]:
            if os.path.dirname(path) == rel:
                found.setdefault(os.path.basename(path), {'at': _utc(int(stamp)), 'commit': commit})
    return found
