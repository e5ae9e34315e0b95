# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""docs/architecture.md lists the module_utils floors the imports give (floor 0 imports nothing of the
collection; any other, one more than the highest floor it imports), and imports never go round in a cycle."""
import ast
import os
import pathlib
import re

REPO = str(next(p for p in pathlib.Path(__file__).resolve().parents if (p / 'galaxy.yml').is_file()))
MODULE_UTILS = os.path.join(REPO, 'plugins', 'module_utils')
PACKAGE = 'ansible_collections.fastdowntime.postgresql.plugins.module_utils'


def imports(path):
    """The collection's module_utils a file imports."""
    with open(path) as f:
        tree = ast.parse(f.read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == PACKAGE:
            found |= set(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or '').startswith(PACKAGE + '.'):
            found.add(node.module[len(PACKAGE) + 1:])
    return found


def floors():
    graph = dict((name[:-3], imports(os.path.join(MODULE_UTILS, name)))
                 for name in os.listdir(MODULE_UTILS) if name.endswith('.py') and name != '__init__.py')
    for name in graph:
        graph[name].discard(name)
    found = {}

    def floor(name, path=()):
        assert name not in path, 'import cycle: %s' % ' -> '.join(path + (name,))
        if name not in found:
            found[name] = 1 + max([floor(dep, path + (name,)) for dep in graph[name]] or [-1])
        return found[name]

    for name in graph:
        floor(name)
    return found


def documented_floors():
    with open(os.path.join(REPO, 'docs', 'architecture.md')) as f:
        text = f.read()
    listed = {}
    for number, names in re.findall(r'^ floor (\d+) │ (.+)$', text, flags=re.M):
        for name in names.split(','):
            listed[name.strip()] = int(number)
    return listed


def test_the_architecture_page_lists_the_floors_the_imports_give():
    assert documented_floors() == floors()


def test_the_readme_links_the_architecture_page():
    with open(os.path.join(REPO, 'README.md')) as f:
        assert '(docs/architecture.md)' in f.read()
