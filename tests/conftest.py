"""Shared fixtures: small, hand-made contract exports written to a temporary folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest


def small_export_tables() -> dict[str, pd.DataFrame]:
    """A tiny, valid export: three deals (won, lost, open), activities, owners and quotas."""
    return {
        "opportunities": pd.DataFrame(
            {
                "opportunity_id": ["O1", "O2", "O3"],
                "account_id": ["A1", "A1", "A2"],
                "owner_id": ["U1", "U2", "U1"],
                "created_at": ["2026-01-05T10:00:00", "2026-02-01", "2026-03-02T09:30:00+01:00"],
                "type": ["New Business", "Renewal", "Upsell"],
                "lead_source": ["Web", "Partner", "Outbound"],
            }
        ),
        "opportunity_history": pd.DataFrame(
            {
                "opportunity_id": ["O1", "O1", "O1", "O2", "O2", "O3"],
                "changed_at": [
                    "2026-01-05T10:00:00",
                    "2026-02-05T10:00:00+02:00",
                    "2026-03-20T10:00:00Z",
                    "2026-02-01",
                    "2026-02-20T12:00:00",
                    "2026-03-02T09:30:00+01:00",
                ],
                "stage": [
                    "Prospecting",
                    "Negotiation/Review",
                    "Closed Won",
                    "Prospecting",
                    "Closed Lost",
                    "Qualification",
                ],
                "amount": [1000.0, 900.0, 900.0, 500.0, 500.0, 2500.0],
                "close_date": [
                    "2026-03-31",
                    "2026-03-31",
                    "2026-03-20",
                    "2026-06-30",
                    "2026-02-20",
                    "2026-09-30",
                ],
                "forecast_category": [
                    "Pipeline",
                    "Commit",
                    "Closed",
                    "Pipeline",
                    "Omitted",
                    "Best Case",
                ],
                "probability": [10, 90, 100, 10, 0, 10],
            }
        ),
        "activities": pd.DataFrame(
            {
                "opportunity_id": ["O1", "O1", "O3"],
                "occurred_at": ["2026-01-10T15:00:00", "2026-02-10", "2026-03-05T08:00:00"],
                "type": ["meeting", "email", "call"],
                "contact_role": ["decision_maker", None, "champion"],
            }
        ),
        "accounts": pd.DataFrame({"account_id": ["A1", "A2"], "industry": ["Retail", "Finance"]}),
        "owners": pd.DataFrame(
            {"owner_id": ["U1", "U2"], "team": ["East", "West"], "manager_id": ["M1", "M2"]}
        ),
        "quotas": pd.DataFrame(
            {"period": ["2026-Q1", "2026-Q1"], "owner_id": ["U1", "U2"], "quota": [5000.0, 4000.0]}
        ),
    }


def write_tables(folder: Path, tables: dict[str, pd.DataFrame], *, fmt: str = "csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        if fmt == "csv":
            frame.to_csv(folder / f"{name}.csv", index=False)
        else:
            frame.to_parquet(folder / f"{name}.parquet", index=False)
    return folder


@pytest.fixture
def small_export(tmp_path: Path) -> Path:
    return write_tables(tmp_path / "export", small_export_tables())


@pytest.fixture
def export_with(tmp_path: Path) -> Callable[..., Path]:
    """Write the small export after `damage` edits its tables (a dict of DataFrames)."""

    def make(damage: Callable[[dict[str, pd.DataFrame]], None], *, fmt: str = "csv") -> Path:
        tables = small_export_tables()
        damage(tables)
        return write_tables(tmp_path / "damaged", tables, fmt=fmt)

    return make
