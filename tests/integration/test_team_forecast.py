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
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from features.config import FeatureConfig
from features.fiscal import quarter_bounds
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
    "forecasts",
    "review",
}
METHODS = ("model", "stage_weight_crm", "stage_weight_empirical", "commit", "manual_weight")
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
    # The forecast by method, manual_weight included (null for both when nobody typed).
    assert set(quarter["forecasts"]) == set(METHODS)
    for method in METHODS:
        assert attainment["baselines"][method] == _same(quarter["forecasts"][method]), (
            label,
            method,
        )


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


def _states(export: CrmExport, owners: set[str], when: pd.Timestamp) -> pd.DataFrame:
    """The owners' open deals' last history rows at or before `when`, from the raw history."""
    ids = _open_ids(export, owners, when)
    history = export.history[export.history["changed_at"] <= when]
    last = history.sort_values("changed_at", kind="stable").groupby("opportunity_id").tail(1)
    return last[last["opportunity_id"].astype(str).isin(ids)]


def test_the_managers_weight_is_a_fourth_forecast_where_managers_type(
    forecast_client: TestClient, export: CrmExport
) -> None:
    """manual_weight: won to date + the typed probability (the CRM stage weight where none)
    x amount over open deals closing this quarter, recomputed here from the raw rows; null for
    a team none of whose open deals carries a typed value; on the page only for the former."""
    typed_teams = untyped_teams = 0
    for team in teams_of(export):
        forecast = forecast_client.get(f"/v1/teams/{team}/forecast").json()
        when = pd.Timestamp(forecast["as_of"])
        owners = set(export.owners.loc[export.owners["team"] == team, "owner_id"].astype(str))
        rows = _states(export, owners, when)
        typed = rows["manual_probability"].notna()
        _, end = quarter_bounds(
            np.array([when.value]), start_month=FeatureConfig().fiscal_year_start_month
        )
        closing = pd.to_datetime(rows["close_date"], utc=True) < pd.Timestamp(end[0], tz="UTC")
        weight = rows["manual_probability"].fillna(rows["probability"]) / 100.0
        expected = forecast["won_to_date"] + float(
            (weight * rows["amount"].fillna(0.0))[closing].sum()
        )
        page = forecast_client.get(f"/v1/teams/{team}/page").text
        if typed.any():
            typed_teams += 1
            assert forecast["forecasts"]["manual_weight"] == pytest.approx(expected, rel=1e-9)
            assert "Manager&#x27;s weight" in page or "Manager's weight" in page
        else:
            untyped_teams += 1
            assert forecast["forecasts"]["manual_weight"] is None
            assert "Manager's weight" not in page and "Manager&#x27;s weight" not in page
        for rep in forecast["reps"]:
            mine = rows["opportunity_id"].map(
                export.opportunities.set_index("opportunity_id")["owner_id"].astype(str)
            )
            assert (rep["forecasts"]["manual_weight"] is None) == (
                not typed[mine == rep["owner_id"]].any()
            ), rep["owner_id"]
    assert typed_teams and untyped_teams  # the world's managers type in some teams only


def test_a_deal_shows_the_managers_weight_only_when_it_carries_one(
    forecast_client: TestClient, export: CrmExport
) -> None:
    when = pd.Timestamp(export.history["changed_at"].max())
    rows = _states(export, set(export.owners["owner_id"].astype(str)), when)
    typed = rows[rows["manual_probability"].notna()].iloc[0]
    untyped = rows[rows["manual_probability"].isna()].iloc[0]
    ids = [str(typed["opportunity_id"]), str(untyped["opportunity_id"])]
    response = forecast_client.post(
        "/v1/score",
        json={
            "deals": deal_payloads(export_as_of(export, when), ids),
            "as_of": when.isoformat(),
            "explain": False,
        },
    )
    assert response.status_code == 200, response.text
    scores = {s["opportunity_id"]: s for s in response.json()["scores"]}
    assert scores[ids[0]]["baselines"]["manual_weight"] == pytest.approx(
        typed["manual_probability"] / 100.0
    )
    assert scores[ids[1]]["baselines"]["manual_weight"] is None
    assert scores[ids[1]]["baselines_in_period"]["manual_weight"] is None


@pytest.fixture
def fresh_client(registry: Registry, tmp_path: Path) -> Iterator[tuple[TestClient, Path]]:
    """The app on a copy of the world, so that its forecast store starts empty."""
    data = tmp_path / "world"
    shutil.copytree(registry.root / "world", data, ignore=shutil.ignore_patterns(".dealcast"))
    settings = service_settings(
        registry, model_uri=f"models:/dealcast/{registry.version}", data_dir=data
    )
    with TestClient(
        create_app(settings), headers={"X-API-Key": API_KEY}, raise_server_exceptions=False
    ) as test:
        yield test, data


def _last_rows(export: CrmExport, when: pd.Timestamp) -> pd.DataFrame:
    history = export.history[export.history["changed_at"] <= when]
    last = history.sort_values("changed_at", kind="stable").groupby("opportunity_id").tail(1)
    return last.set_index(last["opportunity_id"].astype(str))


def _earlier_in_quarter(end: pd.Timestamp) -> pd.Timestamp:
    """Up to two weeks before `end`, in its fiscal quarter."""
    start, _ = quarter_bounds(
        np.array([end.value]), start_month=FeatureConfig().fiscal_year_start_month
    )
    return max(end - pd.Timedelta(days=14), end - (end - pd.Timestamp(start[0], tz="UTC")) / 2)


def test_the_forecast_is_kept_and_reviewed_against_the_previous_one(
    fresh_client: tuple[TestClient, Path], export: CrmExport
) -> None:
    client, data = fresh_client
    team = teams_of(export)[0]
    end = pd.Timestamp(export.history["changed_at"].max())
    # Two weeks apart within one quarter (the later one first: order of asking is not order
    # of as_of); the earlier one has nothing before it.
    later_at, earlier_at = end, _earlier_in_quarter(end)
    later = client.get(f"/v1/teams/{team}/forecast", params={"as_of": later_at.isoformat()})
    assert later.status_code == 200, later.text
    assert later.json()["review"]["previous_as_of"] is None
    earlier = client.get(f"/v1/teams/{team}/forecast", params={"as_of": earlier_at.isoformat()})
    first = earlier.json()
    assert first["period"] == later.json()["period"], "both in one quarter"
    assert first["review"]["previous_as_of"] is None and first["review"]["deals"] == []
    assert (data / ".dealcast" / "forecasts.sqlite").is_file()
    now = client.get(f"/v1/teams/{team}/forecast", params={"as_of": later_at.isoformat()}).json()
    review = now["review"]
    assert pd.Timestamp(review["previous_as_of"]) == pd.Timestamp(first["as_of"])
    assert review["previous_expected_revenue"] == pytest.approx(first["expected_revenue"])
    change = now["expected_revenue"] - first["expected_revenue"]
    assert review["change"] == pytest.approx(change)
    share = change / first["expected_revenue"]
    assert review["change_share"] == pytest.approx(share)
    assert review["moved"] is (abs(share) > 0.15)
    if now["quota"]:
        deviation = now["expected_revenue"] / now["quota"] - 1.0
        assert review["quota_deviation"] == pytest.approx(deviation)
        assert review["off_quota"] is (abs(deviation) > 0.15)
    assert review["flagged"] is (review["moved"] or review["off_quota"])
    assert bool(review["reasons"]) is review["flagged"]
    # The deals listed moved as the raw history says, largest part first.
    deals = review["deals"]
    assert deals and review["deals_moved"] >= len(deals)
    assert [abs(d["change"]) for d in deals] == sorted(
        (abs(d["change"]) for d in deals), reverse=True
    )
    then, at = _last_rows(export, earlier_at), _last_rows(export, later_at)
    stages = export.stages
    for deal in deals:
        deal_id = deal["opportunity_id"]
        assert deal["change"] == pytest.approx(deal["after"] - deal["before"])
        stage_now = str(at.at[deal_id, "stage"])
        if deal["kind"] == "won":
            assert stage_now in stages.won_stages
            assert deal["after"] == pytest.approx(at.at[deal_id, "amount"])
        elif deal["kind"] == "lost":
            assert stage_now in stages.lost_stages and deal["after"] == 0.0
            assert str(then.at[deal_id, "stage"]) in stages.open_stages
        elif deal["kind"] == "new":
            assert stage_now in stages.open_stages
            assert deal_id not in then.index or str(then.at[deal_id, "stage"]) not in (
                stages.open_stages
            )
        else:
            assert stage_now in stages.open_stages
            assert str(then.at[deal_id, "stage"]) in stages.open_stages
    if review["deals_moved"] == len(deals):  # all listed: the parts make the whole
        parts = sum(d["change"] for d in deals) + review["new_business_change"]
        assert parts == pytest.approx(change, rel=1e-6, abs=1e-3)
    # Each rep is reviewed against its own previous forecast.
    earlier_reps = {r["owner_id"]: r for r in first["reps"]}
    for rep in now["reps"]:
        previous = earlier_reps[rep["owner_id"]]
        assert rep["review"]["previous_expected_revenue"] == pytest.approx(
            previous["expected_revenue"]
        )
    # The page shows the same review, and says what moved it.
    page = client.get(f"/v1/teams/{team}/page", params={"as_of": later_at.isoformat()}).text
    assert json.loads(DATA.findall(page)[0])["review"] == review
    section = page[page.index('data-testid="forecast-review"') :]
    assert "since the forecast as of" in section
    assert html.escape(deals[0]["opportunity_id"]) in section
    assert ("Review:" in section) is review["flagged"]
    flagged_reps = [r["owner_id"] for r in now["reps"] if r["review"]["flagged"]]
    for owner in flagged_reps:
        assert f"data-owner='{html.escape(owner)}' data-flagged='true'" in section
