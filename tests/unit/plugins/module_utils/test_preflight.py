"""Decision logic of the pre-flight checks: pure functions over rows, no database."""
import os

import pytest

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import preflight as pf
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.budget import Budget
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.patchset import load_patch_set, plan

FAIL, WARN, PASS = pf.FAIL, pf.WARN, pf.PASS


def write(directory, name, text):
    with open(os.path.join(directory, name), 'w') as handle:
        handle.write(text)


@pytest.fixture
def patch_set(tmp_path):
    write(tmp_path, 'patch-0001-00-0.sql', 'CREATE TABLE a (id int);')
    write(tmp_path, 'patch-0001-01-0.sql', 'CREATE INDEX CONCURRENTLY a_id ON a (id);')
    write(tmp_path, 'patch-0001-02-0.sql', 'ALTER TABLE a ADD COLUMN b text; COMMENT ON TABLE a IS $$x$$;')
    return load_patch_set(str(tmp_path))


# -- connection / privileges ---------------------------------------------------

def test_connection_failure_is_a_failed_finding_naming_the_host():
    found = pf.decide_connection('standby1 (10.0.0.11:5432)', 'standby1 (10.0.0.11:5432): cannot connect: refused')
    assert found['status'] == FAIL
    assert 'standby1' in found['summary'] and 'fastdowntime_pg_' in found['action']
    assert pf.decide_connection('standby1', None)['status'] == PASS


def test_a_read_only_deploy_session_is_refused_naming_where_it_is_set_and_the_statement_undoing_it():
    label = 'primary (10.0.0.10:5432)'
    assert pf.decide_read_only(label, {'usename': 'deploy', 'read_only': False}, 'app') is None
    fixes = {
        'user': 'SET default_transaction_read_only = off; ALTER ROLE deploy RESET default_transaction_read_only',
        'database': 'SET default_transaction_read_only = off; ALTER DATABASE app RESET default_transaction_read_only',
        'database user': 'SET default_transaction_read_only = off; ALTER ROLE deploy IN DATABASE app RESET '
                         'default_transaction_read_only',
        'configuration file': 'set default_transaction_read_only = off in the configuration of %s and reload it'
                              % label,
    }
    for source, fix in fixes.items():
        found = pf.decide_read_only(label, {'usename': 'deploy', 'read_only': True, 'read_only_source': source}, 'app')
        assert found['status'] == FAIL and found['check'] == 'privileges' and found['host'] == label
        assert found['summary'] == ("%s: the deploy user deploy's sessions are read-only (default_transaction_read_only "
                                    "= on, pg_settings source: %s): every cold patch would fail inside the window"
                                    % (label, source))
        assert found['action'].endswith(fix), found['action']


def test_superuser_passes_without_roles():
    assert pf.decide_privileges('p', {'usename': 'u', 'superuser': True}, True, 'db')['status'] == PASS


def test_documented_privileges_pass_and_missing_ones_are_named_with_grants():
    full = {'usename': 'deploy', 'superuser': False, 'pg_monitor': True, 'pg_signal_backend': True,
            'create_on_database': True}
    assert pf.decide_privileges('p', full, True, 'db')['status'] == PASS
    lacking = dict(full, pg_signal_backend=False, create_on_database=False)
    found = pf.decide_privileges('p', lacking, True, 'db')
    assert found['status'] == FAIL
    assert 'pg_signal_backend' in found['summary'] and 'CREATE on database db' in found['summary']
    assert 'GRANT pg_signal_backend TO deploy' in found['action']
    assert 'GRANT CREATE ON DATABASE db TO deploy' in found['action']
    # A standby needs pg_monitor only.
    standby = {'usename': 'deploy', 'superuser': False, 'pg_monitor': True}
    assert pf.decide_privileges('s', standby, False, 'db')['status'] == PASS
    assert pf.decide_privileges('s', dict(standby, pg_monitor=False), False, 'db')['status'] == FAIL


# -- patches ---------------------------------------------------------------------

def test_pending_patches_listed_in_revision_order_with_kind(patch_set):
    found = pf.decide_patches('p', plan(patch_set, {}))
    assert found['status'] == PASS
    assert [(p['name'], p['kind']) for p in found['evidence']['pending']] == [
        ('patch-0001-00-0.sql', 'cold'), ('patch-0001-01-0.sql', 'hot'), ('patch-0001-02-0.sql', 'cold')]
    # Numbered order: the hot patch runs after the window, the cold one after it waits for the next deploy.
    assert found['summary'] == ('p: pending: cold: patch-0001-00-0.sql (cold); post-window hot: '
                                'patch-0001-01-0.sql (hot); next deploy: patch-0001-02-0.sql (cold)')
    assert [p['phase'] for p in found['evidence']['phases']] == [
        'cold', 'post-window hot', 'next deploy']


def test_drift_and_revisions_without_file_both_fail_in_one_finding(patch_set):
    applied = {(1, 0, 0): 'f' * 64, (9, 9, 9): 'a' * 64}
    found = pf.decide_patches('p', plan(patch_set, applied))
    assert found['status'] == FAIL
    assert 'patch-0001-00-0.sql' in found['summary']
    assert 'no file (it is ahead of the patch set): 9-09-9' in found['summary']
    assert 'new patch' in found['action'] and 'tree' in found['action']


def test_a_renamed_applied_patch_is_named_with_its_applied_revision_in_the_one_line(patch_set):
    moved = next(p for p in patch_set.patches if p.name == 'patch-0001-02-0.sql')
    applied = dict((p.revision, p.sha256) for p in patch_set.patches if p is not moved)
    applied[(1, 1, 9)] = moved.sha256
    found = pf.decide_patches('p', plan(patch_set, applied))
    assert found['status'] == FAIL
    assert found['summary'] == ('p: the database has revisions with no file (it is ahead of the patch set): 1-01-9; '
                                'patch-0001-02-0.sql has the checksum of the applied 1-01-9: renamed?; '
                                'pending: cold: patch-0001-02-0.sql (cold)')
    assert found['action'] == 'restore its name (patch-0001-01-9.sql)'
    assert found['evidence']['renamed'] == [{'name': 'patch-0001-02-0.sql', 'applied_revision': '1-01-9',
                                             'applied_name': 'patch-0001-01-9.sql'}]


def test_nothing_pending_passes_and_says_no_outage(patch_set):
    applied = dict((p.revision, p.sha256) for p in patch_set.patches)
    found = pf.decide_patches('p', plan(patch_set, applied))
    assert found['status'] == PASS and 'no outage needed' in found['summary']


def test_broken_patch_set_fails():
    found = pf.decide_patches('p', error='patch-0001-00-0.sql line 3: does not parse')
    assert found['status'] == FAIL and 'line 3' in found['summary']


# -- standbys --------------------------------------------------------------------

PRIMARY = {'label': 'primary', 'in_recovery': False, 'system_identifier': '42'}
_PIDS = iter(range(100, 10000))


def standby(name, status='streaming', **over):
    state = {'endpoint': {'name': name, 'host': '10.0.0.%d' % (len(name) + 10)}, 'label': name, 'reachable': True,
             'in_recovery': True, 'system_identifier': '42', 'addresses': set(), 'override': None,
             'receiver': {'status': status, 'slot_name': None, 'conninfo': 'application_name=%s' % name,
                          'cluster_name': ''}}
    state.update(over)
    return state


def rep(name, state='streaming', **over):
    return dict({'pid': next(_PIDS), 'application_name': name, 'client_addr': None, 'state': state,
                 'slot_name': None, 'sync_state': 'async', 'replay_lsn': '0/3000000'}, **over)


def test_every_standby_streaming_and_counted_passes():
    found = pf.decide_standbys(PRIMARY, [standby('s1'), standby('s2')], {'primary': [rep('s1'), rep('s2')]})
    assert found['status'] == PASS


def test_stopped_standby_fails():
    found = pf.decide_standbys(PRIMARY, [standby('s1', reachable=False), standby('s2')], {'primary': [rep('s2')]})
    assert found['status'] == FAIL
    assert 's1: not reached' in found['summary']


def test_promoted_foreign_and_not_streaming_standbys_fail():
    found = pf.decide_standbys(PRIMARY, [standby('s1', in_recovery=False), standby('s2', system_identifier='7'),
                                         standby('s3', status='waiting')],
                               {'primary': [rep('s1'), rep('s2'), rep('s3')]})
    assert found['status'] == FAIL
    assert 's1 is not in recovery' in found['summary']
    assert 's2 replicates another cluster' in found['summary']
    assert 's3: WAL receiver is waiting' in found['summary']


def test_unlisted_streaming_standby_fails_naming_its_row():
    # tryit8 #3: the row no inventory standby matches is named, where the operator finds it again
    found = pf.decide_standbys(PRIMARY, [standby('s1')], {'primary': [
        rep('s1', client_addr='10.0.0.12'), rep('s9', client_addr='10.0.0.19', slot_name='s9', sync_state='sync')]})
    assert found['status'] == FAIL
    assert found['summary'] == ("1 streaming standby(s) of this primary are not in the inventory (the rows of "
                                "pg_stat_replication no inventory standby matches: application_name 's9' from "
                                "10.0.0.19 (slot s9, streaming, sync) on primary)")
    assert found['action'].startswith('add it to fastdowntime_standbys (fastdowntime_pg_host: its own address')
    assert [r['application_name'] for r in found['evidence']['not_in_inventory']] == ['s9']


def test_an_unlisted_standby_with_the_default_name_is_named_by_its_address():
    rows = [rep('walreceiver', client_addr='10.0.0.12'), rep('walreceiver', client_addr='10.0.0.13')]
    found = pf.decide_standbys(PRIMARY, [walreceiver('s1')], {'primary': rows})  # s1 at 10.0.0.12
    assert found['status'] == FAIL
    assert found['evidence']['standbys'][0]['identified_by'] == 'client_addr 10.0.0.12'
    assert "matches: application_name 'walreceiver' from 10.0.0.13 (streaming, async) on primary)" in found['summary']
    assert 'give each standby' not in found['action']  # told apart by their addresses


def test_rows_that_cannot_be_told_apart_are_all_named_and_said_so():
    # one_address, default names, no slots: two rows alike, one inventory standby
    rows = [rep('walreceiver', client_addr='10.0.0.99'), rep('walreceiver', client_addr='10.0.0.99')]
    found = pf.decide_standbys(PRIMARY, [walreceiver('s1')], {'primary': rows})
    assert found['status'] == FAIL
    assert ("1 streaming standby(s) of this primary are not in the inventory: 1 of the 2 rows of pg_stat_replication "
            "no inventory standby matches (application_name 'walreceiver' from 10.0.0.99 (streaming, async) on "
            "primary - like 1 other row(s) there, without a slot; application_name 'walreceiver' from 10.0.0.99 "
            "(streaming, async) on primary - like 1 other row(s) there, without a slot) are not s1's - which ones "
            "cannot be told from these rows") in found['summary']
    assert 'give each standby a replication slot (primary_slot_name)' in found['action']
    # with slots, the one left is named by its slot
    rows = [rep('walreceiver', client_addr='10.0.0.99', slot_name='s1'),
            rep('walreceiver', client_addr='10.0.0.99', slot_name='s2')]
    found = pf.decide_standbys(PRIMARY, [walreceiver('s1', 's1')], {'primary': rows})
    assert "matches: application_name 'walreceiver' from 10.0.0.99 (slot s2, streaming, async) on primary)" in \
        found['summary'] and 'give each standby' not in found['action']


def test_an_unlisted_cascaded_standby_is_named_on_its_upstream_standby():
    s1 = standby('s1', upstream='primary')
    found = pf.decide_standbys(PRIMARY, [s1], {'primary': [rep('s1')], 's1': [
        rep('s2', client_addr='10.0.0.12', client_hostname='s2.example')]})
    assert found['status'] == FAIL
    assert ("matches: application_name 's2' from 10.0.0.12 (s2.example) (streaming, async) on s1 (a cascade: it "
            "streams from s1, not from the primary))") in found['summary']
    assert found['evidence']['not_in_inventory'][0]['upstream'] == 's1'


def test_an_unlisted_standby_with_an_inventory_standbys_name_is_told_by_its_address():
    # patroni #3545's kind: another cluster's leader streams with the application_name of a member
    rows = [rep('s1', client_addr='10.0.0.12', slot_name='s1'), rep('s1', client_addr='10.0.0.77')]
    found = pf.decide_standbys(PRIMARY, [standby('s1', receiver={'status': 'streaming', 'slot_name': 's1',
                                                                 'conninfo': 'application_name=s1'})],
                               {'primary': rows})
    assert found['evidence']['standbys'][0]['identified_by'] == 'slot s1'
    assert "matches: application_name 's1' from 10.0.0.77 (streaming, async) on primary)" in found['summary']


def test_walsenders_that_are_no_standby_are_not_called_missing_standbys():
    # a subscription or CDC (logical slot), pg_basebackup (backup, and its WAL stream), pg_receivewal
    others = [rep('sub1', slot_type='logical', slot_name='sub1'), rep('pg_basebackup', state='backup'),
              rep('pg_basebackup', replay_lsn=None), rep('pg_receivewal', replay_lsn=None)]
    found = pf.decide_standbys(PRIMARY, [standby('s1')], {'primary': [rep('s1')] + others})
    assert found['status'] == PASS, found['summary']
    assert found['evidence']['not_in_inventory'] == []


def test_an_unreached_inventory_standby_may_own_an_unmatched_row():
    # s1 not reached, one row streaming: it may be s1's - no missing standby claimed
    found = pf.decide_standbys(PRIMARY, [standby('s1', reachable=False), standby('s2')],
                               {'primary': [rep('s1'), rep('s2')]})
    assert 'not in the inventory' not in found['summary'] and 's1: not reached' in found['summary']
    found = pf.decide_standbys(PRIMARY, [standby('s1', reachable=False), standby('s2')],
                               {'primary': [rep('s1'), rep('s2'), rep('s3')]})
    assert "1 of the 2 rows of pg_stat_replication no inventory standby matches (application_name 's1'" in \
        found['summary'] and "are not s1's" in found['summary']


def test_primary_in_recovery_fails_and_unreached_primary_warns():
    assert pf.decide_standbys(dict(PRIMARY, in_recovery=True), [], {})['status'] == FAIL
    assert pf.decide_standbys(None, [standby('s1')], {})['status'] == WARN


def walreceiver(name, slot=None):
    """A standby with PostgreSQL's default names: no application_name, no cluster_name."""
    return standby(name, receiver={'status': 'streaming', 'slot_name': slot, 'conninfo': 'user=repl host=10.0.0.1',
                                   'cluster_name': ''}, addresses={'10.0.0.%d' % (len(name) + 10)})


def test_default_walreceiver_names_from_one_address_pass_by_slot():
    rows = [rep('walreceiver', client_addr='10.0.0.99', slot_name='s2'),
            rep('walreceiver', client_addr='10.0.0.99', slot_name='s1')]
    found = pf.decide_standbys(PRIMARY, [walreceiver('s1', 's1'), walreceiver('s2', 's2')], {'primary': rows})
    assert found['status'] == PASS, found['summary']
    assert [s['identified_by'] for s in found['evidence']['standbys']] == ['slot s1', 'slot s2']


def test_default_names_one_address_no_slots_pass_by_elimination():
    rows = [rep('walreceiver', client_addr='10.0.0.99'), rep('walreceiver', client_addr='10.0.0.99')]
    found = pf.decide_standbys(PRIMARY, [walreceiver('s1'), walreceiver('s2')], {'primary': rows})
    assert found['status'] == PASS, found['summary']
    assert found['evidence']['standbys'][0]['identified_by'].startswith('elimination')


def test_a_missing_row_fails_naming_the_override():
    rows = [rep('walreceiver', client_addr='10.0.0.99'), rep('walreceiver', client_addr='10.0.0.99', state='catchup')]
    found = pf.decide_standbys(PRIMARY, [walreceiver('s1'), walreceiver('s2')], {'primary': rows})
    assert found['status'] == FAIL
    assert 'fastdowntime_standby_application_name' in found['action']


def test_cascade_passes_when_the_chain_ends_at_the_primary():
    s1 = standby('s1', upstream='primary')
    s2 = standby('s2', upstream='s1')
    found = pf.decide_standbys(PRIMARY, [s1, s2], {'primary': [rep('s1')], 's1': [rep('s2')]})
    assert found['status'] == PASS, found['summary']
    assert 's2 via s1' in found['summary']


def test_a_cascaded_standby_behind_a_stopped_upstream_is_named_through_it():
    # tryit 7b: standby1 stopped, standby2 streams from it - one cause, named once, one fix
    s1 = dict(standby('s1'), reachable=False)
    s2 = standby('s2', status=None, configured_upstream='s1')
    found = pf.decide_standbys(PRIMARY, [s1, s2], {'primary': []})
    assert found['status'] == FAIL
    assert found['summary'] == ('s1: not reached, its recovery state is unknown; s2: WAL receiver is not running: '
                                'its upstream s1 is not reached (a cascade: s2 gets no WAL through it)')
    assert found['action'] == 'start s1 (or remove it from fastdowntime_standbys)'
    # its upstream streaming: the receiver's own problem, as before
    s1 = standby('s1')
    assert 'check primary_conninfo and the log of s2' in pf.decide_standbys(
        PRIMARY, [s1, s2], {'primary': [rep('s1')]})['action']


def test_the_configured_upstream_is_read_from_primary_conninfo():
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils import replication
    assert replication.configured_sender('user=r password=x host=10.0.0.11 port=5433 application_name=s2') == {
        'sender_host': '10.0.0.11', 'sender_port': 5433}
    assert replication.configured_sender("host='db 1'") == {'sender_host': 'db 1', 'sender_port': 5432}
    assert replication.configured_sender('postgresql://rep@[fd00::11]:5433/x') == {
        'sender_host': 'fd00::11', 'sender_port': 5433}
    assert replication.configured_sender('host=/run/postgresql') is None and replication.configured_sender(None) is None


def test_cascade_loop_fails():
    s1 = standby('s1', upstream='s2')
    s2 = standby('s2', upstream='s1')
    found = pf.decide_standbys(PRIMARY, [s1, s2], {'primary': [], 's1': [rep('s2')], 's2': [rep('s1')]})
    assert found['status'] == FAIL and 'loops' in found['summary']


def test_synchronous_setup_is_reported():
    sync = {'text': "synchronous_standby_names = 's1', synchronous_commit = remote_apply, synchronous now: s1"}
    found = pf.decide_standbys(PRIMARY, [standby('s1')], {'primary': [rep('s1', sync_state='sync')]}, sync)
    assert found['status'] == PASS and 'remote_apply' in found['summary']
    assert found['evidence']['standbys'][0]['sync_state'] == 'sync'


# -- replication lag ---------------------------------------------------------------

def test_lag_limits_in_seconds_and_bytes():
    ok, slow, far, broken = pf.decide_lag([
        {'label': 'a', 'catch_up_seconds': 0.01, 'bytes_behind': 100},
        {'label': 'b', 'catch_up_seconds': None, 'bytes_behind': 100},
        {'label': 'c', 'catch_up_seconds': 0.5, 'bytes_behind': 2000},
        {'label': 'd', 'error': 'not in recovery'},
    ], max_lag_seconds=5, max_lag_bytes=1000)
    assert ok['status'] == PASS
    assert slow['status'] == FAIL and 'within 5s' in slow['summary']
    assert far['status'] == FAIL and '2000 bytes behind (limit 1000)' in far['summary']
    assert broken['status'] == FAIL and 'not in recovery' in broken['summary']


# -- transactions --------------------------------------------------------------------

def session(pid, xact, state='active', user='app'):
    return {'pid': pid, 'usename': user, 'client_addr': '10.0.0.5', 'state': state, 'xact_seconds': xact,
            'application_name': 'x', 'query': 'SELECT 1'}


def test_long_transaction_fails_with_the_pid_to_terminate():
    found = pf.decide_transactions('p', [session(7, 61.0), session(8, 1.0)], [], 60)
    assert found['status'] == FAIL
    assert 'pid 7' in found['summary'] and 'pid 8' not in found['summary']
    assert found['summary'].startswith('p: 1 transaction(s) open longer than fastdowntime_max_transaction_seconds '
                                       '(60 s): pid 7')
    assert 'pg_terminate_backend(7)' in found['action']


def test_young_idle_in_transaction_and_prepared_warn_old_prepared_fails():
    idle_row = dict(session(7, 2.0, state='idle in transaction'), state_seconds=1.5)
    idle = pf.decide_transactions('p', [idle_row], [], 60)
    assert idle['status'] == WARN and 'idle-in-transaction' in idle['summary']
    # A pause between two statements of a transaction is ordinary traffic.
    between = pf.decide_transactions('p', [dict(idle_row, state_seconds=0.01)], [], 60)
    assert between['status'] == PASS
    young = pf.decide_transactions('p', [], [{'gid': 'g1', 'owner': 'o', 'age_seconds': 1.0}], 60)
    assert young['status'] == WARN
    old = pf.decide_transactions('p', [], [{'gid': 'g1', 'owner': 'o', 'age_seconds': 120.0}], 60)
    assert old['status'] == FAIL and "ROLLBACK PREPARED 'g1'" in old['action']


def test_no_transactions_pass_and_null_state_is_tolerated():
    found = pf.decide_transactions('p', [session(7, None, state=None)], [], 60)
    assert found['status'] == PASS


# -- direct connections -----------------------------------------------------------------

def conn(user, addr, pid):
    return {'pid': pid, 'usename': user, 'client_addr': addr, 'state': 'idle', 'application_name': ''}


# pgbouncer's server connections, by backend pid (SHOW SERVERS remote_pid).
BOUNCER_PIDS = {101, 102}


def test_pgbouncer_server_connections_and_system_users_are_ignored():
    rows = [conn('app', '10.0.0.21', 101), conn('app', None, 102), conn('deploy', '10.0.0.1', 7)]
    found = pf.decide_direct_connections('p', rows, BOUNCER_PIDS, {'deploy'}, set(), set())
    assert found['status'] == PASS
    assert len(found['evidence']['pgbouncer']) == 2 and len(found['evidence']['system']) == 1


def test_fragile_and_unknown_fail_killable_warns():
    rows = [conn('librarian', '10.0.0.9', 1), conn('stranger', None, 2), conn('cron', '10.0.0.8', 3)]
    found = pf.decide_direct_connections('p', rows, BOUNCER_PIDS, {'deploy'}, {'librarian'}, {'cron'})
    assert found['status'] == FAIL
    assert 'fragile users connected directly: librarian@10.0.0.9' in found['summary']
    assert 'stranger@local socket' in found['summary']
    assert 'stop them first' in found['action']
    killable = pf.decide_direct_connections('p', [conn('cron', '10.0.0.8', 3)], BOUNCER_PIDS, set(), set(), {'cron'})
    assert killable['status'] == WARN and 'terminated' in killable['summary']


def test_connections_from_a_pgbouncer_host_point_to_its_consoles_never_to_killable_users():
    rows = [conn('fdt_app', '10.0.0.21', 201), conn('fdt_app', '10.0.0.22', 202), conn('stranger', '10.0.0.9', 5)]
    hosts = {'10.0.0.21': ('pgb1 (10.0.0.21)', True), '10.0.0.22': ('pgb2 (10.0.0.22)', False)}
    found = pf.decide_direct_connections('p', rows, BOUNCER_PIDS, {'deploy'}, set(), set(), pgbouncer_hosts=hosts)
    # pgb1's consoles all answered: a process nobody declared; pgb2's console failed: already its own finding.
    assert found['summary'] == (
        'p: unknown direct connections (not through pgbouncer): stranger@10.0.0.9 (pid 5); connections from '
        'pgbouncer host pgb1 (10.0.0.21) that none of its declared consoles shows (a pgbouncer process not '
        'declared, sharing the port with so_reuseport?): fdt_app@10.0.0.21 (pid 201)')
    assert found['action'] == (
        'stop them, or list their users in fastdowntime_killable_users (terminated as the outage starts) or '
        'fastdowntime_system_users (ignored); declare every pgbouncer process of pgb1 in '
        'fastdowntime_pgbouncer_consoles (each is paused and resumed), then run the pre-flight again')
    alone = pf.decide_direct_connections('p', rows[1:2], BOUNCER_PIDS, {'deploy'}, set(), set(),
                                         pgbouncer_hosts=hosts)
    assert alone['status'] == PASS


def test_local_socket_connections_no_console_shows_name_the_unix_socket_pgbouncers_and_a_local_client():
    """pgbouncers reaching the primary over its unix socket: their server connections have no client
    address, like a local client's. One their consoles do not show is named as either, never as
    killable or ignorable only."""
    rows = [conn('fdt_app', None, 101), conn('fdt_app', None, 301), conn('deploy', None, 7)]
    hosts = {'10.0.0.21': ('pgb1 (10.0.0.21)', True), None: ('pgb1, pgb2', True)}
    found = pf.decide_direct_connections('p', rows, BOUNCER_PIDS, {'deploy'}, set(), set(), pgbouncer_hosts=hosts)
    assert found['status'] == FAIL and '\n' not in found['summary']
    assert found['summary'] == (
        "p: connections over the primary's local socket, which pgb1, pgb2 reach it through, that none of their "
        'declared consoles shows (a pgbouncer process not declared, sharing the port with so_reuseport, or a local '
        'client: its address cannot tell): fdt_app@local socket (pid 301)')
    assert 'fastdowntime_pgbouncer_consoles' in found['action'] and 'killable' not in found['action']
    # Without a unix-socket pgbouncer a local-socket connection is an unknown direct one, as before.
    del hosts[None]
    assert 'unknown direct connections' in pf.decide_direct_connections(
        'p', rows, BOUNCER_PIDS, {'deploy'}, set(), set(), pgbouncer_hosts=hosts)['summary']


def test_a_client_through_pgbouncer_is_named_by_its_own_address_not_the_backend_s():
    row = backend(501, user='fdt_app', app='stuck-client', addr=None, state_seconds=2.5)
    refused = blocking([row], pgbouncer_of={501: 'pgbouncer1'}, pgbouncer_clients={501: '10.0.0.31:51234'})
    assert 'from 10.0.0.31:51234 through pgbouncer1, idle in transaction' in refused['summary']
    assert refused['evidence']['drain_holders'][0]['pgbouncer_client'] == '10.0.0.31:51234'
    assert 'from local socket through pgbouncer1' in blocking([row], pgbouncer_of={501: 'pgbouncer1'})['summary']


def test_a_probe_answer_another_finding_explains_is_left_out():
    databases = [{'name': 'db', 'host': '10.0.0.10', 'port': 5432}, {'name': 'db_ro', 'host': '10.0.0.12', 'port': 5432},
                 {'name': 'other', 'host': '10.0.0.12', 'port': 5432}]
    unreachable = {('10.0.0.12', 5432)}
    assert pf.explained_entries(databases, ['db', 'db_ro'], unreachable, ('deploy', 'x'), None) == {'db_ro'}
    assert pf.explained_entries(databases, ['db', 'db_ro'], set(), ('deploy', 'x'), ('deploy', 'x')) == {'db', 'db_ro'}
    assert pf.explained_entries(databases, ['db', 'db_ro'], set(), ('probe', 'y'), ('deploy', 'x')) == set()
    flags = {'db': {'paused': False, 'disabled': False}, 'db_ro': {'paused': False, 'disabled': False}}
    probe = {'db': None, 'db_ro': 'a client got no answer to its SELECT 1 within 2.0 s'}
    found = pf.decide_pgbouncer('pgb2', ['db', 'db_ro'], flags, probe=probe, explained={'db_ro'})
    assert found['status'] == PASS, found
    login = {'db': 'FATAL: password authentication failed', 'db_ro': 'FATAL: password authentication failed'}
    found = pf.decide_pgbouncer('pgb2', ['db', 'db_ro'], flags, probe=login, explained={'db', 'db_ro'})
    assert found['status'] == PASS and found['summary'] == 'pgb2: admin console answers; entries db, db_ro, none paused'


# -- pgbouncer ---------------------------------------------------------------------------

def test_a_disabled_entry_is_told_apart_by_its_recorded_fence():
    flags = {'db_ro': {'paused': False, 'disabled': True}, 'db_ro2': {'paused': False, 'disabled': True},
             'db': {'paused': False, 'disabled': False}}
    fence = {'pgbouncer': 'pgb1', 'entry': 'db_ro', 'standby': 'standby2 (h2:5432)', 'deploy_id': 'fdt-1',
             'lsn': '0/5000000'}
    found = pf.decide_pgbouncer('pgb1', ['db', 'db_ro', 'db_ro2'], flags, fences={'db_ro': fence})
    assert found['status'] == WARN
    assert found['summary'] == ('pgb1: fenced by an earlier deploy: db_ro (deploy fdt-1: standby2 (h2:5432) lacked '
                                'the schema); disabled, not by a deploy (no fence recorded): db_ro2')
    # what the deploy does is what the WARN says: ENABLE the fenced one once replayed, leave the other
    assert 'the deploy ENABLEs db_ro outside any PAUSE once its standby has replayed past 0/5000000' in found['action']
    assert 'leaves db_ro2 disabled: ENABLE on pgb1 once sure' in found['action']
    assert 'at resume' not in found['action']


def test_pgbouncer_paused_entry_fails_disabled_warns():
    flags = {'db': {'paused': True, 'disabled': False}, 'db_ro': {'paused': False, 'disabled': False}}
    found = pf.decide_pgbouncer('pgb1', ['db', 'db_ro'], flags)
    assert found['status'] == FAIL and 'already paused: db' in found['summary'] and 'RESUME' in found['action']
    flags = {'db': {'paused': False, 'disabled': True}}
    assert pf.decide_pgbouncer('pgb1', ['db'], flags)['status'] == WARN
    assert pf.decide_pgbouncer('pgb1', ['db'], {'db': {'paused': False, 'disabled': False}})['status'] == PASS


def test_pgbouncer_global_pause_missing_standby_entry_and_console_error_fail():
    flags = {'db': {'paused': False, 'disabled': False}}
    assert pf.decide_pgbouncer('pgb1', ['db'], flags, state={'paused': True})['status'] == FAIL
    missing = pf.decide_pgbouncer('pgb1', ['db'], flags, missing_standby_entries=['db_ro'])
    assert missing['status'] == FAIL and 'no such entry for fastdowntime_standby_pgbouncer_entries: db_ro' in \
        missing['summary']
    assert missing['action'] == 'fix fastdowntime_standby_pgbouncer_entries or the pgbouncer [databases] section'
    error = pf.decide_pgbouncer('pgb1', error='pgb1: user x is not a pgbouncer admin')
    assert error['status'] == FAIL and 'admin' in error['summary']


# -- budget --------------------------------------------------------------------------------

def test_estimate_model(patch_set):
    cold = [p for p in patch_set.patches if p.kind == 'cold']   # 1 + 2 statements, 2 patches
    estimate = pf.estimate_outage(cold, primary_rtt=0.001, standby_rtts=[0.002, 0.004], pgbouncer_rtts=[0.001, 0.003],
                                  replay_seconds=0.1, entries_per_pgbouncer=[2, 1], statement_seconds=0.01)
    # The window's round trips (docs/window.md): PAUSE + confirmation, one for the whole cold
    # transaction whatever its size, one replay poll, the RESUMEs at once whatever the entries.
    # Nothing measured besides the round trips: no fixed drain or transaction term is added.
    assert estimate['drain_ms'] == pytest.approx(pf.DRAIN_ROUND_TRIPS * 3)
    # 3 statements and 2 revision rows at 10 ms each.
    assert estimate['cold_patches_ms'] == pytest.approx(1 + 5 * 10)
    # The lag probe's replay wait holds its round trip already: counted once, not once more.
    assert estimate['standby_replay_ms'] == pytest.approx(100)
    assert estimate['resume_ms'] == pytest.approx(3)
    assert estimate['total_ms'] == pytest.approx(pf.DRAIN_ROUND_TRIPS * 3 + 51 + 100 + 3)


def test_a_create_table_is_priced_at_the_probes_create_table_time_not_the_mix_s_average(tmp_path):
    (tmp_path / 'patch-2300-01-0.sql').write_text(
        "CREATE TABLE t (id integer PRIMARY KEY, body text);\nCOMMENT ON TABLE t IS 'x';\n")
    cold = [p for p in load_patch_set(str(tmp_path)).patches if p.kind == 'cold']
    # The probe: 3 ms per CREATE TABLE (four relations: heap, TOAST table and index, the key's index),
    # 0.5 ms per other catalog statement.
    priced = pf.estimate_outage(cold, 0.001, [], [], 0.0, [], statement_seconds=0.0005, table_seconds=0.003)
    # Round trip + the CREATE TABLE + the COMMENT + the revision row.
    assert priced['cold_patches_ms'] == pytest.approx(1 + 3 + 0.5 + 0.5)
    assert priced['table_seconds'] == 0.003
    # Not measured (an older probe, no TEMP privilege): every statement at the average, as before.
    assert pf.estimate_outage(cold, 0.001, [], [], 0.0, [], statement_seconds=0.0005)[
        'cold_patches_ms'] == pytest.approx(1 + 3 * 0.5)


def test_the_replay_term_is_the_window_s_wait_for_the_probe_and_at_least_one_round_trip(patch_set):
    cold = [p for p in patch_set.patches if p.kind == 'cold']
    # 40 ms to each standby (the rtt40 lab shape), both had replayed the probe when first asked: the window asks
    # both at once and waits one round trip (measure_lag's replay_wait_seconds: 0.04). Before, the term was the
    # probe's sequential catch-up (0.08 for the second standby asked) plus one more round trip: 120 ms.
    far = pf.estimate_outage(cold, 0.04, [0.04, 0.04], [], 0.04, [], statement_seconds=0.001)
    assert far['standby_replay_ms'] == pytest.approx(40)
    # A probe that did not measure (an error on every standby): still the one round trip the window makes.
    assert pf.estimate_outage(cold, 0.04, [0.04, 0.03], [], 0.0, [], statement_seconds=0.001)[
        'standby_replay_ms'] == pytest.approx(40)
    # A standby 300 ms behind: its wait, round trip included.
    assert pf.estimate_outage(cold, 0.04, [0.04], [], 0.34, [], statement_seconds=0.001)[
        'standby_replay_ms'] == pytest.approx(340)


def test_the_drain_waits_for_the_transactions_pgbouncer_sees_open_now(patch_set):
    cold = [p for p in patch_set.patches if p.kind == 'cold']
    busy = pf.estimate_outage(cold, 0.001, [0.002], [0.001, 0.003], 0.0, [1, 1], statement_seconds=0.01,
                              xact_seconds=0.25)
    assert busy['drain_ms'] == pytest.approx(pf.DRAIN_ROUND_TRIPS * 3 + 250) and busy['xact_seconds'] == 0.25
    # No pgbouncer measured: no drain at all, whatever the transactions.
    assert pf.estimate_outage(cold, 0.001, [0.002], [], 0.0, [], xact_seconds=0.25)['drain_ms'] == 0


def test_the_drain_pays_for_the_server_connections_its_pauses_close(patch_set):
    cold = [p for p in patch_set.patches if p.kind == 'cold']
    # 4 server connections to close (2 pgbouncers x 2 entries), a backend taking 1.5 ms to exit once closed:
    # measured on the lab, the PAUSEs' replies wait behind those exits (0.4 ms with none to close, 5 ms with 4).
    closing = pf.estimate_outage(cold, 0.001, [0.002], [0.001, 0.003], 0.0, [2, 2], statement_seconds=0.01,
                                 server_closes=4, close_seconds=0.0015)
    assert closing['drain_ms'] == pytest.approx(pf.DRAIN_ROUND_TRIPS * 3 + 4 * 1.5)
    assert closing['server_closes'] == 4 and closing['close_seconds'] == 0.0015
    # Not measured (no observer, the probe refused): the round trips alone, as before.
    assert pf.estimate_outage(cold, 0.001, [0.002], [0.001, 0.003], 0.0, [2, 2], statement_seconds=0.01,
                              server_closes=4)['drain_ms'] == pytest.approx(pf.DRAIN_ROUND_TRIPS * 3)


def test_a_pause_closes_each_entrys_server_connections_and_at_least_the_one_the_client_probe_leaves():
    rows = [{'database': 'fdtdemo', 'remote_pid': 11}, {'database': 'fdtdemo', 'remote_pid': 12},
            {'database': 'other', 'remote_pid': 13}]
    # fdtdemo: its 2; fdtdemo_ro: none now, but the pre-flight's client probe logs in through it after this read.
    held = pf.entry_servers(rows, ['fdtdemo', 'fdtdemo_ro'])
    assert held == {'fdtdemo': 2, 'fdtdemo_ro': 0}  # the same count connection_slots reads
    assert pf.server_closes(held) == 3
    assert pf.server_closes(pf.entry_servers([], ['fdtdemo'])) == 1 and pf.server_closes(pf.entry_servers(rows, [])) == 0


def test_the_standbys_replay_the_wal_tail_of_the_catalog_statements_after_commit(patch_set):
    cold = [p for p in patch_set.patches if p.kind == 'cold']   # 3 statements, 2 patches: 5 steps
    # 5 x 10 ms of catalog work, the WAL writer flushing every 200 ms: the COMMIT comes 0-200 ms after
    # its last flush, so on average 50 - 50^2 / 400 ms of that work is left to replay.
    short = pf.estimate_outage(cold, 0.001, [0.004], [], 0.1, [], statement_seconds=0.01, wal_writer_delay_seconds=0.2)
    assert short['standby_replay_ms'] == pytest.approx(100 + 43.8) and short['wal_tail_ms'] == pytest.approx(43.8)
    # 5 x 100 ms: whatever the work, half a flush interval on average.
    long = pf.estimate_outage(cold, 0.001, [0.004], [], 0.1, [], statement_seconds=0.1, wal_writer_delay_seconds=0.2)
    assert long['standby_replay_ms'] == pytest.approx(100 + 100)
    # A statement the lint prices (its own replay term is in replay_seconds) adds no tail. The lint's
    # cost is per line (lint.per_statement_seconds: its statements summed), counted once: the second
    # statement of patch-0001-02-0.sql's one line is a plain one.
    costs = dict(((p.name, s.line), 5.0) for p in cold for s in p.statements)
    priced = pf.estimate_outage(cold, 0.001, [0.004], [], 0.1, [], statement_seconds=0.01, statement_costs=costs,
                                wal_writer_delay_seconds=0.2)
    assert priced['cold_patches_ms'] == pytest.approx(1 + 2 * 5000 + 3 * 10)
    # The two revision rows and that statement: 30 - 30^2 / 400 ms.
    assert priced['wal_tail_ms'] == pytest.approx(round(30 - 2.25, 1))  # 27.75, shown to 0.1 ms
    # No standby: no replay at all.
    assert pf.estimate_outage(cold, 0.001, [], [], 0.1, [], wal_writer_delay_seconds=0.2)['standby_replay_ms'] == 0


def test_the_wal_tail_is_the_work_since_a_uniformly_random_last_flush():
    assert pf.wal_tail_seconds(0.0, 0.2) == 0.0
    assert pf.wal_tail_seconds(0.1, 0.2) == pytest.approx(0.1 - 0.01 / 0.4)
    assert pf.wal_tail_seconds(0.2, 0.2) == pytest.approx(0.1) == pf.wal_tail_seconds(30.0, 0.2)
    assert pf.wal_tail_seconds(0.5, 0.0) == 0.0   # no WAL writer delay known: nothing added


def test_the_oldest_transaction_open_on_a_pgbouncer_server_connection_is_what_a_pause_now_waits_for():
    rows = [{'pid': 11, 'state': 'active', 'xact_seconds': 0.4},
            {'pid': 12, 'state': 'idle in transaction', 'xact_seconds': 0.7},
            {'pid': 13, 'state': 'idle', 'xact_seconds': None},          # between transactions: nothing to wait for
            {'pid': 99, 'state': 'active', 'xact_seconds': 30.0}]        # not pgbouncer's (a direct connection)
    assert pf.open_xact_seconds(rows, {11, 12, 13}) == pytest.approx(0.7)
    assert pf.open_xact_seconds(rows, {13}) == 0.0 and pf.open_xact_seconds([], {11}) == 0.0


def test_drain_policy_terminate_bounds_the_drain_wait_at_half_its_deadline():
    # A client idle in transaction through pgbouncer for 20 s: with terminate the drain ends it at half
    # its 9.5 s deadline, so the estimate must not refuse the deploy the check told to go on (try 6, defect 3).
    assert pf.drain_xact_seconds(20.0, 'terminate', 9.5) == pytest.approx(4.75)
    assert pf.drain_xact_seconds(0.2, 'terminate', 9.5) == pytest.approx(0.2)
    assert pf.drain_xact_seconds(20.0, 'abort', 9.5) == pytest.approx(20.0)


def test_the_cold_transaction_costs_what_the_probe_transaction_took_and_at_least_one_round_trip(patch_set):
    cold = [p for p in patch_set.patches if p.kind == 'cold']
    loaded = pf.estimate_outage(cold, 0.001, [], [], 0.0, [], statement_seconds=0.001, transaction_seconds=0.06)
    assert loaded['cold_patches_ms'] == pytest.approx(60 + 5 * 1) and loaded['transaction_seconds'] == 0.06
    # A probe faster than the round trip measured beside it: the round trip is the floor.
    far = pf.estimate_outage(cold, 0.04, [], [], 0.0, [], statement_seconds=0.001, transaction_seconds=0.01)
    assert far['cold_patches_ms'] == pytest.approx(40 + 5 * 1)
    # No probe (no TEMP privilege): the round trip alone, as before.
    assert pf.estimate_outage(cold, 0.04, [], [], 0.0, [], statement_seconds=0.001)['transaction_seconds'] is None


def test_budget_compares_against_the_usable_budget():
    estimate = {'drain_ms': 100, 'cold_patches_ms': 100, 'standby_replay_ms': 100, 'resume_ms': 100, 'total_ms': 400}
    assert pf.decide_budget(estimate, Budget(10))['status'] == PASS
    # 0.45 s budget: the reserve is a fifth (0.09 s), 0.36 s usable < 0.4 s.
    tight = pf.decide_budget(estimate, Budget(0.45))
    assert tight['status'] == FAIL and 'exceeds the usable budget 0.360s' in tight['summary']
    assert pf.decide_budget(estimate, Budget(10), incomplete=['standby1'])['status'] == WARN
    assert pf.decide_budget(None, Budget(0.001))['status'] == PASS


def test_a_budget_refusal_names_its_largest_term_and_that_terms_fix():
    """try 6, defect 3: the drain's wait for a transaction open through pgbouncer made the estimate
    13 s, and the fix said "make the costliest statements cheap"."""
    base = {'drain_ms': 1.0, 'cold_patches_ms': 5.0, 'standby_replay_ms': 2.0, 'resume_ms': 1.0, 'xact_seconds': 0.0,
            'server_closes': 2, 'close_seconds': 0.001, 'costliest': ['patch-2300-01-0.sql line 3 (2.1 s)']}

    def refused(**terms):
        estimate = dict(base, **terms)
        phases = ('drain_ms', 'cold_patches_ms', 'standby_replay_ms', 'resume_ms')
        estimate['total_ms'] = sum(estimate[k] for k in phases)
        found = pf.decide_budget(estimate, Budget(1))
        assert found['status'] == FAIL
        return found['summary'], found['action']

    summary, action = refused(drain_ms=13096.3, xact_seconds=13.09)
    assert summary.endswith('the drain dominates: the PAUSE waits 13.1 s for the transactions open through pgbouncer')
    assert action.startswith('end the transactions open through pgbouncer') and 'costliest' not in action
    assert 'fastdowntime_drain_policy: terminate' in action
    summary, action = refused(drain_ms=1200.0, server_closes=400, close_seconds=0.003)
    assert summary.endswith("a pgbouncer's PAUSEs close 400 server connections (3.0 ms each)") and 'server_idle_timeout' in action
    assert 'not RECONNECT' in action  # it would drop logins in flight: pgbouncer PR 420
    summary, action = refused(cold_patches_ms=3000.0)
    assert summary.endswith('the cold patches dominate; costliest: patch-2300-01-0.sql line 3 (2.1 s)')
    assert action.startswith('make the costliest statements cheap')
    summary, action = refused(standby_replay_ms=4000.0)
    assert "the standbys' replay dominates (4000.0 ms)" in summary and 'replication_lag' in action
    for text in (summary, action):
        assert '\n' not in text


def test_hot_patch_waits_names_snapshot_holders_and_prepared_lockers_not_plain_idle_sessions():
    lockers = [{'relation': (None, 'fdt_item'), 'mode': 'SHARE', 'patch': 'patch-1-00-1.sql', 'line': 4,
                'words': 'CREATE INDEX CONCURRENTLY'}]
    snapshots = [dict(lockers[0])]
    idle = {'state': 'idle in transaction', 'state_seconds': 5.0, 'xact_seconds': 5.0, 'usename': 'app',
            'application_name': 'x', 'client_addr': '10.0.0.5'}
    rows = [dict(idle, pid=11, holds_snapshot=True), dict(idle, pid=12, holds_snapshot=False),
            dict(idle, pid=13, holds_snapshot=True, state='active', state_seconds=0.1, xact_seconds=0.2)]
    prepared = {'gid': 'xa1', 'owner': 'app', 'prepared_database': 'db', 'prepared_seconds': 0.5, 'granted': True,
                'mode': 'ROW EXCLUSIVE', 'relation': 'fdt_item', 'wanted': lockers[0]}
    found = pf.decide_hot_patch_waits('primary (10.0.0.10:5432)', 'db', rows, [prepared], lockers, snapshots, 13.1)
    assert found['status'] == FAIL and '\n' not in found['summary']
    summary = found['summary']
    assert summary.startswith("primary (10.0.0.10:5432): pid 11 (user app, application 'x', from 10.0.0.5, idle in "
                              'transaction for 5.0 s, transaction open 5.0 s) holds a snapshot, which '
                              'patch-1-00-1.sql line 4 (CREATE INDEX CONCURRENTLY) waits out')
    assert 'pid 12 ' not in summary and 'pid 13 ' not in summary  # no snapshot; a short transaction
    assert "prepared transaction 'xa1' (owner app, database db, prepared 0.5 s ago" in summary
    assert 'holds ROW EXCLUSIVE on fdt_item, which patch-1-00-1.sql line 4 (CREATE INDEX CONCURRENTLY) waits out' \
        in summary
    assert 'the hot phase would wait for them 13 s, then fail with its patch unrecorded' in summary
    assert 'pg_terminate_backend(pid) for pid 11)' in summary and "ROLLBACK PREPARED 'xa1'" in summary
    # A backfill's transaction running for six minutes (freehire PR 2365: its CREATE INDEX CONCURRENTLY failed on
    # lock_timeout, on every retry): older than the hot phase waits, so named although active.
    backfill = dict(idle, pid=14, holds_snapshot=True, state='active', state_seconds=368.5, xact_seconds=368.5)
    named = pf.decide_hot_patch_waits('p', 'db', [backfill], [], lockers, snapshots, 13.1)
    assert named['status'] == FAIL and named['summary'].startswith("p: pid 14 (user app, application 'x', from "
                                                                   '10.0.0.5, active for 368.5 s, transaction open 368.5 s) holds')
    assert pf.decide_hot_patch_waits('p', 'db', rows, [prepared], lockers, snapshots, 13.1,
                                     policy='warn')['status'] == WARN
    assert pf.decide_hot_patch_waits('p', 'db', rows[1:], [], lockers, snapshots, 13.1)['status'] == PASS
    assert pf.decide_hot_patch_waits('p', 'db', rows, [], [], [], 13.1)['status'] == PASS


# -- verdict and summary ----------------------------------------------------------------------

def test_verdict_and_summary_list_failures_first_with_actions():
    findings = [pf.finding('budget', PASS, 'fine'), pf.finding('pgbouncer', WARN, 'hmm', action='look'),
                pf.finding('standbys', FAIL, 's1 down', action='start s1'),
                pf.finding('connection', FAIL, 's1 refused', action='fix')]
    passed, counts = pf.verdict(findings)
    assert not passed and counts == {'pass': 1, 'warn': 1, 'fail': 2}
    lines = pf.summary_lines(findings)
    assert lines[0] == 'pre-flight REFUSED the deploy: 2 failed, 1 warnings, 1 passed'
    assert lines[1:5] == ['FAIL connection: s1 refused', '    -> fix', 'FAIL standbys: s1 down', '    -> start s1']
    assert lines[5:] == ['WARN pgbouncer: hmm', '    -> look', 'PASS budget: fine']
    assert pf.verdict([pf.finding('x', WARN, 'w')])[0] is True


def test_checks_the_deploy_user_cannot_see_are_warnings_not_guesses():
    assert pf.sees_everything({'superuser': True}) and pf.sees_everything({'superuser': False, 'pg_monitor': True})
    assert not pf.sees_everything({'superuser': False, 'pg_monitor': False})
    found = pf.not_checked('transactions', ['standby1'])
    assert found['status'] == WARN and found['host'] == 'standby1' and 'privileges check' in found['summary']


# -- pgbouncer set-ups ----------------------------------------------------------------------

def test_a_silent_entry_with_its_server_login_in_flight_names_its_server_not_a_pause():
    # An entry left pointing at a black-holed host (try 6, defect 6): no answer, SHOW POOLS sv_login 1 -
    # not "paused or suspended by someone ... RESUME".
    flags = {'db': {'paused': False, 'disabled': False}, 'db_old': {'paused': False, 'disabled': False}}
    probe = {'db': None, 'db_old': 'a client got no answer to its SELECT 1 within 2.0 s'}
    found = pf.decide_pgbouncer('pgb1', ['db', 'db_old'], flags, probe=probe, logging_in=['db_old'])
    assert found['status'] == FAIL
    assert found['summary'] == ('pgb1: a client query through db_old got no answer within 2.0 s: its server login is '
                                'still in flight (SHOW POOLS sv_login), the server it points at does not answer')
    assert found['action'] == ('make that server answer, or fix the host/port of db_old in the [databases] section '
                               'of pgb1 (and RELOAD)')


def test_pgbouncer_paused_by_someone_else_is_found_by_a_client_probe():
    flags = {'db': {'paused': False, 'disabled': False}}
    probe = {'db': 'a client got no answer to its SELECT 1 within 2.0 s'}
    found = pf.decide_pgbouncer('pgb1', ['db'], flags, probe=probe)
    assert found['status'] == FAIL and 'got no answer within 2.0 s' in found['summary']
    assert 'RESUME on pgb1' in found['action']
    answered = pf.decide_pgbouncer('pgb1', ['db'], flags, probe={'db': None})
    assert answered['status'] == PASS and 'answered a client' in answered['summary']
    refused = pf.decide_pgbouncer('pgb1', ['db'], flags, probe={'db': 'FATAL: server login has been failing'})
    assert refused['status'] == WARN and 'clients are refused now' in refused['summary']
    login = pf.decide_pgbouncer('pgb1', ['db'], flags, probe={'db': 'FATAL: password authentication failed'})
    assert login['status'] == WARN and 'fastdowntime_pgbouncer_probe_user' in login['action']
    # At max_client_conn: the pgbouncer is full, not the server its entry points at (the fix said so).
    full = pf.decide_pgbouncer('pgb1', ['db'], flags,
                               probe={'db': 'FATAL: no more connections allowed (max_client_conn)'})
    assert full['status'] == WARN and full['action'] == ('raise max_client_conn on pgb1 (SET max_client_conn = N on '
                                                         'its console, and in pgbouncer.ini)')
    assert full['summary'].startswith('pgb1: the client probe could not connect: pgb1 is full (FATAL: no more '
                                      'connections allowed (max_client_conn)): new clients are refused')


def test_session_pool_with_clients_is_refused_without_clients_warned():
    found = pf.decide_pool_mode('pgb1', {'db': 'transaction', 'db_s': 'session'}, {'db': 5, 'db_s': 2})
    assert found['status'] == FAIL and 'db_s (2 clients) in pool_mode = session' in found['summary']
    assert 'pool_mode = transaction for db_s' in found['action']
    assert pf.decide_pool_mode('pgb1', {'db_s': 'session'}, {'db_s': 0})['status'] == WARN
    assert pf.decide_pool_mode('pgb1', {'db': 'transaction'}, {'db': 3})['status'] == PASS


def test_so_reuseport_without_a_console_per_process_is_refused():
    found = pf.decide_pgbouncer_processes('pgb1 (10.0.0.21:6432)', {'so_reuseport': '1'})
    assert found['status'] == FAIL and 'so_reuseport = 1' in found['summary']
    assert 'fastdowntime_pgbouncer_consoles' in found['action']
    declared = pf.decide_pgbouncer_processes('pgb1 (/run/p1:6432)', {'so_reuseport': '1'}, '/run/p1')
    assert declared['status'] == PASS
    assert pf.decide_pgbouncer_processes('pgb1', {'so_reuseport': '0'})['status'] == PASS


def test_pgbouncer_timeouts_cap_the_budget_or_refuse():
    cap = {'pgbouncer': 'pgb1', 'setting': 'query_wait_timeout', 'timeout_seconds': 3.0, 'seconds': 2.0}
    assert pf.decide_pgbouncer_timeouts(None, Budget(10))['status'] == PASS
    assert pf.decide_pgbouncer_timeouts(dict(cap, timeout_seconds=120.0, seconds=119.0), Budget(10))['status'] == PASS
    warned = pf.decide_pgbouncer_timeouts(cap, Budget(10), {'total_ms': 50.0})
    assert warned['status'] == WARN and 'capped at 2 s' in warned['summary'] and warned['host'] == 'pgb1'
    refused = pf.decide_pgbouncer_timeouts(cap, Budget(10), {'total_ms': 2500.0})
    assert refused['status'] == FAIL and 'query_wait_timeout = 3 s' in refused['summary']
    assert refused['action'].startswith('raise query_wait_timeout above 5 s in the pgbouncer.ini of pgb1')
    assert pf.decide_pgbouncer_timeouts(dict(cap, seconds=0.0), Budget(10))['status'] == FAIL


def test_every_check_a_decision_can_return_is_listed():
    made = {pf.decide_pool_mode('p', {}, {})['check'], pf.decide_pgbouncer_processes('p', {})['check'],
            pf.decide_pgbouncer_timeouts(None, Budget(1))['check'], pf.decide_pgbouncer('p', [], {})['check']}
    assert made <= set(pf.CHECKS)


# -- blocking sessions: the drain and the cold patches' locks ----------------------------

REQUIRED = [{'relation': (None, 'fdt_item'), 'mode': 'ACCESS EXCLUSIVE', 'patch': 'patch-2300-01-0.sql', 'line': 3}]


def backend(pid, state='idle in transaction', state_seconds=3.0, xact_seconds=4.0, user='deploy', app='dba_psql',
            addr='10.0.0.5'):
    return {'pid': pid, 'usename': user, 'application_name': app, 'client_addr': addr, 'state': state,
            'state_seconds': state_seconds, 'xact_seconds': xact_seconds, 'query': 'SELECT count(*) FROM fdt_item',
            'datname': 'db'}


def holding(row, mode='ACCESS SHARE', granted=True, relation='fdt_item'):
    return dict(row, mode=mode, granted=granted, relation=relation, wanted=REQUIRED[0])


def blocking(activity=(), lock_rows=(), pgbouncer_of=None, killable=(), wait=9.5, **kwargs):
    return pf.decide_blocking_sessions('primary (10.0.0.10:5432)', list(activity), list(lock_rows), REQUIRED,
                                       pgbouncer_of or {}, set(killable), {'10.0.0.21'}, wait, **kwargs)


def test_direct_idle_lock_holder_is_refused_in_one_line_naming_it():
    row = backend(24064)
    found = blocking([row], [holding(row)])
    assert found['status'] == FAIL and found['check'] == 'blocking_sessions'
    summary = found['summary']
    assert '\n' not in summary and summary.startswith('primary (10.0.0.10:5432): pid 24064')
    for word in ("user deploy", "application 'dba_psql'", 'from 10.0.0.5', 'idle in transaction for 3.0 s',
                 'transaction open 4.0 s', 'holds ACCESS SHARE on fdt_item', 'patch-2300-01-0.sql line 3',
                 'needs in ACCESS EXCLUSIVE', 'pg_terminate_backend(pid) for pid 24064', 'its whole 9.5 s'):
        assert word in summary, (word, summary)
    assert 'WHERE pid IN (24064)' in found['action'] and 'fastdowntime_blocking_sessions: warn' in found['action']
    assert found['evidence']['lock_holders'][0]['locks'] == [
        {'relation': 'fdt_item', 'mode': 'ACCESS SHARE', 'granted': True, 'needed': 'ACCESS EXCLUSIVE'}]


def test_short_lived_lock_holders_are_ordinary_traffic():
    between_statements = backend(1, state_seconds=0.2, xact_seconds=0.3)
    running = backend(2, state='active', state_seconds=2.0, xact_seconds=2.0)
    found = blocking([between_statements, running], [holding(between_statements), holding(running)])
    assert found['status'] == PASS, found['summary']
    assert '1 relation(s) checked' in found['summary']


def test_a_running_transaction_older_than_the_budget_and_a_waiter_are_refused():
    old = backend(3, state='active', state_seconds=20.0, xact_seconds=20.0)
    waiter = backend(4, state='active', state_seconds=12.0, xact_seconds=12.0)
    found = blocking([old, waiter], [holding(old), holding(waiter, mode='SHARE', granted=False)])
    assert found['status'] == FAIL
    assert 'pid 3' in found['summary'] and 'waits for SHARE on fdt_item' in found['summary']
    assert 'for pid 3, 4' in found['summary']


def test_pgbouncer_client_idle_in_transaction_holds_the_drain():
    row = backend(501, user='fdt_app', app='stuck-client', addr='10.0.0.21', state_seconds=2.5)
    refused = blocking([row], pgbouncer_of={501: 'pgbouncer1'})
    assert refused['status'] == FAIL
    assert 'pid 501' in refused['summary'] and 'through pgbouncer1' in refused['summary']
    assert 'holds its server connection in a transaction: the drain waits for it' in refused['summary']
    assert 'fastdowntime_drain_policy: terminate' in refused['action']
    # Its locks are the drain's business: no second reason for the same pid.
    assert blocking([row], [holding(row)], pgbouncer_of={501: 'pgbouncer1'})['summary'].count('pid 501 (') == 1
    terminated = blocking([row], pgbouncer_of={501: 'pgbouncer1'}, drain_policy='terminate')
    assert terminated['status'] == WARN and 'with drain_policy terminate, terminates it' in terminated['summary']
    # Between two statements, or not in a transaction at all: ordinary traffic.
    assert blocking([dict(row, state_seconds=0.1)], pgbouncer_of={501: 'pgbouncer1'})['status'] == PASS
    assert blocking([dict(row, state='idle', xact_seconds=None)], pgbouncer_of={501: 'pgbouncer1'})['status'] == PASS


def test_killable_direct_holder_warns_and_the_opt_out_turns_a_refusal_into_a_warning():
    row = backend(7, user='cron')
    killable = blocking([row], [holding(row)], killable=['cron'])
    assert killable['status'] == WARN and 'terminated as the outage starts' in killable['summary']
    # A killable user's connection from a pgbouncer host is never terminated: still refused.
    assert blocking([row], [holding(dict(row, client_addr='10.0.0.21'))], killable=['cron'])['status'] == FAIL
    warned = blocking([row], [holding(row)], policy='warn')
    assert warned['status'] == WARN and '(fastdowntime_blocking_sessions: warn)' in warned['summary']


def test_no_cold_patch_pending_means_nothing_blocks():
    row = backend(8, state_seconds=100, xact_seconds=100)
    found = blocking([row], [holding(row)], pgbouncer_of={8: 'pgbouncer1'}, cold_pending=False)
    assert found['status'] == PASS and 'no cold patch pending' in found['summary']


def test_will_outlast_window():
    assert pf.will_outlast_window(backend(1, state_seconds=1.5), 10)
    assert not pf.will_outlast_window(backend(1, state_seconds=0.5, xact_seconds=9), 10)
    assert pf.will_outlast_window(backend(1, state='active', state_seconds=11, xact_seconds=11), 10)
    assert pf.will_outlast_window(backend(1, state='idle in transaction (aborted)', state_seconds=2), 10)
    assert not pf.will_outlast_window(backend(1, state='idle', xact_seconds=None), 10)


def test_a_server_close_timed_from_a_distant_controller_is_counted_without_its_round_trip():
    # 44 ms seen from a controller 41 ms away: 3 ms of exit; nearer than its round trip or not measured: 0.
    assert pf.backend_close_seconds(0.044, 0.041) == pytest.approx(0.003)
    assert pf.backend_close_seconds(0.0005, 0.001) == 0.0
    assert pf.backend_close_seconds(None, 0.01) == 0.0


def test_connection_slots_must_hold_the_logins_after_resume():
    row = {'max_connections': 100, 'reserved': 3, 'used': 90}
    passed = pf.decide_connection_slots('primary (10.0.0.5:5432)', row, 7)
    assert passed['status'] == PASS and passed['evidence']['free'] == 7
    refused = pf.decide_connection_slots('primary (10.0.0.5:5432)', row, 8)
    assert refused['status'] == FAIL and refused['host'] == 'primary (10.0.0.5:5432)'
    assert '7 of max_connections 100 free (90 in use, 3 reserved), 0 more once the PAUSE' in refused['summary']
    assert 'through each of the 8 entries' in refused['summary'] and 'server_login_retry' in refused['summary']
    assert 'raise max_connections on primary (10.0.0.5:5432)' in refused['action'] and '8 slots' in refused['action']
    # Over-full (superusers in the reserved slots) says 0 free, never a negative count.
    assert '0 of max_connections' in pf.decide_connection_slots('p', dict(row, used=99), 1)['summary']
    # A server no pgbouncer entry points at needs no room; slots not read are not a finding of their own.
    assert pf.decide_connection_slots('s', row, 0)['status'] == PASS
    assert pf.decide_connection_slots('s', None, 3)['status'] == PASS


def test_the_server_connections_the_pause_closes_make_room_for_the_logins_after_resume():
    # Nearly full, mostly of pgbouncer's own idle server connections to the deploy entries, kept from a past
    # peak: the PAUSE closes them; after RESUME pgbouncer logs in again only for its 8 connected clients, and
    # the probe once per entry (a new user's try: 1 of 200 free, 196 in use, refused before).
    row = {'max_connections': 200, 'reserved': 3, 'used': 196}
    passed = pf.decide_connection_slots('primary (10.0.0.5:5432)', row, 4, closing=150, relogins=8)
    assert passed['status'] == PASS and passed['evidence']['closed_by_pause'] == 150
    assert passed['evidence']['logins_after_resume'] == 12
    assert '1 connection slots free, 150 more once the PAUSE closes' in passed['summary']
    # Full of other sessions: refused, and the fix asks only for what the PAUSE does not free.
    refused = pf.decide_connection_slots('primary (10.0.0.5:5432)', row, 4, closing=6, relogins=6)
    assert refused['status'] == FAIL and '6 more once the PAUSE closes' in refused['summary']
    assert 'for its clients (6) and the client probe through each of the 4 entries' in refused['summary']
    assert 'at least 4 slots are free' in refused['action']


def prepared(gid="xa'1", mode='ROW EXCLUSIVE', seconds=3.25, owner='fdt_app'):
    """A locks.HOLDERS_SQL row of a prepared transaction (no session), as locks.conflicting keeps it."""
    return {'pid': None, 'usename': None, 'client_addr': None, 'state': None, 'xact_seconds': None,
            'state_seconds': None, 'gid': gid, 'owner': owner, 'prepared_database': 'db',
            'prepared_seconds': seconds, 'mode': mode, 'granted': True, 'relation': 'fdt_item', 'wanted': REQUIRED[0]}


def test_a_prepared_transaction_holding_a_needed_lock_is_refused_whatever_its_age():
    found = blocking([], [prepared(seconds=0.2)])
    assert found['status'] == FAIL and '\n' not in found['summary']
    summary = found['summary']
    for word in ("primary (10.0.0.10:5432): prepared transaction 'xa''1' (owner fdt_app, database db, prepared 0.2 s "
                 "ago: no session", 'holds ROW EXCLUSIVE on fdt_item, which patch-2300-01-0.sql line 3 needs in '
                 'ACCESS EXCLUSIVE', 'its whole 9.5 s', 'coordinator', "COMMIT PREPARED 'xa''1' / ROLLBACK PREPARED "
                 "'xa''1'", 'connected to database db', 'then deploy again'):
        assert word in summary, (word, summary)
    assert 'pg_terminate_backend' not in summary and 'pg_terminate_backend' not in found['action']
    assert found['evidence']['prepared_holders'] == [
        {'gid': "xa'1", 'owner': 'fdt_app', 'prepared_database': 'db', 'prepared_seconds': 0.2,
         'locks': [{'relation': 'fdt_item', 'mode': 'ROW EXCLUSIVE', 'granted': True, 'needed': 'ACCESS EXCLUSIVE'}]}]
    # Beside a session: both named, each with its own fix; the opt-out warns for both.
    row = backend(24064)
    both = blocking([row], [holding(row), prepared()])
    assert both['status'] == FAIL and 'for pid 24064' in both['summary'] and "ROLLBACK PREPARED 'xa''1'" in both['summary']
    assert blocking([], [prepared()], policy='warn')['status'] == WARN
    # Neither drain_policy terminate nor killable_users reach it: it has no session.
    assert blocking([], [prepared(owner='cron')], killable=['cron'], drain_policy='terminate')['status'] == FAIL


def test_a_client_idle_in_transaction_through_a_read_entry_holds_the_drain_on_its_standby():
    """Every deploy entry is drained, the read entries serving a standby too: a client of one idle in a
    transaction holds that pgbouncer's drain. drain_policy terminate ends only primary backends."""
    row = backend(88, user='fdt_app', app='report', addr='10.0.0.21', state_seconds=2.0)

    def standby(**kwargs):
        return pf.decide_blocking_sessions('standby1 (10.0.0.11:5432)', [row], [], [], {88: 'pgbouncer1'}, set(),
                                           set(), 9.5, standby=True, **kwargs)
    for refused in (standby(), standby(drain_policy='terminate')):
        assert refused['status'] == FAIL and '\n' not in refused['summary']
        assert refused['summary'].startswith('standby1 (10.0.0.11:5432): pid 88 (user fdt_app')
        assert 'through pgbouncer1' in refused['summary'] and 'the drain waits for it' in refused['summary']
        assert 'for pid 88 on standby1)' in refused['summary']
        assert 'ends only the primary\'s backends' in refused['action']
    assert standby(policy='warn')['status'] == WARN
    passed = pf.decide_blocking_sessions('standby1 (10.0.0.11:5432)', [dict(row, state_seconds=0.1)], [], [],
                                         {88: 'pgbouncer1'}, set(), set(), 9.5, standby=True)
    assert passed['status'] == PASS and 'entries serving it' in passed['summary']


def test_an_idle_transaction_through_pgbouncer_is_named_with_its_pgbouncer_and_client():
    row = backend(501, user='fdt_app', app='stuck-client', addr=None, state_seconds=2.5)
    found = pf.decide_transactions('primary (10.0.0.10:5432)', [row], [], 60, through={501: 'pgbouncer1'},
                                   clients={501: '10.0.0.31:51234'})
    assert found['status'] == WARN and 'pid 501 (user fdt_app, from 10.0.0.31:51234 through pgbouncer1,' in found['summary']
    assert 'from local socket,' in pf.decide_transactions('p', [row], [], 60)['summary']


def test_the_relations_only_their_owner_may_change_are_named_where_first_changed(tmp_path):
    write(tmp_path, 'patch-0001-01-0.sql',
          'ALTER TABLE app.item ADD COLUMN b text;\n'
          'ALTER TABLE item ADD CONSTRAINT item_user_fk FOREIGN KEY (u) REFERENCES users (id);\n'
          'COMMENT ON TABLE tag IS $$t$$;\n'
          'CREATE INDEX item_b ON item (b);\n'
          'CREATE TABLE item_2026 PARTITION OF parted FOR VALUES IN (2026);\n'
          # grantable privileges, not ownership: data changes, TRUNCATE, LOCK, a trigger, VACUUM
          'UPDATE counts SET n = 0;\nTRUNCATE scratch;\nLOCK TABLE locked;\n'
          'CREATE TRIGGER t AFTER INSERT ON audited FOR EACH ROW EXECUTE FUNCTION f();\n'
          # a name after the patch's own search_path: the window resolves it, not the pre-flight
          'SET search_path = other;\nALTER TABLE elsewhere ADD COLUMN c int;\n')
    write(tmp_path, 'patch-0001-02-1.sql', 'CREATE INDEX CONCURRENTLY item_c ON item (c);\n')
    write(tmp_path, 'patch-0001-03-0.sql', 'DROP INDEX old_idx;\n')
    found = pf.owned_relations(load_patch_set(str(tmp_path)).patches)
    assert [(f['relation'], f['text'], f['patch'], f['line'], f['statement']) for f in found] == [
        ('"app"."item"', 'app.item', 'patch-0001-01-0.sql', 1, 'ALTER TABLE app.item'),
        ('"item"', 'item', 'patch-0001-01-0.sql', 2, 'ALTER TABLE item'),
        ('"tag"', 'tag', 'patch-0001-01-0.sql', 3, 'COMMENT ON TABLE'),
        ('"parted"', 'parted', 'patch-0001-01-0.sql', 5, 'CREATE TABLE item_2026'),
        ('"old_idx"', 'old_idx', 'patch-0001-03-0.sql', 1, 'DROP INDEX old_idx'),
    ]


def test_a_deploy_user_not_owning_a_changed_table_is_refused_per_owner_with_the_grant():
    row = {'usename': 'deploy', 'superuser': False, 'inherit': True}
    not_owned = [
        {'relation': 'fdt_item', 'owner': 'app', 'patch': 'patch-2301-14-0.sql', 'line': 1,
         'statement': 'ALTER TABLE fdt_item'},
        {'relation': 'fastdowntime.deploy_log', 'owner': 'dba', 'target': None},
        {'relation': 'fastdowntime.schema_revision', 'owner': 'dba', 'target': None},
    ]
    found = pf.decide_ownership('primary (10.0.0.10:5432)', row, not_owned, 160004)
    assert [(f['check'], f['status']) for f in found] == [('privileges', pf.FAIL)] * 2
    assert found[0]['summary'] == (
        'primary (10.0.0.10:5432): the deploy user deploy is neither the owner app of fdt_item (patch-2301-14-0.sql '
        'line 1: ALTER TABLE fdt_item) nor a member of it: PostgreSQL lets only the owner change a table ("must be '
        'owner of table"): the deploy would fail there, a cold patch inside the outage (the window rolls back)')
    assert found[0]['action'] == ('GRANT app TO deploy on primary (10.0.0.10:5432) (or deploy as app), then run the '
                                  'pre-flight again')
    assert "fastdowntime.deploy_log, fastdowntime.schema_revision (this collection's own tables" in found[1]['summary']
    # A NOINHERIT deploy user needs the option on 16 and later, ALTER ROLE ... INHERIT before.
    noinherit = dict(row, inherit=False)
    assert pf.decide_ownership('p', noinherit, not_owned[:1], 160004)[0]['evidence']['fix_sql'] == [
        'GRANT app TO deploy WITH INHERIT TRUE']
    assert pf.decide_ownership('p', noinherit, not_owned[:1], 150010)[0]['evidence']['fix_sql'] == [
        'GRANT app TO deploy', 'ALTER ROLE deploy INHERIT']
    # A member without the owner's privileges (from 16: granted WITH INHERIT FALSE): a plain GRANT changes nothing.
    member = dict(not_owned[0], member=True)
    inherit_false = pf.decide_ownership('p', row, [member], 160004)[0]
    assert inherit_false['evidence']['fix_sql'] == ['GRANT app TO deploy WITH INHERIT TRUE']
    assert 'nor has its privileges (a member without INHERIT)' in inherit_false['summary']
    assert pf.decide_ownership('p', row, [], 160004) == []


def test_the_owner_check_names_a_table_attached_and_not_the_patch_s_own_temporary_table(tmp_path):
    """ATTACH PARTITION needs the owner of the table attached too (tablecmds.c: ATSimplePermissions on it); a
    patch's own TEMP table (found first) is no permanent table whose owner must deploy it."""
    write(tmp_path, 'patch-0001-01-0.sql',
          'ALTER TABLE ev ATTACH PARTITION s.ev_2027 FOR VALUES FROM (1) TO (2);\n'
          'CREATE TEMP TABLE stage (id int);\nALTER TABLE stage ADD COLUMN z int;\nDROP TABLE pg_temp.stage;\n'
          'ALTER TABLE stage ADD COLUMN y int;\n')
    found = pf.owned_relations(load_patch_set(str(tmp_path)).patches)
    assert [(f['text'], f['line']) for f in found] == [('ev', 1), ('s.ev_2027', 1), ('stage', 5)]


def test_the_privileges_a_non_owner_needs_are_named_where_first_needed(tmp_path):
    write(tmp_path, 'patch-0001-01-0.sql',
          'UPDATE counts SET n = 0;\nINSERT INTO app.log VALUES (1);\nDELETE FROM counts;\nTRUNCATE scratch, other;\n'
          'UPDATE counts SET n = 1;\n'
          'GRANT SELECT, UPDATE (n) ON counts TO reader;\nREVOKE ALL ON app.log FROM PUBLIC;\n'
          'GRANT USAGE ON SCHEMA app TO reader;\nGRANT SELECT ON ALL TABLES IN SCHEMA app TO reader;\n'
          'CREATE TRIGGER t AFTER INSERT ON audited FOR EACH ROW EXECUTE FUNCTION f();\n'
          'ALTER TABLE counts ADD COLUMN m int;\n'
          'SET search_path = other;\nUPDATE elsewhere SET x = 1;\n')
    found = pf.privileged_relations(load_patch_set(str(tmp_path)).patches)
    assert [(f['relation'], f['privilege'], f['column'], f['line'], f['statement']) for f in found] == [
        ('"counts"', 'UPDATE', 'n', 1, 'UPDATE counts SET'),       # the column's privilege, or the table's
        ('"app"."log"', 'INSERT', None, 2, 'INSERT INTO app.log'),
        ('"counts"', 'DELETE', None, 3, 'DELETE FROM counts'),
        ('"scratch"', 'TRUNCATE', None, 4, 'TRUNCATE scratch, other'),
        ('"other"', 'TRUNCATE', None, 4, 'TRUNCATE scratch, other'),
        ('"counts"', 'SELECT WITH GRANT OPTION', None, 6, 'GRANT SELECT, UPDATE'),
        ('"counts"', 'UPDATE WITH GRANT OPTION', None, 6, 'GRANT SELECT, UPDATE'),
    ] + [('"app"."log"', '%s WITH GRANT OPTION' % p, None, 7, 'REVOKE ALL ON') for p in pf.TABLE_PRIVILEGES] + [
        ('"audited"', 'TRIGGER', None, 10, 'CREATE TRIGGER t'),
    ]


def test_the_columns_a_statement_writes_and_reads_lock_table_and_a_foreign_keys_references(tmp_path):
    """PostgreSQL's rules: INSERT/UPDATE on each column written; SELECT on each column of the table a WHERE,
    a SET expression or RETURNING reads (not a sub-select's, not an unqualified name beside a FROM/USING
    table); a whole-row reference needs the table's SELECT; REFERENCES on the referenced columns (any column
    when the key names none); LOCK TABLE by mode and version."""
    write(tmp_path, 'patch-0001-01-0.sql',
          "UPDATE counts SET n = n + 1 WHERE k = 'a' RETURNING m;\nINSERT INTO counts (k, n) VALUES ('b', 0);\n"
          'DELETE FROM log WHERE at < now() AND id IN (SELECT id FROM old WHERE flag);\n'
          'UPDATE items i SET v = 0 FROM other WHERE i.k = other.k AND z;\nDELETE FROM gone g WHERE g IS NULL;\n'
          'CREATE TABLE child (p int REFERENCES parent (id), q int REFERENCES keyed);\nLOCK TABLE locked IN SHARE MODE;\n'
          'LOCK TABLE read_locked IN ACCESS SHARE MODE;\nUPDATE plain SET v = 0;\n')
    patches = load_patch_set(str(tmp_path)).patches
    found = pf.privileged_relations(patches, 150000)
    assert [(f['relation'], pf.privilege_text(f['privilege'], f['column']), f['grant'], f['line']) for f in found] \
        == [('"counts"', 'UPDATE (n)', 'UPDATE (n)', 1), ('"counts"', 'SELECT (k)', 'SELECT (k)', 1),
            ('"counts"', 'SELECT (m)', 'SELECT (m)', 1), ('"counts"', 'SELECT (n)', 'SELECT (n)', 1),
            ('"counts"', 'INSERT (k)', 'INSERT (k)', 2), ('"counts"', 'INSERT (n)', 'INSERT (n)', 2),
            ('"log"', 'DELETE', 'DELETE', 3), ('"log"', 'SELECT (at)', 'SELECT (at)', 3),
            ('"log"', 'SELECT (id)', 'SELECT (id)', 3),
            ('"items"', 'UPDATE (v)', 'UPDATE (v)', 4), ('"items"', 'SELECT (k)', 'SELECT (k)', 4),
            ('"gone"', 'DELETE', 'DELETE', 5), ('"gone"', 'SELECT', 'SELECT', 5),
            ('"parent"', 'REFERENCES (id)', 'REFERENCES (id)', 6),
            ('"keyed"', 'REFERENCES (on any column)', 'REFERENCES', 6),
            ('"locked"', 'one of UPDATE, DELETE, TRUNCATE', 'UPDATE', 7),
            ('"read_locked"', 'SELECT', 'SELECT', 8),
            ('"plain"', 'UPDATE (v)', 'UPDATE (v)', 9)]
    by_version = dict((v, [pf.privilege_text(f['privilege'], f['column']) for f in pf.privileged_relations(patches, v)
                           if f['line'] in (7, 8)]) for v in (160000, 170000))
    assert by_version == {160000: ['one of UPDATE, DELETE, TRUNCATE', 'one of SELECT, INSERT, UPDATE, DELETE, TRUNCATE'],
                          170000: ['one of UPDATE, DELETE, TRUNCATE, MAINTAIN',
                                   'one of SELECT, INSERT, UPDATE, DELETE, TRUNCATE, MAINTAIN']}
    # the fix names what to grant, once per statement
    [refused] = pf.decide_table_privileges('p', {'usename': 'deploy'}, [
        dict(f, owner='app', member=False) for f in found if f['relation'] == '"counts"'])
    assert refused['evidence']['fix_sql'] == [
        'GRANT UPDATE (n), SELECT (k), SELECT (m), SELECT (n), INSERT (k), INSERT (n) ON "counts" TO deploy']
    assert 'lacks UPDATE (n), SELECT (k), SELECT (m), SELECT (n), INSERT (k), INSERT (n) (patch-0001-01-0.sql line 1: ' \
        'UPDATE counts SET; patch-0001-01-0.sql line 2: INSERT INTO counts)' in refused['summary']


def test_a_non_owner_without_a_privilege_or_its_grant_option_is_refused_per_relation():
    row = {'usename': 'deploy', 'superuser': False, 'inherit': True}
    missing = [
        {'relation': 'fdt_item', 'owner': 'app', 'member': False, 'privilege': 'UPDATE', 'patch': 'p-1.sql',
         'line': 1, 'statement': 'UPDATE fdt_item SET'},
        {'relation': 'fdt_item', 'owner': 'app', 'member': False, 'privilege': 'SELECT WITH GRANT OPTION',
         'patch': 'p-1.sql', 'line': 2, 'statement': 'GRANT SELECT ON'},
    ]
    [found] = pf.decide_table_privileges('primary (10.0.0.10:5432)', row, missing)
    assert found['status'] == FAIL and '\n' not in found['summary']
    assert found['summary'] == (
        'primary (10.0.0.10:5432): the deploy user deploy is not the owner app of fdt_item, nor a member of it, and '
        'lacks UPDATE (p-1.sql line 1: UPDATE fdt_item SET), which would fail inside the outage ("permission denied '
        'for table"; the window rolls back); and SELECT WITH GRANT OPTION (p-1.sql line 2: GRANT SELECT ON), without '
        'which PostgreSQL grants or revokes nothing - only a WARNING - and the deploy goes on without it')
    assert found['evidence']['fix_sql'] == ['GRANT UPDATE ON fdt_item TO deploy',
                                            'GRANT SELECT ON fdt_item TO deploy WITH GRANT OPTION']
    assert found['action'].startswith('as app (or a superuser): GRANT UPDATE ON fdt_item TO deploy; ')
    member = pf.decide_table_privileges('p', row, [dict(missing[0], member=True)])[0]
    assert 'a member of it without its privileges (NOINHERIT' in member['summary']
    assert pf.decide_table_privileges('p', row, []) == []


def test_a_findings_evidence_keeps_a_sessions_query_as_its_summary_never_its_text():
    secret = "UPDATE accounts SET token = 'hunter2' WHERE id = 1"
    row = {'pid': 7, 'usename': 'app', 'state': 'idle in transaction', 'xact_seconds': 120.0, 'state_seconds': 119.0,
           'application_name': 'x', 'query': secret}
    found = pf.decide_transactions('p', [row], [], 60)
    assert found['status'] == FAIL and 'hunter2' not in repr(found)
    assert found['evidence']['long_transactions'][0]['query'] == 'UPDATE, %d characters' % len(secret)
    blocking = pf.decide_blocking_sessions('p', [row], [], [], {7: 'pgbouncer1'}, [], set(), 9.5)
    assert blocking['status'] == FAIL and 'hunter2' not in repr(blocking)
    assert blocking['evidence']['drain_holders'][0]['pid'] == 7
