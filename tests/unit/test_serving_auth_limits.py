"""API-key comparison, error paths and the body-size middleware, without a model."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import SecretStr

from serving.auth import key_matches
from serving.errors import field_path
from serving.limits import BodySizeLimit


def test_key_matches_any_configured_key() -> None:
    keys = (SecretStr("alpha"), SecretStr("beta"))
    assert key_matches("alpha", keys)
    assert key_matches("beta", keys)
    assert not key_matches("alph", keys)
    assert not key_matches("", keys)
    assert not key_matches("alpha", ())
    assert not key_matches("ключ", keys)  # non-ASCII keys compare as bytes, no TypeError


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        (("body", "deals", 0, "history", 2, "amount"), "deals[0].history[2].amount"),
        (("body",), "body"),
        (("body", "quota"), "quota"),
        (("query", "top_k"), "top_k"),
    ],
)
def test_field_path(loc: tuple[Any, ...], path: str) -> None:
    assert field_path(loc) == path


@pytest.fixture
def echo() -> TestClient:
    app = FastAPI()

    @app.post("/echo")
    async def echo_body(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    app.add_middleware(BodySizeLimit, max_body_bytes=1024, body_timeout_seconds=10)
    return TestClient(app)


def test_body_within_limit_is_passed_whole(echo: TestClient) -> None:
    assert echo.post("/echo", content=b"x" * 1024).json() == {"size": 1024}


def test_declared_length_over_limit_is_refused(echo: TestClient) -> None:
    response = echo.post("/echo", content=b"x" * 1025)
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"


def test_streamed_body_over_limit_is_refused(echo: TestClient) -> None:
    response = echo.post("/echo", content=iter([b"x" * 600, b"y" * 600]))
    assert response.status_code == 413


def test_streamed_body_within_limit_is_passed(echo: TestClient) -> None:
    assert echo.post("/echo", content=iter([b"x" * 500, b"y" * 500])).json() == {"size": 1000}
