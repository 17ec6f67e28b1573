"""Labels as known at a cut-off, the training-set rule, and fiscal quarters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.deals import DealTables
from features.fiscal import period_bounds, quarter_labels, snapshot_grid, week_of_quarter
from features.labels import TrainingSet, censoring_effect, label_snapshots, training_set
from features.loading import load_export
from features.timestamps import to_ns
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


def test_training_set_applies_the_horizon_and_quarter_rules(three_deals: DealTables) -> None:
    times = [ts("2026-01-08"), ts("2026-02-05"), ts("2026-03-26"), ts("2026-04-02")]
    deals = np.array([1, 1, 1, 1])  # deal B, open all along
    snapshots = pd.DataFrame({"opportunity_id": "B", "as_of": pd.DatetimeIndex(times)})
    cutoff = ts("2026-04-20")
    labels = label_snapshots(
        three_deals,
        deals,
        to_ns(snapshots["as_of"]),
        known_at=cutoff,
    )
    training = training_set(snapshots, labels, cutoff=cutoff, horizon_days=90)
    # won: only snapshots at least 90 days before the cut-off (2026-01-20 or earlier).
    assert training.use_won.tolist() == [True, False, False, False]
    # won_in_period: only snapshots of quarters ended by the cut-off (Q1).
    assert training.use_won_in_period.tolist() == [True, True, True, False]
    assert len(training.frame) == 4


def test_censoring_effect_compares_rule_and_naive_policy() -> None:
    frame = pd.DataFrame({"won": [1.0, 0.0, 1.0, 1.0, np.nan]})
    training = TrainingSet(
        frame=frame,
        use_won=np.array([True, True, False, False, False]),
        use_won_in_period=np.zeros(5, dtype=bool),
        cutoff=ts("2026-01-01"),
    )
    effect = censoring_effect(training, np.array([1.0, 0.0, 1.0, 1.0, 0.0]))
    assert effect.share_dropped == pytest.approx(0.6)
    assert effect.win_rate_rule == pytest.approx(0.5)
    assert effect.win_rate_naive == pytest.approx(0.75)
    assert effect.true_win_rate_all == pytest.approx(0.6)


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
