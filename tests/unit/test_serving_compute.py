"""Where a request's work runs: a few deals on the event loop, a batch (and its JSON answer)
in a worker thread, and the heap settled (frozen) once a model is loaded."""

from __future__ import annotations

import gc
import threading

import anyio
import pytest
from pydantic import BaseModel

from serving.compute import INLINE_DEALS, json_response, run_scoring
from serving.settings import SettingsInvalid, load_settings


class Threads(BaseModel):
    work: int
    answer: int


def _threads() -> BaseModel:
    """Which thread ran the work, and which thread serialises its answer."""
    work = threading.get_ident()

    class Answered(Threads):
        def model_dump_json(self, **kwargs: object) -> str:
            return Threads(work=self.work, answer=threading.get_ident()).model_dump_json()

    return Answered(work=work, answer=0)


@pytest.mark.parametrize(
    ("deals", "inline"), [(1, True), (INLINE_DEALS, True), (INLINE_DEALS + 1, False)]
)
def test_a_few_deals_run_on_the_loop_a_batch_in_a_worker(deals: int, inline: bool) -> None:
    async def main() -> tuple[int, Threads]:
        loop_thread = threading.get_ident()
        response = await run_scoring(deals, _threads)
        return loop_thread, Threads.model_validate_json(bytes(response.body))

    loop_thread, threads = anyio.run(main)
    assert (threads.work == loop_thread) is inline
    assert threads.answer == threads.work  # the answer is written where the work ran


def test_errors_of_the_work_reach_the_caller_from_either_place() -> None:
    def fail() -> BaseModel:
        raise ValueError("bad deal")

    for deals in (1, INLINE_DEALS + 1):
        with pytest.raises(ValueError, match="bad deal"):
            anyio.run(run_scoring, deals, fail)


def test_json_response_is_the_models_json() -> None:
    class Answer(BaseModel):
        p: float
        name: str | None = None

    response = json_response(Answer(p=0.25))
    assert response.media_type == "application/json"
    assert response.body == b'{"p":0.25,"name":null}'


def test_worker_threads_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEALCAST_AUTH", "off")
    assert load_settings().worker_threads == 2
    monkeypatch.setenv("DEALCAST_WORKER_THREADS", "4")
    assert load_settings().worker_threads == 4
    monkeypatch.setenv("DEALCAST_WORKER_THREADS", "0")
    with pytest.raises(SettingsInvalid, match="WORKER_THREADS"):
        load_settings()


def test_loading_a_model_freezes_the_heap() -> None:
    from serving.model_store import _settle_heap

    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    _settle_heap()
    try:
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
