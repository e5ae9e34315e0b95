#!/usr/bin/env python
"""Outage benchmark on the lab: this collection against the plain alternatives.

For one trivial additive patch, under a constant client load through the
pgbouncers (psycopg2 writers doing small insert transactions), it runs:

  collection   ansible-playbook --tags outage (the collection's one-task window)
  collection-1 the same with one pgbouncer and one standby in the inventory
  psql-chain   a plain playbook of separate psql tasks: PAUSE, patch, poll the
               standbys, RESUME
  live         no pause at all: the patch runs live while a 5 s report query
               holds a lock on the table
  window-all   the collection, fastdowntime_window_mode=all, with readers
               through the read-only entries too and a cold patch that keeps
               the primary busy 300 ms
  window-split the same with fastdowntime_window_mode=split: readers should
               wait only for the standbys' catch-up, writers for the primary
  size-1, size-500  the collection on an idle primary for 1 and 20 x 25 cheap
               statements, beside psql -1 of the same SQL run on the primary
               (the server's own time: the physical limit's base)

and prints, per method, the medians over the runs of: the longest client wait,
client errors, commits lost (must be 0), the outage (drain start -> resume as
the method itself measures it) and the playbook's wall time. The results go to
docs/benchmarks.md, written by this script only.

    python3 benchmarks/outage_bench.py [--runs 5] [--methods collection,psql-chain,...]
"""

import argparse
import datetime
import glob
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, 'lab'))

sys.path.insert(0, os.path.join(REPO, '.collections'))  # make venv links the checkout there

import psycopg2  # noqa: E402
from load import ClientLoad  # noqa: E402
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.pgbouncer_console import (  # noqa: E402
    LOGIN_SETTLE_SECONDS, logins_in_flight)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.schema import (  # noqa: E402
    DEFAULT_REVISION_TABLE)

LAB = '10.213.%d.' % (47 + int(os.environ.get('FDT_LAB_ID') or 0))  # as lab/labctl.py
PRIMARY = 'host=%s10 port=5432 dbname=fdtdemo user=fdt_deploy password=deploy-secret' % LAB
CLIENT = 'host=%s%d port=6432 dbname=fdtdemo user=fdt_app password=app-secret'
PSQL = '/usr/lib/postgresql/15/bin/psql'
VENV_BIN = os.path.join(REPO, '.venv', 'bin')
METHODS = ('collection', 'collection-1', 'psql-chain', 'live', 'window-all', 'window-split', 'size-1', 'size-500',
           'big-index', 'big-rewrite', 'big-validate', 'stall', 'scale')
# Run on their own after the interleaved methods: the stall series (STALL_DEPLOYS in a row) and the scale
# points (each run rebuilds the lab in the point's shape).
SEPARATE = ('stall', 'scale')
WINDOW_METHODS = ('window-all', 'window-split')
# Scale: (pgbouncers, standbys) -> the lab shape (lab/labctl.py SHAPES), under the same client load.
SCALES = {(2, 2): 'default', (2, 4): 'scale_2', (8, 4): 'scale_8', (16, 4): 'scale', (32, 4): 'scale_32',
          (64, 4): 'scale_64', (100, 4): 'scale_100'}
SCALE_GOAL_POINTS = ((2, 2), (16, 4))   # interleaved run by run; the other points run each in a row
SCALE_WRITERS = 16          # writers in all, spread evenly over the pgbouncers (2+2: 8 each, 16+4: 1 each)
SCALE_GOAL = 1.1            # issue 20: 16+4 within 1.1x of 2+2
# The entries the collection's window pauses on each pgbouncer in the scale runs (fdtdemo, and fdtdemo_ro: each
# pgbouncer's read-only entry points at a standby, lab_endpoints); the bare window pauses the same ones, so that the
# physical limit does the same work. Runs recorded before bare_entries existed paused fdtdemo only.
SCALE_ENTRIES = ('fdtdemo', 'fdtdemo_ro')
SCALE_MODEL_TO = 100        # the model's reach (pgbouncers)
# The stall series: deploys of the 500-statement set in a row on an idle primary (issue 20: 0 stalls in 50).
STALL_DEPLOYS = 50
# The goal's limit: one poll of the replay wait it was set against (the answers awaited up to the poll interval,
# then a sleep of the interval, which grew to 50 ms): a standby reported later than this after it replayed the
# commit (seen by the bench's own observer) is a stall. The wait now asks a standby again a short fixed interval
# after its "not yet" and reads each answer as it arrives (replication.REPLAY_WAIT_POLL_SECONDS, docs/window.md);
# the table shows how late the reports are beside the limit, and the observer's own lag.
STALL_POLL_MS = 100.0
STALL_OBSERVER_SECONDS = 0.002
# Big-table cases (the lint's costly statements), each one cold patch on a table of BIG_ROWS rows.
BIG_SCHEMA = 'fdt_bench_big'
BIG_TABLE = BIG_SCHEMA + '.big'
BIG_ROWS = 1500000
BIG_CASES = {
    'big-index': ('CREATE INDEX big_n ON %s (n);\n' % BIG_TABLE, 'DROP INDEX IF EXISTS %s.big_n' % BIG_SCHEMA),
    'big-rewrite': ('ALTER TABLE %s ALTER COLUMN id TYPE bigint;\n' % BIG_TABLE,
                    'ALTER TABLE %s ALTER COLUMN id TYPE integer' % BIG_TABLE),
    'big-validate': ('ALTER TABLE %s ADD CONSTRAINT big_n_check CHECK (n >= 0);\n' % BIG_TABLE,
                     'ALTER TABLE %s DROP CONSTRAINT IF EXISTS big_n_check' % BIG_TABLE),
}
BIG_BUDGET_SECONDS = 300
# Patch-set size: (files, statements per file), on an idle primary, against psql -1 of the same SQL.
SIZES = {'size-1': (1, 1), 'size-500': (20, 25)}
ADDED_RTT_ROUND_TRIPS = 5   # the goal: outage <= 5 RTT + the server's own time + 20 %
# Large enough for a collection that pays one round trip per statement (500 x 40 ms), so both run side by side.
SIZE_BUDGET_SECONDS = 120
# The window comparison's patch keeps the primary busy this long, as a real cold patch does.
WINDOW_PATCH_SECONDS = 0.3
# Its revisions stay out of the lab's revision table (dropped at the end).
WINDOW_REVISION_TABLE = 'fdt_bench.schema_revision'


# The checkout whose collection is measured (--engine: e.g. an older one, side by side); the lab is this one's.
ENGINE = REPO


def env():
    return dict(os.environ, ANSIBLE_CONFIG=os.path.join(ENGINE, 'ansible.cfg'),
                ANSIBLE_COLLECTIONS_PATH=os.path.join(ENGINE, '.collections'), ANSIBLE_FORCE_COLOR='0',
                PATH=VENV_BIN + os.pathsep + os.environ['PATH'])


def unused_major():
    """A patch major (four digits: patchset.PATCH_NAME_RE) that neither revision
    table the benchmark writes has applied. Drawn at random alone it met an
    applied one once the tables had filled over many runs (a stop-10 A/B run:
    "patch-7437-00-0.sql: changed since it was applied")."""
    conn = psycopg2.connect(PRIMARY)
    conn.autocommit = True
    used = set()
    try:
        with conn.cursor() as cur:
            for table in (DEFAULT_REVISION_TABLE, WINDOW_REVISION_TABLE):
                cur.execute('SELECT to_regclass(%s) IS NOT NULL', (table,))
                if cur.fetchone()[0]:
                    cur.execute('SELECT DISTINCT major FROM %s' % table)
                    used.update(row[0] for row in cur.fetchall())
    finally:
        conn.close()
    free = sorted(set(range(3000, 10000)) - used)
    if not free:
        raise RuntimeError('benchmark: every patch major 3000-9999 is applied on the lab: rebuild it (labctl down, up)')
    return random.choice(free)


def patch_sql(tag):
    return 'ALTER TABLE fdt_item ADD COLUMN bench_%s integer;\n' % tag


def load_for(pgbouncers, readers=False):
    return ClientLoad(writers=[CLIENT % (LAB, 20 + n) for n in pgbouncers],
                      readers=[(CLIENT % (LAB, 20 + n)).replace('dbname=fdtdemo', 'dbname=fdtdemo_ro')
                               for n in pgbouncers] if readers else [],
                      per_dsn=2, pause=0.01)


def one_inventory(tmp):
    """The lab inventory with one pgbouncer and one standby."""
    path = os.path.join(tmp, 'one.yml')
    with open(path, 'w') as handle:
        handle.write('''all:
  children:
    fastdowntime_primary: {hosts: {primary: {ansible_host: "{{ fdt_lab_subnet }}.10"}}}
    fastdowntime_standbys:
      hosts: {standby1: {ansible_host: "{{ fdt_lab_subnet }}.11", fastdowntime_standby_pgbouncer_entries: ["pgbouncer1:fdtdemo_ro"]}}
    fastdowntime_pgbouncers: {hosts: {pgbouncer1: {ansible_host: "{{ fdt_lab_subnet }}.21"}}}
''')
    os.symlink(os.path.join(REPO, 'inventories', 'lab', 'group_vars'), os.path.join(tmp, 'group_vars'))
    return path


def size_patch_set(directory, tag, files, per_file):
    """``files`` patches of ``per_file`` cheap statements each (CREATE TABLE,
    CREATE INDEX, COMMENT, ADD COLUMN, small INSERTs) in schema fdt_bench;
    returns the SQL of them all, in order."""
    os.makedirs(directory, exist_ok=True)
    major = 3000 + int(time.time() * 10) % 6000
    everything = []
    for number in range(files):
        table = 'fdt_bench.t_%s_%d' % (tag, number)
        statements = ['CREATE TABLE %s (id integer PRIMARY KEY, body text)' % table]
        while len(statements) < per_file:
            n = len(statements)
            statements.append(('CREATE INDEX ON %s (body)' % table, "COMMENT ON TABLE %s IS 'bench %d'" % (table, n),
                               'ALTER TABLE %s ADD COLUMN c%d integer' % (table, n),
                               "INSERT INTO %s (id, body) VALUES (%d, 'row')" % (table, n))[n % 4])
        text = ';\n'.join(statements) + ';\n'
        everything.append(text)
        with open(os.path.join(directory, 'patch-%d-%02d-0.sql' % (major, number + 1)), 'w') as handle:
            handle.write(text)
    return ''.join(everything)


def round_trip_ms(dsn, samples=20):
    """The controller's round trip to ``dsn``: the median of SELECT 1 on an open connection."""
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    times = []
    with conn.cursor() as cur:
        for dummy in range(samples):
            began = time.perf_counter()
            cur.execute('SELECT 1')
            cur.fetchone()
            times.append((time.perf_counter() - began) * 1000)
    conn.close()
    return statistics.median(times)


def psql_on_primary_ms(sql):
    """The server's own time for ``sql`` as one transaction: psql -1 run on the
    primary host itself (its namespace), in a scratch database."""
    db = 'fdt_bench_psql_%d' % random.randint(0, 10 ** 6)
    admin = psycopg2.connect(PRIMARY.replace('dbname=fdtdemo', 'dbname=postgres'))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute('CREATE DATABASE %s' % db)
    try:
        setup = psycopg2.connect(PRIMARY.replace('dbname=fdtdemo', 'dbname=%s' % db))
        setup.autocommit = True
        with setup.cursor() as cur:
            cur.execute('CREATE SCHEMA fdt_bench')
        setup.close()
        with tempfile.NamedTemporaryFile('w', suffix='.sql') as handle:
            handle.write(sql)
            handle.flush()
            ns = netns_name('primary')
            began = time.monotonic()
            subprocess.run(['ip', 'netns', 'exec', ns, PSQL, '-X', '-q', '-1', '-v', 'ON_ERROR_STOP=1', '-f', handle.name,
                            PRIMARY.replace('dbname=fdtdemo', 'dbname=%s' % db)], check=True, capture_output=True)
            return (time.monotonic() - began) * 1000
    finally:
        with admin.cursor() as cur:
            cur.execute('DROP DATABASE IF EXISTS %s WITH (FORCE)' % db)
        admin.close()


def netns_name(host):
    """The lab host's network namespace (as lab/labctl.py names it)."""
    sys.path.insert(0, os.path.join(REPO, 'lab'))
    import labctl  # noqa: E402 - the lab's own naming
    return labctl.netns(host)


def run_size(tmp, tag, inventory, files, per_file, far=None):
    """The collection's pre-flight and window for a patch set of files x
    per_file statements, no client load; returns the report's outage, its
    estimate, transaction and replay, and psql -1 of the same SQL on the
    primary. ``far``: an inventory putting the controller behind the lab's
    delaying relay (shape rtt10/rtt40)."""
    patch_dir = os.path.join(tmp, 'patches-' + tag)
    sql = size_patch_set(patch_dir, tag, files, per_file)
    # A fresh schema (and revision table) each run: the pre-flight refuses revisions without their files.
    conn = psycopg2.connect(PRIMARY)
    with conn, conn.cursor() as cur:
        cur.execute('DROP SCHEMA IF EXISTS fdt_bench CASCADE; CREATE SCHEMA fdt_bench')
    conn.close()
    report = os.path.join(tmp, 'report-%s.json' % tag)
    began = time.monotonic()
    inventories = ['-i', inventory] + (['-i', far] if far else [])
    extra = json.dumps({'fastdowntime_patch_dir': patch_dir, 'fastdowntime_revision_table': WINDOW_REVISION_TABLE,
                        'fastdowntime_budget_seconds': SIZE_BUDGET_SECONDS})
    proc = subprocess.run(['ansible-playbook'] + inventories
                          + ['playbooks/fastdowntime.yml', '--tags', 'preflight,outage', '-e', extra],
                          cwd=ENGINE, env=dict(env(), FASTDOWNTIME_REPORT_PATH=report), capture_output=True, text=True,
                          check=False)
    wall = time.monotonic() - began
    if proc.returncode != 0:
        raise RuntimeError('size run failed: %s' % proc.stdout[-2000:])
    with open(report) as handle:
        data = json.load(handle)
    outage = data['outage']
    replay = [ms for ms in (data.get('standby_replay_ms') or {}).values() if isinstance(ms, (int, float))]
    phases = dict((p['phase'], p) for p in data.get('phases') or [] if isinstance(p, dict))
    return {'outage_ms': outage['outage_ms'], 'estimate_ms': outage.get('estimate_ms'),
            'transaction_ms': (phases.get('cold_transaction') or {}).get('duration_ms'),
            'standby_replay_ms': max(replay) if replay else None,
            'replay_phase_ms': (phases.get('standby_replay') or {}).get('duration_ms'),
            'round_trips': ((phases.get('cold_transaction') or {}).get('detail') or {}).get('round_trips'),
            'psql_1_on_primary_ms': round(psql_on_primary_ms(sql), 1),
            'rtt_ms': round(round_trip_ms(far_dsn(PRIMARY) if far else PRIMARY), 3), 'wall_s': round(wall, 2),
            'phases': phase_breakdown(data)}


# The estimate's terms as the pre-flight's budget finding states them (decide_budget), for the per-phase table.
ESTIMATE_TERMS = (('drain', 'drain'), ('cold_transaction', 'cold patches'), ('standby_replay', 'replay'),
                  ('resume', 'resume'))


def phase_breakdown(data):
    """{phase: {'actual_ms', 'estimate_ms'}} for the outage's phases the estimate prices: a phase's span on the
    timeline (first start to last end over its hosts) against the pre-flight's term for it."""
    text = (data.get('plan') or {}).get('budget_check') or ''
    phases = [p for p in data.get('phases') or [] if isinstance(p, dict)]
    found = {}
    for phase, said in ESTIMATE_TERMS:
        term = re.search(r'%s ([0-9.]+) ms' % said, text)
        rows = [p for p in phases if p.get('phase') == phase and p.get('duration_ms') is not None]
        actual = (max(p['start_offset_ms'] + p['duration_ms'] for p in rows) - min(p['start_offset_ms'] for p in rows)
                  if rows else None)
        found[phase] = {'actual_ms': round(actual, 1) if actual is not None else None,
                        'estimate_ms': float(term.group(1)) if term else None}
    return found


def iso_epoch(text):
    """The report's ISO 8601 UTC time ('2026-11-30T00:01:02.345Z') as epoch seconds."""
    moment = datetime.datetime.strptime(text, '%Y-%m-%dT%H:%M:%S.%fZ')
    return moment.replace(tzinfo=datetime.timezone.utc).timestamp()


def scale_key(pgbouncers, standbys):
    return 'scale-%dx%d' % (pgbouncers, standbys)


def parse_scale_key(key):
    pgbouncers, standbys = key.split('-', 1)[1].split('x')
    return int(pgbouncers), int(standbys)


def scale_load(pgbouncer_addrs):
    """SCALE_WRITERS writers in all, spread evenly over the pgbouncers."""
    per = max(1, SCALE_WRITERS // len(pgbouncer_addrs))
    return ClientLoad(writers=[CLIENT % (LAB, int(a.rsplit('.', 1)[1])) for a in pgbouncer_addrs],
                      per_dsn=per, pause=0.01)


def _wait_all(conns, timeout=30.0):
    """Wait until every async connection has its answer (or is connected)."""
    deadline = time.monotonic() + timeout
    waiting = list(conns)
    while waiting:
        left = []
        for conn in waiting:
            state = conn.poll()
            if state == psycopg2.extensions.POLL_READ:
                left.append((conn, 'r'))
            elif state == psycopg2.extensions.POLL_WRITE:
                left.append((conn, 'w'))
        if not left:
            return
        if time.monotonic() > deadline:
            raise RuntimeError('bare window: no answer within %.0f s' % timeout)
        import select
        select.select([c for c, m in left if m == 'r'], [c for c, m in left if m == 'w'], [], 0.05)
        waiting = [c for c, dummy in left]


ADMIN = 'host=%s port=6432 dbname=pgbouncer user=fdt_admin password=admin-secret'


def settle_logins(pgbouncer_addrs, timeout=LOGIN_SETTLE_SECONDS, entries=('fdtdemo',)):
    """Before the bare window's clock, as the collection before its own
    (pgbouncer_console.wait_logins_settled): wait until no pool of ``entries``
    has a server login in flight - pgbouncer takes a PAUSE closing one for a
    failed login and fails clients for server_login_retry (15 s). Returns the
    seconds waited; RuntimeError past ``timeout``."""
    consoles = [psycopg2.connect(ADMIN % a) for a in pgbouncer_addrs]
    began = time.monotonic()
    try:
        for conn in consoles:
            conn.autocommit = True
        while True:
            in_flight = []
            for conn in consoles:
                with conn.cursor() as cur:
                    cur.execute('SHOW POOLS')
                    names = [c[0] for c in cur.description]
                    in_flight += logins_in_flight([dict(zip(names, row)) for row in cur.fetchall()], list(entries))
            waited = time.monotonic() - began
            if not in_flight:
                return waited
            if waited > timeout:
                raise RuntimeError('bare window: server logins in flight for %.1f s: %s' % (waited, in_flight))
            time.sleep(0.01)
    finally:
        for conn in consoles:
            conn.close()


def bare_window(tag, pgbouncer_addrs, standby_addrs, entries=SCALE_ENTRIES):
    """The physical limit of one window on this lab: one process, every
    connection open before the clock, PAUSE of ``entries`` on every pgbouncer
    at once (one connection per pgbouncer and entry: a PAUSE holds its
    connection until it is done), the ALTER on the primary (autocommit: one
    round trip), every standby polled at once until it has the column, RESUME
    of every entry on every pgbouncer at once. Returns (the outage: first PAUSE
    sent to last RESUME answered, ms; the wait for server logins in flight
    before it, settle_logins, ms; its phases, ms: drain (the PAUSEs sent to the
    last answered), alter, standby_replay, resume (the RESUMEs sent to the last
    answered))."""
    pairs = [(a, entry) for a in pgbouncer_addrs for entry in entries]
    consoles = [psycopg2.connect(ADMIN % a, async_=True) for a, dummy in pairs]
    standbys = [psycopg2.connect(PRIMARY.replace('host=%s10 ' % LAB, 'host=%s ' % a), async_=True)
                for a in standby_addrs]
    _wait_all(consoles + standbys)
    primary = psycopg2.connect(PRIMARY)
    primary.autocommit = True
    try:
        settled_ms = round(settle_logins(pgbouncer_addrs, entries=entries) * 1000, 1)
        marks = [time.monotonic()]
        held = [conn.cursor() for conn in consoles]  # an async cursor must outlive its query
        for cur, (dummy, entry) in zip(held, pairs):
            cur.execute('PAUSE %s' % entry)
        _wait_all(consoles)
        marks.append(time.monotonic())
        with primary.cursor() as cur:
            cur.execute(patch_sql(tag))
        marks.append(time.monotonic())
        check = ("SELECT count(*) FROM pg_attribute WHERE attrelid = 'fdt_item'::regclass AND attname = 'bench_%s'"
                 % tag)
        waiting = list(standbys)
        while waiting:
            cursors = [(conn, conn.cursor()) for conn in waiting]
            for dummy, cur in cursors:
                cur.execute(check)
            _wait_all(waiting)
            waiting = [conn for conn, cur in cursors if cur.fetchone()[0] == 0]
        marks.append(time.monotonic())
        held = [conn.cursor() for conn in consoles]
        for cur, (dummy, entry) in zip(held, pairs):
            cur.execute('RESUME %s' % entry)
        _wait_all(consoles)
        marks.append(time.monotonic())
        phases = dict((name, round((marks[i + 1] - marks[i]) * 1000, 1))
                      for i, name in enumerate(('drain', 'alter', 'standby_replay', 'resume')))
        return round((marks[-1] - marks[0]) * 1000, 1), settled_ms, phases
    finally:
        for conn in consoles + standbys + [primary]:
            conn.close()


def namespace_cost():
    """The lab's processes and their resident memory, per kind of host: {role:
    {'hosts', 'processes', 'rss_mb'}} summed over the hosts' namespaces."""
    hosts = lab_describe()['hosts']
    cost = {}
    for name, host in hosts.items():
        pids = subprocess.run(['ip', 'netns', 'pids', netns_name(name)], capture_output=True, text=True,
                              check=False).stdout.split()
        rss = 0
        for pid in pids:
            try:
                with open('/proc/%s/status' % pid) as handle:
                    rss += next(int(line.split()[1]) for line in handle if line.startswith('VmRSS:'))
            except (OSError, StopIteration, ValueError):
                pass
        row = cost.setdefault(host['role'], {'hosts': 0, 'processes': 0, 'rss_mb': 0.0})
        row['hosts'] += 1
        row['processes'] += len(pids)
        row['rss_mb'] = round(row['rss_mb'] + rss / 1024.0, 1)
    return cost


# A scale window whose clients errored or waited this long keeps the lab's logs of it (LabLogs).
SCALE_SLOW_WAIT_MS = 5000.0
# Where those logs go: <--output>.logs/<tag>-<window>/ (set by main).
LOG_DIR = None


class LabLogs:
    """The lab's logs (pgbouncers, PostgreSQL, apps) of a window: ``logs =
    LabLogs()`` before the window's load starts; ``logs.save(name)`` copies
    each log whole (since the lab came up: what led to the window matters as
    much) into LOG_DIR/name/<host>-<file>, with a line marking where the window's
    load began, and returns that directory."""

    MARK = b'---- fastdowntime bench: the window\'s client load starts here ----\n'

    def __init__(self):
        self.paths = sorted(glob.glob(os.path.join(lab_describe()['lab_dir'], 'hosts', '*', 'log', '*.log')))
        self.offsets = dict((path, os.path.getsize(path)) for path in self.paths)

    def save(self, name):
        target = os.path.join(LOG_DIR, name)
        os.makedirs(target, exist_ok=True)
        for path in self.paths:
            with open(path, 'rb') as source:
                text = source.read()
            host = os.path.basename(os.path.dirname(os.path.dirname(path)))
            with open(os.path.join(target, '%s-%s' % (host, os.path.basename(path))), 'wb') as handle:
                handle.write(text[:self.offsets[path]] + self.MARK + text[self.offsets[path]:])
        return target


def client_errors(load, began, logs, name):
    """A window's client errors, for the result: their texts counted, when the
    first and last came (s after ``began``, the window's start, time.time()),
    and where the lab's logs of the window were kept (only when clients
    errored or waited SCALE_SLOW_WAIT_MS or more)."""
    errors = load.errors
    out = {'texts': load.error_texts()}
    if errors:
        times = [when for dummy, when, dummy in errors]
        out.update(first_s=round(min(times) - began, 3), last_s=round(max(times) - began, 3),
                   workers=len(set(label for label, dummy, dummy in errors)))
    if errors or load.max_wait() * 1000 >= SCALE_SLOW_WAIT_MS:
        slowest = max(load.workers, key=lambda w: w.max_wait)
        out.update(slowest_ended_s=round(slowest.max_wait_at - began, 3), slowest_worker=slowest.label)
        if LOG_DIR:
            out['logs'] = logs.save(name)
    return out


def run_scale(tmp, tag, pgbouncers, standbys, run=0):
    """The collection's window (the outage module by itself: run_outage_module)
    and the bare window, one after the other (in turn first), each under the
    same client load, on the lab rebuilt with ``pgbouncers`` and ``standbys``."""
    lab_up(SCALES[(pgbouncers, standbys)])
    endpoints = lab_endpoints()
    pgbouncer_addrs = [p['host'] for p in endpoints['pgbouncers']]
    standby_addrs = [s['host'] for s in endpoints['standbys']]
    assert (len(pgbouncer_addrs), len(standby_addrs)) == (pgbouncers, standbys), (pgbouncer_addrs, standby_addrs)
    conn = psycopg2.connect(PRIMARY)
    with conn, conn.cursor() as cur:
        cur.execute('CREATE SCHEMA IF NOT EXISTS fdt_bench')
    conn.close()
    result = {'pgbouncers': pgbouncers, 'standbys': standbys}

    def collection():
        patch_dir = os.path.join(tmp, 'patches-' + tag)
        os.mkdir(patch_dir)
        with open(os.path.join(patch_dir, 'patch-%d-00-0.sql' % unused_major()), 'w') as handle:
            handle.write(patch_sql(tag))
        logs = LabLogs()
        with scale_load(pgbouncer_addrs) as load:
            time.sleep(1.0)
            began = time.time()
            data = run_outage_module(tmp, tag, dict(endpoints, patch_dir=patch_dir,
                                                    revision_table=WINDOW_REVISION_TABLE, budget_seconds=10))
            time.sleep(1.0)
        phases = {}
        for phase in data.get('phases') or []:
            if phase.get('duration_ms') is not None:  # the slowest host of each phase (run on all at once)
                phases[phase['phase']] = max(phases.get(phase['phase'], 0), phase['duration_ms'])
        outage = data['outage']
        result.update(outage_ms=outage['outage_ms'], phases_ms=phases,
                      controller_cpu_ms=outage.get('controller_cpu_ms'),
                      max_client_wait_ms=round(load.max_wait() * 1000, 1),
                      window_client_wait_ms=round(load.max_wait_during(outage['started_at'], outage['ended_at'])
                                                  * 1000, 1),
                      client_errors=len(load.errors), commits_lost=len(load.missing_commits(PRIMARY)),
                      writers=len(load.workers))
        errors = client_errors(load, began, logs, tag + '-collection')
        if errors['texts'] or 'logs' in errors:
            result['client_error_detail'] = errors

    def bare():
        logs = LabLogs()
        with scale_load(pgbouncer_addrs) as load:
            time.sleep(1.0)
            began = time.time()
            bare_ms, settled_ms, bare_phases = bare_window(tag + '_bare', pgbouncer_addrs, standby_addrs)
            ended = time.time()
            time.sleep(1.0)
        result.update(bare_outage_ms=bare_ms, bare_phases_ms=bare_phases, bare_entries=list(SCALE_ENTRIES),
                      bare_max_client_wait_ms=round(load.max_wait() * 1000, 1),
                      bare_window_client_wait_ms=round(load.max_wait_during(began, ended) * 1000, 1),
                      bare_client_errors=len(load.errors), bare_login_settle_ms=settled_ms)
        errors = client_errors(load, began, logs, tag + '-bare')
        if errors['texts'] or 'logs' in errors:
            result['bare_client_error_detail'] = errors

    for step in ((collection, bare) if run % 2 == 0 else (bare, collection)):
        step()
    result['namespaces'] = namespace_cost()
    return result


class ReplayObserver:
    """Polls every standby (its own connections, every STALL_OBSERVER_SECONDS)
    for a table the deploy creates; records when each first has it (time.time()):
    when the standby replayed the commit, seen from outside the collection."""

    def __init__(self, standby_addrs, table):
        self.table = table
        self.seen = {}
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._watch, args=(addr,), daemon=True) for addr in standby_addrs]

    def _watch(self, addr):
        conn = psycopg2.connect(PRIMARY.replace('host=%s10 ' % LAB, 'host=%s ' % addr))
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                while not self.stopping.is_set():
                    cur.execute('SELECT to_regclass(%s) IS NOT NULL', (self.table,))
                    if cur.fetchone()[0]:
                        self.seen[addr] = time.time()
                        return
                    time.sleep(STALL_OBSERVER_SECONDS)
        finally:
            conn.close()

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for thread in self.threads:
            thread.join(10)


def lab_endpoints():
    """The outage module's primary, standbys and pgbouncers arguments for the lab
    as it is (what the endpoints filter makes of the lab inventory)."""
    hosts = lab_describe()['hosts']

    def pg(name):
        return {'name': name, 'host': hosts[name]['addr'], 'port': 5432, 'user': 'fdt_deploy',
                'password': 'deploy-secret', 'ssl_mode': 'disable'}
    pgbouncers = [n for n, h in hosts.items() if h['role'] == 'pgbouncer']
    return {'primary': pg('primary'),
            'standbys': [dict(pg(n), pgbouncer_entries=['%s:fdtdemo_ro' % p for p in pgbouncers
                                                        if hosts[p].get('standby') == n])
                         for n, h in hosts.items() if h['role'] == 'standby'],
            'pgbouncers': [{'name': n, 'host': hosts[n]['addr'], 'port': 6432, 'user': 'fdt_admin',
                            'password': 'admin-secret', 'ssl_mode': 'disable'} for n in pgbouncers]}


def run_outage_module(tmp, tag, args):
    """The collection's outage module run once by itself (python plugins/modules/outage.py
    ARGS, as Ansible runs it, without ansible-playbook: no plan task, no dead-man
    switch); returns its result."""
    path = os.path.join(tmp, 'args-%s.json' % tag)
    with open(path, 'w') as handle:
        json.dump({'ANSIBLE_MODULE_ARGS': dict(args, db_name='fdtdemo')}, handle)
    proc = subprocess.run([os.path.join(VENV_BIN, 'python'), os.path.join(ENGINE, 'plugins', 'modules', 'outage.py'),
                           path], env=dict(env(), PYTHONPATH=os.path.join(ENGINE, '.collections')),
                          capture_output=True, text=True, check=False)
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        raise RuntimeError('outage module: %s' % (proc.stdout + proc.stderr)[-2000:])
    if result.get('failed'):
        raise RuntimeError('outage module failed: %s' % result.get('msg'))
    return result


def run_stall(tmp, tag):
    """One window (the outage module by itself) of the 500-statement set on an
    idle primary, watched by a ReplayObserver: per standby, how long after it
    replayed the commit the result says it had (reported = the standby_replay
    phase's start + that standby's replay_ms)."""
    files, per_file = SIZES['size-500']
    patch_dir = os.path.join(tmp, 'patches-' + tag)
    size_patch_set(patch_dir, tag, files, per_file)
    conn = psycopg2.connect(PRIMARY)
    with conn, conn.cursor() as cur:
        cur.execute('DROP SCHEMA IF EXISTS fdt_bench CASCADE; CREATE SCHEMA fdt_bench')
    conn.close()
    endpoints = lab_endpoints()
    standbys = dict((s['host'], s['name']) for s in endpoints['standbys'])
    with ReplayObserver(sorted(standbys), 'fdt_bench.t_%s_%d' % (tag, files - 1)) as observer:
        data = run_outage_module(tmp, tag, dict(endpoints, patch_dir=patch_dir, revision_table=WINDOW_REVISION_TABLE,
                                                budget_seconds=SIZE_BUDGET_SECONDS))
        time.sleep(0.1)
    [phase] = [p for p in data['phases'] if p.get('phase') == 'standby_replay']
    reported = phase['detail']['standby_replay_ms']
    replay_ms, late = {}, {}
    for addr, name in standbys.items():
        [label] = [k for k in reported if k == name or k.startswith(name + ' ') or addr in k]
        replay_ms[name] = reported[label]
        late[name] = (round((phase['started_at'] + reported[label] / 1000.0 - observer.seen[addr]) * 1000, 1)
                      if addr in observer.seen and reported[label] is not None else None)
    return {'outage_ms': data['outage']['outage_ms'], 'replay_phase_ms': phase['duration_ms'],
            'transaction_ms': data['outage'].get('transaction_ms'), 'standby_replay_ms': replay_ms,
            'reported_after_replayed_ms': late,
            'stall': any(v is None or v > STALL_POLL_MS for v in late.values())}


def big_table_setup():
    """BIG_TABLE with BIG_ROWS rows (int id, int n, a md5 pad), analyzed, on
    every standby before the runs start."""
    conn = psycopg2.connect(PRIMARY)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute('DROP SCHEMA IF EXISTS %s CASCADE' % BIG_SCHEMA)
        cur.execute('CREATE SCHEMA %s' % BIG_SCHEMA)
        cur.execute('CREATE TABLE %s AS SELECT g::integer AS id, (g %% 1000)::integer AS n, md5(g::text) AS pad '
                    'FROM generate_series(1, %d) g' % (BIG_TABLE, BIG_ROWS))
        settle_big_table(cur)
        cur.execute("SELECT pg_size_pretty(pg_table_size('%s'))" % BIG_TABLE)
        size = cur.fetchone()[0]
    conn.close()
    wait_standbys_caught_up()
    return size


def settle_big_table(cur):
    """VACUUM (ANALYZE) BIG_TABLE on an autocommit cursor: the table as a live
    one is, its rows' hint bits and visibility map set. A table just loaded or
    just rewritten (the rewrite case's undo) has neither, and the next reader
    writes them: the pre-flight's first throughput sample then prices that
    one-off write, not the table (it put big-index's estimate at 2.15 x its
    outage in a run 1 against 1.29-1.50 after it)."""
    cur.execute('VACUUM (ANALYZE) %s' % BIG_TABLE)


def wait_standbys_caught_up(timeout=300):
    """Until every standby has replayed the primary's current WAL position."""
    conn = psycopg2.connect(PRIMARY)
    conn.autocommit = True
    deadline = time.monotonic() + timeout
    with conn.cursor() as cur:
        cur.execute('SELECT pg_current_wal_lsn()')
        target = cur.fetchone()[0]
        while time.monotonic() < deadline:
            cur.execute('SELECT count(*) FILTER (WHERE replay_lsn < %s), count(*) FROM pg_stat_replication',
                        (target,))
            behind, total = cur.fetchone()
            if total and not behind:
                break
            time.sleep(0.2)
    conn.close()


def run_big(tmp, tag, inventory, case):
    """One big-table case: the pre-flight (its estimate, from the lint's live
    sizes) and the window for one cold patch on BIG_TABLE; the table's state is
    restored afterwards (outside any measurement)."""
    sql, undo = BIG_CASES[case]
    patch_dir = os.path.join(tmp, 'patches-' + tag)
    os.makedirs(patch_dir)
    with open(os.path.join(patch_dir, 'patch-%d-01-0.sql' % unused_major()), 'w') as handle:
        handle.write('-- %s\n%s' % (case, sql))
    conn = psycopg2.connect(PRIMARY)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute('DROP SCHEMA IF EXISTS fdt_bench CASCADE; CREATE SCHEMA fdt_bench')
    report = os.path.join(tmp, 'report-%s.json' % tag)
    extra = json.dumps({'fastdowntime_patch_dir': patch_dir, 'fastdowntime_revision_table': WINDOW_REVISION_TABLE,
                        'fastdowntime_budget_seconds': BIG_BUDGET_SECONDS})
    began = time.monotonic()
    proc = subprocess.run(['ansible-playbook', '-i', inventory, 'playbooks/fastdowntime.yml', '--tags',
                           'preflight,outage', '-e', extra], cwd=ENGINE,
                          env=dict(env(), FASTDOWNTIME_REPORT_PATH=report), capture_output=True, text=True,
                          check=False)
    wall = time.monotonic() - began
    try:
        if proc.returncode != 0:
            raise RuntimeError('big-table run %s failed: %s' % (case, proc.stdout[-2000:]))
        with open(report) as handle:
            data = json.load(handle)
    finally:
        with conn.cursor() as cur:
            cur.execute(undo)
            settle_big_table(cur)
        conn.close()
        wait_standbys_caught_up()
    phases = dict((p['phase'], p) for p in data.get('phases') or [] if isinstance(p, dict))
    replay = [ms for ms in (data.get('standby_replay_ms') or {}).values() if isinstance(ms, (int, float))]
    server = [p['duration_ms'] for p in data.get('phases') or []
              if isinstance(p, dict) and p.get('phase') in ('cold_patch', 'commit')]
    patch_ms = [p['duration_ms'] for p in data.get('phases') or []
                if isinstance(p, dict) and p.get('phase') == 'cold_patch']
    lint_ms = [st['estimate_ms'] for st in (data.get('plan') or {}).get('statements') or []
               if st.get('phase') == 'cold' and st.get('estimate_ms') is not None]
    return {'outage_ms': data['outage']['outage_ms'], 'estimate_ms': data['outage'].get('estimate_ms'),
            'patch_ms': round(sum(patch_ms), 1) if patch_ms else None,
            'lint_ms': round(sum(lint_ms), 1) if lint_ms else None,
            'transaction_ms': (phases.get('cold_transaction') or {}).get('duration_ms'),
            'server_ms': round(sum(server), 1) if server else None,
            'standby_replay_ms': max(replay) if replay else None, 'rtt_ms': round(round_trip_ms(PRIMARY), 3),
            'wall_s': round(wall, 2), 'phases': phase_breakdown(data),
            'throughput': (data.get('plan') or {}).get('scan_throughput')}


def lab_describe():
    out = subprocess.run([sys.executable, os.path.join(REPO, 'lab', 'labctl.py'), 'describe'], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out)


def far_dsn(dsn):
    """``dsn`` through the delaying relay (the host's controller address)."""
    for host in lab_describe()['hosts'].values():
        if host.get('controller_addr') and 'host=%s ' % host['addr'] in dsn:
            return dsn.replace('host=%s ' % host['addr'], 'host=%s ' % host['controller_addr'])
    return dsn


def far_inventory(tmp):
    """An inventory layered over the lab's: every database and pgbouncer
    reached at its controller address (through the delaying relay)."""
    path = os.path.join(tmp, 'far.yml')
    hosts = dict((name, h['controller_addr']) for name, h in lab_describe()['hosts'].items()
                 if h.get('controller_addr'))
    with open(path, 'w') as handle:
        handle.write('all:\n  hosts:\n')
        for name, addr in sorted(hosts.items()):
            key = 'fastdowntime_pgbouncer_host' if name.startswith('pgbouncer') else 'fastdowntime_pg_host'
            handle.write('    %s:\n      %s: "%s"\n' % (name, key, addr))
    return path


def run_collection(tmp, tag, inventory):
    patch_dir = os.path.join(tmp, 'patches-' + tag)
    os.mkdir(patch_dir)
    with open(os.path.join(patch_dir, 'patch-%d-00-0.sql' % unused_major()), 'w') as handle:
        handle.write(patch_sql(tag))
    report = os.path.join(tmp, 'report-%s.json' % tag)
    began = time.monotonic()
    proc = subprocess.run(['ansible-playbook', '-i', inventory, 'playbooks/fastdowntime.yml', '--tags', 'outage',
                           '-e', json.dumps({'fastdowntime_patch_dir': patch_dir,
                                             # the window alone is what is measured
                                             'fastdowntime_preflight_skipped_on_purpose': True})],
                          cwd=ENGINE, env=dict(env(), FASTDOWNTIME_REPORT_PATH=report), capture_output=True, text=True, check=False)
    wall = time.monotonic() - began
    if proc.returncode != 0:
        raise RuntimeError('collection run failed: %s' % proc.stdout[-2000:])
    with open(report) as handle:
        outage_ms = json.load(handle)['outage']['outage_ms']
    return outage_ms, wall


def run_window(tmp, tag, inventory, mode):
    """The collection's window in ``mode`` (all or split); returns (outage_ms, wall, split_window or None)."""
    patch_dir = os.path.join(tmp, 'patches-' + tag)
    os.mkdir(patch_dir)
    with open(os.path.join(patch_dir, 'patch-%d-00-0.sql' % unused_major()), 'w') as handle:
        handle.write(patch_sql(tag) + 'SELECT pg_sleep(%s);\n' % WINDOW_PATCH_SECONDS)
    report = os.path.join(tmp, 'report-%s.json' % tag)
    began = time.monotonic()
    proc = subprocess.run(['ansible-playbook', '-i', inventory, 'playbooks/fastdowntime.yml', '--tags', 'outage',
                           '-e', json.dumps({'fastdowntime_patch_dir': patch_dir, 'fastdowntime_window_mode': mode,
                                             'fastdowntime_revision_table': WINDOW_REVISION_TABLE,
                                             'fastdowntime_preflight_skipped_on_purpose': True})],
                          cwd=ENGINE, env=dict(env(), FASTDOWNTIME_REPORT_PATH=report), capture_output=True, text=True, check=False)
    wall = time.monotonic() - began
    if proc.returncode != 0:
        raise RuntimeError('window %s run failed: %s' % (mode, proc.stdout[-2000:]))
    with open(report) as handle:
        data = json.load(handle)
    return data['outage']['outage_ms'], wall, data.get('split_window')


CHAIN = '''---
- name: Plain chain - PAUSE every pgbouncer
  hosts: fastdowntime_pgbouncers
  gather_facts: false
  tasks:
    - name: PAUSE
      ansible.builtin.shell: "date +%s.%N > {stamp}/pause-$(hostname -I | tr -d ' ');
        PGPASSWORD=admin-secret {psql} -h {{{{ ansible_host }}}} -p 6432 -U fdt_admin pgbouncer -c 'PAUSE fdtdemo'"
      changed_when: true
- name: Plain chain - patch, wait for the standbys
  hosts: fastdowntime_primary
  gather_facts: false
  tasks:
    - name: Patch
      ansible.builtin.command: "{psql} '{primary}' -v ON_ERROR_STOP=1 -f {patch}"
      changed_when: true
    - name: Commit LSN
      ansible.builtin.command: "{psql} '{primary}' -Atc 'SELECT pg_current_wal_insert_lsn()'"
      register: lsn
      changed_when: false
    - name: Wait for every standby
      ansible.builtin.command: "{psql} 'host={{{{ hostvars[item].ansible_host }}}} dbname=fdtdemo user=fdt_deploy password=deploy-secret'
        -Atc \\"SELECT pg_last_wal_replay_lsn() >= '{{{{ lsn.stdout }}}}'\\""
      register: replayed
      until: replayed.stdout == 't'
      retries: 100
      delay: 0
      changed_when: false
      loop: "{{{{ groups['fastdowntime_standbys'] }}}}"
- name: Plain chain - RESUME every pgbouncer
  hosts: fastdowntime_pgbouncers
  gather_facts: false
  tasks:
    - name: RESUME
      ansible.builtin.shell: "PGPASSWORD=admin-secret {psql} -h {{{{ ansible_host }}}} -p 6432 -U fdt_admin pgbouncer -c 'RESUME fdtdemo';
        date +%s.%N > {stamp}/resume-$(hostname -I | tr -d ' ')"
      changed_when: true
'''


def run_chain(tmp, tag, inventory):
    stamp = tempfile.mkdtemp(dir=tmp)
    patch = os.path.join(tmp, 'chain-%s.sql' % tag)
    with open(patch, 'w') as handle:
        handle.write(patch_sql(tag))
    play = os.path.join(tmp, 'chain-%s.yml' % tag)
    with open(play, 'w') as handle:
        handle.write(CHAIN.format(stamp=stamp, psql=PSQL, primary=PRIMARY, patch=patch))
    began = time.monotonic()
    proc = subprocess.run(['ansible-playbook', '-i', inventory, play], cwd=ENGINE, env=env(),
                          capture_output=True, text=True, check=False)
    wall = time.monotonic() - began
    if proc.returncode != 0:
        raise RuntimeError('psql chain failed: %s' % proc.stdout[-2000:])
    stamps = {name: float(open(os.path.join(stamp, name)).read()) for name in os.listdir(stamp)}
    pauses = [v for k, v in stamps.items() if k.startswith('pause')]
    resumes = [v for k, v in stamps.items() if k.startswith('resume')]
    return round((max(resumes) - min(pauses)) * 1000, 1), wall


def run_live(tmp, tag, inventory):
    """The patch runs live, no pause, while a report query holds the table for 5 s."""
    report = psycopg2.connect(PRIMARY)
    holding = threading.Event()

    def report_query():
        with report.cursor() as cur:
            cur.execute('BEGIN')
            cur.execute('SELECT count(*) FROM fdt_item')
            holding.set()
            cur.execute('SELECT pg_sleep(5)')
        report.rollback()

    thread = threading.Thread(target=report_query)
    thread.start()
    holding.wait(10)
    began = time.monotonic()
    conn = psycopg2.connect(PRIMARY)
    with conn, conn.cursor() as cur:
        cur.execute(patch_sql(tag))
    conn.close()
    outage = time.monotonic() - began  # the ALTER queued behind the report, and every client behind it
    thread.join()
    report.close()
    return round(outage * 1000, 1), outage


def engine_commit():
    """The measured checkout's commit (and '+changes' when its tree differs from it)."""
    head = subprocess.run(['git', '-C', ENGINE, 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True,
                          check=False).stdout.strip()
    dirty = subprocess.run(['git', '-C', ENGINE, 'status', '--porcelain', '--untracked-files=no'],
                           capture_output=True, text=True, check=False).stdout.strip()
    return head + ('+changes' if dirty else '')


def measure(method, tmp, tag, one_inv, far=None):
    inventory = one_inv if method == 'collection-1' else os.path.join(REPO, 'inventories', 'lab', 'hosts.yml')
    if method in BIG_CASES:
        return run_big(tmp, tag, inventory, method)
    if method in SIZES:
        return run_size(tmp, tag, inventory, *SIZES[method], far=far)
    # The same load either way (4 writers): only the number of pgbouncers and standbys changes.
    pgbouncers = (1, 1) if method == 'collection-1' else (1, 2)
    if method in WINDOW_METHODS:
        with load_for(pgbouncers, readers=True) as load:
            time.sleep(1.0)
            outage_ms, wall, split = run_window(tmp, tag, inventory, method.split('-')[1])
            time.sleep(1.0)
        return {'max_client_wait_ms': round(load.max_wait() * 1000, 1),
                'max_write_wait_ms': round(load.max_wait('write') * 1000, 1),
                'max_read_wait_ms': round(load.max_wait('read') * 1000, 1),
                'client_errors': len(load.errors), 'commits_lost': len(load.missing_commits(PRIMARY)),
                'outage_ms': outage_ms, 'split_window': split, 'wall_s': round(wall, 2),
                'transactions': load.transactions()}
    runner = {'collection': run_collection, 'collection-1': run_collection,
              'psql-chain': run_chain, 'live': run_live}[method]
    with load_for(pgbouncers) as load:
        time.sleep(1.0)
        outage_ms, wall = runner(tmp, tag, inventory)
        time.sleep(1.0)
    lost = load.missing_commits(PRIMARY)
    return {'max_client_wait_ms': round(load.max_wait() * 1000, 1), 'client_errors': len(load.errors),
            'commits_lost': len(lost), 'outage_ms': outage_ms, 'wall_s': round(wall, 2),
            'transactions': load.transactions()}


def median(values):
    return round(statistics.median(values), 1) if values else None


def percentile(values, pct):
    """The nearest-rank ``pct``th percentile of ``values`` (at least one)."""
    ordered = sorted(values)
    return ordered[max(int(-(-len(ordered) * pct // 100)) - 1, 0)]


def replay_wait_poll_ms():
    """The measured engine's replay-wait poll interval (ms), None when it has none (an older engine)."""
    sys.path.insert(0, os.path.join(ENGINE, '.collections'))
    try:
        from ansible_collections.fastdowntime.postgresql.plugins.module_utils import replication
        return replication.REPLAY_WAIT_POLL_SECONDS * 1000
    except (ImportError, AttributeError):
        return None
    finally:
        sys.path.pop(0)


def machine():
    cpu = 'unknown'
    try:
        with open('/proc/cpuinfo') as handle:
            cpu = next(line.split(':', 1)[1].strip() for line in handle if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return '%s, %d cores, %s, Python %s' % (cpu, os.cpu_count(), platform.platform(), platform.python_version())


def server_version():
    """The lab primary's PostgreSQL version, as it reports it."""
    conn = psycopg2.connect(PRIMARY)
    try:
        with conn.cursor() as cur:
            cur.execute('SHOW server_version')
            return cur.fetchone()[0]
    finally:
        conn.close()


def write_markdown(results, runs, path, baseline=None, previous=None, previous_source=None):
    now = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    base = median([r['outage_ms'] for r in results.get('collection', [])])
    lines = [
        '# Outage benchmark',
        '',
        'Written by `benchmarks/outage_bench.py` (never by hand). Run: %s. Machine: %s. PostgreSQL %s.' % (
            now, machine(), server_version()),
        'Command: `%s`.' % ' '.join(['benchmarks/outage_bench.py'] + [
            "'%s'" % a if ' ' in a else a for a in sys.argv[1:]]),
        '',
        'One trivial additive patch (`ALTER TABLE fdt_item ADD COLUMN ...`) on the lab, under a constant load of',
        'psycopg2 writers (2 per pgbouncer, small insert transactions, 10 ms apart). Medians of %d runs per' % runs,
        'method. *Outage* is drain start to last resume as each method measures it (the collection: its report;',
        'the psql chain: the first PAUSE to the last RESUME; live: how long the ALTER waited and ran).',
        '',
        '| method | longest client wait (ms) | client errors | commits lost | outage (ms) | outage vs collection | playbook wall time (s) |',
        '|---|---|---|---|---|---|---|',
    ]
    labels = {
        'collection': 'this collection (2 pgbouncers, 2 standbys)',
        'collection-1': 'this collection (1 pgbouncer, 1 standby, the same 4 writers)',
        'psql-chain': 'plain chain of psql tasks with PAUSE/RESUME',
        'live': 'live migration, no pause, 5 s report query holding a lock',
    }
    for method in METHODS:
        rows = results.get(method)
        if not rows or method in WINDOW_METHODS or method in SIZES or method in BIG_CASES or method in SEPARATE:
            continue
        outage = median([r['outage_ms'] for r in rows])
        ratio = '%.1fx' % (outage / base) if base else '-'
        lines.append('| %s | %s | %s | %s | %s | %s | %s |' % (
            labels[method], median([r['max_client_wait_ms'] for r in rows]),
            max(r['client_errors'] for r in rows), max(r['commits_lost'] for r in rows), outage, ratio,
            median([r['wall_s'] for r in rows])))
    lines += ['', 'Client errors and commits lost are the worst run, not the median.', '']
    lines += window_table(results, runs)
    lines += size_table(results, runs, baseline)
    lines += estimate_table(results, runs)
    lines += stall_table(results)
    lines += scale_table(results, runs)
    lines += measured_lines(results)
    if previous:
        lines += previous_table(results, previous, previous_source)
    lines += ['',
              'Raw runs:', '', '```json', json.dumps(results, indent=1, sort_keys=True), '```', '']
    with open(path, 'w') as handle:
        handle.write('\n'.join(lines))


def load_raw(path):
    """The raw runs a previous benchmark wrote into its markdown (``Raw runs:`` block)."""
    with open(path) as handle:
        text = handle.read()
    block = text.split('Raw runs:', 1)[1].split('```json', 1)[1].split('```', 1)[0]
    return json.loads(block)


def size_table(results, runs, baseline=None):
    """Patch-set size: the outage against the physical limit (the server's own
    time + 5 RTT), and beside it a previous engine's outage (``baseline``:
    {'label', 'results'}) measured on the same lab by the same script."""
    present = sorted((k for k in results if k.split('@')[0] in SIZES),
                     key=lambda k: (int(k.split('@rtt')[1]) if '@' in k else 0, SIZES[k.split('@')[0]]))
    if not present:
        return []
    lines = [
        '## Patch-set size, on an idle primary',
        '',
        'The collection\'s pre-flight and window (`--tags preflight,outage`, 2 pgbouncers, 2 standbys, no client',
        'load) for 1 statement and for 20 files x 25 cheap statements (CREATE TABLE, CREATE INDEX, COMMENT, ADD',
        'COLUMN, small INSERTs), with the controller on the lab (*added RTT* none) or behind the lab\'s delaying',
        'relay (shapes rtt10, rtt40: lab/delayproxy.py). *Estimate*: the pre-flight\'s, for the same patch set',
        '(budget %d s for these runs, so that a slower collection is measured rather than refused).' % SIZE_BUDGET_SECONDS,
        '*Physical limit*: psql -1 of the same SQL run on the primary host (the server\'s own time) plus %d'
        % ADDED_RTT_ROUND_TRIPS,
        'round trips between the controller and the primary (median SELECT 1). Medians of %d runs;' % runs,
        '*replay* is the slowest standby after COMMIT; *round trips* those of the cold transaction.',
        '',
        '| statements | added RTT | outage (ms) | estimate (ms) | cold transaction (ms) | standby replay (ms) | '
        'round trips (transaction) | psql -1 on the primary (ms) | RTT measured (ms) | physical limit (ms) | '
        'outage / limit |%s' % (' outage, %s (ms) | estimate, %s (ms) | outage before / now |'
                                % (baseline['label'], baseline['label']) if baseline else ''),
        '|---|---|---|---|---|---|---|---|---|---|---|%s' % ('---|---|---|' if baseline else ''),
    ]
    for key in present:
        rows = results[key]
        files, per_file = SIZES[key.split('@')[0]]
        added = key.split('@')[1] if '@' in key else 'none'
        outage = median([r['outage_ms'] for r in rows])
        server = median([r['psql_1_on_primary_ms'] for r in rows])
        rtt = statistics.median([r['rtt_ms'] for r in rows])
        limit = round(server + ADDED_RTT_ROUND_TRIPS * rtt, 1)
        trips = [r['round_trips'] for r in rows if r.get('round_trips') is not None]
        estimates = [r['estimate_ms'] for r in rows if r.get('estimate_ms') is not None]
        lines.append('| %d | %s | %s | %s | %s | %s | %s | %s | %.3f | %s | %.2f |' % (
            files * per_file, added, outage, median(estimates) if estimates else '-',
            median([r['transaction_ms'] for r in rows if r.get('transaction_ms')]),
            median([r['standby_replay_ms'] for r in rows if r.get('standby_replay_ms') is not None]),
            median(trips) if trips else 'one per statement', server, rtt, limit, outage / limit))
        before = (baseline or {}).get('results', {}).get(key)
        if baseline:
            if before:
                then = median([r['outage_ms'] for r in before])
                then_estimates = [r['estimate_ms'] for r in before if r.get('estimate_ms') is not None]
                lines[-1] += ' %s | %s | %.1fx |' % (
                    then, median(then_estimates) if then_estimates else '-', then / outage)
            else:
                lines[-1] += ' - | - | - |'
    if baseline:
        lines += ['', 'The previous engine\'s columns: %s, measured by this script on the same lab (its raw runs '
                  'are in %s).' % (baseline['label'], baseline.get('source') or 'its own output')]
    return lines + ['']


def _ratio(value, base):
    return '%.2fx' % (value / base) if value is not None and base else '-'


def estimate_table(results, runs):
    """The pre-flight's estimate against the actual outage: the size workloads
    (1 and 500 statements, no added RTT) and the big-table cases."""
    keys = [k for k in ('size-1', 'size-500') + tuple(BIG_CASES) if results.get(k)]
    if not keys:
        return []
    lines = [
        '## The estimate against the actual outage',
        '',
        'The pre-flight\'s estimate (`preflight.estimate_outage`, with the lint\'s cost model on the live sizes) and',
        'the outage of the same run, for the size workloads (above, no added RTT) and the lint\'s big-table cases:',
        'one cold patch on a table of %d rows (`%s`: integer id, integer n, a md5 text) -' % (BIG_ROWS, BIG_TABLE),
        '`CREATE INDEX` (an index build), `ALTER COLUMN id TYPE bigint` (a rewrite), `ADD CONSTRAINT ... CHECK`',
        '(a validating scan); idle primary, budget %d s, the table restored after each run. Goal (issue 20):' % (
            BIG_BUDGET_SECONDS),
        'estimate within 2x of the actual on every workload, never below it on the big-table cases. Ratios',
        'are per run (estimate / actual); medians of %d runs. *Physical limit*: the server\'s own time for the' % runs,
        'transaction (for the sizes: psql -1 on the primary; for the big-table cases: the cold transaction as',
        'the primary timed it) plus %d round trips.' % ADDED_RTT_ROUND_TRIPS,
        '',
        '| workload | outage (ms) | estimate (ms) | estimate / actual, median | lowest | highest | within 2x, '
        'every run | never below (big tables) | cold transaction (ms) | standby replay (ms) | physical limit (ms) | '
        'outage / limit |',
        '|---|---|---|---|---|---|---|---|---|---|---|---|',
    ]
    for key in keys:
        rows = [r for r in results[key] if r.get('estimate_ms')]
        if not rows:
            continue
        ratios = [r['estimate_ms'] / r['outage_ms'] for r in rows]
        outage = median([r['outage_ms'] for r in rows])
        if key in SIZES:
            files, per_file = SIZES[key]
            label = '%d statement%s' % (files * per_file, 's' if files * per_file > 1 else '')
            limit = median([r['psql_1_on_primary_ms'] + ADDED_RTT_ROUND_TRIPS * r['rtt_ms'] for r in rows])
            below = '-'
        else:
            label = key
            limit = median([r['server_ms'] + ADDED_RTT_ROUND_TRIPS * r.get('rtt_ms', 0) for r in rows
                            if r.get('server_ms') is not None])
            below = 'yes' if min(ratios) >= 1 else 'NO'
        lines.append('| %s | %s | %s | %.2f | %.2f | %.2f | %s | %s | %s | %s | %s | %s |' % (
            label, outage, median([r['estimate_ms'] for r in rows]), statistics.median(ratios), min(ratios),
            max(ratios), 'yes' if all(0.5 <= x <= 2 for x in ratios) else 'NO', below,
            median([r['transaction_ms'] for r in rows if r.get('transaction_ms') is not None]),
            median([r['standby_replay_ms'] for r in rows if r.get('standby_replay_ms') is not None]),
            limit, _ratio(outage, limit)))
    lint_rows = [(key, [r['patch_ms'] / r['lint_ms'] for r in results[key] if r.get('patch_ms') and r.get('lint_ms')])
                 for key in keys if key in BIG_CASES]
    lint_rows = [(key, q) for key, q in lint_rows if q]
    if lint_rows:
        lines += [
            '',
            'The lint\'s cost model on its own (docs/lint.md): the primary\'s time for the cold patch (its `cold_patch`',
            'phase, timed by the server) against the lint\'s estimate of the statement (the model\'s factor x heap/T,',
            'T sampled on the live table by the pre-flight of the same run, plus its replay term), per run:',
            '',
            '| workload | patch on the primary / lint estimate, median | lowest | highest |',
            '|---|---|---|---|',
        ] + ['| %s | %.2f | %.2f | %.2f |' % (key, statistics.median(q), min(q), max(q)) for key, q in lint_rows]
    return lines + [''] + estimate_phase_lines(results, keys)


def estimate_phase_lines(results, keys):
    """Where the estimate misses, per phase: each phase's span on the timeline against the pre-flight's term for
    it (phase_breakdown), medians over the runs that recorded them."""
    rows = []
    for key in keys:
        runs = [r['phases'] for r in results[key] if r.get('phases')]
        cells = []
        for phase, dummy in ESTIMATE_TERMS:
            actual = [p[phase]['actual_ms'] for p in runs if p[phase]['actual_ms'] is not None]
            estimate = [p[phase]['estimate_ms'] for p in runs if p[phase]['estimate_ms'] is not None]
            cells.append('%s / %s' % (median(actual), median(estimate)) if actual and estimate else '-')
        if runs:
            rows.append('| %s | %s |' % (key, ' | '.join(cells)))
    if not rows:
        return []
    return [
        'The estimate per phase (the outage module\'s phases on the timeline against the pre-flight\'s terms for',
        'them, as its `budget` finding states them), actual / estimated, ms, medians:',
        '',
        '| workload | %s |' % ' | '.join(phase for phase, dummy in ESTIMATE_TERMS),
        '|---|%s' % ('---|' * len(ESTIMATE_TERMS)),
    ] + rows + ['']


def stall_table(results):
    """The stall series: each standby's report against the observer's view."""
    rows = results.get('stall-500')
    if not rows:
        return []
    late = [v for r in rows for v in r['reported_after_replayed_ms'].values() if v is not None]
    stalls = sum(1 for r in rows if r['stall'])
    files, per_file = SIZES['size-500']
    lines = [
        '## Standby replay on an idle primary: the stall series',
        '',
        '%d windows in a row (the outage module run by itself, as Ansible runs it, without ansible-playbook\'s'
        % len(rows),
        'plan task and dead-man switch; 2 pgbouncers, 2 standbys, no client load) of %d files x %d cheap'
        % (files, per_file),
        'statements (the size-500 set). The bench\'s own observer polls every standby every %g ms for the last'
        % (STALL_OBSERVER_SECONDS * 1000),
        'table the deploy creates: the moment the standby replayed the commit. *Reported after replayed*: the',
        'report\'s moment for that standby (the `standby_replay` phase\'s start + its `standby_replay_ms`) less the',
        'observer\'s. A **stall** is a window where some standby is reported more than one poll (%g ms: the goal\'s'
        % STALL_POLL_MS,
        'limit, one poll of the wait it was set against, whose sleep grew to 50 ms) after it replayed the commit, or',
        'never seen by the observer. The wait now asks a standby again %s ms after its "not yet" and reads each'
        % (replay_wait_poll_ms() or '(an older engine: see its docs/window.md)',),
        'answer as it arrives (docs/window.md): a report is due within that and one round trip. *Observer\'s lag*:',
        'the most a report came before the observer saw the table (a negative *reported after replayed*): how late',
        'the observer itself saw it on this machine, the series\' own uncertainty. Before issue 20, 7 of 23 such',
        'deploys waited 3.2-21 s. Goal: 0 stalls in 50.',
        '',
        '| deploys | stalls | reported after replayed, median (ms) | 95th percentile (ms) | max (ms) | '
        'observer\'s lag, most (ms) | limit: one poll (ms) | standby replay phase, median (ms) | max (ms) | '
        'outage, median (ms) | max (ms) |',
        '|---|---|---|---|---|---|---|---|---|---|---|',
        '| %d | %d | %s | %s | %s | %s | %g | %s | %s | %s | %s |' % (
            len(rows), stalls, median(late), percentile(late, 95) if late else '-', max(late) if late else '-',
            max([0.0] + [-v for v in late]), STALL_POLL_MS,
            median([r['replay_phase_ms'] for r in rows]), max(r['replay_phase_ms'] for r in rows),
            median([r['outage_ms'] for r in rows]), max(r['outage_ms'] for r in rows)),
        '',
    ]
    return lines


def fit_line(points):
    """Least squares y = a + b x over [(x, y)]: (a, b, r2)."""
    n = float(len(points))
    mean_x = sum(x for x, y in points) / n
    mean_y = sum(y for x, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, y in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx if sxx else 0.0
    intercept = mean_y - slope * mean_x
    total = sum((y - mean_y) ** 2 for x, y in points)
    residual = sum((y - intercept - slope * x) ** 2 for x, y in points)
    return intercept, slope, (1 - residual / total) if total else 1.0


def scale_table(results, runs):
    """The scale points side by side with the bare window, 16+4 against 2+2,
    and a linear model in the number of pgbouncers fitted to the points."""
    keys = sorted((k for k in results if k.startswith('scale-') and results[k]), key=parse_scale_key)
    if not keys:
        return []
    med = {}
    for key in keys:
        rows = results[key]
        med[parse_scale_key(key)] = dict((field, median([r[field] for r in rows])) for field in (
            'outage_ms', 'window_client_wait_ms', 'bare_outage_ms', 'bare_window_client_wait_ms'))
        # Runs written before the outage returned it have no controller_cpu_ms.
        cpu = [r['controller_cpu_ms'] for r in rows if r.get('controller_cpu_ms') is not None]
        med[parse_scale_key(key)]['controller_cpu_ms'] = median(cpu) if cpu else None
    base = med.get((2, 2))
    lines = [
        '## Scale: pgbouncers and standbys, under the same client load',
        '',
        'The collection\'s window for one trivial patch - the outage module run by itself, as Ansible runs it',
        '(without ansible-playbook: no plan task, no dead-man switch, whose arming over SSH takes minutes with',
        'many hosts on this machine) - on the lab rebuilt with that many pgbouncers (one pgbouncer process and',
        'an sshd per host, each its own namespace) and standbys (lab shapes `default`, `scale_2`, `scale_8`,',
        '`scale`, `scale_32`, `scale_64`, `scale_100`), under %d writers in all spread evenly over the' % SCALE_WRITERS,
        'pgbouncers (at least one per pgbouncer: beyond %d pgbouncers, one each; *writers*).' % SCALE_WRITERS,
        '*Clients\' longest wait*: the longest transaction that overlapped the window. *Physical',
        'limit*: the bare window under the same load - one process, every connection open before the clock,',
        'PAUSE on every pgbouncer at once, the ALTER, every standby polled at once until it has the column,',
        'RESUME on every pgbouncer at once (`bare_window`); the two take turns going first. The limit pauses the',
        'entries the collection pauses (*limit pauses*: per pgbouncer; runs recorded before it did pause `fdtdemo`',
        'only, less work than the collection\'s window); *drain* and *resume* are the slowest pgbouncer\'s, the',
        'limit\'s the whole fan-out\'s (first command sent to last answer). Medians of the *runs* of each point;',
        '2+2 and 16+4 interleaved run by run, the other points run after them, each in a row. *Controller',
        'CPU*: the CPU time the outage module\'s own process spent inside the outage (`controller_cpu_ms`,',
        'every thread). *Client errors*: the collection\'s window / the bare window\'s, the worst run.',
        '',
        '| pgbouncers | standbys | writers | runs | outage (ms) | clients\' longest wait (ms) | physical limit (ms) | outage / limit | '
        'bare window\'s longest client wait (ms) | outage vs 2+2 | wait vs 2+2 | limit vs 2+2 | drain (ms) | '
        'resume (ms) | limit\'s drain (ms) | limit\'s resume (ms) | limit pauses | controller CPU (ms) | '
        'client errors | commits lost |',
        '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ]
    for key in keys:
        point = parse_scale_key(key)
        rows = results[key]
        m = med[point]
        bare_phases = [r['bare_phases_ms'] for r in rows if r.get('bare_phases_ms')]
        cells = (
            point[0], point[1], '/'.join(str(w) for w in sorted(set(r.get('writers', '-') for r in rows))), len(rows),
            m['outage_ms'], m['window_client_wait_ms'], m['bare_outage_ms'],
            _ratio(m['outage_ms'], m['bare_outage_ms']), m['bare_window_client_wait_ms'],
            _ratio(m['outage_ms'], base and base['outage_ms']),
            _ratio(m['window_client_wait_ms'], base and base['window_client_wait_ms']),
            _ratio(m['bare_outage_ms'], base and base['bare_outage_ms']),
            median([r['phases_ms'].get('drain', 0) for r in rows]),
            median([r['phases_ms'].get('resume', 0) for r in rows]),
            median([p['drain'] for p in bare_phases]) if bare_phases else '-',
            median([p['resume'] for p in bare_phases]) if bare_phases else '-',
            '/'.join(sorted(set(', '.join('`%s`' % e for e in r.get('bare_entries') or ['fdtdemo']) for r in rows))),
            '-' if m['controller_cpu_ms'] is None else m['controller_cpu_ms'],
            max(r['client_errors'] for r in rows), max(r['bare_client_errors'] for r in rows),
            max(r['commits_lost'] for r in rows))
        lines.append('| %d | %d | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s '
                     '| %s |' % cells)
    lines.append('')
    goal = med.get((16, 4))
    if base and goal:
        outage_ratio = goal['outage_ms'] / base['outage_ms']
        wait_ratio = goal['window_client_wait_ms'] / base['window_client_wait_ms']
        lines += ['16 pgbouncers and 4 standbys against 2 and 2: outage %.2fx, clients\' longest wait %.2fx '
                  '(goal: within %.1fx: %s); the physical limit itself %.2fx.' % (
                      outage_ratio, wait_ratio, SCALE_GOAL,
                      'met' if max(outage_ratio, wait_ratio) <= SCALE_GOAL else 'not met',
                      goal['bare_outage_ms'] / base['bare_outage_ms']), '']
        limit_ratio = goal['bare_outage_ms'] / base['bare_outage_ms']
        if limit_ratio > SCALE_GOAL:
            lines += ['The physical limit itself grows %.2fx from 2+2 to 16+4 on this machine (%d cores shared by every '
                      'host and the clients): no window can meet the %.1fx goal here. Against the limit, the '
                      'collection\'s outage is %.2fx at 2+2 and %.2fx at 16+4.' % (
                          limit_ratio, os.cpu_count() or 0, SCALE_GOAL, base['outage_ms'] / base['bare_outage_ms'],
                          goal['outage_ms'] / goal['bare_outage_ms']), '']
    series = sorted((p, m) for p, m in med.items() if p[1] == 4)
    if len(series) >= 2:
        lines += ['**Growth to %d pgbouncers.** A line fitted (least squares) to the medians at 4 standbys '
                  '(%s pgbouncers); *measured* where a point was run, *model* beyond:' % (
                      SCALE_MODEL_TO, ', '.join(str(p[0]) for p, dummy in series)), '',
                  '| | per pgbouncer (ms) | at 0 (ms) | R² | at 16 | at 32 | at 64 | at %d |' % SCALE_MODEL_TO,
                  '|---|---|---|---|---|---|---|---|']
        cpu_series = [(p, m) for p, m in series if m['controller_cpu_ms'] is not None]
        fields = [('outage_ms', 'outage'), ('window_client_wait_ms', 'clients\' longest wait'),
                  ('bare_outage_ms', 'physical limit (bare window)')]
        if len(cpu_series) >= 2:
            fields.append(('controller_cpu_ms', 'controller CPU'))
        for field, label in fields:
            a, b, r2 = fit_line([(p[0], m[field]) for p, m in series if m[field] is not None])
            cells = []
            for n in (16, 32, 64, SCALE_MODEL_TO):
                measured = med.get((n, 4))
                cells.append('%s measured' % measured[field] if measured and measured[field] is not None
                             else '%.0f model' % (a + b * n))
            lines.append('| %s | %.2f | %.1f | %.2f | %s |' % (label, b, a, r2, ' | '.join(cells)))
        lines.append('')
        if len(cpu_series) >= 2 and base:
            dummy, cpu_slope, dummy = fit_line([(p[0], m['controller_cpu_ms']) for p, m in cpu_series])
            lines += ['Here every host shares the same %d cores, so the physical limit itself grows with the hosts. '
                      'What grows with the pgbouncers on a controller with a core of its own, each pgbouncer on a '
                      'host of its own, is the controller\'s CPU inside the window: %.3f ms per pgbouncer (the '
                      'line above). Model for such a cluster: outage(N) = outage(2+2) + %.3f ms x (N - 2) = %.1f ms '
                      'at 16 (%.2fx of 2+2) and %.1f ms at %d (%.2fx).' % (
                          os.cpu_count() or 0, cpu_slope, cpu_slope,
                          base['outage_ms'] + cpu_slope * 14, (base['outage_ms'] + cpu_slope * 14) / base['outage_ms'],
                          base['outage_ms'] + cpu_slope * (SCALE_MODEL_TO - 2), SCALE_MODEL_TO,
                          (base['outage_ms'] + cpu_slope * (SCALE_MODEL_TO - 2)) / base['outage_ms']), '']
    for key, errors in sorted((results.get('_failed') or {}).items()):
        # Failures recorded before they named their engine came from an earlier engine.
        earlier = '' if '(engine ' in errors[0] else ' (an earlier engine)'
        lines += ['%s: %d run(s) failed, e.g. %s%s' % (key, len(errors), errors[0], earlier), '']
    cost = [r['namespaces'] for key in keys for r in results[key] if r.get('namespaces')]
    widest = max(cost, key=lambda c: c.get('pgbouncer', {}).get('hosts', 0)) if cost else None
    if widest and widest.get('pgbouncer'):
        pgb = widest['pgbouncer']
        per_rss = pgb['rss_mb'] / pgb['hosts']
        lines += ['What the lab costs (measured in the widest run, %d pgbouncer hosts): per pgbouncer host %.1f '
                  'processes, %.1f MB resident (its pgbouncer and sshd, and any SSH session still open); %d '
                  'pgbouncer hosts would take about %.0f MB. Standbys: %.0f MB resident each.' % (
                      pgb['hosts'], pgb['processes'] / float(pgb['hosts']), per_rss, SCALE_MODEL_TO,
                      per_rss * SCALE_MODEL_TO,
                      widest['standby']['rss_mb'] / widest['standby']['hosts']), '']
    return lines


def measured_lines(results):
    measured = results.get('_measured') or {}
    if not measured:
        return []
    groups = {}
    for key, info in sorted(measured.items()):
        groups.setdefault((info.get('engine'), info.get('at', '')[:13]), []).append(key)
    return ['Measured with: ' + '; '.join('%s at %s:xx UTC (engine %s)' % (', '.join(keys), at, engine)
                                          for (engine, at), keys in sorted(groups.items(), key=lambda g: g[0][1])),
            '']


def previous_table(results, previous, source):
    """Every key's median outage (and longest client wait) against a previous run's."""
    lines = ['## Against the previous run (%s)' % source, '',
             'Medians of each dimension now and in the previous docs/benchmarks.md (same script, same lab); '
             '*before / now* above 1 is faster now.', '',
             '| dimension | outage before (ms) | outage now (ms) | before / now | longest client wait before (ms) | '
             'now (ms) | before / now |', '|---|---|---|---|---|---|---|']
    for key in sorted(k for k in results if not k.startswith('_')):
        before = previous.get(key)
        if not before or not results[key]:
            continue
        wait = 'window_client_wait_ms' if key.startswith('scale-') else 'max_client_wait_ms'
        then, now = median([r['outage_ms'] for r in before]), median([r['outage_ms'] for r in results[key]])
        then_w = median([r[wait] for r in before if r.get(wait) is not None])
        now_w = median([r[wait] for r in results[key] if r.get(wait) is not None])
        lines.append('| %s | %s | %s | %s | %s | %s | %s |' % (
            key, then, now, _ratio(then, now), then_w if then_w is not None else '-',
            now_w if now_w is not None else '-', _ratio(then_w, now_w) if then_w and now_w else '-'))
    return lines + ['']


def window_table(results, runs):
    """`all` against `split`: the readers' and the writers' longest waits side by side."""
    present = [m for m in WINDOW_METHODS if results.get(m)]
    if not present:
        return []
    lines = [
        '## Window modes: `all` against `split`',
        '',
        'The same patch plus `pg_sleep(%s)` (a cold patch that keeps the primary busy), under writers through' % (
            WINDOW_PATCH_SECONDS),
        '`fdtdemo` and readers through `fdtdemo_ro` (each pgbouncer\'s standby), 2 of each per pgbouncer.',
        'Medians of %d runs. The waits are what the clients measured; the write and read outages are the' % runs,
        'split report\'s own (`split_window`).',
        '',
        '| mode | writers\' longest wait (ms) | readers\' longest wait (ms) | client errors | commits lost | '
        'outage (ms) | write outage (ms) | read outage (ms) |',
        '|---|---|---|---|---|---|---|---|',
    ]
    for method in present:
        rows = results[method]
        splits = [r['split_window'] for r in rows if r.get('split_window')]
        lines.append('| %s | %s | %s | %s | %s | %s | %s | %s |' % (
            method.split('-')[1], median([r['max_write_wait_ms'] for r in rows]),
            median([r['max_read_wait_ms'] for r in rows]), max(r['client_errors'] for r in rows),
            max(r['commits_lost'] for r in rows), median([r['outage_ms'] for r in rows]),
            median([s['write_outage_ms'] for s in splits]) if splits else '-',
            median([s['read_outage_ms'] for s in splits]) if splits else '-'))
    return lines + ['']


def lab_up(shape):
    up = subprocess.run([sys.executable, os.path.join(REPO, 'lab', 'labctl.py'), 'up', '--shape', shape],
                        capture_output=True, text=True, check=False)
    if up.returncode != 0:
        sys.exit('benchmark: the lab did not come up (shape %s): %s' % (shape, (up.stdout + up.stderr).strip()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--methods', default=','.join(METHODS))
    parser.add_argument('--output', default=os.path.join(REPO, 'docs', 'benchmarks.md'))
    parser.add_argument('--rtts', default='0,10,40',
                        help='added controller round trips (ms) for the size methods: 0, 10 (shape rtt10), 40 (rtt40)')
    parser.add_argument('--engine', default=REPO, help='the checkout whose collection is measured')
    parser.add_argument('--baseline', help="a previous run's markdown (e.g. with --engine at an older commit): "
                        'its size rows are shown beside these')
    parser.add_argument('--baseline-label', default='previous engine')
    parser.add_argument('--scales', default='2x2,16x4',
                        help='pgbouncers x standbys points of the scale method (%s)'
                        % ', '.join('%dx%d' % p for p in sorted(SCALES)))
    parser.add_argument('--stall-deploys', type=int, default=STALL_DEPLOYS)
    parser.add_argument('--merge', action='store_true',
                        help="keep the raw runs of the methods not measured now from --output's previous run")
    parser.add_argument('--previous', help="a previous run's markdown: every dimension's medians side by side")
    parser.add_argument('--shape', default='', help='a lab shape every run is built in besides the distance '
                        '(lab/labctl.py SHAPES), e.g. postgresql18')
    args = parser.parse_args()
    global ENGINE, LOG_DIR
    ENGINE = os.path.abspath(args.engine)
    LOG_DIR = args.output + '.logs'
    methods = [m for m in args.methods.split(',') if m]
    unknown = set(methods) - set(METHODS)
    if unknown:
        parser.error('unknown methods: %s' % ', '.join(sorted(unknown)))
    rtts = [int(r) for r in args.rtts.split(',') if r.strip()]
    scales = [tuple(int(n) for n in point.split('x')) for point in args.scales.split(',') if point.strip()]
    if set(scales) - set(SCALES):
        parser.error('unknown scale points: %s' % ', '.join('%dx%d' % p for p in sorted(set(scales) - set(SCALES))))
    results = {}
    measured = {}   # key -> when and with which engine it was measured
    failed = {}     # scale key -> why a run failed

    def record(key, result):
        results.setdefault(key, []).append(result)
        measured[key] = {'at': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
                         'engine': engine_commit()}
        print('%-13s run %d: %s' % (key, len(results[key]), json.dumps(result)), flush=True)
        # Every run kept as it comes (a long benchmark that dies keeps what it measured).
        with open(args.output + '.partial.json', 'w') as handle:
            json.dump(dict(results, _measured=measured), handle)

    def record_scale(point, run):
        key = scale_key(*point)
        try:
            record(key, run_scale(tmp, tag_for(key, run), *point, run=run))
        except (RuntimeError, OSError, psycopg2.Error, SystemExit) as exc:  # a point the machine cannot run
            print('%-13s run %d FAILED: %s' % (key, run + 1, ' '.join(str(exc).split())[:500]), flush=True)
            failed.setdefault(key, []).append('%s (engine %s, %s)' % (
                ' '.join(str(exc).split())[:300], engine_commit(),
                datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')))

    def tag_for(key, run):
        return '%s_%d_%d' % (key.replace('-', '_').replace('@', '_'), run, random.randint(0, 10 ** 6))

    with tempfile.TemporaryDirectory() as tmp:
        one_inv = one_inventory(tmp)
        for rtt in rtts:
            # Far from the controller: only the size methods (the others compare methods, not distance).
            chosen = [m for m in methods if m not in SEPARATE and (rtt == 0 or m in SIZES)]
            if not chosen:
                continue
            lab_up(','.join([s for s in (args.shape, 'rtt%d' % rtt if rtt else '') if s]) or 'default')
            far = far_inventory(tmp) if rtt else None
            if any(m in BIG_CASES for m in chosen):
                print('big table: %s' % big_table_setup(), flush=True)
            # Interleave the methods run by run, so machine noise hits them alike.
            for run in range(args.runs):
                for method in chosen:
                    key = method if not rtt else '%s@rtt%d' % (method, rtt)
                    record(key, measure(method, tmp, tag_for(key, run), one_inv, far=far))
        if 'stall' in methods:
            lab_up(args.shape or 'default')
            for run in range(args.stall_deploys):
                record('stall-500', run_stall(tmp, tag_for('stall', run)))
        if 'scale' in methods:
            # The goal's points interleaved run by run (noise hits them alike); the growth series
            # point after point (a lab rebuild with many hosts costs more than a run).
            for run in range(args.runs):
                for point in [p for p in scales if p in SCALE_GOAL_POINTS]:
                    record_scale(point, run)
            for point in [p for p in scales if p not in SCALE_GOAL_POINTS]:
                for run in range(args.runs):
                    record_scale(point, run)
        if methods != [m for m in methods if m not in SEPARATE] or rtts != [0]:
            lab_up(args.shape or 'default')
    if args.merge and os.path.exists(args.output):
        previous = load_raw(args.output)
        # A point measured now keeps only today's failures; the others keep theirs (each names its engine).
        failed = dict([(k, v) for k, v in (previous.get('_failed') or {}).items() if k not in results
                       and k not in failed] + list(failed.items()))
        for key, rows in previous.items():
            if key == '_failed':
                continue
            if key not in results:
                results[key] = rows
                if key in previous.get('_measured', {}):
                    measured[key] = previous['_measured'][key]
    results['_measured'] = dict((k, v) for k, v in measured.items() if k in results)
    if failed:
        results['_failed'] = failed
    baseline = None
    if args.baseline:
        baseline = {'label': args.baseline_label, 'results': load_raw(args.baseline),
                    'source': os.path.basename(args.baseline)}
    previous = load_raw(args.previous) if args.previous else None
    write_markdown(results, args.runs, args.output, baseline, previous,
                   (os.path.basename(args.previous) if args.previous else None))
    # Drop the benchmark's columns again so the lab's table stays small.
    conn = psycopg2.connect(PRIMARY)
    with conn, conn.cursor() as cur:
        cur.execute('DROP SCHEMA IF EXISTS %s CASCADE' % BIG_SCHEMA)
        cur.execute("SELECT attname FROM pg_attribute WHERE attrelid = 'fdt_item'::regclass "
                    "AND attname LIKE 'bench_%' AND NOT attisdropped")
        for (name,) in cur.fetchall():
            cur.execute('ALTER TABLE fdt_item DROP COLUMN %s' % name)
        cur.execute('DROP SCHEMA IF EXISTS fdt_bench CASCADE')
    conn.close()
    print('benchmark: results in %s' % args.output)


if __name__ == '__main__':
    main()
