"""A real trained model in a temporary MLflow store, once per test session.

A small synthetic world is generated and written, `training.train.train` backtests, trains,
logs and registers it as `dealcast` with the alias `champion` (the tests may import
training; the service never does). Every integration test scores against that model.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from features.payload import deals_as_payloads
from features.synthetic import generate_world, write_world
from serving.app import create_app
from serving.settings import Settings

API_KEY = "test-key-0123456789"
OTHER_KEY = "second-key-abcdef"
WORLD_SEED = 7
WORLD_DEALS = 4000


@dataclass(frozen=True)
class Registry:
    root: Path
    tracking_uri: str
    tables: dict[str, pd.DataFrame]
    open_ids: list[str]
    end: pd.Timestamp
    version: str

    def deals(self, count: int) -> list[dict[str, Any]]:
        """`count` deals open at the end of the data, as a CRM would send them."""
        return deals_as_payloads(self.tables, self.open_ids[:count])


def _open_ids(tables: dict[str, pd.DataFrame], closed: set[str]) -> list[str]:
    history = tables["opportunity_history"].sort_values("changed_at")
    last = history.groupby("opportunity_id").tail(1)
    return sorted(last.loc[~last["stage"].isin(closed), "opportunity_id"].astype(str))


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    from training.backtest import BacktestConfig
    from training.train import TrainConfig, train

    # A developer may keep one trained store between runs: DEALCAST_TEST_STORE=DIR trains into
    # DIR once and reuses it afterwards. By default every session trains into a fresh tmp.
    kept = os.environ.get("DEALCAST_TEST_STORE")
    root = Path(kept) if kept else tmp_path_factory.mktemp("mlflow")
    root.mkdir(parents=True, exist_ok=True)
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
        # The embedded store puts artifacts in the working directory: keep them in the tmp.
        patch.chdir(root)
        world = generate_world(n_opportunities=WORLD_DEALS, seed=WORLD_SEED)
        trained = root / "trained-version"
        if kept and trained.exists():
            version = trained.read_text().strip()
        else:
            write_world(world, root / "world")
            config = TrainConfig(backtest=BacktestConfig(step="quarter", folds=2))
            outcome = train(root / "world", config=config)
            assert outcome.promoted, outcome.gate.summary
            version = outcome.version
            trained.write_text(version)
        closed = set(world.stages.won_stages) | set(world.stages.lost_stages)
        yield Registry(
            root=root,
            tracking_uri=tracking_uri,
            tables=world.tables,
            open_ids=_open_ids(world.tables, closed),
            end=world.end,
            version=version,
        )


def service_settings(registry: Registry, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "model_uri": "models:/dealcast@champion",
        "api_keys": f"{API_KEY},{OTHER_KEY}",
        "mlflow_tracking_uri": registry.tracking_uri,
        "alias_poll_seconds": 0.2,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def client(registry: Registry) -> Iterator[TestClient]:
    """The service on the champion, authenticated with a valid key by default."""
    app = create_app(service_settings(registry, model_uri=f"models:/dealcast/{registry.version}"))
    with TestClient(app, headers={"X-API-Key": API_KEY}, raise_server_exceptions=False) as test:
        yield test


@pytest.fixture(scope="session")
def open_deals(registry: Registry) -> list[dict[str, Any]]:
    return registry.deals(60)
