"""Behaviour of the trained win model: ranges, invariance, direction, floors, intervals."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy.special import logit
from sklearn.metrics import roc_auc_score

from models.baselines import fit_baselines
from models.win import InsufficientData, WinPrediction
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


def test_identifiers_do_not_matter(trained: Trained) -> None:
    frame = trained.test_frame.head(500)
    renamed = frame.assign(opportunity_id="X-" + frame["opportunity_id"].astype(str))
    a = trained.model.predict(frame)
    b = trained.model.predict(renamed.sample(frac=1.0, random_state=1).sort_index())
    np.testing.assert_array_equal(a.won, b.won)
    np.testing.assert_array_equal(a.won_high, b.won_high)


@pytest.mark.parametrize(
    ("feature", "change", "direction"),
    [
        # Silence precedes loss.
        ("days_since_last_activity", lambda v: v + 45.0, -1),
        ("activities_30d", lambda v: np.zeros_like(v), -1),
        # Decision-maker meetings raise the odds.
        ("decision_maker_contacts", lambda v: v + 3.0, +1),
        # Pushed deals win less, more pushes less still.
        ("close_date_pushes", lambda v: v + 3.0, -1),
        # Later stages convert better.
        ("stage_order", lambda v: v + 2.0, +1),
    ],
)
def test_directional_expectations(trained: Trained, feature: str, change, direction: int) -> None:
    frame = trained.test_frame
    changed = frame.assign(**{feature: change(frame[feature].to_numpy(dtype=np.float64))})
    before = trained.model.predict(frame).won.mean()
    after = trained.model.predict(changed).won.mean()
    assert np.sign(after - before) == direction, (feature, before, after)


def test_discrimination_and_calibration_floors_on_the_next_quarter(trained: Trained) -> None:
    frame = trained.test_frame
    truth = trained.truth[trained.test_mask].reset_index(drop=True)
    prediction = trained.model.predict(frame)
    for target, p in (("won", prediction.won), ("won_in_period", prediction.in_period)):
        y = truth[target].to_numpy()
        known = ~np.isnan(y)
        assert known.sum() > 2000
        assert roc_auc_score(y[known], p[known]) >= 0.85, target
        assert ece(p[known], y[known]) <= 0.04, target


def test_model_beats_every_baseline_on_brier(trained: Trained) -> None:
    frame = trained.test_frame
    truth = trained.truth[trained.test_mask].reset_index(drop=True)
    y = truth["won"].to_numpy()
    known = ~np.isnan(y)
    training = trained.training
    train = training.frame[training.use_won]
    baselines = fit_baselines(train, train["won"].to_numpy(), target="won")
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
    frame = trained.test_frame.head(300)
    novel = frame.assign(lead_source="Carrier pigeon")
    a = trained.model.predict(frame)
    b = trained.model.predict(novel)
    assert np.median(b.won_high - b.won_low) > np.median(a.won_high - a.won_low)


def test_small_data_mode_answers_and_says_so(trained: Trained) -> None:
    # Keep just enough deals: about 40 won and 40 lost before the cut-off, plus the open ones.
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
    assert model.mode_ == "small-data"
    prediction = model.predict(trained.test_frame.head(200))
    assert prediction.mode == "small-data"
    assert np.isfinite(prediction.won).all()
    # It leans on the stage weights: probabilities rise with the stage.
    by_stage = pd.Series(prediction.won).groupby(trained.test_frame.head(200)["stage_order"]).mean()
    assert (
        by_stage.is_monotonic_increasing
        or by_stage.corr(pd.Series(by_stage.index, index=by_stage.index)) > 0.8
    )


def test_too_little_data_is_refused(trained: Trained) -> None:
    snapshots = trained.snapshots.head(300).reset_index(drop=True)
    with pytest.raises(InsufficientData, match="won and"):
        train_at(trained.export, trained.plan, snapshots, CUTOFF)
