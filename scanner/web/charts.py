"""Stacked bar charts as SVG geometry (pure): the template draws the rectangles, so every
label goes through Jinja's escaping and no script is needed (the CSP allows none inline)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 10, 34


@dataclass(frozen=True, slots=True)
class Bar:
    """One segment of a stacked bar: position, size, its series and what it counts."""

    x: float
    y: float
    width: float
    height: float
    series: str
    label: str
    value: int


@dataclass(frozen=True, slots=True)
class Tick:
    """An axis label at a position."""

    x: float
    y: float
    text: str


@dataclass(frozen=True, slots=True)
class Chart:
    """A whole chart: its bars, axis ticks, the largest total and the series legend."""

    title: str
    width: int
    height: int
    bars: list[Bar]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    series: list[str]
    empty: bool


def _nice_max(value: int) -> int:
    if value <= 5:
        return 5
    step = 10 ** (len(str(value)) - 1)
    for mult in (1, 2, 5, 10):
        if value <= mult * step:
            return mult * step
    return value


def stacked_bars(title: str, rows: Sequence[dict[str, Any]], series: Sequence[str],
                 label_key: str = "day") -> Chart:
    """Bars of ``rows`` (one per ``label_key``) stacked by ``series`` counts."""
    top = _nice_max(max((sum(int(r.get(s, 0)) for s in series) for r in rows), default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(rows), 1)
    bar_w = max(min(slot * 0.7, 40.0), 1.0)
    bars: list[Bar] = []
    x_ticks: list[Tick] = []
    every = max(1, len(rows) // 8)
    for i, row in enumerate(rows):
        x = LEFT + i * slot + (slot - bar_w) / 2
        base = float(TOP + plot_h)
        for name in series:
            value = int(row.get(name, 0))
            if value <= 0:
                continue
            h = plot_h * value / top
            base -= h
            bars.append(Bar(round(x, 1), round(base, 1), round(bar_w, 1), round(h, 1), name,
                            str(row[label_key]), value))
        if i % every == 0:
            x_ticks.append(Tick(round(x + bar_w / 2, 1), HEIGHT - BOTTOM + 16,
                                str(row[label_key])[5:]))
    y_ticks = [Tick(LEFT - 6, round(TOP + plot_h - plot_h * f, 1), f"{top * f:g}")
               for f in (0, 0.5, 1)]
    return Chart(title, WIDTH, HEIGHT, bars, x_ticks, y_ticks, list(series), not rows)
