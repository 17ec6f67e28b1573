"""Per-deal win probabilities: LightGBM for `won` and `won_in_period`, calibrated on a later
window, with intervals, and a small-data mode.

Training windows at cut-off C (labels as known at C, see features.labels):
- `won`: snapshots stamped at least the censoring horizon before C. The last
  `calibration_days` of them calibrate; the earlier ones train.
- `won_in_period`: snapshots of fiscal quarters ended by C. The last ended quarter
  calibrates; the earlier ones train.
`won_in_period <= won` holds for every deal: a deal cannot be won this quarter more surely
than it can be won at all, so the in-period probability is capped by the won probability.

Intervals (level `interval_level`, 80% by default): `ensemble` extra models are trained on
bootstrap resamples of deals (whole deals, since a deal's snapshots are not independent).
A deal's interval is the main (calibrated) probability moved by +-z standard deviations of
the members' raw logits, so it is wide where resampling the deals changes the answer, that
is where similar deals are few. Raw, not calibrated: the isotonic calibrator is a step
function, and members that disagree inside one step came out identical (a zero-width
interval for 1% of the deals between 0.05 and 0.95). In small-data mode the spread is scaled
by the trees' weight in the blend. Because an owner or a category the
model never saw is not "thin data" to the trees (they fall back to the average), each such
novelty adds `novelty_logit_sd` to the spread. The interval is about the probability (the
model's uncertainty), not about the deal's outcome, which is 0 or 1.

Small-data mode: with fewer than `full_data_deals` won or lost deals in the training window,
the trees are kept shallow and their probability is blended with the empirical stage weight,
w * model + (1 - w) * stage rate, w = deals / (deals + `small_data_prior_deals`); the
prediction says so in `mode`.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.special import expit, logit
from scipy.stats import norm

from features.errors import DealcastDataError
from features.fiscal import quarter_bounds
from features.labels import TrainingSet
from features.snapshots import FeaturePlan
from features.timestamps import to_ns
from models.baselines import StageWeightEmpirical
from models.calibration import Calibrator
from models.encoding import Columns, FeatureEncoder

logger = logging.getLogger(__name__)

Mode = Literal["full", "small-data"]
DAY_NS = 86_400 * 10**9
_EPS = 1e-6


class InsufficientData(DealcastDataError, ValueError):
    """Too few resolved deals to train anything honest."""


@dataclass(frozen=True)
class WinModelConfig:
    n_estimators: int = 150
    learning_rate: float = 0.1
    num_leaves: int = 31
    # TreeSHAP costs O(trees x leaves x depth^2) per deal: capping the depth (the unbounded
    # trees reached depth 16) halves the cost of an explained score at no measured loss.
    max_depth: int = 6
    min_data_in_leaf: int = 100
    feature_fraction: float = 0.8
    # Weekly snapshots of one deal are near-duplicates: a row sample per tree loses little.
    bagging_fraction: float = 0.5
    max_bin: int = 63
    lambda_l2: float = 1.0
    calibration_days: int = 91
    ensemble: int = 3
    ensemble_estimators: int = 60
    interval_level: float = 0.8
    novelty_logit_sd: float = 0.35
    full_data_deals: int = 300
    small_data_prior_deals: float = 600.0
    minimum_deals: int = 40
    seed: int = 0
    threads: int = 2

    def lgb_params(self, *, small: bool, seed_offset: int = 0) -> dict[str, Any]:
        return {
            "objective": "binary",
            "learning_rate": self.learning_rate,
            "num_leaves": 7 if small else self.num_leaves,
            "max_depth": self.max_depth,
            "min_data_in_leaf": 20 if small else self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1,
            "max_bin": self.max_bin,
            "lambda_l2": self.lambda_l2,
            "seed": self.seed + seed_offset,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.threads,
            "verbosity": -1,
        }


@dataclass
class WinPrediction:
    won: np.ndarray
    won_low: np.ndarray
    won_high: np.ndarray
    in_period: np.ndarray
    in_period_low: np.ndarray
    in_period_high: np.ndarray
    margin: np.ndarray  # raw log-odds of the main `won` model (what SHAP explains)
    mode: Mode
    # Per categorical feature, the rows whose value training never saw (widens the interval).
    unseen: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class _Target:
    """One target's main model, bootstrap members, calibrator and small-data blend."""

    booster: lgb.Booster
    members: list[lgb.Booster]
    calibrator: Calibrator
    stage_rates: StageWeightEmpirical
    blend: float  # weight of the trees (1.0 in full mode)

    def probability(
        self, matrix: np.ndarray, frame: Columns, *, threads: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(calibrated probability, standard deviation of members' raw logits, raw margin)."""
        margin = raw_margin(self.booster, matrix, threads=threads)
        p = self.calibrate(expit(margin), frame)
        if not self.members:
            return p, np.zeros_like(p), margin
        members = np.stack([raw_margin(m, matrix, threads=threads) for m in self.members])
        return p, members.std(axis=0, ddof=1) * self.blend, margin

    def calibrate(self, raw: np.ndarray, frame: Columns) -> np.ndarray:
        """The served probability from the main booster's raw probability: calibrated, and
        blended with the stage weight in small-data mode."""
        p = self.calibrator.transform(raw)
        if self.blend < 1.0:
            stage = self.stage_rates.predict_proba(frame)
            p = self.blend * p + (1.0 - self.blend) * stage
        return np.clip(p, 0.0, 1.0)


@dataclass
class WinModel:
    """Calibrated `won` and `won_in_period` probabilities with intervals."""

    plan: FeaturePlan
    config: WinModelConfig = field(default_factory=WinModelConfig)

    def fit(self, training: TrainingSet) -> WinModel:
        frame = training.frame
        config = self.config
        self.encoder_ = FeatureEncoder.fit(
            frame, names=self.plan.feature_names, categorical=self.plan.categorical_features
        )
        matrix = self.encoder_.transform(frame)
        as_of = to_ns(frame["as_of"])
        won = frame["won"].to_numpy(dtype=np.float64)
        in_period = frame["won_in_period"].to_numpy(dtype=np.float64)
        deals = frame["opportunity_id"].to_numpy(dtype=object)

        use = training.use_won
        n_won = _deal_count(deals[use & (won == 1)])
        n_lost = _deal_count(deals[use & (won == 0)])
        if min(n_won, n_lost) < config.minimum_deals:
            raise InsufficientData(
                f"{n_won} won and {n_lost} lost deals resolved before the cut-off; at least "
                f"{config.minimum_deals} of each are needed"
            )
        self.mode_: Mode = "full" if min(n_won, n_lost) >= config.full_data_deals else "small-data"
        small = self.mode_ == "small-data"
        blend = (
            1.0
            if not small
            else (n_won + n_lost) / (n_won + n_lost + config.small_data_prior_deals)
        )

        last = as_of[use].max()
        calibrate_won = use & (as_of > last - config.calibration_days * DAY_NS)
        self.won_ = self._fit_target(
            matrix,
            won,
            frame,
            train=use & ~calibrate_won,
            calibrate=calibrate_won,
            deals=deals,
            small=small,
            blend=blend,
            seed_offset=0,
        )
        use_in = training.use_won_in_period
        quarter_starts = _quarter_start(frame, self.plan)
        last_quarter = quarter_starts[use_in].max() if use_in.any() else 0
        calibrate_in = use_in & (quarter_starts == last_quarter)
        train_in = use_in & ~calibrate_in
        if (
            train_in.sum() < 50
            or min(np.sum(in_period[train_in] == 1), np.sum(in_period[train_in] == 0)) < 10
        ):
            # Too few finished quarters to calibrate on a later one: train on all of them.
            train_in, calibrate_in = use_in, np.zeros_like(use_in)
        self.in_period_ = self._fit_target(
            matrix,
            in_period,
            frame,
            train=train_in,
            calibrate=calibrate_in,
            deals=deals,
            small=small,
            blend=blend,
            seed_offset=1000,
        )
        self.training_summary_ = {
            "mode": self.mode_,
            "won_deals": n_won,
            "lost_deals": n_lost,
            "won_rows_train": int((use & ~calibrate_won).sum()),
            "won_rows_calibration": int(calibrate_won.sum()),
            "won_calibration": self.won_.calibrator.method,
            "in_period_rows_train": int(train_in.sum()),
            "in_period_rows_calibration": int(calibrate_in.sum()),
            "in_period_calibration": self.in_period_.calibrator.method,
            "blend": blend,
        }
        logger.info("win model trained: %s", self.training_summary_)
        return self

    def _fit_target(
        self,
        matrix: np.ndarray,
        outcome: np.ndarray,
        frame: pd.DataFrame,
        *,
        train: np.ndarray,
        calibrate: np.ndarray,
        deals: np.ndarray,
        small: bool,
        blend: float,
        seed_offset: int,
    ) -> _Target:
        config = self.config
        params = config.lgb_params(small=small, seed_offset=seed_offset)
        rounds = config.n_estimators if not small else max(config.n_estimators // 3, 50)
        booster = _train(matrix[train], outcome[train], params, rounds, self.encoder_)
        calibrator = Calibrator()
        if calibrate.any():
            raw = raw_margin(booster, matrix[calibrate], threads=config.threads)
            calibrator.fit(expit(raw), outcome[calibrate])
        stage_rates = StageWeightEmpirical().fit(frame[train], outcome[train])
        members = []
        rng = np.random.default_rng(config.seed + seed_offset)
        train_rows = np.flatnonzero(train)
        codes, uniques = pd.factorize(deals[train_rows])
        for k in range(config.ensemble):
            # A bootstrap of deals: each deal's snapshots weighted by how often it was drawn.
            drawn = np.bincount(rng.integers(0, len(uniques), len(uniques)), minlength=len(uniques))
            weight = drawn[codes].astype(np.float64)
            rows = train_rows[weight > 0]
            members.append(
                _train(
                    matrix[rows],
                    outcome[rows],
                    {**params, "seed": params["seed"] + k + 1},
                    config.ensemble_estimators,
                    self.encoder_,
                    weight=weight[weight > 0],
                    learning_rate=config.learning_rate * rounds / config.ensemble_estimators,
                )
            )
        return _Target(booster, members, calibrator, stage_rates, blend)

    def predict(self, columns: Columns, *, matrix: np.ndarray | None = None) -> WinPrediction:
        """Probabilities and intervals of `columns`; `matrix`, when given, is their encoding
        (`encoder_.transform(columns)`), so that callers scoring and explaining the same
        rows encode them once."""
        if matrix is None:
            matrix = self.encoder_.transform(columns)
        z = _z_score(self.config.interval_level)
        unseen = self.encoder_.unseen(columns)
        novelty = self._novelty(columns, unseen)
        threads = prediction_threads(len(matrix), self.config.threads)
        won, won_sd, margin = self.won_.probability(matrix, columns, threads=threads)
        in_period, in_sd, _ = self.in_period_.probability(matrix, columns, threads=threads)
        in_period = np.minimum(in_period, won)
        won_low, won_high = _interval(won, np.hypot(won_sd, novelty), z)
        in_low, in_high = _interval(in_period, np.hypot(in_sd, novelty), z)
        in_high = np.minimum(in_high, won_high)
        in_low = np.minimum(in_low, in_period)
        return WinPrediction(
            won=won,
            won_low=won_low,
            won_high=won_high,
            in_period=in_period,
            in_period_low=in_low,
            in_period_high=in_high,
            margin=margin,
            mode=self.mode_,
            unseen=unseen,
        )

    def _novelty(self, columns: Columns, unseen: dict[str, np.ndarray]) -> np.ndarray:
        """Extra logit spread for what the training data never showed."""
        n = len(np.asarray(columns[self.encoder_.names[0]]))
        count = np.zeros(n)
        for mask in unseen.values():
            count += mask
        if "owner_closed_deals" in self.encoder_.names:
            count += np.asarray(columns["owner_closed_deals"], dtype=np.float64) < 5
        return self.config.novelty_logit_sd * np.sqrt(count)


def _train(
    matrix: np.ndarray,
    outcome: np.ndarray,
    params: dict[str, Any],
    rounds: int,
    encoder: FeatureEncoder,
    *,
    weight: np.ndarray | None = None,
    learning_rate: float | None = None,
) -> lgb.Booster:
    if learning_rate is not None:
        params = {**params, "learning_rate": min(learning_rate, 0.3)}
    data = lgb.Dataset(
        matrix,
        label=outcome,
        weight=weight,
        feature_name=encoder.names,
        categorical_feature=encoder.categorical_indices,
        free_raw_data=True,
    )
    return lgb.train(params, data, num_boost_round=rounds)


# Below this many rows a prediction runs on one thread: waking OpenMP threads costs more than
# scoring a handful of rows (measured: 8 ms instead of 0.03 ms for one row on a busy host).
SINGLE_THREAD_ROWS = 256


def prediction_threads(rows: int, threads: int) -> int:
    return 1 if rows < SINGLE_THREAD_ROWS else threads


def raw_margin(booster: lgb.Booster, matrix: np.ndarray, *, threads: int) -> np.ndarray:
    """The model's raw output (log-odds), the quantity SHAP attributions add up to."""
    return np.asarray(
        booster.predict(matrix, raw_score=True, num_threads=threads), dtype=np.float64
    )


@functools.cache
def _z_score(level: float) -> float:
    """The normal quantile of a central `level` interval (scipy's ppf costs 0.1 ms a call)."""
    return float(norm.ppf(0.5 + level / 2))


def _interval(p: np.ndarray, sd: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    centre = logit(np.clip(p, _EPS, 1 - _EPS))
    return np.minimum(expit(centre - z * sd), p), np.maximum(expit(centre + z * sd), p)


def _deal_count(deals: np.ndarray) -> int:
    return int(pd.unique(deals).size)


def _quarter_start(frame: pd.DataFrame, plan: FeaturePlan) -> np.ndarray:
    start, _ = quarter_bounds(
        to_ns(frame["as_of"]), start_month=plan.config.fiscal_year_start_month
    )
    return start
