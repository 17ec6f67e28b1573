"""`dealcast monitor` on a quarter of the default world's predictions.

Target (issue 16): under 60 s. The default world (20,000 deals, seed 1) is scored with
`dealcast score --log` at every week of its last completed quarter (every deal open then,
13 batches), and `dealcast monitor` judges that log against the world: its wall time as a
process of its own (imports, reading the log and the export, loading the model, labels,
metrics, drift, the report, the MLflow run) and its peak memory are recorded.

The scoring model only has to know the world's stages: by default one trained on a small
world of its own (`--train-opportunities`), or the champion of an existing store (`--store
DIR` with its mlflow.db, e.g. the integration tests' DEALCAST_TEST_STORE).

    python benchmarks/monitor.py [--store DIR] [--opportunities 20000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd

from benchmarks.record import save
from benchmarks.serving_load import train_store
from features.fiscal import completed_quarters
from features.synthetic import generate_world, write_world
from models.prediction_log import read_prediction_log

TARGET_S = 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, default=None, help="folder with a trained mlflow.db")
    parser.add_argument("--opportunities", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--train-opportunities", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    dealcast = str(Path(sys.executable).with_name("dealcast"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = args.store
        if store is None:
            store = root / "store"
            store.mkdir()
            train_store(store, args.train_opportunities)
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}"}
        world = generate_world(n_opportunities=args.opportunities, seed=args.seed)
        export = root / "world"
        write_world(world, export)
        label, start, end = completed_quarters(pd.Timestamp(world.end), 1)[0]
        weeks = pd.date_range(start, end, freq="7D", inclusive="left")
        log = root / "log"
        began = time.perf_counter()
        for when in weeks:
            subprocess.run(
                [dealcast, "score", "--data", str(export), "--out", str(root / "scores.csv"),
                 "--as-of", when.isoformat(), "--log", str(log)],
                env=env, cwd=store, check=True, capture_output=True, text=True,
            )  # fmt: skip
        scoring_s = time.perf_counter() - began
        rows = read_prediction_log(log)
        seconds, peaks = [], []
        for k in range(args.repeats):
            began = time.perf_counter()
            # GNU time reports the monitor's own peak (this process's children include the
            # scoring runs).
            done = subprocess.run(
                ["/usr/bin/time", "-f", "peak_kib=%M", dealcast, "monitor", "--log", str(log),
                 "--data", str(export), "--out", str(root / f"report-{k}")],
                env=env, cwd=store, check=True, capture_output=True, text=True,
            )  # fmt: skip
            seconds.append(round(time.perf_counter() - began, 2))
            peak = [line for line in done.stderr.splitlines() if line.startswith("peak_kib=")]
            peaks.append(round(int(peak[-1].removeprefix("peak_kib=")) / 1024, 1))
        print(done.stdout)
        best = min(seconds)
        save(
            "monitor",
            {
                "method": "dealcast monitor as a process on the log of `dealcast score --log` "
                "at every week of the default world's last completed quarter, judged against "
                "the world; wall time per run",
                "world": {"opportunities": args.opportunities, "seed": args.seed},
                "quarter": label,
                "weekly_batches": len(weeks),
                "logged_predictions": len(rows),
                "logged_deals": int(rows["opportunity_id"].nunique()),
                "scoring_model": (
                    "champion of --store"
                    if args.store
                    else f"trained on a world of {args.train_opportunities} deals"
                ),
                "scoring_seconds_all_batches": round(scoring_s, 1),
                "monitor_seconds": seconds,
                "monitor_peak_rss_mib": peaks,
                "load_average_1m_after": round(os.getloadavg()[0], 2),
                "target_seconds": TARGET_S,
                "met": best < TARGET_S,
            },
        )


if __name__ == "__main__":
    main()
