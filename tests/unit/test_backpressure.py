"""DEALCAST_MAX_QUEUE counts the requests read in one turn of the event loop (issue 15 item
9): handlers that finish without yielding, as a few deals scored on the loop do, must not
each find the queue empty."""

from __future__ import annotations

import threading
from typing import Any

import anyio
from pydantic import BaseModel

from serving.compute import run_scoring
from serving.limits import Backpressure


def _requests(guard: Backpressure, count: int, path: str = "/v1/score") -> list[int]:
    statuses: list[int] = []

    async def one() -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        scope = {"type": "http", "path": path, "method": "POST", "headers": []}
        await guard(scope, receive, send)  # type: ignore[arg-type]

    async def main() -> None:
        async with anyio.create_task_group() as group:  # all started in one turn
            for _ in range(count):
                group.start_soon(one)

    anyio.run(main)
    return statuses


async def _inline(scope: Any, receive: Any, send: Any) -> None:
    """Answers at once, never yielding before it is done."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def test_the_requests_of_one_turn_beyond_the_bound_are_refused() -> None:
    guard = Backpressure(_inline, max_queue=3)
    assert sorted(_requests(guard, 10)) == [200] * 3 + [503] * 7
    assert guard.in_service == 0
    assert _requests(guard, 2) == [200, 200]  # places are given back


def test_routes_outside_v1_are_not_counted() -> None:
    guard = Backpressure(_inline, max_queue=1)
    assert _requests(guard, 5, path="/health") == [200] * 5


def test_a_few_deals_leave_the_loop_only_while_others_are_in_the_service() -> None:
    """A lone request of a few deals is scored on the event loop; when others are in the
    service with it, in a worker thread, so that the loop keeps reading (and counting) what
    arrives meanwhile instead of leaving it unread in the socket."""
    threads: list[bool] = []  # per request: scored on the loop's thread

    async def scoring(scope: Any, receive: Any, send: Any) -> None:
        loop_thread = threading.get_ident()

        def work() -> BaseModel:
            threads.append(threading.get_ident() == loop_thread)
            return Empty()

        response = await run_scoring(1, work)
        await response(scope, receive, send)

    guard = Backpressure(scoring, max_queue=8)
    assert _requests(guard, 1) == [200]
    assert threads == [True]
    threads.clear()
    assert _requests(guard, 3) == [200] * 3
    assert threads == [False] * 3
    assert guard.in_service == 0
    threads.clear()
    assert _requests(guard, 1) == [200]  # alone again: back on the loop
    assert threads == [True]


class Empty(BaseModel):
    pass
