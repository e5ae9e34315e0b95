# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The patch set: which patch files exist, what they contain, what is pending.

Pure logic, no database. Patch files are named as Launchpad names them,
``patch-MMMM-mm-p.sql`` (four-digit major, two-digit minor, one-digit patch),
and ordered by (major, minor, patch) as integers. Each patch is split into
statements by pglast (the PostgreSQL parser itself), each statement keeps the
line it starts on, and each is classified:

- ``hot``: cannot run inside a transaction block but is built to run live
  (CREATE/DROP INDEX CONCURRENTLY, REINDEX ... CONCURRENTLY, DETACH PARTITION
  ... CONCURRENTLY, VACUUM). Applied before the outage, in autocommit.
- ``cold``: anything a transaction block accepts; applied inside the outage.
- ``revision``: the INSERT INTO LaunchpadDatabaseRevision a Launchpad patch
  carries, and ``setting``: a SET (Launchpad patches open with
  ``SET client_min_messages=ERROR``); both go with either kind.

A patch mixing hot and cold statements, a statement that cannot run in a
transaction and is not a live operation (CREATE DATABASE, ALTER SYSTEM, ...),
or transaction control (BEGIN, COMMIT: the tool owns the transaction) is an
error naming the file and the line.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import re
from dataclasses import dataclass, field, replace

from ansible_collections.fastdowntime.postgresql.plugins.module_utils.pgversion import covers

try:
    import pglast
    from pglast import ast as pg_ast
    from pglast.parser import ParseError
    HAS_PGLAST = True
    PGLAST_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - depends on the controller
    pglast = pg_ast = ParseError = None
    HAS_PGLAST = False
    PGLAST_IMPORT_ERROR = exc

# The exact Launchpad name; anything else that starts with 'patch-' and ends
# with '.sql' is a mistyped patch, not a file to skip.
PATCH_NAME_RE = re.compile(r'^patch-(\d{4})-(\d{2})-(\d)\.sql$')
LAUNCHPAD_REVISION_TABLE = 'launchpaddatabaserevision'

HOT = 'hot'
COLD = 'cold'
REVISION = 'revision'
SETTING = 'setting'


class PatchSetError(Exception):
    """A patch directory or file the tool refuses. ``problems``: every
    'file line N: cause' found (all the files, all their lines, in one run);
    str() is the operator message, the problems joined by '; '."""

    def __init__(self, problems):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super(PatchSetError, self).__init__('; '.join(self.problems))


@dataclass
class Statement:
    sql: str
    line: int          # 1-based line of the patch file the statement starts on
    kind: str          # HOT, COLD, REVISION or SETTING
    command: str       # parser node name, e.g. 'IndexStmt'
    # For CREATE INDEX CONCURRENTLY: (schema or None, index name or None), so a
    # failed build's INVALID index can be found and dropped.
    index: tuple = None
    # The pglast parse tree of the statement (the lint reads it; never re-parsed).
    node: object = field(default=None, repr=False, compare=False)

    def as_dict(self):
        return {'line': self.line, 'kind': self.kind, 'command': self.command}


@dataclass
class Patch:
    name: str
    path: str
    revision: tuple    # (major, minor, patch) as ints
    sha256: str
    kind: str          # HOT or COLD
    statements: list = field(default_factory=list)
    # Checksums of the same text with other line endings or a BOM (and of
    # the raw bytes): a row recorded with any of them is this patch.
    equivalent_sha256: frozenset = frozenset()

    @property
    def empty(self):
        """No schema statement (comments, SETs, its own revision row only)."""
        return all(s.kind in (SETTING, REVISION) for s in self.statements)

    def as_dict(self):
        return {
            'name': self.name,
            'revision': list(self.revision),
            'sha256': self.sha256,
            'kind': self.kind,
            'statements': len(self.statements),
        }


@dataclass
class PatchSet:
    directory: str
    patches: list      # ordered by revision
    ignored: list      # [{'name': ..., 'reason': ...}]

    def as_dict(self):
        return {
            'directory': self.directory,
            'patches': [p.as_dict() for p in self.patches],
            'ignored': list(self.ignored),
        }


@dataclass
class Plan:
    """What a deploy does, in the patches' numbered order: ``pending_hot``
    (live, before the window: the hot patches numbered before the first
    pending cold one), ``pending_cold`` (the window: the cold patches that
    follow, up to the next hot one), ``post_window_hot`` (live, after the
    window: the hot patches that follow) and ``deferred`` (everything after
    those: a cold patch numbered after a post-window hot patch waits for it, so
    for the next deploy)."""
    pending_hot: list
    pending_cold: list
    applied: list      # patch names already in the database, checksum agreeing
    drift: list        # [{'name', 'revision', 'applied_sha256', 'file_sha256'}]
    missing_files: list  # revisions recorded in the database with no file
    unverified: list   # applied patches whose row holds no checksum (Launchpad)
    ignored: list
    refused: list = field(default_factory=list)  # window_problems(): 'file line N: cause'
    post_window_hot: list = field(default_factory=list)
    deferred: list = field(default_factory=list)
    # [{'name': pending file, 'applied_revision': 'MMMM-mm-p', 'applied_name'}]: a revision with no file whose recorded
    # sha256 is a pending file's (the applied patch renamed, or moved to another number).
    renamed: list = field(default_factory=list)

    @property
    def pending(self):
        """What this deploy applies, in order."""
        return self.pending_hot + self.pending_cold + self.post_window_hot

    def phases(self):
        """[(phase, [patch names])] in the order they run, empty ones left out."""
        named = [('hot', self.pending_hot), ('cold', self.pending_cold),
                 ('post-window hot', self.post_window_hot), ('next deploy', self.deferred)]
        return [(phase, [p.name for p in patches]) for phase, patches in named if patches]

    def as_dict(self):
        return {
            'pending_hot': [p.as_dict() for p in self.pending_hot],
            'pending_cold': [p.as_dict() for p in self.pending_cold],
            'post_window_hot': [p.as_dict() for p in self.post_window_hot],
            'deferred': [p.as_dict() for p in self.deferred],
            'phases': [{'phase': phase, 'patches': names} for phase, names in self.phases()],
            'applied': list(self.applied),
            'drift': list(self.drift),
            'missing_files': [format_revision(r) for r in self.missing_files],
            'unverified': list(self.unverified),
            'ignored': list(self.ignored),
            'refused': list(self.refused),
            'renamed': list(self.renamed),
        }


def format_revision(revision):
    """(2211, 1, 0) -> '2211-01-0', the way Launchpad spells a revision."""
    return '%d-%02d-%d' % tuple(revision)


def parse_patch_name(name):
    """(major, minor, patch) for a patch file name, None for a file that is not
    a patch at all; PatchSetError for a name that looks like a patch but is not
    spelled as one."""
    match = PATCH_NAME_RE.match(name)
    if match:
        return tuple(int(part) for part in match.groups())
    if name.startswith('patch-') and name.endswith('.sql'):
        raise PatchSetError(
            '%s: not a valid patch name: patches are named patch-MMMM-mm-p.sql '
            '(e.g. patch-2211-01-0.sql); rename the file or move it out of the patch directory' % name)
    return None


def sha256_of(data):
    return hashlib.sha256(data).hexdigest()


def _line_of(text, offset):
    return text.count('\n', 0, offset) + 1


def walk(node):
    """Every pglast node under ``node`` (itself included)."""
    if isinstance(node, (list, tuple)):
        for item in node:
            yield from walk(item)
        return
    if not isinstance(node, pg_ast.Node):
        return
    yield node
    for slot in type(node).__slots__:
        value = getattr(node, slot, None)
        if isinstance(value, (list, tuple, pg_ast.Node)):
            yield from walk(value)


def _has_concurrently_option(params):
    for param in params or ():
        if getattr(param, 'defname', None) == 'concurrently':
            return True
    return False


def _option_is_false(options, name):
    """True when DefElem ``name`` of ``options`` is given and false (a bare
    option name means true)."""
    for option in options or ():
        if getattr(option, 'defname', None) == name and option.arg is not None:
            value = getattr(option.arg, 'sval', None)
            if value is None:
                value = getattr(option.arg, 'boolval', getattr(option.arg, 'ival', None))
            return str(value).lower() in ('false', 'off', '0', 'no')
    return False


def _has_option(options, name):
    return any(getattr(option, 'defname', None) == name for option in options or ())


def _enum_name(value):
    return getattr(value, 'name', str(value))


def _reindex_kind(node):
    return _enum_name(node.kind).replace('REINDEX_OBJECT_', '')


def _detaches_concurrently(node):
    return any(getattr(getattr(cmd, 'def_', None), 'concurrent', False) for cmd in node.cmds or ())


def _relation_key(relation):
    return (relation.schemaname or None, relation.relname)


def detached_concurrently(node):
    """[(partitioned table key, partition key)] an ALTER TABLE ... DETACH
    PARTITION ... CONCURRENTLY detaches, [] for any other statement."""
    if type(node).__name__ != 'AlterTableStmt':
        return []
    return [(_relation_key(node.relation), _relation_key(cmd.def_.name)) for cmd in node.cmds or ()
            if _enum_name(cmd.subtype) == 'AT_DetachPartition' and getattr(cmd.def_, 'concurrent', False)]


# -- DO blocks: the SQL their PL/pgSQL body runs (pglast.parse_plpgsql) ----------------

def plpgsql_exprs(value, stmt=None, top=False, top_ids=()):
    """(statement kind, at the body's top level, SQL text, parseMode) of every
    PLpgSQL_expr in parse_plpgsql's JSON, in the body's order."""
    if isinstance(value, list):
        for item in value:
            yield from plpgsql_exprs(item, stmt, top, top_ids)
    elif isinstance(value, dict):
        for key, sub in value.items():
            if key == 'PLpgSQL_expr':
                yield stmt, top, sub.get('query') or '', sub.get('parseMode')
            elif key.startswith('PLpgSQL_stmt_'):
                yield from plpgsql_exprs(sub, key, id(value) in top_ids, top_ids)
            else:
                yield from plpgsql_exprs(sub, stmt, top, top_ids)


def do_block_sql(node):
    """(the PL/pgSQL function parse_plpgsql makes of a DO block ``node``, its
    top-level statements: none when the body has an EXCEPTION clause) - or
    (None, []) for a body in another language or one the parser cannot read."""
    body, language = '', 'plpgsql'
    for arg in node.args or ():
        if arg.defname == 'as':
            body = getattr(arg.arg, 'sval', '') or ''
        elif arg.defname == 'language':
            language = (getattr(arg.arg, 'sval', '') or '').lower()
    if language != 'plpgsql':
        return None, []
    try:
        tree = pglast.parse_plpgsql('CREATE FUNCTION pg_temp.fdt_do() RETURNS void LANGUAGE plpgsql AS '
                                    '$fdt_do$%s$fdt_do$' % body)
        block = tree[0]['PLpgSQL_function']['action']['PLpgSQL_stmt_block']
    except Exception:  # pylint: disable=broad-except  # any parser failure: only running it would tell
        return None, []
    return tree, ([] if block.get('exceptions') else block.get('body') or [])


def do_block_statements(node):
    """The parsed SQL statements a DO block ``node`` runs as written: its
    static SQL anywhere in its PL/pgSQL body, and an EXECUTE of one string
    constant; not SQL it builds."""
    tree, dummy = do_block_sql(node)
    found = []
    for stmt, dummy, text, mode in plpgsql_exprs(tree or []):
        try:
            if stmt == 'PLpgSQL_stmt_execsql' and mode == 0:
                found.extend(raw.stmt for raw in pglast.parse_sql(text))
            elif stmt == 'PLpgSQL_stmt_dynexecute':
                [raw] = pglast.parse_sql('SELECT ' + text)
                value = raw.stmt.targetList[0].val if len(raw.stmt.targetList) == 1 else None
                constant = getattr(getattr(value, 'val', None), 'sval', None) if type(value).__name__ == 'A_Const' \
                    else None
                found.extend(raw.stmt for raw in pglast.parse_sql(constant) if constant)
        except Exception:  # pylint: disable=broad-except  # PL/pgSQL's own syntax (INTO...), no SQL: not ours
            continue
    return found


def _transaction_kind(node):
    return _enum_name(node.kind).replace('TRANS_STMT_', '')


@dataclass(frozen=True)
class NoTransactionBlock:
    """One statement PostgreSQL refuses inside a transaction block: the
    server calls PreventInTransactionBlock(isTopLevel, "<words>") for it and
    answers "<words> cannot run inside a transaction block" (SQLSTATE 25001).

    ``live``: the statement is built to run live (a hot statement, applied
    before the window in autocommit); otherwise a patch may not hold it and
    ``advice`` says what to do instead. ``example`` is a statement it matches
    (each entry has a unit test).
    """
    words: str
    node: str          # pglast parse-tree node name
    matches: object    # parse tree -> bool
    live: bool
    source: str        # where PostgreSQL makes the call
    versions: str      # server majors that have the rule: '13+', '14-16' (pgversion.covers)
    example: str
    advice: str = None


# Every PreventInTransactionBlock call PostgreSQL 13-18 makes for an SQL
# statement (replication-protocol commands aside), from its source: first match
# wins; an entry holds on the servers its versions cover (pgversion.covers; with
# no server version, every entry: the strictest reading). Two more need the catalog (the target's relkind), so the lint checks
# them against the live database (lint.PARTITIONED_NO_TRANSACTION_BLOCK):
# REINDEX TABLE/INDEX of a partitioned table or index (14+) and CLUSTER of a
# partitioned table (15+). ALTER TYPE ... ADD VALUE left this list in 12; its
# new value is unusable until COMMIT (see window_problems).
NO_TRANSACTION_BLOCK = (
    NoTransactionBlock('CREATE INDEX CONCURRENTLY', 'IndexStmt', lambda n: n.concurrent, True,
                       'tcop/utility.c ProcessUtilitySlow (T_IndexStmt)', '13+',
                       'CREATE INDEX CONCURRENTLY i ON t (a)'),
    NoTransactionBlock('DROP INDEX CONCURRENTLY', 'DropStmt', lambda n: n.concurrent, True,
                       'tcop/utility.c ExecDropStmt', '13+', 'DROP INDEX CONCURRENTLY i'),
    NoTransactionBlock('REINDEX SYSTEM', 'ReindexStmt', lambda n: _reindex_kind(n) == 'SYSTEM', False,
                       'commands/indexcmds.c ReindexMultipleTables', '13+', 'REINDEX SYSTEM d',
                       'reindex system catalogs outside the patch set'),
    NoTransactionBlock('REINDEX CONCURRENTLY', 'ReindexStmt', lambda n: _has_concurrently_option(n.params), True,
                       'commands/indexcmds.c ExecReindex (13: tcop/utility.c)', '13+',
                       'REINDEX TABLE CONCURRENTLY t'),
    NoTransactionBlock('REINDEX SCHEMA', 'ReindexStmt', lambda n: _reindex_kind(n) == 'SCHEMA', False,
                       'commands/indexcmds.c ReindexMultipleTables', '13+', 'REINDEX SCHEMA public',
                       'make it REINDEX SCHEMA ... CONCURRENTLY in a hot patch (or REINDEX TABLE per table)'),
    NoTransactionBlock('REINDEX DATABASE', 'ReindexStmt', lambda n: _reindex_kind(n) == 'DATABASE', False,
                       'commands/indexcmds.c ReindexMultipleTables', '13+', 'REINDEX DATABASE d',
                       'make it REINDEX DATABASE ... CONCURRENTLY in a hot patch (or REINDEX TABLE per table)'),
    NoTransactionBlock('VACUUM', 'VacuumStmt', lambda n: n.is_vacuumcmd, True,
                       'commands/vacuum.c ExecVacuum -> vacuum', '13+', 'VACUUM t'),
    NoTransactionBlock('CLUSTER', 'ClusterStmt', lambda n: n.relation is None, False,
                       'commands/cluster.c cluster (no table: every clustered table)', '13+', 'CLUSTER',
                       'name the table: CLUSTER t USING i'),
    NoTransactionBlock('ALTER TABLE ... DETACH CONCURRENTLY', 'AlterTableStmt', _detaches_concurrently, True,
                       'tcop/utility.c ProcessUtilitySlow (T_AlterTableStmt)', '14+',
                       'ALTER TABLE p DETACH PARTITION c CONCURRENTLY'),
    NoTransactionBlock('CREATE DATABASE', 'CreatedbStmt', lambda n: True, False,
                       'tcop/utility.c standard_ProcessUtility', '13+', 'CREATE DATABASE d',
                       'databases are not schema patches: create it outside the patch set'),
    NoTransactionBlock('DROP DATABASE', 'DropdbStmt', lambda n: True, False,
                       'tcop/utility.c standard_ProcessUtility', '13+', 'DROP DATABASE d',
                       'databases are not schema patches: drop it outside the patch set'),
    NoTransactionBlock('ALTER DATABASE SET TABLESPACE', 'AlterDatabaseStmt',
                       lambda n: _has_option(n.options, 'tablespace'), False,
                       'commands/dbcommands.c AlterDatabase', '13+', 'ALTER DATABASE d SET TABLESPACE ts',
                       'move the database outside the patch set'),
    NoTransactionBlock('CREATE TABLESPACE', 'CreateTableSpaceStmt', lambda n: True, False,
                       'tcop/utility.c standard_ProcessUtility', '13+', "CREATE TABLESPACE ts LOCATION '/x'",
                       'create tablespaces outside the patch set'),
    NoTransactionBlock('DROP TABLESPACE', 'DropTableSpaceStmt', lambda n: True, False,
                       'tcop/utility.c standard_ProcessUtility', '13+', 'DROP TABLESPACE ts',
                       'drop tablespaces outside the patch set'),
    NoTransactionBlock('ALTER SYSTEM', 'AlterSystemStmt', lambda n: True, False,
                       'tcop/utility.c standard_ProcessUtility', '13+', 'ALTER SYSTEM SET work_mem = 1',
                       'server settings are configuration, not schema: set them outside the patch set'),
    NoTransactionBlock('CREATE SUBSCRIPTION ... WITH (create_slot = true)', 'CreateSubscriptionStmt',
                       lambda n: not (_option_is_false(n.options, 'create_slot')
                                      or _option_is_false(n.options, 'connect')), False,
                       'commands/subscriptioncmds.c CreateSubscription', '13+',
                       "CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p",
                       'create it WITH (create_slot = false) or outside the patch set'),
    NoTransactionBlock('ALTER SUBSCRIPTION ... REFRESH', 'AlterSubscriptionStmt',
                       lambda n: _enum_name(n.kind).endswith('REFRESH'), False,
                       'commands/subscriptioncmds.c AlterSubscription', '13+',
                       'ALTER SUBSCRIPTION s REFRESH PUBLICATION', 'refresh it outside the patch set'),
    NoTransactionBlock('ALTER SUBSCRIPTION with refresh', 'AlterSubscriptionStmt',
                       lambda n: _enum_name(n.kind).endswith('PUBLICATION')
                       and not _option_is_false(n.options, 'refresh'), False,
                       'commands/subscriptioncmds.c AlterSubscription', '13+',
                       'ALTER SUBSCRIPTION s SET PUBLICATION p',
                       'add WITH (refresh = false) and refresh outside the patch set'),
    NoTransactionBlock('ALTER SUBSCRIPTION ... SET (failover)', 'AlterSubscriptionStmt',
                       lambda n: _has_option(n.options, 'failover'), False,
                       'commands/subscriptioncmds.c AlterSubscription', '17+',
                       'ALTER SUBSCRIPTION s SET (failover = true)', 'change it outside the patch set'),
    NoTransactionBlock('ALTER SUBSCRIPTION ... SET (two_phase)', 'AlterSubscriptionStmt',
                       lambda n: _has_option(n.options, 'two_phase'), False,
                       'commands/subscriptioncmds.c AlterSubscription', '18+',
                       'ALTER SUBSCRIPTION s SET (two_phase = false)', 'change it outside the patch set'),
    NoTransactionBlock('DROP SUBSCRIPTION', 'DropSubscriptionStmt', lambda n: True, False,
                       'commands/subscriptioncmds.c DropSubscription (when it has a replication slot)', '13+',
                       'DROP SUBSCRIPTION s',
                       'drop it outside the patch set (a parser cannot see whether it has a slot)'),
    NoTransactionBlock('DISCARD ALL', 'DiscardStmt', lambda n: _enum_name(n.target) == 'DISCARD_ALL', False,
                       'commands/discard.c DiscardAll', '13+', 'DISCARD ALL',
                       'remove it: the tool resets the session after every patch'),
    NoTransactionBlock('COMMIT PREPARED', 'TransactionStmt',
                       lambda n: _transaction_kind(n) == 'COMMIT_PREPARED', False,
                       'tcop/utility.c standard_ProcessUtility (T_TransactionStmt)', '13+',
                       "COMMIT PREPARED 'x'", 'prepared transactions are not schema patches'),
    NoTransactionBlock('ROLLBACK PREPARED', 'TransactionStmt',
                       lambda n: _transaction_kind(n) == 'ROLLBACK_PREPARED', False,
                       'tcop/utility.c standard_ProcessUtility (T_TransactionStmt)', '13+',
                       "ROLLBACK PREPARED 'x'", 'prepared transactions are not schema patches'),
)


def no_transaction_block_rule(node, server_version_num=None):
    """The NO_TRANSACTION_BLOCK entry a parsed statement matches on a server of
    ``server_version_num`` (None: on any supported server), or None."""
    name = type(node).__name__
    for rule in NO_TRANSACTION_BLOCK:
        if rule.node == name and covers(rule.versions, server_version_num) and rule.matches(node):
            return rule
    return None


def _sets_transaction(node):
    """SET TRANSACTION ... and SET TRANSACTION SNAPSHOT (which PostgreSQL takes only before the
    transaction's first query: in the window it always failed) - the window's transaction belongs to the
    tool. SET SESSION CHARACTERISTICS is not this: it sets the session's defaults (reset after the patch)."""
    return type(node).__name__ == 'VariableSetStmt' and \
        (node.name or '').upper() in ('TRANSACTION', 'TRANSACTION SNAPSHOT')


def _classify(node):
    """(kind, why-not) for one parsed statement: why-not is None when the kind
    is acceptable, else the reason the statement may not be in a patch."""
    name = type(node).__name__
    rule = no_transaction_block_rule(node)
    if rule is not None:
        if rule.live:
            return HOT, None
        return None, '%s cannot run inside a transaction block (the window is one); %s' % (rule.words, rule.advice)
    if name == 'DoStmt':
        # PL/pgSQL runs every statement inside a transaction (pg_partman issue 387: DETACH CONCURRENTLY from a
        # function): such a statement in a DO block fails wherever it runs.
        for sub in do_block_statements(node):
            rule = no_transaction_block_rule(sub)
            if rule is not None:
                return None, ('a DO block runs %s, which cannot run inside a transaction block, and a DO block is '
                              'one wherever it runs; %s' % (rule.words, 'make it a statement of its own in a hot '
                                                            'patch' if rule.live else rule.advice))
    if name == 'TransactionStmt':
        return None, ('transaction control is not allowed in a patch: the tool runs every cold patch in one '
                      'transaction; delete the line (sqitch, golang-migrate and Django sqlmigrate files carry their '
                      'own BEGIN/COMMIT); what must be committed first goes in an earlier patch')
    if _sets_transaction(node):
        return None, ('SET TRANSACTION is not allowed in a patch: the tool owns the transaction '
                      '(every cold patch runs in one, after other statements)')
    if name == 'CopyStmt' and node.filename is None and not node.is_program:
        return None, (('COPY FROM stdin: not supported: the tool sends SQL, not data; load it with INSERTs, or '
                       'outside the deploy') if node.is_from else
                      'COPY TO stdout: a deploy has nowhere to send its output; remove it')
    if name == 'CheckPointStmt':
        return None, ('CHECKPOINT: it writes every dirty buffer of the server to disk, while every client waits '
                      'in the window (or the hot phase stalls), and a schema patch needs none; remove it')
    if name == 'CopyStmt':
        # A file or program on the database server: nothing the pre-flight can see or price (a missing
        # file failed inside the window), and a file written is not undone by the window's ROLLBACK.
        source = 'PROGRAM' if node.is_program else 'a file on the database server'
        return None, (('COPY FROM %s: the pre-flight can neither check nor price what it reads, and the window '
                       'fails if it is missing; load the data with INSERTs, or outside the deploy' % source)
                      if node.is_from else
                      ('COPY TO %s: a side effect the window\'s ROLLBACK does not undo; run it outside the deploy'
                       % source))
    if name == 'InsertStmt' and node.relation is not None \
            and node.relation.relname.lower() == LAUNCHPAD_REVISION_TABLE:
        return REVISION, None
    if name == 'VariableSetStmt':
        return SETTING, None
    return COLD, None


def _only_sets_config(node):
    """A SELECT whose every output is a set_config() of constants and that reads nothing
    (pg_dump's ``SELECT pg_catalog.set_config('search_path', '', false);``)."""
    if type(node).__name__ != 'SelectStmt' or not node.targetList or _enum_name(node.op) != 'SETOP_NONE' \
            or any(getattr(node, part, None) for part in ('fromClause', 'whereClause', 'withClause', 'intoClause',
                                                          'groupClause', 'havingClause', 'lockingClause')):
        return False
    for target in node.targetList:
        call = getattr(target, 'val', None)
        if type(call).__name__ != 'FuncCall' or _func_last_name(call.funcname) != 'set_config' \
                or not call.args or any(type(arg).__name__ not in ('A_Const', 'TypeCast') for arg in call.args):
            return False
    return True


def setting_statements(patches):
    """[(patch, statement)] of the pending ``patches`` (in order) whose statement only changes a
    setting of the session: SET / RESET (not SET TRANSACTION, refused), and a SELECT of set_config()
    calls with constant arguments. The server decides whether it knows the setting, accepts the value
    and lets the deploy user set it - pg_dump 17 on writes ``SET transaction_timeout = 0``, which a
    server before 17 does not know: the pre-flight tries each on the primary, rolled back, so the
    window never fails on one (preflight ``patch_settings``)."""
    found = []
    for patch in patches:
        for statement in patch.statements:
            node = statement.node
            if node is None:
                continue
            if type(node).__name__ == 'VariableSetStmt':
                if _sets_transaction(node):
                    continue
                found.append((patch, statement))
            elif _only_sets_config(node):
                found.append((patch, statement))
    return found


def named_roles(patches):
    """[(patch, statement, role)] of every role the pending ``patches`` (in order) name that must exist
    when the statement runs: OWNER TO, GRANT/REVOKE ... TO/FROM, GRANT role, AUTHORIZATION, a policy's
    roles, ALTER DEFAULT PRIVILEGES FOR ROLE, ALTER ROLE, REASSIGN/DROP OWNED BY... - not CURRENT_USER,
    PUBLIC..., not DROP ROLE (IF EXISTS), not a role an earlier pending statement creates (CREATE ROLE,
    ALTER ROLE ... RENAME TO). A pg_dump taken where other roles exist writes OWNER TO and GRANT lines for
    them: the pre-flight looks each up on the primary (preflight ``patch_roles``), so the window never
    fails on "role ... does not exist"."""
    found, created = [], set()
    for patch in patches:
        for statement in patch.statements:
            node = statement.node
            if node is None:
                continue
            kind = type(node).__name__
            if kind == 'DropRoleStmt':
                continue
            names = [sub.rolename for sub in walk(node) if type(sub).__name__ == 'RoleSpec'
                     and _enum_name(sub.roletype) == 'ROLESPEC_CSTRING' and sub.rolename]
            if kind == 'GrantRoleStmt':
                names.extend(priv.priv_name for priv in node.granted_roles or () if getattr(priv, 'priv_name', None))
            if kind == 'CreateRoleStmt':
                created.add(node.role)
            elif kind == 'RenameStmt' and _enum_name(node.renameType) == 'OBJECT_ROLE':
                created.add(node.newname)
            for name in dict.fromkeys(names):
                if name not in created:
                    found.append((patch, statement, name))
    return found


def created_extensions(patches):
    """[(patch, statement, extension, version or None)] of every CREATE EXTENSION in the pending
    ``patches``: the server needs the extension's files (its .control and scripts, a package of the
    operating system) - a pg_dump of a database with postgis, pg_trgm... writes CREATE EXTENSION for
    each; the pre-flight looks them up in the primary's pg_available_extension_versions (preflight
    ``patch_extensions``), so the window never fails on "extension ... is not available"."""
    found = []
    for patch in patches:
        for statement in patch.statements:
            node = statement.node
            if type(node).__name__ != 'CreateExtensionStmt':
                continue
            version = next((getattr(option.arg, 'sval', None) for option in node.options or ()
                            if option.defname == 'new_version'), None)
            found.append((patch, statement, node.extname, version))
    return found


def _index_target(node):
    """(schema, index name) a CREATE INDEX CONCURRENTLY builds, for recovery
    from a failed build; the index lives in the table's schema."""
    if type(node).__name__ != 'IndexStmt' or not node.concurrent:
        return None
    return (node.relation.schemaname if node.relation is not None else None, node.idxname)


# -- what a patch file may contain --------------------------------------------------
#
# Plain SQL only, as PostgreSQL parses it. Files written for other tools are
# recognised by what makes them not plain SQL, each named for what it is:
# psql meta-commands, pg_dump's COPY ... FROM stdin data, and the annotations
# other migration tools keep in SQL comments (goose, sql-migrate, dbmate,
# Liquibase formatted SQL). Comments are read with pglast's scanner, so a
# marker inside a string or a function body is not one.

@dataclass(frozen=True)
class Annotation:
    """One migration-tool annotation of a patch's comments: ``tool`` (goose,
    sql-migrate, dbmate, liquibase, flyway), ``word`` (as written), ``effect``:

    - ``accepted``: a comment here, harmless (goose Up, StatementBegin/End...);
    - ``down``: the rollback part starts here, up to the end of the file: it
      would run in the window's transaction, right after the up part;
    - ``no-transaction``: the author wants the file outside a transaction:
      true of a hot patch (live statements, autocommit), not of a cold one;
    - ``refused``: the tool would change what runs in a way this one does not
      (``advice`` says how to write it instead)."""
    tool: str
    word: str
    effect: str
    advice: str = None


ACCEPTED, DOWN, NO_TRANSACTION, REFUSED_ANNOTATION = 'accepted', 'down', 'no-transaction', 'refused'

_GOOSE = re.compile(r'^--\s*\+(goose|migrate)\s+(.*?)\s*$', re.I)
_DBMATE = re.compile(r'^--\s*migrate:(up|down)\b(.*?)\s*$', re.I)
_LIQUIBASE = re.compile(r'^--\s*(liquibase\s+formatted\s+sql|changeset|rollback|comment|preconditions?\S*|'
                        r'validchecksum|ignorelines)\b(.*?)\s*$', re.I)
# Liquibase changeset attributes that change whether or how the changeset runs.
# Flyway's script configuration written in the script itself (``-- flyway:executeInTransaction=false``;
# the same keys as a ``V1__x.sql.conf`` file beside it).
_FLYWAY = re.compile(r'^--\s*flyway:\s*(\w+)\s*=\s*(\S*)\s*$', re.I)
_LIQUIBASE_RUN_ATTRIBUTES = ('runalways', 'runonchange', 'context', 'contextfilter', 'labels', 'dbms',
                             'failonerror', 'splitstatements', 'enddelimiter', 'runwith')
_SAME_TRANSACTION = 'runs in the same transaction as the up part, undoing it'


def migration_annotation(comment):
    """The Annotation a ``--`` comment's text is, or None for an ordinary comment."""
    match = _GOOSE.match(comment)
    if match:
        tool, words = ('goose' if match.group(1).lower() == 'goose' else 'sql-migrate'), match.group(2)
        key = ' '.join(words.lower().split())
        word = '+%s %s' % (match.group(1), words)
        if key in ('up', 'statementbegin', 'statementend', 'envsub off'):
            return Annotation(tool, word, ACCEPTED)
        if key.startswith('down'):
            return Annotation(tool, word, DOWN)
        if key in ('no transaction', 'up notransaction'):
            return Annotation(tool, word, NO_TRANSACTION)
        if key == 'envsub on':
            return Annotation(tool, word, REFUSED_ANNOTATION,
                              'this tool does not substitute ${VAR}: write the values into the patch')
        return Annotation(tool, word, REFUSED_ANNOTATION, 'not an annotation this tool knows: remove it')
    match = _DBMATE.match(comment)
    if match:
        word = 'migrate:%s%s' % (match.group(1), ' ' + match.group(2).strip() if match.group(2).strip() else '')
        if match.group(1).lower() == 'down':
            return Annotation('dbmate', word, DOWN)
        if 'transaction:false' in match.group(2).replace(' ', '').lower():
            return Annotation('dbmate', word, NO_TRANSACTION)
        return Annotation('dbmate', word, ACCEPTED)
    match = _FLYWAY.match(comment)
    if match:
        key, value = match.group(1).lower(), match.group(2).lower()
        word = 'flyway:%s=%s' % (match.group(1), match.group(2))
        if key == 'executeintransaction':
            return Annotation('flyway', word, NO_TRANSACTION if value == 'false' else ACCEPTED)
        if key == 'shouldexecute':
            return Annotation('flyway', word, REFUSED_ANNOTATION,
                              'this tool does not evaluate it: every statement of the file runs here; remove it '
                              'and write only what must run')
        if key == 'placeholderreplacement' and value == 'true':
            return Annotation('flyway', word, REFUSED_ANNOTATION,
                              'this tool does not substitute ${placeholders}: write the values into the patch')
        # encoding, placeholderReplacement=false: nothing this tool does differently.
        return Annotation('flyway', word, ACCEPTED)
    match = _LIQUIBASE.match(comment)
    if match:
        key, rest = match.group(1).lower(), match.group(2)
        word = ' '.join(comment[2:].split())[:60]
        if key.startswith('precondition'):
            return Annotation('liquibase', word, REFUSED_ANNOTATION,
                              'this tool does not evaluate preconditions: the statements would run where Liquibase '
                              'skips them; remove it and write only what must run')
        if key == 'changeset':
            attributes = dict((part.split(':', 1)[0].lower(), part.split(':', 1)[1].lower())
                              for part in rest.split() if ':' in part)
            if attributes.get('runintransaction') == 'false':
                return Annotation('liquibase', word, NO_TRANSACTION)
            changing = [a for a in _LIQUIBASE_RUN_ATTRIBUTES if a in attributes]
            if changing:
                return Annotation('liquibase', word, REFUSED_ANNOTATION,
                                  'this tool runs every statement of the file, once: remove %s' % ', '.join(changing))
        # The header, a plain --changeset, --comment, and --rollback lines: comments, never run here.
        return Annotation('liquibase', word, ACCEPTED)
    return None


# psql meta-commands that need their own advice; any other: run it outside the deploy.
_META_ADVICE = {
    'i': 'put the included file\'s statements in the patch itself',
    'c': 'a deploy patches one database (fastdowntime_db_name): patch another with its own deploy',
    'copy': 'load data with INSERTs in the patch, or outside the deploy',
    'set': 'psql variables are not expanded: write the values into the patch',
    'gexec': 'it runs the statements its query generates: run that query once and write the statements it '
             'returns into the patch',
    'g': 'end the statement with ; instead',
    'if': 'every statement of the file runs here: write only what must run (a DO block decides at run time)',
    'echo': 'psql output only: delete the line',
}
# Meta-commands with another one's advice.
_META_SAME = {'ir': 'i', 'include': 'i', 'include_relative': 'i', 'connect': 'c', 'unset': 'set', 'gset': 'set',
              'elif': 'if', 'else': 'if', 'endif': 'if', 'qecho': 'echo', 'warn': 'echo', 'timing': 'echo',
              'pset': 'echo', 'x': 'echo', 'o': 'echo', 'out': 'echo'}
_META_SENDS_QUERY = ('g', 'gx', 'gexec', 'gset', 'gdesc', 'watch', 'crosstabview')
_COPY_FROM_STDIN = re.compile(r'^[ \t]*COPY\b[^;\n]*\bFROM\s+stdin\b[^;\n]*;[ \t]*$', re.I | re.M)
_COPY_END = re.compile(r'^\\\.[ \t]*$', re.M)


_META_DEFAULT = 'run it outside the deploy'
# pg_dump's \\restrict KEY ... \\unrestrict KEY around a plain dump (15.14, 16.10, 17.6 on): they
# only stop psql from running meta-commands a malicious server slipped into the dump, and this
# tool runs none (every other one is refused): nothing to run, nothing to refuse.
PG_DUMP_GUARDS = ('restrict', 'unrestrict')


def meta_command_advice(command):
    """What to do instead of psql meta-command ``command`` (without its backslash)."""
    return _META_ADVICE.get(_META_SAME.get(command, command), _META_DEFAULT)


def _blank(text, start, end):
    """``text`` with [start, end) made spaces (newlines kept: lines keep their numbers)."""
    return text[:start] + re.sub(r'[^\n]', ' ', text[start:end]) + text[end:]


def _copy_data(text, name):
    """pg_dump's COPY ... FROM stdin blocks: (text without them, problems)."""
    problems = []
    for match in reversed(list(_COPY_FROM_STDIN.finditer(text))):
        end_match = _COPY_END.search(text, match.end())
        end = end_match.end() if end_match else len(text)
        rows = text.count('\n', match.end(), end_match.start() if end_match else end) - 1
        problems.insert(0, '%s line %d: COPY FROM stdin data (%d row(s) follow it): not supported: the tool sends '
                           'SQL, not data; load it with INSERTs, or outside the deploy'
                        % (name, _line_of(text, match.start()), max(rows, 0)))
        text = _blank(text, match.start(), end)
    return text, problems


def _scan_annotations(text, name):
    """(text with psql meta-commands and down sections blanked, problems,
    no-transaction annotations [(line, Annotation)]), from pglast's scanner."""
    try:
        tokens = list(pglast.parser.scan(text))
    except Exception:  # an unterminated string...: the parser names it below
        return text, [], []
    problems, no_transaction, blanks, lines_seen = [], [], [], set()
    for token in tokens:
        line = _line_of(text, token.start)
        if token.name == 'SQL_COMMENT':
            found = migration_annotation(text[token.start:token.end + 1])
            if found is None or found.effect == ACCEPTED:
                continue
            if found.effect == DOWN:
                problems.append('%s line %d: %s down section (-- %s): it %s; keep only the up part in the patch '
                                'file: delete line %d to the end (undoing it is a later patch of its own)'
                                % (name, line, found.tool, found.word, _SAME_TRANSACTION, line))
                blanks.append((token.start, len(text)))
                break
            if found.effect == NO_TRANSACTION:
                no_transaction.append((line, found))
            else:
                problems.append('%s line %d: %s annotation -- %s: %s'
                                % (name, line, found.tool, found.word, found.advice))
        elif token.name == 'ASCII_92' and line not in lines_seen:
            lines_seen.add(line)
            end = text.find('\n', token.start)
            end = len(text) if end < 0 else end
            command = (text[token.start + 1:end].split() or [''])[0]
            # \\g, \\gexec, \\gset... send the query before them, as ';' does: the next statement parses.
            blanks.append((token.start + (command in _META_SENDS_QUERY), end))
            if command in _META_SENDS_QUERY:
                text = text[:token.start] + ';' + text[token.start + 1:]
            if command in PG_DUMP_GUARDS:
                continue
            advice = meta_command_advice(command)
            problems.append('%s line %d: psql meta-command \\%s: not SQL, run it outside the deploy%s'
                            % (name, line, command, '' if advice == _META_DEFAULT else ' (%s)' % advice))
    for start, end in blanks:
        text = _blank(text, start, end)
    return text, problems, no_transaction


def read_statements(text, name='<patch>'):
    """(statements, problems, no-transaction annotations) of a patch's text:
    every Statement PostgreSQL's parser finds, and every reason the patch
    cannot be deployed as 'file line N: cause' (all of them: psql
    meta-commands, COPY FROM stdin data, other tools' down sections and
    annotations, statements a patch may not hold; a syntax error stops the
    reading there)."""
    if not HAS_PGLAST:
        raise PatchSetError('pglast is not installed for the Python that runs this task (%s)'
                            % PGLAST_IMPORT_ERROR)
    text, problems = _copy_data(text, name)
    text, found, no_transaction = _scan_annotations(text, name)
    problems.extend(found)
    try:
        raw_statements = pglast.parse_sql(text)
    except ParseError as exc:
        message = exc.args[0] if exc.args else str(exc)
        location = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else None
        where = ' line %d' % _line_of(text, location) if location is not None else ''
        problems.append('%s%s: does not parse: %s' % (name, where, message))
        return [], problems, no_transaction
    statements = []
    for raw in raw_statements:
        start = raw.stmt_location or 0
        # stmt_len 0 means "up to the end of the text" (last statement, no ';').
        end = start + raw.stmt_len if raw.stmt_len else len(text)
        sql = text[start:end].strip().rstrip(';').rstrip()
        line = _line_of(text, start)
        kind, refused = _classify(raw.stmt)
        if refused:
            problems.append('%s line %d: %s' % (name, line, refused))
            continue
        statements.append(Statement(sql=sql, line=line, kind=kind,
                                    command=type(raw.stmt).__name__,
                                    index=_index_target(raw.stmt), node=raw.stmt))
    return statements, problems, no_transaction


def split_statements(text, name='<patch>'):
    """The statements of a patch as Statement objects, using the PostgreSQL
    parser; PatchSetError naming the file and line of every problem
    (read_statements)."""
    statements, problems, dummy = read_statements(text, name)
    if problems:
        raise PatchSetError(problems)
    return statements


def patch_kind(statements, name='<patch>'):
    """HOT or COLD for a whole patch; a mix is refused, naming both lines.
    A patch with no schema statement (comments, SETs, its own revision row)
    is HOT: recorded live, with no drain."""
    hot = [s for s in statements if s.kind == HOT]
    cold = [s for s in statements if s.kind == COLD]
    if hot and cold:
        raise PatchSetError(
            '%s: mixes live statements (line %d: %s) with transactional ones (line %d: %s); '
            'split it into a hot patch and a cold patch'
            % (name, hot[0].line, hot[0].command, cold[0].line, cold[0].command))
    return HOT if hot or not cold else COLD


UTF8_BOM = b'\xef\xbb\xbf'


def canonical_bytes(data):
    """A patch file's bytes as the tool reads, checksums and sends them: a
    leading UTF-8 BOM removed, CRLF line endings as LF (so a checkout with
    other line endings is the same patch)."""
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM):]
    return data.replace(b'\r\n', b'\n')


def equivalent_checksums(data):
    """sha256 of ``data`` as stored and of its canonical text with LF, CRLF,
    with and without a BOM: a revision row holding any of them (rows written
    before checksums were canonical hold the raw bytes') is the same patch."""
    canonical = canonical_bytes(data)
    crlf = canonical.replace(b'\n', b'\r\n')
    return frozenset(sha256_of(v) for v in (data, canonical, crlf, UTF8_BOM + canonical, UTF8_BOM + crlf))


def load_patch(path, revision=None):
    """Read, checksum, split and classify one patch file; PatchSetError
    listing every problem of the file."""
    name = os.path.basename(path)
    if revision is None:
        revision = parse_patch_name(name)
        if revision is None:
            raise PatchSetError('%s: not a patch file name (expected patch-MMMM-mm-p.sql)' % name)
    try:
        with open(path, 'rb') as handle:
            data = handle.read()
    except OSError as exc:
        raise PatchSetError('%s: cannot read: %s' % (name, exc.strerror or exc))
    canonical = canonical_bytes(data)
    try:
        text = canonical.decode('utf-8')
    except UnicodeDecodeError as exc:
        raise PatchSetError('%s line %d: not valid UTF-8 (byte offset %d)'
                            % (name, canonical.count(b'\n', 0, exc.start) + 1, exc.start))
    statements, problems, no_transaction = read_statements(text, name)
    kind = COLD
    try:
        kind = patch_kind(statements, name)
    except PatchSetError as exc:
        problems.extend(exc.problems)
    if kind == COLD and any(s.kind == COLD for s in statements):
        for line, found in no_transaction:
            problems.append('%s line %d: %s annotation -- %s asks to run the file outside a transaction, but its '
                            'statements are transactional and run in the window\'s one transaction (all or '
                            'nothing): remove the annotation; a statement that must run live (CREATE INDEX '
                            'CONCURRENTLY...) goes in a hot patch of its own' % (name, line, found.tool, found.word))
    if problems:
        raise PatchSetError(sorted(problems, key=_problem_line))
    return Patch(name=name, path=path, revision=revision, sha256=sha256_of(canonical),
                 kind=kind, statements=statements, equivalent_sha256=equivalent_checksums(data))


def _problem_line(problem):
    """The N of 'file line N: cause' (0 for a problem of the whole file)."""
    match = re.match(r'^\S+ line (\d+):', problem)
    return int(match.group(1)) if match else 0


# Files named for another migration tool: each is a schema change its author
# meant to be applied, so the patch set refuses it rather than skip it.
OTHER_TOOL_NAMES = (
    (re.compile(r'^.+\.sql\.conf$', re.I), 'a Flyway script configuration file'),
    (re.compile(r'^V\d+([._]\d+)*__.*\.sql$'), 'a Flyway versioned migration'),
    (re.compile(r'^U\d+([._]\d+)*__.*\.sql$'), 'a Flyway undo migration'),
    (re.compile(r'^R__.*\.sql$'), 'a Flyway repeatable migration'),
    (re.compile(r'^\d+_.*\.down\.sql$'), 'a golang-migrate down migration'),
    (re.compile(r'^\d+_.*\.up\.sql$'), 'a golang-migrate up migration'),
    (re.compile(r'^\d+_.*\.sql$'), 'a numbered migration (goose, dbmate, sql-migrate...)'),
)


def other_tool_name(name):
    """What another migration tool would take file ``name`` for, or None."""
    for pattern, what in OTHER_TOOL_NAMES:
        if pattern.match(name):
            return what
    return None


def name_problem(name, next_name='patch-2211-01-0.sql'):
    """'file: cause' for a file of the patch directory that looks like a schema
    change but is not named as a patch (a mistyped patch name, another tool's
    migration), or None. ``next_name``: the name a rename should take (the
    directory's next free patch name: next_patch_name)."""
    try:
        parse_patch_name(name)
    except PatchSetError as exc:
        return str(exc)
    what = other_tool_name(name)
    if what is None:
        return None
    if 'configuration' in what:
        return ('%s: %s: this tool does not read it, so what it says (executeInTransaction=false...) would silently '
                'not apply; a hot patch (CREATE INDEX CONCURRENTLY...) runs live, outside a transaction, anyway, '
                'every cold patch in the window\'s one transaction: delete it or move it out' % (name, what))
    if 'down' in what or 'undo' in what:
        fix = 'a patch set has no down migrations: move it out of the patch directory'
    else:
        fix = 'rename it to the next free patch-MMMM-mm-p.sql (e.g. %s), or move it out' % next_name
    return '%s: %s, not a patch: it would never be applied; %s' % (name, what, fix)


def next_patch_name(names):
    """The patch name after the newest patch among ``names`` (its minor + 1), or
    the README's example when there is none: what a file to rename should take."""
    revisions = []
    for name in names:
        try:
            revisions.append(parse_patch_name(name))
        except PatchSetError:  # a mistyped patch name: its own problem
            continue
    revisions = [r for r in revisions if r]
    if not revisions:
        return 'patch-2211-01-0.sql'
    major, minor, dummy = max(revisions)
    return 'patch-%s.sql' % format_revision((major, minor + 1, 0) if minor < 99 else (major + 1, 0, 0))


def load_patch_set(directory):
    """Every patch of ``directory`` in revision order, plus the entries that are
    not patches (listed with the reason, never skipped silently).
    PatchSetError listing every problem of every file at once."""
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        raise PatchSetError('patch directory %s: cannot list: %s' % (directory, exc.strerror or exc))
    patches, ignored, problems = [], [], []
    next_name = next_patch_name(names)
    for name in names:
        path = os.path.join(directory, name)
        if os.path.isdir(path):
            ignored.append({'name': name, 'reason': 'directory'})
            continue
        problem = name_problem(name, next_name)
        if problem:
            problems.append(problem)
            continue
        revision = parse_patch_name(name)
        if revision is None:
            ignored.append({'name': name, 'reason': 'not named patch-MMMM-mm-p.sql'})
            continue
        try:
            patches.append(load_patch(path, revision))
        except PatchSetError as exc:
            problems.extend(exc.problems)
    if 'sqitch.plan' in names:
        problems.insert(0, 'sqitch.plan: a sqitch project, not a patch directory: its deploy/revert/verify scripts '
                           'are not patches; copy each deploy script (without BEGIN/COMMIT) into a '
                           'patch-MMMM-mm-p.sql file')
    if problems:
        raise PatchSetError(problems)
    patches.sort(key=lambda patch: patch.revision)
    return PatchSet(directory=directory, patches=patches, ignored=ignored)


def ignored_sql_files(patch_set):
    """Names of the .sql files the patch set ignores: not named like a patch, and
    every .sql file under a subdirectory (never read: per-release folders, a
    sqitch deploy/ folder), as 'dir/file.sql' (hidden directories skipped)."""
    found = []
    for item in patch_set.ignored:
        if item['reason'] != 'directory':
            if item['name'].lower().endswith('.sql'):
                found.append(item['name'])
            continue
        if item['name'].startswith('.'):
            continue
        top = os.path.join(patch_set.directory, item['name'])
        for root, dirs, files in os.walk(top):
            dirs[:] = sorted(name for name in dirs if not name.startswith('.'))
            found.extend(os.path.relpath(os.path.join(root, name), patch_set.directory)
                         for name in sorted(files) if name.lower().endswith('.sql'))
    return found


# -- what the window would reject that the parser can see ----------------------

def _func_last_name(funcname):
    return (getattr(funcname[-1], 'sval', None) or '').lower() if funcname else ''


def _definition(options, name):
    for option in options or ():
        if getattr(option, 'defname', None) == name:
            arg = option.arg
            if isinstance(arg, (list, tuple)):
                return getattr(arg[0], 'sval', None) if arg else None
            return getattr(arg, 'sval', None)
    return None


def _plpgsql_actions(tree):
    """(kind, lineno, called procedure) for every COMMIT, ROLLBACK and CALL of
    a pglast.parse_plpgsql() result (nested blocks, IFs, loops included)."""
    stack = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            for key, value in item.items():
                if key in ('PLpgSQL_stmt_commit', 'PLpgSQL_stmt_rollback'):
                    yield key[len('PLpgSQL_stmt_'):].upper(), value.get('lineno') or 1, None
                elif key == 'PLpgSQL_stmt_call':
                    query = ((value.get('expr') or {}).get('PLpgSQL_expr') or {}).get('query') or ''
                    try:
                        [raw] = pglast.parse_sql(query)
                        called = _func_last_name(raw.stmt.funccall.funcname)
                    except Exception:  # not a plain CALL: nothing to follow
                        called = None
                    if called:
                        yield 'CALL', value.get('lineno') or 1, called
                stack.append(value)


def _plpgsql_body(sql, body, language, header):
    """The PL/pgSQL actions of ``body`` and the line (0-based, in ``sql``) it
    starts on; () when it is another language or does not parse (the server
    checks those itself)."""
    if (language or 'plpgsql').lower() != 'plpgsql' or body is None:
        return (), 0
    tag = '$fdt_body$'
    try:
        tree = pglast.parse_plpgsql('%s AS %s%s%s' % (header, tag, body, tag))
    except Exception:  # a body PostgreSQL would refuse at creation: not ours to judge
        return (), 0
    start = sql.find(body)
    return list(_plpgsql_actions(tree)), sql.count('\n', 0, start) if start >= 0 else 0


def _transaction_control(patches, procedure_source=None):
    """'file line N: cause' for every top-level CALL or DO that reaches COMMIT
    or ROLLBACK: a DO body's own, or a procedure's (created in the patch set,
    or in the database when ``procedure_source(name)`` gives its PL/pgSQL
    source), following CALLs from procedure to procedure."""
    created = {}   # name -> (patch, statement, actions, first body line)
    for patch in patches:
        for stmt in patch.statements:
            node = stmt.node
            if type(node).__name__ == 'CreateFunctionStmt' and node.is_procedure:
                actions, offset = _plpgsql_body(stmt.sql, _definition(node.options, 'as'),
                                                _definition(node.options, 'language'),
                                                'CREATE PROCEDURE fdt_check() LANGUAGE plpgsql')
                created[_func_last_name(node.funcname)] = ('%s line %%d' % patch.name, stmt.line + offset, actions)

    looked_up = {}

    def actions_of(name):
        if name in created:
            return created[name]
        if procedure_source is None:
            return None
        if name not in looked_up:
            source = procedure_source(name)
            actions = _plpgsql_body(source, source, 'plpgsql', 'CREATE PROCEDURE fdt_check() LANGUAGE plpgsql')[0] \
                if source else ()
            looked_up[name] = ('procedure %s (in the database) line %%d' % name, 1, actions)
        return looked_up[name]

    def reaches(name, seen):
        """'where: COMMIT' a procedure reaches, or None."""
        found = actions_of(name)
        if found is None or name in seen:
            return None
        where, first, actions = found
        for kind, lineno, called in actions:
            if kind != 'CALL':
                return '%s: %s' % (where % (first + lineno - 1), kind)
            deeper = reaches(called, seen | {name})
            if deeper:
                return deeper
        return None

    problems = []
    for patch in patches:
        for stmt in patch.statements:
            node = stmt.node
            name = type(node).__name__
            if name == 'CallStmt':
                called = _func_last_name(node.funccall.funcname)
                reached = reaches(called, frozenset())
                if reached:
                    problems.append('%s line %d: CALL %s reaches transaction control (%s), which PostgreSQL refuses '
                                    'inside the window\'s transaction ("invalid transaction termination"); '
                                    'run it outside the patch set' % (patch.name, stmt.line, called, reached))
            elif name == 'DoStmt':
                actions, offset = _plpgsql_body(stmt.sql, _definition(node.args, 'as'),
                                                _definition(node.args, 'language'),
                                                'CREATE FUNCTION fdt_check() RETURNS void LANGUAGE plpgsql')
                for kind, lineno, called in actions:
                    reached = '%s line %d: %s' % (patch.name, stmt.line + offset + lineno - 1, kind) \
                        if kind != 'CALL' else reaches(called, frozenset())
                    if reached:
                        problems.append('%s line %d: DO block reaches transaction control (%s), which PostgreSQL '
                                        'refuses inside the window\'s transaction ("invalid transaction '
                                        'termination"); remove the COMMIT/ROLLBACK: the tool commits once'
                                        % (patch.name, stmt.line, reached))
                        break
    return problems


def _body_string_constants(node):
    """The string constants of the body PostgreSQL runs or checks when the
    statement ``node`` runs: a DO block's, and a LANGUAGE sql function's or
    procedure's (its validator parses the body at creation, casting its
    constants); a PL/pgSQL function's body is not run at creation. Found by
    the SQL scanner; a body it cannot scan gives none."""
    name = type(node).__name__
    if name == 'DoStmt':
        body = _definition(node.args, 'as')
    elif name == 'CreateFunctionStmt' and (_definition(node.options, 'language') or '').lower() == 'sql':
        body = _definition(node.options, 'as')
    else:
        return set()
    try:
        tokens = list(pglast.parser.scan(body or ''))
    except Exception:  # another language's body (plpython...): the server judges it
        return set()
    return set(body[t.start + 1:t.end].replace("''", "'") for t in tokens if t.name == 'SCONST')


def _enum_values_used_too_soon(patches):
    """'file line N: cause' for a value an ALTER TYPE ... ADD VALUE adds that
    a later statement of the same transaction names - in the statement, or in
    the body a DO block runs or a LANGUAGE sql function's creation checks
    (_body_string_constants): PostgreSQL refuses it ("unsafe use of new
    value") unless the type itself is new in it."""
    new_types = set()
    added = {}   # value -> (type, file, line)
    problems = []
    for patch in patches:
        for stmt in patch.statements:
            node = stmt.node
            name = type(node).__name__
            if name == 'CreateEnumStmt':
                new_types.add(_func_last_name(node.typeName))
                continue
            if name == 'AlterEnumStmt' and node.newVal is not None and node.oldVal is None:
                type_name = _func_last_name(node.typeName)
                if type_name not in new_types:
                    added[node.newVal] = (type_name, patch.name, stmt.line)
                continue
            if not added:
                continue
            values = [getattr(getattr(item, 'val', None), 'sval', None)
                      for item in walk(node) if type(item).__name__ == 'A_Const']
            for value in values + sorted(_body_string_constants(node)):
                if value in added:
                    type_name, where, line = added[value]
                    problems.append(
                        "%s line %d: uses the enum value '%s' that %s line %d adds (ALTER TYPE %s ADD VALUE) in the "
                        'same transaction; PostgreSQL refuses a new enum value until it is committed ("unsafe use '
                        'of new value"): deploy the ADD VALUE first, in a deploy of its own'
                        % (patch.name, stmt.line, value, where, line, type_name))
                    break
    return problems


def _revision_row(node):
    """(major, minor, patch) an INSERT INTO LaunchpadDatabaseRevision writes,
    or None when it is not a plain VALUES row of integers."""
    select = node.selectStmt
    rows = getattr(select, 'valuesLists', None) if select is not None else None
    if not rows or len(rows) != 1:
        return None
    values = list(rows[0])
    columns = [col.name.lower() for col in node.cols or ()]
    if columns:
        values = [values[columns.index(c)] if c in columns else None for c in ('major', 'minor', 'patch')]
    numbers = [getattr(getattr(v, 'val', None), 'ival', None) for v in values[:3]]
    return tuple(numbers) if len(numbers) == 3 and all(isinstance(n, int) for n in numbers) else None


def _revision_rows(patches, launchpad):
    """'file line N: cause' for a LaunchpadDatabaseRevision row that is not
    its file's revision, and (Launchpad layout) a patch that writes none."""
    problems = []
    for patch in patches:
        rows = [s for s in patch.statements if s.kind == REVISION]
        for stmt in rows:
            row = _revision_row(stmt.node)
            if row != patch.revision:
                problems.append('%s line %d: inserts LaunchpadDatabaseRevision row %s, but the file is revision %s; '
                                'make it INSERT INTO LaunchpadDatabaseRevision VALUES (%d, %d, %d)'
                                % ((patch.name, stmt.line, format_revision(row) if row else 'that is not '
                                    '(major, minor, patch) integers', format_revision(patch.revision))
                                   + patch.revision))
        if launchpad and not rows:
            problems.append('%s line %d: writes no LaunchpadDatabaseRevision row; add: INSERT INTO '
                            'LaunchpadDatabaseRevision VALUES (%d, %d, %d);'
                            % ((patch.name, (patch.statements[-1].line if patch.statements else 1))
                               + patch.revision))
    return problems


def _order_impossible(pending):
    """'file line N: cause' for a hot patch that uses a table a cold patch
    numbered after it creates: in numbered order it runs first and fails."""
    created = {}
    for patch in pending:
        if patch.kind == COLD:
            for stmt in patch.statements:
                if type(stmt.node).__name__ in ('CreateStmt', 'CreateTableAsStmt'):
                    relation = stmt.node.relation if hasattr(stmt.node, 'relation') else stmt.node.into.rel
                    created.setdefault(relation.relname, (patch, stmt))
    problems = []
    for patch in pending:
        if patch.kind != HOT:
            continue
        for stmt in patch.statements:
            names = [n.relname for n in walk(stmt.node) if type(n).__name__ == 'RangeVar']
            later = [(name, created[name]) for name in names
                     if name in created and created[name][0].revision > patch.revision]
            if later:
                name, (creator, line) = later[0]
                problems.append('%s line %d: uses %s, which %s line %d creates, but %s is numbered before it and '
                                'runs first (hot and cold patches keep their numbered order); renumber %s after %s'
                                % (patch.name, stmt.line, name, creator.name, line.line, patch.name, patch.name,
                                   creator.name))
                break
    return problems


def window_problems(pending, launchpad=False, procedure_source=None, window=None):
    """Every reason the pending patches could not run as planned that the
    parser can see, as 'file line N: cause' strings (empty: none): transaction
    control reached from a DO block or a CALLed procedure, an enum value added
    and used in the same transaction (``window``: the cold patches of this
    deploy's transaction, default every pending cold patch), Launchpad revision
    rows that do not match their file (or are missing, in the Launchpad
    layout), a hot patch numbered before the cold patch it needs."""
    cold = [p for p in pending if p.kind == COLD] if window is None else window
    return (_transaction_control(cold, procedure_source) + _enum_values_used_too_soon(cold)
            + _revision_rows(pending, launchpad) + _order_impossible(pending))


def plan(patch_set, applied, revision_table=None, procedure_source=None):
    """What a deploy would do.

    ``applied`` maps (major, minor, patch) -> sha256 recorded in the database,
    or None when the revision table keeps no checksum (Launchpad's). Drift (an
    applied patch whose file changed) is reported here and refused by
    ``refuse_drift``; revisions with no file are reported only. ``refused``
    lists what the window would reject (``window_problems``; ``revision_table``
    says whether this is Launchpad's layout, ``procedure_source`` reads a
    database procedure's source).
    """
    pending, applied_names, drift, unverified = [], [], [], []
    files = {patch.revision: patch for patch in patch_set.patches}
    for patch in patch_set.patches:
        if patch.revision not in applied:
            pending.append(patch)
            continue
        recorded = applied[patch.revision]
        applied_names.append(patch.name)
        if recorded is None:
            unverified.append(patch.name)
        elif recorded not in (patch.equivalent_sha256 or {patch.sha256}):
            drift.append({'name': patch.name, 'revision': format_revision(patch.revision),
                          'applied_sha256': recorded, 'file_sha256': patch.sha256})
    missing = sorted(revision for revision in applied if revision not in files)
    launchpad = (revision_table or '').strip().lower() == LAUNCHPAD_REVISION_TABLE
    phases = _in_order(pending)
    return Plan(pending_hot=phases[0], pending_cold=phases[1], post_window_hot=phases[2], deferred=phases[3],
                applied=applied_names, drift=drift, missing_files=missing, unverified=unverified,
                ignored=list(patch_set.ignored),
                refused=window_problems(pending, launchpad, procedure_source, window=phases[1]),
                renamed=renamed_patches(missing, applied, pending))


def renamed_patches(missing, applied, pending):
    """[{'name', 'applied_revision', 'applied_name'}]: each pending patch whose checksum is
    the one recorded for a revision with no file (``missing``: revisions,
    ``applied``: revision -> sha256 or None, ``pending``: Patch list) - the
    applied patch's file renamed (or renumbered) since, not a new patch."""
    found = []
    for revision in missing:
        recorded = applied.get(revision)
        for patch in pending if recorded else ():
            if recorded in (patch.equivalent_sha256 or {patch.sha256}):
                found.append({'name': patch.name, 'applied_revision': format_revision(revision),
                              'applied_name': 'patch-%04d-%02d-%d.sql' % tuple(revision)})
                break
    return found


def _in_order(pending):
    """The pending patches (in numbered order) cut into the four runs of
    Plan: hot, cold, hot, then the rest. A patch with no schema statement
    changes no run: it joins the one it is numbered in (inside the window it
    is applied and recorded there, as a cold patch)."""
    runs = ([], [], [], [])
    stage = 0
    for patch in pending:
        if patch.empty:
            runs[stage].append(replace(patch, kind=COLD) if stage == 1 else patch)
            continue
        while stage < 3 and patch.kind != (HOT if stage in (0, 2) else COLD):
            stage += 1
        runs[stage].append(patch)
    return runs


def refuse_drift(the_plan):
    """PatchSetError when an applied patch's file has changed since, or a
    pending patch holds something the window would reject (``refused``)."""
    if the_plan.refused:
        more = ' (and %d more)' % (len(the_plan.refused) - 1) if len(the_plan.refused) > 1 else ''
        raise PatchSetError(the_plan.refused[0] + more)
    if the_plan.drift:
        first = the_plan.drift[0]
        more = ' (and %d more: %s)' % (len(the_plan.drift) - 1, ', '.join(d['name'] for d in the_plan.drift[1:])) \
            if len(the_plan.drift) > 1 else ''
        raise PatchSetError(
            '%s: changed since it was applied (database sha256 %s..., file %s...)%s; '
            'restore the applied version and put the change in a new patch'
            % (first['name'], first['applied_sha256'][:12], first['file_sha256'][:12], more))
