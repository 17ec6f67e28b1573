"""The manager's page as one self-contained HTML document.

Everything is inline (CSS in a style element, charts as SVG), nothing is fetched and no
script runs, so the file opens from a disk, an e-mail or the service alike, and a strict
Content-Security-Policy (no scripts, inline styles only) fits it. Every piece of text that
comes from data (team and deal ids, sentences, stages) is escaped. The one script element
is data, never run: `/v1/teams/{team}/forecast`'s JSON for the same team and time
(`type="application/json"`, id `dealcast-forecast`), with `<`, `>` and `&` written as
JSON escapes so that no text in it can close the element.

Layout, for a manager who has a minute: the status sentence first, then the outlook (fan
chart), the model beside the forecasts the team already uses, coverage, reps, the at-risk
deals with what to do, and what changed since last week; definitions at the end.
Readable from phone to laptop width: blocks stack, charts scale with their box, and wide
tables scroll inside their own box instead of widening the page. Status is never colour
alone: every badge has its word and a symbol.

A rep's page (`render_rep_page`) is built from the team page's own blocks (status, the
forecasts beside the baselines, coverage and targets, deal cards, review, the key at the end)
for one rep, with every open deal of the rep; the team page's rep table links each rep there
(`rep_pages`, the service) and the rep's page links back, both relative and pinned to the
page's as-of time.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from urllib.parse import quote

import pandas as pd

from models.attainment import AttainmentResult
from models.forecast_review import ForecastReview
from models.team_quarter import COVERAGE_TARGET, DealChange, Gap
from serving.page.view import (
    FORECAST_JSON_ID,
    FORECAST_LABELS,
    AtRiskDeal,
    FanPoint,
    ManagerView,
    QuarterPage,
    RepSummary,
    RepView,
)

STATUS_WORDS = {
    "green": ("On track", "✓"),
    "yellow": ("At risk", "!"),
    "red": ("Off track", "✕"),
    "none": ("No quota", "–"),
}
CHANGE_TITLES = {
    "new": "New deals",
    "won": "Won",
    "lost": "Lost",
    "pushed": "Pushed out of the quarter",
    "pulled_in": "Pulled into the quarter",
}
CHANGES_LISTED = 10  # rows per kind of change; the rest are counted

CSS = """
*,*::before,*::after{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,
sans-serif;color:#1f2328;background:#f6f8fa;overflow-wrap:break-word}
main{max-width:72rem;margin:0 auto;padding:1rem}
header{margin-bottom:1rem}
h1{font-size:1.6rem;line-height:1.25;margin:.2rem 0}
h2{font-size:1.25rem;margin:0 0 .6rem}
h3{font-size:1.05rem;margin:0 0 .4rem}
section{background:#fff;border:1px solid #d0d7de;border-radius:10px;padding:1rem;
margin:0 0 1rem;min-width:0}
.eyebrow{margin:0;color:#57606a;font-size:.85rem;letter-spacing:.04em;text-transform:uppercase}
.meta{margin:0;color:#57606a;font-size:.9rem}
.muted{color:#57606a}
.small{font-size:.875rem}
.num{font-variant-numeric:tabular-nums;white-space:nowrap}
.badge{display:inline-flex;align-items:center;gap:.35rem;font-weight:700;border-radius:999px;
padding:.1rem .7rem;border:2px solid currentColor;white-space:nowrap}
.badge .icon{font-size:.9em}
.s-green{color:#116329;background:#dafbe1}
.s-yellow{color:#7d4e00;background:#fff8c5}
.s-red{color:#a40e26;background:#ffebe9}
.s-none{color:#57606a;background:#eaeef2}
.status{border-left:8px solid #8c959f}
.status.s-green{border-left-color:#1a7f37}
.status.s-yellow{border-left-color:#bf8700}
.status.s-red{border-left-color:#cf222e}
.status{color:#1f2328}
.lead{font-size:1.2rem;line-height:1.4;margin:.6rem 0}
.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(9rem,1fr));gap:.75rem;
margin:.75rem 0 0}
.kpis div{background:#f6f8fa;border-radius:8px;padding:.5rem .75rem}
.kpis dt{font-size:.8rem;color:#57606a}
.kpis dd{margin:0;font-size:1.15rem;font-weight:650}
.kpis dd small{display:block;font-size:.8rem;font-weight:400;color:#57606a}
figure{margin:0}
svg{display:block;max-width:100%;height:auto}
.chart text{font-family:inherit}
.fan-wide{width:100%;max-width:56rem}
.fan-narrow{display:none;width:100%}
@media (max-width:40rem){.fan-wide{display:none}.fan-narrow{display:block}}
.legend{display:flex;flex-wrap:wrap;gap:.4rem 1.2rem;margin:.5rem 0 0;padding:0;list-style:none;
font-size:.875rem}
.legend li{display:flex;align-items:center;gap:.4rem}
.key{display:inline-block;width:1.6rem;height:.7rem;border-radius:2px}
.key-band{background:#9ec5fe}
.key-p50{height:0;border-top:3px dashed #0550ae}
.key-won{height:0;border-top:3px solid #1f2328}
.key-quota{height:0;border-top:3px dotted #cf222e}
.bars{list-style:none;margin:0;padding:0}
.bars li{margin:0 0 .8rem}
.bar-label{display:flex;flex-wrap:wrap;justify-content:space-between;gap:0 1rem}
.bar-label strong{font-weight:650}
.bar svg{width:100%;height:22px}
.table-wrap{overflow-x:auto;-webkit-overflow-scrolling:touch;max-width:100%}
table{border-collapse:collapse;width:100%;font-size:.9rem}
caption{text-align:left;color:#57606a;font-size:.85rem;padding:0 0 .3rem}
th,td{padding:.35rem .6rem;border-bottom:1px solid #d8dee4;text-align:left;vertical-align:top;
white-space:nowrap}
td.text{white-space:normal;min-width:14rem}
th{font-weight:650;white-space:nowrap}
thead th{background:#f6f8fa}
#changes h3{margin-top:1rem}
td.r,th.r{text-align:right}
.deals{list-style:none;margin:0;padding:0;display:grid;gap:1rem;
grid-template-columns:repeat(auto-fill,minmax(min(100%,26rem),1fr))}
.deal{border:1px solid #d0d7de;border-radius:8px;padding:.8rem;min-width:0}
.deal h3{display:flex;flex-wrap:wrap;gap:.2rem .6rem;align-items:baseline}
.deal h4{font-size:.85rem;margin:.6rem 0 .2rem;color:#57606a;text-transform:uppercase;
letter-spacing:.03em}
.deal ul,.deal ol{margin:0;padding-left:1.2rem}
.deal p{margin:.2rem 0}
.dir{font-weight:700;white-space:nowrap}
.dir-lowers{color:#a40e26}
.dir-raises{color:#116329}
.risk-high{color:#a40e26;font-weight:650}
.risk-medium{color:#7d4e00;font-weight:650}
.chips{display:flex;flex-wrap:wrap;gap:.5rem;margin:0 0 .8rem;padding:0;list-style:none}
.chips li{background:#f6f8fa;border:1px solid #d0d7de;border-radius:999px;padding:.15rem .7rem}
details{margin:.6rem 0 0}
summary{cursor:pointer;font-weight:600}
dl.facts{display:grid;grid-template-columns:minmax(0,max-content) minmax(0,1fr);gap:.3rem 1rem;
margin:0}
dl.facts dt{color:#57606a}
dl.facts dd{margin:0}
footer{color:#57606a;font-size:.85rem}
footer ul{padding-left:1.2rem}
@media (max-width:30rem){table.stack thead{display:none}
table.stack,table.stack tbody,table.stack tr,table.stack th,table.stack td{display:block}
table.stack tr{padding:.4rem 0;border-bottom:1px solid #d8dee4}
table.stack th,table.stack td{border:0;padding:.05rem 0;white-space:normal;min-width:0;
text-align:left}
table.stack td[data-label]::before{content:attr(data-label) ": ";color:#57606a}}
@media (max-width:30rem){main{padding:.5rem}section{padding:.75rem}h1{font-size:1.35rem}
.lead{font-size:1.08rem}dl.facts{grid-template-columns:1fr}dl.facts dd{margin-bottom:.4rem}}
"""


def _e(value: object) -> str:
    """Escaped text: every value that reaches the page from data goes through here."""
    return html.escape(str(value), quote=True)


def money(value: float) -> str:
    return f"{value:,.0f}"


def compact(value: float) -> str:
    """Short amounts for chart labels: 2.6M, 740k, 950."""
    size = abs(value)
    if size >= 1e9:
        return f"{value / 1e9:.1f}B"
    if size >= 1e6:
        return f"{value / 1e6:.1f}M"
    if size >= 1e3:
        return f"{value / 1e3:.0f}k"
    return f"{value:.0f}"


def pct(value: float) -> str:
    return f"{100 * value:.0f}%"


def _day(stamp: pd.Timestamp | None) -> str:
    return "no date" if stamp is None else stamp.strftime("%d %b %Y")


def _status(view: QuarterPage) -> str:
    return view.attainment.status if view.attainment is not None else "none"


def _badge(status: str) -> str:
    word, icon = STATUS_WORDS[status]
    return (
        f'<span class="badge s-{status}" data-testid="status-badge">'
        f'<span class="icon" aria-hidden="true">{icon}</span>{_e(word)}</span>'
    )


# --------------------------------------------------------------------------- sections


def status_sentence(view: ManagerView) -> str:
    """The page's first sentence: where the team stands against its quota (plain text)."""
    return _standing(view, who=view.team, whose="its")


def rep_status_sentence(view: RepView) -> str:
    """A rep's page's first sentence: where the rep stands against their quota."""
    return _standing(view, who=view.owner_id, whose="their")


def _standing(view: QuarterPage, *, who: str, whose: str) -> str:
    a = view.attainment
    if a is None:
        return (
            f"No quota is set for {who} in {view.period}, so there is no chance of "
            f"attainment to report; the model expects {money(view.expected_revenue)} of "
            "closed-won revenue this quarter."
        )
    if a.remaining_quota == 0:
        return (
            f"{who} has reached {whose} {view.period} quota: {money(a.won_to_date)} won "
            f"against {money(a.quota)}."
        )
    sentence = (
        f"{who} has a {pct(a.p_attain)} chance of reaching {whose} {view.period} quota of "
        f"{money(a.quota)}"
    )
    if pct(a.p_attain_low) != pct(a.p_attain_high):
        sentence += f" (plausibly between {pct(a.p_attain_low)} and {pct(a.p_attain_high)})"
    return sentence + "."


def _header(view: ManagerView) -> str:
    return f"""<header>
<p class="eyebrow">dealcast · manager's page</p>
<h1 data-testid="title">{_e(view.team)} · {_e(view.period)}</h1>
{_meta(view)}
</header>"""


def _meta(view: QuarterPage) -> str:
    return f"""<p class="meta">As of {_e(view.as_of.strftime("%d %b %Y, %H:%M UTC"))} ·
{view.days_left:.0f} days left in the quarter ({_e(_day(view.period_start))} to
{_e(_day(view.period_end - pd.Timedelta(days=1)))}) · scores from {_e(_source(view))}</p>"""


def _source(view: QuarterPage) -> str:
    """Where the scores came from, as the team page's header says it."""
    model = view.model
    source = model.uri or "the loaded model"
    if model.version:
        source += f" (version {model.version})"
    if model.mode == "baseline":
        source += ", the baseline forecaster (mode baseline: stage win rates)"
    trained = f", trained on data to {_day(pd.Timestamp(model.data_end))}" if model.data_end else ""
    return source + trained


def _range_record(view: ManagerView) -> str:
    """How often the 80% range held the actual revenue in the backtest: what it is worth."""
    coverage, quarters = view.model.range_coverage, view.model.range_team_quarters
    if coverage is None or not quarters:
        return ""
    return (
        f" In the backtest the 80% range held the actual revenue in {pct(coverage)} of "
        f"{quarters} team-quarters."
    )


def _status_section(view: ManagerView) -> str:
    return _status_block(view, sentence=status_sentence(view), record=_range_record(view))


def _status_block(view: QuarterPage, *, sentence: str, record: str) -> str:
    """The status badge, `sentence`, the expected revenue (with `record`, what its range is
    worth) and the headline figures."""
    status = _status(view)
    a = view.attainment
    revenue = (
        f"The model expects {money(view.expected_revenue)} of closed-won revenue"
        + (f" (80% range {money(a.p10)} to {money(a.p90)})" if a is not None else "")
        + f"; {money(view.won_to_date)} is won so far"
        + f" from {view.open_deals} open deals and new business still to come."
        + record
    )
    kpis = [
        _chance_kpi(view),
        ("Quota", money(view.quota) if view.quota else "not set", view.period),
        (
            "Won to date",
            money(view.won_to_date),
            f"{pct(view.won_to_date / view.quota)} of quota" if view.quota else "",
        ),
        (
            "Model forecast",
            money(view.expected_revenue),
            f"P10 {compact(a.p10)} · P90 {compact(a.p90)}" if a else "",
        ),
        (
            "Value at risk",
            money(view.at_risk_value),
            f"{view.at_risk_count} flagged deals",
        ),
    ]
    cells = "".join(
        f"<div><dt>{_e(name)}</dt><dd><span class=num>{_e(value)}</span>"
        + (f"<small>{_e(note)}</small>" if note else "")
        + "</dd></div>"
        for name, value, note in kpis
    )
    return f"""<section class="status s-{status}" data-testid="status" data-status="{status}"
aria-labelledby="status-h">
<h2 id="status-h">Status {_badge(status)}</h2>
<p class="lead" data-testid="status-sentence">{_e(sentence)}</p>
<p>{_e(revenue)}</p>
<dl class="kpis" data-testid="kpis">{cells}</dl>
</section>"""


def _chance_kpi(view: QuarterPage) -> tuple[str, str, str]:
    a = view.attainment
    if a is None:
        return ("Chance of reaching quota", "n/a", "no quota")
    if a.remaining_quota == 0:
        return ("Chance of reaching quota", "reached", "")
    return ("Chance of reaching quota", pct(a.p_attain), _interval(view))


def _interval(view: QuarterPage) -> str:
    a = view.attainment
    if a is None:
        return ""
    return f"range {pct(a.p_attain_low)}–{pct(a.p_attain_high)}"


def nice_ticks(top: float, count: int = 4) -> list[float]:
    """Round axis values from 0 to at least `top`."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [step * k for k in range(math.ceil(top / step) + 1)]


def fan_chart_svg(view: ManagerView, *, variant: str = "wide") -> str:
    """Closed-won so far, then P10-P90 band and P50 of projected revenue, against the quota.

    SVG text scales with the drawing, so one drawing cannot be legible both on a phone and on
    a laptop: the page carries a wide and a narrow variant of the same chart and CSS shows one
    (the hidden one is out of the accessibility tree too).
    """
    width, height = (760.0, 320.0) if variant == "wide" else (380.0, 300.0)
    left, right, top, bottom = 52.0, 14.0, 14.0, 34.0
    plot_w, plot_h = width - left - right, height - top - bottom
    fan = view.fan
    values = [v for _, v in view.won_path] + [p.p90 for p in fan]
    if view.quota:
        values.append(view.quota)
    ticks = nice_ticks(max([*values, 1.0]) * 1.05)
    y_top = ticks[-1]
    t0, t1 = view.period_start.value, view.period_end.value

    def x(stamp: pd.Timestamp) -> float:
        return left + (stamp.value - t0) / (t1 - t0) * plot_w

    def y(value: float) -> float:
        return top + plot_h - value / y_top * plot_h

    parts = []
    for tick in ticks:
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
            'stroke="#d8dee4" stroke-width="1"/>'
            f'<text x="{left - 6}" y="{y(tick) + 5:.1f}" text-anchor="end" font-size="13" '
            f'fill="#57606a">{_e(compact(tick))}</text>'
        )
    month = view.period_start
    while month < view.period_end:
        parts.append(
            f'<line x1="{x(month):.1f}" x2="{x(month):.1f}" y1="{top}" y2="{top + plot_h}" '
            'stroke="#eaeef2"/>'
            f'<text x="{x(month) + 3:.1f}" y="{height - 12}" font-size="13" fill="#57606a">'
            f"{_e(month.strftime('%b'))}</text>"
        )
        month = month + pd.offsets.MonthBegin(1)
    now = view.as_of
    start = (now, view.won_to_date)
    if fan:
        band = [start] + [(p.at, p.p90) for p in fan]
        back = [(p.at, p.p10) for p in reversed(fan)] + [start]
        points = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in band + back)
        parts.append(f'<polygon points="{points}" fill="#9ec5fe" fill-opacity=".75"/>')
        median = " ".join(
            f"{x(t):.1f},{y(v):.1f}" for t, v in [start] + [(p.at, p.p50) for p in fan]
        )
        parts.append(
            f'<polyline points="{median}" fill="none" stroke="#0550ae" stroke-width="2.5" '
            'stroke-dasharray="7 5"/>'
        )
    won = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in view.won_path)
    parts.append(f'<polyline points="{won}" fill="none" stroke="#1f2328" stroke-width="3"/>')
    parts.append(
        f'<line x1="{x(now):.1f}" x2="{x(now):.1f}" y1="{top}" y2="{top + plot_h}" '
        'stroke="#57606a" stroke-dasharray="2 3"/>'
        f'<text x="{x(now) - 4:.1f}" y="{top + 14}" text-anchor="end" font-size="13" '
        'fill="#57606a">today</text>'
    )
    if view.quota:
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(view.quota):.1f}" '
            f'y2="{y(view.quota):.1f}" stroke="#cf222e" stroke-width="2.5" '
            'stroke-dasharray="2 4"/>'
            f'<text x="{left + 6}" y="{y(view.quota) - 6:.1f}" font-size="13" fill="#a40e26">'
            f"quota {_e(compact(view.quota))}</text>"
        )
    parts.append(
        f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" '
        'stroke="#8c959f"/>'
    )
    last = fan[-1] if fan else None
    description = (
        f"Closed-won revenue so far reaches {money(view.won_to_date)} today. "
        + (
            f"By the quarter's end the model projects {money(last.p50)} as the median, with an "
            f"80% range of {money(last.p10)} to {money(last.p90)}"
            if last
            else "The quarter has ended"
        )
        + (f", against a quota of {money(view.quota)}." if view.quota else ".")
    )
    return (
        f'<svg class="chart fan-{variant}" data-testid="fan-chart-{variant}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
        f'aria-labelledby="fan-title-{variant} fan-desc-{variant}">'
        f'<title id="fan-title-{variant}">Projected closed-won revenue, {_e(view.period)}</title>'
        f'<desc id="fan-desc-{variant}">{_e(description)}</desc>{"".join(parts)}</svg>'
    )


def _fan_table(view: ManagerView) -> str:
    rows = "".join(
        f"<tr><th scope=row>{_e(_fan_label(p))}</th><td class='r num'>{money(p.p10)}</td>"
        f"<td class='r num'>{money(p.p50)}</td><td class='r num'>{money(p.p90)}</td>"
        f"<td class='r num'>{money(p.expected)}</td></tr>"
        for p in view.fan
    )
    return f"""<details><summary>The chart's numbers</summary><div class="table-wrap">
<table data-testid="fan-table"><caption>Projected closed-won revenue at each remaining week end
</caption><thead><tr><th scope=col>Week ending</th><th scope=col class=r>P10</th>
<th scope=col class=r>P50</th><th scope=col class=r>P90</th><th scope=col class=r>Expected</th>
</tr></thead><tbody>{rows}</tbody></table></div></details>"""


def _fan_label(point: FanPoint) -> str:
    day = point.at - pd.Timedelta(days=1)
    return f"week {point.week}, {_day(day)}"


def _outlook_section(view: ManagerView) -> str:
    quota_key = (
        '<li><span class="key key-quota" aria-hidden="true"></span>quota</li>' if view.quota else ""
    )
    return f"""<section id="outlook" aria-labelledby="outlook-h">
<h2 id="outlook-h">Projected closed-won revenue</h2>
<figure data-testid="fan-chart">{fan_chart_svg(view, variant="wide")}
{fan_chart_svg(view, variant="narrow")}
<figcaption><ul class="legend">
<li><span class="key key-won" aria-hidden="true"></span>won so far</li>
<li><span class="key key-band" aria-hidden="true"></span>80% range (P10–P90)</li>
<li><span class="key key-p50" aria-hidden="true"></span>median (P50)</li>{quota_key}</ul>
<p class="small muted">Each open deal counts from its expected close date with its chance of
closing this quarter; deals move together as they did in past quarters, and new deals still
to be created are added as the weeks pass.</p></figcaption></figure>
{_fan_table(view)}
</section>"""


def forecast_bars(view: QuarterPage) -> str:
    """One bar per forecaster on a shared scale, the quota as a line across all of them.

    The drawing stretches to its box (preserveAspectRatio none), so lines keep their width
    with non-scaling strokes and the labels live in HTML, where they wrap.
    """
    top = max([f.value for f in view.forecasts] + [view.quota or 0.0, 1.0]) * 1.05
    a = view.attainment

    def at(value: float) -> str:
        return f"{max(value, 0.0) / top * 100:.2f}"

    items = []
    for line in view.forecasts:
        colour = "#0969da" if line.name == "model" else "#6e7781"
        extra = ""
        if line.name == "model" and a is not None:
            extra = "".join(
                f'<line x1="{x1}" x2="{x2}" y1="{y1}" y2="{y2}" stroke="#0a3069" '
                'stroke-width="2" vector-effect="non-scaling-stroke"/>'
                for x1, x2, y1, y2 in (
                    (at(a.p10), at(a.p90), 11, 11),
                    (at(a.p10), at(a.p10), 6, 16),
                    (at(a.p90), at(a.p90), 6, 16),
                )
            )
        quota = (
            f'<line x1="{at(view.quota)}" x2="{at(view.quota)}" y1="0" y2="22" stroke="#cf222e" '
            'stroke-width="3" vector-effect="non-scaling-stroke"/>'
            if view.quota
            else ""
        )
        versus = f" · {pct(line.value / view.quota)} of quota" if view.quota else ""
        items.append(
            f'<li data-forecaster="{_e(line.name)}"><div class="bar-label">'
            f"<strong>{_e(line.label)}</strong>"
            f'<span class="num">{money(line.value)}{_e(versus)}</span></div>'
            f'<div class="bar"><svg viewBox="0 0 100 22" preserveAspectRatio="none" '
            'aria-hidden="true">'
            f'<rect x="0" y="4" width="{max(float(at(line.value)), 0.4):.2f}" height="14" '
            f'fill="{colour}"/>{extra}{quota}</svg></div>'
            f'<p class="small muted">{_e(line.description)}</p></li>'
        )
    return "".join(items)


def _forecasts_section(view: QuarterPage) -> str:
    model = view.forecasts[0]
    others = view.forecasts[1:]
    gaps = "; ".join(f"{o.label} {_signed(o.value - model.value)}" for o in others)
    return f"""<section id="forecasts" data-testid="forecast-comparison"
aria-labelledby="forecasts-h">
<h2 id="forecasts-h">The model beside the forecasts you know</h2>
<p>Closed-won revenue expected this quarter. Compared with the model: {_e(gaps)}.
{"The red line is the quota; " if view.quota else ""}the whisker on the model's bar is its
80% range (P10 to P90).</p>
<ul class="bars">{forecast_bars(view)}</ul>
</section>"""


def _signed(value: float) -> str:
    return f"{'+' if value >= 0 else '−'}{money(abs(value))}"


ACTIVITY_WORDS = {"meeting": "Meetings", "call": "Calls", "proposal": "Proposals"}


def _target_words() -> str:
    low, high = COVERAGE_TARGET
    return f"{low:.0f}–{high:.0f}×"


def _coverage_words(gap: Gap) -> str:
    verdict = f"{gap.coverage_status} the {_target_words()} target"
    return f"{gap.coverage:.1f}× the remaining quota, {verdict}"


def _rate_words(gap: Gap) -> str:
    if gap.win_rate is None:
        return "the pipeline's weighted probability (no closed deal to learn a win rate from)"
    return f"the {pct(gap.win_rate)} win rate of the past year"


def _process_cells(gap: Gap | None) -> str:
    needed = {t.activity: t.needed for t in gap.process} if gap is not None else {}
    return "".join(
        f"<td class='r num' data-label='{_e(word)} needed'>"
        + (f"{value:.0f}" if (value := needed.get(kind)) is not None else "n/a")
        + "</td>"
        for kind, word in ACTIVITY_WORDS.items()
    )


def _target_row(owner: str, gap: Gap | None) -> str:
    if gap is None:
        cells = "<td colspan='5' class='muted'>no quota</td>"
    else:
        cells = (
            f"<td class='r num'>{pct(gap.win_rate) if gap.win_rate is not None else 'n/a'}</td>"
            "<td class='r num'>"
            + (money(gap.average_deal_size) if gap.average_deal_size is not None else "n/a")
            + f"</td><td class='r num'>{gap.won_deals_needed:.1f}</td>"
            f"<td class='r num'>{gap.deals_needed:.1f}</td>"
            + (
                "<td class='r num'>quota met</td>"
                if gap.remaining_quota == 0
                else f"<td class='r num' data-coverage='{_e(gap.coverage_status)}'>"
                f"{gap.coverage:.1f}× <span class='muted small'>({_e(gap.coverage_status)}"
                " target)</span></td>"
            )
        )
    return (
        f'<tr data-target-owner="{_e(owner)}"><th scope="row">{_e(owner)}</th>{cells}'
        f"{_process_cells(gap)}</tr>"
    )


def _targets_table(view: ManagerView) -> str:
    return _targets_of(
        _target_row("Team", view.coverage)
        + "".join(_target_row(r.owner_id, r.gap) for r in view.reps)
    )


def _targets_of(rows: str) -> str:
    """The target decomposition's table around `rows` (`_target_row`s), with its key."""
    activities = "".join(
        f'<th scope="col" class="r">{_e(word)} needed</th>' for word in ACTIVITY_WORDS.values()
    )
    return f"""<div class="table-wrap" data-testid="targets"><table>
<caption>What the remaining quota takes, at each one's own record</caption>
<thead><tr><th scope="col">Who</th><th scope="col" class="r">Win rate</th>
<th scope="col" class="r">Avg won deal</th><th scope="col" class="r">Won deals needed</th>
<th scope="col" class="r">Deals needed</th><th scope="col" class="r">Coverage</th>
{activities}</tr></thead><tbody>{rows}</tbody></table></div>
<p class="small muted">Win rate and average won deal: the deals closed in the year before this
page's date (a rep's pulled toward the team's while it has few). Won deals needed = remaining
quota / average won deal; deals needed = won deals needed / win rate. Meetings, calls and
proposals needed: won deals needed × how many of each were logged per deal won in that year.
Coverage: pipeline closing this quarter / remaining quota, against the
{_target_words()} target.</p>"""


def _coverage_section(view: ManagerView) -> str:
    return _coverage_block(
        view.coverage,
        view.attainment,
        open_pipeline=sum(r.open_pipeline for r in view.reps),
        targets=_targets_table(view),
    )


def _coverage_block(
    c: Gap | None, a: AttainmentResult | None, *, open_pipeline: float, targets: str
) -> str:
    """The gap to the quota and what covers it, then `targets` (`_targets_of`)."""
    if c is None or a is None:
        body = (
            "<p>Without a quota there is no gap to cover. Open pipeline: "
            f"<span class=num>{money(open_pipeline)}</span>.</p>"
        )
    elif c.remaining_quota == 0:
        body = (
            f"<p>The quota is met; {money(c.pipeline_in_period)} of pipeline still closes "
            "this quarter.</p>" + targets
        )
    else:
        rate = _rate_words(c)
        verdict = (
            f"{money(c.still_needed)} more pipeline closing this quarter is needed"
            if c.still_needed > 0
            else "the pipeline closing this quarter covers what is needed"
        )
        body = f"""<p>{_e(f"At {rate}, {verdict}.")}</p>
<dl class="facts">
<dt>Remaining quota</dt><dd class=num>{money(c.remaining_quota)}</dd>
<dt>Pipeline closing this quarter</dt><dd><span class=num>{money(c.pipeline_in_period)}</span>
 (<span data-testid="coverage-ratio">{_e(_coverage_words(c))}</span>)</dd>
<dt>Won deals needed</dt><dd class=num>{c.won_deals_needed:.1f}
 (at an average won deal of {money(c.average_deal_size or 0.0)})</dd>
<dt>Pipeline needed at {_e(rate)}</dt><dd class=num>{money(c.pipeline_needed)}
 (about {c.deals_needed:.0f} deals)</dd>
<dt>Still needed</dt><dd class=num data-testid="still-needed">{money(c.still_needed)}</dd>
<dt>All open pipeline, any close date</dt><dd class=num>{money(c.open_pipeline)}</dd>
</dl>
<p class="small muted">The model's reading: {_e(a.status_reason)}</p>
{targets}"""
    return f"""<section id="coverage" data-testid="coverage" aria-labelledby="coverage-h">
<h2 id="coverage-h">Coverage and pipeline needed</h2>
{body}
</section>"""


def _rep_row(rep: RepSummary, href: str | None = None) -> str:
    """A rep's row of the team's table; `href`: the rep's page, linked from the rep's name."""
    a = rep.attainment
    status = a.status if a is not None else "none"
    chance = (
        f"{pct(a.p_attain)} <span class='muted small'>({pct(a.p_attain_low)}–"
        f"{pct(a.p_attain_high)})</span>"
        if a is not None
        else "n/a"
    )
    return (
        f'<tr data-owner="{_e(rep.owner_id)}"><th scope="row">{_rep_name(rep.owner_id, href)}</th>'
        f"<td>{_badge(status)}</td><td class='r num'>{chance}</td>"
        f"<td class='r num'>{money(rep.quota) if rep.quota else 'not set'}</td>"
        f"<td class='r num'>{money(rep.won_to_date)}</td>"
        f"<td class='r num'>{money(rep.forecast)}</td>"
        f"<td class='r num'>{rep.open_deals}</td><td class='r num'>{rep.at_risk_deals}</td>"
        f"<td class='r num' data-label='Commit hit rate'>{_commit_cell(rep)}</td></tr>"
    )


def _commit_cell(rep: RepSummary) -> str:
    """The rep's Commit hit rate and the closed Commit deals it rests on."""
    if rep.commit_hit_rate is None:
        return "n/a"
    basis = "none closed yet: the team's" if rep.commit_deals == 0 else f"{rep.commit_deals} closed"
    return f"{pct(rep.commit_hit_rate)} <span class='muted small'>({basis})</span>"


def _rep_name(owner_id: str, href: str | None) -> str:
    return f'<a href="{_e(href)}">{_e(owner_id)}</a>' if href else _e(owner_id)


def _at(as_of: pd.Timestamp) -> str:
    """The query that pins a linked page to this page's time, so both show one quarter."""
    return f"?as_of={quote(as_of.isoformat(), safe='')}"


def rep_page_href(owner_id: str, as_of: pd.Timestamp) -> str:
    """The rep's page, relative to the team's page (`/v1/teams/{team}/page`)."""
    return f"reps/{quote(owner_id, safe='')}/page{_at(as_of)}"


def team_page_href(as_of: pd.Timestamp) -> str:
    """The team's page, relative to a rep's page (`/v1/teams/{team}/reps/{owner_id}/page`)."""
    return f"../../page{_at(as_of)}"


def _reps_section(view: ManagerView, *, rep_pages: bool = False) -> str:
    order = sorted(
        view.reps,
        key=lambda r: (r.attainment.p_attain if r.attainment else 2.0, r.owner_id),
    )
    rows = "".join(
        _rep_row(r, rep_page_href(r.owner_id, view.as_of) if rep_pages else None) for r in order
    )
    team_commit = (
        f" <span class='muted small'>(team {pct(view.team_commit_hit_rate)})</span>"
        if view.team_commit_hit_rate is not None
        else ""
    )
    return f"""<section id="reps" data-testid="reps" aria-labelledby="reps-h">
<h2 id="reps-h">Reps</h2>
<p class="small muted">Least likely to reach quota first. A rep's chance counts its own open
deals and its share of the team's new business (deals not yet created), the share being the
rep's part of the deals the team created in the past year.</p>
<div class="table-wrap"><table><caption>Reps of {_e(view.team)}, {_e(view.period)}</caption>
<thead><tr><th scope="col">Rep</th><th scope="col">Status</th>
<th scope="col" class="r">Chance of quota</th><th scope="col" class="r">Quota</th>
<th scope="col" class="r">Won</th><th scope="col" class="r">Forecast</th>
<th scope="col" class="r">Open deals</th><th scope="col" class="r">Flagged</th>
<th scope="col" class="r">Commit hit rate{team_commit}</th></tr></thead>
<tbody>{rows}</tbody></table></div>
<p class="small muted">Commit hit rate: how often the rep's deals called Commit were won, among
those closed before this page's date, pulled toward the team's rate while the rep has few.</p>
</section>"""


def _deal_card(rank: int, deal: AtRiskDeal) -> str:
    low, high = deal.win_in_period_interval
    interval = f" ({pct(low)}–{pct(high)})" if pct(low) != pct(high) else ""
    category = f" · {deal.forecast_category}" if deal.forecast_category else ""
    # Only a rep's page lists deals without a flag (the team page lists flagged deals).
    reasons = (
        f"<h4>Why it is flagged</h4><ul>{_items(deal.reasons)}</ul>"
        if deal.reasons
        else "<h4>Risk</h4><p class='muted'>Not flagged.</p>"
    )
    drivers = "".join(
        f'<li data-direction="{_e(d.direction)}"><span class="dir dir-{_e(d.direction)}" '
        f'aria-hidden="true">{"▼" if d.direction == "lowers" else "▲"}</span> '
        f"{_e(d.sentence)}</li>"
        for d in deal.drivers
    )
    actions = (
        "<ol>"
        + "".join(
            f"<li>{_e(a.text)} <span class='muted small'>"
            f"({_e(_points(a.delta_probability))} win probability"
            + (
                f", about {_e(money(a.expected_value))} in expected value"
                if math.isfinite(a.expected_value)
                else ""
            )
            + ")</span></li>"
            for a in deal.actions
        )
        + "</ol>"
        if deal.actions
        else "<p class='muted'>No action in the catalogue raised this deal's odds when it was "
        "re-scored; review it with the rep.</p>"
    )
    trend = f"<p class='small'>{_e(deal.trend)}</p>" if deal.trend else ""
    warnings = (
        f"<p class='small muted'>Note: {_e('; '.join(deal.warnings))}</p>" if deal.warnings else ""
    )
    opportunity = _e(deal.opportunity_id)
    return f"""<li class="deal" data-testid="at-risk-deal" data-opportunity="{opportunity}">
<h3><span>{rank}. {opportunity}</span>
<span class="num muted">{money(deal.amount)}</span></h3>
<p class="small muted">{_e(deal.owner_id)} · {_e(deal.stage)}{_e(category)} · closes
{_e(_day(deal.close_date))} · <span class="risk-{_e(deal.risk_level)}">{_e(deal.risk_level)}
risk</span></p>
<p>Chance to win this quarter <strong class="num">{pct(deal.win_in_period_probability)}</strong>
{_e(interval)} · value at risk <strong class="num">{money(deal.value_at_risk)}</strong></p>
{reasons}
<h4>What drives its odds</h4><ul data-testid="drivers">{drivers}</ul>{trend}
<h4>Next actions</h4><div data-testid="actions">{actions}</div>{warnings}
</li>"""


def _points(delta: float) -> str:
    return f"{'+' if delta >= 0 else '−'}{abs(100 * delta):.1f} points"


def _items(texts: Iterable[str]) -> str:
    return "".join(f"<li>{_e(t)}</li>" for t in texts)


def _at_risk_section(view: ManagerView) -> str:
    shown = len(view.at_risk)
    if not view.at_risk_count:
        body = "<p>No open deal is flagged.</p>"
    else:
        rest = view.at_risk_count - shown
        more = f"; the other {rest} carry less" if rest > 0 else ""
        body = (
            f"<p>{view.at_risk_count} open deals are flagged, carrying "
            f"<span class=num>{money(view.at_risk_value)}</span> of the forecast "
            f"(amount × chance to win this quarter). Below are the {shown} with the most at "
            f"stake{more}.</p>"
            f'<ol class="deals">{"".join(_deal_card(i + 1, d) for i, d in enumerate(view.at_risk))}'
            f"</ol><p class='small muted'>{_e(view.actions_disclaimer)}</p>"
        )
    return f"""<section id="at-risk" data-testid="at-risk" aria-labelledby="at-risk-h">
<h2 id="at-risk-h">At-risk deals</h2>
{body}
</section>"""


def _change_table(kind: str, items: Sequence[DealChange]) -> str:
    shown = items[:CHANGES_LISTED]
    rows = "".join(
        f"<tr><th scope=row>{_e(c.opportunity_id)}</th>"
        f"<td class='r num' data-label='Amount'>{money(c.amount)}</td>"
        f"<td class='text' data-label='What happened'>{_e(c.detail)}</td>"
        f"<td data-label='Rep'>{_e(c.owner_id)}</td><td data-label='Stage'>{_e(c.stage)}</td>"
        "</tr>"
        for c in shown
    )
    more = (
        f"<p class='small muted'>and {len(items) - len(shown)} more, smaller.</p>"
        if len(items) > len(shown)
        else ""
    )
    title = CHANGE_TITLES[kind]
    if not items:
        return f"<h3>{_e(title)}</h3><p class='muted'>None.</p>"
    return f"""<h3>{_e(title)}</h3><div class="table-wrap">
<table class="stack" data-change="{_e(kind)}">
<thead><tr><th scope="col">Deal</th><th scope="col" class="r">Amount</th>
<th scope="col">What happened</th><th scope="col">Rep</th><th scope="col">Stage</th></tr>
</thead>
<tbody>{rows}</tbody></table></div>{more}"""


def _changes_section(view: ManagerView) -> str:
    changes = view.changes.by_kind()
    chips = "".join(
        f'<li data-kind="{_e(kind)}"><strong class=num>{len(items)}</strong> '
        f"{_e(CHANGE_TITLES[kind].lower())} "
        f"<span class='muted num'>({money(sum(c.amount for c in items))})</span></li>"
        for kind, items in changes.items()
    )
    tables = "".join(_change_table(kind, items) for kind, items in changes.items())
    days = (view.changes.until - view.changes.since) / pd.Timedelta(days=1)
    return f"""<section id="changes" data-testid="changes" aria-labelledby="changes-h">
<h2 id="changes-h">What changed since last week</h2>
<p class="small muted">The {days:.0f} days from {_e(_day(view.changes.since))} to
{_e(_day(view.changes.until))}. Pushed and pulled-in deals moved their close date across
the end of the quarter.</p>
<ul class="chips">{chips}</ul>
{tables}
</section>"""


MOVE_WORDS = {
    "new": "new deal",
    "won": "won",
    "lost": "lost",
    "pushed": "pushed out of the quarter",
    "pulled_in": "pulled into the quarter",
    "amount": "amount changed",
    "probability": "chance changed",
}


def _review_line(who: str, review: ForecastReview) -> str:
    flag = (
        "<strong class='flag'>Review:</strong> " + _e("; ".join(review.reasons)) + "."
        if review.flagged
        else "Within ±15% of the previous forecast and of the quota."
    )
    if review.previous_as_of is None or review.change is None:
        since = "No earlier forecast of this quarter is kept."
    else:
        share = "" if review.change_share is None else f" ({review.change_share:+.0%})"
        since = (
            f"{_signed(review.change)}{share} since the forecast as of "
            f"{_e(_day(review.previous_as_of))}."
        )
    return (
        f"<li data-owner='{_e(who)}' data-flagged='{str(review.flagged).lower()}'>"
        f"<strong>{_e(who)}</strong>: {since} {flag}</li>"
    )


def _moves_table(review: ForecastReview) -> str:
    if not review.deals:
        return ""
    rows = "".join(
        f"<tr><th scope=row>{_e(m.opportunity_id)}</th>"
        f"<td data-label='What happened'>{_e(MOVE_WORDS[m.kind])}</td>"
        f"<td class='r num' data-label='Counted then'>{money(m.before)}</td>"
        f"<td class='r num' data-label='Counted now'>{money(m.after)}</td>"
        f"<td class='r num' data-label='Change'>{_signed(m.change)}</td></tr>"
        for m in review.deals
    )
    more = review.deals_moved - len(review.deals)
    nb = review.new_business_change
    tail = (
        f"<p class='small muted'>New business not yet created: {_signed(nb)}."
        + (f" And {more} more deals, smaller." if more > 0 else "")
        + "</p>"
        if nb is not None
        else ""
    )
    return f"""<h3>The deals that moved it most</h3><div class="table-wrap">
<table class="stack" data-testid="review-deals">
<thead><tr><th scope="col">Deal</th><th scope="col">What happened</th>
<th scope="col" class="r">Counted then</th><th scope="col" class="r">Counted now</th>
<th scope="col" class="r">Change</th></tr></thead>
<tbody>{rows}</tbody></table></div>{tail}"""


def _review_section(view: ManagerView) -> str:
    if view.review is None:
        return ""
    lines = [_review_line(f"Team {view.team}", view.review)] + [
        _review_line(rep.owner_id, rep.review)
        for rep in view.reps
        if rep.review is not None and rep.review.flagged
    ]
    return f"""<section id="review" data-testid="forecast-review" aria-labelledby="review-h">
<h2 id="review-h">Since the last forecast</h2>
<p class="small muted">Each forecast is kept; a forecast that moved more than 15% since the
previous one of this quarter, or lies more than 15% from its quota, is flagged for review.
Reps are listed when flagged.</p>
<ul>{"".join(lines)}</ul>
{_moves_table(view.review)}
</section>"""


def _last_quarter_section(view: ManagerView) -> str:
    outcome = view.last_quarter
    if outcome is None:
        return ""
    whose = f"the team's {outcome.n_deals}" if outcome.team else f"all teams' {outcome.n_deals}"
    status = "" if outcome.complete else " (the quarter is not over: outcomes still coming)"
    opening = ""
    if outcome.first_week is not None:
        pending = outcome.first_week_deals - outcome.first_week_won
        opening = (
            f"<p>In week {outcome.first_week}, the model expected "
            f"<b>{outcome.first_week_expected:.1f}</b> of the {outcome.first_week_deals} open "
            f"deals to be won within the quarter; <b>{outcome.first_week_won}</b> were"
            f"{'' if outcome.complete else f' so far ({pending} not won yet)'}.</p>"
        )
    briers = sorted(
        ((name, value) for name, value in outcome.brier.items() if value is not None),
        key=lambda item: item[1],
    )
    rows = "".join(
        f'<tr><th scope="row">{_e(FORECAST_LABELS.get(name, name))}</th>'
        f'<td class="r">{value:.3f}</td></tr>'
        for name, value in briers
    )
    table = (
        f"""<table><thead><tr><th scope="col">Forecast</th>
<th scope="col" class="r">Brier score (lower is better)</th></tr></thead>
<tbody>{rows}</tbody></table>"""
        if rows
        else "<p>No outcome is known yet.</p>"
    )
    return f"""<section id="last-quarter" data-testid="last-quarter"
aria-labelledby="last-quarter-h">
<h2 id="last-quarter-h">Last quarter: forecast vs what happened</h2>
<p class="small muted">{_e(outcome.period)}{_e(status)}: {outcome.n_predictions} forecasts of
{_e(whose)} deals, {outcome.n_known} with a known outcome and {outcome.n_pending} pending
(not counted as lost). Judged by <code>dealcast monitor</code> on
{_e(outcome.generated_at[:10])}, models {_e(", ".join(outcome.versions))}.</p>
{opening}{table}
</section>"""


def _footer(view: QuarterPage) -> str:
    mode = view.model.mode
    notes = [
        "Chance of reaching quota: the share of simulated quarters in which closed-won revenue "
        "reaches the quota; deals win with their calibrated probability of closing this quarter "
        "and move together through a shared factor fitted in past quarters; new deals not yet "
        "created are drawn from the team's history. The range beside it puts every deal at the "
        "low or high end of its probability interval.",
        "Status: on track from 70%, off track below 40%, at risk in between.",
        "Stage weight (CRM) and Commit are the forecasts sales teams already use; the model is "
        "promoted only if it beats them on the same backtest.",
        "At risk: deals with a risk flag, ordered by amount × chance to win this quarter.",
        "Drivers are the model's own attributions in words; next actions are estimated by "
        "re-scoring the deal with the action done.",
    ]
    if mode == "baseline":
        notes.append(
            "Mode baseline: no model has passed the promotion gate yet, so every deal's chance "
            "is its stage's historical win rate (the empirical stage weight) and its range the "
            "uncertainty of that rate; the only driver shown is the stage and no next action is "
            "proposed. The first model that beats the baselines replaces it."
        )
    if mode == "small-data":
        notes.append(
            "The model runs in small-data mode: few resolved deals to learn from, so "
            "probabilities lean on stage win rates and intervals are wide."
        )
    return f"""<footer><h2>How to read this page</h2><ul>{_items(notes)}</ul>
<p>Generated by dealcast at {_e(view.as_of.strftime("%Y-%m-%d %H:%M UTC"))} data time.</p>
</footer>"""


def forecast_data(view: ManagerView) -> str:
    """The forecast route's JSON as a data block: `<`, `>` and `&` as JSON escapes, so that
    nothing in it can end the element or read as markup."""
    text = (
        view.forecast_json.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    )
    return f'<script type="application/json" id="{FORECAST_JSON_ID}">{text}</script>'


def render_manager_page(view: ManagerView, *, rep_pages: bool = False) -> str:
    """The whole page: one HTML string with no external reference. `rep_pages`: link each
    rep's name to the rep's page (relative links, for the service, which serves those pages;
    a file written alone has none to link to)."""
    title = f"{view.team} · {view.period} · dealcast"
    body = "\n".join(
        (
            _header(view),
            _status_section(view),
            _outlook_section(view),
            _forecasts_section(view),
            _coverage_section(view),
            _reps_section(view, rep_pages=rep_pages),
            _at_risk_section(view),
            _review_section(view),
            _last_quarter_section(view),
            _changes_section(view),
            _footer(view),
        )
    )
    return _document(title, body, forecast_data(view))


def _document(title: str, body: str, after: str = "") -> str:
    """A page's whole document: `body` in the main element, `after` (data) behind it."""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light">
<title>{_e(title)}</title>
<style>{CSS}</style>
</head>
<body>
<main>
{body}
</main>
{after}
</body>
</html>
"""


# --------------------------------------------------------------------------- a rep's page


def _rep_header(view: RepView) -> str:
    return f"""<header>
<p class="eyebrow">dealcast · rep's page</p>
<p class="meta"><a href="{_e(team_page_href(view.as_of))}" data-testid="team-link">←
{_e(view.team)}'s page</a></p>
<h1 data-testid="title">{_e(view.owner_id)} · {_e(view.team)} · {_e(view.period)}</h1>
{_meta(view)}
</header>"""


def _commit_section(view: RepView) -> str:
    rep = view.rep
    team = (
        f" The team's rate is {pct(view.team_commit_hit_rate)}."
        if view.team_commit_hit_rate is not None
        else ""
    )
    if rep.commit_hit_rate is None:
        reading = "No Commit call of this rep or the team has closed yet, so there is no rate."
    elif rep.commit_deals == 0:
        reading = (
            f"None of {rep.owner_id}'s Commit calls has closed yet: the rate is the team's, "
            f"{pct(rep.commit_hit_rate)}."
        )
    else:
        reading = (
            f"{rep.owner_id}'s deals called Commit were won at {pct(rep.commit_hit_rate)}, "
            f"over {rep.commit_deals} closed Commit deals.{team}"
        )
    return f"""<section id="commit" data-testid="commit" aria-labelledby="commit-h">
<h2 id="commit-h">Commit calls</h2>
<p data-testid="commit-reading">{_e(reading)}</p>
<p class="small muted">Commit hit rate: how often the rep's deals called Commit were won, among
those closed before this page's date, pulled toward the team's rate while the rep has few: the
rate the model's commit-reliability features read.</p>
</section>"""


def _rep_coverage_section(view: RepView) -> str:
    rep = view.rep
    return _coverage_block(
        rep.gap,
        rep.attainment,
        open_pipeline=rep.open_pipeline,
        targets=_targets_of(_target_row(rep.owner_id, rep.gap)),
    )


def _deals_section(view: RepView) -> str:
    if not view.deals:
        body = f"<p>{_e(view.owner_id)} has no open deal.</p>"
    else:
        flagged = (
            f"{view.at_risk_count} of them flagged, carrying "
            f"<span class=num>{money(view.at_risk_value)}</span> of the forecast"
            if view.at_risk_count
            else "none of them flagged"
        )
        cards = "".join(_deal_card(i + 1, d) for i, d in enumerate(view.deals))
        body = (
            f"<p>{len(view.deals)} open deals, {flagged}. All of them below, the most at stake "
            "first (amount × chance to win this quarter).</p>"
            f'<ol class="deals">{cards}</ol>'
            f"<p class='small muted'>{_e(view.actions_disclaimer)}</p>"
        )
    return f"""<section id="deals" data-testid="deals" aria-labelledby="deals-h">
<h2 id="deals-h">Open deals</h2>
{body}
</section>"""


def _rep_review_section(view: RepView) -> str:
    review = view.review
    if review is None:
        return ""
    return f"""<section id="review" data-testid="forecast-review" aria-labelledby="review-h">
<h2 id="review-h">Since the last forecast</h2>
<p class="small muted">Each forecast is kept; a forecast that moved more than 15% since the
previous one of this quarter, or lies more than 15% from its quota, is flagged for review.</p>
<ul>{_review_line(view.owner_id, review)}</ul>
{_moves_table(review)}
</section>"""


def render_rep_page(view: RepView) -> str:
    """A rep's page: one HTML string with no external reference, linking back to the team's
    page (relative, as the service serves both)."""
    title = f"{view.owner_id} · {view.team} · {view.period} · dealcast"
    body = "\n".join(
        (
            _rep_header(view),
            _status_block(view, sentence=rep_status_sentence(view), record=""),
            _forecasts_section(view),
            _rep_coverage_section(view),
            _commit_section(view),
            _deals_section(view),
            _rep_review_section(view),
            _footer(view),
        )
    )
    return _document(title, body)
