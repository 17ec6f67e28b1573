"""`GET /v1/model`: which model answers, where it came from and how it backtested."""

from __future__ import annotations

from fastapi import APIRouter

from serving.dependencies import CurrentModel
from serving.errors import documented
from serving.present import model_info
from serving.schemas import ModelInfoResponse

router = APIRouter(tags=["model"])


@router.get(
    "/model",
    summary="The served model: name, version, alias, training window, backtest summary",
    responses=documented(401, 503),
)
async def model(loaded: CurrentModel) -> ModelInfoResponse:
    return model_info(loaded)
