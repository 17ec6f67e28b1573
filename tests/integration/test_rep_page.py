"""A rep's page, `GET /v1/teams/{team}/reps/{owner_id}/page`, against a real `dealcast serve`
(one worker): reached from the team page's rep table by its relative link, showing the rep's
row of the team page in full (the numbers the page's embedded forecast JSON gives the rep),
every open deal of the rep ranked by value at risk, a link back; authorised as the team page
is (a full key, a key scoped to the team, a session allowing the team; 403 for another team's
rep); 404 naming the team's reps for a rep of another team; 422 for a bad as_of. Then in
headless Chromium: a real signed link, the team page, a click on a rep, the rep's page.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urljoin, urlsplit

import httpx
import pandas as pd
import pytest
from playwright.sync_api import Browser

from features.loading import load_export
from models.team_quarter import team_reps
from serving.keys import key_digest
from serving.page import teams_of
from tests.integration import test_manager_page
from tests.integration.conftest import API_KEY, Registry
from tests.integration.test_service_hardening import Service as RunningService

browser = test_manager_page.browser  # the module's Chromium fixture, reused

PAGE_SECRET = "rep-page-test-secret-0123456789abcdef"
SCOPED_KEY = "rep-page-scoped-key-0123456789"
REP_LINK = re.compile(r'<tr data-owner="([^"]+)"><th scope="row"><a href="([^"]+)">')
CARD = re.compile(
    r'data-testid="at-risk-deal" data-opportunity="([^"]+)">.*?'
    r'value at risk <strong class="num">([^<]+)</strong>(.*?)\n</li>',
    re.S,
)
# A card's opportunity and owner (its first line under the heading).
CARD_OWNER = re.compile(
    r'data-opportunity="([^"]+)">\n<h3>.*?</h3>\n<p class="small muted">([^ ]+) ·', re.S
)
FORECAST_JSON = re.compile(r'<script type="application/json" id="dealcast-forecast">(.*?)</script>')


@dataclass(frozen=True)
class Service:
    base: str
    mine: str
    theirs: str
    my_reps: tuple[str, ...]
    their_reps: tuple[str, ...]

    def team_url(self, team: str) -> str:
        return f"{self.base}/v1/teams/{quote(team, safe='')}/page"

    def rep_url(self, team: str, owner_id: str) -> str:
        return f"{self.base}/v1/teams/{quote(team, safe='')}/reps/{quote(owner_id, safe='')}/page"


@pytest.fixture(scope="module")
def service(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    export = load_export(registry.root / "world")
    mine, theirs = teams_of(export)[:2]
    keys = tmp_path_factory.mktemp("keys") / "keys.toml"
    keys.write_text(f'[[keys]]\nsha256 = "{key_digest(SCOPED_KEY)}"\nteams = [{mine!r}]\n')
    running = RunningService(
        registry,
        tmp_path_factory.mktemp("serve"),
        workers=1,
        DEALCAST_DATA_DIR=str(registry.root / "world"),
        DEALCAST_PAGE_SECRET=PAGE_SECRET,
        DEALCAST_KEYS_FILE=str(keys),
    )
    try:
        yield Service(
            running.base, mine, theirs, team_reps(export, mine), team_reps(export, theirs)
        )
    finally:
        running.stop()


def _get(url: str, **headers: str) -> httpx.Response:
    return httpx.get(url, headers=headers, timeout=60, follow_redirects=False)


def _money(value: float) -> str:
    return f"{value:,.0f}"


def _session_cookie(service: Service, team: str) -> str:
    """The cookie a manager's browser gets from a real signed link to `team`."""
    minted = httpx.post(
        f"{service.base}/v1/page-links",
        json={"teams": [team], "hours": 1},
        headers={"X-API-Key": API_KEY},
        timeout=30,
    )
    assert minted.status_code == 200, minted.text
    opened = _get(minted.json()["url"])
    assert opened.status_code == 303, opened.text
    return opened.headers["set-cookie"].split(";")[0]


def test_the_team_page_links_each_rep_to_a_page_of_the_reps_row_in_full(
    service: Service,
) -> None:
    team_url = service.team_url(service.mine)
    team = _get(team_url, **{"X-API-Key": API_KEY})
    assert team.status_code == 200, team.text
    links = {owner: html.unescape(href) for owner, href in REP_LINK.findall(team.text)}
    assert sorted(links) == sorted(service.my_reps)  # every rep of the table is linked
    forecast = json.loads(FORECAST_JSON.search(team.text)[1])  # type: ignore[index]
    as_of = forecast["as_of"]
    # The rep with the most open deals, its row as the team page's forecast gives it.
    row: dict[str, Any] = max(forecast["reps"], key=lambda r: (r["open_deals"], r["owner_id"]))
    owner = row["owner_id"]
    href = links[owner]
    assert not href.startswith(("/", "http")), href  # relative, under any prefix
    url = urljoin(team_url, href)
    assert url.startswith(service.rep_url(service.mine, owner) + "?as_of=")

    rep = _get(url, **{"X-API-Key": API_KEY})
    assert rep.status_code == 200, rep.text
    assert rep.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in rep.headers["content-security-policy"]
    page = rep.text
    assert "http://" not in page and "https://" not in page
    assert f"{owner} · {service.mine}" in page
    # Pinned to the team page's time: the same quarter, the same figures.
    kpis = re.search(r'data-testid="kpis">(.*?)</dl>', page, re.S)[1]  # type: ignore[index]
    assert _money(row["expected_revenue"]) in kpis
    assert _money(row["won_to_date"]) in kpis
    assert (_money(row["quota"]) if row["quota"] else "not set") in kpis
    for name, value in row["forecasts"].items():
        if value is not None:
            bar = re.search(rf'data-forecaster="{name}">(.*?)</li>', page, re.S)
            assert bar is not None and _money(value) in bar[1], name
    if row["p_attain"] is not None and row["quota"] and row["won_to_date"] < row["quota"]:
        assert f"{100 * row['p_attain']:.0f}%" in kpis
    # Every open deal, ranked by value at risk; its flagged ones in the team page's order.
    cards = CARD.findall(page)
    assert len(cards) == row["open_deals"] > 0
    values = [float(value.replace(",", "")) for _, value, _ in cards]
    assert values == sorted(values, reverse=True)
    flagged = [deal for deal, _, body in cards if "Why it is flagged" in body]
    on_team_page = [deal for deal, who in CARD_OWNER.findall(team.text) if who == owner]
    assert on_team_page == [deal for deal in flagged if deal in on_team_page]
    for _, _, body in cards:
        assert 'data-testid="drivers"' in body and 'data-testid="actions"' in body
    # And back, to the team page at the same time.
    back = re.search(r'<a href="([^"]+)" data-testid="team-link">', page)
    assert back is not None
    back_url = urlsplit(urljoin(url, html.unescape(back[1])))
    assert back_url._replace(query="").geturl() == team_url
    assert pd.Timestamp(parse_qs(back_url.query)["as_of"][0]) == pd.Timestamp(as_of)


def test_a_rep_outside_the_team_is_404_and_a_bad_as_of_422(service: Service) -> None:
    key = {"X-API-Key": API_KEY}
    stranger = service.their_reps[0]
    missing = _get(service.rep_url(service.mine, stranger), **key)
    assert missing.status_code == 404, missing.text
    body = missing.json()
    assert body["error"] == "rep_not_found"
    assert [p["path"] for p in body["problems"]] == ["owner_id"]
    assert stranger in body["message"] and service.mine in body["message"]
    assert all(rep in body["message"] for rep in service.my_reps)  # names the team's reps
    rep = service.rep_url(service.mine, service.my_reps[0])
    for as_of in ("not-a-time", "9999-12-31T00:00:00", "0001-01-01T00:00:00+01:00", "2001-01-01"):
        response = _get(f"{rep}?as_of={quote(as_of)}", **key)
        assert response.status_code == 422, f"{as_of}: {response.text}"
        assert [p["path"] for p in response.json()["problems"]] == ["as_of"], as_of
    unknown = _get(service.rep_url("Nowhere", service.my_reps[0]), **key)
    assert unknown.status_code == 422 and unknown.json()["problems"][0]["path"] == "team"


def test_scoped_keys_and_sessions_open_their_teams_reps_only(service: Service) -> None:
    mine = service.rep_url(service.mine, service.my_reps[0])
    theirs = service.rep_url(service.theirs, service.their_reps[0])
    assert _get(mine).status_code == 401
    assert _get(mine, **{"X-API-Key": "not-a-key-of-this-service-0"}).status_code == 401
    scoped = {"X-API-Key": SCOPED_KEY}
    assert _get(mine, **scoped).status_code == 200
    refused = _get(theirs, **scoped)
    assert refused.status_code == 403, refused.text
    assert [p["path"] for p in refused.json()["problems"]] == ["team"]
    assert _get(theirs, **{"X-API-Key": API_KEY}).status_code == 200  # a full key sees both

    cookie = {"Cookie": _session_cookie(service, service.mine)}
    opened = _get(mine, **cookie)
    assert opened.status_code == 200, opened.text
    assert f"{service.my_reps[0]} · {service.mine}" in opened.text
    other = _get(theirs, **cookie, Accept="text/html")
    assert other.status_code == 403
    assert "<h1>Not your team&#x27;s page</h1>" in other.text


def test_a_manager_clicks_from_the_team_page_to_a_reps_page(
    service: Service, browser: Browser, tmp_path: Path
) -> None:
    minted = httpx.post(
        f"{service.base}/v1/page-links",
        json={"teams": [service.mine], "hours": 1},
        headers={"X-API-Key": API_KEY},
        timeout=30,
    )
    assert minted.status_code == 200, minted.text
    context = browser.new_context()
    try:
        page = context.new_page()
        landed = page.goto(minted.json()["url"])
        assert landed is not None and landed.status == 200
        assert page.url == service.team_url(service.mine)
        rep = service.my_reps[0]
        page.locator("#reps").get_by_role("link", name=rep, exact=True).click()
        page.wait_for_load_state()
        assert page.url.startswith(service.rep_url(service.mine, rep) + "?as_of=")
        assert page.locator("h1").inner_text().startswith(f"{rep} · {service.mine}")
        deals = page.locator("#deals [data-testid=at-risk-deal]")
        assert deals.count() > 0
        assert deals.first.locator("[data-testid=drivers] li").count() > 0
        page.screenshot(path=str(tmp_path / "rep-page.png"), full_page=True)
        page.get_by_test_id("team-link").click()
        page.wait_for_load_state()
        assert page.url.startswith(service.team_url(service.mine) + "?as_of=")
        assert page.locator("#reps").count() == 1

        other = page.goto(service.rep_url(service.theirs, service.their_reps[0]))
        assert other is not None and other.status == 403
        assert page.locator("h1").inner_text() == "Not your team's page"
    finally:
        context.close()
