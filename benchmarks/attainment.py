"""Attainment for a 5,000-deal pipeline: median time of `simulate_attainment`.

Target (issue 4): at most 1 second. The pipeline is realistic: in-period probabilities from a
Beta(0.7, 2.3) (mean 0.23) with a model interval around each, log-normal amounts, a shared
factor (dependence 0.6) and new business learned from two years of closed deals of six teams.
The quota sits at the expected revenue, where P(attain) is near 1/2 and the Monte Carlo
needs the most draws. Each run starts cold (the cached table of logit centres is cleared).
A second case, independent deals without intervals, is the one that needs the most draws.

    python benchmarks/attainment.py [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.record import save
from models.attainment import AttainmentResult, NewBusinessModel, simulate_attainment
from models.attainment import _centre_table as centre_table

DEALS = 5_000
AS_OF = pd.Timestamp("2026-02-01", tz="UTC")  # 2026-Q1, 59 days left
DAYS_LEFT = (pd.Timestamp("2026-04-01", tz="UTC") - AS_OF) / pd.Timedelta(days=1)


def closed_history(rng: np.random.Generator) -> pd.DataFrame:
    """Two years of closed deals of six teams: creation uniform, cycles of ~45 days."""
    created = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(
        rng.uniform(0, 760, 12_000), unit="D"
    )
    closed = created + pd.to_timedelta(rng.exponential(45.0, created.size), unit="D")
    return pd.DataFrame(
        {
            "team": rng.choice([f"team-{k}" for k in range(6)], created.size),
            "created_at": created,
            "close_time": closed,
            "won": rng.random(created.size) < 0.3,
            "amount": rng.lognormal(10.0, 1.1, created.size),
        }
    )


def pipeline(rng: np.random.Generator) -> dict[str, np.ndarray]:
    p = rng.beta(0.7, 2.3, DEALS)
    return {
        "probabilities": p,
        "amounts": rng.lognormal(10.0, 1.1, DEALS),
        "probability_low": p * 0.8,
        "probability_high": np.minimum(1.0, p * 1.2 + 0.01),
    }


def timed(runs: int, **inputs: Any) -> tuple[list[float], AttainmentResult]:
    seconds, results = [], []
    for _ in range(max(runs, 1)):
        centre_table.cache_clear()
        start = time.perf_counter()
        results.append(simulate_attainment(**inputs))
        seconds.append(time.perf_counter() - start)
    return seconds, results[-1]


def summary(seconds: list[float], result: AttainmentResult) -> dict[str, Any]:
    return {
        "median_seconds": round(statistics.median(seconds), 4),
        "min_seconds": round(min(seconds), 4),
        "max_seconds": round(max(seconds), 4),
        "method": result.method,
        "draws": result.draws,
        "standard_error_pp": round(100 * result.standard_error, 3),
        "p_attain": round(result.p_attain, 4),
        "p_attain_interval": [round(result.p_attain_low, 4), round(result.p_attain_high, 4)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(2026)
    model = NewBusinessModel.fit(closed_history(rng), as_of=AS_OF)
    deals = pipeline(rng)
    won = 0.3 * float(deals["amounts"] @ deals["probabilities"])
    quota = won + float(deals["amounts"] @ deals["probabilities"])
    quota += model.expected("team-0", DAYS_LEFT)

    shared, shared_result = timed(
        args.runs,
        quota=quota,
        won_to_date=won,
        **deals,
        new_business=(model, "team-0", DAYS_LEFT),
        dependence=0.6,
    )
    independent, independent_result = timed(
        args.runs,
        quota=won + float(deals["amounts"] @ deals["probabilities"]),
        won_to_date=won,
        probabilities=deals["probabilities"],
        amounts=deals["amounts"],
    )
    save(
        "attainment",
        {
            "target": "attainment for a 5,000-deal pipeline in at most 1 s (median)",
            "deals": DEALS,
            "runs": args.runs,
            "shared_factor_new_business_interval": {
                "dependence": 0.6,
                "new_business_expected": round(model.expected("team-0", DAYS_LEFT), 2),
                **summary(shared, shared_result),
            },
            "independent_no_interval": summary(independent, independent_result),
        },
    )


if __name__ == "__main__":
    main()
