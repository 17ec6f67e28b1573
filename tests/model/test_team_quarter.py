"""The team-quarter rules of models.team_quarter, each on real parts: a generated world's
export, its deal tables, the attainment model. The issue-14 disagreements each have one
test here: the quota roll-up of a team row without a value, a rep's new business, the
coverage, and the win rate of the gap analysis. The consistency of the page, the forecast
route and /v1/attainment is tested in tests/integration/test_team_forecast.py."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import pytest

from features.deals import DealTables
from features.loading import CrmExport, build_export
from features.state import state_at
from features.synthetic import generate_world
from models.attainment import NewBusinessModel, simulate_attainment
from models.team_quarter import (
    DEAL_SIZE_PRIOR,
    WIN_RATE_PRIOR,
    NewBusiness,
    Pipeline,
    SalesRecord,
    activity_rates,
    new_business_share,
    quarter_forecast,
    rep_quotas,
    sales_records,
    team_members,
    team_quota,
    won_in_quarter,
)
from tests.conftest import small_export_tables
from training.dataset import prepare

AS_OF = pd.Timestamp("2026-08-20T12:00:00", tz="UTC")


@dataclass(frozen=True)
class World:
    tables: dict[str, pd.DataFrame]
    export: CrmExport
    deals: DealTables
    team: str
    reps: list[str]


def _world(tables: dict[str, pd.DataFrame], stages: object) -> World:
    export = build_export(tables, stages=stages)  # type: ignore[arg-type]
    owners = export.owners
    team = sorted(owners["team"].astype(str).unique())[0]
    reps = sorted(owners.loc[owners["team"].astype(str) == team, "owner_id"].astype(str))
    return World(tables, export, DealTables.from_export(export), team, reps)


@pytest.fixture(scope="module")
def world() -> World:
    generated = generate_world(n_opportunities=1500, seed=5)
    return _world(generated.tables, generated.stages)


def _with_late_deal(world: World, *, closes: pd.Timestamp) -> World:
    """The world plus one large won deal of the team's first rep, created before AS_OF and
    won at `closes`, with meetings, calls and proposals logged just before it closed."""
    tables = {name: frame.copy() for name, frame in world.tables.items()}
    rep = world.reps[0]
    created = AS_OF - pd.Timedelta(days=60)
    opportunity = (
        tables["opportunities"]
        .iloc[[0]]
        .assign(opportunity_id="LATE-1", owner_id=rep, created_at=created.isoformat())
    )
    first = tables["opportunity_history"].iloc[[0]]
    history = pd.concat(
        [
            first.assign(
                opportunity_id="LATE-1",
                changed_at=created.isoformat(),
                stage="Prospecting",
                amount=9e6,
                close_date=closes.strftime("%Y-%m-%d"),
            ),
            first.assign(
                opportunity_id="LATE-1",
                changed_at=closes.isoformat(),
                stage="Closed Won",
                amount=9e6,
                close_date=closes.strftime("%Y-%m-%d"),
            ),
        ]
    )
    activity = tables["activities"].iloc[[0, 0, 0]]
    activity = activity.assign(
        opportunity_id="LATE-1",
        occurred_at=(closes - pd.Timedelta(hours=1)).isoformat(),
        type=["meeting", "call", "proposal"],
    )
    tables["opportunities"] = pd.concat([tables["opportunities"], opportunity], ignore_index=True)
    tables["opportunity_history"] = pd.concat(
        [tables["opportunity_history"], history], ignore_index=True
    )
    tables["activities"] = pd.concat([tables["activities"], activity], ignore_index=True)
    return _world(tables, world.export.stages)


# --------------------------------------------------------------------------- quotas


def test_a_team_quota_row_without_a_value_falls_back_to_the_reps_sum() -> None:
    quotas = pd.DataFrame(
        {
            "period": ["2026-Q3", "2026-Q3", "2026-Q3", "2026-Q3", "2026-Q4"],
            "team": ["East", None, None, None, "East"],
            "owner_id": [None, "U1", "U2", "U3", None],
            "quota": [np.nan, 5000.0, 4000.0, np.nan, 7000.0],
        }
    )
    assert team_quota(quotas, team="East", owners=["U1", "U2", "U3"], period="2026-Q3") == 9000.0
    assert rep_quotas(quotas, owners=["U1", "U2", "U3"], period="2026-Q3") == {
        "U1": 5000.0,
        "U2": 4000.0,
    }
    # A team row with a value wins over the reps'; neither gives no quota.
    assert team_quota(quotas, team="East", owners=["U1"], period="2026-Q4") == 7000.0
    assert np.isnan(team_quota(quotas, team="West", owners=["U9"], period="2026-Q3"))


def test_the_backtest_rolls_quotas_up_by_the_same_rule() -> None:
    from training.backtest import quota_by_team

    data = prepare(build_export(small_export_tables()))
    # A quota without a value does not pass validation; a table that has one (built in
    # memory, or by an importer) still gets the one rule.
    quotas = pd.DataFrame(
        {
            "period": ["2026-Q1", "2026-Q1", "2026-Q1"],
            "team": ["East", None, None],
            "owner_id": [None, "U1", "U2"],
            "quota": [np.nan, 5000.0, 4000.0],
        }
    )
    data = replace(data, export=replace(data.export, quotas=quotas))
    rolled = quota_by_team(data, "2026-Q1")
    # East's own row states no quota: its rep U1's 5,000 (once 0 in the backtest).
    assert rolled["East"] == 5000.0
    assert rolled["West"] == 4000.0


# --------------------------------------------------------------------------- won to date


def test_won_to_date_is_read_from_the_states_at_as_of(world: World) -> None:
    history = world.export.history
    start = pd.Timestamp("2026-07-01", tz="UTC")
    won = won_in_quarter(
        state_at(history, AS_OF), won_stages=world.export.stages.won_stages, start=start, when=AS_OF
    )
    # The oracle: row by row, each deal's last row at or before AS_OF.
    expected = {}
    for deal, rows in history.groupby("opportunity_id"):
        seen = rows[rows["changed_at"] <= AS_OF]
        last = seen.iloc[-1] if len(seen) else None
        if last is not None and last["stage"] in world.export.stages.won_stages:
            expected[str(deal)] = float(last["amount"]) if last["changed_at"] >= start else None
    expected = {k: v for k, v in expected.items() if v is not None}
    assert won.to_dict() == pytest.approx(expected)
    assert len(expected) > 0


# --------------------------------------------------------------------------- records


def test_records_are_point_in_time(world: World) -> None:
    before = sales_records(world.deals, when=AS_OF, team=world.team, owners=world.reps)
    late = _with_late_deal(world, closes=AS_OF + pd.Timedelta(days=3))
    after = sales_records(late.deals, when=AS_OF, team=world.team, owners=world.reps)
    assert after == before
    early = _with_late_deal(world, closes=AS_OF - pd.Timedelta(days=3))
    changed = sales_records(early.deals, when=AS_OF, team=world.team, owners=world.reps)
    rep = world.reps[0]
    assert changed.reps[rep].won_deals == before.reps[rep].won_deals + 1
    assert changed.team.won_amount == pytest.approx(before.team.won_amount + 9e6)


def test_a_reps_record_is_shrunk_toward_its_team(world: World) -> None:
    records = sales_records(world.deals, when=AS_OF, team=world.team, owners=world.reps)
    team = records.team
    assert team.closed_deals > 50 and team.win_rate is not None
    assert team.win_rate == pytest.approx(team.won_deals / team.closed_deals)
    assert team.average_deal_size == pytest.approx(team.won_amount / team.won_deals)
    assert sum(r.closed_deals for r in records.reps.values()) == team.closed_deals
    for rep in records.reps.values():
        assert rep.win_rate == pytest.approx(
            (rep.won_deals + WIN_RATE_PRIOR * team.win_rate) / (rep.closed_deals + WIN_RATE_PRIOR)
        )
        assert rep.average_deal_size == pytest.approx(
            (rep.won_amount + DEAL_SIZE_PRIOR * team.average_deal_size)
            / (rep.won_deals + DEAL_SIZE_PRIOR)
        )
    # A rep with nothing closed reads the team's record.
    nobody = sales_records(world.deals, when=AS_OF, team=world.team, owners=["NEW-REP"])
    assert nobody.reps["NEW-REP"].win_rate == pytest.approx(team.win_rate)


def test_process_targets_are_point_in_time_and_counted_per_won_deal(world: World) -> None:
    team, reps = activity_rates(world.export, when=AS_OF, team_owners=world.reps, owners=world.reps)
    assert all(team[kind] is not None and team[kind] > 0 for kind in ("meeting", "call"))
    late = _with_late_deal(world, closes=AS_OF + pd.Timedelta(days=3))
    assert activity_rates(late.export, when=AS_OF, team_owners=world.reps, owners=world.reps) == (
        team,
        reps,
    )
    early = _with_late_deal(world, closes=AS_OF - pd.Timedelta(days=3))
    moved, _ = activity_rates(early.export, when=AS_OF, team_owners=world.reps, owners=world.reps)
    assert moved != team


# --------------------------------------------------------------------------- new business


def _new_business(world: World) -> NewBusinessModel:
    from training.dataset import deal_outcomes

    deals = deal_outcomes(world.export)
    closed = deals[deals["close_time"].notna()]
    return NewBusinessModel.fit(
        closed[["team", "created_at", "close_time", "won", "amount"]], as_of=AS_OF
    )


def test_a_rep_gets_its_share_of_the_teams_new_business(world: World) -> None:
    model = _new_business(world)
    members = team_members(world.deals, world.team, world.reps)
    shares = {
        rep: new_business_share(world.deals, when=AS_OF, owner_id=rep, members=members)
        for rep in world.reps
    }
    assert sum(shares.values()) == pytest.approx(1.0)
    assert all(0 <= s < 1 for s in shares.values())
    team = NewBusiness(model, world.team, 42.0)
    whole = team.part()
    expected = whole[0].expected(world.team, 42.0)
    assert expected > 0
    parts = [NewBusiness(model, world.team, 42.0, share).part() for share in shares.values()]
    assert sum(m.expected(t, d) for m, t, d in parts) == pytest.approx(expected)
    # The API once gave a single rep the whole team's new business: a rep's quarter with
    # its share is less likely to reach a quota than one with the team's.
    rep_share = max(shares.values())
    assert rep_share > 0
    empty = Pipeline(*(np.array([]) for _ in range(4)), closes_in_period=np.array([], bool))
    own = quarter_forecast(
        quota=expected,
        won_to_date=0.0,
        pipeline=empty,
        new_business=NewBusiness(model, world.team, 42.0, rep_share),
        dependence=0.0,
    )
    whole_team = quarter_forecast(
        quota=expected, won_to_date=0.0, pipeline=empty, new_business=team, dependence=0.0
    )
    assert own.new_business == pytest.approx(rep_share * expected)
    assert own.expected_revenue == pytest.approx(rep_share * whole_team.expected_revenue)
    assert own.result.p_attain < whole_team.result.p_attain


# --------------------------------------------------------------------------- coverage and gap


def test_coverage_counts_the_pipeline_closing_this_quarter() -> None:
    p = np.array([0.5, 0.5, 0.5])
    amounts = np.array([10_000.0, 20_000.0, 30_000.0])
    result = simulate_attainment(
        quota=50_000.0,
        won_to_date=40_000.0,
        probabilities=p,
        amounts=amounts,
        closes_in_period=np.array([True, False, True]),
    )
    assert result.open_pipeline == 60_000.0
    assert result.pipeline_in_period == 40_000.0
    assert result.coverage == pytest.approx(4.0)  # not 6.0: 20,000 closes after the quarter
    assert "pipeline closing this quarter, 40,000, is 4.0x" in result.status_reason


def test_the_gap_uses_the_own_win_rate_and_deal_size() -> None:
    pipeline = Pipeline(
        probabilities=np.array([0.02, 0.03]),
        probability_low=np.array([0.01, 0.02]),
        probability_high=np.array([0.03, 0.04]),
        amounts=np.array([50_000.0, 70_000.0]),
        closes_in_period=np.array([True, False]),
    )
    record = SalesRecord(
        closed_deals=40,
        won_deals=10,
        won_amount=200_000.0,
        win_rate=0.25,
        average_deal_size=20_000.0,
    )
    figures = quarter_forecast(
        quota=100_000.0,
        won_to_date=20_000.0,
        pipeline=pipeline,
        new_business=None,
        dependence=0.0,
        record=record,
        process_rates={"meeting": 6.0, "call": 10.0, "proposal": None},
    )
    gap = figures.gap
    assert gap is not None
    assert gap.remaining_quota == 80_000.0
    assert gap.win_rate == 0.25  # not the pipeline's weighted 2.6%
    assert gap.won_deals_needed == pytest.approx(4.0)
    assert gap.deals_needed == pytest.approx(16.0)
    assert gap.pipeline_needed == pytest.approx(320_000.0)
    assert gap.still_needed == pytest.approx(270_000.0)
    assert gap.coverage == pytest.approx(50_000.0 / 80_000.0)
    assert gap.coverage_status == "below"
    needed = {t.activity: t.needed for t in gap.process}
    assert needed == {"meeting": pytest.approx(24.0), "call": pytest.approx(40.0), "proposal": None}
    assert "at a 25% win rate" in figures.result.status_reason
    # Without a quota: the distribution, no P(attain), no gap.
    free = quarter_forecast(
        quota=float("nan"),
        won_to_date=20_000.0,
        pipeline=pipeline,
        new_business=None,
        dependence=0.0,
    )
    assert free.attainment is None and free.gap is None and free.quota is None
    assert free.result.p10 <= free.result.p90
