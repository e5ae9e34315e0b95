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
counted apart: a restart drops them whatever the deploy does. Results go to
docs/soak.md and docs/soak.json, written by this script only.

    python3 benchmarks/soak.py [--iterations 100] [--seed N] [--scenarios a,b] [--shape NAME]
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
        problems.append('outcome: %s' % ' '.join(str(exc).split())[:400])
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
        record['problems'] = check(lab, run, PROBE_ENTRIES)
    except Exception as exc:  # a scenario that could not even run is a failed iteration, not the end
        record['problems'] = ['scenario raised: %s' % ''.join(traceback.format_exception_only(type(exc), exc)).strip()]
    finally:
        try:
            scenarios.drop_scratch(lab)
        except Exception as exc:
            record.setdefault('problems', []).append('cleanup: %s' % exc)
    record['wall_s'] = round(time.monotonic() - began, 1)
    return record


PROBE_ENTRIES = ('fdtdemo', 'fdtdemo_ro')


def commit():
    """The checkout's commit (a soak run from a copy records it in SOAK_COMMIT)."""
    found = subprocess.run(['git', '-C', REPO, 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True,
                           check=False).stdout.strip()
    return os.environ.get('SOAK_COMMIT') or found or 'unknown'


def write_results(args, lab, records, load, lost, started, path_md, path_json):
    """docs/soak.md and .json; ``lost``: the lost commits, None while the load still runs.
    Returns split_errors()."""
    restart_errors, other_errors = split_errors(lab, records, load)
    now = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    failed = [r for r in records if r['problems']]
    summary = dict(load.summary(), client_errors=len(other_errors), disconnected_by_restarts=len(restart_errors),
                   lost_commits=None if lost is None else len(lost))
    result = {'seed': args.seed, 'iterations_requested': args.iterations, 'iterations_run': len(records),
              'iterations_failed': len(failed), 'shape': lab.shape or ['default'], 'started': started, 'written': now,
              'commit': commit(),
              'machine': machine(), 'load': summary, 'client_errors': [list(e) for e in other_errors[:50]],
              'lost_commits': None if lost is None else lost[:50], 'runs': records}
    with open(path_json, 'w') as handle:
        json.dump(result, handle, indent=1, sort_keys=True)
    lines = [
        '# Soak',
        '',
        'Written by `benchmarks/soak.py` (never by hand). Run: %s to %s, commit %s. Machine: %s.' % (
            started, now, commit(), machine()),
        '',
        '%d deploys in a row (of %d asked) on the lab (shape %s), seed %d (`make soak SEED=%d` replays the sequence), '
        'under one continuous client load: 2 psycopg2 writers per pgbouncer, small insert transactions 10 ms apart. '
        'Each deploy drawn from the scenarios of `tests/integration/scenarios.py`; after each: the expected outcome, '
        'the schema all-or-nothing on the primary and both standbys, every entry of every pgbouncer process '
        'answering a client (and the report saying so), no dead-man switch armed.'
        % (len(records), args.iterations, ','.join(lab.shape or ['default']), args.seed, args.seed),
        '',
        '| | |', '|---|---|',
        '| deploys run | %d |' % len(records),
        '| deploys with a failed check | %d |' % len(failed),
        '| client transactions | %d |' % summary['transactions'],
        '| confirmed commits | %d |' % summary['confirmed_commits'],
        '| **client errors** | **%d** |' % len(other_errors),
        '| **commits lost** | **%s** |' % ('checked when the load stops' if lost is None else len(lost)),
        '| clients disconnected by a pgbouncer restart itself (its own clients, at the restart) | %d |'
        % len(restart_errors),
        '| longest client wait (ms) | %s |' % summary['max_wait_ms'],
        '',
        '| scenario | deploys | checks failed | expected | median outage (ms) | median wall (s) |',
        '|---|---|---|---|---|---|',
    ]
    for name in sorted({r['scenario'] for r in records}):
        rows = [r for r in records if r['scenario'] == name]
        outages = [r['outage_ms'] for r in rows if r.get('outage_ms') is not None]
        lines.append('| %s | %d | %d | %s | %s | %s |' % (
            name, len(rows), len([r for r in rows if r['problems']]), rows[0].get('expect', '-'),
            round(statistics.median(outages), 1) if outages else '-',
            round(statistics.median(r['wall_s'] for r in rows), 1)))
    lines += ['']
    if failed:
        lines += ['Failed checks:', '']
        lines += ['- deploy %d (%s): %s' % (records.index(r) + 1, r['scenario'], '; '.join(r['problems']))
                  for r in failed]
        lines += ['']
    lines += ['Every deploy, in order, is in `docs/soak.json`.', '']
    with open(path_md, 'w') as handle:
        handle.write('\n'.join(lines))
    return restart_errors, other_errors


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--iterations', type=int, default=100)
    parser.add_argument('--seed', type=int, default=None, help='replay a sequence (default: a new seed, printed)')
    parser.add_argument('--scenarios', default=','.join(sorted(scenarios.SCENARIOS)))
    parser.add_argument('--shape', default='default', help='the lab shape to soak on (lab/labctl.py SHAPES)')
    parser.add_argument('--output', default=os.path.join(REPO, 'docs', 'soak.md'))
    args = parser.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().randint(1, 10 ** 6)
    chosen = [s for s in args.scenarios.split(',') if s]
    unknown = set(chosen) - set(scenarios.SCENARIOS)
    if unknown:
        parser.error('unknown scenarios: %s (known: %s)' % (', '.join(sorted(unknown)),
                                                            ', '.join(sorted(scenarios.SCENARIOS))))
    print('soak: seed %d (replay: --seed %d)' % (args.seed, args.seed), flush=True)
    draw = random.Random(args.seed)
    sequence = [draw.choice(chosen) for dummy in range(args.iterations)]
    # The scenarios' own patch majors come from the module random: seeded too, so a replay is the same run.
    random.seed(args.seed)
    lab = lab_up(args.shape)
    scenarios.drop_scratch(lab)
    started = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    path_json = os.path.splitext(args.output)[0] + '.json'
    records = []
    with lab.load() as load:
        try:
            for number, name in enumerate(sequence, start=1):
                with tempfile.TemporaryDirectory(prefix='fdt-soak-') as tmp:
                    record = one(lab, name, tmp)
                records.append(record)
                print('soak %3d/%d %-20s %5.1f s  %s' % (number, len(sequence), name, record['wall_s'],
                                                         'ok' if not record['problems'] else
                                                         'FAILED: ' + '; '.join(record['problems'])), flush=True)
                # After every deploy, so a run cut short still leaves its results (lost commits: at the end).
                write_results(args, lab, records, load, None, started, args.output, path_json)
        except KeyboardInterrupt:
            print('soak: interrupted after %d deploys; writing what ran' % len(records), flush=True)
        time.sleep(0.5)
    lost = load.missing_commits(lab.primary_dsn())
    restart_errors, other = write_results(args, lab, records, load, lost, started, args.output, path_json)
    failed = len([r for r in records if r['problems']])
    print('soak: %d deploys, %d with a failed check, %d client errors, %d commits lost (%d clients disconnected by '
          'pgbouncer restarts); results in %s' % (len(records), failed, len(other), len(lost), len(restart_errors),
                                                  args.output))
    return 1 if failed or other or lost else 0


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
