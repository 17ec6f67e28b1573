"""Training for real against a real MLflow store: runs, registry, aliases, the gate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

import training.train as train_module
from dealcast.cli import main
from features.synthetic import generate_world, write_world
from models.baseline_model import BaselineWinModel
from models.bundle import load_model
from models.win import WinModelConfig
from training.backtest import BacktestConfig
from training.registry import (
    CHALLENGER,
    CHAMPION,
    MODEL_NAME,
    configure,
    is_baseline,
    version_by_alias,
)
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
    assert any(t["rule"] == "champion" and t["passed"] is False for t in gate["tests"])
    # A trained champion is kept: the failing model never demotes it to the baseline.
    assert outcome.baseline_version is None
    assert not is_baseline(version_by_alias(client, CHAMPION))
    assert len(client.search_model_versions(f"name='{MODEL_NAME}'")) == 2


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
    # Every `dealcast train` leaves a champion (the model, else the baseline): a store with
    # none is one where nothing was trained yet.
    assert main(["score", "--data", str(small_world), "--out", str(mlflow_store / "s.csv")]) == 1
    message = capsys.readouterr().err
    assert "cannot load models:/dealcast@champion" in message
    assert "dealcast train --data DIR" in message
    assert "--model models:/dealcast@challenger" in message
    assert "Traceback" not in message


# Trees kept only if they halve the log loss on the window: none are, so the model is the
# stage weight itself and cannot beat it, and the gate fails whatever the world's signal.
NOTHING_LEARNED = TrainConfig(backtest=BacktestConfig(model=WinModelConfig(min_gain=0.5)))


@pytest.fixture(scope="session")
def young_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A young org (9 months, 600 deals): `dealcast generate --months 9 --opportunities 600
    --seed 4`. Trained with NOTHING_LEARNED its model does not beat every baseline."""
    out = tmp_path_factory.mktemp("young") / "export"
    write_world(generate_world(n_opportunities=600, seed=4, months=9), out)
    return out


def test_a_young_org_gets_the_baseline_as_champion_from_day_one(
    young_world: Path, mlflow_store: Path
) -> None:
    outcome = train(young_world, config=NOTHING_LEARNED)
    assert not outcome.promoted, f"premise: the young org's model fails the gate; {outcome.gate}"
    client = configure()
    assert outcome.version == "1" and outcome.baseline_version == "2"
    assert str(version_by_alias(client, CHALLENGER).version) == "1"
    champion = version_by_alias(client, CHAMPION)
    assert str(champion.version) == "2" and is_baseline(champion)
    assert "no model has passed the gate yet" in champion.tags["promotion_reason"]
    assert champion.run_id == outcome.run_id  # logged in the same run, as `baseline`
    gate = json.loads(mlflow.artifacts.load_text(f"runs:/{outcome.run_id}/gate.json"))
    assert {t["rule"] for t in gate["tests"]} == {"baselines", "revenue"}
    # Month folds of a young org: too few ended team-quarters to judge week-8 revenue.
    assert gate["not_measured"] and "week-8 revenue not measured" in gate["not_measured"][0]
    assert all(t["passed"] is None for t in gate["tests"] if t["rule"] == "revenue")

    # `dealcast score` (default: the champion) answers with the stage rates, labelled.
    out = mlflow_store / "scores.csv"
    assert main(["score", "--data", str(young_world), "--out", str(out)]) == 0
    scores = pd.read_csv(out)
    assert len(scores) > 0 and (scores["mode"] == "baseline").all()
    np.testing.assert_allclose(scores["win_probability"], scores["stage_weight_empirical"])
    assert (scores.groupby("stage")["win_probability"].nunique() == 1).all()
    assert (scores["win_probability_low"] < scores["win_probability"]).all()
    assert (scores["win_probability"] < scores["win_probability_high"]).all()
    assert (scores["win_in_period_probability"] <= scores["win_probability"]).all()
    assert (scores["p_won_ever"] == scores["win_probability"]).all()
    assert (scores["p_won_30d"] <= scores["p_won_90d"] + 1e-12).all()

    # The same bundle, pyfunc and Scorer as a model; the explanation is the stage, honestly.
    model = load_model(f"models:/{MODEL_NAME}@{CHAMPION}")
    assert isinstance(model.bundle.model, BaselineWinModel)
    rates = model.bundle.metadata["training"]["stage_rates"]
    for stage, p in scores.groupby("stage")["win_probability"].first().items():
        assert p == pytest.approx(rates[stage])
    golden = model.bundle.golden
    score = model.scorer.score([golden["deal"]], as_of=[golden["as_of"]])[0]
    assert score.mode == "baseline" and score.actions == ()
    assert [d.feature for d in score.drivers] == ["stage"]
    assert "historical rate" in score.drivers[0].sentence
    assert any(w.startswith("baseline mode") for w in score.warnings)
    assert len(score.trend) == 2
    frame = model.predict(None, pd.DataFrame({"deal": [json.dumps(golden["deal"])]}))  # type: ignore[arg-type]
    assert frame["mode"].tolist() == ["baseline"]

    # The manager page labels it too.
    page = mlflow_store / "page.html"
    assert main(["report", "--data", str(young_world), "--out", str(page)]) == 0
    html = page.read_text(encoding="utf-8")
    assert "the baseline forecaster (mode baseline" in html and "Mode baseline:" in html


def test_the_first_model_that_passes_replaces_the_baseline(
    young_world: Path, small_world: Path, mlflow_store: Path
) -> None:
    assert train(young_world, config=NOTHING_LEARNED).baseline_version == "2"
    outcome = train(small_world, config=QUICK)
    assert outcome.promoted, outcome.gate.summary
    assert any("baseline forecaster" in reason for reason in outcome.gate.reasons)
    client = configure()
    champion = version_by_alias(client, CHAMPION)
    assert str(champion.version) == outcome.version == "3" and not is_baseline(champion)
    assert champion.tags["replaced_version"] == "2"
    model = load_model(f"models:/{MODEL_NAME}@{CHAMPION}")
    golden = model.bundle.golden
    score = model.scorer.score([golden["deal"]], as_of=[golden["as_of"]], explain=False)[0]
    assert score.mode in ("full", "small-data")


def test_only_a_missing_or_older_baseline_champion_gives_way_to_the_baseline() -> None:
    from mlflow.entities.model_registry import ModelVersion, ModelVersionTag

    def version(**tags: str) -> ModelVersion:
        return ModelVersion(
            MODEL_NAME, "1", 0, tags=[ModelVersionTag(k, v) for k, v in tags.items()]
        )

    end = pd.Timestamp("2026-11-15", tz="UTC")
    assert train_module._baseline_answers(None, end)
    assert not train_module._baseline_answers(version(mode="full", data_end="2026-01-01"), end)
    assert not train_module._baseline_answers(version(mode="small-data"), end)
    assert train_module._baseline_answers(version(mode="baseline", data_end="2026-10-01"), end)
    assert not train_module._baseline_answers(
        version(mode="baseline", data_end=end.isoformat()), end
    )


def _train_process(world: Path, store: Path) -> subprocess.Popen[bytes]:
    """`dealcast train` in a process of its own, on the test's store (its working folder)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.Popen(
        [sys.executable, "-m", "dealcast", "train", "--data", str(world), "--quarters", "2"],
        cwd=store,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_for_running_run(store: Path, process: subprocess.Popen[bytes]) -> str:
    """The id of the training process's run, once it has started (polling the store)."""
    client = configure()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        experiment = client.get_experiment_by_name("dealcast")
        if experiment is not None:
            runs = client.search_runs(
                [experiment.experiment_id], filter_string="attributes.status = 'RUNNING'"
            )
            if runs and runs[0].data.tags.get("pid") == str(process.pid):
                return runs[0].info.run_id
        time.sleep(0.2)
    raise AssertionError("the training process never started its run")


def test_a_terminated_training_ends_its_run_as_failed(
    small_world: Path, mlflow_store: Path
) -> None:
    process = _train_process(small_world, mlflow_store)
    run_id = _wait_for_running_run(mlflow_store, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "interrupted (training stopped by signal 15)" in stderr.decode()
    run = configure().get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.info.end_time is not None
    assert version_by_alias(configure(), CHAMPION) is None


def test_a_killed_training_is_marked_failed_by_the_next_one(
    small_world: Path, mlflow_store: Path
) -> None:
    process = _train_process(small_world, mlflow_store)
    run_id = _wait_for_running_run(mlflow_store, process)
    process.kill()  # SIGKILL: the process cannot end its own run
    process.wait(timeout=60)
    client = configure()
    assert client.get_run(run_id).info.status == "RUNNING"
    train(small_world, config=QUICK)
    killed = client.get_run(run_id)
    assert killed.info.status == "FAILED"
    assert killed.info.end_time is not None
    assert str(process.pid) in killed.data.tags["interrupted"]


def test_promote_refuses_a_version_the_gate_never_judged(
    small_world: Path, mlflow_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train(small_world, config=QUICK)
    client = configure()
    judged = client.get_model_version(MODEL_NAME, "1")
    assert judged.tags["gate"] in {"passed", "failed"}
    assert judged.tags["gate_summary"]
    # A version registered by a run killed before the gate judged it: registered, no verdict.
    train(small_world, config=QUICK)
    client.delete_model_version_tag(MODEL_NAME, "2", "gate")
    assert main(["promote", "--version", "1", "--reason", "back to the judged one"]) == 0
    capsys.readouterr()
    assert main(["promote", "--version", "2", "--reason", "looks fine"]) == 1
    assert "no gate record" in capsys.readouterr().err
    assert str(version_by_alias(client, CHAMPION).version) == "1"
    assert main(["promote", "--version", "2", "--reason", "checked by hand", "--force"]) == 0
    champion = client.get_model_version_by_alias(MODEL_NAME, CHAMPION)
    assert str(champion.version) == "2"
    assert champion.tags["promotion_reason"] == "forced without a gate record: checked by hand"
