"""A registered bundle is data with a checksummed manifest: it loads only as registered.

On the session's trained store (tests/integration/conftest.py): each test loads, tampers
with (and restores) or re-registers the version's files for real.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from models.bundle import (
    DIGEST_TAG,
    MANIFEST_FILE,
    BundleRefused,
    DealcastBundle,
    DealcastModel,
    load_model,
)
from serving.model_store import ModelStore
from tests.integration.conftest import Registry
from training.registry import MODEL_NAME

ALIAS = "integrity-test"  # an alias of this module's own: the champion is left alone


@pytest.fixture
def store(registry: Registry) -> Iterator[Path]:
    """The registry's root, with MLflow pointed at it."""
    mlflow.set_tracking_uri(registry.tracking_uri)
    mlflow.set_registry_uri(registry.tracking_uri)
    yield registry.root


def _bundle_folder(root: Path, version: str) -> Path:
    """The store's own copy of a version's bundle (what a writer to the store would change):
    the folder whose manifest has the version's recorded digest."""
    digest = MlflowClient().get_model_version(MODEL_NAME, version).tags[DIGEST_TAG]
    (folder,) = [
        p.parent
        for p in (root / "mlartifacts").rglob(MANIFEST_FILE)
        if hashlib.sha256(p.read_bytes()).hexdigest() == digest
    ]
    return folder


def _copy(folder: Path, to: Path) -> Path:
    shutil.copytree(folder, to)
    return to


def test_a_registered_bundle_is_data_and_scores_as_before_saving(
    registry: Registry, store: Path, tmp_path: Path
) -> None:
    client = MlflowClient(registry.tracking_uri, registry.tracking_uri)
    version = client.get_model_version(MODEL_NAME, registry.version)
    run = client.get_run(version.run_id)
    digest = version.tags[DIGEST_TAG]
    assert run.data.tags[f"{DIGEST_TAG}.model"] == digest
    model = load_model(f"models:/{MODEL_NAME}/{registry.version}")
    bundle = model.bundle
    golden = bundle.golden
    # The golden deal is synthetic: made-up ids, the plan's stages; it scores as recorded.
    assert golden["deal"]["opportunity_id"] == "GOLDEN-0001"
    assert {row["stage"] for row in golden["deal"]["history"]} <= set(
        bundle.plan.stages.open_stages
    )
    score = model.scorer.score([golden["deal"]], as_of=[golden["as_of"]], explain=False)[0]
    assert score.win_probability == golden["expected"]["win_probability"]
    assert score.win_in_period_probability == golden["expected"]["win_in_period_probability"]
    # Nothing pickled and no deal's records: no opportunity id or raw account id in any file.
    folder = _bundle_folder(store, registry.version)
    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert (
        "bundle.json" in names
        and "arrays.npz" in names
        and not any(n.endswith((".pkl", ".pickle")) for n in names)
    )
    text = (folder / "bundle.json").read_text()
    some_account = str(registry.tables["accounts"]["account_id"].iloc[0])
    some_deal = str(registry.tables["opportunities"]["opportunity_id"].iloc[0])
    assert some_account not in text and some_deal not in text
    with np.load(folder / "arrays.npz", allow_pickle=False) as arrays:
        for name in arrays.files:
            values = arrays[name]
            if values.dtype.kind == "U":
                assert some_account not in set(values.tolist()), name
    # Saved again and read back: the same scores, bit for bit, on a batch of deals too.
    again = DealcastBundle.load(_save(bundle, tmp_path / "resaved"))
    deals = [
        golden["deal"],
        {**golden["deal"], "opportunity_id": "B", "history": golden["deal"]["history"][:1]},
    ]
    before = DealcastModel.of(bundle).scorer.score(deals, as_of=[golden["as_of"]] * 2, explain=True)
    after = DealcastModel.of(again).scorer.score(deals, as_of=[golden["as_of"]] * 2, explain=True)
    for x, y in zip(before, after, strict=True):
        assert x.probabilities() == y.probabilities()


def _save(bundle: DealcastBundle, folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    bundle.save(folder)
    return folder


def test_a_changed_file_after_registration_is_refused_naming_it(
    registry: Registry, store: Path, tmp_path: Path
) -> None:
    folder = _bundle_folder(store, registry.version)
    backup = _copy(folder, tmp_path / "backup")
    try:
        target = next(p for p in (folder / "texts").iterdir())
        target.write_text(target.read_text().replace("leaf_value=", "leaf_value=1 ", 1))
        with pytest.raises(BundleRefused, match=rf"file texts/{target.name} has sha256"):
            load_model(f"models:/{MODEL_NAME}/{registry.version}")
        # A manifest rewritten to match the change no longer matches the registered digest.
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
        manifest["files"][f"texts/{target.name}"] = hashlib.sha256(target.read_bytes()).hexdigest()
        (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
        with pytest.raises(BundleRefused, match="was recorded at registration"):
            load_model(f"models:/{MODEL_NAME}/{registry.version}")
    finally:
        shutil.rmtree(folder)
        shutil.copytree(backup, folder)
        shutil.rmtree(backup)
    load_model(f"models:/{MODEL_NAME}/{registry.version}")


def test_an_unknown_format_version_is_a_clear_error(
    registry: Registry, store: Path, tmp_path: Path
) -> None:
    copy = _copy(_bundle_folder(store, registry.version), tmp_path / "bundle")
    manifest = json.loads((copy / MANIFEST_FILE).read_text())
    manifest["format_version"] = 99
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(BundleRefused, match="format version 99 is unknown to this dealcast"):
        DealcastBundle.load(copy)


def test_an_old_pickled_version_is_refused_with_retrain(store: Path, tmp_path: Path) -> None:
    legacy = tmp_path / "bundle.pkl"
    legacy.write_bytes(pickle.dumps({"what": "a bundle of an older dealcast"}))
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=DealcastModel(),
            artifacts={"bundle": str(legacy)},
            registered_model_name=MODEL_NAME,
        )
    with pytest.raises(BundleRefused, match=r"pickled bundle \(bundle.pkl\).*dealcast train"):
        load_model(f"models:/{MODEL_NAME}/{info.registered_model_version}")


def test_the_service_keeps_its_model_and_reports_a_refused_version(
    registry: Registry, store: Path
) -> None:
    client = MlflowClient(registry.tracking_uri, registry.tracking_uri)
    first = client.get_model_version(MODEL_NAME, registry.version)
    # A second version of the same files whose recorded digest does not match them.
    second = client.create_model_version(MODEL_NAME, first.source, run_id=first.run_id)
    client.set_model_version_tag(MODEL_NAME, second.version, DIGEST_TAG, "0" * 64)
    client.set_registered_model_alias(MODEL_NAME, ALIAS, registry.version)
    served = ModelStore(
        f"models:/{MODEL_NAME}@{ALIAS}", tracking_uri=registry.tracking_uri, poll_seconds=3600
    )
    served.start(watch=False)
    assert served.current is not None and served.current.version == registry.version
    client.set_registered_model_alias(MODEL_NAME, ALIAS, str(second.version))
    assert served.refresh() is False
    assert served.current.version == registry.version
    failure = served.load_failure
    assert failure is not None and failure.version == str(second.version)
    assert "BundleRefused" in failure.reason and "recorded at registration" in failure.reason
