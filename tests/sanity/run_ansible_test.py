#!/usr/bin/env python
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run ``ansible-test sanity`` (or ``units``) on this checkout, offline, with the project's venv.

ansible-test needs the collection at ``.../ansible_collections/fastdowntime/postgresql``: this
copies the checkout's files (``git ls-files``: tracked and new, not ignored) into a temporary
tree of that shape and runs ansible-test there.

ansible-test would build one virtual environment per sanity test and fill it with pip through a
bootstrap script fetched from ci-files.testing.ansible.com (outside the package registries).
Instead every sanity test that needs packages runs in the interpreter running this script (the
project venv), which has ansible-test's pinned sanity requirements installed from PyPI through
requirements-dev.txt (or requirements-core216.txt for the oldest ansible-core tested). Tests that
need no packages (import of modules: an empty venv, so a missing ``missing_required_lib`` guard is
caught) keep ansible-test's own behaviour, which needs no network.

Usage: run_ansible_test.py [sanity|units] [ansible-test options...]; exit status is ansible-test's.
"""
from __future__ import annotations

import importlib
import inspect
import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NAMESPACE, NAME = 'fastdowntime', 'postgresql'


def checkout_files(repo):
    """Relative paths of the files a clean clone plus the uncommitted work would hold; outside a git
    checkout (the copy ansible-test runs the unit tests in), every file but tests/output and caches."""
    proc = subprocess.run(['git', '-C', repo, 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
                          check=False, capture_output=True)
    if proc.returncode == 0:
        return sorted({p for p in proc.stdout.decode().split('\0') if p and os.path.lexists(os.path.join(repo, p))})
    found = []
    for top, dirs, files in os.walk(repo):
        rel = os.path.relpath(top, repo)
        dirs[:] = [d for d in dirs if d not in ('__pycache__', '.git', '.collections')
                   and os.path.normpath(os.path.join(rel, d)) != os.path.join('tests', 'output')]
        found += [os.path.normpath(os.path.join(rel, f)) for f in files]
    return sorted(found)


def build_tree(repo, root):
    """Copy the checkout into root/ansible_collections/<ns>/<name>; returns the collection path."""
    dest = os.path.join(root, 'ansible_collections', NAMESPACE, NAME)
    for rel in checkout_files(repo):
        src, dst = os.path.join(repo, rel), os.path.join(dest, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if os.path.islink(src):
            os.symlink(os.readlink(src), dst)
        elif os.path.isfile(src):
            shutil.copy2(src, dst)
    return dest


def use_this_python_for_packages():
    """Point ansible-test's per-test virtual environments that need pip at this interpreter."""
    # pylint: disable=import-outside-toplevel
    from ansible_test._internal.commands import sanity
    from ansible_test._internal.host_configs import VirtualPythonConfig
    from ansible_test._internal.python_requirements import PipInstall, collect_requirements

    original = sanity.create_sanity_virtualenv
    here = VirtualPythonConfig(version='%d.%d' % sys.version_info[:2], path=sys.executable)

    # ansible-core 2.16's collect_requirements also takes cryptography and virtualenv (False for sanity)
    older = dict((k, False) for k in ('cryptography', 'virtualenv') if k in inspect.signature(collect_requirements).parameters)

    def create_sanity_virtualenv(args, python, name, coverage=False, minimize=False):
        commands = collect_requirements(python=python, controller=True, command=None, ansible=False,
                                        coverage=coverage, minimize=minimize, sanity=name, **older)
        if any(isinstance(c, PipInstall) for c in commands):
            return here
        return original(args, python, name, coverage=coverage, minimize=minimize)

    original_yaml = sanity.check_sanity_virtualenv_yaml

    def check_sanity_virtualenv_yaml(python):
        if python is here:  # ansible-test reads this from a file it writes when it builds a venv
            import yaml  # pylint: disable=import-outside-toplevel
            return hasattr(yaml, 'CSafeLoader')
        return original_yaml(python)

    sanity.create_sanity_virtualenv = create_sanity_virtualenv
    sanity.check_sanity_virtualenv_yaml = check_sanity_virtualenv_yaml
    importlib.import_module('ansible_test._internal.commands.sanity.import').create_sanity_virtualenv = create_sanity_virtualenv


def main(argv):
    """Build the tree, run ansible-test in it, return its exit status."""
    root = tempfile.mkdtemp(prefix='fdt-ansible-test-')
    try:
        os.chdir(build_tree(REPO, root))
        use_this_python_for_packages()
        from ansible_test._internal import main as ansible_test_main  # pylint: disable=import-outside-toplevel
        try:
            ansible_test_main(['ansible-test'] + argv)
        except SystemExit as ex:
            return ex.code if isinstance(ex.code, int) else 1
        return 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:] or ['sanity', '--python', '%d.%d' % sys.version_info[:2], '--local']))
