# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One list of the collection's variables (defect 18): the roles' meta/argument_specs.yml, which the inventory
check reads to refuse a misspelled name, and the README's table ("The public contract") must name the same
variables; the facts the collection sets itself (inventory.FACTS) are what its roles and playbooks register."""
import glob
import os
import pathlib
import re

import yaml

from ansible_collections.fastdowntime.postgresql.plugins.filter.unknown_variables import argument_specs
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.inventory import (
    CREDENTIALS, FACTS, GROUPS, known_variables)

REPO = str(next(p for p in pathlib.Path(__file__).resolve().parents if (p / 'galaxy.yml').is_file()))
NAME = re.compile(r'`(fastdowntime_\w+|_\w+)`')
STEMS = sorted(set(prefix for dummy, prefix in CREDENTIALS), key=len, reverse=True)


def readme_table_variables():
    """Every variable the README's table names; `_port` after `fastdowntime_pg_host` is fastdowntime_pg_port."""
    with open(os.path.join(REPO, 'README.md')) as f:
        text = f.read()
    section = text.split('## The public contract', 1)[1].split('\n## ', 1)[0]
    names = set()
    for row in (line for line in section.splitlines() if line.startswith('| `')):
        stem = None
        for token in NAME.findall(row):
            if token.startswith('_'):
                assert stem, (token, row)
                names.add(stem + token[1:])
                continue
            names.add(token)
            stem = next((s for s in STEMS if token.startswith(s)), None)
    return names


def test_the_readme_table_names_every_variable_the_roles_declare_and_no_other():
    known, dummy = known_variables(argument_specs(REPO))
    declared = set(n for n in known if n.startswith('fastdowntime_')) - set(FACTS)
    documented = readme_table_variables() - set(GROUPS)
    assert sorted(declared - documented) == [], 'declared in roles/*/meta/argument_specs.yml, not in the README table'
    assert sorted(documented - declared) == [], 'in the README table, declared by no role'


def test_every_variable_the_readme_names_is_one_the_check_knows():
    known, dummy = known_variables(argument_specs(REPO))
    with open(os.path.join(REPO, 'README.md')) as f:
        named = set(re.findall(r'`(fastdowntime_[a-z0-9_]+)`', f.read()))
    assert sorted(named - known - set(GROUPS)) == []


def test_the_facts_the_collection_sets_are_those_its_roles_and_playbooks_register():
    known, prefixes = known_variables(argument_specs(REPO))
    found = set()
    for path in glob.glob(os.path.join(REPO, 'roles', '*', 'tasks', '*.yml')) + glob.glob(
            os.path.join(REPO, 'playbooks', '*.yml')):
        with open(path) as f:
            tasks = yaml.safe_load(f) or []
        stack = list(tasks)
        while stack:
            item = stack.pop()
            if not isinstance(item, dict):
                continue
            for key in ('tasks', 'pre_tasks', 'post_tasks', 'block', 'rescue', 'always'):
                stack.extend(item.get(key) or [])
            names = [item.get('register')] + list(item.get('ansible.builtin.set_fact') or {})
            found.update(n for n in names if isinstance(n, str) and n.startswith(prefixes))
    assert sorted(found) == sorted(FACTS)
