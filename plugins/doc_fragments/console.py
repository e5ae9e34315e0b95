# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The admin-console option shared by the pgbouncer and pgbouncer_watchdog modules.
    DOCUMENTATION = r'''
options:
  console:
    description:
      - The pgbouncer admin console, as an endpoint of the collection's connection layer
        (O(console.host), O(console.port) - usually 6432 -, O(console.user) - listed in C(admin_users) -,
        O(console.password), O(console.ssl_mode), O(console.ca_cert), O(console.connect_timeout)).
      - Its O(console.dbname) is ignored; the admin database is always C(pgbouncer).
    type: dict
    required: true
'''
