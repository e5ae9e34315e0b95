# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The dead-man switch's daemon on the pgbouncer host: pidfile, double fork, syslog.

The decisions and the polling loop are ``watchdog`` (pure); this is the
process around them, on the pgbouncer host, with its system python3:

- ``pidfile_path(state_dir, endpoint, watched)``: one pidfile per pgbouncer process and
  database (or entries) watched, ``pidfile_paths`` all of a process's; it
  holds ``{'pid', 'start_time' (clock ticks since boot, /proc), 'config'}`` so a
  recycled pid is never signalled;
- ``current(path)`` -> (record or None, alive); ``disarm(path)``;
- ``arm(endpoint, config, path, log_path, label)``: a daemon (double fork, new
  session, standard streams on /dev/null, every inherited descriptor closed,
  so the SSH session does not wait for it) running ``watchdog.run`` until it
  exits; returns its pid (0 when it did not start).

``config``: ``entries`` (watched), ``budget_seconds``, ``grace_seconds``,
``max_lifetime_seconds``, ``poll_seconds``, ``console`` (user@host:port, so a
changed console re-arms) and ``queue_timeout_seconds`` (the process's first
queued-client timeout when it was armed, or None: watchdog.countdown_seconds).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import re
import signal
import syslog
import time

from ansible_collections.fastdowntime.postgresql.plugins.module_utils.pgbouncer_console import (
    LOGIN_RETRY_IN_WINDOW, LOGIN_RETRY_SETTING, Console, login_retry_to_lower, parse_config)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import one_line
from ansible_collections.fastdowntime.postgresql.plugins.module_utils import watchdog

SYSLOG_IDENT = 'fastdowntime-watchdog'


# -- pidfile ---------------------------------------------------------------
def _pidfile_base(endpoint):
    """The pidfile name of one pgbouncer process, without what it watches nor '.pid'."""
    where = endpoint.get('unix_socket_dir') or (endpoint['host'] if str(endpoint['host']).startswith('/') else '')
    suffix = '-' + re.sub(r'[^A-Za-z0-9]+', '_', where).strip('_') if where else ''
    return 'fastdowntime-pgbouncer-watchdog-%s%s' % (endpoint['port'], suffix)


def pidfile_name(endpoint, watched=()):
    """One pidfile per pgbouncer process and what its switch watches: by port,
    by unix socket directory where several processes share the port
    (so_reuseport), and by ``watched`` - the entries the deploy names, else
    its database ([name, ...]; () for none: ``<base>.pid``) - so the deploys
    of two databases of one cluster keep a switch each (one replaced the
    other's when they shared the pidfile). A key over 48 characters is cut,
    with a hash of the whole."""
    key = re.sub(r'[^A-Za-z0-9]+', '_', '_'.join(sorted(watched))).strip('_')
    if len(key) > 48:
        key = '%s_%s' % (key[:39], hashlib.sha1(','.join(sorted(watched)).encode('utf-8')).hexdigest()[:8])
    return '%s%s.pid' % (_pidfile_base(endpoint), '.' + key if key else '')


def process_start_time(pid):
    """Start time (clock ticks since boot) of a pid from /proc, or None when it is gone."""
    try:
        with open('/proc/%d/stat' % pid) as handle:
            stat = handle.read()
    except (IOError, OSError):
        return None
    # The command name may contain spaces: fields resume after its closing ')'.
    fields = stat[stat.rindex(')') + 2:].split()
    if fields[0] == 'Z':
        return None
    return fields[19]


def read_pidfile(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (IOError, OSError, ValueError):
        return None


def live_daemon(record):
    """True when the pidfile's process is alive and is the one that wrote it."""
    if not record or not record.get('pid'):
        return False
    return process_start_time(int(record['pid'])) == record.get('start_time')


def stop_daemon(record, timeout=5.0):
    pid = int(record['pid'])
    if not live_daemon(record):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not live_daemon(record):
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


def remove_file(path):
    try:
        os.unlink(path)
    except OSError:
        pass


# -- the daemon --------------------------------------------------------------

class Logger:
    """Writes each line to syslog and to the log file."""

    def __init__(self, path, label):
        self.path = path
        self.label = label
        syslog.openlog(SYSLOG_IDENT, syslog.LOG_PID, syslog.LOG_DAEMON)

    def __call__(self, message):
        line = '%s [%d] %s: %s' % (time.strftime('%Y-%m-%dT%H:%M:%S%z'), os.getpid(), self.label, message)
        syslog.syslog(syslog.LOG_WARNING, '%s: %s' % (self.label, message))
        try:
            with open(self.path, 'a') as handle:
                handle.write(line + '\n')
        except (IOError, OSError):
            pass


def daemon_main(endpoint, config, pid_path, log):
    """The watchdog process: polls, decides, resumes, cleans up."""
    console = Console(endpoint, databases=config['entries'])
    # 'retry': server_login_retry as first read (before the outage lowers it to 0 for its window).
    state = {'open': False, 'retry': None}

    def open_console():
        if not state['open']:
            console.open()
            state['open'] = True
            if state['retry'] is None:
                state['retry'] = login_retry_to_lower(console.config)

    def read_flags():
        try:
            open_console()
            return dict((entry, flag['paused']) for entry, flag in console.flags().items())
        except Exception:
            console.close()
            state['open'] = False
            return None

    def resume_entries(entries):
        open_console()
        console.resume(entries)

    def restore_login_retry():
        """A controller that died after lowering server_login_retry
        (pgbouncer_console.lower_login_retry) left it at 0: set it back to the
        value first read. Best effort, logged; never when someone set another value."""
        if state['retry'] is None:
            return
        try:
            open_console()
            now = parse_config(console.show('CONFIG')).get(LOGIN_RETRY_SETTING, '').strip()
            if now == LOGIN_RETRY_IN_WINDOW:
                console.command('SET %s = %s' % (LOGIN_RETRY_SETTING, state['retry']))
                log('%s was left at %s (its deploy did not set it back): set back to %s'
                    % (LOGIN_RETRY_SETTING, now, state['retry']))
        except Exception as exc:
            log('%s not set back to %s: %s' % (LOGIN_RETRY_SETTING, state['retry'], one_line(exc)))

    def on_term(signum, frame):
        log('disarmed (signal %d): exiting' % signum)
        finish()
        os._exit(0)

    def finish():
        restore_login_retry()
        record = read_pidfile(pid_path)
        if record and record.get('pid') == os.getpid():
            remove_file(pid_path)
        console.close()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    dog = watchdog.Watchdog(config['entries'], config['budget_seconds'], config['grace_seconds'],
                            config['max_lifetime_seconds'], started_at=time.monotonic(),
                            queue_timeout_seconds=config.get('queue_timeout_seconds'))
    log('armed: watching %s (countdown %.1f s once paused, lifetime %.0f s)'
        % (', '.join(config['entries']), dog.countdown, dog.max_lifetime))
    try:
        watchdog.run(dog, read_flags, resume_entries, log, time.monotonic, time.sleep, config['poll_seconds'])
    except Exception as exc:  # the daemon has nobody to raise to: log it
        log('crashed: %s' % one_line(exc))
    finally:
        finish()


def spawn(endpoint, config, pid_path, log_path, label):
    """Double fork a session leader-less daemon; return its pid once its pidfile is written."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(read_end)
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            os.chdir('/')
            os.umask(0o022)
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            # Drop every inherited descriptor (the SSH session's pipes above all).
            os.closerange(3, write_end)
            os.closerange(write_end + 1, 65536)
            record = {'pid': os.getpid(), 'start_time': process_start_time(os.getpid()), 'config': config}
            tmp = pid_path + '.tmp'
            with open(tmp, 'w') as handle:
                json.dump(record, handle)
            os.rename(tmp, pid_path)
            os.write(write_end, str(os.getpid()).encode())
            os.close(write_end)
            daemon_main(endpoint, config, pid_path, Logger(log_path, label))
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(child, 0)
    chunks = []
    while True:
        chunk = os.read(read_end, 64)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_end)
    text = b''.join(chunks).decode() or '0'
    return int(text)


# -- what the module asks ---------------------------------------------------------

def pidfile_path(state_dir, endpoint, watched=()):
    return os.path.join(state_dir, pidfile_name(endpoint, watched))


def pidfile_paths(state_dir, endpoint):
    """Every pidfile of the pgbouncer process ``endpoint`` in ``state_dir``,
    whatever its switch watches (sorted; [] when the directory is missing)."""
    base = _pidfile_base(endpoint)
    try:
        names = os.listdir(state_dir)
    except OSError:
        return []
    return [os.path.join(state_dir, name) for name in sorted(names)
            if name == base + '.pid' or name.startswith(base + '.') and name.endswith('.pid')]


def current(path):
    """(the pidfile's record or None, whether its daemon is alive)."""
    record = read_pidfile(path)
    return record, live_daemon(record)


def disarm(path):
    """Stop the daemon of the pidfile (if alive) and remove the pidfile; returns its record or None."""
    record, alive = current(path)
    if alive:
        stop_daemon(record)
    remove_file(path)
    return record


def arm(endpoint, config, path, log_path, label):
    """Replace any daemon of the pidfile by a new one watching with ``config``;
    creates the pidfile's and the log's directories (raises OSError). Returns
    the new daemon's pid, 0 when it did not start."""
    disarm(path)
    for directory in (os.path.dirname(path), os.path.dirname(log_path)):
        if directory and not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
    return spawn(endpoint, config, path, log_path, label)
