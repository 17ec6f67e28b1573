"""The forecasts sales teams already use, as fitted objects with the models' interface.

- stage_weight_crm: the CRM's configured probability of the stage; period forecast: sum of
  probability x amount over open deals whose close date is in the period.
- stage_weight_empirical: win rate of training snapshots in the same stage; period forecast
  as above, with those rates.
- commit: win rate of training snapshots in the same forecast category; period forecast:
  amounts of Commit deals whose close date is in the period.
- manual_weight (when the export has `manual_probability`): the probability the manager typed,
  as of the snapshot (the deal's last history row at or before it, `manual_probability` of
  the snapshot frame, features.snapshots); period forecast as stage_weight_crm's, with it.
  A deal without a typed value then falls back to its CRM stage weight (MANUAL_FALLBACK), so
  every forecaster is judged on the same deals and team-quarters; the backtest counts the
  deals and team-quarters that had a typed value, which is what the comparison is about.

For the in-period target, a stage-weight probability counts only when the deal's close date
falls in the quarter (that is how the forecast is used); the empirical baselines are fitted
on the in-period labels themselves. Closed-won revenue to date is added by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Self

import numpy as np
import pandas as pd

from features.artifacts import ArtifactReader, ArtifactWriter
from features.deals import Vocabulary
from features.labels import TrainingSet
from models.encoding import Columns

Target = Literal["won", "won_in_period"]
BASELINE_NAMES = ("stage_weight_crm", "stage_weight_empirical", "commit")
MANUAL_WEIGHT = "manual_weight"  # a baseline only where the export has manual probabilities
MANUAL_FALLBACK = "stage_weight_crm"  # what a deal without a typed value is forecast with
# Pseudo-counts pulling a thin group's rate toward the overall rate.
_PRIOR = 20.0


def closes_in_period(frame: Columns) -> np.ndarray:
    """Whether each deal's close date at the snapshot is before its quarter's end; a deal
    whose close date is unknown then (an export without close-date history: its
    `close_date_in_quarter` is unavailable, NaN) counts as closing in the period, since
    nothing says it does not."""
    close = np.asarray(frame["close_date_in_quarter"], dtype=np.float64)
    return ~(close <= 0.5)


@dataclass
class PeriodShare:
    """The share of an eventual win that falls in the snapshot's period, for deals whose
    close date at the snapshot is unknown: of the won training snapshots in the same stage
    with the same weeks left in the quarter, the share won within their period (shrunk toward
    all won snapshots). Learned from the labels alone, it reads nothing of a deal's own
    outcome or final close date."""

    rates_: _GroupRate = field(default_factory=lambda: _GroupRate(PERIOD_KEY))

    @staticmethod
    def keys(frame: Columns) -> dict[str, np.ndarray]:
        stage = np.asarray(frame["stage"], dtype=object)
        weeks = np.floor(np.asarray(frame["days_left_in_quarter"], dtype=np.float64) / 7.0)
        weeks = np.clip(np.nan_to_num(weeks, nan=0.0), 0, 13).astype(np.int64)
        return {PERIOD_KEY: np.array([f"{s}|{w}" for s, w in zip(stage, weeks, strict=True)])}

    def fit(self, training: TrainingSet) -> PeriodShare:
        won, in_period = training.targets["won"], training.targets["won_in_period"]
        rows = won.known & (won.label > 0.5) & in_period.known
        keys = {PERIOD_KEY: self.keys(training.frame)[PERIOD_KEY][rows]}
        self.rates_.fit(keys, in_period.label[rows], in_period.weight[rows])
        return self

    def predict(self, frame: Columns) -> np.ndarray:
        return self.rates_.predict(self.keys(frame))


PERIOD_KEY = "stage_weeks_left"


def _in_period(frame: Columns, share: PeriodShare | None) -> np.ndarray:
    """Each deal's share in the period forecast: 1 or 0 by its close date at the snapshot,
    `share` where that is unknown (without a share, as closing in the period)."""
    close = np.asarray(frame["close_date_in_quarter"], dtype=np.float64)
    out = (close > 0.5).astype(np.float64)
    unknown = np.isnan(close)
    if unknown.any():
        out[unknown] = 1.0 if share is None else share.predict(frame)[unknown]
    return out


@dataclass
class StageWeightCRM:
    """The CRM's own stage probability: nothing to learn."""

    target: Target = "won"
    name: str = "stage_weight_crm"
    # Where a deal's close date at the snapshot is unknown (fit_baselines sets it).
    period_share_: PeriodShare | None = field(default=None, repr=False)

    def fit(
        self, frame: Columns, outcome: np.ndarray, *, weight: np.ndarray | None = None
    ) -> StageWeightCRM:
        # The configured probabilities are given, not learned; fit only records the fallback
        # for stages without one (their empirical rate).
        self.fallback_ = _GroupRate("stage").fit(frame, outcome, weight)
        return self

    def to_data(self, out: ArtifactWriter, key: str) -> dict[str, Any]:
        return {
            "target": self.target,
            "name": self.name,
            "fallback": self.fallback_.to_data(out, f"{key}.fallback"),
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any], source: ArtifactReader) -> Self:
        baseline = cls(target=data["target"], name=data["name"])
        baseline.fallback_ = _GroupRate.from_data(data["fallback"], source)
        return baseline

    def _configured(self, frame: Columns) -> np.ndarray:
        configured = np.asarray(frame["stage_probability"], dtype=np.float64) / 100.0
        missing = np.isnan(configured)
        if missing.any():  # only then is the fallback worth its lookups
            configured = np.where(missing, self.fallback_.predict(frame), configured)
        return np.clip(configured, 0.0, 1.0)

    def predict_proba(self, frame: Columns) -> np.ndarray:
        p = self._configured(frame)
        if self.target == "won_in_period":
            p = p * _in_period(frame, self.period_share_)
        return p

    def period_weights(self, frame: Columns) -> np.ndarray:
        """Share of each open deal's amount in the period forecast."""
        return _in_period(frame, self.period_share_) * self._configured(frame)


_MISSING = "(missing)"


_FEW_ROWS = 16


def _key(value: object) -> object:
    """One value's group key, as `_keys` gives it."""
    missing = value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))
    return _MISSING if missing else value


def _keys(values: np.ndarray) -> np.ndarray:
    keys = np.asarray(values, dtype=object).copy()
    keys[pd.isna(keys)] = _MISSING
    return keys


@dataclass
class _GroupRate:
    """Rate of the outcome per value of one column, shrunk toward the overall rate."""

    column: str
    overall_: float = 0.0
    groups_: Vocabulary = field(default_factory=lambda: Vocabulary(()))
    rates_: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def fit(
        self, frame: Columns, outcome: np.ndarray, weight: np.ndarray | None = None
    ) -> _GroupRate:
        """`weight`: each snapshot's weight (the labels' censoring weights), 1 by default."""
        outcome = np.asarray(outcome, dtype=np.float64)
        w = np.ones_like(outcome) if weight is None else np.asarray(weight, dtype=np.float64)
        self.overall_ = float(np.average(outcome, weights=w)) if w.sum() > 0 else 0.0
        codes, groups = pd.factorize(_keys(np.asarray(frame[self.column])))
        sums = np.bincount(codes, weights=outcome * w, minlength=len(groups))
        counts = np.bincount(codes, weights=w, minlength=len(groups))
        self.groups_ = Vocabulary(groups)
        self.rates_ = (sums + _PRIOR * self.overall_) / (counts + _PRIOR)
        return self

    def to_data(self, out: ArtifactWriter, key: str) -> dict[str, Any]:
        return {
            "column": self.column,
            "overall": self.overall_,
            "groups": list(self.groups_.index),
            "rates": out.array(f"{key}.rates", self.rates_),
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any], source: ArtifactReader) -> _GroupRate:
        return cls(
            column=data["column"],
            overall_=float(data["overall"]),
            groups_=Vocabulary(pd.Index(list(data["groups"]), dtype=object)),
            rates_=source.array(data["rates"]),
        )

    def predict(self, frame: Columns) -> np.ndarray:
        values = np.asarray(frame[self.column])
        if values.size <= _FEW_ROWS:
            # A request's few deals: a lookup each (the whole-array path costs ~15 us a call,
            # and an answer calls it a dozen times).
            position = self.groups_.positions
            return np.array(
                [
                    self.rates_[position[key]] if (key := _key(v)) in position else self.overall_
                    for v in values.tolist()
                ],
                dtype=np.float64,
            )
        codes = self.groups_.codes(_keys(values))
        return np.where(codes >= 0, self.rates_[np.maximum(codes, 0)], self.overall_)


@dataclass
class StageWeightEmpirical:
    """Win rate of training snapshots in the same stage."""

    target: Target = "won"
    name: str = "stage_weight_empirical"
    period_share_: PeriodShare | None = field(default=None, repr=False)

    def fit(
        self, frame: Columns, outcome: np.ndarray, *, weight: np.ndarray | None = None
    ) -> StageWeightEmpirical:
        self.rates_ = _GroupRate("stage").fit(frame, outcome, weight)
        return self

    def to_data(self, out: ArtifactWriter, key: str) -> dict[str, Any]:
        return {
            "target": self.target,
            "name": self.name,
            "rates": self.rates_.to_data(out, f"{key}.rates"),
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any], source: ArtifactReader) -> StageWeightEmpirical:
        baseline = cls(target=data["target"], name=data["name"])
        baseline.rates_ = _GroupRate.from_data(data["rates"], source)
        return baseline

    def predict_proba(self, frame: Columns) -> np.ndarray:
        return self.rates_.predict(frame)

    def period_weights(self, frame: Columns) -> np.ndarray:
        return _in_period(frame, self.period_share_) * self.predict_proba(frame)


@dataclass
class CommitBaseline:
    """Win rate of training snapshots in the same forecast category; the period forecast is
    the amount of Commit deals (or Commit and Best Case) closing in the period."""

    target: Target = "won"
    name: str = "commit"
    include_best_case: bool = False
    period_share_: PeriodShare | None = field(default=None, repr=False)

    def fit(
        self, frame: Columns, outcome: np.ndarray, *, weight: np.ndarray | None = None
    ) -> CommitBaseline:
        self.rates_ = _GroupRate("forecast_category").fit(frame, outcome, weight)
        return self

    def to_data(self, out: ArtifactWriter, key: str) -> dict[str, Any]:
        return {
            "target": self.target,
            "name": self.name,
            "include_best_case": self.include_best_case,
            "rates": self.rates_.to_data(out, f"{key}.rates"),
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any], source: ArtifactReader) -> CommitBaseline:
        baseline = cls(
            target=data["target"],
            name=data["name"],
            include_best_case=bool(data["include_best_case"]),
        )
        baseline.rates_ = _GroupRate.from_data(data["rates"], source)
        return baseline

    def predict_proba(self, frame: Columns) -> np.ndarray:
        return self.rates_.predict(frame)

    def period_weights(self, frame: Columns) -> np.ndarray:
        called = ["Commit", "Best Case"] if self.include_best_case else ["Commit"]
        in_call = np.isin(np.asarray(frame["forecast_category"], dtype=object), called)
        return in_call * _in_period(frame, self.period_share_)


def typed_probability(frame: Columns) -> np.ndarray:
    """The manager's typed probability (0-1) of each row, NaN where none is typed or the
    frame carries no `manual_probability` (an export without the column)."""
    try:
        typed = np.asarray(frame["manual_probability"], dtype=np.float64)
    except KeyError:
        return np.full(len(np.asarray(frame["stage"])), np.nan)
    return np.clip(typed / 100.0, 0.0, 1.0)


def has_manual_probabilities(frame: Columns) -> bool:
    """Whether any row carries a typed probability: the manual_weight baseline is reported
    only then."""
    return bool(np.isfinite(typed_probability(frame)).any())


@dataclass
class ManualWeight(StageWeightCRM):
    """The manager's typed probability; a deal without one takes its CRM stage weight (the
    same fit, in-period rule and period weights as StageWeightCRM, over these probabilities)."""

    target: Target = "won"
    name: str = MANUAL_WEIGHT

    def _configured(self, frame: Columns) -> np.ndarray:
        typed = typed_probability(frame)
        return np.where(np.isnan(typed), super()._configured(frame), typed)


Baseline = StageWeightCRM | StageWeightEmpirical | CommitBaseline | ManualWeight
_KINDS: dict[str, type[Baseline]] = {
    "stage_weight_crm": StageWeightCRM,
    "stage_weight_empirical": StageWeightEmpirical,
    "commit": CommitBaseline,
    MANUAL_WEIGHT: ManualWeight,
}


def baseline_to_data(baseline: Baseline, out: ArtifactWriter, key: str) -> dict[str, Any]:
    """A fitted baseline as data, with its kind (each class's own `to_data`)."""
    kind = next(k for k, cls in _KINDS.items() if type(baseline) is cls)
    share = baseline.period_share_
    return {
        "kind": kind,
        **baseline.to_data(out, key),
        "period_share": None if share is None else share.rates_.to_data(out, f"{key}.share"),
    }


def baseline_from_data(data: Mapping[str, Any], source: ArtifactReader) -> Baseline:
    kind = data.get("kind")
    if kind not in _KINDS:
        raise ValueError(f"baseline kind {kind!r}: expected one of {sorted(_KINDS)}")
    baseline = _KINDS[kind].from_data(data, source)
    if data.get("period_share") is not None:
        baseline.period_share_ = PeriodShare(_GroupRate.from_data(data["period_share"], source))
    return baseline


def baselines_for(
    training: TrainingSet, targets: tuple[str, ...] | None = None
) -> dict[str, dict[str, Baseline]]:
    """The baselines of each training target (all by default), fitted on the same snapshots,
    labels and censoring weights as the model: one fit for the backtest and the bundle."""
    out = {}
    share = PeriodShare().fit(training)
    for name, labels in training.targets.items():
        if targets is not None and name not in targets:
            continue
        known = labels.known
        out[name] = fit_baselines(
            training.frame[known],
            labels.label[known],
            target="won_in_period" if name == "won_in_period" else "won",
            weight=labels.weight[known],
            period_share=share,
        )
    return out


def fit_baselines(
    frame: Columns,
    outcome: np.ndarray,
    *,
    target: Target,
    weight: np.ndarray | None = None,
    period_share: PeriodShare | None = None,
) -> dict[str, Baseline]:
    """The baselines fitted on the same training snapshots and weights as the model: the
    three of BASELINE_NAMES and manual_weight, which the backtest and the API report only
    where deals carry a typed probability. `period_share`: the in-period share of deals
    whose close date at the snapshot is unknown (PeriodShare)."""
    fitted: dict[str, Baseline] = {
        "stage_weight_crm": StageWeightCRM(target).fit(frame, outcome, weight=weight),
        "stage_weight_empirical": StageWeightEmpirical(target).fit(frame, outcome, weight=weight),
        "commit": CommitBaseline(target).fit(frame, outcome, weight=weight),
        MANUAL_WEIGHT: ManualWeight(target).fit(frame, outcome, weight=weight),
    }
    for baseline in fitted.values():
        baseline.period_share_ = period_share
    return fitted
