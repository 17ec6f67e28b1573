"""`POST /v1/attainment`: will this rep or team reach its quota this quarter?"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Response

from serving.auth import KeyCaller, require_attainment_in_scope
from serving.checks import check_attainment, check_batch, model_currency
from serving.compute import run_scoring
from serving.dependencies import CurrentModel, SettingsDep
from serving.errors import documented
from serving.present import attainment_response
from serving.routes.score import INPUT_POLICY
from serving.schemas import EXAMPLE_AS_OF, EXAMPLE_DEAL, AttainmentRequest, AttainmentResponse

router = APIRouter(tags=["attainment"])

ATTAINMENT_EXAMPLES: dict[str, Any] = {
    "a rep's quarter": {
        "summary": "A rep's quota, won to date and open pipeline",
        "value": {
            "period": "2026-Q4",
            "quota": 900000.0,
            "won_to_date": 420000.0,
            "owner_id": EXAMPLE_DEAL["owner_id"],
            "as_of": EXAMPLE_AS_OF,
            "deals": [EXAMPLE_DEAL],
        },
    },
}


@router.post(
    "/attainment",
    summary="P(reaching quota), revenue P10/P50/P90, status, coverage, gap, at-risk deals",
    description=(
        "The distribution of the period's closed-won revenue: won to date, the open deals "
        "won in the period (their calibrated in-period probabilities, moving together "
        "through a shared factor) and new business not yet created. Give exactly one of "
        "`team` and `owner_id`; `period` (YYYY-Qn) must be the fiscal quarter containing "
        "`as_of` (default: now); every deal is scored at that one `as_of` (a per-deal "
        "`as_of` is refused), belongs to `owner_id` when given, and to `team` when its "
        "`owner.team` says. An empty pipeline is valid. The baselines' forecasts (stage "
        "weights, commit) and the model's expected revenue come side by side.\n" + INPUT_POLICY
    ),
    response_model=AttainmentResponse,
    responses=documented(401, 403, 413, 422, 500, 503),
)
async def attainment(
    request: Annotated[AttainmentRequest, Body(openapi_examples=ATTAINMENT_EXAMPLES)],
    loaded: CurrentModel,
    settings: SettingsDep,
    caller: KeyCaller,
) -> Response:
    check_batch(len(request.deals), settings.max_batch)
    require_attainment_in_scope(caller, request, loaded)

    def work() -> AttainmentResponse:
        plan = loaded.model.bundle.plan
        as_of, period_end = check_attainment(
            request, loaded.stages, fiscal_year_start_month=plan.config.fiscal_year_start_month
        )
        forecast = loaded.scorer.forecast_pipeline(
            quota=request.quota,
            won_to_date=request.won_to_date,
            deals=model_currency(request.deals, loaded),
            team=request.team,
            owner_id=request.owner_id,
            period_end=period_end,
            as_of=as_of,
            explain=request.explain,
        )
        return attainment_response(forecast, request, as_of=as_of, loaded=loaded)

    return await run_scoring(len(request.deals), work)
