"""Behaviour of the trained win model: ranges, invariance, direction, floors, intervals."""

from __future__ import annotations

import copy
import itertools
import pickle
from dataclasses import replace

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit
from sklearn.metrics import roc_auc_score

from models.baselines import baselines_for
from models.calibration import Calibrator
from models.win import (
    InsufficientData,
    StageOffset,
    WinModel,
    WinPrediction,
    _Members,
    monotone_in_horizon,
)
from tests.model.conftest import CUTOFF, Trained, train_at


def ece(p: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error over equal-count bins."""
    order = np.argsort(p, kind="stable")
    error = 0.0
    for chunk in np.array_split(order, bins):
        error += len(chunk) * abs(p[chunk].mean() - y[chunk].mean())
    return error / len(p)


def test_probabilities_are_probabilities(trained: Trained) -> None:
    prediction = trained.model.predict(trained.test_frame)
    for values in (
        prediction.won,
        prediction.in_period,
        prediction.won_low,
        prediction.won_high,
        prediction.in_period_low,
        prediction.in_period_high,
    ):
        assert np.isfinite(values).all()
        assert ((values >= 0) & (values <= 1)).all()
    assert (prediction.in_period <= prediction.won).all()
    assert (prediction.won_low <= prediction.won).all() and (
        prediction.won <= prediction.won_high
    ).all()
    assert (prediction.in_period_low <= prediction.in_period).all()
    assert (prediction.in_period <= prediction.in_period_high).all()
    assert prediction.mode == "full"


def test_calibration_keeps_resolution(trained: Trained) -> None:
    # An isotonic map once left 54 distinct values over 1,706 open deals, a third of them at
    # its floor. No single probability may hold more than 5% of the deals scored.
    prediction = trained.model.predict(trained.test_frame)
    for values in (prediction.won, prediction.in_period):
        shares = pd.Series(np.round(values, 6)).value_counts(normalize=True)
        assert shares.iloc[0] <= 0.05, shares.head(3)


@pytest.mark.parametrize("final_fit", ["refit", "calibrate"])
def test_served_probability_is_the_link_of_base_plus_contributions(
    trained: Trained, final_fit: str
) -> None:
    # What the API states: win_probability = link(base + sum of the SHAP contributions).
    model = trained.model
    frame = trained.test_frame.head(400)
    if final_fit == "calibrate":
        # Platt's sigmoid on a later window, as `final_fit = "calibrate"` fits it.
        model = copy.copy(model)
        known = ~np.isnan(trained.truth["won"].to_numpy()[trained.test_mask])
        later = trained.test_frame[known]
        calibrator = Calibrator().fit(
            expit(trained.model.predict(later).margin),
            trained.truth["won"].to_numpy()[trained.test_mask][known],
        )
        assert calibrator.method == "sigmoid" and abs(calibrator.coef_ - 1) > 1e-3
        model.targets_ = {**model.targets_, "won": replace(model.won_, calibrator=calibrator)}
    prediction = model.predict(frame)
    matrix = model.encoder_.transform(frame)
    contributions = model.won_.contributions(matrix, threads=1)
    margin = contributions.sum(axis=1)  # base value last
    np.testing.assert_allclose(margin, prediction.margin, rtol=0, atol=1e-9)
    np.testing.assert_allclose(model.won_.link()(margin), prediction.won, rtol=0, atol=1e-12)


def test_identifiers_do_not_matter(trained: Trained) -> None:
    frame = trained.test_frame.head(500)
    renamed = frame.assign(opportunity_id="X-" + frame["opportunity_id"].astype(str))
    a = trained.model.predict(frame)
    shuffled = renamed.sample(frac=1.0, random_state=1)
    assert not shuffled.index.equals(renamed.index)
    b = trained.model.predict(shuffled)
    order = shuffled.index.to_numpy()  # b's k-th row is frame's row order[k]
    # Equal to the last bits of a float: only the order of summation may differ.
    np.testing.assert_allclose(a.won[order], b.won, rtol=1e-12, atol=0)
    np.testing.assert_allclose(a.won_high[order], b.won_high, rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    ("feature", "change", "direction"),
    [
        ("activities_30d", lambda v: np.zeros_like(v), -1),
        # Decision-maker meetings raise the odds.
        ("decision_maker_contacts", lambda v: v + 3.0, +1),
        # Pushed deals win less, more pushes less still.
        ("close_date_pushes", lambda v: v + 3.0, -1),
    ],
)
def test_directional_expectations(trained: Trained, feature: str, change, direction: int) -> None:
    frame = trained.test_frame
    changed = frame.assign(**{feature: change(frame[feature].to_numpy(dtype=np.float64))})
    before = trained.model.predict(frame).won.mean()
    after = trained.model.predict(changed).won.mean()
    assert np.sign(after - before) == direction, (feature, before, after)


def test_silence_precedes_loss(trained: Trained) -> None:
    # A deal gone silent for 45 more days has no activity in the last 7 or 30 days either:
    # moving the days alone describes no real deal (the world has mid-deal dark spells).
    frame = trained.test_frame
    silent = frame.assign(
        days_since_last_activity=frame["days_since_last_activity"] + 45.0,
        activities_7d=0.0,
        activities_30d=0.0,
    )
    before = trained.model.predict(frame).won.mean()
    after = trained.model.predict(silent).won.mean()
    assert after < before, (before, after)


def test_later_stages_convert_better(trained: Trained) -> None:
    # A stage is its name, position and configured probability at once: the trees start from
    # the stage's own rate, so moving one of the three alone describes no real deal.
    stages = trained.plan.stages
    frame = trained.test_frame
    early = frame[frame["stage"].isin(stages.open_stages[:2])]
    later = early.assign(
        stage=early["stage"].map(lambda s: stages.open_stages[stages.open_stages.index(s) + 2])
    )
    later = later.assign(
        stage_order=later["stage"].map(stages.order()).astype(np.float64),
        stage_probability=later["stage"].map(stages.probability).astype(np.float64),
    )
    before = trained.model.predict(early).won.mean()
    after = trained.model.predict(later).won.mean()
    assert after > before, (before, after)


def test_discrimination_and_calibration_floors_on_the_next_quarter(trained: Trained) -> None:
    frame = trained.test_frame
    truth = trained.truth[trained.test_mask].reset_index(drop=True)
    prediction = trained.model.predict(frame)
    for target, p in (("won", prediction.won), ("won_in_period", prediction.in_period)):
        y = truth[target].to_numpy()
        known = ~np.isnan(y)
        assert known.sum() > 2000
        # The default world is as hard as a real org (issue 11: best AUC 0.80-0.88).
        assert roc_auc_score(y[known], p[known]) >= 0.80, target
        assert ece(p[known], y[known]) <= 0.04, target


def test_model_beats_every_baseline_on_brier(trained: Trained) -> None:
    frame = trained.test_frame
    truth = trained.truth[trained.test_mask].reset_index(drop=True)
    y = truth["won"].to_numpy()
    known = ~np.isnan(y)
    baselines = baselines_for(trained.training, ("won",))["won"]  # the same weighted labels
    model_brier = np.mean((trained.model.predict(frame).won[known] - y[known]) ** 2)
    for name, baseline in baselines.items():
        brier = np.mean((baseline.predict_proba(frame)[known] - y[known]) ** 2)
        assert model_brier < brier, name


def _logit_width(prediction: WinPrediction) -> np.ndarray:
    return logit(prediction.won_high) - logit(prediction.won_low)


def test_interval_is_wider_for_an_unseen_owner(trained: Trained) -> None:
    # An owner with fewer than 5 closed deals widens the interval by the novelty term, on top
    # of the members' spread; a seasoned owner's interval has no such term. Compared against
    # the same model without the term, so that only the owner's novelty differs. Deals in
    # (0.05, 0.95): at the calibration floor an interval in probability says nothing.
    model = trained.model
    without = copy.copy(model)
    without.config = replace(model.config, novelty_logit_sd=0.0)
    frame = trained.test_frame
    seasoned = frame[frame["owner_closed_deals"] >= 20]
    p = model.predict(seasoned).won
    seasoned = seasoned[(p > 0.05) & (p < 0.95)].head(300)
    rookie = seasoned.assign(owner_closed_deals=0.0)
    np.testing.assert_allclose(
        _logit_width(model.predict(seasoned)), _logit_width(without.predict(seasoned))
    )
    plain = _logit_width(without.predict(rookie))
    assert np.all(plain > 0)  # members that disagree never give a zero-width interval
    wider = _logit_width(model.predict(rookie)) / plain
    assert np.all(wider >= 1.0)
    assert np.median(wider) > 1.02


def test_interval_is_wider_for_an_unseen_category(trained: Trained) -> None:
    # The warning "never seen in training: the interval is widened" is true for every deal
    # that carries it: against the same model without the novelty term, its interval is
    # wider, and a deal without a novelty is untouched.
    model = trained.model
    without = copy.copy(model)
    without.config = replace(model.config, novelty_logit_sd=0.0)
    frame = trained.test_frame.head(300)
    frame = frame[frame["owner_closed_deals"] >= 5]
    seen = ~np.any(list(model.predict(frame).unseen.values()), axis=0)
    frame = frame[seen]
    novel = frame.assign(lead_source="Carrier pigeon")
    assert model.predict(novel).unseen["lead_source"].all()
    wider = _logit_width(model.predict(novel)) / _logit_width(without.predict(novel))
    assert np.all(wider > 1.0)
    np.testing.assert_allclose(
        _logit_width(model.predict(frame)), _logit_width(without.predict(frame))
    )


@pytest.fixture(scope="module")
def small(trained: Trained) -> WinModel:
    """A model of 45 won and 45 lost deals closed well before the cut-off, with every
    snapshot they had, plus nothing else."""
    export = trained.export
    final = export.history.groupby("opportunity_id").tail(1).set_index("opportunity_id")
    rng = np.random.default_rng(0)
    closed_before = final[final["changed_at"] < CUTOFF - pd.Timedelta(days=200)]
    won = closed_before[closed_before["stage"] == "Closed Won"].index
    lost = closed_before[closed_before["stage"] == "Closed Lost"].index
    keep = set(rng.choice(won, 45, replace=False)) | set(rng.choice(lost, 45, replace=False))
    snapshots = trained.snapshots[trained.snapshots["opportunity_id"].isin(keep)]
    snapshots = snapshots.reset_index(drop=True)
    _, model = train_at(export, trained.plan, snapshots, CUTOFF)
    return model


def test_small_data_mode_answers_and_says_so(trained: Trained, small: WinModel) -> None:
    assert small.mode_ == "small-data"
    prediction = small.predict(trained.test_frame.head(200))
    assert prediction.mode == "small-data"
    assert np.isfinite(prediction.won).all()
    # It leans on the stage weights: probabilities rise with the stage.
    by_stage = pd.Series(prediction.won).groupby(trained.test_frame.head(200)["stage_order"]).mean()
    assert (
        by_stage.is_monotonic_increasing
        or by_stage.corr(pd.Series(by_stage.index, index=by_stage.index)) > 0.8
    )


def test_interval_is_wider_with_less_data(trained: Trained, small: WinModel) -> None:
    # At the same probability, the 45+45-deal model is less sure than the full one. Its
    # bootstrap members alone are not (both near 0.35 log-odds: a model that learned only
    # the stage weight is stable under resampling); what it leaves unexplained between deal
    # types, sources, stages (models.heterogeneity) is what widens it.
    frame = trained.test_frame
    full, few = trained.model.predict(frame), small.predict(frame)
    both = (full.won > 0.15) & (full.won < 0.35) & (few.won > 0.15) & (few.won < 0.35)
    assert both.sum() >= 100
    ratio = np.median(_logit_width(few)[both]) / np.median(_logit_width(full)[both])
    assert ratio > 1.25, ratio
    summary = small.training_summary_["targets"]["won"]
    assert (
        summary["unexplained_logit_sd"]
        > trained.model.training_summary_["targets"]["won"]["unexplained_logit_sd"]
    )


def test_packed_members_score_as_their_boosters() -> None:
    # Members are packed into one booster for speed; each member's margin must be exactly
    # its stage offset plus its own trees, whatever the trees' sizes.
    rng = np.random.default_rng(3)
    n = 2000
    x = np.column_stack([rng.integers(0, 4, n).astype(np.float64), rng.normal(size=(n, 3))])
    x[rng.random(n) < 0.05, 0] = np.nan  # a stage the encoder never saw
    y = (x[:, 1] + rng.normal(size=n) > 0).astype(np.float64)
    members = []
    for k, (leaves, rounds) in enumerate([(7, 5), (31, 12), (2, 1)]):
        booster = lgb.train(
            {"objective": "binary", "num_leaves": leaves, "verbosity": -1, "seed": k},
            lgb.Dataset(x, y, categorical_feature=[0]),
            num_boost_round=rounds,
        )
        offset = StageOffset(0, rng.normal(size=4), float(k))
        members.append((offset, booster))
    packed = _Members.pack(members)
    few, many = packed.margins(x[:100], threads=1), packed.margins(x, threads=1)  # both paths
    for k, (offset, booster) in enumerate(members):
        want = offset(x) + booster.predict(x, raw_score=True)
        np.testing.assert_allclose(few[k], want[:100], rtol=0, atol=1e-9)
        np.testing.assert_allclose(many[k], want, rtol=0, atol=1e-9)


def test_a_few_rows_score_as_a_batch_does(trained: Trained) -> None:
    # A request's few rows go through every target's trees packed in one booster, a batch
    # booster by booster: the two must give the same margins and predictions, and a model
    # read back from its pickle rebuilds the pack it left out.
    model = trained.model
    frame = trained.test_frame
    many = model.encoder_.transform(frame.iloc[:400])
    batch = model.margins(many, model.targets_, threads=1)
    few = {t: [] for t in model.targets_}
    for start in range(0, 400, 7):
        part = model.margins(many[start : start + 7], model.targets_, threads=1)
        for t in model.targets_:
            few[t].append(part[t])
    for t, target in model.targets_.items():
        np.testing.assert_allclose(np.concatenate(few[t]), batch[t], rtol=0, atol=1e-9)
        own = target.offset(many) + target.booster.predict(many, raw_score=True)
        np.testing.assert_allclose(batch[t], own, rtol=0, atol=1e-9)
    state = pickle.dumps(model)
    assert "_packed_targets" in model.__dict__  # built by the calls above
    copy_ = pickle.loads(state)
    assert "_packed_targets" not in copy_.__dict__
    rows = frame.iloc[:5]
    got, want = copy_.predict(rows), model.predict(rows)
    for name in ("won", "won_low", "won_high", "in_period", "in_period_low", "in_period_high"):
        np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=0, atol=1e-12)
    for horizon, p in want.horizons.items():
        np.testing.assert_allclose(got.horizons[horizon], p, rtol=0, atol=1e-12)


def test_too_little_data_is_refused(trained: Trained) -> None:
    snapshots = trained.snapshots.head(300).reset_index(drop=True)
    with pytest.raises(InsufficientData, match="won and"):
        train_at(trained.export, trained.plan, snapshots, CUTOFF)


def test_horizons_are_monotone_in_their_length_for_every_deal(trained: Trained) -> None:
    prediction = trained.model.predict(trained.test_frame)
    names = list(prediction.horizons)
    assert names == ["30d", "90d", "180d", "this_quarter", "next_quarter", "ever"]
    p = np.column_stack([prediction.horizons[n] for n in names])
    days = np.column_stack([prediction.horizon_days[n] for n in names])
    for i, j in itertools.permutations(range(len(names)), 2):
        longer = days[:, j] > days[:, i]
        assert (p[longer, j] >= p[longer, i] - 1e-12).all(), (names[i], names[j])
    # The two headline probabilities are served as their models say.
    np.testing.assert_array_equal(prediction.horizons["ever"], prediction.won)
    np.testing.assert_array_equal(prediction.horizons["this_quarter"], prediction.in_period)
    assert (days[:, names.index("ever")] == trained.model.ever_days_).all()


def test_monotone_in_horizon_holds_free_horizons_between_the_anchors() -> None:
    # Lengths 30, 45 (anchor), 90, 180 (anchor); the free 90-day value dips below 45 days'.
    p = np.array([[0.30, 0.20, 0.10, 0.40], [0.05, 0.10, 0.20, 0.30]])
    days = np.array([[30.0, 45.0, 90.0, 180.0], [30.0, 45.0, 90.0, 180.0]])
    anchored = np.array([False, True, False, True])
    fixed = monotone_in_horizon(p, days, anchored=anchored)
    assert fixed[0].tolist() == [0.20, 0.20, 0.20, 0.40]  # held to the anchors
    assert fixed[1].tolist() == p[1].tolist()  # already monotone: untouched
    assert (np.diff(fixed, axis=1) >= 0).all()
