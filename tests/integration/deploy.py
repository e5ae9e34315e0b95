"""Helpers for the tests that run the fastdowntime playbook on the lab (outage, split window).

Each test writes its own patch directory with revisions no other test uses and
keeps them in its own revision table, so the tests run in any order, again, and
never make the lab database look "ahead of the patch set" to a later deploy.
"""

import json
import os
import random
import select
import subprocess
import time

import psycopg2

PLAYBOOK = os.environ.get('FDT_TEST_PLAYBOOK', 'playbooks/fastdowntime.yml')
# The tests keep their revisions out of the lab's own revision table (the
# `scratch` fixture in conftest.py drops it, with what the patches created).
REVISION_TABLE = 'fdt_outage_test.schema_revision'


def unique_major():
    return random.randint(5000, 9999)


def write_patches(tmp_path, major, bodies):
    """patch-MAJOR-0N-0.sql for each body, in order; returns the directory."""
    directory = tmp_path / ('patches-%d' % major)
    directory.mkdir()
    for minor, body in enumerate(bodies, start=1):
        (directory / ('patch-%d-%02d-0.sql' % (major, minor))).write_text(body)
    return str(directory)


SKIPPED_ON_PURPOSE = 'fastdowntime_preflight_skipped_on_purpose'


def skips_preflight(tags, args=()):
    """True when --tags ``tags`` (and ``args``' --skip-tags) leave the pre-flight's play out."""
    names = [t.strip() for t in (tags or 'all').split(',')]
    args = list(args)
    skipped = args[args.index('--skip-tags') + 1].split(',') if '--skip-tags' in args else []
    return 'preflight' in skipped or not ('all' in names or 'preflight' in names)


def run_playbook(lab, tmp_path, patch_dir, extra=None, tags='outage', background=False, args=(), playbook=PLAYBOOK,
                 inventory=None, inventories=(), env=None):
    """ansible-playbook on ``inventory`` (default: the lab's) plus ``inventories`` (e.g. host
    variables a test adds), returning (process, report path). ``tags`` without ``preflight`` (the
    fault tests set up faults a pre-flight would refuse, and skip it to stay short) set
    fastdowntime_preflight_skipped_on_purpose, unless ``extra`` says otherwise. ``env``: variables
    added to ansible-playbook's environment (e.g. ANSIBLE_STRATEGY, as an operator's shell has it)."""
    report = str(tmp_path / 'report.json')
    if skips_preflight(tags, args):
        extra = dict({SKIPPED_ON_PURPOSE: True}, **(extra or {}))
    env = dict(os.environ, FDT_REPORT_PATH=report, ANSIBLE_CONFIG=os.path.join(lab.repo, 'ansible.cfg'),
               ANSIBLE_COLLECTIONS_PATH=os.path.join(lab.repo, '.collections'), ANSIBLE_FORCE_COLOR='0',
               PATH=os.path.join(lab.repo, '.venv', 'bin') + os.pathsep + os.environ['PATH'], **(env or {}))
    extra_vars = dict({'fastdowntime_patch_dir': patch_dir, 'fastdowntime_revision_table': REVISION_TABLE},
                      **(extra or {}))
    cmd = (['ansible-playbook', '-i', inventory or lab.inventory()] + [a for i in inventories for a in ('-i', str(i))]
           + [playbook, '--tags', tags, '-e', json.dumps(extra_vars)] + list(args))
    if background:
        return subprocess.Popen(cmd, cwd=lab.repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True), report
    proc = subprocess.run(cmd, cwd=lab.repo, env=env, capture_output=True, text=True, timeout=300, check=False)
    return proc, report


def pg_one(lab, host, sql, params=None):
    conn = psycopg2.connect(lab.primary_dsn() if host == 'primary' else lab.dsn(lab.pg(host)))
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchone()[0]
    finally:
        conn.close()


def table_exists(lab, host, name):
    return pg_one(lab, host, 'SELECT to_regclass(%s) IS NOT NULL', (name,))


def pgbouncer_flags(lab, host):
    """{entry: (paused, disabled)} from SHOW DATABASES of a pgbouncer host, or of
    the one process whose unix socket directory ``host`` is."""
    endpoint = lab.pgbouncer(host) if not host.startswith('/') else dict(lab.pgbouncer('pgbouncer1'), host=host)
    conn = psycopg2.connect(lab.dsn(endpoint))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute('SHOW DATABASES')
            names = [c[0] for c in cur.description]
            return {row[0]: (row[names.index('paused')], row[names.index('disabled')]) for row in cur.fetchall()}
    finally:
        conn.close()


def assert_all_resumed(lab):
    for host in ('pgbouncer1', 'pgbouncer2'):
        flags = pgbouncer_flags(lab, host)
        assert all(f == (0, 0) for f in flags.values()), (host, flags)


def assert_nothing_lost(lab, load):
    assert load.errors == [], load.errors[:5]
    assert load.confirmed_ids, 'the load confirmed no commit at all'
    assert load.missing_commits(lab.primary_dsn()) == []


def assert_disarmed(lab, hosts=('pgbouncer1', 'pgbouncer2'), within=0.0):
    """No dead-man switch left armed: no watchdog pidfile in any pgbouncer host's state dir
    (one per pgbouncer process). ``within`` (seconds): a switch that fired by itself (the
    controller was killed) confirms the RESUME on its next poll and only then exits and
    removes its pidfile, so it is given that long."""
    deadline = time.monotonic() + within
    while True:
        left = []
        for host in hosts:
            run_dir = os.path.join(lab.lab_dir, 'hosts', host, 'run')
            left += [(host, name) for name in os.listdir(run_dir)
                     if name.startswith('fastdowntime-pgbouncer-watchdog')]
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    assert left == [], left


SECRETS = ('deploy-secret', 'admin-secret', 'app-secret', 'repl-secret')


def assert_clean_error(out, *words):
    """No traceback, no secret, and every word of the expected one-line message."""
    assert 'Traceback' not in out, out[-3000:]
    for secret in SECRETS:
        assert secret not in out, secret
    for word in words:
        assert word in out, (word, out[-4000:])


def deploy_under_load(lab, tmp_path, patch_dir, extra=None, tags='preflight,hot,outage', writers=None):
    """The playbook under a client load through every pgbouncer: (proc, output, load)."""
    with lab.load(writers=writers or ('pgbouncer1', 'pgbouncer2')) as load:
        time.sleep(0.3)
        proc = run_playbook(lab, tmp_path, patch_dir, extra, tags=tags)[0]
        time.sleep(0.3)
    return proc, proc.stdout + proc.stderr, load


def client_answers(lab, where, entry, timeout=3.0):
    """None when a client's SELECT 1 through ``where`` (a pgbouncer host, or one
    process's unix socket directory) and ``entry`` is answered within
    ``timeout``, else what the client saw."""
    host = where if where.startswith('/') else lab.addr(where)
    try:
        conn = psycopg2.connect(host=host, port=6432, user='fdt_app', password=lab.users['fdt_app'], dbname=entry,
                                connect_timeout=int(timeout), async_=1)
    except psycopg2.Error as exc:
        return str(exc).strip()
    deadline = time.monotonic() + timeout
    cursor = None
    try:
        while time.monotonic() < deadline:
            state = conn.poll()
            if state == psycopg2.extensions.POLL_OK:
                if cursor is not None:
                    return None
                cursor = conn.cursor()
                cursor.execute('SELECT 1')
                continue
            wanted = [conn] if state == psycopg2.extensions.POLL_READ else []
            select.select(wanted, [] if wanted else [conn], [], 0.05)
        return 'no answer within %.1f s' % timeout
    except psycopg2.Error as exc:
        return str(exc).strip()
    finally:
        conn.close()


def every_process_serves(lab, entries=('fdtdemo', 'fdtdemo_ro')):
    """{(pgbouncer, socket dir, entry): problem} for every pgbouncer process of the
    lab, asked through its own unix socket: SHOW DATABASES flags and a client
    query. Empty when every entry of every process serves."""
    problems = {}
    for host, info in lab.hosts.items():
        if info['role'] != 'pgbouncer':
            continue
        for socket_dir in info.get('unix_socket_dirs') or [os.path.join(lab.lab_dir, 'hosts', host, 'run')]:
            flags = pgbouncer_flags(lab, socket_dir)
            for entry in entries:
                if flags.get(entry) != (0, 0):
                    problems[(host, socket_dir, entry)] = 'paused/disabled flags %s' % (flags.get(entry),)
                    continue
                seen = client_answers(lab, socket_dir, entry)
                if seen is not None:
                    problems[(host, socket_dir, entry)] = seen
    return problems
