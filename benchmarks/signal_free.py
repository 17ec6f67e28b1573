"""With nothing to learn, the model is the baseline (issue 13): Brier on a signal-free world.

A generated world whose outcomes depend on the stage alone (`--signal-free`), backtested
with default settings; the model's Brier score against the empirical stage weight's on the
same snapshots, for `won` and `won_in_period`, and the rounds early stopping kept. The
target is at most 1.01x for both.

    python benchmarks/signal_free.py [--opportunities 8000] [--seeds 3,4]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.record import save


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--opportunities", type=int, default=8000)
    parser.add_argument("--seeds", default="3,4")
    args = parser.parse_args()
    from features.loading import load_export
    from features.synthetic import generate_world, write_world
    from training.backtest import BacktestConfig, run_backtest
    from training.dataset import prepare

    worlds: dict[str, Any] = {}
    started = time.perf_counter()
    for seed in (int(s) for s in args.seeds.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "world"
            world = generate_world(n_opportunities=args.opportunities, seed=seed, signal_free=True)
            write_world(world, path, fmt="parquet")
            data = prepare(load_export(path))
            metrics = run_backtest(data, config=BacktestConfig()).metrics
        figures: dict[str, Any] = {}
        for block in ("deal", "deal_in_period"):
            model = metrics[block]["model"]["overall"]["brier"]
            stage = metrics[block]["stage_weight_empirical"]["overall"]["brier"]
            figures[block] = {
                "brier_model": round(model, 5),
                "brier_stage_weight_empirical": round(stage, 5),
                "ratio": round(model / stage, 4),
                "holds": model / stage <= 1.01,
            }
        figures["rounds_by_fold"] = {
            fold: {name: t["rounds"] for name, t in summary["targets"].items()}
            for fold, summary in metrics["training"].items()
        }
        worlds[str(seed)] = figures
    result = {
        "opportunities": args.opportunities,
        "worlds": worlds,
        "target": "model Brier <= 1.01x the empirical stage weight's, won and won_in_period",
        "holds": all(w[b]["holds"] for w in worlds.values() for b in ("deal", "deal_in_period")),
        "seconds": round(time.perf_counter() - started, 1),
    }
    save(f"signal_free_{args.opportunities}", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
