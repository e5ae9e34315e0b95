"""The deploy's picture (report_html, htmlchart): pure rendering, no browser (the browser test is
tests/integration/test_operator_output.py)."""

import re

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import htmlchart
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.report import build_report, entry_from_result
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.report_html import html_path_for, render_html

T0 = 1_780_000_000.0


def phase(name, host, start, duration, budget_left=None, status='ok', **detail):
    return {'phase': name, 'host': host, 'started_at': T0 + start, 'duration_ms': duration * 1000,
            'budget_left_ms': budget_left, 'status': status, 'detail': detail}


def deploy(status='ok'):
    outage = entry_from_result({
        'changed': True, 'deploy_id': 'fdt-1', 'outcome': 'done' if status == 'ok' else 'aborted in resume',
        'phases': [phase('drain', 'pgbouncer1 (10.0.0.21:6432)', 0.0, 0.010, 9990),
                   phase('cold_patch', 'primary (10.0.0.5:5432)', 0.012, 0.003, 9985, patch='patch-2300-01-0.sql'),
                   phase('cold_transaction', 'primary (10.0.0.5:5432)', 0.011, 0.006, 9984),
                   phase('standby_replay', 'standby1', 0.018, 0.004, 9980),
                   phase('resume', 'pgbouncer1 (10.0.0.21:6432)', 0.023, 0.002, 9978, status=status,
                         maxwait_ms=21.5)],
        'outage': {'started_at': T0, 'ended_at': T0 + 0.025, 'outage_ms': 25.3, 'max_client_wait_ms': 21.5,
                   'budget_ms': 10000},
        'revisions': [{'host': 'primary (10.0.0.5:5432)', 'role': 'primary', 'revision': '2300-01-0', 'error': None},
                      {'host': 'standby1 (10.0.0.6:5432)', 'role': 'standby', 'revision': '2300-01-0',
                       'error': None}],
    }, task='Outage', host='localhost', action='fastdowntime.postgresql.outage')
    restart = entry_from_result({'changed': True, 'ansible_facts': {'fastdowntime_phases': [
        phase('app_restart', 'app1', 4.0, 6.0, 594000)]}}, task='Restart', host='app1')
    return build_report(outage + restart)


def text_of(page):
    return re.sub(r'<[^>]+>', ' ', page)


def test_the_page_holds_the_phases_the_numbers_and_the_schema_now():
    page = render_html(deploy())
    assert page.startswith('<!DOCTYPE html>') and '<script' not in page and 'http://' not in page.replace(
        'http://www.w3.org/2000/svg', '')
    text = text_of(page)
    for expected in ('fastdowntime deploy fdt-1: done', 'The whole deploy', 'The outage window', '25.3 ms',
                     '21.5 ms', '10.00 s', 'cold_patch patch-2300-01-0.sql', 'standby_replay', 'app_restart',
                     'schema now: 2300-01-0 on primary (10.0.0.5:5432), standby1 (10.0.0.6:5432)',
                     'the outage used 0.3% of it'):
        assert expected in text, expected
    # The longest client wait pgbouncer saw, hatched, ending at its RESUME.
    assert 'longest client wait on pgbouncer1 (10.0.0.21:6432): 21.5 ms (pgbouncer)' in page
    assert page.count('fill="url(#hatch)"') >= 2  # the wait bar and its legend
    # The budget's end is a line on the whole deploy's axis (the restarts run past it).
    assert 'budget ends (10.00 s)' in page


def test_a_failed_phase_is_red_and_a_run_without_a_window_has_no_outage_chart():
    assert htmlchart.esc('<b>') == '&lt;b&gt;'
    failed = render_html(deploy(status='failed'))
    assert '#b53a3a' in failed and 'aborted in resume' in failed
    nothing = render_html(build_report(entry_from_result({'changed': False, 'outcome': 'nothing to do',
                                                          'phases': [phase('preflight', 'primary', 0, 0.2)]})))
    assert 'The whole deploy' in nothing and 'The outage window' not in nothing
    assert 'nothing to do' in nothing


def test_html_path_is_next_to_the_json():
    assert html_path_for('/r/fastdowntime-report.json') == '/r/fastdowntime-report.html'
    assert html_path_for('/r/report') == '/r/report.html'


def test_timeline_chart_places_bars_on_one_axis_and_clips():
    svg = htmlchart.timeline_chart('t', ['a', 'b'], [
        {'lane': 'a', 'start': 0, 'end': 50, 'label': 'x'},
        {'lane': 'b', 'start': -500, 'end': 100},      # clipped to the axis
        {'lane': 'nowhere', 'start': 0, 'end': 1}], 0, 100, bands=[(0, 50, 'outage', '#e0802c')],
        lines=[(100, 'budget', '#b53a3a'), (1000, 'off the axis', '#b53a3a')])
    widths = [float(w) for w in re.findall(r'<rect x="[\d.]+" y="\d+" width="([\d.]+)" height="18"', svg)]
    plot = 960 - 230 - 20
    assert widths == [plot / 2, plot]
    assert 'budget' in svg and 'off the axis' not in svg and 'nowhere' not in svg
    assert svg.count('<svg') == 1 and svg.endswith('</svg>')
