"""The forecasts sales teams already use, as fitted objects with the models' interface.

- stage_weight_crm: the CRM's configured probability of the stage; period forecast: sum of
  probability x amount over open deals whose close date is in the period.
- stage_weight_empirical: win rate of training snapshots in the same stage; period forecast
  as above, with those rates.
- commit: win rate of training snapshots in the same forecast category; period forecast:
  amounts of Commit deals whose close date is in the period.

For the in-period target, a stage-weight probability counts only when the deal's close date
falls in the quarter (that is how the forecast is used); the empirical baselines are fitted
on the in-period labels themselves. Closed-won revenue to date is added by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from features.deals import Vocabulary
from features.labels import TrainingSet
from models.encoding import Columns

Target = Literal["won", "won_in_period"]
BASELINE_NAMES = ("stage_weight_crm", "stage_weight_empirical", "commit")
# Pseudo-counts pulling a thin group's rate toward the overall rate.
_PRIOR = 20.0


def _close_in_period(frame: Columns) -> np.ndarray:
    return np.asarray(frame["close_date_in_quarter"], dtype=np.float64) > 0.5


@dataclass
class StageWeightCRM:
    """The CRM's own stage probability: nothing to learn."""

    target: Target = "won"
    name: str = "stage_weight_crm"

    def fit(
        self, frame: Columns, outcome: np.ndarray, *, weight: np.ndarray | None = None
    ) -> StageWeightCRM:
        # The configured probabilities are given, not learned; fit only records the fallback
        # for stages without one (their empirical rate).
        self.fallback_ = _GroupRate("stage").fit(frame, outcome, weight)
        return self

    def _configured(self, frame: Columns) -> np.ndarray:
        configured = np.asarray(frame["stage_probability"], dtype=np.float64) / 100.0
        p = np.where(np.isnan(configured), self.fallback_.predict(frame), configured)
        return np.clip(p, 0.0, 1.0)

    def predict_proba(self, frame: Columns) -> np.ndarray:
        p = self._configured(frame)
        if self.target == "won_in_period":
            p = np.where(_close_in_period(frame), p, 0.0)
        return p

    def period_weights(self, frame: Columns) -> np.ndarray:
        """Share of each open deal's amount in the period forecast."""
        return np.where(_close_in_period(frame), self._configured(frame), 0.0)


_MISSING = "(missing)"


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

    def predict(self, frame: Columns) -> np.ndarray:
        codes = self.groups_.codes(_keys(np.asarray(frame[self.column])))
        return np.where(codes >= 0, self.rates_[np.maximum(codes, 0)], self.overall_)


@dataclass
class StageWeightEmpirical:
    """Win rate of training snapshots in the same stage."""

    target: Target = "won"
    name: str = "stage_weight_empirical"

    def fit(
        self, frame: Columns, outcome: np.ndarray, *, weight: np.ndarray | None = None
    ) -> StageWeightEmpirical:
        self.rates_ = _GroupRate("stage").fit(frame, outcome, weight)
        return self

    def predict_proba(self, frame: Columns) -> np.ndarray:
        return self.rates_.predict(frame)

    def period_weights(self, frame: Columns) -> np.ndarray:
        return np.where(_close_in_period(frame), self.predict_proba(frame), 0.0)


@dataclass
class CommitBaseline:
    """Win rate of training snapshots in the same forecast category; the period forecast is
    the amount of Commit deals (or Commit and Best Case) closing in the period."""

    target: Target = "won"
    name: str = "commit"
    include_best_case: bool = False

    def fit(
        self, frame: Columns, outcome: np.ndarray, *, weight: np.ndarray | None = None
    ) -> CommitBaseline:
        self.rates_ = _GroupRate("forecast_category").fit(frame, outcome, weight)
        return self

    def predict_proba(self, frame: Columns) -> np.ndarray:
        return self.rates_.predict(frame)

    def period_weights(self, frame: Columns) -> np.ndarray:
        called = ["Commit", "Best Case"] if self.include_best_case else ["Commit"]
        in_call = np.isin(np.asarray(frame["forecast_category"], dtype=object), called)
        return (in_call & _close_in_period(frame)).astype(np.float64)


Baseline = StageWeightCRM | StageWeightEmpirical | CommitBaseline


def baselines_for(
    training: TrainingSet, targets: tuple[str, ...] | None = None
) -> dict[str, dict[str, Baseline]]:
    """The baselines of each training target (all by default), fitted on the same snapshots,
    labels and censoring weights as the model: one fit for the backtest and the bundle."""
    out = {}
    for name, labels in training.targets.items():
        if targets is not None and name not in targets:
            continue
        known = labels.known
        out[name] = fit_baselines(
            training.frame[known],
            labels.label[known],
            target="won_in_period" if name == "won_in_period" else "won",
            weight=labels.weight[known],
        )
    return out


def fit_baselines(
    frame: Columns, outcome: np.ndarray, *, target: Target, weight: np.ndarray | None = None
) -> dict[str, Baseline]:
    """The three baselines fitted on the same training snapshots and weights as the model."""
    return {
        "stage_weight_crm": StageWeightCRM(target).fit(frame, outcome, weight=weight),
        "stage_weight_empirical": StageWeightEmpirical(target).fit(frame, outcome, weight=weight),
        "commit": CommitBaseline(target).fit(frame, outcome, weight=weight),
    }
