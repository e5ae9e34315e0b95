"""Standby identity and the replication decisions (replication.py), without a database."""

import pytest

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import replication as rp
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.budget import BudgetClock


def receiver(conninfo='', cluster_name='', slot=None, status='streaming', sender_host=None, sender_port=5432):
    return {'status': status, 'conninfo': conninfo, 'cluster_name': cluster_name, 'slot_name': slot,
            'sender_host': sender_host, 'sender_port': sender_port}


def row(pid, name='walreceiver', addr='10.0.0.9', slot=None, state='streaming', replay_lsn='0/3000000',
        slot_type=None):
    return {'pid': pid, 'application_name': name, 'client_addr': addr, 'slot_name': slot, 'state': state,
            'replay_lsn': replay_lsn, 'slot_type': slot_type or ('physical' if slot else None)}


def standby(label, override=None, addresses=(), **rec):
    return {'label': label, 'override': override, 'addresses': set(addresses), 'receiver': receiver(**rec)}


def test_receiver_name_follows_postgresql():
    assert rp.receiver_application_name(receiver('user=r application_name=s1 host=x')) == 's1'
    assert rp.receiver_application_name(receiver("application_name='my standby' port=5")) == 'my standby'
    assert rp.receiver_application_name(receiver('user=r host=x', cluster_name='main')) == 'main'
    assert rp.receiver_application_name(receiver('user=r host=x')) == 'walreceiver'
    assert rp.receiver_application_name(None) == 'walreceiver'


def test_identify_order_slot_then_name_then_address():
    rows = [row(1, 's1', slot='slot_a'), row(2, 's2', addr='10.0.0.12')]
    assert rp.identify(rows, standby('x', slot='slot_a'))[1] == 'slot slot_a'
    assert rp.identify(rows, standby('x', conninfo='application_name=s1'))[0]['pid'] == 1
    found, how = rp.identify(rows, standby('x', addresses=['10.0.0.12']))
    assert found['pid'] == 2 and how == 'client_addr 10.0.0.12'
    found, why = rp.identify(rows, standby('x', addresses=['10.0.0.13']))
    assert found is None and 'application_name walreceiver (0 rows)' in why


def test_override_is_the_only_rule_when_given():
    rows = [row(1, 'app-a', slot='s1'), row(2, 'app-b')]
    assert rp.identify(rows, standby('x', override='app-b', slot='s1'))[0]['pid'] == 2
    found, why = rp.identify(rows, standby('x', override='app-c', slot='s1'))
    assert found is None and 'no rows have application_name app-c' in why


def test_claimed_rows_are_skipped():
    rows = [row(1, 's1'), row(2, 's2', addr='10.0.0.12')]
    assert rp.identify(rows, standby('x', addresses=['10.0.0.12']))[0]['pid'] == 2
    assert rp.identify(rows, standby('x', addresses=['10.0.0.12']), claimed={2})[0] is None


def test_assign_slots_free_rows_for_name_matches():
    rows = [row(1, 's1', slot='a'), row(2, 's1')]
    # s1 matches by slot; then "s1" names one row left, which the other standby has by its conninfo name
    result = rp.assign(rows, [standby('one', slot='a'), standby('two', conninfo='application_name=s1')])
    assert result['one']['row']['pid'] == 1 and result['two']['row']['pid'] == 2


def test_assign_same_row_claimed_twice_goes_to_neither_then_elimination_needs_equal_counts():
    rows = [row(1, 'dup'), row(2, 'other', state='catchup')]
    result = rp.assign(rows, [standby('a', conninfo='application_name=dup'),
                              standby('b', conninfo='application_name=dup')])
    assert not result['a']['matched'] and not result['b']['matched']
    assert 'the same row as b' in result['a']['how']


def test_elimination_with_default_names_from_one_address():
    rows = [row(1), row(2)]
    result = rp.assign(rows, [standby('a', addresses=['10.0.0.11']), standby('b', addresses=['10.0.0.12'])])
    assert all(r['matched'] and r['row'] is None for r in result.values())
    # a standby that is not streaming is never matched by elimination
    result = rp.assign(rows, [standby('a'), standby('b', status='waiting')])
    assert not any(r['matched'] for r in result.values())


def test_unmatched_rows_are_the_streaming_standbys_assign_gave_no_one():
    rows = [row(1, slot='a'), row(2, 'b'), row(3, 'x'), row(4, 'y', state='catchup'), row(5, 'sub', slot='sub',
            slot_type='logical'), row(6, 'pg_receivewal', replay_lsn=None), row(7, 'pg_basebackup', state='backup')]
    standbys = [standby('a', slot='a'), standby('b', conninfo='application_name=b')]
    assert [r['pid'] for r in rp.unmatched_rows(rows, rp.assign(rows, standbys).values())] == [3]
    # no standby: every streaming standby row; elimination took the rows left: none
    assert [r['pid'] for r in rp.unmatched_rows(rows, [])] == [1, 2, 3]
    rows = [row(1), row(2)]
    found = rp.assign(rows, [standby('a', addresses=['10.0.0.11']), standby('b', addresses=['10.0.0.12'])])
    assert rp.unmatched_rows(rows, found.values()) == []
    # one standby of two rows alike: neither is its own, both are left
    found = rp.assign(rows, [standby('a', addresses=['10.0.0.9'])])
    assert not found['a']['matched'] and len(rp.unmatched_rows(rows, found.values())) == 2
    assert rp.describe_row(rows[0], 'p', 'p', rows).endswith('on p - like 1 other row(s) there, without a slot')


def test_locate_upstream_by_resolved_sender():
    servers = [{'label': 'primary', 'addresses': {'10.0.0.10'}, 'port': 5432},
               {'label': 's1', 'addresses': {'10.0.0.11'}, 'port': 5432},
               {'label': 's1b', 'addresses': {'10.0.0.11'}, 'port': 5433}]
    assert rp.locate_upstream(receiver(sender_host='10.0.0.10'), servers) == 'primary'
    assert rp.locate_upstream(dict(receiver(sender_host='db1.example'), sender_addresses={'10.0.0.11'}),
                              servers) == 's1'
    assert rp.locate_upstream(receiver(sender_host='10.0.0.11', sender_port=5433), servers) == 's1b'
    # a relay on the primary's host, another port
    assert rp.locate_upstream(receiver(sender_host='10.0.0.10', sender_port=6543), servers) == 'primary'
    assert rp.locate_upstream(receiver(sender_host='vip.example'), servers) is None


def test_chain_problems():
    assert rp.chain_problems({'s1': 'p', 's2': 's1'}, 'p') == {}
    assert 'loops' in rp.chain_problems({'s1': 's2', 's2': 's1'}, 'p')['s1']
    assert 'not a standby of this primary' in rp.chain_problems({'s2': 's9'}, 'p')['s2']


def test_describe_synchronous():
    assert rp.describe_synchronous({'synchronous_standby_names': '', 'synchronous_commit': 'on'}, {})['synchronous'] \
        is False
    sync = rp.describe_synchronous({'synchronous_standby_names': 'standby1', 'synchronous_commit': 'remote_apply'},
                                   {rp.PRIMARY: [{'application_name': 'standby1', 'sync_state': 'sync'}]})
    assert sync['waits_for_replay'] and 'synchronous now: standby1' in sync['text']
    on = rp.describe_synchronous({'synchronous_standby_names': 'standby1', 'synchronous_commit': 'on'},
                                 {rp.PRIMARY: [{'application_name': 'standby1', 'sync_state': 'sync'}]})
    assert not on['waits_for_replay']


def test_a_roles_own_remote_apply_blocks_the_split_window_only_with_synchronous_standbys():
    settings = {'synchronous_standby_names': 'standby1', 'synchronous_commit': 'on',
                'remote_apply_by': ['database app', 'role web']}
    blocked = rp.split_blocked_by_synchronous(rp.describe_synchronous(settings, {}))
    assert blocked.startswith("synchronous_commit = remote_apply set for database app, role web, with "
                              "synchronous_standby_names = 'standby1': those clients' commits would wait")
    assert rp.split_blocked_by_synchronous(rp.describe_synchronous(dict(settings, remote_apply_by=[]), {})) is None
    assert rp.split_blocked_by_synchronous(rp.describe_synchronous(
        dict(settings, synchronous_standby_names=''), {})) is None


def test_settings_below_the_primary():
    below = rp.settings_below({'max_connections': 200, 'max_wal_senders': 10, 'work_mem': 1},
                              {'max_connections': 250, 'max_wal_senders': 10, 'work_mem': 9})
    assert below == [('max_connections', 200, 250)]


def test_pause_cause_never_calls_a_postgresql_or_operator_pause_ours():
    assert rp.pause_cause('not paused', True, []) is None
    assert rp.pause_cause('paused', True, [('max_connections', 200, 250)]) == 'postgresql'
    assert rp.pause_cause('paused', True, []) == 'fastdowntime'
    assert rp.pause_cause('pause requested', False, []) == 'operator'


def test_decide_replay_by_cause():
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.preflight import FAIL, decide_replay
    pg = decide_replay('s1', 'paused', cause='postgresql', below=[('max_connections', 200, 250)])
    assert pg['status'] == FAIL and 'max_connections = 200 (the primary has 250)' in pg['summary']
    assert 'raise max_connections on s1' in pg['action']
    op = decide_replay('s1', 'paused', cause='operator')
    assert op['status'] == FAIL and 'somebody paused it on purpose' in op['summary']


def test_replay_blockers_only_where_the_delay_lets_them_block():
    rows = [{'pid': 1, 'xact_seconds': 7.0}, {'pid': 2, 'xact_seconds': 0.2}, {'pid': 3, 'xact_seconds': None}]
    assert rp.replay_blockers({'delay_ms': 30000}, rows, 60) == (False, [])
    assert rp.replay_blockers({'delay_ms': -1}, rows, 10) == (True, [rows[0]])
    assert rp.replay_blockers({'delay_ms': 30000}, rows, 10) == (True, [rows[0]])
    assert rp.blocking_threshold_seconds(4) == 2.0


def test_decide_replay_blockers_names_the_query():
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.preflight import FAIL, PASS, WARN, \
        decide_replay_blockers
    row = {'pid': 77, 'usename': 'dump', 'state': 'active', 'xact_seconds': 9.0, 'query': 'COPY fdt_item TO stdout'}
    found = decide_replay_blockers('s1', {'delay_ms': -1, 'max_standby_streaming_delay': '-1'}, [row], 10)
    assert found['status'] == FAIL and 'pid 77' in found['summary'] and 'max_standby_streaming_delay' in found['action']
    # Below the budget replay cancels it after the delay: a warning naming it and the cancel, not a refusal.
    cancelled = decide_replay_blockers('s1', {'delay_ms': 2000, 'max_standby_streaming_delay': '2s'}, [row], 10)
    assert cancelled['status'] == WARN and cancelled['summary'].startswith('s1: pid 77 (user dump')
    assert 'waits up to max_standby_streaming_delay = 2s for it' in cancelled['summary']
    assert 'PostgreSQL cancels it ("canceling statement due to conflict with recovery")' in cancelled['summary']
    assert decide_replay_blockers('s1', {'delay_ms': 2000, 'max_standby_streaming_delay': '2s'},
                                  [dict(row, xact_seconds=1.0)], 10)['status'] == PASS


def test_the_within_delay_warning_names_only_a_holder_of_a_lock_on_what_the_cold_patches_lock():
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.preflight import PASS, WARN, \
        decide_replay_blockers, standby_lock_holders
    required = [{'relation': ('', 'fdt_item'), 'mode': 'ACCESS EXCLUSIVE', 'patch': 'patch-1-01-0.sql', 'line': 1}]
    patched = {'pid': 41, 'usename': 'app', 'state': 'active', 'xact_seconds': 9.0, 'query': 'SELECT * FROM fdt_item'}
    other = {'pid': 42, 'usename': 'app', 'state': 'active', 'xact_seconds': 9.0, 'query': 'SELECT * FROM fdt_other'}
    holders = standby_lock_holders([{'target': 0, 'relation': 'fdt_item', 'mode': 'AccessShareLock', 'pid': 41,
                                     'granted': True}], required)
    delay = {'delay_ms': 2000, 'max_standby_streaming_delay': '2s'}
    found = decide_replay_blockers('s1', delay, [patched, other], 10, holders)
    assert found['status'] == WARN and 'pid 41 (' in found['summary'] and 'pid 42 (' not in found['summary']
    assert ('holds a lock on fdt_item (ACCESS SHARE), which patch-1-01-0.sql line 1 locks ACCESS EXCLUSIVE: replay of '
            "the outage's commit waits up to max_standby_streaming_delay = 2s for it") in found['summary']
    assert [b['pid'] for b in found['evidence']['blockers']] == [41]
    # The reader of another table alone: nothing named.
    quiet = decide_replay_blockers('s1', delay, [other], 10, [])
    assert quiet['status'] == PASS and quiet['summary'].endswith(
        'none holds a lock on what the cold patches lock ACCESS EXCLUSIVE')
    # Locks not read (the plan unknown), or hot_standby_feedback off (a VACUUM conflicts with any query):
    # every old transaction, as a possibility.
    assert 'pid 42 (' in decide_replay_blockers('s1', delay, [patched, other], 10)['summary']
    assert 'pid 42 (' in decide_replay_blockers('s1', dict(delay, hot_standby_feedback='off'), [patched, other], 10,
                                                holders)['summary']


def test_one_standby_session_is_one_line_the_stronger_finding_naming_it():
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.preflight import FAIL, PASS, WARN, \
        decide_standby_sessions
    # tryit9 r14: a reader idle in transaction on a standby replay waits for without limit.
    idle = {'pid': 25122, 'usename': 'fdt_app', 'state': 'idle in transaction', 'xact_seconds': 9.0,
            'state_seconds': 9.0, 'query': 'SELECT count(*) FROM fdt_item'}
    other = {'pid': 31, 'usename': 'report', 'state': 'idle in transaction', 'xact_seconds': 3.0,
             'state_seconds': 3.0, 'query': 'SELECT 1'}
    forever = {'delay_ms': -1, 'max_standby_streaming_delay': '-1'}
    transactions, blockers = decide_standby_sessions('s1', [idle, other], forever, 60, 10)
    assert blockers['status'] == FAIL and 'pid 25122' in blockers['summary']
    # The transactions warning keeps the other session only and says where pid 25122 is named.
    assert transactions['status'] == WARN and 'pid 25122 (' not in transactions['summary']
    assert 'pid 31 (' in transactions['summary']
    assert transactions['summary'].endswith('(apart from pid 25122: named under replay_blockers)')
    transactions, blockers = decide_standby_sessions('s1', [idle], forever, 60, 10)
    assert transactions['status'] == PASS and 'pid 25122 (' not in transactions['summary']
    # A transaction past fastdowntime_max_transaction_seconds (a failure) against replay's warning
    # (its delay below the budget): the failure names it, the warning leaves it out.
    transactions, blockers = decide_standby_sessions(
        's1', [idle], {'delay_ms': 2000, 'max_standby_streaming_delay': '2s'}, 5, 10)
    assert transactions['status'] == FAIL and 'pid 25122 (' in transactions['summary']
    assert blockers['status'] == PASS and blockers['summary'].endswith('(apart from pid 25122: named under '
                                                                       'transactions)')
    # Different sessions: both findings as they are.
    transactions, blockers = decide_standby_sessions('s1', [dict(idle, xact_seconds=3.0, state_seconds=3.0),
                                                            dict(other, pid=32, state='active', xact_seconds=9.0)],
                                                     forever, 60, 10)
    assert transactions['status'] == WARN and blockers['status'] == FAIL
    assert 'apart from' not in transactions['summary'] + blockers['summary']


def test_a_session_another_finding_of_its_host_names_is_left_to_it():
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.preflight import WARN, FAIL, \
        finding, elsewhere_note, sessions_named_elsewhere
    transactions = finding('transactions', WARN, 's1: 2 idle', host='s1',
                           evidence={'long_transactions': [], 'idle_in_transaction': [{'pid': 7}, {'pid': 8}]})
    drain = finding('blocking_sessions', FAIL, 's1: pid 7', host='s1', evidence={'drain_holders': [{'pid': 7}]})
    elsewhere = finding('blocking_sessions', FAIL, 's2: pid 8', host='s2', evidence={'drain_holders': [{'pid': 8}]})
    weaker = finding('replay_blockers', WARN, 's1: pid 8', host='s1', evidence={'blockers': [{'pid': 8}]})
    assert sessions_named_elsewhere([transactions, drain, elsewhere], transactions) == {7: 'blocking_sessions'}
    assert sessions_named_elsewhere([transactions, drain, weaker], transactions) == {
        7: 'blocking_sessions', 8: 'replay_blockers'}
    # A failing transactions finding keeps what only a warning names too.
    failing = dict(transactions, status=FAIL)
    assert sessions_named_elsewhere([failing, weaker], failing) == {}
    assert elsewhere_note({7: 'blocking_sessions', 8: 'replay_blockers', 9: 'blocking_sessions'}) == (
        ' (apart from pid 7, 9: named under blocking_sessions; pid 8: named under replay_blockers)')


def test_split_refused_with_remote_apply_synchronous_standbys():
    remote = rp.describe_synchronous({'synchronous_standby_names': 's1', 'synchronous_commit': 'remote_apply'}, {})
    assert 'remote_apply' in rp.split_blocked_by_synchronous(remote)
    on = rp.describe_synchronous({'synchronous_standby_names': 's1', 'synchronous_commit': 'on'}, {})
    assert rp.split_blocked_by_synchronous(on) is None


# -- the replay wait ---------------------------------------------------------------

def test_primary_view_matched_by_the_identity_rules_not_the_inventory_name():
    """The cross-check after the replay wait finds each standby's row of the
    primary's pg_stat_replication as the pre-flight does: slot, then its own
    application name, then its address. The inventory name means nothing to
    PostgreSQL: a row named like another standby's inventory name is not it."""
    rows = [row(1, 'standby2', addr='10.0.0.11', slot='slot_b'),   # standby1's walsender, named 'standby2'
            row(2, 'walreceiver', addr='10.0.0.12', slot='slot_a')]  # standby2, default name, slot slot_a
    one = rp.standby_identity({'name': 'standby1', 'host': 'db1', 'port': 5432},
                              receiver(conninfo='application_name=standby2', slot='slot_b'), {'10.0.0.11'})
    two = rp.standby_identity({'name': 'standby2', 'host': 'db2', 'port': 5432}, receiver(slot='slot_a'),
                              {'10.0.0.12'})
    seen = rp.match_replication_rows(rows, [one, two])
    assert seen['standby1 (db1:5432)'] is rows[0] and seen['standby2 (db2:5432)'] is rows[1]
    # default names from one address, no slots: who is who is unknown -> no row claimed for either
    same = [row(1), row(2)]
    seen = rp.match_replication_rows(same, [dict(one, receiver=receiver()), dict(two, receiver=receiver())])
    assert seen == {'standby1 (db1:5432)': None, 'standby2 (db2:5432)': None}
    # the override is the name the primary shows
    over = rp.standby_identity({'name': 'standby1', 'host': 'db1', 'standby_application_name': 'walreceiver'},
                               receiver(), ())
    assert rp.match_replication_rows([row(7), row(8, 'other')], [over])['standby1 (db1:5432)']['pid'] == 7
    # a cascaded standby has no row on the primary
    assert rp.match_replication_rows([], [one]) == {'standby1 (db1:5432)': None}


def test_lagging_error_names_each_standby_without_the_schema_with_its_own_reason():
    states = [{'label': 'standby1 (10.0.0.11:5432)', 'done': True, 'failed': None, 'replay_lsn': '0/30'},
              {'label': 'standby2 (10.0.0.12:5432)', 'done': False, 'failed': None, 'replay_lsn': '0/10'},
              {'label': 'standby3 (10.0.0.13:5432)', 'done': False, 'replay_lsn': None,
               'failed': 'connection lost (server closed the connection unexpectedly)'}]
    error = rp._lagging_error(states, 'at 0/30')
    # the lost one first, named as lost; the one still answering as behind; the one that replayed not at all
    assert str(error) == ('standby standby3 (10.0.0.13:5432): connection lost (server closed the connection '
                          'unexpectedly) while waiting for it to replay the schema change at 0/30 (last replayed '
                          'unknown): its entries stay DISABLED until it is back and has replayed it; '
                          'standby standby2 (10.0.0.12:5432): not caught up within the budget: it has not '
                          'replayed the schema change at 0/30 (last replayed 0/10); '
                          'clients must not be resumed onto them')
    assert error.lagging == ['standby2 (10.0.0.12:5432)', 'standby3 (10.0.0.13:5432)']


def test_a_failed_question_is_a_lost_connection_when_the_connection_is_gone():
    class Conn:
        closed = 0
    gone = Conn()
    gone.closed = 2
    assert rp.failure_reason(gone, rp.psycopg2.InterfaceError('cursor already closed')) == 'connection lost'
    assert rp.failure_reason(Conn(), rp.psycopg2.OperationalError('server closed the connection unexpectedly')) \
        == 'connection lost (server closed the connection unexpectedly)'
    assert rp.failure_reason(Conn(), rp.psycopg2.DatabaseError('canceling statement due to conflict')) \
        == 'query failed (canceling statement due to conflict)'


def test_replay_waits_for_the_transaction_itself_when_its_id_is_known():
    sql, params = rp.replay_query('0/3000148', xid='7412')
    assert params == {'xid': '7412'}
    # Exact: the standby's own word on the transaction, no WAL position compared.
    assert "pg_xact_status(%(xid)s::xid8) = 'committed'" in sql and '%(xid)s::xid8 < pg_snapshot_xmax' in sql
    assert 'pg_lsn' not in sql
    # Without an id: a WAL position (only for positions known to be flushed).
    sql, params = rp.replay_query('0/3000148')
    assert params == ('0/3000148',) and '>= %s::pg_lsn' in sql


class FakeStandby:
    """A blocking standby connection answering the replay poll from a script."""
    async_ = False

    def __init__(self, answers):
        self.answers = list(answers)
        self.asked = []

    def cursor(self):
        standby = self

        class Cursor:
            def execute(self, sql, params=None):
                standby.asked.append((sql, params))

            def fetchone(self):
                return standby.answers.pop(0)
        return Cursor()


def test_wait_for_replay_by_transaction_id_is_done_when_the_standby_says_committed(monkeypatch):
    monkeypatch.setattr(rp, 'query_rows', lambda conn, sql, params=None: [])
    monkeypatch.setattr(rp.time, 'sleep', lambda seconds: None)
    standby = FakeStandby([('0/5000000', False), ('0/5000100', True)])
    clock = BudgetClock(10)
    result = rp.wait_for_replay(None, [({'name': 's1', 'host': '10.0.0.11', 'port': 5432}, standby)],
                                '0/4FFFF00', clock, xid='7412')
    assert [params for dummy, params in standby.asked] == [{'xid': '7412'}, {'xid': '7412'}]
    assert result['xid'] == '7412' and result['standbys'][0]['replay_lsn'] == '0/5000100'
    assert clock.phases[-1]['detail']['xid'] == '7412'


# -- addresses ---------------------------------------------------------------------

def test_addresses_compare_as_postgresql_prints_them():
    assert rp.normalize_address('FD00:0:0::11') == 'fd00::11'
    assert rp.normalize_address('fe80::1%eth0') == 'fe80::1'
    assert rp.normalize_address('::ffff:10.0.0.11') == '10.0.0.11'   # a dual-stack listener
    assert rp.normalize_address('[fd00::11]') == 'fd00::11'
    assert rp.normalize_address('db1.example') == 'db1.example' and rp.normalize_address(None) is None
    rows = [row(1, addr='fd00::11'), row(2, addr='::ffff:10.0.0.12')]
    assert rp.identify(rows, standby('x', addresses=['fd00:0::11']))[0]['pid'] == 1
    assert rp.identify(rows, standby('x', addresses=['10.0.0.12']))[0]['pid'] == 2
    servers = [{'label': 'primary', 'addresses': {'fd00::10'}, 'port': 5432}]
    assert rp.locate_upstream(receiver(sender_host='FD00::10'), servers) == 'primary'


# -- fencing -------------------------------------------------------------------------

def test_fenced_entries_only_for_standbys_without_the_schema():
    standbys = [{'name': 's1', 'host': '10.0.0.11', 'port': 5432, 'pgbouncer_entries': ['b1:app_ro']},
                {'name': 's2', 'host': '10.0.0.12', 'port': 5432, 'pgbouncer_entries': ['b2:app_ro', 'b1:reports']}]
    consoles = [('b1', ['app', 'app_ro', 'reports']), ('b1', ['app', 'app_ro']), ('b2', ['app', 'app_ro'])]
    assert rp.fenced_entries([], standbys, consoles) == [[], [], []]
    # s1 lacks the schema: its entry on every console of b1 (two processes), nothing on b2
    assert rp.fenced_entries(['s1 (10.0.0.11:5432)'], standbys, consoles) == [['app_ro'], ['app_ro'], []]
    # s2: its entry on b2 and the one it serves on b1; an entry a console does not drain is not its to fence
    assert rp.fenced_entries(['s2 (10.0.0.12:5432)'], standbys, consoles) == [['reports'], [], ['app_ro']]
    # a label nobody has (the primary's, say) fences nothing
    assert rp.fenced_entries(['primary (10.0.0.10:5432)'], standbys, consoles) == [[], [], []]


# -- whose pause, and which one a run may resume -------------------------------------

def test_a_recovery_target_pause_is_postgresqls_and_resuming_would_promote():
    assert rp.recovery_target({'recovery_target_action': 'pause', 'recovery_target_lsn': '0/5000000',
                               'recovery_target': '', 'recovery_target_time': ''}) == 'recovery_target_lsn = 0/5000000'
    # no target, or a target that does not pause there
    assert rp.recovery_target({'recovery_target_action': 'pause', 'recovery_target_lsn': ''}) is None
    assert rp.recovery_target({'recovery_target_action': 'promote', 'recovery_target_lsn': '0/5'}) is None
    assert rp.pause_cause('paused', True, [], 'recovery_target_lsn = 0/5') == 'recovery_target'


def test_may_resume_ours_by_default_an_operators_when_told_postgresqls_never():
    assert rp.may_resume('fastdowntime') and not rp.may_resume('fastdowntime', resume_ours=False)
    assert not rp.may_resume('operator') and rp.may_resume('operator', resume_operators=True)
    for cause in ('postgresql', 'recovery_target', None):
        assert not rp.may_resume(cause, resume_ours=True, resume_operators=True)


def test_decide_replay_operator_pause_resumed_when_told_and_recovery_target_refused():
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.preflight import FAIL, WARN, decide_replay
    resumed = decide_replay('s1', 'paused', resumed=True, cause='operator')
    assert resumed['status'] == WARN and 'fastdowntime_resume_operator_replay_pause' in resumed['summary']
    refused = decide_replay('s1', 'paused', cause='operator')
    assert refused['status'] == FAIL and 'fastdowntime_resume_operator_replay_pause: true' in refused['action']
    target = decide_replay('s1', 'paused', cause='recovery_target', target='recovery_target_lsn = 0/5')
    assert target['status'] == FAIL and 'promote' in target['summary'] and 'recovery_target' in target['action']


# -- what blocks replay -----------------------------------------------------------------

def conflict_row(delay_ms=-1, archive_ms=30000, receiver_status='streaming', feedback='on', wait=(None, None),
                 blocked_by=None):
    return {'max_standby_streaming_delay': '%sms' % delay_ms if delay_ms >= 0 else '-1', 'delay_ms': delay_ms,
            'max_standby_archive_delay': '%sms' % archive_ms, 'archive_delay_ms': archive_ms,
            'hot_standby_feedback': feedback, 'receiver_status': receiver_status,
            'startup_wait_event_type': wait[0], 'startup_wait_event': wait[1], 'startup_blocked_by': blocked_by}


def test_the_delay_that_applies_streaming_or_restoring_from_the_archive():
    assert rp.replay_delay(conflict_row(delay_ms=-1, archive_ms=100))[0] == 'max_standby_streaming_delay'
    # no WAL receiver streaming: WAL comes from the archive, max_standby_archive_delay bounds the wait
    archive = conflict_row(delay_ms=100, archive_ms=-1, receiver_status=None)
    assert rp.replay_delay(dict(archive, receiver_status='waiting')) == ('max_standby_archive_delay', '-1ms', -1)
    rows = [{'pid': 5, 'xact_seconds': 8.0}]
    assert rp.replay_blockers(dict(archive, receiver_status='waiting'), rows, 10) == (True, rows)
    assert rp.replay_blockers(conflict_row(delay_ms=100, archive_ms=-1), rows, 10) == (False, [])


def test_a_backend_replay_waits_for_now_is_a_blocker_whatever_its_age():
    held = conflict_row(wait=('Lock', 'relation'), blocked_by=[42])
    assert rp.held_now(held) == {'wait_event': 'Lock:relation', 'blocked_by': [42]}
    assert rp.held_now(conflict_row(wait=('Activity', 'RecoveryWalStream'))) is None
    assert rp.held_now(conflict_row(wait=('IPC', 'RecoveryConflictSnapshot')))['wait_event'] \
        == 'IPC:RecoveryConflictSnapshot'
    young = [{'pid': 42, 'xact_seconds': 0.5}, {'pid': 43, 'xact_seconds': 0.5}]
    assert rp.replay_blockers(held, young, 10) == (True, [young[0]])


def test_hot_standby_feedback_off_is_a_risk_only_where_queries_can_hold_replay():
    assert rp.feedback_effect(conflict_row(feedback='off'), True)[1] is True
    assert rp.feedback_effect(conflict_row(feedback='off'), False)[1] is False
    assert rp.feedback_effect(conflict_row(feedback='on'), True)[1] is False


def test_decide_replay_blockers_held_now_fails_feedback_off_warns():
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.preflight import (
        FAIL, PASS, WARN, decide_replay_blockers)
    held = decide_replay_blockers('s1', conflict_row(wait=('Lock', 'relation'), blocked_by=[42]),
                                  [{'pid': 42, 'usename': 'rep', 'state': 'idle in transaction', 'xact_seconds': 1.0}],
                                  10)
    assert held['status'] == FAIL and 'pid 42' in held['summary'] and 'Lock:relation' in held['summary']
    assert 'max_standby_streaming_delay below the budget' in held['action']
    off = decide_replay_blockers('s1', conflict_row(feedback='off'), [], 10)
    assert off['status'] == WARN and 'hot_standby_feedback = off' in off['summary'] \
        and 'hot_standby_feedback = on' in off['action']
    on = decide_replay_blockers('s1', conflict_row(feedback='on'), [], 10)
    assert on['status'] == PASS and 'hot_standby_feedback = on' in on['summary']
    archive = decide_replay_blockers('s1', conflict_row(delay_ms=-1, archive_ms=50, receiver_status='waiting'),
                                     [{'pid': 1, 'xact_seconds': 99.0}], 10)
    # replay cancels that 99 s query after 50 ms: named, a warning
    assert archive['status'] == WARN and 'max_standby_archive_delay = 50ms' in archive['summary']
    quiet = decide_replay_blockers('s1', conflict_row(delay_ms=-1, archive_ms=50, receiver_status='waiting'), [], 10)
    assert quiet['status'] == PASS and 'max_standby_archive_delay = 50ms' in quiet['summary']


def test_recovery_conflicts_counted_per_kind():
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.preflight import (
        PASS, WARN, decide_recovery_conflicts)
    row = {'counts': {'confl_lock': 3, 'confl_snapshot': 2, 'confl_bufferpin': 0, 'confl_tablespace': 0},
           'stats_reset': '2026-11-29 10:00:00+00'}
    assert rp.conflict_counts(row) == ({'lock': 3, 'snapshot': 2}, '2026-11-29 10:00:00+00')
    found = decide_recovery_conflicts('s1', row, conflict_row(delay_ms=30000))
    assert found['status'] == WARN and '5 queries cancelled' in found['summary'] and 'lock 3, snapshot 2' in \
        found['summary'] and 'max_standby_streaming_delay = 30000ms' in found['summary']
    assert decide_recovery_conflicts('s1', {'counts': {'confl_lock': 0}}, None)['status'] == PASS
    assert decide_recovery_conflicts('s1', None, None)['status'] == PASS


# -- what others hit (public trackers) ----------------------------------------------------

def test_a_foreign_walsender_with_a_standbys_application_name_is_not_that_standby():
    """patroni#3545: a standby cluster's connection carried a member's
    application_name and sync tracking broke. Here: a foreign walsender named
    like standby1 never becomes standby1 - its slot, else its address tells."""
    rows = [row(1, 'standby1', addr='10.0.0.11', slot='standby1'), row(2, 'standby1', addr='10.9.9.9')]
    result = rp.assign(rows, [standby('standby1', conninfo='application_name=standby1', slot='standby1',
                                      addresses=['10.0.0.11'])])
    assert result['standby1']['row']['pid'] == 1 and result['standby1']['how'] == 'slot standby1'
    no_slot = rp.assign(rows, [standby('standby1', conninfo='application_name=standby1', addresses=['10.0.0.11'])])
    assert no_slot['standby1']['row']['pid'] == 1 and no_slot['standby1']['how'] == 'client_addr 10.0.0.11'
    # neither slot nor address tells them apart: not matched (the pre-flight asks for the override)
    blind = rp.assign([row(1, 'standby1'), row(2, 'standby1')],
                      [standby('standby1', conninfo='application_name=standby1')])
    assert not blind['standby1']['matched']


def test_base_backups_wal_archivers_and_logical_clients_are_not_standbys():
    """pgcluu#11, cloudnative-pg#3011: pg_basebackup shows a 'backup' row and a
    'streaming' WAL row; pg_receivewal/barman stream without replaying; a CDC
    client streams through a logical slot. None of them is a standby: not
    counted, never matched, and elimination still works beside them."""
    others = [row(7, 'pg_basebackup', state='backup', replay_lsn=None),
              row(8, 'pg_basebackup', replay_lsn=None),
              row(9, 'barman_receive_wal', slot='barman', replay_lsn=None),
              row(10, 'debezium', slot='cdc', slot_type='logical')]
    assert rp.standby_rows(others) == []
    result = rp.assign([row(1), row(2)] + others, [standby('a'), standby('b')])
    assert all(r['matched'] for r in result.values())
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.preflight import PASS, decide_standbys
    primary = {'label': 'p', 'in_recovery': False, 'system_identifier': '42'}
    standbys = [dict(standby(n), reachable=True, in_recovery=True, system_identifier='42', endpoint={'name': n})
                for n in ('a', 'b')]
    found = decide_standbys(primary, standbys, {'p': [row(1), row(2)] + others})
    assert found['status'] == PASS, found['summary']


def test_a_delayed_standby_is_refused_before_any_pause():
    """A standby with recovery_min_apply_delay (pgbackrest#1222: a delayed
    standby never reaches a fresh position in time) replays the outage's commit
    that late: refused at the budget or more, a warning below it."""
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.preflight import (
        FAIL, WARN, decide_replay_blockers)
    late = dict(conflict_row(), recovery_min_apply_delay='5min', apply_delay_ms=300000)
    assert rp.apply_delay_late(late, 10) and not rp.apply_delay_late(conflict_row(), 10)
    found = decide_replay_blockers('s1', late, [], 10)
    assert found['status'] == FAIL and 'recovery_min_apply_delay = 5min' in found['summary'] \
        and 'fastdowntime_standbys' in found['action']
    short = decide_replay_blockers('s1', dict(conflict_row(), recovery_min_apply_delay='200ms', apply_delay_ms=200),
                                   [], 10)
    assert short['status'] == WARN


def test_replay_stuck_where_the_lag_probe_need_not_wait():
    assert rp.replay_stuck(conflict_row(wait=('Lock', 'relation'), blocked_by=[4]), 10)
    # held now, but replay cancels the query after 100 ms: it will replay the probe
    assert not rp.replay_stuck(conflict_row(delay_ms=100, wait=('Lock', 'relation'), blocked_by=[4]), 10)
    assert rp.replay_stuck(dict(conflict_row(), apply_delay_ms=600000), 10)
    assert not rp.replay_stuck(conflict_row(), 10)
    assert rp.queries_can_hold(conflict_row(delay_ms=-1), 10) and rp.queries_can_hold(conflict_row(delay_ms=10000), 10)
    assert not rp.queries_can_hold(conflict_row(delay_ms=9999), 10) and not rp.queries_can_hold({}, 10)


def test_measure_lag_polls_until_replayed_and_leaves_a_lost_standby_to_its_caller(monkeypatch):
    answers = {'s1': [{'caught_up': False, 'bytes_behind': 120.0}, {'caught_up': True, 'bytes_behind': 0.0}],
               's2': [{'caught_up': None, 'bytes_behind': None}]}

    class Lost(rp.psycopg2.OperationalError):
        pass

    def fake_query(conn, sql, params=None):
        if conn == 's3':
            raise Lost('server closed the connection unexpectedly')
        return [answers[conn].pop(0)]

    monkeypatch.setattr(rp, 'query', fake_query)
    monkeypatch.setattr(rp.time, 'sleep', lambda seconds: None)
    gone = []
    found = rp.measure_lag([('s1', 's1'), ('s2', 's2'), ('s3', 's3')], '0/5000000', 10,
                           lost=lambda label, conn, exc: gone.append(label) or True)
    assert [(m['label'], m['bytes_behind'], m['catch_up_seconds'] is not None, m['error']) for m in found] == [
        ('s1', 120, True, None), ('s2', None, False, 'not in recovery')]
    assert gone == ['s3']


def test_measure_lag_counts_what_the_window_would_wait_without_the_probes_sequential_round_trips(monkeypatch):
    # Simulated time: each question takes one 40 ms round trip (the rtt40 lab shape). s1 and s2 had replayed the
    # probe when first asked; s3 answers "not yet" once. The probe asks them one after the other, so s2's answer
    # comes 80 ms after the start; the window asks every standby at once: 40 ms for s1 and s2.
    now = [100.0]
    answers = {'s1': [True], 's2': [True], 's3': [False, True]}

    def fake_query(conn, sql, params=None):
        now[0] += 0.04
        return [{'caught_up': answers[conn].pop(0), 'bytes_behind': 0.0}]

    def sleep(seconds):
        now[0] += seconds

    monkeypatch.setattr(rp, 'query', fake_query)
    found = dict((m['label'], m) for m in rp.measure_lag([('s1', 's1'), ('s2', 's2'), ('s3', 's3')], '0/5000000',
                                                         10, clock=lambda: now[0], sleep=sleep))
    assert found['s1']['catch_up_seconds'] == pytest.approx(0.04) == found['s1']['replay_wait_seconds']
    assert found['s2']['catch_up_seconds'] == pytest.approx(0.08)
    assert found['s2']['replay_wait_seconds'] == pytest.approx(0.04)
    # s3: the first sweep (3 questions, 120 ms), the window's poll, then its own question alone.
    poll = rp.REPLAY_WAIT_POLL_SECONDS
    assert found['s3']['catch_up_seconds'] == pytest.approx(0.12 + poll + 0.04)
    assert found['s3']['replay_wait_seconds'] == pytest.approx(0.12 + poll + 0.04)


def test_measure_lag_polls_as_the_window_at_first_then_less_and_less_often(monkeypatch):
    # A standby behind for 0.3 s (simulated; answers take no time): asked every REPLAY_WAIT_POLL_SECONDS for the
    # first LAG_PROBE_FIXED_POLL_SECONDS, as the window's replay wait asks, then at a pause doubling up to 0.1 s.
    now = [0.0]
    slept = []

    def fake_query(conn, sql, params=None):
        return [{'caught_up': now[0] >= 0.3, 'bytes_behind': 0.0}]

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    monkeypatch.setattr(rp, 'query', fake_query)
    [found] = rp.measure_lag([('s1', 's1')], '0/5000000', 10, clock=lambda: now[0], sleep=sleep)
    fixed = int(round(rp.LAG_PROBE_FIXED_POLL_SECONDS / rp.REPLAY_WAIT_POLL_SECONDS))
    assert slept[:fixed] == [rp.REPLAY_WAIT_POLL_SECONDS] * fixed
    assert slept[fixed:fixed + 3] == [2 * rp.REPLAY_WAIT_POLL_SECONDS, 4 * rp.REPLAY_WAIT_POLL_SECONDS,
                                      8 * rp.REPLAY_WAIT_POLL_SECONDS]
    assert max(slept) == 0.1 and found['catch_up_seconds'] >= 0.3


def test_catch_up_writes_the_probe_then_waits_for_every_standby_and_refuses_one_behind_in_one_line(monkeypatch):
    # Before the window's clock: standby1 fell 2.1 MB behind since the pre-flight (a network blip in a soak)
    # and never replays the probe within the wait; standby2 is caught up at once.
    asked = []

    def fake_query(conn, sql, params=None):
        asked.append((conn, sql))
        if conn == 'primary':
            return [{'lsn': '0/692C360'}]
        return [{'caught_up': conn == 'standby2', 'bytes_behind': 2 * 1024 * 1024 + 100000 if conn == 'standby1'
                 else 0.0}]

    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    monkeypatch.setattr(rp, 'query', fake_query)
    standbys = [({'name': 'standby1', 'host': '10.0.0.11', 'port': 5432}, 'standby1'),
                ({'name': 'standby2', 'host': '10.0.0.12', 'port': 5432}, 'standby2')]
    states = rp.catch_up('primary', standbys, max_seconds=2, clock=lambda: now[0], sleep=sleep)
    assert asked[0] == ('primary', rp.LAG_PROBE_SQL)
    assert [(s['label'], s['catch_up_seconds'] is None) for s in states] == [
        ('standby1 (10.0.0.11:5432)', True), ('standby2 (10.0.0.12:5432)', False)]
    refusal = rp.catch_up_refusal(states, 2)
    assert '\n' not in refusal
    assert refusal.startswith('refused before any PAUSE: standby1 (10.0.0.11:5432): 2.1 MB behind the primary and '
                              'not caught up within 2 s.')
    assert 'standby2' not in refusal and 'run the deploy again' in refusal
    assert rp.catch_up_refusal([dict(states[1])], 2) is None


def test_catch_up_refusal_names_a_standby_whose_lag_could_not_be_measured():
    states = [{'label': 'standby1 (a:5432)', 'bytes_behind': None, 'catch_up_seconds': None,
               'error': 'no answer within 30.0 s'}]
    assert 'standby1 (a:5432): no answer within 30.0 s.' in rp.catch_up_refusal(states)


def test_measure_lag_does_not_wait_for_a_standby_whose_replay_is_paused(monkeypatch):
    # It cannot replay the probe: named at its first answer, not after the whole wait.
    asked = []

    def fake_query(conn, sql, params=None):
        asked.append(conn)
        return [{'caught_up': False, 'bytes_behind': 4096.0, 'replay_paused': True}]

    monkeypatch.setattr(rp, 'query', fake_query)
    [found] = rp.measure_lag([('standby1 (a:5432)', 's1')], '0/5000000', 30)
    assert asked == ['s1'] and found['error'] == rp.REPLAY_PAUSED_TEXT and found['bytes_behind'] == 4096
    assert 'standby1 (a:5432): its WAL replay is paused (pg_wal_replay_resume() on it' in rp.catch_up_refusal([found])


def test_bytes_text():
    assert [rp._bytes_text(n) for n in (None, 0, 1023, 1024, 5 << 20, 3 << 30)] == [
        'an unknown amount', '0 bytes', '1023 bytes', '1.0 kB', '5.0 MB', '3.0 GB']


def test_measure_lag_on_a_non_blocking_connection_gives_up_on_a_silent_standby(monkeypatch):
    # The outage's standby connections are non-blocking: a standby that never answers is an error, not a hang.
    class Silent:
        async_ = True

        def cursor(self):
            return self

        def execute(self, sql, params=None):
            pass

    def no_answer(conn, timeout):
        raise TimeoutError()

    monkeypatch.setattr(rp, 'wait', no_answer)
    [found] = rp.measure_lag([('s1', Silent())], '0/5000000', 0.2)
    assert found['catch_up_seconds'] is None and found['error'].startswith('no answer within')
    assert 'not caught up' not in rp.catch_up_refusal([found])


# -- the replay wait's schedule (simulated time: a clock, standbys answering after a round trip) ----

def test_next_polls_asks_the_due_standbys_and_waits_until_the_next_one_is_due():
    # a first question is due at once; one in flight (None) is never asked again
    assert rp.next_polls(1.0, {'a': 0.0, 'b': None}, 5.0) == (['a'], 5.0)
    # b answered "not yet": it is due one poll later; the wait ends then, not later
    ask, wait = rp.next_polls(1.0, {'a': None, 'b': 1.002}, 5.0)
    assert ask == [] and abs(wait - 0.002) < 1e-9
    # never past the usable budget, never negative
    assert rp.next_polls(1.0, {'a': 1.5}, 0.1) == ([], 0.1)
    assert rp.next_polls(1.0, {'a': None}, -0.3) == ([], 0.0)


class SimulatedStandbys:
    """Time that moves only when the replay wait sleeps or waits on sockets;
    each standby answers a question one round trip after it was sent, saying
    whether it had replayed the commit half a round trip after it was sent."""
    POLL_OK, POLL_READ = rp.psycopg2.extensions.POLL_OK, rp.psycopg2.extensions.POLL_READ

    def __init__(self, rtt, replayed_at):
        self.now = 100.0
        self.rtt = rtt
        self.sleeps = []       # (when, seconds, questions in flight then)
        self.conns = [self.Conn(self, n, at) for n, at in enumerate(replayed_at)]

    class Conn:
        async_ = True

        def __init__(self, sim, n, replayed_at):
            self.sim, self.n, self.replayed_at = sim, n, replayed_at
            self.question = None   # (sent, arrives)
            self.asked = []
            self.rtt = sim.rtt

        def fileno(self):
            return 1000 + self.n

        lost_at = None   # simulated time its server is stopped: its connection is lost then
        closed = 0

        def poll(self):
            if self.lost_at is not None and self.sim.now >= self.lost_at:
                self.closed = 2
                raise rp.psycopg2.OperationalError('server closed the connection unexpectedly')
            arrived = self.question is not None and self.question[1] is not None and self.question[1] <= self.sim.now
            return self.sim.POLL_OK if arrived else self.sim.POLL_READ

        def cursor(self):
            conn = self

            class Cursor:
                def execute(self, sql, params=None):
                    if conn.closed:
                        raise rp.psycopg2.InterfaceError('connection already closed')
                    conn.asked.append(conn.sim.now)
                    conn.question = (conn.sim.now, None if conn.replayed_at == 'silent'
                                     else conn.sim.now + conn.rtt)

                def fetchone(self):
                    if conn.closed:
                        raise rp.psycopg2.InterfaceError('cursor already closed')
                    sent = conn.question[0]
                    conn.question = None
                    done = conn.replayed_at is not None and sent + conn.rtt / 2 >= conn.replayed_at
                    return ('0/5%07d' % len(conn.asked), done)
            return Cursor()

    def time(self):
        sim = self

        class Time:
            @staticmethod
            def monotonic():
                return sim.now

            @staticmethod
            def sleep(seconds):
                sim.sleeps.append((sim.now, seconds, sum(1 for c in sim.conns if c.question)))
                sim.now += max(seconds, 1e-6)   # as a real sleep: never shorter than a microsecond
        return Time

    def select(self):
        sim = self

        class Select:
            @staticmethod
            def select(readable, writable, errors, timeout):
                arrivals = [c.question[1] for c in sim.conns
                            if c.fileno() in readable and c.question and c.question[1] is not None]
                arrivals += [c.lost_at for c in sim.conns if c.fileno() in readable and c.lost_at is not None]
                first = min(arrivals) if arrivals else None
                if first is not None and first <= sim.now + timeout:
                    sim.now = max(sim.now, first)
                    return [c.fileno() for c in sim.conns if c.fileno() in readable
                            and (c.lost_at is not None and c.lost_at <= sim.now or c.poll() == sim.POLL_OK)], [], []
                sim.now += max(timeout, 1e-6)
                return [], [], []
        return Select

    def wait(self, monkeypatch, budget=10, **kwargs):
        monkeypatch.setattr(rp, 'time', self.time())
        monkeypatch.setattr(rp, 'select', self.select())
        clock = BudgetClock(budget, clock=lambda: self.now, wall=lambda: self.now)
        standbys = [({'name': 's%d' % (c.n + 1), 'host': '10.0.0.%d' % (11 + c.n), 'port': 5432}, c)
                    for c in self.conns]
        began = self.now
        try:
            return began, clock, rp.wait_for_replay(None, standbys, '0/5000000', clock, xid='7', cross_check=False,
                                                    **kwargs)
        except rp.ReplicationError as exc:
            return began, clock, exc


def test_an_answer_is_read_when_it_arrives_not_after_a_sleep(monkeypatch):
    # s1 answers within 1 ms and replays at 30 ms; s2 has replayed already but answers 40 ms after a question.
    # The old wait slept (a growing interval) whenever s1 had answered "not yet", and read s2's answer, arrived
    # meanwhile, only after the sleep.
    sim = SimulatedStandbys(rtt=0.040, replayed_at=[100.030, 100.0])
    sim.conns[0].rtt = 0.001
    began, clock, replay = sim.wait(monkeypatch)
    by_name = dict((s['name'].split()[0], s['replay_ms']) for s in replay['standbys'])
    assert by_name['s2'] == 40.0   # its first answer, read when it arrived
    assert 30.0 <= by_name['s1'] <= (0.030 + rp.REPLAY_WAIT_POLL_SECONDS + 0.001) * 1000 + 0.1
    # never a sleep while a question was in flight
    assert all(in_flight == 0 for dummy, dummy, in_flight in sim.sleeps)


def test_a_standby_replaying_late_is_still_reported_within_one_poll(monkeypatch):
    # the interval does not grow: a replay of 3 s is reported one poll after it, not up to 50 ms later
    sim = SimulatedStandbys(rtt=0.0002, replayed_at=[100.0031, 103.0])
    began, clock, replay = sim.wait(monkeypatch)
    for result, conn in zip(replay['standbys'], sim.conns):
        late_ms = result['replay_ms'] - (conn.replayed_at - began) * 1000
        assert 0 <= late_ms <= (rp.REPLAY_WAIT_POLL_SECONDS + sim.rtt) * 1000 + 0.1
        assert all(b - a >= rp.REPLAY_WAIT_POLL_SECONDS for a, b in zip(conn.asked, conn.asked[1:]))
    assert clock.phases[-1]['detail']['standby_replay_ms'] == dict(
        (r['name'], r['replay_ms']) for r in replay['standbys'])


def test_a_standby_that_never_replays_or_never_answers_ends_the_wait_at_the_usable_budget(monkeypatch):
    sim = SimulatedStandbys(rtt=0.001, replayed_at=[100.0, None])
    began, clock, error = sim.wait(monkeypatch, budget=2)
    assert isinstance(error, rp.ReplicationError) and error.lagging == ['s2 (10.0.0.12:5432)']
    assert 'standby s2 (10.0.0.12:5432): not caught up within the budget' in str(error)
    assert clock.usable() <= 0 and sim.now - began <= clock.budget.usable + rp.REPLAY_WAIT_POLL_SECONDS
    sim = SimulatedStandbys(rtt=0.001, replayed_at=['silent', 100.0])
    began, clock, error = sim.wait(monkeypatch, budget=2)
    assert 'standby s1 (10.0.0.11:5432): no answer within the budget' in str(error)
    assert error.lagging == ['s1 (10.0.0.11:5432)'] and sim.now - began <= clock.budget.usable + 1e-6
    assert len(sim.conns[0].asked) == 1   # a question in flight is never asked again


def test_a_standby_is_silent_when_it_never_answered_or_this_answer_is_far_slower_than_its_others():
    assert rp.is_silent({'asked_at': 10.0}, 10.001)   # no answer yet during the wait
    # answered before in 2 ms at most: 50 ms late is still answering, 150 ms is silent
    assert not rp.is_silent({'asked_at': 10.0, 'slowest': 0.002}, 10.05)
    assert rp.is_silent({'asked_at': 10.0, 'slowest': 0.002}, 10.0 + 0.002 + rp.SILENT_AFTER_SECONDS + 0.001)


def test_a_standby_lost_while_another_is_still_replaying_fences_only_the_lost_one(monkeypatch):
    # s1 replays at 300 ms; s2 (never replays) is stopped at 100 ms while questions to both are in flight.
    # Before: the first failure ended the wait at once and called s1 behind too (its entries fenced,
    # its question left in flight); now s1 is waited for and reported by its own answer.
    sim = SimulatedStandbys(rtt=0.001, replayed_at=[100.3, None])
    sim.conns[1].lost_at = 100.1
    began, clock, error = sim.wait(monkeypatch, budget=5)
    assert isinstance(error, rp.ReplicationError)
    assert error.lagging == ['s2 (10.0.0.12:5432)']
    assert str(error).startswith('standby s2 (10.0.0.12:5432): connection lost')
    assert 'while waiting for it to replay' in str(error)
    assert 's1' not in str(error) and 'has not replayed' not in str(error)
    replayed = clock.phases[-1]['detail']['standby_replay_ms']
    assert 300.0 <= replayed['s1 (10.0.0.11:5432)'] <= 300.0 + (rp.REPLAY_WAIT_POLL_SECONDS + 0.001) * 1000 + 0.1
    assert replayed['s2 (10.0.0.12:5432)'] is None
    assert sim.conns[0].question is None   # nothing left in flight on the standby that replayed
    assert sim.now - began < 0.31 + 0.01   # it ended when s1 replayed, not at the budget


# -- fences: entries a window left DISABLEd, ENABLEd by a later run once their standby replayed ----

def test_fence_rows_name_the_lagging_standby_each_fenced_entry_serves():
    standbys = [{'name': 'standby1', 'host': 'h1', 'port': 5432, 'pgbouncer_entries': ['pgbouncer1:db_ro']},
                {'name': 'standby2', 'host': 'h2', 'port': 5432, 'pgbouncer_entries': ['pgbouncer2:db_ro']}]
    rows = rp.fence_rows([('pgbouncer2 (p2:6432)', 'db_ro')], ['standby2 (h2:5432)'], standbys,
                         {'pgbouncer1 (p1:6432)': 'pgbouncer1', 'pgbouncer2 (p2:6432)': 'pgbouncer2'})
    assert rows == [{'pgbouncer': 'pgbouncer2 (p2:6432)', 'entry': 'db_ro', 'standby': 'standby2 (h2:5432)'}]


def test_unfence_plan_enables_only_a_fenced_entry_whose_standby_replayed_past_the_fence():
    def fence(pgbouncer, entry, standby):
        return {'pgbouncer': pgbouncer, 'entry': entry, 'standby': standby, 'deploy_id': 'fdt-1', 'lsn': '0/50'}
    fences = [fence('p1', 'db_ro', 's1'), fence('p2', 'db_ro', 's2'), fence('p3', 'db_ro', 's1'),
              fence('p4', 'db_ro', 's1')]
    disabled = {'p1': {'db_ro'}, 'p2': {'db_ro'}, 'p3': set(), 'p4': None}
    replayed = {'s1': (True, 'replayed up to 0/60'), 's2': (False, 'replayed up to 0/40')}
    plan = dict((step['pgbouncer'], (step['action'], step['why'])) for step in
                rp.unfence_plan(fences, disabled, replayed))
    assert plan == {'p1': ('enable', 's1 replayed past 0/50'),
                    'p2': ('keep', 's2 has not replayed past 0/50 (replayed up to 0/40)'),
                    'p3': ('forget', 'no longer disabled'),      # someone ENABLEd it meanwhile
                    'p4': ('keep', 'its pgbouncer did not answer')}
    # a standby that cannot be asked keeps its entries fenced, and the line says what to do
    step = rp.unfence_plan([fence('p2', 'db_ro', 's2')], {'p2': {'db_ro'}},
                           {'s2': (False, 'connection refused')})[0]
    assert rp.still_fenced_line(step) == (
        'p2: db_ro stays DISABLED (fenced by deploy fdt-1): s2 has not replayed past 0/50 (connection refused) -> '
        'bring s2 back streaming; the next deploy ENABLEs it once it has replayed (or ENABLE db_ro on that '
        'pgbouncer by hand once sure)')


def test_the_estimate_adds_the_delay_a_replay_blockers_warning_announces():
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.preflight import decide_replay_blockers, \
        replay_conflict_seconds
    row = {'pid': 77, 'usename': 'dump', 'state': 'active', 'xact_seconds': 9.0, 'query': 'COPY fdt_item TO stdout'}
    delay = {'delay_ms': 2000, 'max_standby_streaming_delay': '2s'}
    warned = decide_replay_blockers('s1', delay, [row], 10)
    assert warned['evidence']['replay_waits_up_to_ms'] == 2000
    quiet = decide_replay_blockers('s2', delay, [dict(row, xact_seconds=1.0)], 10)
    refused = decide_replay_blockers('s3', {'delay_ms': -1, 'max_standby_streaming_delay': '-1'}, [row], 10)
    assert replay_conflict_seconds([quiet, refused]) == 0.0  # a refusal opens no outage to estimate
    assert replay_conflict_seconds([quiet, warned, dict(warned, host='s4', evidence={'replay_waits_up_to_ms': 500})]) \
        == 2.0


def test_the_lag_probe_commits_locally_whatever_the_sessions_synchronous_commit():
    """The pre-flight's session keeps a client's settings (local_commits=False): the probe's own
    statement must make its COMMIT local, or it waits for an unreachable synchronous standby with no
    bound (the soak's standby_before on the sync_apply shape hung the pre-flight)."""
    import pglast
    statements = pglast.parse_sql(rp.LAG_PROBE_SQL)
    assert len(statements) == 1  # one statement: autocommit makes it its own transaction, set_config's scope
    calls = [(node.funcname[-1].sval, [getattr(arg, 'val', None) for arg in node.args])
             for node in _nodes(statements[0]) if isinstance(node, pglast.ast.FuncCall)]
    names = [name for name, dummy in calls]
    assert 'pg_logical_emit_message' in names, calls
    args = [[getattr(v, 'sval', getattr(v, 'boolval', None)) for v in a] for n, a in calls if n == 'set_config']
    assert args == [['synchronous_commit', 'local', True]], calls


def _nodes(node):
    """Every pglast AST node under ``node``."""
    import pglast
    todo = [node]
    while todo:
        current = todo.pop()
        if isinstance(current, pglast.ast.Node):
            yield current
            todo.extend(getattr(current, name) for name in current)
        elif isinstance(current, tuple):
            todo.extend(current)
