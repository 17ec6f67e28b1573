"""A request's amounts are converted with the exchange rates training used (issue 15 item 7):
what the bundle records from an export, and the conversion by the export's own rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from features.currencies import convert_amounts, recorded_currencies
from features.loading import load_export
from features.synthetic import generate_world, write_world

RECORD: dict[str, Any] = {
    "corporate": "USD",
    "rates": [
        {"currency": "EUR", "rate": 0.9, "valid_from": None},
        {"currency": "EUR", "rate": 0.8, "valid_from": "2026-07-01T00:00:00+00:00"},
        {"currency": "JPY", "rate": 150.0, "valid_from": "2026-01-01T00:00:00+00:00"},
    ],
}


def _deal(*rows: tuple[str | None, str, float]) -> dict[str, Any]:
    return {
        "opportunity_id": "OPP-1",
        "history": [
            {"currency": currency, "close_date": pd.Timestamp(close, tz="UTC"), "amount": amount}
            for currency, close, amount in rows
        ],
    }


def test_amounts_take_the_rate_valid_on_their_close_date() -> None:
    deal = _deal(
        ("EUR", "2026-03-31", 900.0),  # before the dated rate: the undated 0.9
        ("EUR", "2026-09-30", 800.0),  # the rate from July: 0.8
        ("USD", "2026-09-30", 500.0),
        (None, "2026-09-30", 400.0),
        ("JPY", "2026-09-30", 15000.0),
    )
    (converted,), problems = convert_amounts([deal], RECORD)
    assert problems == {}
    assert [row["amount"] for row in converted["history"]] == pytest.approx(
        [1000.0, 1000.0, 500.0, 400.0, 100.0]
    )
    assert {row["currency"] for row in converted["history"]} == {"USD", None}
    assert deal["history"][0]["amount"] == 900.0  # the request is not changed


def test_a_currency_without_a_rate_is_named() -> None:
    deals = [
        _deal(("USD", "2026-09-30", 1.0)),
        _deal(("USD", "2026-09-30", 1.0), ("ZZZ", "2026-09-30", 2.0), ("JPY", "2025-06-30", 3.0)),
    ]
    _, problems = convert_amounts(deals, RECORD)
    # JPY's only rate starts in 2026: a 2025 close date has none.
    assert set(problems) == {"deals[1].history[1].currency", "deals[1].history[2].currency"}
    assert "ZZZ" in problems["deals[1].history[1].currency"]
    assert "EUR, JPY, USD" in problems["deals[1].history[1].currency"]


def test_a_model_trained_without_currencies_takes_none() -> None:
    record = {"corporate": None, "rates": []}
    _, problems = convert_amounts([_deal(("USD", "2026-09-30", 1.0))], record)
    assert problems == {
        "deals[0].history[0].currency": (
            "the model was trained on amounts without a currency: send none"
        )
    }
    assert convert_amounts([_deal((None, "2026-09-30", 1.0))], record)[1] == {}


def test_without_a_record_amounts_pass_as_sent() -> None:
    deal = _deal(("ZZZ", "2026-09-30", 7.0))
    assert convert_amounts([deal], None) == ([deal], {})


def test_the_record_of_an_export(tmp_path: Path) -> None:
    world = generate_world(n_opportunities=200, seed=3)
    write_world(world, tmp_path / "plain")
    assert recorded_currencies(load_export(tmp_path / "plain")) == {
        "corporate": "USD",  # the one currency its history uses, no rates
        "rates": [],
    }
    write_world(world, tmp_path / "rated")
    (tmp_path / "rated" / "exchange_rates.csv").write_text(
        "currency,rate,valid_from\nUSD,1.0,\nEUR,0.9,\nEUR,0.8,2026-07-01\n"
    )
    record = recorded_currencies(load_export(tmp_path / "rated"))
    assert record["corporate"] == "USD"
    assert {(r["currency"], r["rate"]) for r in record["rates"]} == {
        ("USD", 1.0),
        ("EUR", 0.9),
        ("EUR", 0.8),
    }
    dated = [r["valid_from"] for r in record["rates"] if r["rate"] == 0.8]
    assert dated and dated[0].startswith("2026-07-01")
    (converted,), problems = convert_amounts([_deal(("EUR", "2026-09-30", 80.0))], record)
    assert problems == {} and converted["history"][0]["amount"] == pytest.approx(100.0)
