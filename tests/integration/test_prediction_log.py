"""The prediction log of a real `dealcast serve`: every answered deal, as Parquet by day."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow.dataset as ds
import pytest

from models.prediction_log import FEATURE_PREFIX, feature_hash
from tests.integration.conftest import API_KEY, Registry
from tests.integration.test_service_uvicorn import start_serve


def _serve(registry: Registry, tmp_path: Path, log: Path) -> tuple[subprocess.Popen[str], str]:
    return start_serve(registry, tmp_path, DEALCAST_PREDICTION_LOG=str(log))


@pytest.fixture
def logged(registry: Registry, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    log = tmp_path / "predictions"
    process, base = _serve(registry, tmp_path, log)
    try:
        yield process, base, log
    finally:
        process.terminate()
        process.communicate(timeout=60)


def _rows(log: Path, want: int, seconds: float = 20.0) -> list[dict[str, object]]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        files = sorted(log.glob("*/*.parquet"))
        if files:
            rows = ds.dataset([str(f) for f in files], format="parquet").to_table().to_pylist()
            if len(rows) >= want:
                return rows
        time.sleep(0.2)
    raise AssertionError(f"fewer than {want} rows logged in {seconds} s under {log}")


def test_every_answered_deal_is_logged_with_its_features(
    registry: Registry, logged: tuple[subprocess.Popen[str], str, Path]
) -> None:
    _, base, log = logged
    deals = registry.deals(5)
    answers = []
    with httpx.Client(base_url=base, headers={"X-API-Key": API_KEY}, timeout=30) as client:
        for body in ({"deals": deals[:3]}, {"deals": deals[3:], "explain": False}):
            response = client.post("/v1/score", json=body)
            assert response.status_code == 200, response.text
            answers += response.json()["scores"]
        # A refused request logs nothing.
        assert (
            client.post("/v1/score", json={"deals": [{"opportunity_id": "x"}]}).status_code == 422
        )
    rows = _rows(log, 5)
    assert len(rows) == 5
    by_id = {row["opportunity_id"]: row for row in rows}
    assert set(by_id) == {deal["opportunity_id"] for deal in deals}
    model = httpx.get(f"{base}/v1/model", headers={"X-API-Key": API_KEY}).json()
    for answer in answers:
        row = by_id[answer["opportunity_id"]]
        assert row["win_probability"] == answer["win_probability"]
        assert row["win_in_period_probability"] == answer["win_in_period_probability"]
        assert row["model_version"] == model["version"]
        assert row["model_name"] == model["name"] and row["model_uri"] == model["uri"]
        assert row["mode"] == answer["mode"]
        for name, p in answer["baselines"].items():
            if p is not None:
                assert row[f"baseline_{name}"] == p
        features = {
            key[len(FEATURE_PREFIX) :]: value
            for key, value in row.items()
            if key.startswith(FEATURE_PREFIX)
        }
        assert len(features) > 40
        sent = next(d for d in deals if d["opportunity_id"] == answer["opportunity_id"])
        last = max(sent["history"], key=lambda h: h["changed_at"])
        assert features["stage"] == last["stage"]
        assert row["feature_hash"] == feature_hash(features)
    # Files sit in a folder per day of logging, and are whole Parquet files.
    assert all(len(path.parent.name) == 10 for path in log.glob("*/*.parquet"))
    assert not list(log.glob("*/*.tmp"))


def test_a_log_that_cannot_be_written_never_fails_a_request(
    registry: Registry, tmp_path: Path
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the log folder should be")
    process, base = _serve(registry, tmp_path, blocked)
    try:
        with httpx.Client(base_url=base, headers={"X-API-Key": API_KEY}, timeout=30) as client:
            for deal in registry.deals(3):
                assert client.post("/v1/score", json={"deals": [deal]}).status_code == 200
        time.sleep(2.5)  # past a flush
    finally:
        process.terminate()
        output = process.communicate(timeout=60)[0]
    assert "prediction log: could not write" in output
