"""Risk flags fire on the deals that have the warning sign, with the reason, and stay quiet
on a healthy deal."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from models.risk import RISK_THRESHOLDS, risk_flags, risk_level
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
