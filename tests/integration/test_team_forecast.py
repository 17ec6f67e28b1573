"""`GET /v1/teams/{team}/forecast`, the page's embedded forecast and `/v1/attainment` agree.

The real app on the session's trained model (`conftest.registry`), over its HTTP interface:
for every team of the world, the page's embedded JSON is the route's answer, and
`/v1/attainment`, given the team's (or one rep's) open deals at as_of as the CRM would send
them, its quota and won to date, gives the same P(attain), interval, revenue quantiles,
status, coverage and gap. The open deals are found here from the raw history (last row at
or before as_of, an open stage), not by the code under test.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from features.loading import CrmExport, export_as_of, load_export
from models.team_quarter import deal_payloads, teams_of
from serving.app import create_app
from tests.integration.conftest import API_KEY, Registry, service_settings

QUARTER_KEYS = {
    "quota",
    "won_to_date",
    "p_attain",
    "p_attain_interval",
    "expected_revenue",
    "p10",
    "p50",
    "p90",
    "status",
    "coverage",
    "gap",
    "open_deals",
    "new_business",
}
COMPARED = ("p_attain", "expected_revenue", "p10", "p50", "p90", "status", "coverage")
GAP_FROM_ATTAINMENT = (
    "remaining_quota",
    "open_pipeline",
    "pipeline_in_period",
    "coverage",
    "coverage_status",
    "win_rate",
    "average_deal_size",
    "pipeline_needed",
    "still_needed",
    "won_deals_needed",
    "deals_needed",
)
DATA = re.compile(
    r'<script type="application/json" id="dealcast-forecast">(.*?)</script>', re.DOTALL
)


@pytest.fixture(scope="module")
def forecast_client(registry: Registry) -> Iterator[TestClient]:
    settings = service_settings(
        registry, model_uri=f"models:/dealcast/{registry.version}", data_dir=registry.root / "world"
    )
    with TestClient(
        create_app(settings), headers={"X-API-Key": API_KEY}, raise_server_exceptions=False
    ) as test:
        yield test


@pytest.fixture(scope="module")
def export(registry: Registry) -> CrmExport:
    return load_export(registry.root / "world")


def _open_ids(export: CrmExport, owners: set[str], when: pd.Timestamp) -> list[str]:
    history = export.history[export.history["changed_at"] <= when]
    last = history.sort_values("changed_at", kind="stable").groupby("opportunity_id").tail(1)
    deals = export.opportunities.set_index("opportunity_id")["owner_id"].astype(str)
    mine = last[
        last["stage"].isin(export.stages.open_stages)
        & last["opportunity_id"].map(deals).isin(owners)
    ]
    return sorted(mine["opportunity_id"].astype(str))


def _attainment(
    client: TestClient,
    export: CrmExport,
    forecast: dict[str, Any],
    quarter: dict[str, Any],
    *,
    owners: set[str],
    who: dict[str, str],
) -> dict[str, Any]:
    when = pd.Timestamp(forecast["as_of"])
    payloads = deal_payloads(export_as_of(export, when), _open_ids(export, owners, when))
    assert len(payloads) == quarter["open_deals"]
    body = {
        "period": forecast["period"],
        "quota": quarter["quota"],
        "won_to_date": quarter["won_to_date"],
        "as_of": forecast["as_of"],
        "deals": payloads,
        "explain": False,
        **who,
    }
    response = client.post("/v1/attainment", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _same(value: Any) -> Any:
    """Numbers to the last few bits (one implementation gives them), the rest exactly."""
    return pytest.approx(value, rel=1e-9, abs=1e-9) if isinstance(value, float) else value


def _agree(attainment: dict[str, Any], quarter: dict[str, Any], label: str) -> None:
    for key in COMPARED:
        assert attainment[key] == _same(quarter[key]), (label, key)
    for bound in ("low", "high"):
        assert attainment["p_attain_interval"][bound] == pytest.approx(
            quarter["p_attain_interval"][bound], rel=1e-9, abs=1e-9
        ), (label, bound)
    for key in GAP_FROM_ATTAINMENT:
        assert attainment["gap"][key] == _same(quarter["gap"][key]), (label, key)
    assert attainment["gap"]["process"] == []  # /v1/attainment has no activity history


def test_page_route_and_attainment_agree_for_every_team_and_rep(
    forecast_client: TestClient, export: CrmExport
) -> None:
    teams = teams_of(export)
    assert teams
    checked_reps = 0
    for team in teams:
        route = forecast_client.get(f"/v1/teams/{team}/forecast")
        assert route.status_code == 200, route.text
        forecast = route.json()
        assert set(forecast) == QUARTER_KEYS | {"team", "period", "as_of", "reps", "deal_flow"}
        page = forecast_client.get(f"/v1/teams/{team}/page")
        assert page.status_code == 200, page.text
        embedded = DATA.findall(page.text)
        assert len(embedded) == 1
        assert json.loads(embedded[0]) == forecast, team
        owners = set(export.owners.loc[export.owners["team"] == team, "owner_id"].astype(str))
        assert {r["owner_id"] for r in forecast["reps"]} == owners
        if forecast["quota"] is not None:
            _agree(
                _attainment(
                    forecast_client, export, forecast, forecast, owners=owners, who={"team": team}
                ),
                forecast,
                team,
            )
        for rep in forecast["reps"]:
            assert set(rep) == QUARTER_KEYS | {"owner_id"}
            if rep["quota"] is None:
                continue
            answer = _attainment(
                forecast_client,
                export,
                forecast,
                rep,
                owners={rep["owner_id"]},
                who={"owner_id": rep["owner_id"]},
            )
            _agree(answer, rep, rep["owner_id"])
            checked_reps += 1
        # Reps' new business is their share of the team's: it adds up.
        assert sum(r["new_business"] for r in forecast["reps"]) == pytest.approx(
            forecast["new_business"], rel=1e-6
        )
    assert checked_reps > 0


def test_the_forecast_carries_the_decomposition_and_the_deal_flow(
    forecast_client: TestClient, export: CrmExport
) -> None:
    team = teams_of(export)[0]
    forecast = forecast_client.get(f"/v1/teams/{team}/forecast").json()
    gap = forecast["gap"]
    assert gap["coverage_target"] == {"low": 3.0, "high": 5.0}
    assert gap["coverage"] == pytest.approx(
        min(gap["pipeline_in_period"] / gap["remaining_quota"], 100.0)
    )
    assert 0 < gap["win_rate"] < 1 and gap["average_deal_size"] > 0
    assert gap["won_deals_needed"] == pytest.approx(
        gap["remaining_quota"] / gap["average_deal_size"]
    )
    assert gap["deals_needed"] == pytest.approx(gap["won_deals_needed"] / gap["win_rate"])
    assert [t["activity"] for t in gap["process"]] == ["meeting", "call", "proposal"]
    for target in gap["process"]:
        if target["per_won_deal"] is not None:
            assert target["needed"] == pytest.approx(
                gap["won_deals_needed"] * target["per_won_deal"]
            )
    flow = forecast["deal_flow"]
    assert pd.Timestamp(flow["until"]) == pd.Timestamp(forecast["as_of"])
    assert pd.Timestamp(flow["since"]) == pd.Timestamp(forecast["as_of"]) - pd.Timedelta(days=7)
    for kind in ("new", "won", "lost", "pushed", "pulled_in"):
        assert flow[kind]["count"] == len(flow[kind]["deals"])
        assert flow[kind]["amount"] == pytest.approx(
            sum(d["amount"] or 0.0 for d in flow[kind]["deals"])
        )
    # A longer window holds at least what the week holds.
    since = (pd.Timestamp(forecast["as_of"]) - pd.Timedelta(days=30)).isoformat()
    longer = forecast_client.get(f"/v1/teams/{team}/forecast", params={"since": since}).json()
    for kind in ("new", "won", "lost"):
        assert longer["deal_flow"][kind]["count"] >= flow[kind]["count"]
    assert longer["p_attain"] == forecast["p_attain"]
    # The page shows the decomposition and process targets.
    page = forecast_client.get(f"/v1/teams/{team}/page").text
    assert 'data-testid="targets"' in page and "Meetings needed" in page
    assert html.escape(f"{gap['coverage']:.1f}× the remaining quota") in page


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/teams/Nobody/forecast", {}, "team"),
        ("/v1/teams/{team}/forecast", {"as_of": "not a time"}, "as_of"),
        ("/v1/teams/{team}/forecast", {"as_of": "1990-01-01"}, "as_of"),
        ("/v1/teams/{team}/forecast", {"as_of": "2150-01-01"}, "as_of"),
        ("/v1/teams/{team}/forecast", {"as_of": "0001-01-01T00:00:00+00:01"}, "as_of"),
        ("/v1/teams/{team}/forecast", {"since": "2150-01-01"}, "since"),
    ],
)
def test_client_mistakes_are_4xx_naming_the_field(
    forecast_client: TestClient, export: CrmExport, path: str, params: dict[str, str], field: str
) -> None:
    response = forecast_client.get(path.format(team=teams_of(export)[0]), params=params)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_request" and body["message"]
    assert field in {problem["path"] for problem in body["problems"]}


def test_the_forecast_needs_a_key(forecast_client: TestClient, export: CrmExport) -> None:
    team = teams_of(export)[0]
    response = forecast_client.get(f"/v1/teams/{team}/forecast", headers={"X-API-Key": ""})
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
