"""API keys: `Authorization: Bearer KEY` or `X-API-Key: KEY`, checked in constant time.

The presented key is compared with every configured key with `hmac.compare_digest`, all of
them every time, so neither the timing nor the position of a match tells anything. Keys are
never logged: settings hold them as `SecretStr` and no message here includes one. With
`DEALCAST_AUTH=off` (said explicitly) every request is let through.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Annotated

from fastapi import Depends
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from serving.dependencies import SettingsDep
from serving.errors import Unauthorized

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="`Authorization: Bearer KEY`, a key of DEALCAST_API_KEYS",
)
api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="api_key",
    description="`X-API-Key: KEY`, a key of DEALCAST_API_KEYS",
)


def key_matches(candidate: str, keys: Sequence[SecretStr]) -> bool:
    """True when `candidate` equals one of `keys`; every key is compared, in constant time."""
    presented = candidate.encode("utf-8")
    found = False
    for key in keys:
        found |= hmac.compare_digest(presented, key.get_secret_value().encode("utf-8"))
    return found


async def require_api_key(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    header_key: Annotated[str | None, Depends(api_key_header)],
) -> None:
    if settings.auth == "off":
        return
    presented = [
        key for key in (credentials.credentials if credentials else None, header_key) if key
    ]
    if not presented:
        raise Unauthorized(
            "an API key is required: send `Authorization: Bearer KEY` or `X-API-Key: KEY`"
        )
    if not any(key_matches(key, settings.api_keys) for key in presented):
        raise Unauthorized("the API key is not valid")


ApiKey = Depends(require_api_key)
