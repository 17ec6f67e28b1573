"""The manager's page served by the service, behind its API key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from features.loading import load_export
from serving.app import create_app
from serving.page import teams_of
from tests.integration.conftest import API_KEY, Registry, service_settings


@pytest.fixture(scope="module")
def page_client(registry: Registry) -> Iterator[TestClient]:
    settings = service_settings(
        registry, model_uri=f"models:/dealcast/{registry.version}", data_dir=registry.root / "world"
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as test:
        yield test


def test_the_page_needs_a_key(page_client: TestClient, registry: Registry) -> None:
    team = teams_of(load_export(registry.root / "world"))[0]
    assert page_client.get(f"/v1/teams/{team}/page").status_code == 401


def test_the_page_is_served_self_contained(page_client: TestClient, registry: Registry) -> None:
    team = teams_of(load_export(registry.root / "world"))[0]
    response = page_client.get(f"/v1/teams/{team}/page", headers={"X-API-Key": API_KEY})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert team in response.text
    assert "http://" not in response.text and "https://" not in response.text


def test_an_unknown_team_is_a_clear_client_error(page_client: TestClient) -> None:
    response = page_client.get("/v1/teams/Nobody/page", headers={"X-API-Key": API_KEY})
    assert response.status_code == 422
    assert response.json()["problems"]


def test_without_an_export_the_page_says_what_is_missing(registry: Registry) -> None:
    settings = service_settings(registry, model_uri=f"models:/dealcast/{registry.version}")
    with TestClient(create_app(settings), raise_server_exceptions=False) as test:
        response = test.get("/v1/teams/East/page", headers={"X-API-Key": API_KEY})
    assert response.status_code == 404
    assert "DEALCAST_DATA_DIR" in response.json()["message"]
