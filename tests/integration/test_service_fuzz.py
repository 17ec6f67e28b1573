"""Fuzzing: no input, however odd, makes the service answer 5xx or put a non-finite number
on the wire.

Two fuzzers. Schemathesis generates requests from the service's own OpenAPI schema (valid and
invalid), for every operation, and checks each answer: no server error, a documented status,
a body that matches the documented schema. Hypothesis then drives valid-looking deals deeper:
known stages, extreme but allowed numbers and times, odd orderings, so that the scorer
itself, not only the schema, meets the edge cases.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from serving.app import create_app
from tests.integration.conftest import API_KEY, Registry, service_settings

FUZZ_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)


@pytest.fixture(scope="module")
def fuzzed_app(registry: Registry) -> FastAPI:
    return create_app(service_settings(registry, model_uri=f"models:/dealcast/{registry.version}"))


@pytest.fixture(scope="module")
def api_schema(fuzzed_app: FastAPI) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", fuzzed_app)


def refuse_constant(constant: str) -> None:
    raise AssertionError(f"non-finite number {constant} on the wire")


def operation_ids(schema: Any) -> list[str]:
    return [result.ok().label for result in schema.get_all_operations()]


# Schemathesis's own pytest plugin (`from_fixture`) does not run on pytest 9 yet, so its
# strategies are driven by plain Hypothesis, one operation and generation mode at a time.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_schema_fuzzing_finds_no_server_error(api_schema: Any, mode: GenerationMode) -> None:
    checks = [content_type_conformance, status_code_conformance, response_schema_conformance]
    for result in api_schema.get_all_operations():
        operation = result.ok()
        if mode is GenerationMode.NEGATIVE and not len(operation.body):
            continue  # nothing to make invalid in a request without a body or parameters

        @given(case=operation.as_strategy(generation_mode=mode))
        @FUZZ_SETTINGS
        def fuzz(case: Any) -> None:
            response = case.call(headers={"X-API-Key": API_KEY})
            assert response.status_code < 500, response.text[:2000]
            if mode is GenerationMode.POSITIVE:
                case.validate_response(response, checks=checks)
            json.loads(response.text, parse_constant=refuse_constant)  # every answer is JSON

        fuzz()


# --------------------------------------------------------------------------- deeper


STAGES = (
    "Prospecting",
    "Qualification",
    "Discovery",
    "Solution Design",
    "Proposal",
    "Negotiation",
    "Verbal Commit",
    "Closed Won",
    "Closed Lost",
)
EPOCH = datetime(2020, 1, 1, tzinfo=UTC)


def times() -> st.SearchStrategy[str]:
    """Mostly recent times, sometimes the extremes the schema allows, naive or with offsets."""
    recent = st.integers(min_value=0, max_value=8 * 365 * 86400).map(
        lambda s: EPOCH + timedelta(seconds=s)
    )
    extreme = st.sampled_from(
        [datetime(1900, 1, 1, tzinfo=UTC), datetime(2199, 12, 31, 23, 59, 59, tzinfo=UTC)]
    )
    moment = st.one_of(recent, recent, recent, extreme)
    offset = st.sampled_from(["Z", "+00:00", "-08:00", "+05:30", ""])
    return st.builds(
        lambda t, o: (
            t.strftime("%Y-%m-%dT%H:%M:%S") + o if o else t.replace(tzinfo=None).isoformat()
        ),
        moment,
        offset,
    )


amounts = st.one_of(
    st.just(0.0), st.floats(min_value=0, max_value=1e15, allow_nan=False), st.just(1e15)
)
percents = st.one_of(st.none(), st.floats(min_value=0, max_value=100, allow_nan=False))
history_rows = st.fixed_dictionaries(
    {
        "changed_at": times(),
        "stage": st.sampled_from(STAGES),
        "amount": amounts,
        "close_date": times(),
    },
    optional={
        "forecast_category": st.sampled_from(
            ["Pipeline", "Best Case", "Commit", "Closed", "Omitted", None]
        ),
        "probability": percents,
        "manual_probability": percents,
        "currency": st.just("USD"),
    },
)
activity_rows = st.fixed_dictionaries(
    {
        "occurred_at": times(),
        "type": st.one_of(
            st.sampled_from(["call", "email", "meeting", "demo", "proposal", "other"]),
            st.text(min_size=1, max_size=8),
        ),
    },
    optional={"contact_role": st.one_of(st.none(), st.sampled_from(["decision_maker", "x"]))},
)
ids = st.text(min_size=1, max_size=6)
deals = st.fixed_dictionaries(
    {
        "opportunity_id": ids,
        "account_id": ids,
        "owner_id": ids,
        "created_at": times(),
        "history": st.lists(history_rows, min_size=1, max_size=6),
        "activities": st.lists(activity_rows, max_size=8),
    },
    optional={
        "type": st.one_of(st.none(), st.sampled_from(["New Business", "Renewal", "?"])),
        "lead_source": st.one_of(st.none(), st.text(max_size=5)),
        "account": st.fixed_dictionaries(
            {},
            optional={
                "employees": st.one_of(
                    st.integers(-(2**63), 2**63 - 1),
                    st.floats(allow_nan=False, allow_infinity=False),
                ),
                "industry": st.text(max_size=5),
                "segment": st.one_of(st.none(), st.text(max_size=5)),
            },
        ),
        "owner": st.fixed_dictionaries({}, optional={"team": st.text(min_size=1, max_size=5)}),
    },
)


@pytest.fixture(scope="module")
def deep_client(fuzzed_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(
        fuzzed_app, headers={"X-API-Key": API_KEY}, raise_server_exceptions=False
    ) as client:
        yield client


OPEN_STAGES = STAGES[:7]
NOW = datetime.now(UTC)


@st.composite
def coherent_deal(draw: st.DrawFn) -> tuple[dict[str, Any], datetime]:
    """A deal whose rows are in order after its creation (so most reach the scorer), with
    extreme amounts, odd close dates, activities of any type (never before creation: that is
    a 422, as history before it is)."""
    created = draw(
        st.datetimes(
            min_value=datetime(1990, 1, 1), max_value=datetime(2026, 6, 1), timezones=st.just(UTC)
        )
    )
    days = st.floats(min_value=0, max_value=400, allow_nan=False)
    offsets = sorted(draw(st.lists(days, min_size=1, max_size=6)))
    offsets[0] = 0.0
    history = []
    for offset in offsets:
        row = draw(history_rows)
        row["changed_at"] = (created + timedelta(days=offset)).isoformat()
        row["stage"] = draw(st.sampled_from(OPEN_STAGES))
        close = created + timedelta(days=draw(st.floats(min_value=-100, max_value=900)))
        row["close_date"] = close.date().isoformat()
        history.append(row)
    activities = []
    for offset in draw(st.lists(st.floats(min_value=0, max_value=400), max_size=10)):
        row = draw(activity_rows)
        row["occurred_at"] = (created + timedelta(days=offset)).isoformat()
        activities.append(row)
    deal = draw(deals)
    deal.update(created_at=created.isoformat(), history=history, activities=activities)
    latest = created + timedelta(days=max([*offsets, 0.0]))
    if activities:
        latest = max(latest, *(datetime.fromisoformat(a["occurred_at"]) for a in activities))
    return deal, latest


@pytest.fixture(scope="module")
def statuses() -> Counter[int]:
    return Counter()


@given(
    # Distinct ids: a deal sent twice in one request is a 422.
    batch=st.lists(
        coherent_deal(), min_size=1, max_size=4, unique_by=lambda drawn: drawn[0]["opportunity_id"]
    ),
    later=st.floats(min_value=0, max_value=200),
    explain=st.booleans(),
    top_k=st.integers(min_value=1, max_value=20),
)
@settings(
    max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)
def test_valid_looking_deals_never_break_scoring(
    deep_client: TestClient,
    statuses: Counter[int],
    batch: list[tuple[dict[str, Any], datetime]],
    later: float,
    explain: bool,
    top_k: int,
) -> None:
    as_of = max(latest for _, latest in batch) + timedelta(days=later)
    body = {
        "deals": [deal for deal, _ in batch],
        "as_of": as_of.isoformat(),
        "explain": explain,
        "top_k": top_k,
    }
    response = deep_client.post("/v1/score", json=body)
    statuses[response.status_code] += 1
    assert response.status_code in (200, 422), response.text[:2000]
    json.loads(response.text, parse_constant=refuse_constant)


def test_the_scoring_fuzzer_reached_the_model(statuses: Counter[int]) -> None:
    # Most generated deals must be scored, or the fuzzer only exercised validation.
    assert statuses[200] >= 0.5 * sum(statuses.values()), statuses


@given(
    batch=st.lists(coherent_deal(), max_size=4),
    quota=st.floats(min_value=1e-6, max_value=1e15),
    won=amounts,
)
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_valid_looking_pipelines_never_break_attainment(
    deep_client: TestClient,
    batch: list[tuple[dict[str, Any], datetime]],
    quota: float,
    won: float,
) -> None:
    as_of = max([NOW, *(latest for _, latest in batch)])
    body = {
        "period": f"{as_of.year}-Q{(as_of.month - 1) // 3 + 1}",
        "quota": quota,
        "won_to_date": won,
        "team": "T",
        "as_of": as_of.isoformat(),
        "deals": [deal for deal, _ in batch],
    }
    response = deep_client.post("/v1/attainment", json=body)
    assert response.status_code in (200, 422), response.text[:2000]
    json.loads(response.text, parse_constant=refuse_constant)
