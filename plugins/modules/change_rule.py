#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: change_rule
short_description: A change carries schema patches or code, never both (for CI, on a git range)
description:
  - Launchpad's rule, checked on a git range O(base)..O(head) of the application repository before the change
    lands. Every path changed on O(head) since its merge base with O(base) (what a merge request shows) is
    C(schema) (a C(patch-MMMM-mm-p.sql) file directly in O(patch_dir)), C(neutral) (O(neutral_globs), and any other
    file of the patch directory) or C(code) (everything else).
  - Fails when the change mixes schema and code, naming one file of each - split it into a schema-only change
    (landed and deployed first) and a code-only change.
  - Fails when a new patch is numbered before the newest patch of O(base) (the landed patches), when a landed patch
    is edited, renamed or deleted (the deploy refuses an applied patch whose checksum changed; this catches it
    before it lands), and when a file in the patch directory is named almost like a patch.
  - A range that does not exist, a directory that is no git repository and a repository without the patch directory
    end in one line, never a traceback. Reads the repository only (C(git) on the host that runs the module).
  - The same check without Ansible - C(bin/fastdowntime-change-rule) (a pre-commit hook, C(.pre-commit-hooks.yaml)),
    wired into GitHub Actions and GitLab CI as the README shows.
version_added: 0.1.0
author: fastdowntime.postgresql contributors (@fastdowntime)
extends_documentation_fragment:
  - fastdowntime.postgresql.attributes
attributes:
  check_mode:
    details: Read-only, so it runs the same in check mode.
options:
  repo:
    description: The application repository (a git work tree) on the host that runs the module.
    type: path
    default: .
  base:
    description: The target of the change - the branch it lands on (e.g. C(origin/main)), or the commit before a push.
    type: str
    required: true
  head:
    description: The change's last commit.
    type: str
    default: HEAD
  patch_dir:
    description: The patch directory, relative to the repository root (an absolute path inside the repository works).
    type: str
    required: true
  neutral_globs:
    description:
      - Paths that go with either kind of change (fnmatch patterns on the path from the repository root; C(*) crosses
        directories, so C(docs/*) is everything under C(docs/)).
    type: list
    elements: str
    default: ['*.md', '*.rst', '*.txt', 'docs/*', 'doc/*', 'tests/*', 'test/*', 'changelogs/*', 'CHANGELOG*',
              'LICENSE*', 'COPYING*', '.gitignore', '.github/*', '.gitlab-ci.yml', '.pre-commit-config.yaml']
  staged:
    description: Also count the changes staged in the index (a pre-commit hook checks the commit being made).
    type: bool
    default: false
  fail_on_refusal:
    description: Fail the task when the change breaks the rule (C(false) - report it in RV(passed) only).
    type: bool
    default: true
requirements:
  - git on the host that runs the module
seealso:
  - module: fastdowntime.postgresql.preflight
'''

EXAMPLES = r'''
- name: Schema-only or code-only? (a merge request against main)
  fastdowntime.postgresql.change_rule:
    repo: "{{ lookup('ansible.builtin.env', 'CI_PROJECT_DIR') }}"
    base: origin/main
    head: HEAD
    patch_dir: database/schema
    neutral_globs: ['*.md', 'doc/*', 'lib/*/tests/*']
  delegate_to: localhost
'''

RETURN = r'''
passed:
  description: True when the change keeps the rule.
  type: bool
  returned: always
kind:
  description: C(schema-only), C(code-only), C(neutral-only), C(empty) or C(mixed).
  type: str
  returned: always
schema:
  description: The schema paths changed (patch files; a renamed path counts with its old name too).
  type: list
  elements: str
  returned: always
code:
  description: The code paths changed.
  type: list
  elements: str
  returned: always
neutral:
  description: The neutral paths changed.
  type: list
  elements: str
  returned: always
new_patches:
  description: The patch files the change adds.
  type: list
  elements: str
  returned: always
problems:
  description: Every reason the change breaks the rule, one line each.
  type: list
  elements: str
  returned: always
files:
  description: Each changed path - C(path), C(status) (git's A, M, D, R, C, T), C(kind), C(old_path) (renames).
  type: list
  elements: dict
  returned: always
commits:
  description: C(base), C(head) and C(merge_base) as full hashes.
  type: dict
  returned: always
msg:
  description: The verdict in one line.
  type: str
  returned: always
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fastdowntime.postgresql.plugins.module_utils.changerule import (
    DEFAULT_NEUTRAL_GLOBS, ChangeRuleError, check)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            repo=dict(type='path', default='.'),
            base=dict(type='str', required=True),
            head=dict(type='str', default='HEAD'),
            patch_dir=dict(type='str', required=True),
            neutral_globs=dict(type='list', elements='str', default=list(DEFAULT_NEUTRAL_GLOBS)),
            staged=dict(type='bool', default=False),
            fail_on_refusal=dict(type='bool', default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        result = check(p['repo'], p['base'], p['head'], p['patch_dir'], p['neutral_globs'], staged=p['staged'])
    except ChangeRuleError as exc:
        module.fail_json(msg='change rule: %s' % exc)
    if not result['passed'] and p['fail_on_refusal']:
        module.fail_json(**result)
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
