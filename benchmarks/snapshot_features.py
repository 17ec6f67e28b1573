"""Weekly snapshots and features of a synthetic world: time and peak memory.

Target (issue 3): 100,000 deals over three years in at most 2 minutes and 6 GB peak here.
The world is generated and written as Parquet by a first process; a second, fresh process
loads it and builds the snapshots, so its peak resident memory is that of loading plus
snapshotting alone.

    python benchmarks/snapshot_features.py --opportunities 100000 [--name snapshots_100k]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.record import peak_rss_mib, save


def generate(out: Path, n: int, seed: int) -> None:
    from features.synthetic import generate_world, write_world

    write_world(generate_world(n_opportunities=n, seed=seed), out, fmt="parquet")


def measure(data: Path) -> dict[str, float | int]:
    from features.loading import load_export
    from features.snapshots import FeaturePlan, build_snapshots

    started = time.perf_counter()
    export = load_export(data)
    loaded = time.perf_counter()
    snapshots = build_snapshots(export, plan=FeaturePlan.from_export(export))
    built = time.perf_counter()
    return {
        "load_seconds": round(loaded - started, 2),
        "snapshot_seconds": round(built - loaded, 2),
        "snapshots": len(snapshots),
        "features": snapshots.shape[1] - 2,
        "history_rows": len(export.history),
        "activity_rows": len(export.activities),
        "peak_rss_mib": round(peak_rss_mib(), 0),
        "frame_mib": round(snapshots.memory_usage(deep=True).sum() / 2**20, 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--opportunities", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--name", default=None, help="results file name")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:
        print(json.dumps(measure(args.measure)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "world"
        started = time.perf_counter()
        generate(data, args.opportunities, args.seed)
        generated = time.perf_counter() - started
        child = subprocess.run(
            [sys.executable, __file__, "--measure", str(data)],
            capture_output=True,
            text=True,
            check=True,
        )
        figures = json.loads(child.stdout.strip().splitlines()[-1])
    total = figures["load_seconds"] + figures["snapshot_seconds"]
    save(
        args.name or f"snapshot_features_{args.opportunities}",
        {
            "opportunities": args.opportunities,
            "seed": args.seed,
            "generate_seconds": round(generated, 2),
            **figures,
            "target": "snapshots+features of 100k deals <= 120 s and <= 6 GB peak",
            "load_plus_snapshot_seconds": round(total, 2),
        },
    )


if __name__ == "__main__":
    main()
