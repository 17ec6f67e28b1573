"""Point-in-time correctness, proved by perturbing the future of a generated world.

Changing, adding and deleting rows stamped after t, in every table with a time, must leave
every feature of every snapshot at t unchanged; aggregates over other deals must not count a
deal that closed after t. And a deal sent as a request payload gets exactly the features the
snapshot pipeline gave it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from features.deals import DealTables
from features.fiscal import snapshot_grid
from features.loading import CrmExport, build_export, load_export
from features.payload import deal_tables_from_payloads, deals_as_payloads
from features.reference import Context, OutcomeReference
from features.snapshots import FeaturePlan, build_snapshots, compute_features
from features.synthetic import generate_world, write_world
from features.timestamps import to_ns


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> CrmExport:
    out = tmp_path_factory.mktemp("world")
    write_world(generate_world(n_opportunities=1500, seed=11), out)
    return load_export(out)


def grid_time_inside(export: CrmExport, share: float) -> pd.Timestamp:
    times = export.history["changed_at"]
    t = times.min() + (times.max() - times.min()) * share
    return snapshot_grid(t - pd.Timedelta(days=7), t)[-1]


def snapshots_at(export: CrmExport, t: pd.Timestamp, plan: FeaturePlan) -> pd.DataFrame:
    frame = build_snapshots(export, plan=plan, start=t, end=t)
    assert (frame["as_of"] == t).all()
    return frame.sort_values("opportunity_id").reset_index(drop=True)


def perturb_future(export: CrmExport, t: pd.Timestamp, seed: int) -> dict[str, pd.DataFrame]:
    """Raw tables of the export with rows after t changed, deleted and added."""
    rng = np.random.default_rng(seed)
    stages = list(export.stages.all_stages)
    later = pd.Timedelta(days=1)

    opportunities = export.opportunities.copy()
    # Delete some deals created after t, with all their rows.
    created_after = opportunities.index[opportunities["created_at"] > t]
    gone = set(
        opportunities.loc[
            rng.permutation(created_after)[: len(created_after) // 2], "opportunity_id"
        ]
    )
    opportunities = opportunities[~opportunities["opportunity_id"].isin(gone)]
    # Add new deals created after t, owned by existing reps on existing accounts.
    template = opportunities.iloc[:25].copy()
    template["opportunity_id"] = [f"NEW-{i}" for i in range(len(template))]
    template["created_at"] = t + later * rng.integers(1, 60, len(template))
    opportunities = pd.concat([opportunities, template], ignore_index=True)

    history = export.history[~export.history["opportunity_id"].isin(gone)].copy()
    future = history["changed_at"] > t
    # Change future rows: stage, amount and close date.
    change = future & (rng.random(len(history)) < 0.5)
    history.loc[change, "stage"] = rng.choice(stages, change.sum())
    history.loc[change, "amount"] = history.loc[change, "amount"] * rng.uniform(
        0.1, 3, change.sum()
    )
    history.loc[change, "close_date"] = history.loc[change, "close_date"] + pd.Timedelta(days=40)
    # Delete some future rows (a deal keeps its first row: the contract needs one).
    first = history["changed_at"] == history.groupby("opportunity_id")["changed_at"].transform(
        "min"
    )
    history = history[~(future & ~first & (rng.random(len(history)) < 0.3))]
    # Add rows after t to deals that were open, closed or unborn at t: reopenings included.
    some = rng.choice(export.opportunities["opportunity_id"].to_numpy(), 300)
    some = [s for s in some if s not in gone]
    added = history.drop_duplicates("opportunity_id").set_index("opportunity_id").loc[some]
    added = added.reset_index()
    created = added["opportunity_id"].map(opportunities.set_index("opportunity_id")["created_at"])
    added["changed_at"] = np.maximum(t + pd.Timedelta(hours=1), created) + pd.to_timedelta(
        rng.integers(1, 10**7, len(added)), unit="s"
    )
    added["stage"] = rng.choice(stages, len(added))
    new_rows = template[["opportunity_id"]].assign(
        changed_at=template["created_at"],
        stage=stages[0],
        amount=1000.0,
        close_date=(template["created_at"] + pd.Timedelta(days=90)).dt.normalize(),
    )
    history = pd.concat([history, added, new_rows], ignore_index=True)
    history = history.drop_duplicates(["opportunity_id", "changed_at"])

    activities = export.activities[~export.activities["opportunity_id"].isin(gone)].copy()
    future = activities["occurred_at"] > t
    activities.loc[future & (rng.random(len(activities)) < 0.5), "type"] = "meeting"
    activities = activities[~(future & (rng.random(len(activities)) < 0.3))]
    extra = activities.sample(400, random_state=seed, replace=True).copy()
    extra["occurred_at"] = (
        t + pd.Timedelta(minutes=1) + pd.to_timedelta(rng.integers(0, 10**7, len(extra)), unit="s")
    )
    extra["contact_role"] = "decision_maker"
    activities = pd.concat([activities, extra], ignore_index=True)
    # The opportunities' current-state columns no longer match the history; drop them so
    # that the export stays clean (they only ever produce warnings).
    state = ["stage", "amount", "close_date", "is_closed", "is_won", "forecast_category"]
    return {
        "opportunities": opportunities.drop(columns=[c for c in state if c in opportunities]),
        "opportunity_history": history.drop(columns=["amount_original"], errors="ignore"),
        "activities": activities,
        "accounts": export.accounts,
        "owners": export.owners,
    }


@pytest.mark.parametrize(("share", "seed"), [(0.45, 1), (0.7, 2), (0.9, 3)])
def test_changing_the_future_changes_no_feature(world: CrmExport, share: float, seed: int) -> None:
    t = grid_time_inside(world, share)
    plan = FeaturePlan.from_export(world)
    before = snapshots_at(world, t, plan)
    assert len(before) > 100
    perturbed = build_export(perturb_future(world, t, seed), stages=world.stages)
    # The perturbation really changed the future.
    assert len(perturbed.history) != len(world.history)
    after = snapshots_at(perturbed, t, plan)
    pd.testing.assert_frame_equal(before, after)


@pytest.mark.parametrize(("share", "seed"), [(0.5, 4), (0.8, 5)])
def test_empty_amounts_are_repaired_from_the_past_only(
    world: CrmExport, share: float, seed: int
) -> None:
    """With a third of the amounts empty (first rows included), changing, emptying, adding
    and deleting rows after t leaves the carried-forward amounts, and every feature, at t."""
    t = grid_time_inside(world, share)
    plan = FeaturePlan.from_export(world)
    rng = np.random.default_rng(seed)
    history = world.history.drop(columns=["amount_original"], errors="ignore")
    history = history.assign(amount=history["amount"].mask(rng.random(len(history)) < 0.35))
    gappy = replace(world, history=history)
    raw = {
        "opportunities": world.opportunities,
        "opportunity_history": history,
        "activities": world.activities,
        "accounts": world.accounts,
        "owners": world.owners,
    }
    before = snapshots_at(build_export(raw, stages=world.stages), t, plan)
    assert before["amount"].isna().any()
    perturbed = perturb_future(gappy, t, seed)
    future = perturbed["opportunity_history"]
    later = (future["changed_at"] > t) & (rng.random(len(future)) < 0.3)
    perturbed["opportunity_history"] = future.assign(amount=future["amount"].mask(later))
    after = snapshots_at(build_export(perturbed, stages=world.stages), t, plan)
    pd.testing.assert_frame_equal(before, after)


def test_aggregates_never_count_a_deal_closed_after_as_of(world: CrmExport) -> None:
    t = grid_time_inside(world, 0.6)
    plan = FeaturePlan.from_export(world)
    before = snapshots_at(world, t, plan)
    # Flip the outcome of every deal that closes after t: wins become losses and back.
    history = world.history.copy()
    final = (
        history.groupby("opportunity_id")["changed_at"].transform("max") == history["changed_at"]
    )
    closes_later = (
        final & (history["changed_at"] > t) & ~history["stage"].isin(world.stages.open_stages)
    )
    won, lost = world.stages.won_stages[0], world.stages.lost_stages[0]
    history.loc[closes_later, "stage"] = np.where(
        history.loc[closes_later, "stage"] == won, lost, won
    )
    raw = {
        "opportunities": world.opportunities.drop(
            columns=["stage", "is_won", "is_closed", "forecast_category"], errors="ignore"
        ),
        "opportunity_history": history.drop(columns=["amount_original"], errors="ignore"),
        "activities": world.activities,
        "accounts": world.accounts,
        "owners": world.owners,
    }
    flipped = build_export(raw, stages=world.stages)
    after = snapshots_at(flipped, t, plan)
    for column in (
        "owner_win_rate",
        "owner_closed_deals",
        "account_won_deals",
        "account_closed_deals",
        "stage_duration_percentile",
    ):
        pd.testing.assert_series_equal(before[column], after[column])
    # ... while at a time after those closes, the same aggregates do change.
    late = grid_time_inside(world, 0.98)
    assert not snapshots_at(world, late, plan)["owner_win_rate"].equals(
        snapshots_at(flipped, late, plan)["owner_win_rate"]
    )


def test_a_request_payload_gets_the_pipelines_features(world: CrmExport) -> None:
    plan = FeaturePlan.from_export(world)
    snapshots = build_snapshots(world, plan=plan)
    reference = OutcomeReference(DealTables.from_export(world, plan.attributes))
    tables = {
        "opportunities": world.opportunities,
        "opportunity_history": world.history,
        "activities": world.activities,
        "accounts": world.accounts,
        "owners": world.owners,
    }
    picked = snapshots.sample(40, random_state=5)
    payloads = deals_as_payloads(tables, picked["opportunity_id"].tolist())
    # Each request carries the deal's whole history, future rows included: the as_of
    # rule, not the caller, keeps the future out.
    request = deal_tables_from_payloads(payloads, plan)
    live = compute_features(
        request, np.arange(len(payloads)), to_ns(picked["as_of"]), plan=plan, reference=reference
    )
    expected = picked[plan.feature_names].reset_index(drop=True)
    pd.testing.assert_frame_equal(live, expected)


def _same_context(a: Context, b: Context) -> None:
    for name in ("owner_closed", "owner_won", "account_closed", "account_won"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert (a.closed, a.won) == (b.closed, b.won)
    assert a.won_stage_days.keys() == b.won_stage_days.keys()
    for stage, days in a.won_stage_days.items():
        np.testing.assert_array_equal(days, b.won_stage_days[stage])


def test_cached_reference_contexts_equal_fresh_ones_at_any_time(world: CrmExport) -> None:
    # Contexts are cached by how many row times precede T: times on a row, a nanosecond either
    # side of it, between rows and past the last row must all read as a fresh computation.
    plan = FeaturePlan.from_export(world)
    tables = DealTables.from_export(world, plan.attributes)
    cached = OutcomeReference(tables)
    row_times = np.unique(tables.history.time)
    rng = np.random.default_rng(5)
    picks = rng.choice(row_times, 40, replace=False)
    times = [int(t) + d for t in picks for d in (-1, 0, 1)] + [int(row_times[-1]) + 10**12]
    for t in rng.permutation(times):  # out of order, so entries are hit, missed and evicted
        _same_context(cached.context_at(int(t)), OutcomeReference(tables)._compute(int(t)))
    assert len(cached._cache) <= 64
