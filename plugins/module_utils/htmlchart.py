# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Self-contained HTML pages with inline SVG charts: readable offline, no JavaScript,
nothing fetched (no fonts, scripts or images from anywhere).

``page(title, parts, subtitle)`` wraps HTML parts into one document with its
own style sheet; ``bar_chart`` draws labelled bars (one or two series, an
optional target line); ``table`` renders rows. Every text is escaped here:
callers pass plain strings and numbers.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import html
import math

COLORS = ('#2f6db5', '#e0802c', '#3a9a5b', '#b53a3a')
STYLE = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 24px; color: #1d2329;
       background: #ffffff; }
h1 { font-size: 22px; margin: 0 0 4px 0; } h2 { font-size: 17px; margin: 28px 0 6px 0; }
p.sub { color: #5b6670; margin: 0 0 16px 0; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { border: 1px solid #d4dae0; border-radius: 6px; padding: 10px 14px; min-width: 150px; }
.card .v { font-size: 22px; font-weight: 600; } .card .k { color: #5b6670; font-size: 12px; }
table { border-collapse: collapse; font-size: 13px; margin-top: 6px; }
th, td { border-bottom: 1px solid #e3e7eb; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; } th { background: #f3f5f7; }
svg text { font-family: inherit; font-size: 11px; fill: #1d2329; }
.note { color: #5b6670; font-size: 12px; }
"""


def esc(value):
    return html.escape('' if value is None else str(value), quote=True)


def fmt(value, digits=1):
    """A number for people: thousands separated, floats with ``digits`` decimals; '-' for None."""
    if value is None:
        return '-'
    if isinstance(value, float):
        return '{:,.{d}f}'.format(value, d=digits)
    return '{:,}'.format(value)


def nice_max(value, ticks=4):
    """A round axis maximum at or above ``value``: ``ticks`` steps of 1, 2, 2.5
    or 5 x 10^n, so every tick label is a round number."""
    if not value or value <= 0:
        return float(ticks)
    raw = value / float(ticks)
    exponent = math.floor(math.log10(raw))
    for step in (1, 2, 2.5, 5, 10):
        if step * 10 ** exponent >= raw:
            return float(step * 10 ** exponent * ticks)
    return float(10 ** (exponent + 1) * ticks)  # pragma: no cover


def bar_chart(title, labels, series, unit='', target=None, target_label=None, width=860, height=260):
    """An SVG bar chart. ``labels``: one per group (x axis); ``series``:
    [(name, [value or None per label])], drawn side by side in each group;
    ``target``: a dashed horizontal line at that value. Returns the SVG text."""
    left, right, top, bottom = 64, 16, 44, 100
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for dummy, vals in series for v in vals if v is not None]
    top_value = nice_max(max(values + ([target] if target is not None else []) or [0]))
    groups = max(len(labels), 1)
    group_w = plot_w / groups
    bar_w = max(min(group_w * 0.8 / max(len(series), 1), 40), 1)
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" '
           'aria-label="%s">' % (width, height, width, height, esc(title)),
           '<rect x="0" y="0" width="%d" height="%d" fill="#ffffff"/>' % (width, height),
           '<text x="%d" y="18" style="font-size:13px;font-weight:600">%s</text>' % (left, esc(title))]
    for tick in range(5):
        value = top_value * tick / 4
        y = top + plot_h - plot_h * tick / 4
        out.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#e3e7eb"/>' % (left, width - right, y, y))
        label = fmt(value, 0 if float(value).is_integer() else 1)
        out.append('<text x="%d" y="%.1f" text-anchor="end">%s%s</text>' % (left - 6, y + 4, esc(label), esc(unit)))
    for index, label in enumerate(labels):
        x0 = left + group_w * index + (group_w - bar_w * len(series)) / 2
        for number, (name, vals) in enumerate(series):
            value = vals[index] if index < len(vals) else None
            if value is None:
                continue
            bar_h = max(plot_h * value / top_value, 1 if value > 0 else 0)
            out.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: %s%s</title></rect>'
                       % (x0 + bar_w * number, top + plot_h - bar_h, bar_w, bar_h, COLORS[number % len(COLORS)],
                          esc(label), esc(name), esc(fmt(value)), esc(unit)))
        if groups <= 40 or index % int(math.ceil(groups / 40.0)) == 0:
            cx = left + group_w * (index + 0.5)
            out.append('<text x="%.1f" y="%d" text-anchor="end" transform="rotate(-40 %.1f %d)">%s</text>'
                       % (cx, top + plot_h + 14, cx, top + plot_h + 14, esc(label)))
    axis_y = top + plot_h
    out.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="#8a949e"/>' % (left, width - right, axis_y, axis_y))
    if target is not None:
        y = top + plot_h - plot_h * target / top_value
        out.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#b53a3a" stroke-dasharray="6 4"/>'
                   % (left, width - right, y, y))
        out.append('<text x="%d" y="%.1f" text-anchor="end" style="fill:#b53a3a">%s</text>'
                   % (width - right, y - 4, esc(target_label or fmt(target))))
    for number, name in enumerate(name for name, dummy in series):
        x = left + number * 220
        out.append('<rect x="%d" y="24" width="10" height="10" fill="%s"/><text x="%d" y="33">%s</text>'
                   % (x, COLORS[number % len(COLORS)], x + 14, esc(name)))
    if not values:
        out.append('<text x="%d" y="%d" text-anchor="middle">no data</text>' % (left + plot_w / 2, top + plot_h / 2))
    out.append('</svg>')
    return '\n'.join(out)


def table(headers, rows):
    """An HTML table; cells are escaped, numbers formatted."""
    head = ''.join('<th>%s</th>' % esc(h) for h in headers)

    def cell(value):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return '<td>%s</td>' % esc(fmt(value) if number else value)
    body = ''.join('<tr>%s</tr>' % ''.join(cell(c) for c in row) for row in rows)
    return '<table><thead><tr>%s</tr></thead><tbody>%s</tbody></table>' % (head, body)


def cards(items):
    """Headline numbers: [(label, value text)]."""
    return '<div class="cards">%s</div>' % ''.join(
        '<div class="card"><div class="v">%s</div><div class="k">%s</div></div>' % (esc(v), esc(k)) for k, v in items)


def heading(text, level=2):
    return '<h%d>%s</h%d>' % (level, esc(text), level)


def note(text):
    return '<p class="note">%s</p>' % esc(text)


def page(title, parts, subtitle=None):
    """One self-contained HTML document."""
    return '\n'.join([
        '<!DOCTYPE html>', '<html lang="en">', '<head>', '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<title>%s</title>' % esc(title), '<style>%s</style>' % STYLE, '</head>', '<body>',
        '<h1>%s</h1>' % esc(title)] + (['<p class="sub">%s</p>' % esc(subtitle)] if subtitle else []) +
        list(parts) + ['</body>', '</html>', ''])


def nice_step(span, ticks=8):
    """A round tick step (1, 2, 2.5, 5 x 10^n) giving at most about ``ticks`` ticks over ``span``."""
    return nice_max(span / float(ticks)) if span > 0 else 1.0


def timeline_chart(title, lanes, bars, x_min, x_max, unit='ms', bands=(), lines=(), legend=(), width=960,
                   lane_height=26):
    """An SVG timeline (a Gantt chart): one lane per label, bars on one x axis.

    ``lanes``: lane labels, top to bottom. ``bars``: dicts {lane (a label of
    ``lanes``), start, end (x values; end None draws a thin mark), color, label
    (text drawn in the bar when it fits), tip (hover text), hatch (bool:
    striped, for what was observed rather than done)}. ``bands``: shaded
    spans [(x0, x1, label, color)] behind the bars; ``lines``: dashed verticals
    [(x, label, color)] (a budget end). ``legend``: [(name, color)]. x values
    outside [x_min, x_max] are clipped. Returns the SVG text."""
    left, right, top, bottom = 230, 20, 34, 64
    plot_w = width - left - right
    height = top + bottom + lane_height * max(len(lanes), 1)
    span = float(x_max - x_min) or 1.0

    def x_of(value):
        return left + plot_w * (min(max(value, x_min), x_max) - x_min) / span

    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" '
           'aria-label="%s">' % (width, height, width, height, esc(title)),
           '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
           'patternTransform="rotate(45)"><rect width="3" height="6" fill="#b53a3a" fill-opacity="0.55"/>'
           '</pattern></defs>',
           '<rect x="0" y="0" width="%d" height="%d" fill="#ffffff"/>' % (width, height),
           '<text x="%d" y="18" style="font-size:13px;font-weight:600">%s</text>' % (left, esc(title))]
    bottom_y = top + lane_height * len(lanes)
    for x0, x1, label, color in bands:
        out.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s" fill-opacity="0.18"><title>%s</title>'
                   '</rect>' % (x_of(x0), top, max(x_of(x1) - x_of(x0), 1), bottom_y - top, color, esc(label)))
        out.append('<text x="%.1f" y="%d" style="fill:%s">%s</text>' % (x_of(x0) + 2, top - 4, color, esc(label)))
    step = nice_step(span)
    tick = math.ceil(x_min / step) * step
    while tick <= x_max + step * 1e-9:
        x = x_of(tick)
        out.append('<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#e3e7eb"/>' % (x, x, top, bottom_y))
        out.append('<text x="%.1f" y="%d" text-anchor="middle">%s%s</text>'
                   % (x, bottom_y + 14, esc(fmt(round(tick, 6), 0 if step >= 1 else 2)), esc(unit)))
        tick += step
    for index, lane in enumerate(lanes):
        y = top + lane_height * index
        if index % 2:
            out.append('<rect x="%d" y="%d" width="%d" height="%d" fill="#f3f5f7" fill-opacity="0.6"/>'
                       % (left, y, plot_w, lane_height))
        out.append('<text x="%d" y="%.1f" text-anchor="end">%s</text>' % (left - 8, y + lane_height / 2 + 4, esc(lane)))
    for item in bars:
        if item.get('lane') not in lanes:
            continue
        y = top + lane_height * lanes.index(item['lane']) + 4
        x0 = x_of(item['start'])
        x1 = x_of(item['end']) if item.get('end') is not None else x0
        w = max(x1 - x0, 2)
        fill = 'url(#hatch)' if item.get('hatch') else item.get('color') or COLORS[0]
        out.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s" rx="2"><title>%s</title></rect>'
                   % (x0, y, w, lane_height - 8, fill, esc(item.get('tip') or item.get('label') or '')))
        label = item.get('label')
        if label and w >= 7 * len(label) + 6:
            out.append('<text x="%.1f" y="%d" style="fill:#ffffff">%s</text>' % (x0 + 4, y + lane_height - 13, esc(label)))
    out.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="#8a949e"/>' % (left, width - right, bottom_y, bottom_y))
    for x, label, color in lines:
        if x_min <= x <= x_max:
            out.append('<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="%s" stroke-width="2" stroke-dasharray="6 4"/>'
                       % (x_of(x), x_of(x), top - 2, bottom_y, color))
            out.append('<text x="%.1f" y="%d" text-anchor="end" style="fill:%s">%s</text>'
                       % (x_of(x) - 3, bottom_y + 30, color, esc(label)))
    spacing = min(150, plot_w // max(len(legend), 1))
    for number, (name, color) in enumerate(legend):
        x = left + number * spacing
        fill = 'url(#hatch)' if color == 'hatch' else color
        out.append('<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d">%s</text>'
                   % (x, height - 12, fill, x + 14, height - 3, esc(name)))
    out.append('</svg>')
    return '\n'.join(out)
