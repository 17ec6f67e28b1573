"""The world's variants (synthetic-world.md, "Variants"; issue 12 item 5): a young org over a
span of months, a signal-free world, and the manager weights some teams type in.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.synthetic import SyntheticWorld, generate_world

END = pd.Timestamp("2026-11-15", tz="UTC")


@pytest.fixture(scope="module")
def young() -> SyntheticWorld:
    return generate_world(600, seed=1, months=9)


@pytest.fixture(scope="module")
def signal_free() -> SyntheticWorld:
    return generate_world(4_000, seed=3, signal_free=True)


@pytest.fixture(scope="module")
def managed() -> SyntheticWorld:
    """Enough teams (7) for several managers to type weights."""
    return generate_world(20_000, seed=1)


# --- a young org ----------------------------------------------------------------------------


def test_a_young_org_spans_its_months_and_ends_mid_quarter(young: SyntheticWorld) -> None:
    created = young.tables["opportunities"]["created_at"]
    assert created.min() >= END - pd.DateOffset(months=9)
    assert created.min() <= END - pd.DateOffset(months=9) + pd.Timedelta(days=14)
    assert created.max() >= END - pd.Timedelta(days=7)  # deals created over the whole span
    months = created.dt.tz_localize(None).dt.to_period("M")
    assert months.nunique() >= 9
    assert young.tables["opportunity_history"]["changed_at"].max() <= END
    assert young.end == END  # 2026-11-15: 45 days into Q4


def test_a_young_org_resolves_enough_deals_to_learn_from(young: SyntheticWorld) -> None:
    opportunities = young.tables["opportunities"]
    won = int(opportunities["is_won"].sum())
    lost = int((opportunities["is_closed"] & ~opportunities["is_won"]).sum())
    assert won >= 90
    assert lost >= 90
    assert 0.05 <= float((~opportunities["is_closed"]).mean()) <= 0.45  # deals still in flight
    assert 5 <= young.tables["owners"]["owner_id"].nunique() <= 10  # a small team's book


def test_a_young_org_has_quotas_for_its_quarters_only(young: SyntheticWorld) -> None:
    periods = set(young.tables["quotas"]["period"])
    assert periods == {"2026-Q1", "2026-Q2", "2026-Q3", "2026-Q4"}


def test_span_must_be_positive() -> None:
    with pytest.raises(ValueError, match="months"):
        generate_world(100, months=0)


# --- a signal-free world --------------------------------------------------------------------


def test_signal_free_odds_are_the_same_for_every_deal(signal_free: SyntheticWorld) -> None:
    truth = signal_free.ground_truth
    assert truth["probability"].nunique() == 1
    drivers = [c for c in truth.columns if c.startswith("driver_") and c != "driver_intercept"]
    assert (truth[drivers] == 0.0).all().all()


def test_signal_free_behaviour_does_not_follow_the_outcome(signal_free: SyntheticWorld) -> None:
    opportunities = signal_free.tables["opportunities"]
    closed = opportunities[opportunities["is_closed"]]
    history = signal_free.tables["opportunity_history"]
    close_time = history.groupby("opportunity_id")["changed_at"].max()
    days = (
        close_time.reindex(closed["opportunity_id"]).to_numpy() - closed["created_at"].to_numpy()
    ) / pd.Timedelta(days=1)
    won = closed["is_won"].to_numpy()
    assert np.median(days[won]) == pytest.approx(np.median(days[~won]), rel=0.15)
    counts = signal_free.tables["activities"].groupby("opportunity_id").size()
    per_deal = counts.reindex(closed["opportunity_id"]).fillna(0).to_numpy()
    assert per_deal[won].mean() / per_deal[~won].mean() == pytest.approx(1.0, abs=0.15)
    # Win rates by lead source stay within noise of the overall rate.
    by_source = closed.groupby("lead_source")["is_won"].agg(["mean", "size"])
    overall = won.mean()
    noise = np.sqrt(overall * (1 - overall) / by_source["size"])
    assert ((by_source["mean"] - overall).abs() <= 3.5 * noise).all()


def test_signal_free_world_still_walks_the_stages(signal_free: SyntheticWorld) -> None:
    opportunities = signal_free.tables["opportunities"]
    assert 0.2 <= opportunities.loc[opportunities["is_closed"], "is_won"].mean() <= 0.35
    history = signal_free.tables["opportunity_history"]
    assert set(history["stage"]) == set(signal_free.stages.all_stages)


# --- manager weights ------------------------------------------------------------------------


def _typed(world: SyntheticWorld) -> pd.DataFrame:
    history = world.tables["opportunity_history"]
    owners = world.tables["owners"].set_index("owner_id")
    owner = history["opportunity_id"].map(
        world.tables["opportunities"].set_index("opportunity_id")["owner_id"]
    )
    return history.assign(team=owner.map(owners["team"]).to_numpy())


def test_some_teams_managers_type_probabilities_and_others_do_not(
    managed: SyntheticWorld,
) -> None:
    history = _typed(managed)
    typed_share = history["manual_probability"].notna().groupby(history["team"]).mean()
    assert set(typed_share.round(6)) <= {0.0, 1.0}  # a team's manager types on every row
    assert 2 <= int((typed_share == 1.0).sum()) < len(typed_share)
    values = history["manual_probability"].dropna()
    assert values.between(0, 100).all()
    assert (values % 5 == 0).all()  # typed by people, in steps of five
    stage = history.loc[values.index, "stage"]
    assert (values[stage == "Closed Won"] == 100).all()
    assert (values[stage == "Closed Lost"] == 0).all()


def test_manager_weights_rise_with_stage_and_carry_each_managers_bias(
    managed: SyntheticWorld,
) -> None:
    history = _typed(managed).dropna(subset=["manual_probability"])
    open_rows = history[history["stage"].isin(managed.stages.open_stages)]
    by_stage = open_rows.groupby("stage")["manual_probability"].mean()
    ordered = [by_stage[s] for s in managed.stages.open_stages]
    assert ordered[-1] - ordered[0] >= 30
    assert (open_rows["manual_probability"] != open_rows["probability"]).mean() >= 0.5
    # The same stage, judged differently by different managers.
    per_team = open_rows[open_rows["stage"] == "Proposal"].groupby("team")["manual_probability"]
    assert per_team.mean().max() - per_team.mean().min() >= 5
