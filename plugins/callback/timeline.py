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
  - Two ways to use it. As the B(stdout callback) (C(stdout_callback = fastdowntime.postgresql.timeline)), a
    quiet run - one line per play, one line per phase of a fastdowntime task, the pre-flight's verdict and its
    warnings, then the timeline, each failure once in one line, and one recap line. With C(-v) and more it
    prints everything the C(default) callback prints as well, and the timeline. Task warnings and deprecations
    (and a role's C([DEPRECATION WARNING]) or C([WARNING]) message, once) are shown in the quiet run too.
  - As an B(aggregate callback) next to another stdout callback
    (C(callbacks_enabled = fastdowntime.postgresql.timeline)) it prints only the phase lines and the timeline.
  - Phases are read from the C(phases) list that fastdowntime modules return, also from failed tasks; any task
    whose result has a C(phases) key (or sets the fact C(fastdowntime_phases)) is included, whatever its module.
  - At the end of the playbook (also when it failed), prints a table (phase, host, start offset
    from the drain start, duration, budget left), the outage total (drain start to last resume),
    the longest client wait reported by pgbouncer, the replay time of each standby, the duration of
    each patch, the schema revision of every database after the deploy, the plan in check mode, and the
    outcome (V(done), V(nothing to do), V(planned), V(passed) - a pre-flight alone, V(aborted in <phase>),
    V(refused by pre-flight)), and writes the same report as JSON (schema in C(docs/report.md)) - except after a
    pre-flight that passed alone, which is no deploy and leaves the last deploy's report in place.
  - In check mode (C(--check)) the report (the plan) is written beside the report path, C(.check) before its
    extension (C(report.json) -> C(report.check.json), its picture C(report.check.html)) - check mode changes
    nothing, so the last deploy's report is left as it was.
  - Nothing is printed or written at the end of a playbook in which no fastdowntime deploy task ran
    (a C(fastdowntime.postgresql.*) module or a result with C(phases)), so the last deploy's report
    is not replaced by that of an unrelated playbook. The collection's checks that are no deploy
    (C(patch_lint), C(change_rule), C(cycle_time)) never make a timeline; in a quiet run their
    C(summary_lines) (the lint's findings) are printed as they come.
  - Results of tasks with C(no_log) are censored by Ansible before any callback sees them, so their
    phases cannot appear in the timeline.
extends_documentation_fragment:
  - ansible.builtin.default_callback
  - ansible.builtin.result_format_callback
requirements:
  - Enable it in C(ansible.cfg) (C([defaults] stdout_callback = fastdowntime.postgresql.timeline), or
    C(callbacks_enabled = fastdowntime.postgresql.timeline)) or with E(ANSIBLE_STDOUT_CALLBACK) or
    E(ANSIBLE_CALLBACKS_ENABLED).
options:
  report_path:
    description:
      - Where to write the JSON report. An existing file is replaced. A C(--check) run writes its plan beside it
        instead (C(report.json) -> C(report.check.json)).
      - Its picture is written next to it, with the same name ending in C(.html) (C(report.json) ->
        C(report.html)) - a self-contained page, readable offline (no script, nothing fetched) - the
        whole deploy and the outage window on time axes, phases per host, the budget's end, the longest
        client wait each pgbouncer saw, the phase table and the schema revision of every database.
      - When not set, the variable C(fastdowntime_report_path) is used as the play sees it (for the
        host that ran the last fastdowntime task, templated); when that is not set either, no
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

import atexit
import os
import signal
import tempfile
import time

from ansible import constants as C
from ansible import context
from ansible.plugins.callback import CallbackBase
from ansible.plugins.callback.default import CallbackModule as DefaultCallback
from ansible.template import Templar

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import outcomes
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import one_line
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.report import (
    NOT_DEPLOY_ACTIONS,
    build_report,
    check_report_path,
    entry_from_result,
    format_budget,
    format_ms,
    is_deploy_action,
    is_fastdowntime_result,
    render_text,
    to_json,
)
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.report_html import html_path_for, render_html

REPORT_PATH_VAR = 'fastdowntime_report_path'
ACTION_PREFIX = 'fastdowntime.postgresql.'
PREFIX = '[timeline]'
# A role deprecates a variable with a debug task whose message starts so (the
# quiet run shows it, once); Ansible's own deprecations come in task results.
DEPRECATION_PREFIX = '[DEPRECATION WARNING]'
# A role warns the same way (a variable the collection does not know, when
# fastdowntime_unknown_variables is warn).
WARNING_PREFIX = '[WARNING]'
DEBUG_ACTIONS = ('ansible.builtin.debug', 'debug', 'ansible.legacy.debug')
OUTAGE_ACTIONS = (ACTION_PREFIX + 'outage', 'outage')
# Phase statuses of steps that did not run: skipped, or only planned (check mode).
UNTIMED_STATUSES = ('skipped', 'planned')
NAMES = ('fastdowntime.postgresql.timeline', 'timeline')
# The events this plugin handles itself; as the aggregate callback, or as a
# quiet stdout callback, it receives no other (the default callback's
# methods it inherits answer only in verbose stdout mode).
OWN_EVENTS = frozenset((
    'v2_playbook_on_play_start', 'v2_runner_on_start', 'v2_runner_on_ok', 'v2_runner_on_failed',
    'v2_runner_on_unreachable', 'v2_runner_on_skipped', 'v2_playbook_on_stats',
))


def task_action(task):
    """The FQCN of the module a task runs, when Ansible has resolved it."""
    return getattr(task, 'resolved_action', None) or getattr(task, 'action', None) or ''


def is_window_task(task):
    """Is this the task that opens the outage window (the outage module, not its
    read-only plan in check mode nor the unfence of an earlier deploy's read entries)?"""
    args = getattr(task, 'args', None) or {}
    return (task_action(task) in OUTAGE_ACTIONS and getattr(task, 'check_mode', None) is not True
            and not args.get('unfence') and not context.CLIARGS.get('check', False))


def interrupted_in_window_line(host, seconds_in, deploy_id=None, db_name=None):
    """The one line an operator reads when ansible-playbook ends (Ctrl-C, a kill, a crash)
    while the window task is still running: what goes on without it, what to do and, this
    run writing no report, where its outcome and timeline are (``deploy_id``: the window's,
    ``db_name``: the deploy's database, when known)."""
    where = ('its outcome and timeline are then in the deploy log on the primary%s: SELECT outcome, outage_ms, phases '
             'FROM fastdowntime.deploy_log %s'
             % (', database %s' % db_name if db_name else '',
                "WHERE deploy_id = '%s'" % deploy_id if deploy_id else 'ORDER BY started_at DESC LIMIT 1'))
    return ('%s INTERRUPTED INSIDE THE OUTAGE WINDOW (the outage task for %s, %.1f s in): the window was not '
            'stopped: its module runs on, on the controller, and commits the cold patches or rolls them back, waits '
            'for the standbys and resumes every pgbouncer within its budget (the dead-man switch on each pgbouncer '
            'host resumes it otherwise); no timeline report is written for this run: %s -> do not RESUME by hand (a '
            'standby may not have replayed yet): once the budget has passed, run the deploy again (it says what is '
            'applied), then restart the app servers (--tags restart) if the patches are committed'
            % (PREFIX, host, seconds_in, where))


def loaded_as_stdout():
    """Is this plugin the run's stdout callback (``stdout_callback`` in ansible.cfg)?"""
    return str(getattr(C, 'DEFAULT_STDOUT_CALLBACK', '') or '') in NAMES


def result_parts(result):
    """(task, host, result dict) of a TaskResult: public attributes from ansible-core 2.19 on, private before."""
    task = getattr(result, 'task', None) or result._task
    host = getattr(result, 'host', None) or result._host
    data = getattr(result, 'result', None)
    return task, host, (result._result if data is None else data)


def warning_text(warning):
    """A task warning's message: a string before ansible-core 2.19, a WarningSummary
    (its event's msg) from 2.19 on, or that summary as a dict."""
    if isinstance(warning, dict):
        return str((warning.get('event') or {}).get('msg') or warning.get('msg') or '')
    event = getattr(warning, 'event', None)
    return str(getattr(event, 'msg', None) or warning)


def is_routine_check(record):
    """True for a phase that only confirmed what the one before it did: the check
    after the resume (``resume_verify``) that found every entry resumed and
    enabled. The quiet screen leaves its live line out; the table and the JSON
    report keep it, and a check that had to act, or failed, is shown."""
    detail = record.get('detail') if isinstance(record.get('detail'), dict) else {}
    return (str(record.get('phase')).startswith('resume_verify') and record.get('status') == 'ok'
            and not detail.get('resumed') and not detail.get('enabled'))


class CallbackModule(DefaultCallback):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'fastdowntime.postgresql.timeline'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None, stdout=None):
        super().__init__()
        if display is not None:
            self._display = display
        # As the stdout callback it prints the whole run; as an aggregate one, only the timeline.
        self._stdout = loaded_as_stdout() if stdout is None else stdout
        self._entries = []
        self._fastdowntime_ran = False
        self._play = None
        self._play_title = None    # printed (quiet mode) when the play's first task runs
        self._play_hosts = []      # hosts that ran a task of the current play, in order
        self._task_started = {}    # (task uuid, host name) -> time.monotonic()
        self._report_path = None   # fastdowntime_report_path as a play that ran a fastdowntime task saw it
        self._failures = []        # (host, host to name or None, msg, ours) of failed tasks, in order
        self._warned = set()
        self._window = None        # (host name, time.monotonic(), deploy id, database) while the window task runs
        self._planned_id = None    # the deploy id the outage's plan generated (the window's, unless set)
        self._sigterm = None       # the SIGTERM handler this one stands in front of, while the window task runs
        # Ctrl-C (ansible-playbook exits at once, its workers' modules run on) or a crash
        # while the window task runs: the last thing the operator reads says so.
        atexit.register(self._exit_inside_the_window)
        # ansible-core before 2.19 sends a callback every event it has a method for (2.19 only those
        # _init_callback_methods keeps): the default callback's own methods inherited here (task
        # banners, loop items, includes, handlers...) answer only in the chatty mode, as with 2.19.
        # (Only those the default callback defines: CallbackBase's are no-ops, some deprecated.)
        for name in dir(DefaultCallback):
            if name.startswith('v2_') and name not in OWN_EVENTS and \
                    getattr(DefaultCallback, name) is not getattr(CallbackBase, name, None):
                setattr(self, name, self._only_chatty(getattr(self, name)))

    def _only_chatty(self, method):
        def when_chatty(*args, **kwargs):
            if self._chatty:
                return method(*args, **kwargs)
            return None
        return when_chatty

    # -- modes --------------------------------------------------------------
    @property
    def _verbose(self):
        return self._display.verbosity >= 1

    @property
    def _quiet(self):
        """The quiet run: the stdout callback without -v."""
        return self._stdout and not self._verbose

    @property
    def _chatty(self):
        """The default callback's output too: the stdout callback with -v."""
        return self._stdout and self._verbose

    def _init_callback_methods(self):
        super()._init_callback_methods()
        if not self._chatty:
            self._implemented_callback_methods = set(self._implemented_callback_methods) & OWN_EVENTS

    # -- live lines ------------------------------------------------------
    def v2_playbook_on_play_start(self, play):
        if self._chatty:
            super().v2_playbook_on_play_start(play)
        self._play = play
        self._play_hosts = []
        self._play_title = (getattr(play, 'get_name', lambda: '')() or '').strip() or None

    def v2_runner_on_start(self, host, task):
        if self._chatty:
            super().v2_runner_on_start(host, task)
        self._remember_host(host)
        if self._quiet and self._play_title:
            self._display.display('== %s' % self._play_title)
            self._play_title = None
        if not is_deploy_action(task_action(task)):
            return
        self._fastdowntime_ran = True
        self._task_started[(task._uuid, host.get_name())] = time.monotonic()
        if is_window_task(task):
            name = host.get_name()
            self._window = (name, time.monotonic(), self._play_var('fastdowntime_deploy_id', host) or self._planned_id,
                            self._play_var('fastdowntime_db_name', host))
            self._say_so_on_sigterm()
        if self._verbose:
            self._display.display('%s start %s (%s) on %s' % (
                PREFIX, task.get_name(), task_action(task), host.get_name()))

    def v2_runner_on_ok(self, result):
        if self._chatty:
            super().v2_runner_on_ok(result)
        self._task_ended(result, failed=False)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        if self._chatty:
            super().v2_runner_on_failed(result, ignore_errors=ignore_errors)
        self._task_ended(result, failed=not ignore_errors)

    def v2_runner_on_unreachable(self, result):
        if self._chatty:
            super().v2_runner_on_unreachable(result)
        self._task_ended(result, failed=True)

    def v2_runner_on_skipped(self, result):
        if self._chatty:
            super().v2_runner_on_skipped(result)
        task, host, dummy = result_parts(result)
        self._task_started.pop((task._uuid, host.get_name()), None)
        if is_window_task(task):
            self._window_ended()

    def _task_ended(self, result, failed):
        task, host_object, data = result_parts(result)
        host = host_object.get_name()
        self._remember_host(host_object)
        action = task_action(task)
        began = self._task_started.pop((task._uuid, host), None)
        if is_window_task(task):
            self._window_ended()
        elif action in OUTAGE_ACTIONS and data.get('deploy_id'):
            self._planned_id = data['deploy_id']
        ours = is_fastdowntime_result(data, action)
        if self._quiet:
            self._show_warnings(data, action)
        if failed:
            # A run_once task failed for the play, not for the host it happened to run on.
            where = None if getattr(task, 'run_once', False) else host
            self._failures.append((host, where, one_line(data.get('msg') or 'failed'), ours))
        if not ours:
            if self._quiet and str(action) in NOT_DEPLOY_ACTIONS and isinstance(data.get('summary_lines'), list):
                # A check of the collection that is no deploy (the lint): its findings are the output.
                for line in data['summary_lines']:
                    self._display.display('  %s' % line)
            if failed:
                # Not ours, but it stopped the deploy: the outcome must say where.
                self._entries.extend(entry_from_result(
                    {'failed': True, 'msg': data.get('msg')}, task=task.get_name(), host=host, action=action))
            return
        self._fastdowntime_ran = True
        self._remember_report_path(host_object)
        entries = entry_from_result(data, task=task.get_name(), host=host, action=action, failed=failed)
        self._entries.extend(entries)
        phases = [(p, e) for e in entries for p in e['phases']]
        for record, entry in phases:
            if self._quiet and is_routine_check(record):
                continue
            # A failed phase without its own error shows the task's message (with -v;
            # without it the error is printed once, at the end).
            fallback = entry['msg'] if entry['failed'] else None
            self._display.display(self._phase_line(record, record.get('host') or host, fallback,
                                                   with_error=self._verbose or not self._stdout),
                                  color=C.COLOR_ERROR if record.get('status') == 'failed' else None)
        if self._quiet:
            for entry in entries:
                for line in entry.get('notes') or []:
                    self._display.display('  %s' % line, color=C.COLOR_WARN if line.startswith('WARN') else None)
        if not phases and self._verbose:
            took = format_ms((time.monotonic() - began) * 1000) if began is not None else '-'
            status = 'failed' if failed else 'ok'
            line = '%s end %s on %s: %s in %s' % (PREFIX, task.get_name(), host, status, took)
            if failed and data.get('msg'):
                line += ': %s' % one_line(data['msg'])
            self._display.display(line, color=C.COLOR_ERROR if failed else None)

    def _exit_inside_the_window(self):
        if self._window is not None:
            host, began, deploy_id, db_name = self._window
            self._window = None
            self._display.display(interrupted_in_window_line(host, time.monotonic() - began, deploy_id, db_name),
                                  color=C.COLOR_ERROR, stderr=True)

    def _say_so_on_sigterm(self):
        """A kill of ansible-playbook (SIGTERM: a CI timeout, a job cancel) ends it by the signal's
        default action once Ansible has sent it on to its workers - no atexit: while the window task
        runs, this handler stands in front of Ansible's, says the line, then hands the signal on."""
        try:
            previous = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, self._on_sigterm)
        except ValueError:  # not the main thread: the atexit line still covers Ctrl-C
            return
        self._sigterm = (previous,)

    def _on_sigterm(self, signum, frame):
        self._exit_inside_the_window()
        previous = self._restore_sigterm()
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            os.kill(os.getpid(), signum)  # the default action, as without this handler

    def _restore_sigterm(self):
        if self._sigterm is None:
            return signal.SIG_DFL
        previous, self._sigterm = self._sigterm[0], None
        try:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        except ValueError:
            pass
        return previous

    def _window_ended(self):
        self._window = None
        self._restore_sigterm()

    def _show_warnings(self, data, action):
        """What the default callback would warn about, in a quiet run too: the
        task's warnings and deprecations (Ansible's own, e.g. a deprecated
        option alias), and a role's DEPRECATION_PREFIX or WARNING_PREFIX
        message (a debug task: roles have no other way to deprecate a
        variable or to warn)."""
        outage = data.get('outage') if isinstance(data.get('outage'), dict) else {}
        own = set(outage.get('warnings') or [])
        if own and data.get('warnings'):
            # The timeline report prints the outage's own warnings once, at the end: the others now.
            current = getattr(self, '_current_task_result', None)  # ansible-core 2.19: the warnings as sent
            sent = list(getattr(current, 'warnings', None) or data['warnings'])
            data['warnings'] = None
            for message in [warning_text(w) for w in sent]:
                if message not in own:
                    self._display.warning(message)
        self._handle_warnings(data)
        message = data.get('msg')
        if str(action) in DEBUG_ACTIONS and isinstance(message, str) and message.startswith(
                (DEPRECATION_PREFIX, WARNING_PREFIX)):
            if message not in self._warned:  # once per playbook, though every play checks the inventory
                self._warned.add(message)
                self._display.display(message, stderr=True, color=C.COLOR_DEPRECATE
                                      if message.startswith(DEPRECATION_PREFIX) else C.COLOR_WARN)

    @staticmethod
    def _phase_line(record, host, fallback_error=None, with_error=True):
        name = record.get('phase') or 'unnamed'
        detail = record.get('detail') if isinstance(record.get('detail'), dict) else {}
        if isinstance(detail.get('patch'), str):
            name = '%s %s' % (name, detail['patch'])
        if record.get('status') in UNTIMED_STATUSES:
            # Nothing ran: no duration to show, only what would have happened or why not.
            return '%s %s on %s: %s%s' % (PREFIX, name, host, record['status'],
                                          ': %s' % detail['reason'] if detail.get('reason') else '')
        line = '%s end %s on %s: %s in %s, budget left %s' % (
            PREFIX, name, host, record.get('status') or 'unknown',
            format_ms(record.get('duration_ms')), format_budget(record.get('budget_left_ms')))
        error = detail.get('error')
        if record.get('status') == 'failed':
            error = error or fallback_error
        if error and with_error:
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
        report = None
        # Only a playbook that ran a fastdowntime task reports: fastdowntime_report_path
        # is often set for every play (group_vars/all), and the last deploy's report
        # must not be replaced by that of an unrelated playbook.
        if self._fastdowntime_ran:
            report = build_report(entries, play_failed=play_failed,
                                  check_mode=bool(context.CLIARGS.get('check', False)))
        failures = self._failures_to_print(report) if self._quiet else []
        if self._chatty:
            super().v2_playbook_on_stats(stats)
        if report is not None:
            self._display.banner('FASTDOWNTIME TIMELINE')
            for line in render_text(report):
                self._display.display(line)
            path = self.get_option('report_path') or self._report_path or self._play_report_path()
            if path and report['outcome'] == outcomes.PASSED:
                # A pre-flight alone is no deploy: the last deploy's report stays.
                self._display.display('%s report not written: a pre-flight alone is no deploy (%s is left as it was)'
                                      % (PREFIX, path))
            elif path and report.get('check_mode'):
                # Check mode changes nothing: the plan goes beside the last deploy's report.
                if self._write(check_report_path(path), report) and os.path.exists(os.path.expanduser(path)):
                    self._display.display("%s check mode: the last deploy's report %s is left as it was"
                                          % (PREFIX, os.path.abspath(os.path.expanduser(path))))
            elif path:
                self._write(path, report)
        if self._quiet:
            for host, msg in failures:
                self._display.display('FAILED %s%s' % ('%s: ' % host if host else '', msg), color=C.COLOR_ERROR)
            self._display.display(*self._recap(stats))

    def _failures_to_print(self, report):
        """[(host or None, msg)]: each failure the timeline's outcome does not already say,
        once. A failure whose message holds the outcome's error (a role's fuller account of
        it) replaces that error in the report."""
        covered = report is not None and report['outcome'] not in outcomes.SUCCESSFUL
        # Hosts whose fastdowntime result failed or carries a failed phase: a later
        # failure there (a role's refusal task) restates what the outcome says.
        failed_hosts = set(e['host'] for e in self._entries
                           if e['failed'] or any(p.get('status') == 'failed' for p in e['phases']))
        printed, said = [], set()
        for host, where, msg, ours in self._failures:
            if covered:
                error = report.get('error') or ''
                if error and error in msg and msg != error and not report.get('problems'):
                    report['error'] = msg
                    continue
                if ours or host in failed_hosts or msg in error:
                    continue
            if msg not in said:
                said.add(msg)
                printed.append((where, msg))
        return printed

    def _recap(self, stats):
        """One line for every host: how many ended well, which did not."""
        hosts = sorted(stats.processed.keys())
        bad = [h for h in hosts if stats.summarize(h)['failures'] or stats.summarize(h)['unreachable']]
        changed = [h for h in hosts if stats.summarize(h).get('changed')]
        line = 'hosts: %d ok' % (len(hosts) - len(bad))
        check_mode = context.CLIARGS.get('check', False)
        if changed and not check_mode:
            line += ' (%d changed)' % len(changed)
        if bad:
            line += ', %d failed (%s); details: rerun with -v' % (len(bad), ', '.join(bad))
        if check_mode:
            line += ' [check mode: nothing was changed]'
        return line, (C.COLOR_ERROR if bad else None)

    def _remember_report_path(self, host):
        path = self._play_report_path(host)
        if path:
            self._report_path = path

    def _play_report_path(self, host=None):
        """``fastdowntime_report_path`` as the current play sees it for ``host``, templated."""
        return self._play_var(REPORT_PATH_VAR, host)

    def _play_var(self, name, host=None):
        """Variable ``name`` as the current play sees it for ``host``, templated (a string), or None."""
        if self._play is None:
            return None
        try:
            manager = self._play.get_variable_manager()
            host = host or (self._play_hosts[0] if self._play_hosts else None)
            variables = manager.get_vars(play=self._play, host=host)
            if name not in variables:
                return None
            # The play's loader (its base directory for relative lookups); ansible-core 2.16's
            # Templar takes it positionally and has no default.
            templar = Templar(getattr(manager, '_loader', None), variables=variables)
            value = templar.template(variables[name])
        except Exception as exc:  # a broken variable must not hide the timeline
            warning = '%s cannot read %s: %s' % (PREFIX, name, one_line(exc))
            if warning not in self._warned:  # once, not once per task
                self._warned.add(warning)
                self._display.warning(warning)
            return None
        return str(value) if value else None

    def _write(self, path, report):
        """Replace the JSON report and its picture (the HTML page next to it) atomically,
        so a reader never sees half of either. True when both were written."""
        path = os.path.abspath(os.path.expanduser(path))
        page = html_path_for(path)
        try:
            _replace(path, to_json(report))
            _replace(page, render_html(report))
        except OSError as exc:
            self._display.warning('%s cannot write the report to %s: %s: check that the directory is writable'
                                  % (PREFIX, path, exc.strerror or one_line(exc)))
            return False
        self._display.display('%s report written to %s' % (PREFIX, path))
        self._display.display('%s picture: %s' % (PREFIX, page))
        return True


def _replace(path, text):
    """Write ``text`` to a new file beside ``path``, then rename it over ``path``."""
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix='.timeline-', suffix=os.path.splitext(path)[1], dir=directory)
    try:
        with os.fdopen(handle, 'w') as stream:
            stream.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
