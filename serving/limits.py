"""What a request may cost before the service has decided to serve it.

Three pure ASGI middlewares, outermost first, each refusing in the shared error shape and
closing the connection, so that nothing a refused client still sends is read:

- `KeyBeforeBody`: a `/v1` request with a body (POST, PUT, PATCH) and no valid API key is
  refused with 401 from its headers alone, before a byte of the body is read: a caller
  without a key cannot make the service buffer 16 MiB. The check is `serving.auth`'s; the
  routes' own check (`require_api_key`) still decides what a valid key may see.
- `Backpressure`: at most `max_queue` `/v1` requests are in the service at once (read,
  queued or being scored); one more is answered 503 with `Retry-After` at once, instead of
  waiting behind the others until every client times out. A request of a few deals is scored
  on the event loop in one go (serving.compute), so the requests read in one turn of the loop
  would otherwise pass one by one, each finding the others not yet started: each takes its
  place in the queue first and yields once, so that all of them have, and then the ones
  beyond `max_queue` are refused. While others are in the service a request is scored in a
  worker thread (serving.compute), so that the loop keeps reading and counting arrivals.
- `BodySizeLimit`: a declared `Content-Length` over the limit is refused (413) without
  reading a byte; otherwise the body is read as it streams in (chunked too), counted, and
  refused as soon as the count passes the limit, or with 408 when the whole body has not
  arrived within `body_timeout_seconds` (a client sending a byte every half second holds
  nothing for long). A body within the limits is handed on whole, which costs nothing: the
  JSON parser needs all of it anyway.

`H11WithHeaderDeadline` is the HTTP protocol `dealcast serve` runs uvicorn with: uvicorn
times out an idle keep-alive connection, but not one that never finishes its request head;
this one closes a connection whose request line and headers have not all arrived within the
keep-alive timeout of its opening (or of its previous response).
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import h11
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from serving.auth import presented_key_is_valid
from serving.compute import IN_SERVICE
from serving.errors import error_response
from serving.settings import Settings

_METHODS_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
RETRY_AFTER_SECONDS = 1


def _guarded(scope: Scope) -> bool:
    if scope["type"] != "http":  # lifespan and websocket scopes have no path to guard
        return False
    path: str = scope["path"]
    return path == "/v1" or path.startswith("/v1/")


async def refuse(
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
) -> None:
    """Answer with the shared error shape and close the connection (the unread rest of the
    request is never read)."""
    response = error_response(
        status, code, message, headers={**(headers or {}), "Connection": "close"}
    )
    await response(scope, receive, send)


class KeyBeforeBody:
    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            _guarded(scope)
            and scope["method"] in _METHODS_WITH_BODY
            and not presented_key_is_valid(Headers(scope=scope), self.settings)
        ):
            await refuse(
                scope,
                receive,
                send,
                status=401,
                code="unauthorized",
                message="a valid API key is required: send `Authorization: Bearer KEY` or "
                "`X-API-Key: KEY`",
                headers={"WWW-Authenticate": 'Bearer realm="dealcast"'},
            )
            return
        await self.app(scope, receive, send)


class Backpressure:
    def __init__(self, app: ASGIApp, *, max_queue: int) -> None:
        self.app = app
        self.max_queue = max_queue
        self.in_service = 0  # one event loop per process: no lock needed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _guarded(scope):
            await self.app(scope, receive, send)
            return
        place = self.in_service
        self.in_service += 1
        IN_SERVICE.set(self._count)
        try:
            await anyio.sleep(0)  # let the requests read in this turn take their places
            if place >= self.max_queue:
                await self._refuse(scope, receive, send)
                return
            await self.app(scope, receive, send)
        finally:
            self.in_service -= 1

    def _count(self) -> int:
        return self.in_service

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        await refuse(
            scope,
            receive,
            send,
            status=503,
            code="overloaded",
            message=f"the service is at capacity ({self.max_queue} requests in progress); "
            f"retry in {RETRY_AFTER_SECONDS} s",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


class BodySizeLimit:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, body_timeout_seconds: float) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_seconds = body_timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _METHODS_WITH_BODY:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await self._too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        complete = False
        with anyio.move_on_after(self.body_timeout_seconds):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body_bytes:
                    await self._too_large(scope, receive, send)
                    return
                chunks.append(chunk)
                if not message.get("more_body", False):
                    complete = True
                    break
        if not complete:
            await refuse(
                scope,
                receive,
                send,
                status=408,
                code="body_timeout",
                message=f"the request body did not arrive within {self.body_timeout_seconds:g} s "
                f"({size} bytes received)",
            )
            return
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await refuse(
            scope,
            receive,
            send,
            status=413,
            code="body_too_large",
            message=f"the request body is larger than {self.max_body_bytes} bytes",
        )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class H11WithHeaderDeadline(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request head (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the request head has arrived
            self._cancel_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        self._cancel_head_deadline()
        self._head_deadline = self.loop.call_later(self.timeout_keep_alive, self._head_too_slow)

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self.transport.close()
