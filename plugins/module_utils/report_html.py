# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The timeline report as a picture: one self-contained HTML page per deploy.

``render_html(report)`` takes the report dict of ``report.build_report`` (the
JSON report) and returns the page: the headline numbers, the whole deploy on
one time axis (phases per host, the outage window shaded, the budget's end),
the outage window alone (the client waits pgbouncer saw, hatched, ending at
each RESUME), the phase table and the schema after the deploy. Inline SVG
(``htmlchart``), no script, nothing fetched: it reads offline. Pure logic.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import htmlchart as chart
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.report import (
    format_budget, format_ms, format_offset, heading, render_revisions)

# Phase kinds and their colours: what the time went to.
KINDS = (
    ('pre-flight', ('preflight', 'pre-flight', 'pre_flight'), '#8a949e'),
    ('hot patches', ('hot_patch', 'post_window_hot_patch'), '#3a9a5b'),
    ('drain', ('drain', 'drain_write', 'drain_read', 'terminate_killable', 'replay_pause'), '#e0802c'),
    ('cold patches', ('cold_patch', 'commit', 'cold_transaction'), '#2f6db5'),
    ('standby replay', ('standby_replay', 'replay_resume'), '#7a4fb5'),
    ('resume', ('resume', 'resume_write', 'resume_read', 'resume_verify', 'resume_verify_write', 'resume_verify_read'),
     '#1f9e9e'),
    ('app restarts', ('app_restart',), '#5b6670'),
)
FAILED_COLOR = '#b53a3a'
WAIT_COLOR = 'hatch'
OUTAGE_COLOR = '#e0802c'
BUDGET_COLOR = '#b53a3a'
# Phases that hold others (drawn on a lane of their own under their host).
ENCLOSING = ('cold_transaction',)


def html_path_for(json_path):
    """Where the page of a JSON report goes: next to it, same name, .html."""
    base = json_path[:-5] if json_path.endswith('.json') else json_path
    return base + '.html'


def _color(row):
    if row.get('status') == 'failed':
        return FAILED_COLOR
    for kind in KINDS:
        if row.get('phase') in kind[1]:
            return kind[2]
    return '#c9a227'


def _epoch(iso):
    if not iso:
        return None
    try:
        return datetime.datetime.strptime(iso, '%Y-%m-%dT%H:%M:%S.%fZ').replace(
            tzinfo=datetime.timezone.utc).timestamp()
    except ValueError:
        return None


def _placed(report):
    """[(row, start ms, end ms or None)] of the rows with a time, ms from the drain
    start (or from the first phase's start when no window opened)."""
    origin = _epoch(report['outage'].get('started_at'))
    starts = [_epoch(row.get('started_at')) for row in report['phases']]
    if origin is None:
        known = [s for s in starts if s is not None]
        origin = min(known) if known else None
    placed = []
    for row, start in zip(report['phases'], starts):
        if start is None or origin is None:
            continue
        begin = (start - origin) * 1000.0
        end = begin + row['duration_ms'] if row.get('duration_ms') is not None else None
        placed.append((row, begin, end))
    return placed


def _name(row):
    return row['phase'] + (' %s' % row['patch'] if row.get('patch') else '')


def _lane(row):
    host = str(row.get('host') or '-')
    return '%s (the transaction)' % host.split(' ', maxsplit=1)[0] if row['phase'] in ENCLOSING else host


def _bars(placed):
    lanes, bars = [], []
    for row, begin, end in placed:
        lane = _lane(row)
        if lane not in lanes:
            lanes.append(lane)
        bars.append({'lane': lane, 'start': begin, 'end': end, 'color': _color(row), 'label': row['phase'],
                     'tip': '%s on %s: %s, %s in %s' % (_name(row), row.get('host'), row['status'],
                                                        format_offset(begin), format_ms(row.get('duration_ms')))})
    return lanes, bars


def _client_waits(placed):
    """Hatched bars: the longest wait each pgbouncer reported, ending at its RESUME."""
    waits = []
    for row, begin, end in placed:
        detail = row.get('detail') or {}
        wait = detail.get('max_client_wait_ms', detail.get('maxwait_ms'))  # pgbouncer's SHOW POOLS maxwait
        if row['phase'].startswith('resume') and end is not None and isinstance(wait, (int, float)) and wait > 0:
            waits.append({'lane': _lane(row), 'start': end - wait, 'end': end, 'hatch': True,
                          'tip': 'longest client wait on %s: %s (pgbouncer)' % (row.get('host'), format_ms(wait))})
    return waits


def _legend(placed, waits):
    used = set(_color(item[0]) for item in placed)
    legend = [(kind[0], kind[2]) for kind in KINDS if kind[2] in used]
    if FAILED_COLOR in used:
        legend.append(('failed', FAILED_COLOR))
    if waits:
        legend.append(('client wait', WAIT_COLOR))
    return legend


def _cards(report):
    outage = report['outage']
    cards = [('outcome', report['outcome'])]
    if outage.get('outage_ms') is not None:
        cards.append(('outage (drain start -> last resume)', format_ms(outage['outage_ms'])))
    if outage.get('estimate_ms') is not None:
        cards.append(('estimated', format_ms(outage['estimate_ms'])))
    if report.get('budget_ms') is not None:
        cards.append(('budget', format_ms(report['budget_ms'])))
    if outage.get('max_client_wait_ms') is not None:
        cards.append(('longest client wait (pgbouncer)', format_ms(outage['max_client_wait_ms'])))
    revisions = sorted(set(r.get('revision') or '-' for r in report.get('revisions') or []))
    if revisions:
        cards.append(('schema revision now', ', '.join(revisions)))
    return cards


def render_html(report):
    """The page (str) for one report dict."""
    placed = _placed(report)
    outage = report['outage']
    outage_ms = outage.get('outage_ms') if outage.get('started_at') else None
    budget_ms = report.get('budget_ms')
    parts = [chart.cards(_cards(report))]
    waits = _client_waits(placed)
    if placed:
        lanes, bars = _bars(placed)
        ends = [item[1] if item[2] is None else item[2] for item in placed]
        low, high = min(item[1] for item in placed), max(ends)
        lines = [(budget_ms, 'budget ends (%s)' % format_ms(budget_ms), BUDGET_COLOR)] \
            if budget_ms is not None and outage_ms is not None else []
        if lines and low <= budget_ms <= high * 1.5:
            high = max(high, budget_ms)
        pad = (high - low) * 0.02 or 1.0
        bands = [(0.0, outage_ms, 'outage', OUTAGE_COLOR)] if outage_ms is not None else []
        parts += [chart.heading('The whole deploy'),
                  chart.timeline_chart('phases per host, ms from the drain start', lanes, bars, low - pad, high + pad,
                                       unit=' ms', bands=bands, lines=lines, legend=_legend(placed, [])),
                  ]
        if outage_ms is not None:
            inside = [(r, b, e) for r, b, e in placed if e is not None and b >= -1.0 and b <= outage_ms + 1.0]
            zoom_lanes, zoom_bars = _bars(inside)
            zoom_high = outage_ms * 1.05 + 1.0
            zoom_low = min([0.0] + [w['start'] for w in waits]) - outage_ms * 0.02
            note = 'budget %s: the outage used %.1f%% of it; the budget ends at %s' % (
                format_ms(budget_ms), 100.0 * outage_ms / budget_ms, format_offset(budget_ms)) \
                if budget_ms else 'no budget reported'
            parts += [chart.heading('The outage window'),
                      chart.timeline_chart('drain, cold patches, replay, resume; hatched: the longest client wait',
                                           zoom_lanes, zoom_bars + waits,
                                           zoom_low, zoom_high, unit=' ms',
                                           bands=[(0.0, outage_ms, 'outage %s' % format_ms(outage_ms), OUTAGE_COLOR)],
                                           lines=[(budget_ms, 'budget ends', BUDGET_COLOR)] if budget_ms else [],
                                           legend=_legend(inside, waits)),
                      chart.note(note)]
    parts += [chart.heading('Phases'),
              chart.table(('phase', 'host', 'start', 'duration', 'budget left', 'status'),
                          [(_name(r), str(r.get('host') or '-'), format_offset(r.get('start_offset_ms')),
                            format_ms(r.get('duration_ms')), format_budget(r.get('budget_left_ms')), r['status'])
                           for r in report['phases']])]
    facts = render_revisions(report.get('revisions'))
    replay = report.get('standby_replay_ms') or {}
    if replay:
        facts.append('standby replay: %s' % ', '.join('%s %s' % (h, format_ms(ms)) for h, ms in sorted(replay.items())))
    facts += ['WARNING: %s' % w for w in report.get('warnings') or []]
    facts += ['problem: %s' % p for p in report.get('problems') or []]
    if report.get('error'):
        facts.append('error: %s' % report['error'])
    parts += [chart.note(line) for line in facts]
    title = 'fastdowntime deploy %s: %s' % (report.get('deploy_id') or '-', heading(report))
    subtitle = 'generated %s%s' % (report.get('generated_at'), ' - check mode' if report.get('check_mode') else '')
    return chart.page(title, parts, subtitle=subtitle)
