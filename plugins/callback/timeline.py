# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: timeline
type: aggregate
short_description: Phase-by-phase timeline of a fastdowntime deploy, as a table and as JSON
version_added: 0.1.0
description:
  - While the playbook runs, prints one line when a C(fastdowntime.postgresql.*) task starts, and
    one line per phase when it ends (phase, host, status, duration, budget left). Phases are read
    from the C(phases) list that fastdowntime modules return, also from failed tasks; any task whose
    result has a C(phases) key is included, whatever its module.
  - At the end of the playbook (also when it failed), prints a table (phase, host, start offset
    from the drain start, duration, budget left), the outage total (drain start to last resume),
    the longest client wait reported by pgbouncer, the replay time of each standby, the duration of
    each patch and the outcome (V(done), V(nothing to do), V(aborted in <phase>),
    V(refused by pre-flight)), and writes the same report as JSON (schema in C(docs/report.md)).
  - Nothing is printed or written at the end of a playbook in which no fastdowntime task started
    (a C(fastdowntime.postgresql.*) module or a result with C(phases)), so the last deploy's report
    is not replaced by that of an unrelated playbook.
  - Results of tasks with C(no_log) are censored by Ansible before any callback sees them, so their
    phases cannot appear in the timeline.
requirements:
  - Enable it in C(ansible.cfg) (C([defaults] callbacks_enabled = fastdowntime.postgresql.timeline))
    or with E(ANSIBLE_CALLBACKS_ENABLED).
options:
  report_path:
    description:
      - Where to write the JSON report. An existing file is replaced.
      - When not set, the variable C(fastdowntime_report_path) is used as the play sees it (for the
        first host that ran a task of the last play, templated); when that is not set either, no
        JSON is written and only the table is printed.
      - A relative path is relative to the directory C(ansible-playbook) runs in; missing parent
        directories are created.
    type: path
    env:
      - name: FASTDOWNTIME_REPORT_PATH
    ini:
      - section: callback_timeline
        key: report_path
"""

import os
import tempfile
import time

from ansible import constants as C
from ansible import context
from ansible.plugins.callback import CallbackBase
from ansible.template import Templar

from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import one_line
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.report import (
    build_report,
    entry_from_result,
    format_ms,
    is_deploy_action,
    is_fastdowntime_result,
    render_text,
    to_json,
)

REPORT_PATH_VAR = 'fastdowntime_report_path'
ACTION_PREFIX = 'fastdowntime.postgresql.'
PREFIX = '[timeline]'


def task_action(task):
    """The FQCN of the module a task runs, when Ansible has resolved it."""
    return getattr(task, 'resolved_action', None) or getattr(task, 'action', None) or ''


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'fastdowntime.postgresql.timeline'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None):
        super().__init__(display=display)
        self._entries = []
        self._fastdowntime_ran = False
        self._play = None
        self._play_hosts = []      # hosts that ran a task of the current play, in order
        self._task_started = {}    # (task uuid, host name) -> time.monotonic()

    # -- live lines ------------------------------------------------------
    def v2_playbook_on_play_start(self, play):
        self._play = play
        self._play_hosts = []

    def v2_runner_on_start(self, host, task):
        self._remember_host(host)
        if not is_deploy_action(task_action(task)):
            return
        self._fastdowntime_ran = True
        self._task_started[(task._uuid, host.get_name())] = time.monotonic()
        self._display.display('%s start %s (%s) on %s' % (
            PREFIX, task.get_name(), task_action(task), host.get_name()))

    def v2_runner_on_ok(self, result):
        self._task_ended(result, failed=False)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._task_ended(result, failed=not ignore_errors)

    def v2_runner_on_unreachable(self, result):
        self._task_ended(result, failed=True)

    def v2_runner_on_skipped(self, result):
        self._task_started.pop((result.task._uuid, result.host.get_name()), None)

    def _task_ended(self, result, failed):
        task, host = result.task, result.host.get_name()
        self._remember_host(result.host)
        action = task_action(task)
        data = result.result
        began = self._task_started.pop((task._uuid, host), None)
        if not is_fastdowntime_result(data, action):
            if failed:
                # Not ours, but it stopped the deploy: the outcome must say where.
                self._entries.extend(entry_from_result(
                    {'failed': True, 'msg': data.get('msg')}, task=task.get_name(), host=host, action=action))
            return
        self._fastdowntime_ran = True
        entries = entry_from_result(data, task=task.get_name(), host=host, action=action, failed=failed)
        self._entries.extend(entries)
        phases = [(p, e) for e in entries for p in e['phases']]
        for record, entry in phases:
            # A failed phase without its own error shows the task's message.
            fallback = entry['msg'] if entry['failed'] else None
            self._display.display(self._phase_line(record, record.get('host') or host, fallback),
                                  color=C.COLOR_ERROR if record.get('status') == 'failed' else None)
        if not phases:
            took = format_ms((time.monotonic() - began) * 1000) if began is not None else '-'
            status = 'failed' if failed else 'ok'
            line = '%s end %s on %s: %s in %s (no phases reported)' % (PREFIX, task.get_name(), host, status, took)
            if failed and data.get('msg'):
                line += ': %s' % one_line(data['msg'])
            self._display.display(line, color=C.COLOR_ERROR if failed else None)

    @staticmethod
    def _phase_line(record, host, fallback_error=None):
        line = '%s end %s on %s: %s in %s, budget left %s' % (
            PREFIX, record.get('phase') or 'unnamed', host, record.get('status') or 'unknown',
            format_ms(record.get('duration_ms')), format_ms(record.get('budget_left_ms')))
        error = (record.get('detail') or {}).get('error') if isinstance(record.get('detail'), dict) else None
        if record.get('status') == 'failed':
            error = error or fallback_error
        if error:
            line += ': %s' % one_line(error)
        return line

    def _remember_host(self, host):
        if host not in self._play_hosts:
            self._play_hosts.append(host)

    # -- the report ------------------------------------------------------
    def v2_playbook_on_stats(self, stats):
        play_failed = any(stats.failures.values()) or any(stats.dark.values())
        entries = self._entries
        if not play_failed:
            # Failures of other modules that a rescue or ignore_unreachable absorbed
            # did not stop the deploy.
            entries = [e for e in entries if e['phases'] or e['outage'] or not e['failed']
                       or (e['action'] or '').startswith(ACTION_PREFIX)]
        # Only a playbook that ran a fastdowntime task reports: fastdowntime_report_path
        # is often set for every play (group_vars/all), and the last deploy's report
        # must not be replaced by that of an unrelated playbook.
        if not self._fastdowntime_ran:
            return
        path = self.get_option('report_path') or self._play_report_path()
        report = build_report(entries, play_failed=play_failed,
                              check_mode=bool(context.CLIARGS.get('check', False)))
        self._display.banner('FASTDOWNTIME TIMELINE')
        for line in render_text(report):
            self._display.display(line)
        if path:
            self._write(path, report)

    def _play_report_path(self):
        """``fastdowntime_report_path`` as the last play sees it, templated."""
        if self._play is None:
            return None
        try:
            manager = self._play.get_variable_manager()
            host = self._play_hosts[0] if self._play_hosts else None
            variables = manager.get_vars(play=self._play, host=host)
            if REPORT_PATH_VAR not in variables:
                return None
            value = Templar(variables=variables).template(variables[REPORT_PATH_VAR])
        except Exception as exc:  # a broken variable must not hide the timeline
            self._display.warning('%s cannot read %s: %s' % (PREFIX, REPORT_PATH_VAR, one_line(exc)))
            return None
        return str(value) if value else None

    def _write(self, path, report):
        """Replace the report atomically, so a reader never sees half of it."""
        path = os.path.abspath(os.path.expanduser(path))
        try:
            directory = os.path.dirname(path)
            os.makedirs(directory, exist_ok=True)
            handle, tmp = tempfile.mkstemp(prefix='.timeline-', suffix='.json', dir=directory)
            try:
                with os.fdopen(handle, 'w') as stream:
                    stream.write(to_json(report))
                os.chmod(tmp, 0o644)
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as exc:
            self._display.warning('%s cannot write the report to %s: %s: check that the directory is writable'
                                  % (PREFIX, path, exc.strerror or one_line(exc)))
            return
        self._display.display('%s report written to %s' % (PREFIX, path))
