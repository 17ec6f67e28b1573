"""Signed page links and the browser sessions they open: JWTs (HS256, DEALCAST_PAGE_SECRET).

A link's token and a session's cookie carry the same claims: the teams allowed (`teams`),
issued-at (`iat`) and expiry (`exp`); their audiences differ (`aud`), so a session cookie is
never taken for a link nor a link for a session. Both are stateless: any worker process with
the secret reads them, and nothing is stored. A session lives as long as the link that opened
it (the same `exp`), so a link's lifetime bounds everything it grants.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt

from features.errors import DealcastError

LINK_AUDIENCE = "dealcast:page-link"
SESSION_AUDIENCE = "dealcast:page-session"
SESSION_COOKIE = "dealcast_session"
ALGORITHM = "HS256"
MAX_TEAMS = 50  # a cookie holds about 4 KB; a manager's teams are a handful


class GrantInvalid(DealcastError):
    """A link or session token that is tampered with, malformed or signed with another key."""


class GrantExpired(GrantInvalid):
    """A genuine token past its expiry."""


@dataclass(frozen=True)
class PageGrant:
    """What a link or session allows: these teams' pages, until `expires_at`."""

    teams: tuple[str, ...]
    issued_at: int
    expires_at: int

    @property
    def expires(self) -> datetime:
        return datetime.fromtimestamp(self.expires_at, tz=UTC)

    def seconds_left(self, now: float | None = None) -> int:
        return max(0, self.expires_at - math.floor(time.time() if now is None else now))


def grant_for(teams: Iterable[str], *, hours: float, now: float | None = None) -> PageGrant:
    """A grant of `teams` for `hours` from `now` (default: the current time)."""
    chosen = tuple(dict.fromkeys(str(team) for team in teams))
    if not chosen or any(not team.strip() for team in chosen):
        raise ValueError("a page link needs at least one team, none of them empty")
    if len(chosen) > MAX_TEAMS:
        raise ValueError(f"a page link allows at most {MAX_TEAMS} teams")
    if not 0 < hours <= 24 * 31:
        raise ValueError("a page link lasts more than 0 and at most 744 hours (31 days)")
    issued = math.floor(time.time() if now is None else now)
    return PageGrant(chosen, issued, issued + math.ceil(hours * 3600))


def sign(grant: PageGrant, *, secret: str, audience: str) -> str:
    claims = {
        "teams": list(grant.teams),
        "iat": grant.issued_at,
        "exp": grant.expires_at,
        "aud": audience,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def session_for(link: PageGrant, *, now: float | None = None) -> PageGrant:
    """The session a link opens: the link's teams and expiry, issued now."""
    return PageGrant(link.teams, math.floor(time.time() if now is None else now), link.expires_at)


def read(token: str, *, secret: str, audience: str) -> PageGrant:
    """The grant `token` carries, checked: signature (HS256 only), audience, expiry, claims."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=audience,
            options={"require": ["exp", "iat", "aud", "teams"]},
        )
    except jwt.ExpiredSignatureError:
        raise GrantExpired("the link has expired") from None
    except jwt.InvalidTokenError as error:
        raise GrantInvalid(f"the token is not valid: {error}") from None
    teams = claims["teams"]
    if (
        not isinstance(teams, list)
        or not teams
        or not all(isinstance(team, str) and team for team in teams)
    ):
        raise GrantInvalid("the token names no teams")
    return PageGrant(tuple(teams), int(claims["iat"]), int(claims["exp"]))
