"""What the operator reads (issue 17): real ansible-playbook runs on the lab, with the
checkout's ansible.cfg (the timeline as the quiet stdout callback), their output asserted.

Each deploy writes its own patch directory (deploy.write_patches), so the tests run in
any order and again.
"""

import contextlib
import json
import os
import re
import shutil
import signal
import time

import psycopg2
import pytest
import yaml

import browser
import labctl
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.deploylog import ensure_deploy_log
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.report import check_report_path, format_ms
from conftest import kill_tree
from deploy import (assert_all_resumed, assert_disarmed, assert_nothing_lost, pg_one, run_playbook, table_exists,
                    unique_major, write_patches)
import scenarios

pytestmark = pytest.mark.usefixtures('scratch')

# What a default run must never show: Ansible's per-task chatter, raw results, or internals.
NOISE = ('TASK [', 'PLAY RECAP', '"phases"', '(no phases reported)', '[timeline] start', 'changed: [',
         'Traceback', '[ERROR]', 'fatal:', 'object of type', 'AnsibleLazyTemplateList', '\\"')


def assert_quiet(out):
    for noise in NOISE:
        assert noise not in out, (noise, out)


def lab_inventory(tmp_path, edit):
    """A copy of the lab's inventory (with its group_vars) after ``edit(hosts_dict)``."""
    source = os.path.join(os.path.dirname(__file__), '..', '..', 'inventories', 'lab')
    target = tmp_path / 'inventory'
    shutil.copytree(source, str(target))
    hosts = yaml.safe_load((target / 'hosts.yml').read_text())
    edit(hosts['all']['children'])
    (target / 'hosts.yml').write_text(yaml.safe_dump(hosts))
    return str(target / 'hosts.yml')


def assert_the_picture_shows_the_report(report_path, report, tmp_path):
    """The deploy's HTML page, next to its JSON, as headless Chromium renders it: a screenshot
    that is not blank (the phase colours on screen) and the report's phases and numbers in the page."""
    page = report_path[:-len('.json')] + '.html'
    png = browser.screenshot(page, tmp_path / 'deploy.png', width=1000, height=1250)
    assert browser.distinct_colors(png) > 50, png
    for kind in ('#e0802c', '#2f6db5', '#7a4fb5', '#1f9e9e'):  # drain, cold patches, replay, resume
        rgb = tuple(int(kind[i:i + 2], 16) for i in (1, 3, 5))
        assert browser.colored_pixels(png, rgb) > 100, (kind, png)
    dom = browser.dump_dom(page)
    assert '<script' not in dom
    for row in report['phases']:
        assert row['phase'] + (' %s' % row['patch'] if row['patch'] else '') in dom, row
    for number in (report['outage']['outage_ms'], report['outage']['max_client_wait_ms'], report['budget_ms']):
        assert format_ms(number) in dom, number
    assert 'schema now: %s on primary' % report['revisions'][0]['revision'] in dom


@contextlib.contextmanager
def fresh_fastdowntime_schema(lab):
    """The lab's schema fastdowntime (revision table, deploy log) moved aside, and back afterwards."""
    conn = psycopg2.connect(lab.primary_dsn())
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regnamespace('fastdowntime') IS NOT NULL")
            kept = cur.fetchone()[0]
            cur.execute('DROP SCHEMA IF EXISTS fdt_kept_fastdowntime CASCADE')
            if kept:
                cur.execute('ALTER SCHEMA fastdowntime RENAME TO fdt_kept_fastdowntime')
        yield
    finally:
        with conn.cursor() as cur:
            cur.execute('DROP SCHEMA IF EXISTS fastdowntime CASCADE')
            if kept:
                cur.execute('ALTER SCHEMA fdt_kept_fastdowntime RENAME TO fastdowntime')
        conn.close()


def app_can_look_into_the_schema(lab):
    """What the demo app's /health asks, as the app's own role on the primary."""
    conn = psycopg2.connect(lab.dsn(lab.pg('primary', user='fdt_app')))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT has_schema_privilege('fastdowntime', 'USAGE'), "
                        "to_regclass('fastdowntime.schema_revision') IS NULL")
            return cur.fetchone() == (True, True)
    finally:
        conn.close()


def test_a_deploy_reads_on_one_screen_and_a_rerun_restarts_nothing(healthy_lab, tmp_path):
    lab = healthy_lab
    major = unique_major()
    patch_dir = write_patches(tmp_path, major, [
        'CREATE INDEX CONCURRENTLY fdt_ix%d ON fdt_item (id);' % major,
        'CREATE TABLE fdt_o%d (id int PRIMARY KEY);' % major,
        'ALTER TABLE fdt_o%d ADD COLUMN note text;' % major,
    ])
    # As on a fresh lab: no schema fastdowntime yet, so the deploy log creates it (this test keeps
    # its revisions in its own table), and the demo app, which looks for
    # fastdowntime.schema_revision, must still pass its health check after the restarts.
    with fresh_fastdowntime_schema(lab):
        proc, report_path = run_playbook(lab, tmp_path, patch_dir, tags='all')
        assert app_can_look_into_the_schema(lab)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    lines = proc.stdout.splitlines()
    assert len(lines) <= 50, out
    assert_quiet(out)
    assert '  pre-flight PASSED: 0 failed, 0 warnings' in out
    # Every per-patch row names its file.
    assert '[timeline] end hot_patch patch-%d-01-0.sql on primary' % major in out
    for minor in ('02', '03'):
        assert sum(line.startswith('cold_patch patch-%d-%s-0.sql ' % (major, minor)) for line in lines) == 1, out
    assert 'fastdowntime timeline: done' in out
    assert lines[-1] == 'hosts: 7 ok (5 changed)', out
    assert '[timeline] picture: %s' % report_path.replace('.json', '.html') in lines, out
    # What the schema is now, as each database said after the window.
    revision = '%d-03-0' % major
    assert 'schema now: %s on primary (%s:5432), standby1 (%s:5432), standby2 (%s:5432)' % (
        revision, lab.addr('primary'), lab.addr('standby1'), lab.addr('standby2')) in lines, out
    report = json.load(open(report_path))
    assert [(r['role'], r['revision'], r['error']) for r in report['revisions']] == \
        [('primary', revision, None), ('standby', revision, None), ('standby', revision, None)]
    assert [r['status'] for r in report['phases'] if r['phase'] == 'app_restart'] == ['ok', 'ok']
    assert_the_picture_shows_the_report(report_path, report, tmp_path)
    # Rows in the order they ended: the budget left only goes down.
    budget = [r['budget_left_ms'] for r in report['phases']
              if r['budget_left_ms'] is not None and r['phase'] != 'app_restart']
    assert budget == sorted(budget, reverse=True)

    again, report_path = run_playbook(lab, tmp_path, patch_dir, tags='all')
    out = again.stdout + again.stderr
    assert again.returncode == 0, out
    assert_quiet(out)
    assert 'fastdowntime timeline: nothing to do' in out
    assert ('[timeline] app_restart on app1, app2: skipped: no schema change in this run and no code rollout '
            '(a code rollout, or a deploy stopped before its restarts: --tags restart)') in out
    # A run with nothing pending changes nothing, on any host.
    assert again.stdout.splitlines()[-1] == 'hosts: 7 ok', out
    report = json.load(open(report_path))
    assert report['outcome'] == 'nothing to do'
    assert [r['status'] for r in report['phases'] if r['phase'] == 'app_restart'] == ['skipped']


@contextlib.contextmanager
def deploy_log_refusing_rows(lab):
    """fastdowntime.deploy_log with a trigger refusing every new row (an audit's read-only table, a
    full tablespace: any cause the pre-flight cannot see), as it was afterwards."""
    conn = psycopg2.connect(lab.primary_dsn())
    conn.autocommit = True
    ensure_deploy_log(conn)
    with conn.cursor() as cur:
        cur.execute("CREATE OR REPLACE FUNCTION fastdowntime.fdt_refuse_row() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$BEGIN RAISE EXCEPTION 'the audit keeps this table read-only'; END$$")
        cur.execute('CREATE TRIGGER fdt_refuse_row BEFORE INSERT ON fastdowntime.deploy_log '
                    'FOR EACH ROW EXECUTE FUNCTION fastdowntime.fdt_refuse_row()')
    try:
        yield
    finally:
        with conn.cursor() as cur:
            cur.execute('DROP TRIGGER IF EXISTS fdt_refuse_row ON fastdowntime.deploy_log')
            cur.execute('DROP FUNCTION IF EXISTS fastdowntime.fdt_refuse_row()')
        conn.close()


def test_what_failed_after_the_commit_is_said_as_such_and_an_unwritten_deploy_log_is_one_line(
        healthy_lab, tmp_path):
    """tryit9 6a/6c: app2's restart fails after a committed, replayed window, and the deploy log
    refuses the run's row. The timeline's heading says the schema is committed and replayed and the
    restart failed on app2, with what to do (not a bare 'aborted in app_restart'); the unwritten row
    is one WARNING line naming the primary, the cause and the fix, and the report's deploy_log field."""
    lab = healthy_lab
    major = unique_major()
    patch_dir = write_patches(tmp_path, major, ['CREATE TABLE fdt_c%d (id int);' % major])
    host_vars = tmp_path / 'app2-fails.yml'
    host_vars.write_text('all:\n  hosts:\n    app2:\n      fastdowntime_app_restart_command: /bin/false\n')
    with deploy_log_refusing_rows(lab):
        proc, report_path = run_playbook(lab, tmp_path, patch_dir, tags='all', inventories=[host_vars])
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and 'Traceback' not in out, out
    heading = [line for line in proc.stdout.splitlines() if line.startswith('fastdowntime timeline: ')]
    assert heading == ['fastdowntime timeline: schema committed and replayed (standby1, standby2), then app_restart '
                       'failed on app2 -> fix the app on app2 (see its log), then restart the apps again: --tags '
                       'restart (the schema needs no deploy again)  (deploy %s)' % heading[0].rsplit(' ', 1)[-1][:-1]
                       ], out
    warned = [line for line in out.splitlines() if 'deploy log row not written' in line]
    assert len(warned) == 1 and warned[0].startswith(
        'WARNING: deploy log row not written on primary (%s:5432): cannot write the deploy log '
        'fastdowntime.deploy_log: the audit keeps this table read-only' % lab.addr('primary')), out
    assert warned[0].endswith('-> this deploy is missing from the log (cycle_time, the audit); its report.json holds '
                              'the run: fix that on the primary before the next deploy'), out
    report = json.load(open(report_path))
    assert report['schema_committed'] is True and report['outcome'] == 'aborted in app_restart'
    assert report['deploy_log'].startswith('not written: cannot write the deploy log fastdowntime.deploy_log: the '
                                           'audit keeps this table read-only')
    assert warned[0][len('WARNING: '):] in report['warnings']
    page = open(report_path[:-len('.json')] + '.html').read()
    assert 'schema committed and replayed' in page and 'deploy log row not written' in page


def test_a_deploy_without_the_restarts_still_writes_its_report(healthy_lab, tmp_path):
    lab = healthy_lab
    major = unique_major()
    patch_dir = write_patches(tmp_path, major, ['CREATE TABLE fdt_s%d (id int);' % major])
    proc, report_path = run_playbook(lab, tmp_path, patch_dir, tags='all', args=('--skip-tags', 'restart'))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '[timeline] report written to %s' % report_path in proc.stdout
    report = json.load(open(report_path))
    assert report['outcome'] == 'done'
    assert 'app_restart' not in [r['phase'] for r in report['phases']]


def test_check_mode_shows_the_plan(healthy_lab, tmp_path):
    """The plan on screen and in its own report beside the deploy's: check mode changes
    nothing, the last deploy's report included (tryit8 #4)."""
    lab = healthy_lab
    major = unique_major()
    patch_dir = write_patches(tmp_path, major, [
        'CREATE INDEX CONCURRENTLY fdt_ix%d ON fdt_item (id);' % major,
        'CREATE TABLE fdt_c%d (id int);' % major,
    ])
    last = {'outcome': 'done', 'deploy_id': 'the last deploy'}
    (tmp_path / 'report.json').write_text(json.dumps(last))
    (tmp_path / 'report.html').write_text('<p>the last deploy</p>')
    proc, deploys_report = run_playbook(lab, tmp_path, patch_dir, tags='all', args=('--check',))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert json.load(open(deploys_report)) == last and (tmp_path / 'report.html').read_text() == '<p>the last deploy</p>'
    report_path = check_report_path(deploys_report)
    assert report_path == str(tmp_path / 'report.check.json')
    said = [line for line in proc.stdout.splitlines()
            if line.startswith(('[timeline] report', '[timeline] picture', '[timeline] check mode'))]
    assert said == ['[timeline] report written to %s' % report_path,
                    '[timeline] picture: %s' % str(tmp_path / 'report.check.html'),
                    "[timeline] check mode: the last deploy's report %s is left as it was" % deploys_report], out
    assert_quiet(out)
    assert 'fastdowntime timeline: planned' in out
    assert '  hot patches: patch-%d-01-0.sql' % major in out
    assert '  cold patches: patch-%d-02-0.sql' % major in out
    assert '  patch-%d-02-0.sql line 1 (cold): ' % major in out
    assert ('  window: drain pgbouncer1 (%s:6432), pgbouncer2 (%s:6432) -> cold patches in one transaction -> '
            'wait for standby1' % (lab.addr('pgbouncer1'), lab.addr('pgbouncer2'))) in out
    assert '  budget: estimated outage ' in out
    assert proc.stdout.splitlines()[-1] == 'hosts: 7 ok [check mode: nothing was changed]', out
    # Nothing restarted: no duration, no "ok", what would have happened.
    for app in ('app1', 'app2'):
        assert '[timeline] app_restart on %s: planned: check mode: would restart' % app in out, out
    report = json.load(open(report_path))
    assert [(r['status'], r['duration_ms'], r['budget_left_ms']) for r in report['phases']
            if r['phase'] == 'app_restart'] == [('planned', None, None)] * 2
    assert report['check_mode'] is True
    assert report['plan']['phases'] == [{'phase': 'hot', 'patches': ['patch-%d-01-0.sql' % major]},
                                        {'phase': 'cold', 'patches': ['patch-%d-02-0.sql' % major]}]
    assert report['plan']['estimate_ms'] > 0


@pytest.mark.parametrize('edit, problem', [
    (lambda groups: groups.pop('fastdowntime_primary'),
     'FAILED inventory: the inventory has no group fastdowntime_primary: add it with the one primary database host'),
    (lambda groups: groups['fastdowntime_primary'].update(hosts=None),
     'FAILED inventory: the group fastdowntime_primary must hold exactly one host, it holds 0: keep the one '
     'primary there'),
], ids=['no-primary-group', 'empty-primary-group'])
def test_an_inventory_mistake_is_one_line_before_any_play(healthy_lab, tmp_path, edit, problem):
    inventory = lab_inventory(tmp_path, edit)
    proc, report_path = run_playbook(healthy_lab, tmp_path, str(tmp_path), tags='all', inventory=inventory)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert_quiet(out)
    assert 'Could not match supplied host pattern' not in out
    assert proc.stdout.splitlines() == [
        '== Inventory - the groups and variables of the contract',
        problem + ' (the contract: README "The public contract", inventories/example/)',
        proc.stdout.splitlines()[-1]]
    assert 'details: rerun with -v' in proc.stdout.splitlines()[-1]
    assert not os.path.exists(report_path)


def refused_by_the_inventory_check(lab, tmp_path, extra, line):
    """A deploy with ``extra`` variables stops in the inventory check, before any play reaches a
    host, with ``line`` (the one failure line); returns the whole output."""
    proc, report_path = run_playbook(lab, tmp_path, str(tmp_path), tags='all', extra=extra)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert_quiet(out)
    assert proc.stdout.splitlines()[:2] == ['== Inventory - the groups and variables of the contract', line], out
    assert not os.path.exists(report_path)
    return out


def test_a_word_for_the_budget_is_one_line_naming_the_variable(healthy_lab, tmp_path):
    out = refused_by_the_inventory_check(
        healthy_lab, tmp_path, {'fastdowntime_budget_seconds': 'ten'},
        "FAILED inventory: fastdowntime_budget_seconds is 'ten', not a number of seconds: give it as a number, "
        'e.g. 60 (the contract: README "The public contract", inventories/example/)')
    assert 'cannot be converted' not in out and '_AnsibleTaggedStr' not in out


def test_a_negative_budget_and_a_misspelled_console_key_are_one_line_from_the_inventory_check(healthy_lab, tmp_path):
    """try 6, defect 11b/c: -5 reached the module ("budget_seconds must be positive", its option's name,
    no host); unix_socket_directory came wrapped in Ansible's "Finalization of task args ... filter
    plugin failed"."""
    contract = ' (the contract: README "The public contract", inventories/example/)'
    refused_by_the_inventory_check(
        healthy_lab, tmp_path, {'fastdowntime_budget_seconds': -5},
        'FAILED inventory: fastdowntime_budget_seconds is -5: it must be above zero seconds: give it as a positive '
        'number, e.g. 10' + contract)
    key = ('fastdowntime_pgbouncer_consoles item 1 has unix_socket_directory, which is not one of its keys (did you '
           "mean unix_socket_dir?): each item has unix_socket_dir (that process's, as in its pgbouncer.ini) and "
           'optionally host and port')
    out = refused_by_the_inventory_check(
        healthy_lab, tmp_path, {'fastdowntime_pgbouncer_consoles': [{'unix_socket_directory': '/tmp'}]},
        'FAILED inventory: pgbouncer1: %s; pgbouncer2: %s%s' % (key, key, contract))
    assert 'Finalization of task args' not in out and 'filter plugin' not in out


def test_a_misspelled_variable_is_refused_in_one_line_before_any_pause(healthy_lab, tmp_path):
    """Defect 18: fastdowntime_pg_pasword would leave the password unset (a login failure far from its
    cause); the run stops in the inventory check, naming the variable, where it is set and the right name."""
    out = refused_by_the_inventory_check(
        healthy_lab, tmp_path, {'fastdowntime_pg_pasword': 'x'},
        'FAILED inventory: fastdowntime_pg_pasword (set for every host, from -e) is not a variable of '
        'fastdowntime.postgresql: did you mean fastdowntime_pg_password? (the contract: README "The public '
        'contract", inventories/example/; fastdowntime_unknown_variables: warn only warns about unknown names)')
    assert 'PAUSE' not in out
    # Downgraded to a warning: shown once (every play checks the inventory), the run goes on; a host
    # variable's line names the file and line it is set in.
    host_vars = tmp_path / 'host-vars.yml'
    host_vars.write_text('all:\n  hosts:\n    primary:\n      fastdowntime_budget_second: 5\n')
    proc, report_path = run_playbook(healthy_lab, tmp_path, str(tmp_path), tags='all', args=['--check'], extra={
        'fastdowntime_pg_pasword': 'x', 'fastdowntime_unknown_variables': 'warn'}, inventories=[host_vars])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert_quiet(out)
    assert out.count('[WARNING]: fastdowntime_budget_second (set for primary, from %s line 4) is not a variable of '
                     'fastdowntime.postgresql: did you mean fastdowntime_budget_seconds?; fastdowntime_pg_pasword '
                     '(set for every host, from -e) is not a variable of fastdowntime.postgresql: did you mean '
                     'fastdowntime_pg_password? (fastdowntime_unknown_variables is warn: the run goes on)'
                     % host_vars) == 1, out


def deploy_limited(lab, tmp_path, limit, returncode):
    """A deploy of one new table with ``--limit limit``, its return code and quiet output asserted:
    (process, report path, the table's name)."""
    major = unique_major()
    table = 'fdt_limit%d' % major
    patch_dir = write_patches(tmp_path, major, ['CREATE TABLE %s (id int);' % table])
    proc, report_path = run_playbook(lab, tmp_path, patch_dir, tags='all', args=['--limit', limit])
    assert proc.returncode == returncode, proc.stdout + proc.stderr
    assert_quiet(proc.stdout + proc.stderr)
    return proc, report_path, table


def test_a_limit_leaving_out_the_primary_or_a_pgbouncer_is_refused_before_anything(healthy_lab, tmp_path):
    """A new user's try 6: --limit pgbouncer1 skipped the pre-flight and the hot patches (plays on the
    primary), armed no dead-man switch on pgbouncer2, and still drained both pgbouncers and applied the
    cold patches (the outage task runs once for the whole topology): refused in one line, nothing done."""
    proc, dummy, table = deploy_limited(healthy_lab, tmp_path, 'pgbouncer1', returncode=2)
    out = proc.stdout + proc.stderr
    assert ('FAILED --limit pgbouncer1 leaves out primary, pgbouncer2: the outage would still drain every pgbouncer '
            'and patch the primary, but without the pre-flight (it runs on the primary) and without a dead-man switch '
            'on a pgbouncer host left out; nothing paused, nothing applied: deploy without --limit (--tags restart '
            '--limit HOSTS restarts app servers alone)') in proc.stdout.splitlines(), out
    assert not table_exists(healthy_lab, 'primary', table)
    assert_all_resumed(healthy_lab)


def test_an_operators_free_strategy_keeps_the_switch_armed_before_the_window_and_the_restarts(healthy_lab, tmp_path):
    """A new user's try 10: `strategy = free` in the operator's ansible.cfg (ANSIBLE_STRATEGY=free) ran
    every run_once task once per host: the primary reached the window before the pgbouncer hosts had
    armed their dead-man switch (the window ran unguarded), each pgbouncer host ran the outage again
    ("nothing to do"), whose result, applied to every host, hid the committed change from the restart
    play: the app servers were never restarted for the new schema. The playbook's plays pin the linear
    strategy the roles are written for."""
    lab = healthy_lab
    major = unique_major()
    # A second inside the window: long enough for each switch's poll to see the PAUSE.
    patch_dir = write_patches(tmp_path, major, ['CREATE TABLE fdt_free%d (id int);\nSELECT pg_sleep(1);' % major])
    logs = {host: os.path.join(lab.lab_dir, 'hosts', host, 'log', 'watchdog.log') for host in ('pgbouncer1', 'pgbouncer2')}
    seen = {host: os.path.getsize(path) if os.path.exists(path) else 0 for host, path in logs.items()}
    proc, report_path = run_playbook(lab, tmp_path, patch_dir, tags='all', env={'ANSIBLE_STRATEGY': 'free'})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert_quiet(out)
    assert 'run_once with the free strategy' not in out, out
    report = json.load(open(report_path))
    assert report['outcome'] == 'done'
    # The window ran once: one drain per pgbouncer.
    assert sorted(r['host'] for r in report['phases'] if r['phase'] == 'drain') == [
        'pgbouncer%d (%s:6432)' % (n, lab.addr('pgbouncer%d' % n)) for n in (1, 2)], report['phases']
    assert [r['status'] for r in report['phases'] if r['phase'] == 'app_restart'] == ['ok', 'ok'], report['phases']
    for host, path in logs.items():
        with open(path) as log:
            log.seek(seen[host])
            # The switch saw the window's PAUSE: it was armed before the drain.
            assert ' paused: resuming them myself in ' in log.read(), host
    assert table_exists(lab, 'primary', 'fdt_free%d' % major)
    assert_all_resumed(lab)
    assert_disarmed(lab)


def test_an_app_server_a_limit_leaves_out_is_named_as_not_restarted(healthy_lab, tmp_path):
    """A new user's try 10: `--limit 'all:!app2'` (app2 in maintenance) deployed and restarted app1
    only; nothing said that app2 still ran without a restart for the new schema. A timeline row and
    line name it, with the command that restarts it."""
    proc, report_path, table = deploy_limited(healthy_lab, tmp_path, 'all:!app2', returncode=0)
    out = proc.stdout + proc.stderr
    reason = ("left out by --limit all:!app2: not restarted for this run's schema change -> restart it once it can "
              "(--tags restart --limit app2)")
    assert out.count('[timeline] app_restart on app2: skipped: %s' % reason) == 1, out
    report = json.load(open(report_path))
    assert report['outcome'] == 'done'
    assert sorted((r['host'], r['status']) for r in report['phases'] if r['phase'] == 'app_restart') == [
        ('app1', 'ok'), ('app2', 'skipped')], report['phases']
    assert table_exists(healthy_lab, 'primary', table)


@pytest.mark.parametrize('task', ['Drain, cold patches in one transaction, standbys replayed, resume',
                                  'Re-enable the read entries an earlier deploy fenced, once their standby has replayed'])
def test_a_start_past_the_outages_plan_is_one_line_and_changes_nothing(healthy_lab, tmp_path, task):
    """A new user's try 10: --start-at-task at the window's own task failed with "Error while
    evaluating conditional: 'outage_plan' is undefined" (no host, no fix). Nothing is armed, paused
    or applied, and one line says why and what to run."""
    lab = healthy_lab
    major = unique_major()
    patch_dir = write_patches(tmp_path, major, ['CREATE TABLE fdt_start%d (id int);' % major])
    proc, dummy = run_playbook(lab, tmp_path, patch_dir, tags='all', args=['--start-at-task', task])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert_quiet(out)
    assert 'is undefined' not in out, out
    assert out.count('--start-at-task began past the outage\'s plan (task "Plan the outage (read-only, nothing is '
                     'paused)"): the window cannot open without it; nothing paused, nothing applied: run the whole '
                     'playbook (no --start-at-task past the pre-flight)') == 1, out
    assert not table_exists(lab, 'primary', 'fdt_start%d' % major)
    assert_all_resumed(lab)
    assert_disarmed(lab)


def test_tags_leaving_out_the_pre_flight_are_refused_before_any_pause_unless_on_purpose(healthy_lab, tmp_path):
    """A new user's try 7: --tags outage (or --skip-tags preflight) ran the window with no pre-flight
    at all, silently. Refused in one line naming the primary, the tags and the fix, before anything
    is paused or armed; --check with the same tags still shows the plan."""
    lab = healthy_lab
    major = unique_major()
    patch_dir = write_patches(tmp_path, major, ['CREATE TABLE fdt_tags%d (id int);' % major])
    fix = ('nothing checked that this window can finish (standbys, sessions, locks, budget); refused before any PAUSE, '
           'nothing paused or applied: run the whole playbook (no --tags/--skip-tags leaving out preflight), or set '
           'fastdowntime_preflight_skipped_on_purpose: true to open the window without a pre-flight')
    not_on_purpose = {'fastdowntime_preflight_skipped_on_purpose': False}
    for tags, args, how in (('outage', [], '--tags outage left its play (tag preflight) out'),
                            ('all', ['--skip-tags', 'preflight'], '--skip-tags preflight left its play out')):
        proc, report_path = run_playbook(lab, tmp_path, patch_dir, extra=not_on_purpose, tags=tags, args=args)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 2, out
        assert_quiet(out)
        line = 'primary (%s:5432): the pre-flight did not run in this play (%s): %s' % (lab.addr('primary'), how, fix)
        assert out.count(line) == 1 and 'error: %s' % line in proc.stdout.splitlines(), out
        report = json.load(open(report_path))
        assert report['outcome'] == 'refused before the outage' and report['error'] == line, report['outcome']
        assert not [p for p in report['phases'] if p['phase'].startswith(('drain', 'resume'))], report['phases']
        assert not table_exists(lab, 'primary', 'fdt_tags%d' % major)
        assert not [name for host in ('pgbouncer1', 'pgbouncer2')
                    for name in os.listdir(os.path.join(lab.lab_dir, 'hosts', host, 'run'))
                    if name.startswith('fastdowntime-pgbouncer-watchdog')], 'a dead-man switch was armed'
    assert_all_resumed(lab)
    # Check mode only plans: never refused.
    proc, dummy = run_playbook(lab, tmp_path, patch_dir, extra=not_on_purpose, tags='outage', args=['--check'])
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert 'pre-flight did not run' not in proc.stdout


def test_hot_patches_without_the_pre_flight_are_refused_unless_on_purpose(healthy_lab, tmp_path):
    """--tags hot applied hot patches live with no pre-flight at all (tryit7 8b, by tag like --tags
    outage): refused in one line before any is applied; --check is not refused; the opt-in applies
    them; a whole run's pre-flight covers the hot patches before and after the window."""
    lab = healthy_lab
    major = unique_major()
    patch_dir = write_patches(tmp_path, major, [
        'CREATE INDEX CONCURRENTLY fdt_hx%d ON fdt_item (id);' % major,
        'CREATE TABLE fdt_h%d (id int);' % major,
        'CREATE INDEX CONCURRENTLY fdt_hy%d ON fdt_h%d (id);' % (major, major),
    ])
    not_on_purpose = {'fastdowntime_preflight_skipped_on_purpose': False}
    proc, dummy = run_playbook(lab, tmp_path, patch_dir, extra=not_on_purpose, tags='hot')
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert_quiet(out)
    line = ('primary (%s:5432): the pre-flight did not run in this play (--tags hot left its play (tag preflight) '
            'out): nothing checked these hot patches (their statements, the sessions and locks they would wait on, '
            'the standbys); refused before any was applied, nothing applied: run the whole playbook (no '
            '--tags/--skip-tags leaving out preflight), or set fastdowntime_preflight_skipped_on_purpose: true to '
            'apply them without a pre-flight' % lab.addr('primary'))
    assert out.count(line) == 1 and 'error: %s' % line in proc.stdout.splitlines(), out
    assert 'fastdowntime timeline: refused before any patch' in proc.stdout.splitlines(), out
    assert not table_exists(lab, 'primary', 'fdt_hx%d' % major)
    # check mode only plans
    proc, dummy = run_playbook(lab, tmp_path, patch_dir, extra=not_on_purpose, tags='hot', args=['--check'])
    assert proc.returncode == 0 and 'pre-flight did not run' not in proc.stdout, proc.stdout[-3000:]
    # the whole deploy: its pre-flight saw every patch, the hot ones after the window too
    proc, dummy = run_playbook(lab, tmp_path, patch_dir, extra=not_on_purpose, tags='preflight,hot,outage')
    assert proc.returncode == 0, proc.stdout[-3000:]
    for name in ('fdt_hx%d' % major, 'fdt_h%d' % major, 'fdt_hy%d' % major):
        assert table_exists(lab, 'primary', name), name
    # on purpose: applied without a pre-flight
    (tmp_path / 'more').mkdir()
    more = write_patches(tmp_path / 'more', major, [
        'CREATE INDEX CONCURRENTLY fdt_hx%d ON fdt_item (id);' % major,
        'CREATE TABLE fdt_h%d (id int);' % major,
        'CREATE INDEX CONCURRENTLY fdt_hy%d ON fdt_h%d (id);' % (major, major),
        'CREATE INDEX CONCURRENTLY fdt_hz%d ON fdt_h%d (id);' % (major, major),
    ])
    proc, dummy = run_playbook(lab, tmp_path, more, extra={'fastdowntime_preflight_skipped_on_purpose': True},
                               tags='hot')
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert table_exists(lab, 'primary', 'fdt_hz%d' % major)


def test_each_unreachable_database_is_one_clear_line(healthy_lab, tmp_path):
    def edit(groups):
        groups['fastdowntime_primary']['hosts']['primary']['fastdowntime_pg_password'] = 'not-the-password'
        groups['fastdowntime_standbys']['hosts']['standby1']['fastdowntime_pg_port'] = 5999
        # An address on the lab's bridge where no host answers.
        groups['fastdowntime_standbys']['hosts']['standby2']['fastdowntime_pg_host'] = \
            healthy_lab.addr('standby2').rsplit('.', 1)[0] + '.99'

    inventory = lab_inventory(tmp_path, edit)
    proc, report_path = run_playbook(healthy_lab, tmp_path, str(tmp_path), tags='all', inventory=inventory)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert_quiet(out)
    problems = [line for line in proc.stdout.splitlines() if line.startswith('problem: ')]
    assert len(problems) == 3, out
    primary, standby1, standby2 = problems
    assert 'authentication failed (password authentication failed for user "fdt_deploy")' in primary
    assert "make primary (%s:5432) accept the inventory's user and password" % healthy_lab.addr('primary') in primary
    assert 'connection refused: the host is up but nothing listens on that port' in standby1
    assert 'start the server on standby1' in standby1
    assert 'host unreachable (no route to it)' in standby2 or 'no answer within the connect timeout' in standby2
    assert 'bring standby2' in standby2
    for line in (standby1, standby2):
        assert 'password' not in line and 'credentials' not in line, line
    # Each problem once: not again as a task failure, a summary or an error line.
    for host in ('primary (', 'standby1 (', 'standby2 ('):
        assert sum(host in line and 'cannot connect' in line for line in out.splitlines()) == 1, (host, out)
    assert 'fastdowntime timeline: refused by pre-flight' in out
    assert json.load(open(report_path))['problems'] == [p[len('problem: '):] for p in problems]


def test_a_standby_left_out_of_the_inventory_is_named_in_one_line(healthy_lab, tmp_path):
    """tryit8 #3: standby2 streams but is not in the inventory: refused (check mode too), and the
    one problem line names its row of the primary's pg_stat_replication, with the fix."""
    lab = healthy_lab

    def edit(groups):
        del groups['fastdowntime_standbys']['hosts']['standby2']

    inventory = lab_inventory(tmp_path, edit)
    proc, dummy = run_playbook(lab, tmp_path, str(tmp_path), tags='all', inventory=inventory, args=['--check'])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert_quiet(out)
    line = [line for line in proc.stdout.splitlines() if line.startswith('problem: standbys: ')]
    assert len(line) == 1 and out.count("application_name 'standby2'") == 1, out
    assert re.match(r"problem: standbys: 1 streaming standby\(s\) of this primary are not in the inventory \(the rows "
                    r"of pg_stat_replication no inventory standby matches: application_name 'standby2' from %s "
                    r"\((slot \S+, )?streaming, async\) on primary \(%s:5432\)\) -> add it to fastdowntime_standbys "
                    r"\(fastdowntime_pg_host: its own address"
                    % (re.escape(lab.addr('standby2')), re.escape(lab.addr('primary'))), line[0]), line[0]


def test_a_preflight_alone_says_passed_and_keeps_the_last_deploys_report(healthy_lab, tmp_path):
    # playbooks/preflight.yml with a cold patch pending: not "nothing to do", and the report
    # file (the last deploy's) is left as it was.
    lab = healthy_lab
    major = unique_major()
    patch_dir = write_patches(tmp_path, major, ['CREATE TABLE fdt_pf%d (id int);' % major])
    report_path = tmp_path / 'report.json'
    report_path.write_text('{"outcome": "done", "deploy_id": "the-last-deploy"}')
    proc, path = run_playbook(lab, tmp_path, patch_dir, tags='all', playbook='playbooks/preflight.yml')
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert path == str(report_path)
    assert_quiet(out)
    assert 'fastdowntime timeline: passed' in out, out
    assert 'nothing to do' not in out, out
    assert ('[timeline] report not written: a pre-flight alone is no deploy (%s is left as it was)' % report_path
            in proc.stdout.splitlines()), out
    assert json.loads(report_path.read_text())['deploy_id'] == 'the-last-deploy'


def test_no_password_at_any_verbosity(healthy_lab, tmp_path):
    """A deploy at -vvv (the dead-man switch armed and disarmed on every pgbouncer process), then
    a rerun in check mode with nothing pending (the disarm loop skipped): no lab password anywhere
    in the output, though every loop item, register and module argument is shown at -vvv."""
    lab = healthy_lab
    major = unique_major()
    patch_dir = write_patches(tmp_path, major, [
        'CREATE INDEX CONCURRENTLY fdt_ix%d ON fdt_item (id);' % major,
        'CREATE TABLE fdt_v%d (id int);' % major,
    ])
    secrets = sorted(set(labctl.USERS.values()))
    assert {'admin-secret', 'deploy-secret', 'app-secret'} <= set(secrets)
    deploy = run_playbook(lab, tmp_path, patch_dir, tags='all', args=('-vvv',))[0]
    rerun = run_playbook(lab, tmp_path, patch_dir, tags='all', args=('-vvv', '--check'))[0]
    for proc in (deploy, rerun):
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-3000:]
        # The loops ran and were shown (the check would be empty otherwise).
        assert '(item=' in out, out[-3000:]
        assert [s for s in secrets if s in out] == [], [
            line for line in out.splitlines() if any(s in line for s in secrets)][:5]
    assert 'fastdowntime timeline: done' in deploy.stdout
    assert 'fastdowntime timeline: nothing to do' in rerun.stdout


@pytest.mark.parametrize('signum, group', [(signal.SIGINT, True), (signal.SIGTERM, False)], ids=['ctrl-c', 'kill'])
def test_ansible_playbook_ended_inside_the_window_leaves_the_window_to_end_as_planned(
        healthy_lab, tmp_path, signum, group):
    """ansible-playbook ended 0.5 s after the PAUSE, under load: Ctrl-C (SIGINT to its process group; it
    ends at once, "User interrupted execution", rc 99) or a `kill`, a CI timeout, a job cancel (SIGTERM to
    its pid). Ansible sends the signal on to the window's module too; the window goes on as planned:
    committed, every pgbouncer resumed by the deploy (not by the dead-man switch, budget + grace later),
    its deploy-log row written. The operator's last line says so, what to do and where this run's outcome
    and timeline are (it writes no report) - not a silent prompt while every pgbouncer is still paused."""
    lab = healthy_lab
    major = unique_major()
    deploy_id = 'fdt-signal-%d' % major
    patch_dir = write_patches(tmp_path, major, ['CREATE TABLE fdt_c%d (id int);\nSELECT pg_sleep(3);' % major])
    with lab.load() as load:
        proc, dummy = run_playbook(lab, tmp_path, patch_dir, tags='all', args=('--skip-tags', 'restart'),
                                   extra={'fastdowntime_deploy_id': deploy_id}, background=True)
        try:
            deadline = time.monotonic() + 120
            while not scenarios.paused_anywhere(lab):
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()[-3000:]
                time.sleep(0.05)
            time.sleep(0.5)
            if group:
                os.killpg(proc.pid, signum)
            else:
                os.kill(proc.pid, signum)
            out = proc.communicate(timeout=60)[0]
            still_paused = scenarios.paused_anywhere(lab)
        finally:
            if proc.poll() is None:
                kill_tree(proc.pid)
        # The window's own end (its 3 s statement, then commit, replay, resume) or the dead-man switch's.
        deadline = time.monotonic() + 30
        while scenarios.paused_anywhere(lab) or scenarios.paused_anywhere(lab, lab.db_name + '_ro'):
            assert time.monotonic() < deadline, 'still paused 30 s after the signal'
            time.sleep(0.1)
        # The module writes its deploy-log row after the resume, then ends.
        logged = "SELECT coalesce((SELECT outcome FROM fastdowntime.deploy_log WHERE deploy_id = %s), 'no row')"
        while pg_one(lab, 'primary', logged, (deploy_id,)) == 'no row' and time.monotonic() < deadline:
            time.sleep(0.1)
    # The window had not ended when ansible-playbook did.
    assert still_paused
    assert 'Traceback' not in out
    # What the window does when nothing stops it: committed, every entry resumed, the deploy log
    # written after the resume (a module killed or interrupted inside the window writes none).
    assert pg_one(lab, 'primary', logged, (deploy_id,)) == 'done'
    assert table_exists(lab, 'primary', 'fdt_c%d' % major)
    assert_all_resumed(lab)
    assert_nothing_lost(lab, load)
    assert_disarmed(lab, within=15)
    # Ctrl-C: rc 99 after Ansible's KeyboardInterrupt; a kill: the default action once the line is said.
    assert proc.returncode == (99 if signum == signal.SIGINT else -signal.SIGTERM), out[-3000:]
    last = out.splitlines()[-1]
    assert last.startswith('[timeline] INTERRUPTED INSIDE THE OUTAGE WINDOW (the outage task for primary, '), out
    for words in ('its module runs on', 'do not RESUME by hand', 'run the deploy again', '--tags restart',
                  # no report for this run: where its outcome and timeline are
                  "deploy log on the primary, database %s: SELECT outcome, outage_ms, phases FROM "
                  "fastdowntime.deploy_log WHERE deploy_id = '%s'" % (lab.db_name, deploy_id)):
        assert words in last, last
