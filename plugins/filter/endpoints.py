# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Endpoints from the inventory: the inventory contract (fastdowntime_pg_* /
fastdowntime_pgbouncer_* host variables) becomes the endpoint dictionaries
every module takes - module_utils/topology.endpoints, as a filter."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: endpoints
short_description: Build endpoint dictionaries from the inventory contract
description:
  - Turns a list of inventory host names into the endpoint dictionaries the collection's modules take,
    reading each host's C(fastdowntime_pg_*) (I(kind=pg)) or C(fastdowntime_pgbouncer_*) (I(kind=pgbouncer))
    variables. C(host) defaults to C(ansible_host), then the inventory name; C(name) is the inventory name.
  - For I(kind=pg), each endpoint also carries C(pgbouncer_entries) from
    C(fastdowntime_standby_pgbouncer_entries) (the pgbouncer entries that serve that standby), or from its deprecated
    old name C(fastdowntime_standby_pgbouncer_databases), read until 1.0.0 when the new one is not set.
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

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import topology


def endpoints(hosts, hostvars, kind='pg'):
    """topology.endpoints, its errors as the filter's."""
    try:
        return topology.endpoints(hosts, hostvars, kind)
    except topology.TopologyError as exc:
        raise AnsibleFilterError(str(exc))


class FilterModule(object):
    def filters(self):
        return {'endpoints': endpoints}
