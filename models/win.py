"""Per-deal win probabilities by horizon: LightGBM boosted from the stage weight, stopped
early on a later window, with intervals.

Targets (features.labels): P(won within 30, 90, 180 days), within this fiscal quarter
(`won_in_period`) and the next, and "ever" (`won`, the longest horizon the data supports).
Every snapshot counts for what is known about it at the cut-off: labels are weighted by
inverse probability of censoring, so no censored deal is dropped and no fixed wait is needed.

Honest by construction (the DESIGN's "with nothing to learn, it is the baseline"):
- Each target's trees start from the empirical stage weight's log-odds (LightGBM's
  `init_score`), fitted on the same weighted labels, so they learn only what improves on it.
- They stop early: rounds are added while the weighted log loss on the later window
  (the last `calibration_days` of known labels) improves, for at most `n_estimators`. On a
  CRM whose outcomes carry no signal beyond the stage, they stop after a few rounds.
- Then each target is refitted on every known label with the rounds chosen (the later
  window is the most recent data, and half of a young org's), and its probability served as
  boosting on log loss from the stage weight's calibrated start gives it; the backtest
  measures its calibration out of time. `final_fit = "calibrate"` keeps the trees fitted
  before the window instead and maps them with Platt's sigmoid fitted on it (smooth, so it
  never collapses distinct deals onto one value as an isotonic step function did).
The margin a target serves is the stage weight's log-odds plus its trees' raw output; the
stage offset is read from the encoded stage column, so every caller holding the encoded
matrix (SHAP, the trend, the actions) computes the same margin.

Horizons are monotone for every deal: `won` (ever) and `won_in_period` are served exactly as
their models say (explanations reconcile with them), and the other horizons are held between
them and made non-decreasing in the horizon's length (`monotone_in_horizon`).

Intervals (level `interval_level`, 80% by default) for `won` and `won_in_period`: `ensemble`
extra models are trained on bootstrap resamples of deals (whole deals, since a deal's
snapshots are not independent). A deal's interval is the calibrated probability moved by
+-z standard deviations of the members' raw logits, so it is wide where resampling the deals
changes the answer. An owner or a category the model never saw is not "thin data" to the
trees (they fall back to the average), so each such novelty adds `novelty_logit_sd` to the
spread. The interval is about the probability (the model's uncertainty), not the outcome.

Small-data mode: with fewer than `full_data_deals` won or lost deals in the training window
the trees are kept small (fewer leaves, smaller leaves allowed); the prediction says so in
`mode`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.special import expit, logit
from scipy.stats import norm

from features.errors import DealcastDataError
from features.labels import TargetLabels, TrainingSet, target_name
from features.snapshots import FeaturePlan
from features.timestamps import to_ns
from models.baselines import StageWeightEmpirical
from models.calibration import Calibrator
from models.encoding import Columns, FeatureEncoder

logger = logging.getLogger(__name__)

Mode = Literal["full", "small-data", "baseline"]  # baseline: models.baseline_model
DAY_NS = 86_400 * 10**9
_EPS = 1e-6
# Targets with bootstrap members (intervals): the two the attainment forecast and the API's
# headline probabilities rest on.
INTERVAL_TARGETS = ("won", "won_in_period")


class InsufficientData(DealcastDataError, ValueError):
    """Too few resolved deals to train anything honest."""


@dataclass(frozen=True)
class WinModelConfig:
    # The most rounds a target may take; early stopping on the later window picks fewer.
    n_estimators: int = 300
    early_stopping_rounds: int = 20
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
    minimum_deals: int = 40
    # The horizons without intervals (30/90/180 days, next quarter) train on the snapshots
    # of every k-th week only: a deal's weekly snapshots are near-duplicates, and these four
    # boosters would otherwise cost twice what the two headline ones do.
    horizon_sample_weeks: int = 2
    # "refit": once early stopping has chosen the rounds on the later window, refit on every
    # known label and serve the boosted probability as it is (log loss from the stage
    # weight's calibrated start keeps it calibrated; the backtest measures it). In a young
    # org the later window is half the data, and the most recent half: on three 9-month orgs
    # this cut the Brier score to 0.93x the empirical stage weight's, where keeping the
    # trees fitted before the window and Platt-mapping them on it ("calibrate") gave 1.00x.
    final_fit: Literal["refit", "calibrate"] = "refit"
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
    margin: np.ndarray  # margin of the `won` model (stage offset + trees: what SHAP explains)
    mode: Mode
    # Per categorical feature, the rows whose value training never saw (widens the interval).
    unseen: dict[str, np.ndarray] = field(default_factory=dict)
    # P(won within each horizon) by horizon name (30d, ..., this_quarter, next_quarter, ever),
    # monotone in the horizon's length, and each horizon's length in days per deal.
    horizons: dict[str, np.ndarray] = field(default_factory=dict)
    horizon_days: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class StageOffset:
    """The empirical stage weight's log-odds, looked up from the encoded stage column."""

    column: int
    by_code: np.ndarray  # per code of the encoder's stage vocabulary
    default: float  # a stage the encoder never saw: the overall rate's log-odds

    @classmethod
    def fit(
        cls, encoder: FeatureEncoder, frame: Columns, outcome: np.ndarray, weight: np.ndarray
    ) -> tuple[StageOffset, StageWeightEmpirical]:
        rates = StageWeightEmpirical().fit(frame, outcome, weight=weight)
        vocabulary = np.asarray(encoder.vocabularies["stage"], dtype=object)
        by_code = _logit(rates.predict_proba({"stage": vocabulary}))
        default = float(_logit(np.array([rates.rates_.overall_]))[0])
        return cls(encoder.names.index("stage"), by_code, default), rates

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        codes = matrix[:, self.column]
        known = ~np.isnan(codes)
        out = np.full(len(codes), self.default)
        out[known] = self.by_code[codes[known].astype(np.int64)]
        return out


@dataclass
class _Target:
    """One target's trees (boosted from the stage offset), bootstrap members, calibrator."""

    booster: lgb.Booster
    members: list[lgb.Booster]
    calibrator: Calibrator
    offset: StageOffset
    stage_rates: StageWeightEmpirical
    rounds: int  # rounds kept by early stopping

    def margin(self, matrix: np.ndarray, *, threads: int) -> np.ndarray:
        """Stage offset plus the trees' raw output: what the calibrator maps and SHAP explains."""
        return self.offset(matrix) + raw_margin(self.booster, matrix, threads=threads)

    def contributions(self, matrix: np.ndarray, *, threads: int) -> np.ndarray:
        """TreeSHAP values of the margin, base value last: the stage offset's deviation from
        the default is the stage column's, its default the base's, so base + the sum of
        the row equals `margin` exactly."""
        values = np.asarray(
            self.booster.predict(matrix, pred_contrib=True, num_threads=threads),
            dtype=np.float64,
        )
        offset = self.offset(matrix)
        values[:, self.offset.column] += offset - self.offset.default
        values[:, -1] += self.offset.default
        return values

    def probability(
        self, matrix: np.ndarray, *, threads: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(calibrated probability, standard deviation of members' raw logits, margin)."""
        margin = self.margin(matrix, threads=threads)
        p = self.calibrate(expit(margin))
        if not self.members:
            return p, np.zeros_like(p), margin
        members = np.stack([raw_margin(m, matrix, threads=threads) for m in self.members])
        return p, members.std(axis=0, ddof=1), margin

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        """The served probability from the margin's probability."""
        return np.clip(self.calibrator.transform(raw), 0.0, 1.0)


@dataclass
class WinModel:
    """Calibrated win probabilities for every horizon, with intervals for `won` and
    `won_in_period`."""

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
        deals = frame["opportunity_id"].to_numpy(dtype=object)

        won = training.targets["won"]
        n_won = _deal_count(deals[won.known & (won.label == 1)])
        n_lost = _deal_count(deals[won.known & (won.label == 0)])
        if min(n_won, n_lost) < config.minimum_deals:
            raise InsufficientData(
                f"{n_won} won and {n_lost} lost deals resolved before the cut-off; at least "
                f"{config.minimum_deals} of each are needed"
            )
        self.mode_: Mode = "full" if min(n_won, n_lost) >= config.full_data_deals else "small-data"
        self.ever_days_ = training.ever_days
        self.horizons_ = training.horizons
        self.targets_: dict[str, _Target] = {}
        summary: dict[str, Any] = {}
        week = (as_of - as_of.min()) // (7 * DAY_NS)
        sampled = week % max(config.horizon_sample_weeks, 1) == 0
        for k, (name, labels) in enumerate(training.targets.items()):
            headline = name in INTERVAL_TARGETS
            target, info = self._fit_target(
                matrix,
                labels,
                frame,
                as_of=as_of,
                deals=deals,
                members=config.ensemble if headline else 0,
                seed_offset=1000 * k,
                rows=None if headline else sampled,
            )
            self.targets_[name] = target
            summary[name] = info
        self.training_summary_ = {
            "mode": self.mode_,
            "won_deals": n_won,
            "lost_deals": n_lost,
            "ever_days": self.ever_days_,
            "labels": "inverse probability of censoring weights (features.labels)",
            "targets": summary,
        }
        logger.info(
            "win model trained (%s, ever = %d days): %s",
            self.mode_,
            self.ever_days_,
            {name: info["rounds"] for name, info in summary.items()},
        )
        return self

    @property
    def won_(self) -> _Target:
        return self.targets_["won"]

    @property
    def in_period_(self) -> _Target:
        return self.targets_["won_in_period"]

    def _fit_target(
        self,
        matrix: np.ndarray,
        labels: TargetLabels,
        frame: pd.DataFrame,
        *,
        as_of: np.ndarray,
        deals: np.ndarray,
        members: int,
        seed_offset: int,
        rows: np.ndarray | None = None,
    ) -> tuple[_Target, dict[str, Any]]:
        """`rows`: the snapshots this target may train on (default all)."""
        config = self.config
        known = labels.known if rows is None else labels.known & rows
        outcome = np.nan_to_num(labels.label, nan=0.0)
        weight = labels.weight
        last = as_of[known].max()
        later = known & (as_of > last - config.calibration_days * DAY_NS)
        train = known & ~later
        if not _both_classes(outcome[later], 10) or not _both_classes(outcome[train], 10):
            # Too little to hold a later window out: train on everything known, with the
            # small model's few rounds, and serve the trees uncalibrated.
            train, later = known, np.zeros_like(known)
        small = self.mode_ == "small-data"
        params = config.lgb_params(small=small, seed_offset=seed_offset)

        def boosted(
            rows: np.ndarray, rounds: int, *, valid: np.ndarray | None = None
        ) -> tuple[StageOffset, StageWeightEmpirical, np.ndarray, lgb.Booster]:
            """Trees on `rows`, boosted from the stage weight fitted on the same rows, early
            stopped on the `valid` rows when given."""
            offset, stage_rates = StageOffset.fit(
                self.encoder_, frame[rows], outcome[rows], weight[rows]
            )
            base = offset(matrix)
            booster = _train(
                matrix[rows],
                outcome[rows],
                params,
                rounds,
                self.encoder_,
                weight=weight[rows],
                init_score=base[rows],
                valid=None
                if valid is None
                else (matrix[valid], outcome[valid], weight[valid], base[valid]),
                early_stopping_rounds=config.early_stopping_rounds,
            )
            return offset, stage_rates, base, booster

        if later.any():
            offset, stage_rates, base, booster = boosted(train, config.n_estimators, valid=later)
        else:
            offset, stage_rates, base, booster = boosted(train, 20)
        rounds = booster.best_iteration or booster.num_trees()
        calibrator = Calibrator()
        if later.any() and config.final_fit == "calibrate":
            margin = base[later] + raw_margin(booster, matrix[later], threads=config.threads)
            calibrator.fit(expit(margin), outcome[later], weight=weight[later])
        elif later.any():
            train = known
            offset, stage_rates, base, booster = boosted(train, rounds)
        trained_members = []
        rng = np.random.default_rng(config.seed + seed_offset)
        train_rows = np.flatnonzero(train)
        codes, uniques = pd.factorize(deals[train_rows])
        member_rounds = max(min(rounds, config.ensemble_estimators), 1)
        for k in range(members):
            # A bootstrap of deals: each deal's snapshots weighted by how often it was drawn.
            drawn = np.bincount(rng.integers(0, len(uniques), len(uniques)), minlength=len(uniques))
            draw = drawn[codes].astype(np.float64)
            rows = train_rows[draw > 0]
            trained_members.append(
                _train(
                    matrix[rows],
                    outcome[rows],
                    {**params, "seed": params["seed"] + k + 1},
                    member_rounds,
                    self.encoder_,
                    weight=(draw * weight[train_rows])[draw > 0],
                    init_score=base[rows],
                    learning_rate=config.learning_rate * rounds / member_rounds,
                )
            )
        target = _Target(booster, trained_members, calibrator, offset, stage_rates, rounds)
        return target, {
            "rounds": rounds,
            "rows_train": int(train.sum()),
            "rows_later": int(later.sum()),
            "rows_censored": int((~known).sum()),
            "calibration": calibrator.method,
        }

    def predict(
        self,
        columns: Columns,
        *,
        matrix: np.ndarray | None = None,
        as_of: np.ndarray | None = None,
    ) -> WinPrediction:
        """Probabilities and intervals of `columns`; `matrix`, when given, is their encoding
        (`encoder_.transform(columns)`), so that callers scoring and explaining the same
        rows encode them once. The horizons need each row's as-of time (ns): `as_of`, else
        an `as_of` column of `columns`; without either they are left out."""
        if matrix is None:
            matrix = self.encoder_.transform(columns)
        z = _z_score(self.config.interval_level)
        unseen = self.encoder_.unseen(columns)
        novelty = self._novelty(columns, unseen)
        threads = prediction_threads(len(matrix), self.config.threads)
        won, won_sd, margin = self.won_.probability(matrix, threads=threads)
        in_period, in_sd, _ = self.in_period_.probability(matrix, threads=threads)
        in_period = np.minimum(in_period, won)
        won_low, won_high = _interval(won, np.hypot(won_sd, novelty), z)
        in_low, in_high = _interval(in_period, np.hypot(in_sd, novelty), z)
        in_high = np.minimum(in_high, won_high)
        in_low = np.minimum(in_low, in_period)
        if as_of is None and "as_of" in columns:
            as_of = to_ns(np.asarray(columns["as_of"]))
        horizons, lengths = (
            self._horizons(as_of, matrix, won, in_period, threads=threads)
            if as_of is not None
            else ({}, {})
        )
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
            horizons=horizons,
            horizon_days=lengths,
        )

    def _horizons(
        self,
        as_of: np.ndarray,
        matrix: np.ndarray,
        won: np.ndarray,
        in_period: np.ndarray,
        *,
        threads: int,
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Every horizon's probability, monotone in its length, and the lengths in days."""
        names = self.horizons_.names
        as_of = np.asarray(as_of, dtype=np.int64)
        ends = self.horizons_.ends(as_of, ever_days=self.ever_days_)
        lengths = {name: (ends[name] - as_of) / DAY_NS for name in names}
        raw = {}
        for name in names:
            target = target_name(name)
            if target == "won":
                raw[name] = won
            elif target == "won_in_period":
                raw[name] = in_period
            else:
                raw[name] = self.targets_[target].probability(matrix, threads=threads)[0]
        anchored = np.array([target_name(n) in INTERVAL_TARGETS for n in names])
        fixed = monotone_in_horizon(
            np.column_stack([raw[n] for n in names]),
            np.column_stack([lengths[n] for n in names]),
            anchored=anchored,
        )
        return {n: fixed[:, j] for j, n in enumerate(names)}, lengths

    def _novelty(self, columns: Columns, unseen: dict[str, np.ndarray]) -> np.ndarray:
        """Extra logit spread for what the training data never showed."""
        n = len(np.asarray(columns[self.encoder_.names[0]]))
        count = np.zeros(n)
        for mask in unseen.values():
            count += mask
        if "owner_closed_deals" in self.encoder_.names:
            count += np.asarray(columns["owner_closed_deals"], dtype=np.float64) < 5
        return self.config.novelty_logit_sd * np.sqrt(count)


def monotone_in_horizon(p: np.ndarray, lengths: np.ndarray, *, anchored: np.ndarray) -> np.ndarray:
    """Probabilities (deals x horizons) made non-decreasing in each row's horizon lengths.

    Anchored columns keep their values; the others are first held between the anchors of
    shorter and longer horizons, then, in length order, replaced by the mean of their
    running maximum from the left and running minimum from the right: both are monotone,
    and where the row already is, both equal it, so a monotone row is left as it is.
    """
    p = np.asarray(p, dtype=np.float64).copy()
    lengths = np.asarray(lengths, dtype=np.float64)
    for a in np.flatnonzero(anchored):
        shorter = lengths[:, [a]] <= lengths
        longer = lengths[:, [a]] >= lengths
        free = ~anchored[None, :]
        p = np.where(free & shorter, np.maximum(p, p[:, [a]]), p)
        p = np.where(free & longer, np.minimum(p, p[:, [a]]), p)
    order = np.argsort(lengths, axis=1, kind="stable")
    ranked = np.take_along_axis(p, order, axis=1)
    rising = np.maximum.accumulate(ranked, axis=1)
    falling = np.minimum.accumulate(ranked[:, ::-1], axis=1)[:, ::-1]
    out = np.empty_like(p)
    np.put_along_axis(out, order, (rising + falling) / 2, axis=1)
    return np.where(anchored[None, :], p, out)


def _train(
    matrix: np.ndarray,
    outcome: np.ndarray,
    params: dict[str, Any],
    rounds: int,
    encoder: FeatureEncoder,
    *,
    weight: np.ndarray | None = None,
    init_score: np.ndarray | None = None,
    valid: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
    early_stopping_rounds: int = 0,
    learning_rate: float | None = None,
) -> lgb.Booster:
    if learning_rate is not None:
        params = {**params, "learning_rate": min(learning_rate, 0.3)}
    data = lgb.Dataset(
        matrix,
        label=outcome,
        weight=weight,
        init_score=init_score,
        feature_name=encoder.names,
        categorical_feature=encoder.categorical_indices,
        free_raw_data=True,
    )
    callbacks: list[Callable[..., Any]] = []
    valid_sets = []
    if valid is not None:
        v_matrix, v_outcome, v_weight, v_init = valid
        valid_sets.append(
            lgb.Dataset(
                v_matrix, label=v_outcome, weight=v_weight, init_score=v_init, reference=data
            )
        )
        callbacks.append(lgb.early_stopping(early_stopping_rounds, verbose=False))
    return lgb.train(
        {**params, "metric": "binary_logloss"},
        data,
        num_boost_round=rounds,
        valid_sets=valid_sets,
        callbacks=callbacks,
    )


# Below this many rows a prediction runs on one thread: waking OpenMP threads costs more than
# scoring a handful of rows (measured: 8 ms instead of 0.03 ms for one row on a busy host).
SINGLE_THREAD_ROWS = 256


def prediction_threads(rows: int, threads: int) -> int:
    return 1 if rows < SINGLE_THREAD_ROWS else threads


def raw_margin(booster: lgb.Booster, matrix: np.ndarray, *, threads: int) -> np.ndarray:
    """The trees' raw output (log-odds, without the stage offset they were boosted from)."""
    return np.asarray(
        booster.predict(matrix, raw_score=True, num_threads=threads), dtype=np.float64
    )


@functools.cache
def _z_score(level: float) -> float:
    """The normal quantile of a central `level` interval (scipy's ppf costs 0.1 ms a call)."""
    return float(norm.ppf(0.5 + level / 2))


def _logit(p: np.ndarray) -> np.ndarray:
    return np.asarray(logit(np.clip(p, _EPS, 1 - _EPS)), dtype=np.float64)


def _interval(p: np.ndarray, sd: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    centre = _logit(p)
    return np.minimum(expit(centre - z * sd), p), np.maximum(expit(centre + z * sd), p)


def _both_classes(outcome: np.ndarray, least: int) -> bool:
    positives = int(np.sum(outcome == 1))
    return min(positives, outcome.size - positives) >= least


def _deal_count(deals: np.ndarray) -> int:
    return int(pd.unique(deals).size)
