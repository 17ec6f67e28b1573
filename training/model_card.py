"""The model card logged with every run: what the model saw, how it did, where it is weak."""

from __future__ import annotations

from typing import Any

import numpy as np

from models.bundle import DealcastBundle
from models.win import WinModel
from training.gate import GateDecision

KNOWN_LIMITS = (
    "Probabilities are calibrated on the most recent window before the cut-off; a sudden "
    "change in the sales process (new stages, a new pricing model) makes them stale until "
    "the next retraining.",
    "Effects of next actions are associations learned from history, not causal effects: a "
    "deal that meets the decision maker may have been a better deal to begin with.",
    "Deals of owners, accounts or categories the model never saw get wider intervals; their "
    "point probabilities fall back to what similar deals did.",
    "`won` is trained only on snapshots a censoring horizon before the cut-off, so the very "
    "latest process changes reach it with that delay.",
)


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def top_drivers(bundle: DealcastBundle, *, count: int = 10) -> list[tuple[str, float]]:
    """Features by share of the won model's total gain (how much the trees lean on them)."""
    if not isinstance(bundle.model, WinModel):
        return []  # the baseline forecaster has no trees
    booster = bundle.model.won_.booster
    gain = np.asarray(booster.feature_importance(importance_type="gain"), dtype=np.float64)
    share = gain / gain.sum() if gain.sum() > 0 else gain
    names = booster.feature_name()
    order = np.argsort(-share)[:count]
    return [(names[i], float(share[i])) for i in order]


def model_card(bundle: DealcastBundle, metrics: dict[str, Any], gate: GateDecision) -> str:
    meta = bundle.metadata
    training = meta.get("training", {})
    lines = [
        f"# Model card: {meta.get('name', 'dealcast')}",
        "",
        "## Data",
        f"- window: {meta['data_window']['start']} to {meta['data_window']['end']}",
        f"- opportunities: {meta['n_opportunities']}; fingerprint `{meta['data_fingerprint']}`",
        f"- code version: {meta['code_version']}; trained at {meta['trained_at']}",
        f"- mode: {training.get('mode')} ({training.get('won_deals')} won, "
        f"{training.get('lost_deals')} lost deals resolved before the cut-off)",
        "",
        "## Backtest (" + ", ".join(metrics["data"]["test_quarters"]) + ")",
        "",
        "| target | forecaster | AUC | Brier | log loss | ECE | n |",
        "|---|---|---|---|---|---|---|",
    ]
    for block, target in (("deal", "won"), ("deal_in_period", "won_in_period")):
        for name, values in metrics[block].items():
            m = values["overall"]
            lines.append(
                f"| {target} | {name} | {_fmt(m['auc'])} | {_fmt(m['brier'])} | "
                f"{_fmt(m['log_loss'])} | {_fmt(m['ece'])} | {m['n']} |"
            )
    lines += [
        "",
        "| forecaster | median APE w1 | w4 | w8 | w12 | attainment Brier | 80% coverage |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, values in metrics["period"].items():
        weeks = [
            _fmt(values["by_week"].get(w, {}).get("median_ape")) for w in ("1", "4", "8", "12")
        ]
        lines.append(
            f"| {name} | " + " | ".join(weeks) + f" | {_fmt(values['attainment_brier'])}"
            f" | {_fmt(values['coverage_80'])} |"
        )
    lines += [
        "",
        "## Calibration",
        f"- won: {training.get('won_calibration')} on {training.get('won_rows_calibration')} "
        "snapshots later than the training window",
        f"- won_in_period: {training.get('in_period_calibration')} on "
        f"{training.get('in_period_rows_calibration')} snapshots of the last finished quarter",
        f"- attainment shared factor: {bundle.dependence:.2f} (fitted for 80% interval coverage)",
        "",
        "## Top drivers (share of the won model's gain)",
    ]
    lines += [f"- `{name}`: {share:.1%}" for name, share in top_drivers(bundle)]
    lines += ["", "## Promotion gate", f"- {gate.summary}", "", "## Known limits"]
    lines += [f"- {limit}" for limit in KNOWN_LIMITS]
    return "\n".join(lines) + "\n"
