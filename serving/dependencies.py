"""The service's dependencies as `Annotated` aliases: settings, the model store, the model.

The app keeps its `Settings` and `ModelStore` on `app.state` (set by `serving.app`); these
read them per request. `CurrentModel` is the model at the start of the request: a swap while
the request runs does not change it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from models.prediction_log import PredictionLog
from serving.model_store import LoadedModel, ModelStore
from serving.settings import Settings


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_store(request: Request) -> ModelStore:
    store: ModelStore = request.app.state.store
    return store


async def get_model(store: Annotated[ModelStore, Depends(get_store)]) -> LoadedModel:
    return store.require()


async def get_prediction_log(request: Request) -> PredictionLog | None:
    """The prediction log, when DEALCAST_PREDICTION_LOG is set (made at start-up)."""
    log: PredictionLog | None = getattr(request.app.state, "prediction_log", None)
    return log


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[ModelStore, Depends(get_store)]
CurrentModel = Annotated[LoadedModel, Depends(get_model)]
PredictionLogDep = Annotated[PredictionLog | None, Depends(get_prediction_log)]
