"""Standby identity and the replication decisions (replication.py), without a database."""

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import replication as rp


def receiver(conninfo='', cluster_name='', slot=None, status='streaming', sender_host=None, sender_port=5432):
    return {'status': status, 'conninfo': conninfo, 'cluster_name': cluster_name, 'slot_name': slot,
            'sender_host': sender_host, 'sender_port': sender_port}


def row(pid, name='walreceiver', addr='10.0.0.9', slot=None, state='streaming'):
    return {'pid': pid, 'application_name': name, 'client_addr': addr, 'slot_name': slot, 'state': state}


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
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.preflight import FAIL, PASS, \
        decide_replay_blockers
    row = {'pid': 77, 'usename': 'dump', 'state': 'active', 'xact_seconds': 9.0, 'query': 'COPY fdt_item TO stdout'}
    found = decide_replay_blockers('s1', {'delay_ms': -1, 'max_standby_streaming_delay': '-1'}, [row], 10)
    assert found['status'] == FAIL and 'pid 77' in found['summary'] and 'max_standby_streaming_delay' in found['action']
    assert decide_replay_blockers('s1', {'delay_ms': 30, 'max_standby_streaming_delay': '30ms'}, [row], 10)['status'] \
        == PASS


def test_split_refused_with_remote_apply_synchronous_standbys():
    remote = rp.describe_synchronous({'synchronous_standby_names': 's1', 'synchronous_commit': 'remote_apply'}, {})
    assert 'remote_apply' in rp.split_blocked_by_synchronous(remote)
    on = rp.describe_synchronous({'synchronous_standby_names': 's1', 'synchronous_commit': 'on'}, {})
    assert rp.split_blocked_by_synchronous(on) is None
