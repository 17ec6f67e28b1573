"""Forecast quality on the synthetic world against issue 5's bars, recorded.

Default settings, 4-quarter backtest, the 20,000-deal seed-1 world:
- the model beats all three baselines on Brier score and log loss, overall and at weeks 1, 4,
  8 and 12, for both `won` and `won_in_period`;
- ECE at most 0.02 (15 equal-count bins);
- median APE of the team-quarter revenue forecast at week 8 at most 0.7 x the best baseline's;
- the 80% attainment interval covers the actual revenue in 70% to 90% of team-quarters.

    python benchmarks/forecast_quality.py [--opportunities 20000] [--seed 1] [--out DIR]
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
from models.baselines import BASELINE_NAMES
from training.backtest import BacktestConfig, run_backtest
from training.dataset import prepare
from training.report import write_report

WEEKS = ("1", "4", "8", "12")


def checks(metrics: dict[str, Any]) -> dict[str, Any]:
    """Each bar of issue 5 with the figures behind it and whether it holds."""
    out: dict[str, Any] = {}
    beaten = []
    for block in ("deal", "deal_in_period"):
        for scope in ("overall", *WEEKS):
            model = (
                metrics[block]["model"]["overall"]
                if scope == "overall"
                else metrics[block]["model"]["by_week"][scope]
            )
            for name in BASELINE_NAMES:
                other = (
                    metrics[block][name]["overall"]
                    if scope == "overall"
                    else metrics[block][name]["by_week"][scope]
                )
                for score in ("brier", "log_loss"):
                    beaten.append(
                        {
                            "target": block,
                            "scope": scope,
                            "baseline": name,
                            "score": score,
                            "model": model[score],
                            "baseline_value": other[score],
                            "holds": model[score] < other[score],
                        }
                    )
    out["beats_baselines"] = {
        "holds": all(b["holds"] for b in beaten),
        "comparisons": len(beaten),
        "failures": [b for b in beaten if not b["holds"]],
    }
    ece = {block: metrics[block]["model"]["overall"]["ece"] for block in ("deal", "deal_in_period")}
    out["ece"] = {"values": ece, "bar": 0.02, "holds": all(v <= 0.02 for v in ece.values())}
    period = metrics["period"]
    week8 = {name: period[name]["by_week"]["8"]["median_ape"] for name in period}
    best = min(week8[name] for name in BASELINE_NAMES)
    out["week8_median_ape"] = {
        "values": week8,
        "ratio_to_best_baseline": week8["model"] / best,
        "bar": 0.7,
        "holds": week8["model"] <= 0.7 * best,
    }
    coverage = period["model"]["coverage_80"]
    out["coverage_80"] = {
        "value": coverage,
        "team_quarters": period["model"]["n_team_quarters"],
        "forecasts": period["model"]["n_forecasts"],
        "bar": [0.7, 0.9],
        "holds": 0.7 <= coverage <= 0.9,
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--opportunities", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quarters", type=int, default=4)
    parser.add_argument("--out", type=Path, default=None, help="also keep the report here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp) / "world"
        write_world(generate_world(n_opportunities=args.opportunities, seed=args.seed), world)
        started = time.perf_counter()
        data = prepare(load_export(world))
        result = run_backtest(data, config=BacktestConfig(quarters=args.quarters))
        seconds = time.perf_counter() - started
        if args.out is not None:
            write_report(result, args.out)
    verdict = checks(result.metrics)
    save(
        "forecast_quality",
        {
            "opportunities": args.opportunities,
            "seed": args.seed,
            "quarters": args.quarters,
            "test_quarters": result.metrics["data"]["test_quarters"],
            "backtest_seconds": round(seconds, 1),
            "all_hold": all(v["holds"] for v in verdict.values()),
            "checks": verdict,
            "headline": {
                block: {
                    name: result.metrics[block][name]["overall"] for name in result.metrics[block]
                }
                for block in ("deal", "deal_in_period")
            },
            "censoring": result.metrics["censoring"],
        },
    )


if __name__ == "__main__":
    main()
