"""Fixed deploy windows on the lab, through ansible-playbook: refusal naming the next window, the
override recorded in the deploy log, --check saying whether now is inside, bad syntax in one line."""

import datetime
import json

import pytest

from deploy import assert_all_resumed, pg_one, run_playbook, table_exists, unique_major, write_patches

pytestmark = pytest.mark.usefixtures('scratch')


def window_from(minutes_from_now, length='30m'):
    """A daily window opening ``minutes_from_now`` (negative: already open)."""
    start = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=minutes_from_now)
    return 'daily %s %s UTC' % (start.strftime('%H:%M'), length), start.strftime('%H:%M')


def test_outage_outside_every_window_is_refused_then_overridden_with_a_reason(healthy_lab, tmp_path):
    lab = healthy_lab
    major = unique_major()
    table = 'fdt_w%d' % major
    patch_dir = write_patches(tmp_path, major, ['CREATE TABLE %s (id int);' % table])
    window, opens = window_from(180)
    proc, dummy = run_playbook(lab, tmp_path, patch_dir, tags='preflight,outage',
                               extra={'fastdowntime_deploy_windows': [window]})
    assert proc.returncode != 0
    refusal = [line for line in proc.stdout.splitlines() if line.startswith('problem: deploy_window: ')]
    assert refusal, proc.stdout[-3000:]
    assert 'is outside every deploy window; the next opens' in refusal[0]
    # The window starts on the minute: 2h58m or 2h59m from now.
    assert '%s UTC, in 2h58m' % opens in refusal[0] or '%s UTC, in 2h59m' % opens in refusal[0], refusal[0]
    assert not table_exists(lab, 'primary', table)
    assert_all_resumed(lab)

    proc, report_path = run_playbook(lab, tmp_path, patch_dir, tags='preflight,outage', extra={
        'fastdowntime_deploy_windows': [window], 'fastdowntime_operator': 'alice',
        'fastdowntime_deploy_window_override': 'hotfix for bug 4242'})
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert 'WARN deploy_window: now (' in proc.stdout, proc.stdout[-3000:]
    assert 'overridden by alice: hotfix for bug 4242' in proc.stdout
    assert table_exists(lab, 'standby2', table)
    report = json.load(open(report_path))
    overrides = pg_one(lab, 'primary', 'SELECT overrides FROM fastdowntime.deploy_log WHERE deploy_id = %s',
                       (report['deploy_id'],))
    assert [(o['check'], o['who'], o['why']) for o in overrides] == [('deploy_window', 'alice', 'hotfix for bug 4242')]
    assert overrides[0]['next_window']['window'] == window


def test_check_mode_says_now_is_inside_a_window(healthy_lab, tmp_path):
    lab = healthy_lab
    major = unique_major()
    patch_dir = write_patches(tmp_path, major, ['CREATE TABLE fdt_w%d (id int);' % major])
    window, dummy = window_from(-5)
    proc, dummy = run_playbook(lab, tmp_path, patch_dir, tags='preflight', args=['--check'],
                               extra={'fastdowntime_deploy_windows': [window]})
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert '  deploy window: now (' in proc.stdout, proc.stdout[-3000:]
    assert 'is inside the deploy window %s, open until' % window in proc.stdout


def test_unknown_window_syntax_is_one_line_before_any_check(healthy_lab, tmp_path):
    lab = healthy_lab
    patch_dir = write_patches(tmp_path, unique_major(), ['SELECT 1;'])
    proc, dummy = run_playbook(lab, tmp_path, patch_dir, tags='preflight,outage',
                               extra={'fastdowntime_deploy_windows': ['every day at 2']})
    assert proc.returncode != 0
    assert ("fastdowntime_deploy_windows[0] 'every day at 2': unknown days 'every': use daily, weekdays, weekends, "
            "mon,wed,fri or mon-fri") in proc.stdout
    assert 'Traceback' not in proc.stdout + proc.stderr
    assert_all_resumed(lab)
