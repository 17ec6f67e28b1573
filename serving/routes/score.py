"""`POST /v1/score`: win probabilities, explanations and next actions for 1 to 1,000 deals."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Response

from serving.auth import KeyCaller, require_deals_in_scope
from serving.checks import check_batch, check_deals, model_currency
from serving.compute import run_scoring
from serving.dependencies import CurrentModel, PredictionLogDep, SettingsDep
from serving.errors import documented
from serving.present import score_response
from serving.schemas import EXAMPLE_AS_OF, EXAMPLE_DEAL, ScoreRequest, ScoreResponse

router = APIRouter(tags=["scores"])

INPUT_POLICY = """
Input policy (every violation answers 422 with the path of each bad field, all at once):
missing fields, wrong types, NaN or infinite numbers (also in extra attributes), negative
amounts, unparsable dates, history or activities stamped after `as_of`, a deal created after
`as_of` or already closed at `as_of`, history before `created_at`, two different states at
one `changed_at`, several currencies in one request, and **unknown stages** (the message
lists the model's stages) or forecast categories outside Pipeline, Best Case, Commit,
Closed, Omitted. **Unknown activity types are accepted** and count as `other`, as in
training. Extra attributes of a deal, its account and its owner are kept and used when the
model was trained with them. More than 1,000 deals (or the configured batch limit) answers
413, like a body over the size limit.
"""

SCORE_EXAMPLES: dict[str, Any] = {
    "one deal, explained": {
        "summary": "One open deal with its history and activities",
        "value": {"deals": [EXAMPLE_DEAL], "as_of": EXAMPLE_AS_OF, "explain": True, "top_k": 3},
    },
    "batch without explanations": {
        "summary": "A batch, probabilities only (fast)",
        "value": {"deals": [EXAMPLE_DEAL], "as_of": EXAMPLE_AS_OF, "explain": False},
    },
}


@router.post(
    "/score",
    summary="Score deals: win probability, this quarter, drivers, actions",
    description=(
        "Per deal: `win_probability` and `win_in_period_probability` (won in the fiscal "
        "quarter of `as_of`) with their intervals, the baselines (stage weight from the CRM "
        "and from history, commit), a grade, risk flags, and with `explain`: the 7- and "
        "30-day trend, the top drivers (SHAP, grouped into factors) and next actions ranked "
        "by expected value (change in probability x amount). Action effects are "
        "associations learned from past deals, not guarantees.\n" + INPUT_POLICY
    ),
    response_model=ScoreResponse,
    responses=documented(401, 403, 413, 422, 500, 503),
)
async def score(
    request: Annotated[ScoreRequest, Body(openapi_examples=SCORE_EXAMPLES)],
    loaded: CurrentModel,
    settings: SettingsDep,
    caller: KeyCaller,
    log: PredictionLogDep,
) -> Response:
    check_batch(len(request.deals), settings.max_batch)
    require_deals_in_scope(caller, request.deals, loaded)

    def work() -> ScoreResponse:
        check_deals(request.deals, loaded.stages)
        payloads = model_currency(request.deals, loaded)
        as_of = [deal.as_of or request.as_of for deal in request.deals]
        scores = loaded.scorer.score(
            payloads, as_of=as_of, explain=request.explain, top_k=request.top_k
        )
        if log is not None:
            log.append(scores, loaded.stamp)
        return score_response(scores, loaded)

    return await run_scoring(len(request.deals), work)
