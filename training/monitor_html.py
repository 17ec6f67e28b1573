"""`monitor.html`: the monitor report as one self-contained page (inline CSS and SVG)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from models.monitor_summary import FILE_NAME, published_path

HTML_FILE = "monitor.html"
COLOURS = ("#1f5fa8", "#c0392b", "#27874a", "#8e44ad", "#b9770e")
_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:72rem;color:#222;padding:0 1rem}
table{border-collapse:collapse;margin:.5rem 0 1rem}
td,th{border-bottom:1px solid #ddd;padding:.25rem .6rem;text-align:right}
th:first-child,td:first-child{text-align:left}
.major{color:#c0392b;font-weight:600}.moderate{color:#b9770e}.stable{color:#27874a}
figure{display:inline-block;margin:0 1rem 1rem 0}figcaption{font-size:.85rem}
"""


def _number(value: object, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return escape(str(value))


def reliability_svg(curves: Mapping[str, Sequence[Mapping[str, float]]], *, title: str) -> str:
    """Predicted against observed rate per bin, one line per forecaster, the diagonal grey."""
    size, pad = 260, 30
    span = size - 2 * pad

    def xy(p: float, o: float) -> str:
        return f"{pad + p * span:.1f},{size - pad - o * span:.1f}"

    lines = [
        f'<line x1="{pad}" y1="{size - pad}" x2="{size - pad}" y2="{pad}" stroke="#bbb"/>',
        f'<rect x="{pad}" y="{pad}" width="{span}" height="{span}" fill="none" stroke="#999"/>',
        f'<text x="{size / 2}" y="{size - 5}" font-size="11" text-anchor="middle">predicted</text>',
        f'<text x="10" y="{size / 2}" font-size="11" transform="rotate(-90 10 {size / 2})" '
        'text-anchor="middle">observed</text>',
    ]
    legend = []
    for k, (name, points) in enumerate(curves.items()):
        colour = COLOURS[k % len(COLOURS)]
        if points:
            path = " ".join(xy(pt["predicted"], pt["observed"]) for pt in points)
            lines.append(f'<polyline points="{path}" fill="none" stroke="{colour}"/>')
            lines += [
                f'<circle cx="{xy(pt["predicted"], pt["observed"]).split(",")[0]}" '
                f'cy="{xy(pt["predicted"], pt["observed"]).split(",")[1]}" r="2.5" '
                f'fill="{colour}"/>'
                for pt in points
            ]
        legend.append(f'<span style="color:{colour}">&#9632; {escape(name)}</span>')
    return (
        f'<figure><svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
        f'role="img" aria-label="{escape(title)}">{"".join(lines)}</svg>'
        f"<figcaption>{escape(title)}<br>{' '.join(legend)}</figcaption></figure>"
    )


def _target_section(target: str, block: Mapping[str, Any]) -> str:
    forecasters = block["forecasters"]
    rows = "".join(
        f"<tr><td>{escape(name)}</td>"
        + "".join(
            f"<td>{_number(judged['overall'][m])}</td>" for m in ("brier", "log_loss", "auc", "ece")
        )
        + f"<td>{judged['overall']['n']}</td></tr>"
        for name, judged in forecasters.items()
    )
    weeks = sorted(forecasters["model"]["by_week"], key=int)
    week_rows = "".join(
        f"<tr><td>week {w}</td>"
        + "".join(
            f"<td>{_number(judged['by_week'][w]['brier'])}</td>" for judged in forecasters.values()
        )
        + f"<td>{forecasters['model']['by_week'][w]['n']}</td>"
        f"<td>{block['pending_by_week'].get(w, 0)}</td></tr>"
        for w in weeks
    )
    heads = "".join(f"<th>{escape(name)}</th>" for name in forecasters)
    plot = reliability_svg(
        {name: judged["reliability"] for name, judged in forecasters.items()},
        title=f"reliability of {target} ({block['horizon']})",
    )
    return f"""<h3>{escape(target)} <small>(horizon {escape(block["horizon"])})</small></h3>
<p>{block["n_predictions"]} predictions: {block["n_known"]} with a known outcome,
{block["n_pending"]} pending (not scored as losses).</p>
<table><tr><th>forecaster</th><th>Brier</th><th>log loss</th><th>AUC</th><th>ECE</th><th>n</th>
</tr>{rows}</table>
<table><caption>Brier score by week of quarter</caption>
<tr><th>week of quarter</th>{heads}<th>n known</th><th>pending</th></tr>{week_rows}</table>
{plot}"""


def _drift_section(drift: Mapping[str, Any]) -> str:
    if not drift["available"]:
        return f"<h3>Drift</h3><p>Drift is unavailable: {escape(drift['reason'])}.</p>"
    recent = drift["recent"]
    rows = "".join(
        f"<tr><td>{escape(d['feature'])}</td><td>{escape(d['kind'])}</td>"
        f'<td class="{d["stability"]}">{_number(d["psi"], 3)}</td>'
        f'<td class="{d["stability"]}">{d["stability"]}</td><td>{d["n"]}</td></tr>'
        for d in drift["features"]
    )
    worst = ", ".join(escape(name) for name in drift["worst"]) or "none"
    return f"""<h3>Drift</h3>
<p>Features of the {recent["n"]} predictions from {escape(recent["from"][:10])} to
{escape(recent["to"][:10])} (the last {recent["days"]} days logged) against the training
window ({drift["n_training_snapshots"]} snapshots). Worst: <b>{worst}</b>; shifted (PSI &ge; 0.1):
{len(drift["shifted"])}.</p>
<table><tr><th>feature</th><th>kind</th><th>PSI</th><th>reading</th><th>n</th></tr>{rows}</table>"""


def render_monitor_html(report: Mapping[str, Any]) -> str:
    data, predictions = report["data"], report["predictions"]
    sections = []
    for label, version in report["versions"].items():
        targets = "".join(
            _target_section(target, block) for target, block in version["targets"].items()
        )
        sections.append(
            f"""<section><h2>Model {escape(label)} <small>({", ".join(version["modes"])})</small>
</h2><p>{version["n_predictions"]} predictions of {version["n_deals"]} deals, as of
{escape(version["as_of"]["first"][:10])} to {escape(version["as_of"]["last"][:10])}.</p>
{targets}{_drift_section(version["drift"])}</section>"""
        )
    examples = escape(", ".join(predictions["unmatched_examples"]))
    unmatched = (
        f"<p>{predictions['unmatched']} logged predictions of {predictions['unmatched_deals']} "
        f"deals the export does not hold (e.g. {examples}) are judged by nothing.</p>"
        if predictions["unmatched"]
        else ""
    )
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>dealcast monitor: forecasts against what happened</title><style>{_STYLE}</style></head>
<body><h1>Forecasts against what happened</h1>
<p>{predictions["n"]} logged predictions judged against the export
{escape(str(data["source"]))} (known to {escape(data["known_at"])}), generated
{escape(report["generated_at"])}. Metrics are over the known outcomes, weighted for the pending
ones as the backtest's horizon figures are; the baselines are judged on the same predictions.</p>
{unmatched}{"".join(sections)}
<script type="application/json" id="monitor-data">{escape(json.dumps(report))}</script>
</body></html>"""


def write_monitor_report(
    report: Mapping[str, Any], out: Path, *, data_dir: Path | None = None
) -> list[Path]:
    """`OUT/monitor.json` and `OUT/monitor.html`; with `data_dir`, the JSON is also published
    beside that export, where the manager's page finds it (models.monitor_summary)."""
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_finite(report), indent=2, allow_nan=False, default=_plain)
    files = [out / FILE_NAME, out / HTML_FILE]
    files[0].write_text(text, encoding="utf-8")
    files[1].write_text(render_monitor_html(json.loads(text)), encoding="utf-8")
    if data_dir is not None:
        published = published_path(data_dir)
        published.parent.mkdir(parents=True, exist_ok=True)
        partial = published.with_suffix(".json.tmp")
        partial.write_text(text, encoding="utf-8")
        partial.replace(published)
    return files


def _finite(value: Any) -> Any:
    """NaN (a figure with nothing behind it) as null: JSON has no NaN."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _plain(value: object) -> object:
    if hasattr(value, "item"):
        return value.item()  # a numpy scalar
    raise TypeError(f"{type(value).__name__} is not JSON")
