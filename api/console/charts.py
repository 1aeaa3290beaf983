"""Charts as data: the geometry of the console's inline SVG charts, laid out here and drawn by
the macros in ``templates/console/_charts.html``. Rendered on the server, so a page is complete
when it arrives (no JavaScript, no CDN); every chart also carries its numbers as text.

Three shapes, in SVG user units (the ``viewBox``; CSS scales the picture):

- :func:`hbars`: horizontal bars with their values (a funnel, exits by reason);
- :func:`day_bars`: grouped vertical bars per calendar day (entered, conversions by arm);
- :func:`whiskers`: a point and its interval per row on one axis (rates and their 95% intervals,
  with a bar from zero; or a lift with the zero line).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

WIDTH = 640
#: where bars start: the labels are right-aligned before it
LABEL_WIDTH = 180
#: the longest bar (room is left after it for the value)
BAR_SPACE = 340
ROW = 28
BAR = 18
PAD = 8
#: a label longer than this is cut (the whole label is the bar's tooltip)
LABEL_CHARS = 26
#: the most days a day chart shows (the last ones)
MAX_DAYS = 60
#: where an axis of counts may end (× a power of ten): whole numbers for whole counts
COUNT_STEPS = (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8)
#: where an axis of rates may end
RATE_STEPS = (1, 2, 2.5, 5)


def nice_ceiling(value: float, steps: Sequence[float]) -> float:
    """The smallest ``step × 10^k`` at or above ``value`` (1 for nothing): an axis' end."""
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for scale in (exponent, exponent + 1):
        for step in steps:
            candidate = step * 10.0 ** scale
            if candidate >= value * (1 - 1e-9):
                return candidate
    return 10.0 ** (exponent + 1)  # pragma: no cover - the loop always finds one


def short(label: str, chars: int = LABEL_CHARS) -> str:
    return label if len(label) <= chars else label[:chars - 1] + "…"


# --- horizontal bars -------------------------------------------------------------------------


@dataclass(frozen=True)
class HBar:
    label: str
    value: int
    #: the value over the first bar's (a funnel's share of those who entered)
    share: float | None
    y: float
    length: float

    @property
    def short_label(self) -> str:
        return short(self.label)


@dataclass(frozen=True)
class HBarChart:
    title: str
    bars: tuple[HBar, ...]
    height: float
    x0: float = LABEL_WIDTH
    bar: float = BAR

    @property
    def summary(self) -> str:
        """The numbers in words, for the chart's accessible name."""
        return ", ".join(f"{b.label} {b.value}" for b in self.bars) or "nothing yet"


def hbars(title: str, items: Sequence[tuple[str, int]], *, shares: bool = False) -> HBarChart:
    """One bar per ``(label, value)``, the longest for the largest value; ``shares``: each
    value is also shown as a share of the first (a funnel)."""
    top = max((v for _, v in items), default=0)
    first = items[0][1] if items else 0
    bars = tuple(
        HBar(label=label, value=value,
             share=(value / first if first else None) if shares else None,
             y=PAD + i * ROW,
             length=round(value / top * BAR_SPACE, 2) if top else 0.0)
        for i, (label, value) in enumerate(items))
    return HBarChart(title=title, bars=bars, height=PAD * 2 + max(len(bars), 1) * ROW)


# --- bars per day ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    key: str
    label: str


@dataclass(frozen=True)
class DayBar:
    series: str
    value: int
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Day:
    day: str
    label: str
    centre: float
    bars: tuple[DayBar, ...]
    #: whether its date is written under it (every day when they fit, else some)
    labelled: bool


@dataclass(frozen=True)
class DayChart:
    title: str
    series: tuple[Series, ...]
    days: tuple[Day, ...]
    #: the value at the top of the plot, and the plot's box
    top: int
    left: float
    right: float
    plot_top: float
    baseline: float
    height: float
    #: days left out before the first shown (more than :data:`MAX_DAYS`)
    hidden_days: int

    @property
    def ticks(self) -> tuple[tuple[int, float], ...]:
        """(value, y) of the horizontal grid lines: 0, the middle (when whole), the top."""
        values = [0, self.top // 2, self.top] if self.top % 2 == 0 else [0, self.top]
        span = self.baseline - self.plot_top
        return tuple((v, round(self.baseline - v / self.top * span, 2))
                     for v in dict.fromkeys(values))

    @property
    def values_fit(self) -> bool:
        """Whether the bars are wide enough to write each value above its bar."""
        return bool(self.days) and self.days[0].bars[0].width >= 12

    @property
    def summary(self) -> str:
        parts = [f"{d.day}: " + ", ".join(f"{s.label} {b.value}"
                                          for s, b in zip(self.series, d.bars, strict=True))
                 for d in self.days if any(b.value for b in d.bars)]
        return "; ".join(parts) or "nothing yet"


def day_bars(title: str, series: Sequence[Series],
             days: Sequence[tuple[str, Mapping[str, int]]]) -> DayChart:
    """Grouped bars, one group per calendar day from the first day given to the last (days
    without a row are drawn as zeros), one bar per series; the last :data:`MAX_DAYS` days."""
    given = {day: values for day, values in days}
    calendar: list[str] = []
    if given:
        first, last = date.fromisoformat(min(given)), date.fromisoformat(max(given))
        calendar = [(first + timedelta(days=n)).isoformat()
                    for n in range((last - first).days + 1)]
    hidden = max(0, len(calendar) - MAX_DAYS)
    calendar = calendar[hidden:]
    top = int(nice_ceiling(max((given.get(d, {}).get(s.key, 0)
                                for d in calendar for s in series), default=0), COUNT_STEPS))
    left, right, plot_top, baseline = 36.0, WIDTH - 8.0, 28.0, 172.0
    group = (right - left) / max(len(calendar), 1)
    bar = min(22.0, group * 0.8 / max(len(series), 1))
    every = max(1, math.ceil(len(calendar) / 10))  # at most ten dates under the axis
    out = []
    for i, day in enumerate(calendar):
        values = given.get(day, {})
        start = left + i * group + (group - bar * len(series)) / 2
        bars = []
        for k, s in enumerate(series):
            value = int(values.get(s.key, 0))
            height = round(value / top * (baseline - plot_top), 2)
            bars.append(DayBar(series=s.key, value=value, x=round(start + k * bar, 2),
                               y=round(baseline - height, 2), width=round(bar, 2),
                               height=height))
        out.append(Day(day=day, label=day[5:], centre=round(left + (i + 0.5) * group, 2),
                       bars=tuple(bars), labelled=i % every == 0))
    return DayChart(title=title, series=tuple(series), days=tuple(out), top=top, left=left,
                    right=right, plot_top=plot_top, baseline=baseline, height=baseline + 24,
                    hidden_days=hidden)


# --- points with intervals -------------------------------------------------------------------


#: a row of a whisker chart: its numbers, then a note under them
WHISKER_ROW = 38


@dataclass(frozen=True)
class Axis:
    low: float
    high: float
    x0: float = 120.0
    length: float = 260.0

    def x(self, value: float) -> float:
        return round(self.x0 + (value - self.low) / (self.high - self.low) * self.length, 2)

    @property
    def ticks(self) -> tuple[tuple[float, float], ...]:
        """(value, x) at both ends and the middle."""
        values = (self.low, (self.low + self.high) / 2, self.high)
        return tuple((v, self.x(v)) for v in values)


@dataclass(frozen=True)
class Whisker:
    label: str
    #: the estimate (None: nobody to measure yet) and its interval
    point: float | None
    low: float
    high: float
    y: float
    axis: Axis
    #: what the row's text says after the numbers ("1/7", "not yet significant")
    note: str = ""
    significant: bool | None = None

    @property
    def short_label(self) -> str:
        return short(self.label, 17)

    @property
    def x_point(self) -> float | None:
        return None if self.point is None else self.axis.x(self.point)

    @property
    def x_low(self) -> float:
        return self.axis.x(self.low)

    @property
    def x_high(self) -> float:
        return self.axis.x(self.high)


@dataclass(frozen=True)
class WhiskerChart:
    title: str
    axis: Axis
    rows: tuple[Whisker, ...]
    height: float
    #: "rate": each row has a bar from zero to its point; "lift": the zero line is drawn
    kind: str

    @property
    def zero_x(self) -> float:
        return self.axis.x(0.0)

    @property
    def ticks(self) -> tuple[tuple[float, float, str], ...]:
        """(value, x, label): ``0%``, ``50%``, ``100%`` for rates; ``-50``, ``0``, ``+50``
        (percentage points) for a lift."""
        def label(value: float) -> str:
            if self.kind == "rate":
                return f"{value * 100:g}%"
            return "0" if value == 0 else f"{value * 100:+g}"

        return tuple((value, x, label(value)) for value, x in self.axis.ticks)


@dataclass(frozen=True)
class Estimate:
    """A row's numbers: what :func:`whiskers` draws."""

    label: str
    point: float | None
    low: float
    high: float
    note: str = ""
    significant: bool | None = None


def whiskers(title: str, estimates: Sequence[Estimate], kind: str) -> WhiskerChart:
    """``kind="rate"``: an axis from 0 to a round value above the highest interval end;
    ``kind="lift"``: an axis symmetric about zero, wide enough for every interval."""
    if kind == "rate":
        axis = Axis(0.0, min(1.0, nice_ceiling(max((e.high for e in estimates), default=1.0),
                                               RATE_STEPS)))
    else:
        reach = max((max(abs(e.low), abs(e.high)) for e in estimates), default=1.0)
        end = min(1.0, nice_ceiling(reach, RATE_STEPS))
        axis = Axis(-end, end)
    top = PAD + 18  # the tick labels sit above the rows
    rows = tuple(Whisker(label=e.label, point=e.point, low=e.low, high=e.high,
                         y=top + i * WHISKER_ROW, axis=axis, note=e.note,
                         significant=e.significant)
                 for i, e in enumerate(estimates))
    return WhiskerChart(title=title, axis=axis, rows=rows,
                        height=top + max(len(rows), 1) * WHISKER_ROW + PAD, kind=kind)
