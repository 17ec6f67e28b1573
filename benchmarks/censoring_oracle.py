"""Proof by oracle of the censoring weights (issue 12): a world cut at C, trained at C.

For the snapshots of the last 90 days before C (mostly open at C), the mean forecast of
P(won within 180 days) against the rate the world's end reveals, for the model trained with
censoring weights and for the same model with the censored snapshots dropped. The target is
the weighted model within 2 percentage points.

    python benchmarks/censoring_oracle.py [--opportunities 20000] [--seed 1] [--days-before-end 200]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.record import save


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--opportunities", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--days-before-end", type=int, default=200)
    args = parser.parse_args()
    import pandas as pd

    from features.loading import build_export
    from features.synthetic import generate_world
    from training.oracle import censoring_oracle

    world = generate_world(n_opportunities=args.opportunities, seed=args.seed)
    export = build_export(world.tables, stages=world.stages)
    end = export.history["changed_at"].max()
    cutoff = (end - pd.Timedelta(days=args.days_before_end)).normalize()
    started = time.perf_counter()
    result = censoring_oracle(export, cutoff=cutoff)
    seconds = time.perf_counter() - started
    figures = {
        **result.to_dict(),
        "opportunities": args.opportunities,
        "seed": args.seed,
        "error_weighted_points": round(100 * (result.predicted_weighted - result.true_rate), 2),
        "error_dropping_censored_points": round(
            100 * (result.predicted_dropping_censored - result.true_rate), 2
        ),
        "target": "weighted model within 2 percentage points of the true rate",
        "seconds": round(seconds, 1),
    }
    save(f"censoring_oracle_{args.opportunities}", figures)
    print(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
