"""The backtest report on disk: metrics.json (the spec's stable shape), plots and tables.

- `metrics.json`: see ../shared/spec/evaluation.md; extra keys (by_stage, censoring,
  attainment, training) are additions, never renames.
- `reliability_won.png`, `reliability_won_in_period.png`: predicted against observed rate
  per equal-count bin, one line per forecaster.
- `period_forecast.png`: each forecaster's team-quarter revenue forecast against the actual,
  by week of quarter.
- `attainment_coverage.png`: the model's P10-P90 interval of each team-quarter and week
  against the actual revenue.
- `by_stage.csv`, `by_week.csv`: deal-level metrics per forecaster and target;
  `periods.csv`: every team-quarter x week with forecasts, actuals and attainment;
  `risk_flags.csv`: each risk flag's lift (loss rate flagged / not flagged) per fold and
  pooled.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from training.backtest import BacktestResult
from training.metrics import reliability

TARGETS = {"deal": ("won", "p_"), "deal_in_period": ("won_in_period", "pin_")}


def _json_ready(value: Any) -> Any:
    """NaN and infinities are not JSON: they become null."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_metrics(metrics: dict[str, Any], path: Path) -> Path:
    path.write_text(
        json.dumps(_json_ready(metrics), indent=2, sort_keys=False) + "\n", encoding="utf-8"
    )
    return path


def _reliability_plot(result: BacktestResult, target: str, prefix: str, path: Path) -> Path:
    predictions = result.predictions
    y = predictions[target].to_numpy(dtype=np.float64)
    known = ~np.isnan(y)
    fig = Figure(figsize=(6, 6))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
    for name in result.forecasters:
        points = reliability(predictions[f"{prefix}{name}"].to_numpy()[known], y[known])
        ax.plot(
            [p["predicted"] for p in points],
            [p["observed"] for p in points],
            marker="o",
            label=name,
        )
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed rate")
    ax.set_title(f"Reliability, {target} ({int(known.sum())} snapshots, 15 equal-count bins)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def _period_plot(result: BacktestResult, path: Path) -> Path:
    periods = result.periods
    weeks = sorted(periods["week"].unique())
    fig = Figure(figsize=(4 * len(weeks), 4))
    axes = fig.subplots(1, len(weeks), sharey=True)
    for ax, week in zip(np.atleast_1d(axes), weeks, strict=True):
        rows = periods[periods["week"] == week]
        top = float(max(rows["actual"].max(), 1.0))
        ax.plot([0, top], [0, top], color="grey", linestyle=":")
        for name in result.forecasters:
            ax.scatter(rows["actual"], rows[f"forecast_{name}"], s=12, label=name)
        ax.set_title(f"week {week}")
        ax.set_xlabel("actual closed-won revenue")
    np.atleast_1d(axes)[0].set_ylabel("forecast")
    np.atleast_1d(axes)[-1].legend()
    fig.suptitle("Team-quarter revenue: forecast against actual")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def _coverage_plot(result: BacktestResult, path: Path) -> Path:
    rows = result.periods.dropna(subset=["p10", "p90"]).reset_index(drop=True)
    rows = rows.sort_values(["week", "actual"]).reset_index(drop=True)
    inside = (rows["p10"] <= rows["actual"]) & (rows["actual"] <= rows["p90"])
    fig = Figure(figsize=(10, 4))
    ax = fig.subplots()
    x = np.arange(len(rows))
    ax.vlines(x, rows["p10"], rows["p90"], color="tab:blue", alpha=0.6, label="P10-P90")
    ax.scatter(x[inside], rows["actual"][inside], color="tab:green", s=10, label="actual, inside")
    ax.scatter(x[~inside], rows["actual"][~inside], color="tab:red", s=10, label="actual, outside")
    ax.set_title(
        f"Attainment interval coverage: {inside.mean():.0%} of {len(rows)} "
        "team-quarter-weeks (nominal 80%)"
    )
    ax.set_xlabel("team-quarter x week (sorted by week, then actual)")
    ax.set_ylabel("closed-won revenue")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def _tables(result: BacktestResult, out: Path) -> list[Path]:
    rows_stage, rows_week = [], []
    for block, (target, _) in TARGETS.items():
        for name, values in result.metrics[block].items():
            for stage, m in values["by_stage"].items():
                rows_stage.append({"target": target, "forecaster": name, "stage": stage, **m})
            for week, m in values["by_week"].items():
                rows_week.append({"target": target, "forecaster": name, "week": int(week), **m})
    paths = [out / "by_stage.csv", out / "by_week.csv", out / "periods.csv"]
    pd.DataFrame(rows_stage).to_csv(paths[0], index=False)
    pd.DataFrame(rows_week).to_csv(paths[1], index=False)
    result.periods.to_csv(paths[2], index=False)
    return paths


def write_report(result: BacktestResult, out: Path) -> list[Path]:
    """Write metrics.json, plots and tables into `out`; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    files = [write_metrics(result.metrics, out / "metrics.json")]
    for target, prefix in TARGETS.values():
        files.append(_reliability_plot(result, target, prefix, out / f"reliability_{target}.png"))
    files.append(_period_plot(result, out / "period_forecast.png"))
    files.append(_coverage_plot(result, out / "attainment_coverage.png"))
    files += _tables(result, out)
    files.append(_risk_table(result, out / "risk_flags.csv"))
    repairs = out / "repairs.csv"
    result.repairs.to_csv(repairs, index=False)
    return [*files, repairs]


def _risk_table(result: BacktestResult, path: Path) -> Path:
    """Each risk flag's lift per fold and pooled (`scope`), with the share of test snapshots
    flagged by the flags each fold's model raises."""
    block = result.metrics.get("risk_flags", {})
    scopes = {"pooled": block.get("pooled", {}), **block.get("by_fold", {})}
    rows = [
        {"scope": scope, "flag": code, **lift, "share_any_raised": values["share_flagged"]}
        for scope, values in scopes.items()
        for code, lift in values.get("flags", {}).items()
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path
