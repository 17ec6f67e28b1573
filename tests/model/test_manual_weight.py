"""The manual_weight baseline: the manager's typed probability as of the snapshot, point in time,
with the CRM stage weight for a deal without one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from features.deals import DealTables
from features.loading import load_export
from features.payload import deal_tables_from_payloads, deals_as_payloads
from features.snapshots import FeaturePlan, build_snapshots, manual_probability_at
from features.timestamps import to_ns
from models.baselines import (
    MANUAL_WEIGHT,
    ManualWeight,
    StageWeightCRM,
    fit_baselines,
    has_manual_probabilities,
)

# O1's rows: 2026-01-05 (Prospecting), 2026-02-05 (Negotiation/Review), 2026-03-20 (won).
TYPED = [None, 70.0, 100.0, None, None, None]


def _typed(tables: dict[str, pd.DataFrame]) -> None:
    tables["opportunity_history"]["manual_probability"] = TYPED


def _at(tables: DealTables, deal: str, when: str) -> float:
    code = int(np.flatnonzero(tables.opportunity_id == deal)[0])
    return float(manual_probability_at(tables, np.array([code]), to_ns([when]))[0])


def test_the_typed_value_is_the_one_in_force_at_the_snapshot(
    export_with: Callable[..., Path],
) -> None:
    tables = DealTables.from_export(load_export(export_with(_typed)))
    assert np.isnan(_at(tables, "O1", "2026-01-20"))  # typed only from 2026-02-05
    assert _at(tables, "O1", "2026-02-05T08:00:00Z") == 70.0  # the row's own time (UTC 08:00)
    assert _at(tables, "O1", "2026-03-01") == 70.0
    assert _at(tables, "O1", "2026-03-25") == 100.0
    assert np.isnan(_at(tables, "O3", "2026-04-01"))  # never typed


def test_a_value_typed_after_the_snapshot_is_not_seen(
    export_with: Callable[..., Path], tmp_path: Path
) -> None:
    def later_typed(tables: dict[str, pd.DataFrame]) -> None:
        _typed(tables)
        history = tables["opportunity_history"]
        # O3 gets a typed value on a row after every snapshot below; O1's later row changes.
        extra = history.iloc[[5]].assign(changed_at="2026-03-30", manual_probability=95.0)
        history.loc[2, "manual_probability"] = 5.0
        tables["opportunity_history"] = pd.concat([history, extra], ignore_index=True)

    before = load_export(export_with(_typed))
    plan = FeaturePlan.from_export(before)
    end = pd.Timestamp("2026-03-16", tz="UTC")
    seen = build_snapshots(before, plan=plan, end=end)
    after = build_snapshots(load_export(export_with(later_typed)), plan=plan, end=end)
    pd.testing.assert_frame_equal(seen, after)
    o1 = seen[seen["opportunity_id"] == "O1"].set_index("as_of")["manual_probability"]
    assert np.isnan(o1[o1.index < "2026-02-05"]).all()
    assert (o1[o1.index >= "2026-02-06"] == 70.0).all() and len(o1[o1.index >= "2026-02-06"])
    assert seen.loc[seen["opportunity_id"] == "O3", "manual_probability"].isna().all()


def test_the_api_path_carries_the_typed_value(export_with: Callable[..., Path]) -> None:
    export = load_export(export_with(_typed))
    plan = FeaturePlan.from_export(export)
    tables = {
        "opportunities": export.opportunities,
        "opportunity_history": export.history,
        "activities": export.activities,
    }
    live = deal_tables_from_payloads(deals_as_payloads(tables, ["O1"]), plan)
    assert _at(live, "O1", "2026-03-01") == 70.0
    assert np.isnan(_at(live, "O1", "2026-01-20"))


def _frame(typed: list[float], stage_probability: list[float], in_quarter: list[bool]) -> dict:
    return {
        "stage": np.array(["Proposal"] * len(typed), dtype=object),
        "forecast_category": np.array(["Pipeline"] * len(typed), dtype=object),
        "stage_probability": np.array(stage_probability, dtype=np.float64),
        "close_date_in_quarter": np.array(in_quarter, dtype=np.float64),
        "manual_probability": np.array(typed, dtype=np.float64),
    }


def test_manual_weight_reads_the_typed_value_and_falls_back_to_the_stage_weight() -> None:
    train = _frame([np.nan] * 4, [40.0] * 4, [True] * 4)
    outcome = np.array([1.0, 0.0, 1.0, 0.0])
    frame = _frame([80.0, np.nan, 15.0], [40.0, 40.0, 40.0], [True, True, False])
    won = ManualWeight("won").fit(train, outcome)
    crm = StageWeightCRM("won").fit(train, outcome)
    np.testing.assert_allclose(won.predict_proba(frame), [0.8, 0.4, 0.15])
    assert won.predict_proba(frame)[1] == crm.predict_proba(frame)[1]
    in_period = ManualWeight("won_in_period").fit(train, outcome)
    np.testing.assert_allclose(in_period.predict_proba(frame), [0.8, 0.4, 0.0])
    # The period forecast: typed probability x amount over deals closing in the period.
    np.testing.assert_allclose(in_period.period_weights(frame), [0.8, 0.4, 0.0])


def test_a_frame_without_typed_values_is_the_stage_weight_and_says_so() -> None:
    train = _frame([np.nan] * 2, [40.0, 40.0], [True, True])
    frame = {k: v for k, v in _frame([np.nan], [25.0], [True]).items() if k != "manual_probability"}
    baselines = fit_baselines(train, np.array([1.0, 0.0]), target="won")
    assert baselines[MANUAL_WEIGHT].predict_proba(frame)[0] == 0.25
    assert not has_manual_probabilities(frame)
    assert has_manual_probabilities(_frame([np.nan, 30.0], [25.0, 25.0], [True, True]))
