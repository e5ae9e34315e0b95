# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Patch lint: what each pending statement locks and how much work it does,
priced with the live database's table sizes.

Three steps, the first and last pure:

1. ``references(patches)`` - the tables and functions the statements name
   (from the pglast parse trees patchset.py already made; never a regex).
2. ``gather_catalog(conn, refs)`` / ``measure_throughput(conn, ...)`` - on the
   primary, read-only: each table's pg_class.reltuples, heap/index/TOAST
   sizes, column types and validated ``CHECK (col IS NOT NULL)`` constraints,
   the volatility of the functions used as defaults, the planner's row
   estimate for data changes (EXPLAIN, never ANALYZE), and one bounded
   sequential-scan sample that gives the cluster's scan throughput.
3. ``lint_patches(patches, catalog, options)`` - one finding per statement
   (file, line, statement, rule, lock, severity, suggested safe rewrite,
   estimated seconds), and ``estimate`` - the statements' cost summed.

The cost model (docs/lint.md) is deliberately simple: every cost is bytes
divided by the measured scan throughput T, times a factor per kind of work
(REWRITE_FACTOR, INDEX_BUILD_FACTOR, ...), plus the standby's replay of the WAL
the statement writes (wal bytes / T x REPLAY_FACTOR); a rewrite's COMMIT drops
the old files on the primary and on every standby (DROP_FACTOR). The factors
were calibrated on the lab against T as measure_throughput takes it (the
benchmark's 110 MB table: CREATE INDEX, ALTER COLUMN TYPE int -> bigint and a
validating CHECK, applied for real inside the outage; the data by each factor).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import socket
import statistics
import time

try:
    import pglast
    import pglast.ast
    import pglast.enums
    from pglast.stream import RawStream
    HAS_PGLAST = True
except ImportError:  # pragma: no cover - patchset reports it
    pglast = None
    HAS_PGLAST = False

try:
    import psycopg2
except ImportError:  # pragma: no cover - postgres.connect() reports it
    psycopg2 = None

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import locks
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.patchset import COLD, HOT
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.patchset import walk as _walk
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import ConnectError, one_line, query
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.schema import cold_overhead_sql

ERROR, WARNING, INFO = 'error', 'warning', 'info'
SEVERITIES = (ERROR, WARNING, INFO)

# Kinds of work, each priced by the model.
REWRITE, SCAN, INDEX_BUILD, DATA, CATALOG, CONTRACT, REFUSED, CODE = (
    'rewrite', 'scan', 'index build', 'data change', 'catalog only', 'contract change', 'refused', 'runs code')

# rule -> (kind of work, lock, default severity, what it is, suggested safe rewrite)
RULES = {
    'alter-type-rewrite': (
        REWRITE, 'ACCESS EXCLUSIVE', WARNING,
        'ALTER COLUMN TYPE rewrites the table and rebuilds its indexes',
        'add a column of the new type, fill it in batches before the deploy (and keep it filled with a trigger), '
        'then switch to it in a later deploy'),
    'alter-type-binary-compatible': (
        CATALOG, 'ACCESS EXCLUSIVE', INFO,
        'ALTER COLUMN TYPE to a binary-compatible type: catalog only, no rewrite', None),
    'add-column-volatile-default': (
        REWRITE, 'ACCESS EXCLUSIVE', WARNING,
        'ADD COLUMN with a volatile default (or serial/identity) rewrites the table',
        'add the column with no default (or a constant one), fill it in batches outside the outage, '
        'then SET DEFAULT'),
    'add-column-generated-stored': (
        REWRITE, 'ACCESS EXCLUSIVE', WARNING,
        'ADD COLUMN ... GENERATED ALWAYS AS ... STORED rewrites the table',
        'add a plain column, fill it in batches outside the outage and keep it filled with a trigger'),
    'add-column-not-null-without-default': (
        SCAN, 'ACCESS EXCLUSIVE', ERROR,
        'ADD COLUMN ... NOT NULL with no default fails on a table that has rows',
        'give the column a constant DEFAULT, or add it nullable and SET NOT NULL in a later deploy'),
    'add-column-constraint': (
        SCAN, 'ACCESS EXCLUSIVE', WARNING,
        'ADD COLUMN with an inline CHECK or REFERENCES scans the table',
        'add the column alone, then the constraint NOT VALID, and VALIDATE it outside the outage'),
    'vacuum-full': (
        REWRITE, 'ACCESS EXCLUSIVE', ERROR,
        'VACUUM FULL rewrites the table under an ACCESS EXCLUSIVE lock, live',
        'use pg_repack (or plain VACUUM) outside the deploy'),
    'cluster': (
        REWRITE, 'ACCESS EXCLUSIVE', WARNING,
        'CLUSTER rewrites the table in index order and rebuilds its indexes',
        'use pg_repack outside the deploy'),
    'rewrite-storage': (
        REWRITE, 'ACCESS EXCLUSIVE', WARNING,
        'SET LOGGED/UNLOGGED or SET TABLESPACE copies the whole table',
        'do it outside the deploy, in a maintenance window of its own'),
    'set-not-null-scan': (
        SCAN, 'ACCESS EXCLUSIVE', WARNING,
        'SET NOT NULL scans the whole table (no validated CHECK (col IS NOT NULL) proves it)',
        'ADD CONSTRAINT c CHECK (col IS NOT NULL) NOT VALID in one deploy, VALIDATE it outside the outage; '
        'then SET NOT NULL is catalog only'),
    'set-not-null-proven': (
        CATALOG, 'ACCESS EXCLUSIVE', INFO,
        'SET NOT NULL proven by a validated CHECK (col IS NOT NULL): catalog only', None),
    'add-check-without-not-valid': (
        SCAN, 'ACCESS EXCLUSIVE', WARNING,
        'ADD CONSTRAINT ... CHECK without NOT VALID scans the whole table',
        'add it NOT VALID in the outage and VALIDATE CONSTRAINT outside it'),
    'add-foreign-key-without-not-valid': (
        SCAN, 'SHARE ROW EXCLUSIVE (both tables)', WARNING,
        'ADD CONSTRAINT ... FOREIGN KEY without NOT VALID scans the table and probes the referenced one',
        'add it NOT VALID in the outage and VALIDATE CONSTRAINT outside it'),
    'analyze': (
        SCAN, 'SHARE UPDATE EXCLUSIVE', WARNING,
        'ANALYZE inside the outage reads a sample of the table (up to 300 x default_statistics_target pages) '
        'while clients wait',
        'leave it out of the patch: the window commits without fresh statistics; autovacuum analyzes the table, '
        'or run ANALYZE after the deploy'),
    'validate-constraint': (
        SCAN, 'SHARE UPDATE EXCLUSIVE', WARNING,
        'VALIDATE CONSTRAINT inside the outage scans the whole table while clients wait',
        'run VALIDATE CONSTRAINT outside the outage: it takes a lock that lets reads and writes go on'),
    'attach-partition-scan': (
        SCAN, 'ACCESS EXCLUSIVE (the table attached; SHARE UPDATE EXCLUSIVE on the partitioned table)', WARNING,
        'ATTACH PARTITION scans the table attached (every partition of it) for rows outside the bound: no valid '
        'CHECK constraint of it implies the bound',
        'before the deploy, add to the table a CHECK constraint matching the bound (NOT VALID, then VALIDATE '
        'CONSTRAINT outside the outage; e.g. CHECK (k IS NOT NULL AND k >= lower AND k < upper)): PostgreSQL then '
        'skips the scan; drop the constraint after the attach'),
    'default-partition-scan': (
        SCAN, 'ACCESS EXCLUSIVE (the DEFAULT partition)', WARNING,
        'a new partition beside a DEFAULT partition: PostgreSQL scans the DEFAULT partition (every partition of '
        'it) for rows of the new bound, under ACCESS EXCLUSIVE',
        'keep the DEFAULT partition empty (move its rows to their partitions in batches before the deploy), or '
        'create each partition before rows of its range arrive'),
    'partition-bound-violated': (
        REFUSED, None, ERROR,
        'rows already there do not fit the new partition: PostgreSQL would refuse the statement inside the window '
        '("updated partition constraint for default partition ... would be violated by some row" / "partition '
        'constraint of relation ... is violated by some row") and the window would roll back',
        'before the deploy, move those rows: out of the DEFAULT partition (into the table you then attach, or '
        'delete them), or out of the table attached; then deploy again'),
    'create-index': (
        INDEX_BUILD, 'SHARE', WARNING,
        'CREATE INDEX without CONCURRENTLY builds the index while writes wait',
        'make it CREATE INDEX CONCURRENTLY in a hot patch (applied live, before the outage)'),
    'add-unique-without-index': (
        INDEX_BUILD, 'ACCESS EXCLUSIVE', WARNING,
        'ADD UNIQUE without USING INDEX builds the index inside the outage',
        'CREATE UNIQUE INDEX CONCURRENTLY in a hot patch, then ADD CONSTRAINT ... UNIQUE USING INDEX'),
    'add-primary-key-without-index': (
        INDEX_BUILD, 'ACCESS EXCLUSIVE', WARNING,
        'ADD PRIMARY KEY without USING INDEX builds the index (and checks NOT NULL) inside the outage',
        'CREATE UNIQUE INDEX CONCURRENTLY in a hot patch, then ADD CONSTRAINT ... PRIMARY KEY USING INDEX'),
    'concurrently-in-transaction': (
        REFUSED, None, ERROR,
        'CONCURRENTLY cannot run inside the outage\'s transaction',
        'move it to a hot patch of its own (applied live, before the outage)'),
    'detach-concurrently-default-partition': (
        REFUSED, None, ERROR,
        'DETACH PARTITION ... CONCURRENTLY of a partitioned table that has a DEFAULT partition: PostgreSQL refuses '
        'it ("cannot detach partitions concurrently when a default partition exists"), so the hot phase would fail',
        'detach it without CONCURRENTLY in a cold patch (ACCESS EXCLUSIVE on the partitioned table for the '
        'window), or detach the DEFAULT partition first'),
    'partitioned-no-transaction-block': (
        REFUSED, None, ERROR,
        'REINDEX TABLE/INDEX (PostgreSQL 14+) or CLUSTER (15+) of a partitioned table cannot run inside a '
        'transaction block: the window would roll back',
        'REINDEX ... CONCURRENTLY in a hot patch, or name each partition'),
    'data-change': (
        DATA, 'ROW EXCLUSIVE', INFO,
        'a data change: rows estimated by the planner on the primary',
        'backfill large changes in batches outside the outage'),
    'catalog-only': (
        CATALOG, None, INFO, 'catalog only', None),
    'cost-unknown': (
        CODE, None, ERROR,
        'runs code (a function, a DO block, a procedure, a query) whose time the lint cannot know: cost unknown',
        'run it outside the outage (e.g. a batched backfill before the deploy); or, once you know it is quick, '
        'opt out naming it in fastdowntime_lint_ignore_rules: cost-unknown:FILE:LINE (the estimate still says '
        'unknown)'),
    'sleep': (
        CODE, None, INFO, 'pg_sleep: the seconds it asks for', None),
    'search-path-unknown': (
        CATALOG, None, WARNING,
        'sets search_path where the pre-flight cannot follow it (only running it would tell): an unqualified name '
        'after it in the patch is looked for in every schema (the locks named may be more than the window takes) '
        'and priced as the deploy session resolves it',
        'schema-qualify the names after it (ALTER TABLE app.t ...), or SET search_path to constant names at the '
        'top level of the patch'),
    'drop-column': (
        CONTRACT, 'ACCESS EXCLUSIVE', ERROR,
        'DROP COLUMN breaks app servers still running code that reads the column',
        'drop it only once no running code uses it (the second half of the lockstep rule), and acknowledge '
        'it in fastdowntime_lint_acknowledge_contract'),
    'drop-table': (
        CONTRACT, 'ACCESS EXCLUSIVE', ERROR,
        'DROP TABLE breaks app servers still running code that uses the table',
        'drop it only once no running code uses it (the second half of the lockstep rule), and acknowledge '
        'it in fastdowntime_lint_acknowledge_contract'),
    'rename-internal': (
        CATALOG, None, INFO,
        'RENAME of an object application code does not name (index, constraint, trigger, rule, policy, '
        'statistics, a sequence owned by a column...): catalog only, not a contract change', None),
    'rename': (
        CONTRACT, 'ACCESS EXCLUSIVE', ERROR,
        'RENAME breaks app servers still running code that uses the old name',
        'add the new name alongside (a view or a new column), move the code, drop the old name in a later '
        'deploy - or acknowledge it in fastdowntime_lint_acknowledge_contract'),
}
CONTRACT_RULES = tuple(rule for rule, spec in RULES.items() if spec[0] == CONTRACT)

# The model's factors, in units of "time to scan the table's bytes once"
# (calibrated on the lab, see docs/lint.md). They err on the high side: the
# pre-flight's estimate must not fall below the outage on big tables.
# T is the median of SAMPLE_RUNS samples (below): the factors are calibrated against that T. Lab, 2026-11-30
# 18:05-18:12 UTC, load average 0.7-2 (2 cores, fsync off, shared_buffers 64 MB), the benchmark's 110 MB table of
# 1.5 M rows VACUUMed once loaded; 20 rounds, each T sampled as the pre-flight does, then each statement timed in a
# transaction rolled back; the statement's time / (heap/T):
#   CREATE INDEX: 5.55-6.95 (median 5.8)
#   ALTER COLUMN TYPE int -> bigint (a rewrite, no index): 12.8-20.4 (median 14.6), COMMIT's drop term apart
#   ADD CONSTRAINT ... CHECK (a validating scan): 1.12-2.54 (median 1.5; 1.17 in the benchmark's runs)
# Against the slowest of the 5 samples, as before, the same runs spread 5.4-5.9 x (T's slowest sample took 230-1490
# MB/s, its median 1507-1576 MB/s), more than the 2 x the estimate may be off. The margin for a host busier than when
# T was sampled: the index build 1.3 x the slowest run (a build stalled by others' load took 1.13 x its price at
# 7.6); the rewrite 1.08 x, as its own spread (1.58 x) leaves no more room within 2 x; the validating scan 2.0,
# above 17 of 20 (1.7 x the benchmark's).
REWRITE_FACTOR = 22.0       # read + write + WAL-log the heap (checkpoints included)
INDEX_BUILD_FACTOR = 9.0    # scan + sort + write + WAL-log one index
SCAN_FACTOR = 2.0           # every row's tuple read and its condition checked
# Per byte of rows changed by UPDATE/DELETE/INSERT ... SELECT (incl. each index): not measured again; 18 against the
# slowest sample, times 1.5, the median sample's speed over the slowest's in the runs above (as for DROP_FACTOR).
WRITE_FACTOR = 27.0
# A rewrite's COMMIT drops the old heap and index files (each server does: the primary at COMMIT, every standby
# when it replays the commit record), and that takes time in proportion to their size. Measured on the lab
# (ALTER COLUMN TYPE of 0.75 M, 1.5 M, 3 M rows, COMMIT timed alone, 16 runs at load averages 4-7): the COMMIT took
# 31-53 ms for 57 MB, 36-101 ms for 115 MB, 62-175 ms for 230 MB (medians 33, 49, 79 ms), 0.16-0.61 x heap/T
# (median 0.27); neither the WAL left unflushed at COMMIT (0.5-8.7 MB) nor the checkpointer's state ordered the
# times. truncate(2) of such a file in the page cache alone took 0.085 ms/MB here (a tenth of it). The factor
# covers 14 of the 16 runs; the two above it (101 ms twice at 115 MB) waited in steps of ~50 ms. An index build
# or a validating scan drops nothing: their COMMITs took 0.2-6.4 ms. Those ratios were against the slowest of the
# samples; 0.6 is 0.4 x 1.5, the median sample's speed over the slowest's.
DROP_FACTOR = 0.6
# Standbys stream and replay while the primary works: after COMMIT only the
# tail is left (measured: under 0.05 s after 24 s of rewrite on a quiet lab,
# 0.18 s after 5.6 s of rewrite under the benchmark's load).
REPLAY_FACTOR = 0.4
# A new index: about this many bytes per row (tuple header, key, line pointer).
INDEX_BYTES_PER_ROW = 24
# ANALYZE reads at most 300 x default_statistics_target (100) pages of 8 KiB of a table.
ANALYZE_SAMPLE_BYTES = 300 * 100 * 8192
# Scan throughput when the largest touched table is too small to sample.
DEFAULT_SCAN_BYTES_PER_SECOND = 200 * 1024 * 1024
MIN_SAMPLE_BYTES = 4 * 1024 * 1024
SAMPLE_PAGES = 8192         # at most 64 MiB read by each of the samples
# The median run counts. The slowest did until 2026-11-30 (the window's work is one more draw from the host's load),
# but one preempted sample in 5 made it swing 5 x between pre-flights of the same table on a quiet lab (230-1490
# MB/s), so no factor held a big table's estimate both above its outage and within 2 x of it; the median swung 1.05
# x. The margin for a busier host is in the factors. 5 runs: a first one reading from disk does not decide.
SAMPLE_RUNS = 5
SAMPLE_TIMEOUT_MS = 750     # ... and each never longer than this

# Functions known without asking the database (pg_proc.provolatile).
KNOWN_VOLATILITY = {
    'now': 's', 'current_timestamp': 's', 'transaction_timestamp': 's', 'statement_timestamp': 's',
    'current_date': 's', 'localtimestamp': 's', 'current_user': 's', 'session_user': 's',
    'random': 'v', 'nextval': 'v', 'clock_timestamp': 'v', 'timeofday': 'v', 'gen_random_uuid': 'v',
    'uuid_generate_v1': 'v', 'uuid_generate_v1mc': 'v', 'uuid_generate_v4': 'v', 'setseed': 'v',
    'lower': 'i', 'upper': 'i', 'md5': 'i', 'concat': 's', 'coalesce': 'i', 'length': 'i',
}
# Objects application code does not name (it names tables, views, columns,
# functions, types, schemas, free-standing sequences): renaming one of these is
# no contract change (ObjectType names).
NOT_NAMED_BY_APPLICATIONS = frozenset((
    'OBJECT_INDEX', 'OBJECT_TABCONSTRAINT', 'OBJECT_DOMCONSTRAINT', 'OBJECT_TRIGGER', 'OBJECT_RULE',
    'OBJECT_POLICY', 'OBJECT_STATISTIC_EXT', 'OBJECT_EVENT_TRIGGER', 'OBJECT_OPCLASS', 'OBJECT_OPFAMILY',
    'OBJECT_PUBLICATION', 'OBJECT_SUBSCRIPTION', 'OBJECT_TABLESPACE'))
# pg_class.relkind of a partitioned table and a partitioned index; of a foreign table (never scanned as a partition).
PARTITIONED_RELKINDS = ('p', 'I')
FOREIGN_TABLE = 'f'
SERIAL_TYPES = ('serial', 'serial4', 'serial8', 'bigserial', 'smallserial', 'serial2')

# pglast's type names -> format_type()'s, so the catalog's types compare.
TYPE_NAMES = {
    'varchar': 'character varying', 'bpchar': 'character', 'int2': 'smallint', 'int4': 'integer',
    'int8': 'bigint', 'float4': 'real', 'float8': 'double precision', 'bool': 'boolean',
    'timestamp': 'timestamp without time zone', 'timestamptz': 'timestamp with time zone',
    'time': 'time without time zone', 'timetz': 'time with time zone', 'varbit': 'bit varying',
    'decimal': 'numeric', 'int': 'integer', 'integer': 'integer', 'smallint': 'smallint', 'bigint': 'bigint',
}
# Same type, a typmod that only grows (or goes away): catalog only.
TYPMOD_WIDENING_TYPES = ('character varying', 'bit varying', 'timestamp without time zone',
                         'timestamp with time zone', 'time without time zone', 'time with time zone', 'interval')
# (from, to) pairs PostgreSQL converts without touching a row (binary-coercible, no length check).
BINARY_COERCIBLE = {('character varying', 'text'), ('text', 'character varying'), ('cidr', 'inet')}


class LintError(Exception):
    """Bad lint options (an unknown rule, a bad severity); str() is the operator message."""


# -- parse-tree helpers --------------------------------------------------------

def _name(value):
    return getattr(value, 'name', str(value))


def _strings(items):
    return [getattr(item, 'sval', None) for item in items or ()]


def table_key(relation):
    """(schema or None, table) of a RangeVar, as the parser case-folded it."""
    return (relation.schemaname or None, relation.relname)


def key_text(key):
    return '%s.%s' % key if key[0] else key[1]


def _func_name(node):
    return _strings(node.funcname)[-1].lower()


def type_of(type_name):
    """(format_type name, modifiers) of a pglast TypeName: ('character varying', (20,))."""
    names = [n for n in _strings(type_name.names) if n]
    base = names[-1].lower() if names else ''
    modifiers = []
    for mod in type_name.typmods or ():
        value = getattr(getattr(mod, 'val', None), 'ival', None)
        modifiers.append(value)
    if type_name.arrayBounds:
        return (TYPE_NAMES.get(base, base) + '[]', tuple(modifiers))
    return (TYPE_NAMES.get(base, base), tuple(modifiers))


def modifiers_of(type_text, typmod):
    """The modifiers a catalog column's atttypmod encodes (-1: none)."""
    if typmod is None or typmod < 0:
        return ()
    if type_text in ('character varying', 'character'):
        return (typmod - 4,)
    if type_text == 'numeric':
        return ((typmod - 4) >> 16, (typmod - 4) & 0xffff)
    return (typmod,)


def type_change_rewrites(current, target, using):
    """Does ALTER COLUMN TYPE from ``current`` to ``target`` (both (type,
    modifiers)) rewrite the table? The cases PostgreSQL skips: the same type
    with a modifier that only widens (varchar(10) -> varchar(20), numeric(10,2)
    -> numeric(12,2)) or goes away, varchar -> text, text -> varchar with no
    length, cidr -> inet; never with a USING other than the column itself.
    An unknown current type counts as a rewrite."""
    if current is None or using:
        return True
    (old_type, old_mods), (new_type, new_mods) = current, target
    if old_type == new_type:
        if old_mods == new_mods:
            return False
        widening = old_type in TYPMOD_WIDENING_TYPES or old_type == 'numeric'
        if not widening:
            return True  # char(n), bit(n), ...: every value is padded or checked again
        if not new_mods:
            return False  # the limit goes away
        if not old_mods:
            return True  # unbounded -> bounded: every value is checked
        if old_type == 'numeric':
            old_scale = old_mods[1] if len(old_mods) > 1 else 0
            new_scale = new_mods[1] if len(new_mods) > 1 else 0
            return not (new_mods[0] >= old_mods[0] and new_scale == old_scale)
        return new_mods[0] < old_mods[0]
    if (old_type, new_type) in BINARY_COERCIBLE:
        return new_type == 'character varying' and bool(new_mods)  # text -> varchar(n) checks lengths
    return True


def _using_is_the_column(using, column):
    """USING col (or no USING) changes nothing; any other expression may."""
    if using is None:
        return True
    return type(using).__name__ == 'ColumnRef' and _strings(using.fields)[-1:] == [column]


def volatility(expr, catalog):
    """'v' when evaluating ``expr`` once per row differs from once per table
    (PostgreSQL then rewrites), else 'c' (constant) or 's' (stable/immutable
    calls). An unknown function counts as volatile."""
    worst = 'c'
    for node in _walk(expr):
        kind = type(node).__name__
        if kind == 'SubLink':
            return 'v'
        if kind == 'SQLValueFunction':  # CURRENT_TIMESTAMP, CURRENT_USER...: stable
            worst = 's'
        elif kind == 'FuncCall':
            if catalog.function_volatility(_func_name(node)) not in ('i', 's'):
                return 'v'
            worst = 's'
    return worst


# -- the catalog: what the live primary says about the tables --------------

class Catalog:
    """What the lint knows about the live database. ``tables``: key -> dict
    (exists, reltuples, relpages, heap_bytes, index_bytes, toast_bytes,
    indexes, columns {name: (type, modifiers)}, not_null_checks [columns];
    a partitioned table's sizes are its leaf partitions' summed; partition_key
    (pg_get_partkeydef), default_partition_key (the DEFAULT partition's key,
    itself a table entry), check_constraints (valid CHECKs' texts),
    not_null_columns); ``canonical``: partitioned table key -> {a partition
    bound's constant: the text PostgreSQL prints for it in the table's
    partition key type} (bound_implied); ``bound_rows``: (partitioned table key,
    bound_text, the table attached's key or DEFAULT_ROWS) -> does it hold a row
    PostgreSQL would refuse (True, False, None: not known in time);
    ``session_path``: the deploy session's own search_path (a tuple), where a
    patch sets none (locks.resolved_key: where it lists pg_temp);
    ``functions``: name -> provolatile; ``plan_rows``: (file, line) -> rows
    from EXPLAIN; ``scan_bytes_per_second``: the measured throughput.
    Pure data: unit tests build it by hand, ``gather_catalog`` from the primary."""

    def __init__(self, tables=None, functions=None, plan_rows=None, scan_bytes_per_second=None,
                 throughput_source='default', canonical=None, bound_rows=None, session_path=None):
        self.tables = dict(tables or {})
        self.session_path = session_path
        self.canonical = dict(canonical or {})
        self.bound_rows = dict(bound_rows or {})
        self.functions = dict(functions or {})
        self.plan_rows = dict(plan_rows or {})
        self.scan_bytes_per_second = scan_bytes_per_second or DEFAULT_SCAN_BYTES_PER_SECOND
        self.throughput_source = throughput_source

    def table(self, key):
        found = self.tables.get(key)
        if found is None and key[0] is None:
            # Unqualified names: the first schema that has it (search_path order is the primary's).
            found = next((info for (schema, name), info in self.tables.items() if name == key[1]), None)
        return found

    def column_type(self, key, column):
        info = self.table(key) or {}
        return (info.get('columns') or {}).get(column)

    def proves_not_null(self, key, column):
        info = self.table(key) or {}
        return column in (info.get('not_null_checks') or ())

    def function_volatility(self, name):
        return self.functions.get(name, KNOWN_VOLATILITY.get(name))


# -- classification (pure) ----------------------------------------------------

class _Scope:
    """What the patch set itself creates before a statement: new tables are
    empty, new columns have no catalog type yet."""

    def __init__(self):
        self.new_tables = set()
        self.new_columns = {}   # key -> {column: (type, modifiers)}


def _work(rule, key, **extra):
    item = {'rule': rule, 'table': key}
    item.update(extra)
    return item


def _alter_table_work(node, catalog, scope, kind=COLD):
    key = table_key(node.relation)
    works = []
    for cmd in node.cmds or ():
        sub = _name(cmd.subtype)
        definition = cmd.def_
        if sub == 'AT_AddColumn':
            works.extend(_add_column_work(key, definition, catalog))
            scope.new_columns.setdefault(key, {})[definition.colname] = type_of(definition.typeName)
        elif sub == 'AT_AlterColumnType':
            target = type_of(definition.typeName)
            current = scope.new_columns.get(key, {}).get(cmd.name) or catalog.column_type(key, cmd.name)
            using = definition.raw_default
            changes = not _using_is_the_column(using, cmd.name)
            rewrites = type_change_rewrites(current, target, changes)
            works.append(_work('alter-type-rewrite' if rewrites else 'alter-type-binary-compatible', key,
                               detail='%s: %s -> %s' % (cmd.name, _type_text(current), _type_text(target))))
            scope.new_columns.setdefault(key, {})[cmd.name] = target
        elif sub == 'AT_SetNotNull':
            proven = catalog.proves_not_null(key, cmd.name)
            works.append(_work('set-not-null-proven' if proven else 'set-not-null-scan', key, detail=cmd.name))
        elif sub == 'AT_AddConstraint':
            works.extend(_constraint_work(key, definition))
        elif sub == 'AT_ValidateConstraint':
            works.append(_work('validate-constraint', key, detail=cmd.name))
        elif sub == 'AT_DropColumn':
            works.append(_work('drop-column', key, detail=cmd.name))
        elif sub in ('AT_SetLogged', 'AT_SetUnLogged', 'AT_SetTableSpace'):
            works.append(_work('rewrite-storage', key, detail=sub[3:]))
        elif sub == 'AT_AddIdentity':
            works.append(_work('add-column-volatile-default', key, detail='%s identity' % cmd.name))
        elif sub == 'AT_AttachPartition':
            works.extend(_attach_work(key, definition, catalog))
        elif getattr(definition, 'concurrent', False) and kind == COLD:
            works.append(_work('concurrently-in-transaction', key))
        elif getattr(definition, 'concurrent', False) and (catalog.table(key) or {}).get('default_partition'):
            works.append(_work('detach-concurrently-default-partition', key,
                               detail='DEFAULT partition %s' % catalog.table(key)['default_partition']))
        else:
            works.append(_work('catalog-only', key, detail=sub[3:]))
    return works


def _default_partition_work(parent, bound, catalog):
    """The scan of ``parent``'s DEFAULT partition a new partition of ``bound``
    makes (ATTACH PARTITION, CREATE TABLE ... PARTITION OF), [] without one."""
    default = (catalog.table(parent) or {}).get('default_partition_key')
    if default is None or getattr(bound, 'is_default', False) \
            or (catalog.table(default) or {}).get('relkind') == FOREIGN_TABLE:   # a foreign table is not scanned
        return []
    works = [_work('default-partition-scan', default, detail='the DEFAULT partition of %s' % key_text(parent))]
    if catalog.bound_rows.get((parent, bound_text(bound), DEFAULT_ROWS)):
        works.append(_work('partition-bound-violated', default, detail='the DEFAULT partition of %s has rows of '
                                                                       'the new bound' % key_text(parent)))
    return works


def _attach_work(parent, command, catalog):
    """ALTER TABLE parent ATTACH PARTITION child FOR VALUES ... (tablecmds.c
    ATExecAttachPartition, QueuePartitionConstraintValidation): the child
    scanned unless its valid CHECK constraints imply the bound
    (bound_implied), and the DEFAULT partition scanned."""
    child = table_key(command.name)
    info = catalog.table(child) or {}
    parent_info = catalog.table(parent) or {}
    works = []
    implied = bound_implied(parent_info.get('partition_key'), command.bound, info.get('check_constraints') or (),
                            info.get('not_null_columns') or (), catalog.canonical.get(parent))
    if info.get('relkind') != FOREIGN_TABLE and not implied:
        works.append(_work('attach-partition-scan', child, detail='to %s' % key_text(parent)))
    if catalog.bound_rows.get((parent, bound_text(command.bound), child)):
        works.append(_work('partition-bound-violated', child, detail='%s has rows outside the bound'
                                                                     % key_text(child)))
    works.extend(_default_partition_work(parent, command.bound, catalog))
    return works or [_work('catalog-only', child, detail='ATTACH PARTITION: a valid CHECK constraint implies '
                                                         'the bound')]


# -- ATTACH PARTITION: does a CHECK constraint of the table imply its bound? ------------
#
# PostgreSQL skips the scan of a table attached when its valid CHECK constraints
# (and NOT NULL columns) imply the partition constraint (predicate_implied_by).
# Recognised here, soundly and not completely: a single-column RANGE or LIST key;
# the bound's conjuncts each found among the constraints' AND-ed conjuncts - the
# key IS NOT NULL (or a NOT NULL column, or any comparison of it: a strict
# operator), key >= lower and key < upper with the same constants (RANGE), key =
# ANY (ARRAY[...]) or key = v with values among the bound's (LIST). Constants
# compare as PostgreSQL prints them (``canonical``: (type, literal) -> text, read
# from the primary by gather_catalog); anything else is priced as a scan.
PARTITION_KEY = re.compile(r'^(RANGE|LIST) \((\w+|"(?:[^"]|"")+")\)$')


def _const_value(node):
    """A constant's text ('2027-01-01', '10'; a cast's argument), None for
    anything else (MINVALUE, NULL, an expression)."""
    if type(node).__name__ == 'TypeCast':
        return _const_value(node.arg)
    if type(node).__name__ != 'A_Const' or node.isnull:
        return None
    value = node.val
    for slot in ('sval', 'ival', 'fval', 'boolval'):
        if hasattr(value, slot):
            return str(getattr(value, slot))
    return None


def _column_of(node):
    if type(node).__name__ != 'ColumnRef':
        return None
    names = _strings(node.fields)
    return names[-1] if names and names[-1] is not None else None


def _conjuncts(expression_text):
    """The AND-ed conjuncts of one CHECK constraint's pg_get_expr text (parsed
    with pglast); [] when it cannot be read."""
    try:
        node = pglast.parse_sql('SELECT %s' % expression_text)[0].stmt.targetList[0].val
    except Exception:  # pylint: disable=broad-except  # an expression pglast cannot read implies nothing here
        return []
    out, todo = [], [node]
    while todo:
        node = todo.pop(0)
        if type(node).__name__ == 'BoolExpr' and _name(node.boolop) == 'AND_EXPR':
            todo.extend(node.args)
        else:
            out.append(node)
    return out


def _facts(column, check_constraints):
    """(not null, {operator: set of constant texts}, [sets of = ANY values])
    the conjuncts of ``check_constraints`` state about ``column``."""
    not_null, compared, any_of = False, {}, []
    for text in check_constraints:
        for node in _conjuncts(text):
            kind = type(node).__name__
            if kind == 'NullTest' and _column_of(node.arg) == column and _name(node.nulltesttype) == 'IS_NOT_NULL':
                not_null = True
            elif kind == 'A_Expr' and _column_of(node.lexpr) == column:
                operator, how = _strings(node.name)[-1], _name(node.kind)
                if how == 'AEXPR_OP' and _const_value(node.rexpr) is not None:
                    compared.setdefault(operator, set()).add(_const_value(node.rexpr))
                    not_null = True   # a strict operator: no NULL passes it
                elif how == 'AEXPR_OP_ANY' and operator == '=' and type(node.rexpr).__name__ == 'A_ArrayExpr':
                    values = [_const_value(e) for e in node.rexpr.elements or ()]
                    if None not in values:
                        any_of.append(set(values))
                        not_null = True
    return not_null, compared, any_of


def bound_implied(partition_key, bound, check_constraints, not_null_columns=(), canonical=None):
    """Do ``check_constraints`` (pg_get_expr texts of the table's valid CHECK
    constraints) with ``not_null_columns`` imply the partition constraint of
    ``bound`` (a PartitionBoundSpec) under ``partition_key``
    (pg_get_partkeydef: 'RANGE (created)')? False when not proven (see above);
    ``canonical``: {literal: text} - a bound constant as PostgreSQL prints it
    in the key's type (gather_catalog reads it: '2027-01-01' -> '2027-01-01
    00:00:00' for a timestamp key)."""
    match = PARTITION_KEY.match(partition_key or '')
    if not match or bound is None or bound.is_default:
        return False
    column = match.group(2)
    column = column[1:-1].replace('""', '"') if column.startswith('"') else column.lower()
    canonical = canonical or {}

    def text(datum):
        value = _const_value(datum)
        return canonical.get(value, value) if value is not None else None

    not_null, compared, any_of = _facts(column, check_constraints)
    not_null = not_null or column in not_null_columns
    if match.group(1) == 'RANGE':
        lower, upper = (list(bound.lowerdatums or ()), list(bound.upperdatums or ()))
        if len(lower) != 1 or len(upper) != 1:
            return False
        needed = [(op, text(datum)) for op, datum in (('>=', lower[0]), ('<', upper[0]))
                  if _column_of(datum) not in ('minvalue', 'maxvalue')]
        if any(value is None for op, value in needed):
            return False
        return (not_null or bool(needed)) and all(value in compared.get(op, ()) for op, value in needed)
    values = [text(datum) for datum in bound.listdatums or ()]
    if None in values:   # NULL (or an expression) in the list: its constraint lets NULL in - not recognised
        return False
    allowed = set(values)
    return not_null and (any(found <= allowed for found in any_of) or bool(compared.get('=', set()) & allowed))


# -- a new partition's bound and the rows already there ---------------------------------
#
# PostgreSQL refuses ATTACH PARTITION when the table attached has a row outside the
# bound, and ATTACH or CREATE TABLE ... PARTITION OF when the DEFAULT partition has a
# row of the new bound - inside the window, after its scan (pg_partman issues 247,
# 707: rows that arrived in the DEFAULT partition before their partition existed).
# gather_catalog asks the primary first (bound_condition: the partition constraint
# over the key's columns or expressions; an EXISTS, read-only, at most
# BOUND_ROWS_TIMEOUT_MS: unknown after that).
DEFAULT_ROWS = 'DEFAULT'
BOUND_ROWS_TIMEOUT_MS = 5000


def _sql(node):
    """A parse tree node as SQL text (a stream of its own each time: a stream keeps what it wrote)."""
    return RawStream()(node)


def bound_text(bound):
    """A PartitionBoundSpec as SQL (a key for Catalog.bound_rows)."""
    return _sql(bound) if bound is not None else None


def partition_keys(partition_key):
    """(strategy, [key column or expression as SQL]) of pg_get_partkeydef's
    text ('RANGE (a, lower(b))'), None when it cannot be read."""
    match = re.match(r'^(RANGE|LIST|HASH) \((.*)\)$', partition_key or '', re.S)
    if not match:
        return None
    try:
        targets = pglast.parse_sql('SELECT %s' % match.group(2))[0].stmt.targetList
    except Exception:  # pylint: disable=broad-except  # a key pglast cannot read: not checked
        return None
    return match.group(1), [_sql(target.val) for target in targets]


def bound_condition(partition_key, bound, parent_oid=None):
    """A SQL condition over the partition key (``partition_key``:
    pg_get_partkeydef's text) true for a row inside ``bound`` (a
    PartitionBoundSpec), false or NULL outside - PostgreSQL's partition
    constraint: RANGE keys not NULL and (keys) >= (lower) and < (upper), a
    MINVALUE/MAXVALUE ending the compared prefix; LIST key IN (values) or IS
    NULL; HASH satisfies_hash_partition(``parent_oid``, ...). None for a
    DEFAULT bound or a key or bound it cannot read."""
    keys = partition_keys(partition_key)
    if keys is None or bound is None or bound.is_default:
        return None
    strategy, exprs = keys
    text = _sql
    if strategy == 'HASH':
        if parent_oid is None:
            return None
        return 'satisfies_hash_partition(%d::oid, %d, %d, %s)' % (
            int(parent_oid), bound.modulus, bound.remainder, ', '.join(exprs))
    if strategy == 'LIST':
        values = [text(datum) for datum in bound.listdatums or ()]
        plain = [value for value in values if value.upper() != 'NULL']
        parts = (['%s IN (%s)' % (exprs[0], ', '.join(plain))] if plain else []) + (
            ['%s IS NULL' % exprs[0]] if len(plain) < len(values) else [])
        return '(%s)' % ' OR '.join(parts) if parts else None
    parts = ['%s IS NOT NULL' % expr for expr in exprs]
    for datums, closed, open_ended in ((bound.lowerdatums, '>=', {'minvalue': '>=', 'maxvalue': '>'}),
                                       (bound.upperdatums, '<', {'maxvalue': '<=', 'minvalue': '<'})):
        values = [text(datum) for datum in datums or ()]
        operator, compared = closed, len(values)
        for position, value in enumerate(values):
            if value.lower() in open_ended:
                operator, compared = open_ended[value.lower()], position
                break
        if compared:
            parts.append('(%s) %s (%s)' % (', '.join(exprs[:compared]), operator, ', '.join(values[:compared])))
    return '(%s)' % ' AND '.join(parts)


def _type_text(type_and_mods):
    if type_and_mods is None:
        return 'unknown type'
    name, mods = type_and_mods
    return '%s(%s)' % (name, ','.join(str(m) for m in mods)) if mods else name


def _add_column_work(key, column, catalog):
    type_name = type_of(column.typeName)[0]
    constraints = list(column.constraints or ())
    kinds = dict((_name(c.contype), c) for c in constraints)
    name = column.colname
    if type_name in SERIAL_TYPES:
        return [_work('add-column-volatile-default', key, detail='%s %s (nextval)' % (name, type_name))]
    if 'CONSTR_IDENTITY' in kinds:
        return [_work('add-column-volatile-default', key, detail='%s identity (nextval)' % name)]
    if 'CONSTR_GENERATED' in kinds:
        return [_work('add-column-generated-stored', key, detail=name)]
    works = []
    default = kinds.get('CONSTR_DEFAULT')
    if default is not None and volatility(default.raw_expr, catalog) == 'v':
        works.append(_work('add-column-volatile-default', key, detail=name))
    elif 'CONSTR_NOTNULL' in kinds and default is None:
        works.append(_work('add-column-not-null-without-default', key, detail=name))
    if 'CONSTR_CHECK' in kinds or 'CONSTR_FOREIGN' in kinds:
        works.append(_work('add-column-constraint', key, detail=name,
                           referenced=table_key(kinds['CONSTR_FOREIGN'].pktable)
                           if 'CONSTR_FOREIGN' in kinds else None))
    if 'CONSTR_PRIMARY' in kinds:
        works.append(_work('add-primary-key-without-index', key, detail=name))
    elif 'CONSTR_UNIQUE' in kinds:
        works.append(_work('add-unique-without-index', key, detail=name))
    return works or [_work('catalog-only', key, detail='ADD COLUMN %s' % name)]


def _constraint_work(key, constraint):
    kind = _name(constraint.contype)
    label = constraint.conname or kind[7:].lower()
    if kind == 'CONSTR_CHECK':
        return [_work('catalog-only' if constraint.skip_validation else 'add-check-without-not-valid', key,
                      detail=label)]
    if kind == 'CONSTR_FOREIGN':
        if constraint.skip_validation:
            return [_work('catalog-only', key, detail=label)]
        return [_work('add-foreign-key-without-not-valid', key, detail=label,
                      referenced=table_key(constraint.pktable))]
    if kind in ('CONSTR_PRIMARY', 'CONSTR_UNIQUE', 'CONSTR_EXCLUSION'):
        if constraint.indexname:
            return [_work('catalog-only', key, detail='%s USING INDEX %s' % (label, constraint.indexname))]
        return [_work('add-primary-key-without-index' if kind == 'CONSTR_PRIMARY' else 'add-unique-without-index',
                      key, detail=label)]
    return [_work('catalog-only', key, detail=label)]


def _drop_work(node):
    kind = _name(node.removeType)
    if node.concurrent:
        return [_work('concurrently-in-transaction', None)]
    if kind == 'OBJECT_TABLE':
        return [_work('drop-table', (names[-2] if len(names) > 1 else None, names[-1]))
                for names in (_strings(obj) for obj in node.objects or ())]
    return [_work('catalog-only', None, detail='DROP %s' % kind[7:])]


def classify(node, catalog, scope=None, kind=COLD):
    """The work items of one parsed statement: dicts with ``rule``, ``table``
    (key or None) and optional ``detail``/``referenced``. ``kind`` is the
    patch's (HOT statements run live, outside the outage)."""
    scope = scope or _Scope()
    name = type(node).__name__
    if name == 'AlterTableStmt' and _name(node.objtype) == 'OBJECT_TABLE':
        return _alter_table_work(node, catalog, scope, kind)
    if name == 'IndexStmt':
        key = table_key(node.relation)
        if node.concurrent:
            return [_work('concurrently-in-transaction' if kind == COLD else 'catalog-only', key,
                          detail='CREATE INDEX CONCURRENTLY')]
        return [_work('create-index', key, detail=node.idxname or '')]
    if name == 'VacuumStmt':
        options = set(getattr(o, 'defname', None) for o in node.options or ())
        if 'full' in options:
            return [_work('vacuum-full', table_key(r.relation)) for r in node.rels or ()] or \
                [_work('vacuum-full', None, detail='every table')]
        if kind == COLD and not node.is_vacuumcmd:
            # ANALYZE runs in a transaction block: in the window it reads each table's sample while clients wait.
            return [_work('analyze', table_key(r.relation)) for r in node.rels or () if r.relation is not None] or \
                [_work('cost-unknown', None, detail='ANALYZE of every table of the database')]
        return [_work('catalog-only', None, detail='VACUUM' if node.is_vacuumcmd else 'ANALYZE')]
    if name in ('ReindexStmt', 'ClusterStmt') and kind == COLD and node.relation is not None \
            and (catalog.table(table_key(node.relation)) or {}).get('relkind') in PARTITIONED_RELKINDS:
        # patchset.NO_TRANSACTION_BLOCK's two entries that need the catalog.
        return [_work('partitioned-no-transaction-block', table_key(node.relation), detail=name[:-4].upper())]
    if name == 'ClusterStmt':
        return [_work('cluster', table_key(node.relation) if node.relation is not None else None)]
    if name == 'RenameStmt':
        key = table_key(node.relation) if node.relation is not None else None
        renamed = pglast.enums.ObjectType(node.renameType).name
        if renamed in NOT_NAMED_BY_APPLICATIONS or (
                renamed == 'OBJECT_SEQUENCE' and key and (catalog.table(key) or {}).get('owned_by_column')):
            return [_work('rename-internal', key, detail='%s %s -> %s' % (
                renamed[7:].lower(), node.subname or (key_text(key) if key else '?'), node.newname))]
        return [_work('rename', key, detail='%s -> %s' % (node.subname or key_text(key) if key else node.subname,
                                                          node.newname))]
    if name == 'DropStmt':
        return _drop_work(node)
    if name == 'CreateStmt':
        temporary = locks.temp_created(node) is not None   # its patch's own (lint_patches)
        key = (locks.TEMP_SCHEMA, node.relation.relname) if temporary else table_key(node.relation)
        scope.new_tables.add(key)
        works = [_work('catalog-only', key, detail='CREATE TABLE')]
        if node.partbound is not None:
            for parent in node.inhRelations or ():
                works.extend(_default_partition_work(table_key(parent), node.partbound, catalog))
        return works
    if name in ('UpdateStmt', 'DeleteStmt'):
        return [_work('data-change', table_key(node.relation), detail=name[:-4].upper())]
    if name == 'InsertStmt':
        select = node.selectStmt
        if select is not None and not getattr(select, 'valuesLists', None):
            return [_work('data-change', table_key(node.relation), detail='INSERT ... SELECT')]
        return [_work('catalog-only', table_key(node.relation), detail='INSERT ... VALUES')]
    if kind == COLD:
        code = runs_code(node)
        if code is not None:
            return [code]
    return [_work('catalog-only', None, detail=name)]


# Functions a SELECT with no FROM may call and stay catalog only (pg_dump's
# preamble and sequence values: set_config, setval).
CHEAP_FUNCTIONS = frozenset((
    'set_config', 'current_setting', 'setval', 'nextval', 'currval', 'now', 'version', 'current_database',
    'current_schema', 'current_user', 'format', 'concat', 'lower', 'upper', 'to_regclass'))


def _constant_seconds(call):
    """The seconds of ``pg_sleep(<number>)``, or None."""
    args = call.args or ()
    value = getattr(args[0], 'val', None) if len(args) == 1 and type(args[0]).__name__ == 'A_Const' else None
    number = getattr(value, 'ival', None)
    if number is None and getattr(value, 'fval', None) is not None:
        number = float(value.fval)
    return float(number) if isinstance(number, (int, float)) and number >= 0 else None


def runs_code(node):
    """The work item of a cold statement that runs code the lint cannot price
    (rule ``cost-unknown``: DO, CALL, a SELECT that reads a table or calls a
    function outside CHEAP_FUNCTIONS, CREATE TABLE AS / MATERIALIZED VIEW /
    REFRESH with data), ``sleep`` for SELECT pg_sleep(<constant>)..., or None."""
    name = type(node).__name__
    if name == 'DoStmt':
        return _work('cost-unknown', None, detail='DO block')
    if name == 'CallStmt':
        return _work('cost-unknown', None, detail='CALL %s()' % _func_name(node.funccall))
    if name == 'RefreshMatViewStmt':
        return None if node.skipData else _work('cost-unknown', None, detail='REFRESH MATERIALIZED VIEW')
    if name == 'CreateTableAsStmt':
        if node.into is not None and node.into.skipData:
            return None
        return _select_work(node.query, 'CREATE ... AS')
    if name == 'SelectStmt':
        return _select_work(node, 'SELECT')
    return None


def _select_work(node, what):
    """runs_code of a query: ``what`` names the statement in the detail."""
    nodes = list(_walk(node))
    calls = [n for n in nodes if type(n).__name__ == 'FuncCall']
    reads = [n for n in nodes if type(n).__name__ in ('RangeVar', 'SubLink', 'RangeFunction')]
    sleeps = [_constant_seconds(c) for c in calls if _func_name(c) == 'pg_sleep']
    if not reads and sleeps and all(s is not None for s in sleeps) and \
            all(_func_name(c) in CHEAP_FUNCTIONS or _func_name(c) == 'pg_sleep' for c in calls):
        return _work('sleep', None, detail='pg_sleep', seconds=sum(sleeps))
    unpriced = sorted(set(_func_name(c) for c in calls) - CHEAP_FUNCTIONS)
    if reads or unpriced:
        return _work('cost-unknown', None, detail='%s %s' % (what, ', '.join('%s()' % f for f in unpriced)
                                                             if unpriced else 'reading tables'))
    return None


def references(patches, catalog=None):
    """{'tables': set of keys, 'functions': set of names} the statements of
    ``patches`` name - what gather_catalog looks up."""
    tables, functions = set(), set()
    for patch in patches:
        for statement in patch.statements:
            for node in _walk(statement.node):
                kind = type(node).__name__
                if kind == 'RangeVar':
                    tables.add(table_key(node))
                elif kind == 'FuncCall':
                    functions.add(_func_name(node))
                elif kind == 'DropStmt' and _name(node.removeType) == 'OBJECT_TABLE':
                    for names in (_strings(obj) for obj in node.objects or ()):
                        tables.add((names[-2] if len(names) > 1 else None, names[-1]))
    return {'tables': tables, 'functions': functions}


# -- options --------------------------------------------------------------------

def parse_options(severity=None, ignore_rules=None, acknowledge_contract=None):
    """Validate the operator's variables: ``severity`` {rule: level},
    ``ignore_rules`` ['rule', 'rule:file', 'rule:file:line'] (an opt-out
    always names its rule), ``acknowledge_contract`` ['file', 'file:line']."""
    severity = dict(severity or {})
    for rule, level in severity.items():
        if rule not in RULES:
            raise LintError('fastdowntime_lint_severity: unknown rule %r; rules: %s' % (rule, ', '.join(sorted(RULES))))
        if level not in SEVERITIES:
            raise LintError('fastdowntime_lint_severity: %s: unknown level %r (use %s)'
                            % (rule, level, ', '.join(SEVERITIES)))
    opt_outs = []
    for entry in ignore_rules or ():
        parts = str(entry).split(':')
        if parts[0] not in RULES:
            raise LintError('fastdowntime_lint_ignore_rules: %r does not start with a rule name '
                            '(rule, rule:file or rule:file:line); rules: %s' % (entry, ', '.join(sorted(RULES))))
        opt_outs.append(parts)
    acknowledged = [str(entry).split(':') for entry in acknowledge_contract or ()]
    return {'severity': severity, 'opt_outs': opt_outs, 'acknowledged': acknowledged}


def _matches(parts, file_name, line):
    """['file'] or ['file', 'line'] against a finding's place."""
    if not parts:
        return True
    if parts[0] != file_name:
        return False
    return len(parts) < 2 or str(parts[1]) == str(line)


# -- the cost model -----------------------------------------------------------------

def _bytes(info, *names):
    return sum(float((info or {}).get(name) or 0) for name in names)


def is_new_table(key, new_tables):
    """Is ``key`` one of the tables the pending patches create (a name
    without a schema matches the same name with one)?"""
    if not key:
        return False
    # A temporary table (schema pg_temp: lint_patches names it so) is its patch's own: only that key.
    return any(key == new or (key[1] == new[1] and (key[0] is None or new[0] is None) and locks.TEMP_SCHEMA not in
                              (key[0], new[0])) for new in new_tables)


def drop_seconds(dropped_bytes, throughput):
    """Seconds one server takes to drop ``dropped_bytes`` of relation files
    (a rewrite's old heap and indexes) at COMMIT - the primary when it
    commits, each standby when it replays the commit record: dropped bytes /
    T (``throughput``, bytes per second) x DROP_FACTOR."""
    return float(dropped_bytes) / float(throughput) * DROP_FACTOR


def cost_of(work, catalog, rows=None, new_tables=()):
    """(seconds on the primary, WAL bytes for the standbys, what it was
    priced on) for one work item, from the model in the module docstring."""
    rule = work['rule']
    kind = RULES[rule][0]
    key = work.get('table')
    info = catalog.table(key) if key else None
    throughput = float(catalog.scan_bytes_per_second)
    new = is_new_table(key, new_tables)
    if kind == CODE:
        if rule == 'sleep':
            return float(work['seconds']), 0.0, {'model': 'pg_sleep: the seconds it asks for'}
        return 0.0, 0.0, {'model': 'unknown: runs code'}
    if new or (key and info is None) or kind in (CATALOG, CONTRACT, REFUSED):
        reason = 'created by this patch set' if new else (
            'not in the database yet' if key and info is None and kind not in (CATALOG, CONTRACT, REFUSED)
            else 'catalog only')
        return 0.0, 0.0, {'model': reason}
    heap = _bytes(info, 'heap_bytes', 'toast_bytes')
    index_bytes = _bytes(info, 'index_bytes')
    reltuples = max(float(info.get('reltuples') or 0), 0.0)
    indexes = int(info.get('indexes') or 0)
    scan = heap / throughput
    basis = {'table': key_text(key), 'heap_bytes': int(heap), 'index_bytes': int(index_bytes),
             'reltuples': int(reltuples), 'indexes': indexes}
    if kind == REWRITE:
        wal = heap + index_bytes   # the new files, WAL-logged; the old ones are dropped at COMMIT
        basis['dropped_bytes'] = int(wal)
        seconds = scan * REWRITE_FACTOR + indexes * scan * INDEX_BUILD_FACTOR + drop_seconds(wal, throughput)
        basis['model'] = ('rewrite: heap/T x %g + %d index(es) x heap/T x %g + COMMIT dropping the old files: '
                          '(heap + indexes)/T x %g' % (REWRITE_FACTOR, indexes, INDEX_BUILD_FACTOR, DROP_FACTOR))
    elif kind == INDEX_BUILD:
        seconds = scan * INDEX_BUILD_FACTOR
        wal = reltuples * INDEX_BYTES_PER_ROW
        basis['model'] = 'index build: heap/T x %g' % INDEX_BUILD_FACTOR
        if rule == 'add-primary-key-without-index':
            seconds += scan
    elif rule == 'analyze':
        sample = min(heap, ANALYZE_SAMPLE_BYTES)
        seconds, wal = sample / throughput * SCAN_FACTOR, 0.0
        basis['model'] = 'analyze: min(heap, %d MiB sample)/T x %g' % (
            ANALYZE_SAMPLE_BYTES // (1024 * 1024), SCAN_FACTOR)
    elif kind == SCAN:
        seconds, wal = scan * SCAN_FACTOR, 0.0
        basis['model'] = 'scan: heap/T x %g' % SCAN_FACTOR
        referenced = catalog.table(work['referenced']) if work.get('referenced') else None
        if referenced:
            seconds += _bytes(referenced, 'heap_bytes') / throughput
            basis['model'] += ' + referenced heap/T'
    else:  # DATA
        row_bytes = heap / reltuples if reltuples > 0 else 0.0
        touched = reltuples if rows is None else float(rows)
        changed = touched * row_bytes * (1 + indexes)
        seconds = scan + changed / throughput * WRITE_FACTOR
        wal = changed
        basis.update(rows=int(touched), rows_source='planner' if rows is not None else 'reltuples (no plan)',
                     model='data: heap/T + rows x row bytes x (1 + indexes)/T x %g' % WRITE_FACTOR)
    return seconds, wal, basis


# -- findings -----------------------------------------------------------------------

def _statement_text(sql):
    text = one_line(sql)
    return text if len(text) <= 160 else text[:157] + '...'


def lint_patches(patches, catalog, options=None):
    """One finding per statement of every patch in ``patches`` (in order).
    A finding: file, line, statement, rule (the costliest of the statement's
    rules; ``rules`` lists them all), kind, lock, severity, summary,
    suggestion, table, estimate_seconds, replay_seconds, basis, opted_out,
    acknowledged."""
    options = options or parse_options()
    scope = _Scope()
    found = []
    for patch in patches:
        states = locks.path_states(patch.statements, live=patch.kind == HOT)
        temps = locks.temp_states(patch.statements, live=patch.kind == HOT)
        for statement, (path, unknown), own in zip(patch.statements, states, temps):
            if statement.node is None:  # pragma: no cover - patchset always keeps it
                continue
            works = classify(statement.node, catalog, scope, kind=patch.kind)
            for work in works:   # the patch's own temporary table, not a permanent one of its name: new, empty
                if work.get('table') and locks.resolved_key(work['table'], path, own, catalog.session_path) is None:
                    work['table'] = (locks.TEMP_SCHEMA, work['table'][1])
                    scope.new_tables.add(work['table'])
            if unknown:
                works.append(_work('search-path-unknown', None, detail=unknown))
            found.append(_finding(patch, statement, works, catalog, scope, options))
    return found


_SEVERITY_ORDER = {ERROR: 0, WARNING: 1, INFO: 2}


def _finding(patch, statement, works, catalog, scope, options):
    rows = catalog.plan_rows.get((patch.name, statement.line))
    priced = []
    for work in works:
        seconds, wal, basis = cost_of(work, catalog, rows=rows, new_tables=scope.new_tables)
        if patch.kind == HOT:   # live, before the outage: not the outage's time
            seconds, wal = 0.0, 0.0
        priced.append((work, seconds, wal, basis))
    rewrites = [p for p in priced if RULES[p[0]['rule']][0] == REWRITE]
    # One ALTER TABLE rewrites once, checking its constraints in the same pass.
    counted = [max(rewrites, key=lambda p: p[1])] if rewrites else priced
    seconds = sum(p[1] for p in counted)
    wal = sum(p[2] for p in counted)
    # The standbys' tail of the WAL after COMMIT, and their own drop of a rewrite's old files when they replay it.
    replay = wal / float(catalog.scan_bytes_per_second) * REPLAY_FACTOR + (0.0 if patch.kind == HOT else sum(
        drop_seconds(p[3].get('dropped_bytes') or 0, catalog.scan_bytes_per_second) for p in counted))

    def severity_of(work):
        rule = work['rule']
        if RULES[rule][0] != REFUSED and is_new_table(work.get('table'), scope.new_tables):
            # Created earlier in the pending set: empty, and no running code uses it.
            return INFO
        level = options['severity'].get(rule, RULES[rule][2])
        return level

    main = min(priced, key=lambda p: (_SEVERITY_ORDER[severity_of(p[0])], -p[1]))
    work, dummy, dummy, basis = main
    rule = work['rule']
    kind, lock, dummy, what, suggestion = RULES[rule]
    severity = severity_of(work)
    acknowledged = kind == CONTRACT and any(_matches(parts, patch.name, statement.line)
                                            for parts in options['acknowledged'])
    opted_out = any(parts[0] == rule and _matches(parts[1:], patch.name, statement.line)
                    for parts in options['opt_outs'])
    if acknowledged or opted_out:
        severity = INFO
    where = key_text(work['table']) if work.get('table') else None
    detail = work.get('detail')
    summary = '%s line %d: %s%s%s' % (patch.name, statement.line, what,
                                      ' (%s%s)' % (where or '', (': ' + detail) if detail and where else
                                                   (detail or '')) if where or detail else '',
                                      '; estimated %.2fs' % seconds if seconds >= 0.005 else '')
    if is_new_table(work.get('table'), scope.new_tables) and rule != 'catalog-only':
        summary += '; on a table created earlier in the pending patches (empty, unused by running code)'
    if acknowledged:
        summary += '; acknowledged as a contract change'
    if opted_out:
        summary += '; opted out (fastdowntime_lint_ignore_rules)'
    unknown = [p[0] for p in priced if p[0]['rule'] == 'search-path-unknown' and p[0] is not work]
    if unknown:   # a second rule of the statement (a DO block's cost-unknown comes first): said too
        summary += '; it also %s (%s): %s' % (
            RULES['search-path-unknown'][3], unknown[0]['detail'], RULES['search-path-unknown'][4])
    return {
        'file': patch.name, 'line': statement.line, 'statement': _statement_text(statement.sql),
        'patch_kind': patch.kind, 'rule': rule, 'rules': sorted(set(p[0]['rule'] for p in priced)),
        'kind': kind, 'lock': lock, 'severity': severity, 'summary': summary,
        'suggestion': suggestion, 'table': where, 'detail': detail, 'estimate_seconds': round(seconds, 4),
        'replay_seconds': round(replay, 4), 'basis': basis, 'acknowledged': acknowledged, 'opted_out': opted_out,
        'cost_unknown': any(p[0]['rule'] == 'cost-unknown' for p in priced),
    }


def estimate(findings, top=3):
    """The cold statements' cost summed: seconds on the primary, seconds of
    standby replay, the costliest statements (file:line, rule, seconds) and
    ``unknown``: the cold statements that run code of unknown cost
    (file:line what), not in the sums."""
    cold = [f for f in findings if f['patch_kind'] == COLD]
    costly = sorted(cold, key=lambda f: -(f['estimate_seconds'] + f['replay_seconds']))
    return {
        'statements_seconds': round(sum(f['estimate_seconds'] for f in cold), 4),
        'replay_seconds': round(sum(f['replay_seconds'] for f in cold), 4),
        # Cold statements whose time is not in the sums above: the estimate is a lower bound.
        'unknown': ['%s:%d %s' % (f['file'], f['line'], f['detail'] or f['rule'])
                    for f in cold if f.get('cost_unknown')],
        'costliest': ['%s:%d %s (%.2fs)' % (f['file'], f['line'], f['rule'], f['estimate_seconds']
                                            + f['replay_seconds'])
                      for f in costly[:top] if f['estimate_seconds'] + f['replay_seconds'] > 0],
    }


def per_statement_seconds(findings):
    """(file, line) -> primary seconds + replay seconds of the cold statements starting on that
    line, summed: several statements may share a line (``SELECT pg_sleep(12); COMMENT ON ...;``),
    and keeping one finding per line priced the line as its last statement - a 12 s line
    estimated at 0."""
    seconds = {}
    for f in findings:
        if f['patch_kind'] == COLD:
            key = (f['file'], f['line'])
            seconds[key] = seconds.get(key, 0.0) + f['estimate_seconds'] + f['replay_seconds']
    return seconds


def counts(findings):
    result = dict((level, 0) for level in SEVERITIES)
    for item in findings:
        result[item['severity']] += 1
    return result


def summary_lines(findings, total=None, budget_seconds=None):
    """Readable lines: errors, then warnings (each with its suggested rewrite), then the rest."""
    found = counts(findings)
    lines = ['patch lint: %d error(s), %d warning(s), %d info' % (found[ERROR], found[WARNING], found[INFO])]
    if total is not None:
        unknown = [f for f in findings if f.get('cost_unknown') and f['patch_kind'] == COLD]
        lines[0] += '; estimated statement time %.2fs%s%s' % (
            total, ' + unknown (%d statement(s) run code)' % len(unknown) if unknown else '',
            ' of a %gs budget' % budget_seconds if budget_seconds else '')
    for level in SEVERITIES:
        for item in findings:
            if item['severity'] == level:
                lines.append('%s %s' % (level.upper(), item['summary']))
                if level != INFO and item['suggestion']:
                    lines.append('    -> %s' % item['suggestion'])
    return lines


# -- the live database (read-only) ------------------------------------------------

def patch_search_paths(patches):
    """{(None, name): path}: each unqualified table name a statement of
    ``patches`` names under a search_path its patch set (locks.search_paths:
    the window resolves it there, not in the reading session's), with the
    first such path; names under a computed path (locks.ANY_SCHEMA) are left
    to the session's."""
    found = {}
    for patch in patches:
        for statement, path in zip(patch.statements, locks.search_paths(patch.statements, live=patch.kind == HOT)):
            if path is locks.DEFAULT_PATH or path == locks.ANY_SCHEMA or statement.node is None:
                continue
            for node in _walk(statement.node):
                if type(node).__name__ == 'RangeVar' and not node.schemaname:
                    found.setdefault(table_key(node), path)
    return found


# The first schema of a search_path (in order) that has a relation of that name.
FIRST_IN_PATH_SQL = """
SELECT n.nspname FROM unnest(%s::text[]) WITH ORDINALITY AS p(schema, ord)
  JOIN pg_namespace n ON n.nspname = p.schema
  JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = %s
 ORDER BY p.ord LIMIT 1
"""


def _resolved(conn, key, path):
    """``key`` as the window resolves it under ``path`` (patch_search_paths):
    (schema, name) of the first schema of the path that has it, else ``key``."""
    if path is None:
        return key
    schemas = locks.lookup([{'relation': (None, key[1], path)}], conn.info.user)[1]
    rows = query(conn, FIRST_IN_PATH_SQL, (schemas, key[1]))
    return (rows[0]['nspname'], key[1]) if rows else key


TABLE_SQL = """
SELECT c.oid, n.nspname, c.relname, c.relkind,
       -- The rows now, as the planner reckons them: the statistics' density times the pages the table has
       -- now (a table grown or rewritten since its last ANALYZE); unknown (0) without statistics. A partitioned
       -- table (no storage of its own): its leaf partitions' rows and sizes summed (its statements work on them).
       coalesce(sum(CASE WHEN l.reltuples > 0 AND l.relpages > 0
            THEN l.reltuples / l.relpages * ceil(pg_relation_size(l.oid) / current_setting('block_size')::float8)
            ELSE greatest(l.reltuples, 0) END), 0)::float8 AS reltuples,
       coalesce(sum(ceil(pg_relation_size(l.oid) / current_setting('block_size')::float8)), 0)::int AS relpages,
       coalesce(sum(pg_relation_size(l.oid)), 0)::float8 AS heap_bytes,
       coalesce(sum(pg_indexes_size(l.oid)), 0)::float8 AS index_bytes,
       coalesce(sum(coalesce(pg_total_relation_size(l.reltoastrelid), 0)), 0)::float8 AS toast_bytes,
       (SELECT count(*) FROM pg_index i WHERE i.indrelid = c.oid)::int AS indexes,
       -- A partitioned table's DEFAULT partition (DETACH ... CONCURRENTLY is refused while it has one; a new
       -- partition makes PostgreSQL scan it) and its partition key.
       (SELECT p.partdefid::regclass::text FROM pg_partitioned_table p
         WHERE p.partrelid = c.oid AND p.partdefid <> 0) AS default_partition,
       CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END AS partition_key,
       -- A sequence owned by a column (serial, identity): application code does not name it.
       EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0
                  AND d.deptype IN ('a', 'i')) AS owned_by_column
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN LATERAL (SELECT c.oid AS relid WHERE c.relkind <> 'p'
                     UNION ALL SELECT t.relid FROM pg_partition_tree(c.oid) t WHERE c.relkind = 'p' AND t.isleaf) m
         ON true
  LEFT JOIN pg_class l ON l.oid = m.relid
 WHERE c.oid = to_regclass(%s)
 GROUP BY c.oid, n.nspname, c.relname, c.relkind
"""
COLUMNS_SQL = """
SELECT a.attname, format_type(a.atttypid, NULL) AS type, a.atttypmod AS typmod, a.attnotnull
  FROM pg_attribute a WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
"""
CHECKS_SQL = """
SELECT pg_get_expr(conbin, conrelid) AS expr FROM pg_constraint
 WHERE conrelid = %s AND contype = 'c' AND convalidated
"""
FUNCTIONS_SQL = """
SELECT proname, max(CASE provolatile WHEN 'v' THEN 2 WHEN 's' THEN 1 ELSE 0 END) AS worst
  FROM pg_proc WHERE proname = ANY(%s) GROUP BY proname
"""


def not_null_columns(check_expressions):
    """Columns a validated CHECK proves NOT NULL: expressions that are exactly
    ``col IS NOT NULL`` (parsed with pglast, like the patches)."""
    columns = set()
    for expr in check_expressions:
        try:
            target = pglast.parse_sql('SELECT %s' % expr)[0].stmt.targetList[0].val
        except Exception:  # a constraint pglast cannot read proves nothing
            continue
        if type(target).__name__ == 'NullTest' and _name(target.nulltesttype) == 'IS_NOT_NULL' \
                and type(target.arg).__name__ == 'ColumnRef':
            columns.add(_strings(target.arg.fields)[-1])
    return columns


def gather_catalog(conn, patches, explain=True, lock_timeout_ms=1000):
    """A Catalog for ``patches`` from the primary, read-only: one READ ONLY
    transaction, rolled back. Data changes are EXPLAINed (never run); one
    that cannot be planned yet (it needs an earlier pending patch) keeps
    reltuples as its row count."""
    refs = references(patches)
    paths = patch_search_paths(patches)
    tables, functions, plan_rows, canonical, bound_rows = {}, {}, {}, {}, {}
    session_path = None
    with conn.cursor() as cur:
        cur.execute('BEGIN READ ONLY')
        try:
            cur.execute("SET LOCAL lock_timeout = %s", ('%dms' % lock_timeout_ms,))
            for key in sorted(refs['tables'], key=lambda k: (k[0] or '', k[1])):
                rows = query(conn, TABLE_SQL, (locks.quoted(_resolved(conn, key, paths.get(key))),))
                if not rows or rows[0]['relkind'] not in ('r', 'p', 'm', 'I', 'S', FOREIGN_TABLE):
                    continue
                info = dict(rows[0], exists=True)
                if info['relkind'] in ('I', 'S'):   # a partitioned index, a sequence: what they are is enough
                    tables[key] = dict(info, columns={}, not_null_checks=[])
                    continue
                columns = query(conn, COLUMNS_SQL, (info['oid'],))
                info['columns'] = dict((r['attname'], (r['type'], modifiers_of(r['type'], r['typmod'])))
                                       for r in columns)
                checks = [r['expr'] for r in query(conn, CHECKS_SQL, (info['oid'],))]
                info['not_null_checks'] = sorted(not_null_columns(checks))
                info['check_constraints'] = checks
                info['not_null_columns'] = sorted(r['attname'] for r in columns if r['attnotnull'])
                tables[key] = info
            _partition_facts(conn, cur, patches, tables, canonical, bound_rows)
            setting = _savepoint_value(cur, "SELECT current_setting('search_path')")
            session_path = locks.split_identifiers(setting) if setting is not None else None
            if refs['functions']:
                for row in query(conn, FUNCTIONS_SQL, (sorted(refs['functions']),)):
                    functions[row['proname']] = 'isv'[row['worst']]
            if explain:
                plan_rows = _explain_data_changes(conn, cur, patches)
        finally:
            cur.execute('ROLLBACK')
    return Catalog(tables=tables, functions=functions, plan_rows=plan_rows, canonical=canonical,
                   bound_rows=bound_rows, session_path=session_path)


def _new_partitions(patches):
    """(partitioned table key, PartitionBoundSpec, the table attached's key or
    None) of each ATTACH PARTITION and CREATE TABLE ... PARTITION OF of
    ``patches``' cold statements."""
    for patch in patches:
        if patch.kind != COLD:
            continue
        for statement in patch.statements:
            node = statement.node
            if type(node).__name__ == 'AlterTableStmt':
                for cmd in node.cmds or ():
                    if _name(cmd.subtype) == 'AT_AttachPartition':
                        yield table_key(node.relation), cmd.def_.bound, table_key(cmd.def_.name)
            elif type(node).__name__ == 'CreateStmt' and node.partbound is not None:
                for parent in node.inhRelations or ():
                    yield table_key(parent), node.partbound, None


def _savepoint_value(cur, sql, params=(), timeout_ms=None):
    """The first column of ``sql``'s first row, run in a savepoint (under
    ``timeout_ms`` of statement_timeout); None when it fails."""
    cur.execute('SAVEPOINT fastdowntime_lint_read')
    try:
        if timeout_ms:
            cur.execute("SET LOCAL statement_timeout = %s", ('%dms' % timeout_ms,))
        cur.execute(sql, params)
        return cur.fetchone()[0]
    except psycopg2.Error:
        return None
    finally:
        cur.execute('ROLLBACK TO SAVEPOINT fastdowntime_lint_read; RELEASE SAVEPOINT fastdowntime_lint_read')


def _bound_rows(cur, parent, bound, child, tables, canonical, bound_rows):
    """bound_rows' entries for one new partition: the DEFAULT partition's rows
    of the bound, the table attached's rows outside it (not asked when its
    CHECK constraints imply the bound - there are none - or it is a foreign
    table, which PostgreSQL does not check)."""
    info = tables[parent]
    condition = bound_condition(info.get('partition_key'), bound, info.get('oid'))
    if condition is None:
        return
    where = []
    if info.get('default_partition_key') and not bound.is_default:
        where.append((DEFAULT_ROWS, info['default_partition_key'], condition))
    attached = tables.get(child) if child else None
    if attached and attached.get('relkind') != FOREIGN_TABLE and not bound_implied(
            info.get('partition_key'), bound, attached.get('check_constraints') or (),
            attached.get('not_null_columns') or (), canonical.get(parent)):
        where.append((child, (attached['nspname'], attached['relname']), 'NOT coalesce(%s, false)' % condition))
    for what, key, test in where:
        bound_rows[(parent, bound_text(bound), what)] = _savepoint_value(
            cur, 'SELECT EXISTS (SELECT 1 FROM %s WHERE %s)' % (locks.quoted(key), test),
            timeout_ms=BOUND_ROWS_TIMEOUT_MS)


def _partition_facts(conn, cur, patches, tables, canonical, bound_rows):
    """For each partitioned table ``patches`` add a partition to: its DEFAULT
    partition's entry in ``tables`` (default_partition_key, the partition's
    sizes), in ``canonical`` the text PostgreSQL prints for each constant of
    the bounds in the table's partition key type (a constant that type cannot
    read is left as written), and in ``bound_rows`` the rows PostgreSQL would
    refuse (_bound_rows)."""
    for parent, bound, child in _new_partitions(patches):
        info = tables.get(parent)
        if info is None or bound is None:
            continue
        if info.get('default_partition') and 'default_partition_key' not in info:
            rows = query(conn, TABLE_SQL, (info['default_partition'],))
            if rows:
                key = (rows[0]['nspname'], rows[0]['relname'])
                tables.setdefault(key, dict(rows[0], exists=True, columns={}, not_null_checks=[]))
                info['default_partition_key'] = key
        match = PARTITION_KEY.match(info.get('partition_key') or '')
        column = match and match.group(2)
        column = column and (column[1:-1].replace('""', '"') if column.startswith('"') else column.lower())
        type_name = ((info.get('columns') or {}).get(column) or (None,))[0]
        datums = list(bound.lowerdatums or ()) + list(bound.upperdatums or ()) + list(bound.listdatums or ())
        for value in (_const_value(datum) for datum in datums) if type_name else ():
            if value is not None and value not in canonical.get(parent, {}):
                text = _savepoint_value(cur, 'SELECT CAST(%%s AS %s)::text' % type_name, (value,))
                if text is not None:
                    canonical.setdefault(parent, {})[value] = text
        _bound_rows(cur, parent, bound, child, tables, canonical, bound_rows)


def path_setting(path):
    """A locks.search_paths path as set_config('search_path', ...) takes it
    (each name quoted: '"app", "$user"'); None for the session's own path or
    one only running the patch would tell (ANY_SCHEMA)."""
    if path is locks.DEFAULT_PATH or path == locks.ANY_SCHEMA:
        return None
    return ', '.join('"%s"' % schema.replace('"', '""') for schema in path)


def _explain_data_changes(conn, cur, patches):
    """(file, line) -> rows the planner expects an UPDATE/DELETE/INSERT ...
    SELECT to touch (the row estimate of the node under ModifyTable), planned
    under the search_path its patch sets at that point (locks.search_paths),
    as the window runs it."""
    found = {}
    for patch in patches:
        if patch.kind != COLD:
            continue
        for statement, path in zip(patch.statements, locks.search_paths(patch.statements)):
            name = type(statement.node).__name__
            if name not in ('UpdateStmt', 'DeleteStmt', 'InsertStmt'):
                continue
            cur.execute('SAVEPOINT fastdowntime_lint')
            try:
                if path_setting(path) is not None:   # undone by the ROLLBACK TO SAVEPOINT below
                    cur.execute("SELECT set_config('search_path', %s, true)", (path_setting(path),))
                cur.execute('EXPLAIN (FORMAT JSON) ' + statement.sql)
                plan = cur.fetchone()[0][0]['Plan']
                inner = (plan.get('Plans') or [plan])[0]
                found[(patch.name, statement.line)] = float(inner.get('Plan Rows') or 0)
            except psycopg2.Error:
                pass
            cur.execute('ROLLBACK TO SAVEPOINT fastdowntime_lint; RELEASE SAVEPOINT fastdowntime_lint')
    return found


def sample_table(catalog, patches):
    """The largest table the cold statements rewrite, scan or index: the one
    whose sample says most about their cost - one with storage of its own
    (SAMPLE_SQL reads it ONLY: a partitioned table's sizes are its
    partitions', its own relation is empty)."""
    scope = _Scope()
    candidates = []
    for patch in patches:
        if patch.kind != COLD:
            continue
        for statement in patch.statements:
            for work in classify(statement.node, catalog, scope, kind=patch.kind):
                if work.get('table') and RULES[work['rule']][0] in (REWRITE, SCAN, INDEX_BUILD, DATA):
                    info = catalog.table(work['table'])
                    if info and info.get('relkind') not in PARTITIONED_RELKINDS:
                        candidates.append((float(info.get('heap_bytes') or 0), work['table'], info))
    return max(candidates, key=lambda c: c[0]) if candidates else None


# The first pages of the table, by TID range (PostgreSQL 14+: a TID Range Scan reads only those pages):
# the sample does not depend on statistics, which a table just rewritten or never analyzed lacks.
SAMPLE_SQL = "SELECT count(*) FROM ONLY %s WHERE ctid < '(%d,0)'::tid"


def measure_throughput(conn, catalog, patches, clock=time.monotonic):
    """Sets catalog.scan_bytes_per_second from SAMPLE_RUNS bounded sequential
    scans (each at most SAMPLE_PAGES pages, SAMPLE_TIMEOUT_MS, no parallel
    workers - a rewrite is one process) of the largest table the cold
    statements work on, at the median run's rate (see SAMPLE_RUNS). Too
    small a table (< MIN_SAMPLE_BYTES) keeps the documented default."""
    target = sample_table(catalog, patches)
    if target is None or target[0] < MIN_SAMPLE_BYTES:
        catalog.throughput_source = 'default (no table of %d MiB or more to sample)' % (MIN_SAMPLE_BYTES >> 20)
        return catalog.scan_bytes_per_second
    heap, key, info = target  # pylint: disable=unpacking-non-sequence  # None returned above
    pages = max(int(info.get('relpages') or 0), 1)
    sample_pages = min(pages, SAMPLE_PAGES)
    sample_bytes = heap * sample_pages / pages
    sql = SAMPLE_SQL % (locks.quoted((info['nspname'], info['relname'])), sample_pages)
    counted = []
    with conn.cursor() as cur:
        cur.execute('BEGIN READ ONLY')
        try:
            cur.execute('SET LOCAL max_parallel_workers_per_gather = 0')
            cur.execute("SET LOCAL statement_timeout = %s", ('%dms' % SAMPLE_TIMEOUT_MS,))
            runs = []
            for dummy in range(SAMPLE_RUNS):
                began = clock()
                try:
                    cur.execute(sql)
                    runs.append(clock() - began)
                    counted.append(cur.fetchone()[0])
                except psycopg2.extensions.QueryCanceledError:
                    # Slower than the bound: the bound gives an upper limit on throughput.
                    cur.execute('ROLLBACK')
                    runs.append(SAMPLE_TIMEOUT_MS / 1000.0)
                    break
        finally:
            cur.execute('ROLLBACK')
    elapsed = statistics.median(runs)
    if counted and not info.get('reltuples'):
        # No statistics (never analyzed, or rewritten since): the sample's rows per page stand in.
        info['reltuples'] = float(counted[0]) * pages / sample_pages
    source = 'measured: %d pages of %s in %.3fs (median of %d; slowest %.3fs)' % (
        sample_pages, key_text(key), elapsed, len(runs), max(runs))
    catalog.scan_bytes_per_second = sample_bytes / max(elapsed, 1e-4)
    catalog.throughput_source = source
    return catalog.scan_bytes_per_second


# The primary's cost of a cold transaction now: typical cold DDL (CREATE TABLE with a primary key, CREATE INDEX,
# COMMENT, ADD COLUMN, a one-row INSERT) on temporary tables dropped at COMMIT, each in a savepoint as the cold
# transaction runs its statements (schema.ColdBatch), between the window's own steps (its lock step and a patch's
# session reset and revision-row lookup: schema.cold_overhead_sql), sent as one string and committed like it (the
# COMMIT's WAL flush and any synchronous standby's confirmation are the transaction's fixed cost). The server times
# the statements; the controller the whole, so the rest is the fixed cost. A fresh connection's first transaction
# pays what a warm session has cached (the catalog entries, PL/pgSQL for the DO blocks, the revision table and its
# key: measured on the lab, the window's 1-statement transaction took 8.8 ms as a connection's first transaction,
# 4.2 ms as its second). The window warms its connection before its clock (schema.warm_session), so its transaction
# is like each probe connection's second run: that run prices both the fixed cost and the statements, warm; the
# first run is the warm-up. Nothing of it is left.
PROBE_TABLES = 4
PROBE_STATEMENTS = ('CREATE TEMP TABLE fastdowntime_probe_{n} (id integer PRIMARY KEY, body text) ON COMMIT DROP',
                    'CREATE INDEX ON fastdowntime_probe_{n} (body)',
                    "COMMENT ON TABLE fastdowntime_probe_{n} IS 'fastdowntime statement probe'",
                    'ALTER TABLE fastdowntime_probe_{n} ADD COLUMN probe integer',
                    "INSERT INTO fastdowntime_probe_{n} (id, body) VALUES (1, 'probe')")
PROBE_SAVEPOINT = 'fastdowntime_probe'
PROBE_SECONDS_SETTING = 'fastdowntime.probe_seconds'
# Of those seconds, the CREATE TABLE statements': a table with a primary key and a TOASTable column makes four
# relations (heap, TOAST table and its index, the key's index), several times the others' work (lab: 1.9 ms against
# 0.1-0.5 ms each for the other four kinds, temporary tables; 2.9 ms for a permanent one). Priced apart, so a patch
# creating tables is not priced at the mix's average (a 1-statement CREATE TABLE window was estimated at 0.35-0.89 x
# its outage on a quiet lab).
PROBE_TABLE_SECONDS_SETTING = 'fastdowntime.probe_table_seconds'
# What the cold transaction's statements of these parser nodes cost each: the probe's CREATE TABLE time.
CREATES_TABLE = ('CreateStmt',)
# Probe connections per measurement (one sample on a shared host is noise): measure_cold_transaction says which counts.
PROBE_RUNS = 3


def probe_sql(revision_table=None):
    """(sql, statements, tables): the probe as one string - BEGIN, the
    window's lock step, the statements each in a savepoint, a patch's session
    reset and revision-row lookup in ``revision_table``
    (schema.cold_overhead_sql; None: not created yet), COMMIT - ending in a
    SELECT of the seconds the statements took on the server and, of those,
    the ``tables`` CREATE TABLE statements' (both kept past the COMMIT in
    session settings)."""
    statements = [text.format(n=n) for n in range(PROBE_TABLES) for text in PROBE_STATEMENTS]

    def step(text):
        run = 'SAVEPOINT %s; %s; RELEASE SAVEPOINT %s;' % (PROBE_SAVEPOINT, text, PROBE_SAVEPOINT)
        if not text.startswith('CREATE TEMP TABLE'):
            return run
        return ("SELECT set_config('fastdowntime.probe_table_start', clock_timestamp()::text, true); %s "
                "SELECT set_config('%s', (current_setting('%s')::float8 + extract(epoch FROM clock_timestamp() - "
                "current_setting('fastdowntime.probe_table_start')::timestamptz))::text, false);"
                % (run, PROBE_TABLE_SECONDS_SETTING, PROBE_TABLE_SECONDS_SETTING))

    body = ' '.join(step(text) for text in statements)
    before, after = cold_overhead_sql(revision_table, keep=(PROBE_SECONDS_SETTING, PROBE_TABLE_SECONDS_SETTING))
    sql = ("BEGIN; %sSELECT set_config('%s', '0', false); "
           "SELECT set_config('fastdowntime.probe_start', clock_timestamp()::text, true); %s "
           "SELECT set_config('%s', extract(epoch FROM clock_timestamp() - "
           "current_setting('fastdowntime.probe_start')::timestamptz)::text, false); %sCOMMIT; "
           "SELECT current_setting('%s')::float8, current_setting('%s')::float8"
           % (before, PROBE_TABLE_SECONDS_SETTING, body, PROBE_SECONDS_SETTING, after, PROBE_SECONDS_SETTING,
              PROBE_TABLE_SECONDS_SETTING))
    return sql, len(statements), PROBE_TABLES


# A PAUSE closes each server connection of its entries and answers once every one of them is closed at both ends:
# pgbouncer waits for the server to close its end, which PostgreSQL does only at the end of the backend's exit
# (lab, PostgreSQL 15: 1.8-2.6 ms after the client's close, a PAUSE of an entry with one idle server connection
# 2.2-2.7 ms against 0.2-0.3 ms with none; the backend leaves pg_stat_activity within 0.3 ms, early in its exit, so
# that is not the cost). Timed on the probe's connections by the socket's end-of-file, given up after
# CLOSE_WAIT_SECONDS (then counted as that long).
CLOSE_WAIT_SECONDS = 0.1


def watch_close(conn):
    """A socket sharing psycopg2 connection ``conn``'s, kept open across
    conn.close() so that server_close_seconds can see the server close its
    end; None when the socket cannot be had (then the close is not timed)."""
    try:
        return socket.socket(fileno=os.dup(conn.fileno()))
    except (OSError, ValueError, AttributeError, psycopg2.Error):
        return None


def server_close_seconds(sock, closed_at, clock=time.monotonic):
    """Seconds from ``closed_at`` (``clock`` time the client closed the
    connection: libpq's Terminate sent) until the server closed its end of
    ``sock`` (watch_close's: end-of-file or a reset, after any bytes it sent
    on the way, such as TLS's close_notify), at most CLOSE_WAIT_SECONDS.
    ``sock`` is closed here."""
    try:
        while True:
            left = CLOSE_WAIT_SECONDS - (clock() - closed_at)
            if left <= 0:
                return CLOSE_WAIT_SECONDS
            sock.settimeout(left)
            try:
                if not sock.recv(65536):
                    return clock() - closed_at
            except socket.timeout:
                return CLOSE_WAIT_SECONDS
            except OSError:  # reset: closed too
                return clock() - closed_at
    finally:
        sock.close()


def measure_cold_transaction(connect, runs=PROBE_RUNS, clock=time.monotonic, revision_table=None):
    """The primary's cost of a cold transaction now, from ``runs`` fresh
    connections (``connect``: no arguments, a new autocommit connection to
    the primary, as the window's; closed here), each running the probe
    (probe_sql) twice - the first run warms the session as schema.warm_session
    warms the window's before its clock, the second is measured:
    {'statement_seconds': the server's seconds per catalog-only statement
    other than CREATE TABLE, the median of the second runs (a sum over many
    statements), 'table_seconds': the same for a CREATE TABLE (with a
    primary key and a TOASTable column: CREATES_TABLE),
    'transaction_seconds': the rest of the window's transaction as the
    controller waits for it - its round trip, BEGIN, the lock step, a patch's
    reset and revision row, COMMIT with its WAL flush - each second run's
    time less its statements' server time, the median of the
    runs (right in expectation: the slowest of 3, as before, put a
    1-statement window's cold transaction at 2.5 x the actual (100 ms against 40 ms) on the loaded lab; a
    cold patch set's safety margin is the big-table price's, SAMPLE_RUNS),
    'close_seconds': the median of the times the server took to close its end
    of a probe connection once the probe closed it (server_close_seconds: the
    backend's whole exit, what a PAUSE waits for per server connection it
    closes, plus one round trip), None when not timed}. None when the probe cannot run
    (no connection, no TEMP privilege, a read-only session); a failed
    transaction is rolled back."""
    sql, statements, tables = probe_sql(revision_table)
    firsts, warm, closes = [], [], []
    try:
        for dummy in range(runs):
            conn = connect()
            try:
                with conn.cursor() as cur:
                    for timings in (firsts, warm):
                        began = clock()
                        cur.execute(sql)
                        server, table_server = (float(value) for value in cur.fetchone())
                        timings.append((clock() - began, server, table_server))
            except psycopg2.Error:
                try:
                    with conn.cursor() as cur:
                        cur.execute('ROLLBACK')  # autocommit: the failed BEGIN block is the session's
                except psycopg2.Error:
                    pass
                raise
            finally:
                sock = watch_close(conn)
                closed_at = clock() if sock is not None else None
                conn.close()
            if sock is not None:
                closes.append(server_close_seconds(sock, closed_at, clock=clock))
    except (psycopg2.Error, ConnectError):
        return None
    per_statement = statistics.median((server - table) / (statements - tables) for dummy, server, table in warm)
    fixed = [max(elapsed - server, 0.0) for elapsed, server, dummy in warm]
    return {'statement_seconds': per_statement, 'transaction_seconds': statistics.median(fixed),
            'table_seconds': statistics.median(table / tables for dummy, dummy, table in warm),
            'close_seconds': statistics.median(closes) if closes else None}


def lint_live(conn, patches, options=None, scan_bytes_per_second=None):
    """gather_catalog + measure_throughput (unless given) + lint_patches:
    (findings, estimate dict, catalog)."""
    catalog = gather_catalog(conn, patches)
    if scan_bytes_per_second:
        catalog.scan_bytes_per_second = float(scan_bytes_per_second)
        catalog.throughput_source = 'given (fastdowntime_lint_scan_mb_per_second)'
    else:
        measure_throughput(conn, catalog, patches)
    findings = lint_patches(patches, catalog, options)
    summed = estimate(findings)
    summed.update(scan_mb_per_second=round(catalog.scan_bytes_per_second / 1048576.0, 1),
                  throughput_source=catalog.throughput_source)
    return findings, summed, catalog
