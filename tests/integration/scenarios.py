"""Fault scenarios on the lab, shared by the integration tests and the soak (lab/soak.py).

Each scenario is a function ``scenario(lab, tmp_path)`` that sets a fault up, runs the
fastdowntime playbook once (no client load of its own: the caller runs one around it),
puts the lab back and returns a `Run`: the playbook's exit code and output, its report,
what it must have done (`expect`: 'done', 'refused' before any PAUSE, or 'aborted') and
the tables its patches create, present on every database or on none (`tables`,
`applied`). `check_run` asserts that; the tests add what is particular to their fault.

The helpers under them (a client holding a transaction, a link cut, a pgbouncer process
restarted or reloaded inside the window, the controller killed inside the window) are
the faults themselves: tests that need only one of them use it directly.
"""

import json
import os
import signal
import threading
import time
from contextlib import contextmanager

import psycopg2

from conftest import kill_tree
from deploy import (
    REVISION_TABLE, assert_clean_error, pg_one, pgbouncer_flags, run_playbook, table_exists, unique_major,
    write_patches)

FULL = 'preflight,hot,outage'


class Run:
    """What one scenario's deploy did and what it had to do."""

    def __init__(self, name, proc, report_path, expect, tables, applied, words=(), **facts):
        self.name = name
        self.returncode = proc.returncode if proc is not None else None
        self.out = (proc.stdout or '') + (proc.stderr or '') if proc is not None and proc.stdout is not None else ''
        self.report = read_report(report_path)
        self.expect = expect
        self.tables = list(tables)
        self.applied = applied
        self.words = list(words)
        self.facts = facts

    @property
    def statement(self):
        """The report's statement about pgbouncer state (None when the window never ran)."""
        return ((self.report or {}).get('outage') or {}).get('pgbouncer_state')


def under_load(lab, scenario, tmp_path, **load):
    """``scenario(lab, tmp_path)`` under a client load through every pgbouncer
    (lab.load(**load)): (Run, the stopped load)."""
    with lab.load(**load) as running:
        time.sleep(0.3)
        run = scenario(lab, tmp_path)
        time.sleep(0.3)
    return run, running


def read_report(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError, TypeError):
        return None


def check_run(lab, run):
    """The scenario's expected outcome: exit code, the one-line message's words (no
    traceback, no secret), before any PAUSE for a refusal, and its tables on every
    database (primary and standbys, once they caught up) or on none."""
    if run.expect == 'done':
        assert run.returncode == 0, (run.name, run.out[-3000:])
    elif run.expect != 'killed':
        assert run.returncode != 0, (run.name, run.out[-3000:])
    assert_clean_error(run.out, *run.words)
    if run.expect == 'refused':
        assert 'Drain, cold patches' not in run.out, run.name  # refused before the outage play
    hosts = ['primary'] + [h for h, info in lab.hosts.items() if info['role'] == 'standby']
    if run.applied:
        wait_replayed(lab)
    for table in run.tables:
        for host in hosts:
            assert table_exists(lab, host, table) == run.applied, (run.name, host, table, run.applied)


def drop_scratch(lab):
    """Drop what deploys of scenarios and tests created (tables fdt_<letters><4+ digits>)
    and their revision table (deploy.REVISION_TABLE's schema), so the next deploy's patch
    set is not behind the database."""
    conn = psycopg2.connect(lab.primary_dsn())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT format('%I.%I', schemaname, tablename) FROM pg_tables "
                    "WHERE schemaname = 'public' AND tablename ~ '^fdt_[a-z]+[0-9]{4}'")
        for (table,) in cur.fetchall():
            cur.execute('DROP TABLE IF EXISTS %s CASCADE' % table)
        cur.execute('DROP SCHEMA IF EXISTS %s CASCADE' % REVISION_TABLE.split('.')[0])
    conn.close()


# -- the lab's pgbouncer processes ------------------------------------------------

def pgbouncer_processes(lab, host=None):
    """[(pgbouncer host, unix socket dir)] of every pgbouncer process (one per socket dir)."""
    return [(name, socket_dir) for name, info in sorted(lab.hosts.items())
            if info['role'] == 'pgbouncer' and host in (None, name)
            for socket_dir in info['unix_socket_dirs']]


def paused_anywhere(lab, entry='fdtdemo'):
    return any(pgbouncer_flags(lab, socket_dir).get(entry, (0, 0))[0] for dummy, socket_dir in pgbouncer_processes(lab))


def _pid_alive(pid):
    try:
        with open('/proc/%d/stat' % pid) as handle:
            return handle.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (OSError, IndexError):
        return False


def restart_pgbouncer(lab, host, socket_dir=None):
    """Stop one pgbouncer process at once (SIGTERM: pgbouncer 1.18's immediate shutdown, as
    a crash or `systemctl restart` does; its clients lose their connections) and start it
    again with its own ini. An online restart (-R) is refused while an entry is paused
    ("cannot suspend with paused databases"), so inside the window this is the restart there
    is. Returns (stopped_at, started_at) wall-clock times."""
    stopped_at = stop_pgbouncer(lab, host, socket_dir)
    return stopped_at, start_pgbouncer(lab, host, socket_dir)


def _pgbouncer_process(lab, host, socket_dir=None):
    """(its ini, its unix socket dir) of one pgbouncer process of ``host`` (default its first)."""
    dirs = lab.hosts[host]['unix_socket_dirs']
    socket_dir = socket_dir or dirs[0]
    suffix = '' if len(dirs) == 1 else '-p%d' % (dirs.index(socket_dir) + 1)
    return os.path.join(lab.lab_dir, 'hosts', host, 'pgbouncer%s.ini' % suffix), socket_dir


def stop_pgbouncer(lab, host, socket_dir=None):
    """SIGTERM one pgbouncer process and wait until it is gone; returns when (wall clock)."""
    dummy, socket_dir = _pgbouncer_process(lab, host, socket_dir)
    with open(os.path.join(socket_dir, 'pgbouncer.pid')) as handle:
        pid = int(handle.read().split()[0])
    stopped_at = time.time()
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    return stopped_at


def start_pgbouncer(lab, host, socket_dir=None):
    """Start one pgbouncer process with its own ini, wait for its unix socket; returns when (wall clock)."""
    ini, socket_dir = _pgbouncer_process(lab, host, socket_dir)
    lab.ns_exec(host, 'runuser', '-u', 'postgres', '--', 'pgbouncer', '-d', '-q', ini)
    deadline = time.monotonic() + 10
    while not os.path.exists(os.path.join(socket_dir, '.s.PGSQL.6432')) and time.monotonic() < deadline:
        time.sleep(0.01)
    return time.time()


def reload_pgbouncer(lab, host, socket_dir=None):
    """RELOAD on one process's console (what logrotate's SIGHUP or a config push does)."""
    endpoint = dict(lab.pgbouncer(host), host=socket_dir or lab.hosts[host]['unix_socket_dirs'][0])
    conn = psycopg2.connect(lab.dsn(endpoint))
    conn.autocommit = True
    try:
        conn.cursor().execute('RELOAD')
    finally:
        conn.close()
    return time.time()


def client_errors_outside(load, host_addr, interval, margin=1.0):
    """The load's errors except those of clients of ``host_addr`` (a pgbouncer) inside
    ``interval`` (stopped_at, started_at) + ``margin`` s: the clients a restart itself
    disconnects. [(worker label, time, message)]."""
    began, ended = interval
    own = {w.label for w in load.workers if 'host=%s ' % host_addr in w.dsn + ' '}
    return [(label, when, msg) for label, when, msg in load.errors
            if not (label in own and began <= when <= ended + margin)]


# -- the window -------------------------------------------------------------------

# A cold patch line that keeps the window open until the test lets it go: it sleeps until it can take this
# advisory lock, which hold_window() holds (a pg_sleep's length is a guess a loaded machine outruns; a lock wait
# would meet the window's lock_timeout).
HOLD_WINDOW_KEY = 7700011
HOLD_WINDOW_SQL = ('DO $hold$ BEGIN WHILE NOT pg_try_advisory_xact_lock(%d) LOOP PERFORM pg_sleep(0.05); END LOOP; '
                   'END $hold$;' % HOLD_WINDOW_KEY)


def hold_window(lab):
    """A connection to the primary holding HOLD_WINDOW_KEY: a window whose cold patch runs
    HOLD_WINDOW_SQL stays open until this connection is closed."""
    conn = psycopg2.connect(lab.primary_dsn())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute('SELECT pg_advisory_lock(%s)', (HOLD_WINDOW_KEY,))
    return conn


def in_cold_transaction(lab):
    """True while the outage's transaction sleeps in a cold patch's pg_sleep (or
    HOLD_WINDOW_SQL's) on the primary (so every drain is over)."""
    conn = psycopg2.connect(lab.primary_dsn())
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'fastdowntime-deploy' "
                        "AND wait_event = 'PgSleep'")
            return cur.fetchone()[0] > 0
    finally:
        conn.close()


class When(threading.Thread):
    """``When(lab, condition, action).start()``: runs ``action()`` once ``condition(lab)``
    holds (polled every 20 ms, for ``timeout`` s); ``.result`` is what it returned,
    ``.fired`` whether it ran."""

    def __init__(self, lab, condition, action, timeout=90):
        threading.Thread.__init__(self, daemon=True)
        self.lab, self.condition, self.action, self.timeout = lab, condition, action, timeout
        self.result, self.fired, self.stop = None, False, threading.Event()

    def run(self):
        deadline = time.monotonic() + self.timeout
        while not self.stop.is_set() and time.monotonic() < deadline:
            if self.condition(self.lab):
                self.result = self.action()
                self.fired = True
                return
            time.sleep(0.02)

    def finish(self):
        self.stop.set()
        self.join()
        return self.result


def kill_controller_when_paused(lab, proc, budget, grace):
    """Wait until an entry is paused on some pgbouncer process, then SIGKILL the
    controller (ansible-playbook and everything it started: Ansible's workers setsid()),
    and wait for every process's deploy entries to be resumed (by the dead-man switches).
    Returns seconds from the pause to the last resume (None: never resumed)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not paused_anywhere(lab):
        if proc.poll() is not None:
            raise AssertionError('the playbook ended before any pause: %s' % proc.stdout.read()[-3000:])
        time.sleep(0.05)
    paused_at = time.monotonic()
    kill_tree(proc.pid)
    proc.wait()
    while time.monotonic() - paused_at < budget + grace + 8:
        if not paused_anywhere(lab) and not paused_anywhere(lab, lab.db_name + '_ro'):
            return time.monotonic() - paused_at
        time.sleep(0.1)
    return None


# -- faults outside the window ------------------------------------------------------

def wait_streaming(lab, count=2, timeout=60):
    """Until ``count`` standbys stream from their upstreams and every standby has received a WAL record
    written on the primary since (AssertionError after ``timeout`` s): the walsender of a connection a
    link cut broke can read 'streaming' until wal_sender_timeout, so the upstreams' rows alone prove
    nothing (after a cut on the ipv6 shape the rows counted 2 while standby1 had no route left)."""
    deadline = time.monotonic() + timeout
    standbys = [h for h, i in lab.hosts.items() if i['role'] == 'standby']
    while time.monotonic() < deadline:
        streaming = 0
        for host in ['primary'] + standbys:
            conn = psycopg2.connect(lab.dsn(lab.pg(host)))
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
                streaming += cur.fetchone()[0]
            conn.close()
        if streaming >= count:
            break
        time.sleep(0.5)
    else:
        raise AssertionError('the standbys did not stream again within %ss' % timeout)
    # A record of its own (committed locally: a synchronous standby is what is waited for here).
    conn = psycopg2.connect(lab.primary_dsn())
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_logical_emit_message(true, 'fastdowntime-lab', 'streaming')::text "
                        "FROM set_config('synchronous_commit', 'local', true)")
            lsn = cur.fetchone()[0]
    finally:
        conn.close()
    for host in standbys:
        while not pg_one(lab, host, 'SELECT pg_last_wal_receive_lsn() >= %s::pg_lsn', (lsn,)):
            if time.monotonic() > deadline:
                raise AssertionError('%s did not receive %s (the primary\'s WAL) within %ss of the link back'
                                     % (host, lsn, timeout))
            time.sleep(0.2)


def wait_replayed(lab, timeout=60):
    """Until every standby has replayed the primary's current WAL position."""
    conn = psycopg2.connect(lab.primary_dsn())
    with conn.cursor() as cur:
        cur.execute('SELECT pg_current_wal_lsn()')
        lsn = cur.fetchone()[0]
    conn.close()
    deadline = time.monotonic() + timeout
    for host in [h for h, i in lab.hosts.items() if i['role'] == 'standby']:
        while True:
            conn = psycopg2.connect(lab.dsn(lab.pg(host)))
            with conn.cursor() as cur:
                cur.execute('SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn', (lsn,))
                done = cur.fetchone()[0]
            conn.close()
            if done:
                break
            if time.monotonic() > deadline:
                raise AssertionError('%s did not replay %s within %ss' % (host, lsn, timeout))
            time.sleep(0.1)


def cut_link(lab, host):
    """``host``'s link down, its IPv6 addresses kept for when it is up again (link_down)."""
    lab.ns_exec(host, 'sysctl', '-qw', 'net.ipv6.conf.eth0.keep_addr_on_down=1', check=False)
    lab.ns_exec(host, 'ip', 'link', 'set', 'eth0', 'down')


@contextmanager
def link_down(lab, host):
    """``host``'s network link cut for the block; back up and streaming afterwards. Its IPv6
    addresses are kept through the cut (keep_addr_on_down): Linux drops a static IPv6 address
    when its link goes down, a configured host adds it again on link up and the lab would not -
    on the ipv6 shape the standby stayed unreachable after the blip, for every deploy after it."""
    cut_link(lab, host)
    try:
        yield
    finally:
        lab.ns_exec(host, 'ip', 'link', 'set', 'eth0', 'up', check=False)
        wait_streaming(lab)


@contextmanager
def held_transaction(lab, pgbouncer, application_name='stuck-client'):
    """A client through ``pgbouncer`` holding its server connection in an open transaction."""
    holder = psycopg2.connect(lab.client_dsn(pgbouncer), application_name=application_name)
    try:
        with holder.cursor() as cur:
            cur.execute("INSERT INTO fdt_item (body) VALUES ('held open')")
        yield holder
    finally:
        try:
            holder.rollback()
        except psycopg2.Error:
            pass  # terminated by the drain's terminate policy
        holder.close()


@contextmanager
def lock_holder(lab, table):
    """The deploy user holding ACCESS SHARE on ``table`` (created first) from a direct
    connection; yields its backend pid."""
    setup = psycopg2.connect(lab.primary_dsn())
    setup.autocommit = True
    with setup.cursor() as cur:
        cur.execute('CREATE TABLE %s (id int)' % table)
    setup.close()
    holder = psycopg2.connect(lab.primary_dsn(), application_name='report-query')
    try:
        with holder.cursor() as cur:
            cur.execute('LOCK TABLE %s IN ACCESS SHARE MODE' % table)
        yield holder.get_backend_pid()
    finally:
        holder.rollback()
        holder.close()


def enable_everywhere(lab, entry):
    """ENABLE ``entry`` on every pgbouncer process (after a standby was fenced)."""
    for host, socket_dir in pgbouncer_processes(lab):
        conn = psycopg2.connect(lab.dsn(dict(lab.pgbouncer(host), host=socket_dir)))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute('ENABLE %s' % entry)
        conn.close()


# -- the scenarios ------------------------------------------------------------------

def _deploy(lab, tmp_path, letter, bodies, extra=None, tags=FULL, background=False):
    major = unique_major()
    patch_dir = write_patches(tmp_path, major, [b % {'t': 'fdt_%s%d' % (letter, major)} for b in bodies])
    return major, run_playbook(lab, tmp_path, patch_dir, extra, tags=tags, background=background)


def clean(lab, tmp_path, tags='outage'):
    major, (proc, report) = _deploy(lab, tmp_path, 'x', ['CREATE TABLE %(t)s (id int);'], tags=tags)
    return Run('clean', proc, report, 'done', ['fdt_x%d' % major], True,
               ['every pgbouncer entry resumed and answering clients'])


def bad_patch(lab, tmp_path):
    """The second of three patches fails inside the window: nothing applied."""
    major, (proc, report) = _deploy(lab, tmp_path, 'a', [
        'CREATE TABLE %(t)s (id int);', 'CREATE TABLE %(t)s_b (id int);\n\nALTER TABLE %(t)s_missing ADD COLUMN x int;',
        'CREATE TABLE %(t)s_c (id int);'], tags='outage')
    table = 'fdt_a%d' % major
    return Run('bad_patch', proc, report, 'aborted', [table, table + '_b', table + '_c'], False,
               ['outage aborted in schema application: primary (%s:5432): patch-%d-02-0.sql line 3: relation '
                '"%s_missing" does not exist (SQLSTATE 42P01); rolled back, nothing applied' % (
                    lab.addr('primary'), major, table),
                'every pgbouncer entry resumed and answering clients',
                'drain on pgbouncer1 (',  # each timing names its pgbouncer (an address, or a process's socket dir)
                'cold_transaction on primary (%s:5432) ' % lab.addr('primary')])


def budget_abort(lab, tmp_path, budget=3):
    """A cold patch slower than the budget: rolled back and resumed within it."""
    major, (proc, report) = _deploy(lab, tmp_path, 's', ['CREATE TABLE %(t)s (id int);\nSELECT pg_sleep(10);'],
                                    {'fastdowntime_budget_seconds': budget}, tags='outage')
    if 'pgbouncer_low_timeouts' in lab.shape:  # pgbouncer1's query_wait_timeout = 3 s caps the budget at 2 s
        fix = ('rolled back, nothing applied: raising fastdowntime_budget_seconds does nothing: the budget is capped '
               'at 2 s by pgbouncer1 (%s:6432) query_wait_timeout = 3 s' % lab.addr('pgbouncer1'))
    else:
        fix = 'rolled back, nothing applied: raise fastdowntime_budget_seconds (now %g s) or make the patch cheaper' % (
            budget)
    return Run('budget_abort', proc, report, 'aborted', ['fdt_s%d' % major], False,
               ['aborted in schema application', 'every pgbouncer entry resumed and answering clients', fix],
               budget=budget)


def budget_below_estimate(lab, tmp_path, budget=0.001):
    """A budget smaller than the pre-flight's estimate: refused before any PAUSE. 1 ms: the
    estimate of a 1-statement window on the lab is a few ms (its terms are measured, lint.py)."""
    major, (proc, report) = _deploy(lab, tmp_path, 'b', ['CREATE TABLE %(t)s (id int);'],
                                    {'fastdowntime_budget_seconds': budget})
    return Run('budget_refused', proc, report, 'refused', ['fdt_b%d' % major], False,
               ['refused by pre-flight', 'budget'])


def lock_on_the_patched_table(lab, tmp_path, tags='outage', extra=None):
    """The deploy user (a system user: the direct_connections check lets it be) holds a lock
    on the table the cold patch alters, and the window opens anyway (the pre-flight's
    blocking_sessions check, and the outage's own look just before its clock, refuse it
    unless told to warn: fastdowntime_blocking_sessions warn, unless ``extra`` says
    otherwise): aborted, nothing applied."""
    major = unique_major()
    table = 'fdt_l%d' % major
    patch_dir = write_patches(tmp_path, major, ['ALTER TABLE %s ADD COLUMN note text;\n'
                                                'CREATE TABLE %s_new (id int);' % (table, table)])
    with lock_holder(lab, table) as pid:
        settings = dict({'fastdowntime_budget_seconds': 3, 'fastdowntime_blocking_sessions': 'warn'}, **(extra or {}))
        proc, report = run_playbook(lab, tmp_path, patch_dir, settings, tags=tags)
    return Run('lock_holder', proc, report, 'aborted', [table + '_new'], False,
               ['aborted in schema application', str(pid), 'nothing applied'], holder_pid=pid, table=table)


def controller_killed(lab, tmp_path, budget=4, grace=2):
    """The controller SIGKILLed inside the window: every dead-man switch resumes its
    process; nothing applied (the transaction dies with its connection)."""
    sleep = 'SELECT pg_sleep(%d);' % (budget + grace + 4)
    major, (proc, report) = _deploy(lab, tmp_path, 'k', ['CREATE TABLE %(t)s (id int);\n' + sleep],
                                    {'fastdowntime_budget_seconds': budget,
                                     'fastdowntime_watchdog_grace_seconds': grace}, tags='outage', background=True)
    try:
        resumed_after = kill_controller_when_paused(lab, proc, budget, grace)
    finally:
        if proc.poll() is None:
            kill_tree(proc.pid)
    run = Run('controller_killed', None, report, 'killed', ['fdt_k%d' % major], False,
              resumed_after=resumed_after, budget=budget, grace=grace)
    # The transaction's backend notices its client is gone only after its statement: wait it out.
    wait_no_deploy_session(lab)
    return run


def wait_no_deploy_session(lab, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = psycopg2.connect(lab.primary_dsn())
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'fastdowntime-%%' "
                        "AND pid <> pg_backend_pid()")
            left = cur.fetchone()[0]
        conn.close()
        if not left:
            return
        time.sleep(0.2)
    raise AssertionError('the killed deploy\'s sessions were still on the primary after %ss' % timeout)


def standby_cut_off_before(lab, tmp_path):
    """A standby unreachable before the run: refused by the pre-flight, nothing paused."""
    with link_down(lab, 'standby1'):
        major, (proc, report) = _deploy(lab, tmp_path, 'c', ['CREATE TABLE %(t)s (id int);'])
    return Run('standby_before', proc, report, 'refused', ['fdt_c%d' % major], False,
               ['refused by pre-flight', 'standby1'])


def standby_cut_off_inside(lab, tmp_path, budget=4):
    """standby2 cut off inside the window: the primary commits, its entries stay fenced
    (DISABLED) until it catches up; it has the schema once back."""
    cutter = When(lab, paused_anywhere, lambda: cut_link(lab, 'standby2'))
    cutter.start()
    try:
        major, (proc, report) = _deploy(lab, tmp_path, 'f', ['CREATE TABLE %(t)s (id int);\nSELECT pg_sleep(1);'],
                                        {'fastdowntime_budget_seconds': budget}, tags='outage')
        cutter.finish()
        # While standby2 is still cut off: its entries fenced, every other entry back.
        flags = dict((process, pgbouncer_flags(lab, process[1])) for process in pgbouncer_processes(lab))
        on_standby1 = table_exists(lab, 'standby1', 'fdt_f%d' % major)
    finally:
        cutter.finish()
        lab.ns_exec('standby2', 'ip', 'link', 'set', 'eth0', 'up', check=False)
        wait_streaming(lab)
        enable_everywhere(lab, lab.db_name + '_ro')
    return Run('standby_inside', proc, report, 'aborted', ['fdt_f%d' % major], True,
               ['aborted in standby replay', 'standby2', 'fdtdemo_ro on pgbouncer2'], flags=flags,
               on_standby1=on_standby1)


PG_CTL = '/usr/lib/postgresql/15/bin/pg_ctl'


def pg_ctl(lab, host, *args):
    """pg_ctl on a lab database host (``-m immediate stop``: a crash; ``start``)."""
    pgdata = '%s/hosts/%s/pgdata' % (lab.lab_dir, host)
    if args[-1] == 'start':
        args = ('-l', '%s/hosts/%s/log/postgresql.log' % (lab.lab_dir, host)) + args
    return lab.ns_exec(host, 'runuser', '-u', 'postgres', '--', PG_CTL, '-D', pgdata, '-w', *args)


def replay_asked(lab, host):
    """True once the outage's replay wait has asked ``host`` about the deploy's transaction."""
    return pg_one(lab, host, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'fastdowntime-replay' "
                             "AND query LIKE '%%pg_xact_status%%'") > 0


def standby_lost_in_replay_wait(lab, tmp_path, budget=8):
    """standby2 stopped (-m immediate) while the replay wait has a question in flight to
    both standbys: during the cold transaction replay is paused on both (so neither has
    replayed the commit when the wait starts); once the wait has asked both, standby2 is
    stopped and only then standby1's replay resumed. Only standby2's entries are fenced;
    standby1 is waited for and reported replayed. facts: 'flags' (while standby2 is down),
    'on_standby1', 'fault' (the steps taken, None: never ran)."""
    def fault():
        for host in ('standby1', 'standby2'):
            pg_one(lab, host, 'SELECT pg_wal_replay_pause()::text')
        deadline = time.monotonic() + 60
        while not (replay_asked(lab, 'standby1') and replay_asked(lab, 'standby2')):
            if time.monotonic() > deadline:
                return None
            time.sleep(0.005)
        pg_ctl(lab, 'standby2', '-m', 'immediate', 'stop')
        pg_one(lab, 'standby1', 'SELECT pg_wal_replay_resume()::text')
        return 'paused both, standby2 stopped in the wait, standby1 resumed'

    when = When(lab, in_cold_transaction, fault)
    when.start()
    try:
        major, (proc, report) = _deploy(lab, tmp_path, 'g', ['CREATE TABLE %(t)s (id int);\nSELECT pg_sleep(1);'],
                                        {'fastdowntime_budget_seconds': budget}, tags='outage')
        happened = when.finish()
        flags = dict((process, pgbouncer_flags(lab, process[1])) for process in pgbouncer_processes(lab))
        on_standby1 = table_exists(lab, 'standby1', 'fdt_g%d' % major)
    finally:
        when.finish()
        for host in ('standby1', 'standby2'):
            try:
                pg_one(lab, host, 'SELECT pg_wal_replay_resume()::text')
            except psycopg2.Error:
                pass  # standby2 stopped
        pg_ctl(lab, 'standby2', 'start')
        wait_streaming(lab)
    return Run('standby_lost_in_wait', proc, report, 'aborted', ['fdt_g%d' % major], True,
               ['aborted in standby replay', 'standby2', 'connection lost', 'fdtdemo_ro on pgbouncer2'],
               flags=flags, on_standby1=on_standby1, fault=happened, major=major)


def _fault_in_cold_transaction(lab, tmp_path, name, letter, fault, seconds):
    """A deploy whose cold patch sleeps ``seconds``, and ``fault()`` run while it sleeps
    (every drain over); Run.facts['fault'] is what fault() returned (None: never ran)."""
    when = When(lab, in_cold_transaction, fault)
    when.start()
    try:
        major, (proc, report) = _deploy(lab, tmp_path, letter, ['CREATE TABLE %(t)s (id int);\nSELECT pg_sleep('
                                                                + str(seconds) + ');'], tags='outage')
    finally:
        happened = when.finish()
    return Run(name, proc, report, 'done', ['fdt_%s%d' % (letter, major)], True,
               ['every pgbouncer entry resumed and answering clients'], fault=happened)


def pgbouncer_restarted(lab, tmp_path, host='pgbouncer1'):
    """One pgbouncer process restarted inside the window (during the cold transaction):
    resume reconnects, finds nothing paused, and the probe checks it; the deploy is done.
    facts: 'restarted' (stopped_at, started_at), 'host'."""
    # The window stays open long enough for the new process to listen before the resume, also on a
    # loaded machine (a restart slower than the window is a pgbouncer down at resume: reported so).
    run = _fault_in_cold_transaction(lab, tmp_path, 'pgbouncer_restarted', 'r', lambda: restart_pgbouncer(lab, host),
                                     4)
    run.facts.update(restarted=run.facts['fault'], host=host)
    return run


def resume_entry(lab, host, entry):
    """RESUME ``entry`` on every pgbouncer process of ``host`` from an admin connection of
    its own (an operator, a health script): the time it was sent (epoch s)."""
    for dummy, socket_dir in pgbouncer_processes(lab, host):
        conn = psycopg2.connect(lab.dsn(dict(lab.pgbouncer(host), host=socket_dir)))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute('RESUME %s' % entry)
        conn.close()
    return time.time()


def resumed_by_someone_else(lab, tmp_path, host='pgbouncer1', entry='fdtdemo'):
    """Someone else RESUMEs ``entry`` on ``host`` inside the window (during the cold
    transaction): the deploy is done and says so in one warning naming pgbouncer and entry.
    facts: 'fault' (when it was resumed), 'host', 'entry'."""
    # 2 s of window, 1 s where pgbouncer1's query_wait_timeout = 3 s caps the budget at 2 s.
    run = _fault_in_cold_transaction(lab, tmp_path, 'resumed_by_someone_else', 'o',
                                     lambda: resume_entry(lab, host, entry),
                                     1 if 'pgbouncer_low_timeouts' in lab.shape else 2)
    run.words.append('RESUMED BY SOMEONE ELSE inside the window: %s on %s (' % (entry, host))
    run.facts.update(host=host, entry=entry)
    return run


def pgbouncer_restarted_in_drain(lab, tmp_path, host='pgbouncer1', budget=3):
    """A client holds pgbouncer2's drain until the deadline while ``host``, already paused,
    is restarted: the drain's rollback reconnects to the new process (nothing paused
    there) and resumes the rest; aborted in drain, nothing applied, every entry answering.
    facts: 'restarted' (stopped_at, started_at), 'host'."""
    def paused_on_host(lab_):
        return any(pgbouncer_flags(lab_, d).get('fdtdemo', (0, 0))[0] for dummy, d in pgbouncer_processes(lab_, host))

    def restart_once_confirmed():
        # After its own drain was confirmed (milliseconds after its PAUSE returns), while
        # pgbouncer2's held transaction keeps the drain going until its deadline (~2.5 s).
        # Restarted with its confirmation still in flight, the drain stops at once on the lost
        # connection instead (fine, but another scenario: a soak saw it 1 time in 15).
        time.sleep(0.3)
        return restart_pgbouncer(lab, host)

    when = When(lab, paused_on_host, restart_once_confirmed)
    with held_transaction(lab, 'pgbouncer2'):
        when.start()
        try:
            # blocking_sessions warn: past the outage's last look before its clock, as one begun after it.
            major, (proc, report) = _deploy(lab, tmp_path, 'd', ['CREATE TABLE %(t)s (id int);'],
                                            {'fastdowntime_budget_seconds': budget,
                                             'fastdowntime_blocking_sessions': 'warn'}, tags='outage')
        finally:
            restarted = when.finish()
    return Run('pgbouncer_restarted_in_drain', proc, report, 'aborted', ['fdt_d%d' % major], False,
               ['aborted in drain', 'pgbouncer2', 'fdt_app@', 'every pgbouncer entry resumed and answering clients'],
               restarted=restarted, host=host)


def pgbouncer_reloaded(lab, tmp_path, host='pgbouncer1'):
    """RELOAD of one pgbouncer process inside the window (logrotate's SIGHUP, a config
    push; pgbouncer issue 498: new clients failing after PAUSE + RELOAD): the deploy is done
    and every entry answers."""
    return _fault_in_cold_transaction(lab, tmp_path, 'pgbouncer_reloaded', 'o', lambda: reload_pgbouncer(lab, host), 1)


@contextmanager
def pgbouncer_setting(lab, host, setting, value):
    """``SET setting = value`` on every process of ``host`` for the block (pgbouncer's
    admin SET: no restart), the old value back afterwards."""
    consoles = []
    for dummy, socket_dir in pgbouncer_processes(lab, host):
        conn = psycopg2.connect(lab.dsn(dict(lab.pgbouncer(host), host=socket_dir)))
        conn.autocommit = True
        consoles.append(conn)
    try:
        with consoles[0].cursor() as cur:
            cur.execute('SHOW CONFIG')
            old = [row[1] for row in cur.fetchall() if row[0] == setting][0]
        for conn in consoles:
            conn.cursor().execute('SET %s = %s' % (setting, value))
        yield old
    finally:
        for conn in consoles:
            try:
                conn.cursor().execute('SET %s = %s' % (setting, old))
            finally:
                conn.close()


def low_query_wait_timeout(lab, tmp_path, host='pgbouncer1'):
    """query_wait_timeout = 3 s on one pgbouncer (the pgbouncer_low_timeouts shape, set at
    run time): the outage caps its budget at 2 s and the deploy is done within it."""
    with pgbouncer_setting(lab, host, 'query_wait_timeout', 3):
        major, (proc, report) = _deploy(lab, tmp_path, 'q', ['CREATE TABLE %(t)s (id int);'], tags='outage')
    run = Run('low_timeouts', proc, report, 'done', ['fdt_q%d' % major], True,
              ['every pgbouncer entry resumed and answering clients'])
    assert (run.report or {}).get('budget_ms') == 2000, (run.report or {}).get('budget_ms')
    return run


# Scenarios that cannot mean on a lab shape what they test, and why: {shape: {scenario: reason}}.
NOT_ON_SHAPE = {
    'pgbouncer_low_timeouts': {
        'pgbouncer_restarted': 'its cold patch holds the window 4 s so that the restarted pgbouncer listens again '
                               'before the resume, and pgbouncer1\'s query_wait_timeout = 3 s caps the budget at 2 s '
                               '(the outage aborts, as it must)',
    },
}


def not_on_shape(name, shape):
    """Why scenario ``name`` does not apply to the lab shape ``shape`` (its names: ['cascade', ...]),
    or None when it does."""
    for part in shape:
        reason = NOT_ON_SHAPE.get(part, {}).get(name)
        if reason:
            return '%s: %s' % (part, reason)
    return None


SCENARIOS = {
    'clean': clean,
    'bad_patch': bad_patch,
    'budget_abort': budget_abort,
    'budget_refused': budget_below_estimate,
    'lock_holder': lock_on_the_patched_table,
    'controller_killed': controller_killed,
    'standby_before': standby_cut_off_before,
    'standby_inside': standby_cut_off_inside,
    'pgbouncer_restarted': pgbouncer_restarted,
    'pgbouncer_restarted_in_drain': pgbouncer_restarted_in_drain,
    'pgbouncer_reloaded': pgbouncer_reloaded,
    'resumed_by_someone_else': resumed_by_someone_else,
    'low_timeouts': low_query_wait_timeout,
}
