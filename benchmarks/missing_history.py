"""What a wide export's missing history costs the model (issue 17 item 4), recorded.

One synthetic world, backtested three ways on the same deals (those of the HubSpot export's
main pipeline) with the same 4-quarter folds:

- `full_history`: the world's own export (every amount and close-date change), restricted to
  those deals;
- `without_those_features`: the same export with the features a HubSpot export cannot give
  (features.importers.hubspot.UNAVAILABLE_FEATURES) unavailable: the cost of the features
  alone;
- `hubspot_import`: the world written as a HubSpot export and brought back by
  `import_hubspot` (stage history rebuilt from the stage dates, minute-precision times,
  export-time amounts, its mess repaired): the whole cost of the format.

For each: AUC, Brier and log loss of `won` and `won_in_period` for the model and the
empirical stage weight, and the week-8 median APE of the team-quarter revenue forecasts.

    python benchmarks/missing_history.py [--opportunities 20000] [--seed 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.record import save
from features.config import FeatureConfig
from features.importers.hubspot import UNAVAILABLE_FEATURES, import_hubspot
from features.loading import load_export
from features.synthetic import generate_world, write_world
from features.synthetic.hubspot import MAIN_PIPELINE, write_hubspot
from training.backtest import BacktestConfig, run_backtest
from training.dataset import prepare

FORECASTERS = ("model", "stage_weight_empirical")


def figures(metrics: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for block in ("deal", "deal_in_period"):
        out[block] = {
            name: {
                key: round(float(metrics[block][name]["overall"][key]), 4)
                for key in ("auc", "brier", "log_loss", "n")
            }
            for name in FORECASTERS
        }
    out["week8_median_ape"] = {
        name: round(float(metrics["period"][name]["by_week"]["8"]["median_ape"]), 3)
        for name in metrics["period"]
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--opportunities", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    world = generate_world(n_opportunities=args.opportunities, seed=args.seed)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_hubspot(world, root / "hubspot_raw")
        import_hubspot(root / "hubspot_raw", root / "hubspot", pipeline=MAIN_PIPELINE)
        hubspot = load_export(root / "hubspot")
        kept = set(hubspot.opportunities["opportunity_id"].astype(str))
        # The same deals in the world's own export: every table cut to the main pipeline's.
        for name, frame in world.tables.items():
            if "opportunity_id" in frame.columns:
                world.tables[name] = frame[frame["opportunity_id"].astype(str).isin(kept)]
        write_world(world, root / "full")
        full = load_export(root / "full")
        unavailable = FeatureConfig(unavailable_features=UNAVAILABLE_FEATURES)
        config = BacktestConfig(step="quarter")
        for label, export, features in (
            ("full_history", full, None),
            ("without_those_features", full, unavailable),
            ("hubspot_import", hubspot, unavailable),
        ):
            started = time.perf_counter()
            result = run_backtest(prepare(export, config=features), config=config)
            results[label] = {
                "deals": export.n_opportunities,
                "backtest_seconds": round(time.perf_counter() - started, 1),
                **figures(result.metrics),
            }
            print(label, results[label])
    save(
        "missing_history",
        {
            "opportunities": args.opportunities,
            "seed": args.seed,
            "pipeline": MAIN_PIPELINE,
            "unavailable_features": list(UNAVAILABLE_FEATURES),
            **results,
        },
    )


if __name__ == "__main__":
    main()
