# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixed deploy windows: schema outages happen at known times, announced ahead.

``fastdowntime_deploy_windows`` is a list; each window is a string
``"DAYS HH:MM[,HH:MM...] DURATION [TIMEZONE]"`` or the same as a dict
``{days, times, duration, timezone}``:

- DAYS: ``daily``, ``weekdays`` (mon-fri), ``weekends``, a list ``mon,wed,fri``
  or a range ``mon-thu`` (three-letter English day names);
- times: the local start times, 24-hour ``HH:MM``;
- DURATION: ``30m``, ``2h``, ``1h30m`` (at most 24h);
- TIMEZONE: an IANA name (``Europe/London``), default ``UTC``; a start is the
  local wall-clock time, so windows follow daylight saving time.

Example: ``["daily 02:00,10:00,18:00 30m UTC", "weekdays 14:00 1h Europe/London"]``.

Pure: ``parse_windows`` (WindowError, one line, for bad syntax),
``current_window`` and ``next_window`` (aware datetimes in, out), and
``decide`` (the pre-flight's verdict as status, summary, evidence, action).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import re

try:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
except ImportError:  # pragma: no cover - Python < 3.9 on the controller
    ZoneInfo = None
    ZoneInfoNotFoundError = Exception

DAY_NAMES = ('mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun')
DAY_SETS = {'daily': tuple(range(7)), 'weekdays': tuple(range(5)), 'weekends': (5, 6)}
SYNTAX = '"DAYS HH:MM[,HH:MM...] DURATION [TIMEZONE]", e.g. "daily 02:00,10:00,18:00 30m UTC"'
_TIME_RE = re.compile(r'^([01]?\d|2[0-3]):([0-5]\d)$')
_DURATION_RE = re.compile(r'^(?:(\d+)h)?(?:(\d+)m)?$')
UTC = datetime.timezone.utc


class WindowError(Exception):
    """A window the tool cannot read; str() is the one-line message."""


class Window:
    """One window rule: ``days`` (weekday numbers, Monday 0), ``times``
    ((hour, minute) local starts), ``minutes`` (length), ``tz`` and its name,
    ``text`` (canonical spelling)."""

    def __init__(self, days, times, minutes, tz_name):
        self.days = tuple(sorted(set(days)))
        self.times = tuple(sorted(set(times)))
        self.minutes = minutes
        self.tz_name = tz_name
        self.tz = UTC if tz_name == 'UTC' else ZoneInfo(tz_name)
        self.text = '%s %s %s %s' % (_days_text(self.days), ','.join('%02d:%02d' % t for t in self.times),
                                     _duration_text(minutes), tz_name)

    def openings(self, around):
        """(start, end) aware UTC datetimes of every opening from the local
        day before ``around`` to 8 days after, in order."""
        local_day = around.astimezone(self.tz).date()
        found = []
        for offset in range(-1, 9):
            day = local_day + datetime.timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            for hour, minute in self.times:
                start = datetime.datetime(day.year, day.month, day.day, hour, minute, tzinfo=self.tz).astimezone(UTC)
                found.append((start, start + datetime.timedelta(minutes=self.minutes)))
        return sorted(found)


def _days_text(days):
    for name, members in DAY_SETS.items():
        if tuple(days) == members:
            return name
    return ','.join(DAY_NAMES[d] for d in days)


def _duration_text(minutes):
    hours, rest = divmod(minutes, 60)
    return ('%dh' % hours if hours else '') + ('%dm' % rest if rest else '')


def _where(index, raw):
    return 'fastdowntime_deploy_windows[%d] %s' % (index, _show(raw))


def _show(raw):
    text = repr(raw)
    return text if len(text) <= 80 else text[:77] + '...'


def parse_days(text, where):
    days = set()
    for part in str(text).lower().replace(' ', '').split(','):
        if part in DAY_SETS:
            days.update(DAY_SETS[part])
        elif '-' in part and all(p in DAY_NAMES for p in part.split('-', 1)):
            first, last = (DAY_NAMES.index(p) for p in part.split('-', 1))
            days.update(range(first, last + 1) if first <= last else list(range(first, 7)) + list(range(last + 1)))
        elif part in DAY_NAMES:
            days.add(DAY_NAMES.index(part))
        else:
            raise WindowError('%s: unknown days %r: use daily, weekdays, weekends, mon,wed,fri or mon-fri'
                              % (where, part))
    return days


def parse_times(values, where):
    times = []
    for value in values:
        match = _TIME_RE.match(str(value).strip())
        if not match:
            raise WindowError('%s: %r is not a start time HH:MM (24-hour, e.g. 02:00)' % (where, value))
        times.append((int(match.group(1)), int(match.group(2))))
    if not times:
        raise WindowError('%s: no start time: give at least one HH:MM' % where)
    return times


def parse_duration(value, where):
    text = str(value).strip().lower()
    match = _DURATION_RE.match(text) if text else None
    if isinstance(value, int) and not isinstance(value, bool):
        minutes = value
    elif match and (match.group(1) or match.group(2)):
        minutes = int(match.group(1) or 0) * 60 + int(match.group(2) or 0)
    else:
        raise WindowError('%s: %r is not a duration: use 30m, 2h or 1h30m' % (where, value))
    if not 0 < minutes <= 24 * 60:
        raise WindowError('%s: a window lasts more than 0 and at most 24h, not %s' % (where, value))
    return minutes


def parse_timezone(name, where):
    if name in (None, '', 'UTC', 'utc', 'Z'):
        return 'UTC'
    if ZoneInfo is None:  # pragma: no cover
        raise WindowError('%s: time zones other than UTC need Python 3.9 or later on the controller' % where)
    try:
        ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        raise WindowError('%s: unknown time zone %r: use an IANA name such as Europe/London, or UTC (is tzdata '
                          'installed on the controller?)' % (where, name))
    return str(name)


def parse_window(raw, index=0):
    """One Window from a string or dict; WindowError naming the entry."""
    where = _where(index, raw)
    if isinstance(raw, dict):
        unknown = sorted(set(raw) - {'days', 'times', 'duration', 'timezone'})
        if unknown:
            raise WindowError('%s: unknown key(s) %s: use days, times, duration, timezone' % (where, ', '.join(unknown)))
        if 'times' not in raw or 'duration' not in raw:
            raise WindowError('%s: times and duration are required' % where)
        times = raw['times'] if isinstance(raw['times'], list) else str(raw['times']).split(',')
        days = raw.get('days', 'daily')
        days = ','.join(str(d) for d in days) if isinstance(days, list) else days
        return Window(parse_days(days, where), parse_times(times, where), parse_duration(raw['duration'], where),
                      parse_timezone(raw.get('timezone'), where))
    if not isinstance(raw, str):
        raise WindowError('%s: a window is a string %s or a dict {days, times, duration, timezone}' % (where, SYNTAX))
    words = raw.split()
    if len(words) not in (3, 4):
        raise WindowError('%s: expected %s' % (where, SYNTAX))
    return Window(parse_days(words[0], where), parse_times(words[1].split(','), where),
                  parse_duration(words[2], where), parse_timezone(words[3] if len(words) == 4 else None, where))


def parse_windows(spec):
    """[Window] from ``fastdowntime_deploy_windows`` (None or [] -> [])."""
    if spec in (None, '', []):
        return []
    if isinstance(spec, (str, dict)):
        spec = [spec]
    if not isinstance(spec, list):
        raise WindowError('fastdowntime_deploy_windows must be a list of windows, each %s' % SYNTAX)
    return [parse_window(raw, index) for index, raw in enumerate(spec)]


def current_window(windows, now):
    """(window, start, end) of a window open at ``now`` (the one closing last), or None."""
    open_now = [(end, start, window) for window in windows for start, end in window.openings(now)
                if start <= now < end]
    if not open_now:
        return None
    end, start, window = max(open_now, key=lambda item: item[0])
    return window, start, end


def next_window(windows, now):
    """(window, start, end) of the next opening after ``now``, or None."""
    later = [(start, end, window) for window in windows for start, end in window.openings(now) if start > now]
    if not later:
        return None
    start, end, window = min(later, key=lambda item: item[0])
    return window, start, end


def _when(moment, window=None):
    text = moment.astimezone(UTC).strftime('%Y-%m-%d %H:%M UTC')
    if window is not None and window.tz_name != 'UTC':
        text += ' (%s %s)' % (moment.astimezone(window.tz).strftime('%H:%M'), window.tz_name)
    return text


def _span(seconds):
    minutes = int(seconds // 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return ''.join(('%dd' % days if days else '', '%dh' % hours if hours else '', '%dm' % minutes)) \
        if (days or hours or minutes) else '%ds' % int(seconds)


def decide(windows, now, outage_pending, override_reason=None, who=None):
    """The pre-flight's verdict on the deploy windows at ``now`` (aware).

    Returns (status, summary, evidence, action, override): status ``pass``,
    ``warn`` or ``fail``; ``override`` is the record to keep in the deploy
    log ({'check', 'who', 'why', 'at', 'next_window'}) when an override let
    an outage start outside every window, else None. No window configured,
    or no outage pending: always a pass that still says where ``now`` is.
    """
    evidence = {'now': _when(now), 'windows': [w.text for w in windows], 'inside': None,
                'next_window': None, 'outage_pending': bool(outage_pending)}
    if not windows:
        return 'pass', 'no deploy windows set (fastdowntime_deploy_windows): an outage may start any time', \
            evidence, None, None
    current = current_window(windows, now)
    upcoming = next_window(windows, now)
    if upcoming:
        evidence['next_window'] = {'window': upcoming[0].text, 'start': upcoming[1].isoformat(),
                                   'end': upcoming[2].isoformat()}
    next_text = ('the next opens %s, in %s, for %s (%s)' % (
        _when(upcoming[1], upcoming[0]), _span((upcoming[1] - now).total_seconds()),
        _duration_text(upcoming[0].minutes), upcoming[0].text)) if upcoming else 'no window opens in the next week'
    if current:
        window, start, end = current
        evidence['inside'] = {'window': window.text, 'start': start.isoformat(), 'end': end.isoformat()}
        return 'pass', 'now (%s) is inside the deploy window %s, open until %s (%s left)' % (
            _when(now), window.text, _when(end, window), _span((end - now).total_seconds())), evidence, None, None
    outside = 'now (%s) is outside every deploy window' % _when(now)
    if not outage_pending:
        return 'pass', '%s, but no outage is pending (nothing cold to apply); %s' % (outside, next_text), \
            evidence, None, None
    reason = ' '.join(str(override_reason or '').split())
    if reason:
        override = {'check': 'deploy_window', 'who': who or 'unknown', 'why': reason, 'at': now.isoformat(),
                    'next_window': evidence['next_window']}
        evidence['override'] = override
        return 'warn', '%s; overridden by %s: %s (recorded in the deploy log); %s' % (
            outside, override['who'], reason, next_text), evidence, \
            'nothing: the override is recorded; deploy inside a window next time', override
    return 'fail', '%s; %s' % (outside, next_text), evidence, \
        'deploy in that window, or set fastdowntime_deploy_window_override to the reason this outage cannot wait ' \
        '(recorded in the deploy log with fastdowntime_operator)', None
