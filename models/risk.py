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
(won >= in period), so a flag means the model doubts the deal closes at all.

A flag is raised only when it has measured its precision. `RiskFlags.fit` measures, over
the training snapshots whose outcome is known at the cut-off (weighted by the label
weights), each flag's lift as issue 13 defines it (loss rate of the snapshots carrying it /
loss rate of the others) and its win-rate ratio (win rate of the others / win rate of the
snapshots carrying it), and raises those whose win-rate ratio is at least `MIN_LIFT` (1.3),
strongest first, as long as the raised flags together mark at most `MAX_SHARE` (a quarter)
of the snapshots; stalled may tighten from 90% to 95% or 99% of won deals' time in the stage
to fit. Why the win-rate ratio decides: where most deals are lost, the loss-rate ratio
cannot reach 1.3 whatever the flag is worth. On the default world (20,000 deals, seed 1,
trained at the end of the data) 79% of the weighted snapshots are lost, so a flag marking
few deals has a loss-rate lift of at most 1 / 0.79 = 1.27 even if every one of them is
lost; measured, stalled 1.25 (48% of snapshots), close_date_past 1.17, silent 1.15,
commit_low_probability 1.14, repeated_pushes 1.11, large_drop 0.81. The same flags'
win-rate ratios: close_date_past 2.63, stalled 2.46, silent 2.05, commit_low_probability
2.02, repeated_pushes 1.65 (large_drop below 1: a fall of the in-sample probability does not
mark deals that win less). Both figures are logged; the bundle carries the fitted flags, and
the backtest measures the same figures out of sample (metrics.json `risk_flags`,
risk_flags.csv).

The flags read features and probabilities only, vectorised over a batch of deals.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from scipy.special import expit

from features.timestamps import to_ns
from models.encoding import Columns

if TYPE_CHECKING:
    from features.labels import TrainingSet
    from models.win import WinModel

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


FLAG_CODES = (
    "commit_low_probability",
    "large_drop",
    "close_date_past",
    "stalled",
    "repeated_pushes",
    "silent",
)
SEVERITY: dict[str, Severity] = {
    "commit_low_probability": "high",
    "large_drop": "high",
    "close_date_past": "high",
    "stalled": "medium",
    "repeated_pushes": "medium",
    "silent": "medium",
}


def flag_masks(
    columns: Columns,
    probability: np.ndarray,
    *,
    change_7d: np.ndarray | None = None,
    thresholds: RiskThresholds = RISK_THRESHOLDS,
) -> dict[str, np.ndarray]:
    """Which deals each flag fires on, by flag code (every flag, raised or not)."""
    t = thresholds
    p = np.asarray(probability, dtype=np.float64)
    n = p.size

    def number(name: str) -> np.ndarray:
        return np.asarray(columns[name], dtype=np.float64)

    category = np.asarray(columns["forecast_category"], dtype=object)
    change = np.full(n, np.nan) if change_7d is None else np.asarray(change_7d, dtype=np.float64)
    silence = number("days_since_last_activity")
    return {
        "commit_low_probability": (category == "Commit") & (p < t.commit_low_probability),
        "large_drop": -change >= t.large_drop_points,
        "close_date_past": number("close_date_past") >= 0.5,
        "stalled": (number("stage_duration_percentile") > t.stalled_percentile)
        & (number("days_in_stage") >= t.stalled_min_days),
        "repeated_pushes": number("close_date_pushes") >= t.repeated_pushes,
        "silent": (silence >= t.silent_days)
        | (np.isnan(silence) & (number("deal_age_days") >= t.silent_min_age_days)),
    }


def risk_flags(
    columns: Columns,
    probability: np.ndarray,
    *,
    change_7d: np.ndarray | None = None,
    thresholds: RiskThresholds = RISK_THRESHOLDS,
    raised: Collection[str] = FLAG_CODES,
) -> list[tuple[RiskFlag, ...]]:
    """Each deal's flags, highest severity first.

    `probability` is the calibrated won probability now; `change_7d` its change over the
    last 7 days (now - then; NaN where the deal is younger, see models.explain), without
    which no drop is flagged. `raised`: the flags that may fire (`RiskFlags.raised_`: those
    that measured their lift); the others are never raised."""
    t = thresholds
    p = np.asarray(probability, dtype=np.float64)
    n = p.size
    masks = flag_masks(columns, p, change_7d=change_7d, thresholds=t)

    def number(name: str) -> np.ndarray:
        return np.asarray(columns[name], dtype=np.float64)

    change = np.full(n, np.nan) if change_7d is None else np.asarray(change_7d, dtype=np.float64)
    stage = np.asarray(columns["stage"], dtype=object)
    percentile = number("stage_duration_percentile")
    days_in_stage = number("days_in_stage")
    pushes = number("close_date_pushes")
    days_pushed = number("close_date_days_pushed")
    days_to_close = number("days_to_close")
    silence = number("days_since_last_activity")
    age = number("deal_age_days")

    def reason(code: str, i: int) -> str:
        if code == "commit_low_probability":
            return (
                f"Forecast as Commit, but the model gives it a {p[i]:.0%} chance of being won "
                f"(below {t.commit_low_probability:.0%})."
            )
        if code == "large_drop":
            return (
                f"The win probability fell {-change[i] * 100:.0f} points in 7 days, from "
                f"{p[i] - change[i]:.0%} to {p[i]:.0%}."
            )
        if code == "close_date_past":
            return (
                f"The expected close date passed {_days(-days_to_close[i])} ago and was not "
                "updated."
            )
        if code == "stalled":
            return (
                f"{_days(days_in_stage[i])} in {stage[i]}: longer than "
                f"{_share(percentile[i])} spent in that stage."
            )
        if code == "repeated_pushes":
            return (
                f"The close date was pushed {pushes[i]:.0f} times, {_days(days_pushed[i])} in all."
            )
        if silence[i] >= t.silent_days:
            return f"No activity logged for {_days(silence[i])}."
        return f"No activity logged at all in the deal's {_days(age[i])}."

    found: list[list[RiskFlag]] = [[] for _ in range(n)]
    for code in FLAG_CODES:
        if code not in raised:
            continue
        for i in np.flatnonzero(masks[code]):
            found[i].append(RiskFlag(code, SEVERITY[code], reason(code, int(i))))
    rank = {"high": 0, "medium": 1}
    return [tuple(sorted(flags, key=lambda f: rank[f.severity])) for flags in found]


MIN_LIFT = 1.3
MAX_SHARE = 0.25  # at most this share of the (training) snapshots carries a flag
STALLED_PERCENTILES = (0.9, 0.95, 0.99)


@dataclass(frozen=True)
class FlagLift:
    """How much more often deals carrying a flag are lost than deals without it, over the
    snapshots whose outcome is known (weighted by the label weights, when given).

    `lift` is loss rate when flagged / loss rate when not flagged; NaN when either side has
    no known outcome (or nothing is lost without the flag). `share_flagged` is over every
    snapshot, known outcome or not: how much of the pipeline the flag would mark."""

    n_flagged: int  # known outcomes with the flag
    n_not_flagged: int  # known outcomes without it
    loss_rate_flagged: float
    loss_rate_not_flagged: float
    lift: float
    share_flagged: float
    # Win rate without the flag / win rate with it: what decides whether a flag is raised
    # (the module says why); NaN when undefined, inf when no flagged deal is won.
    win_rate_ratio: float = math.nan

    def to_dict(self) -> dict[str, float | int | None]:
        """As JSON allows: an undefined or infinite figure is None."""
        return {
            key: None if isinstance(value, float) and not math.isfinite(value) else value
            for key, value in self.__dict__.items()
        }


def flag_lift(flagged: np.ndarray, lost: np.ndarray, weight: np.ndarray | None = None) -> FlagLift:
    """The lift of one flag. `lost`: 1 lost, 0 won, NaN unknown; `weight`: each snapshot's
    label weight (features.labels; 0 where censored), default 1."""
    flagged = np.asarray(flagged, dtype=bool)
    lost = np.asarray(lost, dtype=np.float64)
    w = np.ones_like(lost) if weight is None else np.asarray(weight, dtype=np.float64)
    known = ~np.isnan(lost) & (w > 0)

    def rate(mask: np.ndarray) -> float:
        mass = float(w[mask].sum())
        return float(np.dot(w[mask], lost[mask]) / mass) if mass > 0 else math.nan

    on, off = rate(known & flagged), rate(known & ~flagged)
    lift = on / off if off > 0 and math.isfinite(on) else math.nan
    won_on, won_off = 1.0 - on, 1.0 - off
    if not (math.isfinite(on) and math.isfinite(off)):
        ratio = math.nan
    elif won_on > 0:
        ratio = won_off / won_on
    else:
        ratio = math.inf if won_off > 0 else math.nan
    return FlagLift(
        n_flagged=int((known & flagged).sum()),
        n_not_flagged=int((known & ~flagged).sum()),
        loss_rate_flagged=on,
        loss_rate_not_flagged=off,
        lift=lift,
        share_flagged=float(flagged.mean()) if flagged.size else math.nan,
        win_rate_ratio=ratio,
    )


def flag_lifts(
    masks: dict[str, np.ndarray], lost: np.ndarray, weight: np.ndarray | None = None
) -> dict[str, FlagLift]:
    return {code: flag_lift(mask, lost, weight) for code, mask in masks.items()}


def change_over(
    opportunity_id: np.ndarray, as_of: np.ndarray, probability: np.ndarray, *, days: int = 7
) -> np.ndarray:
    """Each snapshot's probability change over `days` (now - then), from the same deal's
    snapshot `days` earlier among those given; NaN without one (what serving's trend gives
    a deal younger than that)."""
    keys = pd.MultiIndex.from_arrays(
        [np.asarray(opportunity_id, dtype=object), pd.DatetimeIndex(as_of)]
    )
    earlier = pd.MultiIndex.from_arrays(
        [
            np.asarray(opportunity_id, dtype=object),
            pd.DatetimeIndex(as_of) - pd.Timedelta(days=days),
        ]
    )
    p = np.asarray(probability, dtype=np.float64)
    if not keys.is_unique:
        raise ValueError("snapshots must be unique by (opportunity_id, as_of)")
    position = keys.get_indexer(earlier)
    return np.where(position >= 0, p - p[np.maximum(position, 0)], np.nan)


@dataclass
class RiskFlags:
    """The risk flags a model raises: every flag's lift measured on the training snapshots
    (known outcomes, label weights), and only those with a lift of at least `min_lift`
    raised. Unfitted, every flag is raised (a bundle trained before the lifts were kept).
    """

    thresholds: RiskThresholds = RISK_THRESHOLDS
    min_lift: float = MIN_LIFT
    max_share: float = MAX_SHARE
    lift_: dict[str, FlagLift] = field(default_factory=dict)
    raised_: tuple[str, ...] = FLAG_CODES
    share_flagged_: float = math.nan  # training snapshots with a raised flag

    def fit(
        self,
        columns: Columns,
        probability: np.ndarray,
        won: np.ndarray,
        *,
        weight: np.ndarray | None = None,
        change_7d: np.ndarray | None = None,
    ) -> RiskFlags:
        """`won`: 1 won, 0 not, NaN unknown, per snapshot of `columns` (point in time: as
        known at the cut-off); `probability`: the model's won probability of each."""
        lost = 1.0 - np.asarray(won, dtype=np.float64)
        masks = flag_masks(columns, probability, change_7d=change_7d, thresholds=self.thresholds)
        self.lift_ = flag_lifts(masks, lost, weight)
        # Greedy, strongest lift first: a flag is raised at the loosest of its thresholds
        # that earns `min_lift` and keeps the raised flags together on at most `max_share`
        # of the snapshots.
        chosen = self.thresholds
        any_flag = np.zeros(len(lost), dtype=bool)
        raised = []
        order = sorted(
            FLAG_CODES, key=lambda c: -np.nan_to_num(self.lift_[c].win_rate_ratio, nan=-1.0)
        )
        for code in order:
            for candidate in _candidates(code, self.thresholds):
                mask = flag_masks(columns, probability, change_7d=change_7d, thresholds=candidate)[
                    code
                ]
                lift = flag_lift(mask, lost, weight)
                if (
                    lift.win_rate_ratio >= self.min_lift
                    and (any_flag | mask).mean() <= self.max_share
                ):
                    raised.append(code)
                    any_flag |= mask
                    self.lift_[code] = lift
                    if code == "stalled":
                        chosen = replace(chosen, stalled_percentile=candidate.stalled_percentile)
                    break
        self.thresholds = chosen
        self.raised_ = tuple(code for code in FLAG_CODES if code in raised)
        self.share_flagged_ = float(any_flag.mean()) if any_flag.size else math.nan
        return self

    def flags(
        self,
        columns: Columns,
        probability: np.ndarray,
        *,
        change_7d: np.ndarray | None = None,
    ) -> list[tuple[RiskFlag, ...]]:
        return risk_flags(
            columns,
            probability,
            change_7d=change_7d,
            thresholds=self.thresholds,
            raised=self.raised_,
        )

    def to_data(self) -> dict[str, Any]:
        """As a model bundle stores it: every figure as measured (NaN and inf kept)."""
        return {
            "thresholds": dataclasses.asdict(self.thresholds),
            "min_lift": self.min_lift,
            "max_share": self.max_share,
            "lift": {code: dataclasses.asdict(lift) for code, lift in self.lift_.items()},
            "raised": list(self.raised_),
            "share_flagged": self.share_flagged_,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> RiskFlags:
        return cls(
            thresholds=RiskThresholds(**data["thresholds"]),
            min_lift=float(data["min_lift"]),
            max_share=float(data["max_share"]),
            lift_={code: FlagLift(**lift) for code, lift in data["lift"].items()},
            raised_=tuple(data["raised"]),
            share_flagged_=float(data["share_flagged"]),
        )

    def summary(self) -> dict[str, object]:
        """What the bundle's metadata and the model card show."""
        return {
            "min_lift": self.min_lift,
            "raised": list(self.raised_),
            "share_flagged": self.share_flagged_,
            "lift": {code: lift.to_dict() for code, lift in self.lift_.items()},
        }


def fit_risk_flags(
    model: WinModel, training: TrainingSet, *, risk: RiskFlags | None = None
) -> RiskFlags:
    """Flags fitted point in time on a model's training snapshots: the model's won
    probability of each (and its 7-day change), against the `won` labels and weights as
    known at the cut-off. The probabilities are in-sample, so the lifts of the flags that
    read them (a low-probability Commit, a large drop) lean optimistic; the backtest
    measures them out of sample."""
    frame = training.frame
    matrix = model.encoder_.transform(frame)
    # The point probability only: the interval members are not needed for a flag.
    target = model.won_
    p = target.calibrate(expit(target.margin(matrix, threads=model.config.threads)))
    change = change_over(frame["opportunity_id"].to_numpy(), to_ns(frame["as_of"]), p)
    won = training.targets["won"]
    return (risk or RiskFlags()).fit(frame, p, won.label, weight=won.weight, change_7d=change)


def _candidates(code: str, thresholds: RiskThresholds) -> list[RiskThresholds]:
    """The thresholds a flag may be raised at, loosest first (only stalled has several)."""
    if code != "stalled":
        return [thresholds]
    return [
        replace(thresholds, stalled_percentile=q)
        for q in STALLED_PERCENTILES
        if q >= thresholds.stalled_percentile
    ]


def share_flagged(masks: dict[str, np.ndarray], raised: Collection[str]) -> float:
    """The share of deals carrying at least one raised flag."""
    any_flag = np.zeros(len(next(iter(masks.values()))), dtype=bool)
    for code in raised:
        any_flag |= masks[code]
    return float(any_flag.mean()) if any_flag.size else math.nan


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
