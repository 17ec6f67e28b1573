"""Proof by oracle that the labels' censoring weights are right (../shared/spec/evaluation.md).

Cut an export at C (every row stamped after C dropped, as if exported then), train at C, and
judge the forecasts of the snapshots of the last `window_days` before C against what the
full export knows at its end. Those snapshots are the censored ones: at C most of their deals
are still open. Beside the model trained with the weights stands the same model trained on
the same labels with the censored snapshots dropped (every known label weighing 1), which is
what any rule that drops unresolved deals does; it is biased toward the fast closers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from features.config import FeatureConfig
from features.labels import TargetLabels, label_horizon, label_snapshots, target_name
from features.loading import CrmExport, export_as_of
from features.timestamps import to_ns
from models.win import WinModel, WinModelConfig
from training.dataset import prepare

DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class OracleResult:
    cutoff: pd.Timestamp
    horizon: str
    n_snapshots: int
    true_rate: float  # of the window's snapshots, labels known at the end of the export
    predicted_weighted: float  # mean forecast of the model trained with censoring weights
    predicted_dropping_censored: float  # the same model by the old rule (open deals dropped)
    label_rate_dropping_censored: float  # the old rule's label rate at C in the window
    share_censored_in_window: float
    ever_days: int

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = dict(self.__dict__)
        out["cutoff"] = self.cutoff.isoformat()
        return out


def _old_rule(labels: TargetLabels, keep: np.ndarray) -> TargetLabels:
    """The old rule's labels: weight 1 on the kept rows (whose labels are all known)."""
    return TargetLabels(labels.label, keep.astype(np.float64), labels.end)


def censoring_oracle(
    export: CrmExport,
    *,
    cutoff: pd.Timestamp,
    horizon: str = "180d",
    window_days: int = 90,
    naive_horizon_days: int = 30,
    feature_config: FeatureConfig | None = None,
    model_config: WinModelConfig | None = None,
) -> OracleResult:
    """Train at `cutoff` on the export cut there; judge `horizon` on the last `window_days`."""
    cutoff = pd.Timestamp(cutoff)
    end = pd.Timestamp(export.history["changed_at"].max())
    cut = prepare(export_as_of(export, cutoff), config=feature_config, as_of=cutoff)
    training = cut.training_at(cutoff)
    model_config = model_config or WinModelConfig()
    weighted = WinModel(cut.plan, model_config).fit(training)
    as_of_all = to_ns(training.frame["as_of"])
    closed_by_cutoff = ~np.isnan(
        label_snapshots(cut.tables, cut.deal_codes, as_of_all, known_at=cutoff)["won"].to_numpy()
    )
    keep = closed_by_cutoff & (as_of_all <= (cutoff - naive_horizon_days * DAY).value)
    naive_training = replace(
        training,
        targets={name: _old_rule(labels, keep) for name, labels in training.targets.items()},
    )
    naive = WinModel(cut.plan, model_config).fit(naive_training)

    stamps = training.frame["as_of"]
    window = ((stamps > cutoff - window_days * DAY) & (stamps <= cutoff)).to_numpy()
    snapshots = training.frame[window].reset_index(drop=True)
    as_of = to_ns(snapshots["as_of"])
    horizon_end = training.horizons.ends(as_of, ever_days=training.ever_days)[horizon]
    if (horizon_end > end.value).any():
        raise ValueError(
            f"the export ends {end.date()}: too soon after the cut-off {cutoff.date()} to know "
            f"every {horizon} outcome of its last {window_days} days"
        )
    full = prepare(export)
    codes = pd.Index(full.tables.opportunity_id).get_indexer(
        pd.Index(snapshots["opportunity_id"].to_numpy(dtype=object))
    )
    truth, _ = label_horizon(full.tables, codes, as_of, horizon_end, known_at=end)
    known_at_cut = training.targets[target_name(horizon)]
    old_rule = closed_by_cutoff[window]  # the old rule's labels of the window, at any age
    labels_at_cut = known_at_cut.label[window]
    known = known_at_cut.known[window]
    return OracleResult(
        cutoff=cutoff,
        horizon=horizon,
        n_snapshots=len(snapshots),
        true_rate=float(np.mean(truth)),
        predicted_weighted=float(weighted.predict(snapshots, as_of=as_of).horizons[horizon].mean()),
        predicted_dropping_censored=float(
            naive.predict(snapshots, as_of=as_of).horizons[horizon].mean()
        ),
        label_rate_dropping_censored=float(labels_at_cut[old_rule].mean()),
        share_censored_in_window=float(1 - known.mean()),
        ever_days=training.ever_days,
    )
