# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Table-level locks: the ones the cold patches take, on which relations, and
which of the locks other sessions hold (or wait for) conflict with them.

- ``MODES`` and ``conflicts(a, b)``: PostgreSQL's eight table-level lock modes
  and their conflict table (the documentation's "Table-level Lock Modes",
  table "Conflicting Lock Modes"), by the documentation's names (``ACCESS
  EXCLUSIVE``); ``mode_name`` turns pg_locks' ``AccessExclusiveLock`` into it.
- ``statement_locks(node)``: the (relation, mode) pairs one parsed statement
  (a pglast node, as patchset.py keeps it) takes, as PostgreSQL's
  AlterTableGetLockLevel and the other commands take them; a relation is a key
  (schema or None, name) as the parser case-folded it. Statements whose locks
  are not modelled (GRANT, CREATE FUNCTION...) take none here.
  ``lock_targets(node)`` adds each lock's reach (TREE, ONLY, or the
  DEFAULT_PARTITION of a partitioned table: ATTACH/DETACH PARTITION, CREATE
  TABLE ... PARTITION OF).
- ``temp_states(statements)`` / ``resolved_key(key, path, temps)``: the
  patch's own temporary tables, which an unqualified name means from their
  creation on (pg_temp is searched first unless the path lists it later).
- ``search_paths(statements)``: the search_path each statement of one patch
  runs under, as the window runs it: every patch starts with the deploy
  session's own search_path (the window resets the session after each patch:
  schema.SESSION_RESET_SQL's RESET ALL), and ``SET [LOCAL] search_path``,
  ``RESET``/``SET ... TO DEFAULT``, ``RESET ALL`` and
  ``set_config('search_path', ...)`` of the patch change it from there.
- ``required_locks(patches)``: per relation and reach the strongest mode the
  patches' cold statements take, and the first patch that takes it; an
  unqualified name under a patch's own search_path is a key of three: (None,
  name, path).
- ``lookup(required, user)``: the arrays HOLDERS_SQL resolves those keys
  with, each name in the search_path the window resolves it in.
- ``HOLDERS_SQL``: the sessions and the prepared transactions (two-phase
  commit: no session) that hold or wait for a lock on those relations (an
  index's table and every inheritance/partition child too), read on the
  primary; ``conflicting(rows, required)`` keeps those whose mode conflicts.

Pure except for the SQL text: no database here; unit-tested without one.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

try:
    import pglast.enums
except ImportError:  # pragma: no cover - patchset reports it
    pglast = None

ACCESS_SHARE, ROW_SHARE, ROW_EXCLUSIVE, SHARE_UPDATE_EXCLUSIVE, SHARE, SHARE_ROW_EXCLUSIVE, EXCLUSIVE, \
    ACCESS_EXCLUSIVE = MODES = ('ACCESS SHARE', 'ROW SHARE', 'ROW EXCLUSIVE', 'SHARE UPDATE EXCLUSIVE', 'SHARE',
                                'SHARE ROW EXCLUSIVE', 'EXCLUSIVE', 'ACCESS EXCLUSIVE')

# The documentation's table: each mode -> the modes it conflicts with.
CONFLICTS = {
    ACCESS_SHARE: frozenset((ACCESS_EXCLUSIVE,)),
    ROW_SHARE: frozenset((EXCLUSIVE, ACCESS_EXCLUSIVE)),
    ROW_EXCLUSIVE: frozenset((SHARE, SHARE_ROW_EXCLUSIVE, EXCLUSIVE, ACCESS_EXCLUSIVE)),
    SHARE_UPDATE_EXCLUSIVE: frozenset((SHARE_UPDATE_EXCLUSIVE, SHARE, SHARE_ROW_EXCLUSIVE, EXCLUSIVE,
                                       ACCESS_EXCLUSIVE)),
    SHARE: frozenset((ROW_EXCLUSIVE, SHARE_UPDATE_EXCLUSIVE, SHARE_ROW_EXCLUSIVE, EXCLUSIVE, ACCESS_EXCLUSIVE)),
    SHARE_ROW_EXCLUSIVE: frozenset((ROW_EXCLUSIVE, SHARE_UPDATE_EXCLUSIVE, SHARE, SHARE_ROW_EXCLUSIVE, EXCLUSIVE,
                                    ACCESS_EXCLUSIVE)),
    EXCLUSIVE: frozenset((ROW_SHARE, ROW_EXCLUSIVE, SHARE_UPDATE_EXCLUSIVE, SHARE, SHARE_ROW_EXCLUSIVE, EXCLUSIVE,
                          ACCESS_EXCLUSIVE)),
    ACCESS_EXCLUSIVE: frozenset(MODES),
}

# ALTER TABLE subcommands that take less than ACCESS EXCLUSIVE (tablecmds.c, AlterTableGetLockLevel).
ALTER_TABLE_LEVELS = {
    'AT_SetStatistics': SHARE_UPDATE_EXCLUSIVE, 'AT_ClusterOn': SHARE_UPDATE_EXCLUSIVE,
    'AT_DropCluster': SHARE_UPDATE_EXCLUSIVE, 'AT_SetRelOptions': SHARE_UPDATE_EXCLUSIVE,
    'AT_ResetRelOptions': SHARE_UPDATE_EXCLUSIVE, 'AT_ValidateConstraint': SHARE_UPDATE_EXCLUSIVE,
    'AT_AttachPartition': SHARE_UPDATE_EXCLUSIVE, 'AT_DetachPartitionFinalize': SHARE_UPDATE_EXCLUSIVE,
    'AT_EnableTrig': SHARE_ROW_EXCLUSIVE, 'AT_EnableAlwaysTrig': SHARE_ROW_EXCLUSIVE,
    'AT_EnableReplicaTrig': SHARE_ROW_EXCLUSIVE, 'AT_EnableTrigAll': SHARE_ROW_EXCLUSIVE,
    'AT_EnableTrigUser': SHARE_ROW_EXCLUSIVE, 'AT_DisableTrig': SHARE_ROW_EXCLUSIVE,
    'AT_DisableTrigAll': SHARE_ROW_EXCLUSIVE, 'AT_DisableTrigUser': SHARE_ROW_EXCLUSIVE,
}
# LOCK TABLE's mode (LockStmt.mode: lockdefs.h numbers 1..8) -> its name.
LOCK_STMT_MODES = dict(enumerate(MODES, start=1))


def mode_name(pg_locks_mode):
    """pg_locks.mode (``AccessExclusiveLock``) -> the documentation's name
    (``ACCESS EXCLUSIVE``); a name already in MODES is returned as it is; any
    other (a row lock's mode) -> None."""
    if pg_locks_mode in CONFLICTS:
        return pg_locks_mode
    text = str(pg_locks_mode or '')
    if not text.endswith('Lock'):
        return None
    words = []
    for char in text[:-4]:
        if char.isupper() and words:
            words.append(' ')
        words.append(char.upper())
    name = ''.join(words)
    return name if name in CONFLICTS else None


def conflicts(held, wanted):
    """Does a lock in mode ``held`` conflict with one in mode ``wanted`` (the
    relation conflict table is symmetric)?"""
    return wanted in CONFLICTS.get(held, ())


def strongest(modes):
    """The strongest of ``modes`` (MODES order), None for none."""
    ranked = [MODES.index(m) for m in modes if m in CONFLICTS]
    return MODES[max(ranked)] if ranked else None


def _name(value):
    return getattr(value, 'name', str(value))


# -- search_path: the schemas an unqualified name is looked up in ---------------
#
# A path is None (the deploy session's own search_path: its role's, its
# database's or the server's setting, which the pre-flight's connection, as
# the same user to the same database, has too), a tuple of schema names in
# order ('$user' kept as written: the deploy user or the role the patch SET),
# or ANY_SCHEMA: set from an expression the patch computes, so every schema.
DEFAULT_PATH = None
ANY_SCHEMA = ('*',)
USER_SCHEMA = '$user'


def split_identifiers(text):
    """A search_path value as PostgreSQL's SplitIdentifierString reads it:
    'tryit, "My Schema", $user' -> ('tryit', 'My Schema', '$user'): commas
    between, blanks around, double quotes keep case (a doubled one is one),
    an unquoted name is down-cased. None when it is not such a list."""
    names, rest = [], (text or '').strip()
    if not rest:
        return ()
    while True:
        if rest.startswith('"'):
            match = re.match(r'"((?:[^"]|"")*)"', rest)
            if not match:
                return None
            names.append(match.group(1).replace('""', '"'))
        else:
            match = re.match(r'[^\s,"]+', rest)
            if not match:
                return None
            names.append(match.group(0).lower())
        rest = rest[match.end():].lstrip()
        if not rest:
            return tuple(names)
        if not rest.startswith(','):
            return None
        rest = rest[1:].lstrip()


def const_text(node):
    """The text of a string constant (A_Const, or one cast: 'x'::text), else None."""
    kind = type(node).__name__
    if kind == 'TypeCast':
        return const_text(node.arg)
    if kind == 'A_Const' and not node.isnull:
        return getattr(node.val, 'sval', None)
    return None


def _const_bool(node):
    """A boolean constant (true, 'on', 1...) as PostgreSQL reads it, else None."""
    kind = type(node).__name__
    if kind == 'TypeCast':
        return _const_bool(node.arg)
    if kind != 'A_Const' or node.isnull:
        return None
    value = node.val
    if hasattr(value, 'boolval'):
        return bool(value.boolval)
    if hasattr(value, 'ival'):
        return bool(value.ival)
    text = str(getattr(value, 'sval', '')).strip().lower()
    if text in ('t', 'true', 'on', 'yes', 'y', '1'):
        return True
    if text in ('f', 'false', 'off', 'no', 'n', '0'):
        return False
    return None


def _func_name(call):
    names = [getattr(n, 'sval', '') for n in call.funcname or ()]
    return names[-1].lower() if names else ''


# Statements that evaluate their expressions when they run (a set_config() call
# in them changes the session). Elsewhere an expression is only stored: a
# function's body or its own SET clause (in force only while it runs), a view,
# a rule, a trigger, a default, ALTER ROLE/DATABASE ... SET (for new sessions):
# none of them changes the window's session.
EXECUTING = frozenset(('SelectStmt', 'InsertStmt', 'UpdateStmt', 'DeleteStmt', 'MergeStmt', 'CallStmt',
                       'CreateTableAsStmt', 'ExecuteStmt'))
# A change of the search_path: (what, value, local): what is 'path' (value: a
# path, DEFAULT_PATH for RESET), 'role' (value: the role or None), 'reset_all',
# or 'unknown' (value: why only running it would tell; the path becomes
# ANY_SCHEMA). ``local``: SET LOCAL / set_config(..., true), which ends with
# its transaction (a hot patch's statement is one, autocommit).
UNKNOWN = 'unknown'


def _set_config_changes(node):
    """The set_config('search_path', value, is_local) calls of ``node``, in order."""
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.patchset import walk
    found = []
    for sub in walk(node):
        if type(sub).__name__ != 'FuncCall' or _func_name(sub) != 'set_config' or len(sub.args or ()) < 2:
            continue
        args = list(sub.args)
        setting = const_text(args[0])
        if setting is not None and setting.lower() != 'search_path':
            continue
        value = const_text(args[1])
        path = split_identifiers(value) if value is not None else None
        local = _const_bool(args[2]) if len(args) > 2 else False
        if setting is None or path is None or local is None:
            found.append((UNKNOWN, 'set_config() whose %s is computed when it runs' % (
                'setting name' if setting is None else 'value' if path is None else 'is_local'), False))
        else:
            found.append(('path', path, local))
    return found


def _variable_set_changes(node):
    """SET / RESET of the search_path, the role, or RESET ALL."""
    name, how, local = (node.name or '').lower(), _name(node.kind), bool(node.is_local)
    if how == 'VAR_RESET_ALL':
        return [('reset_all', None, local)]
    if name == 'search_path' and how in ('VAR_SET_DEFAULT', 'VAR_RESET'):
        return [('path', DEFAULT_PATH, local)]
    if name == 'search_path' and how == 'VAR_SET_VALUE':
        values = [const_text(arg) for arg in node.args or ()]
        return [('path', tuple(values), local) if None not in values else
                (UNKNOWN, 'SET search_path to a value that is not a list of names', local)]
    if name in ('role', 'session_authorization'):
        value = const_text((node.args or (None,))[0]) if how == 'VAR_SET_VALUE' else None
        return [('role', None if value is None or value.lower() == 'none' else value, local)]
    return []


def _mentions_accounted(nodes):
    """How many times ``nodes`` name search_path where changes() reads it: a
    SET/RESET of it, set_config/current_setting('search_path', ...)."""
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.patchset import walk
    count = 0
    for sub in walk(nodes):
        kind = type(sub).__name__
        if kind == 'VariableSetStmt' and (sub.name or '').lower() == 'search_path':
            count += 1
        elif kind == 'FuncCall' and _func_name(sub) in ('set_config', 'current_setting') and sub.args \
                and (const_text(sub.args[0]) or '').lower() == 'search_path':
            count += 1
    return count


def _do_block_changes(node):
    """How a DO block changes the search_path: its SET / set_config() of
    constants at the top level of a PL/pgSQL body without an EXCEPTION clause
    (statements PL/pgSQL runs in order, once); 'unknown' when it names
    search_path anywhere else - inside IF/LOOP/EXCEPTION, in SQL it builds and
    EXECUTEs, in another language - or cannot be parsed. A block that does not
    name search_path changes nothing here (code it calls is not followed)."""
    body = ''.join(getattr(arg.arg, 'sval', '') or '' for arg in node.args or () if arg.defname == 'as')
    if 'search_path' not in body.lower():
        return []
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.patchset import do_block_sql, plpgsql_exprs
    tree, top = do_block_sql(node)
    if tree is None:
        return [(UNKNOWN, 'a DO block in another language, or one the parser cannot read, naming search_path',
                 False)]
    changes = []
    # The whole function: its DECLARE initializers too (SQL text kept in a variable, EXECUTEd later).
    for stmt, at_top, text, mode in plpgsql_exprs(tree, top_ids=set(id(s) for s in top)):
        named = text.lower().count('search_path')
        if not named:
            continue
        try:
            nodes = [raw.stmt for raw in pglast.parse_sql(text if mode == 0 else 'SELECT ' + text)]
        except Exception:  # pylint: disable=broad-except
            nodes = None
        if nodes is None or named > _mentions_accounted(nodes):
            changes.append((UNKNOWN, 'a DO block building SQL that names search_path (dynamic SQL: EXECUTE)', False))
            continue
        found = [change for sub in nodes for change in changes_of(sub)]
        if found and not (at_top and stmt in ('PLpgSQL_stmt_execsql', 'PLpgSQL_stmt_perform')):
            changes.append((UNKNOWN, 'a DO block setting search_path inside IF, LOOP or an EXCEPTION block', False))
        else:
            changes.extend(found)
    return changes


def changes_of(node):
    """[(what, value, local)] the search_path changes running the parsed
    statement ``node`` makes, in order (see UNKNOWN)."""
    kind = type(node).__name__
    if kind == 'VariableSetStmt':
        return _variable_set_changes(node)
    if kind == 'DoStmt':
        return _do_block_changes(node)
    if kind in EXECUTING:
        return _set_config_changes(node)
    return []


def _with_role(path, role):
    if role is None or path in (DEFAULT_PATH, ANY_SCHEMA):
        return path
    return tuple(role if schema == USER_SCHEMA else schema for schema in path)


def path_states(statements, live=False):
    """[(path, why)] for one patch's ``statements`` (patchset.Statement, in
    order): the search_path each runs under in its session (see DEFAULT_PATH),
    and why the path after it cannot be known (None when it can: then the
    path after it is ANY_SCHEMA). ``live``: a hot patch, whose statements run
    one by one in autocommit, so SET LOCAL and set_config(..., true) end with
    their own statement. SET ROLE / SET SESSION AUTHORIZATION in the patch make
    '$user' that role."""
    path, role, out = DEFAULT_PATH, None, []
    for statement in statements:
        before, why = _with_role(path, role), None
        for what, value, local in changes_of(statement.node) if statement.node is not None else ():
            if local and live:
                continue
            if what == 'reset_all':
                path, role = DEFAULT_PATH, None
            elif what == 'path':
                path = value
            elif what == 'role':
                role = value
            else:
                path, why = ANY_SCHEMA, value
        out.append((before, why))
    return out


def search_paths(statements, live=False):
    """[path] the search_path each of ``statements`` runs under (path_states)."""
    return [path for path, dummy in path_states(statements, live)]


# -- temporary tables: an unqualified name a patch's own TEMP table shadows ---------
#
# The session's temporary schema (pg_temp_N, named pg_temp in a search_path) is
# searched for relations first, before pg_catalog, unless the path lists
# pg_temp elsewhere (never for functions or types). A patch that creates a
# TEMP table and then names it unqualified means that table, not a permanent
# one of the same name; the window's session drops its temporary tables after
# each patch (schema.SESSION_RESET_SQL's DISCARD TEMP), so a temporary table is
# its patch's own.
TEMP_SCHEMA = 'pg_temp'
TEMP_RELATIONS = {'CreateStmt': 'relation', 'ViewStmt': 'view', 'CreateSeqStmt': 'sequence'}


def temp_created(node):
    """The name of the temporary relation ``node`` creates (CREATE TEMP TABLE
    [AS], SELECT ... INTO TEMP, CREATE TEMP VIEW/SEQUENCE, or one created in
    schema pg_temp), else None."""
    kind = type(node).__name__
    if kind in TEMP_RELATIONS:
        relation = getattr(node, TEMP_RELATIONS[kind])
    elif kind == 'CreateTableAsStmt' and node.into is not None:
        relation = node.into.rel
    elif kind == 'SelectStmt' and node.intoClause is not None:
        relation = node.intoClause.rel
    else:
        return None
    if relation is not None and (relation.relpersistence == 't' or relation.schemaname == TEMP_SCHEMA):
        return relation.relname
    return None


def temp_first(path):
    """Is a temporary relation found before any other of its name under
    ``path`` (pg_temp unlisted - searched first - or listed first)? None when
    it depends on the schemas before pg_temp, False for ANY_SCHEMA."""
    if path == ANY_SCHEMA:
        return False
    listed = tuple(path or ())
    if TEMP_SCHEMA not in listed or listed.index(TEMP_SCHEMA) == 0:
        return True
    return None


def temp_states(statements, live=False):
    """[frozenset of names] the temporary relations one patch's ``statements``
    (in order) created before each statement and have not dropped (DROP of
    the name where pg_temp comes first, DISCARD TEMP/ALL)."""
    temps, out = set(), []
    for statement, path in zip(statements, search_paths(statements, live)):
        out.append(frozenset(temps))
        node = statement.node
        kind = type(node).__name__
        if kind == 'DiscardStmt' and _name(node.target) in ('DISCARD_TEMP', 'DISCARD_ALL'):
            temps.clear()
        elif kind == 'DropStmt':
            for names in node.objects or ():
                key = _names_key(names) if isinstance(names, (list, tuple)) else None
                if key and (key[0] == TEMP_SCHEMA or key[0] is None and temp_first(path)):
                    temps.discard(key[1])
        created = temp_created(node) if node is not None else None
        if created is not None:
            temps.add(created)
    return out


def resolved_key(key, path, temps=(), session_path=None):
    """The key an unqualified relation name of a statement is looked up by:
    (None, name) under the deploy session's own path, (None, name, path) under
    one its patch set; None for a temporary relation (schema pg_temp, or a
    name of ``temps`` - temp_states - found in pg_temp first): no permanent
    relation, no other session's lock. A name of ``temps`` with pg_temp listed
    after other schemas: those schemas only ((None, name, schemas before
    pg_temp)); past them the name is the temporary one. ``session_path``: the
    deploy session's own search_path (a tuple, split_identifiers), where the
    patch set none; None when not known (pg_temp then counts as first)."""
    if key is None or key[0] == TEMP_SCHEMA:
        return None
    if key[0] is not None:
        return key
    listed = session_path if path is DEFAULT_PATH else path
    if key[1] in temps and temp_first(listed) is not False:
        before = () if temp_first(listed) else listed[:listed.index(TEMP_SCHEMA)]
        return (None, key[1], before) if before else None
    return key if path is DEFAULT_PATH else (None, key[1], path)


def _key(relation):
    return (relation.schemaname or None, relation.relname)


def _names_key(names):
    """(schema or None, name) from a dotted name's String nodes (the last is the
    relation; a catalog name in front is dropped)."""
    strings = [getattr(n, 'sval', None) for n in names or ()]
    return (strings[-2] if len(strings) > 1 else None, strings[-1]) if strings else None


def _foreign_keys(elements):
    """The referenced tables of FOREIGN KEY constraints among ``elements``
    (CreateStmt tableElts, ColumnDef constraints, ALTER TABLE definitions)."""
    found = []
    for element in elements or ():
        kind = type(element).__name__
        if kind == 'Constraint' and _name(element.contype) == 'CONSTR_FOREIGN' and element.pktable is not None:
            found.append(_key(element.pktable))
        elif kind == 'ColumnDef':
            found.extend(_foreign_keys(element.constraints))
    return found


# How far a lock reaches from the relation named (HOLDERS_SQL looks there):
# TREE - the relation, an index's table and every inheritance/partition child
# (ALTER TABLE recurses to them); ONLY - the relation itself (and an index's
# table); DEFAULT_PARTITION - the DEFAULT partition of the partitioned table
# named, and every partition of it, found in the catalog (no name for it in
# the patch).
TREE, ONLY, DEFAULT_PARTITION = 'tree', 'only', 'default partition'

# The partition an ATTACH / DETACH PARTITION (... FINALIZE) names is taken in ACCESS EXCLUSIVE
# (tablecmds.c ATExecAttachPartition, ATExecDetachPartition(Finalize)): a table being attached is no
# partition yet, so the partitioned table's lock reaches it through no pg_inherits row; ATTACH takes every
# partition of a partitioned table it attaches in ACCESS EXCLUSIVE too (find_all_inheritors). The
# partitioned table itself is locked alone (ATTACH: SHARE UPDATE EXCLUSIVE; DETACH: ACCESS EXCLUSIVE;
# no recursion to its other partitions), and its DEFAULT partition, if it has one, in ACCESS EXCLUSIVE
# (ATTACH of a non-default partition and DETACH change its partition constraint; ATTACH scans it to check
# its rows, each of its own partitions taken in ACCESS EXCLUSIVE).
PARTITION_COMMANDS = ('AT_AttachPartition', 'AT_DetachPartition', 'AT_DetachPartitionFinalize')


def _partition_locks(node, cmd):
    """[(key, mode, reach)] of an ATTACH/DETACH PARTITION command ``cmd`` of ALTER TABLE ``node``
    (one such command is the whole statement: the grammar allows no other beside it)."""
    sub, definition = _name(cmd.subtype), cmd.def_
    parent = _key(node.relation)
    found = [(parent, ALTER_TABLE_LEVELS.get(sub, ACCESS_EXCLUSIVE), ONLY)]
    if getattr(definition, 'name', None) is not None:
        found.append((_key(definition.name), ACCESS_EXCLUSIVE, TREE))
    bound = getattr(definition, 'bound', None)
    if (sub == 'AT_AttachPartition' and not getattr(bound, 'is_default', False)) \
            or (sub == 'AT_DetachPartition' and not getattr(definition, 'concurrent', False)):
        found.append((parent, ACCESS_EXCLUSIVE, DEFAULT_PARTITION))
    return found


def _alter_table_locks(node):
    key = _key(node.relation)
    modes, referenced = [], []
    for cmd in node.cmds or ():
        sub = _name(cmd.subtype)
        if sub in PARTITION_COMMANDS:
            return _partition_locks(node, cmd)
        definition = cmd.def_
        fks = _foreign_keys([definition]) if definition is not None else []
        if sub == 'AT_AddConstraint' and fks:
            modes.append(SHARE_ROW_EXCLUSIVE)  # ADD FOREIGN KEY: both tables, SHARE ROW EXCLUSIVE
        else:
            modes.append(ALTER_TABLE_LEVELS.get(sub, ACCESS_EXCLUSIVE))
        referenced.extend(fks)
    return [(key, strongest(modes) or ACCESS_EXCLUSIVE, TREE)] + [(ref, SHARE_ROW_EXCLUSIVE, TREE) for ref in referenced]


def _create_locks(node):
    """CREATE TABLE (tablecmds.c DefineRelation): each INHERITS parent alone in SHARE UPDATE
    EXCLUSIVE; a PARTITION OF parent alone in ACCESS EXCLUSIVE (its partition descriptor changes)
    and, for a partition other than the DEFAULT one, the parent's DEFAULT partition (its constraint
    changes: its rows are scanned, check_default_partition_contents); each referenced table of a
    FOREIGN KEY in SHARE ROW EXCLUSIVE."""
    partition = node.partbound is not None
    found = [(_key(r), ACCESS_EXCLUSIVE if partition else SHARE_UPDATE_EXCLUSIVE, ONLY)
             for r in node.inhRelations or ()]
    if partition and not node.partbound.is_default:
        found += [(_key(r), ACCESS_EXCLUSIVE, DEFAULT_PARTITION) for r in node.inhRelations or ()]
    return found + [(ref, SHARE_ROW_EXCLUSIVE, TREE) for ref in _foreign_keys(node.tableElts)]


def _comment_locks(node):
    kind = _name(node.objtype)
    names = node.object if isinstance(node.object, (list, tuple)) else ()
    if kind in ('OBJECT_TABLE', 'OBJECT_VIEW', 'OBJECT_MATVIEW', 'OBJECT_FOREIGN_TABLE', 'OBJECT_SEQUENCE',
                'OBJECT_INDEX'):
        key = _names_key(names)
    elif kind == 'OBJECT_COLUMN':
        key = _names_key(names[:-1])
    else:
        return []
    return [(key, SHARE_UPDATE_EXCLUSIVE)] if key else []


def statement_locks(node):
    """[(relation key, mode)] the parsed statement ``node`` takes on the
    existing relations it names (see the module docstring); [] when not
    modelled. What a DEFAULT partition takes is in lock_targets only."""
    return [(key, mode) for key, mode, reach in lock_targets(node) if reach != DEFAULT_PARTITION]


def lock_targets(node):
    """[(relation key, mode, reach)] the parsed statement ``node`` takes (reach:
    TREE, ONLY or DEFAULT_PARTITION - where HOLDERS_SQL looks from the
    relation named); [] when not modelled."""
    name = type(node).__name__
    if name == 'AlterTableStmt':
        return _alter_table_locks(node)
    if name == 'CreateStmt':
        return _create_locks(node)
    return [(key, mode, TREE) for key, mode in _named_locks(node, name)]


def _named_locks(node, name):
    """statement_locks of the statements whose locks reach the TREE of each relation named."""
    if name == 'IndexStmt':
        return [(_key(node.relation), SHARE_UPDATE_EXCLUSIVE if node.concurrent else SHARE)]
    if name == 'DropStmt':
        if _name(node.removeType) not in ('OBJECT_TABLE', 'OBJECT_VIEW', 'OBJECT_MATVIEW', 'OBJECT_INDEX',
                                          'OBJECT_SEQUENCE', 'OBJECT_FOREIGN_TABLE'):
            return []
        return [(_names_key(names), ACCESS_EXCLUSIVE) for names in node.objects or ()]
    if name == 'RenameStmt':
        if node.relation is None:
            return []
        renamed = _name(pglast.enums.ObjectType(node.renameType))
        return [(_key(node.relation), SHARE_UPDATE_EXCLUSIVE if renamed == 'OBJECT_INDEX' else ACCESS_EXCLUSIVE)]
    if name == 'TruncateStmt':
        return [(_key(r), ACCESS_EXCLUSIVE) for r in node.relations or ()]
    if name == 'LockStmt':
        mode = LOCK_STMT_MODES.get(int(node.mode), ACCESS_EXCLUSIVE)
        return [(_key(r), mode) for r in node.relations or ()]
    if name == 'VacuumStmt':
        full = 'full' in set(getattr(o, 'defname', None) for o in node.options or ())
        return [(_key(r.relation), ACCESS_EXCLUSIVE if full else SHARE_UPDATE_EXCLUSIVE)
                for r in node.rels or () if r.relation is not None]
    if name == 'ClusterStmt' and node.relation is not None:
        return [(_key(node.relation), ACCESS_EXCLUSIVE)]
    if name == 'ReindexStmt' and node.relation is not None:
        return [(_key(node.relation), SHARE)]
    if name == 'CreateTrigStmt':
        return [(_key(node.relation), SHARE_ROW_EXCLUSIVE)]
    if name in ('CreatePolicyStmt', 'AlterPolicyStmt') and node.table is not None:
        return [(_key(node.table), ACCESS_EXCLUSIVE)]
    if name == 'RuleStmt':
        return [(_key(node.relation), ACCESS_EXCLUSIVE)]
    if name == 'ViewStmt' and node.replace:
        return [(_key(node.view), ACCESS_EXCLUSIVE)]
    if name == 'RefreshMatViewStmt':   # CONCURRENTLY: readers go on, allowed in a transaction block
        return [(_key(node.relation), EXCLUSIVE if node.concurrent else ACCESS_EXCLUSIVE)]
    if name == 'CommentStmt':
        return _comment_locks(node)
    if name in ('UpdateStmt', 'DeleteStmt', 'InsertStmt') and node.relation is not None:
        return [(_key(node.relation), ROW_EXCLUSIVE)]
    return []


def _entry(key, mode, reach, **where):
    """A required_locks / hot_waits entry: ``only`` and ``default_partition``
    say where HOLDERS_SQL looks from the relation (see TREE)."""
    entry = dict(relation=key, mode=mode, **where)
    if reach == ONLY:
        entry['only'] = True
    elif reach == DEFAULT_PARTITION:
        entry['default_partition'] = True
    return entry


def required_locks(patches, session_path=None):
    """[{'relation': key, 'mode', 'patch', 'line'} (+ ``only`` or
    ``default_partition``)]: per relation and reach the strongest mode the
    cold statements of ``patches`` (patchset.Patch, in order) take and where
    it is first taken, in the order first named. A relation of the patch's
    own temporary table is left out (resolved_key; ``session_path``: the
    deploy session's own search_path, where it lists pg_temp)."""
    found = {}
    for patch in patches:
        states = zip(patch.statements, search_paths(patch.statements), temp_states(patch.statements))
        for statement, path, temps in states:
            if statement.kind != 'cold' or statement.node is None:
                continue
            for key, mode, reach in lock_targets(statement.node):
                key = resolved_key(key, path, temps, session_path)
                if key is None or mode is None:
                    continue
                known = found.get((key, reach))
                if known is None or MODES.index(mode) > MODES.index(known['mode']):
                    found[(key, reach)] = _entry(key, mode, reach, patch=patch.name, line=statement.line)
    return list(found.values())


# What a live (hot) statement waits out before it finishes (PostgreSQL's
# indexcmds.c / index.c, tablecmds.c): the lockers of its table whose locks
# conflict with the mode named (WaitForLockers) and, with snapshots, every
# transaction of the database whose snapshot is older than its own
# (WaitForOlderSnapshots: a session idle in a REPEATABLE READ transaction, an
# open cursor, a long query; a prepared transaction holds none). A prepared
# transaction or a session idle in its transaction holding such a lock makes it
# wait without end. One row per kind: words -> (mode, snapshots, only the
# named relation's own lockers - not its partitions' or inheritance children's).
# DETACH PARTITION ... CONCURRENTLY (14+) commits the detach as pending, then
# waits for every locker of the partitioned table itself (a session that
# locked only another partition does not hold it) and takes the partition in
# ACCESS EXCLUSIVE; canceled there (lock_timeout), the partition stays pending
# detach until ALTER TABLE ... DETACH PARTITION ... FINALIZE (schema.apply_hot
# runs it on its next try). REFRESH MATERIALIZED VIEW CONCURRENTLY is allowed in
# a transaction block: a cold statement (statement_locks, EXCLUSIVE).
HOT_WAITS = {
    'CREATE INDEX CONCURRENTLY': (SHARE, True, False),
    'REINDEX CONCURRENTLY': (ACCESS_EXCLUSIVE, True, False),   # its swap waits out every locker
    'DROP INDEX CONCURRENTLY': (ACCESS_EXCLUSIVE, False, False),
    'DETACH PARTITION CONCURRENTLY (partitioned table)': (ACCESS_EXCLUSIVE, False, True),
    'DETACH PARTITION CONCURRENTLY': (ACCESS_EXCLUSIVE, False, False),
}
DETACH_WORDS = 'ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY'


def _hot_wait(node):
    """(words, [(relation key, HOT_WAITS row)]) of a live statement that waits
    out other transactions, else None."""
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.patchset import detached_concurrently
    kind = type(node).__name__
    if kind == 'IndexStmt' and node.concurrent:
        words = 'CREATE INDEX CONCURRENTLY'
        keys = [(_key(node.relation), words)]
    elif kind == 'DropStmt' and node.concurrent:
        words = 'DROP INDEX CONCURRENTLY'
        keys = [(_names_key(names), words) for names in node.objects or ()]
    elif kind == 'ReindexStmt' and node.relation is not None \
            and 'concurrently' in set(getattr(o, 'defname', None) for o in node.params or ()):
        words = 'REINDEX CONCURRENTLY'
        keys = [(_key(node.relation), words)]
    elif detached_concurrently(node):
        words, keys = DETACH_WORDS, []
        for parent, partition in detached_concurrently(node):
            keys += [(parent, 'DETACH PARTITION CONCURRENTLY (partitioned table)'),
                     (partition, 'DETACH PARTITION CONCURRENTLY')]
    else:
        return None
    return words, [(key, HOT_WAITS[row]) for key, row in keys if key]


def hot_waits(patches):
    """What the live statements of ``patches`` (hot patchset.Patch, in order)
    wait out: ([{'relation', 'mode', 'patch', 'line', 'words'}] - the lockers
    each waits for, keyed and resolved as required_locks' list, for
    HOLDERS_SQL and conflicting(); ``only``: the relation's own lockers, not
    its children's - and [{'patch', 'line', 'words'}] of the statements that
    also wait for every older snapshot of the database). A hot patch's
    statements run in autocommit: search_paths(live=True)."""
    lockers, snapshots = [], []
    for patch in patches:
        states = zip(patch.statements, search_paths(patch.statements, live=True),
                     temp_states(patch.statements, live=True))
        for statement, path, temps in states:
            found = _hot_wait(statement.node) if statement.node is not None else None
            if found is None:
                continue
            words, keys = found
            where = {'patch': patch.name, 'line': statement.line, 'words': words}
            keys = [(resolved_key(key, path, temps), row) for key, row in keys]
            keys = [(key, row) for key, row in keys if key is not None]
            for key, (mode, older, only) in keys:
                lockers.append(dict(where, relation=key, mode=mode, only=only))
            if any(row[1] for dummy, row in keys) and where not in snapshots:
                snapshots.append(where)
    return lockers, snapshots


def relation_text(key):
    """A key as the patches name it: ``schema.name`` or ``name``, with the
    patch's own search_path when it set one: ``t (search_path tryit, public)``."""
    if key[0]:
        return '%s.%s' % key[:2]
    if len(key) > 2 and key[2] is not DEFAULT_PATH:
        return '%s (search_path %s)' % (key[1], 'unknown until the patch runs: any schema' if key[2] == ANY_SCHEMA
                                        else ', '.join(key[2]) or "''")
    return key[1]


def entry_text(entry):
    """A required_locks / hot_waits entry's relation as an operator reads it:
    relation_text, or 'the DEFAULT partition of p' for a default_partition one."""
    text = relation_text(entry['relation'])
    return 'the DEFAULT partition of %s' % text if entry.get('default_partition') else text


def quoted(key):
    """A key's schema and name as to_regclass() reads them exactly (quoted identifiers)."""
    return '.'.join('"%s"' % part.replace('"', '""') for part in key[:2] if part)


def lookup(required, user):
    """(targets, schemas, names, recurse, defaults): the arrays HOLDERS_SQL
    takes for ``required`` (required_locks' or hot_waits' list; an entry's
    ``only`` leaves its inheritance/partition children out: recurse false; its
    ``default_partition`` looks at the DEFAULT partition of the table found
    instead, and its partitions: defaults true), one row per place a name may be:
    target is the 1-based position in ``required``; schema None means the
    session's own search_path (the name then comes quoted, for to_regclass),
    '' any schema, else the schema, in the order PostgreSQL looks (pg_catalog
    first unless the path lists it; '$user' is ``user``, the deploy user)."""
    targets, schemas, names, recurse, defaults = [], [], [], [], []
    for target, entry in enumerate(required, start=1):
        key = entry['relation']
        path = key[2] if len(key) > 2 else DEFAULT_PATH
        if key[0]:
            rows = [(key[0], key[1])]
        elif path is DEFAULT_PATH:
            rows = [(None, quoted(key))]
        elif path == ANY_SCHEMA:
            rows = [('', key[1])]
        else:
            order = path if 'pg_catalog' in path else ('pg_catalog',) + tuple(path)
            rows = [(user if schema == USER_SCHEMA else schema, key[1]) for schema in order]
        for schema, name in rows:
            targets.append(target)
            schemas.append(schema)
            names.append(name)
            recurse.append(not entry.get('only'))
            defaults.append(bool(entry.get('default_partition')))
    return targets, schemas, names, recurse, defaults


# The sessions holding or waiting for a table-level lock on the relations named
# (the five arrays lookup() gives: per target the first place its name is
# found, or with any schema every one; or, for a target of defaults true, that
# partitioned table's DEFAULT partition: pg_partitioned_table.partdefid, none
# without one), on each index's table and, unless the target says not to
# recurse, on every inheritance or partition child (ALTER TABLE recurses to
# them): ``target`` is
# the position in required_locks' list. The pre-flight's own session is left out.
#
# Prepared transactions (PREPARE TRANSACTION, two-phase commit) too: they hold
# their locks with no session (pg_locks.pid NULL) until COMMIT PREPARED or
# ROLLBACK PREPARED; ``gid``, ``owner``, ``prepared_database`` and
# ``prepared_seconds`` name them (NULL for a session). pg_locks' row is tied to
# pg_prepared_xacts through the transaction's own transactionid lock, which has
# the same virtualtransaction: since the 2024 minor releases (13.14, 14.11,
# 15.6, 16.2) a prepared transaction keeps the virtual transaction id of the
# backend that prepared it ('5/12'); '-1/<xid>' only after a restart recovered
# it. pg_locks is read once (one snapshot of the lock table).
HOLDERS_SQL = """
WITH RECURSIVE place AS (
    SELECT t.ord, t.schema, t.name, t.recurse, t.dflt, t.rank
      FROM unnest(%s::int[], %s::text[], %s::text[], %s::bool[], %s::bool[])
           WITH ORDINALITY AS t(ord, schema, name, recurse, dflt, rank)
), found AS (
    SELECT p.ord, p.rank, CASE WHEN p.schema IS NULL THEN to_regclass(p.name)::oid ELSE c.oid END AS relid
      FROM place p
      LEFT JOIN pg_namespace s ON p.schema IS NOT NULL AND (p.schema = '' OR s.nspname = p.schema)
      LEFT JOIN pg_class c ON c.relnamespace = s.oid AND c.relname = p.name
), hit AS (
    SELECT ord, relid FROM found f
     WHERE relid IS NOT NULL
       AND rank = (SELECT min(g.rank) FROM found g WHERE g.ord = f.ord AND g.relid IS NOT NULL)
        OR relid IS NOT NULL AND EXISTS (SELECT 1 FROM place p WHERE p.rank = f.rank AND p.schema = '')
), named AS (
    SELECT f.ord, f.relid FROM hit f WHERE NOT EXISTS (SELECT 1 FROM place p WHERE p.ord = f.ord AND p.dflt)
    UNION SELECT f.ord, d.partdefid FROM hit f JOIN pg_partitioned_table d ON d.partrelid = f.relid
     WHERE d.partdefid <> 0 AND EXISTS (SELECT 1 FROM place p WHERE p.ord = f.ord AND p.dflt)
), base AS (
    SELECT ord, relid FROM named
    UNION SELECT n.ord, i.indrelid FROM named n JOIN pg_index i ON i.indexrelid = n.relid
), tree AS (
    SELECT ord, relid FROM base
    UNION SELECT t.ord, h.inhrelid FROM tree t JOIN pg_inherits h ON h.inhparent = t.relid
     WHERE EXISTS (SELECT 1 FROM place p WHERE p.ord = t.ord AND p.recurse)
), lk AS MATERIALIZED (
    SELECT locktype, database, relation, transactionid, virtualtransaction, pid, mode, granted FROM pg_locks
)
SELECT tree.ord - 1 AS target, tree.relid::regclass::text AS relation, l.mode, l.granted, l.pid,
       a.usename, host(a.client_addr) AS client_addr, a.application_name, a.state,
       EXTRACT(EPOCH FROM clock_timestamp() - a.xact_start)::float8 AS xact_seconds,
       EXTRACT(EPOCH FROM clock_timestamp() - a.state_change)::float8 AS state_seconds,
       left(a.query, 200) AS query,
       p.gid, p.owner, p.database AS prepared_database,
       EXTRACT(EPOCH FROM clock_timestamp() - p.prepared)::float8 AS prepared_seconds
  FROM tree
  JOIN lk l ON l.locktype = 'relation' AND l.relation = tree.relid
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  LEFT JOIN pg_stat_activity a ON a.pid = l.pid
  LEFT JOIN lk x ON l.pid IS NULL AND x.pid IS NULL AND x.locktype = 'transactionid'
                AND x.virtualtransaction = l.virtualtransaction
  LEFT JOIN pg_prepared_xacts p ON p.transaction = x.transactionid
 WHERE (a.pid IS NOT NULL OR p.gid IS NOT NULL) AND l.pid IS DISTINCT FROM pg_backend_pid()
 ORDER BY l.pid, p.gid, tree.ord
"""


def conflicting(rows, required):
    """The HOLDERS_SQL ``rows`` whose lock conflicts with the mode ``required``
    (required_locks' list; a row's ``target`` indexes it) needs, each with
    ``mode`` in the documentation's name, ``wanted`` (that required entry) and
    ``granted``."""
    out = []
    for row in rows:
        try:
            wanted = required[int(row.get('target'))]
        except (TypeError, ValueError, IndexError):
            continue
        mode = mode_name(row.get('mode'))
        if mode is not None and conflicts(mode, wanted['mode']):
            out.append(dict(row, mode=mode, wanted=wanted))
    return out


# -- the sessions holding what the cold transaction needs ------------------------------------
# One rule for the pre-flight (preflight.decide_blocking_sessions) and the outage's last look
# before its clock (outage.Outage.refuse_lock_holders).

def outlasting_holders(lock_rows, pgbouncer_of, wait_seconds, killable_users, pgbouncer_addrs):
    """Which holders of a lock a cold statement needs (``lock_rows``: conflicting's
    rows) the window would wait for its whole ``wait_seconds``. Returns
    (refused, killable, prepared): {pid: rows} of the sessions in a transaction
    that will outlast the window (sessions.will_outlast_window), {pid: rows} of
    those among them a killable user connected from no pgbouncer host
    (``pgbouncer_addrs``) holds - terminated as the outage starts - and {gid:
    rows} of the prepared transactions holding one, whatever their age. The
    server connections of pgbouncer (``pgbouncer_of``: {pid: ...}) are left to
    the drain."""
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.sessions import will_outlast_window
    by_pid, prepared = {}, {}
    for row in lock_rows:
        if row.get('gid') is not None:
            prepared.setdefault(row['gid'], []).append(row)
        elif row.get('pid') not in pgbouncer_of:
            by_pid.setdefault(row.get('pid'), []).append(row)
    refused, killable = {}, {}
    for pid, rows in by_pid.items():
        if not will_outlast_window(rows[0], wait_seconds):
            continue
        if rows[0].get('usename') in killable_users and rows[0].get('client_addr') not in pgbouncer_addrs:
            killable[pid] = rows
        else:
            refused[pid] = rows
    return refused, killable, prepared


def held_text(rows):
    """What one session's conflicting lock rows (conflicting's) hold or wait for."""
    parts = []
    for row in rows:
        wanted = row['wanted']
        parts.append('%s %s on %s, which %s line %s needs in %s%s' % (
            'holds' if row.get('granted') else 'waits for', row['mode'], row.get('relation'), wanted['patch'],
            wanted['line'], wanted['mode'], ' (as %s)' % entry_text(wanted)
            if wanted.get('default_partition') else ''))
    return '; '.join(parts)


def sql_literal(text):
    """``text`` as an SQL string literal."""
    return "'%s'" % str(text).replace("'", "''")


def prepared_text(row):
    """One prepared transaction (a HOLDERS_SQL row with a gid), in words."""
    return 'prepared transaction %s (owner %s, database %s, prepared %.1f s ago: no session, it holds its locks ' \
        'until COMMIT PREPARED or ROLLBACK PREPARED)' % (
            sql_literal(row.get('gid')), row.get('owner'), row.get('prepared_database'),
            row.get('prepared_seconds') or 0)


def prepared_fix(label, rows):
    """How to end prepared transactions (HOLDERS_SQL rows with a gid): by
    whoever prepared them, or by hand once their coordinator is known."""
    return 'once the coordinator that prepared them (the transaction manager of user %s) is known, let it finish ' \
        'them or, on %s connected to database %s, %s' % (
            ', '.join(sorted(set(str(r.get('owner')) for r in rows))), label,
            ', '.join(sorted(set(str(r.get('prepared_database')) for r in rows))),
            ', '.join('COMMIT PREPARED {0} / ROLLBACK PREPARED {0}'.format(sql_literal(r.get('gid'))) for r in rows))
