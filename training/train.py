"""`dealcast train`: backtest, train, log one MLflow run, register, and promote if earned.

The run records the configuration (params), the data's fingerprint and window, the code
version, the backtest's metrics and plots, a model card, the gate's tests (`gate.json`) and
the pyfunc bundle. The new version gets the alias `challenger`; `champion` moves to it only
through the gate (training.gate). A run that fails or is interrupted is marked FAILED and
leaves `champion` where it was: the alias is the last thing that moves.

An answer from day one: when the model fails the gate and there is no champion yet, the
baseline forecaster (models.baseline_model: the empirical stage weight, in the same bundle
and pyfunc, answering with mode "baseline") is logged in the same run as `baseline`,
registered as a version of its own and made champion, so the CRM gets calibrated stage
rates at once. While the champion is a baseline, a later failing run refreshes it when its
data ends later (more resolved deals, the same forecaster); the first model that passes the
gate replaces it. A trained champion is never replaced by a baseline: a failing model
leaves it where it is.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities.model_registry import ModelVersion

from features.config import FeatureConfig
from features.currencies import recorded_currencies
from features.deals import DealTables
from features.loading import CrmExport, export_as_of, load_export
from features.reference import OutcomeReference
from models.attainment import NewBusinessModel
from models.baseline_model import FORECASTER, BaselineWinModel
from models.baselines import baselines_for
from models.bundle import BundleRefused, DealcastBundle, load_model, log_bundle, synthetic_deal
from models.drift import DriftReference
from models.risk import fit_risk_flags
from models.win import WinModel
from training.backtest import BacktestConfig, BacktestResult, run_backtest
from training.dataset import PreparedData, prepare
from training.gate import DEFAULT_TOLERANCE, GateDecision, decide, scores_on
from training.model_card import model_card
from training.registry import (
    BASELINE_MODE,
    CHALLENGER,
    CHAMPION,
    DATA_END_TAG,
    EXPERIMENT,
    GATE_SUMMARY_TAG,
    GATE_TAG,
    HOST_TAG,
    MODE_TAG,
    MODEL_NAME,
    PID_TAG,
    configure,
    is_baseline,
    reconcile_interrupted_runs,
    set_champion,
    version_by_alias,
)
from training.report import write_report

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    feature: FeatureConfig = field(default_factory=FeatureConfig)
    backtest: BacktestConfig = field(default_factory=BacktestConfig)
    tolerance: float = DEFAULT_TOLERANCE
    team_history_days: int = 365


@dataclass
class TrainOutcome:
    run_id: str
    version: str
    promoted: bool
    gate: GateDecision
    metrics: dict[str, Any]
    # The baseline forecaster's version when this run registered it and made it champion.
    baseline_version: str | None = None

    @property
    def champion_note(self) -> str:
        """What `champion` points at after the run, in one line."""
        if self.promoted:
            return f"version {self.version}"
        if self.baseline_version:
            return (
                f"version {self.baseline_version}, the baseline forecaster (empirical stage "
                'weight, mode "baseline") until a model passes the gate'
            )
        return "unchanged"


def code_version() -> str:
    """The git commit of the code (with "-dirty" for uncommitted changes), else the package
    version."""
    root = Path(__file__).resolve().parent.parent
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        return described.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import version

        return f"dealcast {version('dealcast')}"


def _flat_params(config: TrainConfig) -> dict[str, str]:
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        else:
            flat[prefix] = json.dumps(value) if not isinstance(value, str) else value

    walk("", asdict(config))
    return flat


def _headline_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for block in ("deal", "deal_in_period"):
        for name, values in metrics[block].items():
            for score in ("auc", "brier", "log_loss", "ece"):
                value = values["overall"][score]
                if value is not None:
                    out[f"{block}.{name}.{score}"] = float(value)
    for name, values in metrics["period"].items():
        for week, inner in values["by_week"].items():
            if inner["median_ape"] is not None:
                out[f"period.{name}.week{week}.median_ape"] = float(inner["median_ape"])
        if values["attainment_brier"] is not None:
            out[f"period.{name}.attainment_brier"] = float(values["attainment_brier"])
        if values["coverage_80"] is not None:
            out[f"period.{name}.coverage_80"] = float(values["coverage_80"])
            out[f"period.{name}.coverage_80_team_quarters"] = float(values["n_team_quarters"])
    out.update(_risk_lift_metrics(metrics))
    return out


def _risk_lift_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The backtest's pooled risk-flag lifts (`risk_lift.<flag>`), win-rate ratios (what
    raises a flag: models.risk) and share flagged."""
    pooled = metrics.get("risk_flags", {}).get("pooled", {})
    flags = pooled.get("flags", {})
    figures = {f"risk_lift.{code}": f["lift"] for code, f in flags.items()}
    figures.update(
        {f"risk_win_rate_ratio.{code}": f.get("win_rate_ratio") for code, f in flags.items()}
    )
    figures["risk_flags.share_flagged"] = pooled.get("share_flagged")
    return {k: float(v) for k, v in figures.items() if v is not None and math.isfinite(v)}


def team_history(data: PreparedData, *, days: int) -> pd.DataFrame:
    """Each team's win rate and average won deal size over its recent closed deals."""
    deals = data.deals
    recent = deals[deals["close_time"] >= data.data_end - pd.Timedelta(days=days)]
    grouped = recent.groupby("team")
    won = recent[recent["won"]].groupby("team")["amount"]
    return pd.DataFrame(
        {
            "win_rate": grouped["won"].mean(),
            "average_deal_size": won.mean(),
            "closed_deals": grouped.size(),
        }
    ).fillna({"average_deal_size": float(recent.loc[recent["won"], "amount"].mean())})


def build_bundle(
    data: PreparedData, backtest: BacktestResult, *, config: TrainConfig, cutoff: pd.Timestamp
) -> DealcastBundle:
    """The final model, trained on everything labelled by the end of the data."""
    training = data.training_at(cutoff)
    model = WinModel(data.plan, config.backtest.model).fit(training)
    risk = fit_risk_flags(model, training)  # lifts on the training snapshots, point in time
    baselines: dict[str, dict[str, Any]] = dict(baselines_for(training, ("won", "won_in_period")))
    closed = data.deals[data.deals["close_time"].notna()]
    new_business = NewBusinessModel.fit(
        closed[["team", "created_at", "close_time", "won", "amount"]],
        as_of=cutoff,
        fiscal_year_start_month=data.plan.config.fiscal_year_start_month,
    )
    reference_tables = DealTables.from_export(
        _without_activities(data.export), data.plan.attributes
    )
    bundle = DealcastBundle(
        plan=data.plan,
        model=model,
        baselines=baselines,
        reference=OutcomeReference(reference_tables),
        new_business=new_business,
        dependence=backtest.dependence,
        team_history=team_history(data, days=config.team_history_days),
        metadata={
            "name": MODEL_NAME,
            "trained_at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
            "data_window": {"start": data.data_start.isoformat(), "end": data.data_end.isoformat()},
            "data_fingerprint": data.export.fingerprint,
            "n_opportunities": data.export.n_opportunities,
            "training": model.training_summary_,
            "backtest": _headline_metrics(backtest.metrics),
            "code_version": code_version(),
            "risk_flags": risk.summary(),
            # The corporate currency and exchange rates the export was converted with: the
            # service converts a request's amounts with the same (features.currencies).
            "currencies": recorded_currencies(data.export),
        },
        risk=risk,
        drift=drift_reference(data, training.frame),
    )
    bundle.golden = golden_deal(bundle, data, cutoff)
    return bundle


def drift_reference(data: PreparedData, snapshots: pd.DataFrame) -> DriftReference:
    """The training snapshots' distribution of every feature of the plan, but those of the
    calendar alone (`days_left_in_quarter`): they say when the deals were scored, not how
    the deals look, and a month of scores would always "drift" from years of snapshots."""
    categorical = set(data.plan.categorical_features)
    names = [
        spec.name
        for spec in data.plan.catalog
        if spec.source != "calendar" and spec.name in snapshots.columns
    ]
    return DriftReference.fit(
        snapshots,
        numeric=[name for name in names if name not in categorical],
        categorical=[name for name in names if name in categorical],
    )


def baseline_bundle(
    bundle: DealcastBundle, data: PreparedData, *, config: TrainConfig, cutoff: pd.Timestamp
) -> DealcastBundle:
    """The model's bundle with the baseline forecaster in the model's place: the same plan,
    baselines, reference and attainment parts, fitted on the same labelled snapshots. The
    attainment's shared factor stays the one fitted on the model's backtest forecasts (the
    backtest fits none for the baselines)."""
    baseline = BaselineWinModel(data.plan, config.backtest.model).fit(data.training_at(cutoff))
    out = replace(
        bundle,
        model=baseline,
        metadata={**bundle.metadata, "training": baseline.training_summary_},
        golden={},
    )
    out.metadata["forecaster"] = FORECASTER
    out.golden = golden_deal(out, data, cutoff)
    return out


def _without_activities(export: CrmExport) -> CrmExport:
    """The reference informs owner, account and stage-duration features: history suffices."""
    return replace(export, activities=export.activities.iloc[:0])


def golden_deal(bundle: DealcastBundle, data: PreparedData, cutoff: pd.Timestamp) -> dict[str, Any]:
    """A synthetic deal open at the cut-off (models.bundle.synthetic_deal: the plan's stages,
    made-up ids, no customer's deal) with its recorded score: the service's readiness check
    and the logged model's input example."""
    from models.scoring import Scorer

    deal = synthetic_deal(data.plan, cutoff)
    as_of = cutoff.isoformat()
    score = Scorer(bundle).score([deal], as_of=[as_of], explain=False)[0]
    return {
        "deal": deal,
        "as_of": as_of,
        "expected": {
            "win_probability": score.win_probability,
            "win_in_period_probability": score.win_in_period_probability,
        },
    }


def _champion_comparison(
    client: mlflow.tracking.MlflowClient, data: PreparedData, backtest: BacktestResult
) -> tuple[str | None, tuple[dict[str, Any], dict[str, Any], str] | None]:
    champion = version_by_alias(client, CHAMPION)
    if champion is None:
        return None, None
    champion_version = str(champion.version)
    try:
        bundle = load_model(f"models:/{MODEL_NAME}@{CHAMPION}").bundle
    except BundleRefused as refused:
        # A champion no dealcast of this version can load (a pickled bundle of an older
        # one): nothing to compare with; the service refuses it too.
        logger.warning("the champion is not compared: %s", refused)
        return champion_version, None
    if isinstance(bundle.model, BaselineWinModel):
        return champion_version, None
    trained_through = pd.Timestamp(bundle.metadata["data_window"]["end"])
    predictions = backtest.predictions
    later = (predictions["as_of"] > trained_through).to_numpy()
    if later.any():
        rows = predictions[later]
        keys = pd.MultiIndex.from_frame(rows[["opportunity_id", "as_of"]])
        snapshots = data.snapshots.set_index(["opportunity_id", "as_of"]).loc[keys].reset_index()
        theirs = bundle.model.predict(snapshots)
        basis = (
            f"{int(later.sum())} backtest snapshots after the champion's data "
            f"(from {trained_through.date()})"
        )
        return champion_version, (
            scores_on(rows, won=rows["p_model"].to_numpy(), in_period=rows["pin_model"].to_numpy()),
            scores_on(rows, won=theirs.won, in_period=theirs.in_period),
            basis,
        )
    if bundle.metadata.get("data_fingerprint") == data.export.fingerprint and champion.run_id:
        run = client.get_run(champion.run_id)
        recorded = {
            block: {
                score: run.data.metrics.get(f"{block}.model.{score}")
                for score in ("brier", "log_loss")
            }
            for block in ("deal", "deal_in_period")
        }
        mine = {
            block: {
                score: backtest.metrics[block]["model"]["overall"][score]
                for score in ("brier", "log_loss")
            }
            for block in recorded
        }
        return champion_version, (mine, recorded, "the champion's backtest on the same data")
    return champion_version, None


def train(
    data_dir: Path, *, cutoff: pd.Timestamp | None = None, config: TrainConfig | None = None
) -> TrainOutcome:
    # The file format lives with the CLI; imported here, not at module level, so that
    # training does not depend on the CLI package to be imported.
    from dealcast.config import config_to_toml, resolved_config

    config = config or TrainConfig()
    client = configure()
    export = load_export(data_dir)
    if cutoff is not None:
        export = export_as_of(export, cutoff)
    experiment = mlflow.get_experiment_by_name(EXPERIMENT)
    if experiment is not None:
        reconcile_interrupted_runs(client, experiment.experiment_id)
    # Leaving this block by an exception, Ctrl-C or a SIGTERM ends the run as FAILED, before
    # any alias has moved; a SIGKILL cannot be caught, and the next train reconciles it.
    with _terminate_as_interrupt(), mlflow.start_run(run_name="train") as run:
        mlflow.set_tags({HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())})
        mlflow.log_params(_flat_params(config))
        mlflow.log_dict(resolved_config(config), "config.json")
        mlflow.log_text(config_to_toml(config), "dealcast.toml")
        repairs = export.report.repairs
        mlflow.log_metrics({f"repairs.{kind}": n for kind, n in repairs.counts().items()})
        mlflow.log_metric("repairs.rows", len(repairs))
        data = prepare(export, config=config.feature, as_of=cutoff)
        end = data.data_end
        mlflow.set_tags(
            {
                "data.fingerprint": export.fingerprint,
                "data.source": str(data_dir),
                "data.start": data.data_start.isoformat(),
                "data.end": data.data_end.isoformat(),
                "cutoff": end.isoformat(),
                "code_version": code_version(),
            }
        )
        # The gate runs on the folds that exist: a young org's one month is judged too.
        backtest = run_backtest(data, config=config.backtest, require_folds=1)
        mlflow.log_metrics(_headline_metrics(backtest.metrics))
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "backtest"
            write_report(backtest, report)
            mlflow.log_artifacts(str(report), "backtest")
            bundle = build_bundle(data, backtest, config=config, cutoff=end)
            champion = version_by_alias(client, CHAMPION)
            baseline_champion = is_baseline(champion)
            champion_version, comparison = (
                (str(champion.version), None)
                if champion is not None and baseline_champion
                else _champion_comparison(client, data, backtest)
            )
            gate = decide(
                backtest.metrics,
                champion_version=champion_version,
                champion_comparison=comparison,
                tolerance=config.tolerance,
                champion_is_baseline=baseline_champion,
            )
            mlflow.log_text(model_card(bundle, backtest.metrics, gate), "model_card.md")
            mlflow.log_dict(gate.to_dict(), "gate.json")
            info = log_bundle(bundle, workdir=Path(tmp), registered_model_name=MODEL_NAME)
            version = str(info.registered_model_version)
            _tag_version(client, version, mode=bundle.model.mode_, data_end=end, gate=gate)
            baseline_version = None
            if not gate.passed and _baseline_answers(champion, end):
                answer = baseline_bundle(bundle, data, config=config, cutoff=end)
                baseline_info = log_bundle(
                    answer,
                    workdir=Path(tmp) / "baseline",
                    registered_model_name=MODEL_NAME,
                    name="baseline",
                )
                baseline_version = str(baseline_info.registered_model_version)
                _tag_version(client, baseline_version, mode=BASELINE_MODE, data_end=end, gate=gate)
        client.set_registered_model_alias(MODEL_NAME, CHALLENGER, version)
        mlflow.set_tag("gate", gate.summary)
        if gate.passed:
            set_champion(client, version, reason=f"gate passed: {gate.summary}")
        elif baseline_version is not None:
            mlflow.set_tag("baseline_version", baseline_version)
            set_champion(
                client,
                baseline_version,
                reason=f"no model has passed the gate yet, the baseline answers: {gate.summary}",
            )
        logger.info("version %s registered; %s", version, gate.summary)
        return TrainOutcome(
            run.info.run_id, version, gate.passed, gate, backtest.metrics, baseline_version
        )


def _baseline_answers(champion: ModelVersion | None, data_end: pd.Timestamp) -> bool:
    """Whether the baseline should become champion after a failed gate: when there is no
    champion, or when the champion is itself a baseline fitted on data ending earlier. A
    trained champion stays: a failing model never demotes it to the baseline."""
    if champion is None:
        return True
    if not is_baseline(champion):
        return False
    fitted_to = champion.tags.get(DATA_END_TAG)
    return fitted_to is None or pd.Timestamp(fitted_to, tz="UTC") < data_end


def _tag_version(
    client: mlflow.tracking.MlflowClient,
    version: str,
    *,
    mode: str,
    data_end: pd.Timestamp,
    gate: GateDecision,
) -> None:
    """What a version answers with, the data it saw and the gate's verdict on its run (a
    baseline version carries the verdict on the model it stands in for)."""
    client.set_model_version_tag(MODEL_NAME, version, MODE_TAG, mode)
    client.set_model_version_tag(MODEL_NAME, version, DATA_END_TAG, data_end.isoformat())
    client.set_model_version_tag(MODEL_NAME, version, GATE_SUMMARY_TAG, gate.summary)
    client.set_model_version_tag(
        MODEL_NAME, version, GATE_TAG, "passed" if gate.passed else "failed"
    )


class TrainingTerminated(KeyboardInterrupt):
    """`dealcast train` got SIGTERM: raised like Ctrl-C, so the run ends as FAILED."""


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a `kill`, a container stop) interrupts training as Ctrl-C does. Only the main
    thread may install a handler; elsewhere (a notebook's worker) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise TrainingTerminated(f"training stopped by signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
