"""The promotion gate: a challenger becomes champion only if it earns it.

1. Better than every baseline on Brier score and log loss in the backtest, overall, for both
   `won` and `won_in_period`.
2. Revenue: the median absolute percentage error of the team-quarter revenue forecast at
   week 8 of the quarter no worse than the best baseline's (`period` in metrics.json).
   It is measured only on at least `MIN_REVENUE_FORECASTS` team-quarters with revenue at
   week 8: a young org backtested on months may have none (or one quarter of two teams)
   that ended by the end of its data. Then the gate says so (the test is listed as not
   measured, with its count) and decides on the deal rules alone: a median over one or two
   team-quarters is the luck of those teams, and refusing every model until a quarter has
   ended would withhold a model that measurably beats the baselines deal by deal (the
   attainment forecast adds the deals' probabilities up, so it rests on the same numbers).
3. Not worse than the current champion by more than `tolerance` (relative, on Brier score and
   log loss, both targets) on the same backtest: the same test snapshots, scored by both.
   The champion is scored on the test quarters that start after the data it was trained on
   (scoring it on earlier quarters would reward what it memorised). When no such quarter
   exists and the champion was backtested on the very same data, its recorded backtest
   metrics are the comparison. Otherwise there is no common ground, and the decision says so.
   A baseline champion (models.baseline_model, serving until a model passes) is the
   empirical stage weight, which rule 1 already beat on every backtest snapshot, refitted
   at each fold's cut-off: rule 1 is the comparison.

Every test the gate ran is in `GateDecision.tests` (and `gate.json`): its rule, the figures
of the model and of what it was compared with, and whether it passed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models.baselines import BASELINE_NAMES
from training.metrics import deal_metrics

DEFAULT_TOLERANCE = 0.01
TARGET_BLOCKS = {"deal": "won", "deal_in_period": "won_in_period"}
SCORES = ("brier", "log_loss")
REVENUE_WEEK = "8"
# Fewer team-quarter forecasts with revenue than this at week 8: revenue is not measured.
MIN_REVENUE_FORECASTS = 4
RULES = {
    "baselines": "Brier score and log loss lower than every baseline's, overall, for won and "
    "won_in_period",
    "revenue": f"median APE of the team-quarter revenue forecast at week {REVENUE_WEEK} no "
    f"worse than the best baseline's (measured on at least {MIN_REVENUE_FORECASTS} "
    "team-quarters, else decided on the deal rules)",
    "champion": "Brier score and log loss not worse than the champion's beyond the tolerance, "
    "on the same snapshots, for won and won_in_period",
}


@dataclass(frozen=True)
class GateTest:
    """One comparison the gate made; `passed` is None when it could not be measured."""

    rule: str  # a key of RULES
    metric: str  # e.g. "deal.brier", "period.week8.median_ape"
    model: float | None
    against: str  # a baseline's name, or "champion"
    value: float | None
    passed: bool | None
    n: int | None = None


@dataclass
class GateDecision:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    champion_version: str | None = None
    comparison: dict[str, Any] = field(default_factory=dict)
    tests: list[GateTest] = field(default_factory=list)
    not_measured: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        if self.passed:
            verdict = "promote"
        elif self.champion_version is None:
            verdict = "do not promote"  # nothing to keep: "keep the current champion" misled
        else:
            verdict = "keep the current champion"
        return f"{verdict}: " + "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        """`gate.json`: the decision, every test with its figures, and the rules."""
        return {
            "passed": self.passed,
            "summary": self.summary,
            "reasons": self.reasons,
            "champion_version": self.champion_version,
            "comparison": self.comparison,
            "tests": [asdict(test) for test in self.tests],
            "not_measured": self.not_measured,
            "rules": {rule: RULES[rule] for rule in dict.fromkeys(t.rule for t in self.tests)},
        }


def baseline_tests(metrics: dict[str, Any]) -> list[GateTest]:
    """Rule 1's tests: the model against each baseline, each score, each target.

    manual_weight is reported beside them (metrics.json) but is not a bar here: it exists only
    where managers type probabilities (some teams, some exports), and elsewhere it is the CRM
    stage weight already tested; a gate whose bar depends on which teams type would promote
    on one export what it refuses on the same org's next one. Its `on_typed` comparison in
    the backtest is where a user reads whether the model beats the managers' numbers."""
    tests = []
    for block in TARGET_BLOCKS:
        model = metrics[block]["model"]["overall"]
        for name in BASELINE_NAMES:
            baseline = metrics[block][name]["overall"]
            for score in SCORES:
                mine, theirs = model[score], baseline[score]
                ok = None if mine is None or theirs is None else bool(mine < theirs)
                tests.append(
                    GateTest(
                        "baselines", f"{block}.{score}", mine, name, theirs, ok, model.get("n")
                    )
                )
    return tests


def beats_baselines(metrics: dict[str, Any]) -> tuple[bool, list[str]]:
    """Rule 1, with one reason per failure (or one line of success). A score that cannot be
    computed (no outcome known) is a failure: nothing was shown."""
    failures = []
    for test in baseline_tests(metrics):
        if not test.passed:
            mine = "none" if test.model is None else f"{test.model:.4f}"
            theirs = "none" if test.value is None else f"{test.value:.4f}"
            failures.append(
                f"{test.metric.replace('.', ' ')}: model {mine} is not better than "
                f"{test.against} {theirs}"
            )
    if failures:
        return False, failures
    return True, ["beats every baseline on Brier score and log loss for both targets"]


def revenue_tests(metrics: dict[str, Any]) -> tuple[list[GateTest], bool]:
    """Rule 2's tests (the model's week-8 median APE against each baseline's) and whether
    revenue could be measured at all."""
    period = metrics.get("period") or {}
    week = (period.get("model") or {}).get("by_week", {}).get(REVENUE_WEEK) or {}
    mine, n = week.get("median_ape"), int(week.get("n") or 0)
    measured = mine is not None and n >= MIN_REVENUE_FORECASTS
    tests = []
    for name in BASELINE_NAMES:
        theirs = ((period.get(name) or {}).get("by_week", {}).get(REVENUE_WEEK) or {}).get(
            "median_ape"
        )
        ok = None if not measured or theirs is None else bool(mine <= theirs)
        tests.append(
            GateTest("revenue", f"period.week{REVENUE_WEEK}.median_ape", mine, name, theirs, ok, n)
        )
    return tests, measured and any(t.passed is not None for t in tests)


def beats_baselines_on_revenue(metrics: dict[str, Any]) -> tuple[bool | None, list[str]]:
    """Rule 2: None (with why) when the backtest has too few week-8 team-quarters."""
    tests, measured = revenue_tests(metrics)
    n = tests[0].n if tests else 0
    if not measured:
        return None, [
            f"week-{REVENUE_WEEK} revenue not measured: {n} team-quarter forecast(s) with "
            f"revenue at week {REVENUE_WEEK} in quarters that ended (at least "
            f"{MIN_REVENUE_FORECASTS} needed); decided on the deal rules"
        ]
    compared = [(t.against, float(t.value)) for t in tests if t.value is not None]
    against, best = min(compared, key=lambda pair: pair[1])
    mine = float(tests[0].model or 0.0)
    figures = f"model {mine:.3f} vs {against} {best:.3f} ({n} team-quarters)"
    if all(t.passed for t in tests if t.passed is not None):
        return True, [
            f"week-{REVENUE_WEEK} revenue median APE no worse than the best baseline: {figures}"
        ]
    return False, [
        f"week-{REVENUE_WEEK} revenue median APE worse than the best baseline: {figures}"
    ]


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
    champion_is_baseline: bool = False,
) -> GateDecision:
    """The gate's decision. `champion_comparison` is (challenger scores, champion scores,
    what was compared), or None when there is no champion or no common ground;
    `champion_is_baseline`: the champion is the baseline forecaster (rule 1 compares it)."""
    passed, reasons = beats_baselines(metrics)
    revenue, why = beats_baselines_on_revenue(metrics)
    decision = GateDecision(
        passed=passed and revenue is not False,
        reasons=reasons + why,
        champion_version=champion_version,
        tests=baseline_tests(metrics) + revenue_tests(metrics)[0],
        not_measured=why if revenue is None else [],
    )
    if champion_version is None:
        decision.reasons.append("no current champion")
        return decision
    if champion_is_baseline:
        decision.reasons.append(
            f"champion version {champion_version} is the baseline forecaster (empirical stage "
            "weight): the baseline rules compared this model with it"
        )
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
    for block in TARGET_BLOCKS:
        for score in SCORES:
            a, b = mine[block][score], theirs[block][score]
            verdict = None if a is None or b is None else bool(a <= b * (1 + tolerance))
            decision.tests.append(
                GateTest("champion", f"{block}.{score}", a, "champion", b, verdict)
            )
    return decision
