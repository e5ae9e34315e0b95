"""Fixed deploy windows: parsing, inside/next, the pre-flight's verdict (pure, no database)."""

import datetime

import pytest

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import deploywindows as dw

UTC = datetime.timezone.utc


def at(text):
    return datetime.datetime.strptime(text, '%Y-%m-%d %H:%M').replace(tzinfo=UTC)


LAUNCHPAD = dw.parse_windows(['daily 02:00,10:00,18:00 30m UTC'])


def test_parse_string_and_dict_forms():
    [a] = dw.parse_windows('weekdays 9:05,14:00 1h30m Europe/London')
    assert a.text == 'weekdays 09:05,14:00 1h30m Europe/London' and a.minutes == 90 and a.days == (0, 1, 2, 3, 4)
    [b] = dw.parse_windows([{'days': ['mon', 'wed-fri'], 'times': ['02:00'], 'duration': 45}])
    assert b.text == 'mon,wed,thu,fri 02:00 45m UTC'
    [c] = dw.parse_windows(['sat-mon 23:30 2h'])
    assert c.days == (0, 5, 6)


@pytest.mark.parametrize('spec, message', [
    (['dialy 02:00 30m'], "fastdowntime_deploy_windows[0] 'dialy 02:00 30m': unknown days 'dialy': use daily, "
                          "weekdays, weekends, mon,wed,fri or mon-fri"),
    (['daily 2am 30m'], "'2am' is not a start time HH:MM"),
    (['daily 02:00 30'], "'30' is not a duration: use 30m, 2h or 1h30m"),
    (['daily 02:00 25h'], 'a window lasts more than 0 and at most 24h'),
    (['daily 02:00 30m Mars/Olympus'], "unknown time zone 'Mars/Olympus'"),
    (['daily 02:00'], 'expected "DAYS HH:MM[,HH:MM...] DURATION [TIMEZONE]"'),
    ([{'times': '02:00', 'duration': '30m', 'zone': 'UTC'}], 'unknown key(s) zone'),
    ([42], 'a window is a string'),
    (7, 'must be a list of windows'),
])
def test_bad_syntax_is_one_line(spec, message):
    with pytest.raises(dw.WindowError) as info:
        dw.parse_windows(spec)
    assert message in str(info.value) and '\n' not in str(info.value)


def test_inside_and_next():
    window, start, end = dw.current_window(LAUNCHPAD, at('2026-11-30 10:10'))
    assert (start, end) == (at('2026-11-30 10:00'), at('2026-11-30 10:30'))
    assert dw.current_window(LAUNCHPAD, at('2026-11-30 10:30')) is None
    dummy, start, dummy = dw.next_window(LAUNCHPAD, at('2026-11-30 18:31'))
    assert start == at('2026-12-01 02:00')


def test_window_across_midnight_and_weekdays():
    windows = dw.parse_windows(['fri 23:30 1h'])
    # Friday 2026-12-04 23:30 -> Saturday 00:30
    assert dw.current_window(windows, at('2026-12-05 00:15')) is not None
    assert dw.next_window(windows, at('2026-12-05 00:45'))[1] == at('2026-12-11 23:30')


def test_time_zone_follows_daylight_saving():
    windows = dw.parse_windows(['daily 02:00 30m Europe/London'])
    assert dw.next_window(windows, at('2026-07-01 00:00'))[1] == at('2026-07-01 01:00')  # BST, UTC+1
    assert dw.next_window(windows, at('2026-12-01 00:00'))[1] == at('2026-12-01 02:00')  # GMT


def test_decide_refuses_an_outage_outside_naming_the_next_window():
    status, summary, evidence, action, override = dw.decide(LAUNCHPAD, at('2026-11-30 11:00'), True)
    assert status == 'fail' and override is None
    assert summary == ('now (2026-11-30 11:00 UTC) is outside every deploy window; the next opens 2026-11-30 18:00 '
                       'UTC, in 7h0m, for 30m (daily 02:00,10:00,18:00 30m UTC)')
    assert 'fastdowntime_deploy_window_override' in action
    assert evidence['next_window']['start'] == '2026-11-30T18:00:00+00:00'


def test_decide_override_is_recorded():
    status, summary, evidence, dummy, override = dw.decide(LAUNCHPAD, at('2026-11-30 11:00'), True,
                                                           override_reason='  hotfix for\nbug 123 ', who='alice')
    assert status == 'warn'
    assert 'overridden by alice: hotfix for bug 123 (recorded in the deploy log)' in summary
    assert override == {'check': 'deploy_window', 'who': 'alice', 'why': 'hotfix for bug 123',
                        'at': '2026-11-30T11:00:00+00:00', 'next_window': evidence['next_window']}


def test_decide_inside_no_outage_and_no_windows():
    status, summary, dummy, dummy, dummy = dw.decide(LAUNCHPAD, at('2026-11-30 02:20'), True)
    assert status == 'pass' and summary == ('now (2026-11-30 02:20 UTC) is inside the deploy window daily '
                                            '02:00,10:00,18:00 30m UTC, open until 2026-11-30 02:30 UTC (10m left)')
    status, summary, dummy, dummy, override = dw.decide(LAUNCHPAD, at('2026-11-30 03:00'), False, 'x', 'bob')
    assert status == 'pass' and 'but no outage is pending' in summary and override is None
    status, summary, dummy, dummy, dummy = dw.decide([], at('2026-11-30 03:00'), True)
    assert status == 'pass' and summary.startswith('no deploy windows set')


def test_quiet_output_keeps_the_deploy_window_line():
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.report import _notes
    lines = ['pre-flight PASSED: 0 failed, 0 warnings, 2 passed', 'PASS connection: primary: connected',
             'PASS deploy_window: now (2026-11-30 02:20 UTC) is inside the deploy window daily 02:00 30m UTC']
    assert _notes(lines) == [lines[0], lines[2]]
