"""The registered bundle's size, and what it holds of the training deals, before and after
bundles became data (issue 15, defect 10: a 22 MB pickle with every deal's history).

Trains with `dealcast train` on one generated world twice, into two temporary embedded
MLflow stores: once with the code of `--before` (a git revision, extracted with
`git archive`; by default the last commit before bundles were data) and once with this
checkout, and measures each registered model's bundle artifact (`artifacts/bundle.pkl`, or
the `artifacts/bundle/` folder), whether it contains the raw account and opportunity ids,
and the number of accounts in the world.

    python benchmarks/bundle_size.py [--opportunities 20000] [--before ea7501b]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.record import save

ROOT = Path(__file__).resolve().parent.parent


def _train(code: Path, world: Path, store: Path) -> list[Path]:
    """Train with the code tree `code` into `store`; the bundle artifacts registered."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = str(code)
    store.mkdir()
    subprocess.run(
        [sys.executable, "-m", "dealcast", "train", "--data", str(world), "--quarters", "2"],
        cwd=store,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return sorted(
        p
        for p in (store / "mlartifacts").rglob("*")
        if p.parent.name == "artifacts" and p.name in ("bundle.pkl", "bundle")
    )


def _size(path: Path) -> int:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files)


def _holds(path: Path, needle: bytes) -> bool:
    """Whether the raw bytes of the artifact (compressed arrays excepted) contain `needle`."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return any(needle in p.read_bytes() for p in files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--opportunities", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--before", default="ea7501b")
    args = parser.parse_args()
    from features.synthetic import generate_world, write_world

    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp) / "world"
        generated = generate_world(n_opportunities=args.opportunities, seed=args.seed)
        write_world(generated, world, fmt="parquet")
        accounts = generated.tables["accounts"]["account_id"].astype(str)
        account = accounts.iloc[len(accounts) // 2].encode()
        deal = str(generated.tables["opportunities"]["opportunity_id"].iloc[7]).encode()
        old = Path(tmp) / "old-code"
        old.mkdir()
        archive = subprocess.run(
            ["git", "archive", args.before], cwd=ROOT, capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
        figures = {}
        for label, code in (("before", old), ("after", ROOT)):
            bundles = _train(code, world, Path(tmp) / f"store-{label}")
            figures[label] = [
                {
                    "artifact": path.name,
                    "bytes": _size(path),
                    "mib": round(_size(path) / 2**20, 2),
                    "holds_an_account_id": _holds(path, account),
                    "holds_an_opportunity_id": _holds(path, deal),
                }
                for path in bundles
            ]
    save(
        f"bundle_size_{args.opportunities}",
        {
            "opportunities": args.opportunities,
            "accounts": int(accounts.nunique()),
            "before_revision": args.before,
            **figures,
        },
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
