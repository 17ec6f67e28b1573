"""A small written world and a private MLflow store per test: training runs for real."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from features.synthetic import generate_world, write_world


@pytest.fixture(scope="session")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world") / "export"
    write_world(generate_world(n_opportunities=3000, seed=5), out)
    return out


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An embedded store of the test's own (the default store lives in the working dir)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield tmp_path
