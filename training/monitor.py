"""`dealcast monitor`: logged predictions against what a newer export says happened, and drift.

Outcomes. Each logged prediction is one snapshot (its deal at its `as_of`), labelled by the
newer export with the rules training uses (features.labels.label_horizon): "won within the
horizon" with the horizon's end as the model set it (`HorizonSpec.ends` of the model's plan,
with the `ever` length the log records), known once the deal closed before the end or the
end has passed by the export's last change (`known_at`). A prediction whose outcome is not
known yet is *pending*: counted, never scored as a loss. Metrics are weighted by the
censoring weights of the backtest's horizon figures (features.labels.FollowUp over the
logged predictions' follow-up), so the outcomes known so far stand in for the pending ones
rather than favouring the deals that closed fast; once a horizon is over for every
prediction, every weight is 1 and the figures are the plain ones. The metric functions are
the backtest's (training.metrics), and each baseline is judged on exactly the predictions
the model is, with the probabilities logged beside them (`manual_weight`, where a deal had
no typed value, by its fallback, as in the backtest).

A logged deal the export does not hold is counted as unmatched and judged by nothing; a
prediction made after the export's last change is pending.

Drift. For each model version, the features of its predictions of the last `drift_days`
(by `as_of`, to the latest) against the training window's distribution stored in its
bundle (models.drift), worst first; a bundle without one says drift is unavailable.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from features.deals import DealTables
from features.fiscal import quarter_bounds, quarter_labels, week_of_quarter
from features.labels import FollowUp, label_horizon, target_name
from features.loading import CrmExport
from features.timestamps import to_ns
from models.baselines import MANUAL_FALLBACK, MANUAL_WEIGHT
from models.bundle import DealcastBundle
from models.drift import MODERATE
from models.prediction_log import BASELINE_IN_PERIOD_PREFIX, BASELINE_PREFIX, FEATURE_PREFIX
from training.dataset import deal_outcomes
from training.metrics import deal_metrics, reliability

logger = logging.getLogger(__name__)

EXPERIMENT = "dealcast-monitor"
DRIFT_DAYS = 30
WORST_SHOWN = 5
# The two targets the baselines forecast too: target -> (probability column, horizon,
# baseline column prefix). Every other logged horizon is judged for the model alone.
JUDGED_WITH_BASELINES = {
    "won": ("win_probability", "ever", BASELINE_PREFIX),
    "won_in_period": ("win_in_period_probability", "this_quarter", BASELINE_IN_PERIOD_PREFIX),
}


@dataclass(frozen=True)
class MonitorInput:
    """The log's rows of one model (`label`: its version, else its URI) and its bundle."""

    label: str
    rows: pd.DataFrame
    bundle: DealcastBundle


def model_label(name: object, version: object, uri: object) -> str:
    """How a report names the model of logged rows: `name/version`, else its URI."""
    return f"{name}/{version}" if version is not None and not _missing(version) else str(uri)


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def models_of(rows: pd.DataFrame) -> dict[str, str]:
    """label -> the URI to load, for each model the log names."""
    keys = rows[["model_name", "model_version", "model_uri"]].drop_duplicates()
    out: dict[str, str] = {}
    for name, version, uri in keys.itertuples(index=False):
        label = model_label(name, version, uri)
        out[label] = f"models:/{name}/{version}" if label != str(uri) else str(uri)
    return out


def split_by_model(rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
    keys = zip(rows["model_name"], rows["model_version"], rows["model_uri"], strict=True)
    labels = [model_label(n, v, u) for n, v, u in keys]
    return {str(label): group for label, group in rows.groupby(np.array(labels), sort=True)}


# --------------------------------------------------------------------------- outcomes


@dataclass(frozen=True)
class Outcomes:
    """One target's labels of a model's logged rows (NaN: pending or unmatched), their
    censoring weights, and which rows are pending or unmatched."""

    label: np.ndarray
    weight: np.ndarray
    pending: np.ndarray
    unmatched: np.ndarray


def target_outcomes(
    rows: pd.DataFrame,
    tables: DealTables,
    *,
    bundle: DealcastBundle,
    horizon: str,
    known_at: pd.Timestamp,
) -> Outcomes:
    """Labels of "won within `horizon`" of each logged row as the export knows them."""
    as_of = to_ns(rows["as_of"])
    codes = pd.Index(tables.opportunity_id).get_indexer(rows["opportunity_id"].astype(str))
    unmatched = codes < 0
    spec = bundle.plan.config.horizons
    ever = rows["days_ever"].to_numpy(dtype=np.float64) if "days_ever" in rows else None
    ever_days = round(float(np.nanmedian(ever))) if ever is not None else spec.ever_max_days
    end = spec.ends(as_of, ever_days=ever_days)[horizon]
    label = np.full(len(rows), np.nan)
    took = np.full(len(rows), np.nan)
    known_now = pd.Timestamp(known_at).value
    judged = ~unmatched & (as_of <= known_now)
    label[judged], took[judged] = label_horizon(
        tables, codes[judged], as_of[judged], end[judged], known_at=known_at
    )
    followup = FollowUp(np.maximum(known_now - as_of[~unmatched], 0))
    weight = followup.weights(took)
    return Outcomes(label, weight, ~unmatched & np.isnan(label), unmatched)


def _forecasters(rows: pd.DataFrame, target: str, horizon: str) -> dict[str, np.ndarray]:
    """Each forecaster's logged probabilities of the target, the model first."""
    if target in JUDGED_WITH_BASELINES:
        column, _, prefix = JUDGED_WITH_BASELINES[target]
        out = {"model": rows[column].to_numpy(dtype=np.float64)}
        names = [
            c.removeprefix(prefix)
            for c in rows.columns
            if c.startswith(prefix)
            and (prefix != BASELINE_PREFIX or not c.startswith(BASELINE_IN_PERIOD_PREFIX))
        ]
        for name in names:
            p = rows[prefix + name].to_numpy(dtype=np.float64)
            if name == MANUAL_WEIGHT and prefix + MANUAL_FALLBACK in rows:
                p = np.where(np.isnan(p), rows[prefix + MANUAL_FALLBACK].to_numpy(np.float64), p)
            out[name] = p
        return out
    return {"model": rows[f"p_won_{horizon}"].to_numpy(dtype=np.float64)}


def _judge(p: np.ndarray, outcomes: Outcomes, mask: np.ndarray) -> dict[str, Any]:
    y, w = outcomes.label[mask], outcomes.weight[mask]
    return deal_metrics(p[mask], y, w)


def target_block(
    rows: pd.DataFrame, outcomes: Outcomes, *, target: str, horizon: str, weeks: np.ndarray
) -> dict[str, Any]:
    """Metrics of every forecaster of one target, overall and by week of quarter."""
    known = ~np.isnan(outcomes.label) & (outcomes.weight > 0)
    every = ~outcomes.unmatched
    block: dict[str, Any] = {
        "horizon": horizon,
        "n_predictions": int(every.sum()),
        "n_known": int(known.sum()),
        "n_pending": int(outcomes.pending.sum()),
        "pending_by_week": {
            str(w): int((outcomes.pending & (weeks == w)).sum()) for w in np.unique(weeks[every])
        },
        "forecasters": {},
    }
    for name, p in _forecasters(rows, target, horizon).items():
        usable = every & np.isfinite(p)
        plotted = usable & known
        block["forecasters"][name] = {
            "overall": _judge(p, outcomes, usable),
            "by_week": {
                str(w): _judge(p, outcomes, usable & (weeks == w)) for w in np.unique(weeks[every])
            },
            "reliability": reliability(
                p[plotted], outcomes.label[plotted], weight=outcomes.weight[plotted]
            ),
        }
    return block


def _horizons_logged(rows: pd.DataFrame) -> list[str]:
    return [c.removeprefix("p_won_") for c in rows.columns if c.startswith("p_won_")]


def _targets(rows: pd.DataFrame) -> dict[str, str]:
    """target -> horizon, the two with baselines first."""
    out = {target: spec[1] for target, spec in JUDGED_WITH_BASELINES.items()}
    for horizon in _horizons_logged(rows):
        if rows[f"p_won_{horizon}"].notna().any():
            out.setdefault(target_name(horizon), horizon)
    return out


# --------------------------------------------------------------------------- drift


def drift_block(rows: pd.DataFrame, bundle: DealcastBundle, *, days: int) -> dict[str, Any]:
    reference = getattr(bundle, "drift", None)
    if reference is None:
        return {
            "available": False,
            "reason": "the model's bundle stores no training distribution (trained before "
            "drift references were kept): retrain to monitor drift",
        }
    last = rows["as_of"].max()
    recent = rows[rows["as_of"] >= last - pd.Timedelta(days=days)]
    columns = {
        name: recent[FEATURE_PREFIX + name].to_numpy(dtype=object)
        for name in reference.features
        if FEATURE_PREFIX + name in recent.columns
    }
    drifts = reference.compare(columns)
    return {
        "available": True,
        "training_window": list(reference.window) if reference.window else None,
        "n_training_snapshots": reference.n_snapshots,
        "recent": {
            "days": days,
            "from": recent["as_of"].min().isoformat(),
            "to": last.isoformat(),
            "n": len(recent),
        },
        "worst": [d.name for d in drifts[:WORST_SHOWN]],
        "shifted": [d.name for d in drifts if d.psi >= MODERATE],
        "not_logged": [name for name in reference.features if name not in columns],
        "features": [d.to_dict() for d in drifts],
    }


# --------------------------------------------------------------------------- last quarter


def _quarter_summary(
    rows: pd.DataFrame, p: Mapping[str, np.ndarray], outcomes: Outcomes, weeks: np.ndarray
) -> dict[str, Any]:
    every = ~outcomes.unmatched
    known = every & ~np.isnan(outcomes.label)
    first = int(weeks[every].min()) if every.any() else None
    at_first = every & (weeks == first)
    ids = rows["opportunity_id"].to_numpy(dtype=object)
    # A deal scored more than once in its first week counts once, by its first score.
    first_rows = pd.Series(np.flatnonzero(at_first)).groupby(ids[at_first]).first().to_numpy()
    y_first = outcomes.label[first_rows]
    return {
        "n_predictions": int(every.sum()),
        "n_deals": int(pd.unique(ids[every]).size),
        "n_known": int(known.sum()),
        "n_pending": int(outcomes.pending.sum()),
        "first_week": first,
        "first_week_deals": len(first_rows),
        "first_week_expected": float(p["model"][first_rows].sum()),
        "first_week_won": int(np.nansum(y_first)),
        "first_week_pending": int(np.isnan(y_first).sum()),
        "brier": {
            name: deal_metrics(q[known], outcomes.label[known], outcomes.weight[known])["brier"]
            for name, q in p.items()
        },
    }


def last_quarter_block(
    parts: Sequence[tuple[pd.DataFrame, Outcomes, DealcastBundle]],
    export: CrmExport,
    *,
    known_at: pd.Timestamp,
    labels: Sequence[str],
) -> dict[str, Any] | None:
    """The in-period forecasts of the latest quarter over by `known_at` (else the latest
    logged), for all teams and per team: what the manager's page shows."""
    if not parts:
        return None
    start_month = parts[0][2].plan.config.fiscal_year_start_month
    frames = []
    for (rows, outcomes, _), label in zip(parts, labels, strict=True):
        as_of = to_ns(rows["as_of"])
        frames.append(
            pd.DataFrame(
                {
                    "opportunity_id": rows["opportunity_id"].astype(str).to_numpy(),
                    "as_of": as_of,
                    "quarter": quarter_labels(as_of, start_month=start_month),
                    "end": quarter_bounds(as_of, start_month=start_month)[1],
                    "week": week_of_quarter(as_of, start_month=start_month),
                    "label": outcomes.label,
                    "weight": outcomes.weight,
                    "pending": outcomes.pending,
                    "unmatched": outcomes.unmatched,
                    "model_label": label,
                    **{
                        f"p:{name}": p
                        for name, p in _forecasters(rows, "won_in_period", "this_quarter").items()
                    },
                }
            )
        )
    every = pd.concat(frames, ignore_index=True)
    over = every[every["end"] <= known_at.value]
    chosen = over if len(over) else every
    period = str(chosen["quarter"].to_numpy()[int(np.argmax(chosen["as_of"].to_numpy()))])
    quarter = every[every["quarter"] == period].reset_index(drop=True)
    forecasters = [c for c in quarter.columns if c.startswith("p:")]
    if quarter[forecasters].isna().any().any():
        forecasters = [c for c in forecasters if quarter[c].notna().all()]
    teams = deal_outcomes(export).set_index("opportunity_id")["team"]
    team = quarter["opportunity_id"].map(teams).to_numpy(dtype=object)

    def summary(mask: np.ndarray) -> dict[str, Any]:
        part = quarter[mask].reset_index(drop=True)
        outcomes = Outcomes(
            part["label"].to_numpy(np.float64),
            part["weight"].to_numpy(np.float64),
            part["pending"].to_numpy(bool),
            part["unmatched"].to_numpy(bool),
        )
        p = {c.removeprefix("p:"): part[c].to_numpy(np.float64) for c in forecasters}
        return _quarter_summary(part, p, outcomes, part["week"].to_numpy())

    return {
        "period": period,
        "complete": bool(len(over)) and int(quarter["end"].max()) <= known_at.value,
        "target": "won_in_period",
        "versions": sorted(set(quarter["model_label"])),
        "overall": summary(np.ones(len(quarter), dtype=bool)),
        "by_team": {str(t): summary(team == t) for t in sorted(set(team[pd.notna(team)].tolist()))},
    }


# --------------------------------------------------------------------------- the report


def monitor_report(
    rows: pd.DataFrame,
    export: CrmExport,
    *,
    bundles: Mapping[str, DealcastBundle],
    drift_days: int = DRIFT_DAYS,
    log_dir: Path | None = None,
    data_dir: Path | None = None,
) -> dict[str, Any]:
    """The monitor report (`monitor.json`) of logged `rows` (models.prediction_log) against
    `export`, with the bundle of every model the rows name (by `model_label`)."""
    known_at = pd.Timestamp(export.history["changed_at"].max())
    tables = DealTables.from_export(export)
    groups = split_by_model(rows)
    missing = sorted(set(groups) - set(bundles))
    if missing:
        raise KeyError(f"no bundle given for the logged model(s) {', '.join(missing)}")
    versions: dict[str, Any] = {}
    in_period: list[tuple[pd.DataFrame, Outcomes, DealcastBundle]] = []
    unmatched_ids: set[str] = set()
    for label, group in groups.items():
        group = group.reset_index(drop=True)
        bundle = bundles[label]
        weeks = week_of_quarter(
            to_ns(group["as_of"]), start_month=bundle.plan.config.fiscal_year_start_month
        )
        targets = {}
        for target, horizon in _targets(group).items():
            outcomes = target_outcomes(
                group, tables, bundle=bundle, horizon=horizon, known_at=known_at
            )
            targets[target] = target_block(
                group, outcomes, target=target, horizon=horizon, weeks=weeks
            )
            if target == "won_in_period":
                in_period.append((group, outcomes, bundle))
                unmatched_ids |= set(group["opportunity_id"][outcomes.unmatched].astype(str))
        versions[label] = {
            "model_name": str(group["model_name"].iloc[0]),
            "model_version": group["model_version"].iloc[0],
            "model_uri": str(group["model_uri"].iloc[0]),
            "modes": sorted(group["mode"].astype(str).unique().tolist()),
            "n_predictions": len(group),
            "n_deals": int(group["opportunity_id"].nunique()),
            "as_of": {
                "first": group["as_of"].min().isoformat(),
                "last": group["as_of"].max().isoformat(),
            },
            "targets": targets,
            "drift": drift_block(group, bundle, days=drift_days),
        }
    unmatched_rows = sum(
        v["n_predictions"] - v["targets"]["won_in_period"]["n_predictions"]
        for v in versions.values()
    )
    return {
        "generated_at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
        "log": str(log_dir) if log_dir is not None else None,
        "data": {
            "source": str(data_dir) if data_dir is not None else None,
            "fingerprint": export.fingerprint,
            "known_at": known_at.isoformat(),
            "n_opportunities": export.n_opportunities,
        },
        "predictions": {
            "n": len(rows),
            "unmatched": unmatched_rows,
            "unmatched_deals": len(unmatched_ids),
            "unmatched_examples": sorted(unmatched_ids)[:10],
        },
        "versions": versions,
        "last_quarter": last_quarter_block(
            in_period, export, known_at=known_at, labels=list(groups)
        ),
    }


def log_to_mlflow(report: Mapping[str, Any], files: Sequence[Path]) -> str:
    """One run in the monitor's own experiment, tagged with the models it judged, with the
    headline figures as metrics and the report's files as artifacts; returns its id."""
    from training.registry import configure

    configure(EXPERIMENT)
    with mlflow.start_run(run_name="monitor") as run:
        mlflow.set_tags(
            {
                "models": ", ".join(report["versions"]),
                "data.fingerprint": report["data"]["fingerprint"],
                "data.known_at": report["data"]["known_at"],
                **{
                    f"model_version.{v['model_name']}": str(v["model_version"])
                    for v in report["versions"].values()
                    if v["model_version"] is not None
                },
            }
        )
        mlflow.log_metrics(headline_metrics(report))
        for path in files:
            mlflow.log_artifact(str(path))
        return str(run.info.run_id)


def headline_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """`<model>.<target>.<forecaster>.<metric>` overall, the pending counts and the worst
    drift, for MLflow (names with `/` replaced: `dealcast_3.won_in_period.model.brier`)."""
    out: dict[str, float] = {"predictions": float(report["predictions"]["n"])}
    for label, version in report["versions"].items():
        key = label.replace("/", "_").replace(":", "_")
        for target, block in version["targets"].items():
            out[f"{key}.{target}.pending"] = float(block["n_pending"])
            for name, judged in block["forecasters"].items():
                for metric in ("brier", "log_loss", "auc"):
                    value = judged["overall"][metric]
                    if value is not None:
                        out[f"{key}.{target}.{name}.{metric}"] = float(value)
        drift = version["drift"]
        if drift["available"] and drift["features"]:
            out[f"{key}.drift.max_psi"] = float(drift["features"][0]["psi"])
    return out
