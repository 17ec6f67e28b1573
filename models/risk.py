"""Risk flags: the warning signs a sales manager checks first, each with its reason.

Every threshold lives in `RiskThresholds` (defaults in `RISK_THRESHOLDS`). The flags, with
their severity:

| code                   | fires when                                                  | severity |
|------------------------|-------------------------------------------------------------|----------|
| commit_low_probability | forecast category Commit and won probability < 50%          | high     |
| large_drop             | won probability fell >= 10 points over the last 7 days      | high     |
| close_date_past        | the expected close date is already past                     | high     |
| stalled                | in the stage longer than 90% of won deals were, >= 14 days  | medium   |
| repeated_pushes        | close date pushed >= 2 times                                | medium   |
| silent                 | no activity for >= 21 days (none at all: deal >= 14 days old) | medium |

Commit is compared with the won probability, not the in-period one: it is the looser test
(won >= in period), so a flag means the model doubts the deal closes at all. In the
synthetic world a stage duration above the 90th percentile of won deals flags about half of
the open snapshots (most open deals are lost, and lost deals linger), with a win rate of 10%
against 38% for the rest; the 14-day floor keeps fast stages, where won deals pass in days,
from flagging a deal that is a week in.

The flags read features and probabilities only, vectorised over a batch of deals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from models.encoding import Columns

Severity = Literal["high", "medium"]
RiskLevel = Literal["high", "medium", "low"]


@dataclass(frozen=True)
class RiskThresholds:
    commit_low_probability: float = 0.5
    large_drop_points: float = 0.10  # probability, 0.10 = 10 percentage points
    stalled_percentile: float = 0.9
    stalled_min_days: float = 14.0
    repeated_pushes: int = 2
    silent_days: float = 21.0
    silent_min_age_days: float = 14.0  # a younger deal without activity is not yet silent


RISK_THRESHOLDS = RiskThresholds()


@dataclass(frozen=True)
class RiskFlag:
    code: str
    severity: Severity
    reason: str


def risk_flags(
    columns: Columns,
    probability: np.ndarray,
    *,
    change_7d: np.ndarray | None = None,
    thresholds: RiskThresholds = RISK_THRESHOLDS,
) -> list[tuple[RiskFlag, ...]]:
    """Each deal's flags, highest severity first.

    `probability` is the calibrated won probability now; `change_7d` its change over the
    last 7 days (now - then; NaN where the deal is younger, see models.explain), without
    which no drop is flagged."""
    t = thresholds
    p = np.asarray(probability, dtype=np.float64)
    n = p.size

    def number(name: str) -> np.ndarray:
        return np.asarray(columns[name], dtype=np.float64)

    category = np.asarray(columns["forecast_category"], dtype=object)
    change = np.full(n, np.nan) if change_7d is None else np.asarray(change_7d, dtype=np.float64)
    stage = np.asarray(columns["stage"], dtype=object)
    percentile = number("stage_duration_percentile")
    days_in_stage = number("days_in_stage")
    pushes = number("close_date_pushes")
    days_pushed = number("close_date_days_pushed")
    days_to_close = number("days_to_close")
    close_past = number("close_date_past")
    silence = number("days_since_last_activity")
    age = number("deal_age_days")

    found: list[list[RiskFlag]] = [[] for _ in range(n)]

    for i in np.flatnonzero((category == "Commit") & (p < t.commit_low_probability)):
        found[i].append(
            RiskFlag(
                "commit_low_probability",
                "high",
                f"Forecast as Commit, but the model gives it a {p[i]:.0%} chance of being won "
                f"(below {t.commit_low_probability:.0%}).",
            )
        )
    for i in np.flatnonzero(-change >= t.large_drop_points):
        found[i].append(
            RiskFlag(
                "large_drop",
                "high",
                f"The win probability fell {-change[i] * 100:.0f} points in 7 days, from "
                f"{p[i] - change[i]:.0%} to {p[i]:.0%}.",
            )
        )
    for i in np.flatnonzero(close_past >= 0.5):
        found[i].append(
            RiskFlag(
                "close_date_past",
                "high",
                f"The expected close date passed {_days(-days_to_close[i])} ago and was not "
                "updated.",
            )
        )
    for i in np.flatnonzero(
        (percentile > t.stalled_percentile) & (days_in_stage >= t.stalled_min_days)
    ):
        found[i].append(
            RiskFlag(
                "stalled",
                "medium",
                f"{_days(days_in_stage[i])} in {stage[i]}: longer than "
                f"{_share(percentile[i])} spent in that stage.",
            )
        )
    for i in np.flatnonzero(pushes >= t.repeated_pushes):
        found[i].append(
            RiskFlag(
                "repeated_pushes",
                "medium",
                f"The close date was pushed {pushes[i]:.0f} times, {_days(days_pushed[i])} in all.",
            )
        )
    quiet = silence >= t.silent_days
    never = np.isnan(silence) & (age >= t.silent_min_age_days)
    for i in np.flatnonzero(quiet | never):
        reason = (
            f"No activity logged for {_days(silence[i])}."
            if quiet[i]
            else f"No activity logged at all in the deal's {_days(age[i])}."
        )
        found[i].append(RiskFlag("silent", "medium", reason))
    rank = {"high": 0, "medium": 1}
    return [tuple(sorted(flags, key=lambda f: rank[f.severity])) for flags in found]


def risk_level(flags: tuple[RiskFlag, ...]) -> RiskLevel:
    """The deal's risk level: its most severe flag, "low" without flags."""
    if any(f.severity == "high" for f in flags):
        return "high"
    return "medium" if flags else "low"


def _days(value: float) -> str:
    whole = round(value)
    return "1 day" if whole == 1 else f"{whole:,} days"


def _share(fraction: float) -> str:
    """The share of won deals in words, never rounded up to a misleading "100%"."""
    if fraction >= 1.0:
        return "any won deal"
    return f"{min(fraction, 0.99):.0%} of won deals"
