"""Benchmark: generate and write a synthetic world, measuring wall time and peak memory.

Target (synthetic-world spec, issue 2): 1,000,000 deals with full history generated and
written in at most 5 minutes and 8 GB peak memory on a 2-core machine.

    python benchmarks/generate_world.py                      # 1,000,000 deals, CSV
    python benchmarks/generate_world.py --opportunities 100000 --format parquet
    python benchmarks/generate_world.py --opportunities 100000 --format salesforce-messy

`salesforce-messy` writes the Salesforce-format export with a real org's mess (issue 11: a
100,000-deal messy world written in well under a minute).

The work runs in a child process so that its peak resident memory (getrusage of the
children) is the generator's alone, not the parent's imports. The record is saved in
benchmarks/results/generate_world.json, replacing an earlier record of the same
(n, format, machine).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import multiprocessing
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "generate_world.json"
TARGET_SECONDS = 300.0
TARGET_PEAK_MB = 8192.0

logger = logging.getLogger("benchmarks.generate_world")


def _run(n: int, fmt: str, out: str, seed: int, queue: multiprocessing.Queue) -> None:
    """Child process: generate, write, report timings and row counts."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from features.synthetic import generate_world, write_world
    from features.synthetic.salesforce import write_salesforce

    started = time.perf_counter()
    world = generate_world(n_opportunities=n, seed=seed)
    generated = time.perf_counter()
    if fmt == "salesforce-messy":
        paths = write_salesforce(world, Path(out), messy=True)
    else:
        paths = write_world(world, Path(out), fmt=fmt)  # type: ignore[arg-type]
    written = time.perf_counter()
    queue.put(
        {
            "generate_seconds": round(generated - started, 2),
            "write_seconds": round(written - generated, 2),
            "rows": {name: len(table) for name, table in world.tables.items()},
            "bytes_written": sum(p.stat().st_size for p in paths),
        }
    )


def _machine() -> dict[str, Any]:
    memory_gb = None
    with contextlib.suppress(ValueError, OSError):
        memory_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "memory_gb": memory_gb,
        "python": platform.python_version(),
    }


def _save(record: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    if RESULTS.exists():
        records = json.loads(RESULTS.read_text(encoding="utf-8"))
    same = (record["n_opportunities"], record["format"], record["machine"]["platform"])
    records = [
        r for r in records if (r["n_opportunities"], r["format"], r["machine"]["platform"]) != same
    ]
    records.append(record)
    RESULTS.write_text(json.dumps(records, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opportunities", type=int, default=1_000_000)
    parser.add_argument("--format", choices=("csv", "parquet", "salesforce-messy"), default="csv")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--out", type=Path, default=None, help="export folder (default: a temporary one, removed)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    out = args.out or Path(tempfile.mkdtemp(prefix="dealcast-world-"))
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(
        target=_run, args=(args.opportunities, args.format, str(out), args.seed, queue)
    )
    started = time.perf_counter()
    child.start()
    result = queue.get()
    child.join()
    wall = time.perf_counter() - started
    if args.out is None:
        shutil.rmtree(out, ignore_errors=True)
    if child.exitcode != 0:
        logger.error("generation failed with exit code %s", child.exitcode)
        return 1
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux: KiB

    record = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "n_opportunities": args.opportunities,
        "format": args.format,
        "seed": args.seed,
        "wall_seconds": round(wall, 2),
        **result,
        "peak_memory_mb": round(peak_mb, 1),
        "target": {"wall_seconds": TARGET_SECONDS, "peak_memory_mb": TARGET_PEAK_MB},
        "meets_target": wall <= TARGET_SECONDS and peak_mb <= TARGET_PEAK_MB,
    }
    for name, count in result["rows"].items():
        logger.info("%-20s %12s rows", name, f"{count:,}")
    logger.info(
        "%s deals (%s): %.1f s wall (generate %.1f s, write %.1f s), peak %.0f MB, %.0f MB written",
        f"{args.opportunities:,}",
        args.format,
        wall,
        result["generate_seconds"],
        result["write_seconds"],
        peak_mb,
        result["bytes_written"] / 2**20,
    )
    logger.info(
        "target (%.0f s, %.0f MB): %s",
        TARGET_SECONDS,
        TARGET_PEAK_MB,
        "met" if record["meets_target"] else "MISSED",
    )
    _save(record)
    logger.info("saved to %s", RESULTS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
