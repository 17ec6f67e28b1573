"""The forecast deviation review: the comparison of two forecast records and the store that
keeps them (two processes writing at once)."""

from __future__ import annotations

import math
import multiprocessing
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from models.forecast_review import (
    DealContribution,
    ForecastRecord,
    contributions,
    review,
)
from models.forecast_store import ForecastStore

MONDAY = pd.Timestamp("2026-02-02", tz="UTC")


def _open(deal: str, amount: float, p: float, closes: bool = True) -> DealContribution:
    return DealContribution(deal, "open", amount, p, closes)


def _won(deal: str, amount: float) -> DealContribution:
    return DealContribution(deal, "won", amount, 1.0, True)


def _record(
    deals: tuple[DealContribution, ...],
    *,
    as_of: pd.Timestamp = MONDAY,
    new_business: float = 1_000.0,
    quota: float | None = 20_000.0,
    owner_id: str | None = None,
) -> ForecastRecord:
    expected = sum(d.contribution for d in deals) + new_business
    return ForecastRecord(
        team="East",
        owner_id=owner_id,
        period="2026-Q1",
        as_of=as_of,
        made_at=as_of + pd.Timedelta(minutes=5),
        expected_revenue=expected,
        p10=expected * 0.8,
        p50=expected,
        p90=expected * 1.2,
        p_attain=0.5 if quota else None,
        quota=quota,
        new_business=new_business,
        model="models:/dealcast/1",
        deals=deals,
    )


BEFORE = (
    _open("A", 10_000.0, 0.5),  # 5,000: won by next week
    _open("B", 8_000.0, 0.5),  # 4,000: lost
    _open("C", 6_000.0, 0.5),  # 3,000: pushed out of the quarter
    _open("D", 4_000.0, 0.5),  # 2,000: amount raised
    _open("E", 2_000.0, 0.5),  # 1,000: probability fell
    _open("F", 1_000.0, 0.5),  # 500: unchanged
    _won("W", 3_000.0),  # won before: unchanged
)
AFTER = (
    _won("A", 10_000.0),
    _open("C", 6_000.0, 0.2, closes=False),
    _open("D", 6_000.0, 0.5),
    _open("E", 2_000.0, 0.25),
    _open("F", 1_000.0, 0.5),
    _open("N", 5_000.0, 0.1),  # new
    _won("W", 3_000.0),
)


def test_a_known_move_is_told_deal_by_deal_and_adds_up() -> None:
    before = _record(BEFORE)
    after = _record(AFTER, as_of=MONDAY + pd.Timedelta(days=7), new_business=800.0)
    result = review(after, before)
    assert before.expected_revenue == 19_500.0
    assert after.expected_revenue == 10_000 + 1_200 + 3_000 + 500 + 500 + 500 + 3_000 + 800
    assert result.change == pytest.approx(after.expected_revenue - 19_500.0)
    kinds = {m.opportunity_id: (m.kind, m.change) for m in result.deals}
    assert kinds == {
        "A": ("won", 5_000.0),
        "B": ("lost", -4_000.0),
        "C": ("pushed", 1_200.0 - 3_000.0),
        "D": ("amount", 1_000.0),
        "E": ("probability", -500.0),
        "N": ("new", 500.0),
    }
    assert [m.opportunity_id for m in result.deals] == ["A", "B", "C", "D", "E", "N"]
    assert result.deals_moved == 6
    assert result.new_business_change == pytest.approx(-200.0)
    # Every change is accounted for: the deals' parts and new business make the whole.
    assert sum(m.change for m in result.deals) + result.new_business_change == pytest.approx(
        result.change
    )
    assert result.previous_as_of == MONDAY
    top = review(after, before, top=2)
    assert [m.opportunity_id for m in top.deals] == ["A", "B"] and top.deals_moved == 6


@pytest.mark.parametrize(
    ("factor", "moved"),
    [(1.16, True), (0.84, True), (1.14, False), (0.86, False), (1.0, False)],
)
def test_a_move_beyond_15_percent_either_way_is_flagged(factor: float, moved: bool) -> None:
    before = _record((_open("A", 10_000.0, 0.5),), new_business=0.0, quota=None)
    after = _record((_open("A", 10_000.0, 0.5 * factor),), new_business=0.0, quota=None)
    result = review(after, before)
    assert result.change_share == pytest.approx(factor - 1.0)
    assert result.moved is moved and result.flagged is moved
    assert result.off_quota is False and result.quota_deviation is None
    assert bool(result.reasons) is moved
    if moved:
        assert f"{factor - 1:+.0%}" in result.reasons[0]


@pytest.mark.parametrize(
    ("expected", "off"),
    [(11_600.0, True), (8_400.0, True), (11_400.0, False), (8_600.0, False)],
)
def test_a_forecast_beyond_15_percent_from_its_quota_either_way_is_flagged(
    expected: float, off: bool
) -> None:
    current = _record((_open("A", expected, 1.0),), new_business=0.0, quota=10_000.0)
    result = review(current, None)  # no previous forecast: only the quota is read
    assert result.quota_deviation == pytest.approx(expected / 10_000.0 - 1.0)
    assert result.off_quota is off and result.flagged is off
    assert result.moved is False and result.change is None and result.deals == ()
    if off:
        side = "above" if expected > 10_000 else "below"
        assert result.reasons == (f"{abs(expected / 10_000 - 1):.0%} {side} the quota "
                                  "(review beyond +-15%)",)  # fmt: skip


def test_contributions_are_what_the_forecast_counts() -> None:
    deals = contributions(
        open_ids=["A", "B"],
        open_amounts=[1_000.0, math.nan],
        open_probabilities=[0.3, 0.9],
        open_closes_in_period=[True, False],
        won=pd.Series({"W": 500.0}),
    )
    assert [(d.opportunity_id, d.state, d.contribution) for d in deals] == [
        ("A", "open", 300.0),
        ("B", "open", 0.0),  # an amount not known yet counts nothing
        ("W", "won", 500.0),
    ]


def test_the_store_keeps_records_and_finds_the_previous_one(tmp_path: Path) -> None:
    store = ForecastStore.beside(tmp_path / "data")
    assert store.previous(team="East", owner_id=None, period="2026-Q1", before=MONDAY) is None
    week = pd.Timedelta(days=7)
    first = _record(BEFORE)
    rep = _record(BEFORE[:2], owner_id="U1")
    second = _record(AFTER, as_of=MONDAY + week)
    assert store.append([first, rep]) == 2
    assert store.append([second]) == 1
    assert store.append([first]) == 0  # the same forecast again is not kept twice
    assert (tmp_path / "data" / ".dealcast" / "forecasts.sqlite").is_file()
    found = store.previous(team="East", owner_id=None, period="2026-Q1", before=MONDAY + week)
    assert found == first  # every field, the deals included, comes back as it went in
    latest = store.previous(team="East", owner_id=None, period="2026-Q1", before=MONDAY + 2 * week)
    assert latest == second
    # The same as_of is not "previous"; a rep's record is its own; other quarters are apart.
    assert store.previous(team="East", owner_id=None, period="2026-Q1", before=MONDAY) is None
    assert (
        store.previous(team="East", owner_id="U1", period="2026-Q1", before=MONDAY + 2 * week)
        == rep
    )
    assert (
        store.previous(team="East", owner_id=None, period="2026-Q2", before=MONDAY + week) is None
    )
    nan_amount = _record((_open("X", math.nan, 0.5),), as_of=MONDAY + 3 * week)
    store.append([nan_amount])
    back = store.previous(team="East", owner_id=None, period="2026-Q1", before=MONDAY + 4 * week)
    assert back is not None and math.isnan(back.deals[0].amount)


def _write_many(path: str, writer: int, count: int, start: Any) -> None:
    store = ForecastStore(Path(path))
    start.wait()  # both writers begin together
    for k in range(count):
        when = MONDAY + pd.Timedelta(hours=writer * 1000 + k)
        store.append([_record(BEFORE, as_of=when), _record(BEFORE, as_of=when, owner_id="U1")])


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "forecasts.sqlite"
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    writers = [context.Process(target=_write_many, args=(str(path), w, 100, start)) for w in (1, 2)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(timeout=120)
    assert [process.exitcode for process in writers] == [0, 0]
    records = ForecastStore(path).records()
    assert len(records) == 2 * 100 * 2
    assert len({(r.as_of, r.owner_id) for r in records}) == len(records)


def test_a_changed_record_is_a_new_one_for_another_model(tmp_path: Path) -> None:
    store = ForecastStore(tmp_path / "forecasts.sqlite")
    first = _record(BEFORE)
    assert store.append([first, replace(first, model="models:/dealcast/2")]) == 2


def test_a_deal_that_leaves_the_books_is_told_and_the_parts_still_add_up() -> None:
    """A won deal moved to another rep leaves this rep's won to date: its part goes too."""
    before = _record((_won("W", 3_000.0), _open("A", 1_000.0, 0.5)), new_business=0.0)
    after = _record(
        (_open("A", 1_000.0, 0.5),), new_business=0.0, as_of=MONDAY + pd.Timedelta(days=7)
    )
    result = review(after, before)
    assert [(m.opportunity_id, m.kind, m.change) for m in result.deals] == [("W", "lost", -3_000.0)]
    assert result.change == pytest.approx(-3_000.0)
