# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The database objects the pending patches name that must exist when a statement runs, and the ones
they CREATE that must not exist yet - each looked up in the primary's catalog by the pre-flight
(``patch_objects``), so that an outage that opens is one that can commit.

A pg_dump of a schema (plain format) carries CREATE SCHEMA, CREATE COLLATION, CREATE TYPE, CREATE
SEQUENCE, ``... TABLESPACE x``, CREATE FOREIGN TABLE ... SERVER s, COMMENT ON SCHEMA...: as a cold patch
each passed the pre-flight and failed inside the window ("schema ... does not exist", "tablespace ... does
not exist", "server ... does not exist", "relation ... already exists"), which rolled back with every
client paused for nothing.

- ``statement_objects(node)``: [(kind, key, action, optional)] one parsed statement names: ``kind`` in
  KINDS (PostgreSQL's words: schema, relation, type, collation, tablespace, server, foreign-data wrapper,
  extension, role), ``key`` (schema or None, name) - the schema only for relations, types and collations,
  ``action`` NEEDS (must exist), CREATES (must not exist, unless ``optional``: IF NOT EXISTS) or DROPS
  (must exist unless ``optional``: IF EXISTS).
- ``pending_lookups(patches)``: what to look up for the pending patches in order, each statement seeing
  what the earlier pending statements create and drop (those are settled without the catalog): one
  Lookup per name and statement, where it is first needed.
- ``probe_rows(lookups)`` / ``OBJECTS_SQL``: the rows one catalog read answers (to_regclass,
  to_regtype, to_regcollation, to_regnamespace and the catalogs of the global objects: no lock taken);
  ``failures(lookups, found)``: what the window would fail on.
- ``setval_sequences(patches)``: ``SELECT setval('s', ...)`` of a sequence no earlier pending statement
  creates - a sequence's value is not transactional: when the window rolls back, the sequence keeps the
  value the patch set (the pre-flight warns).

Unqualified names are looked up in the deploy session's own search_path (the pre-flight's connection is
the same user on the same database); under a search_path the patch sets itself only "is there a schema
to create in" is judged (as locks.resolved_key, the rest is left to the window). A name a pending CREATE
EXTENSION may create (a type, a foreign-data wrapper) is a warning, not a failure: only the window can tell.

Pure except for the SQL text: no database here; unit-tested without one.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import locks
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.patchset import HOT, walk

SCHEMA, RELATION, TYPE, COLLATION, TABLESPACE, SERVER, FDW, EXTENSION, ROLE = KINDS = (
    'schema', 'relation', 'type', 'collation', 'tablespace', 'server', 'foreign-data wrapper', 'extension', 'role')
# A CREATE INDEX CONCURRENTLY's name: a relation, but one that is an INVALID index does not count.
VALID_INDEX = 'valid index'
# A table's column and constraint: key (schema or None, table, name).
COLUMN, CONSTRAINT = 'column', 'constraint'
TABLE_PARTS = (COLUMN, CONSTRAINT)
QUALIFIED = (RELATION, TYPE, COLLATION, VALID_INDEX, COLUMN, CONSTRAINT)
# ALTER TABLE commands that name an existing column (cmd.name).
COLUMN_COMMANDS = ('AT_ColumnDefault', 'AT_DropNotNull', 'AT_SetNotNull', 'AT_AlterColumnType', 'AT_SetStatistics',
                   'AT_SetStorage', 'AT_SetCompression', 'AT_DropExpression', 'AT_AddIdentity', 'AT_DropIdentity')
NEEDS, CREATES, DROPS = 'needs', 'creates', 'drops'
# The search_path check: an unqualified CREATE under a path the patch set, with no schema of it existing.
SEARCH_PATH = 'search_path'
# Schemas every database has; names PostgreSQL resolves without the catalog.
BUILTIN_SCHEMAS = ('pg_catalog', 'information_schema', 'pg_temp', 'pg_toast')
# CREATE TABLE's column "types" that are no type: the parser turns them into a sequence and a default.
SERIALS = ('serial', 'serial2', 'serial4', 'serial8', 'smallserial', 'bigserial')
# Relation kinds a DROP, a COMMENT, an ALTER ... RENAME name by a dotted name.
RELATION_OBJECTS = ('OBJECT_TABLE', 'OBJECT_VIEW', 'OBJECT_MATVIEW', 'OBJECT_INDEX', 'OBJECT_SEQUENCE',
                    'OBJECT_FOREIGN_TABLE')
TYPE_OBJECTS = ('OBJECT_TYPE', 'OBJECT_DOMAIN')
# DROP/COMMENT/ALTER ... OWNER of a global object, named by one String: its kind.
GLOBAL_OBJECTS = {'OBJECT_SCHEMA': SCHEMA, 'OBJECT_TABLESPACE': TABLESPACE, 'OBJECT_FOREIGN_SERVER': SERVER,
                  'OBJECT_FDW': FDW, 'OBJECT_EXTENSION': EXTENSION}


def _name(value):
    return getattr(value, 'name', str(value))


def _strings(names):
    return [getattr(n, 'sval', None) for n in names or ()]


def _dotted(names):
    """(schema or None, name) of a dotted name's String nodes (a catalog name in front dropped)."""
    strings = [s for s in _strings(names) if s is not None]
    if not strings:
        return None
    return (strings[-2] if len(strings) > 1 else None, strings[-1])


def _relation(range_var):
    return (range_var.schemaname or None, range_var.relname) if range_var is not None else None


def _type_key(type_name):
    """A TypeName's key, None for what is not looked up (%TYPE, serial, a name of no String)."""
    if type_name is None or type_name.pct_type:
        return None
    key = _dotted(type_name.names)
    if key is None or key[0] is None and key[1] in SERIALS:
        return None
    return key


def _object_names(node):
    """The dotted names (lists of String) of a DROP/COMMENT/ALTER OWNER object slot."""
    if isinstance(node, (list, tuple)):
        if node and all(type(n).__name__ == 'String' for n in node):
            return [node]
        return [n for n in node if isinstance(n, (list, tuple))]
    return []


def _global_name(node):
    return getattr(node, 'sval', None)


def _references(node):
    """(kind, key) of every type, collation and tablespace a statement names anywhere in its tree."""
    found = []
    for sub in walk(node):
        kind = type(sub).__name__
        if kind == 'TypeName':
            key = _type_key(sub)
            if key is not None:
                found.append((TYPE, key))
        elif kind == 'CollateClause':
            key = _dotted(sub.collname)
            if key is not None:
                found.append((COLLATION, key))
        elif kind == 'Constraint' and sub.indexspace:
            found.append((TABLESPACE, (None, sub.indexspace)))
        elif kind == 'AlterTableCmd' and _name(sub.subtype) == 'AT_SetTableSpace' and sub.name:
            found.append((TABLESPACE, (None, sub.name)))
    return found


def _created(node, kind):
    """[(kind, key, CREATES, optional)] of a CREATE statement ``node`` (its class name ``kind``)."""
    if kind == 'CreateStmt':
        return [(RELATION, _relation(node.relation), CREATES, bool(node.if_not_exists))]
    if kind == 'CreateForeignTableStmt':
        return [(RELATION, _relation(node.base.relation), CREATES, bool(node.base.if_not_exists))]
    if kind == 'CreateSeqStmt':
        return [(RELATION, _relation(node.sequence), CREATES, bool(node.if_not_exists))]
    if kind == 'ViewStmt':
        return [(RELATION, _relation(node.view), CREATES, bool(node.replace))]
    if kind == 'CreateTableAsStmt' and node.into is not None:
        return [(RELATION, _relation(node.into.rel), CREATES, bool(node.if_not_exists))]
    if kind == 'IndexStmt' and node.idxname and node.relation is not None:
        # CONCURRENTLY (a hot patch): an INVALID index of the name, left by a failed build, is dropped by the hot
        # phase before it runs the statement again (schema._drop_invalid_index): only a valid one is in the way
        return [(VALID_INDEX if node.concurrent else RELATION, (node.relation.schemaname or None, node.idxname),
                 CREATES, bool(node.if_not_exists))]
    if kind == 'CreateSchemaStmt' and node.schemaname:
        return [(SCHEMA, (None, node.schemaname), CREATES, bool(node.if_not_exists))]
    if kind in ('CreateEnumStmt', 'CreateRangeStmt'):
        return [(TYPE, _dotted(node.typeName), CREATES, False)]
    if kind == 'CompositeTypeStmt':
        return [(TYPE, _relation(node.typevar), CREATES, False)]
    if kind == 'CreateDomainStmt':
        return [(TYPE, _dotted(node.domainname), CREATES, False)]
    if kind == 'DefineStmt' and _name(node.kind) in ('OBJECT_TYPE', 'OBJECT_COLLATION'):
        what = TYPE if _name(node.kind) == 'OBJECT_TYPE' else COLLATION
        shell = what == TYPE and not node.args and not node.definition   # CREATE TYPE t; (a shell, filled later)
        return [(what, _dotted(node.defnames), CREATES, bool(node.if_not_exists) or shell)]
    if kind == 'CreateForeignServerStmt':
        return [(SERVER, (None, node.servername), CREATES, bool(node.if_not_exists))]
    if kind == 'CreateFdwStmt':
        return [(FDW, (None, node.fdwname), CREATES, False)]
    if kind == 'CreateExtensionStmt':
        return [(EXTENSION, (None, node.extname), CREATES, bool(node.if_not_exists))]
    if kind == 'CreateRoleStmt':
        return [(ROLE, (None, node.role), CREATES, False)]
    return []


def _dropped(node, kind):
    """[(kind, key, DROPS, optional)] of a DROP statement."""
    if kind == 'DropRoleStmt':
        return [(ROLE, (None, r.rolename), DROPS, bool(node.missing_ok)) for r in node.roles or ()
                if getattr(r, 'rolename', None)]
    if kind != 'DropStmt':
        return []
    what = _name(node.removeType)
    out = []
    for item in node.objects or ():
        if what in RELATION_OBJECTS:
            key, target = _dotted(item if isinstance(item, (list, tuple)) else ()), RELATION
        elif what in TYPE_OBJECTS:
            key, target = _type_key(item) if type(item).__name__ == 'TypeName' else None, TYPE
        elif what == 'OBJECT_COLLATION':
            key, target = _dotted(item if isinstance(item, (list, tuple)) else ()), COLLATION
        elif what in GLOBAL_OBJECTS:
            name = _global_name(item)
            key, target = (None, name) if name else None, GLOBAL_OBJECTS[what]
        else:
            continue
        if key is not None:
            out.append((target, key, DROPS, bool(node.missing_ok)))
    return out


def _needed(node, kind):
    """[(kind, key, NEEDS, False)] the statement names that must exist, beyond _references."""
    out = []
    if kind not in ('DropStmt', 'CreateTableAsStmt') and not getattr(node, 'missing_ok', False):
        # the relations locks models (ALTER TABLE, CREATE INDEX's table, a FOREIGN KEY's, a parent...)
        out += [(RELATION, key, NEEDS, False) for key, dummy in locks.statement_locks(node)
                if key is not None and not (kind == 'ViewStmt' and node.replace)]
    if kind in ('CreateStmt', 'CreateForeignTableStmt'):
        base = node.base if kind == 'CreateForeignTableStmt' else node
        if base.tablespacename:
            out.append((TABLESPACE, (None, base.tablespacename), NEEDS, False))
    if kind == 'CreateForeignTableStmt' and node.servername:
        out.append((SERVER, (None, node.servername), NEEDS, False))
    if kind == 'IndexStmt' and node.tableSpace:
        out.append((TABLESPACE, (None, node.tableSpace), NEEDS, False))
    if kind == 'CreateTableAsStmt' and node.into is not None and node.into.tableSpaceName:
        out.append((TABLESPACE, (None, node.into.tableSpaceName), NEEDS, False))
    if kind in ('CreateUserMappingStmt', 'AlterUserMappingStmt', 'AlterForeignServerStmt') and node.servername:
        out.append((SERVER, (None, node.servername), NEEDS, False))
    if kind == 'ImportForeignSchemaStmt':
        out += [(SERVER, (None, node.server_name), NEEDS, False), (SCHEMA, (None, node.local_schema), NEEDS, False)]
    if kind == 'CreateForeignServerStmt' and node.fdwname:
        out.append((FDW, (None, node.fdwname), NEEDS, False))
    if kind in ('CommentStmt', 'AlterOwnerStmt'):
        what = _name(node.objtype if kind == 'CommentStmt' else node.objectType)
        if what in GLOBAL_OBJECTS and _global_name(node.object):
            out.append((GLOBAL_OBJECTS[what], (None, _global_name(node.object)), NEEDS, False))
        elif what in TYPE_OBJECTS and type(node.object).__name__ == 'TypeName':
            key = _type_key(node.object)
            out += [(TYPE, key, NEEDS, False)] if key else []
        elif what == 'OBJECT_COLLATION':
            key = _dotted(node.object if isinstance(node.object, (list, tuple)) else ())
            out += [(COLLATION, key, NEEDS, False)] if key else []
        elif kind == 'AlterOwnerStmt' and node.relation is not None:
            out.append((RELATION, _relation(node.relation), NEEDS, False))
    if kind == 'GrantStmt' and _name(node.objtype) == 'OBJECT_SCHEMA' or \
            kind == 'GrantStmt' and _name(node.targtype) == 'ACL_TARGET_ALL_IN_SCHEMA':
        out += [(SCHEMA, (None, _global_name(o)), NEEDS, False) for o in node.objects or () if _global_name(o)]
    if kind == 'RenameStmt' and _name(node.renameType) in GLOBAL_OBJECTS and node.subname:
        what = GLOBAL_OBJECTS[_name(node.renameType)]
        out += [(what, (None, node.subname), DROPS, False), (what, (None, node.newname), CREATES, False)]
    elif kind == 'RenameStmt' and _name(node.renameType) in RELATION_OBJECTS and node.relation is not None:
        out.append((RELATION, (node.relation.schemaname or None, node.newname), CREATES, False))
    if kind in ('AlterEnumStmt',):
        out.append((TYPE, _dotted(node.typeName), NEEDS, False))
    return out


def _table_parts(node, kind):
    """[(COLUMN or CONSTRAINT, (schema, table, name), action, optional)] of ALTER TABLE's ADD/DROP COLUMN, ADD/DROP
    CONSTRAINT, the columns its ALTER COLUMN commands name, and RENAME COLUMN/CONSTRAINT: ADD COLUMN of a column the
    table has ("column ... already exists") and DROP of one it lacks fail, unless IF [NOT] EXISTS."""
    renamed = _name(node.renameType) if kind == 'RenameStmt' else None
    if renamed in ('OBJECT_COLUMN', 'OBJECT_TABCONSTRAINT') and node.relation is not None:
        what = COLUMN if renamed == 'OBJECT_COLUMN' else CONSTRAINT
        table = _relation(node.relation)
        return [(what, table + (node.subname,), DROPS, bool(node.missing_ok)),
                (what, table + (node.newname,), CREATES, False)]
    if kind != 'AlterTableStmt' or node.relation is None or node.missing_ok or \
            _name(node.objtype) not in ('OBJECT_TABLE', 'OBJECT_FOREIGN_TABLE'):
        return []
    table, out = _relation(node.relation), []
    for cmd in node.cmds or ():
        sub = _name(cmd.subtype)
        definition = cmd.def_
        if sub == 'AT_AddColumn' and getattr(definition, 'colname', None):
            out.append((COLUMN, table + (definition.colname,), CREATES, bool(cmd.missing_ok)))
        elif sub == 'AT_AddConstraint' and getattr(definition, 'conname', None):
            out.append((CONSTRAINT, table + (definition.conname,), CREATES, False))
        elif sub == 'AT_DropColumn' and cmd.name:
            out.append((COLUMN, table + (cmd.name,), DROPS, bool(cmd.missing_ok)))
        elif sub == 'AT_DropConstraint' and cmd.name:
            out.append((CONSTRAINT, table + (cmd.name,), DROPS, bool(cmd.missing_ok)))
        elif sub in COLUMN_COMMANDS and cmd.name:
            out.append((COLUMN, table + (cmd.name,), NEEDS, False))
    return out


def _setval_target(node):
    """The sequence key of ``SELECT [pg_catalog.]setval('name', ...)`` (a constant name), else None."""
    if type(node).__name__ != 'SelectStmt' or node.fromClause or not node.targetList:
        return None
    for target in node.targetList:
        call = getattr(target, 'val', None)
        if type(call).__name__ != 'FuncCall' or _strings(call.funcname)[-1:] != ['setval'] or not call.args:
            continue
        return _dotted_text(locks.const_text(call.args[0]))
    return None


def _dotted_text(text):
    """(schema or None, name) of a relation name written in a string ('s.t', '"S"."t"'), as regclass
    input reads it (unquoted down-cased), else None."""
    parts = re.findall(r'\s*("(?:[^"]|"")*"|[^."\s]+)\s*(?:\.|$)', text or '')
    if not parts or len(parts) > 3:
        return None
    names = [p[1:-1].replace('""', '"') if p.startswith('"') else p.lower() for p in parts]
    return (names[-2] if len(names) > 1 else None, names[-1])


def statement_objects(node):
    """[(kind, key, action, optional)] of one parsed statement (see the module docstring), in the order
    PostgreSQL meets them: what it needs, then what it creates or drops."""
    if node is None:
        return []
    kind = type(node).__name__
    needed = _needed(node, kind)
    if kind not in ('DropStmt', 'DropRoleStmt'):
        needed += [(what, key, NEEDS, False) for what, key in _references(node)]
    sequence = _setval_target(node)
    if sequence is not None:
        needed.append((RELATION, sequence, NEEDS, False))
    out, seen = [], set()
    for item in needed + _created(node, kind) + _dropped(node, kind) + _table_parts(node, kind):
        if item[1] is None or not item[1][1] or (item[0], item[1], item[2]) in seen:
            continue
        seen.add((item[0], item[1], item[2]))
        out.append(item)
    # the schema of every qualified name the statement needs or creates
    schemas = [(SCHEMA, (None, key[0]), NEEDS, False) for what, key, action, dummy in out
               if what in QUALIFIED and key[0] and key[0] not in BUILTIN_SCHEMAS and action != DROPS]
    return list(dict.fromkeys(schemas)) + out


class Lookup:
    """One name of one statement to look up: ``kind``, ``key``, ``expect`` (NEEDS: it must exist;
    CREATES: it must not; SEARCH_PATH: one schema of ``key[1]``, a tuple, must exist), where (``patch``,
    ``line``, ``statement``: its first words), and ``extensions``: the extensions earlier pending
    statements create (a name they may create is only a warning when missing); ``hot``: of a hot patch."""

    __slots__ = ('patch', 'line', 'statement', 'kind', 'key', 'expect', 'extensions', 'hot')

    def __init__(self, patch, line, statement, kind, key, expect, extensions=(), hot=False):
        self.patch, self.line, self.statement = patch, line, statement
        self.kind, self.key, self.expect, self.extensions = kind, key, expect, tuple(extensions)
        self.hot = hot   # a hot patch's: it runs live, before (or after) the window, not in it

    def __repr__(self):
        return 'Lookup(%r, %r, %r, %r, %r)' % (self.patch, self.line, self.kind, self.key, self.expect)


def pending_lookups(patches):
    """[Lookup] of the pending ``patches`` (patchset.Patch, in order; hot and cold alike - both run after
    the pre-flight), each name where it is first needed or created: what an earlier pending statement
    creates or drops is settled without the catalog (a CREATE of what an earlier one drops passes, a
    need of what an earlier one creates passes). Unqualified names under a search_path the patch set are
    left to the window, but an unqualified CREATE there needs one schema of that path to exist."""
    state, extensions, out, asked = {}, [], [], set()
    for patch in patches:
        for statement, path, temps in zip(patch.statements, locks.search_paths(patch.statements),
                                          locks.temp_states(patch.statements)):
            node = statement.node
            if node is None:
                continue
            words = ' '.join(statement.sql.split()[:3])
            temp = locks.temp_created(node)
            for kind, key, action, optional in statement_objects(node):
                if kind in QUALIFIED and key[0] is None:
                    if path is not locks.DEFAULT_PATH:
                        schemas = tuple(s for s in path if s not in ('$user', 'pg_temp'))
                        if action == CREATES and path != locks.ANY_SCHEMA and temp is None and not any(
                                state.get((SCHEMA, (None, s))) == CREATES for s in schemas):
                            item = (SEARCH_PATH, (None, schemas), patch.name)
                            if item not in asked:
                                asked.add(item)
                                out.append(Lookup(patch.name, statement.line, words, SEARCH_PATH, (None, schemas),
                                                  SEARCH_PATH, hot=patch.kind == HOT))
                        continue
                    if kind in (RELATION,) + TABLE_PARTS and (key[1] in temps or key[1] == temp):
                        continue
                if kind in (RELATION,) + TABLE_PARTS and (key[0] == 'pg_temp' or temp is not None and key[1] == temp):
                    continue
                known = state.get((kind, key))
                if kind in TABLE_PARTS and known is None and state.get((RELATION, key[:2])) == CREATES:
                    if action == CREATES:   # a table the patches create: the catalog has none of its parts
                        state[(kind, key)] = CREATES
                    continue
                if action == DROPS:
                    if known is None and not optional:
                        _ask(out, asked, statement, patch, words, kind, key, NEEDS, extensions)
                    state[(kind, key)] = DROPS
                    continue
                if action == NEEDS:
                    if known is None:
                        _ask(out, asked, statement, patch, words, kind, key, NEEDS, extensions)
                    continue
                # CREATES
                schema_created = kind in QUALIFIED and key[0] and state.get((SCHEMA, (None, key[0]))) == CREATES
                if known is None and not optional and not schema_created:
                    _ask(out, asked, statement, patch, words, kind, key, CREATES, extensions)
                state[(kind, key)] = CREATES
                if kind == RELATION:   # a table, view, sequence is a type of its name too
                    state[(TYPE, key)] = CREATES
                if kind == VALID_INDEX:
                    state[(RELATION, key)] = CREATES
                if kind == EXTENSION:
                    extensions.append(key[1])
    return out


def _ask(out, asked, statement, patch, words, kind, key, expect, extensions):
    item = (kind, key, expect)
    if item in asked:
        return
    asked.add(item)
    out.append(Lookup(patch.name, statement.line, words, kind, key, expect, extensions, hot=patch.kind == HOT))


def probe_row(kind, key, creates=False):
    """The (kind, schema, name, creates, part) row OBJECTS_SQL answers for one name: ``creates`` qualifies an
    unqualified name with the creation schema (not a column's or constraint's table: it is looked up)."""
    if kind in TABLE_PARTS:
        return (kind, key[0], key[1], False, key[2])
    return (kind, key[0], key[1], bool(creates), None)


def _row(lookup):
    return probe_row(lookup.kind, lookup.key, lookup.expect == CREATES)


def probe_rows(lookups):
    """The rows (probe_row) OBJECTS_SQL answers for ``lookups``, in order, each once."""
    rows = []
    for lookup in lookups:
        if lookup.kind == SEARCH_PATH:
            rows += [probe_row(SCHEMA, (None, s)) for s in lookup.key[1]]
        else:
            rows.append(_row(lookup))
    return list(dict.fromkeys(rows))


# Whether each (kind, schema, name) exists, without a lock: the to_reg* functions (NULL for what is
# missing, a missing schema included) and the catalogs of the global objects. An unqualified name is
# resolved in the session's search_path, one to be created in the schema PostgreSQL creates it in
# (current_schema(): the first schema of the path that exists).
OBJECTS_SQL = """
SELECT t.ord - 1 AS target, CASE t.kind
         WHEN 'schema' THEN to_regnamespace(quote_ident(t.name)) IS NOT NULL
         WHEN 'relation' THEN to_regclass(q.name) IS NOT NULL
         WHEN 'valid index' THEN to_regclass(q.name) IS NOT NULL
                                 AND NOT EXISTS (SELECT FROM pg_index i
                                                  WHERE i.indexrelid = to_regclass(q.name) AND NOT i.indisvalid)
         WHEN 'type' THEN to_regtype(q.name) IS NOT NULL
         WHEN 'collation' THEN to_regcollation(q.name) IS NOT NULL
         WHEN 'tablespace' THEN EXISTS (SELECT FROM pg_tablespace WHERE spcname = t.name)
         WHEN 'server' THEN EXISTS (SELECT FROM pg_foreign_server WHERE srvname = t.name)
         WHEN 'foreign-data wrapper' THEN EXISTS (SELECT FROM pg_foreign_data_wrapper WHERE fdwname = t.name)
         WHEN 'extension' THEN EXISTS (SELECT FROM pg_extension WHERE extname = t.name)
         WHEN 'role' THEN EXISTS (SELECT FROM pg_roles WHERE rolname = t.name)
         WHEN 'column' THEN EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = to_regclass(q.name)
                                                                 AND a.attname = t.part AND a.attnum > 0
                                                                 AND NOT a.attisdropped)
         WHEN 'constraint' THEN EXISTS (SELECT FROM pg_constraint c WHERE c.conrelid = to_regclass(q.name)
                                                                      AND c.conname = t.part)
       END AS found
  FROM unnest(%(kinds)s::text[], %(schemas)s::text[], %(names)s::text[], %(creates)s::bool[], %(parts)s::text[])
       WITH ORDINALITY AS t(kind, schema, name, creates, part, ord)
 CROSS JOIN LATERAL (SELECT CASE WHEN coalesce(t.schema, CASE WHEN t.creates THEN current_schema() END) IS NULL
                                 THEN quote_ident(t.name)
                                 ELSE quote_ident(coalesce(t.schema, current_schema())) || '.' || quote_ident(t.name)
                            END AS name) AS q
 ORDER BY t.ord
"""


def probe_params(rows):
    """OBJECTS_SQL's parameters for probe_rows' ``rows``."""
    return {'kinds': [r[0] for r in rows], 'schemas': [r[1] for r in rows], 'names': [r[2] for r in rows],
            'creates': [r[3] for r in rows], 'parts': [r[4] for r in rows]}


def failures(lookups, found):
    """[(lookup, cause, maybe)] of the lookups the window would fail on: ``found`` maps each probe row
    (probe_rows) to whether it exists. ``cause`` in PostgreSQL's words ('schema "s" does not exist',
    'relation "s.t" already exists', 'no schema has been selected to create in'); ``maybe``: the name
    was missing but an earlier pending CREATE EXTENSION may create it (a warning). A missing schema
    hides the missing objects in it (one cause, not one per object); rows not answered are not judged."""
    missing_schemas = set(l.key[1] for l in lookups if l.kind == SCHEMA and l.expect == NEEDS
                          and found.get(_row(l)) is False)
    missing_tables = set(l.key for l in lookups if l.kind == RELATION and l.expect == NEEDS
                         and found.get(_row(l)) is False)
    out = []
    for lookup in lookups:
        if lookup.kind == SEARCH_PATH:
            answers = [found.get(probe_row(SCHEMA, (None, s))) for s in lookup.key[1]]
            if answers and None not in answers and not any(answers) or not lookup.key[1]:
                out.append((lookup, 'no schema has been selected to create in (search_path %s: %s)' % (
                    ', '.join(lookup.key[1]) or "''", 'none of them exists' if lookup.key[1] else 'empty'), False))
            continue
        exists = found.get(_row(lookup))
        if exists is None:
            continue
        if lookup.expect == NEEDS and not exists:
            if lookup.kind in QUALIFIED and lookup.key[0] in missing_schemas or lookup.key[1] in lookup.extensions \
                    or lookup.kind in TABLE_PARTS and lookup.key[:2] in missing_tables:
                continue   # one cause per missing schema or table; the extension's own name (postgres_fdw, citext...)
            out.append((lookup, '%s does not exist' % object_text(lookup.kind, lookup.key),
                        bool(lookup.extensions) and lookup.kind in (TYPE, FDW, COLLATION, RELATION)))
        elif lookup.expect == CREATES and exists:
            out.append((lookup, '%s already exists' % object_text(lookup.kind, lookup.key), False))
    return out


def object_text(kind, key):
    """'relation "s.t"', 'schema "s"' - as PostgreSQL's messages name them."""
    if kind in TABLE_PARTS:
        return '%s "%s" of relation "%s"' % (kind, key[2], '.'.join(k for k in key[:2] if k))
    name = '.'.join(k for k in key if k)
    return '%s "%s"' % (RELATION if kind == VALID_INDEX else kind, name)


def setval_sequences(patches):
    """[(patch, statement, sequence key)] of each ``SELECT setval('name', ...)`` in the pending
    ``patches`` whose sequence no earlier pending statement creates: a sequence's value is not
    transactional, so when the window rolls back, that existing sequence keeps the value set (a
    sequence the patches create is rolled back with its creation)."""
    created, out = set(), []
    for patch in patches:
        for statement in patch.statements:
            node = statement.node
            if node is None:
                continue
            sequence = _setval_target(node)
            if sequence is not None and sequence not in created and (None, sequence[1]) not in created:
                out.append((patch, statement, sequence))
            for kind, key, action, dummy in _created(node, type(node).__name__):
                if kind == RELATION and action == CREATES:
                    created.add(key)
    return out


# The schema privileges a statement needs (PostgreSQL's "Privileges"): CREATE on the schema a new relation,
# type, domain or collation goes in, USAGE on the schema of every qualified name it looks up.
CREATE_ON_SCHEMA, USAGE_ON_SCHEMA = 'CREATE', 'USAGE'


def schema_privileges(patches):
    """[(patch, statement, schema or None, privilege)] of the pending ``patches``, each (schema, privilege)
    where first needed: CREATE on the schema each CREATE TABLE/VIEW/SEQUENCE/TYPE/DOMAIN/COLLATION... puts its
    object in (None: the deploy session's creation schema, current_schema(), for an unqualified name under
    its own search_path), USAGE on the schema of each qualified name looked up; not a schema an earlier
    pending statement creates (the deploy user owns it), nor pg_catalog's; an unqualified name under a
    search_path the patch sets is left to the window. A CREATE INDEX needs the table's ownership, not CREATE
    on its schema."""
    created, out, seen = set(), [], set()
    for patch in patches:
        for statement, path in zip(patch.statements, locks.search_paths(patch.statements)):
            node = statement.node
            if node is None:
                continue
            kind = type(node).__name__
            temp = locks.temp_created(node)
            wanted = []
            for what, key, action, dummy in statement_objects(node):
                if what == SCHEMA and action == CREATES:
                    created.add(key[1])
                if what not in (RELATION, TYPE, COLLATION) or action == DROPS:
                    continue
                if action == CREATES and kind not in ('IndexStmt', 'RenameStmt') and temp is None:
                    if key[0] is not None or path is locks.DEFAULT_PATH:
                        wanted.append((key[0], CREATE_ON_SCHEMA))
                elif action == NEEDS and key[0] is not None:
                    wanted.append((key[0], USAGE_ON_SCHEMA))
            for schema, privilege in wanted:
                if schema in created or schema in BUILTIN_SCHEMAS or (schema, privilege) in seen:
                    continue
                seen.add((schema, privilege))
                out.append((patch, statement, schema, privilege))
    return out


# The schemas of schema_privileges the deploy user lacks the privilege on (has_schema_privilege: owned, granted
# directly, to PUBLIC or to a role it inherits from); ``target`` the 0-based position in the lists. A NULL
# schema is the session's creation schema (current_schema(): the first schema of its search_path that exists
# and it may use).
SCHEMA_PRIVILEGES_SQL = """
SELECT t.ord - 1 AS target, n.nspname AS schema, pg_get_userbyid(n.nspowner) AS owner
  FROM unnest(%(schemas)s::text[], %(privileges)s::text[]) WITH ORDINALITY AS t(name, privilege, ord)
  JOIN pg_namespace n ON n.oid = to_regnamespace(quote_ident(coalesce(t.name, current_schema())))
 WHERE NOT has_schema_privilege(n.oid, t.privilege)
 ORDER BY 1
"""
