"""A failed model load is tried again with backoff (issue 15 item 2), on a fake clock: the
delay doubles up to its cap, a new version of the alias is tried at once, a success clears
the failure, and the watcher sleeps until the next try when it is due before the next poll."""

from __future__ import annotations

from typing import Any

from serving.model_store import ModelStore
from tests.unit.test_serving_model_store import MODELS, FakeRegistry


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _store(uri: str, *, broken: set[str]) -> tuple[ModelStore, FakeRegistry, Clock, list[str]]:
    calls: list[str] = []

    def load(target: str) -> Any:
        calls.append(target)
        if target in broken or target not in MODELS:
            raise OSError(f"[Errno 30] Read-only file system: {target}/registered_model_meta")
        return MODELS[target]

    clock = Clock()
    store = ModelStore(
        uri, poll_seconds=30, retry_seconds=1, retry_max_seconds=4, loader=load, clock=clock
    )
    registry = FakeRegistry()
    store._client = registry  # type: ignore[assignment]
    return store, registry, clock, calls


def test_a_failed_first_load_is_retried_with_doubling_delays() -> None:
    broken = {"models:/dealcast/2"}
    store, _, clock, calls = _store("models:/dealcast/2", broken=broken)
    store.start(watch=False)
    delays = []
    for _ in range(5):
        failure = store.load_failure
        assert failure is not None and store.current is None
        delay = failure.next_attempt - clock.now
        delays.append(delay)
        assert store._next_wait() == delay  # the watcher wakes for the try, not the poll
        clock.now += delay - 0.01
        assert not store.refresh()  # not yet due: no load
        clock.now += 0.01
        store.refresh()
    assert delays == [1, 2, 4, 4, 4]
    assert store.load_failure is not None and store.load_failure.attempts == 6
    assert "Read-only file system" in store.load_failure.reason
    assert len(calls) == 6
    broken.clear()  # the store is writable again
    clock.now = store.load_failure.next_attempt
    assert store.refresh()
    assert store.require().version == "2"
    assert store.load_failure is None and store.error is None


def test_a_new_version_of_the_alias_is_tried_at_once_and_the_old_one_serves() -> None:
    store, registry, _, calls = _store("models:/dealcast@champion", broken={"models:/dealcast/2"})
    store.start(watch=False)
    registry.alias_version = "2"
    assert not store.refresh()
    assert store.require().version == "1"
    failure = store.load_failure
    assert failure is not None and failure.version == "2" and failure.attempts == 1
    assert not store.refresh()  # backing off
    assert calls.count("models:/dealcast/2") == 1
    registry.alias_version = "4"  # not loadable either, but new: tried now
    assert not store.refresh()
    assert store.load_failure is not None and store.load_failure.version == "4"
    assert store.load_failure.attempts == 1
    registry.alias_version = "1"  # back on the served version: nothing failing any more
    assert not store.refresh()
    assert store.load_failure is None
    assert store._next_wait() == 30
