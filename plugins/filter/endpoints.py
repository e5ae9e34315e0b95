# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Endpoints from the inventory: the one place where the inventory contract
(fastdowntime_pg_* / fastdowntime_pgbouncer_* host variables) becomes the
endpoint dictionaries every module takes."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: endpoints
short_description: Build endpoint dictionaries from the inventory contract
description:
  - Turns a list of inventory host names into the endpoint dictionaries the collection's modules take,
    reading each host's C(fastdowntime_pg_*) (I(kind=pg)) or C(fastdowntime_pgbouncer_*) (I(kind=pgbouncer))
    variables. C(host) defaults to C(ansible_host), then the inventory name; C(name) is the inventory name.
  - For I(kind=pg), each endpoint also carries C(pgbouncer_databases) from
    C(fastdowntime_standby_pgbouncer_databases) (the pgbouncer entries that serve that standby).
  - For I(kind=pgbouncer), a host with C(fastdowntime_pgbouncer_consoles) (several pgbouncer processes sharing
    a port with C(so_reuseport)) gives one endpoint per process - C(unix_socket_dir) that process's, C(host)
    the item's C(host) or that directory, C(port) the item's or the host's; C(fastdowntime_pgbouncer_probe_user)
    and C(_probe_password) become C(probe_user)/C(probe_password).
options:
  _input:
    description: Inventory host names, for example C(groups['fastdowntime_standbys']).
    type: list
    elements: str
    required: true
  hostvars:
    description: The C(hostvars) magic variable.
    type: dict
    required: true
  kind:
    description: C(pg) for database hosts, C(pgbouncer) for pgbouncer admin consoles.
    type: str
    default: pg
    choices: [pg, pgbouncer]
'''

EXAMPLES = r'''
- name: Endpoints of every standby
  ansible.builtin.set_fact:
    standby_endpoints: "{{ groups['fastdowntime_standbys'] | fastdowntime.postgresql.endpoints(hostvars) }}"
'''

RETURN = r'''
_value:
  description: One dictionary per host, shaped like the modules' endpoint options.
  type: list
  elements: dict
'''

from ansible.errors import AnsibleFilterError

DEFAULT_PORT = {'pg': 5432, 'pgbouncer': 6432}


def endpoints(hosts, hostvars, kind='pg'):
    if kind not in DEFAULT_PORT:
        raise AnsibleFilterError('endpoints: kind must be pg or pgbouncer, not %r' % (kind,))
    prefix = 'fastdowntime_%s_' % kind
    result = []
    for name in hosts or []:
        hv = hostvars[name]

        def var(key, default=None):
            value = hv.get(prefix + key)
            return default if value is None or value == '' else value

        user = var('user')
        if not user:
            raise AnsibleFilterError('%s: %suser is not set (the inventory contract: see README)' % (name, prefix))
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
            endpoint['pgbouncer_databases'] = list(hv.get('fastdowntime_standby_pgbouncer_databases') or [])
            if hv.get('fastdowntime_standby_application_name'):
                endpoint['standby_application_name'] = hv['fastdowntime_standby_application_name']
            result.append(endpoint)
            continue
        if var('probe_user'):
            endpoint.update(probe_user=var('probe_user'), probe_password=var('probe_password'))
        result.extend(pgbouncer_processes(name, endpoint, hv.get('fastdowntime_pgbouncer_consoles')))
    return result


def pgbouncer_processes(name, endpoint, consoles):
    """One console endpoint per pgbouncer process of a host: ``consoles`` (the
    host's fastdowntime_pgbouncer_consoles) lists each process's
    ``unix_socket_dir`` and optionally the ``host``/``port`` its console is
    reached at (default: that directory, the host's port). None or empty: the
    host's one endpoint."""
    if not consoles:
        return [endpoint]
    out = []
    for item in consoles:
        if not isinstance(item, dict) or not item.get('unix_socket_dir'):
            raise AnsibleFilterError('%s: each item of fastdowntime_pgbouncer_consoles needs unix_socket_dir '
                                     '(that process\'s, as in its pgbouncer.ini), got %r' % (name, item))
        out.append(dict(endpoint, host=item.get('host') or item['unix_socket_dir'],
                        port=int(item.get('port') or endpoint['port']), unix_socket_dir=item['unix_socket_dir']))
    return out


class FilterModule(object):
    def filters(self):
        return {'endpoints': endpoints}
