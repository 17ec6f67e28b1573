"""The synthetic world: every stylized fact of synthetic-world.md, determinism, contract shape.

One 20,000-deal world is generated per module; each spec row is one test, asserted on the
numbers `measure_facts` reads from the contract tables alone (no generator internals).
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.contract import ACTIVITY_TYPES, FORECAST_CATEGORIES, TABLES
from features.loading import load_export
from features.synthetic import (
    Fact,
    SyntheticWorld,
    format_facts,
    generate_world,
    measure_facts,
    write_world,
)
from features.synthetic.parameters import CONTACT_ROLES, WorldParameters
from features.synthetic.population import sales_org

END = pd.Timestamp("2026-11-15", tz="UTC")
SEGMENTS = ("SMB", "Mid-Market", "Enterprise")


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return generate_world(n_opportunities=20_000, seed=1)


@pytest.fixture(scope="module")
def facts(world: SyntheticWorld) -> dict[str, Fact]:
    return measure_facts(world.tables, world.stages)


def spread(details: dict[str, float], prefix: str) -> float:
    values = [v for k, v in details.items() if k.startswith(prefix)]
    return max(values) - min(values)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney AUC (ties averaged)."""
    ranks = pd.Series(scores).rank().to_numpy()
    positives = labels.astype(bool)
    n_pos, n_neg = positives.sum(), (~positives).sum()
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# --- the spec's table, one row per test ---------------------------------------------------


def test_win_rate_is_20_to_35_percent_and_varies_by_segment_source_and_rep(
    facts: dict[str, Fact],
) -> None:
    d = facts["win_rate"].details
    assert 0.20 <= d["overall"] <= 0.35
    assert spread(d, "segment:") >= 0.03
    assert spread(d, "source:") >= 0.05
    assert d["rep_p90"] - d["rep_p10"] >= 0.08


def test_median_sales_cycle_runs_from_about_30_days_smb_to_120_plus_enterprise(
    facts: dict[str, Fact],
) -> None:
    d = facts["sales_cycle"].details
    assert 20 <= d["median_days:SMB"] <= 45
    assert d["median_days:SMB"] < d["median_days:Mid-Market"] < d["median_days:Enterprise"]
    assert d["median_days:Enterprise"] >= 120


def test_won_deals_close_faster_than_lost_deals_die(facts: dict[str, Fact]) -> None:
    d = facts["won_faster_than_lost"].details
    assert d["won_median_days"] < d["lost_median_days"]
    for segment in SEGMENTS:
        assert d[f"won:{segment}"] < d[f"lost:{segment}"]


def test_30_to_50_percent_are_pushed_and_pushes_lower_the_odds(facts: dict[str, Fact]) -> None:
    d = facts["close_date_pushes"].details
    assert 0.30 <= d["share_pushed"] <= 0.50
    assert d["win_0"] > d["win_1"] > d["win_2plus"]


def test_stage_conversion_rises_with_stage_and_falls_with_skips_and_revisits(
    facts: dict[str, Fact],
) -> None:
    d = facts["stage_conversion"].details
    reached = [v for k, v in d.items() if k.startswith("win_if_reached_")]
    assert all(b > a for a, b in pairwise(reached))
    assert reached[-1] - reached[0] >= 0.3
    assert d["win_skips_0"] > d["win_skips_1"] > d["win_skips_2plus"]
    assert d["win_revisits_0"] > d["win_revisits_1"] > d["win_revisits_2plus"]


def test_crm_stage_probabilities_are_not_the_true_conversion_rates(
    world: SyntheticWorld, facts: dict[str, Fact]
) -> None:
    d = facts["stage_conversion"].details
    crm = [world.stages.probability(s) / 100 for s in world.stages.open_stages]
    true = [d[f"win_if_reached_{i + 1}"] for i in range(len(crm))]
    assert max(abs(a - b) for a, b in zip(crm, true, strict=True)) >= 0.1


def test_activity_is_heavier_and_fresher_on_wins_and_silence_precedes_loss(
    facts: dict[str, Fact],
) -> None:
    d = facts["activity"].details
    assert d["won_mean_activities"] > 1.1 * d["lost_mean_activities"]
    assert d["won_days_since_last"] < d["lost_days_since_last"]
    assert d["win_silent"] < 0.5 * d["win_active"]
    assert d["win_dm_meeting"] > d["win_no_dm_meeting"] + 0.1


def test_amounts_are_heavy_tailed_by_segment_and_often_cut_late(facts: dict[str, Fact]) -> None:
    d = facts["amounts"].details
    medians = [d[f"median:{s}"] for s in SEGMENTS]
    assert medians[0] < medians[1] < medians[2]
    for segment in SEGMENTS:
        assert d[f"mean_over_median:{segment}"] >= 1.15
        assert d[f"p95_over_median:{segment}"] >= 3.0
        assert abs(d[f"log_skew:{segment}"]) < 1.0  # log-normal-like
    assert d["late_cut_share"] >= 0.25
    assert d["late_cut_share"] > 2 * d["early_cut_share"]


def test_reps_call_with_personal_bias_and_commit_wins_60_to_85_percent(
    facts: dict[str, Fact],
) -> None:
    d = facts["forecast_categories"].details
    assert 0.60 <= d["commit_win_rate"] <= 0.85
    assert d["over_callers"] >= 3
    assert d["sandbaggers"] >= 3
    assert d["bias_half_correlation"] >= 0.3


def test_deals_bunch_into_quarter_ends(facts: dict[str, Fact]) -> None:
    d = facts["quarter_end"].details
    assert d["won_in_last_3_weeks"] >= 0.32  # uniform would be 21/91 = 23%
    assert d["close_date_on_quarter_end"] >= 0.15  # uniform would be about 1%


def test_rep_skill_is_learnable_from_history(facts: dict[str, Fact]) -> None:
    d = facts["rep_skill"].details
    assert d["reps"] >= 20
    assert d["half_correlation"] >= 0.3


def test_conversion_drifts_over_the_years(facts: dict[str, Fact]) -> None:
    d = facts["drift"].details
    assert len(d) >= 3
    assert abs(spread(d, "year_")) >= 0.04


def test_40_to_65_percent_of_reps_attain_quota(facts: dict[str, Fact]) -> None:
    assert 0.40 <= facts["quota_attainment"].details["share_attained"] <= 0.65


def test_shape_reps_teams_stages_and_a_quarter_in_progress(facts: dict[str, Fact]) -> None:
    d = facts["shape"].details
    assert 5 <= d["reps"] <= 60
    assert 2 <= d["teams"] <= 8
    assert 6 <= d["open_stages"] <= 8
    assert 2.9 <= d["years"] <= 3.0
    assert 14 <= d["days_into_quarter"] <= 77


def test_every_fact_holds_and_is_summarised(facts: dict[str, Fact]) -> None:
    assert {name for name, fact in facts.items() if fact.holds is not True} == set()
    text = format_facts(facts)
    assert len(text.splitlines()) == len(facts)
    assert "MISS" not in text


def test_true_propensity_is_informative_but_not_perfect(world: SyntheticWorld) -> None:
    opportunities = world.tables["opportunities"]
    truth = world.ground_truth.set_index("opportunity_id").loc[opportunities["opportunity_id"]]
    closed = opportunities["is_closed"].to_numpy()
    auc = roc_auc(
        opportunities["is_won"].to_numpy()[closed], truth["probability"].to_numpy()[closed]
    )
    assert 0.78 <= auc <= 0.90


# --- scale of the organisation ------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_opportunities", "reps", "teams"),
    [(200, (5, 5), (2, 2)), (20_000, (30, 60), (4, 8)), (1_000_000, (60, 60), (8, 8))],
)
def test_reps_and_teams_scale_with_deals_within_bounds(
    n_opportunities: int, reps: tuple[int, int], teams: tuple[int, int]
) -> None:
    org = sales_org(n_opportunities, np.random.default_rng(0), WorldParameters())
    assert reps[0] <= org.n_reps <= reps[1]
    assert teams[0] <= org.n_teams <= teams[1]
    assert len(np.unique(org.rep_team)) == org.n_teams


# --- determinism ----------------------------------------------------------------------------


def test_same_seed_gives_equal_tables_and_identical_files(tmp_path: Path) -> None:
    first, second = generate_world(2_000, seed=7), generate_world(2_000, seed=7)
    for name, table in first.tables.items():
        pd.testing.assert_frame_equal(table, second.tables[name])
    pd.testing.assert_frame_equal(first.ground_truth, second.ground_truth)
    for fmt in ("csv", "parquet"):
        a = write_world(first, tmp_path / f"a_{fmt}", fmt=fmt)
        b = write_world(second, tmp_path / f"b_{fmt}", fmt=fmt)
        assert [p.name for p in a] == [p.name for p in b]
        for path_a, path_b in zip(a, b, strict=True):
            assert path_a.read_bytes() == path_b.read_bytes(), path_a.name


def test_different_seeds_give_different_worlds() -> None:
    first, second = generate_world(2_000, seed=7), generate_world(2_000, seed=8)
    for name in ("opportunities", "opportunity_history", "activities", "accounts"):
        assert not first.tables[name].equals(second.tables[name]), name


# --- contract shape -------------------------------------------------------------------------


def test_tables_carry_every_required_contract_column(world: SyntheticWorld) -> None:
    assert set(world.tables) == {
        "opportunities",
        "opportunity_history",
        "activities",
        "accounts",
        "owners",
        "quotas",
    }
    for name, table in world.tables.items():
        assert set(TABLES[name].required_columns) <= set(table.columns), name
    assert {"stage", "amount", "close_date", "is_closed", "is_won", "forecast_category"} <= set(
        world.tables["opportunities"].columns
    )
    assert {"industry", "employees", "annual_revenue", "region", "segment"} <= set(
        world.tables["accounts"].columns
    )
    assert {"team", "manager_id", "region"} <= set(world.tables["owners"].columns)


def test_times_are_utc_and_nothing_is_stamped_after_the_end(world: SyntheticWorld) -> None:
    columns = {
        "opportunities": ("created_at", "close_date"),
        "opportunity_history": ("changed_at",),
        "activities": ("occurred_at",),
    }
    for name, names in columns.items():
        for column in names:
            values = world.tables[name][column]
            assert str(values.dtype) == "datetime64[ns, UTC]", (name, column)
            assert values.notna().all()
    for name, column in (
        ("opportunities", "created_at"),
        ("opportunity_history", "changed_at"),
        ("activities", "occurred_at"),
    ):
        assert world.tables[name][column].max() <= END, (name, column)
    for name in ("opportunities", "opportunity_history"):
        dates = world.tables[name]["close_date"]
        assert (dates == dates.dt.normalize()).all()  # UTC midnights


def test_history_rows_are_unique_ordered_and_start_at_creation(world: SyntheticWorld) -> None:
    history = world.tables["opportunity_history"]
    opportunities = world.tables["opportunities"].set_index("opportunity_id")
    assert not history.duplicated(["opportunity_id", "changed_at"]).any()
    first = history.groupby("opportunity_id").first()
    created = opportunities.loc[first.index, "created_at"]
    assert (first["changed_at"] == created).all()
    assert (history["amount"] >= 0).all()
    assert history["forecast_category"].isin(FORECAST_CATEGORIES).all()
    assert history["stage"].isin(world.stages.all_stages).all()
    crm = history["stage"].map(world.stages.probability)
    assert (history["probability"] == crm).all()  # the CRM default, never the latent odds
    assert (history["currency"] == "USD").all()


def test_current_state_agrees_with_the_last_history_row(world: SyntheticWorld) -> None:
    history = world.tables["opportunity_history"].sort_values(["opportunity_id", "changed_at"])
    last = history.groupby("opportunity_id").last()
    opportunities = world.tables["opportunities"].set_index("opportunity_id").loc[last.index]
    for column in ("stage", "amount", "close_date", "forecast_category"):
        assert (opportunities[column] == last[column]).all(), column
    won = last["stage"].isin(world.stages.won_stages)
    lost = last["stage"].isin(world.stages.lost_stages)
    assert (opportunities["is_won"] == won).all()
    assert (opportunities["is_closed"] == (won | lost)).all()
    assert (last.loc[won, "forecast_category"] == "Closed").all()
    assert (last.loc[lost, "forecast_category"] == "Omitted").all()
    closed = won | lost
    assert (last.loc[closed, "close_date"] == last.loc[closed, "changed_at"].dt.normalize()).all()
    open_share = float((~closed).mean())
    assert 0.03 <= open_share <= 0.3  # deals in flight at the end, as in a real export


def test_activities_lie_between_creation_and_close(world: SyntheticWorld) -> None:
    activities = world.tables["activities"]
    assert activities["type"].isin(ACTIVITY_TYPES).all()
    assert activities["contact_role"].dropna().isin(CONTACT_ROLES).all()
    assert activities["contact_role"].isna().any()
    history = world.tables["opportunity_history"]
    last = history.sort_values("changed_at").groupby("opportunity_id").last()
    opportunities = world.tables["opportunities"].set_index("opportunity_id")
    deal = activities["opportunity_id"]
    created = opportunities["created_at"].reindex(deal).to_numpy()
    assert (activities["occurred_at"].to_numpy() >= created).all()
    is_closed = opportunities["is_closed"].reindex(deal).to_numpy()
    close_time = last["changed_at"].reindex(deal).to_numpy()
    assert (activities["occurred_at"].to_numpy()[is_closed] <= close_time[is_closed]).all()


def test_quotas_cover_every_rep_and_quarter(world: SyntheticWorld) -> None:
    quotas = world.tables["quotas"]
    owners = world.tables["owners"]
    assert quotas["period"].str.fullmatch(r"\d{4}-Q[1-4]").all()
    assert (quotas["quota"] > 0).all()
    assert set(quotas["owner_id"]) == set(owners["owner_id"])
    assert quotas.groupby("period").size().eq(len(owners)).all()
    assert {"2023-Q4", "2026-Q4"} <= set(quotas["period"])


def test_ground_truth_stays_out_of_the_tables(world: SyntheticWorld) -> None:
    truth = world.ground_truth
    assert len(truth) == len(world.tables["opportunities"])
    assert {"opportunity_id", "logit", "probability"} <= set(truth.columns)
    assert [c for c in truth.columns if c.startswith("driver_")]
    latent = set(truth.columns) - {"opportunity_id", "probability"}
    for name, table in world.tables.items():
        assert not latent & set(table.columns), name
    drivers = truth[[c for c in truth.columns if c.startswith("driver_")]].sum(axis=1)
    np.testing.assert_allclose(drivers, truth["logit"])


def test_written_world_loads_without_violations_and_measures_the_same(
    world: SyntheticWorld, tmp_path: Path, facts: dict[str, Fact]
) -> None:
    paths = write_world(world, tmp_path / "export")
    assert tmp_path / "export" / "ground_truth" / "propensity.csv" in paths
    assert not (tmp_path / "export" / "propensity.csv").exists()
    export = load_export(tmp_path / "export")
    assert export.report.violations == []
    assert export.stages.open_stages == world.stages.open_stages
    loaded = {
        "opportunities": export.opportunities,
        "opportunity_history": export.history,
        "activities": export.activities,
        "accounts": export.accounts,
        "owners": export.owners,
        "quotas": export.quotas,
    }
    again = measure_facts(loaded, export.stages)
    for name, fact in facts.items():
        assert again[name].holds == fact.holds, name
        for key, value in fact.details.items():
            assert again[name].details[key] == pytest.approx(value, rel=1e-9, nan_ok=True), key
