"""Do the intervals mean it (issue 13)? Coverage of the generator's true win probability.

The synthetic world draws each deal's outcome once, at creation, from its latent log-odds
(`ground_truth/propensity.csv`), a sum of named components. Some the export shows (segment,
type, lead source, industry, the rep, the amount, the date); qualification and engagement
show only later, in the stage path and the activity; idiosyncratic luck never shows. On a
deal's first weekly snapshot (open 0-6 days) the true probability *given what the CRM can
know* is the latent probability averaged over the components not yet shown:
E[sigmoid(visible + U)], U ~ N(0, qualification_sd^2 + engagement_sd^2 + idiosyncratic_sd^2),
by Gauss-Hermite quadrature. That is the truth the 80% interval should cover for 70-90% of
deals. Coverage of the latent probability itself is printed beside it: no interval about
the probability given the data can cover luck the data never shows, so that one stays low.
Measured on the deals created in the quarter after the cut-off, for the full model and for
a model of 45 won and 45 lost deals (which must be wider at the same probability).

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
    from scipy.special import expit

    from features.deals import DealTables
    from features.labels import training_set
    from features.loading import build_export
    from features.snapshots import FeaturePlan, build_snapshots
    from features.synthetic import generate_world
    from features.synthetic.parameters import WorldParameters
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
    truth = world.ground_truth.set_index("opportunity_id").loc[first["opportunity_id"]]
    p_latent = truth["probability"].to_numpy(dtype=np.float64)
    hidden = ("qualification", "engagement", "idiosyncratic")
    shown = [c for c in truth.columns if c.startswith("driver_") and c[7:] not in hidden]
    visible = truth[shown].sum(axis=1).to_numpy(dtype=np.float64)
    p = WorldParameters()
    hidden_sd = float(np.sqrt(p.qualification_sd**2 + p.engagement_sd**2 + p.idiosyncratic_sd**2))
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)
    p_true = expit(visible[:, None] + hidden_sd * nodes[None, :]) @ (weights / weights.sum())

    figures: dict[str, object] = {
        "opportunities": args.opportunities,
        "seed": args.seed,
        "cutoff": cutoff.date().isoformat(),
        "deals_scored": len(first),
        "interval_level": full.config.interval_level,
        "members": full.config.ensemble,
        "truth": "P(won) given the components the export shows, the hidden ones averaged",
        "hidden_logit_sd": round(hidden_sd, 3),
    }
    for name, model in (("full", full), ("45+45 deals", small)):
        prediction = model.predict(first)
        low, high = prediction.won_low, prediction.won_high
        width = high - low
        middle = (prediction.won > 0.15) & (prediction.won < 0.35)
        summary = model.training_summary_["targets"]["won"]
        figures[name] = {
            "mode": model.mode_,
            "coverage_of_true_probability": round(
                float(np.mean((low <= p_true) & (p_true <= high))), 3
            ),
            "coverage_of_latent_probability": round(
                float(np.mean((low <= p_latent) & (p_latent <= high))), 3
            ),
            "median_width": round(float(np.median(width)), 3),
            "median_width_at_probability_0.15_0.35": round(float(np.median(width[middle])), 3),
            "median_probability": round(float(np.median(prediction.won)), 3),
            "mean_abs_error_to_truth": round(float(np.mean(np.abs(prediction.won - p_true))), 3),
            "unexplained_logit_sd": round(float(summary["unexplained_logit_sd"]), 3),
            "unexplained_by": summary["unexplained_by"],
        }
    figures["target"] = "the 80% interval covers the true probability for 70-90% of deals"
    figures["fit_seconds"] = round(fit_seconds, 1)
    suffix = "" if args.seed == 21 else f"_seed{args.seed}"
    save(f"interval_coverage_{args.opportunities}{suffix}", figures)
    print(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
