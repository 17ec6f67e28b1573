"""The baseline forecaster as a servable model: the answer before any model earns the gate.

Until a trained model passes the promotion gate (training.gate), the CRM still gets
calibrated probabilities: each deal's win probability is the empirical stage weight, the
(censoring-weighted, shrunk) win rate of training snapshots in the deal's stage, exactly
the `stage_weight_empirical` baseline the backtest scores. `BaselineWinModel` has
`WinModel`'s predict interface and returns a `WinPrediction` with `mode="baseline"`, so it
rides in the same bundle, pyfunc and `Scorer` as a model.

- Horizons: each horizon's own stage rate (fitted on that horizon's labels), held monotone
  in the horizon's length around `won` and `won_in_period` as the model's are.
- Intervals (level `interval_level`): the equal-tailed Jeffreys interval of a binomial
  rate, Beta(k + 1/2, n - k + 1/2), with n the distinct deals whose outcome is known that
  were seen in the stage and k = rate x n. Deals, not snapshots: a deal's weekly snapshots
  are one outcome seen many times, and counting them would make the interval far too
  narrow. A stage training never saw gets the overall rate with the shrinkage prior's
  pseudo-count as its n, so its interval is wide.
- Explanations: the answer is the stage's historical rate, and it says so. One driver, the
  stage, whose contribution is the stage rate's log-odds minus the overall rate's (the base
  value), so base + contribution = the margin, as the model's explanations reconcile. No
  other drivers are invented and no actions are proposed (nothing but the stage moves the
  rate). The 7- and 30-day trend is the stage rate then against now.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import logit
from scipy.stats import beta

from features.artifacts import ArtifactReader, ArtifactWriter
from features.labels import HorizonSpec, TrainingSet
from features.snapshots import FeaturePlan
from features.timestamps import to_ns
from models.baselines import _PRIOR, StageWeightEmpirical
from models.encoding import Columns, FeatureEncoder
from models.explain import (
    DealExplanation,
    Direction,
    Driver,
    FactorEffect,
    FactorMove,
    TrendWindow,
)
from models.factors import MANAGER_FACTOR
from models.win import (
    Link,
    Mode,
    WinModelConfig,
    WinPrediction,
    horizon_probabilities,
)

BASELINE_MODE: Mode = "baseline"
FORECASTER = "stage_weight_empirical"
_EPS = 1e-6
BASELINE_WARNING = (
    "baseline mode: no model has passed the promotion gate yet, so this is the stage's "
    "historical win rate (empirical stage weight); the first model that beats it replaces it"
)


def _log_odds(p: np.ndarray) -> np.ndarray:
    return np.asarray(logit(np.clip(p, _EPS, 1 - _EPS)), dtype=np.float64)


def _stage_keys(columns: Columns) -> np.ndarray:
    keys = np.asarray(columns["stage"], dtype=object).copy()
    keys[pd.isna(keys)] = "(missing)"
    return keys


@dataclass
class _StageRate:
    """One target's stage rates and the number of distinct deals behind each."""

    rates: StageWeightEmpirical
    deals: dict[str, int]

    @classmethod
    def fit(cls, frame: pd.DataFrame, label: np.ndarray, weight: np.ndarray) -> _StageRate:
        known = weight > 0
        rows = frame[known]
        rates = StageWeightEmpirical().fit(rows, label[known], weight=weight[known])
        seen = pd.DataFrame(
            {"stage": _stage_keys(rows), "deal": rows["opportunity_id"].to_numpy(dtype=object)}
        )
        deals = seen.groupby("stage")["deal"].nunique()
        return cls(rates, {str(k): int(v) for k, v in deals.items()})

    def to_data(self, out: ArtifactWriter, key: str) -> dict[str, Any]:
        return {"rates": self.rates.to_data(out, f"{key}.rates"), "deals": dict(self.deals)}

    @classmethod
    def from_data(cls, data: Mapping[str, Any], source: ArtifactReader) -> _StageRate:
        return cls(
            StageWeightEmpirical.from_data(data["rates"], source),
            {str(k): int(v) for k, v in data["deals"].items()},
        )

    def predict(self, columns: Columns) -> np.ndarray:
        return np.asarray(self.rates.predict_proba(columns), dtype=np.float64)

    def deal_counts(self, columns: Columns) -> np.ndarray:
        """Distinct deals behind each row's rate; the prior's pseudo-count for a stage
        training never saw (its rate is then the overall rate)."""
        return np.array(
            [self.deals.get(str(key), _PRIOR) for key in _stage_keys(columns)], dtype=np.float64
        )

    @property
    def overall(self) -> float:
        return float(self.rates.rates_.overall_)


def jeffreys_interval(p: np.ndarray, n: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """The equal-tailed Jeffreys interval of a rate `p` seen over `n` trials, held around p."""
    k = np.asarray(p, dtype=np.float64) * n
    tail = (1 - level) / 2
    low = beta.ppf(tail, k + 0.5, n - k + 0.5)
    high = beta.ppf(1 - tail, k + 0.5, n - k + 0.5)
    return np.minimum(low, p), np.maximum(high, p)


@dataclass
class BaselineWinModel:
    """The empirical stage weight for every horizon, with WinModel's predict interface."""

    plan: FeaturePlan
    config: WinModelConfig = field(default_factory=WinModelConfig)

    def fit(self, training: TrainingSet) -> BaselineWinModel:
        frame = training.frame
        # The Scorer encodes every request once; the encoder also names what training saw.
        self.encoder_ = FeatureEncoder.fit(
            frame, names=self.plan.feature_names, categorical=self.plan.categorical_features
        )
        self.mode_ = BASELINE_MODE
        self.ever_days_ = training.ever_days
        self.horizons_ = training.horizons
        self.targets_ = {
            name: _StageRate.fit(frame, np.nan_to_num(labels.label, nan=0.0), labels.weight)
            for name, labels in training.targets.items()
        }
        won = training.targets["won"]
        deals = frame["opportunity_id"].to_numpy(dtype=object)
        outcome = np.nan_to_num(won.label, nan=-1.0)
        self.training_summary_: dict[str, Any] = {
            "mode": BASELINE_MODE,
            "forecaster": FORECASTER,
            "won_deals": int(pd.unique(deals[won.known & (outcome == 1)]).size),
            "lost_deals": int(pd.unique(deals[won.known & (outcome == 0)]).size),
            "ever_days": self.ever_days_,
            "labels": "inverse probability of censoring weights (features.labels)",
            "intervals": "Jeffreys interval of the stage's rate over its distinct deals",
            "stage_rates": {
                str(stage): float(rate)
                for stage, rate in zip(
                    self.targets_["won"].rates.rates_.groups_.index,
                    self.targets_["won"].rates.rates_.rates_,
                    strict=True,
                )
            },
        }
        return self

    def to_data(self, out: ArtifactWriter, key: str) -> dict[str, Any]:
        """The fitted forecaster as data; its plan is the bundle's (stored once, there)."""
        return {
            "config": self.config.to_data(),
            "encoder": self.encoder_.to_dict(),
            "mode": self.mode_,
            "ever_days": self.ever_days_,
            "horizons": self.horizons_.to_data(),
            "targets": {
                name: rate.to_data(out, f"{key}.{name}") for name, rate in self.targets_.items()
            },
            "training_summary": self.training_summary_,
        }

    @classmethod
    def from_data(
        cls, data: Mapping[str, Any], source: ArtifactReader, *, plan: FeaturePlan
    ) -> BaselineWinModel:
        model = cls(plan, WinModelConfig.from_data(data["config"]))
        model.encoder_ = FeatureEncoder.from_dict(data["encoder"])
        model.mode_ = data["mode"]
        model.ever_days_ = int(data["ever_days"])
        model.horizons_ = HorizonSpec.from_data(data["horizons"])
        model.targets_ = {
            name: _StageRate.from_data(rate, source) for name, rate in data["targets"].items()
        }
        model.training_summary_ = dict(data["training_summary"])
        return model

    def predict(
        self,
        columns: Columns,
        *,
        matrix: np.ndarray | None = None,
        as_of: np.ndarray | None = None,
    ) -> WinPrediction:
        """The stage rates of `columns` (`matrix` is accepted for the interface and unused)."""
        level = self.config.interval_level
        won_rate, in_rate = self.targets_["won"], self.targets_["won_in_period"]
        won = won_rate.predict(columns)
        in_period = np.minimum(in_rate.predict(columns), won)
        won_low, won_high = jeffreys_interval(won, won_rate.deal_counts(columns), level)
        in_low, in_high = jeffreys_interval(in_period, in_rate.deal_counts(columns), level)
        in_high, in_low = np.minimum(in_high, won_high), np.minimum(in_low, in_period)
        if as_of is None and "as_of" in columns:
            as_of = to_ns(np.asarray(columns["as_of"]))
        horizons, lengths = (
            self._horizons(columns, np.asarray(as_of, dtype=np.int64), won, in_period)
            if as_of is not None
            else ({}, {})
        )
        stage = _stage_keys(columns)
        known = np.array([str(s) in won_rate.deals for s in stage])
        return WinPrediction(
            won=won,
            won_low=won_low,
            won_high=won_high,
            in_period=in_period,
            in_period_low=in_low,
            in_period_high=in_high,
            margin=_log_odds(won),
            mode=BASELINE_MODE,
            unseen={"stage": ~known} if not known.all() else {},
            horizons=horizons,
            horizon_days=lengths,
        )

    def _horizons(
        self, columns: Columns, as_of: np.ndarray, won: np.ndarray, in_period: np.ndarray
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        return horizon_probabilities(
            self.horizons_,
            as_of,
            ever_days=self.ever_days_,
            won=won,
            in_period=in_period,
            other=lambda t: self.targets_[t].predict(columns),
        )

    @property
    def stage_factor(self) -> str:
        spec = next(spec for spec in self.plan.catalog if spec.name == "stage")
        return MANAGER_FACTOR[spec.factor]

    def won_link(self) -> Link:
        """The served probability is the stage rate, the margin its log-odds: the identity."""
        return Link(1.0, 0.0, 0.0)

    def explain(
        self,
        columns: Columns,
        *,
        n: int,
        past_row: dict[int, np.ndarray] | None = None,
        absent: dict[int, tuple[str | None, ...]] | None = None,
    ) -> list[DealExplanation]:
        """What the baseline can honestly say: the stage and its rate, and (given the trend
        queries' `past_row` / `absent`) the stage rate then against now. `columns` are the
        deals now (the first `n` rows), followed by their earlier rows when a trend is asked."""
        rate = self.targets_["won"]
        p = rate.predict(columns)
        deals = rate.deal_counts(columns)
        stage = np.asarray(columns["stage"], dtype=object)
        base = float(_log_odds(np.array([rate.overall]))[0])
        margin = _log_odds(p)
        factor = self.stage_factor
        out = []
        for i in range(n):
            contribution = float(margin[i] - base)
            sentence = (
                f"In stage {stage[i]}, {p[i]:.0%} of past deals like this one were won "
                f"({deals[i]:.0f} deals): the answer is the stage's historical rate, since no "
                "model has passed the promotion gate yet."
            )
            driver = Driver(factor, "stage", str(stage[i]), contribution, sentence)
            direction: Direction = (
                "neutral"
                if abs(contribution) < 0.05
                else "raises"
                if contribution > 0
                else "lowers"
            )
            effect = FactorEffect(factor, contribution, direction, (driver,), sentence)
            trend: tuple[TrendWindow, ...] = ()
            if past_row is not None and absent is not None:
                trend = tuple(
                    self._window(days, i, int(past_row[days][i]), p, margin, stage, absent)
                    for days in past_row
                )
            out.append(
                DealExplanation(
                    base_value=base,
                    margin=float(margin[i]),
                    probability=float(p[i]),
                    factors=(effect,),
                    drivers=(driver,),
                    trend=trend,
                )
            )
        return out

    def _window(
        self,
        days: int,
        i: int,
        past: int,
        p: np.ndarray,
        margin: np.ndarray,
        stage: np.ndarray,
        absent: dict[int, tuple[str | None, ...]],
    ) -> TrendWindow:
        if past < 0:
            return TrendWindow(days, None, None, (), absent[days][i] or "")
        then, now = float(p[past]), float(p[i])
        change = float(margin[i] - margin[past])
        moves = (FactorMove(self.stage_factor, change),) if abs(change) > 1e-12 else ()
        span = f"Over the last {days} days"
        if round(now * 100) == round(then * 100):
            sentence = f"{span} the win probability held at {now:.0%} (the stage's rate)."
        else:
            verb = "rose" if now > then else "fell"
            sentence = (
                f"{span} the win probability {verb} from {then:.0%} to {now:.0%}: the deal "
                f"moved from {stage[past]} to {stage[i]}."
            )
        return TrendWindow(days, then, now - then, moves, sentence)
