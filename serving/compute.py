"""Where a request's CPU work runs, and how its answer is written.

Scoring is CPU-bound Python and numpy that holds the GIL, so a worker thread buys no
parallelism; it only adds two thread hand-offs per request (the call, then FastAPI's
response validation), about 2 ms of the 8 ms an explained deal took end to end. So a request
of a few deals is scored on the event loop, where it blocks other requests for the few
milliseconds it takes. A large batch (up to 1,000 deals, hundreds of milliseconds) goes to a
worker thread, so that the loop keeps accepting connections and answering /health meanwhile.

Except under a crowd: when more than one request is in the service at once (requests read
in the same turn of the loop, or arriving while others are scored), the few-deal ones go to
one worker thread, one at a time in arrival order (threads sharing the GIL would all finish
late). Scored on the loop one after another, they would keep the loop from
reading what arrives meanwhile, which would wait unread in the socket, where no limit sees
it (at twice the sustainable rate, 14 s); in threads, the loop keeps reading, so
`serving.limits.Backpressure` counts every request and refuses the excess at once.

Answers are serialised once, by pydantic, straight to JSON, where the scoring ran: a large
batch's answer (megabytes of JSON) is written in its worker thread, not on the event loop,
which stays free for /health, /ready and small requests. The route still declares its
response model (for the OpenAPI schema), but FastAPI does not validate and re-encode what
`serving.present` already built and checked.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

import anyio.to_thread
from fastapi import Response
from pydantic import BaseModel

# Up to this many deals a request is scored on the event loop (an explained deal: ~5 ms).
INLINE_DEALS = 8

# How many requests are in the service now: set for each request by
# serving.limits.Backpressure (None without it, e.g. an app built without the middleware).
IN_SERVICE: ContextVar[Callable[[], int] | None] = ContextVar("in_service", default=None)


_CROWD: list[anyio.CapacityLimiter] = []


def _crowd_limiter() -> anyio.CapacityLimiter:
    """The one worker thread that scores a crowd's few-deal requests (made in the loop)."""
    if not _CROWD:
        _CROWD.append(anyio.CapacityLimiter(1))
    return _CROWD[0]


def crowded() -> bool:
    """Whether other requests are in the service beside this one."""
    count = IN_SERVICE.get()
    return count is not None and count() > 1


async def run_scoring(deals: int, work: Callable[[], BaseModel]) -> Response:
    """`work()` and its JSON answer on the event loop for a few deals when the service holds
    no other request, else in a worker thread."""

    def answer() -> Response:
        return json_response(work())

    if deals > INLINE_DEALS:
        return await anyio.to_thread.run_sync(answer)
    if not crowded():
        return answer()
    # One at a time, in arrival order: threads sharing the GIL would all finish late.
    return await anyio.to_thread.run_sync(answer, limiter=_crowd_limiter())


def json_response(body: BaseModel) -> Response:
    return Response(content=body.model_dump_json(), media_type="application/json")
