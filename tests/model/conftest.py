"""A generated world, its snapshots and labels, and a win model trained at a cut-off.

Built once per test session: every model test reads the same real, trained LightGBM model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from features.deals import DealTables
from features.labels import TrainingSet, label_snapshots, training_set
from features.loading import CrmExport, build_export
from features.snapshots import FeaturePlan, build_snapshots
from features.synthetic import SyntheticWorld, generate_world
from features.timestamps import to_ns
from models.win import WinModel

CUTOFF = pd.Timestamp("2026-04-01", tz="UTC")
TEST_END = pd.Timestamp("2026-07-01", tz="UTC")


@dataclass
class Trained:
    world: SyntheticWorld
    export: CrmExport
    plan: FeaturePlan
    snapshots: pd.DataFrame
    truth: pd.DataFrame  # labels as known at the end of the data
    training: TrainingSet
    model: WinModel

    @property
    def test_mask(self) -> np.ndarray:
        as_of = self.snapshots["as_of"]
        return ((as_of >= CUTOFF) & (as_of < TEST_END)).to_numpy()

    @property
    def test_frame(self) -> pd.DataFrame:
        return self.snapshots[self.test_mask].reset_index(drop=True)


def train_at(
    export: CrmExport,
    plan: FeaturePlan,
    snapshots: pd.DataFrame,
    cutoff: pd.Timestamp,
    **config: object,
) -> tuple[TrainingSet, WinModel]:
    from models.win import WinModelConfig

    tables = DealTables.from_export(export, plan.attributes)
    deals = pd.Index(tables.opportunity_id).get_indexer(snapshots["opportunity_id"])
    training = training_set(snapshots, tables, deals, cutoff=cutoff, horizons=plan.config.horizons)
    return training, WinModel(plan, WinModelConfig(**config)).fit(training)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def trained() -> Trained:
    world = generate_world(n_opportunities=8000, seed=21)
    export = build_export(world.tables, stages=world.stages)
    plan = FeaturePlan.from_export(export)
    snapshots = build_snapshots(export, plan=plan)
    tables = DealTables.from_export(export, plan.attributes)
    deals = pd.Index(tables.opportunity_id).get_indexer(snapshots["opportunity_id"])
    truth = label_snapshots(
        tables, deals, to_ns(snapshots["as_of"]), known_at=export.history["changed_at"].max()
    )
    training, model = train_at(export, plan, snapshots, CUTOFF)
    return Trained(world, export, plan, snapshots, truth, training, model)
