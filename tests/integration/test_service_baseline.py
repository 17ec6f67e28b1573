"""The service on a baseline champion: a young org whose first model failed the gate.

`dealcast train` then registers the baseline forecaster (models.baseline_model) as champion,
and the service loads it through the same alias, pyfunc and Scorer as a model: every answer
says mode "baseline" and is the stage's historical win rate.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from features.synthetic import generate_world, write_world
from serving.app import create_app
from tests.integration.conftest import API_KEY, Registry, _open_ids, service_settings
from tests.training.test_train_registry import NOTHING_LEARNED


@pytest.fixture(scope="module")
def baseline_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    from training.train import train

    root = tmp_path_factory.mktemp("baseline-store")
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
        patch.chdir(root)
        world = generate_world(n_opportunities=600, seed=4, months=9)
        write_world(world, root / "world")
        outcome = train(root / "world", config=NOTHING_LEARNED)
        assert outcome.baseline_version, (
            f"premise: the young org's model fails the gate; {outcome.gate}"
        )
        closed = set(world.stages.won_stages) | set(world.stages.lost_stages)
        yield Registry(
            root=root,
            tracking_uri=tracking_uri,
            tables=world.tables,
            open_ids=_open_ids(world.tables, closed),
            end=world.end,
            version=outcome.baseline_version,
        )


@pytest.fixture(scope="module")
def baseline_client(baseline_registry: Registry) -> Iterator[TestClient]:
    """The service on `models:/dealcast@champion`, as deployed by default."""
    app = create_app(service_settings(baseline_registry))
    with TestClient(app, headers={"X-API-Key": API_KEY}, raise_server_exceptions=False) as test:
        yield test


def test_score_answers_mode_baseline(
    baseline_client: TestClient, baseline_registry: Registry
) -> None:
    deals: list[dict[str, Any]] = baseline_registry.deals(5)
    as_of = baseline_registry.end.isoformat()
    response = baseline_client.post("/v1/score", json={"deals": deals, "as_of": as_of})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"]["version"] == baseline_registry.version
    for score in body["scores"]:
        assert score["mode"] == "baseline"
        # The probability is the empirical stage weight, with a real interval around it.
        assert score["win_probability"] == pytest.approx(
            score["baselines"]["stage_weight_empirical"]
        )
        interval = score["win_probability_interval"]
        assert 0 < interval["low"] < score["win_probability"] < interval["high"] < 1
        # Drivers: the stage only, and it reconciles with the rate; no action is invented.
        assert [d["feature"] for d in score["drivers"]] == ["stage"]
        assert "historical rate" in score["drivers"][0]["sentence"]
        assert [f["factor"] for f in score["factors"]] == [score["drivers"][0]["factor"]]
        assert score["actions"] == []
        assert len(score["trend"]) == 2
        assert any(w.startswith("baseline mode") for w in score["warnings"])


def test_model_info_says_baseline(baseline_client: TestClient, baseline_registry: Registry) -> None:
    body = baseline_client.get("/v1/model").json()
    assert body["mode"] == "baseline"
    assert body["version"] == baseline_registry.version
    assert baseline_client.get("/ready").status_code == 200
