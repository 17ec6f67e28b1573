"""Train, register, promote and load against a real `mlflow server` on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dealcast.cli import main
from models.bundle import load_model
from training.backtest import BacktestConfig
from training.registry import CHAMPION, MODEL_NAME, configure, version_by_alias
from training.train import TrainConfig, train


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def tracking_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    port = free_port()
    mlflow_cli = Path(sys.executable).parent / "mlflow"
    process = subprocess.Popen(
        [
            str(mlflow_cli),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "server-artifacts"),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{uri}/health", timeout=1.0).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        os.killpg(process.pid, signal.SIGTERM)
        pytest.fail("mlflow server did not start within 90 s")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    try:
        yield uri
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_train_register_promote_load_against_a_server(
    small_world: Path, tracking_server: str, tmp_path: Path
) -> None:
    config = TrainConfig(backtest=BacktestConfig(step="quarter", folds=2))
    first = train(small_world, config=config)
    second = train(small_world, config=config)
    client = configure()
    assert client.tracking_uri == tracking_server
    assert str(version_by_alias(client, CHAMPION).version) == second.version == "2"
    assert main(["promote", "--version", "1", "--reason", "server rollback"]) == 0
    assert str(version_by_alias(client, CHAMPION).version) == first.version
    model = load_model(f"models:/{MODEL_NAME}@{CHAMPION}")
    golden = model.bundle.golden
    score = model.scorer.score([golden["deal"]], as_of=[golden["as_of"]], explain=False)[0]
    assert score.win_probability == pytest.approx(golden["expected"]["win_probability"], abs=1e-12)
    # Nothing was written to an embedded store: the server holds it all.
    assert not (tmp_path / "mlflow.db").exists()
