"""uvicorn's access log without secrets: query strings are logged with their values redacted.

A key or a page-link token sent in a query string (`/v1/model?api_key=...`,
`/v1/page-session?token=...`) would otherwise be written to the access log in clear. Every
parameter's value is replaced, except those of the parameters the API defines that carry no
secret (`as_of`, `since`), so the log still says which request it was; a parameter whose name
is not one the log knows is replaced whole (a key sent as `?KEY` is a name, not a value).
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl, quote

ACCESS_LOGGER = "uvicorn.access"
KEPT = frozenset({"as_of", "since"})
NAMED = KEPT | {"token", "api_key", "apikey", "key", "access_token"}
REDACTED = "[redacted]"


def redact_query(path: str) -> str:
    """`path` with every query value but those of `KEPT` replaced by `[redacted]`, and every
    parameter not in `NAMED` replaced whole."""
    base, mark, query = path.partition("?")
    if not mark:
        return path
    pairs = parse_qsl(query, keep_blank_values=True)
    if not pairs:
        return f"{base}?{REDACTED}" if query else base
    return f"{base}?" + "&".join(_pair(name, value) for name, value in pairs)


def _pair(name: str, value: str) -> str:
    if name not in NAMED:
        return REDACTED
    return f"{name}={quote(value, safe=':+') if name in KEPT else REDACTED}"


class RedactQueryStrings(logging.Filter):
    """Rewrites uvicorn's access records, whose third argument is the path with its query."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_query(args[2]), *args[3:])
        return True


def redact_access_log() -> None:
    """Install the filter on uvicorn's access logger, once per process (each worker calls it
    at start)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(existing, RedactQueryStrings) for existing in logger.filters):
        logger.addFilter(RedactQueryStrings())
