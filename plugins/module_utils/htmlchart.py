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
