"""The backtest report: the spec's metrics.json shape, plots, tables, and reproducibility."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from dealcast.cli import _backtest_summary
from features.loading import load_export
from models.baselines import MANUAL_WEIGHT
from training.backtest import FORECASTERS, BacktestConfig, run_backtest
from training.dataset import prepare
from training.report import write_report

WEEKS = ("1", "4", "8", "12")


@pytest.fixture(scope="module")
def report(small_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = prepare(load_export(small_world))
    out = tmp_path_factory.mktemp("report")
    write_report(run_backtest(data, config=BacktestConfig(step="quarter", folds=2)), out)
    return out


def test_metrics_json_has_the_spec_shape(report: Path) -> None:
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["data"]["fingerprint"].startswith("sha256:")
    assert metrics["data"]["n_opportunities"] == 3000
    assert len(metrics["data"]["test_quarters"]) == 2
    # The world's managers type probabilities in some teams: manual_weight is judged too.
    forecasters = (*FORECASTERS, MANUAL_WEIGHT)
    for block in ("deal", "deal_in_period"):
        assert set(metrics[block]) == set(forecasters)
        for name in forecasters:
            overall = metrics[block][name]["overall"]
            assert set(overall) == {"auc", "brier", "log_loss", "ece", "n"}
            assert all(isinstance(overall[k], float) for k in ("auc", "brier", "log_loss", "ece"))
            assert overall["n"] > 1000
            assert set(WEEKS) <= set(metrics[block][name]["by_week"])
    for name in forecasters:
        period = metrics["period"][name]
        for week in WEEKS:
            figures = period["by_week"][week]
            assert isinstance(figures["median_ape"], float) and isinstance(figures["bias"], float)
            assert figures["n"] > 0
        assert isinstance(period["attainment_brier"], float)
        assert period["n_team_quarters"] > 0
        if name == "model":
            assert isinstance(period["coverage_80"], float)
        else:
            assert period["coverage_80"] is None  # baselines have no interval


def test_manual_weight_is_judged_with_the_deals_and_team_quarters_it_covers(
    report: Path,
) -> None:
    metrics = json.loads((report / "metrics.json").read_text())
    for block in ("deal", "deal_in_period"):
        manual = metrics[block][MANUAL_WEIGHT]
        n = manual["overall"]["n"]
        assert manual["fallback"] == "stage_weight_crm"
        assert 0 < manual["n_typed"] < n  # some teams type, the others fall back
        on_typed = manual["on_typed"]
        assert set(on_typed) == {"model", "stage_weight_crm", MANUAL_WEIGHT}
        assert {m["n"] for m in on_typed.values()} == {manual["n_typed"]}
        # The managers' numbers are not the stage weight where they typed them.
        assert on_typed[MANUAL_WEIGHT]["brier"] != on_typed["stage_weight_crm"]["brier"]
    period = metrics["period"][MANUAL_WEIGHT]
    assert period["fallback"] == "stage_weight_crm"
    assert 0 < period["n_team_quarters_typed"] < period["n_team_quarters"]
    assert period["n_forecasts_typed"] > 0
    periods = pd.read_csv(report / "periods.csv")
    typed = periods["manual_typed_deals"] > 0
    assert (periods.loc[~typed, "forecast_manual_weight"]).equals(
        periods.loc[~typed, "forecast_stage_weight_crm"]
    )
    assert (
        periods.loc[typed, "forecast_manual_weight"]
        != periods.loc[typed, "forecast_stage_weight_crm"]
    ).any()


def test_the_cli_summary_says_what_manual_weight_covers(report: Path) -> None:
    metrics = json.loads((report / "metrics.json").read_text())
    manual = metrics["deal"][MANUAL_WEIGHT]
    line = _backtest_summary(metrics).splitlines()[-1]
    assert line.startswith(f"manual_weight: typed on {manual['n_typed']} of ")
    assert f"{manual['on_typed'][MANUAL_WEIGHT]['brier']:.4f}" in line
    assert "(the others at stage_weight_crm)" in line


def test_report_has_plots_and_tables(report: Path) -> None:
    for name in (
        "reliability_won.png",
        "reliability_won_in_period.png",
        "period_forecast.png",
        "attainment_coverage.png",
    ):
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("by_stage.csv", "by_week.csv", "periods.csv"):
        assert len((report / name).read_text().splitlines()) > 2


def test_censoring_effect_is_reported(report: Path) -> None:
    censoring = json.loads((report / "metrics.json").read_text())["censoring"]
    for effect in censoring.values():
        assert 0 < effect["share_censored"] < 1
        assert 0 < effect["win_rate_naive"] < 1 and 0 < effect["win_rate_weighted"] < 1
        # The weights bring the known labels' rate toward the rate the end of the data shows.
        assert abs(effect["win_rate_weighted"] - effect["true_win_rate"]) < abs(
            effect["win_rate_naive"] - effect["true_win_rate"]
        )


def test_same_data_same_metrics(small_world: Path, report: Path, tmp_path: Path) -> None:
    data = prepare(load_export(small_world))
    write_report(run_backtest(data, config=BacktestConfig(step="quarter", folds=2)), tmp_path)
    assert (tmp_path / "metrics.json").read_text() == (report / "metrics.json").read_text()
