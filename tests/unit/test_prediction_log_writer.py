"""The prediction log's writer: rows off the request path, whole files, failures counted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models.prediction_log import (
    ModelStamp,
    PredictionLog,
    PredictionLogInvalid,
    feature_hash,
    read_prediction_log,
)
from models.scoring import DealScore, FeatureRow


def _score(i: int, *, manual: bool) -> DealScore:
    columns = {
        "stage": np.array(["Proposal", None], dtype=object),
        "amount": np.array([1000.0 * (i + 1), np.nan]),
    }
    baselines = {"stage_weight_crm": 0.3, **({"manual_weight": 0.5} if manual else {})}
    return DealScore(
        opportunity_id=f"D{i}",
        as_of="2026-11-16T12:00:00+00:00",
        win_probability=0.4,
        win_probability_interval=(0.3, 0.5),
        win_in_period_probability=0.2,
        win_in_period_interval=(0.1, 0.3),
        horizons=(("30d", 30.0, 0.1), ("ever", 400.0, 0.4)),
        baselines=baselines,
        baselines_in_period=baselines,
        grade="C",
        risk_level="low",
        risk_flags=(),
        mode="full",
        features=FeatureRow(columns, 0),
    )


def test_rows_are_written_whole_with_every_column(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, flush_seconds=0.1)
    stamp = ModelStamp("dealcast", "3", "models:/dealcast/3")
    log.append([_score(0, manual=False)], stamp)
    log.append([_score(1, manual=True), _score(2, manual=False)], stamp)
    log.close()
    files = sorted(tmp_path.glob("*/*.parquet"))
    rows = [row for path in files for row in pq.read_table(path).to_pylist()]
    assert [row["opportunity_id"] for row in rows] == ["D0", "D1", "D2"]
    assert log.stats()["rows_written"] == 3 and log.stats()["rows_failed"] == 0
    # A baseline only one deal has is a column, null for the others.
    manual = {row["opportunity_id"]: row.get("baseline_manual_weight") for row in rows}
    assert manual["D1"] == 0.5 and manual["D2"] is None
    first = rows[0]
    assert first["model_version"] == "3" and first["p_won_30d"] == 0.1
    assert first["feature.stage"] == "Proposal" and first["feature.amount"] == 1000.0
    assert first["feature_hash"] == feature_hash({"stage": "Proposal", "amount": 1000.0})
    assert first["feature_hash"] != rows[1]["feature_hash"]


def test_a_failed_write_is_counted_and_the_log_goes_on(tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    log = PredictionLog(blocked, flush_seconds=0.05)
    log.append([_score(0, manual=False), _score(1, manual=False)], ModelStamp("m", None, "u"))
    log.close()
    stats = log.stats()
    assert stats["write_errors"] == 1 and stats["rows_failed"] == 2 and stats["rows_written"] == 0


def test_two_logs_of_one_process_keep_each_others_files(tmp_path: Path) -> None:
    stamp = ModelStamp("dealcast", "3", "models:/dealcast/3")
    for i in range(2):  # two `dealcast score --log` runs in one process
        log = PredictionLog(tmp_path, flush_seconds=0.05)
        log.append([_score(i, manual=False)], stamp)
        log.close()
    rows = read_prediction_log(tmp_path)
    assert rows["opportunity_id"].tolist() == ["D0", "D1"]
    assert str(rows["as_of"].dt.tz) == "UTC"


def test_a_folder_that_is_no_log_is_named(tmp_path: Path) -> None:
    with pytest.raises(PredictionLogInvalid, match="no such folder"):
        read_prediction_log(tmp_path / "nope")
    with pytest.raises(PredictionLogInvalid, match=r"no DAY/\*\.parquet file"):
        read_prediction_log(tmp_path)
    (tmp_path / "2026-11-16").mkdir()
    pq.write_table(pa.table({"opportunity_id": ["D0"]}), tmp_path / "2026-11-16" / "x.parquet")
    with pytest.raises(PredictionLogInvalid, match=r"x\.parquet: missing column.*logged_at"):
        read_prediction_log(tmp_path)
