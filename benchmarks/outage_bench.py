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
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, 'lab'))

import psycopg2  # noqa: E402
from load import ClientLoad  # noqa: E402

LAB = '10.213.%d.' % (47 + int(os.environ.get('FDT_LAB_ID') or 0))  # as lab/labctl.py
PRIMARY = 'host=%s10 port=5432 dbname=fdtdemo user=fdt_deploy password=deploy-secret' % LAB
CLIENT = 'host=%s%d port=6432 dbname=fdtdemo user=fdt_app password=app-secret'
PSQL = '/usr/lib/postgresql/15/bin/psql'
VENV_BIN = os.path.join(REPO, '.venv', 'bin')
METHODS = ('collection', 'collection-1', 'psql-chain', 'live', 'window-all', 'window-split', 'size-1', 'size-500')
WINDOW_METHODS = ('window-all', 'window-split')
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
      hosts: {standby1: {ansible_host: "{{ fdt_lab_subnet }}.11", fastdowntime_standby_pgbouncer_databases: ["pgbouncer1:fdtdemo_ro"]}}
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
            'rtt_ms': round(round_trip_ms(far_dsn(PRIMARY) if far else PRIMARY), 3), 'wall_s': round(wall, 2)}


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
    with open(os.path.join(patch_dir, 'patch-%d-00-0.sql' % random.randint(3000, 9999)), 'w') as handle:
        handle.write(patch_sql(tag))
    report = os.path.join(tmp, 'report-%s.json' % tag)
    began = time.monotonic()
    proc = subprocess.run(['ansible-playbook', '-i', inventory, 'playbooks/fastdowntime.yml', '--tags', 'outage',
                           '-e', json.dumps({'fastdowntime_patch_dir': patch_dir})],
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
    with open(os.path.join(patch_dir, 'patch-%d-00-0.sql' % random.randint(3000, 9999)), 'w') as handle:
        handle.write(patch_sql(tag) + 'SELECT pg_sleep(%s);\n' % WINDOW_PATCH_SECONDS)
    report = os.path.join(tmp, 'report-%s.json' % tag)
    began = time.monotonic()
    proc = subprocess.run(['ansible-playbook', '-i', inventory, 'playbooks/fastdowntime.yml', '--tags', 'outage',
                           '-e', json.dumps({'fastdowntime_patch_dir': patch_dir, 'fastdowntime_window_mode': mode,
                                             'fastdowntime_revision_table': WINDOW_REVISION_TABLE})],
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


def measure(method, tmp, tag, one_inv, far=None):
    inventory = one_inv if method == 'collection-1' else os.path.join(REPO, 'inventories', 'lab', 'hosts.yml')
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


def machine():
    cpu = 'unknown'
    try:
        with open('/proc/cpuinfo') as handle:
            cpu = next(line.split(':', 1)[1].strip() for line in handle if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return '%s, %d cores, %s, Python %s' % (cpu, os.cpu_count(), platform.platform(), platform.python_version())


def write_markdown(results, runs, path, baseline=None):
    now = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    base = median([r['outage_ms'] for r in results.get('collection', [])])
    lines = [
        '# Outage benchmark',
        '',
        'Written by `benchmarks/outage_bench.py` (never by hand). Run: %s. Machine: %s.' % (now, machine()),
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
        if not rows or method in WINDOW_METHODS or method in SIZES or '@' in method:
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
    args = parser.parse_args()
    global ENGINE
    ENGINE = os.path.abspath(args.engine)
    methods = [m for m in args.methods.split(',') if m]
    unknown = set(methods) - set(METHODS)
    if unknown:
        parser.error('unknown methods: %s' % ', '.join(sorted(unknown)))
    rtts = [int(r) for r in args.rtts.split(',') if r.strip()]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        one_inv = one_inventory(tmp)
        for rtt in rtts:
            # Far from the controller: only the size methods (the others compare methods, not distance).
            chosen = methods if rtt == 0 else [m for m in methods if m in SIZES]
            if not chosen:
                continue
            lab_up('rtt%d' % rtt if rtt else 'default')
            far = far_inventory(tmp) if rtt else None
            # Interleave the methods run by run, so machine noise hits them alike.
            for run in range(args.runs):
                for method in chosen:
                    key = method if not rtt else '%s@rtt%d' % (method, rtt)
                    tag = '%s_%d_%d' % (key.replace('-', '_').replace('@', '_'), run, random.randint(0, 10 ** 6))
                    result = measure(method, tmp, tag, one_inv, far=far)
                    results.setdefault(key, []).append(result)
                    print('%-13s run %d: %s' % (key, run + 1, json.dumps(result)), flush=True)
        if rtts != [0]:
            lab_up('default')
    baseline = None
    if args.baseline:
        baseline = {'label': args.baseline_label, 'results': load_raw(args.baseline),
                    'source': os.path.basename(args.baseline)}
    write_markdown(results, args.runs, args.output, baseline)
    # Drop the benchmark's columns again so the lab's table stays small.
    conn = psycopg2.connect(PRIMARY)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT attname FROM pg_attribute WHERE attrelid = 'fdt_item'::regclass "
                    "AND attname LIKE 'bench_%' AND NOT attisdropped")
        for (name,) in cur.fetchall():
            cur.execute('ALTER TABLE fdt_item DROP COLUMN %s' % name)
        cur.execute('DROP SCHEMA IF EXISTS fdt_bench CASCADE')
    conn.close()
    print('benchmark: results in %s' % args.output)


if __name__ == '__main__':
    main()
