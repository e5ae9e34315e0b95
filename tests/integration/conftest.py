"""The `lab` fixture: the real multi-host lab (lab/labctl.py), built once per session.

FDT_LAB_ID=N runs the tests on lab N (its own subnet, namespaces and directory),
so two test runs on one machine need not share a lab.

Integration tests talk to real PostgreSQL, pgbouncer, sshd and the demo app in
the lab's network namespaces. The lab needs root; run as another user, these
tests fail with that one-line reason rather than being skipped.
"""

import json
import os
import signal
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LABCTL = os.path.join(REPO, 'lab', 'labctl.py')
sys.path.insert(0, os.path.join(REPO, 'lab'))

from load import ClientLoad  # noqa: E402  (lab/ is put on sys.path just above)


def kill_tree(pid):
    """SIGKILL a process and all its descendants. Ansible's workers call setsid(),
    so killing the playbook's process group would leave the module running."""
    children = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                stat = open('/proc/%s/stat' % entry).read()
            except OSError:
                continue
            ppid = int(stat.rsplit(')', 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    for member in tree:
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Lab:
    """Endpoints and helpers for the running lab."""

    def __init__(self, topology):
        self.topology = topology
        self.hosts = topology['hosts']
        self.users = topology['users']
        self.db_name = topology['db_name']
        self.lab_dir = topology['lab_dir']
        self.ssh_key = topology['ssh_key']
        self.repo = REPO
        self.shape = topology.get('shape') or []

    def addr(self, host):
        return self.hosts[host]['addr']

    def pg(self, host, user='fdt_deploy', dbname=None):
        """An endpoint dict (postgres.ENDPOINT_SPEC shape) for a database host."""
        return {'name': host, 'host': self.addr(host), 'port': 5432, 'user': user,
                'password': self.users[user], 'dbname': dbname or self.db_name,
                'ssl_mode': 'disable', 'connect_timeout': 5}

    def pgbouncer(self, host, admin=True, entry=None):
        """The admin console (admin=True) or a client endpoint through an entry."""
        user = 'fdt_admin' if admin else 'fdt_app'
        return {'name': host, 'host': self.addr(host), 'port': 6432, 'user': user,
                'password': self.users[user],
                'dbname': 'pgbouncer' if admin else (entry or self.db_name),
                'ssl_mode': 'disable', 'connect_timeout': 5}

    def dsn(self, endpoint):
        return ' '.join('%s=%s' % (k, endpoint[k]) for k in ('host', 'port', 'user', 'password', 'dbname'))

    def client_dsn(self, pgbouncer_host, entry=None):
        return self.dsn(self.pgbouncer(pgbouncer_host, admin=False, entry=entry))

    def primary_dsn(self):
        return self.dsn(self.pg('primary'))

    def load(self, writers=('pgbouncer1', 'pgbouncer2'), readers=(), per_dsn=2, pause=0.01, connect_each=False):
        """A constant client load through the given pgbouncers (start it with `with`);
        ``connect_each``: a new connection for every transaction."""
        return ClientLoad(writers=[self.client_dsn(h) for h in writers],
                          readers=[self.client_dsn(h, self.db_name + '_ro') for h in readers],
                          per_dsn=per_dsn, pause=pause, connect_each=connect_each)

    def ns_exec(self, host, *cmd, check=True):
        """Run a command inside a lab host's namespace (to stop a service, cut a link...)."""
        return subprocess.run(['ip', 'netns', 'exec', self.topology['netns_prefix'] + host] + list(cmd), check=check,
                              capture_output=True, text=True)

    def inventory(self):
        return os.path.join(REPO, 'inventories', 'lab', 'hosts.yml')


def labctl(*args):
    return subprocess.run([sys.executable, LABCTL] + list(args), capture_output=True, text=True, check=False)


@pytest.fixture(scope='session')
def lab():
    if os.geteuid() != 0:
        pytest.fail('the lab tests need root (network namespaces, sshd): run them as root', pytrace=False)
    up = labctl('up')
    if up.returncode != 0:
        pytest.fail('the lab did not come up: %s%s' % (up.stdout, up.stderr), pytrace=False)
    return Lab(json.loads(labctl('describe').stdout))


@pytest.fixture
def lab_shape(lab):
    """``lab_shape('cascade')`` (or 'a,b'): the lab rebuilt in that shape
    (lab/labctl.py SHAPES), as a Lab; back to the default shape after the test.
    Group a shape's checks in few tests: each shape costs a rebuild."""
    shaped = []

    def bring(name):
        up = labctl('up', '--shape', name)
        if up.returncode != 0:
            pytest.fail('the lab did not come up in shape %s: %s%s' % (name, up.stdout, up.stderr), pytrace=False)
        shaped.append(name)
        return Lab(json.loads(labctl('describe').stdout))

    yield bring
    if shaped:
        up = labctl('up')
        assert up.returncode == 0, up.stdout + up.stderr


@pytest.fixture
def healthy_lab(lab):
    """The lab, rebuilt first if an earlier test left it damaged."""
    if labctl('status').returncode != 0:
        up = labctl('up')
        assert up.returncode == 0, up.stdout + up.stderr
    return lab


@pytest.fixture
def scratch(lab):
    """Drop what a deploy test's patches created and its revision table afterwards
    (scenarios.drop_scratch)."""
    yield
    from scenarios import drop_scratch
    drop_scratch(lab)


@pytest.fixture
def consoles(healthy_lab):
    """Both pgbouncers' admin consoles, opened; resumed and closed afterwards whatever the test did."""
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils import pgbouncer_console as pc
    opened = pc.open_consoles([pc.Console(healthy_lab.pgbouncer(name), db_name=healthy_lab.db_name)
                               for name in ('pgbouncer1', 'pgbouncer2')])
    yield opened
    for console in opened:
        try:
            console.resume()
        finally:
            console.close()  # restores server_login_retry too, where a test's drain lowered it
