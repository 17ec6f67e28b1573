"""Who may call: every /v1 route refuses a caller without credentials, a key limited to one
team is refused (403, the shared error shape) on every route that reaches another team's
numbers, and a key sent in a query string stays out of a real uvicorn's access log.

The service runs on the session's trained model (`conftest.registry`) with the world's export
as DEALCAST_DATA_DIR. Its two teams are `MINE` (the scoped key's) and `THEIRS`.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from features.loading import load_export
from features.payload import deals_as_payloads
from serving.app import create_app
from serving.keys import key_digest
from serving.page import teams_of
from serving.sessions import (
    LINK_AUDIENCE,
    SESSION_AUDIENCE,
    SESSION_COOKIE,
    grant_for,
    sign,
)
from tests.integration.conftest import API_KEY, Registry, service_settings
from tests.integration.test_service_api import as_of_after
from tests.integration.test_service_hardening import Service
from tests.integration.test_service_uvicorn import service_env

SCOPED_KEY = "scoped-key-emea-0123456789"
EVERY_TEAM_KEY = "every-team-file-key-0123456789"
PAGE_SECRET = "page-secret-for-tests-0123456789abcdef"
OPEN_ROUTES = {"/health", "/ready"}


@pytest.fixture(scope="module")
def teams(registry: Registry) -> tuple[str, str]:
    mine, theirs = teams_of(load_export(registry.root / "world"))[:2]
    return mine, theirs


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory: pytest.TempPathFactory, teams: tuple[str, str]) -> Path:
    path = tmp_path_factory.mktemp("keys") / "keys.toml"
    path.write_text(
        f'[[keys]]\nname = "crm-{teams[0]}"\nsha256 = "{key_digest(SCOPED_KEY)}"\n'
        f"teams = [{teams[0]!r}]\n\n"
        f'[[keys]]\nsha256 = "{key_digest(EVERY_TEAM_KEY)}"\nteams = "*"\n'
    )
    return path


@pytest.fixture(scope="module")
def scoped_client(registry: Registry, keys_file: Path) -> Iterator[TestClient]:
    settings = service_settings(
        registry,
        model_uri=f"models:/dealcast/{registry.version}",
        data_dir=registry.root / "world",
        keys_file=keys_file,
        page_secret=PAGE_SECRET,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as test:
        yield test


def _as(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def _deal_of(registry: Registry, team: str, skip: int = 0) -> dict[str, Any]:
    owners = registry.tables["owners"]
    reps = set(owners.loc[owners["team"] == team, "owner_id"].astype(str))
    opportunities = registry.tables["opportunities"].set_index("opportunity_id")["owner_id"]
    ids = [i for i in registry.open_ids if str(opportunities[i]) in reps]
    return deals_as_payloads(registry.tables, [ids[skip]])[0]


def _forbidden(response: httpx.Response, path: str | None = None) -> dict[str, Any]:
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["error"] == "forbidden" and body["message"]
    if path is not None:
        assert [p["path"] for p in body["problems"]] == [path], body
    return dict(body)


# --------------------------------------------------------------------------- no credentials


def test_every_v1_route_refuses_a_request_without_credentials(
    scoped_client: TestClient, teams: tuple[str, str]
) -> None:
    schema = scoped_client.get("/openapi.json").json()
    checked = []
    for path, operations in schema["paths"].items():
        if path in OPEN_ROUTES:
            continue
        assert path.startswith("/v1/"), f"{path} is neither open nor under /v1"
        url = path.replace("{team}", teams[0]).replace("{owner_id}", "REP-001")
        assert "{" not in url, f"{path}: a path parameter this test does not fill"
        for method in operations:
            response = scoped_client.request(method, url, json={})
            assert response.status_code == 401, f"{method.upper()} {path}: {response.text}"
            checked.append(f"{method.upper()} {path}")
    # The schema lists the routes this test is about; a new one is checked automatically.
    assert {
        "POST /v1/score",
        "POST /v1/attainment",
        "GET /v1/model",
        "GET /v1/teams/{team}/forecast",
        "GET /v1/teams/{team}/page",
        "GET /v1/teams/{team}/reps/{owner_id}/page",
        "POST /v1/page-links",
        "GET /v1/page-session",
        "GET /v1/pages",
    } <= set(checked)


def test_a_wrong_key_is_401_everywhere_a_key_is_taken(
    scoped_client: TestClient, teams: tuple[str, str]
) -> None:
    wrong = _as("not-a-key-of-this-service-000")
    for method, url in (
        ("get", "/v1/model"),
        ("get", f"/v1/teams/{teams[0]}/page"),
        ("get", f"/v1/teams/{teams[0]}/forecast"),
        ("get", "/v1/pages"),
        ("post", "/v1/page-links"),
    ):
        response = scoped_client.request(method, url, headers=wrong, json={"teams": [teams[0]]})
        assert response.status_code == 401, f"{url}: {response.text}"
        assert response.json()["error"] == "unauthorized"


# --------------------------------------------------------------------------- team routes


def test_a_scoped_key_opens_its_teams_page_and_forecast_only(
    scoped_client: TestClient, teams: tuple[str, str]
) -> None:
    mine, theirs = teams
    for route in ("page", "forecast"):
        allowed = scoped_client.get(f"/v1/teams/{mine}/{route}", headers=_as(SCOPED_KEY))
        assert allowed.status_code == 200, allowed.text
        refused = scoped_client.get(f"/v1/teams/{theirs}/{route}", headers=_as(SCOPED_KEY))
        body = _forbidden(refused, "team")
        assert theirs in body["message"]
        # Keys of every team (the clear DEALCAST_API_KEYS and a "*" entry) see both.
        for key in (API_KEY, EVERY_TEAM_KEY):
            response = scoped_client.get(f"/v1/teams/{theirs}/{route}", headers=_as(key))
            assert response.status_code == 200, response.text
    # A team the key does not know is refused before the service says whether it exists.
    _forbidden(scoped_client.get("/v1/teams/Nowhere/forecast", headers=_as(SCOPED_KEY)))
    # The bearer form is scoped the same way.
    bearer = {"Authorization": f"Bearer {SCOPED_KEY}"}
    assert scoped_client.get(f"/v1/teams/{theirs}/forecast", headers=bearer).status_code == 403


def test_the_index_lists_a_scoped_keys_teams(
    scoped_client: TestClient, teams: tuple[str, str]
) -> None:
    scoped = scoped_client.get("/v1/pages", headers=_as(SCOPED_KEY))
    assert scoped.status_code == 200, scoped.text
    assert re.findall(r"<li><a href=\"[^\"]+\">([^<]+)</a></li>", scoped.text) == [teams[0]]
    every = scoped_client.get("/v1/pages", headers=_as(API_KEY))
    assert re.findall(r"<li><a href=\"[^\"]+\">([^<]+)</a></li>", every.text) == sorted(teams)


# --------------------------------------------------------------------------- deals and reps


def test_score_refuses_deals_of_another_teams_reps(
    scoped_client: TestClient, registry: Registry, teams: tuple[str, str]
) -> None:
    mine, theirs = teams
    own, other = _deal_of(registry, mine), _deal_of(registry, theirs)
    allowed = scoped_client.post(
        "/v1/score", json={"deals": [own], "explain": False}, headers=_as(SCOPED_KEY)
    )
    assert allowed.status_code == 200, allowed.text
    refused = scoped_client.post(
        "/v1/score", json={"deals": [own, other], "explain": False}, headers=_as(SCOPED_KEY)
    )
    body = _forbidden(refused, "deals[1].owner_id")
    assert other["owner_id"] in body["problems"][0]["message"]
    # The model's reference data places the rep: renaming its team in the request is no way in.
    disguised = {**other, "owner": {**other["owner"], "team": mine}}
    _forbidden(
        scoped_client.post("/v1/score", json={"deals": [disguised]}, headers=_as(SCOPED_KEY)),
        "deals[0].owner_id",
    )
    # Nor is naming another team for one's own rep (the model would read that team's record).
    moved = {**own, "owner": {**own["owner"], "team": theirs}}
    _forbidden(
        scoped_client.post("/v1/score", json={"deals": [moved]}, headers=_as(SCOPED_KEY)),
        "deals[0].owner_id",
    )
    # A rep the service knows nowhere is a team of one, not one of the key's teams.
    stranger = {**own, "owner_id": "REP-NOBODY", "owner": {"region": "EMEA"}}
    _forbidden(
        scoped_client.post("/v1/score", json={"deals": [stranger]}, headers=_as(SCOPED_KEY)),
        "deals[0].owner_id",
    )
    every = scoped_client.post(
        "/v1/score", json={"deals": [own, other], "explain": False}, headers=_as(EVERY_TEAM_KEY)
    )
    assert every.status_code == 200, every.text


def test_attainment_refuses_another_teams_team_rep_and_deals(
    scoped_client: TestClient, registry: Registry, teams: tuple[str, str]
) -> None:
    mine, theirs = teams
    own, other = _deal_of(registry, mine), _deal_of(registry, theirs)
    when = as_of_after([own, other])
    period = f"{when[:4]}-Q{(int(when[5:7]) - 1) // 3 + 1}"
    base = {"period": period, "quota": 1_000_000.0, "won_to_date": 0.0, "as_of": when}

    def attainment(key: str, **body: Any) -> httpx.Response:
        return scoped_client.post(
            "/v1/attainment", json={**base, "explain": False, **body}, headers=_as(key)
        )

    assert attainment(SCOPED_KEY, team=mine, deals=[own]).status_code == 200
    assert attainment(SCOPED_KEY, owner_id=own["owner_id"], deals=[own]).status_code == 200
    _forbidden(attainment(SCOPED_KEY, team=theirs, deals=[other]), "team")
    _forbidden(attainment(SCOPED_KEY, owner_id=other["owner_id"], deals=[]), "owner_id")
    # A team of mine whose pipeline holds another team's deal.
    _forbidden(attainment(SCOPED_KEY, team=mine, deals=[own, other]), "deals[1].owner_id")
    for key in (API_KEY, EVERY_TEAM_KEY):
        assert attainment(key, team=theirs, deals=[other]).status_code == 200


def test_page_links_are_minted_for_the_keys_teams_only(
    scoped_client: TestClient, teams: tuple[str, str]
) -> None:
    mine, theirs = teams
    minted = scoped_client.post(
        "/v1/page-links", json={"teams": [mine], "hours": 2}, headers=_as(SCOPED_KEY)
    )
    assert minted.status_code == 200, minted.text
    link = minted.json()
    assert link["teams"] == [mine]
    assert link["url"].startswith("http://testserver/v1/page-session?token=")
    _forbidden(
        scoped_client.post(
            "/v1/page-links", json={"teams": [mine, theirs]}, headers=_as(SCOPED_KEY)
        ),
        "teams[1]",
    )
    both = scoped_client.post(
        "/v1/page-links", json={"teams": [mine, theirs]}, headers=_as(API_KEY)
    )
    assert both.status_code == 200 and both.json()["teams"] == [mine, theirs]
    # Client mistakes name the field.
    for body, field in (({"teams": []}, "teams"), ({"teams": [mine], "hours": 0}, "hours")):
        response = scoped_client.post("/v1/page-links", json=body, headers=_as(API_KEY))
        assert response.status_code == 422, response.text
        assert [p["path"] for p in response.json()["problems"]] == [field]


def test_a_session_cookie_opens_no_json_route(
    scoped_client: TestClient, teams: tuple[str, str]
) -> None:
    """JSON API routes take keys only: a browser's session does not call the API."""
    link = scoped_client.post(
        "/v1/page-links", json={"teams": [teams[0]]}, headers=_as(API_KEY)
    ).json()["url"]
    opened = scoped_client.get(link, follow_redirects=False)
    assert opened.status_code == 303
    cookie = {"Cookie": opened.headers["set-cookie"].split(";")[0]}
    assert scoped_client.get(f"/v1/teams/{teams[0]}/page", headers=cookie).status_code == 200
    for url in (f"/v1/teams/{teams[0]}/forecast", "/v1/model"):
        assert scoped_client.get(url, headers=cookie).status_code == 401, url
    response = scoped_client.post("/v1/page-links", json={"teams": [teams[0]]}, headers=cookie)
    assert response.status_code == 401


# --------------------------------------------------------------------------- a real uvicorn


def test_keys_in_query_strings_stay_out_of_the_access_log(
    registry: Registry, tmp_path: Path
) -> None:
    service = Service(registry, tmp_path)
    try:
        with httpx.Client(base_url=service.base, timeout=30) as http:
            assert http.get(f"/v1/model?api_key={API_KEY}").status_code == 401
            token = "/v1/page-session?token=eyJhbGciOi.secret-token.sig"
            assert http.get(token).status_code in (401, 404)
            assert http.get("/v1/model?as_of=2026-01-01&X-API-Key=" + API_KEY).status_code == 401
            assert http.get(f"/v1/model?{API_KEY}").status_code == 401
    finally:
        service.stop()
    output = service.output
    assert '"GET /v1/model?api_key=[redacted] HTTP/1.1" 401' in output, output
    assert "/v1/page-session?token=[redacted] HTTP/1.1" in output, output
    assert "/v1/model?as_of=2026-01-01&[redacted] HTTP/1.1" in output, output
    assert '"GET /v1/model?[redacted] HTTP/1.1" 401' in output, output
    assert API_KEY not in output and "secret-token" not in output


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"DEALCAST_API_KEYS": "short-key"}, "DEALCAST_API_KEYS"),
        ({"DEALCAST_AUTH": "off", "DEALCAST_API_KEYS": ""}, "DEALCAST_AUTH=off"),
        ({"DEALCAST_PAGE_SECRET": "too-short"}, "DEALCAST_PAGE_SECRET"),
        ({"DEALCAST_KEYS_FILE": "/nonexistent/keys.toml"}, "DEALCAST_KEYS_FILE"),
    ],
)
def test_weak_access_settings_refuse_to_start(
    registry: Registry, tmp_path: Path, env: dict[str, str], named: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dealcast", "serve", "--host", "0.0.0.0", "--port", "1"],
        env=service_env(registry, **env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert named in result.stderr
    assert "Traceback" not in result.stderr


def test_an_expired_or_forged_session_opens_no_page(
    scoped_client: TestClient, teams: tuple[str, str]
) -> None:
    url = f"/v1/teams/{teams[0]}/page"
    old = grant_for([teams[0]], hours=1, now=time.time() - 2 * 3600)
    fresh = grant_for([teams[0]], hours=1)
    for cookie, title in (
        (sign(old, secret=PAGE_SECRET, audience=SESSION_AUDIENCE), "Your sign-in has expired"),
        # A link's token is not a session, nor is a session signed with another secret.
        (sign(fresh, secret=PAGE_SECRET, audience=LINK_AUDIENCE), "Sign-in not valid"),
        (sign(fresh, secret="x" * 40, audience=SESSION_AUDIENCE), "Sign-in not valid"),
    ):
        response = scoped_client.get(url, headers={"Cookie": f"{SESSION_COOKIE}={cookie}"})
        assert response.status_code == 401, response.text
        assert response.headers["content-type"].startswith("text/html")
        assert f"<h1>{title}</h1>" in response.text
    valid = sign(fresh, secret=PAGE_SECRET, audience=SESSION_AUDIENCE)
    response = scoped_client.get(url, headers={"Cookie": f"{SESSION_COOKIE}={valid}"})
    assert response.status_code == 200, response.text
