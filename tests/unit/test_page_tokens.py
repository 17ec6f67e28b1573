"""Signed page links and sessions (serving.sessions): claims, expiry, tampering, audiences."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from serving.sessions import (
    LINK_AUDIENCE,
    SESSION_AUDIENCE,
    GrantExpired,
    GrantInvalid,
    grant_for,
    read,
    session_for,
    sign,
)

SECRET = "page-secret-0123456789abcdef-0123456789"


def test_a_link_carries_its_teams_issued_at_and_expiry() -> None:
    now = time.time()
    grant = grant_for(["EMEA 1", "EMEA 2", "EMEA 1"], hours=2, now=now)
    assert grant.teams == ("EMEA 1", "EMEA 2")
    assert grant.expires_at - grant.issued_at == 7200
    token = sign(grant, secret=SECRET, audience=LINK_AUDIENCE)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience=LINK_AUDIENCE)
    assert claims == {
        "teams": ["EMEA 1", "EMEA 2"],
        "iat": grant.issued_at,
        "exp": grant.expires_at,
        "aud": LINK_AUDIENCE,
    }
    assert read(token, secret=SECRET, audience=LINK_AUDIENCE) == grant


def test_a_session_keeps_the_links_teams_and_expiry() -> None:
    link = grant_for(["EMEA 1"], hours=1, now=time.time() - 600)
    session = session_for(link)
    assert session.teams == link.teams and session.expires_at == link.expires_at
    assert session.issued_at >= link.issued_at + 600
    assert 2990 <= session.seconds_left() <= 3000


def test_an_expired_link_is_told_apart_from_a_bad_one() -> None:
    old = grant_for(["EMEA 1"], hours=1, now=time.time() - 7200)
    token = sign(old, secret=SECRET, audience=LINK_AUDIENCE)
    with pytest.raises(GrantExpired):
        read(token, secret=SECRET, audience=LINK_AUDIENCE)


def _tampered(token: str) -> str:
    """The same token with another team written into its claims (signature unchanged)."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["teams"] = ["NA 1"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def test_tampered_foreign_and_confused_tokens_are_refused() -> None:
    grant = grant_for(["EMEA 1"], hours=1)
    token = sign(grant, secret=SECRET, audience=LINK_AUDIENCE)
    for bad in (
        _tampered(token),
        sign(grant, secret="another-secret-0123456789abcdef-xyz", audience=LINK_AUDIENCE),
        token[:-3],
        "not-a-token",
        # unsigned ("alg": "none") with the right claims
        jwt.encode(
            {"teams": ["EMEA 1"], "iat": grant.issued_at, "exp": grant.expires_at},
            key=None,
            algorithm="none",
        ),
    ):
        with pytest.raises(GrantInvalid) as raised:
            read(bad, secret=SECRET, audience=LINK_AUDIENCE)
        assert not isinstance(raised.value, GrantExpired)
    # A session cookie is not a link, nor a link a session.
    with pytest.raises(GrantInvalid):
        read(token, secret=SECRET, audience=SESSION_AUDIENCE)


def test_a_token_without_teams_is_refused() -> None:
    now = int(time.time())
    for teams in ([], "EMEA 1", [""], [3]):
        token = jwt.encode(
            {"teams": teams, "iat": now, "exp": now + 60, "aud": LINK_AUDIENCE},
            SECRET,
            algorithm="HS256",
        )
        with pytest.raises(GrantInvalid, match="no teams"):
            read(token, secret=SECRET, audience=LINK_AUDIENCE)


@pytest.mark.parametrize(
    ("teams", "hours"),
    [([], 1), ([" "], 1), (["A"], 0), (["A"], 745), ([str(i) for i in range(51)], 1)],
)
def test_a_link_needs_teams_and_a_sane_lifetime(teams: list[str], hours: float) -> None:
    with pytest.raises(ValueError, match="page link"):
        grant_for(teams, hours=hours)
