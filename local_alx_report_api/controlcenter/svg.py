"""Inline SVG charts drawn on the server (admin-ui.md 1: no external resources; each chart is
followed by a table with the same numbers, see the `chart` macro in macros.html).

Two kinds: a stacked bar chart and a line chart, each with a title, a legend, labelled axes and
an accessible name (`role="img"`, `aria-labelledby` → `<title>`/`<desc>`). The latest value is
written beside its bar or point (one bucket of data is a thin bar or a dot that is easy to miss);
a chart without any says "No data yet in this period" (issue 18). Every text that comes from data
is escaped; the result is markupsafe.Markup, safe to put into a template as it is."""

from __future__ import annotations

import math
from dataclasses import dataclass

from markupsafe import Markup, escape

from local_alx_report_api.controlcenter.web import number

WIDTH, HEIGHT = 640, 270
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 58, 58  # plot area margins: y tick labels, legend, x labels
FONT = 'font-family="system-ui, sans-serif"'
MAX_X_LABELS = 8
NO_DATA = "No data yet in this period"
LABEL_GAP = 15  # vertical room of one latest-value label


@dataclass
class Series:
    name: str
    values: list  # one number (or None: no value) per bucket
    colour: str


@dataclass
class Chart:
    """What the `chart` macro draws: the SVG, then a table of the same numbers, one row per bucket."""

    key: str  # unique on the page: element ids
    title: str
    kind: str  # "stacked" or "line"
    labels: list[str]  # short x-axis labels
    rows: list[str]  # the table's bucket labels
    series: list[Series]
    x_label: str
    y_label: str
    unit: str = ""
    y_max: float | None = None  # a fixed top (100 for percentages)

    @property
    def stacked(self) -> bool:
        return self.kind == "stacked"

    @property
    def totals(self) -> list:
        return [sum(s.values[i] or 0 for s in self.series) for i in range(len(self.rows))]

    @property
    def svg(self) -> Markup:
        draw = stacked_bar_chart if self.stacked else line_chart
        return draw(self.key, self.title, self.labels, self.series, x_label=self.x_label, y_label=self.y_label,
                     y_max=self.y_max, unit=self.unit)


def nice_scale(largest: float, *, integer: bool = False, fixed: float | None = None) -> tuple[float, float]:
    """(top, step) of the y axis: about four steps of 1, 2 or 5 × 10^k covering `largest`."""
    if fixed:
        return fixed, fixed / 4
    largest = largest if largest > 0 else 1
    raw = largest / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    if integer:
        step = max(1, round(step))
    return step * math.ceil(largest / step - 1e-9), step


def _f(value: float) -> str:
    return f"{value:.1f}"


def _frame(key: str, title: str, labels: list[str], series: list[Series], x_label: str, y_label: str,
           top: float, step: float, empty: bool) -> list[str]:
    """The parts every chart has: accessible name, title, legend, grid with y ticks, x labels, axis titles."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    names = ", ".join(s.name for s in series)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-labelledby="{key}-title {key}-desc" aria-label="{escape(title)}" {FONT} font-size="13">',
             f'<title id="{key}-title">{escape(title)}</title>',
             f'<desc id="{key}-desc">{escape(f"Series: {names}. The table below gives the numbers.")}</desc>',
             f'<text x="{LEFT}" y="20" font-size="15" font-weight="600" fill="#1d2125">{escape(title)}</text>']
    x = LEFT
    for s in series:  # legend
        parts.append(f'<rect x="{x}" y="31" width="12" height="12" fill="{escape(s.colour)}"/>'
                     f'<text x="{x + 16}" y="41" fill="#1d2125">{escape(s.name)}</text>')
        x += 30 + 8 * len(s.name)
    ticks = int(round(top / step))
    for i in range(ticks + 1):
        value = step * i
        y = TOP + plot_h - plot_h * value / top
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_f(y)}" y2="{_f(y)}" stroke="#dee2e6"/>'
                     f'<text x="{LEFT - 6}" y="{_f(y + 4)}" text-anchor="end" fill="#6a737b">{escape(number(value))}'
                     '</text>')
    slot = plot_w / max(1, len(labels))
    every = math.ceil(len(labels) / MAX_X_LABELS) or 1
    for i, label in enumerate(labels):
        if i % every == 0:
            parts.append(f'<text x="{_f(LEFT + slot * (i + 0.5))}" y="{TOP + plot_h + 16}" text-anchor="middle" '
                         f'fill="#6a737b">{escape(label)}</text>')
    parts.append(f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + plot_h}" stroke="#6a737b"/>'
                 f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}" stroke="#6a737b"/>'
                 f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 8}" text-anchor="middle" fill="#1d2125">'
                 f'{escape(x_label)}</text>'
                 f'<text transform="translate(14 {_f(TOP + plot_h / 2)}) rotate(-90)" text-anchor="middle" '
                 f'fill="#1d2125">{escape(y_label)}</text>')
    if empty:
        parts.append(f'<text x="{LEFT + plot_w / 2}" y="{TOP + plot_h / 2}" text-anchor="middle" fill="#6a737b">'
                     f'{NO_DATA}</text>')
    return parts


def _latest(values: list) -> int | None:
    """The index of the last bucket with a value (a stacked bar: with a non-zero total)."""
    return next((i for i in range(len(values) - 1, -1, -1) if values[i]), None)


def _half(text: str) -> float:
    return 4 + 3.6 * len(text)  # about half the width of a label (font-size 12)


def _value_label(x: float, y: float, text: str, anchor: str = "middle") -> str:
    """A latest-value label at x (its middle, start or end) with its baseline at y, kept inside the plot."""
    if anchor == "middle":
        x = min(max(x, LEFT + _half(text)), WIDTH - RIGHT - _half(text))
    return (f'<text class="latest" x="{_f(x)}" y="{_f(max(y, TOP - 2))}" text-anchor="{anchor}" '
            f'font-size="12" font-weight="600" fill="#1d2125" stroke="#fff" stroke-width="3" '
            f'paint-order="stroke">{escape(text)}</text>')


def _point_labels(labels: list[list]) -> list[str]:
    """[x, y, text] of latest points → labels beside their points (on the left in the right half of
    the plot, where the latest bucket usually is), moved apart so that none covers another."""
    middle = LEFT + (WIDTH - LEFT - RIGHT) / 2
    labels = sorted(([x - 7, y + 4, text, "end"] if x > middle else [x + 7, y + 4, text, "start"]
                     for x, y, text in labels), key=lambda label: label[1])
    for i in range(len(labels) - 1, 0, -1):  # from the lowest: the one above it makes room
        lower, upper = labels[i], labels[i - 1]
        if lower[1] - upper[1] < LABEL_GAP:
            upper[1] = lower[1] - LABEL_GAP
    if labels and labels[0][1] < TOP + 8:  # above the plot: all of them down again
        shift = TOP + 8 - labels[0][1]
        for label in labels:
            label[1] += shift
    return [_value_label(x, y, text, anchor) for x, y, text, anchor in labels]


def _with_unit(value: float, unit: str) -> str:
    return number(value) + ("%" if unit == "%" else f" {unit}" if unit else "")


def stacked_bar_chart(key: str, title: str, labels: list[str], series: list[Series], *, x_label: str, y_label: str,
                      y_max: float | None = None, unit: str = "") -> Markup:
    """One bar per bucket, the series stacked bottom-up in the order given; the latest bar's total
    written above it."""
    totals = [sum(s.values[i] or 0 for s in series) for i in range(len(labels))]
    integer = all(float(v or 0).is_integer() for s in series for v in s.values)
    top, step = nice_scale(max(totals, default=0), integer=integer, fixed=y_max)
    parts = _frame(key, title, labels, series, x_label, y_label, top, step, not any(totals))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(1, len(labels))
    for i, label in enumerate(labels):
        base = 0.0
        for s in series:
            value = s.values[i] or 0
            if value <= 0:
                continue
            y0, y1 = (TOP + plot_h - plot_h * v / top for v in (base, base + value))
            parts.append(f'<rect x="{_f(LEFT + slot * (i + 0.15))}" y="{_f(y1)}" width="{_f(slot * 0.7)}" '
                         f'height="{_f(y0 - y1)}" fill="{escape(s.colour)}">'
                         f'<title>{escape(f"{label}: {s.name} {number(value)}")}</title></rect>')
            base += value
    latest = _latest(totals)
    if latest is not None:
        parts.append(_value_label(LEFT + slot * (latest + 0.5),
                                  TOP + plot_h - plot_h * min(totals[latest], top) / top - 5,
                                  ("total " if len(series) > 1 else "") + _with_unit(totals[latest], unit)))
    parts.append("</svg>")
    return Markup("".join(parts))


def line_chart(key: str, title: str, labels: list[str], series: list[Series], *, x_label: str, y_label: str,
               y_max: float | None = None, unit: str = "") -> Markup:
    """One line per series with a point per bucket; a bucket without a value (None) breaks the line.
    Each series' latest value is written above its point, the labels moved apart where they would
    overlap."""
    values = [v for s in series for v in s.values if v is not None]
    top, step = nice_scale(max(values, default=0), fixed=y_max)
    parts = _frame(key, title, labels, series, x_label, y_label, top, step, not values)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(1, len(labels))
    latest: list[list] = []  # [x, y, text] of each series' latest point
    for s in series:
        colour = escape(s.colour)
        points = [(LEFT + slot * (i + 0.5), TOP + plot_h - plot_h * min(v, top) / top) if v is not None else None
                  for i, v in enumerate(s.values)]
        run: list[tuple[float, float]] = []
        for point in [*points, None]:  # consecutive points form one polyline
            if point is not None:
                run.append(point)
                continue
            if len(run) > 1:
                parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                             f'points="{" ".join(f"{_f(x)},{_f(y)}" for x, y in run)}"/>')
            run = []
        for i, point in enumerate(points):
            if point is not None:
                parts.append(f'<circle cx="{_f(point[0])}" cy="{_f(point[1])}" r="3" fill="{colour}">'
                             f'<title>{escape(f"{labels[i]}: {s.name} {number(s.values[i])}")}</title></circle>')
        last = next((i for i in range(len(points) - 1, -1, -1) if points[i] is not None), None)
        if last is not None:
            name = f"{s.name}: " if len(series) > 1 else ""  # which line a label belongs to
            latest.append([points[last][0], points[last][1], name + _with_unit(s.values[last], unit)])
    parts += _point_labels(latest)
    parts.append("</svg>")
    return Markup("".join(parts))
