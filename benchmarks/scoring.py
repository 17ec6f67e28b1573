"""Scoring speed in process, against issue 4's numbers.

- One deal (30 history rows, 50 activities) scored with interval, attributions and ranked
  actions: median at most 3 ms. Measured through `Scorer.score` (the service's path: payload
  -> features -> probabilities, interval, baselines, TreeSHAP, actions, risk flags), with and
  without the 7/30-day trend, which re-scores the deal in the past on top.
- 100,000 deals scored without explanations: at least 50,000 deals per second. Measured as
  feature rows -> calibrated probabilities and intervals (`WinModel.predict`), and also
  end to end from an export's deals (features + probabilities).

A model is trained once on a 20,000-deal world (outside the timings).

    python benchmarks/scoring.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.one_deal_features import deal_payload
from benchmarks.record import save
from features.deals import DealTables
from features.loading import build_export
from features.snapshots import feature_columns, open_deal_queries
from features.synthetic import generate_world
from models.scoring import Scorer
from training.backtest import BacktestResult
from training.dataset import prepare
from training.train import TrainConfig, build_bundle


def median_ms(call: object, repeats: int) -> tuple[float, float]:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()  # type: ignore[operator]
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return statistics.median(timings), timings[int(0.99 * len(timings))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100_000)
    args = parser.parse_args()

    world = generate_world(n_opportunities=20_000, seed=1)
    data = prepare(build_export(world.tables, stages=world.stages))
    unscored = BacktestResult(
        metrics={"deal": {}, "deal_in_period": {}, "period": {}},
        predictions=pd.DataFrame(),
        periods=pd.DataFrame(),
        dependence=0.5,
        censoring={},
    )
    bundle = build_bundle(data, unscored, config=TrainConfig(), cutoff=data.data_end)
    scorer = Scorer(bundle)
    deal = deal_payload(list(bundle.plan.stages.open_stages), n_history=30, n_activities=50)
    as_of = "2026-11-16T12:00:00Z"

    figures: dict[str, object] = {}
    for name, kwargs in (
        ("one_deal_explained_no_trend_ms", {"explain": True, "trend": False}),
        ("one_deal_explained_with_trend_ms", {"explain": True, "trend": True}),
        ("one_deal_no_explanations_ms", {"explain": False, "trend": False}),
    ):

        def once(kwargs: dict[str, bool] = kwargs) -> None:
            scorer.score([deal], as_of=as_of, **kwargs)

        for _ in range(50):
            once()
        median, p99 = median_ms(once, args.repeats)
        figures[name] = {"median": round(median, 3), "p99": round(p99, 3)}

    # A batch: the open snapshots of the world repeated up to `batch` rows.
    tables = DealTables.from_export(data.export, bundle.plan.attributes)
    grid = pd.DatetimeIndex(data.snapshots["as_of"].drop_duplicates().sort_values()[-20:])
    deals, times = open_deal_queries(tables, grid)
    reps = int(np.ceil(args.batch / deals.size))
    deals = np.tile(deals, reps)[: args.batch]
    times = np.tile(times, reps)[: args.batch]
    started = time.perf_counter()
    columns = feature_columns(tables, deals, times, plan=bundle.plan, reference=bundle.reference)
    featured = time.perf_counter()
    bundle.model.predict(columns)
    predicted = time.perf_counter()
    figures["batch"] = {
        "deals": int(args.batch),
        "features_seconds": round(featured - started, 3),
        "predict_seconds": round(predicted - featured, 3),
        "deals_per_second_predict": round(args.batch / (predicted - featured)),
        "deals_per_second_end_to_end": round(args.batch / (predicted - started)),
    }
    save(
        "scoring",
        {
            **figures,
            "targets": {"one_deal_explained_ms": 3.0, "deals_per_second": 50_000},
            "method": "in process, time.perf_counter around each call after 50 warm-up calls; "
            "batch timed once on 100,000 feature rows",
        },
    )


if __name__ == "__main__":
    main()
