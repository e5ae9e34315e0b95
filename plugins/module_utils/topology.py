# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy's topology: inventory -> endpoints -> entries.

The bottom floor (it imports nothing of the collection): the outage engine,
the read-only pre-flight and the ``endpoints`` filter all read the topology
from here, so "which pgbouncer entries serve which standby" is answered in
one place.

- **inventory -> endpoints**: ``endpoints(hosts, hostvars, kind)`` turns the
  inventory contract's host variables (``fastdowntime_pg_*``,
  ``fastdowntime_pgbouncer_*``) into endpoint dicts (ENDPOINT_SPEC's shape);
  a pgbouncer host with several processes (``fastdowntime_pgbouncer_consoles``)
  gives one console endpoint per process (``pgbouncer_processes``).
- **endpoints -> addresses**: ``resolve_addresses`` (the pgbouncer hosts'
  addresses, so a connection from one is never taken for a direct client).
- **endpoints -> entries**: each standby endpoint lists in
  ``pgbouncer_entries`` the pgbouncer entries (SHOW DATABASES ``name``) that
  serve it, as ``entry`` (on every pgbouncer) or ``pgbouncer:entry``;
  ``standby_entries_by_pgbouncer`` reads that list, ``serving_entries`` /
  ``split_entries`` sort a pgbouncer's deploy entries into read-only (some
  standby's) and read-write (the primary's).

Every function is pure (the resolver is injectable) and unit-tested without
a database (tests/unit/plugins/module_utils/test_topology.py). Errors:
TopologyError (a ValueError) with one line naming the host and the fix.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib
import socket

DEFAULT_PORT = {'pg': 5432, 'pgbouncer': 6432}

# A standby's serving entries: the inventory variable, and its old name, still
# read (the playbooks' inventory check warns) until 1.0.0.
STANDBY_ENTRIES_VAR = 'fastdowntime_standby_pgbouncer_entries'
STANDBY_ENTRIES_OLD_VAR = 'fastdowntime_standby_pgbouncer_databases'


class TopologyError(ValueError):
    """The inventory cannot be turned into endpoints; str() names the host and the fix."""


# -- inventory -> endpoints ---------------------------------------------------

def endpoints(hosts, hostvars, kind='pg'):
    """One endpoint dict per inventory host of ``hosts`` (pgbouncer: per process).

    ``hostvars``: {host: {variable: value}}; ``kind``: ``pg`` (database hosts,
    ``fastdowntime_pg_*``) or ``pgbouncer`` (admin consoles,
    ``fastdowntime_pgbouncer_*``). ``host`` defaults to ``ansible_host``, then
    the inventory name; ``name`` is the inventory name. A pg endpoint carries
    ``pgbouncer_entries`` (``standby_entries_variable``) and, when set,
    ``standby_application_name``. Raises TopologyError.
    """
    if kind not in DEFAULT_PORT:
        raise TopologyError('endpoints: kind must be pg or pgbouncer, not %r' % (kind,))
    prefix = 'fastdowntime_%s_' % kind
    result = []
    for name in hosts or []:
        hv = hostvars[name]

        def var(key, default=None, hv=hv):
            value = hv.get(prefix + key)
            return default if value is None or value == '' else value

        user = var('user')
        if not user:
            raise TopologyError('%s: %suser is not set (the inventory contract: see README)' % (name, prefix))
        endpoint = {
            'name': name,
            'host': var('host', hv.get('ansible_host') or name),
            'port': int(var('port', DEFAULT_PORT[kind])),
            'user': user,
            'password': var('password'),
            'ssl_mode': var('ssl_mode', 'prefer'),
            'ca_cert': var('ca_cert'),
            'connect_timeout': int(var('connect_timeout', 5)),
        }
        if kind == 'pg':
            endpoint['pgbouncer_entries'] = standby_entries_variable(hv)
            if hv.get('fastdowntime_standby_application_name'):
                endpoint['standby_application_name'] = hv['fastdowntime_standby_application_name']
            result.append(endpoint)
            continue
        if var('probe_user'):
            endpoint.update(probe_user=var('probe_user'), probe_password=var('probe_password'))
        result.extend(pgbouncer_processes(name, endpoint, hv.get('fastdowntime_pgbouncer_consoles')))
    return result


def standby_entries_variable(hv):
    """A database host's serving entries from its variables ``hv``: the list
    ``fastdowntime_standby_pgbouncer_entries``, else its old name's (a copy; []
    when neither is set). One string (an INI host line's
    ``...=pgbouncer1:app_ro,pgbouncer2:app_ro``, or YAML without brackets) is
    read as Ansible's list type reads one: comma-separated, never per character."""
    value = hv.get(STANDBY_ENTRIES_VAR)
    if value is None:
        value = hv.get(STANDBY_ENTRIES_OLD_VAR)
    if isinstance(value, str):
        return [item.strip() for item in value.split(',') if item.strip()]
    return list(value or [])


CONSOLES_VAR = 'fastdowntime_pgbouncer_consoles'
# The keys of one item of CONSOLES_VAR: unix_socket_dir required, the others optional.
CONSOLE_KEYS = ('unix_socket_dir', 'host', 'port')


def consoles_problem(name, consoles):
    """The one line wrong with host ``name``'s fastdowntime_pgbouncer_consoles
    (a list of {unix_socket_dir, host?, port?}; None or empty: none), or None:
    an item that is no mapping, a key that is none of CONSOLE_KEYS (with the
    closest one), no unix_socket_dir, a port that is no number."""
    if not consoles:
        return None
    fix = 'each item has unix_socket_dir (that process\'s, as in its pgbouncer.ini) and optionally host and port'
    if not isinstance(consoles, (list, tuple)):
        return '%s: %s is %r, not a list: %s' % (name, CONSOLES_VAR, consoles, fix)
    for number, item in enumerate(consoles, start=1):
        if not isinstance(item, dict):
            return '%s: %s item %d is %r, not a mapping: %s' % (name, CONSOLES_VAR, number, item, fix)
        for key in sorted(set(item) - set(CONSOLE_KEYS)):
            close = difflib.get_close_matches(str(key), CONSOLE_KEYS, n=1, cutoff=0.6)
            return '%s: %s item %d has %s, which is not one of its keys%s: %s' % (
                name, CONSOLES_VAR, number, key, ' (did you mean %s?)' % close[0] if close else '', fix)
        if not item.get('unix_socket_dir'):
            return '%s: %s item %d has no unix_socket_dir: %s' % (name, CONSOLES_VAR, number, fix)
        port = item.get('port')
        if port not in (None, '') and (isinstance(port, bool) or not str(port).strip().isdigit()):
            return '%s: %s item %d has port %r, not a port number: %s' % (name, CONSOLES_VAR, number, port, fix)
    return None


def pgbouncer_processes(name, endpoint, consoles):
    """One console endpoint per pgbouncer process of a host: ``consoles`` (the
    host's fastdowntime_pgbouncer_consoles) lists each process's
    ``unix_socket_dir`` and optionally the ``host``/``port`` its console is
    reached at (default: that directory, the host's port). None or empty: the
    host's one endpoint. Raises TopologyError (consoles_problem's line) for a
    list that is not so."""
    if not consoles:
        return [endpoint]
    problem = consoles_problem(name, consoles)
    if problem:
        raise TopologyError(problem)
    out = []
    for item in consoles:
        out.append(dict(endpoint, host=item.get('host') or item['unix_socket_dir'],
                        port=int(item.get('port') or endpoint['port']), unix_socket_dir=item['unix_socket_dir']))
    return out


# -- endpoints -> addresses ---------------------------------------------------

def resolve_addresses(hosts, resolver=socket.getaddrinfo):
    """Every address the (pgbouncer) hosts resolve to, as a set of strings; a
    name that does not resolve stands for itself, a unix socket directory too.
    Asks the resolver (DNS): call it before an outage's clock starts."""
    addresses = set()
    for host in hosts:
        try:
            addresses |= {info[4][0] for info in resolver(host, None)}
        except (socket.gaierror, UnicodeError):
            addresses.add(host)
    return addresses


# -- endpoints -> entries -----------------------------------------------------

def standby_name(standby):
    """The name a standby endpoint goes by here: its inventory ``name``, else its ``host``."""
    return standby.get('name') or standby['host']


def standby_entries_by_pgbouncer(standbys, pgbouncer_names):
    """{standby name: {pgbouncer name: [entries]}} from each standby's
    ``pgbouncer_entries`` ("entry" on every pgbouncer of
    ``pgbouncer_names``, or "pgbouncer:entry")."""
    mapping = {}
    for standby in standbys:
        per = {}
        for item in standby.get('pgbouncer_entries') or []:
            if ':' in item:
                bouncer, entry = item.split(':', 1)
                targets = [bouncer]
            else:
                entry, targets = item, list(pgbouncer_names)
            for bouncer in targets:
                per.setdefault(bouncer, []).append(entry)
        mapping[standby_name(standby)] = per
    return mapping


def standby_of_entries(pgbouncer_name, standbys):
    """{entry: standby endpoint} of the entries on pgbouncer ``pgbouncer_name``
    that serve one of ``standbys`` (its ``pgbouncer_entries``): a server
    connection of such an entry is a backend on that standby; every other
    entry's is on the primary."""
    found = {}
    for standby in standbys:
        per = standby_entries_by_pgbouncer([standby], [pgbouncer_name]).get(standby_name(standby), {})
        found.update((entry, standby) for entry in per.get(pgbouncer_name, []))
    return found


def serving_entries(pgbouncer_name, entries, standbys):
    """The entries of ``entries`` (one pgbouncer's deploy entries, in their
    order, each once) that serve one of ``standbys`` on that pgbouncer:
    the read-only entries of a split window, the entries fenced when those
    standbys cannot have the new schema."""
    mapping = standby_entries_by_pgbouncer(standbys, [pgbouncer_name])
    serving = {entry for per in mapping.values() for entry in per.get(pgbouncer_name, [])}
    return [entry for entry in dict.fromkeys(entries) if entry in serving]


def split_entries(entries_by_pgbouncer, standbys):
    """({pgbouncer: read-write entries}, {pgbouncer: read-only entries}).

    ``entries_by_pgbouncer``: the deploy's entries found on each pgbouncer. An
    entry is read-only when some standby lists it in ``pgbouncer_entries``
    for that pgbouncer; every other deploy entry is read-write (the primary's).
    Standby entries that are not deploy entries are ignored: they were never
    going to be drained.
    """
    read_write, read_only = {}, {}
    for bouncer, entries in entries_by_pgbouncer.items():
        read_only[bouncer] = serving_entries(bouncer, entries, standbys)
        read_write[bouncer] = [entry for entry in entries if entry not in read_only[bouncer]]
    return read_write, read_only
