# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The timeline report: where the time of one deploy went.

Pure logic (no database, no Ansible). Input: what fastdowntime modules return
- ``phases`` (BudgetClock phase records), optionally ``outage``, ``outcome``,
``deploy_id`` - gathered per task into *entries* by ``entry_from_result``.
Output: one report dict (schema in docs/report.md, ``SCHEMA_VERSION``),
rendered by ``render_text`` as a fixed-width table or dumped as JSON.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import math
import os
import time

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import outcomes
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import one_line

SCHEMA_VERSION = 1


# Keys looked for in a result's ``outage`` dict and in every phase's ``detail``.
_WAIT_KEY = 'max_client_wait_ms'
_REPLAY_KEY = 'standby_replay_ms'
_PATCHES_KEY = 'patches'


# -- entries: one per task result (per loop item) -----------------------------

def entry_from_result(result, task=None, host=None, action=None, failed=None):
    """The parts of one module result the report needs, as a list of entries.

    ``failed``: None reads the result's own ``failed``; False overrides it (an
    ignored error); True marks the task failed (a loop's items keep their own
    flag). A looped task's result carries its items under ``results``; each
    item becomes its own entry.
    """
    if not isinstance(result, dict):
        return []
    items = result.get('results')
    if isinstance(items, list) and _phases_of(result) is None:
        entries = []
        for item in items:
            if isinstance(item, dict):
                item_failed = False if failed is False else bool(item.get('failed'))
                entries.extend(entry_from_result(item, task=task, host=host, action=action, failed=item_failed))
        return entries
    phases = _phases_of(result)
    outage = result.get('outage') if isinstance(result.get('outage'), dict) else None
    checks = [c for c in result.get('checks') or [] if isinstance(c, dict)]
    return [{
        'task': task,
        'host': host,
        'action': action,
        'failed': bool(result.get('failed')) if failed is None else bool(failed),
        'changed': bool(result.get('changed')),
        'phases': [p for p in phases if isinstance(p, dict)] if isinstance(phases, list) else [],
        'outage': outage,
        'outcome': result.get('outcome') if isinstance(result.get('outcome'), str) else None,
        'deploy_id': result.get('deploy_id') or (outage or {}).get('deploy_id'),
        'budget_ms': result.get('budget_ms'),
        'msg': one_line(result.get('msg')) if result.get('msg') else None,
        'notes': _notes(result.get('summary_lines')),
        'problems': ['%s: %s%s' % (c.get('check'), c.get('summary'), ' -> %s' % c['action'] if c.get('action') else '')
                     for c in checks if c.get('status') == 'fail'],
        'plan': _plan(result, checks),
        'revisions': [r for r in result.get('revisions') or [] if isinstance(r, dict)],
    }]


# Modules of the collection that are no part of a deploy (CI checks, the lint, reports):
# a playbook running only them must not print a timeline nor replace the report.
NOT_DEPLOY_ACTIONS = frozenset(('fastdowntime.postgresql.change_rule', 'fastdowntime.postgresql.cycle_time',
                                'fastdowntime.postgresql.patch_lint'))


def is_deploy_action(action):
    """Is ``action`` (a module FQCN) a fastdowntime deploy module?"""
    return bool(action) and str(action).startswith('fastdowntime.postgresql.') and str(action) not in NOT_DEPLOY_ACTIONS


def _phases_of(result):
    """A result's phase records: its ``phases`` key, or the fact ``fastdowntime_phases``
    (set_fact, for a role that times a phase of its own). None when it has neither."""
    if 'phases' in result:
        return result['phases']
    facts = result.get('ansible_facts')
    if isinstance(facts, dict) and 'fastdowntime_phases' in facts:
        return facts['fastdowntime_phases']
    return None


def _notes(lines):
    """What a quiet run shows of a pre-flight summary: its verdict, each warning and what to do,
    and where now stands against the deploy windows (the deploy_window check, also when it passes)."""
    if not isinstance(lines, list) or not lines:
        return []
    notes = [str(lines[0])]
    keep = False
    for line in lines[1:]:
        line = str(line)
        if line.startswith('    -> '):
            if keep:
                notes[-1] += ' -> %s' % line[len('    -> '):]
            continue
        keep = line.startswith('WARN') or line.startswith('PASS deploy_window:')  # WARN: the pre-flight's, the lint's WARNING
        if keep:
            notes.append(line)
    return notes


def _plan(result, checks):
    """What a run would do (check mode), from a result that carries a ``plan``:
    the pending patches per phase (the plan's own ``phases``, in the patches'
    numbered order; else every ``pending_<phase>`` key of the plan), each statement's lint class and estimate, the estimate against
    the budget and the window (pgbouncers drained, standbys waited for)."""
    plan = result.get('plan')
    if not isinstance(plan, dict):
        return None
    phases = [{'phase': step.get('phase'), 'patches': list(step.get('patches') or [])}
              for step in plan.get('phases') or [] if isinstance(step, dict)] \
        or [{'phase': key[len('pending_'):], 'patches': [p.get('name') for p in value if isinstance(p, dict)]}
            for key, value in plan.items() if key.startswith('pending_') and isinstance(value, list)]
    statements = [{
        'file': f.get('file'), 'line': f.get('line'), 'phase': str(f.get('patch_kind') or '').lower() or None,
        'class': f.get('kind'), 'lock': f.get('lock'), 'severity': f.get('severity'),
        'estimate_ms': None if _number(f.get('estimate_seconds')) is None
        else _ms((_number(f.get('estimate_seconds')) + (_number(f.get('replay_seconds')) or 0)) * 1000),
        'summary': f.get('summary'),
    } for f in result.get('lint') or [] if isinstance(f, dict)]
    estimate = result.get('estimate') if isinstance(result.get('estimate'), dict) else {}
    budget = [c.get('summary') for c in checks if c.get('check') == 'budget']
    deploy_window = [c.get('summary') for c in checks if c.get('check') == 'deploy_window']
    pgbouncers = [c.get('host') for c in checks if c.get('check') == 'pgbouncer' and c.get('host')]
    standbys = [c.get('host') for c in checks if c.get('check') == 'replication_lag' and c.get('host')]
    return {
        'phases': phases,
        'statements': statements,
        'estimate_ms': _number(estimate.get('total_ms')),
        # What the lint's big-table prices rest on (its scan throughput sample, or the default and why).
        'scan_throughput': (estimate.get('lint') or {}).get('throughput_source') if isinstance(estimate.get('lint'), dict)
        else None,
        'budget_check': budget[0] if budget else None,
        'deploy_window_check': deploy_window[0] if deploy_window else None,
        'window': {'pgbouncers': pgbouncers, 'standbys': standbys} if checks else None,
    }


def is_fastdowntime_result(result, action=None):
    """Does this task result belong in the timeline?"""
    if action and str(action) in NOT_DEPLOY_ACTIONS:
        return False
    if is_deploy_action(action):
        return True
    if not isinstance(result, dict):
        return False
    if _phases_of(result) is not None:
        return True
    items = result.get('results')
    return isinstance(items, list) and any(isinstance(i, dict) and _phases_of(i) is not None for i in items)


# -- phase names ---------------------------------------------------------------

def _norm(name):
    return ' '.join(str(name or '').lower().replace('_', ' ').replace('-', ' ').split())


def is_preflight(name):
    norm = _norm(name)
    return norm.startswith('pre flight') or norm.startswith('preflight')


def is_drain(name):
    return _norm(name).startswith('drain')


def is_resume(name):
    return _norm(name).startswith('resume')


# -- building the report -----------------------------------------------------------

def build_report(entries, play_failed=False, check_mode=False, generated_at=None):
    """The report dict for a list of entries (see ``entry_from_result``)."""
    rows = _rows(entries)
    outages = [e['outage'] for e in entries if e.get('outage')]
    outage = _outage(outages, rows)
    outcome, failed_phase, error = _outcome(entries, rows, outage)
    details = [r['detail'] for r in rows if isinstance(r.get('detail'), dict)]
    # Phase details first, so a module's summary (its ``outage`` dict) has the last word.
    sources = details + outages

    start = outage['_start']
    for row in rows:
        if start is not None and row['_started_at'] is not None:
            row['start_offset_ms'] = _ms((row['_started_at'] - start) * 1000)

    report = {
        'schema_version': SCHEMA_VERSION,
        'generated_at': _iso(time.time() if generated_at is None else generated_at),
        'deploy_id': _first(e.get('deploy_id') for e in entries),
        'outcome': outcome,
        'failed_phase': failed_phase,
        'error': error,
        'check_mode': bool(check_mode),
        'play_failed': bool(play_failed),
        'budget_ms': _number(_first([o.get('budget_ms') for o in outages] + [e.get('budget_ms') for e in entries])),
        'outage': {
            'started_at': _iso(start),
            'ended_at': _iso(outage['_end']),
            'outage_ms': outage['outage_ms'],
            'max_client_wait_ms': _max_number(s.get(_WAIT_KEY) for s in sources),
            'estimate_ms': _number(_first(o.get('estimate_ms') for o in outages)),
            # What a client saw through every pgbouncer entry after the window (outage module).
            'pgbouncer_state': _first(o.get('pgbouncer_state') for o in outages),
            # Before the clock, nothing paused: each standby's lag and the wait for it to catch up (outage
            # module: replication.catch_up; label, bytes_behind, catch_up_seconds).
            'standby_catch_up': _first(o.get('standby_catch_up') for o in outages) or [],
            # Entries someone else resumed inside the window (outage module: pgbouncer, entry, restarted).
            'resumed_by_others': [item for o in outages for item in o.get('resumed_by_others') or []],
            # No window was opened because no cold patch was pending.
            'nothing_pending': outage['outage_ms'] is None
            and any(e.get('outcome') == outcomes.NOTHING_TO_DO for e in entries),
        },
        # One line each: what the outage module warns of (entries resumed by someone else inside the window).
        'warnings': [line for o in outages for line in o.get('warnings') or [] if isinstance(line, str)],
        # Whether the outage module wrote this run's row of fastdowntime.deploy_log ('written',
        # 'not written: <cause>' - then also one of the warnings), None where no window ran.
        'deploy_log': _first(o.get('deploy_log') for o in outages),
        # The window committed the cold patches (its module said it changed the schema), whatever failed after.
        'schema_committed': any(e.get('outage') and e.get('changed') for e in entries),
        'split_window': _split_window(outages),
        'standby_replay_ms': _merge_replay(s.get(_REPLAY_KEY) for s in sources),
        'patches': _merge_patches(s.get(_PATCHES_KEY) for s in sources),
        'phases': [{k: v for k, v in row.items() if not k.startswith('_')} for row in rows],
        # One line per failed pre-flight check, with what to do.
        'problems': [line for e in entries for line in e.get('problems') or []],
        # What the deploy would do (the last plan seen: the pre-flight's, with the lint and the estimate).
        'plan': _last_plan(entries),
        # What the schema is now: each database's newest revision, as last read in the run (after the
        # window, or after the hot patches that follow it).
        'revisions': _first(e['revisions'] for e in reversed(entries) if e.get('revisions')) or [],
    }
    return report


def _last_plan(entries):
    plans = [e['plan'] for e in entries if e.get('plan')]
    with_lint = [p for p in plans if p.get('window') is not None]
    return (with_lint or plans or [None])[-1]


def _rows(entries):
    rows = []
    for order, entry in enumerate(entries):
        for record in entry.get('phases') or []:
            started = _number(record.get('started_at'))
            detail = dict(record['detail']) if isinstance(record.get('detail'), dict) else {}
            error = detail.pop('error', None)  # shown once, as the row's error
            rows.append({
                'phase': str(record.get('phase') or 'unnamed'),
                # The patch file a per-patch phase (hot_patch, cold_patch) ran.
                'patch': detail.get('patch') if isinstance(detail.get('patch'), str) else None,
                'host': record.get('host') or entry.get('host'),
                'task': entry.get('task'),
                'start_offset_ms': _number(record.get('start_offset_ms')),
                'started_at': _iso(started),
                'duration_ms': _number(record.get('duration_ms')),
                'budget_left_ms': _number(record.get('budget_left_ms')),
                'status': str(record.get('status') or 'unknown'),
                'error': one_line(error) if error else None,
                'detail': detail,
                '_started_at': started,
                '_order': (order, len(rows)),
            })
    # In the order they ended, so budget left only goes down and an enclosing phase
    # (cold_transaction) follows the phases it holds; records without times keep
    # their task order at the end.
    rows.sort(key=_end_key)
    return rows


def _outage(outages, rows):
    """Drain start -> last resume end, from the modules' ``outage`` dicts if
    any, else from the drain and resume phase records."""
    starts = [_number(o.get('started_at')) for o in outages]
    ends = [_number(o.get('ended_at')) for o in outages]
    starts = [s for s in starts if s is not None]
    ends = [e for e in ends if e is not None]
    if not starts:
        starts = [r['_started_at'] for r in rows if is_drain(r['phase']) and r['_started_at'] is not None]
    if not ends:
        ends = [r['_started_at'] + r['duration_ms'] / 1000.0 for r in rows
                if is_resume(r['phase']) and r['_started_at'] is not None and r['duration_ms'] is not None]
    start = min(starts) if starts else None
    end = max(ends) if ends else None
    if end is not None and start is not None and end < start:
        end = None  # a resume from before this outage (an earlier play) is not its end
    declared = [_number(o.get('outage_ms')) for o in outages]
    declared = [d for d in declared if d is not None]
    if len(outages) == 1 and declared:
        # One module ran the whole outage and measured it with a monotonic clock.
        outage_ms = _ms(declared[0])
    elif start is not None and end is not None:
        outage_ms = _ms((end - start) * 1000)
    else:
        outage_ms = None
    return {'_start': start, '_end': end, 'outage_ms': outage_ms}


def _outcome(entries, rows, outage):
    """(outcome, failed_phase, error). In this order: what a module said
    about its own abort or refusal; else the failed phase that ended first;
    else the first failed task; else done when a module said so or an outage
    happened; else planned (check mode) when a module said so; else done when
    anything changed; else passed when only the pre-flight spoke; else nothing
    to do."""
    for entry in entries:
        said = entry.get('outcome') or ''
        phase = outcomes.aborted_phase(said)
        if outcomes.is_refusal(said) or phase is not None:
            own_errors = [r['error'] for r in rows if r['task'] == entry.get('task') and r['error']]
            return said, {'phase': phase, 'host': entry.get('host'), 'task': entry.get('task')}, \
                entry.get('msg') or _first(own_errors)

    failed_rows = [r for r in rows if r['status'] == 'failed']
    if failed_rows:
        # The failed phase that ENDED first: when phases nest (an outer phase
        # fails because an inner one did), the innermost one is the cause.
        first = min(failed_rows, key=_end_key)
        failed_phase = {'phase': first['phase'], 'host': first['host'], 'task': first['task']}
        error = first['error'] or _first(e.get('msg') for e in entries if e.get('failed'))
        if is_preflight(first['phase']):
            return outcomes.REFUSED_BY_PREFLIGHT, failed_phase, error
        return outcomes.aborted_in(first['phase']), failed_phase, error

    failed_entries = [e for e in entries if e.get('failed')]
    if failed_entries:
        entry = failed_entries[0]
        names = [p.get('phase') for p in entry.get('phases') or [] if p.get('phase')]
        where = names[-1] if names else (entry.get('task') or entry.get('action') or 'an unnamed task')
        failed_phase = {'phase': where, 'host': entry.get('host'), 'task': entry.get('task')}
        if is_preflight(where) or 'preflight' in _norm(entry.get('action')).replace(' ', ''):
            return outcomes.REFUSED_BY_PREFLIGHT, failed_phase, entry.get('msg')
        return outcomes.aborted_in(where), failed_phase, entry.get('msg')

    declared = [e.get('outcome') for e in entries]
    if outcomes.DONE in declared or outage['_start'] is not None:
        return outcomes.DONE, None, None
    if outcomes.PLANNED in declared:
        return outcomes.PLANNED, None, None
    if any(e.get('changed') for e in entries):
        return outcomes.DONE, None, None
    if set(d for d in declared if d) == {outcomes.PASSED}:
        # The pre-flight alone (playbooks/preflight.yml): no window was asked for.
        return outcomes.PASSED, None, None
    return outcomes.NOTHING_TO_DO, None, None


def _end_key(row):
    if row['_started_at'] is None or row['duration_ms'] is None:
        return (1, row['_order'])
    return (0, row['_started_at'] + row['duration_ms'] / 1000.0, row['_order'])


def _split_window(outages):
    """The write and read outages of a split window (None for an ``all`` window)."""
    split = [o for o in outages if o.get('window_mode') == 'split']
    if not split:
        return None
    return dict((key, _number(split[-1].get(key)))
                for key in ('write_outage_ms', 'read_outage_ms', 'max_write_wait_ms', 'max_read_wait_ms'))


def _merge_replay(values):
    merged = {}
    for value in values:
        if isinstance(value, dict):
            for host, ms in value.items():
                number = _number(ms)
                if number is not None:
                    merged[str(host)] = _ms(number)
    return merged


def _merge_patches(values):
    """Per-patch durations, first-seen order, the last value for a file wins.
    A patch is named by ``file`` (or ``name``, as schema.apply_cold returns it)."""
    merged = {}
    for value in values:
        if not isinstance(value, list):
            continue
        for patch in value:
            name = (patch.get('file') or patch.get('name')) if isinstance(patch, dict) else None
            if name:
                merged[str(name)] = _number(patch.get('duration_ms'))
    return [{'file': name, 'duration_ms': None if ms is None else _ms(ms)} for name, ms in merged.items()]


# -- rendering -------------------------------------------------------------------

def check_report_path(path):
    """Where a check-mode run writes its report (the plan), ``path`` being the deploy's
    report (fastdowntime_report_path): beside it, ``.check`` before its extension
    (``report.json`` -> ``report.check.json``; no extension: ``.check`` appended), so a
    look at the plan never replaces the last deploy's report (check mode changes nothing)."""
    stem, extension = os.path.splitext(path)
    return stem + '.check' + extension


def to_json(report):
    return json.dumps(report, indent=2, sort_keys=True, default=str) + '\n'


def render_text(report):
    """The report as a fixed-width text table (a list of lines); lines with nothing
    to say (no outage, no replay) are left out."""
    headers = ('PHASE', 'HOST', 'START', 'DURATION', 'BUDGET LEFT', 'STATUS')
    body = [(
        row['phase'] + (' %s' % row['patch'] if row.get('patch') else ''),
        str(row['host'] or '-'),
        format_offset(row['start_offset_ms']),
        format_ms(row['duration_ms']),
        format_budget(row['budget_left_ms']),
        row['status'],
    ) for row in report['phases']]
    widths = [max([len(headers[i])] + [len(r[i]) for r in body]) for i in range(len(headers))]
    # Text columns left-aligned, numbers right-aligned.
    align = ('<', '<', '>', '>', '>', '<')

    def line(cells):
        return '  '.join('%s' % format(cell, a + str(w)) for cell, a, w in zip(cells, align, widths)).rstrip()

    title = 'fastdowntime timeline: %s' % heading(report)
    if report.get('deploy_id'):
        title += '  (deploy %s)' % report['deploy_id']
    if report.get('check_mode'):
        title += '  [check mode]'
    lines = [title]
    if body:
        lines.extend([line(headers), line(['-' * w for w in widths])])
        lines.extend(line(cells) for cells in body)
    else:
        lines.append('(no fastdowntime phases were recorded)')

    lines.extend(render_plan(report.get('plan')) if report.get('check_mode') else [])
    outage = report['outage']
    total = None
    if outage.get('nothing_pending'):
        total = 'outage: none - no cold patch was pending, nothing was paused'
    elif outage['outage_ms'] is not None:
        total = 'outage (drain start -> last resume): %s' % format_ms(outage['outage_ms'])
    if total:
        if outage.get('estimate_ms') is not None:
            total += ' (estimated %s)' % format_ms(outage['estimate_ms'])
        if report.get('budget_ms') is not None:
            total += ' of a %s budget' % format_ms(report['budget_ms'])
        lines.append(total)
    if outage['max_client_wait_ms'] is not None:
        lines.append('longest client wait (pgbouncer): %s' % format_ms(outage['max_client_wait_ms']))
    if outage.get('pgbouncer_state'):
        lines.append('pgbouncer after the window: %s' % outage['pgbouncer_state'])
    lines.extend('WARNING: %s' % warning for warning in report.get('warnings') or [])
    split = report.get('split_window')
    if split:
        lines.append('split window: writes out %s (longest wait %s), reads out %s (longest wait %s)' % (
            format_ms(split['write_outage_ms']), format_ms(split['max_write_wait_ms']),
            format_ms(split['read_outage_ms']), format_ms(split['max_read_wait_ms'])))
    replay = report['standby_replay_ms']
    if replay:
        lines.append('standby replay: %s' % ', '.join('%s %s' % (host, format_ms(ms))
                                                      for host, ms in sorted(replay.items())))
    patches = report['patches']
    if patches:
        lines.append('patches: %s' % ', '.join('%s %s' % (p['file'], format_ms(p['duration_ms'])) for p in patches))
    lines.extend(render_revisions(report.get('revisions')))
    problems = report.get('problems') or []
    for problem in problems:
        lines.append('problem: %s' % problem)
    if report.get('error') and not problems:
        lines.append('error: %s' % report['error'])
    return lines


def heading(report):
    """What the run came to, in the words that head the timeline: the
    outcome; where the window committed the schema and a later step failed
    (an app restart, the resume, the logins after it), that - the schema
    committed (and on which standbys replayed), the step and host that
    failed, and what to do - never a bare 'aborted in ...' that reads as if
    the deploy were undone."""
    outcome = report['outcome']
    if not report.get('schema_committed') or outcome in outcomes.SUCCESSFUL or outcomes.is_refusal(outcome):
        return outcome
    failed = report.get('failed_phase') or {}
    phase = failed.get('phase') or outcomes.aborted_phase(outcome) or 'a later step'
    host = ' on %s' % failed['host'] if failed.get('host') else ''
    replayed = sorted(host.split(' (')[0] for host in report.get('standby_replay_ms') or {})
    schema = 'schema committed%s' % (' and replayed (%s)' % ', '.join(replayed) if replayed else ' on the primary')
    if 'restart' in _norm(phase):
        fix = 'fix the app%s (see its log), then restart the apps again: --tags restart (the schema needs no ' \
              'deploy again)' % host
    else:
        fix = 'do what the error says; the schema stays committed (a deploy again applies only what is pending)'
    return '%s, then %s failed%s -> %s' % (schema, phase, host, fix)


def render_revisions(revisions):
    """'schema now: 2211-01-0 on primary (...), standby1 (...)' - one group per
    revision, in the order the databases were read; a database that could not
    be read is named with why, a standby that had not yet replayed the primary's
    newest revision (hot patches just applied) says so."""
    if not revisions:
        return []
    groups = []
    for row in revisions:
        if row.get('error'):
            key = 'unknown (%s)' % row['error']
        else:
            key = row.get('revision') or 'no revision recorded'
            if row.get('behind'):
                key += ' (still replaying when read)'
        for group in groups:
            if group[0] == key:
                group[1].append(str(row.get('host')))
                break
        else:
            groups.append((key, [str(row.get('host'))]))
    return ['schema now: %s' % '; '.join('%s on %s' % (key, ', '.join(hosts)) for key, hosts in groups)]


def render_plan(plan):
    """What a check-mode run would do, one line per phase and per statement."""
    if not plan:
        return []
    lines = ['plan:']
    for phase in plan.get('phases') or []:
        lines.append('  %s patches: %s' % (phase['phase'], ', '.join(phase['patches']) or 'none'))
    for st in plan.get('statements') or []:
        lines.append('  %s line %s (%s): %s, estimated %s' % (
            st.get('file'), st.get('line'), st.get('phase') or '-', st.get('class') or '-',
            format_ms(st.get('estimate_ms'))))
    window = plan.get('window') or {}
    if window.get('pgbouncers') or window.get('standbys'):
        lines.append('  window: drain %s -> cold patches in one transaction -> wait for %s -> resume' % (
            ', '.join(window.get('pgbouncers') or []) or 'no pgbouncer',
            ', '.join(window.get('standbys') or []) or 'no standby'))
    if plan.get('budget_check'):
        lines.append('  budget: %s' % plan['budget_check'])
    if plan.get('deploy_window_check'):
        lines.append('  deploy window: %s' % plan['deploy_window_check'])
    return lines


def format_budget(ms):
    """Budget left, rounded down (never shows more time than is left)."""
    if ms is None:
        return '-'
    if abs(ms) < 1000:
        return '%.1f ms' % (math.floor(ms * 10) / 10.0)
    return '%.2f s' % (math.floor(ms / 10.0) / 100.0)


def format_ms(ms):
    """'-', '812.4 ms' or '3.21 s'."""
    if ms is None:
        return '-'
    if abs(ms) < 1000:
        return '%.1f ms' % ms
    return '%.2f s' % (ms / 1000.0)


def format_offset(ms):
    """A signed offset from the outage start ('+0.412 s', '-3.100 s')."""
    if ms is None:
        return '-'
    return '%+.3f s' % (ms / 1000.0)


# -- small helpers ---------------------------------------------------------------

def _number(value):
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _ms(value):
    return round(float(value), 1)


def _max_number(values):
    numbers = [n for n in (_number(v) for v in values) if n is not None]
    return _ms(max(numbers)) if numbers else None


def _first(values):
    for value in values:
        if value is not None and value != '':
            return value
    return None


def _iso(epoch):
    """Epoch seconds -> ISO 8601 UTC with milliseconds (None stays None)."""
    epoch = _number(epoch)
    if epoch is None:
        return None
    moment = datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc)
    return moment.strftime('%Y-%m-%dT%H:%M:%S.') + '%03dZ' % (moment.microsecond // 1000)
