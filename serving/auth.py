"""Who may call, and what they may see: API keys with team scopes, and page sessions.

Machines send a key as `Authorization: Bearer KEY` or `X-API-Key: KEY`: a key of
DEALCAST_API_KEYS sees every team, a key of DEALCAST_KEYS_FILE the teams its entry lists
(serving.keys). People open a signed link and get a session cookie (serving.sessions) that
only the page routes accept. Either way the request gets a `Caller` with a `TeamScope`, and a
route refuses (403) a team, a rep or a deal outside it. Keys are compared in constant time
and never logged: settings hold them as `SecretStr`, and no message here includes one. With
`DEALCAST_AUTH=off` (said explicitly, loopback only) every request is let through.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from serving.dependencies import SettingsDep
from serving.errors import ServiceError, Unauthorized
from serving.keys import TeamScope, scope_of_key
from serving.keys import key_matches as key_matches  # re-exported, for older callers
from serving.model_store import LoadedModel
from serving.schemas import AttainmentRequest, Deal
from serving.sessions import (
    SESSION_AUDIENCE,
    SESSION_COOKIE,
    GrantExpired,
    GrantInvalid,
    PageGrant,
    read,
)
from serving.settings import Settings

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="`Authorization: Bearer KEY`, a key of DEALCAST_API_KEYS or DEALCAST_KEYS_FILE",
)
api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="api_key",
    description="`X-API-Key: KEY`, a key of DEALCAST_API_KEYS or DEALCAST_KEYS_FILE",
)

MISSING_KEY = "an API key is required: send `Authorization: Bearer KEY` or `X-API-Key: KEY`"


class Forbidden(ServiceError):
    """A valid key (or session) asking for a team outside its scope."""

    status = 403
    code = "forbidden"


class PageRefused(ServiceError):
    """A browser's page request refused: answered as an HTML page (serving.routes.page_links),
    since a person reads it, not a program."""

    def __init__(self, status: int, *, title: str, message: str, reload: bool = False) -> None:
        self.status = status
        self.code = "forbidden" if status == 403 else "unauthorized"
        self.title = title
        self.reload = reload
        super().__init__(message)


@dataclass(frozen=True)
class Caller:
    """Who is calling (`via` a key, a page session, or nobody with auth off) and what they
    may see."""

    via: Literal["key", "session", "open"]
    scope: TeamScope

    def require_team(self, team: str, *, field: str = "team") -> None:
        if self.scope.allows(team):
            return
        if self.via == "session":
            raise PageRefused(
                403,
                title="Not your team's page",
                message=f"This sign-in opens the pages of {_listed(self.scope)}, not {team}'s.",
            )
        raise Forbidden(
            f"this API key may not see team {team!r}",
            problems={field: f"team {team!r} is outside this key's teams"},
        )

    def require_reps(
        self, reps: Iterable[tuple[str, str, str | None]], *, owner_teams: Mapping[str, str]
    ) -> None:
        """Each `(path, owner_id, named team)` must be a rep of an allowed team: the team the
        service knows for the rep (`owner_teams`, from the model's reference data), and the
        one the request names for it, if any; a rep known nowhere is a team of one (its id,
        the data contract's rule)."""
        if self.scope.unlimited:
            return
        problems: dict[str, str] = {}
        for path, owner_id, named in reps:
            teams = {owner_teams.get(owner_id) or named or owner_id}
            if named:
                teams.add(named)
            refused = sorted(team for team in teams if not self.scope.allows(team))
            if refused:
                problems[path] = (
                    f"rep {owner_id!r} is in team {refused[0]!r}, outside this key's teams"
                )
        if problems:
            raise Forbidden(
                f"this API key may not see {len(problems)} of the reps asked for",
                problems=problems,
            )


def read_or_refuse(
    token: str,
    *,
    secret: str,
    audience: str,
    expired: tuple[str, str],
    invalid: tuple[str, str],
) -> PageGrant:
    """The grant `token` carries, or a page (title, message) saying it expired or is not
    valid."""
    try:
        return read(token, secret=secret, audience=audience)
    except GrantExpired:
        raise PageRefused(401, title=expired[0], message=expired[1]) from None
    except GrantInvalid:
        raise PageRefused(401, title=invalid[0], message=invalid[1]) from None


OPEN = Caller("open", TeamScope.every_team())


def _listed(scope: TeamScope) -> str:
    return ", ".join(sorted(scope.teams or ())) or "no team"


def presented_keys(authorization: str | None, api_key: str | None) -> list[str]:
    """The keys a request presents: the bearer credentials and the X-API-Key header."""
    keys: list[str] = []
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            keys.append(credentials.strip())
    if api_key:
        keys.append(api_key)
    return keys


def key_scope(keys: Iterable[str], settings: Settings) -> TeamScope | None:
    """What the presented keys may see together; None when none of them is valid."""
    scope: TeamScope | None = None
    for key in keys:
        found = scope_of_key(key, clear_keys=settings.api_keys, hashed_keys=settings.hashed_keys)
        if found is not None:
            scope = found if scope is None else scope.union(found)
    return scope


def presented_key_is_valid(headers: Mapping[str, str], settings: Settings) -> bool:
    """Whether the request's headers carry a key valid for some scope (or auth is off): the
    check that runs before a body is read (serving.limits). `headers` is case-insensitive,
    as Starlette's `Headers` is."""
    if settings.auth == "off":
        return True
    keys = presented_keys(headers.get("authorization"), headers.get("x-api-key"))
    return key_scope(keys, settings) is not None


async def require_api_key(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    header_key: Annotated[str | None, Depends(api_key_header)],
) -> Caller:
    if settings.auth == "off":
        return OPEN
    keys = [key for key in (credentials.credentials if credentials else None, header_key) if key]
    if not keys:
        raise Unauthorized(MISSING_KEY)
    scope = key_scope(keys, settings)
    if scope is None:
        raise Unauthorized("the API key is not valid")
    return Caller("key", scope)


async def require_team_key(team: str, caller: Annotated[Caller, Depends(require_api_key)]) -> None:
    """A route of `/teams/{team}/...` for keys: the key must cover `team`."""
    caller.require_team(team)


async def require_page_caller(
    request: Request,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    header_key: Annotated[str | None, Depends(api_key_header)],
) -> Caller:
    """A key (as on every route) or, for a browser, the session cookie a signed link set."""
    if settings.auth == "off":
        return OPEN
    if credentials or header_key:
        return await require_api_key(settings, credentials, header_key)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie and settings.page_secret is not None:
        secret = settings.page_secret.get_secret_value()
        grant = read_or_refuse(
            cookie,
            secret=secret,
            audience=SESSION_AUDIENCE,
            expired=(
                "Your sign-in has expired",
                "The link you signed in with has expired. Ask for a new link.",
            ),
            invalid=(
                "Sign-in not valid",
                "This browser's sign-in is not valid. Open the link you were sent again.",
            ),
        )
        return Caller("session", TeamScope.of(grant.teams))
    if "text/html" in request.headers.get("accept", ""):
        raise PageRefused(
            401,
            title="Sign in with your link",
            message="This page opens from the signed link your CRM sends you. Open that link.",
            # A link opened from another site (a web mail) redirects here cross-site, and a
            # browser sends no SameSite=Strict cookie on a cross-site navigation: the page
            # loads itself again, now from this site, and the cookie comes along.
            reload=request.headers.get("sec-fetch-site") == "cross-site",
        )
    raise Unauthorized(f"{MISSING_KEY}, or open the page from a signed link")


async def require_team_page(
    team: str, caller: Annotated[Caller, Depends(require_page_caller)]
) -> Caller:
    """A page of `/teams/{team}/...`: a key or a session that covers `team`."""
    caller.require_team(team)
    return caller


def require_deals_in_scope(caller: Caller, deals: Sequence[Deal], loaded: LoadedModel) -> None:
    """Every deal's rep in the caller's teams (the model's reference data places the reps)."""
    if caller.scope.unlimited:
        return
    caller.require_reps(
        (
            (f"deals[{i}].owner_id", deal.owner_id, deal.owner.team if deal.owner else None)
            for i, deal in enumerate(deals)
        ),
        owner_teams=loaded.scorer.bundle.reference.owner_team,
    )


def require_attainment_in_scope(
    caller: Caller, request: AttainmentRequest, loaded: LoadedModel
) -> None:
    """The team asked for, or the rep's team (as the forecast will place it: the team its
    deals' owner rows name, else the model's reference data), and every deal's rep."""
    if caller.scope.unlimited:
        return
    if request.team is not None:
        caller.require_team(request.team)
    if request.owner_id is not None:
        named = next((d.owner.team for d in request.deals if d.owner and d.owner.team), None)
        caller.require_reps(
            [("owner_id", request.owner_id, named or request.team)],
            owner_teams=loaded.scorer.bundle.reference.owner_team,
        )
    require_deals_in_scope(caller, request.deals, loaded)


ApiKey = Depends(require_api_key)
KeyCaller = Annotated[Caller, Depends(require_api_key)]
TeamKey = Depends(require_team_key)
PageCaller = Annotated[Caller, Depends(require_page_caller)]
TeamPage = Depends(require_team_page)
