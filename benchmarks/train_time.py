"""Backtest and training time on a large world: issue 5 asks for 100,000 deals in 10 minutes.

Times `dealcast train` end to end (load, snapshots, the 4-quarter backtest, the final model,
the MLflow run and registration) into a temporary embedded MLflow store, in a fresh process
so its peak memory is the training's own.

    python benchmarks/train_time.py [--opportunities 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.record import peak_rss_mib, save


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--opportunities", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quarters", type=int, default=4)
    args = parser.parse_args()
    from features.synthetic import generate_world, write_world

    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp) / "world"
        write_world(
            generate_world(n_opportunities=args.opportunities, seed=args.seed), world, fmt="parquet"
        )
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        started = time.perf_counter()
        run = subprocess.run(
            [
                str(Path(sys.executable).parent / "dealcast"),
                "train",
                "--data",
                str(world),
                "--quarters",
                str(args.quarters),
            ],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        seconds = time.perf_counter() - started
    summary = [
        line for line in run.stdout.splitlines() if line.startswith(("run ", "gate", "champion"))
    ]
    save(
        f"train_time_{args.opportunities}",
        {
            "opportunities": args.opportunities,
            "quarters": args.quarters,
            "train_seconds": round(seconds, 1),
            "peak_rss_mib_of_train": round(peak_rss_mib(children=True), 0),
            "target": "backtest and training on 100,000 deals <= 600 s",
            "stdout_summary": summary,
            "load_average_at_end": os.getloadavg()[0],
        },
    )
    print(json.dumps({"seconds": round(seconds, 1)}))


if __name__ == "__main__":
    main()
