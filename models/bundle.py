"""Everything scoring needs, in one MLflow pyfunc model, stored as data.

`DealcastBundle` holds the feature plan (configuration, stage model, static attributes), the
win models with their calibrators and interval ensembles, the baselines, the outcome
reference (the aggregates of the training deals that inform owner, account and
stage-duration features, features.reference), the attainment parameters, per-team history
for the gap analysis, metadata and a golden deal with its recorded score. The action
catalogue is code (models.actions), shipped with the model through `code_paths`.

A bundle is a folder of data files, never a pickle: `bundle.json` (everything but arrays and
trees; each class's `to_data` / `from_data`, beside the class), `arrays.npz` (read with
`allow_pickle=False`), LightGBM's model text under `texts/`, and `manifest.json`: the format
and its version, each file's sha256 and the library versions that wrote it. The manifest's
own sha256 is the bundle's *digest*: `log_bundle` records it on the model version (tag
`bundle_digest`) and on the run (`bundle_digest.<name>`). `load_model` downloads a version's
files and, before reading any of them, checks the manifest against the recorded digest and
every file against the manifest; a mismatch, an unknown format version or a pickled bundle
of an older dealcast is refused (`BundleRefused`, naming the file) and nothing is loaded.

The pyfunc is logged as code (MLflow's models-from-code, models/pyfunc_model.py), not
cloudpickled. `mlflow.pyfunc.load_model` runs that file and the logged `features` and
`models` packages from the store, so a server must load with `load_model` here, which runs
only the installed code (`dealcast serve`, `score` and `train` do).

Loading needs `features` and `models` only, never the training code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow.artifacts
import mlflow.exceptions
import mlflow.pyfunc
import pandas as pd
import yaml
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.tracking import MlflowClient
from mlflow.types.schema import ColSpec, Schema

from features.artifacts import (
    ArtifactError,
    ArtifactReader,
    ArtifactWriter,
    dumps,
    frame_from_data,
    frame_to_data,
)
from features.errors import DealcastError
from features.reference import OutcomeReference
from features.snapshots import FeaturePlan
from models.attainment import NewBusinessModel
from models.baseline_model import BaselineWinModel
from models.baselines import Baseline, baseline_from_data, baseline_to_data
from models.drift import DriftReference
from models.risk import RiskFlags
from models.win import WinModel

if TYPE_CHECKING:
    from models.scoring import Scorer

logger = logging.getLogger(__name__)

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
PYFUNC_FILE = Path(__file__).resolve().parent / "pyfunc_model.py"
BUNDLE_ARTIFACT = "bundle"  # the pyfunc's artifact (a folder) holding the bundle
MANIFEST_FILE = "manifest.json"
DOCUMENT_FILE = "bundle.json"
BUNDLE_FORMAT = "dealcast-bundle"
FORMAT_VERSION = 1
READABLE_VERSIONS = (1,)
# Where registration records the manifest's sha256: a version tag, and a run tag per
# logged model (a run logs the model and, after a failed gate, the baseline).
DIGEST_TAG = "bundle_digest"
LEGACY_FILE = "bundle.pkl"  # what dealcast wrote before bundles were data
RETRAIN = "retrain with `dealcast train --data DIR` to register a bundle this dealcast reads"
LIBRARIES = ("numpy", "pandas", "scipy", "scikit-learn", "lightgbm", "shap", "mlflow", "pyarrow")


class BundleRefused(DealcastError):
    """A bundle failed its checks (digest, checksums, format): nothing of it was read."""


def run_digest_tag(name: str) -> str:
    """The run tag holding the digest of the run's model logged as `name`."""
    return f"{DIGEST_TAG}.{name}"


@dataclass
class DealcastBundle:
    plan: FeaturePlan
    # A trained model, or the baseline forecaster that answers until one passes the gate
    # (models.baseline_model: same predict interface, mode "baseline").
    model: WinModel | BaselineWinModel
    baselines: dict[str, dict[str, Baseline]]  # target -> name -> fitted baseline
    reference: OutcomeReference
    new_business: NewBusinessModel
    dependence: float
    team_history: pd.DataFrame  # team -> win_rate, average_deal_size (recent closed deals)
    metadata: dict[str, Any] = field(default_factory=dict)
    golden: dict[str, Any] = field(default_factory=dict)  # {"deal", "as_of", "expected"}
    # The risk flags with their lifts measured at training; only those that earned it fire.
    risk: RiskFlags = field(default_factory=RiskFlags)
    # The training window's feature distributions, for `dealcast monitor`'s drift (None in
    # a bundle made before it was stored: monitor then says drift is unavailable).
    drift: DriftReference | None = None

    # A field that is plain JSON (a dict of numbers and strings, or a class with
    # to_dict/from_dict) is one line in each of `to_data` and `from_data`.
    def to_data(self, out: ArtifactWriter) -> dict[str, Any]:
        model = self.model
        kind = "baseline" if isinstance(model, BaselineWinModel) else "win"
        return {
            "plan": self.plan.to_data(),
            "model": {"kind": kind, **model.to_data(out, "model")},
            "baselines": {
                target: {
                    name: baseline_to_data(baseline, out, f"baselines.{target}.{name}")
                    for name, baseline in named.items()
                }
                for target, named in self.baselines.items()
            },
            "reference": self.reference.to_data(out, "reference"),
            "new_business": self.new_business.to_data(out, "new_business"),
            "dependence": float(self.dependence),
            "team_history": frame_to_data(self.team_history, out, "team_history"),
            "metadata": self.metadata,
            "golden": self.golden,
            "risk": self.risk.to_data(),
            "drift": None if self.drift is None else self.drift.to_dict(),
        }

    @classmethod
    def from_data(cls, data: dict[str, Any], source: ArtifactReader) -> DealcastBundle:
        plan = FeaturePlan.from_data(data["plan"])
        model_data = dict(data["model"])
        kind = model_data.pop("kind")
        model: WinModel | BaselineWinModel
        if kind == "win":
            model = WinModel.from_data(model_data, source, plan=plan)
        elif kind == "baseline":
            model = BaselineWinModel.from_data(model_data, source, plan=plan)
        else:
            raise ArtifactError(f"{DOCUMENT_FILE}: model kind {kind!r}: expected win or baseline")
        return cls(
            plan=plan,
            model=model,
            baselines={
                target: {name: baseline_from_data(b, source) for name, b in named.items()}
                for target, named in data["baselines"].items()
            },
            reference=OutcomeReference.from_data(data["reference"], source),
            new_business=NewBusinessModel.from_data(data["new_business"], source),
            dependence=float(data["dependence"]),
            team_history=frame_from_data(data["team_history"], source),
            metadata=dict(data["metadata"]),
            golden=dict(data["golden"]),
            risk=RiskFlags.from_data(data["risk"]),
            drift=None if data.get("drift") is None else DriftReference.from_dict(data["drift"]),
        )

    def save(self, folder: Path) -> str:
        """Write the bundle's files and manifest into `folder` (new or empty); returns the
        digest (the manifest's sha256) to record at registration."""
        folder.mkdir(parents=True, exist_ok=True)
        if any(folder.iterdir()):
            raise FileExistsError(f"{folder}: a bundle is written into an empty folder")
        out = ArtifactWriter()
        document = dumps(self.to_data(out))
        (folder / DOCUMENT_FILE).write_text(document, encoding="utf-8")
        files = [folder / DOCUMENT_FILE, *out.write(folder)]
        manifest = {
            "format": BUNDLE_FORMAT,
            "format_version": FORMAT_VERSION,
            "files": {path.relative_to(folder).as_posix(): _sha256(path) for path in files},
            "libraries": _library_versions(),
        }
        text = json.dumps(manifest, indent=1, sort_keys=True).encode()
        (folder / MANIFEST_FILE).write_bytes(text)
        return hashlib.sha256(text).hexdigest()

    @staticmethod
    def load(
        folder: Path, *, recorded: Recorded | None = None, origin: str | None = None
    ) -> DealcastBundle:
        """Verify `folder` (`verify_bundle`), then read it. `recorded`: the digest recorded
        at registration (None: the files are checked against their manifest only)."""
        folder = Path(folder)
        verify_bundle(folder, recorded=recorded, origin=origin)
        try:
            document = json.loads((folder / DOCUMENT_FILE).read_text(encoding="utf-8"))
            return DealcastBundle.from_data(document, ArtifactReader(folder))
        except (ArtifactError, KeyError, TypeError, ValueError) as error:
            raise BundleRefused(
                f"{origin or folder}: the bundle's files passed their checksums but cannot be "
                f"read ({type(error).__name__}: {error}); {RETRAIN}"
            ) from error


def verify_bundle(
    folder: Path, *, recorded: Recorded | None, origin: str | None = None
) -> dict[str, Any]:
    """Check a bundle folder before anything in it is deserialized: the manifest's sha256
    against the digest `recorded` at registration (when the model has a record), its
    format and version, then every file's sha256, and that the folder holds no file the
    manifest does not list. Returns the manifest."""
    where = origin or str(folder)
    if (folder / LEGACY_FILE).exists() or folder.name == LEGACY_FILE:
        raise BundleRefused(f"{where}: {LEGACY_PICKLE}")
    if recorded is not None and recorded.digest is None:
        raise BundleRefused(
            f"{where}: no bundle digest recorded ({recorded.where}): registered by a run "
            f"that stopped before recording it, or by an older dealcast; not loaded; {RETRAIN}"
        )
    digest = recorded.digest if recorded is not None else None
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise BundleRefused(f"{where}: no {MANIFEST_FILE}: not a dealcast bundle; {RETRAIN}")
    text = manifest_path.read_bytes()
    found = hashlib.sha256(text).hexdigest()
    if digest is not None and found != digest:
        raise BundleRefused(
            f"{where}: {MANIFEST_FILE} has sha256 {found}, but {digest} was recorded at "
            "registration: the bundle was changed after it was registered; not loaded"
        )
    try:
        manifest = json.loads(text)
    except ValueError as error:
        raise BundleRefused(f"{where}: {MANIFEST_FILE} is not JSON: {error}") from error
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise BundleRefused(f"{where}: {MANIFEST_FILE}: format is not {BUNDLE_FORMAT!r}")
    format_version = manifest.get("format_version")
    if format_version not in READABLE_VERSIONS:
        raise BundleRefused(
            f"{where}: bundle format version {format_version!r} is unknown to this dealcast "
            f"(it reads {', '.join(map(str, READABLE_VERSIONS))}): load it with the dealcast "
            f"that wrote it, or {RETRAIN}"
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or DOCUMENT_FILE not in files:
        raise BundleRefused(f"{where}: {MANIFEST_FILE} lists no {DOCUMENT_FILE}")
    present = {
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file() and path.name != MANIFEST_FILE
    }
    for name in sorted(present - set(files)):
        raise BundleRefused(f"{where}: file {name} is not in the bundle's manifest; not loaded")
    for name, expected in sorted(files.items()):
        path = folder / name
        if name not in present:
            raise BundleRefused(f"{where}: file {name} of the manifest is missing; not loaded")
        got = _sha256(path)
        if got != expected:
            raise BundleRefused(
                f"{where}: file {name} has sha256 {got}, its manifest says {expected}: the "
                "file was changed after the bundle was written; not loaded"
            )
    libraries = manifest.get("libraries") or {}
    differ = {
        name: (wrote, now)
        for name, now in _library_versions().items()
        if (wrote := libraries.get(name)) is not None and wrote != now
    }
    if differ:
        logger.warning(
            "%s was written with other library versions (written, installed): %s",
            where,
            differ,
        )
    return manifest


LEGACY_PICKLE = (
    f"this version holds a pickled bundle ({LEGACY_FILE}) from a dealcast before bundles "
    "were stored as data; it is not loaded (unpickling would run code from the store): " + RETRAIN
)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _library_versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


INPUT_SCHEMA = Schema(
    [
        ColSpec("string", "deal"),  # one deal as JSON: its opportunities row, history, activities
        ColSpec("string", "as_of", required=False),  # ISO 8601; default: now
    ]
)
OUTPUT_COLUMNS = (
    "opportunity_id",
    "win_probability",
    "win_probability_low",
    "win_probability_high",
    "win_in_period_probability",
    "win_in_period_probability_low",
    "win_in_period_probability_high",
    "stage_weight_crm",
    "stage_weight_empirical",
    "commit",
    "grade",
    "risk_level",
    "mode",
)
SIGNATURE = ModelSignature(
    inputs=INPUT_SCHEMA,
    outputs=Schema(
        [
            ColSpec(
                "string" if name in ("opportunity_id", "grade", "risk_level", "mode") else "double",
                name,
            )
            for name in OUTPUT_COLUMNS
        ]
    ),
)


class DealcastModel(PythonModel):
    """The pyfunc face of a bundle: a frame of deals (JSON) in, a frame of scores out.

    The service reaches past this to `scorer` for explanations, actions and attainment.
    """

    @classmethod
    def of(cls, bundle: DealcastBundle) -> DealcastModel:
        from models.scoring import Scorer

        model = cls()
        model.bundle = bundle
        model.scorer = Scorer(bundle)
        return model

    def load_context(self, context: PythonModelContext) -> None:
        """MLflow's loading: the files checked against their manifest and the digest the
        model was logged with (the registry's record is checked by `load_model`)."""
        from models.scoring import Scorer

        config = context.model_config or {}
        self.bundle = DealcastBundle.load(
            Path(context.artifacts[BUNDLE_ARTIFACT]),
            recorded=Recorded(config.get(DIGEST_TAG), "the MLmodel's model_config"),
        )
        self.scorer = Scorer(self.bundle)

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        deals = [json.loads(text) for text in model_input["deal"]]
        as_of = (
            model_input["as_of"].tolist() if "as_of" in model_input.columns else [None] * len(deals)
        )
        scores = self.scorer.score(deals, as_of=as_of, explain=False)
        rows = []
        for score in scores:
            rows.append(
                {
                    "opportunity_id": score.opportunity_id,
                    **score.probabilities(),
                    **{
                        name: score.baselines[name]
                        for name in ("stage_weight_crm", "stage_weight_empirical", "commit")
                    },
                    "grade": score.grade,
                    "risk_level": score.risk_level,
                    "mode": score.mode,
                }
            )
        return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))


GOLDEN_ID = "GOLDEN-0001"


def synthetic_deal(plan: FeaturePlan, as_of: pd.Timestamp) -> dict[str, Any]:
    """A made-up open deal for the golden check and the input example: the plan's first
    open stages over the 60 days before `as_of`, a few activities, ids of no one."""
    stages = plan.stages.open_stages[:3]
    step = pd.Timedelta(days=60) / len(stages)
    start = as_of - pd.Timedelta(days=60)
    close = (as_of + pd.Timedelta(days=45)).normalize()
    history = []
    for i, stage in enumerate(stages):
        probability = plan.stages.probability(stage)
        history.append(
            {
                "changed_at": (start + i * step).isoformat(),
                "stage": stage,
                "amount": 10000.0 + 2500.0 * i,
                "close_date": close.isoformat(),
                "forecast_category": "Best Case" if i == len(stages) - 1 else "Pipeline",
                "probability": None if math.isnan(probability) else probability,
            }
        )
    kinds = ("email", "call", "meeting", "email", "demo")
    activities = [
        {
            "occurred_at": (start + pd.Timedelta(days=3 + 11 * i)).isoformat(),
            "type": kind,
            "contact_role": "decision_maker" if kind == "meeting" else "champion",
        }
        for i, kind in enumerate(kinds)
    ]
    return {
        "opportunity_id": GOLDEN_ID,
        "account_id": "GOLDEN-ACCOUNT",
        "owner_id": "GOLDEN-REP",
        "created_at": start.isoformat(),
        "history": history,
        "activities": activities,
        "owner": {"owner_id": "GOLDEN-REP", "team": "GOLDEN-TEAM"},
    }


def input_example(bundle: DealcastBundle) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "deal": [json.dumps(bundle.golden["deal"])],
            "as_of": [bundle.golden["as_of"]],
        }
    )


def log_bundle(
    bundle: DealcastBundle, *, workdir: Path, registered_model_name: str, name: str = "model"
) -> Any:
    """Log the bundle as one of the active run's pyfunc models (`name`), register a new
    version of it, and record its digest on the run and the version."""
    folder = workdir / BUNDLE_ARTIFACT
    digest = bundle.save(folder)
    mlflow.set_tag(run_digest_tag(name), digest)
    info = mlflow.pyfunc.log_model(
        name=name,
        python_model=str(PYFUNC_FILE),
        artifacts={BUNDLE_ARTIFACT: str(folder)},
        code_paths=[str(PACKAGE_ROOT / "features"), str(PACKAGE_ROOT / "models")],
        signature=SIGNATURE,
        input_example=input_example(bundle),
        registered_model_name=registered_model_name,
        pip_requirements=_requirements(),
        model_config={DIGEST_TAG: digest},
    )
    MlflowClient().set_model_version_tag(
        registered_model_name, str(info.registered_model_version), DIGEST_TAG, digest
    )
    return info


def _requirements() -> list[str]:
    """The libraries a bundle needs to load and score, pinned to what trained it."""
    return [f"{name}=={v}" for name, v in _library_versions().items()]


DEFAULT_MODEL_URI = "models:/dealcast@champion"


def model_uri(uri: str | None = None) -> str:
    """The model to load: the given URI, else $DEALCAST_MODEL_URI, else the champion."""
    return uri or os.environ.get("DEALCAST_MODEL_URI") or DEFAULT_MODEL_URI


class ModelNotFound(DealcastError):
    """The model URI names nothing the store holds (e.g. no champion promoted yet)."""


_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)$")
_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")
_RUN_URI = re.compile(r"^runs:/(?P<run>[^/]+)/(?P<path>.+?)/?$")


def load_model(uri: str | None = None) -> DealcastModel:
    """Load a logged dealcast model (a registry alias or version, a run, or a path) with the
    installed code: its files are downloaded and verified (`verify_bundle`: against the
    digest recorded on the version or run) before any is read."""
    target = model_uri(uri)
    client = MlflowClient()
    try:
        concrete, recorded = _recorded(client, target)
        with tempfile.TemporaryDirectory(prefix="dealcast-model-") as tmp:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=concrete, dst_path=tmp))
            bundle = DealcastBundle.load(
                _bundle_folder(local, concrete), recorded=recorded, origin=concrete
            )
    except mlflow.exceptions.MlflowException as error:
        hint = (
            " This store has no champion yet: `dealcast train --data DIR` makes one (the "
            "model if it passes the promotion gate, else the baseline forecaster, labelled "
            'mode "baseline"); a registered version scores with --model '
            "models:/dealcast@challenger, or `dealcast promote --version N --reason ...` "
            "makes it champion."
            if target.endswith("@champion")
            else ""
        )
        raise ModelNotFound(f"cannot load {target}: {error.message.rstrip('.')}.{hint}") from error
    return DealcastModel.of(bundle)


@dataclass(frozen=True)
class Recorded:
    """The digest registration recorded for a model (None: none was) and where."""

    digest: str | None
    where: str


def _recorded(client: MlflowClient, uri: str) -> tuple[str, Recorded | None]:
    """The URI to download (an alias resolved to its version, so that what is checked is
    what is read) and the digest recorded for it; None for a path, which has no record."""
    alias, numbered, run = _ALIAS_URI.match(uri), _VERSION_URI.match(uri), _RUN_URI.match(uri)
    if alias or numbered:
        if alias:
            found = client.get_model_version_by_alias(alias["name"], alias["alias"])
        else:
            assert numbered is not None
            found = client.get_model_version(numbered["name"], numbered["version"])
        concrete = f"models:/{found.name}/{found.version}"
        return concrete, Recorded(found.tags.get(DIGEST_TAG), f"version tag {DIGEST_TAG}")
    if run:
        tag = run_digest_tag(run["path"])
        return uri, Recorded(client.get_run(run["run"]).data.tags.get(tag), f"run tag {tag}")
    return uri, None


def _bundle_folder(local: Path, uri: str) -> Path:
    """The bundle folder inside a downloaded model, as its MLmodel names it (never outside
    the model's folder)."""
    mlmodel = local / "MLmodel"
    if not mlmodel.is_file():
        raise BundleRefused(f"{uri}: no MLmodel file: not an MLflow model")
    spec = yaml.safe_load(mlmodel.read_text(encoding="utf-8")) or {}
    artifacts = (spec.get("flavors", {}).get("python_function", {}) or {}).get("artifacts", {})
    path = (artifacts.get(BUNDLE_ARTIFACT) or {}).get("path")
    if not isinstance(path, str):
        raise BundleRefused(
            f"{uri}: its MLmodel names no {BUNDLE_ARTIFACT!r} artifact: not a dealcast model"
        )
    folder = (local / path).resolve()
    if not folder.is_relative_to(local.resolve()):
        raise BundleRefused(f"{uri}: its MLmodel points the bundle outside the model ({path})")
    return folder


def load_scorer(uri: str | None = None) -> Scorer:
    return load_model(uri).scorer
