"""`GET /health` (the process is alive) and `GET /ready` (it can score correctly).

Both are open, without an API key, for load balancers and orchestrators, and both run on the
event loop, never in the worker threads that score large batches: an orchestrator probing a
busy service gets its answer in milliseconds, not after the batches ahead of it in the pool.
/ready re-scores the model's golden deal on every call (one deal, a few milliseconds): ready
means a model is loaded *and* it still scores its recorded deal as recorded, not merely that
something was loaded once. It also reports the last failed load and when it is tried again,
and which worker process answered (`dealcast serve --workers N` runs N, each with its model).
"""

from __future__ import annotations

import os

from fastapi import APIRouter, Response, status

from features.errors import DealcastError
from serving.dependencies import StoreDep
from serving.model_store import ModelStore, check_golden
from serving.present import model_ref
from serving.schemas import HealthResponse, LoadFailureOut, ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/health", summary="The process is alive")
async def health() -> HealthResponse:
    return HealthResponse()


@router.get(
    "/ready",
    summary="A model is loaded and scores its golden deal as recorded",
    responses={503: {"model": ReadyResponse, "description": "not ready, with the reason"}},
)
async def ready(store: StoreDep, response: Response) -> ReadyResponse:
    loaded = store.current
    failure = _load_failure(store)
    if loaded is None:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return ReadyResponse(
            ready=False,
            model=None,
            reason=store.error,
            last_load_failure=failure,
            process=os.getpid(),
        )
    try:
        check_golden(loaded.model)
    except (DealcastError, ValueError, KeyError, TypeError) as error:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return ReadyResponse(
            ready=False,
            model=model_ref(loaded),
            reason=str(error),
            last_load_failure=failure,
            process=os.getpid(),
        )
    return ReadyResponse(
        ready=True,
        model=model_ref(loaded),
        reason=None,
        last_load_failure=failure,
        process=os.getpid(),
    )


def _load_failure(store: ModelStore) -> LoadFailureOut | None:
    failure = store.load_failure
    if failure is None:
        return None
    return LoadFailureOut(
        version=failure.version,
        reason=failure.reason,
        attempts=failure.attempts,
        failed_at=failure.failed_at,
        next_attempt_at=failure.next_attempt_at,
    )
