"""Assertions on the real lab hosts after converge (testinfra over SSH)."""

import json
import os
import subprocess
import sys
import tempfile

LAB_ID = int(os.environ.get('FDT_LAB_ID') or 0)
LAB_DIR = os.environ.get('FDT_LAB_DIR', '/var/lib/fastdowntime-lab' + ('' if LAB_ID == 0 else str(LAB_ID)))
NET = '10.213.%d.' % (47 + LAB_ID)  # as lab/labctl.py
PROJECT = os.environ.get('MOLECULE_PROJECT_DIRECTORY', os.path.join(os.path.dirname(__file__), '..', '..', '..'))
TOPOLOGY = json.loads(subprocess.run([sys.executable, os.path.join(PROJECT, 'lab', 'labctl.py'), 'describe'],
                                     capture_output=True, text=True, check=True).stdout)
NAMES = {h['addr']: name for name, h in TOPOLOGY['hosts'].items()}
# Every lab host over SSH, as Ansible reaches it (the lab inventory's addresses
# are templated, which testinfra's ansible backend does not resolve).
SSH_CONFIG = os.path.join(tempfile.mkdtemp(prefix='fdt-testinfra-'), 'ssh_config')
with open(SSH_CONFIG, 'w') as handle:
    handle.write('Host %s*\n  User root\n  IdentityFile %s\n  StrictHostKeyChecking no\n'
                 '  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n' % (NET, TOPOLOGY['ssh_key']))
testinfra_hosts = ['ssh://%s?ssh_config=%s' % (addr, SSH_CONFIG) for addr in sorted(NAMES)]
PSQL = '/usr/lib/postgresql/15/bin/psql -X -At -h {lab}/hosts/{name}/run -U postgres -d fdtdemo -c "{sql}"'
PGB = ("PGPASSWORD=admin-secret /usr/lib/postgresql/15/bin/psql -X -At -h {addr} -p 6432 "
       "-U fdt_admin -d pgbouncer -c 'SHOW DATABASES'")


def addr_of(host):
    return host.backend.get_hostname()


def name_of(host):
    return NAMES[addr_of(host)]


def psql(host, sql):
    return host.check_output('runuser -u postgres -- ' + PSQL.format(lab=LAB_DIR, name=name_of(host), sql=sql))


def health(host):
    """The demo app's /health answer, asked on the app host itself."""
    body = host.check_output('/usr/bin/python3 -c "import urllib.request as u; '
                             "print(u.urlopen('http://%s:8080/health', timeout=5).read().decode())\"" % addr_of(host))
    return json.loads(body)


def role(host):
    return TOPOLOGY['hosts'][name_of(host)]['role']


def test_every_host_runs_its_own_sshd(host):
    addr = addr_of(host)
    assert host.socket('tcp://%s:22' % addr).is_listening
    assert addr in host.check_output('hostname -I').split()


def test_database_hosts(host):
    if role(host) == 'primary':
        assert host.socket('tcp://%s10:5432' % NET).is_listening
        assert psql(host, 'SELECT pg_is_in_recovery()') == 'f'
        streaming = psql(host, "SELECT string_agg(application_name, ',' ORDER BY application_name) "
                               "FROM pg_stat_replication WHERE state = 'streaming'")
        assert streaming == 'standby1,standby2'
        slots = psql(host, "SELECT count(*) FROM pg_replication_slots WHERE active")
        assert slots == '2'
    elif role(host) == 'standby':
        assert psql(host, 'SELECT pg_is_in_recovery()') == 't'
        assert psql(host, "SELECT status FROM pg_stat_wal_receiver") == 'streaming'


def test_pgbouncer_hosts(host):
    if role(host) != 'pgbouncer':
        return
    addr = addr_of(host)
    assert host.socket('tcp://%s:6432' % addr).is_listening
    rows = [line.split('|') for line in host.check_output(PGB.format(addr=addr)).splitlines()]
    entries = {r[0]: (r[1], r[3]) for r in rows}
    standby = {NET + '21': NET + '11', NET + '22': NET + '12'}[addr]
    assert entries['fdtdemo'] == (NET + '10', 'fdtdemo')
    assert entries['fdtdemo_ro'] == (standby, 'fdtdemo')
    # Nothing may be left paused or disabled after a run.
    assert all(r[-2:] == ['0', '0'] for r in rows), rows


def test_app_servers_healthy(host):
    if role(host) != 'app':
        return
    assert health(host)['status'] == 'ok'


def test_every_database_has_the_lab_patches(host):
    """After converge (the fastdowntime playbook) the newest lab patch is on the primary and every standby."""
    if role(host) not in ('primary', 'standby'):
        return
    newest = psql(host, "SELECT format('%s-%s-%s', major, lpad(minor::text, 2, '0'), patch) "
                        "FROM fastdowntime.schema_revision ORDER BY major DESC, minor DESC, patch DESC LIMIT 1")
    assert newest == '2300-03-0'
    assert psql(host, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'fdt_item'::regclass "
                      "AND attname = 'author'") == '1'
    assert psql(host, "SELECT to_regclass('fdt_item_tag') IS NOT NULL") == 't'


def test_app_servers_see_the_new_revision(host):
    if role(host) != 'app':
        return
    assert health(host)['revision'] == '2300-03-0'


def test_the_timeline_report_says_done(host):
    if role(host) != 'primary':
        return
    report = json.loads(host.file(LAB_DIR + '/reports/fastdowntime-report.json').content_string)
    assert report['outcome'] in ('done', 'nothing to do')
    assert report['schema_version'] == 1
