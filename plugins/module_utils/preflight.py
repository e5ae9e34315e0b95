# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pre-flight: could an outage start now, and finish within its budget?

Like Launchpad's preflight.py, it refuses to start an outage it could not
finish - but it never stops at the first problem: every check runs and every
finding is collected, so the operator fixes everything in one go.

A finding is a dict: ``check`` (its name), ``host`` (the endpoint label or
None), ``status`` (``pass``, ``warn`` or ``fail``), ``summary`` (one line),
``evidence`` (what was seen) and ``action`` (what to do; for warn and fail).
Only ``fail`` refuses the deploy.

The ``decide_*`` functions are pure (rows in, findings out) and unit-tested
without a database; ``Preflight`` gathers the rows, read-only, except for one
non-transactional WAL message on the primary (pg_logical_emit_message) that
gives the replication lag something to measure on an idle primary.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import math
import re
import socket
import time

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import (
    deploywindows, lint, locks, lockstep, logins, objects, outcomes, pgversion, replication)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.budget import (
    Budget, BudgetExceeded, DEFAULT_BUDGET_SECONDS, DEFAULT_RESERVE_SECONDS, timed_phase_record)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.patchset import (
    PatchSetError, created_extensions, format_revision, ignored_sql_files, load_patch_set, named_roles, plan as make_plan,
    setting_statements, walk)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.pgbouncer_console import (
    FULL_FIX, TIMEOUT_MARGIN_SECONDS, Console, ConsoleError, budget_cap, clients_per_entry, entry_pool_modes,
    full_advice, logins_in_flight, probe_consoles, probe_verdict, reuses_port, servers_of, timeouts, with_probe_login,
    xact_wait_seconds)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import (
    ConnectError, connect, connect_action, endpoint_label, host_port, one_line, query)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.schema import (
    DEFAULT_REVISION_TABLE, LockRetry, SchemaError, applied_revisions, procedure_source, revision_table_exists)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.sessions import (
    ACTIVITY_SQL, IDLE_IN_TRANSACTION_SECONDS, classify_connections, describe_session, drain_holders, query_summary,
    server_clients, server_pids_by_server, unix_socket_backends, will_outlast_window)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.topology import (
    STANDBY_ENTRIES_VAR, resolve_addresses, serving_entries, standby_entries_by_pgbouncer, standby_name,
    standby_of_entries)

try:
    import psycopg2
except ImportError:  # pragma: no cover - postgres.connect() reports it
    psycopg2 = None

PASS, WARN, FAIL = 'pass', 'warn', 'fail'

# Checks, in the order the summary lists them.
CHECKS = ('connection', 'server_version', 'privileges', 'patches', 'patch_settings', 'patch_roles',
          'patch_extensions', 'patch_objects', 'standbys', 'replay_paused', 'replication_lag', 'transactions',
          'replay_blockers', 'recovery_conflicts', 'direct_connections', 'blocking_sessions', 'hot_patch_waits',
          'pgbouncer', 'pgbouncer_processes', 'pool_mode', 'connection_slots', 'server_logins', 'lint',
          'pgbouncer_timeouts', 'budget',
          'deploy_window')

DEFAULT_MAX_LAG_SECONDS = 60.0
# One WAL segment: a standby further behind replays the outage's commit late.
DEFAULT_MAX_LAG_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_TRANSACTION_SECONDS = 60.0
# What one cold statement is assumed to cost on the server at least (the lint
# prices the costly ones, lint.measure_cold_transaction the catalog-only ones
# as the primary runs them now): catalog-only DDL and small row changes run in
# well under a millisecond each inside the one transaction (20 x 25 such
# statements: 0.11-0.16 s on a quiet machine, 0.6-1.2 s on a loaded one), so a
# fixed 1 ms was 3x the outage on a quiet one and a 10 ms floor 30x.
DEFAULT_STATEMENT_SECONDS = 0.0001
# The documented privileges of a deploy user that is not a superuser.
PRIMARY_ROLES = ('pg_monitor', 'pg_signal_backend')
STANDBY_ROLES = ('pg_monitor',)
RTT_SAMPLES = 3
# How long after a failed direct_connections read its unshown connections are read again: a
# pgbouncer server connection that came and went between two SHOW SERVERS (churn) is gone by then.
SERVER_CHURN_SECONDS = 0.3
# What the blocking_sessions check does with a session that would hold the outage its whole budget.
BLOCKING_POLICIES = ('refuse', 'warn')


def finding(check, status, summary, host=None, evidence=None, action=None):
    return {'check': check, 'host': host, 'status': status, 'summary': one_line(summary),
            'evidence': evidence if evidence is not None else {}, 'action': action}


# -- pure decisions ----------------------------------------------------------

def decide_connection(label, error):
    """A database host reached or not (pgbouncer consoles: decide_pgbouncer)."""
    if error is None:
        return finding('connection', PASS, '%s: connected' % label, host=label)
    action = connect_action(getattr(error, 'kind', None), label) or (
        'make PostgreSQL on %s answer with the inventory\'s credentials (fastdowntime_pg_* variables)' % label)
    return finding('connection', FAIL, one_line(error), host=label,
                   evidence={'error': one_line(error), 'kind': getattr(error, 'kind', None)},
                   action=action + ', then run the pre-flight again')


def decide_missing_database(db_name, labels):
    """The one line for a fastdowntime_db_name no database host has (``labels``:
    the hosts that said so, the primary first): every other check would only
    repeat it."""
    return finding('connection', FAIL, '%s: database "%s" does not exist%s: fastdowntime_db_name names no database '
                   'there' % (labels[0], db_name, ' (nor on %s)' % ', '.join(l.split(' (')[0] for l in labels[1:])
                              if labels[1:] else ''), host=labels[0], evidence={'db_name': db_name, 'hosts': labels},
                   action='set fastdowntime_db_name to the deploy\'s database (it is %s now), then run the pre-flight '
                          'again' % db_name)


def decide_server_version(label, server_version_num):
    """A database host's PostgreSQL (``server_version_num``, e.g. 150014) against the supported
    range (pgversion): below it a failure naming the host, the version and the range; above
    the newest tested a warning."""
    version = pgversion.version_text(server_version_num)
    evidence = {'server_version_num': int(server_version_num), 'supported': pgversion.supported_range()}
    problem = pgversion.support_problem(server_version_num)
    if problem:
        return finding('server_version', FAIL, '%s: %s' % (label, problem), host=label, evidence=evidence,
                       action='upgrade PostgreSQL on %s to %d or later, or deploy with a release of this collection '
                              'that supports %s' % (label, pgversion.OLDEST, version))
    if pgversion.newer_than_tested(server_version_num):
        return finding('server_version', WARN, '%s: PostgreSQL %s is newer than the newest tested (%s)'
                       % (label, version, pgversion.supported_range()), host=label, evidence=evidence,
                       action='run the pre-flight and a deploy on a copy first')
    return finding('server_version', PASS, '%s: PostgreSQL %s (supported: %s)'
                   % (label, version, pgversion.supported_range()), host=label, evidence=evidence)


def decide_privileges(label, row, is_primary, db_name, server_version_num=None):
    """``row``: usename, superuser, inherit (rolinherit), in_recovery, create_on_database and, per
    role of PRIMARY_ROLES/STANDBY_ROLES, whether the user has its privileges (``pg_monitor``:
    pg_has_role ... USAGE) and is its member (``pg_monitor_member``: ... MEMBER). A member without
    the privileges (NOINHERIT, or from 16 a membership granted WITH INHERIT FALSE) is named as such;
    the fix (evidence ``fix_sql``) is for the server's version (pgversion.grant_roles_sql)."""
    user = row.get('usename')
    evidence = dict(row)
    if row.get('superuser'):
        return finding('privileges', PASS, '%s: %s is a superuser' % (label, user), host=label, evidence=evidence)
    needed = PRIMARY_ROLES if is_primary else STANDBY_ROLES
    lacking = [r for r in needed if not row.get(r)]
    member_of = [r for r in lacking if row.get(r + '_member')]
    missing = ['the privileges of %s (a member without INHERIT)' % r if r in member_of else 'member of %s' % r
               for r in lacking]
    if is_primary and not row.get('create_on_database'):
        missing.append('CREATE on database %s' % db_name)
    if not missing:
        return finding('privileges', PASS, '%s: %s has the documented privileges (%s)'
                       % (label, user, ', '.join(needed)), host=label, evidence=evidence)
    grants = pgversion.grant_roles_sql(lacking, user, server_version_num or 0, row.get('inherit', True), member_of)
    if is_primary and not row.get('create_on_database'):
        grants.append('GRANT CREATE ON DATABASE %s TO %s' % (db_name, user))
    evidence['fix_sql'] = grants
    return finding('privileges', FAIL, '%s: deploy user %s is not a superuser and lacks: %s'
                   % (label, user, ', '.join(missing)), host=label, evidence=evidence,
                   action='%s (or make it a superuser); it must also own the objects the patches change'
                          % '; '.join(grants))


# The pending statements PostgreSQL lets only the relation's owner (or a member of the owner role) run:
# every ALTER TABLE/INDEX/VIEW/SEQUENCE, CREATE INDEX, COMMENT ON, DROP, RENAME, a new partition's or
# child's parent, CLUSTER, REINDEX, policies, rules, CREATE OR REPLACE VIEW, REFRESH MATERIALIZED VIEW.
# Not these: data changes, TRUNCATE, LOCK and CREATE TRIGGER need grantable privileges, a foreign key's
# referenced table REFERENCES (locks.statement_locks gives it, and a trigger's table, in SHARE ROW
# EXCLUSIVE), and VACUUM skips what it may not process.
GRANTABLE_STATEMENTS = ('InsertStmt', 'UpdateStmt', 'DeleteStmt', 'TruncateStmt', 'LockStmt', 'CreateTrigStmt',
                        'VacuumStmt')


def _statements_in_place(patches):
    """(patch, statement, resolvable) for each statement of ``patches`` in order; ``resolvable(key)``:
    False for a relation name the pre-flight's session cannot resolve as the window will - unqualified
    after the patch changed its own search_path (the window resolves it there; the pre-flight's session
    could find another relation) - or the patch's own temporary table."""
    for patch in patches:
        for statement, path, temps in zip(patch.statements, locks.search_paths(patch.statements),
                                          locks.temp_states(patch.statements)):
            yield patch, statement, (lambda key, path=path, temps=temps: not (
                key[0] is None and path is not locks.DEFAULT_PATH or locks.resolved_key(key, path, temps) is None))


def owned_relations(patches):
    """[{'relation': the name quoted for to_regclass, 'text': as the patch names it, 'patch', 'line',
    'statement': its first words}]: each relation that the statements of ``patches`` (patchset.Patch, in
    order) change and that PostgreSQL lets only its owner change, where it is first named. A name left
    unqualified after a patch changed its own search_path is left out (the window resolves it there; the
    pre-flight's session could find another relation), and so is the patch's own temporary table."""
    found = {}
    for patch, statement, resolvable in _statements_in_place(patches):
        node = statement.node
        name = type(node).__name__
        if node is None or name in GRANTABLE_STATEMENTS:
            continue
        if name == 'AlterTableStmt':   # ATTACH PARTITION: the table attached is its owner's too
            keys = [(node.relation.schemaname or None, node.relation.relname)] + [
                (cmd.def_.name.schemaname or None, cmd.def_.name.relname) for cmd in node.cmds or ()
                if getattr(cmd.subtype, 'name', None) == 'AT_AttachPartition']
        else:
            keys = [key for key, mode in locks.statement_locks(node) if mode != locks.SHARE_ROW_EXCLUSIVE]
        for key in keys:
            if not key or key in found or not resolvable(key):
                continue
            found[key] = {'relation': locks.quoted(key), 'text': locks.relation_text(key), 'patch': patch.name,
                          'line': statement.line, 'statement': ' '.join(statement.sql.split()[:3])}
    return list(found.values())


# Table privileges a statement needs when the deploy user does not own the table (PostgreSQL lets the
# owner - or a role with the owner's privileges - do everything), as the documentation's "Privileges" and
# each command's page give them: INSERT/UPDATE on each column the statement writes (a column privilege, or
# the table's); SELECT on each column of the table that an UPDATE's or DELETE's WHERE, SET expressions or
# RETURNING read (none for an UPDATE/DELETE that reads no column); DELETE, TRUNCATE, TRIGGER on the table;
# REFERENCES on the referenced columns of a FOREIGN KEY (any column of the table when the key names none:
# its primary key's); LOCK TABLE's by mode and version (pgversion.lock_table_privileges). A GRANT or
# REVOKE needs each privilege it names WITH GRANT OPTION; without it PostgreSQL does not fail, it grants
# (or revokes) nothing, with only a WARNING - the deploy would go on without the grant.
DATA_PRIVILEGES = {'InsertStmt': 'INSERT', 'UpdateStmt': 'UPDATE', 'DeleteStmt': 'DELETE', 'TruncateStmt': 'TRUNCATE',
                   'CreateTrigStmt': 'TRIGGER'}
# What GRANT ALL ON TABLE names (PostgreSQL 13-16; 17 adds MAINTAIN, which a server of 17 and later checks).
TABLE_PRIVILEGES = ('SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER')
# A privilege on any column of the table (has_any_column_privilege): a FOREIGN KEY naming no column.
ANY_COLUMN = '*'


def _grant_targets(node):
    """[(relation key, [privilege as has_table_privilege reads it])] of a GRANT/REVOKE ON TABLE node."""
    if getattr(node.objtype, 'name', None) != 'OBJECT_TABLE' or getattr(node.targtype, 'name', None) != \
            'ACL_TARGET_OBJECT':
        return []
    names = [p.priv_name.upper() for p in node.privileges or ()] or list(TABLE_PRIVILEGES)
    privileges = ['%s WITH GRANT OPTION' % name for name in dict.fromkeys(names) if name in TABLE_PRIVILEGES]
    return [((rel.schemaname or None, rel.relname), privileges) for rel in node.objects or ()]


def _columns_read(node, relation, own=True):
    """The columns of ``relation`` (a RangeVar) that ``node``'s expressions read - a ColumnRef unqualified
    (``own``: no other table in the statement could have it) or qualified by the table's name or alias -
    not inside a sub-select (its own tables); None for a whole-row reference (t.*, the table's name)."""
    names = set([relation.relname] + ([relation.alias.aliasname] if relation.alias is not None else []))
    found = []

    def visit(sub):   # False: a whole-row reference seen
        if isinstance(sub, (list, tuple)):
            return all(visit(item) for item in sub)
        kind = type(sub).__name__
        if kind == 'SubLink':   # x IN (SELECT ...): x is the statement's, the sub-select's names are its own
            return visit(sub.testexpr)
        if type(sub).__module__ != 'pglast.ast' or kind in ('RangeSubselect', 'SelectStmt'):
            return True
        if kind == 'ColumnRef':
            fields = list(sub.fields or ())
            strings = [getattr(f, 'sval', None) for f in fields]
            if type(fields[-1]).__name__ == 'A_Star':
                return not (len(fields) == 1 or strings[-2] in names)
            if len(fields) == 1 and strings[0] in names:   # the table's (or alias's) name: the whole row
                return False
            if len(fields) == 1 and own:
                found.append(strings[0])
            elif len(fields) == 2 and strings[0] in names:
                found.append(strings[1])
            return True
        return all(visit(getattr(sub, slot, None)) for slot in type(sub).__slots__)

    return list(dict.fromkeys(found)) if visit(node) else None


def _statement_privileges(node, server_version_num):
    """[(relation key, privilege, column or None or ANY_COLUMN, what the fix grants)] one statement needs
    (see DATA_PRIVILEGES)."""
    name = type(node).__name__
    wanted = []
    if name in ('InsertStmt', 'UpdateStmt', 'DeleteStmt'):
        rel = node.relation
        key = (rel.schemaname or None, rel.relname)
        written = [t.name for t in (node.cols if name == 'InsertStmt' else node.targetList if name == 'UpdateStmt'
                                    else ()) or () if getattr(t, 'name', None)]
        if name == 'DeleteStmt' or not written:
            wanted.append((key, DATA_PRIVILEGES[name], None))
        wanted += [(key, DATA_PRIVILEGES[name], column) for column in dict.fromkeys(written)]
        own = not (getattr(node, 'fromClause', None) or getattr(node, 'usingClause', None))
        read = [getattr(node, 'whereClause', None), getattr(node, 'returningClause', None)]
        if name == 'UpdateStmt':
            read.append([t.val for t in node.targetList or ()])
        columns = _columns_read([r for r in read if r], rel, own)
        if columns is None:
            wanted.append((key, 'SELECT', None))
        else:
            wanted += [(key, 'SELECT', column) for column in columns]
    elif name in ('TruncateStmt', 'CreateTrigStmt'):
        relations = node.relations if name == 'TruncateStmt' else [node.relation]
        wanted = [((r.schemaname or None, r.relname), DATA_PRIVILEGES[name], None) for r in relations or ()]
    elif name == 'LockStmt':
        privileges = pgversion.lock_table_privileges(locks.LOCK_STMT_MODES.get(int(node.mode), locks.ACCESS_EXCLUSIVE),
                                                     server_version_num)
        wanted = [((r.schemaname or None, r.relname), ', '.join(privileges), None) for r in node.relations or ()]
    elif name == 'GrantStmt':
        wanted = [(key, privilege, None) for key, privileges in _grant_targets(node) for privilege in privileges]
    for sub in walk(node) if name in ('CreateStmt', 'AlterTableStmt') else ():
        if type(sub).__name__ == 'Constraint' and getattr(sub.contype, 'name', None) == 'CONSTR_FOREIGN' \
                and sub.pktable is not None:
            key = (sub.pktable.schemaname or None, sub.pktable.relname)
            columns = [getattr(c, 'sval', None) for c in sub.pk_attrs or ()]
            wanted += [(key, 'REFERENCES', column) for column in columns] if columns else \
                [(key, 'REFERENCES', ANY_COLUMN)]
    return wanted


def privilege_text(privilege, column):
    """How a (privilege, column) reads, in a GRANT's own words: 'UPDATE (body)', 'SELECT', 'one of UPDATE,
    DELETE, TRUNCATE' (LOCK TABLE's alternatives), 'REFERENCES (on any column)'."""
    if ', ' in privilege:
        return 'one of %s' % privilege
    if column == ANY_COLUMN:
        return '%s (on any column)' % privilege
    return '%s (%s)' % (privilege, column) if column else privilege


def privileged_relations(patches, server_version_num=None):
    """[{'relation', 'text', 'patch', 'line', 'statement', 'privilege', 'column', 'grant'}]: each (relation,
    privilege, column) the statements of ``patches`` need where the deploy user is not the owner (see
    DATA_PRIVILEGES; ``column`` None for the table's privilege, ANY_COLUMN for one on any column;
    ``grant``: what the fix grants, in a GRANT's words), where it is first needed; names resolved as
    owned_relations does. Not modelled: what a sub-select, an UPDATE's FROM or a DELETE's USING reads,
    INSERT ... ON CONFLICT DO UPDATE, USAGE on schemas, sequences and types."""
    found = {}
    for patch, statement, resolvable in _statements_in_place(patches):
        if statement.node is None:
            continue
        for key, privilege, column in _statement_privileges(statement.node, server_version_num):
            if not resolvable(key):
                continue
            grant = privilege.split(', ')[0] if ', ' in privilege else privilege
            found.setdefault((key, privilege, column), {
                'relation': locks.quoted(key), 'text': locks.relation_text(key), 'patch': patch.name,
                'line': statement.line, 'statement': ' '.join(statement.sql.split()[:3]),
                'privilege': privilege, 'column': column,
                'grant': '%s (%s)' % (grant, column) if column and column != ANY_COLUMN else grant})
    return list(found.values())


def decide_table_privileges(label, row, missing):
    """One failure per relation the deploy user lacks privileges on (``missing``: PRIVILEGED_SQL rows
    joined to privileged_relations' items: relation, owner, privilege, member, patch, line, statement;
    ``row``: the PRIVILEGES_SQL row). A data change would fail inside the outage ("permission denied",
    the window rolls back); a GRANT or REVOKE without the grant option would do nothing (PostgreSQL
    only warns) and the deploy go on without it. [] when there are none."""
    user = row.get('usename')
    by_relation = {}
    for item in missing:
        by_relation.setdefault(item['relation'], []).append(item)
    found = []
    for relation in sorted(by_relation):
        items = by_relation[relation]
        owner = items[0]['owner']
        data = [i for i in items if 'GRANT OPTION' not in i['privilege']]
        grants = [i for i in items if 'GRANT OPTION' in i['privilege']]
        what = []
        if data:
            where = dict.fromkeys('%s line %d: %s' % (i['patch'], i['line'], i['statement']) for i in data)
            what.append('%s (%s), which would fail inside the outage ("permission denied for table"; the window '
                        'rolls back)' % (', '.join(privilege_text(i['privilege'], i.get('column')) for i in data),
                                         '; '.join(where)))
        if grants:
            what.append('%s (%s), without which PostgreSQL grants or revokes nothing - only a WARNING - and the '
                        'deploy goes on without it' % (', '.join(i['privilege'] for i in grants), '; '.join(
                            '%s line %d: %s' % (i['patch'], i['line'], i['statement']) for i in grants)))
        fix = []
        if data:
            fix.append('GRANT %s ON %s TO %s' % (', '.join(dict.fromkeys(i.get('grant') or i['privilege']
                                                                         for i in data)), relation, user))
        if grants:
            fix.append('GRANT %s ON %s TO %s WITH GRANT OPTION' % (
                ', '.join(i['privilege'].split()[0] for i in grants), relation, user))
        member = any(i.get('member') for i in items)
        found.append(finding(
            'privileges', FAIL, '%s: the deploy user %s is not the owner %s of %s, %s, and lacks %s' % (
                label, user, owner, relation, 'a member of it without its privileges (NOINHERIT, or a grant WITH '
                'INHERIT FALSE)' if member else 'nor a member of it', '; and '.join(what)),
            host=label, evidence={'owner': owner, 'relation': relation,
                                  'privileges': [i['privilege'] for i in items], 'fix_sql': fix},
            action='as %s (or a superuser): %s on %s - or GRANT %s TO %s (its owner\'s privileges) - then run the '
                   'pre-flight again' % (owner, '; '.join(fix), label, owner, user)))
    return found


def decide_schema_privileges(label, row, missing):
    """One failure per schema the deploy user lacks a privilege on that the pending patches need
    (objects.schema_privileges joined to SCHEMA_PRIVILEGES_SQL: [(file, line, statement, schema, owner,
    privilege)]): CREATE where a new object goes, USAGE where a name is looked up - each failed inside the
    window ("permission denied for schema", rolled back). [] when there are none."""
    user = row.get('usename')
    by_schema = {}
    for item in missing:
        by_schema.setdefault(item[3], []).append(item)
    found = []
    for schema in sorted(by_schema):
        items = by_schema[schema]
        privileges = list(dict.fromkeys(i[5] for i in items))
        fix = 'GRANT %s ON SCHEMA %s TO %s' % (', '.join(privileges), schema, user)
        found.append(finding(
            'privileges', FAIL, '%s: the deploy user %s lacks %s on schema %s (owner %s) for %s, which would fail '
            'inside the outage ("permission denied for schema %s"; the window rolls back)' % (
                label, user, ' and '.join(privileges), schema, items[0][4],
                '; '.join('%s line %d: %s' % (i[0], i[1], i[2]) for i in items), schema),
            host=label, evidence={'schema': schema, 'owner': items[0][4], 'privileges': privileges, 'fix_sql': [fix]},
            action='as %s (or a superuser): %s on %s, then run the pre-flight again' % (items[0][4], fix, label)))
    return found


def decide_ownership(label, row, not_owned, server_version_num):
    """The relations the deploy user may not change (``not_owned``: OWNERS_SQL rows, ``target`` the
    position in owned_relations' list or None for this collection's own tables; ``row``: the
    PRIVILEGES_SQL row), one failure per owner role: the window would roll back inside the outage
    ("must be owner of table"), or the deploy log not be written. The fix grants the owner role to
    the deploy user (pgversion.grant_roles_sql; ``member``: already a member without its privileges -
    NOINHERIT, or from 16 a grant WITH INHERIT FALSE). [] when there are none."""
    user = row.get('usename')
    by_owner = {}
    for item in not_owned:
        by_owner.setdefault(item['owner'], []).append(item)
    found = []
    for owner in sorted(by_owner):
        named = ['%s (%s line %d: %s)' % (i['relation'], i['patch'], i['line'], i['statement'])
                 for i in by_owner[owner] if i.get('patch')]
        own = [i['relation'] for i in by_owner[owner] if not i.get('patch')]
        if own:
            named.append("%s (this collection's own table%s, which a deploy alters and writes)"
                         % (', '.join(own), 's' if len(own) > 1 else ''))
        member_of = [owner] if any(i.get('member') for i in by_owner[owner]) else []
        grants = pgversion.grant_roles_sql([owner], user, server_version_num or 0, row.get('inherit', True), member_of)
        found.append(finding(
            'privileges', FAIL, '%s: the deploy user %s is neither the owner %s of %s nor %s: PostgreSQL lets only '
            'the owner change a table ("must be owner of table"): the deploy would fail there, a cold patch inside the '
            'outage (the window rolls back)' % (label, user, owner, ', '.join(named), 'has its privileges (a member '
                                                'without INHERIT)' if member_of else 'a member of it'), host=label,
            evidence={'owner': owner, 'relations': [i['relation'] for i in by_owner[owner]], 'fix_sql': grants},
            action='%s on %s (or deploy as %s), then run the pre-flight again' % ('; '.join(grants), label, owner)))
    return found


# Where a default_transaction_read_only = on of the deploy's session comes from (pg_settings.source)
# -> the statement that undoes it (format keys: user, db). The session that runs it is read-only
# too, hence the SET first.
READ_ONLY_FIXES = {
    'user': 'ALTER ROLE {user} RESET default_transaction_read_only',
    'database': 'ALTER DATABASE {db} RESET default_transaction_read_only',
    'database user': 'ALTER ROLE {user} IN DATABASE {db} RESET default_transaction_read_only',
}


def decide_read_only(label, row, db_name):
    """The primary's deploy session read-only by default (``row``: the PRIVILEGES_SQL row,
    ``read_only`` and ``read_only_source`` - pg_settings.source of default_transaction_read_only,
    e.g. 'user', 'database', 'configuration file'): a failure naming where it is set and the
    statement that undoes it - every cold patch would fail inside the window ("cannot execute ...
    in a read-only transaction"). None when the session may write."""
    if not row.get('read_only'):
        return None
    user, source = row.get('usename'), row.get('read_only_source') or 'unknown'
    fix = READ_ONLY_FIXES.get(source)
    if fix:
        action = ('if the database is not read-only on purpose (a freeze), run as %s on %s: SET '
                  'default_transaction_read_only = off; %s' % (user, label, fix.format(user=user, db=db_name)))
    elif source == 'configuration file':
        action = ('if the database is not read-only on purpose (a freeze), set default_transaction_read_only = off '
                  'in the configuration of %s and reload it' % label)
    else:
        action = 'if the database is not read-only on purpose (a freeze), unset it where it is set (%s)' % source
    return finding('privileges', FAIL, '%s: the deploy user %s\'s sessions are read-only (default_transaction_read_only '
                   '= on, pg_settings source: %s): every cold patch would fail inside the window' % (label, user, source),
                   host=label, evidence={'read_only_source': source}, action=action)


def decide_patch_files(label, error=None, ignored_sql=()):
    """The patch files' own findings: one failure per problem of a broken
    patch set (``error``: a patchset.PatchSetError, every file's problems),
    a warning naming the .sql files the patch set ignores (``ignored_sql``,
    patchset.ignored_sql_files: 'dir/file.sql' for one under a subdirectory,
    which is never read - a warning of its own)."""
    found = [decide_patches(label, error=problem) for problem in getattr(error, 'problems', None) or
             ([error] if error is not None else [])]
    misnamed = [name for name in ignored_sql if '/' not in name]
    nested = [name for name in ignored_sql if '/' in name]
    if misnamed:
        found.append(finding('patches', WARN, '%s: not named like a patch, so never applied: %s'
                             % (label, ', '.join(misnamed)), host=label, evidence={'ignored_sql': misnamed},
                             action='a patch is named patch-MMMM-mm-p.sql (e.g. patch-2211-01-0.sql): rename a '
                                    'file meant to be applied; leave the others (they are not deployed)'))
    if nested:
        found.append(finding('patches', WARN, '%s: in a subdirectory of the patch directory, which is not read, so '
                             'never applied: %s' % (label, ', '.join(nested)), host=label,
                             evidence={'ignored_sql': nested},
                             action='move a file meant to be applied into the patch directory itself, named '
                                    'patch-MMMM-mm-p.sql; leave the others (they are not deployed)'))
    return found


def decide_patches(label, the_plan=None, error=None):
    """The patch plan as a finding: pending patches in order (hot/cold), drift
    and revisions the database has with no file fail; a broken patch set fails."""
    if error is not None:
        return finding('patches', FAIL, one_line(error), host=label, evidence={'error': one_line(error)},
                       action='fix the patch set (or fastdowntime_patch_dir) as the message says')
    pending = the_plan.pending + the_plan.deferred
    evidence = {
        'pending': [{'name': p.name, 'kind': p.kind, 'statements': len(p.statements)} for p in pending],
        'applied': list(the_plan.applied),
        'drift': list(the_plan.drift),
        'missing_files': [format_revision(r) for r in the_plan.missing_files],
        'unverified': list(the_plan.unverified),
        'ignored': list(the_plan.ignored),
        'refused': list(the_plan.refused),
        'renamed': list(the_plan.renamed),
        'phases': [{'phase': phase, 'patches': names} for phase, names in the_plan.phases()],
    }
    problems, actions = [], []
    if the_plan.refused:
        problems.append('the window would reject: %s' % '; '.join(the_plan.refused))
        actions.append('change the patches as each message says (nothing was paused)')
    if the_plan.drift:
        problems.append('changed since applied: %s' % ', '.join(
            '%s (database sha256 %s..., file %s...)' % (d['name'], d['applied_sha256'][:12], d['file_sha256'][:12])
            for d in the_plan.drift))
        actions.append('restore the applied version of each changed patch and put the change in a new patch')
    if the_plan.missing_files:
        problems.append('the database has revisions with no file (it is ahead of the patch set): %s'
                        % ', '.join(evidence['missing_files']))
        for renamed in the_plan.renamed:
            problems.append('%s has the checksum of the applied %s: renamed?'
                            % (renamed['name'], renamed['applied_revision']))
            actions.append('restore its name (%s)' % renamed['applied_name'])
        if len(the_plan.renamed) < len(the_plan.missing_files):
            actions.append('deploy from the tree whose patch directory holds those revisions')
    kinds = dict((p.name, p.kind) for p in pending)
    pending_text = '; '.join('%s: %s' % (phase, ', '.join('%s (%s)' % (name, kinds[name]) for name in names))
                             for phase, names in the_plan.phases()) or 'nothing pending'
    if problems:
        return finding('patches', FAIL, '%s: %s; pending: %s' % (label, '; '.join(problems), pending_text),
                       host=label, evidence=evidence, action='; '.join(actions))
    if not pending:
        return finding('patches', PASS, '%s: every patch is applied: no outage needed' % label,
                       host=label, evidence=evidence)
    return finding('patches', PASS, '%s: pending: %s' % (label, pending_text), host=label, evidence=evidence)


# What to do about a patch's setting the primary refuses, by SQLSTATE (the rest: SETTING_FIX_DEFAULT).
SETTING_FIXES = {
    '42704': 'this server has no such setting (pg_dump 17 and later write SET transaction_timeout = 0, which '
             'PostgreSQL before 17 does not know): delete the line, or spell the setting as this server does',
    '22023': 'give it a value this server accepts (SHOW the setting, or see pg_settings.enumvals), or delete the line',
    '42501': 'the deploy user may not set it: delete the line, or let the deploy user set it (GRANT SET ON '
             'PARAMETER name TO user, from PostgreSQL 15; a superuser before)',
    '55P02': 'it cannot be set in a session (it is a server setting: postgresql.conf or ALTER SYSTEM, outside '
             'the deploy): delete the line',
}
SETTING_FIX_DEFAULT = 'correct or delete the line'


def decide_patch_settings(label, failures, tried=0):
    """The pending patches' settings the primary refused when the pre-flight tried them (rolled back):
    one failed finding per statement - the window would have failed on it, and rolled back - naming file,
    line, the statement, PostgreSQL's words and what to do (SETTING_FIXES); a warning instead for a
    value that names something an earlier pending statement creates (a role, a schema...), which only
    the window can tell. ``failures``: [{'file', 'line', 'sql', 'code', 'message', 'created_earlier'}];
    ``tried``: how many statements were tried. None failed: one passed finding saying so."""
    if not failures:
        return [finding('patch_settings', PASS, '%s: %s' % (label, '%d setting statement(s) of the pending patches '
                                                            'accepted by the server (tried, rolled back)' % tried
                                                            if tried else 'no setting in the pending patches'),
                        host=label, evidence={'tried': tried})]
    found = []
    for item in failures:
        statement = ' '.join(item['sql'].split())
        statement = statement if len(statement) <= 80 else statement[:77] + '...'
        text = '%s: %s line %d: %s: %s (SQLSTATE %s)' % (
            label, item['file'], item['line'], statement, item['message'], item['code'])
        evidence = dict((k, item[k]) for k in ('file', 'line', 'code', 'message'))
        if item.get('created_earlier'):
            found.append(finding('patch_settings', WARN, '%s - an earlier pending statement creates %s, so '
                                 'only the window can tell' % (text, item['created_earlier']), host=label,
                                 evidence=evidence, action='check the patch runs on a copy of the database'))
            continue
        found.append(finding('patch_settings', FAIL, '%s: the window would fail on it and roll back' % text,
                             host=label, evidence=evidence,
                             action=SETTING_FIXES.get(item['code'], SETTING_FIX_DEFAULT)))
    return found


def decide_patch_roles(label, missing, named=0):
    """The roles the pending patches name that the primary does not have (patchset.named_roles, less
    pg_roles): one failed finding per statement and role - the window would fail on "role ... does not
    exist" and roll back. ``missing``: [(file, line, role)]; ``named``: how many roles the patches name.
    None missing: one passed finding saying so."""
    if not missing:
        return [finding('patch_roles', PASS, '%s: %s' % (label, 'every role the pending patches name (%d) exists on '
                                                         'this server' % named if named else
                                                         'the pending patches name no role'),
                        host=label, evidence={'named': named})]
    return [finding('patch_roles', FAIL, '%s: %s line %d: role "%s" does not exist on this server: the window '
                    'would fail on it and roll back' % (label, name, line, role), host=label,
                    evidence={'file': name, 'line': line, 'role': role},
                    action='create the role first (CREATE ROLE in an earlier patch, or outside the deploy), or '
                           'delete the statement (a pg_dump --no-owner --no-privileges writes no OWNER TO or GRANT)')
            for name, line, role in missing]


def decide_patch_extensions(label, missing, created=0):
    """The extensions the pending patches create that the primary cannot (patchset.created_extensions,
    against pg_available_extension_versions): one failed finding each - the window would fail on it and
    roll back. ``missing``: [(file, line, extension, version or None, [versions available])];
    ``created``: how many CREATE EXTENSION the patches hold. None missing: one passed finding saying so."""
    if not missing:
        return [finding('patch_extensions', PASS, '%s: %s' % (label, 'every extension the pending patches create (%d) '
                                                              'is available on this server' % created if created else
                                                              'the pending patches create no extension'),
                        host=label, evidence={'created': created})]
    found = []
    for name, line, extension, version, available in missing:
        if available:
            cause = 'extension "%s" version %s is not available on this server (it has %s)' % (
                extension, version, ', '.join(available))
        else:
            cause = 'extension "%s" is not available on this server (no %s.control in its extension directory)' % (
                extension, extension)
        found.append(finding('patch_extensions', FAIL, '%s: %s line %d: %s: the window would fail on it and roll '
                             'back' % (label, name, line, cause), host=label,
                             evidence={'file': name, 'line': line, 'extension': extension, 'version': version},
                             action='install the extension (its package for this PostgreSQL major) on the primary '
                                    'and every standby first, or delete the statement'))
    return found


# What to do about a name the primary lacks, by kind (objects.KINDS); the rest: OBJECT_FIX_DEFAULT.
OBJECT_FIXES = {
    objects.SCHEMA: 'create the schema first (CREATE SCHEMA in an earlier statement or patch), or name one this '
                    'server has',
    objects.TABLESPACE: 'create the tablespace on the primary outside the deploy (CREATE TABLESPACE cannot run in a '
                        'transaction, and its directory must exist on every standby), or delete the TABLESPACE clause '
                        '(pg_dump --no-tablespaces writes none)',
    objects.COLLATION: 'create the collation first (CREATE COLLATION in an earlier patch), or name one this server has '
                       '(pg_collation)',
    objects.TYPE: 'create the type first (CREATE TYPE in an earlier patch, or CREATE EXTENSION of the extension that '
                  'makes it), or name one this server has',
    objects.SERVER: 'create the foreign server first (CREATE SERVER in an earlier patch: a pg_dump -n of a schema '
                    'leaves servers and user mappings out), or delete the statement',
    objects.FDW: 'create the foreign-data wrapper first (CREATE EXTENSION postgres_fdw, for one), or delete the '
                 'statement',
    objects.SEARCH_PATH: 'create the schema first, or qualify the name (schema.name), or SET search_path to a schema '
                         'this server has',
}
OBJECT_FIXES[objects.COLUMN] = 'correct the column name, or add the column first (an earlier patch)'
OBJECT_FIX_DEFAULT = 'create it first (in an earlier patch), or correct the name'
# ... and one a patch CREATEs that the primary already has.
EXISTS_FIXES = {
    objects.RELATION: 'it is already there (applied outside the deploy?): delete the statement, or write CREATE ... IF '
                      'NOT EXISTS (CREATE OR REPLACE VIEW for a view)',
    objects.TYPE: 'it is already there (applied outside the deploy?): delete the statement (CREATE TYPE has no IF NOT '
                  'EXISTS), or DROP it in the patch first if it must change',
    objects.ROLE: 'it is already there: delete the statement (CREATE ROLE has no IF NOT EXISTS)',
    objects.COLUMN: 'it is already there (applied outside the deploy?): delete the command, or write ADD COLUMN IF '
                    'NOT EXISTS',
    objects.CONSTRAINT: 'it is already there (applied outside the deploy?): delete the command, or DROP CONSTRAINT IF '
                        'EXISTS before it if it must change',
}
EXISTS_FIX_DEFAULT = 'it is already there (applied outside the deploy?): delete the statement, or write CREATE ... IF ' \
                     'NOT EXISTS'


def decide_patch_objects(label, failed, looked_up=0, setvals=()):
    """The names the pending patches need that the primary lacks, and the ones they CREATE that it already
    has (objects.failures: [(Lookup, cause, maybe)]): one failed finding each - the window would fail on
    it and roll back - naming file, line, the statement's first words, PostgreSQL's words and the fix; a
    warning instead where an earlier pending CREATE EXTENSION may create the name. ``setvals``: [(file,
    line, sequence)] of setval() on an existing sequence, one warning each: the window's rollback does not
    undo it. ``looked_up``: how many names were looked up. Nothing wrong: one passed finding."""
    found = []
    for lookup, cause, maybe in failed:
        text = '%s: %s line %d: %s ...: %s on this server' % (label, lookup.patch, lookup.line, lookup.statement, cause)
        evidence = {'file': lookup.patch, 'line': lookup.line, 'kind': lookup.kind, 'cause': cause}
        if maybe:
            found.append(finding('patch_objects', WARN, '%s - an earlier pending CREATE EXTENSION (%s) may create it, '
                                 'so only the window can tell' % (text, ', '.join(lookup.extensions)), host=label,
                                 evidence=evidence, action='check the patch runs on a copy of the database'))
            continue
        action = (OBJECT_FIXES.get(lookup.kind, OBJECT_FIX_DEFAULT) if lookup.expect != objects.CREATES
                  else EXISTS_FIXES.get(lookup.kind, EXISTS_FIX_DEFAULT))
        found.append(finding('patch_objects', FAIL, '%s: %s' % (text, 'the hot patch would fail on it, live, before '
                                                                'the outage' if lookup.hot else 'the window would fail '
                                                                'on it and roll back'),
                             host=label, evidence=evidence, action=action))
    for name, line, sequence in setvals:
        found.append(finding(
            'patch_objects', WARN, '%s: %s line %d: setval() of the existing sequence %s: a sequence\'s value is not '
            'transactional - if the window rolls back, the sequence keeps the value this patch sets' % (
                label, name, line, sequence), host=label, evidence={'file': name, 'line': line, 'sequence': sequence},
            action='if the window rolls back, set it back by hand (SELECT setval(...) with its value before the deploy: '
                   'SELECT last_value FROM %s)' % sequence))
    if not found:
        found.append(finding('patch_objects', PASS, '%s: %s' % (label, 'every object the pending patches name exists '
                                                                'and none they create does (%d looked up)' % looked_up
                                                                if looked_up else 'the pending patches name no object '
                                                                'to look up'), host=label,
                             evidence={'looked_up': looked_up}))
    return found


def _row_evidence(row):
    return dict((k, row.get(k)) for k in ('application_name', 'client_addr', 'client_hostname', 'state', 'sync_state',
                                          'slot_name', 'slot_type', 'replay_lsn'))


def decide_standbys(primary, standbys, rows_by_upstream, synchronous=None):
    """Every inventory standby is in recovery, says it streams, streams from this
    primary or (a cascade) from a standby whose chain ends at it, and its
    upstream has its row (replication.py: identity from PostgreSQL's views);
    no upstream streams to a standby the inventory does not list.

    ``primary``: {'label', 'in_recovery', 'system_identifier'} (None when the
    primary was not reached). ``standbys``: one dict per inventory standby:
    'endpoint', 'label', 'reachable', and when reachable 'in_recovery',
    'system_identifier', 'receiver' (replication.RECEIVER_SQL row),
    'upstream' (replication.locate_upstream, None: the primary),
    'addresses' and 'override' (as replication.identify takes them).
    ``rows_by_upstream``: {upstream label: replication.WALSENDERS_SQL rows},
    the primary's under its label. ``synchronous``: replication.describe_synchronous.
    """
    problems, actions = [], []
    primary_label = primary['label'] if primary else None
    primary_rows = rows_by_upstream.get(primary_label) or []
    streaming = [row for row in replication.standby_rows(primary_rows) if row.get('state') == 'streaming']
    evidence = {'expected': len(standbys), 'streaming': len(streaming),
                'pg_stat_replication': dict((up, [_row_evidence(row) for row in rows])
                                            for up, rows in rows_by_upstream.items()),
                'standbys': [{k: s.get(k) for k in ('label', 'reachable', 'in_recovery', 'upstream')}
                             for s in standbys],
                'synchronous': synchronous}
    if primary is None:
        return finding('standbys', WARN, 'not checked: the primary was not reached', evidence=evidence,
                       action='fix the connection to the primary first')
    if primary.get('in_recovery'):
        problems.append('%s is in recovery: it is not a primary' % primary['label'])
        actions.append('point fastdowntime_primary at the current primary')
    candidates = []
    for standby in standbys:
        label = standby['label']
        receiver = standby.get('receiver') or {}
        if not standby.get('reachable'):
            problems.append('%s: not reached, its recovery state is unknown' % label)
            actions.append('start %s (or remove it from fastdowntime_standbys)' % label)
            continue
        if not standby.get('in_recovery'):
            problems.append('%s is not in recovery (promoted?)' % label)
            actions.append('remove %s from fastdowntime_standbys or rebuild it as a standby' % label)
            continue
        if primary.get('system_identifier') and standby.get('system_identifier') \
                and standby['system_identifier'] != primary['system_identifier']:
            problems.append('%s replicates another cluster (system identifier %s, primary %s)'
                            % (label, standby['system_identifier'], primary['system_identifier']))
            actions.append('check fastdowntime_standbys')
            continue
        if receiver.get('status') != 'streaming':
            down = down_upstream(standby, standbys)
            if down is not None:
                # a cascade: the standby it streams from is down, it is unreachable through it - one cause
                problems.append('%s: WAL receiver is %s: its upstream %s %s (a cascade: %s gets no WAL through it)'
                                % (label, receiver.get('status') or 'not running', down['label'],
                                   'is not reached' if not down.get('reachable') else 'is not streaming', label))
                actions.append('start %s (or remove it from fastdowntime_standbys)' % down['label'])
                continue
            problems.append('%s: WAL receiver is %s, not streaming'
                            % (label, receiver.get('status') or 'not running'))
            actions.append('check primary_conninfo and the log of %s' % label)
            continue
        candidates.append(dict(standby, upstream=standby.get('upstream') or primary_label))
    upstreams = dict((s['label'], s['upstream']) for s in candidates)
    for label, problem in sorted(replication.chain_problems(upstreams, primary_label).items()):
        problems.append('%s: %s' % (label, problem))
        actions.append('make %s stream from the primary or from a streaming standby of it' % label)
    identities = {}
    for upstream in sorted(set(upstreams.values())):
        group = [s for s in candidates if s['upstream'] == upstream]
        identities.update(replication.assign(rows_by_upstream.get(upstream) or [], group))
    for standby in candidates:
        label, upstream = standby['label'], standby['upstream']
        identity = identities[label]
        if not identity['matched'] and upstream != primary_label:
            # the sender host named a standby, yet a relay on it may lead to the primary
            retry = replication.assign(primary_rows, [standby])[label]
            if retry['matched']:
                identity, upstream = retry, primary_label
                upstreams[label] = primary_label
        identities[label] = identity
        standby_evidence = next(e for e in evidence['standbys'] if e['label'] == label)
        standby_evidence.update(upstream=upstream, identified_by=identity['how'],
                                sync_state=(identity['row'] or {}).get('sync_state'))
        if not identity['matched']:
            receiver = standby.get('receiver') or {}
            problems.append('%s: says it streams from %s, but no row of %s\'s pg_stat_replication is its (%s)'
                            % (label, host_port(receiver.get('sender_host'), receiver.get('sender_port')), upstream,
                               identity['how']))
            actions.append('set fastdowntime_standby_application_name for %s to the application_name %s shows for '
                           'it in pg_stat_replication' % (label, upstream))
    missing = unlisted_standbys(rows_by_upstream, upstreams, identities, primary_label)
    # inventory standbys that may stream without being matched: not reached, or no row found theirs
    owners = [s['label'] for s in standbys if not s.get('reachable')] + [
        s['label'] for s in candidates if not identities[s['label']]['matched']]
    evidence['not_in_inventory'] = [dict(_row_evidence(row), upstream=up) for up, row in missing]
    count = len(missing) - len(owners)
    if count > 0:
        described = '; '.join(replication.describe_row(row, up, primary_label, rows_by_upstream.get(up))
                              for up, row in missing)
        if owners:
            problems.append('%d streaming standby(s) of this primary are not in the inventory: %d of the %d rows of '
                            'pg_stat_replication no inventory standby matches (%s) are not %s\'s - which ones cannot '
                            'be told from these rows' % (count, count, len(missing), described, ' or '.join(owners)))
        else:
            problems.append('%d streaming standby(s) of this primary are not in the inventory (the rows of '
                            'pg_stat_replication no inventory standby matches: %s)' % (count, described))
        actions.append('add %s to fastdowntime_standbys (fastdowntime_pg_host: its own address, on its host: SELECT '
                       'sender_host, slot_name FROM pg_stat_wal_receiver shows which streams) or stop it: a standby '
                       'the deploy does not watch could serve clients the old schema'
                       % ('it' if len(missing) == 1 else 'each'))
        if owners or any(' without a slot' in line for line in described.split('; ')):
            actions.append('to tell such rows apart give each standby a replication slot (primary_slot_name) or an '
                           'application_name in its primary_conninfo')
    if problems:
        return finding('standbys', FAIL, '; '.join(problems), host=primary['label'], evidence=evidence,
                       action='; '.join(dict.fromkeys(actions)) or 'make every standby stream')
    cascaded = ['%s via %s' % (label, up) for label, up in sorted(upstreams.items()) if up != primary_label]
    return finding('standbys', PASS, '%d standby(s) in recovery and streaming, as the inventory lists%s; %s'
                   % (len(standbys), ' (%s)' % ', '.join(cascaded) if cascaded else '',
                      (synchronous or {}).get('text') or 'no synchronous standbys'),
                   host=primary['label'], evidence=evidence)


def unlisted_standbys(rows_by_upstream, upstreams, identities, primary_label):
    """The streaming standbys no inventory standby was matched to: [(upstream label, row)],
    the rows replication.unmatched_rows() leaves on each upstream, the primary's first.

    ``rows_by_upstream``: {upstream label: WALSENDERS_SQL rows}; ``upstreams``:
    {standby label: its upstream label}; ``identities``: {standby label:
    replication.assign() value}."""
    order = sorted(rows_by_upstream, key=lambda up: (up != primary_label, up))
    return [(up, row) for up in order for row in replication.unmatched_rows(
        rows_by_upstream[up], [identities[label] for label, u in upstreams.items() if u == up])]


def down_upstream(standby, standbys):
    """The inventory standby (a decide_standbys dict) that ``standby`` is configured
    to stream from (its ``configured_upstream``: its primary_conninfo's host, as
    replication.locate_upstream finds it) when that one is not reached or not
    streaming itself: the cause of ``standby`` getting no WAL. None otherwise."""
    upstream = standby.get('configured_upstream')
    found = [s for s in standbys if s['label'] == upstream and s['label'] != standby['label']]
    if not found:
        return None
    if not found[0].get('reachable') or (found[0].get('receiver') or {}).get('status') != 'streaming':
        return found[0]
    return None


def decide_replay(label, state, resumed=False, error=None, cause='fastdowntime', below=(), target=None):
    """WAL replay on one standby. A split window pauses it for the primary's
    outage; a run that crashed there leaves it paused (and its marker), and the
    standby then serves an ever older snapshot and would never replay the next
    outage's commit: the pre-flight resumes that pause (and an operator's only
    when told to: fastdowntime_resume_operator_replay_pause), never one
    PostgreSQL made. ``state``: the replay pause state (pgversion.replay_pause_state_sql)
    before any action; ``cause``: replication.pause_cause; ``below``:
    replication.settings_below; ``target``: replication.recovery_target;
    ``resumed``: the pre-flight resumed it; ``error``: resuming failed."""
    evidence = {'state_found': state, 'resumed': bool(resumed), 'cause': cause,
                'settings_below_primary': [list(b) for b in below], 'recovery_target': target}
    if state == 'not paused':
        return finding('replay_paused', PASS, '%s: WAL replay running' % label, host=label, evidence=evidence)
    if cause == 'recovery_target':
        return finding('replay_paused', FAIL, '%s: PostgreSQL paused WAL replay at its recovery target (%s, '
                       'recovery_target_action = pause); resuming it would end recovery and promote the standby, '
                       'so it was left paused' % (label, target), host=label, evidence=evidence,
                       action='remove the recovery_target settings of %s and restart it (or take it out of '
                              'fastdowntime_standbys while it stays at its target)' % label)
    if cause == 'postgresql':
        settings = ', '.join('%s = %s (the primary has %s)' % b for b in below)
        return finding('replay_paused', FAIL, '%s: PostgreSQL paused WAL replay: %s; resuming it would shut the '
                       'standby down, so it was left paused' % (label, settings), host=label, evidence=evidence,
                       action='raise %s on %s to at least the primary\'s value and restart it'
                       % (', '.join(b[0] for b in below), label))
    if cause == 'operator':
        if resumed:
            return finding('replay_paused', WARN, '%s: WAL replay was %s by somebody (no fastdowntime marker in %s): '
                           'resumed it, as fastdowntime_resume_operator_replay_pause allows'
                           % (label, state, replication.PAUSE_MARKER_TABLE), host=label, evidence=evidence,
                           action='tell whoever paused it: the next deploy waits for it to catch up')
        why = '; resuming failed: %s' % error if error else ''
        return finding('replay_paused', FAIL, '%s: WAL replay is %s, and no fastdowntime split window left that pause '
                       '(no marker in %s): somebody paused it on purpose%s'
                       % (label, state, replication.PAUSE_MARKER_TABLE, why),
                       host=label, evidence=evidence,
                       action='ask who paused it; once it may run, SELECT pg_wal_replay_resume() on %s, or let the '
                              'deploy resume it: fastdowntime_resume_operator_replay_pause: true' % label)
    if resumed:
        return finding('replay_paused', WARN, '%s: WAL replay was %s, left by an interrupted split-window deploy '
                       '(its marker is in %s): resumed it' % (label, state, replication.PAUSE_MARKER_TABLE),
                       host=label, evidence=evidence, action='nothing: the next deploy waits for it to catch up')
    why = 'resuming failed: %s' % error if error else 'not resumed (check mode, or resume_paused_replay is off)'
    return finding('replay_paused', FAIL, '%s: WAL replay is %s (left by an interrupted split-window deploy): the '
                   'standby serves an old snapshot and would never replay the outage\'s commit; %s'
                   % (label, state, why), host=label, evidence=evidence,
                   action='run SELECT pg_wal_replay_resume() on %s (or run the pre-flight without --check: '
                          'it resumes it)' % label)


# Where a finding's evidence lists the sessions (backend rows with 'pid') it names.
_SESSION_EVIDENCE = ('long_transactions', 'idle_in_transaction', 'blockers', 'drain_holders', 'lock_holders')
_STRENGTH = {PASS: 0, WARN: 1, FAIL: 2}


def _named_pids(found):
    """The backend pids a finding names (none when it passes)."""
    if found['status'] == PASS:
        return set()
    evidence = found.get('evidence') or {}
    return set(r.get('pid') for key in _SESSION_EVIDENCE for r in evidence.get(key) or ()
               if isinstance(r, dict) and r.get('pid') is not None)


def sessions_named_elsewhere(findings, transactions):
    """{pid: check} of the sessions the ``transactions`` finding names that
    another finding on its host names too, as a failure or (where transactions
    only warns) a warning: the cause is said there - with what it holds and
    the fix - so transactions leaves them out (one cause, one line)."""
    mine = _named_pids(transactions)
    found = {}
    for other in findings:
        if other is transactions or other['check'] == 'transactions' or other.get('host') != transactions['host'] \
                or _STRENGTH[other['status']] < _STRENGTH[transactions['status']]:
            continue
        for pid in _named_pids(other) & mine:
            found.setdefault(pid, other['check'])
    return found


def elsewhere_note(named):
    """' (apart from pid 1: named under replay_blockers)' for {pid: check}."""
    checks = sorted(set(named.values()))
    return ' (apart from %s)' % '; '.join('pid %s: named under %s' % (
        ', '.join(str(p) for p in sorted(pid for pid in named if named[pid] == check)), check) for check in checks)


def _locks_by_pid(lock_holders):
    """{pid: 'a lock on fdt_item (ACCESS SHARE), which patch-x.sql line 1 locks ACCESS EXCLUSIVE'} from
    standby_lock_holders rows (locks.conflicting's, with ``wanted``)."""
    found = {}
    for row in lock_holders:
        wanted = row.get('wanted') or {}
        text = 'a lock on %s (%s), which %s line %s locks %s' % (row.get('relation'), row.get('mode'),
                                                                 wanted.get('patch'), wanted.get('line'),
                                                                 wanted.get('mode'))
        if row.get('pid') is not None and row['pid'] not in found:
            found[row['pid']] = text
    return found


def standby_lock_holders(holders_rows, required):
    """The HOLDERS_SQL rows read on a standby that replay of the outage's
    commit conflicts with: on a standby only ACCESS EXCLUSIVE locks are
    replayed (PostgreSQL WAL-logs no other), so the locks its sessions hold on
    the relations ``required`` (locks.required_locks) names ACCESS EXCLUSIVE,
    whatever their mode (every mode conflicts with it)."""
    return locks.conflicting(holders_rows, required)


def decide_standby_sessions(label, activity_rows, conflict, max_seconds, budget_seconds, through=None,
                            clients=None, lock_holders=None):
    """A standby's ``transactions`` and ``replay_blockers`` findings (in that
    order), one line per cause: a session both would name (same pid, this
    host) is named only by the stronger one (a failure over a warning;
    replay_blockers, which says what it holds and both fixes, where they are
    equal); the other says where it is named. Arguments as decide_transactions
    and decide_replay_blockers."""
    transactions = decide_transactions(label, activity_rows, [], max_seconds, through=through, clients=clients)
    blockers = decide_replay_blockers(label, conflict, activity_rows, budget_seconds, lock_holders)
    both = _named_pids(transactions) & _named_pids(blockers)
    if not both:
        return [transactions, blockers]
    rest = [r for r in activity_rows if r.get('pid') not in both]
    if transactions['status'] == FAIL and blockers['status'] == WARN:
        blockers = decide_replay_blockers(label, conflict, rest, budget_seconds, lock_holders)
        blockers['summary'] += elsewhere_note(dict.fromkeys(both, 'transactions'))
    else:
        transactions = decide_transactions(label, rest, [], max_seconds, through=through, clients=clients)
        transactions['summary'] += elsewhere_note(dict.fromkeys(both, 'replay_blockers'))
    return [transactions, blockers]


def decide_replay_blockers(label, conflict, activity_rows, budget_seconds, lock_holders=None):
    """What may hold a standby's replay of the outage's commit past the budget
    (replication.replay_blockers): a failure naming each blocker and the
    setting that lets it block, before any PAUSE; hot_standby_feedback off
    where queries can hold replay is a warning (replication.feedback_effect).
    ``conflict``: replication.REPLAY_CONFLICT_SQL row; ``activity_rows``: the
    standby's ACTIVITY_SQL rows; ``lock_holders``: the standby's
    standby_lock_holders rows (its sessions' locks on the relations the cold
    patches lock ACCESS EXCLUSIVE), None when not read. Where the delay is
    below the budget a transaction older than the threshold is a warning only
    where it holds such a lock (replay waits for it, then cancels it); with
    ``lock_holders`` None or hot_standby_feedback off, every such transaction
    is named, as a possibility."""
    can_block, rows = replication.replay_blockers(conflict, activity_rows, budget_seconds)
    setting, value, delay_ms = replication.replay_delay(conflict)
    held = replication.held_now(conflict)
    effect, risky = replication.feedback_effect(conflict, can_block)
    apply_delay = (conflict or {}).get('apply_delay_ms') or 0
    evidence = {'delay_setting': setting, setting: value, 'delay_ms': delay_ms,
                'recovery_min_apply_delay': (conflict or {}).get('recovery_min_apply_delay'),
                'hot_standby_feedback': (conflict or {}).get('hot_standby_feedback'),
                'threshold_seconds': replication.blocking_threshold_seconds(budget_seconds),
                'held_now': held,
                'blockers': [shown(r, ('pid', 'usename', 'application_name', 'state', 'xact_seconds', 'query'))
                             for r in rows]}
    if replication.apply_delay_late(conflict, budget_seconds):
        return finding('replay_blockers', FAIL, '%s: recovery_min_apply_delay = %s: it replays every commit that late, '
                       'past the %gs budget (a delayed standby)'
                       % (label, evidence['recovery_min_apply_delay'], budget_seconds), host=label, evidence=evidence,
                       action='take %s out of fastdowntime_standbys (and its entries out of the deploy: it cannot '
                              'serve the new schema in time), or set its recovery_min_apply_delay to 0' % label)
    if apply_delay > 0:
        return finding('replay_blockers', WARN, '%s: recovery_min_apply_delay = %s: the outage waits that long for its '
                       'replay of the commit' % (label, evidence['recovery_min_apply_delay']), host=label,
                       evidence=evidence, action='count it in the budget, or set its recovery_min_apply_delay to 0')
    if not can_block:
        # Below the budget replay cancels such a query after the delay: not a refusal, but the outage
        # may wait that delay and the query's client gets an error.
        threshold = replication.blocking_threshold_seconds(budget_seconds)
        running = [r for r in activity_rows or () if (r.get('xact_seconds') or 0) >= threshold]
        # With hot_standby_feedback off a VACUUM on the primary conflicts with any query there, whatever it locks.
        feedback_off = (conflict or {}).get('hot_standby_feedback') == 'off'
        held = None if lock_holders is None or feedback_off else _locks_by_pid(lock_holders)
        if held is not None:
            evidence['lock_holders_read'] = True
            running = [r for r in running if r.get('pid') in held]
        if running:
            fields = ('pid', 'usename', 'application_name', 'state', 'xact_seconds', 'query')
            evidence['blockers'] = [shown(r, fields) for r in running]
            # What the estimate adds to its replay term (replay_conflict_seconds).
            evidence['replay_waits_up_to_ms'] = delay_ms
            if held is None:
                sessions, holds = ', '.join(_session_text(r) for r in running), \
                    'if it holds a lock on a table a cold patch changes, '
            else:
                sessions, holds = ', '.join('%s holds %s' % (_session_text(r), held[r['pid']]) for r in running), ''
            return finding('replay_blockers', WARN, '%s: %s: %sreplay of the outage\'s commit waits up to %s = %s '
                           'for it (every client of the window waits too) and then PostgreSQL cancels it ("canceling '
                           'statement due to conflict with recovery")' % (label, sessions, holds, setting, value),
                           host=label, evidence=evidence,
                           action='let it finish (or end it) on %s before the deploy' % label)
        return finding('replay_blockers', PASS, '%s: %s = %s: queries cannot hold replay past the budget (replay '
                       'cancels them after that)%s' % (
                           label, setting, value, '; none holds a lock on what the cold patches lock ACCESS EXCLUSIVE'
                           if held is not None else ''), host=label, evidence=evidence)
    if rows or held:
        sessions = ', '.join(_session_text(r) for r in rows) or 'backends %s' % held['blocked_by']
        now = ('; replay waits for them now (%s)' % held['wait_event']) if held else ''
        return finding('replay_blockers', FAIL, '%s: %s%s; with %s = %s they can hold replay of the outage\'s commit '
                       'past the %gs budget' % (label, sessions, now, setting, value, budget_seconds),
                       host=label, evidence=evidence,
                       action='end them (or wait for them) on %s, or set its %s below the budget' % (label, setting))
    if risky:
        return finding('replay_blockers', WARN, '%s: no transaction older than %gs, but %s = %s lets a query hold '
                       'replay and %s' % (label, evidence['threshold_seconds'], setting, value, effect),
                       host=label, evidence=evidence,
                       action='set hot_standby_feedback = on on %s (or %s below the budget)' % (label, setting))
    return finding('replay_blockers', PASS, '%s: no transaction older than %gs (%s = %s lets one hold replay); %s'
                   % (label, evidence['threshold_seconds'], setting, value, effect), host=label, evidence=evidence)


def decide_recovery_conflicts(label, row, conflict=None):
    """Queries replay cancelled on a standby (pg_stat_database_conflicts for
    the deploy's database): none passes; some warn - replay there does wait
    for queries and cancels them, so during the outage a read on the patched
    tables is cancelled (its client gets an error) or holds replay up to the
    delay. ``row``: replication.RECOVERY_CONFLICTS_SQL row; ``conflict``: the
    standby's REPLAY_CONFLICT_SQL row (for the delay's name and value)."""
    counts, since = replication.conflict_counts(row)
    setting, value, dummy = replication.replay_delay(conflict)
    evidence = {'conflicts': counts, 'stats_reset': since, setting: value}
    if not counts:
        return finding('recovery_conflicts', PASS, '%s: no query cancelled by a recovery conflict%s'
                       % (label, ' since %s' % since if since else ''), host=label, evidence=evidence)
    text = ', '.join('%s %d' % item for item in sorted(counts.items()))
    return finding('recovery_conflicts', WARN, '%s: %d queries cancelled by recovery conflicts (%s)%s: replay there '
                   'waits for queries up to %s = %s, then cancels them - in the outage, reads on the patched tables '
                   % (label, sum(counts.values()), text, ' since %s' % since if since else '', setting, value)
                   + 'are cancelled or hold replay', host=label, evidence=evidence,
                   action='move long reads off %s during the deploy; its log names each cancelled query '
                          '("canceling statement due to conflict with recovery")' % label)


def decide_lag(measurements, max_lag_seconds, max_lag_bytes):
    """``measurements``: per standby reached, 'label', 'bytes_behind' (when
    the probe was written), 'catch_up_seconds' (None: not caught up within
    max_lag_seconds) and 'error'. One finding per standby."""
    found = []
    for m in measurements:
        label = m['label']
        evidence = dict(m, max_lag_seconds=max_lag_seconds, max_lag_bytes=max_lag_bytes)
        if m.get('error'):
            found.append(finding('replication_lag', FAIL, '%s: lag not measured: %s' % (label, m['error']),
                                 host=label, evidence=evidence, action='make %s answer and stream' % label))
            continue
        problems = []
        if m.get('catch_up_seconds') is None:
            problems.append('did not replay a new WAL record within %gs' % max_lag_seconds)
        if (m.get('bytes_behind') or 0) > max_lag_bytes:
            problems.append('%d bytes behind (limit %d)' % (m['bytes_behind'], max_lag_bytes))
        if problems:
            found.append(finding('replication_lag', FAIL, '%s: %s' % (label, '; '.join(problems)), host=label,
                                 evidence=evidence,
                                 action='wait until %s catches up (long queries on it, I/O, network) and run '
                                        'the pre-flight again' % label))
        else:
            found.append(finding('replication_lag', PASS, '%s: replayed a new WAL record in %.3fs, %d bytes behind'
                                 % (label, m['catch_up_seconds'], m.get('bytes_behind') or 0),
                                 host=label, evidence=evidence))
    return found


def _session_text(row, through=None, client=None):
    """One session; ``through``/``client``: the pgbouncer it comes through and that pgbouncer's client."""
    where = client or row.get('client_addr') or 'local socket'
    return 'pid %s (user %s, from %s, %s, application %r, transaction open %.0fs, query: %s)' % (
        row.get('pid'), row.get('usename'), '%s through %s' % (where, through) if through else where, row.get('state'),
        row.get('application_name') or '', row.get('xact_seconds') or 0, query_summary(row.get('query')))


def shown(row, keys):
    """The ``keys`` of a session's row for a finding's evidence (the module result, report.json), its
    ``query`` as sessions.query_summary says it: never the text (its literals may carry secrets)."""
    found = dict((k, row.get(k)) for k in keys)
    if 'query' in found:
        found['query'] = query_summary(found['query'])
    return found


def decide_transactions(label, activity_rows, prepared_rows, max_seconds, through=None, clients=None):
    """Transactions older than ``max_seconds`` and prepared transactions older
    than it fail (the cold patches would wait for their locks, a standby's
    replay for its queries); younger prepared transactions and sessions idle in
    a transaction for over IDLE_IN_TRANSACTION_SECONDS are warnings (a shorter
    pause between two statements of a transaction is ordinary traffic).
    ``through``: {backend pid: the pgbouncer it is a server connection of};
    ``clients``: {backend pid: that pgbouncer client's 'addr:port'} - named so."""
    def text(row):
        return _session_text(row, (through or {}).get(row.get('pid')), (clients or {}).get(row.get('pid')))

    long_rows = [r for r in activity_rows if (r.get('xact_seconds') or 0) > max_seconds]
    idle = [r for r in activity_rows if (r.get('state') or '').startswith('idle in transaction')
            and (r.get('state_seconds') or 0) > IDLE_IN_TRANSACTION_SECONDS and r not in long_rows]
    old_prepared = [r for r in prepared_rows if (r.get('age_seconds') or 0) > max_seconds]
    young_prepared = [r for r in prepared_rows if r not in old_prepared]
    evidence = {'long_transactions': [shown(r, r) for r in long_rows], 'idle_in_transaction': [shown(r, r) for r in idle],
                'prepared': list(prepared_rows),
                'max_transaction_seconds': max_seconds}
    if long_rows or old_prepared:
        parts = []
        if long_rows:
            parts.append('%d transaction(s) open longer than fastdowntime_max_transaction_seconds (%g s): %s' % (
                len(long_rows), max_seconds, '; '.join(text(r) for r in long_rows)))
        if old_prepared:
            parts.append('%d prepared transaction(s) older than fastdowntime_max_transaction_seconds (%g s): %s' % (
                len(old_prepared), max_seconds, ', '.join('%r (owner %s, %.0fs)' % (
                    r.get('gid'), r.get('owner'), r.get('age_seconds') or 0) for r in old_prepared)))
        actions = []
        if long_rows:
            actions.append('let them finish or end them (SELECT pg_terminate_backend(%s) on %s)'
                           % (', '.join(str(r['pid']) for r in long_rows), label))
        if old_prepared:
            actions.append("COMMIT PREPARED or ROLLBACK PREPARED %s" % ', '.join("'%s'" % r.get('gid')
                                                                                 for r in old_prepared))
        return finding('transactions', FAIL, '%s: %s' % (label, '; '.join(parts)), host=label, evidence=evidence,
                       action='; '.join(actions))
    if idle or young_prepared:
        parts = []
        if idle:
            parts.append('%d idle-in-transaction session(s): %s'
                         % (len(idle), '; '.join(text(r) for r in idle)))
        if young_prepared:
            parts.append('%d prepared transaction(s): %s' % (len(young_prepared), ', '.join(
                repr(r.get('gid')) for r in young_prepared)))
        return finding('transactions', WARN, '%s: %s' % (label, '; '.join(parts)), host=label, evidence=evidence,
                       action='they hold locks the cold patches may need: make sure they end before the outage')
    return finding('transactions', PASS, '%s: no transaction older than %gs, none idle in transaction, none prepared'
                   % (label, max_seconds), host=label, evidence=evidence)


def addresses(host):
    """The IP addresses ``host`` (a name or an address) stands for, with
    itself; none for a unix socket directory or an empty host."""
    if not host or str(host).startswith('/'):
        return set()
    found = {host}
    try:
        found |= set(info[4][0] for info in socket.getaddrinfo(host, None))
    except (OSError, UnicodeError):
        pass  # a name that does not resolve here: itself only
    return found


def explained_entries(databases, entries, unreachable, probe_login, refused_login):
    """The deploy ``entries`` of one pgbouncer whose client probe answer another
    finding already explains: the server an entry points at (SHOW DATABASES
    ``databases`` rows' host and port) is one the pre-flight could not reach
    (``unreachable``: a set of (address, port)); or the probe logs in as
    ``refused_login`` ((user, password) PostgreSQL refused) - then every entry."""
    if refused_login is not None and tuple(probe_login) == tuple(refused_login):
        return set(entries)
    out = set()
    for row in databases:
        if row.get('name') in entries and any(
                (address, int(row.get('port') or 5432)) in unreachable for address in addresses(row.get('host'))):
            out.add(row['name'])
    return out


def _who(rows):
    return ', '.join('%s@%s (pid %s)' % (r.get('usename'), r.get('client_addr') or 'local socket', r.get('pid'))
                     for r in rows)


def decide_direct_connections(label, rows, pgbouncer_pids, system_users, fragile_users, killable_users,
                              pgbouncer_hosts=None):
    """The primary's sessions of the deploy database (pg_stat_activity rows),
    sorted by sessions.classify_connections: pgbouncer's own server
    connections are those whose pid a pgbouncer's SHOW SERVERS shows
    (``pgbouncer_pids``), over TCP or a unix socket; fragile or unknown
    direct connections fail, killable ones warn.

    ``pgbouncer_hosts``: {client_addr: (pgbouncer host label, True when every
    console declared on that host answered)}. An unknown connection from a
    pgbouncer host is a pgbouncer's: when every console there answered, of a
    process nobody declared (so_reuseport: it would never be paused) - a
    failure pointing to fastdowntime_pgbouncer_consoles; when a console there
    failed, of that console's process, whose failure is already its finding -
    nothing more is said. Never advice to kill or ignore them.

    Key None: the primary's local socket (client_addr NULL), when pgbouncers
    reach the primary through it (the label names them): a local-socket
    connection no declared console shows is an undeclared pgbouncer process's
    or a local client's - the address cannot tell; the failure names both."""
    groups = classify_connections(rows, pgbouncer_pids, system_users, fragile_users, killable_users)
    undeclared = {}  # pgbouncer host label -> its rows
    unknown = []
    for row in groups['unknown']:
        host = (pgbouncer_hosts or {}).get(row.get('client_addr'))
        if host is None:
            unknown.append(row)
        elif host[1]:
            undeclared.setdefault(host[0], []).append(row)
    groups['unknown'] = unknown
    evidence = dict((key, [{k: r.get(k) for k in ('pid', 'usename', 'client_addr', 'application_name', 'state')}
                           for r in value]) for key, value in groups.items())
    evidence.update(system_users=sorted(system_users), fragile_users=sorted(fragile_users),
                    killable_users=sorted(killable_users), pgbouncer_pids=len(pgbouncer_pids))
    problems, actions = [], []
    if groups['fragile']:
        problems.append('fragile users connected directly: %s' % _who(groups['fragile']))
        actions.append('stop them first (they must not be cut off by the outage)')
    if groups['unknown']:
        problems.append('unknown direct connections (not through pgbouncer): %s' % _who(groups['unknown']))
        actions.append('stop them, or list their users in fastdowntime_killable_users (terminated as the outage '
                       'starts) or fastdowntime_system_users (ignored)')
    local_labels = set(host[0] for addr, host in (pgbouncer_hosts or {}).items() if addr is None)
    for host in sorted(undeclared):
        if host in local_labels:
            problems.append('connections over the primary\'s local socket, which %s reach%s it through, that none of '
                            'their declared consoles shows (a pgbouncer process not declared, sharing the port with '
                            'so_reuseport, or a local client: its address cannot tell): %s' % (
                                host, 'es' if ',' not in host else '', _who(undeclared[host])))
            actions.append('declare every pgbouncer process of %s in fastdowntime_pgbouncer_consoles (each is paused '
                           'and resumed), or stop the local client (or list its user in fastdowntime_system_users), '
                           'then run the pre-flight again' % host)
            continue
        problems.append('connections from pgbouncer host %s that none of its declared consoles shows (a pgbouncer '
                        'process not declared, sharing the port with so_reuseport?): %s' % (host, _who(undeclared[host])))
        actions.append('declare every pgbouncer process of %s in fastdowntime_pgbouncer_consoles (each is paused '
                       'and resumed), then run the pre-flight again' % host.split(' (')[0])
    if problems:
        return finding('direct_connections', FAIL, '%s: %s' % (label, '; '.join(problems)), host=label,
                       evidence=evidence, action='; '.join(actions))
    if groups['killable']:
        return finding('direct_connections', WARN, '%s: will be terminated when the outage starts: %s'
                       % (label, _who(groups['killable'])), host=label, evidence=evidence,
                       action='nothing, unless they must not be cut off: then stop them yourself first')
    return finding('direct_connections', PASS, '%s: no direct connection other than system users (%d) and '
                   'pgbouncer\'s own (%d)' % (label, len(groups['system']), len(groups['pgbouncer'])),
                   host=label, evidence=evidence)


def decide_blocking_sessions(label, activity_rows, lock_rows, required, pgbouncer_of, killable_users, pgbouncer_addrs,
                             wait_seconds, drain_policy='abort', policy='refuse', cold_pending=True, standby=False,
                             pgbouncer_clients=None):
    """Sessions that would hold the outage for its whole budget and then abort
    it: refused before any PAUSE (``policy`` 'warn': warned, the outage waits
    for them as before).

    - Through a pgbouncer (``pgbouncer_of``: {backend pid: pgbouncer name}, from
      SHOW SERVERS; ``pgbouncer_clients``: {backend pid: the pgbouncer client's
      'addr:port'}, named instead of the backend's own client address, which is
      pgbouncer's or none): a server connection in a transaction holds the drain
      (PAUSE waits for its transaction to end). One that will_outlast_window
      fails with drain_policy 'abort'; with 'terminate' the drain ends it:
      a warning saying so.
    - Any other session holding or waiting for a lock that conflicts with the
      one a cold statement needs (``lock_rows``: locks.conflicting rows) and
      that will_outlast_window: the cold transaction waits for it the whole
      budget. A user of ``killable_users`` connected from no pgbouncer host
      (``pgbouncer_addrs``) is terminated as the outage starts: a warning.
    - A prepared transaction (two-phase commit: a ``lock_rows`` row with a
      ``gid``) holding such a lock, whatever its age: it has no session, so
      nothing ends it but COMMIT PREPARED or ROLLBACK PREPARED from whoever
      prepared it; the cold transaction would wait for it the whole budget.

    ``activity_rows``: the primary's ACTIVITY_SQL rows of the deploy database;
    ``required``: locks.required_locks of the pending cold patches;
    ``wait_seconds``: what the window can wait (the usable budget, capped by
    pgbouncer's timeouts); ``cold_pending``: False when no outage is due.

    ``standby``: True for a standby (``label``): its rows, no lock rows (its
    locks are replay_blockers' business), ``pgbouncer_of`` the server
    connections of the entries serving it - every deploy entry is drained,
    the read entries too (mode ``all`` with the others, ``split`` once the
    patches are committed). The drain's terminate policy ends only primary
    backends: a standby's holder is refused with either policy."""
    evidence = {'wait_seconds': round(wait_seconds, 3), 'drain_policy': drain_policy, 'policy': policy,
                'idle_in_transaction_seconds': IDLE_IN_TRANSACTION_SECONDS,
                'required_locks': [{'relation': locks.entry_text(r), 'mode': r['mode'], 'patch': r['patch'],
                                    'line': r['line']} for r in required],
                'drain_holders': [], 'lock_holders': []}
    if not cold_pending:
        return finding('blocking_sessions', PASS, '%s: no cold patch pending: nothing to drain, no lock to wait for'
                       % label, host=label, evidence=evidence)
    refused, warned, pids = [], [], []
    for row in drain_holders(activity_rows, pgbouncer_of, wait_seconds):
        through = pgbouncer_of.get(row.get('pid'))
        client = (pgbouncer_clients or {}).get(row.get('pid'))
        evidence['drain_holders'].append(dict(shown(row, (
            'pid', 'usename', 'application_name', 'client_addr', 'state', 'xact_seconds', 'state_seconds', 'query')),
            pgbouncer=through, pgbouncer_client=client))
        text = '%s holds its server connection in a transaction: the drain waits for it' % describe_session(
            row, through, client)
        if drain_policy == 'terminate' and not standby:
            warned.append(text + ' and, with drain_policy terminate, terminates it')
        else:
            refused.append(text)
            pids.append(row.get('pid'))
    # A pgbouncer client's transaction is the drain's (above): it waits for it first.
    outlasting, killable, by_gid = locks.outlasting_holders(lock_rows, pgbouncer_of, wait_seconds, killable_users,
                                                            pgbouncer_addrs)
    for pid, rows in sorted(list(outlasting.items()) + list(killable.items())):
        row = rows[0]
        evidence['lock_holders'].append(dict(
            shown(row, ('pid', 'usename', 'application_name', 'client_addr', 'state', 'xact_seconds', 'state_seconds',
                        'query')),
            locks=[{'relation': r.get('relation'), 'mode': r['mode'], 'granted': r.get('granted'),
                    'needed': r['wanted']['mode']} for r in rows]))
        text = '%s %s' % (describe_session(row), locks.held_text(rows))
        if pid in killable:
            warned.append(text + ' (a killable user: terminated as the outage starts)')
        else:
            refused.append(text)
            pids.append(pid)
    evidence['prepared_holders'] = []
    for gid, rows in sorted(by_gid.items()):
        row = rows[0]
        evidence['prepared_holders'].append(dict(
            dict((k, row.get(k)) for k in ('gid', 'owner', 'prepared_database', 'prepared_seconds')),
            locks=[{'relation': r.get('relation'), 'mode': r['mode'], 'granted': r.get('granted'),
                    'needed': r['wanted']['mode']} for r in rows]))
        refused.append('%s %s' % (locks.prepared_text(row), locks.held_text(rows)))
    gids = sorted(by_gid)
    budget_text = 'the outage would wait for them its whole %.1f s and then abort' % wait_seconds
    if refused and policy != 'warn':
        pid_list = ', '.join(str(p) for p in pids)
        fixes, actions = [], []
        if pids:
            fixes.append('end them (SELECT pg_terminate_backend(pid) for pid %s%s) or let them commit'
                         % (pid_list, ' on %s' % label.split(' (')[0] if standby else ''))
            actions.append(('on %s: SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid IN (%s) - or '
                            'let them commit' % (label, pid_list)) + (
                '; fastdowntime_drain_policy: terminate ends only the primary\'s backends, not a standby\'s'
                if standby else '; for clients through pgbouncer, fastdowntime_drain_policy: terminate ends them '
                'at the drain; for direct ones, fastdowntime_killable_users terminates them as the outage starts'))
        if gids:
            fixes.append(locks.prepared_fix(label, [by_gid[g][0] for g in gids]))
            actions.append(locks.prepared_fix(label, [by_gid[g][0] for g in gids]) + ' (a prepared transaction has no '
                           'session to terminate; resolving one its coordinator still tracks breaks the coordinator\'s '
                           'atomicity: ask its owner first)')
        actions.append('fastdowntime_blocking_sessions: warn deploys anyway (the outage waits for them up to the '
                       'budget, then aborts)')
        return finding('blocking_sessions', FAIL, '%s: %s; %s: %s, then deploy again' % (
            label, '; '.join(refused), budget_text, '; '.join(fixes)), host=label, evidence=evidence,
            action='; '.join(actions))
    if refused or warned:
        both = refused + warned
        return finding('blocking_sessions', WARN, '%s: %s%s' % (
            label, '; '.join(both), ('; %s (fastdowntime_blocking_sessions: warn)' % budget_text) if refused else ''),
            host=label, evidence=evidence,
            action='nothing, unless they must not be cut off: then end them yourself first' if not refused else
            'end them before the outage, or the outage aborts at its budget')
    if standby:
        return finding('blocking_sessions', PASS, '%s: no client through the pgbouncer entries serving it holds the '
                       'drain (waits up to %.1f s)' % (label, wait_seconds), host=label, evidence=evidence)
    return finding('blocking_sessions', PASS, '%s: no session holds the drain or a lock the cold patches need (%d '
                   'relation(s) checked, waits up to %.1f s)' % (label, len(required), wait_seconds),
                   host=label, evidence=evidence)


def decide_hot_patch_waits(label, db_name, activity_rows, lock_rows, lockers, snapshots, wait_seconds,
                           policy='refuse'):
    """What the pending live (hot) statements would wait out on the primary
    ``label`` before anything runs (locks.hot_waits: ``lockers``, the lockers
    each waits for, ``snapshots``, the statements that wait for every older
    snapshot of database ``db_name``). The hot phase retries its lock for
    ``wait_seconds`` (schema.LockRetry.hot_wait_seconds), then fails with its
    patch unrecorded - so it refuses (``policy`` 'warn': warns):

    - a session of ``activity_rows`` (ACTIVITY_SQL of the deploy database)
      holding a snapshot (``holds_snapshot``: backend_xmin) whose transaction
      will_outlast_window, when a statement waits for older snapshots;
    - a session holding a lock one waits out (``lock_rows``: locks.conflicting
      rows against ``lockers``) that will_outlast_window;
    - a prepared transaction holding such a lock, whatever its age.
    Sessions and prepared transactions that hold nothing it waits for pass."""
    statements = sorted(set('%s line %s (%s)' % (w['patch'], w['line'], w['words']) for w in lockers + snapshots))
    evidence = {'statements': statements, 'wait_seconds': round(wait_seconds, 3), 'policy': policy,
                'snapshot_holders': [], 'lock_holders': [], 'prepared_holders': []}
    if not statements:
        return finding('hot_patch_waits', PASS, '%s: no pending hot statement waits out other transactions' % label,
                       host=label, evidence=evidence)
    held, pids = [], []
    by_pid, by_gid = {}, {}
    for row in lock_rows:
        (by_gid.setdefault(row['gid'], []) if row.get('gid') is not None
         else by_pid.setdefault(row.get('pid'), [])).append(row)
    older = ['%s line %s (%s)' % (w['patch'], w['line'], w['words']) for w in snapshots]
    for row in activity_rows:
        pid = row.get('pid')
        snapshot = bool(older) and row.get('holds_snapshot') and will_outlast_window(row, wait_seconds)
        locked = pid in by_pid and will_outlast_window(row, wait_seconds)
        if not snapshot and not locked:
            continue
        parts = []
        if snapshot:
            parts.append('holds a snapshot, which %s waits out (every transaction of database %s with an older '
                         'snapshot)' % (older[0], db_name))
            evidence['snapshot_holders'].append(dict((k, row.get(k)) for k in (
                'pid', 'usename', 'application_name', 'client_addr', 'state', 'xact_seconds', 'state_seconds')))
        if locked:
            parts.append(_hot_lock_text(by_pid[pid]))
            evidence['lock_holders'].append({'pid': pid, 'locks': [
                {'relation': r.get('relation'), 'mode': r['mode'], 'granted': r.get('granted')} for r in by_pid[pid]]})
        held.append('%s %s' % (describe_session(row), ' and '.join(parts)))
        pids.append(pid)
    for gid, rows in sorted(by_gid.items()):
        evidence['prepared_holders'].append(dict((k, rows[0].get(k)) for k in (
            'gid', 'owner', 'prepared_database', 'prepared_seconds')))
        held.append('%s %s' % (locks.prepared_text(rows[0]), _hot_lock_text(rows)))
    if not held:
        return finding('hot_patch_waits', PASS, '%s: nothing holds what %s wait%s out' % (
            label, ', '.join(statements), 's' if len(statements) == 1 else ''), host=label, evidence=evidence)
    fixes = []
    if pids:
        fixes.append('end them (SELECT pg_terminate_backend(pid) for pid %s) or let them commit'
                     % ', '.join(str(p) for p in pids))
    if by_gid:
        fixes.append(locks.prepared_fix(label, [by_gid[g][0] for g in sorted(by_gid)]))
    cost = 'the hot phase would wait for them %.0f s, then fail with its patch unrecorded' % wait_seconds
    if policy == 'warn':
        return finding('hot_patch_waits', WARN, '%s: %s; %s (fastdowntime_blocking_sessions: warn)' % (
            label, '; '.join(held), cost), host=label, evidence=evidence,
            action='end them before the deploy, or its hot phase fails')
    return finding('hot_patch_waits', FAIL, '%s: %s; %s: %s, then deploy again' % (
        label, '; '.join(held), cost, '; '.join(fixes)), host=label, evidence=evidence,
        action='%s; fastdowntime_blocking_sessions: warn deploys anyway (the hot phase then fails if they have '
               'not ended)' % '; '.join(fixes))


def _hot_lock_text(rows):
    """What a holder's conflicting lock rows (locks.conflicting against
    locks.hot_waits' lockers) make a live statement wait out."""
    return '; '.join('%s %s on %s, which %s line %s (%s) waits out' % (
        'holds' if row.get('granted') else 'waits for', row['mode'], row.get('relation'), row['wanted']['patch'],
        row['wanted']['line'], row['wanted']['words']) for row in rows)


def decide_pgbouncer(label, entries=None, flags=None, state=None, missing_standby_entries=None, error=None,
                     probe=None, fences=None, explained=(), logging_in=()):
    """One pgbouncer process: the console answered as an admin and resolved the
    deploy's entries (else ``error``); none of them is paused - by SHOW
    DATABASES, SHOW STATE (1.19+) or, as a client sees it, ``probe``
    ({entry: None when a client's SELECT 1 was answered, else what the client
    saw}: a global PAUSE or SUSPEND shows nowhere else on 1.18); the entries
    named for the standbys exist. Disabled entries, and a probe that could not
    log in, are warnings: ``fences`` ({entry: replication.read_fences row} of
    this pgbouncer) tells an entry an earlier window fenced (the deploy ENABLEs
    it once its standby has replayed) from one someone else DISABLEd.
    ``explained``: entries whose probe answer another finding already explains
    (their server could not be reached, the probe's login is the deploy login
    PostgreSQL refused): left out, one cause one line. ``logging_in``: entries
    with a server login still in flight after the probe (SHOW POOLS sv_login):
    a silent one waits for its server, not for a PAUSE."""
    if error is not None:
        action = connect_action(getattr(error, 'kind', None), 'the admin console of %s' % label,
                                'fastdowntime_pgbouncer_*') or (
            'make the admin console of %s answer with an admin_users user and the deploy\'s '
            'entries (fastdowntime_pgbouncer_*, fastdowntime_db_name)' % label)
        return finding('pgbouncer', FAIL, one_line(error), host=label, evidence={'error': one_line(error)},
                       action=action)
    flags = flags or {}
    if probe:
        probe = dict((entry, seen) for entry, seen in probe.items() if entry not in explained)
    paused = [entry for entry in entries if flags.get(entry, {}).get('paused')]
    disabled = [entry for entry in entries if flags.get(entry, {}).get('disabled')]
    verdict = probe_verdict({label: probe or {}}, [(label, e) for e in disabled])
    silent = [item[1] for item in verdict['silent'] if item[1] not in paused]
    hung = [entry for entry in silent if entry in logging_in]
    silent = [entry for entry in silent if entry not in logging_in]
    evidence = {'entries': list(entries), 'flags': flags, 'state': state, 'probe': probe,
                'missing_standby_entries': list(missing_standby_entries or [])}
    problems, actions = [], []
    if state and state.get('paused'):
        problems.append('the whole pgbouncer is paused (SHOW STATE)')
    if state and state.get('suspended'):
        problems.append('the whole pgbouncer is suspended (SHOW STATE)')
    if paused:
        problems.append('already paused: %s' % ', '.join(paused))
    if silent:
        problems.append('a client query through %s got no answer within %s: paused or suspended by someone (a '
                        'global PAUSE or SUSPEND shows nowhere in SHOW DATABASES before pgbouncer 1.19)'
                        % (', '.join(silent), verdict['silent'][0][2].rsplit(' within ', 1)[-1]))
    if paused or silent or (state and (state.get('paused') or state.get('suspended'))):
        actions.append('another deploy or tool paused it, or one did not resume: once sure, RESUME on %s' % label)
    if hung:
        problems.append('a client query through %s got no answer within %s: its server login is still in flight '
                        '(SHOW POOLS sv_login), the server it points at does not answer' % (
                            ', '.join(hung), verdict['silent'][0][2].rsplit(' within ', 1)[-1]))
        actions.append('make that server answer, or fix the host/port of %s in the [databases] section of %s (and '
                       'RELOAD)' % (', '.join(hung), label))
    if missing_standby_entries:
        problems.append('no such entry for %s: %s' % (STANDBY_ENTRIES_VAR, ', '.join(missing_standby_entries)))
        actions.append('fix %s or the pgbouncer [databases] section' % STANDBY_ENTRIES_VAR)
    if problems:
        return finding('pgbouncer', FAIL, '%s: %s' % (label, '; '.join(problems)), host=label, evidence=evidence,
                       action='; '.join(actions))
    if disabled:
        fences = fences or {}
        fenced = [entry for entry in disabled if entry in fences]
        others = [entry for entry in disabled if entry not in fences]
        parts, actions = [], []
        if fenced:
            parts.append('fenced by an earlier deploy: %s' % ', '.join(
                '%s (deploy %s: %s lacked the schema)' % (e, fences[e]['deploy_id'], fences[e]['standby'])
                for e in fenced))
            actions.append('the deploy ENABLEs %s outside any PAUSE once %s replayed past %s (each fence\'s own '
                           'position); until then it stays disabled' % (
                               ', '.join(fenced), 'its standby has' if len(fenced) == 1 else 'their standby has',
                               ', '.join(sorted(set(fences[e]['lsn'] for e in fenced)))))
        if others:
            parts.append('disabled, not by a deploy (no fence recorded): %s' % ', '.join(others))
            actions.append('a window ENABLEs every entry it resumes, a run with nothing pending leaves %s disabled: '
                           'ENABLE on %s once sure' % (', '.join(others), label))
        evidence['fences'] = dict((e, fences[e]) for e in fenced)
        return finding('pgbouncer', WARN, '%s: %s' % (label, '; '.join(parts)), host=label, evidence=evidence,
                       action='; '.join(actions))
    if verdict['full']:
        return finding('pgbouncer', WARN, '%s: the client probe could not connect: %s; the outage cannot confirm '
                       'clients are served after RESUME' % (label, full_advice(verdict['full'])), host=label,
                       evidence=evidence, action=FULL_FIX.replace('there', 'on %s' % label, 1))
    if verdict['refused']:
        # Not paused: an error a client gets now (a server it cannot reach, a
        # failing login remembered for server_login_retry) - the deploy does not
        # make it worse, but the operator should know before the outage.
        refused = '; '.join('%s (%s)' % (item[1], item[2]) for item in verdict['refused'])
        return finding('pgbouncer', WARN, '%s: clients are refused now: %s' % (label, refused), host=label,
                       evidence=evidence,
                       action='check the server each of these entries points at, and the log of %s' % label)
    if verdict['unverified']:
        return finding('pgbouncer', WARN, '%s: the client probe could not log in (%s): a PAUSE from another tool '
                       'would go unseen, and the outage cannot confirm clients are served after RESUME'
                       % (label, verdict['unverified'][0][2]), host=label, evidence=evidence,
                       action='list the probe user in pgbouncer\'s auth_file or set fastdowntime_pgbouncer_probe_user '
                              '(and _probe_password) to a client login of the deploy entries')
    return finding('pgbouncer', PASS, '%s: admin console answers; entries %s, none paused%s'
                   % (label, ', '.join(entries), ', each answered a client' if probe else ''),
                   host=label, evidence=evidence)


def decide_pool_mode(label, modes, clients):
    """Entries in session pooling (``modes``: {entry: pool mode}, ``clients``:
    {entry: connected clients}). A PAUSE waits until every session client of
    an entry disconnects: with clients connected the drain cannot finish, and
    every client of every pgbouncer queues for the whole drain deadline -
    refused, whatever the drain policy (the terminate policy only ends
    transactions, not idle sessions). Without clients: a warning."""
    session = dict((entry, clients.get(entry, 0)) for entry, mode in sorted(modes.items()) if mode == 'session')
    evidence = {'pool_modes': dict(modes), 'clients': dict(clients)}
    busy = [(entry, count) for entry, count in session.items() if count]
    if busy:
        return finding('pool_mode', FAIL, '%s: %s in pool_mode = session with connected clients: a PAUSE waits for '
                       'each to disconnect, so the drain cannot finish and every client of every pgbouncer would '
                       'queue for the whole drain deadline' % (label, ', '.join('%s (%d client%s)' % (
                           e, n, '' if n == 1 else 's') for e, n in busy)), host=label, evidence=evidence,
                       action='set pool_mode = transaction for %s in the [databases] section (a user\'s pool: its '
                              '[users] line) of %s (and RELOAD), or stop its clients before the deploy'
                              % (', '.join(item[0] for item in busy), label))
    if session:
        return finding('pool_mode', WARN, '%s: %s in pool_mode = session (no client now): a client connecting '
                       'before the outage holds a server connection until it disconnects, and the drain waits for '
                       'it' % (label, ', '.join(session)), host=label, evidence=evidence,
                       action='prefer pool_mode = transaction for the deploy entries')
    return finding('pool_mode', PASS, '%s: %s' % (label, ', '.join('%s %s pooling' % (e, m) for e, m in
                                                                   sorted(modes.items()))),
                   host=label, evidence=evidence)


def decide_pgbouncer_processes(label, config, unix_socket_dir=None):
    """A pgbouncer with so_reuseport = 1 (``config``: its SHOW CONFIG): several
    processes may share its port, each console, PAUSE and client connection
    landing on one at random. Only a console declared for one process
    (``unix_socket_dir``, checked against that process's SHOW CONFIG when
    the console opened) can drain it."""
    evidence = {'so_reuseport': config.get('so_reuseport'), 'unix_socket_dir': config.get('unix_socket_dir'),
                'declared_unix_socket_dir': unix_socket_dir}
    if not reuses_port(config):
        return finding('pgbouncer_processes', PASS, '%s: so_reuseport off: one pgbouncer process on this port'
                       % label, host=label, evidence=evidence)
    if unix_socket_dir:
        return finding('pgbouncer_processes', PASS, '%s: so_reuseport process with unix_socket_dir %s, drained '
                       'through its own socket' % (label, unix_socket_dir), host=label, evidence=evidence)
    return finding('pgbouncer_processes', FAIL, '%s: so_reuseport = 1: several pgbouncer processes may share this '
                   'port, and each console, PAUSE and client connection lands on one of them at random - a drain '
                   'through it pauses one process and leaves the others serving' % label, host=label,
                   evidence=evidence,
                   action='declare every process of this host in fastdowntime_pgbouncer_consoles (its '
                          'unix_socket_dir, and host/port where the controller reaches that socket)')


# A server's connection slots: max_connections less the reserved ones (superuser, and PostgreSQL
# 16's reserved_connections) less the client backends open now.
CONNECTION_SLOTS_SQL = """SELECT current_setting('max_connections')::int AS max_connections,
       current_setting('superuser_reserved_connections')::int
         + COALESCE(NULLIF(current_setting('reserved_connections', true), '')::int, 0) AS reserved,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int AS used"""


def decide_connection_slots(label, row, logins, closing=0, relogins=0):
    """Room on one server for what follows RESUME.

    PAUSE closes each paused pool's server connections (pgbouncer):
    ``closing`` (int) is how many the deploy entries hold on this server now
    (SHOW SERVERS), slots the PAUSE frees. After RESUME pgbouncer logs in
    again for the clients it serves - ``relogins`` (int): per entry the
    fewer of its server connections and its connected clients, for an idle
    pool keeps connections a past peak opened - and the client probe once
    per entry: ``logins`` (int) is the number of deploy entries, over every
    pgbouncer, whose server this is. ``row``: CONNECTION_SLOTS_SQL's
    (max_connections, reserved, used) or None (not read). With fewer slots
    free after the PAUSE than those logins, a login gets "sorry, too many
    clients already", and pgbouncer then refuses that pool's clients for its
    server_login_retry (15 s by default): refused here, before any PAUSE.
    """
    if row is None or not logins:
        return finding('connection_slots', PASS, '%s: not needed (no pgbouncer entry on it)' % label
                       if not logins else '%s: connection slots not read' % label, host=label)
    free = row['max_connections'] - row['reserved'] - row['used']
    needed = logins + relogins
    evidence = dict(row, free=free, closed_by_pause=closing, logins_after_resume=needed, probe_logins=logins)
    if free + closing >= needed:
        return finding('connection_slots', PASS, '%s: %d connection slots free, %d more once the PAUSE closes the '
                       'deploy entries\' server connections; %d logins after RESUME'
                       % (label, max(free, 0), closing, needed), host=label, evidence=evidence)
    return finding('connection_slots', FAIL,
                   '%s: %d of max_connections %d free (%d in use, %d reserved), %d more once the PAUSE closes the '
                   'deploy entries\' server connections, but after RESUME pgbouncer logs in again for its clients '
                   '(%d) and the client probe through each of the %d entries on it: "too many clients" would make '
                   'pgbouncer refuse those clients for server_login_retry'
                   % (label, max(free, 0), row['max_connections'], row['used'], row['reserved'], closing, relogins,
                      logins),
                   host=label, evidence=evidence,
                   action='raise max_connections on %s (a restart; a standby needs it at least as high as its '
                          'primary) or close idle sessions, so that at least %d slots are free'
                          % (label, needed - closing))


# A password valid until less than this from the pre-flight (hot patches may run that long before the window)
# is refused as expiring.
LOGIN_EXPIRY_MARGIN_SECONDS = 3600


def decide_server_logins(label, pools, role_rows, database_rows, probe_logins=None):
    """pgbouncer's logins after RESUME on one server (logins.login_problems):
    ``pools``: the deploy entries' pools pointing at it (logins.pools_at_stake),
    ``role_rows``/``database_rows``: logins.LOGIN_ROLES_SQL/LOGIN_DATABASES_SQL
    rows, or None (not read). A finding: fail with every cause and fix in one
    line, before any PAUSE."""
    if not pools:
        return finding('server_logins', PASS, '%s: no pgbouncer server connection or client to log in again' % label,
                       host=label)
    if role_rows is None or database_rows is None:
        return finding('server_logins', WARN, '%s: the roles pgbouncer logs in as were not read' % label, host=label)
    problems = logins.login_problems(pools, role_rows, database_rows, probe_logins)
    users = sorted(set(p['user'] for p in pools))
    evidence = {'pools': pools}
    if not problems:
        return finding('server_logins', PASS, '%s: the roles pgbouncer logs in again as after RESUME (%s) can log in'
                       % (label, ', '.join(users)), host=label, evidence=evidence)
    return finding('server_logins', FAIL, '%s: %s' % (label, '; '.join(cause for cause, dummy in problems)),
                   host=label, evidence=evidence, action='; '.join(fix for dummy, fix in problems))


def decide_pgbouncer_timeouts(cap, budget, estimate=None, configs=None):
    """pgbouncer's own timeouts against the budget (a budget.Budget). ``cap``:
    pgbouncer_console.budget_cap (None: no timeout hits a queued client);
    ``estimate``: estimate_outage's dict (None: nothing to estimate).
    Fails when the cap leaves no budget or is below the estimate; warns
    when it shortens the budget."""
    budget_seconds = budget.seconds
    evidence = {'cap': cap, 'budget_seconds': budget_seconds,
                'timeouts': dict((label, timeouts(config)) for label, config in sorted((configs or {}).items()))}
    try:
        capped = budget.capped(cap)
    except BudgetExceeded:  # the cap leaves nothing
        capped = None
    if capped is budget:
        return finding('pgbouncer_timeouts', PASS, 'no pgbouncer disconnects a queued client within the %gs budget%s'
                       % (budget_seconds, ' (first: %(pgbouncer)s %(setting)s = %(timeout_seconds)gs)' % cap
                          if cap else ''), evidence=evidence)
    which = '%(pgbouncer)s: %(setting)s = %(timeout_seconds)g s' % cap
    total = (estimate or {}).get('total_ms')
    if capped is None or (total is not None and total / 1000.0 > capped.seconds):
        return finding('pgbouncer_timeouts', FAIL, '%s disconnects clients queued that long: the outage (%s) cannot '
                       'end before it' % (which, 'estimated %.3f s' % (total / 1000.0) if total is not None
                                          else 'any outage'), host=cap['pgbouncer'], evidence=evidence,
                       action='raise %s above %g s in the pgbouncer.ini of %s (and RELOAD)' % (
                           cap['setting'], math.ceil((total or 0) / 1000.0) + TIMEOUT_MARGIN_SECONDS + 1,
                           cap['pgbouncer']))
    return finding('pgbouncer_timeouts', WARN, '%s: the outage budget is capped at %g s (fastdowntime_budget_seconds '
                   '%g): a client queued longer would be disconnected by pgbouncer' % (which, cap['seconds'],
                                                                                       budget_seconds),
                   host=cap['pgbouncer'], evidence=evidence,
                   action='nothing if %g s is enough; else raise %s in the pgbouncer.ini of %s (and RELOAD)'
                          % (cap['seconds'], cap['setting'], cap['pgbouncer']))


def open_xact_seconds(activity_rows, server_pids):
    """How long the transactions on pgbouncer's server connections have been
    open now, in seconds: the oldest of the ``activity_rows`` (ACTIVITY_SQL,
    any host) whose pid is in ``server_pids`` (SHOW SERVERS remote_pid) and
    that are not idle; 0.0 when none is. At a random moment a transaction's
    time left has the same distribution as its age so far, so the oldest
    stands for how long a PAUSE now would wait."""
    return max([row.get('xact_seconds') or 0.0 for row in activity_rows
                if row.get('pid') in server_pids and row.get('state') != 'idle'] or [0.0])


def drain_xact_seconds(seconds, drain_policy, deadline_seconds):
    """The drain's wait for transactions in flight (``seconds``, open_xact_seconds
    or SHOW STATS), bounded by the drain policy: with 'terminate' the drain ends
    what still holds it at half its ``deadline_seconds``, so at most that."""
    return min(seconds, deadline_seconds / 2.0) if drain_policy == 'terminate' else seconds


def wal_tail_seconds(work_seconds, wal_writer_delay_seconds):
    """The primary's work whose WAL is still unsent at COMMIT, in seconds,
    expected: the WAL writer flushes every ``wal_writer_delay_seconds``, so
    the COMMIT comes a uniformly random time U after its last flush, and what
    was written since is min(``work_seconds``, U) of the work - replayed by the
    standbys about as fast as it was done. Its mean: d/2 for work of d or
    more, w - w^2/(2d) for less (0.0 without a delay)."""
    work, delay = max(work_seconds, 0.0), wal_writer_delay_seconds
    if delay <= 0:
        return 0.0
    return delay / 2.0 if work >= delay else work - work * work / (2.0 * delay)


# The drain's round trips: the PAUSEs, whose replies are the drain (docs/window.md). An entry someone else paused
# before the window is confirmed from SHOW DATABASES + SHOW SERVERS as well: the pgbouncer check refuses such an entry.
DRAIN_ROUND_TRIPS = 1


def entry_servers(servers_rows, entries):
    """{entry: its server connections now} on one pgbouncer (SHOW SERVERS
    rows), for each of ``entries``: one count for the estimate's closes
    (server_closes) and the logins after RESUME (connection_slots)."""
    return dict((entry, len(servers_of(servers_rows, [entry]))) for entry in entries)


def server_closes(held):
    """How many server connections a PAUSE of the entries closes on one
    pgbouncer (``held``: entry_servers' counts): each entry's now, and at
    least one - the pre-flight's own client probe logs in through every entry
    after this read, and pgbouncer keeps that server connection until the
    PAUSE closes it."""
    return sum(max(1, n) for n in held.values())


def backend_close_seconds(server_close_seconds, primary_rtt):
    """A backend's exit once closed, as the drain pays it per server
    connection a PAUSE closes (estimate_outage's ``close_seconds``), in
    seconds: lint.measure_cold_transaction times it from the controller
    (``server_close_seconds``: until the server closed its end), so each
    sample also holds the round trip of the Terminate and the server's close
    - one ``primary_rtt`` (seconds) less, never below 0 (pgbouncer is near
    its servers; with 40 ms between the controller and the hosts the drain's
    term was 4 x 44 ms against a 46 ms drain). None (not measured): 0."""
    return max((server_close_seconds or 0.0) - primary_rtt, 0.0)


def replay_conflict_seconds(findings):
    """The longest wait a replay_blockers warning announces for the outage's
    commit: a standby query older than the threshold (holding a lock a cold
    patch takes, where pg_locks was read) that replay waits for up to that
    standby's max_standby_*_delay - below the budget, so replay then cancels
    it (evidence ``replay_waits_up_to_ms``). Seconds; 0.0 when no warning
    says so. The estimate adds it to its replay term (try 9: a 2 s delay
    left out gave 33 ms estimated for a 2.03 s outage)."""
    waits = [(f.get('evidence') or {}).get('replay_waits_up_to_ms') or 0 for f in findings
             if f.get('check') == 'replay_blockers' and f.get('status') == WARN]
    return max([w for w in waits if w > 0] or [0]) / 1000.0


def estimate_outage(cold_patches, primary_rtt, standby_rtts, pgbouncer_rtts, replay_seconds, entries_per_pgbouncer,
                    statement_seconds=DEFAULT_STATEMENT_SECONDS, statement_costs=None, lint_estimate=None,
                    xact_seconds=0.0, transaction_seconds=None, wal_writer_delay_seconds=0.0, server_closes=0,
                    close_seconds=0.0, table_seconds=None):
    """The outage's expected length in seconds, per phase - a deliberately
    simple model built from what the pre-flight measured on the live cluster
    (round trips: RTT, the slowest host of each kind; the rest below), so it
    follows the machine's load:

    - drain: DRAIN_ROUND_TRIPS of the slowest pgbouncer (the PAUSEs; each
      measured as half a SHOW DATABASES + SHOW SERVERS exchange), plus
      ``xact_seconds``, how long the PAUSE is expected to wait for the
      transactions in flight through the pgbouncers now: the larger of what
      pgbouncer's averages say (pgbouncer_console.xact_wait_seconds) and the
      oldest transaction open on its server connections (open_xact_seconds);
      plus ``server_closes``, the most server connections one pgbouncer's
      PAUSEs close (server_closes; the pgbouncers pause at once), times
      ``close_seconds``, how long a backend of the primary took to exit once
      its client closed (backend_close_seconds): a PAUSE answers once the
      server has closed its end of each, at the end of the backend's exit;
      one pgbouncer's closes are counted one after the other, as they run
      where backends share cores (the lab, 2 cores for every host: 1 exit 2.0
      ms, 2 at once 2.2 ms, 4 at once 3.9 ms) - on hosts with cores to spare
      this errs high;
    - cold patches: the transaction's fixed cost, ``transaction_seconds``
      (its round trip, BEGIN, the lock step, a patch's reset and revision row
      and COMMIT, as a probe transaction took them on a fresh connection
      warmed as the window's is (schema.warm_session): lint.measure_cold_transaction; at least
      one RTT: it travels as one string, schema.ColdBatch, docs/window.md),
      plus per statement and per revision row the lint's estimate
      (``statement_costs``: (file, line) -> seconds of the statements on that
      line, from the live table sizes, lint.py) or at least ``statement_seconds`` (the pre-flight
      passes the probe's time per catalog statement when above its floor), a
      CREATE TABLE at least ``table_seconds`` (the probe's, lint.CREATES_TABLE);
    - standby replay: ``replay_seconds``, the slowest standby's wait as the
      window's replay wait would have made it for the lag probe
      (replication.measure_lag's replay_wait_seconds: every standby asked at
      once, its answer one round trip later - the round trip is in it, and
      it is counted once) plus the lint's replay, at least 1 RTT of the
      slowest standby (the window asks every standby at least once), plus
      the WAL tail of the statements priced per statement (not by the lint,
      which adds its own replay): the standbys replay while the primary
      works, but WAL written since the WAL writer's last flush reaches them
      at COMMIT (wal_tail_seconds, from ``wal_writer_delay_seconds``: the
      primary's wal_writer_delay);
    - resume: every entry's RESUME at once, SHOW POOLS beside them (1 RTT of
      the slowest pgbouncer).

    The same round trips as the window's (docs/window.md); ``entries_per_pgbouncer``
    no longer changes the estimate (the RESUMEs travel together).
    """
    statements = sum(len(p.statements) for p in cold_patches)
    pgbouncer_rtt = max(pgbouncer_rtts or [0.0])
    closing = server_closes * close_seconds
    drain = DRAIN_ROUND_TRIPS * pgbouncer_rtt + xact_seconds + closing if pgbouncer_rtts else 0.0
    costs = statement_costs or {}
    # A line's cost once, on its first statement (``statement_costs`` sums the statements of a line).
    priced, seen = [], set()
    for p in cold_patches:
        for s in p.statements:
            key = (p.name, s.line)
            cost = 0.0 if key in seen else costs.get(key, 0.0)
            if s.command in lint.CREATES_TABLE and table_seconds:
                cost += max(table_seconds, statement_seconds)
            priced.append(cost)
            seen.add(key)
    # Each patch's revision row is one more catalog-sized statement.
    plain = (sum(1 for cost in priced if cost <= statement_seconds) + len(cold_patches)) * statement_seconds
    server = plain + sum(cost for cost in priced if cost > statement_seconds)
    cold = max(primary_rtt, transaction_seconds or 0.0) + server
    tail = wal_tail_seconds(plain, wal_writer_delay_seconds)
    replay = (max([replay_seconds] + list(standby_rtts)) + tail) if standby_rtts else 0.0
    resume = pgbouncer_rtt if pgbouncer_rtts else 0.0
    phases = {'drain': drain, 'cold_patches': cold, 'standby_replay': replay, 'resume': resume}
    ms = dict((name + '_ms', round(value * 1000, 1)) for name, value in phases.items())
    ms['total_ms'] = round(sum(phases.values()) * 1000, 1)
    ms['statements'] = statements
    ms['patches'] = [p.name for p in cold_patches]
    ms['statement_seconds'] = statement_seconds
    ms['table_seconds'] = round(table_seconds, 6) if table_seconds is not None else None
    ms['xact_seconds'] = round(xact_seconds, 6)
    ms['transaction_seconds'] = round(transaction_seconds, 6) if transaction_seconds is not None else None
    ms['wal_tail_ms'] = round(tail * 1000, 1)
    ms['server_closes'] = server_closes
    ms['close_seconds'] = round(close_seconds, 6)
    if lint_estimate:
        ms['lint'] = dict(lint_estimate)
        ms['costliest'] = list(lint_estimate.get('costliest') or [])
        ms['unknown'] = list(lint_estimate.get('unknown') or [])
    return ms


def budget_cause(estimate):
    """(cause, fix) of an estimate over the budget, by its largest term: the
    phase (drain, cold patches, replay, resume) and, for the drain, whether
    the transactions open through pgbouncer (``xact_seconds``) or the server
    connections the PAUSEs close make it. One clause each, for decide_budget."""
    phases = [('drain', 'drain_ms'), ('cold patches', 'cold_patches_ms'), ('replay', 'standby_replay_ms'),
              ('resume', 'resume_ms')]
    phase, key = max(phases, key=lambda item: estimate.get(item[1]) or 0.0)
    ms = estimate.get(key) or 0.0
    raise_it = 'or raise fastdowntime_budget_seconds'
    if phase == 'drain':
        xact_ms = (estimate.get('xact_seconds') or 0.0) * 1000
        closes_ms = (estimate.get('server_closes') or 0) * (estimate.get('close_seconds') or 0.0) * 1000
        if xact_ms >= closes_ms:
            return ('the drain dominates: the PAUSE waits %.1f s for the transactions open through pgbouncer'
                    % (xact_ms / 1000),
                    'end the transactions open through pgbouncer (the blocking_sessions and transactions checks name '
                    'them) or deploy when they are short; fastdowntime_drain_policy: terminate ends them at half the '
                    "drain's deadline; %s" % raise_it)
        return ('the drain dominates: a pgbouncer\'s PAUSEs close %d server connections (%.1f ms each)'
                % (estimate.get('server_closes') or 0, (estimate.get('close_seconds') or 0.0) * 1000),
                "keep fewer idle server connections open (a shorter server_idle_timeout, a smaller min_pool_size) - "
                'not RECONNECT just before the deploy: it drops the server logins in flight, which pgbouncer takes for '
                'failed logins (its PR 420) and refuses those pools\' clients for server_login_retry %s' % raise_it)
    if phase == 'replay':
        return ('the standbys\' replay dominates (%.1f ms)' % ms,
                'deploy when the standbys keep up (the replication_lag and replay_blockers checks name the slowest) '
                '%s' % raise_it)
    if phase == 'resume':
        return ('the RESUME round trip dominates (%.1f ms)' % ms,
                'run the deploy from a host nearer the pgbouncers %s' % raise_it)
    costliest = estimate.get('costliest') or []
    return ('the cold patches dominate%s' % ('; costliest: %s' % ', '.join(costliest) if costliest else ''),
            'make the costliest statements cheap (see the lint findings: a hot patch, NOT VALID, a batched '
            'backfill), split the cold patches over several deploys, %s' % raise_it)


def decide_budget(estimate, budget, incomplete=None):
    """The estimate against the usable budget (a budget.Budget: the budget less
    the reserve the outage keeps for ROLLBACK and RESUME). Over it: a failure
    naming the estimate's largest term and its fix (budget_cause). The
    sessions ``fastdowntime_blocking_sessions: warn`` vouched for
    (estimate['vouched']) are named as left out of the drain."""
    budget_seconds, usable = budget.seconds, budget.usable
    evidence = dict(estimate or {}, budget_seconds=budget_seconds, usable_seconds=round(usable, 3))
    if estimate is None:
        return finding('budget', PASS, 'no cold patch pending: no outage needed', evidence=evidence)
    total = estimate['total_ms'] / 1000.0
    parts = 'drain %(drain_ms)s ms + cold patches %(cold_patches_ms)s ms + replay %(standby_replay_ms)s ms ' \
            '+ resume %(resume_ms)s ms' % estimate
    if estimate.get('vouched'):
        parts += '; the drain leaves out %s, which fastdowntime_blocking_sessions: warn vouches for' % ', '.join(
            estimate['vouched'])
    if total > usable:
        cause, fix = budget_cause(estimate)
        return finding('budget', FAIL, 'estimated outage %.3fs (%s) exceeds the usable budget %.3fs of %gs: %s'
                       % (total, parts, usable, budget_seconds, cause), evidence=evidence, action=fix)
    if estimate.get('unknown'):
        return finding('budget', WARN, 'estimated outage %.3fs (%s) within the usable budget %.3fs of %gs, plus '
                       'statements of unknown cost (they run code): %s'
                       % (total, parts, usable, budget_seconds, ', '.join(estimate['unknown'])),
                       evidence=evidence, action='the outage can be as long as the budget (then it is rolled back): '
                       'make sure those statements are quick, or run them outside the outage')
    if incomplete:
        return finding('budget', WARN, 'estimated outage %.3fs (%s) within %gs, but not measured on: %s'
                       % (total, parts, budget_seconds, ', '.join(incomplete)), evidence=evidence,
                       action='fix the connections above, then the estimate is complete')
    return finding('budget', PASS, 'estimated outage %.3fs (%s) within the usable budget %.3fs of %gs'
                   % (total, parts, usable, budget_seconds), evidence=evidence)


_LINT_STATUS = {lint.ERROR: FAIL, lint.WARNING: WARN, lint.INFO: PASS}


def decide_lint(label, item):
    """A lint finding (lint.lint_patches) as a pre-flight finding."""
    status = _LINT_STATUS[item['severity']]
    return finding('lint', status, item['summary'], host=label, evidence=item,
                   action=item['suggestion'] if status != PASS else None)


def sees_everything(privileges_row):
    """Can the deploy user see other users' sessions and the replication views?"""
    return bool(privileges_row.get('superuser') or privileges_row.get('pg_monitor'))


def not_checked(check, labels):
    return finding(check, WARN, 'not checked on %s: the deploy user cannot see other sessions or the replication '
                   'views there (see the privileges check)' % ', '.join(labels), host=labels[0] if len(labels) == 1
                   else None, action='give the deploy user the documented privileges')


def verdict(findings):
    """(passed, counts): passed unless any finding failed."""
    counts = {PASS: 0, WARN: 0, FAIL: 0}
    for item in findings:
        counts[item['status']] += 1
    return counts[FAIL] == 0, counts


def summary_lines(findings):
    """The readable summary: the verdict, then failures, warnings and passes,
    each failure or warning followed by what to do."""
    passed, counts = verdict(findings)
    order = dict((name, index) for index, name in enumerate(CHECKS))
    lines = ['pre-flight %s: %d failed, %d warnings, %d passed' % (
        'PASSED' if passed else 'REFUSED the deploy', counts[FAIL], counts[WARN], counts[PASS])]
    for status in (FAIL, WARN, PASS):
        for item in sorted((f for f in findings if f['status'] == status), key=lambda f: order.get(f['check'], 99)):
            # A lint finding that passes is the lint's INFO (as playbooks/lint.yml prints it).
            label = 'INFO' if status == PASS and item['check'] == 'lint' else status.upper()
            lines.append('%s %s: %s' % (label, item['check'], item['summary']))
            if item.get('action') and status != PASS:
                lines.append('    -> %s' % item['action'])
    return lines


# -- gathering -----------------------------------------------------------------

PRIVILEGES_SQL = """
SELECT current_user AS usename, r.rolsuper AS superuser, r.rolinherit AS inherit, pg_is_in_recovery() AS in_recovery,
       has_database_privilege(current_database(), 'CREATE') AS create_on_database,
       pg_has_role(current_user, 'pg_monitor', 'USAGE') AS pg_monitor,
       pg_has_role(current_user, 'pg_monitor', 'MEMBER') AS pg_monitor_member,
       pg_has_role(current_user, 'pg_signal_backend', 'USAGE') AS pg_signal_backend,
       pg_has_role(current_user, 'pg_signal_backend', 'MEMBER') AS pg_signal_backend_member,
       current_setting('default_transaction_read_only')::bool AS read_only,
       (SELECT source FROM pg_settings WHERE name = 'default_transaction_read_only') AS read_only_source
  FROM pg_roles r WHERE r.rolname = current_user
"""
# The relations of owned_relations (quoted names) and this collection's own tables (schema fastdowntime,
# the revision table: the window and the deploy log write and ALTER them) whose owner the deploy user has
# not the privileges of; ``target`` is the 0-based position in the names, NULL for an own table.
OWNERS_SQL = """
SELECT t.ord - 1 AS target, c.oid::regclass::text AS relation, pg_get_userbyid(c.relowner) AS owner,
       pg_has_role(current_user, c.relowner, 'MEMBER') AS member
  FROM unnest(%(names)s::text[]) WITH ORDINALITY AS t(name, ord)
  JOIN pg_class c ON c.oid = to_regclass(t.name)
 WHERE NOT pg_has_role(current_user, c.relowner, 'USAGE')
UNION ALL
SELECT NULL, c.oid::regclass::text, pg_get_userbyid(c.relowner), pg_has_role(current_user, c.relowner, 'MEMBER')
  FROM pg_class c
 WHERE (c.relnamespace = to_regnamespace('fastdowntime') AND c.relkind IN ('r', 'p')
        OR c.oid = to_regclass(%(revision_table)s))
   AND NOT pg_has_role(current_user, c.relowner, 'USAGE')
 ORDER BY 1 NULLS LAST, 2
"""
# The (relation, privilege, column) of privileged_relations the deploy user has neither as the owner (or
# with its privileges) nor granted (has_table_privilege, has_column_privilege - the column's privilege or
# the table's -, has_any_column_privilege: directly, through PUBLIC or a role it inherits from; a list of
# privileges is any one of them); ``target`` the 0-based position in the lists.
PRIVILEGED_SQL = """
SELECT t.ord - 1 AS target, c.oid::regclass::text AS relation, pg_get_userbyid(c.relowner) AS owner,
       pg_has_role(current_user, c.relowner, 'MEMBER') AS member
  FROM unnest(%(names)s::text[], %(privileges)s::text[], %(columns)s::text[])
       WITH ORDINALITY AS t(name, privilege, col, ord)
  JOIN pg_class c ON c.oid = to_regclass(t.name)
 WHERE NOT pg_has_role(current_user, c.relowner, 'USAGE') AND NOT CASE
         WHEN t.col IS NULL THEN has_table_privilege(c.oid, t.privilege)
         WHEN t.col = '*' THEN has_any_column_privilege(c.oid, t.privilege)
         WHEN EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = t.col AND a.attnum > 0
                                                   AND NOT a.attisdropped)
           THEN has_column_privilege(c.oid, t.col, t.privilege)
         ELSE has_table_privilege(c.oid, t.privilege) END   -- a column an earlier pending statement adds
 ORDER BY 1
"""
SYSTEM_ID_SQL = 'SELECT system_identifier::text AS system_identifier FROM pg_control_system()'
PREPARED_SQL = """
SELECT gid, owner, database, EXTRACT(EPOCH FROM now() - prepared)::float8 AS age_seconds FROM pg_prepared_xacts
"""
WAL_WRITER_DELAY_SQL = "SELECT setting::float8 / 1000 AS seconds FROM pg_settings WHERE name = 'wal_writer_delay'"
REPLICATION_USERS_SQL = 'SELECT rolname FROM pg_roles WHERE rolreplication AND NOT rolsuper'


def _round_trip(run):
    """The slowest of a few trivial round trips, in seconds."""
    samples = []
    for dummy in range(RTT_SAMPLES):
        began = time.monotonic()
        run()
        samples.append(time.monotonic() - began)
    return max(samples)


class Preflight:
    """Gather, decide, report. ``run()`` never raises for a cluster problem:
    every problem is a finding."""

    def __init__(self, primary, standbys, pgbouncers, db_name, patch_dir, budget_seconds=DEFAULT_BUDGET_SECONDS,
                 revision_table=None, drain_entries=None, reserve_seconds=DEFAULT_RESERVE_SECONDS,
                 max_lag_seconds=DEFAULT_MAX_LAG_SECONDS, max_lag_bytes=DEFAULT_MAX_LAG_BYTES,
                 max_transaction_seconds=DEFAULT_MAX_TRANSACTION_SECONDS, system_users=None,
                 fragile_users=None, killable_users=None, statement_seconds=DEFAULT_STATEMENT_SECONDS,
                 resume_paused_replay=True, resume_operator_replay_pause=False, lint_options=None, scan_bytes_per_second=None,
                 deploy_windows=None, window_override_reason=None, operator=None, now=None,
                 app_servers=None, app_health_key=lockstep.HEALTH_KEY, contract_acknowledge_reason=None,
                 drain_policy='abort', blocking_sessions='refuse', lock_retry=None):
        self.primary = dict(primary, dbname=db_name)
        self.standbys = [dict(s, dbname=db_name) for s in standbys]
        self.pgbouncers = with_probe_login(pgbouncers, primary)
        self.db_name = db_name
        self.patch_dir = patch_dir
        self.budget = Budget(budget_seconds, reserve_seconds)
        self.revision_table = revision_table
        self.drain_entries = list(drain_entries or [])
        self.max_lag_seconds = float(max_lag_seconds)
        self.max_lag_bytes = int(max_lag_bytes)
        self.max_transaction_seconds = float(max_transaction_seconds)
        self.system_users = None if system_users is None else set(system_users)
        self.fragile_users = set(fragile_users or [])
        self.killable_users = set(killable_users or [])
        self.statement_seconds = float(statement_seconds)
        self.resume_paused_replay = bool(resume_paused_replay)
        # An operator's replay pause (no marker) is resumed only when told to; PostgreSQL's never.
        self.resume_operator_replay_pause = bool(resume_operator_replay_pause)
        self.synchronous = None  # replication.describe_synchronous of the primary, once checked
        self.replay_resumed = []  # standbys whose paused replay this run resumed (its only change)
        self.fences = []  # replication.read_fences: entries an earlier window fenced
        self.findings = []
        self.conns = {}       # label -> connection (autocommit)
        self.lost = set()     # labels whose connection went away during the run (one finding each)
        self.consoles = []
        self.unreachable = set()   # (address, port) of each database the pre-flight could not connect to
        self.refused_logins = []   # (user, password) PostgreSQL refused
        self.pgbouncer_failed = set()  # names of the pgbouncer hosts with a console that failed
        self.pgbouncer_pids_of = {}  # pgbouncer host name -> its consoles' SHOW SERVERS remote_pid on the primary
        self.pgbouncer_pids = set()  # SHOW SERVERS remote_pid on the primary over every console
        # database host label -> {backend pid: pgbouncer host name}: each console's server
        # connections on the server they are to (sessions.server_pids_by_server).
        self.server_pids_on = {}
        self.clients_on = {}  # database host label -> {backend pid: its pgbouncer client's 'addr:port'}
        self._transaction_inputs = {}  # host label -> (activity rows, prepared rows, through, clients)
        self._required_cold = None  # the cold patches' ACCESS EXCLUSIVE locks (_standby_lock_holders)
        self._primary_conn = None
        self.unix_backends = []  # pgbouncer host names with an entry reaching the primary over a unix socket
        self.pgbouncer_configs = {}  # console label -> SHOW CONFIG
        self.xact_seconds = []  # per console: how long a PAUSE of its entries would wait now (SHOW STATS)
        self.server_closes = 0  # the most server connections one pgbouncer's PAUSEs would close (server_closes)
        # {(pgbouncer name, entry): (its server connections now, of them for connected clients)}
        self.entry_server_connections = {}
        self.pools_at_stake = []  # logins.pools_at_stake over every console
        self.activity = {}  # host label -> its pg_stat_activity rows (ACTIVITY_SQL), once read
        self.plan = None
        self.estimate = None
        self.lint_options = lint_options if lint_options is not None else lint.parse_options()
        self.scan_bytes_per_second = scan_bytes_per_second
        self.lint_findings = []
        self.lint_estimate = None
        # Parsed deploy windows (deploywindows.parse_windows), the override's reason and who gave it.
        self.deploy_windows = list(deploy_windows or [])
        self.window_override_reason = window_override_reason
        self.operator = operator
        self.now = now  # an aware datetime for tests; None: the clock
        self.overrides = []  # what an operator overrode, for the deploy log: [{'check', 'who', 'why', 'at', ...}]
        # App servers asked about a contract change: [{'name', 'health_url'}] (lockstep.py).
        self.app_servers = list(app_servers or [])
        self.app_health_key = app_health_key
        self.contract_acknowledge_reason = contract_acknowledge_reason
        self.drain_policy = drain_policy
        self.blocking_sessions = blocking_sessions
        # The deploy's own lock retries (schema_apply_lock_retry): how long its hot phase waits for a lock.
        self.lock_retry = LockRetry.from_value(lock_retry)

    # -- plumbing --------------------------------------------------------------
    def _connect(self, endpoint):
        label = endpoint_label(endpoint)
        try:
            # The sessions' own settings as a client gets them (the synchronous set-up).
            conn = connect(endpoint, autocommit=True, application_name='fastdowntime-preflight', local_commits=False)
        except ConnectError as exc:
            self.findings.append(decide_connection(label, exc))
            port = int(endpoint.get('port') or 5432)
            self.unreachable |= set((address, port) for address in addresses(endpoint.get('host')))
            if exc.kind == 'authentication':
                self.refused_logins.append((endpoint.get('user'), endpoint.get('password')))
            return None
        self.findings.append(decide_connection(label, None))
        self.conns[label] = conn
        return conn

    def _query(self, conn, sql, params=None, label='?', check='?'):
        """Rows, or None after recording a failed finding for ``check`` (or,
        the connection lost, one for the host: _lost)."""
        if conn is None or label in self.lost:
            return None
        try:
            return query(conn, sql, params)
        except psycopg2.Error as exc:
            if self._lost(conn, label, exc):
                return None
            self.findings.append(finding(check, FAIL, '%s: %s' % (label, one_line(exc.pgerror or exc)), host=label,
                                         action='give the deploy user the documented privileges (see the '
                                                'privileges check) and run the pre-flight again'))
            return None

    def _lost(self, conn, label, exc):
        """True when ``exc`` means the connection to ``label`` is gone (the server
        stopped, the backend was terminated, the network cut): one finding naming
        the host, once; its later checks are skipped, never crash."""
        if not conn.closed and not isinstance(exc, psycopg2.InterfaceError):
            return False
        if label not in self.lost:
            self.lost.add(label)
            self.findings.append(finding('connection', FAIL, '%s: connection lost during the pre-flight: %s'
                                         % (label, one_line(exc.pgerror or exc)), host=label,
                                         action='check that %s is running (its log says why it went away), then '
                                                'run the pre-flight again' % label))
        return True

    def close(self):
        for conn in self.conns.values():
            try:
                conn.close()
            except Exception:  # closing is best effort
                pass
        self.conns = {}
        for console in self.consoles:
            console.close()

    # -- the run -------------------------------------------------------------------
    def run(self):
        began = time.monotonic()
        started_at = time.time()
        try:
            self._run_checks()
        finally:
            self.close()
        passed, counts = verdict(self.findings)
        lines = summary_lines(self.findings)
        failing = [f for f in self.findings if f['status'] == FAIL]
        phase = timed_phase_record(
            'preflight', host=endpoint_label(self.primary), started_at=started_at,
            ended_at=started_at + time.monotonic() - began, status='ok' if passed else 'failed',
            detail={'counts': counts, 'estimate_ms': (self.estimate or {}).get('total_ms')},
            error='; '.join('%s: %s' % (f['check'], f['summary']) for f in failing) if not passed else None)
        return {
            'changed': bool(self.replay_resumed),
            'replay_resumed': list(self.replay_resumed),
            'passed': passed,
            'outcome': outcomes.PASSED if passed else outcomes.REFUSED_BY_PREFLIGHT,
            'counts': counts,
            'checks': self.findings,
            'failed_checks': sorted(set(f['check'] for f in failing), key=CHECKS.index),
            'summary': '\n'.join(lines),
            'summary_lines': lines,
            'estimate': self.estimate,
            'plan': self.plan.as_dict() if self.plan is not None else None,
            'lint': self.lint_findings,
            'phases': [phase],
            'overrides': list(self.overrides),
        }

    def _run_checks(self):
        primary_label = endpoint_label(self.primary)
        primary = self._primary_conn = self._connect(self.primary)
        standbys = [(s, self._connect(s)) for s in self.standbys]
        missing = [f for f in self.findings
                   if f['check'] == 'connection' and (f.get('evidence') or {}).get('kind') == 'database']
        if primary is None and missing and missing[0]['host'] == primary_label:
            # A wrong fastdowntime_db_name: one line, not one per host and per pgbouncer.
            self.findings = [f for f in self.findings if f not in missing]
            self.findings.append(decide_missing_database(self.db_name, [f['host'] for f in missing]))
            return
        versions = [decide_server_version(endpoint_label(e), c.server_version)
                    for e, c in [(self.primary, primary)] + standbys if c is not None]
        self.findings.extend(versions)
        if any(f['status'] == FAIL for f in versions):
            return  # the other checks' queries may not exist there: the version is the one reason

        # privileges, and what the standbys check needs from each host
        primary_info = self._host_info(primary, primary_label, is_primary=True) if primary else None
        standby_infos = []
        for endpoint, conn in standbys:
            label = endpoint_label(endpoint)
            info = self._host_info(conn, label, is_primary=False) if conn else None
            standby_infos.append(dict(info or {}, endpoint=endpoint, label=label, reachable=info is not None))

        self._check_patches(primary, primary_label)
        self._check_patch_settings(primary, primary_label)
        self._check_patch_roles(primary, primary_label)
        self._check_patch_extensions(primary, primary_label)
        self._check_patch_objects(primary, primary_label)
        if primary_info and not primary_info.get('superuser') and self.plan is not None:
            self._check_ownership(primary, primary_label, primary_info)
        self._check_lint(primary, primary_label)
        blind = [info['label'] for info in [primary_info] + standby_infos
                 if info and info.get('reachable', True) and not sees_everything(info)]
        if blind:
            # Without pg_monitor, other users' sessions and the replication
            # views show NULLs: a pass would be a guess, a failure a false alarm.
            self.findings.append(not_checked('standbys', blind))
        else:
            self.findings.append(self._check_standbys(primary, primary_info, standbys, standby_infos))

        paused = self._check_replay(primary, standbys)
        # What may hold each standby's replay (replay_blockers), read once, before the lag probe.
        conflicts = dict((endpoint_label(e), (self._query(c, replication.REPLAY_CONFLICT_SQL, label=endpoint_label(e),
                                                          check='replay_blockers') or [None])[0])
                         for e, c in standbys if c is not None)
        # A standby whose replay stays paused, replays every commit later than the budget
        # (recovery_min_apply_delay) or is held by a query now cannot replay the probe in
        # time: do not wait max_lag_seconds for it (replay_blockers names why).
        late = set(label for label, row in conflicts.items() if replication.replay_stuck(row, self.budget.seconds))
        # Nor for one whose WAL receiver is not streaming (the standbys check names it and why): it gets
        # no new WAL, so the probe would only wait max_lag_seconds and the estimate blame the patches.
        late |= set(info['label'] for info in standby_infos
                    if info.get('reachable') and (info.get('receiver') or {}).get('status') != 'streaming')
        lag = self._measure_lag(primary, primary_label, [(e, c) for e, c in standbys
                                                         if endpoint_label(e) not in paused | late]) if primary else []
        self.findings.extend(decide_lag(lag, self.max_lag_seconds, self.max_lag_bytes))

        # pgbouncer first: its SHOW SERVERS before and after the activity read
        # name every server connection the activity shows (sessions.server_pids).
        self.fences = self._fences(primary)
        pgbouncer_rtts, entries_counts = self._check_pgbouncers()
        activity = self.activity
        for endpoint, conn in [(self.primary, primary)] + standbys:
            if conn is None:
                continue
            label = endpoint_label(endpoint)
            if label in blind:
                self.findings.append(not_checked('transactions', [label]))
                continue
            rows = self._query(conn, ACTIVITY_SQL, label=label, check='transactions')
            prepared = self._query(conn, PREPARED_SQL, label=label, check='transactions') \
                if conn is primary else []
            if rows is None or prepared is None:
                continue
            activity[label] = rows
            through, clients = self.server_pids_on.get(label), self.clients_on.get(label)
            self._transaction_inputs[label] = (rows, prepared, through, clients)
            conflict = conflicts.get(label) if conn is not primary else None
            if conflict:
                self.findings.extend(decide_standby_sessions(
                    label, rows, conflict, self.max_transaction_seconds, self.budget.seconds, through=through,
                    clients=clients, lock_holders=self._standby_lock_holders(conn, label, conflict)))
            else:
                self.findings.append(decide_transactions(label, rows, prepared, self.max_transaction_seconds,
                                                         through=through, clients=clients))
            if conn is not primary:
                counts = self._query(conn, replication.RECOVERY_CONFLICTS_SQL, label=label,
                                     check='recovery_conflicts')
                if counts is not None:
                    self.findings.append(decide_recovery_conflicts(label, (counts or [None])[0], conflict))

        self._check_connection_slots([(self.primary, primary)] + standbys)

        if primary_label in blind:
            self.findings.append(not_checked('direct_connections', [primary_label]))
        elif primary is not None and primary_label in activity:
            self._check_direct_connections(primary, primary_label, activity[primary_label])
        if primary_label in blind:
            self.findings.append(not_checked('blocking_sessions', [primary_label]))
        elif primary is not None and primary_label in activity and self.plan is not None:
            self._check_blocking_sessions(primary, primary_label, activity[primary_label])
        if primary_label in blind:
            self.findings.append(not_checked('hot_patch_waits', [primary_label]))
        elif primary is not None and primary_label in activity and self.plan is not None:
            self._check_hot_patch_waits(primary, primary_label, activity[primary_label])
        for endpoint, conn in standbys:  # the read entries are drained too
            label = endpoint_label(endpoint)
            if label in blind:
                self.findings.append(not_checked('blocking_sessions', [label]))
            elif conn is not None and label in activity and self.plan is not None:
                self._check_read_drain(label, activity[label])

        self._check_budget(primary, primary_label, standbys, lag, pgbouncer_rtts, entries_counts)
        self._check_deploy_window()
        self._one_line_per_session()

    def _one_line_per_session(self):
        """A session another finding of its host names (a client holding the
        drain, a reader holding replay) is left out of that host's transactions
        finding, which says where it is named (sessions_named_elsewhere)."""
        for index, found in enumerate(self.findings):
            if found['check'] != 'transactions' or found.get('host') not in self._transaction_inputs:
                continue
            rows, prepared, through, clients = self._transaction_inputs[found['host']]
            # From every session it would name (decide_standby_sessions may have left some out already).
            named = sessions_named_elsewhere(self.findings, decide_transactions(
                found['host'], rows, prepared, self.max_transaction_seconds, through=through, clients=clients))
            if not named:
                continue
            again = decide_transactions(found['host'], [r for r in rows if r.get('pid') not in named], prepared,
                                        self.max_transaction_seconds, through=through, clients=clients)
            again['summary'] += elsewhere_note(named)
            self.findings[index] = again

    def _check_deploy_window(self):
        """Is now inside a deploy window? Refuses an outage outside every one
        unless overridden with a reason (kept in self.overrides). With the plan
        unknown an outage is assumed pending."""
        now = self.now or datetime.datetime.now(datetime.timezone.utc)
        pending = self.plan is None or bool(self.plan.pending_cold)
        status, summary, evidence, action, override = deploywindows.decide(
            self.deploy_windows, now, pending, self.window_override_reason, self.operator)
        if override:
            self.overrides.append(override)
        self.findings.append(finding('deploy_window', status, summary, evidence=evidence, action=action))

    def _check_standbys(self, primary, primary_info, standbys, standby_infos):
        """Gather what replication.py matches standbys with, then decide_standbys."""
        if primary is None:
            return decide_standbys(None, standby_infos, {})
        primary_label = primary_info['label'] if primary_info else endpoint_label(self.primary)
        rows_by_upstream, servers = {}, []
        for endpoint, conn in [(self.primary, primary)] + standbys:
            label = endpoint_label(endpoint)
            servers.append({'label': label, 'addresses': resolve_addresses([endpoint['host']]),
                            'port': endpoint.get('port') or 5432})
            if conn is not None:
                rows = self._query(conn, replication.WALSENDERS_SQL, label=label, check='standbys')
                if rows is None:
                    return not_checked('standbys', [label])
                if rows or conn is primary:
                    rows_by_upstream[label] = rows
        synchronous = replication.describe_synchronous(
            (self._query(primary, replication.SYNCHRONOUS_SQL, label=primary_label, check='standbys') or [{}])[0],
            {replication.PRIMARY: rows_by_upstream.get(primary_label, [])})
        self.synchronous = synchronous
        for info, server in zip(standby_infos, servers[1:]):
            receiver = info.get('receiver') or {}
            if receiver.get('sender_host'):
                receiver['sender_addresses'] = resolve_addresses([receiver['sender_host']])
            info.update(addresses=server['addresses'], override=info['endpoint'].get('standby_application_name'),
                        upstream=replication.locate_upstream(receiver, servers) if receiver else None)
            if not receiver.get('sender_host') and info.get('configured'):
                configured = dict(info['configured'],
                                  sender_addresses=resolve_addresses([info['configured']['sender_host']]))
                info['configured_upstream'] = replication.locate_upstream(configured, servers)
        return decide_standbys(primary_info, standby_infos, rows_by_upstream, synchronous)

    def _pause_facts(self, primary):
        """The primary's pause markers and hot-standby settings ({}, {} when unknown)."""
        if primary is None:
            return {}, {}
        label = endpoint_label(self.primary)
        try:
            marks = replication.read_pauses(primary)
        except psycopg2.Error as exc:
            if self._lost(primary, label, exc):
                return {}, {}
            self.findings.append(finding('replay_paused', FAIL, '%s: cannot read %s: %s' % (
                label, replication.PAUSE_MARKER_TABLE, one_line(exc.pgerror or exc)), host=label,
                action='give the deploy user read access to %s' % replication.PAUSE_MARKER_TABLE))
            marks = {}
        settings = self._query(primary, replication.SETTINGS_SQL, label=label, check='replay_paused') or []
        return marks, dict((r['name'], r['value']) for r in settings)

    def _check_replay(self, primary, standbys):
        """Find replay paused; resume it only where a split window of this
        collection left it (its marker on the primary), never a pause
        PostgreSQL made (settings below the primary's: the standby would shut
        down) or an operator made. Returns the labels whose replay stays paused."""
        still_paused = set()
        marks, primary_settings = None, None
        for endpoint, conn in standbys:
            if conn is None:
                continue
            label = endpoint_label(endpoint)
            rows = self._query(conn, pgversion.replay_pause_state_sql(conn.server_version), label=label,
                               check='replay_paused')
            if not rows:
                continue
            state = rows[0]['state']
            if state == 'not paused':
                self.findings.append(decide_replay(label, state))
                continue
            if marks is None:
                marks, primary_settings = self._pause_facts(primary)
            standby_settings = dict((r['name'], r['value']) for r in (
                self._query(conn, replication.SETTINGS_SQL, label=label, check='replay_paused') or []))
            target = replication.recovery_target(dict((r['name'], r['setting']) for r in (
                self._query(conn, replication.RECOVERY_TARGET_SQL, label=label, check='replay_paused') or [])))
            below = replication.settings_below(standby_settings, primary_settings)
            cause = replication.pause_cause(state, replication.marker_key(endpoint) in marks, below, target)
            resumed, error = False, None
            if replication.may_resume(cause, self.resume_paused_replay, self.resume_operator_replay_pause):
                try:
                    query(conn, 'SELECT pg_wal_replay_resume()')
                    resumed = True
                    self.replay_resumed.append(label)
                    if primary is not None:
                        replication.clear_pauses(primary, [replication.marker_key(endpoint)])
                except psycopg2.Error as exc:
                    error = one_line(exc.pgerror or exc)
                    self._lost(conn, label, exc)
            if not resumed:
                still_paused.add(label)
            self.findings.append(decide_replay(label, state, resumed, error, cause, below, target))
        return still_paused

    def _host_info(self, conn, label, is_primary):
        rows = self._query(conn, PRIVILEGES_SQL, label=label, check='privileges')
        if not rows:
            return None
        info = dict(rows[0], label=label)
        self.findings.append(decide_privileges(label, info, is_primary, self.db_name, conn.server_version))
        read_only = decide_read_only(label, info, self.db_name) if is_primary else None
        if read_only:
            self.findings.append(read_only)
        try:
            info['system_identifier'] = query(conn, SYSTEM_ID_SQL)[0]['system_identifier']
        except psycopg2.Error:  # pg_control_system() needs pg_monitor; the privileges check says so
            info['system_identifier'] = None
        if not is_primary:
            info['receiver'] = (self._query(conn, replication.RECEIVER_SQL, label=label, check='standbys') or [{}])[0]
            if info['receiver'].get('status') != 'streaming':
                try:  # where it should stream from: its upstream may be the one that is down
                    rows = query(conn, replication.CONFIGURED_UPSTREAM_SQL)
                    info['configured'] = replication.configured_sender((rows or [{}])[0].get('primary_conninfo'))
                except psycopg2.Error:
                    info['configured'] = None
        return info

    def _check_ownership(self, primary, label, info):
        """The relations the pending patches change, and this collection's own tables, that the deploy
        user (not a superuser) may not change: decide_ownership; the privileges it lacks on tables it
        does not own: decide_table_privileges."""
        plan = self.plan
        targets = owned_relations(plan.pending_hot + plan.pending_cold + plan.post_window_hot)
        rows = self._query(primary, OWNERS_SQL, {'names': [t['relation'] for t in targets],
                                                 'revision_table': self.revision_table or DEFAULT_REVISION_TABLE},
                           label=label, check='privileges')
        not_owned = [dict(targets[r['target']], relation=r['relation'], owner=r['owner'], member=r['member'])
                     if r['target'] is not None else dict(r) for r in rows or ()]
        self.findings.extend(decide_ownership(label, info, not_owned, primary.server_version))
        # What a non-owner needs granted: the data changes' privileges, a GRANT's or REVOKE's grant option.
        wanted = privileged_relations(plan.pending_hot + plan.pending_cold + plan.post_window_hot,
                                      primary.server_version)
        rows = self._query(primary, PRIVILEGED_SQL, {'names': [w['relation'] for w in wanted],
                                                     'privileges': [w['privilege'] for w in wanted],
                                                     'columns': [w['column'] for w in wanted]},
                           label=label, check='privileges') if wanted else []
        self.findings.extend(decide_table_privileges(label, info, [
            dict(wanted[r['target']], relation=r['relation'], owner=r['owner'], member=r['member'])
            for r in rows or ()]))
        # CREATE on the schemas new objects go in, USAGE on those of the names looked up.
        uses = objects.schema_privileges(sorted(plan.pending, key=lambda p: p.revision))
        rows = self._query(primary, objects.SCHEMA_PRIVILEGES_SQL, {'schemas': [u[2] for u in uses],
                                                                    'privileges': [u[3] for u in uses]},
                           label=label, check='privileges') if uses else []
        self.findings.extend(decide_schema_privileges(label, info, [
            (uses[r['target']][0].name, uses[r['target']][1].line, ' '.join(uses[r['target']][1].sql.split()[:3]),
             r['schema'], r['owner'], uses[r['target']][3]) for r in rows or ()]))

    def _check_patches(self, primary, label):
        try:
            patch_set = load_patch_set(self.patch_dir)
        except PatchSetError as exc:
            self.findings.extend(decide_patch_files(label, error=exc))
            return
        self.findings.extend(decide_patch_files(label, ignored_sql=ignored_sql_files(patch_set)))
        if primary is None:
            self.findings.append(finding('patches', WARN, 'patch set read (%d patches), but the primary was not '
                                         'reached: pending patches and drift not checked' % len(patch_set.patches),
                                         host=label, action='fix the connection to the primary first'))
            return
        kwargs = {'revision_table': self.revision_table} if self.revision_table else {}
        try:
            applied = applied_revisions(primary, **kwargs)
        except (SchemaError, psycopg2.Error) as exc:
            self.findings.append(decide_patches(label, error='%s: cannot read the applied revisions: %s'
                                                % (label, one_line(exc))))
            return
        self.plan = make_plan(patch_set, applied, revision_table=self.revision_table,
                              procedure_source=procedure_source(primary))
        self.findings.append(decide_patches(label, self.plan))

    def _check_patch_settings(self, primary, label):
        """Every SET / RESET / set_config() of a constant in the pending patches
        (patchset.setting_statements), tried on the primary in one transaction that
        is rolled back - each patch's in a savepoint of its own, each statement in
        one, in order, as the window runs them: a setting the server does not know,
        a value it refuses, one the deploy user may not set fails here
        (decide_patch_settings), never inside the window."""
        if primary is None or self.plan is None or label in self.lost:
            return
        pending = sorted(self.plan.pending, key=lambda p: p.revision)
        settings = setting_statements(pending)
        if not settings:
            self.findings.extend(decide_patch_settings(label, []))
            return
        failures, earlier = [], []
        try:
            with primary.cursor() as cur:
                cur.execute('BEGIN')
                try:
                    cur.execute("SET LOCAL statement_timeout = '5s'; SET LOCAL lock_timeout = '1s'")
                    for patch in pending:
                        cur.execute('SAVEPOINT fastdowntime_patch')
                        for owner, statement in settings:
                            if owner is not patch:
                                continue
                            cur.execute('SAVEPOINT fastdowntime_setting')
                            try:
                                cur.execute(statement.sql)
                                cur.execute('RELEASE SAVEPOINT fastdowntime_setting')
                            except psycopg2.Error as exc:
                                if primary.closed:
                                    raise
                                cur.execute('ROLLBACK TO SAVEPOINT fastdowntime_setting')
                                failures.append(self._setting_failure(patch, statement, exc, earlier))
                        cur.execute('ROLLBACK TO SAVEPOINT fastdowntime_patch')
                        earlier.extend(s.sql for s in patch.statements)
                finally:
                    if not primary.closed:
                        cur.execute('ROLLBACK')
        except psycopg2.Error as exc:
            if not self._lost(primary, label, exc):
                self.findings.append(finding('patch_settings', WARN, '%s: the patches\' settings were not tried: %s'
                                             % (label, one_line(exc.pgerror or exc)), host=label,
                                             action='the window may still fail on a setting: check the SET lines'))
            return
        self.findings.extend(decide_patch_settings(label, failures, tried=len(settings)))

    def _check_patch_roles(self, primary, label):
        """decide_patch_roles: every role the pending patches name (patchset.named_roles) looked up in the
        primary's pg_roles."""
        if primary is None or self.plan is None or label in self.lost:
            return
        named = named_roles(sorted(self.plan.pending, key=lambda p: p.revision))
        if not named:
            self.findings.extend(decide_patch_roles(label, []))
            return
        rows = self._query(primary, 'SELECT rolname FROM pg_roles WHERE rolname = ANY(%(names)s)',
                           {'names': sorted(set(role for dummy, dummy2, role in named))}, label=label,
                           check='patch_roles')
        if rows is None:
            return
        known = set(row['rolname'] for row in rows)
        missing = [(patch.name, statement.line, role) for patch, statement, role in named if role not in known]
        self.findings.extend(decide_patch_roles(label, missing, named=len(set(role for dummy, dummy2, role in named))))

    def _check_patch_extensions(self, primary, label):
        """decide_patch_extensions: every CREATE EXTENSION of the pending patches looked up in the
        primary's pg_available_extension_versions (an IF NOT EXISTS of one already installed passes)."""
        if primary is None or self.plan is None or label in self.lost:
            return
        created = created_extensions(sorted(self.plan.pending, key=lambda p: p.revision))
        if not created:
            self.findings.extend(decide_patch_extensions(label, []))
            return
        rows = self._query(primary, 'SELECT name, array_agg(version::text ORDER BY version) AS versions, '
                                    'bool_or(installed) AS installed FROM pg_available_extension_versions '
                                    'WHERE name = ANY(%(names)s) GROUP BY name',
                           {'names': sorted(set(c[2] for c in created))}, label=label, check='patch_extensions')
        if rows is None:
            return
        by_name = dict((row['name'], row) for row in rows)
        missing = []
        for patch, statement, extension, version in created:
            row = by_name.get(extension)
            if row is None:
                missing.append((patch.name, statement.line, extension, version, []))
            elif version is not None and version not in row['versions'] and \
                    not (statement.node.if_not_exists and row['installed']):
                missing.append((patch.name, statement.line, extension, version, list(row['versions'])))
        self.findings.extend(decide_patch_extensions(label, missing, created=len(created)))

    def _check_patch_objects(self, primary, label):
        """decide_patch_objects: every name the pending patches need or create (objects.pending_lookups)
        looked up in the primary's catalog in one read (objects.OBJECTS_SQL: to_reg* functions and
        catalogs, no lock), and every setval() of an existing sequence."""
        if primary is None or self.plan is None or label in self.lost:
            return
        pending = sorted(self.plan.pending, key=lambda p: p.revision)
        lookups = objects.pending_lookups(pending)
        setvals = objects.setval_sequences(pending)
        rows = objects.probe_rows(lookups) + [objects.probe_row(objects.RELATION, key) for dummy, dummy2, key
                                              in setvals]
        rows = list(dict.fromkeys(rows))
        answers = self._query(primary, objects.OBJECTS_SQL, objects.probe_params(rows), label=label,
                              check='patch_objects') if rows else []
        if answers is None:
            return
        found = dict((rows[a['target']], a['found']) for a in answers)
        existing = [(patch.name, statement.line, '.'.join(k for k in key if k)) for patch, statement, key in setvals
                    if found.get(objects.probe_row(objects.RELATION, key))]
        self.findings.extend(decide_patch_objects(label, objects.failures(lookups, found), looked_up=len(rows),
                                                  setvals=existing))

    @staticmethod
    def _setting_failure(patch, statement, exc, earlier):
        diag = getattr(exc, 'diag', None)
        message = one_line((diag.message_primary if diag is not None and diag.message_primary else None)
                           or exc.pgerror or exc)
        node = statement.node
        values = [getattr(getattr(arg, 'val', None), 'sval', None) for arg in getattr(node, 'args', None) or ()]
        # The value names something an earlier statement of this deploy creates (SET ROLE to a role
        # CREATE ROLE makes): only the window, after that statement, can tell.
        before = earlier + [s.sql for s in patch.statements[:patch.statements.index(statement)]]
        created = next((v for v in values if v and any(
            re.search(r'\bCREATE\b[^;]*?\b%s\b' % re.escape(v), sql, re.I | re.S) for sql in before)), None)
        return {'file': patch.name, 'line': statement.line, 'sql': statement.sql,
                'code': getattr(exc, 'pgcode', None) or '?', 'message': message, 'created_earlier': created}

    def _check_lint(self, primary, label):
        """One finding per pending statement (lint.py): error fails, warning
        warns, info passes; its cost goes into the budget estimate."""
        if primary is None or self.plan is None or not self.plan.pending:
            return
        pending = sorted(self.plan.pending, key=lambda p: p.revision)
        try:
            found, self.lint_estimate, dummy = lint.lint_live(primary, pending, self.lint_options,
                                                              self.scan_bytes_per_second)
        except psycopg2.Error as exc:
            self.findings.append(finding('lint', WARN, '%s: the patches were not priced: %s'
                                         % (label, one_line(exc.pgerror or exc)), host=label,
                                         action='give the deploy user read access to the tables the patches touch'))
            return
        found = self._contract_after_disuse(found)
        self.lint_findings = found
        for item in found:
            self.findings.append(decide_lint(label, item))

    def _contract_after_disuse(self, found):
        """Lockstep's second half: a contract finding (DROP COLUMN/TABLE, RENAME)
        passes when every app server's running code reports it no longer uses
        the object (lockstep.decide_contract, asked once per run), else stays an
        error saying who still uses it or reports nothing. An acknowledged one
        is the operator's override, recorded (who, why) for the deploy log."""
        reports = None
        checked = []
        for item in found:
            if item['kind'] != lint.CONTRACT:
                checked.append(item)
                continue
            obj = lockstep.contract_object(item)
            if item['acknowledged']:
                self.overrides.append({
                    'check': 'contract', 'who': self.operator or 'unknown',
                    'why': ' '.join(str(self.contract_acknowledge_reason or '').split())
                    or 'acknowledged in fastdowntime_lint_acknowledge_contract, no reason given',
                    'at': (self.now or datetime.datetime.now(datetime.timezone.utc)).isoformat(),
                    'patch': '%s:%d' % (item['file'], item['line']),
                    'object': lockstep.object_text(obj) if obj else None})
                checked.append(item)
                continue
            if reports is None:
                reports = [dict(zip(('manifest', 'error'), lockstep.fetch_running_manifest(
                    app.get('health_url'), self.app_health_key)), name=app['name']) for app in self.app_servers]
            disused, text = lockstep.decide_contract(item, reports)
            item = dict(item, summary='%s; %s' % (item['summary'], text), lockstep_disused=disused)
            if disused:
                item['severity'] = lint.INFO
            checked.append(item)
        return checked

    def _measure_lag(self, primary, primary_label, standbys):
        """Write a probe to the WAL, then poll every standby reached until it
        has replayed it (or max_lag_seconds pass)."""
        reachable = [(endpoint_label(e), c) for e, c in standbys
                     if c is not None and endpoint_label(e) not in self.lost]
        if not reachable:
            return []
        probe = self._query(primary, replication.LAG_PROBE_SQL, label=primary_label, check='replication_lag')
        if not probe:
            return []
        # A connection lost on the way is the connection finding's, not a lag measurement.
        return replication.measure_lag(reachable, probe[0]['lsn'], self.max_lag_seconds,
                                       lost=lambda label, conn, exc: self._lost(conn, label, exc))

    def _fences(self, primary):
        """The entries an earlier window fenced (replication.read_fences); none when unreadable."""
        if primary is None:
            return []
        try:
            return replication.read_fences(primary)
        except psycopg2.Error:
            return []

    def _check_pgbouncers(self):
        rtts, entries_counts = [], []
        mapping = standby_entries_by_pgbouncer(self.standbys, [p.get('name') for p in self.pgbouncers])
        seen = []
        for endpoint in self.pgbouncers:
            label = endpoint_label(endpoint)
            console = Console(endpoint, db_name=self.db_name, databases=self.drain_entries)
            self.consoles.append(console)
            try:
                console.open()
                databases = console.show('DATABASES')
                known = set(row.get('name') for row in databases)
                wanted = [entry for per in mapping.values() for entry in per.get(endpoint.get('name'), [])]
                missing = [entry for entry in wanted if entry not in known]
                flags = console.flags()
                state = console.state()
                # A console round trip with rows to read (the PAUSE's and RESUME's), half of a two-command exchange.
                rtts.append(_round_trip(lambda: (console.show('DATABASES'), console.show('SERVERS'))) / 2)
                servers = console.show('SERVERS')
                held = entry_servers(servers, console.entries)
                self.server_closes = max(self.server_closes, server_closes(held))
                self._note_servers(console, servers, console.show('CLIENTS'))
                name = endpoint.get('name') or endpoint.get('host')
                read_only = serving_entries(name, console.entries, self.standbys)
                if unix_socket_backends(databases, [e for e in console.entries if e not in read_only]) \
                        and name not in self.unix_backends:
                    self.unix_backends.append(name)
                entries_counts.append(len(console.entries))
                self.xact_seconds.append(xact_wait_seconds(console.show('STATS'), console.entries))
                pools = console.show('POOLS')
                self.pools_at_stake.extend(logins.pools_at_stake(databases, servers, pools, console.entries,
                                                                 endpoint.get('name')))
                modes = entry_pool_modes(databases, console.config, console.entries, pools)
                clients = clients_per_entry(pools, console.entries, modes)
                for entry, connected in clients_per_entry(pools, console.entries).items():
                    # (server connections, of them logged in again after RESUME) per (pgbouncer, entry).
                    key = (endpoint.get('name'), entry)  # as _check_connection_slots reads the consoles
                    before = self.entry_server_connections.get(key, (0, 0))
                    self.entry_server_connections[key] = (before[0] + held[entry],
                                                          before[1] + min(held[entry], connected))
            except ConsoleError as exc:
                self.findings.append(decide_pgbouncer(label, error=exc))
                self.pgbouncer_failed.add(endpoint.get('name') or endpoint.get('host'))
                continue
            refused = [login for login in self.refused_logins
                       if login == (endpoint.get('probe_user'), endpoint.get('probe_password'))]
            explained = explained_entries(databases, console.entries, self.unreachable,
                                          (endpoint.get('probe_user'), endpoint.get('probe_password')),
                                          refused[0] if refused else None)
            seen.append((console, flags, state, missing, explained))
            self.pgbouncer_configs[label] = console.config
            self.findings.append(decide_pool_mode(label, modes, clients))
            self.findings.append(decide_pgbouncer_processes(label, console.config, endpoint.get('unix_socket_dir')))
        # As a client sees it, every console at once: a PAUSE or SUSPEND from
        # another tool shows nowhere else on pgbouncer 1.18.
        probed = probe_consoles([item[0] for item in seen])
        for console, flags, state, missing, explained in seen:
            try:  # a silent entry whose server login is still in flight waits for its server
                logging_in = [item[0] for item in logins_in_flight(console.show('POOLS'), console.entries)]
            except ConsoleError:
                logging_in = []
            self.findings.append(decide_pgbouncer(console.label, console.entries, flags, state, missing,
                                                  probe=probed.get(console.label), explained=explained,
                                                  logging_in=logging_in,
                                                  fences=dict((f['entry'], f) for f in self.fences
                                                              if f['pgbouncer'] == console.label)))
        return rtts, entries_counts

    def _check_connection_slots(self, servers):
        """decide_connection_slots on the primary and every standby: the logins
        after RESUME are the deploy entries of every pgbouncer read, each on the
        server it points at (a standby's own entries, the others the primary's)."""
        names = [p.get('name') for p in self.pgbouncers]
        on_standby = standby_entries_by_pgbouncer(self.standbys, names)
        read = dict((c.endpoint.get('name'), c.entries) for c in self.consoles if c.conn is not None)
        pairs = {}  # id(server endpoint) -> [(pgbouncer, entry)] pointing at it
        for endpoint, dummy in servers:
            if endpoint is self.primary:
                taken = set()
                for per in on_standby.values():
                    taken |= set((bouncer, entry) for bouncer, entries in per.items() for entry in entries)
                pairs[id(endpoint)] = [(bouncer, entry) for bouncer, entries in read.items() for entry in entries
                                       if (bouncer, entry) not in taken]
            else:
                per = on_standby.get(standby_name(endpoint)) or {}
                pairs[id(endpoint)] = [(bouncer, entry) for bouncer, entries in per.items() for entry in entries
                                       if entry in read.get(bouncer, ())]
        for endpoint, conn in servers:
            if conn is None:
                continue
            label = endpoint_label(endpoint)
            rows = self._query(conn, CONNECTION_SLOTS_SQL, label=label, check='connection_slots')
            if rows is None:
                continue
            on_it = pairs[id(endpoint)]
            held = [self.entry_server_connections.get(pair, (0, 0)) for pair in on_it]
            self.findings.append(decide_connection_slots(label, rows[0], len(on_it), closing=sum(h[0] for h in held),
                                                         relogins=sum(h[1] for h in held)))
            self._check_server_logins(label, conn, on_it)

    def _check_server_logins(self, label, conn, on_it):
        """decide_server_logins on one server: ``on_it``, the (pgbouncer name, entry) pairs pointing at it."""
        pools = [p for p in self.pools_at_stake if (p['pgbouncer'], p['entry']) in set(on_it)]
        probe_users = dict((p.get('name'), p.get('probe_user')) for p in self.pgbouncers)
        probe_logins = {}
        for bouncer, dummy in on_it:
            user = probe_users.get(bouncer)
            probe_logins[user] = probe_logins.get(user, 0) + 1
        roles = databases = None
        if pools:
            roles = self._query(conn, logins.LOGIN_ROLES_SQL, {
                'roles': sorted(set(p['user'] for p in pools) | set(u for u in probe_logins if u)),
                'margin': LOGIN_EXPIRY_MARGIN_SECONDS}, label=label, check='server_logins')
            databases = self._query(conn, logins.LOGIN_DATABASES_SQL, {
                'databases': sorted(set(p['database'] for p in pools))}, label=label, check='server_logins')
        self.findings.append(decide_server_logins(label, pools, roles, databases, probe_logins))

    def _note_servers(self, console, servers_rows, clients_rows=()):
        """Record one console's SHOW SERVERS rows: each backend pid on the
        server it is on (server_pids_on; the entries serving a standby, from
        its pgbouncer_entries, are that standby's, the others the primary's),
        the primary's also in pgbouncer_pids and pgbouncer_pids_of; with its
        SHOW CLIENTS rows, the client each is linked to (clients_on)."""
        name = console.endpoint.get('name') or console.endpoint.get('host')
        entry_servers = dict((entry, endpoint_label(standby))
                             for entry, standby in standby_of_entries(name, self.standbys).items())
        primary = endpoint_label(self.primary)
        clients = server_clients(servers_rows, clients_rows)
        for label, pids in server_pids_by_server(servers_rows, entry_servers, primary).items():
            self.server_pids_on.setdefault(label, {}).update((pid, name) for pid in pids)
            self.clients_on.setdefault(label, {}).update((pid, clients[pid]) for pid in pids if pid in clients)
            if label == primary:
                self.pgbouncer_pids |= pids
                self.pgbouncer_pids_of.setdefault(name, set()).update(pids)

    def _server_pids(self):
        """Read every open console's server connections again (_note_servers):
        those opened since the pgbouncer check. Returns the primary's pids."""
        for console in self.consoles:
            if console.conn is None:
                continue
            try:
                self._note_servers(console, console.show('SERVERS'), console.show('CLIENTS'))
            except ConsoleError:
                continue
        return set(self.pgbouncer_pids)

    def _check_direct_connections(self, primary, label, activity_rows):
        system_users = self.system_users
        if system_users is None:
            replication = self._query(primary, REPLICATION_USERS_SQL, label=label, check='direct_connections')
            system_users = set([self.primary['user']] + [row['rolname'] for row in replication or []])
        pids = self.pgbouncer_pids | self._server_pids()
        rows = [row for row in activity_rows if row.get('datname') == self.db_name]
        # Each pgbouncer host's addresses: its declared host, and where its
        # consoles' server connections come from (a console on a unix socket).
        hosts = {}
        for endpoint in self.pgbouncers:
            name = endpoint.get('name') or endpoint.get('host')
            found = addresses(endpoint.get('host')) | set(
                row.get('client_addr') for row in activity_rows
                if row.get('pid') in self.pgbouncer_pids_of.get(name, ()) and row.get('client_addr'))
            for address in found:
                hosts.setdefault(address, ('%s (%s)' % (name, address) if name != address else name,
                                           name not in self.pgbouncer_failed))
        if self.unix_backends:  # their server connections come over the primary's local socket: no address
            hosts[None] = (', '.join(self.unix_backends),
                           not any(name in self.pgbouncer_failed for name in self.unix_backends))
        found = decide_direct_connections(label, rows, pids, system_users, self.fragile_users, self.killable_users,
                                          pgbouncer_hosts=hosts)
        if found['status'] == FAIL:
            # pgbouncer opens and closes server connections all the time (a small server_lifetime,
            # max_user_connections or max_db_connections moving the user's connections between its
            # pools, a login in flight): one read of pg_stat_activity between two SHOW SERVERS catches
            # connections of a few milliseconds that no console showed. Only a connection still open a
            # moment later, and shown by no console then either, is one the outage would not drain.
            rows = self._still_unshown(primary, label, rows, pids)
            if rows is not None:
                found = decide_direct_connections(label, rows, pids | self._server_pids(), system_users,
                                                  self.fragile_users, self.killable_users, pgbouncer_hosts=hosts)
        self.findings.append(found)

    def _still_unshown(self, primary, label, rows, pids):
        """``rows`` (pg_stat_activity) less the connections no console showed
        (pid not in ``pids``) that ended within SERVER_CHURN_SECONDS: read again
        after that pause, between two reads of every console's SHOW SERVERS.
        None when the primary could not be read (its finding is recorded)."""
        unshown = [row.get('pid') for row in rows if row.get('pid') not in pids]
        time.sleep(SERVER_CHURN_SECONDS)
        self._server_pids()
        alive = self._query(primary, 'SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)', (unshown,),
                            label=label, check='direct_connections')
        if alive is None:
            return None
        alive = set(row['pid'] for row in alive)
        return [row for row in rows if row.get('pid') in pids or row.get('pid') in alive]

    def _lock_holders(self, primary, label, wanted, check):
        """The locks.HOLDERS_SQL rows on the primary for ``wanted`` (required_locks'
        or hot_waits' list; names resolved as the deploy user's session does), []
        for none wanted, None after a failed finding of ``check``."""
        if not wanted:
            return []
        return self._query(primary, locks.HOLDERS_SQL, locks.lookup(wanted, self.primary.get('user')),
                           label=label, check=check)

    def _standby_lock_holders(self, conn, label, conflict):
        """standby_lock_holders read on one standby whose replay cancels queries
        within the budget (the replay_blockers warning names only those); None
        where not needed or not read (the plan unknown, its delay lets queries
        hold replay: a refusal names every old transaction)."""
        if self.plan is None or replication.queries_can_hold(conflict, self.budget.seconds):
            return None
        if self._required_cold is None:
            primary = self._primary_conn
            path = self._session_path(primary, endpoint_label(self.primary)) if primary is not None else None
            self._required_cold = [r for r in locks.required_locks(self.plan.pending_cold, path)
                                   if r['mode'] == locks.ACCESS_EXCLUSIVE]
        rows = self._lock_holders(conn, label, self._required_cold, 'replay_blockers')
        return None if rows is None else standby_lock_holders(rows, self._required_cold)

    def _session_path(self, primary, label):
        """The deploy session's own search_path (its role's, its database's or
        the server's setting: the pre-flight's session is the deploy user's in
        the deploy database), as locks.split_identifiers reads it; None when
        unreadable."""
        rows = self._query(primary, "SELECT current_setting('search_path') AS path", label=label,
                           check='blocking_sessions')
        return locks.split_identifiers(rows[0]['path']) if rows else None

    def _check_blocking_sessions(self, primary, label, activity_rows):
        """The sessions that would hold the outage its whole budget
        (decide_blocking_sessions): pgbouncer clients in a transaction, and
        holders of locks the pending cold patches need (locks.HOLDERS_SQL)."""
        required = locks.required_locks(self.plan.pending_cold, self._session_path(primary, label))
        rows = self._lock_holders(primary, label, required, 'blocking_sessions')
        if rows is None:
            return
        self._server_pids()  # the server connections opened since the pgbouncer check
        pgbouncer_of = self.server_pids_on.get(label, {})
        pgbouncer_addrs = set()
        for endpoint in self.pgbouncers:
            pgbouncer_addrs |= addresses(endpoint.get('host'))
        db_rows = [row for row in activity_rows if row.get('datname') == self.db_name]
        self.findings.append(decide_blocking_sessions(
            label, db_rows, locks.conflicting(rows, required), required, pgbouncer_of, self.killable_users,
            pgbouncer_addrs, self._drain_wait(), drain_policy=self.drain_policy, policy=self.blocking_sessions,
            cold_pending=bool(self.plan.pending_cold), pgbouncer_clients=self.clients_on.get(label)))

    def _check_hot_patch_waits(self, primary, label, activity_rows):
        """decide_hot_patch_waits: what the pending hot patches (before and after
        the window) would wait out, read on the primary (locks.HOLDERS_SQL)."""
        lockers, snapshots = locks.hot_waits(self.plan.pending_hot + self.plan.post_window_hot)
        rows = self._lock_holders(primary, label, lockers, 'hot_patch_waits')
        if rows is None:
            return
        db_rows = [row for row in activity_rows if row.get('datname') == self.db_name]
        self.findings.append(decide_hot_patch_waits(
            label, self.db_name, db_rows, locks.conflicting(rows, lockers), lockers, snapshots,
            self.lock_retry.hot_wait_seconds(), policy=self.blocking_sessions))

    def _check_read_drain(self, label, activity_rows):
        """decide_blocking_sessions on a standby: the clients through the
        entries serving it (drained too) in a transaction that will outlast the
        window."""
        self._server_pids()
        db_rows = [row for row in activity_rows if row.get('datname') == self.db_name]
        self.findings.append(decide_blocking_sessions(
            label, db_rows, [], [], self.server_pids_on.get(label, {}), self.killable_users, set(),
            self._drain_wait(), drain_policy=self.drain_policy, policy=self.blocking_sessions,
            cold_pending=bool(self.plan.pending_cold), standby=True, pgbouncer_clients=self.clients_on.get(label)))

    def _drain_wait(self):
        """What the window can wait for a session: the usable budget, capped by pgbouncer's timeouts."""
        try:
            return self.budget.capped(budget_cap(self.pgbouncer_configs)).usable
        except BudgetExceeded:  # nothing left: the pgbouncer_timeouts finding refuses
            return self.budget.usable

    def _rtt(self, conn, label):
        """The round trip to one host in seconds, or None after a finding naming
        it: a connection lost during the pre-flight is a finding, never a crash."""
        if label in self.lost:
            return None
        try:
            return _round_trip(lambda: query(conn, 'SELECT 1'))
        except psycopg2.Error as exc:
            if not self._lost(conn, label, exc):
                self.findings.append(finding('connection', FAIL, '%s: %s' % (label, one_line(exc.pgerror or exc)),
                                             host=label, action='check the log of %s' % label))
            return None

    def _wal_writer_delay(self, primary, label):
        """The primary's wal_writer_delay in seconds (0.0 when it cannot be read: a finding says why)."""
        rows = self._query(primary, WAL_WRITER_DELAY_SQL, label=label, check='budget')
        return float(rows[0]['seconds']) if rows else 0.0

    def _existing_revision_table(self, primary):
        """The revision table the window writes to, when it exists already (else None: the probe has none to read)."""
        table = self.revision_table or DEFAULT_REVISION_TABLE
        try:
            return table if revision_table_exists(primary, table) else None
        except (SchemaError, psycopg2.Error):
            return None

    def _vouched(self):
        """{host label: backend pids} of the clients through pgbouncer that
        blocking_sessions would have refused but fastdowntime_blocking_sessions:
        warn let through (drain_policy abort): the operator vouches that they end
        in time, so the drain's estimate leaves them out - their age says
        nothing of when an idle transaction ends. With drain_policy terminate
        they stay in, capped by drain_xact_seconds."""
        if self.blocking_sessions != 'warn' or self.drain_policy == 'terminate':
            return {}
        found = {}
        for item in self.findings:
            if item['check'] == 'blocking_sessions' and item['status'] == WARN and item.get('host'):
                pids = [row.get('pid') for row in (item.get('evidence') or {}).get('drain_holders') or ()]
                if pids:
                    found.setdefault(item['host'], set()).update(pids)
        return found

    def _xact_seconds(self, vouched=None):
        """How long a PAUSE now would wait for transactions in flight (estimate_outage's xact_seconds),
        leaving out the backends ``vouched`` ({host label: pids}, _vouched); with drain_policy terminate
        at most half the drain's deadline (the usable budget, capped by pgbouncer's timeouts), when the
        drain terminates what still holds it."""
        try:
            deadline = self.budget.capped(budget_cap(self.pgbouncer_configs)).usable
        except BudgetExceeded:  # nothing left: the pgbouncer_timeouts finding refuses
            deadline = self.budget.usable
        vouched = vouched or {}
        return drain_xact_seconds(max(self.xact_seconds + [
            open_xact_seconds(rows, set(self.server_pids_on.get(label, {})) - vouched.get(label, set()))
            for label, rows in self.activity.items()]), self.drain_policy, deadline)

    def _check_budget(self, primary, label, standbys, lag, pgbouncer_rtts, entries_counts):
        if self.plan is None:
            self.findings.append(finding('budget', WARN, 'no estimate: the plan is unknown (see the patches check)',
                                         action='fix the patches check first'))
            return
        if not self.plan.pending_cold:
            self.findings.append(decide_budget(None, self.budget))
            return
        primary_rtt = self._rtt(primary, label)
        standby_rtts = [self._rtt(conn, endpoint_label(e)) for e, conn in standbys if conn is not None]
        if primary_rtt is None:
            return
        standby_rtts = [rtt for rtt in standby_rtts if rtt is not None]
        # A standby that did not catch up within max_lag_seconds needs at least that long.
        # What the window's replay wait would have waited for the probe (its round trip included; a standby asked
        # after another in the probe's sweep does not wait for that one's answer in the window).
        replay = max([self.max_lag_seconds if m.get('catch_up_seconds') is None else
                      m.get('replay_wait_seconds', m['catch_up_seconds']) for m in lag if not m.get('error')] or [0.0])
        measured = set(m['label'] for m in lag if not m.get('error'))
        incomplete = [endpoint_label(e) for e, dummy in standbys if endpoint_label(e) not in measured]
        if len(pgbouncer_rtts) < len(self.pgbouncers):
            incomplete.append('%d pgbouncer(s)' % (len(self.pgbouncers) - len(pgbouncer_rtts)))
        replay += (self.lint_estimate or {}).get('replay_seconds', 0.0)
        # A standby query the replay_blockers check warned of: replay waits for it up to its delay.
        conflict = replay_conflict_seconds(self.findings)
        replay += conflict
        # The primary's cold transaction now (a busy host is slower), on fresh connections warmed as the window's;
        # statement_seconds is the floor.
        probe = lint.measure_cold_transaction(
            lambda: connect(self.primary, autocommit=True, application_name='fastdowntime-preflight-probe'),
            revision_table=self._existing_revision_table(primary)) or {}
        measured = probe.get('statement_seconds')
        vouched = self._vouched()
        self.estimate = estimate_outage(self.plan.pending_cold, primary_rtt, standby_rtts, pgbouncer_rtts, replay,
                                        entries_counts, max(self.statement_seconds, measured or 0.0),
                                        statement_costs=lint.per_statement_seconds(self.lint_findings),
                                        lint_estimate=self.lint_estimate, xact_seconds=self._xact_seconds(vouched),
                                        transaction_seconds=probe.get('transaction_seconds'),
                                        table_seconds=probe.get('table_seconds'),
                                        server_closes=self.server_closes,
                                        close_seconds=backend_close_seconds(probe.get('close_seconds'), primary_rtt),
                                        wal_writer_delay_seconds=self._wal_writer_delay(primary, label))
        self.estimate['statement_seconds_measured'] = round(measured, 6) if measured is not None else None
        self.estimate['replay_conflict_seconds'] = round(conflict, 3)
        self.estimate['vouched'] = ['pid %s on %s' % (pid, label.split(' (')[0])
                                    for label, pids in sorted(vouched.items()) for pid in sorted(pids)]
        cap = budget_cap(self.pgbouncer_configs)
        self.findings.append(decide_pgbouncer_timeouts(cap, self.budget, self.estimate,
                                                       self.pgbouncer_configs))
        try:
            budget = self.budget.capped(cap)
        except BudgetExceeded:  # nothing left: the pgbouncer_timeouts finding refuses
            budget = self.budget
        self.findings.append(decide_budget(self.estimate, budget, incomplete))
