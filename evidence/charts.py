"""Server-rendered inline SVG charts: no JavaScript, no CDN, no inline styles.

Colours and strokes come from classes styled in ``static/css/evidence.css``.
Each chart carries a <title> and <desc>; the page puts a table of the same
numbers next to it for screen readers and for anyone who wants the figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 52, 14, 14, 30

Number = float | int | Decimal


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[Number | None]
    css: str


def percent(value: float) -> str:
    return f"{value * 100:.0f}%"


def dollars(value: float) -> str:
    return f"${value:,.2f}" if value < 100 else f"${value:,.0f}"


def integer(value: float) -> str:
    return f"{value:,.0f}"


class _Frame:
    """Maps data to the plot area and draws axes, gridlines and day labels."""

    def __init__(
        self,
        days: Sequence[date],
        y_max: float,
        fmt: Callable[[float], str],
        width: int = WIDTH,
        top: int = TOP,
    ) -> None:
        self.top = top
        self.days = days
        self.y_max = y_max if y_max > 0 else 1.0
        self.fmt = fmt
        self.width = width
        self.plot_w = width - LEFT - RIGHT
        self.plot_h = HEIGHT - top - BOTTOM

    def slot(self) -> float:
        return self.plot_w / max(len(self.days), 1)

    def x(self, index: int) -> float:
        """The centre of day ``index``'s slot."""
        return LEFT + self.slot() * (index + 0.5)

    def y(self, value: float) -> float:
        value = min(max(value, 0.0), self.y_max)
        return self.top + self.plot_h * (1 - value / self.y_max)

    def axes(self) -> list[str]:
        parts = []
        for i in range(5):
            value = self.y_max * i / 4
            y = self.y(value)
            parts.append(
                f'<line class="chart-gridline" x1="{LEFT}" x2="{self.width - RIGHT}" '
                f'y1="{y:.1f}" y2="{y:.1f}"/>'
                f'<text class="chart-tick" x="{LEFT - 6}" y="{y + 4:.1f}" '
                f'text-anchor="end">{escape(self.fmt(value))}</text>'
            )
        base = self.top + self.plot_h
        parts.append(
            f'<line class="chart-axis" x1="{LEFT}" x2="{self.width - RIGHT}" '
            f'y1="{base}" y2="{base}"/>'
        )
        for index in _label_indexes(len(self.days)):
            anchor = "middle"
            parts.append(
                f'<text class="chart-tick" x="{self.x(index):.1f}" y="{HEIGHT - 10}" '
                f'text-anchor="{anchor}">{self.days[index]:%b %d}</text>'
            )
        return parts


def _label_indexes(n: int) -> list[int]:
    if n <= 0:
        return []
    if n <= 8:
        return list(range(n))
    step = max(1, round((n - 1) / 5))
    indexes = list(range(0, n, step))
    if n - 1 - indexes[-1] < step / 2:
        indexes[-1] = n - 1
    else:
        indexes.append(n - 1)
    return indexes


def _svg(chart_id: str, title: str, desc: str, body: list[str], width: int = WIDTH) -> SafeString:
    return mark_safe(  # noqa: S308 - every text part is escaped above
        f'<svg class="chart" viewBox="0 0 {width} {HEIGHT}" role="img" '
        f'aria-labelledby="{chart_id}-t {chart_id}-d" preserveAspectRatio="xMidYMid meet" '
        f'xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{chart_id}-t">{escape(title)}</title>'
        f'<desc id="{chart_id}-d">{escape(desc)}</desc>' + "".join(body) + "</svg>"
    )


def _runs(values: Sequence[float | None]) -> list[list[int]]:
    """Indexes of consecutive known values (a gap breaks a line)."""
    runs: list[list[int]] = []
    current: list[int] = []
    for i, value in enumerate(values):
        if value is None:
            if current:
                runs.append(current)
            current = []
        else:
            current.append(i)
    if current:
        runs.append(current)
    return runs


def _line(frame: _Frame, values: Sequence[float | None], css: str, label: str) -> list[str]:
    parts = []
    for run in _runs(values):
        points = " ".join(f"{frame.x(i):.1f},{frame.y(values[i]):.1f}" for i in run)  # type: ignore[arg-type]
        if len(run) > 1:
            parts.append(f'<polyline class="chart-line {css}" points="{points}"/>')
        for i in run:
            parts.append(
                f'<circle class="chart-dot {css}" cx="{frame.x(i):.1f}" '
                f'cy="{frame.y(values[i]):.1f}" r="3">'  # type: ignore[arg-type]
                f"<title>{frame.days[i]:%b %d}: {escape(label)} "
                f"{escape(frame.fmt(values[i]))}</title></circle>"  # type: ignore[arg-type]
            )
    return parts


def _target(frame: _Frame, value: float, label: str) -> list[str]:
    y = frame.y(value)
    return [
        f'<line class="chart-target" x1="{LEFT}" x2="{frame.width - RIGHT}" '
        f'y1="{y:.1f}" y2="{y:.1f}"/>',
        f'<text class="chart-target-label" x="{frame.width - RIGHT - 4}" '
        f'y="{y + 13 if y < frame.top + 16 else y - 5:.1f}" '
        f'text-anchor="end">{escape(label)}</text>',
    ]


def _empty(frame: _Frame, message: str) -> list[str]:
    return [
        f'<text class="chart-empty" x="{LEFT + frame.plot_w / 2:.1f}" '
        f'y="{frame.top + frame.plot_h / 2:.1f}" text-anchor="middle">{escape(message)}</text>'
    ]


def band_chart(
    *,
    chart_id: str,
    title: str,
    days: Sequence[date],
    values: Sequence[float | None],
    lows: Sequence[float | None],
    highs: Sequence[float | None],
    threshold: float | None = None,
    threshold_label: str = "",
) -> SafeString:
    """A rate per day with its confidence band (0..100%), e.g. agreement with Wilson."""
    frame = _Frame(days, 1.0, percent)
    body = frame.axes()
    for run in _runs(values):
        upper = [f"{frame.x(i):.1f},{frame.y(highs[i]):.1f}" for i in run]  # type: ignore[arg-type]
        lower = [f"{frame.x(i):.1f},{frame.y(lows[i]):.1f}" for i in reversed(run)]  # type: ignore[arg-type]
        if len(run) == 1:
            x = frame.x(run[0])
            half = min(frame.slot() / 3, 6)
            i = run[0]
            body.append(
                f'<rect class="chart-band" x="{x - half:.1f}" y="{frame.y(highs[i]):.1f}" '  # type: ignore[arg-type]
                f'width="{2 * half:.1f}" '
                f'height="{frame.y(lows[i]) - frame.y(highs[i]):.1f}"/>'  # type: ignore[arg-type]
            )
        else:
            body.append(f'<polygon class="chart-band" points="{" ".join(upper + lower)}"/>')
    if threshold is not None:
        body += _target(frame, threshold, threshold_label)
    body += _line(frame, values, "series-a", "agreement")
    if not any(v is not None for v in values):
        body += _empty(frame, "No decisions in this window")
    known = [v for v in values if v is not None]
    desc = (
        f"{len(known)} days with decisions; latest daily agreement "
        f"{percent(known[-1]) if known else 'none'}. Shaded band: Wilson 95% interval."
    )
    return _svg(chart_id, title, desc, body)


def line_chart(
    *,
    chart_id: str,
    title: str,
    days: Sequence[date],
    values: Sequence[Number | None],
    fmt: Callable[[float], str] = dollars,
    target: Number | None = None,
    target_label: str = "",
) -> SafeString:
    floats = [None if v is None else float(v) for v in values]
    known = [v for v in floats if v is not None]
    top = max(known + ([float(target)] if target is not None else []) + [0.0])
    frame = _Frame(days, _nice(top * 1.15), fmt)
    body = frame.axes()
    if target is not None:
        body += _target(frame, float(target), target_label)
    body += _line(frame, floats, "series-a", title.lower())
    if not known:
        body += _empty(frame, "No successful outcomes in this window")
    desc = f"{len(known)} days with a value; latest {fmt(known[-1]) if known else 'none'}."
    if target is not None:
        desc += f" Target {fmt(float(target))}."
    return _svg(chart_id, title, desc, body)


def bar_chart(
    *,
    chart_id: str,
    title: str,
    days: Sequence[date],
    series: Sequence[Series],
    fmt: Callable[[float], str] = integer,
    width: int = WIDTH,
) -> SafeString:
    """Grouped bars per day, one bar per series. Counts get whole-number ticks."""
    top = max([float(v or 0) for s in series for v in s.values] + [0.0])
    y_max = _nice_count(top * 1.1) if fmt is integer else _nice(top * 1.15)
    frame = _Frame(days, y_max, fmt, width, top=TOP + 16)
    body = frame.axes()
    bar_w = min(frame.slot() * 0.8 / max(len(series), 1), 40)
    base = frame.y(0)
    for index in range(len(days)):
        left = frame.x(index) - bar_w * len(series) / 2
        for k, s in enumerate(series):
            value = float(s.values[index] or 0)
            if not value:
                continue
            y = frame.y(value)
            body.append(
                f'<rect class="chart-bar {s.css}" x="{left + k * bar_w:.1f}" y="{y:.1f}" '
                f'width="{max(bar_w - 1, 1):.1f}" height="{base - y:.1f}">'
                f"<title>{days[index]:%b %d}: {escape(s.name)} {escape(fmt(value))}</title></rect>"
            )
    # A legend inside the picture, so a printed chart still says what is what.
    for k, s in enumerate(series):
        x = LEFT + 8 + k * 130
        body.append(
            f'<rect class="chart-bar {s.css}" x="{x}" y="{TOP - 8}" width="10" height="10"/>'
            f'<text class="chart-legend" x="{x + 14}" y="{TOP + 1}">{escape(s.name)}</text>'
        )
    totals = ", ".join(f"{s.name}: {fmt(sum(float(v or 0) for v in s.values))}" for s in series)
    return _svg(chart_id, title, f"Totals over the window: {totals}.", body, frame.width)


def _nice_count(value: float) -> float:
    """An axis maximum for counts: four equal whole-number steps."""
    step = 1
    for candidate in (1, 2, 3, 4, 5, 10, 15, 20, 25, 50, 100, 150, 200, 250, 500, 1000, 2500, 5000):
        step = candidate
        if value <= candidate * 4:
            break
    else:
        step = math.ceil(value / 4 / 10_000) * 10_000
    return float(step * 4)


def _nice(value: float) -> float:
    """Round an axis maximum up to 1, 2, 2.5 or 5 times a power of ten."""
    if value <= 0:
        return 1.0
    power = 10 ** len(str(int(value))) / 10 if value >= 1 else 10 ** -_decimals(value)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def _decimals(value: float) -> int:
    count = 0
    while value < 1:
        value *= 10
        count += 1
    return count


def meter(*, chart_id: str, title: str, share: float | None) -> SafeString:
    """A small horizontal gauge of a share of a budget; past 100% it turns red."""
    width, height = 160, 14
    if share is None:
        fill, css = 0.0, "meter-none"
    else:
        fill = min(share, 1.0) * width
        css = "meter-over" if share > 1 else "meter-high" if share >= 0.8 else "meter-ok"
    label = "no budget" if share is None else f"{share:.0%} of budget"
    return mark_safe(  # noqa: S308 - the title is escaped
        f'<svg class="meter {css}" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-labelledby="{chart_id}-t" '
        f'xmlns="http://www.w3.org/2000/svg"><title id="{chart_id}-t">{escape(title)}: '
        f"{escape(label)}</title>"
        f'<rect class="meter-track" x="0" y="0" width="{width}" height="{height}" rx="3"/>'
        f'<rect class="meter-fill" x="0" y="0" width="{fill:.1f}" height="{height}" rx="3"/>'
        "</svg>"
    )
