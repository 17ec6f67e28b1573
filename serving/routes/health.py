"""`GET /health` (the process is alive) and `GET /ready` (it can score correctly).

Both are open, without an API key, for load balancers and orchestrators. /ready re-scores
the model's golden deal on every call: ready means a model is loaded *and* it still scores
its recorded deal as recorded, not merely that something was loaded once.
"""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from features.errors import DealcastError
from serving.dependencies import StoreDep
from serving.model_store import check_golden
from serving.present import model_ref
from serving.schemas import HealthResponse, ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/health", summary="The process is alive")
async def health() -> HealthResponse:
    return HealthResponse()


@router.get(
    "/ready",
    summary="A model is loaded and scores its golden deal as recorded",
    responses={503: {"model": ReadyResponse, "description": "not ready, with the reason"}},
)
def ready(store: StoreDep, response: Response) -> ReadyResponse:
    loaded = store.current
    if loaded is None:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return ReadyResponse(ready=False, model=None, reason=store.error)
    try:
        check_golden(loaded.model)
    except (DealcastError, ValueError, KeyError, TypeError) as error:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return ReadyResponse(ready=False, model=model_ref(loaded), reason=str(error))
    return ReadyResponse(ready=True, model=model_ref(loaded), reason=None)
