"""Import and validation of a messy Salesforce org: issue 11 asks for 100,000 deals in 60 s.

Writes the messy Salesforce world (`dealcast generate --salesforce --messy`), then times
`dealcast import salesforce` and `dealcast validate` on it, each as the console script in a
fresh process (what a user waits for), and checks the row accounting of the repairs: per
table, rows in = rows used + rows removed by a named repair.

    python benchmarks/import_validate.py [--opportunities 100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.record import save


def _timed(command: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, run.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--opportunities", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from features.loading import load_export
    from features.synthetic import generate_world
    from features.synthetic.salesforce import write_salesforce

    script = str(Path(sys.executable).parent / "dealcast")
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        write_salesforce(
            generate_world(n_opportunities=args.opportunities, seed=args.seed), raw, messy=True
        )
        imports, validations = [], []
        for k in range(args.repeats):
            out = Path(tmp) / f"export_{k}"  # the importer refuses a folder with old outputs
            seconds, _ = _timed([script, "import", "salesforce", str(raw), "--out", str(out)])
            imports.append(seconds)
            seconds, report = _timed([script, "validate", str(out)])
            validations.append(seconds)
        accounting = load_export(out).report.repairs.accounting()
        mess = json.loads((raw / "_mess.json").read_text())
    totals = [i + v for i, v in zip(imports, validations, strict=True)]
    figures = {
        "opportunities": args.opportunities,
        "repeats": args.repeats,
        "import_seconds_median": round(statistics.median(imports), 1),
        "validate_seconds_median": round(statistics.median(validations), 1),
        "import_plus_validate_seconds_median": round(statistics.median(totals), 1),
        "target": "import + validate of a 100,000-deal messy Salesforce world < 60 s",
        "rows_balanced": bool(accounting["balanced"].all()),
        "accounting": json.loads(accounting.to_json(orient="records")),
        "mess_injected": mess,
        "validate_summary": [line for line in report.splitlines() if not line.startswith("    ")][
            :20
        ],
    }
    save(f"import_validate_{args.opportunities}", figures)
    print(json.dumps({k: figures[k] for k in list(figures)[:6]}, indent=2))


if __name__ == "__main__":
    main()
