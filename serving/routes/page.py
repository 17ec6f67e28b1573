"""`GET /v1/teams/{team}/page`: the manager's page of a team, and
`GET /v1/teams/{team}/reps/{owner_id}/page`: one rep's page, each for a key or a page session
that covers the team (serving.auth.TeamPage). The team page's rep table links to the reps'
pages and a rep's page back to the team's, by relative links pinned to the page's as_of.

The page needs the CRM export the team's deals come from: the folder in `DEALCAST_DATA_DIR`,
loaded (and validated) once and reloaded when its files change (`configured_export`, which
the forecast route shares). Without it the route answers 404 and says so. The HTML is the
same one `dealcast report` writes: self-contained, with a content security policy that lets
nothing load or run (its one script element is JSON data, never run).
"""

from __future__ import annotations

import threading
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from features.loading import CrmExport, load_export
from models.forecast_store import ForecastStore
from models.monitor_summary import last_quarter
from serving.auth import TeamPage
from serving.dependencies import CurrentModel, SettingsDep
from serving.errors import RequestInvalid, ServiceError, documented
from serving.page import (
    PageInputError,
    RepNotInTeam,
    build_manager_view,
    build_rep_view,
    render_manager_page,
    render_rep_page,
)
from serving.schemas import Time
from serving.settings import Settings

router = APIRouter(tags=["page"])

HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


class PageUnavailable(ServiceError):
    status = 404
    code = "page_unavailable"


class RepNotFound(ServiceError):
    status = 404
    code = "rep_not_found"


class _Exports:
    """The configured export, loaded once per change of its files."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[str, float] | None = None
        self._export: CrmExport | None = None

    def get(self, folder: Path) -> CrmExport:
        stamp = max((p.stat().st_mtime for p in folder.iterdir() if p.is_file()), default=0.0)
        key = (str(folder), stamp)
        with self._lock:
            if self._key != key or self._export is None:
                self._export = load_export(folder)
                self._key = key
            return self._export


_exports = _Exports()


def configured_export(settings: Settings) -> CrmExport:
    """The export in DEALCAST_DATA_DIR (404 without one)."""
    if settings.data_dir is None or not settings.data_dir.is_dir():
        raise PageUnavailable(
            "the manager's page and the team forecast need the CRM export: set "
            "DEALCAST_DATA_DIR to its folder"
        )
    return _exports.get(settings.data_dir)


@router.get(
    "/teams/{team}/page",
    response_class=HTMLResponse,
    summary="The manager's page of a team for the current quarter (HTML)",
    # Errors answer JSON, though the page itself is HTML.
    responses={
        status: {**spec, "content": {"application/json": {}}}
        for status, spec in documented(401, 403, 404, 422, 503).items()
    },
    dependencies=[TeamPage],
)
def team_page(
    team: str, loaded: CurrentModel, settings: SettingsDep, as_of: Time | None = None
) -> HTMLResponse:
    export = configured_export(settings)
    try:
        view = build_manager_view(
            export,
            loaded.scorer,
            team=team,
            as_of=as_of,
            model_uri=loaded.uri,
            store=ForecastStore.beside(settings.data_dir) if settings.data_dir else None,
            last_quarter=last_quarter(settings.data_dir, team),
        )
    except PageInputError as error:
        raise RequestInvalid({error.field: error.problem}) from error
    return HTMLResponse(render_manager_page(view, rep_pages=True), headers=HEADERS)


@router.get(
    "/teams/{team}/reps/{owner_id}/page",
    response_class=HTMLResponse,
    summary="One rep's page for the current quarter: forecast, baselines, every open deal (HTML)",
    responses={
        status: {**spec, "content": {"application/json": {}}}
        for status, spec in documented(401, 403, 404, 422, 503).items()
    },
    dependencies=[TeamPage],
)
def rep_page(
    team: str,
    owner_id: str,
    loaded: CurrentModel,
    settings: SettingsDep,
    as_of: Time | None = None,
) -> HTMLResponse:
    export = configured_export(settings)
    try:
        view = build_rep_view(
            export,
            loaded.scorer,
            team=team,
            owner_id=owner_id,
            as_of=as_of,
            model_uri=loaded.uri,
            store=ForecastStore.beside(settings.data_dir) if settings.data_dir else None,
        )
    except RepNotInTeam as error:
        raise RepNotFound(str(error), problems={"owner_id": str(error)}) from error
    except PageInputError as error:
        raise RequestInvalid({error.field: error.problem}) from error
    return HTMLResponse(render_rep_page(view), headers=HEADERS)
