"""Everything a backtest and a training run share: snapshots, labels known at the end of the
data, and each deal's outcome, team and amount.

Built once per export: snapshot features at t only use rows stamped <= t, so one set of
snapshots serves every cut-off; only the labels depend on the cut-off.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.config import FeatureConfig
from features.deals import DealTables
from features.labels import TrainingSet, label_snapshots, training_set
from features.loading import CrmExport
from features.snapshots import FeaturePlan, build_snapshots
from features.state import state_at
from features.timestamps import to_ns

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedData:
    export: CrmExport
    plan: FeaturePlan
    tables: DealTables
    snapshots: pd.DataFrame  # opportunity_id, as_of, features
    deal_codes: np.ndarray  # per snapshot, into tables
    truth: pd.DataFrame  # labels of every snapshot as known at the end of the data
    # Per deal: opportunity_id, team, owner_id, created_at, close_time, won, amount.
    deals: pd.DataFrame
    # When the data was taken: the export's last change, or the cut-off it was cut at (a
    # quarter is complete when it ended by then, and labels are as known then).
    data_end: pd.Timestamp

    @property
    def data_start(self) -> pd.Timestamp:
        return pd.Timestamp(self.export.history["changed_at"].min())

    def training_at(self, cutoff: pd.Timestamp) -> TrainingSet:
        """The snapshots a model trained at `cutoff` may use, labelled and weighted as known
        then (features.labels)."""
        return training_set(
            self.snapshots,
            self.tables,
            self.deal_codes,
            cutoff=cutoff,
            horizons=self.plan.config.horizons,
        )

    def resolved_deals(self, before: pd.Timestamp) -> tuple[int, int]:
        """(won, lost) deals closed by `before`: what a model trained then can learn from."""
        closed = self.deals["close_time"] <= before
        won = int((closed & self.deals["won"]).sum())
        return won, int(closed.sum()) - won


def deal_outcomes(export: CrmExport) -> pd.DataFrame:
    """Each deal's final state: closed or not, won or not, when, for how much, whose team."""
    last = state_at(export.history)
    closed_stages = export.stages.won_stages + export.stages.lost_stages
    deals = export.opportunities[["opportunity_id", "owner_id", "created_at"]].copy()
    deals["opportunity_id"] = deals["opportunity_id"].astype(str)
    final = last.reindex(deals["opportunity_id"])
    closed = final["stage"].isin(closed_stages).to_numpy()
    deals["close_time"] = final["changed_at"].where(closed).to_numpy()
    deals["won"] = final["stage"].isin(export.stages.won_stages).to_numpy()
    # A deal whose amount was never known adds nothing to revenue (features.validation's
    # repairs leave an amount unknown until one is entered).
    deals["amount"] = np.nan_to_num(final["amount"].to_numpy(dtype=np.float64), nan=0.0)
    teams = export.owners.drop_duplicates("owner_id").set_index("owner_id")["team"]
    deals["team"] = deals["owner_id"].map(teams).astype(str)
    return deals.reset_index(drop=True)


def prepare(
    export: CrmExport, *, config: FeatureConfig | None = None, as_of: pd.Timestamp | None = None
) -> PreparedData:
    """`as_of`: when the export was taken (a cut-off); default its last change."""
    end = (
        pd.Timestamp(as_of)
        if as_of is not None
        else pd.Timestamp(export.history["changed_at"].max())
    )
    plan = FeaturePlan.from_export(export, config)
    logger.info("building snapshots of %d deals", export.n_opportunities)
    snapshots = build_snapshots(export, plan=plan)
    tables = DealTables.from_export(export, plan.attributes)
    codes = pd.Index(tables.opportunity_id).get_indexer(
        pd.Index(snapshots["opportunity_id"].to_numpy(dtype=object))
    )
    truth = label_snapshots(
        tables,
        codes,
        to_ns(snapshots["as_of"]),
        known_at=end,
        fiscal_year_start_month=plan.config.fiscal_year_start_month,
    )
    logger.info("%d snapshots, %d features", len(snapshots), len(plan.feature_names))
    return PreparedData(
        export=export,
        plan=plan,
        tables=tables,
        snapshots=snapshots,
        deal_codes=codes,
        truth=truth,
        deals=deal_outcomes(export),
        data_end=end,
    )
