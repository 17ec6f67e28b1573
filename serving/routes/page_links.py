"""Managers sign in with signed links: minting them, opening them, and the index they open.

- `POST /v1/page-links` (API key, scoped): the CRM mints a link for a manager's teams.
- `GET /v1/page-session?token=...` (the link): checks the token, sets the session cookie
  (HttpOnly, SameSite=Strict, Path=/v1, Secure over https) and redirects (303) to the team's
  page, or to the index when the link allows several teams, so the token leaves the address
  bar and the browser's history at once (the access log redacts query strings).
- `GET /v1/pages` (session or key): the teams the caller may open, as links.

A person reads the refusals here (an expired link, another team's page), so they are small
HTML pages (`page_refused`), with the same content security policy as the page.
"""

from __future__ import annotations

import html
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from serving.auth import KeyCaller, PageCaller, PageRefused, read_or_refuse
from serving.dependencies import SettingsDep
from serving.errors import ServiceError, documented
from serving.page import teams_of
from serving.routes.page import HEADERS, configured_export
from serving.sessions import (
    LINK_AUDIENCE,
    MAX_TEAMS,
    SESSION_AUDIENCE,
    SESSION_COOKIE,
    PageGrant,
    grant_for,
    session_for,
    sign,
)
from serving.settings import Settings

router = APIRouter(tags=["page"])
keyed_router = APIRouter(tags=["page"])

SESSION_PATH = "/v1/page-session"
INDEX_PATH = "/v1/pages"
TokenText = Annotated[str, Field(min_length=1, max_length=4096)]


class LinksUnavailable(ServiceError):
    status = 404
    code = "page_links_unavailable"


class PageLinkRequest(BaseModel):
    teams: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        min_length=1, max_length=MAX_TEAMS, description="the teams whose pages the link opens"
    )
    hours: float | None = Field(
        default=None,
        gt=0,
        le=24 * 31,
        description="how long the link (and the session it opens) lasts; default "
        "DEALCAST_PAGE_LINK_HOURS",
    )


class PageLinkResponse(BaseModel):
    url: str = Field(description="the link to send to the manager")
    teams: list[str]
    expires_at: str = Field(description="when the link and its session expire (UTC, ISO 8601)")


def page_secret(settings: Settings) -> str:
    if settings.page_secret is None:
        raise LinksUnavailable(
            "signed page links need a secret: set DEALCAST_PAGE_SECRET (32 characters or more)"
        )
    return settings.page_secret.get_secret_value()


def link_url(base_url: str, token: str) -> str:
    """The address a manager opens: the service's base URL and the session route."""
    return f"{base_url.rstrip('/')}{SESSION_PATH}?token={quote(token, safe='')}"


def team_page_path(team: str) -> str:
    return f"/v1/teams/{quote(team, safe='')}/page"


@keyed_router.post(
    "/page-links",
    summary="A signed, expiring link to teams' pages, for a manager to open in a browser",
    description=(
        "The CRM mints a link for a manager: opening it signs the browser in to the pages of "
        "`teams` (a session cookie), until the link expires. A key limited to some teams mints "
        "links to those teams only. Needs DEALCAST_PAGE_SECRET; the link's address starts "
        "with DEALCAST_PUBLIC_URL when set, else with the address this request came to."
    ),
    response_model=PageLinkResponse,
    responses=documented(401, 403, 404, 422),
)
async def mint_page_link(
    body: Annotated[PageLinkRequest, Body()],
    caller: KeyCaller,
    settings: SettingsDep,
    request: Request,
) -> PageLinkResponse:
    for position, team in enumerate(body.teams):
        caller.require_team(team, field=f"teams[{position}]")
    grant = grant_for(body.teams, hours=body.hours or settings.page_link_hours)
    token = sign(grant, secret=page_secret(settings), audience=LINK_AUDIENCE)
    base = settings.public_url or str(request.base_url)
    return PageLinkResponse(
        url=link_url(base, token), teams=list(grant.teams), expires_at=grant.expires.isoformat()
    )


@router.get(
    "/page-session",
    summary="Open a signed page link: sets the session cookie, redirects to the page (303)",
    response_class=RedirectResponse,
    status_code=303,
    responses={
        303: {"description": "signed in: the cookie is set, `Location` is the page"},
        401: {
            "description": "an expired, tampered or missing link (an HTML page says which)",
            "content": {"text/html": {}},
        },
        404: {**documented(404)[404], "description": "no DEALCAST_PAGE_SECRET: no links"},
        422: documented(422)[422],
    },
)
async def open_page_link(
    request: Request,
    settings: SettingsDep,
    token: Annotated[str | None, Query(max_length=4096)] = None,
) -> Response:
    secret = page_secret(settings)
    if not token:
        raise PageRefused(
            401,
            title="This link is incomplete",
            message="The link has no sign-in token. Open the whole link you were sent.",
        )
    link = read_or_refuse(
        token,
        secret=secret,
        audience=LINK_AUDIENCE,
        expired=(
            "This link has expired",
            "The link you opened has expired. Ask for a new link to your team's page.",
        ),
        invalid=(
            "This link is not valid",
            "The link you opened is not valid (changed or incomplete). Ask for a new link to "
            "your team's page.",
        ),
    )
    session = session_for(link)
    target = team_page_path(link.teams[0]) if len(link.teams) == 1 else INDEX_PATH
    response = RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})
    secure = served_over_https(request, settings)
    set_session_cookie(response, session, secret=secret, secure=secure)
    return response


def set_session_cookie(
    response: Response, session: PageGrant, *, secret: str, secure: bool
) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        sign(session, secret=secret, audience=SESSION_AUDIENCE),
        max_age=session.seconds_left(),
        path="/v1",
        httponly=True,
        samesite="strict",
        secure=secure,
    )


def served_over_https(request: Request, settings: Settings) -> bool:
    """https as the client sees it: the request's scheme, or a trusted proxy's
    X-Forwarded-Proto (DEALCAST_TRUST_FORWARDED_PROTO)."""
    if request.url.scheme == "https":
        return True
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return settings.trust_forwarded_proto and forwarded == "https"


@router.get(
    "/pages",
    summary="The teams whose pages this sign-in (or key) opens, as links (HTML)",
    response_class=HTMLResponse,
    responses={
        status: {**spec, "content": {"application/json": {}}}
        for status, spec in documented(401, 404).items()
    },
)
def page_index(caller: PageCaller, settings: SettingsDep) -> HTMLResponse:
    teams = (
        teams_of(configured_export(settings))
        if caller.scope.teams is None
        else sorted(caller.scope.teams)
    )
    items = "".join(
        f'<li><a href="{html.escape(team_page_path(team))}">{html.escape(team)}</a></li>'
        for team in teams
    )
    body = f"<h1>Your teams</h1><ul id='teams'>{items}</ul>"
    return HTMLResponse(_document("Your teams", body), headers=HEADERS)


def page_refused(refusal: PageRefused) -> HTMLResponse:
    """A refusal a person reads: what happened and what to do, as a small HTML page."""
    body = f"<h1>{html.escape(refusal.title)}</h1><p id='reason'>{html.escape(refusal.message)}</p>"
    headers = dict(HEADERS)
    if refusal.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="dealcast"'
    refresh = "<meta http-equiv='refresh' content='0'>" if refusal.reload else ""
    document = _document(refusal.title, body, head=refresh)
    return HTMLResponse(document, status_code=refusal.status, headers=headers)


def _document(title: str, body: str, *, head: str = "") -> str:
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'>{head}"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)} · dealcast</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;"
        "padding:0 1rem;line-height:1.5}a{color:#1a56db}</style></head>"
        f"<body>{body}</body></html>"
    )
