"""The model store's swap rules, with fake models and a fake registry: a version that fails
to load or to warm up is never served, the old one serves on, rejected versions are not
retried, and a request's model does not change under it."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from serving.errors import ModelUnavailable
from serving.model_store import ModelStore, check_golden


@dataclass
class FakeScore:
    opportunity_id: str
    win_probability: float
    win_in_period_probability: float


@dataclass
class FakeScorer:
    probability: float

    def score(self, deals: list[Any], **_: Any) -> list[FakeScore]:
        return [FakeScore("G", self.probability, self.probability / 2) for _ in deals]


@dataclass
class FakeModel:
    """A pyfunc's face: `.bundle` (golden, metadata, plan) and `.scorer`."""

    probability: float
    recorded: float
    bundle: Any = field(init=False)
    scorer: FakeScorer = field(init=False)

    def __post_init__(self) -> None:
        self.scorer = FakeScorer(self.probability)
        expected = {
            "win_probability": self.recorded,
            "win_in_period_probability": self.recorded / 2,
        }
        self.bundle = SimpleNamespace(
            golden={"deal": {"opportunity_id": "G"}, "as_of": None, "expected": expected},
            metadata={"name": "dealcast"},
        )


class FakeRegistry:
    def __init__(self) -> None:
        self.alias_version = "1"

    def get_model_version_by_alias(self, name: str, alias: str) -> Any:
        if self.alias_version == "gone":
            raise RuntimeError("registry unreachable")
        return SimpleNamespace(version=self.alias_version)

    def get_model_version(self, name: str, version: str) -> Any:
        return SimpleNamespace(run_id=f"run-{version}")


MODELS: dict[str, Any] = {
    "models:/dealcast/1": FakeModel(0.4, 0.4),
    "models:/dealcast/2": FakeModel(0.6, 0.6),
    "models:/dealcast/3": FakeModel(0.7, 0.5),  # scores differently from its record
}


def loader(calls: list[str]) -> Any:
    def load(uri: str) -> Any:
        calls.append(uri)
        if uri not in MODELS:
            raise OSError(f"no such model {uri}")
        return MODELS[uri]

    return load


@pytest.fixture
def store() -> tuple[ModelStore, FakeRegistry, list[str]]:
    calls: list[str] = []
    registry = FakeRegistry()
    store = ModelStore("models:/dealcast@champion", poll_seconds=60, loader=loader(calls))
    store._client = registry  # type: ignore[assignment]
    return store, registry, calls


def test_loads_the_version_the_alias_names(store: tuple[ModelStore, FakeRegistry, list]) -> None:
    models, _, calls = store
    models.start(watch=False)
    loaded = models.require()
    assert (loaded.version, loaded.alias, loaded.run_id) == ("1", "champion", "run-1")
    assert calls == ["models:/dealcast/1"]
    assert not models.refresh()  # same version: nothing to do
    assert calls == ["models:/dealcast/1"]


def test_swaps_to_a_new_version(store: tuple[ModelStore, FakeRegistry, list]) -> None:
    models, registry, _ = store
    models.start(watch=False)
    in_flight = models.require()
    registry.alias_version = "2"
    assert models.refresh()
    assert models.require().version == "2"
    assert in_flight.version == "1"  # a request keeps the model it started with
    assert in_flight.scorer.probability == 0.4


@pytest.mark.parametrize("bad", ["3", "9"])
def test_a_bad_version_is_never_served(
    store: tuple[ModelStore, FakeRegistry, list], bad: str
) -> None:
    models, registry, calls = store
    models.start(watch=False)
    registry.alias_version = bad
    assert not models.refresh()
    assert models.require().version == "1"
    assert not models.refresh()  # rejected versions are not retried
    assert calls.count(f"models:/dealcast/{bad}") == 1
    registry.alias_version = "2"
    assert models.refresh()
    assert models.require().version == "2"


def test_registry_outage_keeps_serving(store: tuple[ModelStore, FakeRegistry, list]) -> None:
    models, registry, _ = store
    models.start(watch=False)
    registry.alias_version = "gone"
    assert not models.refresh()
    assert models.require().version == "1"


def test_nothing_loaded_is_unavailable_with_the_reason(
    store: tuple[ModelStore, FakeRegistry, list],
) -> None:
    models, registry, _ = store
    registry.alias_version = "9"
    models.start(watch=False)
    with pytest.raises(ModelUnavailable, match="no such model"):
        models.require()
    assert "no such model" in (models.error or "")


def test_golden_check_tolerance() -> None:
    check_golden(FakeModel(0.4, 0.4 + 1e-12))  # type: ignore[arg-type]
    with pytest.raises(Exception, match="golden deal"):
        check_golden(FakeModel(0.4, 0.4 + 1e-6))  # type: ignore[arg-type]


def test_pinned_uri_is_not_watched() -> None:
    calls: list[str] = []
    store = ModelStore("models:/dealcast/2", loader=loader(calls))
    store._client = FakeRegistry()  # type: ignore[assignment]
    store.start(watch=False)
    assert store.require().version == "2"
    assert not store.watched
    assert not store.refresh()
    assert calls == ["models:/dealcast/2"]
