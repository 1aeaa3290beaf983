"""A self-contained HTML eval report: inline SVG charts, no scripts, no downloads.

Pass rate by tag, the intent confusion matrix, stage transitions, the latency distribution,
and a drill-down per case (failures, violations, transcript with every action's verdict).
"""

from __future__ import annotations

from collections import Counter
from html import escape
from typing import Any

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#1d2330}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}table{border-collapse:collapse}
td,th{padding:.25rem .5rem;border-bottom:1px solid #e3e6ee;text-align:left;vertical-align:top}
.ok{color:#1a7f37}.bad{color:#c62828}.muted{color:#667085}.kpi{display:inline-block;
margin:0 1.5rem .5rem 0}.kpi b{font-size:1.4rem;display:block}details{margin:.3rem 0}
summary{cursor:pointer}.turn{margin:.4rem 0 .4rem 1rem;padding-left:.6rem;border-left:3px solid
#e3e6ee}code{background:#f3f4f8;padding:0 .2rem}
"""


def _bar_chart(rows: list[tuple[str, float, str]], width: int = 640) -> str:
    """Horizontal bars, value 0..1; rows are (label, value, caption)."""
    h = 22
    parts = [f'<svg width="{width}" height="{h * len(rows) + 10}" role="img">']
    for i, (label, value, caption) in enumerate(rows):
        y = i * h + 5
        w = max(1, int((width - 260) * value))
        colour = "#1a7f37" if value >= 1 else "#d97706" if value >= 0.8 else "#c62828"
        parts.append(
            f'<text x="0" y="{y + 15}" font-size="12">{escape(label)}</text>'
            f'<rect x="170" y="{y + 3}" width="{w}" height="{h - 8}" fill="{colour}"/>'
            f'<text x="{176 + w}" y="{y + 15}" font-size="12">{escape(caption)}</text>'
        )
    return "".join(parts) + "</svg>"


def _histogram(values: list[float], bins: int = 12, width: int = 640, height: int = 140) -> str:
    if not values:
        return '<p class="muted">no turns</p>'
    lo, hi = min(values), max(values)
    step = (hi - lo) / bins or 1.0
    counts = Counter(min(bins - 1, int((v - lo) / step)) for v in values)
    top = max(counts.values())
    bar_w = (width - 40) / bins
    parts = [f'<svg width="{width}" height="{height + 30}" role="img">']
    for b in range(bins):
        bh = int(height * counts.get(b, 0) / top)
        x = 20 + b * bar_w
        parts.append(f'<rect x="{x:.1f}" y="{height - bh}" width="{bar_w - 2:.1f}" '
                     f'height="{bh}" fill="#3b6fd4"><title>{counts.get(b, 0)} turns</title>'
                     '</rect>')
    parts.append(f'<text x="20" y="{height + 18}" font-size="12">{lo:.0f} ms</text>'
                 f'<text x="{width - 80}" y="{height + 18}" font-size="12">{hi:.0f} ms</text>')
    return "".join(parts) + "</svg>"


def _confusion(confusion: dict[str, dict[str, int]]) -> str:
    if not confusion:
        return '<p class="muted">no turns with an expected intent</p>'
    labels = sorted(set(confusion) | {p for row in confusion.values() for p in row})
    top = max(n for row in confusion.values() for n in row.values())
    head = "".join(f'<th style="writing-mode:vertical-rl">{escape(p)}</th>' for p in labels)
    rows = []
    for want in labels:
        cells = []
        for got in labels:
            n = confusion.get(want, {}).get(got, 0)
            shade = int(235 - 180 * n / top) if n else 255
            colour = f"rgb({shade},{shade + 10 if want == got else shade},255)" if n else "#fff"
            cells.append(f'<td style="background:{colour};text-align:center">{n or ""}</td>')
        rows.append(f"<tr><th>{escape(want)}</th>{''.join(cells)}</tr>")
    return (f'<table><tr><th class="muted">expected ↓ / got →</th>{head}</tr>'
            f"{''.join(rows)}</table>")


def _transitions(report: dict[str, Any]) -> str:
    moves: Counter[tuple[str, str]] = Counter()
    for case in report["cases"]:
        previous = None
        for turn in case["transcript"]:
            stage = turn.get("stage")
            if stage and previous and stage != previous:
                moves[(previous, stage)] += 1
            previous = stage or previous
    if not moves:
        return '<p class="muted">no stage changed within a case</p>'
    rows = "".join(f"<tr><td>{escape(a)} → {escape(b)}</td><td>{n}</td></tr>"
                   for (a, b), n in moves.most_common())
    return f"<table><tr><th>transition</th><th>turns</th></tr>{rows}</table>"


def _case(case: dict[str, Any]) -> str:
    mark = '<span class="ok">✓</span>' if case["passed"] else '<span class="bad">✗</span>'
    items = "".join(f"<li>{escape(f)}</li>" for f in dict.fromkeys(case["failures"]))
    turns = []
    for t in case["transcript"]:
        actions = "".join(
            f"<li><code>{escape(a['tool'])}</code> {escape(a['outcome'])}"
            f"{' (ran)' if a['executed'] else ''} — {escape(', '.join(a['reason_codes']))}</li>"
            for a in t.get("actions", [])
        )
        said = escape(t["say"]) if t.get("say") else "<i>approval</i>"
        reply = escape(t["reply"]) if t.get("reply") else '<span class="muted">(no reply)</span>'
        turns.append(
            f'<div class="turn"><b>{escape(t["customer"])}</b> on {escape(t["channel"])}: '
            f"{said}<br>bot: {reply}<br><span class='muted'>intent {t.get('intent', '-')}, "
            f"stage {t.get('stage', '-')}, {t['latency_ms']} ms</span><ul>{actions}</ul></div>"
        )
    return (f"<details{' open' if not case['passed'] else ''}><summary>{mark} "
            f"<b>{escape(case['id'])}</b> <span class='muted'>{escape(case['suite'])} · "
            f"{escape(', '.join(case['tags']))}</span></summary>"
            f"{f'<ul class=bad>{items}</ul>' if items else ''}{''.join(turns)}</details>")


def html_report(report: dict[str, Any]) -> str:
    t, m = report["totals"], report["metrics"]
    kpis = [
        ("pass rate", f"{t['pass_rate']:.1%}", t["pass_rate"] >= 1),
        ("policy violations", str(t["policy_violations"]), t["policy_violations"] == 0),
        ("intent accuracy", str(m["intent_accuracy"]), True),
        ("handoff recall", str(m["handoff_recall"]), True),
        ("latency p50", f"{m['latency_p50_ms']} ms", True),
    ]
    kpi_html = "".join(
        f'<span class="kpi"><b class="{"ok" if good else "bad"}">{escape(v)}</b>{k}</span>'
        for k, v, good in kpis
    )
    tags = [(tag, row["pass_rate"], f"{row['passed']}/{row['cases']}")
            for tag, row in report["by_tag"].items()]
    latencies = [turn["latency_ms"] for c in report["cases"] for turn in c["transcript"]
                 if "intent" in turn]
    gate = report.get("gate", {})
    verdict = ("" if not gate else
               f'<p class="{"ok" if gate["passed"] else "bad"}">gate '
               f'{"passed" if gate["passed"] else "failed: " + escape("; ".join(gate["missed"]))}'
               "</p>")
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Eval report: {escape(report['brain'])} brain</title><style>{_CSS}</style></head><body>
<h1>Eval report: {escape(report['brain'])} brain</h1>
<p class="muted">{t['passed']}/{t['cases']} cases · suites {escape(', '.join(report['suites']))}
· {escape(report['created_at'])} · {escape(report['machine'])}</p>{verdict}
<div>{kpi_html}</div>
<h2>Pass rate by tag</h2>{_bar_chart(tags)}
<h2>Intent confusion</h2>{_confusion(m.get('intent_confusion') or {})}
<h2>Stage transitions</h2>{_transitions(report)}
<h2>Turn latency</h2>{_histogram(latencies)}
<h2>Cases</h2>{''.join(_case(c) for c in report['cases'])}
</body></html>
"""
