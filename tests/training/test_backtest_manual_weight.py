"""An export without manual probabilities: the backtest judges no manual_weight (the spec's
forecaster exists "when the export has manual probabilities"); with them, see
test_backtest_report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from features.loading import load_export
from models.baselines import MANUAL_WEIGHT
from training.backtest import FORECASTERS, BacktestConfig, run_backtest
from training.dataset import prepare
from training.report import write_report


def test_without_typed_probabilities_there_is_no_manual_weight(
    small_world: Path, tmp_path: Path
) -> None:
    export = tmp_path / "export"
    shutil.copytree(small_world, export)
    history = pd.read_csv(export / "opportunity_history.csv")
    assert history["manual_probability"].notna().any()  # the world's managers typed some
    history.drop(columns=["manual_probability"]).to_csv(
        export / "opportunity_history.csv", index=False
    )
    result = run_backtest(
        prepare(load_export(export)), config=BacktestConfig(step="quarter", folds=2)
    )
    assert result.forecasters == FORECASTERS
    write_report(result, tmp_path / "report")
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    for block in ("deal", "deal_in_period", "period"):
        assert set(metrics[block]) == set(FORECASTERS)
    for horizon in metrics["deal_by_horizon"].values():
        assert MANUAL_WEIGHT not in horizon
    periods = pd.read_csv(tmp_path / "report" / "periods.csv")
    assert not any(MANUAL_WEIGHT in column or "manual" in column for column in periods.columns)
