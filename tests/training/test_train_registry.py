"""Training for real against a real MLflow store: runs, registry, aliases, the gate."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

import training.train as train_module
from dealcast.cli import main
from models.bundle import load_model
from models.win import WinModelConfig
from training.backtest import BacktestConfig
from training.registry import CHALLENGER, CHAMPION, MODEL_NAME, configure, version_by_alias
from training.train import TrainConfig, train

QUICK = TrainConfig(backtest=BacktestConfig(step="quarter", folds=2))


def test_train_logs_registers_and_promotes(small_world: Path, mlflow_store: Path) -> None:
    outcome = train(small_world, config=QUICK)
    assert outcome.promoted and outcome.version == "1"
    client = configure()
    assert str(version_by_alias(client, CHAMPION).version) == "1"
    assert str(version_by_alias(client, CHALLENGER).version) == "1"
    run = client.get_run(outcome.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["data.fingerprint"].startswith("sha256:")
    assert run.data.tags["code_version"]
    assert run.data.params["backtest.step"] == "quarter"
    assert run.data.params["backtest.folds"] == "2"
    assert run.data.metrics["deal.model.brier"] < run.data.metrics["deal.commit.brier"]
    artifacts = {a.path for a in client.list_artifacts(outcome.run_id)}
    assert {"backtest", "model_card.md", "gate.json", "config.json", "dealcast.toml"} <= artifacts
    resolved = mlflow.artifacts.load_dict(f"runs:/{outcome.run_id}/config.json")
    assert resolved["backtest"]["folds"] == 2 and resolved["features"]["horizons_days"]
    backtest_files = {a.path for a in client.list_artifacts(outcome.run_id, "backtest")}
    assert "backtest/repairs.csv" in backtest_files
    card = mlflow.artifacts.load_text(f"runs:/{outcome.run_id}/model_card.md")
    assert "Known limits" in card and "stage_weight_crm" in card
    # The embedded store lives in the working directory, nothing to start.
    assert (mlflow_store / "mlflow.db").exists()

    # The registered model loads without training code and scores its golden deal as recorded.
    model = load_model(f"models:/{MODEL_NAME}@{CHAMPION}")
    golden = model.bundle.golden
    score = model.scorer.score([golden["deal"]], as_of=[golden["as_of"]], explain=False)[0]
    assert score.win_probability == pytest.approx(golden["expected"]["win_probability"], abs=1e-12)


def test_a_worse_challenger_is_not_promoted(small_world: Path, mlflow_store: Path) -> None:
    train(small_world, config=QUICK)
    weak = TrainConfig(
        backtest=BacktestConfig(
            step="quarter",
            folds=2,
            model=WinModelConfig(n_estimators=2, num_leaves=2, ensemble=2, ensemble_estimators=2),
        )
    )
    outcome = train(small_world, config=weak)
    client = configure()
    assert not outcome.promoted
    assert str(version_by_alias(client, CHAMPION).version) == "1"
    assert str(version_by_alias(client, CHALLENGER).version) == outcome.version == "2"
    gate = json.loads(mlflow.artifacts.load_text(f"runs:/{outcome.run_id}/gate.json"))
    assert gate["passed"] is False and gate["champion_version"] == "1"


def test_a_failed_run_is_marked_and_leaves_the_champion(
    small_world: Path, mlflow_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train(small_world, config=QUICK)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full while building the bundle")

    monkeypatch.setattr(train_module, "build_bundle", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        train(small_world, config=QUICK)
    client = configure()
    runs = client.search_runs(
        [client.get_experiment_by_name("dealcast").experiment_id],
        order_by=["attributes.start_time DESC"],
    )
    assert runs[0].info.status == "FAILED"
    assert str(version_by_alias(client, CHAMPION).version) == "1"
    assert len(client.search_model_versions(f"name='{MODEL_NAME}'")) == 1


def test_promote_overrides_and_records_the_reason(small_world: Path, mlflow_store: Path) -> None:
    train(small_world, config=QUICK)
    train(small_world, config=QUICK)
    assert main(["promote", "--version", "1", "--reason", "roll back: v2 misbehaves"]) == 0
    client = MlflowClient()
    champion = client.get_model_version_by_alias(MODEL_NAME, CHAMPION)
    assert str(champion.version) == "1"
    assert champion.tags["promotion_reason"] == "roll back: v2 misbehaves"
    assert champion.tags["replaced_version"] == "2"
    assert main(["promote", "--version", "7", "--reason", "typo"]) == 1


def test_train_with_a_cutoff_sees_nothing_later(small_world: Path, mlflow_store: Path) -> None:
    import pandas as pd

    cutoff = pd.Timestamp("2026-07-01", tz="UTC")
    outcome = train(small_world, cutoff=cutoff, config=QUICK)
    run = configure().get_run(outcome.run_id)
    assert pd.Timestamp(run.data.tags["data.end"]) <= cutoff
    assert outcome.metrics["data"]["test_quarters"] == ["2026-Q1", "2026-Q2"]


def test_scoring_before_any_champion_says_what_to_do(
    small_world: Path, mlflow_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["score", "--data", str(small_world), "--out", str(mlflow_store / "s.csv")]) == 1
    message = capsys.readouterr().err
    assert "cannot load models:/dealcast@champion" in message
    assert "--model models:/dealcast@challenger" in message
    assert "Traceback" not in message
