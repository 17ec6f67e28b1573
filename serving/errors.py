"""Every error the service answers, mapped to an HTTP status in one place.

All error bodies have one shape (`ErrorBody`): a stable `error` code, a `message`, and for
invalid input the `problems`, each with the `path` of the bad field in the request
(`deals[0].history[2].amount`). A client's mistake is a 4xx; only the service's own faults
are 5xx, and those never carry internals.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from features.errors import DealcastDataError, DealcastError
from features.payload import PayloadInvalid
from models.attainment import AttainmentInputError
from serving.schemas import ErrorBody, Problem

logger = logging.getLogger(__name__)


class ServiceError(DealcastError):
    """An error the service answers with `status` and a stable `code`."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, problems: Mapping[str, str] | None = None) -> None:
        self.message = message
        self.problems = dict(problems or {})
        super().__init__(message)


class Unauthorized(ServiceError):
    status = 401
    code = "unauthorized"


class BatchTooLarge(ServiceError):
    status = 413
    code = "too_many_deals"


class RequestInvalid(ServiceError):
    """A rule that spans fields or needs the model (stages, periods) is broken."""

    status = 422
    code = "invalid_request"

    def __init__(self, problems: Mapping[str, str]) -> None:
        super().__init__(_summary(problems), problems=problems)


class ModelUnavailable(ServiceError):
    status = 503
    code = "model_unavailable"


class ModelOutputInvalid(ServiceError):
    """The model produced a number that must not reach the wire (NaN, infinite)."""

    status = 500
    code = "model_output_invalid"


def _summary(problems: Mapping[str, str]) -> str:
    count = len(problems)
    return f"{count} problem{'s' if count != 1 else ''} in the request"


def field_path(loc: Sequence[int | str]) -> str:
    """FastAPI's location tuple as a path: ("body", "deals", 0, "amount") -> deals[0].amount."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


# Input echoed in a message (a quoted value, as `{value!r}` writes it) or in a path (an extra
# attribute's name) is cut to this many characters and "...": a 1,000-character stage name
# or key comes back recognisable, not whole.
MAX_ECHO = 80
_QUOTED = re.compile(
    rf"'(?:[^'\\]|\\.){{{MAX_ECHO + 1},}}'" + "|" + rf'"(?:[^"\\]|\\.){{{MAX_ECHO + 1},}}"'
)
_PATH_PART = re.compile(rf"[^.\[\]]{{{MAX_ECHO + 1},}}")


def clip_echoes(text: str) -> str:
    """`text` with every quoted value longer than MAX_ECHO characters cut to MAX_ECHO + '...'."""
    return _QUOTED.sub(lambda quoted: f"{quoted[0][: MAX_ECHO + 1]}...{quoted[0][0]}", text)


def clip_path(path: str) -> str:
    """`path` with every name longer than MAX_ECHO characters cut to MAX_ECHO + '...'."""
    return _PATH_PART.sub(lambda part: f"{part[0][:MAX_ECHO]}...", path)


def error_response(
    status: int,
    code: str,
    message: str,
    problems: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(
        error=code,
        message=clip_echoes(message),
        problems=[
            Problem(path=clip_path(path), message=clip_echoes(text))
            for path, text in (problems or {}).items()
        ],
    )
    return JSONResponse(body.model_dump(), status_code=status, headers=dict(headers or {}))


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    error = cast(ServiceError, exc)  # registered for ServiceError only
    if error.status >= 500:
        logger.error("%s %s: %s", request.method, request.url.path, error.message)
    headers = {"WWW-Authenticate": 'Bearer realm="dealcast"'} if error.status == 401 else None
    return error_response(error.status, error.code, error.message, error.problems, headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    error = cast(RequestValidationError, exc)
    problems: dict[str, str] = {}
    for item in error.errors():
        path = field_path(item.get("loc", ()))
        message = str(item.get("msg", "invalid"))
        if item.get("type") == "json_invalid":
            message = f"the body is not valid JSON: {item.get('ctx', {}).get('error', '')}"
        # Several problems at one path (a union's alternatives) read as one sentence.
        problems[path] = f"{problems[path]}; {message}" if path in problems else message
    return error_response(422, "invalid_request", _summary(problems), problems)


async def _payload_invalid(request: Request, exc: Exception) -> JSONResponse:
    error = cast(PayloadInvalid, exc)
    return error_response(422, "invalid_request", _summary(error.problems), error.problems)


async def _attainment_input(request: Request, exc: Exception) -> JSONResponse:
    error = cast(AttainmentInputError, exc)
    problems = {error.field: error.problem}
    return error_response(422, "invalid_request", _summary(problems), problems)


async def _data_error(request: Request, error: Exception) -> JSONResponse:
    # The data side's own errors are about the input (PayloadInvalid is handled above).
    problems = {"deals": str(error)}
    return error_response(422, "invalid_request", _summary(problems), problems)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    error = cast(StarletteHTTPException, exc)
    codes = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}
    code = codes.get(error.status_code, "http_error")
    headers: dict[str, Any] = dict(error.headers or {})
    return error_response(error.status_code, code, str(error.detail), headers=headers)


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    logger.exception("%s %s failed", request.method, request.url.path, exc_info=error)
    return error_response(500, "internal_error", "internal error; it has been logged")


def register_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(PayloadInvalid, _payload_invalid)
    app.add_exception_handler(AttainmentInputError, _attainment_input)
    app.add_exception_handler(DealcastDataError, _data_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


_DESCRIPTIONS = {
    401: "missing or invalid API key",
    403: "the key (or page session) is limited to other teams",
    404: "the resource is not available here (the page needs DEALCAST_DATA_DIR)",
    413: "the body is larger than DEALCAST_MAX_BODY_BYTES, or more deals than the batch limit",
    422: "invalid input: each problem names the path of the bad field",
    500: "a fault of the service or the model (never the client's input); logged",
    503: "no model is loaded (see GET /ready for why)",
}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, all with the `ErrorBody` shape."""
    return {
        status: {"model": ErrorBody, "description": _DESCRIPTIONS[status]} for status in statuses
    }
