"""Query strings in the access log: values redacted, names kept only when known."""

from __future__ import annotations

import logging

import pytest

from serving.access_log import RedactQueryStrings, redact_query


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/v1/model", "/v1/model"),
        ("/v1/model?api_key=secret-key-0123456789", "/v1/model?api_key=[redacted]"),
        ("/v1/page-session?token=eyJ.abc.def", "/v1/page-session?token=[redacted]"),
        (
            "/v1/teams/A/page?as_of=2026-03-01T00:00:00Z&key=k",
            "/v1/teams/A/page?as_of=2026-03-01T00:00:00Z&key=[redacted]",
        ),
        ("/v1/model?secret-key-0123456789", "/v1/model?[redacted]"),
        ("/v1/model?x-api-key=secret&&", "/v1/model?[redacted]"),
        ("/v1/model?=secret", "/v1/model?[redacted]"),
    ],
)
def test_query_values_are_redacted(path: str, logged: str) -> None:
    assert redact_query(path) == logged


def test_the_filter_rewrites_uvicorns_access_record() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/v1/model?api_key=secret-key-0123456789", "1.1", 401),
        None,
    )
    assert RedactQueryStrings().filter(record)
    assert record.getMessage() == '127.0.0.1:5000 - "GET /v1/model?api_key=[redacted] HTTP/1.1" 401'
