# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection tarball holds what ships and nothing else (galaxy.yml build_ignore).

Built from the checkout's files (tests/sanity/run_ansible_test.py build_tree: tracked and new, not ignored),
so a developer's stray local files neither hide nor cause a failure."""
import os
import pathlib
import subprocess
import sys
import tarfile

import pytest
import yaml

REPO = str(next(p for p in pathlib.Path(__file__).resolve().parents if (p / 'galaxy.yml').is_file()))
sys.path.insert(0, os.path.join(REPO, 'tests', 'sanity'))

import run_ansible_test  # noqa: E402  pylint: disable=wrong-import-position

ANSIBLE_GALAXY = os.path.join(os.path.dirname(sys.executable), 'ansible-galaxy')

# Top-level entries of the tarball: what users of the collection (and its execution environment) need.
SHIPPED_TOP = {'MANIFEST.json', 'FILES.json', 'README.md', 'LICENSE', 'meta', 'plugins', 'roles', 'playbooks',
               'docs', 'bin', 'inventories', 'changelogs', 'requirements.txt', 'bindep.txt'}
SHIPPED_EXACT = {'inventories': 'inventories/example/', 'changelogs': ('changelogs/changelog.yaml', 'changelogs/config.yaml')}


@pytest.fixture(scope='module')
def artifact(tmp_path_factory):
    root = tmp_path_factory.mktemp('build')
    tree = run_ansible_test.build_tree(REPO, str(root / 'src'))
    subprocess.run([ANSIBLE_GALAXY, 'collection', 'build', '--output-path', str(root), tree],
                   check=True, capture_output=True, timeout=300)
    with open(os.path.join(REPO, 'galaxy.yml')) as f:
        galaxy = yaml.safe_load(f)
    path = root / ('%s-%s-%s.tar.gz' % (galaxy['namespace'], galaxy['name'], galaxy['version']))
    with tarfile.open(str(path)) as tar:
        return [m.name for m in tar.getmembers() if m.isfile()]


def test_tarball_holds_only_shipped_files(artifact):
    unexpected = []
    for name in artifact:
        top = name.split('/')[0]
        if top not in SHIPPED_TOP or (top in SHIPPED_EXACT and not name.startswith(SHIPPED_EXACT[top])):
            unexpected.append(name)
        if '__pycache__' in name or name.endswith('.pyc'):
            unexpected.append(name)
    assert not unexpected, 'not for users, add to galaxy.yml build_ignore: %s' % ', '.join(sorted(unexpected))


def test_tarball_holds_what_users_need(artifact):
    names = set(artifact)
    for needed in ('LICENSE', 'README.md', 'meta/runtime.yml', 'meta/execution-environment.yml', 'requirements.txt',
                   'bindep.txt', 'playbooks/fastdowntime.yml', 'plugins/modules/outage.py',
                   'plugins/doc_fragments/connection.py', 'roles/outage/meta/argument_specs.yml',
                   'changelogs/changelog.yaml', 'bin/fastdowntime-change-rule'):
        assert needed in names, needed
    assert not [n for n in names if n.startswith(('tests/', 'lab/', 'molecule/', 'benchmarks/', 'inventories/lab/'))]
    for dev_only in ('ansible.cfg', 'pytest.ini', '.ansible-lint', 'Makefile', 'requirements-dev.txt'):
        assert dev_only not in names, dev_only
