"""Learned state saved as data and read back scores exactly as before: bit for bit, for a
trained win model, the baseline forecaster and the outcome reference."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.artifacts import ArtifactError, ArtifactReader, ArtifactWriter, dumps
from features.deals import DealTables
from features.reference import OutcomeReference
from features.snapshots import compute_features
from features.timestamps import to_ns
from models.baseline_model import BaselineWinModel
from models.baselines import baseline_from_data, baseline_to_data, baselines_for
from models.win import WinModel, WinPrediction
from tests.model.conftest import Trained


def _saved(thing: Any, folder: Path) -> tuple[dict[str, Any], ArtifactReader]:
    out = ArtifactWriter()
    document = dumps(thing.to_data(out, "m"))
    out.write(folder)
    return json.loads(document), ArtifactReader(folder)


def _same(a: WinPrediction, b: WinPrediction) -> None:
    for spec in fields(WinPrediction):
        x, y = getattr(a, spec.name), getattr(b, spec.name)
        if isinstance(x, dict):
            assert x.keys() == y.keys(), spec.name
            for key in x:
                np.testing.assert_array_equal(x[key], y[key], err_msg=f"{spec.name}.{key}")
        elif isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y, err_msg=spec.name)
        else:
            assert x == y, spec.name


def _rows(trained: Trained) -> pd.DataFrame:
    return trained.test_frame.sample(400, random_state=3).reset_index(drop=True)


def test_a_win_model_scores_bit_for_bit_after_save_and_load(
    trained: Trained, tmp_path: Path
) -> None:
    data, source = _saved(trained.model, tmp_path)
    again = WinModel.from_data(data, source, plan=trained.plan)
    rows = _rows(trained)
    _same(trained.model.predict(rows), again.predict(rows))  # a batch: booster by booster
    few = rows.iloc[:3]
    _same(trained.model.predict(few), again.predict(few))  # a request: the packed trees
    matrix = trained.model.encoder_.transform(few)
    np.testing.assert_array_equal(
        trained.model.won_.contributions(matrix, threads=1),
        again.won_.contributions(matrix, threads=1),
    )
    # The trees are LightGBM model text; nothing in the folder is a pickle.
    assert all(p.suffix in (".txt", ".npz") for p in tmp_path.rglob("*") if p.is_file())


def test_the_baseline_forecaster_scores_bit_for_bit_after_save_and_load(
    trained: Trained, tmp_path: Path
) -> None:
    baseline = BaselineWinModel(trained.plan).fit(trained.training)
    data, source = _saved(baseline, tmp_path)
    again = BaselineWinModel.from_data(data, source, plan=trained.plan)
    rows = _rows(trained)
    _same(baseline.predict(rows), again.predict(rows))
    _same(baseline.predict(rows.iloc[:2]), again.predict(rows.iloc[:2]))


def test_the_baselines_read_back_give_the_same_probabilities_and_period_weights(
    trained: Trained, tmp_path: Path
) -> None:
    """Every baseline of both targets, with the in-period share it uses where a deal's close
    date is unknown (an export without close-date history), is the same after save/load."""
    fitted = baselines_for(trained.training)
    rows = _rows(trained)
    unknown = rows.assign(close_date_in_quarter=np.nan)  # the share decides these
    for target, named in fitted.items():
        for name, baseline in named.items():
            out = ArtifactWriter()
            document = dumps(baseline_to_data(baseline, out, f"{target}.{name}"))
            folder = tmp_path / f"{target}.{name}"
            out.write(folder)
            again = baseline_from_data(json.loads(document), ArtifactReader(folder))
            assert again.period_share_ is not None
            for frame in (rows, unknown):
                np.testing.assert_array_equal(
                    baseline.predict_proba(frame), again.predict_proba(frame), err_msg=name
                )
                np.testing.assert_array_equal(
                    baseline.period_weights(frame), again.period_weights(frame), err_msg=name
                )
    share = fitted["won_in_period"]["stage_weight_crm"].period_weights(unknown)
    assert share.min() > 0 and share.max() < 1  # a learned share, neither all in nor all out


def test_the_reference_read_back_gives_the_same_features(trained: Trained, tmp_path: Path) -> None:
    tables = DealTables.from_export(trained.export, trained.plan.attributes)
    reference = OutcomeReference(tables)
    data, source = _saved(reference, tmp_path)
    again = OutcomeReference.from_data(data, source)
    picked = trained.snapshots.sample(300, random_state=4)
    deals = pd.Index(tables.opportunity_id).get_indexer(picked["opportunity_id"])
    as_of = to_ns(picked["as_of"])
    before = compute_features(tables, deals, as_of, plan=trained.plan, reference=reference)
    after = compute_features(tables, deals, as_of, plan=trained.plan, reference=again)
    pd.testing.assert_frame_equal(before, after, check_exact=True)
    pd.testing.assert_frame_equal(
        after, picked[trained.plan.feature_names].reset_index(drop=True), check_exact=True
    )
    # No deal ids and no raw account ids: accounts are salted hashes.
    text = json.dumps(data)
    assert str(tables.opportunity_id[0]) not in text
    accounts = set(source.array(data["accounts"]).tolist())
    assert str(tables.account_id[0]) not in accounts and len(next(iter(accounts))) == 64


def test_an_object_array_or_a_non_data_value_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"array m\.x: dtype object"):
        ArtifactWriter().array("m.x", np.array(["a", None], dtype=object))
    with pytest.raises(ArtifactError, match=r"\$\.when: a Timestamp is not plain data"):
        dumps({"when": pd.Timestamp("2026-01-01")})
