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
spread, and what the model leaves unexplained between groups of deals it can see
(models.heterogeneity, measured out of time on the later window) adds its spread too: the
bootstrap cannot see a model's bias, and without that term a model of 45+45 deals that had
learned only the stage weight was as sure as the full one. The interval is about the
probability (the model's uncertainty), not the outcome.

Small-data mode: with fewer than `full_data_deals` won or lost deals in the training window
the trees are kept small (fewer leaves, smaller leaves allowed); the prediction says so in
`mode`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.special import expit, logit
from scipy.stats import norm

from features.artifacts import ArtifactReader, ArtifactWriter
from features.errors import DealcastDataError
from features.labels import HorizonSpec, TargetLabels, TrainingSet, target_name
from features.snapshots import FeaturePlan
from features.timestamps import to_ns
from models.baselines import StageWeightEmpirical
from models.calibration import FLOOR, Calibrator
from models.encoding import Columns, FeatureEncoder
from models.heterogeneity import Heterogeneity, unexplained_heterogeneity

logger = logging.getLogger(__name__)

Mode = Literal["full", "small-data", "baseline"]  # baseline: models.baseline_model
DAY_NS = 86_400 * 10**9
_EPS = 1e-6
# The calibrator reads the margin's probability clipped to [_EPS, 1 - _EPS], i.e. the margin
# clipped to +-13.8 log-odds.
_MARGIN_LIMIT = float(np.log((1 - _EPS) / _EPS))
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
    # 0.15, not 0.1: on the default world (20,000 deals, two cut-offs) the Brier scores
    # moved by -0.4% to +1.1% (within noise), the rounds early stopping keeps fell by 40%,
    # and with them the 100,000-deal training time and every scoring call's trees.
    learning_rate: float = 0.15
    # Small-data mode keeps smaller steps: on the 9-month, 600-deal org (seed 4) 0.15 took
    # `won` to 1.014x the empirical stage weight's Brier, 0.1 to 0.97x.
    small_data_learning_rate: float = 0.1
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
    ensemble: int = 20
    ensemble_estimators: int = 40
    interval_level: float = 0.8
    novelty_logit_sd: float = 0.35
    full_data_deals: int = 300
    minimum_deals: int = 40
    # The horizons without intervals (30/90/180 days, next quarter) train on the snapshots
    # of every k-th week only: a deal's weekly snapshots are near-duplicates, and these four
    # boosters would otherwise cost twice what the two headline ones do (at every 2nd week
    # they still cost as much: half of the 100,000-deal training's boosting).
    horizon_sample_weeks: int = 4
    # In full mode each bootstrap member also keeps every k-th week of its deals' snapshots
    # (its own phase): the spread comes from which deals are drawn, and twenty members on
    # every weekly snapshot cost as much as all six targets' main boosters together.
    member_sample_weeks: int = 4
    # "refit": once early stopping has chosen the rounds on the later window, refit on every
    # known label and serve the boosted probability as it is (log loss from the stage
    # weight's calibrated start keeps it calibrated; the backtest measures it). In a young
    # org the later window is half the data, and the most recent half: on three 9-month orgs
    # this cut the Brier score to 0.93x the empirical stage weight's, where keeping the
    # trees fitted before the window and Platt-mapping them on it ("calibrate") gave 1.00x.
    # "as-stopped" serves the early-stopped trees as they are (no refit: half the training
    # time); "auto" refits only when the later window holds at least `refit_window_share` of
    # the known labels. Neither is the default: the most recent labels are the ones the
    # censoring weights lean on, and a model without them missed the censoring oracle's
    # 2-point bar on its recent window (tests/training/test_censoring_oracle.py).
    final_fit: Literal["auto", "refit", "calibrate", "as-stopped"] = "refit"
    refit_window_share: float = 0.2
    # The least relative gain in weighted log loss on the later window, over the stage
    # weight alone, for the trees to be kept; below it the target is the stage weight.
    min_gain: float = 0.0
    seed: int = 0
    threads: int = 2

    def to_data(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> WinModelConfig:
        return cls(**data)

    def lgb_params(self, *, small: bool, seed_offset: int = 0) -> dict[str, Any]:
        return {
            "objective": "binary",
            "learning_rate": self.small_data_learning_rate if small else self.learning_rate,
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

    def to_data(self, out: ArtifactWriter, key: str) -> dict[str, Any]:
        return {
            "column": self.column,
            "by_code": out.array(f"{key}.by_code", self.by_code),
            "default": self.default,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any], source: ArtifactReader) -> StageOffset:
        return cls(int(data["column"]), source.array(data["by_code"]), float(data["default"]))

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
    members: _Members | None
    calibrator: Calibrator
    offset: StageOffset
    stage_rates: StageWeightEmpirical
    rounds: int  # rounds kept by early stopping
    # Log-odds spread the model leaves unexplained between groups of deals, measured out of
    # time on the later window (models.heterogeneity): added to the members' spread.
    residual_sd: float = 0.0

    def to_data(self, out: ArtifactWriter, key: str) -> dict[str, Any]:
        """The trees as LightGBM's model text (the served trees: those early stopping kept)."""
        return {
            "booster": out.text(f"{key}.booster", self.booster.model_to_string()),
            "members": None
            if self.members is None
            else self.members.to_data(out, f"{key}.members"),
            "calibrator": self.calibrator.to_data(),
            "offset": self.offset.to_data(out, f"{key}.offset"),
            "stage_rates": self.stage_rates.to_data(out, f"{key}.stage_rates"),
            "rounds": self.rounds,
            "residual_sd": self.residual_sd,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any], source: ArtifactReader) -> _Target:
        members = data["members"]
        return cls(
            booster=lgb.Booster(model_str=source.text(data["booster"])),
            members=None if members is None else _Members.from_data(members, source),
            calibrator=Calibrator.from_data(data["calibrator"]),
            offset=StageOffset.from_data(data["offset"], source),
            stage_rates=StageWeightEmpirical.from_data(data["stage_rates"], source),
            rounds=int(data["rounds"]),
            residual_sd=float(data["residual_sd"]),
        )

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
        self, matrix: np.ndarray, *, threads: int, margin: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(calibrated probability, spread in log-odds: the members' standard deviation and
        the unexplained spread combined, margin); `margin`, when given, is `margin(matrix)`."""
        if margin is None:
            margin = self.margin(matrix, threads=threads)
        p = self.calibrate(expit(margin))
        if self.members is None:
            return p, np.full_like(p, self.residual_sd), margin
        spread = self.members.margins(matrix, threads=threads).std(axis=0, ddof=1)
        return p, np.hypot(spread, self.residual_sd), margin

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        """The served probability from the margin's probability."""
        return np.clip(self.calibrator.transform(raw), 0.0, 1.0)

    def link(self) -> Link:
        """How the served probability follows from the margin (base + contributions)."""
        if self.calibrator.method == "sigmoid":
            return Link(self.calibrator.coef_, self.calibrator.intercept_, FLOOR)
        return Link(1.0, 0.0, 0.0)


@dataclass(frozen=True)
class Link:
    """served probability = clip(1 / (1 + exp(-(scale * margin + shift))), floor, 1 - floor).

    With the default refit the trees are served as boosted (scale 1, shift 0, no floor);
    with `final_fit = "calibrate"`, Platt's sigmoid fitted on the later window.
    """

    scale: float
    shift: float
    floor: float

    def __call__(self, margin: np.ndarray) -> np.ndarray:
        p = expit(self.scale * np.clip(margin, -_MARGIN_LIMIT, _MARGIN_LIMIT) + self.shift)
        return np.clip(p, self.floor, 1.0 - self.floor)


@dataclass
class WinModel:
    """Calibrated win probabilities for every horizon, with intervals for `won` and
    `won_in_period`."""

    plan: FeaturePlan
    config: WinModelConfig = field(default_factory=WinModelConfig)

    def fit(
        self, training: TrainingSet, *, intervals: Collection[str] = INTERVAL_TARGETS
    ) -> WinModel:
        """`intervals`: the targets of `INTERVAL_TARGETS` that get bootstrap members (a
        caller judging only some of the intervals, the backtest, skips the others' cost; the
        others' intervals then hold only the novelty term)."""
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
        binned = _Binned.of(matrix, self.encoder_, config.lgb_params(small=False))
        for k, (name, labels) in enumerate(training.targets.items()):
            headline = name in INTERVAL_TARGETS
            with_members = headline and name in intervals
            target, info = self._fit_target(
                binned,
                labels,
                frame,
                cutoff=pd.Timestamp(training.cutoff).value,
                as_of=as_of,
                deals=deals,
                members=config.ensemble if with_members else 0,
                seed_offset=1000 * k,
                rows=None if headline else sampled,
            )
            self.targets_[name] = target
            summary[name] = info
        self.training_summary_: dict[str, Any] = {
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

    def to_data(self, out: ArtifactWriter, key: str) -> dict[str, Any]:
        """The fitted model as data; its plan is the bundle's (stored once, there)."""
        return {
            "config": self.config.to_data(),
            "encoder": self.encoder_.to_dict(),
            "mode": self.mode_,
            "ever_days": self.ever_days_,
            "horizons": self.horizons_.to_data(),
            "targets": {
                name: target.to_data(out, f"{key}.{name}") for name, target in self.targets_.items()
            },
            "training_summary": self.training_summary_,
        }

    @classmethod
    def from_data(
        cls, data: Mapping[str, Any], source: ArtifactReader, *, plan: FeaturePlan
    ) -> WinModel:
        model = cls(plan, WinModelConfig.from_data(data["config"]))
        model.encoder_ = FeatureEncoder.from_dict(data["encoder"])
        model.mode_ = data["mode"]
        model.ever_days_ = int(data["ever_days"])
        model.horizons_ = HorizonSpec.from_data(data["horizons"])
        model.targets_ = {
            name: _Target.from_data(target, source) for name, target in data["targets"].items()
        }
        model.training_summary_ = dict(data["training_summary"])
        return model

    @property
    def won_(self) -> _Target:
        return self.targets_["won"]

    @property
    def in_period_(self) -> _Target:
        return self.targets_["won_in_period"]

    def won_link(self) -> Link:
        """How the served win probability follows from its explained margin."""
        return self.won_.link()

    def margins(
        self, matrix: np.ndarray, targets: Collection[str], *, threads: int
    ) -> dict[str, np.ndarray]:
        """Each target's margin (stage offset plus trees) for each row. A few rows (a
        request's) go through every target's trees packed in one booster: one LightGBM call
        instead of one per target (each costs more than its trees for a row or two); a
        batch goes booster by booster."""
        if len(matrix) >= SINGLE_THREAD_ROWS:
            return {t: self.targets_[t].margin(matrix, threads=threads) for t in targets}
        trees, output = self._packed_targets
        sums = trees.sums(matrix, threads=threads)
        return {t: self.targets_[t].offset(matrix) + sums[output[t]] for t in targets}

    @functools.cached_property
    def _packed_targets(self) -> tuple[_PackedTrees, dict[str, int]]:
        """Every target's booster packed into one, and each target's output in it. Built on
        first use and left out of the pickle (it is rebuilt from the boosters). The members
        stay in their own packs: scoring their trees costs more than the calls they save,
        for every prediction that needs no interval."""
        names = list(self.targets_)
        trees = _PackedTrees.of([self.targets_[name].booster for name in names])
        return trees, {name: i for i, name in enumerate(names)}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_packed_targets", None)
        return state

    def _stopping_split(
        self, rows: np.ndarray, as_of: np.ndarray, deals: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rows before the window, the window): the last `calibration_days` of `rows`. A
        deal with a snapshot in the window trains on none before it: its earlier weekly
        snapshots would let the trees recognise it (on 45+45 deals, a "gain" of 46% on the
        window and 1% probabilities for every open deal)."""
        if not rows.any():
            return rows, rows
        last = as_of[rows].max()
        later = rows & (as_of > last - self.config.calibration_days * DAY_NS)
        in_window = pd.Index(pd.unique(deals[later])).get_indexer(deals) >= 0
        return rows & ~later & ~in_window, later

    def _fit_target(
        self,
        binned: _Binned,
        labels: TargetLabels,
        frame: pd.DataFrame,
        *,
        cutoff: int,
        as_of: np.ndarray,
        deals: np.ndarray,
        members: int,
        seed_offset: int,
        rows: np.ndarray | None = None,
    ) -> tuple[_Target, dict[str, Any]]:
        """`rows`: the snapshots this target may train on (default all)."""
        config = self.config
        matrix = binned.matrix
        known = labels.known if rows is None else labels.known & rows
        outcome = np.nan_to_num(labels.label, nan=0.0)
        weight = labels.weight
        stage = {"stage": np.asarray(frame["stage"], dtype=object)}
        # The window that stops the trees holds snapshots whose horizon ended by the cut-off:
        # their outcome is fully known. The most recent snapshots are known only when they
        # resolved soon, and the soonest resolved are mostly wins, so stopping on them
        # rewarded trees that learn "resolves soon" (on a signal-free world `won` ran 150-215
        # rounds to 1.03-1.05x the stage weight's Brier). Trees stop on data before that
        # window; where too few such snapshots exist (a young org, a long horizon), on the
        # last `calibration_days` of known labels.
        followed = known & (labels.end <= cutoff)
        train, later = self._stopping_split(known & followed, as_of, deals)
        if not _both_classes(outcome[later], 10) or not _both_classes(outcome[train], 10):
            train, later = self._stopping_split(known, as_of, deals)
        if not _both_classes(outcome[later], 10) or not _both_classes(outcome[train], 10):
            # Too little to hold a later window out: train on everything known, with the
            # small model's few rounds, and serve the trees uncalibrated.
            train, later = known, np.zeros_like(known)
        small = self.mode_ == "small-data"
        params = config.lgb_params(small=small, seed_offset=seed_offset)

        def offset_on(rows: np.ndarray, row_weight: np.ndarray) -> tuple[StageOffset, Any]:
            return StageOffset.fit(
                self.encoder_, {"stage": stage["stage"][rows]}, outcome[rows], row_weight
            )

        def boosted(
            rows: np.ndarray, rounds: int, *, valid: np.ndarray | None = None
        ) -> tuple[StageOffset, StageWeightEmpirical, np.ndarray, lgb.Booster]:
            """Trees on `rows`, boosted from the stage weight fitted on the same rows, early
            stopped on the `valid` rows when given; `rounds` 0: the stage weight alone (one
            tree of leaves ~0, so SHAP and the members keep their shape)."""
            index = np.flatnonzero(rows)
            offset, stage_rates = offset_on(index, weight[index])
            base = offset(matrix)
            booster = binned.train(
                index,
                outcome,
                params,
                max(rounds, 1),
                weight=weight,
                init_score=base,
                valid=None if valid is None else np.flatnonzero(valid),
                early_stopping_rounds=config.early_stopping_rounds,
                learning_rate=None if rounds > 0 else _NO_TREES_RATE,
            )
            return offset, stage_rates, base, booster

        if later.any():
            offset, stage_rates, base, booster = boosted(train, config.n_estimators, valid=later)
        else:
            offset, stage_rates, base, booster = boosted(train, 20)
        rounds = booster.best_iteration or booster.num_trees()
        gain = math.nan
        if later.any():
            # What the trees gained on the later window over the stage weight they start
            # from; a gain within noise is nothing to learn: the stage weight is served.
            start = _log_loss(expit(base[later]), outcome[later], weight[later])
            best = float(booster.best_score["valid_0"]["binary_logloss"])
            gain = 1.0 - best / start if start > 0 else 0.0
            if gain < config.min_gain:
                rounds = 0
        residual = Heterogeneity(0.0, None, {})
        if members:
            # Out of time on the later window; where it holds too few deals to group (a young
            # org, small-data mode), on every known label: the few small trees of such a
            # model flatter their own training rows little.
            judged = later if _deal_count(deals[later]) >= RESIDUAL_WINDOW_DEALS else known
            stopped = base[judged] + (
                raw_margin(booster, matrix[judged], threads=config.threads) if rounds else 0.0
            )
            residual = unexplained_heterogeneity(
                expit(stopped),
                outcome[judged],
                weight[judged],
                deals[judged],
                matrix[judged],
                self.encoder_.names,
                set(self.encoder_.categorical),
            )
        calibrator = Calibrator()
        final_fit = config.final_fit
        if final_fit == "auto":
            share = later.sum() / max(known.sum(), 1)
            final_fit = "refit" if share >= config.refit_window_share else "as-stopped"
        if later.any() and final_fit == "calibrate":
            margin = base[later] + raw_margin(booster, matrix[later], threads=config.threads)
            calibrator.fit(expit(margin), outcome[later], weight=weight[later])
        elif later.any() and final_fit == "refit":
            train = known
            offset, stage_rates, base, booster = boosted(train, rounds)
        elif rounds == 0:
            offset, stage_rates, base, booster = boosted(train, 0)
        elif booster.best_iteration:
            # Served as stopped: drop the rounds fitted past the best, so the trees, their
            # SHAP values and a pickled copy all mean the same model.
            booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=rounds))
        trained_members: list[tuple[StageOffset, lgb.Booster]] = []
        rng = np.random.default_rng(config.seed + seed_offset)
        train_rows = np.flatnonzero(train)
        codes, uniques = pd.factorize(deals[train_rows])
        member_rounds = max(min(rounds, config.ensemble_estimators), 1)
        thin = max(config.member_sample_weeks, 1) if self.mode_ == "full" else 1
        week = ((as_of - as_of.min()) // (7 * DAY_NS))[train_rows]
        for k in range(members):
            # A bootstrap of whole deals (a deal's snapshots are not independent): each
            # deal's snapshots weighted by how often it was drawn. The member refits the
            # stage weight on its resample too, so the spread holds the uncertainty of the
            # baseline it starts from (the larger part in a young org), not only the trees'.
            drawn = np.bincount(rng.integers(0, len(uniques), len(uniques)), minlength=len(uniques))
            draw = drawn[codes].astype(np.float64) * (week % thin == k % thin)
            rows = train_rows[draw > 0]
            member_weight = np.zeros_like(weight)
            member_weight[rows] = (draw * weight[train_rows])[draw > 0]
            member_offset, _ = offset_on(rows, member_weight[rows])
            trained_members.append(
                (
                    member_offset,
                    binned.train(
                        rows,
                        outcome,
                        {**params, "seed": params["seed"] + k + 1},
                        member_rounds,
                        weight=member_weight,
                        init_score=member_offset(matrix),
                        learning_rate=max(
                            params["learning_rate"] * rounds / member_rounds, _NO_TREES_RATE
                        ),
                    ),
                )
            )
        target = _Target(
            booster,
            _Members.pack(trained_members) if trained_members else None,
            calibrator,
            offset,
            stage_rates,
            rounds,
            residual.sd,
        )
        return target, {
            "rounds": rounds,
            "rows_train": int(train.sum()),
            "rows_later": int(later.sum()),
            "rows_censored": int((~known).sum()),
            "calibration": calibrator.method,
            "final_fit": final_fit if later.any() else "no later window",
            "gain_over_stage_weight": gain,
            "members": len(trained_members),
            "unexplained_logit_sd": residual.sd,
            "unexplained_by": residual.feature,
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
        if as_of is None and "as_of" in columns:
            as_of = to_ns(np.asarray(columns["as_of"]))
        margins = self.margins(
            matrix, self.targets_ if as_of is not None else INTERVAL_TARGETS, threads=threads
        )
        won, won_sd, margin = self.won_.probability(matrix, threads=threads, margin=margins["won"])
        in_period, in_sd, _ = self.in_period_.probability(
            matrix, threads=threads, margin=margins["won_in_period"]
        )
        in_period = np.minimum(in_period, won)
        won_low, won_high = _interval(won, np.hypot(won_sd, novelty), z)
        in_low, in_high = _interval(in_period, np.hypot(in_sd, novelty), z)
        in_high = np.minimum(in_high, won_high)
        in_low = np.minimum(in_low, in_period)
        horizons, lengths = (
            self._horizons(as_of, margins, won, in_period) if as_of is not None else ({}, {})
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
        margins: dict[str, np.ndarray],
        won: np.ndarray,
        in_period: np.ndarray,
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Every horizon's probability, monotone in its length, and the lengths in days
        (`margins`: every target's, `margins(matrix, targets_)`)."""
        return horizon_probabilities(
            self.horizons_,
            np.asarray(as_of, dtype=np.int64),
            ever_days=self.ever_days_,
            won=won,
            in_period=in_period,
            other=lambda t: self.targets_[t].calibrate(expit(margins[t])),
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


def horizon_probabilities(
    horizons: Any,
    as_of: np.ndarray,
    *,
    ever_days: int,
    won: np.ndarray,
    in_period: np.ndarray,
    other: Callable[[str], np.ndarray],
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Every horizon's probability (`won` and `in_period` as given, the others from
    `other(target)`), monotone in its length, and the lengths in days: one rule for the
    model and the baseline forecaster."""
    names = horizons.names
    ends = horizons.ends(as_of, ever_days=ever_days)
    lengths = {name: (ends[name] - as_of) / DAY_NS for name in names}
    given = {"won": won, "won_in_period": in_period}
    raw = {n: given[t] if (t := target_name(n)) in given else other(t) for n in names}
    anchored = np.array([target_name(n) in INTERVAL_TARGETS for n in names])
    fixed = monotone_in_horizon(
        np.column_stack([raw[n] for n in names]),
        np.column_stack([lengths[n] for n in names]),
        anchored=anchored,
    )
    return {n: fixed[:, j] for j, n in enumerate(names)}, lengths


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


# A member has at most `ensemble_estimators` rounds, at a learning rate raised to match the
# main model's rounds, up to this. Measured on an 8,000-deal world (136 rounds): members
# with the main model's own rounds and rate on every week (4x the cost) gave a median logit
# width of 2.30 (80% intervals, deals in 5-95%); 40 rounds on every 4th week gave 2.74 at
# a rate of up to 0.3, 2.41 at 0.25, 2.05 at 0.2, 1.69 at 0.15, 1.26 at 0.1: 0.25 is the
# closest (5% wide of the faithful bootstrap), at a quarter of its cost.
MEMBER_MAX_LEARNING_RATE = 0.25

_MEMBER_CHUNK_ROWS = 20_000
# The fewest deals in the later window for the unexplained spread to be measured there.
RESIDUAL_WINDOW_DEALS = 200
# The learning rate of the one tree standing for "no trees" (LightGBM needs one).
_NO_TREES_RATE = 1e-12

# Parameters that shape the binning, fixed for every booster trained on one `_Binned`.
_DATASET_KEYS = ("max_bin", "verbosity", "deterministic", "seed")


@dataclass
class _Binned:
    """The training matrix binned once per fit.

    Every booster of a fit (six targets, each early-stopped and refitted, and the interval
    members) trains on a subset of this one LightGBM Dataset, so the bins are found once
    instead of some thirty times (at 100,000 deals that was the larger part of the fit).
    Bins are quantiles of the features alone, never of a label, so sharing them leaks
    nothing from one target or window into another.
    """

    matrix: np.ndarray
    dataset: lgb.Dataset

    @classmethod
    def of(cls, matrix: np.ndarray, encoder: FeatureEncoder, params: dict[str, Any]) -> _Binned:
        dataset = lgb.Dataset(
            matrix,
            label=np.zeros(len(matrix)),
            feature_name=encoder.names,
            categorical_feature=encoder.categorical_indices,
            # Leaf-size settings differ between boosters: no feature is dropped for them.
            params={**{k: params[k] for k in _DATASET_KEYS}, "feature_pre_filter": False},
            free_raw_data=False,
        )
        return cls(matrix, dataset.construct())

    def rows(
        self,
        index: np.ndarray,
        outcome: np.ndarray,
        *,
        weight: np.ndarray | None,
        init_score: np.ndarray | None,
    ) -> lgb.Dataset:
        """The rows `index` (ascending) with their labels, weights and start scores."""
        subset = self.dataset.subset(index.tolist()).construct()
        subset.set_label(outcome[index])
        if weight is not None:
            subset.set_weight(weight[index])
        if init_score is not None:
            subset.set_init_score(init_score[index])
        return subset

    def train(
        self,
        index: np.ndarray,
        outcome: np.ndarray,
        params: dict[str, Any],
        rounds: int,
        *,
        weight: np.ndarray | None = None,
        init_score: np.ndarray | None = None,
        valid: np.ndarray | None = None,
        early_stopping_rounds: int = 0,
        learning_rate: float | None = None,
    ) -> lgb.Booster:
        """A booster on the rows `index`, early stopped on the rows `valid` when given
        (full-length arrays: `outcome`, `weight` and `init_score` are indexed here)."""
        if learning_rate is not None:
            params = {**params, "learning_rate": min(learning_rate, MEMBER_MAX_LEARNING_RATE)}
        data = self.rows(index, outcome, weight=weight, init_score=init_score)
        callbacks: list[Callable[..., Any]] = []
        valid_sets = []
        if valid is not None:
            valid_sets.append(self.rows(valid, outcome, weight=weight, init_score=init_score))
            callbacks.append(lgb.early_stopping(early_stopping_rounds, verbose=False))
        return lgb.train(
            {**params, "metric": "binary_logloss", "feature_pre_filter": False},
            data,
            num_boost_round=rounds,
            valid_sets=valid_sets,
            callbacks=callbacks,
        )


@dataclass(frozen=True)
class _PackedTrees:
    """The trees of several boosters in one booster, for scoring a few rows in one call.

    A LightGBM call costs about 20-90 us for one row whatever the booster's size, so scoring
    a deal booster by booster pays that many times; packed, one call gives every tree's leaf,
    and numpy sums the leaves' values per original booster (an output). A tree's raw output
    is its leaf's value, so the sums are each booster's raw margin.
    """

    packed: lgb.Booster
    leaf_values: np.ndarray  # (trees, most leaves of a tree)
    output_of_tree: np.ndarray  # (trees, outputs) one-hot

    @classmethod
    def of(cls, boosters: list[lgb.Booster]) -> _PackedTrees:
        blocks: list[str] = []
        owner: list[int] = []
        header = footer = ""
        for m, booster in enumerate(boosters):
            text = booster.model_to_string()
            head, rest = text.split("\nTree=", 1)
            trees, tail = ("Tree=" + rest).split("end of trees", 1)
            if m == 0:
                header = "\n".join(
                    line for line in head.split("\n") if not line.startswith("tree_sizes=")
                )
                footer = tail
            for block in trees.strip().split("\n\n"):
                blocks.append(block.split("\n", 1)[1])
                owner.append(m)
        text = "\n".join([header, *(f"Tree={i}\n{block}\n" for i, block in enumerate(blocks))])
        packed = lgb.Booster(model_str=f"{text}\nend of trees{footer}")
        values = [
            np.array(
                next(line for line in block.split("\n") if line.startswith("leaf_value="))
                .split("=", 1)[1]
                .split(),
                dtype=np.float64,
            )
            for block in blocks
        ]
        leaf_values = np.zeros((len(values), max(len(v) for v in values)))
        for i, v in enumerate(values):
            leaf_values[i, : len(v)] = v
        output_of_tree = np.zeros((len(blocks), len(boosters)))
        output_of_tree[np.arange(len(blocks)), owner] = 1.0
        return cls(packed, leaf_values, output_of_tree)

    def sums(self, matrix: np.ndarray, *, threads: int) -> np.ndarray:
        """Each output's raw margin for each row: (outputs, rows)."""
        return leaf_sums(self.packed, self.leaf_values, self.output_of_tree, matrix, threads)


def leaf_sums(
    packed: lgb.Booster,
    leaf_values: np.ndarray,
    output_of_tree: np.ndarray,
    matrix: np.ndarray,
    threads: int,
) -> np.ndarray:
    """(outputs, rows): the values of each row's leaves summed per output, in one call."""
    leaves = np.asarray(
        packed.predict(matrix, pred_leaf=True, num_threads=threads), dtype=np.int64
    ).reshape(len(matrix), -1)
    return (leaf_values[np.arange(leaves.shape[1]), leaves] @ output_of_tree).T


@dataclass
class _Members:
    """The bootstrap members of one target, packed for scoring.

    A member's margin is its own stage offset plus its trees. Scoring twenty boosters one
    at a time costs twenty LightGBM calls, each about 50-150 us for one deal, twice per
    deal; packed into one booster, one call gives every tree's leaf, and numpy sums the
    leaves' values per member.
    """

    packed: lgb.Booster
    leaf_values: np.ndarray  # (trees, most leaves of a tree)
    member_of_tree: np.ndarray  # (trees, members) one-hot
    stage_column: int
    offsets: np.ndarray  # (members, stage codes): each member's stage log-odds
    defaults: np.ndarray  # (members,): for a stage its encoder never saw
    # The members themselves: a batch of many rows is scored booster by booster (LightGBM's
    # own summing beats gathering every tree's leaf in numpy once the call cost is shared).
    boosters: tuple[lgb.Booster, ...] = ()

    @classmethod
    def pack(cls, members: list[tuple[StageOffset, lgb.Booster]]) -> _Members:
        trees = _PackedTrees.of([booster for _, booster in members])
        offsets = [offset for offset, _ in members]
        return cls(
            trees.packed,
            trees.leaf_values,
            trees.output_of_tree,
            offsets[0].column,
            np.stack([o.by_code for o in offsets]),
            np.array([o.default for o in offsets]),
            tuple(booster for _, booster in members),
        )

    def to_data(self, out: ArtifactWriter, key: str) -> dict[str, Any]:
        """The members' own trees (model text) and stage offsets; the pack is rebuilt."""
        return {
            "stage_column": self.stage_column,
            "offsets": out.array(f"{key}.offsets", self.offsets),
            "defaults": out.array(f"{key}.defaults", self.defaults),
            "boosters": [
                out.text(f"{key}.{i}", booster.model_to_string())
                for i, booster in enumerate(self.boosters)
            ],
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any], source: ArtifactReader) -> _Members:
        boosters = tuple(lgb.Booster(model_str=source.text(name)) for name in data["boosters"])
        trees = _PackedTrees.of(list(boosters))
        return cls(
            trees.packed,
            trees.leaf_values,
            trees.output_of_tree,
            int(data["stage_column"]),
            source.array(data["offsets"]),
            source.array(data["defaults"]),
            boosters,
        )

    @property
    def count(self) -> int:
        return len(self.defaults)

    def margins(self, matrix: np.ndarray, *, threads: int) -> np.ndarray:
        """Each member's margin for each row: (members, rows), in chunks of rows (a leaf
        index per tree and row would otherwise take gigabytes for a large batch)."""
        if self.boosters and len(matrix) >= SINGLE_THREAD_ROWS:
            trees = np.stack([raw_margin(b, matrix, threads=threads) for b in self.boosters])
            return self._offsets(matrix) + trees
        if len(matrix) > _MEMBER_CHUNK_ROWS:
            return np.concatenate(
                [
                    self.margins(matrix[start : start + _MEMBER_CHUNK_ROWS], threads=threads)
                    for start in range(0, len(matrix), _MEMBER_CHUNK_ROWS)
                ],
                axis=1,
            )
        trees = leaf_sums(self.packed, self.leaf_values, self.member_of_tree, matrix, threads)
        return self._offsets(matrix) + trees

    def _offsets(self, matrix: np.ndarray) -> np.ndarray:
        codes = matrix[:, self.stage_column]
        known = ~np.isnan(codes)
        offsets = np.repeat(self.defaults[:, None], len(matrix), axis=1)
        offsets[:, known] = self.offsets[:, codes[known].astype(np.int64)]
        return offsets


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


def _log_loss(p: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    p = np.clip(p, _EPS, 1 - _EPS)
    losses = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    return float(np.average(losses, weights=w)) if w.sum() > 0 else math.nan


def _both_classes(outcome: np.ndarray, least: int) -> bool:
    positives = int(np.sum(outcome == 1))
    return min(positives, outcome.size - positives) >= least


def _deal_count(deals: np.ndarray) -> int:
    return int(pd.unique(deals).size)
