#!/usr/bin/env python
"""Soak: many deploys in a row on the lab under one continuous client load.

Each deploy is drawn (seeded: the seed is printed, and --seed replays the same
sequence) from a clean deploy and the fault scenarios of the integration tests
(tests/integration/scenarios.py: the same code, not a copy): a failing patch, the
budget spent, a lock holder, the controller killed inside the window, a standby cut
off before and inside the window, a pgbouncer restarted or reloaded inside the
window, a short query_wait_timeout set on one pgbouncer. After each deploy it checks:

  - the scenario's expected outcome (exit code, the one-line message, refused before
    any PAUSE) and its schema all-or-nothing on every database (primary and standbys);
  - every entry of every pgbouncer process answers a client (asked through each
    process's own unix socket), and the report's statement says what that probe saw;
  - no dead-man switch left armed;

and at the end: 0 client errors and 0 lost commits over the whole load. The clients
a restarted pgbouncer itself disconnects (at the restart, on that pgbouncer only) are
counted apart: a restart drops them whatever the deploy does.

The deploys run in segments of lab shapes, in order (SEGMENTS: the default shape, then
every field shape of lab/labctl.py SHAPES in three combinations; --shapes others), the
iterations split evenly: the lab is rebuilt in each segment's shape and runs one client
load per segment, whose lost commits are counted before the next rebuild. A scenario
that cannot mean on a shape what it tests (scenarios.NOT_ON_SHAPE) is not drawn there,
and the results say why. Results go to docs/soak.md and docs/soak.json for SEGMENTS,
written by this script only; other segments to a file under /tmp unless --output says.

    python3 benchmarks/soak.py [--iterations 100] [--seed N] [--scenarios a,b] [--shapes A B,C | --shape A]
                               [--output PATH.md] [--every]
"""

import argparse
import datetime
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, 'tests', 'integration'))

import scenarios  # noqa: E402
from conftest import LABCTL, Lab  # noqa: E402
from deploy import assert_disarmed, every_process_serves  # noqa: E402
from outage_bench import machine  # noqa: E402  (benchmarks/ is this script's directory)


def lab_up(shape):
    up = subprocess.run([sys.executable, LABCTL, 'up', '--shape', shape], capture_output=True, text=True, check=False)
    if up.returncode != 0:
        sys.exit('soak: the lab did not come up (shape %s): %s' % (shape, (up.stdout + up.stderr).strip()))
    out = subprocess.run([sys.executable, LABCTL, 'describe'], capture_output=True, text=True, check=True).stdout
    return Lab(json.loads(out))


def check(lab, run, probe_entries):
    """[problem] after one deploy (empty: every check passed)."""
    problems = []
    try:
        scenarios.check_run(lab, run)
    except AssertionError as exc:
        # check_run's assertions carry the run's output: the short parts, then the lines that say what happened.
        parts = exc.args[0] if exc.args and isinstance(exc.args[0], tuple) else exc.args
        short = [str(p) for p in parts if not (isinstance(p, str) and len(p) > 300)]
        problems.append('outcome (expected %s, rc %s): %s; the run said: %s' % (
            run.expect, run.returncode, ' '.join(' '.join(short).split())[:300], ' | '.join(said(run.out))[:1500]))
    seen = every_process_serves(lab, probe_entries)
    if seen:
        problems.append('not answering a client: %s' % seen)
    statement = run.statement
    if statement is not None and ('answering clients' in statement) == bool(seen):
        problems.append('the report says %r, a client probe saw %s' % (statement, seen or 'every entry answer'))
    try:
        # A switch that fired by itself exits on its next poll: a few seconds, not a deploy.
        assert_disarmed(lab, [h for h, dummy in scenarios.pgbouncer_processes(lab)],
                        within=5.0 if run.expect == 'killed' else 0.0)
    except AssertionError as exc:
        problems.append('switch left armed: %s' % exc)
    return problems


def said(out, limit=5):
    """The last ``limit`` lines of a playbook's output that say what happened (a refusal, an abort, a failed
    task, a warning), whitespace folded."""
    marks = ('refused', 'aborted', 'FAILED', 'fatal:', 'NOT ANSWERING', 'WARNING', 'ERROR', 'msg')
    return [' '.join(line.split()) for line in out.splitlines() if any(m in line for m in marks)][-limit:]


def one(lab, name, tmp):
    """Run scenario ``name``; returns its record."""
    began = time.monotonic()
    record = {'scenario': name}
    try:
        run = scenarios.SCENARIOS[name](lab, Path(tmp))
        record.update(returncode=run.returncode, expect=run.expect,
                      outcome=(run.report or {}).get('outcome'),
                      outage_ms=((run.report or {}).get('outage') or {}).get('outage_ms'),
                      statement=run.statement)
        if run.facts.get('restarted'):
            record['restarted'] = [run.facts['host'], run.facts['restarted']]
        if run.facts.get('resumed_after') is not None:
            record['resumed_by_switch_after_s'] = round(run.facts['resumed_after'], 2)
        record['problems'] = check(lab, run, probe_entries(lab))
    except Exception as exc:  # a scenario that could not even run is a failed iteration, not the end
        record['problems'] = ['scenario raised: %s' % ''.join(traceback.format_exception_only(type(exc), exc)).strip()]
    finally:
        try:
            scenarios.drop_scratch(lab)
        except Exception as exc:
            record.setdefault('problems', []).append('cleanup: %s' % exc)
    record['wall_s'] = round(time.monotonic() - began, 1)
    return record


def probe_entries(lab):
    """The entries a client asks after each deploy: every deploy entry of the lab's shape."""
    return ('fdtdemo', 'fdtdemo_ro') + (('fdtdemo_session',) if 'pgbouncer_session_entry' in lab.shape else ())


def commit():
    """The checkout's commit (a soak run from a copy records it in SOAK_COMMIT)."""
    found = subprocess.run(['git', '-C', REPO, 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True,
                           check=False).stdout.strip()
    return os.environ.get('SOAK_COMMIT') or found or 'unknown'


# `make soak`'s segments, in order: the default shape, then every field shape of lab/labctl.py SHAPES in three
# combinations (a lab rebuild each, about a minute). The deploys are split evenly across them.
SEGMENTS = (
    'default',
    'cascade,walreceiver_names,pgbouncer_reuseport,pgbouncer_unix_backend',
    'sync_apply,one_address,dns_names,pgbouncer_session_entry,pgbouncer_other_database',
    'tls,ipv6,no_slots,pgbouncer_low_timeouts',
)
# The shapes of lab/labctl.py SHAPES no segment soaks, and why (a unit test checks that every other shape is in
# SEGMENTS: a field shape that lands is soaked or named here).
NOT_SOAKED = {
    'standby_below_primary': 'PostgreSQL pauses that standby\'s replay: every deploy is refused before any PAUSE',
    'rtt10': 'the benchmark\'s distance dimension (docs/benchmarks.md)',
    'rtt40': 'the benchmark\'s distance dimension (docs/benchmarks.md)',
    'scale': 'the benchmark\'s scale dimension (docs/benchmarks.md)',
    'postgresql16': 'a server version: tests/integration/test_postgresql_versions.py',
    'postgresql17': 'a server version: tests/integration/test_postgresql_versions.py',
    'postgresql18': 'a server version: tests/integration/test_postgresql_versions.py',
}


def plan(seed, iterations, segments, chosen):
    """[(segment, scenario)] of the whole run: the deploys split evenly across ``segments`` in
    order, each drawn (random.Random(seed), one draw after the other) from the ``chosen`` scenarios
    that apply to its segment's shape. One segment where every scenario applies draws as the soak
    always did, so an older seed replays its sequence."""
    draw = random.Random(seed)
    sequence = []
    for index, segment in enumerate(segments):
        count = iterations * (index + 1) // len(segments) - iterations * index // len(segments)
        names = [n for n in chosen if scenarios.not_on_shape(n, segment.split(',')) is None]
        sequence += [(segment, draw.choice(names)) for dummy in range(count)] if names else []
    return sequence


def write_results(args, segments, records, started, path_md, path_json):
    """The run's .md and .json; ``segments``: one dict per segment begun (shape, its load's summary,
    client errors, errors of clients a restart itself disconnected, lost commits: None while its load
    still runs)."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    failed = [r for r in records if r['problems']]
    total = {
        'transactions': sum(s['load']['transactions'] for s in segments),
        'confirmed_commits': sum(s['load']['confirmed_commits'] for s in segments),
        'client_errors': sum(len(s['client_errors']) for s in segments),
        'disconnected_by_restarts': sum(s['disconnected_by_restarts'] for s in segments),
        'lost_commits': (None if any(s['lost'] is None for s in segments)
                         else sum(len(s['lost']) for s in segments)),
        'max_wait_ms': max([s['load']['max_wait_ms'] for s in segments] or [0]),
    }
    shapes = [s['shape'] for s in segments]
    result = {'seed': args.seed, 'iterations_requested': args.iterations, 'iterations_run': len(records),
              'iterations_failed': len(failed), 'segments_requested': list(args.shapes), 'started': started,
              'written': now, 'commit': commit(), 'machine': machine(), 'load': total,
              'segments': [dict(s, client_errors=[list(e) for e in s['client_errors'][:50]],
                                lost=None if s['lost'] is None else s['lost'][:50]) for s in segments],
              'runs': records}
    with open(path_json, 'w') as handle:
        json.dump(result, handle, indent=1, sort_keys=True)
    if args.every:
        replay = '`benchmarks/soak.py --every --seed %d --shapes %s`' % (args.seed, ' '.join(args.shapes))
    else:
        replay = '`make soak SEED=%d%s%s`' % (
            args.seed, '' if args.iterations == 100 else ' ITERATIONS=%d' % args.iterations,
            '' if tuple(args.shapes) == SEGMENTS else " SHAPES='%s'" % ' '.join(args.shapes))
    lines = [
        '# Soak',
        '',
        'Written by `benchmarks/soak.py` (never by hand). Run: %s to %s, commit %s. Machine: %s.' % (
            started, now, commit(), machine()),
        '',
        '%d deploys in a row (of %d asked) on the lab in %d segment%s of lab shapes (`lab/labctl.py` SHAPES; a lab '
        'rebuild between segments), seed %d (%s replays the sequence). Each segment under one continuous client '
        'load: 2 psycopg2 writers per pgbouncer, small insert transactions 10 ms apart; its lost commits are '
        'counted when its load stops, before the next rebuild. Each deploy drawn from the scenarios of '
        '`tests/integration/scenarios.py` that apply to its segment\'s shape; after each: the expected outcome, '
        'the schema all-or-nothing on the primary and every standby, every entry of every pgbouncer process '
        'answering a client (and the report saying so), no dead-man switch armed.'
        % (len(records), args.iterations, len(args.shapes), '' if len(args.shapes) == 1 else 's', args.seed, replay),
        '',
        '| | |', '|---|---|',
        '| deploys run | %d |' % len(records),
        '| deploys with a failed check | %d |' % len(failed),
        '| client transactions | %d |' % total['transactions'],
        '| confirmed commits | %d |' % total['confirmed_commits'],
        '| **client errors** | **%d** |' % total['client_errors'],
        '| **commits lost** | **%s** |' % (
            'checked when the load stops' if total['lost_commits'] is None else total['lost_commits']),
        '| clients disconnected by a pgbouncer restart itself (its own clients, at the restart) | %d |'
        % total['disconnected_by_restarts'],
        '| longest client wait (ms) | %s |' % total['max_wait_ms'],
        '',
        '| segment | lab shape | deploys | failed checks | client transactions | client errors | commits lost '
        '| disconnected by restarts | longest wait (ms) |',
        '|---|---|---|---|---|---|---|---|---|',
    ]
    for number, segment in enumerate(segments, start=1):
        rows = [r for r in records if r['segment'] == number]
        lines.append('| %d | %s | %d | %d | %d | %d | %s | %d | %s |' % (
            number, segment['shape'], len(rows), len([r for r in rows if r['problems']]),
            segment['load']['transactions'], len(segment['client_errors']),
            'when its load stops' if segment['lost'] is None else len(segment['lost']),
            segment['disconnected_by_restarts'], segment['load']['max_wait_ms']))
    lines += ['', '| scenario | deploys | per segment | checks failed | expected | median outage (ms) '
              '| median wall (s) |', '|---|---|---|---|---|---|---|']
    for name in sorted({r['scenario'] for r in records}):
        rows = [r for r in records if r['scenario'] == name]
        outages = [r['outage_ms'] for r in rows if r.get('outage_ms') is not None]
        lines.append('| %s | %d | %s | %d | %s | %s | %s |' % (
            name, len(rows), ' / '.join(str(len([r for r in rows if r['segment'] == n]))
                                        for n in range(1, len(segments) + 1)),
            len([r for r in rows if r['problems']]), rows[0].get('expect', '-'),
            round(statistics.median(outages), 1) if outages else '-',
            round(statistics.median(r['wall_s'] for r in rows), 1)))
    lines += ['']
    left_out = [(shape, name, scenarios.not_on_shape(name, shape.split(',')))
                for shape in shapes for name in sorted(scenarios.SCENARIOS)
                if scenarios.not_on_shape(name, shape.split(','))]
    if left_out:
        lines += ['Scenarios not drawn on a shape, and why:', '']
        lines += ['- %s on %s: %s' % (name, shape, why) for shape, name, why in left_out]
        lines += ['']
    if failed:
        lines += ['Failed checks:', '']
        lines += ['- deploy %d (%s, segment %d): %s' % (records.index(r) + 1, r['scenario'], r['segment'],
                                                        '; '.join(r['problems'])) for r in failed]
        lines += ['']
    lines += ['Every deploy, in order, is in `%s`.' % os.path.basename(path_json), '']
    with open(path_md, 'w') as handle:
        handle.write('\n'.join(lines))


def segment_result(lab, shape, records, load, lost):
    """One segment's entry of write_results' ``segments``."""
    restart_errors, other_errors = split_errors(lab, records, load)
    return {'shape': shape, 'load': load.summary(), 'client_errors': other_errors,
            'disconnected_by_restarts': len(restart_errors), 'lost': lost}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--iterations', type=int, default=100)
    parser.add_argument('--seed', type=int, default=None, help='replay a sequence (default: a new seed, printed)')
    parser.add_argument('--scenarios', default=','.join(sorted(scenarios.SCENARIOS)))
    parser.add_argument('--shapes', nargs='+', default=None, metavar='SHAPE',
                        help='segments in order, each a lab shape (a,b combines shapes); default: '
                             + ' '.join(SEGMENTS))
    parser.add_argument('--shape', default=None, help='one segment: --shapes SHAPE')
    parser.add_argument('--output', default=None,
                        help='the .md (the .json beside it); default docs/soak.md for the default segments, '
                             'else a file under %s' % tempfile.gettempdir())
    parser.add_argument('--every', action='store_true',
                        help='each chosen scenario once per segment, in a seeded order (a quick look at shapes)')
    args = parser.parse_args()
    if args.shape and args.shapes:
        parser.error('--shape and --shapes: give one')
    args.shapes = tuple([args.shape] if args.shape else args.shapes or SEGMENTS)
    if args.output is None:
        args.output = (os.path.join(REPO, 'docs', 'soak.md') if args.shapes == SEGMENTS else
                       os.path.join(tempfile.gettempdir(), 'fastdowntime-soak-lab%s.md'
                                    % os.environ.get('FDT_LAB_ID', '')))
    if args.seed is None:
        args.seed = random.SystemRandom().randint(1, 10 ** 6)
    chosen = [s for s in args.scenarios.split(',') if s]
    unknown = set(chosen) - set(scenarios.SCENARIOS)
    if unknown:
        parser.error('unknown scenarios: %s (known: %s)' % (', '.join(sorted(unknown)),
                                                            ', '.join(sorted(scenarios.SCENARIOS))))
    print('soak: seed %d (replay: --seed %d); segments: %s; results: %s' % (
        args.seed, args.seed, ' '.join(args.shapes), args.output), flush=True)
    if args.every:
        draw = random.Random(args.seed)
        sequence = [(shape, name) for shape in args.shapes
                    for name in draw.sample(chosen, len(chosen))
                    if scenarios.not_on_shape(name, shape.split(',')) is None]
        args.iterations = len(sequence)
    else:
        sequence = plan(args.seed, args.iterations, args.shapes, chosen)
    # The scenarios' own patch majors come from the module random: seeded too, so a replay is the same run.
    random.seed(args.seed)
    started = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    path_json = os.path.splitext(args.output)[0] + '.json'
    records, segments, interrupted = [], [], False
    for shape in args.shapes:
        todo = [name for segment, name in sequence if segment == shape]
        if interrupted or not todo:
            continue
        lab = lab_up(shape)
        scenarios.drop_scratch(lab)
        own = []
        segments.append(None)
        with lab.load() as load:
            try:
                for name in todo:
                    with tempfile.TemporaryDirectory(prefix='fdt-soak-') as tmp:
                        record = one(lab, name, tmp)
                    record['segment'] = len(segments)
                    records.append(record)
                    own.append(record)
                    print('soak %3d/%d %-28s %5.1f s  %s' % (
                        len(records), len(sequence), '%d:%s' % (len(segments), name), record['wall_s'],
                        'ok' if not record['problems'] else 'FAILED: ' + '; '.join(record['problems'])), flush=True)
                    # After every deploy, so a run cut short still leaves its results (lost commits: at the end).
                    segments[-1] = segment_result(lab, shape, own, load, None)
                    write_results(args, segments, records, started, args.output, path_json)
            except KeyboardInterrupt:
                print('soak: interrupted after %d deploys; writing what ran' % len(records), flush=True)
                interrupted = True
            time.sleep(0.5)
        # Before the next segment's rebuild: this segment's confirmed commits on its primary.
        segments[-1] = segment_result(lab, shape, own, load, load.missing_commits(lab.primary_dsn()))
        write_results(args, segments, records, started, args.output, path_json)
    failed = len([r for r in records if r['problems']])
    errors = sum(len(s['client_errors']) for s in segments)
    lost = sum(len(s['lost']) for s in segments)
    print('soak: %d deploys in %d segment(s), %d with a failed check, %d client errors, %d commits lost (%d clients '
          'disconnected by pgbouncer restarts); results in %s' % (
              len(records), len(segments), failed, errors, lost,
              sum(s['disconnected_by_restarts'] for s in segments), args.output))
    return 1 if failed or errors or lost else 0


def split_errors(lab, records, load):
    """(errors of clients a pgbouncer restart itself disconnected, every other client error)."""
    other, by_restart = load.errors, []
    for record in records:
        if record.get('restarted'):
            host, interval = record['restarted']
            outside = scenarios.client_errors_outside(load, lab.addr(host), interval)
            by_restart += [e for e in other if e not in outside]
            other = [e for e in other if e in outside]
    return by_restart, other


if __name__ == '__main__':
    sys.exit(main())
