"""Risk flags fire on the deals that have the warning sign, with the reason, and stay quiet
on a healthy deal."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from models.risk import (
    FLAG_CODES,
    MIN_LIFT,
    RISK_THRESHOLDS,
    RiskFlags,
    change_over,
    fit_risk_flags,
    flag_lift,
    risk_flags,
    risk_level,
)
from tests.model.conftest import Trained


@pytest.fixture(scope="module")
def healthy(trained: Trained) -> pd.DataFrame:
    """A real open deal made healthy: on track, active, never pushed, not committed."""
    deal = trained.test_frame[trained.test_frame["stage"] == "Proposal"].head(1)
    return deal.assign(
        forecast_category="Best Case",
        stage_duration_percentile=0.4,
        days_in_stage=12.0,
        close_date_pushes=0.0,
        close_date_days_pushed=0.0,
        close_date_past=0.0,
        days_to_close=30.0,
        days_since_last_activity=2.0,
        deal_age_days=60.0,
    ).reset_index(drop=True)


def test_a_healthy_deal_has_no_flags(healthy: pd.DataFrame) -> None:
    flags = risk_flags(healthy, np.array([0.6]), change_7d=np.array([0.02]))
    assert flags == [()]
    assert risk_level(flags[0]) == "low"


Change = Callable[[pd.DataFrame], pd.DataFrame]


@pytest.mark.parametrize(
    ("code", "make", "probability", "change_7d", "reason"),
    [
        (
            "commit_low_probability",
            lambda d: d.assign(forecast_category="Commit"),
            0.3,
            0.0,
            "Forecast as Commit, but the model gives it a 30% chance",
        ),
        ("large_drop", lambda d: d, 0.45, -0.15, "fell 15 points in 7 days, from 60% to 45%"),
        (
            "stalled",
            lambda d: d.assign(stage_duration_percentile=0.97, days_in_stage=40.0),
            0.6,
            0.0,
            "40 days in Proposal: longer than 97% of won deals",
        ),
        (
            "repeated_pushes",
            lambda d: d.assign(close_date_pushes=3.0, close_date_days_pushed=75.0),
            0.6,
            0.0,
            "pushed 3 times, 75 days in all",
        ),
        (
            "silent",
            lambda d: d.assign(days_since_last_activity=30.0),
            0.6,
            0.0,
            "No activity logged for 30 days",
        ),
        (
            "silent",
            lambda d: d.assign(days_since_last_activity=np.nan, deal_age_days=40.0),
            0.6,
            0.0,
            "No activity logged at all in the deal's 40 days",
        ),
        (
            "close_date_past",
            lambda d: d.assign(close_date_past=1.0, days_to_close=-12.0),
            0.6,
            0.0,
            "passed 12 days ago",
        ),
    ],
)
def test_each_flag_fires_with_its_reason(
    healthy: pd.DataFrame,
    code: str,
    make: Change,
    probability: float,
    change_7d: float,
    reason: str,
) -> None:
    flags = risk_flags(make(healthy), np.array([probability]), change_7d=np.array([change_7d]))[0]
    assert [f.code for f in flags] == [code]
    assert reason in flags[0].reason
    assert risk_level(flags) == flags[0].severity


@pytest.mark.parametrize(
    ("make", "probability", "change_7d"),
    [
        (lambda d: d.assign(forecast_category="Commit"), 0.7, 0.0),  # a likely commit
        (lambda d: d, 0.55, -0.05),  # a small drop
        (lambda d: d, 0.55, np.nan),  # no trend: a young deal
        (lambda d: d.assign(stage_duration_percentile=0.97, days_in_stage=5.0), 0.6, 0.0),
        (lambda d: d.assign(close_date_pushes=1.0), 0.6, 0.0),
        (lambda d: d.assign(days_since_last_activity=np.nan, deal_age_days=5.0), 0.6, 0.0),
    ],
)
def test_near_misses_do_not_fire(
    healthy: pd.DataFrame, make: Change, probability: float, change_7d: float
) -> None:
    flags = risk_flags(make(healthy), np.array([probability]), change_7d=np.array([change_7d]))
    assert flags == [()]


def test_flags_on_the_real_pipeline_have_reasons_and_separate_outcomes(trained: Trained) -> None:
    frame = trained.test_frame
    truth = trained.truth[trained.test_mask].reset_index(drop=True)["won"].to_numpy()
    probability = trained.model.predict(frame).won
    flags = risk_flags(frame, probability)
    codes = {f.code for deal in flags for f in deal}
    assert {"commit_low_probability", "stalled", "repeated_pushes", "silent"} <= codes
    assert all(f.reason.endswith(".") for deal in flags for f in deal)
    flagged = np.array([bool(deal) for deal in flags])
    known = ~np.isnan(truth)
    # Flagged deals are won less often than the others.
    assert truth[known & flagged].mean() < truth[known & ~flagged].mean()
    assert RISK_THRESHOLDS.repeated_pushes == 2


def test_lift_is_the_loss_rate_flagged_over_the_loss_rate_not_flagged() -> None:
    flagged = np.array([True, True, True, True, False, False, False, False, False, False])
    lost = np.array([1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, np.nan])
    lift = flag_lift(flagged, lost)
    # Flagged: 3 of 4 lost; not flagged: 1 of the 5 known (the unknown one is left out).
    assert (lift.n_flagged, lift.n_not_flagged) == (4, 5)
    assert lift.loss_rate_flagged == pytest.approx(0.75)
    assert lift.loss_rate_not_flagged == pytest.approx(0.2)
    assert lift.lift == pytest.approx(3.75)
    assert lift.share_flagged == pytest.approx(0.4)
    # Won: 1 of 4 flagged, 4 of 5 not: flagged deals win 3.2 times less often.
    assert lift.win_rate_ratio == pytest.approx(0.8 / 0.25)
    # With label weights: flagged 3 of 6 lost, not flagged 2 of 5; weight 0 is censored.
    weight = np.array([1.0, 1.0, 1.0, 3.0, 2.0, 1.0, 1.0, 1.0, 1.0, 5.0])
    weight[5] = 0.0
    weighted = flag_lift(flagged, lost, weight)
    assert weighted.n_not_flagged == 4
    assert weighted.loss_rate_flagged == pytest.approx(0.5)
    assert weighted.loss_rate_not_flagged == pytest.approx(2 / 5)
    assert weighted.lift == pytest.approx(1.25)
    assert weighted.win_rate_ratio == pytest.approx(0.6 / 0.5)
    # Nothing lost without the flag, or nobody flagged: no lift to speak of.
    assert np.isnan(flag_lift(flagged, np.where(flagged, 1.0, 0.0)).lift)
    assert np.isnan(flag_lift(np.zeros(10, bool), lost).lift)


def test_the_seven_day_change_comes_from_the_same_deal_a_week_earlier() -> None:
    ids = np.array(["a", "a", "b", "a"], dtype=object)
    as_of = pd.to_datetime(["2026-01-01", "2026-01-08", "2026-01-08", "2026-01-22"], utc=True)
    change = change_over(ids, as_of.to_numpy(), np.array([0.5, 0.3, 0.4, 0.2]))
    np.testing.assert_allclose(change, [np.nan, -0.2, np.nan, np.nan])


def test_a_flag_whose_lift_is_below_the_bar_is_not_raised(healthy: pd.DataFrame) -> None:
    """100 deals: 40 silent, lost as often as the others (60%: lift 1.0); 20 pushed twice,
    all lost against 50% of the others (lift 2.0). Silence is then never raised."""
    deals = pd.concat([healthy] * 100, ignore_index=True)
    silent = np.arange(100) < 40
    pushed = np.arange(100) >= 80
    lost = np.zeros(100)
    lost[0:24] = lost[40:56] = lost[80:100] = 1.0
    deals.loc[silent, "days_since_last_activity"] = 30.0
    deals.loc[pushed, "close_date_pushes"] = 2.0
    p = np.full(100, 0.6)
    risk = RiskFlags().fit(deals, p, 1.0 - lost)
    assert risk.lift_["silent"].lift == pytest.approx(1.0)
    assert risk.lift_["silent"].win_rate_ratio == pytest.approx(1.0)
    assert risk.lift_["repeated_pushes"].lift == pytest.approx(2.0)
    assert risk.lift_["repeated_pushes"].win_rate_ratio == np.inf  # none of them won
    assert risk.raised_ == ("repeated_pushes",)
    assert risk.share_flagged_ == pytest.approx(0.2)
    flags = risk.flags(deals, p)
    assert [f.code for f in flags[0]] == []  # silent, not raised
    assert [f.code for f in flags[99]] == ["repeated_pushes"]
    # Unfitted, every flag fires (what a bundle from before the lifts raises).
    assert [f.code for f in RiskFlags().flags(deals, p)[0]] == ["silent"]


def test_at_most_a_quarter_of_open_deals_are_flagged_each_with_its_reason(
    trained: Trained,
) -> None:
    """Only flags that measured their lift on the training snapshots, together on at most a
    quarter of them, fire on the open deals of the next quarter: at most a quarter of those
    too."""
    risk = fit_risk_flags(trained.model, trained.training)
    assert set(risk.lift_) == set(FLAG_CODES)
    assert all(risk.lift_[code].win_rate_ratio >= MIN_LIFT for code in risk.raised_)
    assert risk.share_flagged_ <= 0.25  # on the training snapshots: the cap of the fit
    frame = trained.test_frame
    flags = risk.flags(frame, trained.model.predict(frame).won)
    flagged = np.array([bool(deal) for deal in flags])
    assert flagged.mean() <= 0.25
    assert all(f.code in risk.raised_ and f.reason.endswith(".") for deal in flags for f in deal)
    if flagged.any():
        # Out of sample, the flagged deals still win less often.
        truth = trained.truth[trained.test_mask].reset_index(drop=True)["won"].to_numpy()
        assert flag_lift(flagged, 1.0 - truth).win_rate_ratio > 1.0
