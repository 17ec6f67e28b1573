"""Rep commit reliability (features.reliability): which deals count and when, the shrinkage
arithmetic, a live deal through a request payload, the driver sentence and the rep table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.deals import DealTables
from features.loading import CrmExport, build_export
from features.payload import deal_tables_from_payloads, deals_as_payloads
from features.reference import OutcomeReference
from features.reliability import COMMIT_PRIOR_STRENGTH, shrunk
from features.snapshots import FeaturePlan, compute_features
from features.timestamps import to_ns
from models.factors import describe

K = COMMIT_PRIOR_STRENGTH
START = pd.Timestamp("2026-01-05", tz="UTC")
# (stage, forecast category) walks of closed deals, each row a day apart.
WON_COMMIT = [
    ("Qualification", "Pipeline"),
    ("Negotiation/Review", "Commit"),
    ("Closed Won", "Closed"),
]
LOST_COMMIT = [
    ("Qualification", "Pipeline"),
    ("Negotiation/Review", "Commit"),
    ("Closed Lost", "Omitted"),
]
# Called Commit, then downgraded before it was lost: still a Commit call that missed.
LOST_DOWNGRADED = [
    ("Qualification", "Commit"),
    ("Qualification", "Pipeline"),
    ("Closed Lost", "Omitted"),
]
WON_BEST_CASE = [("Qualification", "Best Case"), ("Closed Won", "Closed")]  # never Commit
OPEN = [("Qualification", "Pipeline")]


def export_of(
    deals: list[tuple[str, str, list[tuple[str, str]], pd.Timestamp]],
    owners: dict[str, str],
) -> CrmExport:
    """deals: (id, owner, walk, time of the first row); owners: owner -> team."""
    opportunities, history = [], []
    for opportunity_id, owner, walk, first in deals:
        opportunities.append(
            {
                "opportunity_id": opportunity_id,
                "account_id": f"A-{opportunity_id}",
                "owner_id": owner,
                "created_at": first.isoformat(),
            }
        )
        for k, (stage, category) in enumerate(walk):
            history.append(
                {
                    "opportunity_id": opportunity_id,
                    "changed_at": (first + pd.Timedelta(days=k)).isoformat(),
                    "stage": stage,
                    "amount": 1000.0,
                    "close_date": "2026-12-31",
                    "forecast_category": category,
                }
            )
    return build_export(
        {
            "opportunities": pd.DataFrame(opportunities),
            "opportunity_history": pd.DataFrame(history),
            "owners": pd.DataFrame({"owner_id": list(owners), "team": list(owners.values())}),
        }
    )


def features_at(export: CrmExport, opportunity_id: str, as_of: pd.Timestamp) -> pd.Series:
    plan = FeaturePlan.from_export(export)
    tables = DealTables.from_export(export, plan.attributes)
    deal = int(np.flatnonzero(tables.opportunity_id == opportunity_id)[0])
    frame = compute_features(
        tables,
        np.array([deal]),
        to_ns([as_of]),
        plan=plan,
        reference=OutcomeReference(tables),
    )
    return frame.iloc[0]


def test_a_commit_deal_counts_only_once_closed_before_as_of() -> None:
    # U's one Commit deal is lost on its third row, at START + 2 days; U's team has a won
    # Commit deal of V's, closed long before.
    closes = START + pd.Timedelta(days=2)
    export = export_of(
        [
            ("LOST", "U", LOST_COMMIT, START),
            ("TEAM", "V", WON_COMMIT, START - pd.Timedelta(days=30)),
            ("OPEN", "U", OPEN, START - pd.Timedelta(days=40)),
        ],
        {"U": "East", "V": "East"},
    )
    team_only = features_at(export, "OPEN", closes - pd.Timedelta(hours=1))
    assert team_only["team_commit_hit_rate"] == pytest.approx(1.0)  # the only Commit deal: won
    assert team_only["owner_commit_hit_rate"] == pytest.approx(1.0)  # no record: the team's

    # Closed at exactly as_of: other deals count by their rows strictly before as_of (the one
    # rule of features.reference, as the owner win rate), so not yet.
    at_close = features_at(export, "OPEN", closes)
    assert at_close["owner_commit_hit_rate"] == pytest.approx(1.0)

    after = features_at(export, "OPEN", closes + pd.Timedelta(microseconds=1))
    overall = 1 / 2
    team = shrunk(1, 2, overall)  # East: V's win and U's loss
    assert after["team_commit_hit_rate"] == pytest.approx(team)
    assert after["owner_commit_hit_rate"] == pytest.approx((0 + K * team) / (1 + K))
    assert after["owner_commit_hit_rate"] < at_close["owner_commit_hit_rate"]


def test_the_shrinkage_arithmetic_on_a_hand_made_team() -> None:
    later = START + pd.Timedelta(days=60)
    walks = (
        [("U", LOST_COMMIT)] * 2
        + [("U", LOST_DOWNGRADED), ("U", WON_COMMIT)]  # U: 1 of 4 Commit calls won
        + [("U", WON_BEST_CASE)] * 3  # wins U never called Commit: not in the rate
        + [("V", WON_COMMIT)] * 6  # V: 6 of 6
        + [("W", LOST_COMMIT)] * 2  # W (another team): 0 of 2
    )
    deals = [
        (f"D{k}", owner, walk, START + pd.Timedelta(days=k))
        for k, (owner, walk) in enumerate(walks)
    ]
    deals += [(f"OPEN-{owner}", owner, OPEN, START) for owner in ("U", "V", "W", "X", "Y")]
    export = export_of(deals, {"U": "East", "V": "East", "W": "West", "X": "East", "Y": "North"})
    overall = 7 / 12
    east = (7 + K * overall) / (10 + K)
    west = (0 + K * overall) / (2 + K)
    expected = {
        "U": ((1 + K * east) / (4 + K), east),
        "V": ((6 + K * east) / (6 + K), east),
        "W": ((0 + K * west) / (2 + K), west),
        "X": (east, east),  # a rep without closed Commit deals: the team's rate
        "Y": (overall, overall),  # a team without any: the overall rate
    }
    for owner, (rep, team) in expected.items():
        row = features_at(export, f"OPEN-{owner}", later)
        assert row["owner_commit_hit_rate"] == pytest.approx(rep, rel=1e-12), owner
        assert row["team_commit_hit_rate"] == pytest.approx(team, rel=1e-12), owner
    assert shrunk(1, 4, 0.5, strength=4) == pytest.approx(3 / 8)


def test_no_closed_commit_deal_anywhere_is_missing() -> None:
    export = export_of(
        [("WON", "U", WON_BEST_CASE, START), ("OPEN", "U", OPEN, START)], {"U": "East"}
    )
    row = features_at(export, "OPEN", START + pd.Timedelta(days=10))
    assert np.isnan(row["owner_commit_hit_rate"]) and np.isnan(row["team_commit_hit_rate"])


def test_a_live_deal_reads_the_training_reference_and_its_owner_rows_team() -> None:
    export = export_of(
        [
            ("D1", "U", LOST_COMMIT, START),
            ("D2", "V", WON_COMMIT, START),
            ("D3", "W", WON_COMMIT, START),
            ("OPEN", "U", OPEN, START),
        ],
        {"U": "East", "V": "East", "W": "West"},
    )
    plan = FeaturePlan.from_export(export)
    reference = OutcomeReference(DealTables.from_export(export, plan.attributes))
    tables = {
        "opportunities": export.opportunities,
        "opportunity_history": export.history,
        "owners": export.owners,
    }
    payloads = deals_as_payloads(tables, ["OPEN"])
    new_rep = {**payloads[0], "opportunity_id": "NEW", "owner_id": "Z"}
    payloads += [
        {**new_rep, "owner": {"owner_id": "Z", "team": "West"}},  # a new rep of a known team
        {**new_rep, "owner_id": "Q", "owner": None},  # a new rep, no team: a team of one
    ]
    as_of = START + pd.Timedelta(days=30)
    live = compute_features(
        deal_tables_from_payloads(payloads, plan),
        np.arange(3),
        np.full(3, as_of.value),
        plan=plan,
        reference=reference,
    )
    overall = 2 / 3
    east, west = shrunk(1, 2, overall), shrunk(1, 1, overall)
    assert live["owner_commit_hit_rate"].tolist() == pytest.approx(
        [shrunk(0, 1, east), west, overall]
    )
    assert live["team_commit_hit_rate"].tolist() == pytest.approx([east, west, overall])
    assert live.iloc[0].equals(features_at(export, "OPEN", as_of))


def test_the_driver_sentence_quotes_the_team() -> None:
    plan = FeaturePlan.from_export(export_of([("OPEN", "U", OPEN, START)], {"U": "East"}))
    spec = {s.name: s for s in plan.catalog}
    rep = spec["owner_commit_hit_rate"]
    assert spec["team_commit_hit_rate"].factor == rep.factor == "rep track record"
    assert (
        describe(rep, 0.52, 0.71)
        == "the rep's Commit calls are won about 52% of the time (team 71%)"
    )
    assert describe(rep, 0.52) == "the rep's Commit calls are won about 52% of the time"
    assert "no Commit deals closed yet" in describe(rep, float("nan"), 0.71)
