"""Labels as known at a cut-off, horizons and their censoring weights, and fiscal quarters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.deals import DealTables
from features.fiscal import period_bounds, quarter_labels, snapshot_grid, week_of_quarter
from features.labels import (
    MIN_SURVIVAL,
    FollowUp,
    HorizonSpec,
    censoring_effect,
    label_snapshots,
    training_set,
)
from features.loading import load_export
from tests.conftest import write_tables


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


@pytest.fixture
def three_deals(tmp_path: Path) -> DealTables:
    """A: won in Q1. B: won in Q2 (after its Q1 snapshots' quarter). C: lost in Q1."""
    tables = {
        "opportunities": pd.DataFrame(
            {
                "opportunity_id": ["A", "B", "C"],
                "account_id": ["X"] * 3,
                "owner_id": ["U"] * 3,
                "created_at": ["2026-01-05"] * 3,
            }
        ),
        "opportunity_history": pd.DataFrame(
            {
                "opportunity_id": ["A", "A", "B", "B", "C", "C"],
                "changed_at": [
                    "2026-01-05",
                    "2026-02-10",
                    "2026-01-05",
                    "2026-04-10",
                    "2026-01-05",
                    "2026-03-01",
                ],
                "stage": [
                    "Prospecting",
                    "Closed Won",
                    "Prospecting",
                    "Closed Won",
                    "Prospecting",
                    "Closed Lost",
                ],
                "amount": [1.0] * 6,
                "close_date": [
                    "2026-03-31",
                    "2026-02-10",
                    "2026-03-31",
                    "2026-04-10",
                    "2026-03-31",
                    "2026-03-01",
                ],
            }
        ),
    }
    return DealTables.from_export(load_export(write_tables(tmp_path / "x", tables)))


def labels_at(tables: DealTables, cutoff: str) -> pd.DataFrame:
    # Each deal seen on 2026-02-01 (Q1).
    return label_snapshots(
        tables, np.arange(3), np.full(3, ts("2026-02-01").value), known_at=ts(cutoff)
    ).set_axis(["A", "B", "C"])


def test_labels_once_everything_is_known(three_deals: DealTables) -> None:
    labels = labels_at(three_deals, "2026-12-31")
    assert labels["won"].tolist() == [1.0, 1.0, 0.0]
    assert labels["won_in_period"].tolist() == [1.0, 0.0, 0.0]
    assert labels["outcome"].tolist() == ["won", "won", "lost"]
    assert labels.loc["B", "close_time"] == ts("2026-04-10")


def test_labels_mid_quarter_are_unresolved_for_open_deals(three_deals: DealTables) -> None:
    labels = labels_at(three_deals, "2026-03-15")
    assert labels.loc["A", "won"] == 1.0 and labels.loc["A", "won_in_period"] == 1.0
    assert np.isnan(labels.loc["B", "won"]) and np.isnan(labels.loc["B", "won_in_period"])
    assert labels.loc["C", "won_in_period"] == 0.0
    assert labels.loc["B", "outcome"] is None and pd.isna(labels.loc["B", "close_time"])


def test_in_period_label_resolves_when_the_quarter_ends(three_deals: DealTables) -> None:
    labels = labels_at(three_deals, "2026-04-05")
    assert np.isnan(labels.loc["B", "won"])  # still open
    assert labels.loc["B", "won_in_period"] == 0.0  # but not won in Q1, for sure


def test_won_in_period_never_exceeds_won(three_deals: DealTables) -> None:
    for cutoff in ("2026-02-01", "2026-03-15", "2026-04-05", "2026-12-31"):
        labels = labels_at(three_deals, cutoff)
        both = labels.dropna(subset=["won", "won_in_period"])
        assert (both["won_in_period"] <= both["won"]).all()


def _deal_b_snapshots() -> tuple[pd.DataFrame, np.ndarray]:
    times = [ts("2026-01-08"), ts("2026-02-05"), ts("2026-03-26"), ts("2026-04-02")]
    snapshots = pd.DataFrame({"opportunity_id": "B", "as_of": pd.DatetimeIndex(times)})
    return snapshots, np.array([1, 1, 1, 1])  # deal B: open until won on 2026-04-10


def test_horizon_labels_and_their_censoring_weights(three_deals: DealTables) -> None:
    snapshots, deals = _deal_b_snapshots()
    training = training_set(
        snapshots,
        three_deals,
        deals,
        cutoff=ts("2026-04-20"),
        horizons=HorizonSpec(days=(30,), ever_max_days=730, min_followup_share=0.25),
    )
    # Follow-up at the cut-off: 102, 74, 25 and 18 days. "Ever" is the longest horizon a
    # quarter of the snapshots reach: 102 days.
    assert training.ever_days == 102
    thirty = training.targets["won_30d"]
    # Jan 8 and Feb 5: 30 days passed with B open (0, known after 30 days, which half the
    # snapshots reach: weight 2). Mar 26 and Apr 2: won within 30 days, known after 15 and
    # 8 days, which every snapshot reaches.
    assert thirty.label.tolist() == [0.0, 0.0, 1.0, 1.0]
    assert thirty.weight.tolist() == [2.0, 2.0, 1.0, 1.0]
    ever = training.targets["won"]
    # B's win is known after 92, 64, 15 and 8 days: one snapshot in four is followed up
    # for 92 days (weight 4), two for 64 (weight 2), all for 15 and 8.
    assert ever.label.tolist() == [1.0, 1.0, 1.0, 1.0]
    assert ever.weight.tolist() == [4.0, 2.0, 1.0, 1.0]
    quarter = training.targets["won_in_period"]
    # Q1 ended (Apr 1) with B open; Apr 2 is in Q2, and B was won in it.
    assert quarter.label.tolist() == [0.0, 0.0, 0.0, 1.0]
    assert training.frame["won_30d"].tolist() == thirty.label.tolist()


def test_open_deals_past_the_cut_off_are_censored_not_dropped(three_deals: DealTables) -> None:
    snapshots, deals = _deal_b_snapshots()
    training = training_set(
        snapshots, three_deals, deals, cutoff=ts("2026-04-05"), horizons=HorizonSpec(days=(30,))
    )
    thirty = training.targets["won_30d"]
    # Mar 26 and Apr 2: B still open at the cut-off, 30 days not yet passed: unknown.
    assert np.isnan(thirty.label[2:]).all() and (thirty.weight[2:] == 0).all()
    assert thirty.known.tolist() == [True, True, False, False]
    assert len(training.frame) == 4  # every snapshot stays; only its weight says what counts


def test_follow_up_survival_and_capped_weights() -> None:
    day = 86_400 * 10**9
    followup = FollowUp(np.array([10, 20, 30, 40]) * day)
    assert followup.survival(np.array([0, 10, 11, 40, 41]) * day).tolist() == [
        1.0,
        1.0,
        0.75,
        0.25,
        0.0,
    ]
    weights = followup.weights(np.array([5 * day, 35 * day, 100 * day, np.nan]))
    assert weights[:2].tolist() == [1.0, 4.0]
    assert weights[2] == pytest.approx(1 / MIN_SURVIVAL)  # beyond every follow-up: capped
    assert weights[3] == 0.0  # censored


def test_censoring_effect_compares_naive_and_weighted_rates(three_deals: DealTables) -> None:
    snapshots, deals = _deal_b_snapshots()
    training = training_set(
        snapshots,
        three_deals,
        deals,
        cutoff=ts("2026-04-20"),
        horizons=HorizonSpec(days=(30,), min_followup_share=0.25),
    )
    effect = censoring_effect(training, np.array([1.0, 1.0, 1.0, 1.0]))
    assert effect.share_censored == 0.0
    assert effect.win_rate_naive == 1.0 and effect.win_rate_weighted == 1.0
    assert effect.true_win_rate == 1.0 and effect.ever_days == 102


def test_fiscal_quarters_with_a_february_start() -> None:
    times = pd.DatetimeIndex(["2026-01-31", "2026-02-01", "2026-05-01", "2027-01-31"], tz="UTC")
    labels = quarter_labels(times.as_unit("ns").asi8, start_month=2).tolist()
    assert labels == ["2026-Q4", "2027-Q1", "2027-Q2", "2027-Q4"]
    assert period_bounds("2027-Q1", start_month=2) == (ts("2026-02-01"), ts("2026-05-01"))
    assert period_bounds("2026-Q3") == (ts("2026-07-01"), ts("2026-10-01"))
    assert week_of_quarter(
        pd.DatetimeIndex(["2026-07-07", "2026-07-08"], tz="UTC").as_unit("ns").asi8
    ).tolist() == [1, 2]


def test_grid_restarts_at_every_quarter() -> None:
    grid = snapshot_grid(ts("2026-01-01"), ts("2026-04-20"))
    assert grid[0] == ts("2026-01-01")
    assert ts("2026-04-01") in grid
    assert ts("2026-03-26") in grid  # Jan 1 + 12 weeks: week 13 of Q1
    assert grid.max() <= ts("2026-04-20")
    assert (np.diff(grid.as_unit("ns").asi8) <= 7 * 86_400 * 10**9).all()
