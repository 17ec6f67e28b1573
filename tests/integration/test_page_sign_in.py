"""A manager signs in with a signed link, in a real headless Chromium against a real
`dealcast serve` (worker processes and all): the link opens the team's page, the address
after the redirect has no token, the session cookie is HttpOnly and SameSite=Strict, another
team's page is refused, an expired or tampered link says so, and the index lists exactly the
teams the link allows.

The links are made as an operator and a CRM make them: `dealcast page-link` and
`POST /v1/page-links`.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext

from features.loading import load_export
from serving.page import teams_of
from serving.sessions import LINK_AUDIENCE, grant_for, sign
from tests.integration import test_manager_page
from tests.integration.conftest import API_KEY, Registry
from tests.integration.test_service_hardening import Service as RunningService
from tests.integration.test_service_uvicorn import service_env

browser = test_manager_page.browser  # the module's Chromium fixture, reused

PAGE_SECRET = "sign-in-test-secret-0123456789abcdef"
TEAM_ITEM = re.compile(r'<li><a href="([^"]+)">([^<]+)</a></li>')


@dataclass(frozen=True)
class Service:
    base: str
    env: dict[str, str]
    mine: str
    theirs: str

    def page_url(self, team: str) -> str:
        return f"{self.base}/v1/teams/{quote(team, safe='')}/page"


@pytest.fixture(scope="module")
def service(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """Two worker processes: a link minted by one opens a session that the other reads."""
    env = {"DEALCAST_DATA_DIR": str(registry.root / "world"), "DEALCAST_PAGE_SECRET": PAGE_SECRET}
    running = RunningService(registry, tmp_path_factory.mktemp("serve"), workers=2, **env)
    mine, theirs = teams_of(load_export(registry.root / "world"))[:2]
    try:
        yield Service(running.base, service_env(registry, **env), mine, theirs)
    finally:
        # SIGTERM, so that uvicorn stops its workers too (they hold the output pipe open).
        running.process.terminate()
        running.process.wait(timeout=60)
        running.stop()
    assert PAGE_SECRET not in running.output
    # No link's token reaches the access log (the query is redacted).
    assert "page-session?token=[redacted]" in running.output
    assert not re.search(r"token=(?!\[redacted\])", running.output), running.output


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile per test: no cookie carries over."""
    context = browser.new_context()
    try:
        yield context
    finally:
        context.close()


def _cli_link(service: Service, *teams: str, hours: str = "2") -> str:
    team_args = [arg for team in teams for arg in ("--team", team)]
    options = ["--hours", hours, "--base-url", service.base]
    result = subprocess.run(
        [sys.executable, "-m", "dealcast", "page-link", *team_args, *options],
        env=service.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"opens {', '.join(teams)} until" in result.stderr
    return result.stdout.strip()


def _index_teams(html: str) -> list[str]:
    return [team for _, team in TEAM_ITEM.findall(html)]


def test_a_signed_link_opens_the_teams_page_and_no_other(
    service: Service, context: BrowserContext
) -> None:
    link = _cli_link(service, service.mine)
    assert link.startswith(f"{service.base}/v1/page-session?token=")
    page = context.new_page()
    response = page.goto(link)
    assert response is not None and response.status == 200
    # Redirected (303) to the page: the token left the address bar.
    assert page.url == service.page_url(service.mine)
    assert "token" not in page.url
    redirect = response.request.redirected_from
    assert redirect is not None and redirect.url == link
    redirected = redirect.response()
    assert redirected is not None and redirected.status == 303
    assert service.mine in page.title() or service.mine in page.content()
    assert page.locator("#reps").count() == 1  # the manager's page itself, not a sign-in page

    (cookie,) = context.cookies()
    assert cookie["name"] == "dealcast_session"
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert cookie["secure"] is False  # served over plain http on loopback
    assert cookie["path"] == "/v1"
    assert 7000 < cookie["expires"] - time.time() <= 7200  # the link's expiry, 2 hours
    assert page.evaluate("document.cookie") == ""  # HttpOnly: no script reads it

    # Another team's page is refused, as a page a person reads.
    other = page.goto(service.page_url(service.theirs))
    assert other is not None and other.status == 403
    assert other.headers["content-type"].startswith("text/html")
    assert page.locator("h1").inner_text() == "Not your team's page"
    assert f"not {service.theirs}'s" in page.locator("#reason").inner_text()

    # The index lists exactly the link's team.
    index = page.goto(f"{service.base}/v1/pages")
    assert index is not None and index.status == 200
    assert _index_teams(page.content()) == [service.mine]

    # The session is for pages: the JSON API still needs a key.
    api = page.goto(f"{service.base}/v1/teams/{quote(service.mine)}/forecast")
    assert api is not None and api.status == 401


def test_a_link_clicked_on_another_site_opens_the_page(
    service: Service, context: BrowserContext, tmp_path: Path
) -> None:
    """From a web mail, say: the browser sends no SameSite=Strict cookie on the cross-site
    redirect chain, so the page loads itself again from this site, and then opens."""
    mail = tmp_path / "mail.html"
    mail.write_text(f'<a id="link" href="{_cli_link(service, service.mine)}">your page</a>')
    page = context.new_page()
    page.goto(mail.as_uri())
    page.click("#link")
    page.locator("#reps").wait_for(state="attached", timeout=60_000)
    assert page.url == service.page_url(service.mine)
    # Only a cross-site navigation reloads: the refusal itself stays put.
    assert (
        httpx.get(service.page_url(service.mine), headers={"Accept": "text/html"}).text.count(
            "http-equiv"
        )
        == 0
    )


def test_a_link_to_several_teams_opens_their_index(
    service: Service, context: BrowserContext
) -> None:
    minted = httpx.post(
        f"{service.base}/v1/page-links",
        json={"teams": [service.theirs, service.mine], "hours": 1},
        headers={"X-API-Key": API_KEY},
        timeout=30,
    )
    assert minted.status_code == 200, minted.text
    link = minted.json()["url"]
    page = context.new_page()
    response = page.goto(link)
    assert response is not None and response.status == 200
    assert page.url == f"{service.base}/v1/pages"
    assert sorted(_index_teams(page.content())) == sorted([service.mine, service.theirs])
    # Each entry opens its page in the same session.
    page.get_by_role("link", name=service.theirs).click()
    page.wait_for_load_state()
    assert page.url == service.page_url(service.theirs)
    assert page.locator("#reps").count() == 1


def test_an_expired_link_says_it_has_expired(service: Service, context: BrowserContext) -> None:
    grant = grant_for([service.mine], hours=1, now=time.time() - 2 * 3600)
    token = sign(grant, secret=PAGE_SECRET, audience=LINK_AUDIENCE)
    page = context.new_page()
    response = page.goto(f"{service.base}/v1/page-session?token={token}")
    assert response is not None and response.status == 401
    assert page.locator("h1").inner_text() == "This link has expired"
    assert "Ask for a new link" in page.locator("#reason").inner_text()
    assert context.cookies() == []
    # Without a session the page itself asks for the link, it does not open.
    refused = page.goto(service.page_url(service.mine))
    assert refused is not None and refused.status == 401
    assert page.locator("h1").inner_text() == "Sign in with your link"


def test_a_tampered_link_is_refused(service: Service, context: BrowserContext) -> None:
    link = _cli_link(service, service.mine)
    header, payload, signature = link.split("token=")[1].split(".")
    # A different claims segment under the original signature.
    forged = sign(
        grant_for([service.theirs], hours=2), secret=PAGE_SECRET, audience=LINK_AUDIENCE
    ).split(".")[1]
    page = context.new_page()
    for token in (f"{header}.{forged}.{signature}", f"{header}.{payload}.{signature[:-4]}"):
        response = page.goto(f"{service.base}/v1/page-session?token={token}")
        assert response is not None and response.status == 401
        assert page.locator("h1").inner_text() == "This link is not valid"
    assert context.cookies() == []


def test_the_cookie_is_secure_behind_https(service: Service) -> None:
    link = _cli_link(service, service.mine)
    plain = httpx.get(link, timeout=30)
    assert plain.status_code == 303
    assert plain.headers["location"] == f"/v1/teams/{quote(service.mine, safe='')}/page"
    assert "secure" not in plain.headers["set-cookie"].lower()
    # Behind a TLS-terminating proxy on this host (uvicorn trusts loopback's forwarded headers).
    proxied = httpx.get(link, headers={"X-Forwarded-Proto": "https"}, timeout=30)
    assert proxied.status_code == 303
    attributes = [part.strip().lower() for part in proxied.headers["set-cookie"].split(";")]
    assert {"secure", "httponly", "samesite=strict", "path=/v1"} <= set(attributes)
