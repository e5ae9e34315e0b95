# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The endpoint shape shared by every module (plugins/module_utils/postgres.py ENDPOINT_SPEC).
    DOCUMENTATION = r'''
options: {}
notes:
  - Every endpoint option (a PostgreSQL server or a pgbouncer admin console) is a dictionary with the keys
    C(name) (a label used in messages, usually the inventory host name), C(host), C(port) (default 5432),
    C(user), C(password) (never logged; leave it out to let libpq read C(~/.pgpass) or C(PGPASSFILE)),
    C(dbname), C(ssl_mode) (C(disable), C(allow), C(prefer) (default), C(require), C(verify-ca), C(verify-full)),
    C(ca_cert) (path of the CA certificate for C(verify-ca)/C(verify-full)) and C(connect_timeout) (seconds, default 5).
  - Connections are made with psycopg2 from the host that runs the module; the roles run these modules on the
    controller, which therefore needs psycopg2 and network access to the PostgreSQL servers and pgbouncer consoles.
requirements:
  - psycopg2 (psycopg2-binary) on the host that runs the module
'''
