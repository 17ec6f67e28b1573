"""Forecast quality on the synthetic world against issue 5's bars, recorded.

Default settings, 4-quarter backtest, on 20,000-deal worlds of seeds 1 and 2 (each bar is
checked on each world):
- the model beats all three baselines on Brier score and log loss, overall and at weeks 1, 4,
  8 and 12, for both `won` and `won_in_period`;
- ECE at most 0.02 (15 equal-count bins);
- median APE of the team-quarter revenue forecast at week 8 at most 0.7 x the best baseline's;
- the 80% attainment interval covers the actual revenue in 70% to 90% of at least 40
  team-quarters. A world has 2 to 8 teams (the synthetic-world spec), so a 4-quarter backtest
  of one world holds at most 32: coverage is also pooled over the worlds, and that pooled
  figure is the one held to the bar.

    python benchmarks/forecast_quality.py [--opportunities 20000] [--seeds 1,2] [--out DIR]
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


def one_world(opportunities: int, seed: int, quarters: int, out: Path | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp) / "world"
        write_world(generate_world(n_opportunities=opportunities, seed=seed), world)
        started = time.perf_counter()
        data = prepare(load_export(world))
        result = run_backtest(data, config=BacktestConfig(step="quarter", folds=quarters))
        seconds = time.perf_counter() - started
        if out is not None:
            write_report(result, out / f"seed-{seed}")
    verdict = checks(result.metrics)
    return {
        "seed": seed,
        "test_quarters": result.metrics["data"]["test_quarters"],
        "backtest_seconds": round(seconds, 1),
        "all_hold": all(v["holds"] for v in verdict.values()),
        "checks": verdict,
        "headline": {
            block: {name: result.metrics[block][name]["overall"] for name in result.metrics[block]}
            for block in ("deal", "deal_in_period")
        },
        "censoring": result.metrics["censoring"],
    }


def pooled_coverage(worlds: list[dict[str, Any]]) -> dict[str, Any]:
    """The 80% interval's coverage over every world's team-quarter forecasts."""
    figures = [w["checks"]["coverage_80"] for w in worlds]
    forecasts = sum(f["forecasts"] for f in figures)
    covered = sum(f["value"] * f["forecasts"] for f in figures)
    team_quarters = sum(f["team_quarters"] for f in figures)
    value = covered / forecasts
    return {
        "value": value,
        "team_quarters": team_quarters,
        "forecasts": forecasts,
        "bar": [0.7, 0.9],
        "minimum_team_quarters": 40,
        "holds": 0.7 <= value <= 0.9 and team_quarters >= 40,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--opportunities", type=int, default=20_000)
    parser.add_argument("--seeds", default="1,2", help="comma-separated world seeds")
    parser.add_argument("--quarters", type=int, default=4)
    parser.add_argument("--out", type=Path, default=None, help="also keep the reports here")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    worlds = [one_world(args.opportunities, seed, args.quarters, args.out) for seed in seeds]
    pooled = pooled_coverage(worlds)
    save(
        "forecast_quality",
        {
            "opportunities": args.opportunities,
            "seeds": seeds,
            "quarters": args.quarters,
            "all_hold": all(w["all_hold"] for w in worlds) and pooled["holds"],
            "coverage_80_pooled": pooled,
            "worlds": worlds,
        },
    )


if __name__ == "__main__":
    main()
