"""lab/demo.py without ansible-playbook to run: one line naming what to do, before any client starts
(it was a Python traceback, after the clients had started)."""
import os
import pathlib
import sys

sys.path.insert(0, os.path.join(str(next(p for p in pathlib.Path(__file__).resolve().parents if (p / 'galaxy.yml').is_file())), 'lab'))

import demo  # noqa: E402


def not_read():
    raise AssertionError('the lab was read: the clients would start')


def test_no_ansible_playbook_on_path_nor_beside_python_is_one_line_and_nothing_started(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('PATH', str(tmp_path))
    monkeypatch.setattr(demo.sys, 'executable', str(tmp_path / 'python3'))
    monkeypatch.setattr(demo, 'lab_topology', not_read)
    assert demo.main(['-i', 'inventory', 'playbooks/fastdowntime.yml']) == 2
    out, err = capsys.readouterr()
    assert out == '' and err.count('\n') == 1 and 'Traceback' not in err
    assert err.startswith('demo: ansible-playbook is neither on PATH nor beside %s: run `make demo`' % (
        tmp_path / 'python3'))


def test_the_venvs_ansible_playbook_beside_python_serves_without_path(tmp_path, monkeypatch):
    beside = tmp_path / 'ansible-playbook'
    beside.write_text('#!/bin/sh\n')
    beside.chmod(0o755)
    monkeypatch.setenv('PATH', str(tmp_path / 'empty'))
    monkeypatch.setattr(demo.sys, 'executable', str(tmp_path / 'python3'))
    assert demo.ansible_playbook() == str(beside)
    on_path = tmp_path / 'bin'
    on_path.mkdir()
    (on_path / 'ansible-playbook').write_text('#!/bin/sh\n')
    (on_path / 'ansible-playbook').chmod(0o755)
    monkeypatch.setenv('PATH', str(on_path))
    assert demo.ansible_playbook() == str(on_path / 'ansible-playbook')
