# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""SHOW output is read by column name, so the columns newer pgbouncers add (and their order) change nothing.

Column sets: pgbouncer 1.18 (Debian 12: what the lab's pgbouncer returns, checked with psql) and the
current documentation (doc/usage.md of pgbouncer/pgbouncer: SHOW DATABASES gained server_lifetime, load_balance_hosts, max_client_connections,
current_client_connections; SHOW SERVERS and CLIENTS replication, prepared_statements, id; SHOW POOLS
cl_active_cancel_req, cl_waiting_cancel_req, sv_active_cancel, sv_being_canceled, load_balance_hosts).
"""
import pytest

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import drain as dr
from ansible_collections.fastdowntime.postgresql.plugins.module_utils import pgbouncer_console as pc

LABEL = 'pgbouncer1 (10.213.47.21:6432)'

COLUMNS = {
    '1.18': {
        'databases': ['name', 'host', 'port', 'database', 'force_user', 'pool_size', 'min_pool_size', 'reserve_pool',
                      'pool_mode', 'max_connections', 'current_connections', 'paused', 'disabled'],
        'servers': ['type', 'user', 'database', 'state', 'addr', 'port', 'local_addr', 'local_port', 'connect_time',
                    'request_time', 'wait', 'wait_us', 'close_needed', 'ptr', 'link', 'remote_pid', 'tls',
                    'application_name'],
        'clients': ['type', 'user', 'database', 'state', 'addr', 'port', 'local_addr', 'local_port', 'connect_time',
                    'request_time', 'wait', 'wait_us', 'close_needed', 'ptr', 'link', 'remote_pid', 'tls',
                    'application_name'],
        'pools': ['database', 'user', 'cl_active', 'cl_waiting', 'cl_active_cancel_req', 'cl_waiting_cancel_req',
                  'sv_active', 'sv_active_cancel', 'sv_being_canceled', 'sv_idle', 'sv_used', 'sv_tested', 'sv_login',
                  'maxwait', 'maxwait_us', 'pool_mode'],
    },
    'current': {
        'databases': ['name', 'host', 'port', 'database', 'force_user', 'pool_size', 'min_pool_size',
                      'reserve_pool_size', 'server_lifetime', 'pool_mode', 'load_balance_hosts', 'max_connections',
                      'current_connections', 'max_client_connections', 'current_client_connections', 'paused',
                      'disabled'],
        'servers': ['type', 'user', 'database', 'replication', 'state', 'addr', 'port', 'local_addr', 'local_port',
                    'connect_time', 'request_time', 'wait', 'wait_us', 'close_needed', 'ptr', 'link', 'remote_pid',
                    'tls', 'application_name', 'prepared_statements', 'id'],
        'clients': ['type', 'user', 'database', 'replication', 'state', 'addr', 'port', 'local_addr', 'local_port',
                    'connect_time', 'request_time', 'wait', 'wait_us', 'close_needed', 'ptr', 'link', 'remote_pid',
                    'tls', 'application_name', 'prepared_statements', 'id'],
        'pools': ['database', 'user', 'cl_active', 'cl_waiting', 'cl_active_cancel_req', 'cl_waiting_cancel_req',
                  'sv_active', 'sv_active_cancel', 'sv_being_canceled', 'sv_idle', 'sv_used', 'sv_tested', 'sv_login',
                  'maxwait', 'maxwait_us', 'pool_mode', 'load_balance_hosts'],
    },
}

# The values the decisions read; every other column gets a filler of the right kind.
VALUES = {
    'databases': [
        dict(name='fdtdemo', database='fdtdemo', paused=1, disabled=0),
        dict(name='fdtdemo_ro', database='fdtdemo', paused=0, disabled=1),
        dict(name='other', database='otherdb', paused=0, disabled=0),
        dict(name='pgbouncer', database='pgbouncer', paused=0, disabled=0),
    ],
    'servers': [
        dict(user='fdt_app', database='fdtdemo', state='active', local_addr='10.213.47.21', local_port=40001,
             ptr='0xs1', link='0xc1', remote_pid=777),
        dict(user='fdt_app', database='other', state='active', local_addr='10.213.47.21', local_port=40002,
             ptr='0xs2', link='0xc9', remote_pid=778),
    ],
    'clients': [
        dict(user='fdt_app', database='fdtdemo', state='active', addr='10.213.47.31', port=51234, ptr='0xc1',
             link='0xs1', application_name='demo'),
        dict(user='x', database='other', state='active', addr='10.213.47.32', port=5, ptr='0xc9', link='0xs2',
             application_name=''),
    ],
    'pools': [
        dict(database='fdtdemo', user='fdt_app', cl_waiting=3, maxwait=1, maxwait_us=250000),
        dict(database='other', user='fdt_app', cl_waiting=9, maxwait=30, maxwait_us=0),
    ],
}


def show(version, what, reverse=False):
    """SHOW rows as the console returns them (column name -> value), in that version's column order;
    ``reverse`` reorders the columns, which must change nothing either."""
    columns = COLUMNS[version][what]
    if reverse:
        columns = list(reversed(columns))
    rows = []
    for values in VALUES[what]:
        missing = set(values) - set(columns)
        assert not missing, (version, what, missing)  # the decisions only read columns every version has
        rows.append(dict((c, values.get(c, 0 if c.startswith(('cl_', 'sv_', 'max', 'current_', 'pool_size',
                                                              'prepared', 'id', 'wait')) else 'x'))
                         for c in columns))
    return pc.normalize_rows(rows)


@pytest.mark.parametrize('version', sorted(COLUMNS))
@pytest.mark.parametrize('reverse', [False, True])
def test_decisions_are_the_same_on_every_column_set(version, reverse):
    databases = show(version, 'databases', reverse)
    servers = show(version, 'servers', reverse)
    clients = show(version, 'clients', reverse)
    pools = show(version, 'pools', reverse)
    entries = pc.deploy_entries(databases, LABEL, db_name='fdtdemo')
    assert entries == ['fdtdemo', 'fdtdemo_ro']
    assert pc.entry_flags(databases, entries) == {'fdtdemo': {'paused': True, 'disabled': False},
                                                  'fdtdemo_ro': {'paused': False, 'disabled': True}}
    assert not pc.is_drained(databases, servers, ['fdtdemo'])
    assert pc.is_drained(databases, [s for s in servers if s['database'] != 'fdtdemo'], ['fdtdemo'])
    assert pc.max_wait_ms(pools, entries) == 1250.0
    found = dr.holders(servers, clients, ['fdtdemo'], LABEL)
    assert [(h['client_user'], h['client_addr'], h['client_port'], h['backend_pid']) for h in found] == \
        [('fdt_app', '10.213.47.31', 51234, 777)]


def test_newer_columns_are_kept_not_dropped():
    databases = show('current', 'databases')
    assert databases[0]['current_client_connections'] == 0 and 'load_balance_hosts' in databases[0]
