# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The execution environment: ansible-builder reads the collection's dependencies, and the example
definition (docs/execution-environment.yml) gives a build context. No container engine is needed:
``ansible-builder create`` only writes the context, ``introspect`` is what the build runs inside it."""
import os
import pathlib
import shutil
import subprocess
import sys

import yaml

REPO = str(next(p for p in pathlib.Path(__file__).resolve().parents if (p / 'galaxy.yml').is_file()))
BUILDER = os.path.join(os.path.dirname(sys.executable), 'ansible-builder')


def builder(*args, cwd=None):
    proc = subprocess.run([BUILDER] + list(args), cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_ansible_builder_reads_the_collection_dependencies(tmp_path):
    # The collection as ansible-builder finds it in the image: <path>/ansible_collections/<ns>/<name>.
    link = tmp_path / 'ansible_collections' / 'fastdowntime' / 'postgresql'
    link.parent.mkdir(parents=True)
    link.symlink_to(REPO)
    builder('introspect', str(tmp_path), '--write-pip', str(tmp_path / 'pip.txt'),
            '--write-bindep', str(tmp_path / 'bindep.txt'))
    pip = (tmp_path / 'pip.txt').read_text()
    bindep = (tmp_path / 'bindep.txt').read_text()
    assert 'psycopg2-binary>=2.9' in pip and 'pglast>=8.8,<9' in pip, pip
    assert 'fastdowntime.postgresql' in pip  # ansible-builder names the collection each line comes from
    assert 'git [platform:rpm platform:dpkg]' in bindep and 'fastdowntime.postgresql' in bindep, bindep


def test_ansible_builder_create_writes_the_build_context(tmp_path):
    shutil.copy(os.path.join(REPO, 'docs', 'execution-environment.yml'), str(tmp_path))
    builder('create', '-f', 'execution-environment.yml', '--context', 'context', '--output-filename', 'Containerfile',
            cwd=str(tmp_path))
    context = tmp_path / 'context'
    containerfile = (context / 'Containerfile').read_text()
    assert 'ARG EE_BASE_IMAGE="quay.io/fedora/fedora-minimal:41"' in containerfile
    # the build installs the collections, then what they declare (introspect: the first test) and installs it
    assert 'ansible-galaxy collection install' in containerfile
    assert 'introspect.py introspect' in containerfile and 'install-from-bindep' in containerfile
    galaxy = yaml.safe_load((context / '_build' / 'requirements.yml').read_text())
    assert galaxy['collections'] == [{'name': 'fastdowntime.postgresql', 'version': '>=0.1.0'}]
    with open(os.path.join(REPO, 'meta', 'runtime.yml')) as f:
        requires = yaml.safe_load(f)['requires_ansible']
    assert 'ansible-core>=2.16,<2.20' in containerfile and requires == '>=2.16.0,<2.20'
