"""The promotion gate's rules on hand-made metrics."""

from __future__ import annotations

from typing import Any

from training.gate import compare_scores, decide


def metrics(model: float, best_baseline: float) -> dict[str, Any]:
    def block(value: float) -> dict[str, Any]:
        return {"overall": {"brier": value, "log_loss": value * 3}}

    baselines = {
        name: block(best_baseline + i * 0.01)
        for i, name in enumerate(("stage_weight_crm", "stage_weight_empirical", "commit"))
    }
    return {b: {"model": block(model), **baselines} for b in ("deal", "deal_in_period")}


def test_must_beat_every_baseline() -> None:
    assert decide(metrics(0.06, 0.10), champion_version=None, champion_comparison=None).passed
    failed = decide(metrics(0.11, 0.10), champion_version=None, champion_comparison=None)
    assert not failed.passed
    assert any("stage_weight_crm" in reason for reason in failed.reasons)


def test_champion_tolerance() -> None:
    mine = {
        "deal": {"brier": 0.0605, "log_loss": 0.2},
        "deal_in_period": {"brier": 0.04, "log_loss": 0.13},
    }
    theirs = {
        "deal": {"brier": 0.0600, "log_loss": 0.2},
        "deal_in_period": {"brier": 0.04, "log_loss": 0.13},
    }
    assert compare_scores(mine, theirs, tolerance=0.01)[0]  # 0.8% worse: inside 1%
    assert not compare_scores(mine, theirs, tolerance=0.005)[0]
    decision = decide(
        metrics(0.06, 0.10),
        champion_version="3",
        champion_comparison=(mine, theirs, "same data"),
        tolerance=0.005,
    )
    assert not decision.passed and decision.champion_version == "3"
