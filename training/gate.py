"""The promotion gate: a challenger becomes champion only if it earns it.

1. Better than every baseline on Brier score and log loss in the backtest, overall, for both
   `won` and `won_in_period`.
2. Not worse than the current champion by more than `tolerance` (relative, on Brier score and
   log loss, both targets) on the same backtest: the same test snapshots, scored by both.
   The champion is scored on the test quarters that start after the data it was trained on
   (scoring it on earlier quarters would reward what it memorised). When no such quarter
   exists and the champion was backtested on the very same data, its recorded backtest
   metrics are the comparison. Otherwise there is no common ground, and the decision says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models.baselines import BASELINE_NAMES
from training.metrics import deal_metrics

DEFAULT_TOLERANCE = 0.01
TARGET_BLOCKS = {"deal": "won", "deal_in_period": "won_in_period"}
SCORES = ("brier", "log_loss")


@dataclass
class GateDecision:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    champion_version: str | None = None
    comparison: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        verdict = "promote" if self.passed else "keep the current champion"
        return f"{verdict}: " + "; ".join(self.reasons)


def beats_baselines(metrics: dict[str, Any]) -> tuple[bool, list[str]]:
    """Rule 1, with one reason per failure (or one line of success)."""
    failures = []
    for block in TARGET_BLOCKS:
        model = metrics[block]["model"]["overall"]
        for name in BASELINE_NAMES:
            baseline = metrics[block][name]["overall"]
            for score in SCORES:
                if not model[score] < baseline[score]:
                    failures.append(
                        f"{block} {score}: model {model[score]:.4f} is not better than "
                        f"{name} {baseline[score]:.4f}"
                    )
    if failures:
        return False, failures
    return True, ["beats every baseline on Brier score and log loss for both targets"]


def compare_scores(
    challenger: dict[str, dict[str, float | int | None]],
    champion: dict[str, dict[str, float | int | None]],
    *,
    tolerance: float,
) -> tuple[bool, list[str]]:
    """Rule 2 on {target block: deal metrics} for both models on the same snapshots."""
    failures = []
    for block in TARGET_BLOCKS:
        for score in SCORES:
            mine, theirs = challenger[block][score], champion[block][score]
            if mine is None or theirs is None:
                continue
            if mine > theirs * (1 + tolerance):
                failures.append(
                    f"{block} {score}: {mine:.4f} is worse than the champion's {theirs:.4f} "
                    f"beyond the {tolerance:.0%} tolerance"
                )
    if failures:
        return False, failures
    return True, [f"within {tolerance:.0%} of the champion or better on Brier and log loss"]


def scores_on(
    predictions: pd.DataFrame, *, won: np.ndarray, in_period: np.ndarray
) -> dict[str, dict[str, float | int | None]]:
    """Deal metrics of given probabilities on backtest rows (labels from `predictions`)."""
    return {
        "deal": deal_metrics(won, predictions["won"].to_numpy(dtype=np.float64)),
        "deal_in_period": deal_metrics(
            in_period, predictions["won_in_period"].to_numpy(dtype=np.float64)
        ),
    }


def decide(
    metrics: dict[str, Any],
    *,
    champion_version: str | None,
    champion_comparison: tuple[dict[str, Any], dict[str, Any], str] | None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> GateDecision:
    """The gate's decision. `champion_comparison` is (challenger scores, champion scores,
    what was compared), or None when there is no champion or no common ground."""
    passed, reasons = beats_baselines(metrics)
    decision = GateDecision(passed=passed, reasons=reasons, champion_version=champion_version)
    if champion_version is None:
        decision.reasons.append("no current champion")
        return decision
    if champion_comparison is None:
        decision.reasons.append(
            f"champion version {champion_version} shares no backtest quarter or data with "
            "this run: compared with the baselines only"
        )
        return decision
    mine, theirs, basis = champion_comparison
    ok, why = compare_scores(mine, theirs, tolerance=tolerance)
    decision.passed = decision.passed and ok
    decision.reasons += [f"{reason} ({basis})" for reason in why]
    decision.comparison = {"basis": basis, "challenger": mine, "champion": theirs}
    return decision
