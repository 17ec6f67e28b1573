"""Everything scoring needs, in one MLflow pyfunc model.

`DealcastBundle` holds the feature plan (configuration, stage model, static attributes), the
win models with their calibrators and interval ensembles, the baselines, the outcome
reference (the training deals whose records inform owner, account and stage-duration
features), the attainment parameters, per-team history for the gap analysis, metadata and a
golden deal with its recorded score. The action catalogue is code (models.actions), shipped
with the model through `code_paths`.

Loading needs `features` and `models` only (both are logged with the model), never the
training code.
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow.exceptions
import mlflow.pyfunc
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types.schema import ColSpec, Schema

from features.errors import DealcastError
from features.reference import OutcomeReference
from features.snapshots import FeaturePlan
from models.attainment import NewBusinessModel
from models.baseline_model import BaselineWinModel
from models.baselines import Baseline
from models.drift import DriftReference
from models.risk import RiskFlags
from models.win import WinModel

if TYPE_CHECKING:
    from models.scoring import Scorer

BUNDLE_FILE = "bundle.pkl"
PACKAGE_ROOT = Path(__file__).resolve().parent.parent


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

    def save(self, path: Path) -> Path:
        with path.open("wb") as handle:
            pickle.dump(self, handle, protocol=pickle.HIGHEST_PROTOCOL)
        return path

    @staticmethod
    def load(path: Path) -> DealcastBundle:
        with Path(path).open("rb") as handle:
            bundle = pickle.load(handle)
        if not isinstance(bundle, DealcastBundle):
            raise TypeError(f"{path} does not hold a DealcastBundle")
        return bundle


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

    def load_context(self, context: PythonModelContext) -> None:
        from models.scoring import Scorer

        self.bundle = DealcastBundle.load(Path(context.artifacts["bundle"]))
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
    """Log the bundle as one of the run's pyfunc models (`name`) and register a new version
    of it."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = bundle.save(workdir / BUNDLE_FILE)
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=DealcastModel(),
        artifacts={"bundle": str(path)},
        code_paths=[str(PACKAGE_ROOT / "features"), str(PACKAGE_ROOT / "models")],
        signature=SIGNATURE,
        input_example=input_example(bundle),
        registered_model_name=registered_model_name,
        pip_requirements=_requirements(),
    )


def _requirements() -> list[str]:
    """The libraries a bundle needs to load and score, pinned to what trained it."""
    from importlib.metadata import version

    names = ("numpy", "pandas", "scipy", "scikit-learn", "lightgbm", "shap", "mlflow", "pyarrow")
    return [f"{name}=={version(name)}" for name in names]


DEFAULT_MODEL_URI = "models:/dealcast@champion"


def model_uri(uri: str | None = None) -> str:
    """The model to load: the given URI, else $DEALCAST_MODEL_URI, else the champion."""
    return uri or os.environ.get("DEALCAST_MODEL_URI") or DEFAULT_MODEL_URI


class ModelNotFound(DealcastError):
    """The model URI names nothing the store holds (e.g. no champion promoted yet)."""


def load_model(uri: str | None = None) -> DealcastModel:
    """Load a logged dealcast pyfunc model (from a registry alias, a run, or a path)."""
    target = model_uri(uri)
    try:
        loaded = mlflow.pyfunc.load_model(target)
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
    python_model = loaded.unwrap_python_model()
    if not isinstance(python_model, DealcastModel):
        raise TypeError(f"{model_uri(uri)} is not a dealcast model")
    return python_model


def load_scorer(uri: str | None = None) -> Scorer:
    return load_model(uri).scorer
