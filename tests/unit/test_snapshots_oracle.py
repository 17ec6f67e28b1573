"""The vectorised snapshot pipeline against a slow, obviously correct row-by-row oracle.

Histories are hand-made and random: rows in shuffled file order, naive and offset
timestamps, rows stamped exactly at a grid time, deals without activity, reopened deals.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.loading import CrmExport, load_export
from features.snapshots import FeaturePlan, build_snapshots
from features.stages import salesforce_standard
from tests.conftest import write_tables

STAGES = salesforce_standard()
OPEN = list(STAGES.open_stages)
BASE = pd.Timestamp("2025-01-01", tz="UTC")


def _stamp(when: pd.Timestamp, rng: np.random.Generator) -> str:
    """The same instant written naive (UTC), with Z, or with a +02:00 / -05:00 offset."""
    style = rng.integers(4)
    if style == 0:
        return when.tz_convert(None).isoformat()
    if style == 1:
        return when.strftime("%Y-%m-%dT%H:%M:%SZ")
    offset = "+02:00" if style == 2 else "-05:00"
    return when.tz_convert(pd.Timestamp(0, tz=offset).tz).isoformat()


def random_export(seed: int, n_deals: int = 12) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    opportunities, history, activities = [], [], []
    for d in range(n_deals):
        opportunity_id = f"D{seed}-{d}"
        # Some deals are created exactly on a grid time (midnight of a quarter week).
        created = BASE + pd.Timedelta(days=int(rng.integers(0, 200)))
        if rng.random() < 0.7:
            created += pd.Timedelta(minutes=int(rng.integers(1, 1440)))
        opportunities.append(
            {
                "opportunity_id": opportunity_id,
                "account_id": f"A{rng.integers(4)}",
                "owner_id": f"U{rng.integers(3)}",
                "created_at": _stamp(created, rng),
                "type": rng.choice(["New Business", "Renewal"]),
            }
        )
        when, stage, amount = created, int(rng.integers(0, 3)), float(rng.integers(1, 50) * 1000)
        close = (created + pd.Timedelta(days=int(rng.integers(20, 120)))).normalize()
        category = "Pipeline"
        rows = [(when, OPEN[stage], amount, close, category)]
        for _ in range(int(rng.integers(0, 7))):
            when = when + pd.Timedelta(
                days=int(rng.integers(0, 30)), hours=int(rng.integers(1, 30))
            )
            move = rng.random()
            if move < 0.35:
                stage = int(np.clip(stage + rng.choice([-1, 1, 2, 3]), 0, len(OPEN) - 1))
            elif move < 0.55:
                close = close + pd.Timedelta(days=int(rng.integers(-10, 40)))
            elif move < 0.75:
                amount = float(amount * rng.choice([0.5, 0.8, 1.2]))
            else:
                category = str(rng.choice(["Pipeline", "Best Case", "Commit"]))
            rows.append((when, OPEN[stage], amount, close, category))
        ending = rng.random()
        if ending < 0.7:
            when = when + pd.Timedelta(days=int(rng.integers(1, 40)))
            won = ending < 0.35
            rows.append(
                (
                    when,
                    "Closed Won" if won else "Closed Lost",
                    amount,
                    when.normalize(),
                    "Closed" if won else "Omitted",
                )
            )
            if rng.random() < 0.15:  # reopened, then lost
                rows.append((when + pd.Timedelta(days=5), OPEN[0], amount, close, "Pipeline"))
                rows.append(
                    (
                        when + pd.Timedelta(days=25),
                        "Closed Lost",
                        amount,
                        (when + pd.Timedelta(days=25)).normalize(),
                        "Omitted",
                    )
                )
        for changed_at, stage_name, amt, close_date, cat in rows:
            history.append(
                {
                    "opportunity_id": opportunity_id,
                    "changed_at": _stamp(changed_at, rng),
                    "stage": stage_name,
                    "amount": amt,
                    "close_date": close_date.strftime("%Y-%m-%d"),
                    "forecast_category": cat,
                }
            )
        if rng.random() < 0.8:  # some deals have no activity at all
            for _ in range(int(rng.integers(1, 12))):
                at = created + pd.Timedelta(hours=int(rng.integers(0, 24 * 150)))
                activities.append(
                    {
                        "opportunity_id": opportunity_id,
                        "occurred_at": _stamp(at, rng),
                        "type": str(rng.choice(["call", "email", "meeting", "Webinar"])),
                        "contact_role": rng.choice(["decision_maker", "user", None]),
                    }
                )
    history_frame = pd.DataFrame(history).sample(frac=1.0, random_state=seed)  # out of order
    return {
        "opportunities": pd.DataFrame(opportunities),
        "opportunity_history": history_frame,
        "activities": pd.DataFrame(activities).sample(frac=1.0, random_state=seed + 1),
    }


# ----------------------------------------------------------------------------- the oracle
def oracle(export: CrmExport, opportunity_id: str, t: pd.Timestamp, prior: float) -> dict:
    """Row by row, as a person would: filter to rows <= t, walk them in time order."""
    history = export.history[export.history["opportunity_id"] == opportunity_id]
    rows = [r for r in history.sort_values("changed_at").itertuples() if r.changed_at <= t]
    state = rows[-1]
    entered = state.changed_at
    for r in reversed(rows):
        if r.stage != state.stage:
            break
        entered = r.changed_at
    pushes = 0
    for a, b in itertools.pairwise(rows):
        if a.stage in OPEN and b.stage in OPEN and b.close_date > a.close_date:
            pushes += 1
    acts = export.activities[
        (export.activities["opportunity_id"] == opportunity_id)
        & (export.activities["occurred_at"] <= t)
    ]
    in_30 = acts[acts["occurred_at"] > t - pd.Timedelta(days=30)]
    # Other deals closed strictly before t, by their rows stamped before t.
    closed = won = owner_closed = owner_won = 0
    owner = export.opportunities.set_index("opportunity_id").loc[opportunity_id, "owner_id"]
    for other, rows_other in export.history.groupby("opportunity_id"):
        before = rows_other[rows_other["changed_at"] < t].sort_values("changed_at")
        if before.empty or before["stage"].iloc[-1] in OPEN:
            continue
        is_won = before["stage"].iloc[-1] == "Closed Won"
        closed += 1
        won += is_won
        if export.opportunities.set_index("opportunity_id").loc[other, "owner_id"] == owner:
            owner_closed += 1
            owner_won += is_won
    overall = won / closed if closed else np.nan
    return {
        "stage": state.stage,
        "amount": state.amount,
        "days_in_stage": (t - entered) / pd.Timedelta(days=1),
        "days_to_close": (state.close_date - t) / pd.Timedelta(days=1),
        "close_date_pushes": pushes,
        "forecast_category": state.forecast_category,
        "activities_30d": len(in_30),
        "activities_other_30d": int(
            (~in_30["type"].isin(["call", "email", "meeting", "demo", "proposal"])).sum()
        ),
        "days_since_last_activity": (
            (t - acts["occurred_at"].max()) / pd.Timedelta(days=1) if len(acts) else np.nan
        ),
        "decision_maker_contacts": int((acts["contact_role"] == "decision_maker").sum()),
        "owner_closed_deals": owner_closed,
        "owner_win_rate": (owner_won + prior * overall) / (owner_closed + prior),
    }


def oracle_open_deals(export: CrmExport, t: pd.Timestamp) -> set[str]:
    out = set()
    for opportunity_id, rows in export.history.groupby("opportunity_id"):
        upto = rows[rows["changed_at"] <= t].sort_values("changed_at")
        if len(upto) and upto["stage"].iloc[-1] in OPEN:
            out.add(str(opportunity_id))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_pipeline_matches_the_row_by_row_oracle(tmp_path: Path, seed: int) -> None:
    export = load_export(write_tables(tmp_path / f"w{seed}", random_export(seed)))
    plan = FeaturePlan.from_export(export)
    snapshots = build_snapshots(export, plan=plan)
    assert len(snapshots) > 20
    for t, at_t in snapshots.groupby("as_of"):
        assert set(at_t["opportunity_id"]) == oracle_open_deals(export, t)
    for row in snapshots.itertuples(index=False):
        expected = oracle(export, row.opportunity_id, row.as_of, plan.config.owner_prior_strength)
        for name, value in expected.items():
            got = getattr(row, name)
            if isinstance(value, str) or value is None:
                assert got == value, (name, row.opportunity_id, row.as_of)
            else:
                np.testing.assert_allclose(
                    got,
                    value,
                    rtol=1e-12,
                    atol=1e-9,
                    err_msg=f"{name} {row.opportunity_id} {row.as_of}",
                )


def test_a_row_stamped_exactly_at_as_of_is_seen(tmp_path: Path) -> None:
    tables = {
        "opportunities": pd.DataFrame(
            {
                "opportunity_id": ["X"],
                "account_id": ["A"],
                "owner_id": ["U"],
                "created_at": ["2025-01-01T00:00:00Z"],
            }
        ),
        "opportunity_history": pd.DataFrame(
            {
                "opportunity_id": ["X", "X", "X"],
                "changed_at": [
                    "2025-01-01T00:00:00Z",
                    "2025-01-08T00:00:00Z",
                    "2025-01-08T00:00:01Z",
                ],
                "stage": ["Prospecting", "Qualification", "Needs Analysis"],
                "amount": [10.0, 10.0, 10.0],
                "close_date": ["2025-03-31"] * 3,
            }
        ),
    }
    snapshots = build_snapshots(load_export(write_tables(tmp_path / "exact", tables)))
    at = snapshots.set_index("as_of")
    # Grid times are the quarter's start (2025-01-01) plus whole weeks. The change stamped at
    # exactly 2025-01-08T00:00 is in that snapshot; the one a second later is not.
    assert at.loc[pd.Timestamp("2025-01-01", tz="UTC"), "stage"] == "Prospecting"
    assert at.loc[pd.Timestamp("2025-01-08", tz="UTC"), "stage"] == "Qualification"
    assert at.loc[pd.Timestamp("2025-01-08", tz="UTC"), "days_in_stage"] == 0.0


@pytest.mark.parametrize("seed", [5, 6])
def test_unknown_amounts_match_the_oracle(tmp_path: Path, seed: int) -> None:
    """Empty amounts, first rows included: as of t, a deal's amount is its latest amount in
    rows stamped <= t, unknown (NaN) before any; changes are measured from the first."""
    raw = random_export(seed)
    history = raw["opportunity_history"]
    rng = np.random.default_rng(seed)
    history["amount"] = history["amount"].mask(rng.random(len(history)) < 0.4)
    export = load_export(write_tables(tmp_path / f"empty{seed}", raw))
    snapshots = build_snapshots(export)
    assert snapshots["amount"].isna().any() and snapshots["amount"].notna().any()
    stamped = pd.to_datetime(history["changed_at"], utc=True, format="ISO8601")
    for row in snapshots.itertuples(index=False):
        mine = (history["opportunity_id"] == row.opportunity_id) & (stamped <= row.as_of)
        known = history.loc[mine, "amount"].iloc[np.argsort(stamped[mine].to_numpy())].dropna()
        amount = known.iloc[-1] if len(known) else np.nan
        first = known.iloc[0] if len(known) else np.nan
        change = amount / first - 1 if first > 0 else np.nan
        where = f"{row.opportunity_id} {row.as_of}"
        np.testing.assert_allclose(row.amount, amount, rtol=1e-12, err_msg=where)
        np.testing.assert_allclose(
            row.amount_change_since_creation, change, rtol=1e-12, atol=1e-12, err_msg=where
        )
