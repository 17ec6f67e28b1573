"""Do the intervals mean it (issue 13)? Coverage of the generator's true win probability.

The synthetic world draws each deal's outcome once, at creation, from its latent
probability (`ground_truth/propensity.csv`). On a deal's first weekly snapshot the deal has
been open a few days at most, so that latent probability is the truth the model's 80%
interval should cover for about 70-90% of deals. Measured on the deals created in the
quarter after the cut-off, for the full model and for a model of 45 won and 45 lost deals
(which must be wider at the same probability, and cover as well).

    python benchmarks/interval_coverage.py [--opportunities 8000] [--seed 21]
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
    parser.add_argument("--opportunities", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=21)
    args = parser.parse_args()
    import numpy as np
    import pandas as pd

    from features.deals import DealTables
    from features.labels import training_set
    from features.loading import build_export
    from features.snapshots import FeaturePlan, build_snapshots
    from features.synthetic import generate_world
    from models.win import WinModel, WinModelConfig

    world = generate_world(n_opportunities=args.opportunities, seed=args.seed)
    export = build_export(world.tables, stages=world.stages)
    plan = FeaturePlan.from_export(export)
    snapshots = build_snapshots(export, plan=plan)
    tables = DealTables.from_export(export, plan.attributes)
    end = export.history["changed_at"].max()
    cutoff = (end - pd.Timedelta(days=270)).normalize()

    def fit(rows: pd.DataFrame) -> WinModel:
        deals = pd.Index(tables.opportunity_id).get_indexer(rows["opportunity_id"])
        training = training_set(rows, tables, deals, cutoff=cutoff, horizons=plan.config.horizons)
        return WinModel(plan, WinModelConfig()).fit(training)

    started = time.perf_counter()
    full = fit(snapshots)
    # 45 won and 45 lost deals closed before the cut-off, with every snapshot they had.
    final = export.history.groupby("opportunity_id").tail(1).set_index("opportunity_id")
    closed = final[final["changed_at"] < cutoff - pd.Timedelta(days=100)]
    rng = np.random.default_rng(0)
    keep = set()
    for stage in ("Closed Won", "Closed Lost"):
        keep |= set(rng.choice(closed.index[closed["stage"] == stage], 45, replace=False))
    small = fit(snapshots[snapshots["opportunity_id"].isin(keep)].reset_index(drop=True))
    fit_seconds = time.perf_counter() - started

    created = export.opportunities.set_index("opportunity_id")["created_at"]
    first = snapshots.sort_values("as_of").groupby("opportunity_id").head(1)
    first = first[
        (first["opportunity_id"].map(created) >= cutoff)
        & (first["opportunity_id"].map(created) < cutoff + pd.Timedelta(days=91))
    ].reset_index(drop=True)
    truth = world.ground_truth.set_index("opportunity_id")["probability"]
    p_true = first["opportunity_id"].map(truth).to_numpy(dtype=np.float64)

    figures: dict[str, object] = {
        "opportunities": args.opportunities,
        "seed": args.seed,
        "cutoff": cutoff.date().isoformat(),
        "deals_scored": len(first),
        "interval_level": full.config.interval_level,
        "members": full.config.ensemble,
    }
    for name, model in (("full", full), ("45+45 deals", small)):
        prediction = model.predict(first)
        covered = (prediction.won_low <= p_true) & (p_true <= prediction.won_high)
        width = prediction.won_high - prediction.won_low
        figures[name] = {
            "mode": model.mode_,
            "coverage_of_true_probability": round(float(covered.mean()), 3),
            "median_width": round(float(np.median(width)), 3),
            "median_probability": round(float(np.median(prediction.won)), 3),
            "mean_abs_error_to_truth": round(float(np.mean(np.abs(prediction.won - p_true))), 3),
        }
    figures["target"] = "the 80% interval covers the true probability for 70-90% of deals"
    figures["fit_seconds"] = round(fit_seconds, 1)
    save(f"interval_coverage_{args.opportunities}", figures)
    print(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
