"""Amounts in the currency the model learned in, whatever currency a request sends them in.

Training reads an export whose history amounts `features.validation.convert_currency` put in
the corporate currency with the export's `exchange_rates`. `recorded_currencies` keeps what
that used, for the bundle: the corporate currency and the rates. A request's amounts are
converted with them by the same rule (`rate_on`: the latest dated rate valid on the row's
close date, else the undated rate; amount / rate), and a currency the model has no rate for
is a problem naming the field, never a silent pass.

The corporate currency is the one whose rate is 1 or, in an export without rates, the one
currency its history uses; an export without currencies records none, and then a request
must send its amounts without one too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from features.loading import CrmExport
from features.validation import rate_on


def recorded_currencies(export: CrmExport) -> dict[str, Any]:
    """`{"corporate": code or None, "rates": [{"currency", "rate", "valid_from"}, ...]}`,
    JSON-ready (valid_from an ISO date or None)."""
    rates = export.exchange_rates
    if rates.empty or "currency" not in rates or "rate" not in rates:
        rates = pd.DataFrame({"currency": [], "rate": [], "valid_from": []})
    rates = rates.dropna(subset=["currency", "rate"])
    used = (
        sorted(export.history["currency"].dropna().astype(str).unique())
        if "currency" in export.history
        else []
    )
    at_par = sorted(rates.loc[rates["rate"] == 1.0, "currency"].astype(str).unique())
    corporate = (
        at_par[0] if len(at_par) == 1 else used[0] if rates.empty and len(used) == 1 else None
    )
    valid_from = rates["valid_from"] if "valid_from" in rates else pd.Series(None, rates.index)
    return {
        "corporate": corporate,
        "rates": [
            {
                "currency": str(currency),
                "rate": float(rate),
                "valid_from": None if pd.isna(start) else pd.Timestamp(start).isoformat(),
            }
            for currency, rate, start in zip(
                rates["currency"], rates["rate"], valid_from, strict=True
            )
        ],
    }


def convert_amounts(
    deals: Sequence[Mapping[str, Any]], recorded: Mapping[str, Any] | None
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The deals with each history amount in the corporate currency, and the problems (by
    path: `deals[0].history[2].currency`) of the rows whose currency has no rate. Without a
    record (a bundle from before currencies were recorded) the deals are returned as sent."""
    out = [dict(deal) for deal in deals]
    if recorded is None:
        return out, {}
    corporate: str | None = recorded.get("corporate")
    foreign: list[tuple[int, int, str, Any]] = []
    for i, deal in enumerate(out):
        for j, row in enumerate(deal.get("history") or ()):
            currency = row.get("currency")
            if currency is not None and currency != corporate:
                foreign.append((i, j, currency, row.get("close_date")))
    if not foreign:
        return out, {}
    rates = pd.DataFrame(
        recorded.get("rates") or [], columns=["currency", "rate", "valid_from"]
    ).astype({"currency": "string", "rate": "float64"})
    rates["valid_from"] = pd.to_datetime(rates["valid_from"], utc=True)
    found = rate_on(
        pd.Series([currency for _, _, currency, _ in foreign], dtype="string"),
        pd.Series(pd.to_datetime([when for *_, when in foreign], utc=True)),
        rates,
    )
    known = sorted({str(code) for code in (corporate, *rates["currency"].dropna()) if code})
    problems: dict[str, str] = {}
    for (i, j, currency, _), rate in zip(foreign, found, strict=True):
        if pd.isna(rate):
            problems[f"deals[{i}].history[{j}].currency"] = (
                f"the model has no exchange rate for {currency} on this row's close date; "
                f"it converts {', '.join(known) or 'no currency'} (the rates training used)"
                if known
                else "the model was trained on amounts without a currency: send none"
            )
            continue
        history = out[i]["history"] = list(out[i]["history"])
        row = dict(history[j])
        if row.get("amount") is not None:
            row["amount"] = float(row["amount"]) / float(rate)
        row["currency"] = corporate
        history[j] = row
    return out, problems
