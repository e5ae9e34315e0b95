"""pgversion: what differs between the supported PostgreSQL versions, chosen by server_version_num."""

import pglast
import pglast.visitors
import pytest

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import (
    patchset, pgversion, preflight, replication, sessions)

# One server_version_num per supported major (and one either side), as servers report them.
V12, V13, V14, V15, V16, V17, V18, V19 = 120022, 130021, 140018, 150014, 160010, 170006, 180006, 190000


@pytest.mark.parametrize('num, text, major', [(V13, '13.21', 13), (V15, '15.14', 15), (V18, '18.6', 18)])
def test_version_numbers_read_as_postgresql_writes_them(num, text, major):
    assert pgversion.version_text(num) == text
    assert pgversion.major(num) == major


def test_the_supported_range_is_13_to_18():
    assert pgversion.supported_range() == '13 to 18'
    assert pgversion.support_problem(V12) == (
        'PostgreSQL 12.22 is older than this collection supports (13 to 18): upgrade the server')
    for num in (V13, V14, V15, V16, V17, V18, V19):
        assert pgversion.support_problem(num) is None
    assert [pgversion.newer_than_tested(n) for n in (V13, V18, V19)] == [False, False, True]


@pytest.mark.parametrize('num, function', [
    (V13, 'pg_is_wal_replay_paused()'), (V14, 'pg_get_wal_replay_pause_state()'),
    (V15, 'pg_get_wal_replay_pause_state()'), (V16, 'pg_get_wal_replay_pause_state()'),
    (V17, 'pg_get_wal_replay_pause_state()'), (V18, 'pg_get_wal_replay_pause_state()'),
])
def test_the_replay_pause_state_query_exists_on_each_version(num, function):
    sql = pgversion.replay_pause_state_sql(num)
    assert function in sql
    # Either way one column named state, answering in 14's words.
    [raw] = pglast.parse_sql(sql)
    assert [t.name for t in raw.stmt.targetList] == ['state']
    if num < 140000:
        assert "'paused'" in sql and "'not paused'" in sql


@pytest.mark.parametrize('num, inherit, member_of, fix', [
    # A member role with INHERIT (the default): a plain GRANT on every version.
    (V15, True, [], ['GRANT pg_monitor, pg_signal_backend TO u']),
    (V16, True, [], ['GRANT pg_monitor, pg_signal_backend TO u']),
    # NOINHERIT: from 16 a plain GRANT takes rolinherit (a membership without the privileges) and a
    # GRANT of a membership that exists changes nothing: the option says it. Before 16 the role is fixed.
    (V16, False, [], ['GRANT pg_monitor, pg_signal_backend TO u WITH INHERIT TRUE']),
    (V18, True, ['pg_monitor'], ['GRANT pg_monitor, pg_signal_backend TO u WITH INHERIT TRUE']),
    (V15, False, [], ['GRANT pg_monitor, pg_signal_backend TO u', 'ALTER ROLE u INHERIT']),
    (V13, False, ['pg_monitor', 'pg_signal_backend'], ['ALTER ROLE u INHERIT']),
    (V14, False, ['pg_monitor'], ['GRANT pg_signal_backend TO u', 'ALTER ROLE u INHERIT']),
    # Before 16 a member through a NOINHERIT role in between, with INHERIT itself: a direct GRANT.
    (V15, True, ['pg_monitor'], ['GRANT pg_monitor, pg_signal_backend TO u']),
])
def test_the_grant_that_gives_a_role_s_privileges_is_the_server_s(num, inherit, member_of, fix):
    assert pgversion.grant_roles_sql(['pg_monitor', 'pg_signal_backend'], 'u', num, inherit, member_of) == fix
    assert pgversion.grant_roles_sql([], 'u', num, inherit) == []


def test_preflight_names_a_member_without_inherit_and_its_fix_for_the_version():
    row = {'usename': 'deploy', 'superuser': False, 'inherit': False, 'create_on_database': True,
           'pg_monitor': False, 'pg_monitor_member': True, 'pg_signal_backend': False,
           'pg_signal_backend_member': True}
    on16 = preflight.decide_privileges('primary (10.0.0.10:5432)', row, True, 'db', V16)
    assert on16['status'] == 'fail'
    assert on16['summary'] == (
        'primary (10.0.0.10:5432): deploy user deploy is not a superuser and lacks: the privileges of pg_monitor '
        '(a member without INHERIT), the privileges of pg_signal_backend (a member without INHERIT)')
    assert on16['evidence']['fix_sql'] == ['GRANT pg_monitor, pg_signal_backend TO deploy WITH INHERIT TRUE']
    assert on16['action'].startswith('GRANT pg_monitor, pg_signal_backend TO deploy WITH INHERIT TRUE (or make')
    on15 = preflight.decide_privileges('primary (10.0.0.10:5432)', row, True, 'db', V15)
    assert on15['evidence']['fix_sql'] == ['ALTER ROLE deploy INHERIT']
    standby = preflight.decide_privileges('standby1', dict(row, in_recovery=True), False, 'db', V18)
    assert standby['evidence']['fix_sql'] == ['GRANT pg_monitor TO deploy WITH INHERIT TRUE']


@pytest.mark.parametrize('versions, covered', [
    ('13+', [13, 14, 15, 16, 17, 18]), ('14+', [14, 15, 16, 17, 18]), ('17+', [17, 18]), ('18+', [18]),
    ('13-16', [13, 14, 15, 16]), ('15', [15]),
])
def test_a_rule_holds_on_the_majors_its_versions_cover(versions, covered):
    nums = {13: V13, 14: V14, 15: V15, 16: V16, 17: V17, 18: V18}
    assert [m for m, n in sorted(nums.items()) if pgversion.covers(versions, n)] == covered
    # Read before any connection: every rule of a supported major holds (the strictest reading).
    assert pgversion.covers(versions) is True
    assert pgversion.covers('11-12') is False


def _rule_words(sql, num):
    [raw] = pglast.parse_sql(sql)
    rule = patchset.no_transaction_block_rule(raw.stmt, num)
    return rule.words if rule else None


@pytest.mark.parametrize('sql, majors', [
    ('CREATE INDEX CONCURRENTLY i ON t (a)', [13, 14, 15, 16, 17, 18]),
    ('ALTER TABLE p DETACH PARTITION c CONCURRENTLY', [14, 15, 16, 17, 18]),
    ('ALTER SUBSCRIPTION s SET (failover = true)', [17, 18]),
    ('ALTER SUBSCRIPTION s SET (two_phase = false)', [18]),
    ('VACUUM t', [13, 14, 15, 16, 17, 18]),
])
def test_the_no_transaction_block_list_is_chosen_by_server_version(sql, majors):
    nums = {13: V13, 14: V14, 15: V15, 16: V16, 17: V17, 18: V18}
    assert [m for m, n in sorted(nums.items()) if _rule_words(sql, n)] == majors
    # Patches read before any connection: refused or hot as on the strictest supported server.
    assert _rule_words(sql, None) is not None


def test_every_entry_names_its_versions_in_the_supported_range():
    for rule in patchset.NO_TRANSACTION_BLOCK:
        low, high = pgversion.parse_versions(rule.versions)
        assert pgversion.OLDEST <= low <= pgversion.NEWEST and (high is None or low <= high), rule.words


# -- the columns the queries read exist on every supported version ------------------------

QUERIES = {
    'replication.RECEIVER_SQL': replication.RECEIVER_SQL,
    'replication.WALSENDERS_SQL': replication.WALSENDERS_SQL,
    'replication.STANDBY_FACTS_SQL': replication.STANDBY_FACTS_SQL,
    'replication.PRIMARY_VIEW_SQL': replication.PRIMARY_VIEW_SQL,
    'replication.RECOVERY_CONFLICTS_SQL': replication.RECOVERY_CONFLICTS_SQL,
    'sessions.BACKENDS_SQL': sessions.BACKENDS_SQL,
    'sessions.KILLABLE_SQL': sessions.KILLABLE_SQL,
    'preflight.ACTIVITY_SQL': preflight.ACTIVITY_SQL,
}
VIEWS = set(name.split('.')[0] for name in pgversion.VIEW_COLUMNS)


def view_columns(sql):
    """{'view.column'} a query reads from the statistics views pgversion tracks."""
    found = set()

    class Visitor(pglast.visitors.Visitor):
        def __init__(self):
            super().__init__()
            self.aliases = {}
            self.refs = []

        def visit_RangeVar(self, ancestors, node):
            if node.relname in VIEWS:
                self.aliases[node.alias.aliasname if node.alias else node.relname] = node.relname

        def visit_ColumnRef(self, ancestors, node):
            self.refs.append([getattr(f, 'sval', None) for f in node.fields])

    visitor = Visitor()
    visitor(pglast.parse_sql(sql.replace('%s', 'NULL')))  # psycopg2's placeholders
    for fields in visitor.refs:
        if len(fields) == 2 and fields[0] in visitor.aliases:
            found.add('%s.%s' % (visitor.aliases[fields[0]], fields[1]))
        elif len(fields) == 1 and len(set(visitor.aliases.values())) == 1:
            found.add('%s.%s' % (next(iter(visitor.aliases.values())), fields[0]))
    return found


@pytest.mark.parametrize('name', sorted(QUERIES))
def test_every_view_column_a_query_reads_exists_from_the_oldest_supported_version(name):
    columns = view_columns(QUERIES[name])
    assert columns, name
    for column in columns:
        assert column in pgversion.VIEW_COLUMNS, (name, column)
        assert pgversion.VIEW_COLUMNS[column] <= pgversion.OLDEST, (name, column)


def test_a_column_newer_than_the_oldest_version_is_caught():
    # pg_stat_activity.query_id is 14's: a query reading it would break on 13.
    assert view_columns('SELECT a.query_id, a.pid FROM pg_stat_activity a') == {
        'pg_stat_activity.query_id', 'pg_stat_activity.pid'}
    assert 'pg_stat_activity.query_id' not in pgversion.VIEW_COLUMNS


def test_preflight_refuses_a_server_below_the_range_in_one_line_naming_host_and_version():
    found = preflight.decide_server_version('standby2 (10.0.0.12:5432)', V12)
    assert found['status'] == preflight.FAIL and found['host'] == 'standby2 (10.0.0.12:5432)'
    assert found['summary'] == ('standby2 (10.0.0.12:5432): PostgreSQL 12.22 is older than this collection '
                                'supports (13 to 18): upgrade the server')
    assert '\n' not in found['summary']
    assert found['evidence'] == {'server_version_num': V12, 'supported': '13 to 18'}
    assert preflight.decide_server_version('primary (10.0.0.5:5432)', V18)['summary'] == (
        'primary (10.0.0.5:5432): PostgreSQL 18.6 (supported: 13 to 18)')
    assert preflight.decide_server_version('p', V13)['status'] == preflight.PASS
    assert preflight.decide_server_version('p', V19)['status'] == preflight.WARN


def test_lock_table_privileges_by_mode_and_version():
    """lockcmds.c LockTableAclCheck: before 16, ACCESS SHARE needs SELECT, ROW EXCLUSIVE one of INSERT, UPDATE,
    DELETE, TRUNCATE, the rest one of UPDATE, DELETE, TRUNCATE; from 16 those three permit any mode, INSERT up to
    ROW EXCLUSIVE, SELECT ACCESS SHARE; 17 adds MAINTAIN to the three."""
    assert pgversion.lock_table_privileges('ACCESS SHARE', 150000) == ['SELECT']
    assert pgversion.lock_table_privileges('ROW SHARE', 150000) == ['UPDATE', 'DELETE', 'TRUNCATE']
    assert pgversion.lock_table_privileges('ROW EXCLUSIVE', 130000) == ['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']
    assert pgversion.lock_table_privileges('ACCESS EXCLUSIVE', 150000) == ['UPDATE', 'DELETE', 'TRUNCATE']
    assert pgversion.lock_table_privileges('ACCESS SHARE', 160000) == ['SELECT', 'INSERT', 'UPDATE', 'DELETE',
                                                                       'TRUNCATE']
    assert pgversion.lock_table_privileges('ROW SHARE', 160000) == ['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']
    assert pgversion.lock_table_privileges('SHARE', 180000) == ['UPDATE', 'DELETE', 'TRUNCATE', 'MAINTAIN']
