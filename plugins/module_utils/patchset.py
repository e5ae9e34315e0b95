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
from dataclasses import dataclass, field

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
    """A patch directory or file the tool refuses; str() is the operator message."""


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
    pending_hot: list
    pending_cold: list
    applied: list      # patch names already in the database, checksum agreeing
    drift: list        # [{'name', 'revision', 'applied_sha256', 'file_sha256'}]
    missing_files: list  # revisions recorded in the database with no file
    unverified: list   # applied patches whose row holds no checksum (Launchpad)
    ignored: list

    @property
    def pending(self):
        return self.pending_hot + self.pending_cold

    def as_dict(self):
        return {
            'pending_hot': [p.as_dict() for p in self.pending_hot],
            'pending_cold': [p.as_dict() for p in self.pending_cold],
            'applied': list(self.applied),
            'drift': list(self.drift),
            'missing_files': [format_revision(r) for r in self.missing_files],
            'unverified': list(self.unverified),
            'ignored': list(self.ignored),
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


def _has_concurrently_option(params):
    for param in params or ():
        if getattr(param, 'defname', None) == 'concurrently':
            return True
    return False


def _classify(node):
    """(kind, why-not) for one parsed statement: why-not is None when the kind
    is acceptable, else the reason the statement may not be in a patch."""
    name = type(node).__name__
    if name == 'TransactionStmt':
        return None, 'transaction control is not allowed in a patch: the tool runs every cold patch in one transaction'
    if name == 'IndexStmt' and node.concurrent:
        return HOT, None
    if name == 'DropStmt' and node.concurrent:
        return HOT, None
    if name == 'ReindexStmt':
        kind_name = getattr(node.kind, 'name', str(node.kind))
        if kind_name in ('REINDEX_OBJECT_SYSTEM', 'REINDEX_OBJECT_DATABASE'):
            return None, ('REINDEX SYSTEM/DATABASE cannot run in a transaction block; '
                          'use REINDEX ... CONCURRENTLY per table or index')
        return (HOT, None) if _has_concurrently_option(node.params) else (COLD, None)
    if name == 'VacuumStmt':
        # VACUUM refuses a transaction block; ANALYZE alone does not.
        return (HOT, None) if node.is_vacuumcmd else (COLD, None)
    if name == 'AlterTableStmt':
        for cmd in node.cmds or ():
            if getattr(getattr(cmd, 'def_', None), 'concurrent', False):
                return HOT, None
        return COLD, None
    if name == 'InsertStmt' and node.relation is not None \
            and node.relation.relname.lower() == LAUNCHPAD_REVISION_TABLE:
        return REVISION, None
    if name == 'VariableSetStmt':
        return SETTING, None
    if name in ('CreatedbStmt', 'DropdbStmt', 'CreateTableSpaceStmt', 'DropTableSpaceStmt',
                'AlterSystemStmt', 'CreateSubscriptionStmt', 'AlterSubscriptionStmt',
                'DropSubscriptionStmt'):
        return None, ('%s cannot run in a transaction block and is not a live schema change; '
                      'do it outside the patch set' % name)
    if name == 'ClusterStmt' and node.relation is None:
        return None, 'CLUSTER without a table cannot run in a transaction block; name the table'
    return COLD, None


def _index_target(node):
    """(schema, index name) a CREATE INDEX CONCURRENTLY builds, for recovery
    from a failed build; the index lives in the table's schema."""
    if type(node).__name__ != 'IndexStmt' or not node.concurrent:
        return None
    return (node.relation.schemaname if node.relation is not None else None, node.idxname)


def split_statements(text, name='<patch>'):
    """The statements of a patch as Statement objects, using the PostgreSQL
    parser; PatchSetError naming the file and line if it does not parse."""
    if not HAS_PGLAST:
        raise PatchSetError('pglast is not installed for the Python that runs this task (%s)'
                            % PGLAST_IMPORT_ERROR)
    try:
        raw_statements = pglast.parse_sql(text)
    except ParseError as exc:
        message = exc.args[0] if exc.args else str(exc)
        location = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else None
        where = ' line %d' % _line_of(text, location) if location is not None else ''
        raise PatchSetError('%s%s: does not parse: %s' % (name, where, message))
    statements = []
    for raw in raw_statements:
        start = raw.stmt_location or 0
        # stmt_len 0 means "up to the end of the text" (last statement, no ';').
        end = start + raw.stmt_len if raw.stmt_len else len(text)
        sql = text[start:end].strip().rstrip(';').rstrip()
        line = _line_of(text, start)
        kind, refused = _classify(raw.stmt)
        if refused:
            raise PatchSetError('%s line %d: %s' % (name, line, refused))
        statements.append(Statement(sql=sql, line=line, kind=kind,
                                    command=type(raw.stmt).__name__,
                                    index=_index_target(raw.stmt), node=raw.stmt))
    return statements


def patch_kind(statements, name='<patch>'):
    """HOT or COLD for a whole patch; a mix is refused, naming both lines."""
    hot = [s for s in statements if s.kind == HOT]
    cold = [s for s in statements if s.kind == COLD]
    if hot and cold:
        raise PatchSetError(
            '%s: mixes live statements (line %d: %s) with transactional ones (line %d: %s); '
            'split it into a hot patch and a cold patch'
            % (name, hot[0].line, hot[0].command, cold[0].line, cold[0].command))
    return HOT if hot else COLD


def load_patch(path, revision=None):
    """Read, checksum, split and classify one patch file."""
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
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError as exc:
        raise PatchSetError('%s line %d: not valid UTF-8 (byte offset %d)'
                            % (name, data.count(b'\n', 0, exc.start) + 1, exc.start))
    statements = split_statements(text, name)
    return Patch(name=name, path=path, revision=revision, sha256=sha256_of(data),
                 kind=patch_kind(statements, name), statements=statements)


def load_patch_set(directory):
    """Every patch of ``directory`` in revision order, plus the entries that are
    not patches (listed with the reason, never skipped silently)."""
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        raise PatchSetError('patch directory %s: cannot list: %s' % (directory, exc.strerror or exc))
    patches = []
    ignored = []
    seen = {}
    for name in names:
        path = os.path.join(directory, name)
        if os.path.isdir(path):
            ignored.append({'name': name, 'reason': 'directory'})
            continue
        revision = parse_patch_name(name)
        if revision is None:
            ignored.append({'name': name, 'reason': 'not named patch-MMMM-mm-p.sql'})
            continue
        if revision in seen:  # pragma: no cover - the strict name makes this impossible
            raise PatchSetError('%s and %s: same revision %s' % (seen[revision], name, format_revision(revision)))
        seen[revision] = name
        patches.append(load_patch(path, revision))
    patches.sort(key=lambda patch: patch.revision)
    return PatchSet(directory=directory, patches=patches, ignored=ignored)


def plan(patch_set, applied):
    """What a deploy would do.

    ``applied`` maps (major, minor, patch) -> sha256 recorded in the database,
    or None when the revision table keeps no checksum (Launchpad's). Drift (an
    applied patch whose file changed) is reported here and refused by
    ``refuse_drift``; revisions with no file are reported only.
    """
    pending_hot, pending_cold, applied_names, drift, unverified = [], [], [], [], []
    files = {patch.revision: patch for patch in patch_set.patches}
    for patch in patch_set.patches:
        if patch.revision not in applied:
            (pending_hot if patch.kind == HOT else pending_cold).append(patch)
            continue
        recorded = applied[patch.revision]
        applied_names.append(patch.name)
        if recorded is None:
            unverified.append(patch.name)
        elif recorded != patch.sha256:
            drift.append({'name': patch.name, 'revision': format_revision(patch.revision),
                          'applied_sha256': recorded, 'file_sha256': patch.sha256})
    missing = sorted(revision for revision in applied if revision not in files)
    return Plan(pending_hot=pending_hot, pending_cold=pending_cold, applied=applied_names,
                drift=drift, missing_files=missing, unverified=unverified,
                ignored=list(patch_set.ignored))


def refuse_drift(the_plan):
    """PatchSetError when an applied patch's file has changed since."""
    if the_plan.drift:
        first = the_plan.drift[0]
        more = ' (and %d more: %s)' % (len(the_plan.drift) - 1, ', '.join(d['name'] for d in the_plan.drift[1:])) \
            if len(the_plan.drift) > 1 else ''
        raise PatchSetError(
            '%s: changed since it was applied (database sha256 %s..., file %s...)%s; '
            'restore the applied version and put the change in a new patch'
            % (first['name'], first['applied_sha256'][:12], first['file_sha256'][:12], more))
