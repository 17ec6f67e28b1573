"""MLflow: where runs are tracked, how versions are registered, promoted and rolled back.

By default MLflow's embedded store: a SQLite database `mlflow.db` and artifacts under
`mlartifacts/`, both in the working directory, with nothing to start. `MLFLOW_TRACKING_URI`
points everything at a real tracking server instead. Promotion is by alias (`champion`,
`challenger`), never by the deprecated stages; every move of `champion` records who moved it,
when and why as tags on the version.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from features.errors import DealcastError

logger = logging.getLogger(__name__)

MODEL_NAME = "dealcast"
EXPERIMENT = "dealcast"
CHAMPION = "champion"
CHALLENGER = "challenger"
# Version tags set by `dealcast train`: what answers ("full", "small-data" or "baseline") and
# the end of the data it was fitted on.
MODE_TAG = "mode"
DATA_END_TAG = "data_end"
BASELINE_MODE = "baseline"
# The gate's verdict on a version ("passed" or "failed") and its one-line summary, set by
# `dealcast train` as soon as the version is registered. A version without them was
# registered by a run that never finished (killed between registering and judging).
GATE_TAG = "gate"
GATE_SUMMARY_TAG = "gate_summary"
# Run tags that let a later `dealcast train` recognise a run whose process was killed.
HOST_TAG = "host"
PID_TAG = "pid"


class RegistryError(DealcastError):
    """A registry operation could not be done; the message says which and why."""


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI`, else the embedded SQLite store in the working directory."""
    configured = os.environ.get("MLFLOW_TRACKING_URI")
    if configured:
        return configured
    return f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def use_store() -> str:
    """Point this process's MLflow client at the tracking store; returns its URI.

    Every command that reads the registry calls it, so a process that used another store
    before (a test, a notebook) never resolves an alias against that one.
    """
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def configure(experiment: str = EXPERIMENT) -> MlflowClient:
    """Point MLflow at the tracking store and make sure the experiment exists (training's,
    or another: `dealcast monitor` logs to its own).

    With the embedded store, artifacts go to `./mlartifacts` (MLflow's own default for a
    SQLite store without a server would be `./mlruns`, mixed with nothing else here either).
    """
    uri = use_store()
    if mlflow.get_experiment_by_name(experiment) is None:
        location = None
        if uri.startswith("sqlite:"):
            location = (Path.cwd() / "mlartifacts").as_uri()
        mlflow.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment)
    return MlflowClient(uri, uri)


def version_by_alias(client: MlflowClient, alias: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(MODEL_NAME, alias)
    except MlflowException:
        return None


@dataclass(frozen=True)
class Promotion:
    version: str
    previous: str | None
    reason: str


def set_champion(
    client: MlflowClient, version: str, *, reason: str, force: bool = False
) -> Promotion:
    """Move `champion` to `version`, recording the reason and the version it replaced.

    A version the gate never judged (its training run was killed before it could) is
    refused unless `force`: then the promotion is recorded as forced, with the reason."""
    try:
        found = client.get_model_version(MODEL_NAME, version)
    except MlflowException as error:
        raise RegistryError(f"model {MODEL_NAME!r} has no version {version}") from error
    if GATE_TAG not in found.tags:
        if not force:
            raise RegistryError(
                f"version {version} has no gate record: the training run that registered it "
                f"(run {found.run_id}) ended before the gate judged it. Retrain, or promote "
                "it anyway with --force and a --reason saying why"
            )
        reason = f"forced without a gate record: {reason}"
    previous = version_by_alias(client, CHAMPION)
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, version)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    client.set_model_version_tag(MODEL_NAME, version, "promoted_at", stamp)
    client.set_model_version_tag(MODEL_NAME, version, "promotion_reason", reason)
    client.set_model_version_tag(
        MODEL_NAME, version, "replaced_version", previous.version if previous else "none"
    )
    logger.info(
        "champion -> version %s (was %s): %s",
        version,
        previous.version if previous else "none",
        reason,
    )
    return Promotion(
        version=version, previous=previous.version if previous else None, reason=reason
    )


def is_baseline(version: ModelVersion | None) -> bool:
    """The version is the baseline forecaster (models.baseline_model), not a trained model."""
    return version is not None and version.tags.get(MODE_TAG) == BASELINE_MODE


def gate_verdict(version: ModelVersion) -> str | None:
    """ "passed" or "failed" as the gate judged the version, None when it never did."""
    return version.tags.get(GATE_TAG)


def reconcile_interrupted_runs(client: MlflowClient, experiment_id: str) -> list[str]:
    """Mark FAILED the runs still RUNNING whose process is gone: started on this host by a
    process id that no longer exists (a training killed with SIGKILL, or a machine that went
    down, cannot end its own run). Runs of other hosts, or without the tags, are left alone:
    nothing here can tell whether they still run. Returns the run ids marked."""
    host = socket.gethostname()
    marked = []
    for run in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'"):
        tags = run.data.tags
        if tags.get(HOST_TAG) != host or not tags.get(PID_TAG, "").isdigit():
            continue
        pid = int(tags[PID_TAG])
        if pid == os.getpid() or _alive(pid):
            continue
        client.set_tag(
            run.info.run_id, "interrupted", f"process {pid} on {host} ended without closing the run"
        )
        client.set_terminated(run.info.run_id, status="FAILED")
        logger.warning(
            "run %s was still RUNNING but its process (%d on %s) is gone: marked FAILED",
            run.info.run_id,
            pid,
            host,
        )
        marked.append(run.info.run_id)
    return marked


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def resolve_model(uri: str) -> tuple[str, str | None, str]:
    """(name, version, concrete URI) of a model URI: an alias (`models:/NAME@ALIAS`) is
    resolved to the version it points at now, as the service resolves it before loading;
    a run or a path has no version."""
    if uri.startswith("models:/"):
        name, _, rest = uri.removeprefix("models:/").partition("@")
        if rest:
            version = MlflowClient(use_store()).get_model_version_by_alias(name, rest).version
            return name, str(version), f"models:/{name}/{version}"
        name, _, version = name.partition("/")
        return name, version or None, uri
    return MODEL_NAME, None, uri
