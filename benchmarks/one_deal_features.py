"""Features of one deal sent as a request payload: median latency in process.

Target (issue 3): a deal with 30 history rows and 50 activities in at most 2 ms (median).
Measured as the service will do it: payload rows -> DealTables -> feature arrays, against an
outcome reference built from a 20,000-deal synthetic world (built once, outside the timing).

    python benchmarks/one_deal_features.py [--repeats 2000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.record import save
from features.deals import DealTables
from features.loading import build_export
from features.payload import deal_tables_from_payloads
from features.reference import OutcomeReference
from features.snapshots import FeaturePlan, feature_columns
from features.synthetic import generate_world


def deal_payload(stages: list[str], *, n_history: int, n_activities: int) -> dict:
    """A realistic open deal: stage moves, pushes and amount edits, mixed activities."""
    rng = np.random.default_rng(7)
    created = pd.Timestamp("2026-06-02T09:00:00Z")
    history = []
    for i in range(n_history):
        history.append(
            {
                "changed_at": (created + pd.Timedelta(hours=60 * i)).isoformat(),
                "stage": stages[min(i // 6, len(stages) - 1)],
                "amount": float(50_000 - 500 * (i % 4)),
                "close_date": (pd.Timestamp("2026-12-15") + pd.Timedelta(days=7 * (i // 10)))
                .date()
                .isoformat(),
                "forecast_category": ["Pipeline", "Best Case", "Commit"][min(i // 12, 2)],
                "probability": None,
            }
        )
    kinds = ["call", "email", "meeting", "demo", "proposal"]
    activities = [
        {
            "occurred_at": (created + pd.Timedelta(hours=int(h))).isoformat(),
            "type": kinds[i % len(kinds)],
            "contact_role": "decision_maker" if i % 7 == 0 else None,
        }
        for i, h in enumerate(np.sort(rng.integers(1, 60 * n_history, n_activities)))
    ]
    return {
        "opportunity_id": "BENCH-1",
        "account_id": "ACC-00001",
        "owner_id": "REP-001",
        "created_at": created.isoformat(),
        "type": "New Business",
        "lead_source": "Web",
        "history": history,
        "activities": activities,
        "account": {
            "segment": "Mid-Market",
            "industry": "Software",
            "region": "EMEA",
            "employees": 800,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--history", type=int, default=30)
    parser.add_argument("--activities", type=int, default=50)
    args = parser.parse_args()

    world = generate_world(n_opportunities=20_000, seed=1)
    export = build_export(world.tables, stages=world.stages)
    plan = FeaturePlan.from_export(export)
    reference = OutcomeReference(DealTables.from_export(export, plan.attributes))
    payload = deal_payload(
        list(plan.stages.open_stages), n_history=args.history, n_activities=args.activities
    )
    as_of = np.array([pd.Timestamp("2026-11-16T12:00:00Z").value])

    def once() -> None:
        tables = deal_tables_from_payloads([payload], plan)
        feature_columns(tables, np.array([0]), as_of, plan=plan, reference=reference)

    for _ in range(50):  # warm-up, and the reference's context at this time gets cached
        once()
    timings = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        once()
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    save(
        "one_deal_features",
        {
            "history_rows": args.history,
            "activities": args.activities,
            "repeats": args.repeats,
            "median_ms": round(statistics.median(timings), 3),
            "p90_ms": round(timings[int(0.9 * len(timings))], 3),
            "p99_ms": round(timings[int(0.99 * len(timings))], 3),
            "target": "median <= 2 ms",
        },
    )


if __name__ == "__main__":
    main()
