"""`GET /v1/teams/{team}/forecast`: a team's quarter and each rep's, as JSON.

The same numbers the manager's page shows (the page embeds this very JSON), from the same
export (`DEALCAST_DATA_DIR`, `serving.routes.page.configured_export`) and the one assembly
of models.team_quarter; the deals are scored without explanations, which the figures do
not use. Each answer's forecasts are kept beside the export (models.forecast_store) and
reviewed against the previous ones of the same team-quarter (`review`).
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from models.forecast_review import model_label, records_of
from models.forecast_store import ForecastStore, keep_and_review
from models.team_quarter import TeamQuarterInputError, build_team_quarter
from serving.auth import TeamKey
from serving.compute import json_response
from serving.dependencies import CurrentModel, SettingsDep
from serving.errors import RequestInvalid, documented
from serving.present import team_forecast_response
from serving.routes.page import configured_export
from serving.schemas import TeamForecastResponse, Time

router = APIRouter(tags=["page"])


@router.get(
    "/teams/{team}/forecast",
    summary="A team's quarter and its reps': P(attain), P10/P50/P90, coverage, gap, targets",
    description=(
        "The team-quarter forecast the manager's page shows, as JSON: quota, won to date, "
        "P(reaching quota) with its interval, expected revenue and P10/P50/P90, status, "
        "coverage, the gap and its decomposition (own win rate and deal size, deals and "
        "pipeline needed, meetings, calls and proposals needed), for the team and each rep, "
        "and the deal flow (new, won, lost, pushed, pulled in) since `since` (default 7 days "
        "before as_of). `as_of` (default: the export's last change) must lie within the "
        "export. Needs DEALCAST_DATA_DIR."
    ),
    response_model=TeamForecastResponse,
    responses=documented(401, 403, 404, 422, 500, 503),
    dependencies=[TeamKey],
)
def team_forecast(
    team: str,
    loaded: CurrentModel,
    settings: SettingsDep,
    as_of: Time | None = None,
    since: Time | None = None,
) -> Response:
    export = configured_export(settings)
    try:
        quarter = build_team_quarter(
            export, loaded.scorer, team=team, as_of=as_of, since=since, explain=False
        )
    except TeamQuarterInputError as error:
        raise RequestInvalid({error.field: error.problem}) from error
    # Kept beside the export (configured_export needs a data folder), reviewed against the
    # previous forecast kept of this team-quarter: the page does the same.
    reviews = keep_and_review(
        ForecastStore.beside(settings.data_dir) if settings.data_dir is not None else None,
        records_of(quarter, model=model_label(loaded.uri, loaded.scorer.bundle.metadata)),
    )
    return json_response(team_forecast_response(quarter, reviews))
