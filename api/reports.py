"""Stand-alone HTML reports the command line writes (a file to open or share, styles inline):
the preview of a journey before launch."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from journey.preview import PreviewResult

_TEMPLATES = Path(__file__).resolve().parent / "templates" / "reports"
#: the outcomes drawn in the day-by-day chart, with their colours
SERIES = {"would_send": "#2f6fdf", "deferred": "#8fb3f0", "would_escalate": "#7a4fd0",
          "suppressed": "#d0453b"}


def _environment() -> Environment:
    return Environment(loader=FileSystemLoader(_TEMPLATES),
                       autoescape=select_autoescape(["html"]))


def preview_html(result: PreviewResult) -> str:
    """The preview as one HTML page: the summary, a chart per simulated day of what would go
    out and what the policy would stop, the suppressions by reason and every customer's
    timeline."""
    days: dict[str, Counter[str]] = defaultdict(Counter)
    for row in result.rows:
        if row.outcome in SERIES:
            when = row.deliver_at or row.at
            days[when.date().isoformat()][row.outcome] += 1
    chart = _day_chart(days)
    by_customer: dict[str, list[Any]] = defaultdict(list)
    for row in result.rows:
        by_customer[row.customer_id].append(row)
    return _environment().get_template("journey_preview.html").render(
        r=result, chart=chart, series=SERIES, by_customer=by_customer,
        would=result.count("would_send") + result.count("deferred"))


def _day_chart(days: dict[str, Counter[str]]) -> dict[str, Any]:
    """Stacked bars per day, laid out for an inline SVG."""
    names = sorted(days)
    top = max((sum(days[d].values()) for d in names), default=0) or 1
    width, height, bar = 640, 200, max(8, min(48, 560 // max(1, len(names)) - 6))
    step = (width - 60) / max(1, len(names))
    bars = []
    for i, day in enumerate(names):
        y = height - 30.0
        x = 50 + i * step
        for outcome, colour in SERIES.items():
            n = days[day][outcome]
            if not n:
                continue
            h = (height - 50) * n / top
            y -= h
            bars.append({"x": round(x, 1), "y": round(y, 1), "w": bar, "h": round(h, 1),
                         "colour": colour, "label": f"{day}: {n} {outcome.replace('_', ' ')}"})
    labels = [{"x": round(50 + i * step + bar / 2, 1), "text": d[5:]}
              for i, d in enumerate(names)]
    return {"width": width, "height": height, "bars": bars, "labels": labels, "top": top,
            "days": names, "counts": {d: dict(days[d]) for d in names}}
