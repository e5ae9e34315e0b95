#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: lockstep
short_description: Refuse a code rollout that needs a schema revision some database lacks (expand before use)
description:
  - The first half of the lockstep rule - an app server may run code that uses a new column only once every database
    (the primary and every standby) has it.
  - >-
    Each app given in O(apps) carries its release's I(fastdowntime manifest), a JSON object
    C({"requires_revision": "MMMM-mm-p" or null, "uses": ["table", "table.column"]}) - the role
    C(fastdowntime.postgresql.app_restart) reads it from C(fastdowntime_app_manifest_path) on each app server before
    any restart. The module reads the applied revisions of the primary and of every standby and fails, in one line,
    when an app requires a revision one of them lacks (naming the app, the revision, the database and its newest
    revision), when an app reports nothing (no manifest, not JSON) and when a database cannot be read.
  - The second half (contract after disuse) is a pre-flight check - see M(fastdowntime.postgresql.preflight)
    option O(fastdowntime.postgresql.preflight#module:app_servers).
version_added: 0.1.0
author: fastdowntime.postgresql contributors (@fastdowntime)
extends_documentation_fragment:
  - fastdowntime.postgresql.attributes
  - fastdowntime.postgresql.connection
  - fastdowntime.postgresql.connection.primary
  - fastdowntime.postgresql.connection.standbys
  - fastdowntime.postgresql.deploy.database
attributes:
  check_mode:
    details: Read-only, so it runs the same in check mode.
options:
  apps:
    description:
      - One entry per app server - C(name), C(source) (where the manifest was read, for messages) and either
        C(content_b64) (the manifest file, base64 as M(ansible.builtin.slurp) returns it), C(manifest) (the JSON text
        or object) or C(error) (why it could not be read - the app reports nothing).
    type: list
    elements: dict
    required: true
  fail_on_refusal:
    description: Fail the task when the rollout is refused (C(false) - report it in RV(passed) only).
    type: bool
    default: true
requirements:
  - psycopg2 on the host that runs the module (the role runs it on the controller)
seealso:
  - module: fastdowntime.postgresql.preflight
'''

EXAMPLES = r'''
- name: Refuse code that needs a schema revision a database lacks
  fastdowntime.postgresql.lockstep:
    primary: "{{ (groups['fastdowntime_primary'] | fastdowntime.postgresql.endpoints(hostvars))[0] }}"
    standbys: "{{ groups['fastdowntime_standbys'] | fastdowntime.postgresql.endpoints(hostvars) }}"
    db_name: launchpad_prod
    apps:
      - name: app1
        source: /srv/app/current/fastdowntime.json
        manifest: {"requires_revision": "2300-03-0", "uses": ["person", "person.display_name"]}
  delegate_to: localhost
  run_once: true
'''

RETURN = r'''
passed:
  description: True when every database has every revision the apps require.
  type: bool
  returned: always
apps:
  description: Per app - C(name), C(requires_revision) (or null), C(missing_on) (the databases lacking it).
  type: list
  elements: dict
  returned: always
databases:
  description: Per database - C(label) and C(newest) applied revision (or C(error)).
  type: list
  elements: dict
  returned: always
problems:
  description: Every reason the rollout is refused, one line each.
  type: list
  elements: str
  returned: always
msg:
  description: The verdict in one line.
  type: str
  returned: always
'''

import base64

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fastdowntime.postgresql.plugins.module_utils.lockstep import (
    ManifestError, decide_expand, parse_manifest)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.patchset import format_revision
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.specs import (
    FAIL_ON_REFUSAL_SPEC, deploy_target_spec)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import (
    ConnectError, connect, endpoint_argument_spec, endpoint_label, one_line)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.schema import SchemaError, applied_revisions


def read_app(app):
    """{'name', 'source', 'manifest'} or {'name', 'source', 'error'} for one app entry."""
    entry = {'name': app.get('name') or '?', 'source': app.get('source') or 'its manifest'}
    if app.get('error'):
        return dict(entry, error=one_line(app['error']))
    raw = app.get('manifest')
    try:
        if raw is None and app.get('content_b64') is not None:
            raw = base64.b64decode(app['content_b64']).decode('utf-8', 'replace')
        if raw is None:
            return dict(entry, error='no manifest given')
        return dict(entry, manifest=parse_manifest(raw))
    except (ManifestError, ValueError) as exc:
        return dict(entry, error='%s is not a valid manifest: %s' % (entry['source'], one_line(exc)))


def read_database(endpoint, db_name, revision_table):
    label = endpoint_label(endpoint)
    try:
        conn = connect(dict(endpoint, dbname=db_name), autocommit=True, application_name='fastdowntime-lockstep')
    except ConnectError as exc:
        return {'label': label, 'error': one_line(exc)}
    try:
        return {'label': label, 'applied': set(applied_revisions(conn, revision_table=revision_table))}
    except (SchemaError, Exception) as exc:  # noqa: B014 - any database error is this database's answer
        return {'label': label, 'error': 'cannot read the revisions in %s: %s' % (revision_table, one_line(exc))}
    finally:
        conn.close()


def argument_spec():
    return dict(
        primary=endpoint_argument_spec(),
        standbys=endpoint_argument_spec(list_of=True),
        apps=dict(type='list', elements='dict', required=True),
        **dict(deploy_target_spec('db_name', 'revision_table'), **FAIL_ON_REFUSAL_SPEC)
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    apps = [read_app(app) for app in p['apps']]
    databases = [read_database(e, p['db_name'], p['revision_table']) for e in [p['primary']] + p['standbys']]
    verdict = decide_expand(apps, databases)
    result = dict(changed=False, passed=verdict['passed'], apps=verdict['apps'], problems=verdict['problems'],
                  msg=verdict['msg'],
                  databases=[{'label': d['label'], 'error': d['error']} if d.get('error') else
                             {'label': d['label'], 'newest': format_revision(max(d['applied']))
                              if d['applied'] else None} for d in databases])
    if not verdict['passed'] and p['fail_on_refusal']:
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
