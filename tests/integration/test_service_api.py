"""Every endpoint and every error of the service, through FastAPI's TestClient, on a real
trained model."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from models.scoring import DealScore
from serving.app import create_app
from tests.integration.conftest import API_KEY, OTHER_KEY, Registry, service_settings


def strict_json(text: str) -> Any:
    """Parse as the wire must be: NaN and infinities are not JSON."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"non-finite number {constant} on the wire")

    return json.loads(text, parse_constant=refuse)


def problem_paths(response: Any) -> set[str]:
    body = strict_json(response.text)
    return {problem["path"] for problem in body["problems"]}


def as_of_after(deals: list[dict[str, Any]]) -> str:
    """A time after every row of `deals` (the end of the synthetic world)."""
    stamps = [row["changed_at"] for d in deals for row in d["history"]]
    stamps += [row["occurred_at"] for d in deals for row in d["activities"]]
    return max(stamps)


# --------------------------------------------------------------------------- open routes


def test_health_is_open(client: TestClient) -> None:
    response = client.get("/health", headers={"X-API-Key": ""})
    assert response.status_code == 200
    assert response.json() == {"status": "alive"}


def test_ready_is_open_and_checks_the_golden_deal(client: TestClient, registry: Registry) -> None:
    response = client.get("/ready", headers={"X-API-Key": ""})
    assert response.status_code == 200
    body = response.json()
    assert body["ready"] is True
    assert body["model"] == {"name": "dealcast", "version": registry.version}


def test_docs_and_openapi_are_open_with_examples(client: TestClient) -> None:
    assert client.get("/docs", headers={"X-API-Key": ""}).status_code == 200
    schema = client.get("/openapi.json", headers={"X-API-Key": ""}).json()
    for path in ("/v1/score", "/v1/attainment"):
        content = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        assert content["examples"]
        assert "422" in schema["paths"][path]["post"]["responses"]
    assert {"bearer", "api_key"} <= set(schema["components"]["securitySchemes"])


def test_the_documented_example_scores(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    content = schema["paths"]["/v1/score"]["post"]["requestBody"]["content"]["application/json"]
    for example in content["examples"].values():
        response = client.post("/v1/score", json=example["value"])
        assert response.status_code == 200, response.text


# --------------------------------------------------------------------------- /v1/model


def test_model_info(client: TestClient, registry: Registry) -> None:
    body = client.get("/v1/model").json()
    assert body["name"] == "dealcast"
    assert body["version"] == registry.version
    assert body["uri"] == f"models:/dealcast/{registry.version}"
    assert body["run_id"]
    assert body["trained_at"]
    assert pd.Timestamp(body["data_window"]["end"]) <= registry.end
    assert body["backtest"]["deal.model.brier"] > 0
    assert "Closed Won" in body["stages"]


# --------------------------------------------------------------------------- /v1/score


def test_score_one_deal_explained(client: TestClient, open_deals: list[dict[str, Any]]) -> None:
    deal = open_deals[0]
    response = client.post("/v1/score", json={"deals": [deal], "top_k": 3})
    assert response.status_code == 200, response.text
    body = strict_json(response.text)
    (score,) = body["scores"]
    assert score["opportunity_id"] == deal["opportunity_id"]
    for name in ("win_probability", "win_in_period_probability"):
        interval = (
            score[f"{name}_interval"]
            if name == "win_probability"
            else score["win_in_period_interval"]
        )
        assert 0 <= interval["low"] <= score[name] <= interval["high"] <= 1
    assert score["win_in_period_probability"] <= score["win_probability"] + 1e-12
    assert set(score["baselines"]) == {
        "stage_weight_crm",
        "stage_weight_empirical",
        "commit",
        "manual_weight",  # the manager's typed probability, null where none is typed
    }
    typed = max(deal["history"], key=lambda row: pd.Timestamp(row["changed_at"])).get(
        "manual_probability"
    )  # the row in force now
    if typed is None:
        assert score["baselines"]["manual_weight"] is None
    else:
        assert score["baselines"]["manual_weight"] == pytest.approx(typed / 100.0)
    assert score["grade"] in {"A", "B", "C", "D", "E"}
    assert score["risk_level"] in {"high", "medium", "low"}
    assert 1 <= len(score["drivers"]) <= 3
    driver = score["drivers"][0]
    assert {"factor", "feature", "value", "contribution", "sentence"} <= set(driver)
    assert [window["days"] for window in score["trend"]] == [7, 30]
    assert len(score["actions"]) <= 3
    for action in score["actions"]:
        assert action["delta_probability"] > 0
        assert {"lever", "text", "expected_value"} <= set(action)
    assert "associations" in score["actions_disclaimer"]
    assert score["model"] == body["model"]
    assert score["model"]["version"]


def test_drivers_reconcile_with_the_served_probability_for_every_deal(
    client: TestClient, open_deals: list[dict[str, Any]]
) -> None:
    # What a client can check: base + the factors' contributions is the margin, and the
    # stated link maps it to win_probability, for every deal (not only the top drivers).
    response = client.post("/v1/score", json={"deals": open_deals[:60], "top_k": 3})
    assert response.status_code == 200, response.text
    for score in strict_json(response.text)["scores"]:
        explained = score["explanation"]
        margin = explained["base_value"] + sum(f["contribution"] for f in score["factors"])
        assert margin == pytest.approx(explained["margin"], abs=1e-9)
        clipped = min(max(margin, -13.8155), 13.8155)
        p = 1.0 / (1.0 + math.exp(-(explained["scale"] * clipped + explained["shift"])))
        p = min(max(p, explained["floor"]), 1.0 - explained["floor"])
        assert p == pytest.approx(score["win_probability"], abs=1e-9)
        assert "base_value" in explained["formula"]


def test_score_batch_in_order_without_explanations(
    client: TestClient, open_deals: list[dict[str, Any]]
) -> None:
    deals = open_deals[:40]
    response = client.post("/v1/score", json={"deals": deals, "explain": False})
    assert response.status_code == 200, response.text
    scores = strict_json(response.text)["scores"]
    assert [s["opportunity_id"] for s in scores] == [d["opportunity_id"] for d in deals]
    assert all(s["drivers"] == [] and s["actions"] == [] and s["trend"] == [] for s in scores)
    assert all(s["explanation"] is None for s in scores)


def test_as_of_per_request_and_per_deal(
    client: TestClient, open_deals: list[dict[str, Any]]
) -> None:
    first, second = copy.deepcopy(open_deals[:2])
    when = as_of_after([first, second])
    later = "2027-01-05T00:00:00+00:00"
    second["as_of"] = later
    response = client.post("/v1/score", json={"deals": [first, second], "as_of": when})
    assert response.status_code == 200, response.text
    scores = response.json()["scores"]
    assert scores[0]["as_of"].startswith(when[:19])
    assert scores[1]["as_of"].startswith(later[:19])


def test_unknown_activity_types_are_accepted(
    client: TestClient, open_deals: list[dict[str, Any]]
) -> None:
    deal = copy.deepcopy(open_deals[0])
    deal["activities"].append(
        {"occurred_at": deal["history"][-1]["changed_at"], "type": "webinar", "contact_role": None}
    )
    response = client.post("/v1/score", json={"deals": [deal], "explain": False})
    assert response.status_code == 200, response.text


# --------------------------------------------------------------------------- auth


def test_missing_key_is_401_with_challenge(client: TestClient, open_deals: list) -> None:
    response = client.post("/v1/score", json={"deals": open_deals[:1]}, headers={"X-API-Key": ""})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"] == "unauthorized"


@pytest.mark.parametrize(
    "headers",
    [
        {"X-API-Key": "wrong"},
        {"X-API-Key": "", "Authorization": "Bearer wrong"},
        {"X-API-Key": "", "Authorization": f"Basic {API_KEY}"},
        {"X-API-Key": API_KEY + "x"},
    ],
)
def test_wrong_key_is_401(client: TestClient, headers: dict[str, str]) -> None:
    for path in ("/v1/model",):
        response = client.get(path, headers=headers)
        assert response.status_code == 401, headers
        assert API_KEY not in response.text


@pytest.mark.parametrize(
    "headers",
    [
        {"X-API-Key": API_KEY},
        {"X-API-Key": OTHER_KEY},
        {"X-API-Key": "", "Authorization": f"Bearer {API_KEY}"},
    ],
)
def test_valid_keys(client: TestClient, headers: dict[str, str]) -> None:
    assert client.get("/v1/model", headers=headers).status_code == 200


def test_every_v1_route_needs_a_key(client: TestClient) -> None:
    for method, path in (("post", "/v1/score"), ("post", "/v1/attainment"), ("get", "/v1/model")):
        response = client.request(method, path, headers={"X-API-Key": ""}, json={})
        assert response.status_code == 401, path


def test_keys_never_logged(
    client: TestClient, open_deals: list, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    client.post("/v1/score", json={"deals": open_deals[:1]}, headers={"X-API-Key": "nope-key"})
    client.post("/v1/score", json={"deals": open_deals[:1]})
    assert API_KEY not in caplog.text and "nope-key" not in caplog.text


# --------------------------------------------------------------------------- other apps


@pytest.fixture(scope="module")
def small_client(registry: Registry) -> Iterator[TestClient]:
    """A deployment with tight limits (4 KiB bodies, 2 deals) and authentication off."""
    settings = service_settings(
        registry,
        model_uri=f"models:/dealcast/{registry.version}",
        api_keys="",
        auth="off",
        max_body_bytes=64 * 1024,
        max_batch=2,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as test:
        yield test


def test_auth_off_serves_without_key(small_client: TestClient, open_deals: list) -> None:
    response = small_client.post("/v1/score", json={"deals": open_deals[:1], "explain": False})
    assert response.status_code == 200, response.text


def test_body_over_limit_is_413(small_client: TestClient, open_deals: list) -> None:
    big = {"deals": open_deals[:1], "padding": "x" * 70_000}
    response = small_client.post("/v1/score", json=big)
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"


def test_streamed_body_over_limit_is_413(small_client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"deals": ['
        for _ in range(100):
            yield b" " * 1024
        yield b"]}"

    response = small_client.post(
        "/v1/score", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


def test_batch_over_limit_is_413(small_client: TestClient, open_deals: list) -> None:
    response = small_client.post("/v1/score", json={"deals": open_deals[:3], "explain": False})
    assert response.status_code == 413
    assert response.json()["error"] == "too_many_deals"
    assert problem_paths(response) == {"deals"}


def test_unloadable_model_is_503_but_alive(registry: Registry) -> None:
    settings = service_settings(registry, model_uri="models:/no-such-model@champion")
    with TestClient(create_app(settings), headers={"X-API-Key": API_KEY}) as test:
        assert test.get("/health").status_code == 200
        ready = test.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["ready"] is False
        assert "no-such-model" in ready.json()["reason"]
        assert test.get("/v1/model").status_code == 503
        response = test.post("/v1/score", json={"deals": []})
        assert response.status_code in (422, 503)


# --------------------------------------------------------------------------- 422


def _edit(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set (or with value=KeyError, delete) a dotted path like history.0.amount."""

    def apply(deal: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = deal
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        key: Any = int(last) if last.isdigit() else last
        if value is KeyError:
            del target[key]
        else:
            target[key] = value

    return apply


INVALID_DEALS = [
    ("missing field", _edit("opportunity_id", KeyError), "deals[0].opportunity_id"),
    ("wrong type", _edit("history.0.amount", "a lot"), "deals[0].history[0].amount"),
    ("negative amount", _edit("history.0.amount", -5.0), "deals[0].history[0].amount"),
    ("infinite amount", _edit("history.0.amount", math.inf), "deals[0].history[0].amount"),
    (
        "NaN probability",
        _edit("history.0.probability", math.nan),
        "deals[0].history[0].probability",
    ),
    ("probability > 100", _edit("history.0.probability", 120), "deals[0].history[0].probability"),
    ("NaN extra attribute", _edit("account.employees", math.nan), "deals[0].account.employees"),
    (
        "unparsable date",
        _edit("history.0.close_date", "31/03/2026"),
        "deals[0].history[0].close_date",
    ),
    ("date as number", _edit("created_at", 1700000000), "deals[0].created_at"),
    (
        "year 9999",
        _edit("activities.0.occurred_at", "9999-01-01"),
        "deals[0].activities[0].occurred_at",
    ),
    (
        "before year 1 in UTC",
        _edit("created_at", "0001-01-01T00:00:00+00:01"),
        "deals[0].created_at",
    ),
    ("unknown stage", _edit("history.0.stage", "Closed Maybe"), "deals[0].history[0].stage"),
    (
        "unknown category",
        _edit("history.0.forecast_category", "Hopeful"),
        "deals[0].history[0].forecast_category",
    ),
    ("bad currency", _edit("history.0.currency", "dollars"), "deals[0].history[0].currency"),
    ("no history", _edit("history", []), "deals[0].history"),
    ("empty id", _edit("opportunity_id", ""), "deals[0].opportunity_id"),
    (
        "history before creation",
        _edit("history.0.changed_at", "2001-01-01T00:00:00Z"),
        "deals[0].history[0].changed_at",
    ),
]


@pytest.mark.parametrize(
    ("case", "damage", "path"), INVALID_DEALS, ids=[c[0] for c in INVALID_DEALS]
)
def test_invalid_deal_is_422_with_its_path(
    client: TestClient,
    open_deals: list[dict[str, Any]],
    case: str,
    damage: Callable[[dict[str, Any]], None],
    path: str,
) -> None:
    deal = copy.deepcopy(open_deals[1])
    deal.setdefault("account", {})
    if not deal["activities"]:
        deal["activities"] = [{"occurred_at": deal["created_at"], "type": "call"}]
    damage(deal)
    body = json.dumps({"deals": [deal], "explain": False, "as_of": as_of_after(open_deals)})
    response = client.post("/v1/score", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_request"
    assert path in problem_paths(response), response.text


def test_unknown_stage_names_the_model_stages(client: TestClient, open_deals: list) -> None:
    deal = copy.deepcopy(open_deals[0])
    deal["history"][-1]["stage"] = "Closed Maybe"
    response = client.post("/v1/score", json={"deals": [deal]})
    (problem,) = response.json()["problems"]
    assert "Prospecting" in problem["message"] and "Closed Won" in problem["message"]


def test_history_after_as_of_is_422(client: TestClient, open_deals: list) -> None:
    deal = open_deals[0]
    before = deal["history"][-1]["changed_at"][:10] + "T00:00:00Z"
    response = client.post("/v1/score", json={"deals": [deal], "as_of": before})
    assert response.status_code == 422
    assert any(p.startswith("deals[0].history") for p in problem_paths(response))


def test_closed_deal_is_422(client: TestClient, registry: Registry, open_deals: list) -> None:
    deal = copy.deepcopy(open_deals[0])
    last = dict(deal["history"][-1])
    last["stage"] = "Closed Won"
    last["changed_at"] = as_of_after(open_deals)
    deal["history"].append(last)
    response = client.post("/v1/score", json={"deals": [deal]})
    assert response.status_code == 422
    assert "closed" in response.text


def test_mixed_currencies_are_422(client: TestClient, open_deals: list) -> None:
    first, second = copy.deepcopy(open_deals[:2])
    second["history"][0]["currency"] = "EUR"
    first["history"][0]["currency"] = "USD"
    response = client.post("/v1/score", json={"deals": [first, second]})
    assert response.status_code == 422
    assert "deals[1].history[0].currency" in problem_paths(response)


def test_conflicting_rows_at_one_time_are_422(client: TestClient, open_deals: list) -> None:
    deal = copy.deepcopy(open_deals[0])
    twin = dict(deal["history"][0], amount=deal["history"][0]["amount"] + 1)
    deal["history"].append(twin)
    response = client.post("/v1/score", json={"deals": [deal]})
    assert response.status_code == 422
    assert f"deals[0].history[{len(deal['history']) - 1}].changed_at" in problem_paths(response)


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"deals": []}, "deals"),
        ({}, "deals"),
        ({"deals": "many"}, "deals"),
        ({"deals": [{}], "top_k": 0}, "top_k"),
        ({"deals": [{}], "explian": True}, "explian"),
        ([1, 2], "body"),
    ],
)
def test_invalid_envelope_is_422(client: TestClient, body: Any, path: str) -> None:
    response = client.post("/v1/score", json=body)
    assert response.status_code == 422, response.text
    assert path in problem_paths(response)


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b'{"deals": [', b"", b"[" * 100_000, b'{"deals": ["\\ud800"]}'],
)
def test_malformed_bodies_are_4xx(client: TestClient, raw: bytes) -> None:
    response = client.post("/v1/score", content=raw, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500, response.text


def test_lone_surrogate_in_text_is_422(client: TestClient, open_deals: list) -> None:
    deal = copy.deepcopy(open_deals[0])
    deal["type"] = "\ud800"
    body = json.dumps({"deals": [deal]})  # ASCII escapes: the JSON is valid, the text is not
    response = client.post("/v1/score", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert "deals[0].type" in problem_paths(response)


# --------------------------------------------------------------------------- model faults


def test_non_finite_model_output_never_reaches_the_wire(
    client: TestClient, open_deals: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    scorer = client.app.state.store.current.scorer  # type: ignore[attr-defined]
    real = scorer.score

    def poisoned(*args: Any, **kwargs: Any) -> list[DealScore]:
        scores = real(*args, **kwargs)
        scores[0].win_probability = math.nan
        return scores

    monkeypatch.setattr(scorer, "score", poisoned)
    response = client.post("/v1/score", json={"deals": open_deals[:1]})
    assert response.status_code == 500
    body = strict_json(response.text)
    assert body["error"] == "model_output_invalid"
    assert "scores[0].win_probability" in body["message"]


def test_optional_non_finite_numbers_become_null(
    client: TestClient, open_deals: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    scorer = client.app.state.store.current.scorer  # type: ignore[attr-defined]
    real = scorer.score

    def unknown_values(*args: Any, **kwargs: Any) -> list[DealScore]:
        scores = real(*args, **kwargs)
        score = scores[0]
        score.drivers = tuple(dataclasses.replace(d, value=math.inf) for d in score.drivers)
        score.trend = tuple(dataclasses.replace(w, change=math.nan) for w in score.trend)
        return scores

    monkeypatch.setattr(scorer, "score", unknown_values)
    response = client.post("/v1/score", json={"deals": open_deals[:1]})
    assert response.status_code == 200
    score = strict_json(response.text)["scores"][0]
    assert all(d["value"] is None for d in score["drivers"])
    assert all(w["change"] is None for w in score["trend"])


def test_unexpected_fault_is_a_plain_500(
    client: TestClient, open_deals: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    scorer = client.app.state.store.current.scorer  # type: ignore[attr-defined]

    def broken(*args: Any, **kwargs: Any) -> list[DealScore]:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(scorer, "score", broken)
    response = client.post("/v1/score", json={"deals": open_deals[:1]})
    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"
    assert "secret internals" not in response.text


# --------------------------------------------------------------------------- /v1/attainment


def _pipeline(open_deals: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    team = open_deals[0]["owner"]["team"]
    return team, [d for d in open_deals if d["owner"]["team"] == team]


def _period(when: str) -> str:
    month = int(when[5:7])
    return f"{when[:4]}-Q{(month - 1) // 3 + 1}"


def test_attainment_of_a_team(client: TestClient, open_deals: list) -> None:
    team, deals = _pipeline(open_deals)
    when = as_of_after(open_deals)
    body = {
        "period": _period(when),
        "quota": 3_000_000.0,
        "won_to_date": 800_000.0,
        "team": team,
        "as_of": when,
        "deals": deals,
    }
    response = client.post("/v1/attainment", json=body)
    assert response.status_code == 200, response.text
    result = strict_json(response.text)
    interval = result["p_attain_interval"]
    assert 0 <= interval["low"] <= result["p_attain"] <= interval["high"] <= 1
    assert result["p10"] <= result["p50"] <= result["p90"]
    assert result["status"] in {"green", "yellow", "red"} and result["status_reason"]
    assert result["remaining_quota"] == pytest.approx(2_200_000.0)
    assert result["coverage"] >= 0 and result["pipeline_needed"] >= 0
    assert set(result["baselines"]) == {
        "stage_weight_crm",
        "stage_weight_empirical",
        "commit",
        "model",
        "manual_weight",  # null when no open deal carries a typed probability
    }
    ids = {d["opportunity_id"] for d in deals}
    for deal in result["at_risk"]:
        assert deal["opportunity_id"] in ids
        assert deal["risk_level"] != "low" and deal["risk_flags"]
        assert len(deal["drivers"]) <= 3
    assert result["model"]["version"]


def test_attainment_of_a_rep_with_an_empty_pipeline(client: TestClient, open_deals: list) -> None:
    when = as_of_after(open_deals)
    body = {
        "period": _period(when),
        "quota": 500_000.0,
        "won_to_date": 100_000.0,
        "owner_id": "REP-001",
        "as_of": when,
        "deals": [],
    }
    response = client.post("/v1/attainment", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["at_risk"] == []


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"team": None, "owner_id": None}, "team"),
        ({"owner_id": "REP-001"}, "team"),
        ({"period": "2019-Q1"}, "period"),
        ({"period": "2026-Q5"}, "period"),
        ({"quota": 0}, "quota"),
        ({"won_to_date": -1}, "won_to_date"),
    ],
)
def test_invalid_attainment_is_422(
    client: TestClient, open_deals: list, change: dict[str, Any], path: str
) -> None:
    team, deals = _pipeline(open_deals)
    when = as_of_after(open_deals)
    body = {
        "period": _period(when),
        "quota": 1e6,
        "won_to_date": 0.0,
        "team": team,
        "as_of": when,
        "deals": deals[:2],
    }
    body.update(change)
    response = client.post("/v1/attainment", json=body)
    assert response.status_code == 422, response.text
    assert path in problem_paths(response)


def test_attainment_deals_must_belong_to_the_rep(client: TestClient, open_deals: list) -> None:
    when = as_of_after(open_deals)
    deals = copy.deepcopy(open_deals[:2])
    deals[1]["owner_id"] = "SOMEONE-ELSE"
    deals[0]["as_of"] = when
    body = {
        "period": _period(when),
        "quota": 1e6,
        "won_to_date": 0.0,
        "owner_id": deals[0]["owner_id"],
        "as_of": when,
        "deals": deals,
    }
    response = client.post("/v1/attainment", json=body)
    assert response.status_code == 422
    assert {"deals[1].owner_id", "deals[0].as_of"} <= problem_paths(response)
