"""An export's snapshots are built pass by pass (bounded memory): the passes change nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.deals import DealTables
from features.loading import build_export
from features.reference import OutcomeReference
from features.snapshots import FeaturePlan, build_snapshots, compute_features, open_deal_queries
from features.synthetic import generate_world
from features.timestamps import to_ns


def test_snapshots_built_in_passes_equal_one_pass_in_query_order() -> None:
    world = generate_world(n_opportunities=1200, seed=3)
    export = build_export(world.tables, stages=world.stages)
    plan = FeaturePlan.from_export(export)
    whole = build_snapshots(export, plan=plan, chunk_rows=10**9)
    # Passes of 997 queries, taken in time order and written back in query order.
    passes = build_snapshots(export, plan=plan, chunk_rows=997)
    assert len(whole) > 5 * 997
    pd.testing.assert_frame_equal(passes, whole)
    # Rows are the queries in order (deal by deal, then time), with the same features a
    # live request computes for them.
    tables = DealTables.from_export(export, plan.attributes)
    deals, as_of = open_deal_queries(tables, pd.DatetimeIndex(sorted(whole["as_of"].unique())))
    assert np.array_equal(to_ns(passes["as_of"]), as_of)
    assert np.array_equal(
        passes["opportunity_id"].to_numpy(dtype=object), tables.opportunity_id[deals]
    )
    direct = compute_features(tables, deals, as_of, plan=plan, reference=OutcomeReference(tables))
    pd.testing.assert_frame_equal(passes[plan.feature_names], direct)
