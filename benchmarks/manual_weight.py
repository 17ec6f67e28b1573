"""The managers' typed probabilities (manual_weight) against the model and the CRM stage
weight, on the snapshots and team-quarters where managers typed them, recorded.

A 4-quarter backtest of a synthetic world (default: 20,000 deals, seed 1), whose managers
type probabilities in some teams (features.synthetic.managers): the share of test snapshots
and team-quarters with a typed value, Brier score and log loss on the typed snapshots for
`won` and `won_in_period`, and the week-8 median APE of every forecaster's team-quarter
revenue forecast.

    python benchmarks/manual_weight.py [--opportunities 20000] [--seed 1]
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
from features.loading import load_export
from features.synthetic import generate_world, write_world
from models.baselines import MANUAL_WEIGHT
from training.backtest import BacktestConfig, run_backtest
from training.dataset import prepare


def figures(metrics: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for block in ("deal", "deal_in_period"):
        manual = metrics[block][MANUAL_WEIGHT]
        out[block] = {
            "n_snapshots": manual["overall"]["n"],
            "n_typed": manual["n_typed"],
            "on_typed": {
                name: {k: values[k] for k in ("brier", "log_loss", "auc", "n")}
                for name, values in manual["on_typed"].items()
            },
            "overall_brier": {
                name: metrics[block][name]["overall"]["brier"] for name in metrics[block]
            },
        }
    period = metrics["period"]
    out["period"] = {
        "week8_median_ape": {name: period[name]["by_week"]["8"]["median_ape"] for name in period},
        "n_team_quarters": period[MANUAL_WEIGHT]["n_team_quarters"],
        "n_team_quarters_typed": period[MANUAL_WEIGHT]["n_team_quarters_typed"],
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--opportunities", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp) / "world"
        write_world(generate_world(n_opportunities=args.opportunities, seed=args.seed), world)
        started = time.perf_counter()
        result = run_backtest(prepare(load_export(world)), config=BacktestConfig(step="quarter"))
        seconds = time.perf_counter() - started
    save(
        "manual_weight",
        {
            "opportunities": args.opportunities,
            "seed": args.seed,
            "backtest_seconds": round(seconds, 1),
            **figures(result.metrics),
        },
    )


if __name__ == "__main__":
    main()
