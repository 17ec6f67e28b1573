"""The FastAPI application: `create_app()` builds it, its lifespan loads the model.

Nothing happens at import: the settings are read and the model is loaded when the app starts
(`uvicorn --factory serving.app:create_app`, or `dealcast serve`). If the model cannot be
loaded the service still starts: /health answers, /ready says why it is not ready and when
the next attempt is due, scoring answers 503, and the watcher keeps trying, with backoff.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import anyio
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi_offline import FastAPIOffline

from models.prediction_log import PredictionLog
from serving.access_log import redact_access_log
from serving.auth import ApiKey, PageRefused
from serving.errors import register_error_handlers
from serving.limits import Backpressure, BodySizeLimit, KeyBeforeBody
from serving.model_store import ModelStore
from serving.routes import attainment, forecast, health, model, page, page_links, score
from serving.settings import Settings, load_settings

logger = logging.getLogger(__name__)

GC_YOUNG_THRESHOLD = 10_000

DESCRIPTION = """
Win probabilities, quota attainment and explanations for B2B deals, learned from a CRM's
opportunity history and compared with the forecasts sales teams already use (stage weight,
commit).

**Authentication**: every `/v1` route needs an API key, as `Authorization: Bearer KEY` or
`X-API-Key: KEY`; a key may be limited to some teams (403 outside them). The manager's pages
(`/v1/teams/{team}/page`, `/v1/pages`) also accept the session a signed link opens
(`/v1/page-session?token=...`, minted by `POST /v1/page-links`). `/health`, `/ready` and these
docs are open.

**Errors** share one shape: `{"error", "message", "problems": [{"path", "message"}]}`.
"""


def create_app(settings: Settings | None = None, *, store: ModelStore | None = None) -> FastAPI:
    """The service. `store` replaces the model store built from the settings (tests)."""
    settings = settings or load_settings()
    redact_access_log()  # here, not at import: each worker process builds its own app
    store = store or ModelStore(
        settings.model_uri,
        tracking_uri=settings.mlflow_tracking_uri,
        poll_seconds=settings.alias_poll_seconds,
        retry_seconds=settings.load_retry_seconds,
        retry_max_seconds=settings.load_retry_max_seconds,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.auth == "off":
            logger.warning("authentication is OFF (DEALCAST_AUTH=off): every caller is served")
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.worker_threads
        # A 1,000-deal request allocates ~150,000 objects (rows, then features); at Python's
        # default young-generation threshold (700) the collector ran hundreds of times per
        # batch: validating one took 77 ms against 58 ms with this threshold.
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        logger.info("loading %s", settings.model_uri)
        await anyio.to_thread.run_sync(store.start)
        if settings.prediction_log is not None:
            app.state.prediction_log = PredictionLog(settings.prediction_log)
            logger.info("logging every answered deal to %s", settings.prediction_log)
        try:
            yield
        finally:
            log = getattr(app.state, "prediction_log", None)
            if log is not None:
                await anyio.to_thread.run_sync(log.close)
            await anyio.to_thread.run_sync(store.stop)

    # FastAPIOffline: /docs loads Swagger UI from this service (assets shipped in the
    # fastapi-offline package), never from a CDN. No /redoc: its bundle still fetches a logo
    # from its vendor's CDN. No trailing-slash redirects: Starlette's would build an absolute
    # Location from the request's Host header.
    app = FastAPIOffline(
        title="dealcast",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        redoc_url=None,
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.store = store
    register_error_handlers(app)
    # Outermost last: the key is checked, then admission, then the body is read.
    app.add_middleware(
        BodySizeLimit,
        max_body_bytes=settings.max_body_bytes,
        body_timeout_seconds=settings.body_timeout_seconds,
    )
    app.add_middleware(Backpressure, max_queue=settings.max_queue)
    app.add_middleware(KeyBeforeBody, settings=settings)

    app.add_exception_handler(PageRefused, _page_refused)

    # Every /v1 route needs a key, except the pages a browser opens: those take a key or the
    # session cookie of a signed link (each checks it itself: serving.auth.TeamPage,
    # PageCaller), and the link itself, which carries its own signed token.
    v1 = APIRouter(prefix="/v1", dependencies=[ApiKey])
    v1.include_router(score.router)
    v1.include_router(attainment.router)
    v1.include_router(model.router)
    v1.include_router(forecast.router)
    v1.include_router(page_links.keyed_router)
    app.include_router(v1)
    pages = APIRouter(prefix="/v1")
    pages.include_router(page.router)
    pages.include_router(page_links.router)
    app.include_router(pages)
    app.include_router(health.router)
    return app


async def _page_refused(request: Request, exc: Exception) -> Response:
    return page_links.page_refused(cast(PageRefused, exc))  # registered for PageRefused only
