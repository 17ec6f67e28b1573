"""What the prediction log costs an explained request: `dealcast serve` with and without it.

Target (issue 16): at most 0.5 ms per explained request at 50 rps. Two services on the same
trained model, one with `DEALCAST_PREDICTION_LOG`, one without, take the same open-loop load
(one explained deal per request, 50 rps) in alternating rounds, so that the machine's drift
falls on both alike; the cost is the difference of the median latencies, round by round,
and its median over the rounds. The rows logged are counted at the end.

    python benchmarks/prediction_log.py [--store DIR] [--rounds 6] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyarrow.dataset as ds

from benchmarks.record import save
from benchmarks.serving_load import (
    free_port,
    http_request,
    open_deals,
    open_loop,
    start_service,
    train_store,
)

RATE = 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, help="existing MLflow store folder (mlflow.db)")
    parser.add_argument("--opportunities", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or Path(tmp) / "store"
        if not (store / "mlflow.db").exists():
            store.mkdir(parents=True, exist_ok=True)
            train_store(store, args.opportunities)
        log = Path(tmp) / "predictions"
        deals = open_deals(args.opportunities, 200)
        ports = {"plain": free_port(), "logged": free_port()}
        services = {
            "plain": start_service(store, ports["plain"]),
            "logged": start_service(
                store, ports["logged"], settings={"DEALCAST_PREDICTION_LOG": str(log)}
            ),
        }
        rounds: dict[str, list[float]] = {"plain": [], "logged": []}
        p99: dict[str, list[float]] = {"plain": [], "logged": []}
        try:
            for k in range(args.rounds):
                order = ("plain", "logged") if k % 2 == 0 else ("logged", "plain")
                for name in order:
                    bodies = [
                        http_request("/v1/score", json.dumps({"deals": [d]}).encode(), ports[name])
                        for d in deals
                    ]
                    run = asyncio.run(
                        open_loop(ports[name], bodies, rate=RATE, seconds=args.seconds)
                    )
                    summary = run.summary()
                    rounds[name].append(summary["p50_ms"])
                    p99[name].append(summary["p99_ms"])
                    print(name, summary, flush=True)
        finally:
            for process in services.values():
                process.terminate()
                process.wait(timeout=60)
        files = list(log.glob("*/*.parquet"))
        logged_rows = ds.dataset([str(f) for f in files]).count_rows() if files else 0
    costs = [b - a for a, b in zip(rounds["plain"], rounds["logged"], strict=True)]
    cost = statistics.median(costs)
    save(
        "prediction_log",
        {
            "method": (
                "two dealcast serve processes (1 worker each) on one model, open-loop 50 rps of "
                "one explained deal per request, alternating rounds; cost = median over rounds "
                "of (p50 with the log - p50 without)"
            ),
            "rounds": args.rounds,
            "seconds_per_round": args.seconds,
            "p50_ms": {name: [round(v, 2) for v in values] for name, values in rounds.items()},
            "p99_ms": {name: [round(v, 2) for v in values] for name, values in p99.items()},
            "cost_per_request_ms": round(cost, 3),
            "rows_logged": logged_rows,
            "target_ms": 0.5,
            "target_met": cost <= 0.5,
        },
    )


if __name__ == "__main__":
    main()
