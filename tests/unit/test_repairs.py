"""Repairs of messy exports: each one on a small hand-made export, with its rows and counts;
point-in-time safety; strict refusal; the row accounting; and the input that stays fatal."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.deals import DealTables
from features.errors import REPAIR_COLUMNS, ExportInvalid
from features.loading import build_export, export_as_of, load_export, validate_export
from features.reference import OutcomeReference
from features.snapshots import build_snapshots
from tests.conftest import small_export_tables

Tables = dict[str, pd.DataFrame]
UTC = "UTC"


def listed(export_or_report: object, kind: str) -> list[tuple[str, int, str, str]]:
    """(table, row, key, column) of every listed repair of one kind."""
    report = getattr(export_or_report, "report", export_or_report)
    frame = report.repairs.to_frame()  # type: ignore[attr-defined]
    rows = frame[frame["kind"] == kind]
    return list(zip(rows["table"], rows["row"], rows["key"], rows["column"], strict=True))


def history_of(export: object, deal: str) -> pd.DataFrame:
    history = export.history  # type: ignore[attr-defined]
    return history[history["opportunity_id"] == deal].reset_index(drop=True)


def messy(t: Tables) -> None:
    """One of every repair (rows of the small export's history, 1-based: O1 1-3, O2 4-5, O3 6)."""
    history = t["opportunity_history"]
    history["amount"] = [None, 900.0, None, 500.0, 500.0, None]
    # Row 7: O1 at the same instant as row 2 (written with another offset), other values.
    same = history.iloc[[1]].assign(changed_at="2026-02-05T08:00:00Z", stage="Value Proposition")
    t["opportunity_history"] = pd.concat([history, same], ignore_index=True)
    t["opportunities"]["created_at"] = ["2026-01-05T10:00:00", "2026-02-10", "2026-03-02T08:30Z"]
    t["opportunities"]["type"] = ["New\x00 Business", "Renewal", "Upsell"]


def test_empty_amounts_are_carried_forward_never_back(export_with: Callable[..., Path]) -> None:
    def empty(t: Tables) -> None:
        t["opportunity_history"]["amount"] = [None, 900.0, None, 500.0, 500.0, None]

    export = load_export(export_with(empty))
    # O1's first row has no amount and only a later row has one: it stays unknown.
    np.testing.assert_array_equal(history_of(export, "O1")["amount"], [np.nan, 900.0, 900.0])
    assert np.isnan(history_of(export, "O3")["amount"]).all()
    assert export.report.repairs.counts() == {"amount_unknown": 2, "amount_carried_forward": 1}
    assert listed(export, "amount_carried_forward") == [("opportunity_history", 3, "O1", "amount")]
    assert listed(export, "amount_unknown") == [
        ("opportunity_history", 1, "O1", "amount"),
        ("opportunity_history", 6, "O3", "amount"),
    ]
    frame = export.report.repairs.to_frame()
    carried = frame[frame["kind"] == "amount_carried_forward"].iloc[0]
    assert (carried["before"], carried["after"]) == ("empty", "900.0 (from row 2)")
    assert export.report.ok


def test_amounts_are_carried_in_time_order_not_file_order(
    export_with: Callable[..., Path],
) -> None:
    def reversed_file(t: Tables) -> None:
        history = t["opportunity_history"]
        history["amount"] = [1000.0, None, None, 500.0, 500.0, 2500.0]
        t["opportunity_history"] = history.iloc[::-1].reset_index(drop=True)

    export = load_export(export_with(reversed_file))
    np.testing.assert_array_equal(history_of(export, "O1")["amount"], [1000.0, 1000.0, 1000.0])
    # File rows 5 and 4 are O1's second and third rows (the file runs backwards).
    frame = export.report.repairs.to_frame()
    assert frame[["kind", "row", "after"]].values.tolist() == [
        ["amount_carried_forward", 5, "1000.0 (from row 6)"],
        ["amount_carried_forward", 4, "1000.0 (from row 6)"],
    ]


def test_unknown_amounts_are_missing_features_never_inf(export_with: Callable[..., Path]) -> None:
    def empty(t: Tables) -> None:
        t["opportunity_history"]["amount"] = [None, 900.0, None, 500.0, 500.0, None]

    snapshots = build_snapshots(load_export(export_with(empty)))
    numeric = snapshots.select_dtypes("number")
    assert not np.isinf(numeric.to_numpy()).any()
    o1 = snapshots[snapshots["opportunity_id"] == "O1"].set_index("as_of")
    known_from = pd.Timestamp("2026-02-05T08:00", tz=UTC)
    before, after = o1[o1.index < known_from], o1[o1.index >= known_from]
    assert len(before) and len(after)
    assert (
        before[["amount", "amount_change_since_creation", "amount_change_recent"]]
        .isna()
        .all()
        .all()
    )
    # Once known, changes are measured from the first known amount.
    assert (after["amount"] == 900.0).all()
    assert (after["amount_change_since_creation"] == 0.0).all()
    assert (after["amount_change_recent"] == 0.0).all()
    assert snapshots.loc[snapshots["opportunity_id"] == "O3", "amount"].isna().all()


def test_rows_at_one_instant_resolve_to_the_files_last(export_with: Callable[..., Path]) -> None:
    def same_instant(t: Tables) -> None:
        history = t["opportunity_history"]
        same = history.iloc[[1]].assign(
            changed_at="2026-02-05T08:00:00Z", stage="Value Proposition", amount=950.0
        )
        t["opportunity_history"] = pd.concat([history, same], ignore_index=True)

    export = load_export(export_with(same_instant))
    o1 = history_of(export, "O1")
    assert list(o1["stage"]) == ["Prospecting", "Value Proposition", "Closed Won"]
    assert o1["amount"].iloc[1] == 950.0
    assert listed(export, "same_instant_superseded") == [
        ("opportunity_history", 2, "O1", "changed_at")
    ]
    frame = export.report.repairs.to_frame()
    assert frame["after"].iloc[0] == "removed: row 7 is the state at 2026-02-05T08:00:00+00:00"
    rows = export.report.repairs.tables["opportunity_history"]
    assert (rows.rows_in, rows.rows_used, rows.removed) == (7, 6, {"same_instant_superseded": 1})

    def other_order(t: Tables) -> None:
        history = t["opportunity_history"]
        same = history.iloc[[1]].assign(
            changed_at="2026-02-05T08:00:00Z", stage="Value Proposition", amount=950.0
        )
        t["opportunity_history"] = pd.concat([same, history], ignore_index=True)

    # The same rows in the other file order: the other one is last, so it is the state.
    swapped = load_export(export_with(other_order))
    assert history_of(swapped, "O1")["stage"].iloc[1] == "Negotiation/Review"
    assert listed(swapped, "same_instant_superseded") == [
        ("opportunity_history", 1, "O1", "changed_at")
    ]


def test_history_before_creation_moves_the_creation(export_with: Callable[..., Path]) -> None:
    def late_creation(t: Tables) -> None:
        t["opportunities"]["created_at"] = ["2026-01-05T10:00:00", "2026-02-10", "2026-03-02"]

    export = load_export(export_with(late_creation))
    created = export.opportunities.set_index("opportunity_id")["created_at"]
    assert created["O2"] == pd.Timestamp("2026-02-01", tz=UTC)
    assert listed(export, "created_at_moved") == [("opportunities", 2, "O2", "created_at")]
    frame = export.report.repairs.to_frame()
    assert frame["after"].iloc[0] == "2026-02-01T00:00:00+00:00 (history row 4)"
    o2 = build_snapshots(export).query("opportunity_id == 'O2'")
    assert o2["as_of"].min() == pd.Timestamp("2026-02-05", tz=UTC)
    assert o2["deal_age_days"].iloc[0] == 4.0


def test_deals_entered_after_the_fact_are_kept(export_with: Callable[..., Path]) -> None:
    def after_the_fact(t: Tables) -> None:
        history = t["opportunity_history"]
        history["stage"] = history["stage"].replace("Qualification", "Closed Won")
        history["close_date"] = history["close_date"].replace("2026-09-30", "2026-02-15")
        history["forecast_category"] = history["forecast_category"].replace("Best Case", "Closed")

    export = load_export(export_with(after_the_fact))
    assert export.report.repairs.counts() == {"closed_before_created": 1, "created_closed": 1}
    assert listed(export, "created_closed") == [("opportunity_history", 6, "O3", "stage")]
    assert listed(export, "closed_before_created") == [
        ("opportunity_history", 6, "O3", "close_date")
    ]
    assert list(history_of(export, "O3")["stage"]) == ["Closed Won"]
    # Never an open snapshot, but a won deal of its owner (U1) once it is in the history.
    assert "O3" not in set(build_snapshots(export)["opportunity_id"])
    tables = DealTables.from_export(export)
    context = OutcomeReference(tables).context_at(pd.Timestamp("2026-04-01", tz=UTC).value)
    owner = context.owners.codes(np.array(["U1"], dtype=object))[0]
    assert (context.owner_won[owner], context.owner_closed[owner]) == (2.0, 2.0)


def test_text_fields_are_cleaned_of_nul_and_control_characters(
    export_with: Callable[..., Path],
) -> None:
    def dirty(t: Tables) -> None:
        t["opportunities"]["type"] = ["New\x00 Business", "Renewal", "Up\x07sell"]
        t["activities"]["opportunity_id"] = ["O1", "O1\x00", "O3"]
        t["accounts"]["industry"] = ["Retail\r\nand more", "Fin\x1bance"]

    export = load_export(export_with(dirty))
    assert export.report.ok
    assert list(export.opportunities["type"]) == ["New Business", "Renewal", "Upsell"]
    assert list(export.activities["opportunity_id"]) == ["O1", "O1", "O3"]
    # Line breaks inside a field are text, not control characters to remove.
    assert list(export.accounts["industry"]) == ["Retail\r\nand more", "Finance"]
    assert sorted(listed(export, "text_cleaned")) == [
        ("accounts", 2, "A2", "industry"),
        ("activities", 2, "O1", "opportunity_id"),
        ("opportunities", 1, "O1", "type"),
        ("opportunities", 3, "O3", "type"),
    ]


def test_identical_duplicates_are_a_warning_and_a_named_removal(
    export_with: Callable[..., Path],
) -> None:
    def repeat(t: Tables) -> None:
        history = t["opportunity_history"]
        t["opportunity_history"] = pd.concat([history, history.iloc[[1, 1]]], ignore_index=True)

    export = load_export(export_with(repeat), strict=True)  # a warning, not a repair
    assert len(export.history) == 6
    assert export.report.repairs.counts() == {}
    assert [(v.table, v.row) for v in export.report.warnings] == [
        ("opportunity_history", 7),
        ("opportunity_history", 8),
    ]
    rows = export.report.repairs.tables["opportunity_history"]
    assert (rows.rows_in, rows.rows_used, rows.removed) == (
        8,
        6,
        {"identical_duplicate_merged": 2},
    )


def test_row_accounting_adds_up_for_every_table(export_with: Callable[..., Path]) -> None:
    def everything(t: Tables) -> None:
        messy(t)
        history = t["opportunity_history"]
        t["opportunity_history"] = pd.concat([history, history.iloc[[3]]], ignore_index=True)
        bare = (
            t["opportunities"]
            .iloc[[2]]
            .assign(opportunity_id="O4", stage="Prospecting", amount=700.0, close_date="2026-06-30")
        )
        t["opportunities"] = pd.concat([t["opportunities"], bare], ignore_index=True)

    export = load_export(export_with(everything))
    tables = export.report.repairs.tables
    assert set(tables) == {
        "opportunities",
        "opportunity_history",
        "activities",
        "accounts",
        "owners",
        "quotas",
    }
    assert all(t.balanced for t in tables.values())
    history = tables["opportunity_history"]
    assert (history.rows_in, history.rows_used, history.rows_added) == (8, 6, 1)
    assert history.removed == {"identical_duplicate_merged": 1, "same_instant_superseded": 1}
    assert len(export.history) == history.rows_used + history.rows_added
    accounting = export.report.repairs.accounting().set_index("table")
    assert accounting.loc["opportunity_history", "removed_same_instant_superseded"] == 1
    assert accounting["balanced"].all()
    assert (accounting["rows_in"] == accounting["rows_used"] + accounting["rows_removed"]).all()


def test_strict_refuses_every_repair(export_with: Callable[..., Path]) -> None:
    path = export_with(messy)
    repairs = load_export(path).report.repairs
    assert repairs.counts() == {
        "amount_unknown": 2,
        "amount_carried_forward": 1,
        "created_at_moved": 1,
        "same_instant_superseded": 1,
        "text_cleaned": 1,
    }
    with pytest.raises(ExportInvalid) as raised:
        load_export(path, strict=True)
    errors = raised.value.report.errors
    assert len(errors) == len(repairs)
    listing = repairs.to_frame()
    assert [(v.table, v.row, v.key, v.column) for v in errors] == list(
        zip(listing["table"], listing["row"], listing["key"], listing["column"], strict=True)
    )
    assert all(v.expected.startswith("no repair (strict)") for v in errors)
    assert not validate_export(path, strict=True).ok


def test_cli_validate_lists_repairs_strict_refuses_and_report_writes_them(
    export_with: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dealcast.cli import main

    path = export_with(messy)
    assert main(["validate", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "6 repairs:" in printed
    assert "  amount_unknown: 2" in printed
    # Row 2 lost to row 7 at its instant, so row 7 is the earlier amount row 3 carries.
    assert "    - opportunity_history.amount row 3 (O1): empty -> 900.0 (from row 7)" in printed
    assert "opportunity_history: 7 in = 6 used + 1 removed (same_instant_superseded 1)" in printed
    assert printed.rstrip().endswith("valid (6 rows repaired)")
    assert main(["validate", str(path), "--strict"]) == 1
    assert capsys.readouterr().out.rstrip().endswith("INVALID")
    out = tmp_path / "repairs.csv"
    assert main(["validate", str(path), "--report", str(out)]) == 0
    written = pd.read_csv(out)
    assert tuple(written.columns) == REPAIR_COLUMNS
    assert len(written) == 6
    assert set(written["kind"]) == {
        "amount_unknown",
        "amount_carried_forward",
        "created_at_moved",
        "same_instant_superseded",
        "text_cleaned",
    }


def _raw_up_to(tables: Tables, t: pd.Timestamp) -> Tables:
    """The raw tables as a CRM exported at t would give them."""
    out = dict(tables)
    history = tables["opportunity_history"]
    stamped = pd.to_datetime(history["changed_at"], utc=True, format="ISO8601")
    out["opportunity_history"] = history[stamped <= t]
    created = pd.to_datetime(tables["opportunities"]["created_at"], utc=True, format="ISO8601")
    alive = set(out["opportunity_history"]["opportunity_id"])
    keep = (created <= t) | tables["opportunities"]["opportunity_id"].isin(alive)
    out["opportunities"] = tables["opportunities"][keep]
    activities = tables["activities"]
    occurred = pd.to_datetime(activities["occurred_at"], utc=True, format="ISO8601")
    known = activities["opportunity_id"].isin(out["opportunities"]["opportunity_id"])
    out["activities"] = activities[(occurred <= t) & known]
    return out


@pytest.mark.parametrize(
    "t", ["2026-01-20", "2026-02-05T08:00:00Z", "2026-02-05T09:00:00Z", "2026-03-10", "2026-04-01"]
)
def test_repairs_at_t_use_nothing_stamped_after_t(t: str) -> None:
    tables = small_export_tables()
    messy(tables)
    # O2 has no amount until its closing row; O1 an amount only from its second row.
    tables["opportunity_history"]["amount"] = [None, 900.0, None, None, 500.0, None, 950.0]
    cut = pd.Timestamp(t, tz=UTC) if pd.Timestamp(t).tzinfo is None else pd.Timestamp(t)
    whole = export_as_of(build_export(tables), cut)
    then = build_export(_raw_up_to(tables, cut))
    columns = ["opportunity_id", "changed_at", "stage", "amount", "close_date"]
    pd.testing.assert_frame_equal(whole.history[columns], then.history[columns])
    pd.testing.assert_series_equal(
        whole.opportunities.set_index("opportunity_id")["created_at"].sort_index(),
        then.opportunities.set_index("opportunity_id")["created_at"].sort_index(),
    )


def _write_history_lines(path: Path, edit: Callable[[list[str]], None]) -> None:
    file = path / "opportunity_history.csv"
    lines = file.read_text().splitlines()
    edit(lines)
    file.write_text("\n".join(lines) + "\n")


def test_rows_with_missing_or_extra_fields_are_fatal_one_error_each(small_export: Path) -> None:
    def damage(lines: list[str]) -> None:
        lines[2] = ",".join(lines[2].split(",")[:4])  # data row 2: 4 of 7 fields
        lines[4] += ",surplus"  # data row 4: one field too many

    _write_history_lines(small_export, damage)
    report = validate_export(small_export)
    assert [(v.table, v.row) for v in report.errors] == [
        ("opportunity_history", 2),
        ("opportunity_history", 4),
    ]
    short, long = (str(v.found) for v in report.errors)
    assert short == "4 fields on line 3: 'O1,2026-02-05T10:00:00+02:00,Negotiation/Review,900.0'"
    assert long.startswith("8 fields on line 5: 'O2,2026-02-01,Prospecting,500.0,")
    assert {v.expected for v in report.errors} == {"a row of the header's 7 fields"}


def test_an_extra_field_in_the_first_row_is_one_error_not_a_flood(small_export: Path) -> None:
    def damage(lines: list[str]) -> None:
        lines[1] += ",surplus"  # pandas would take the first column as the index

    _write_history_lines(small_export, damage)
    report = validate_export(small_export)
    assert [(v.table, v.row) for v in report.errors] == [("opportunity_history", 1)]


def test_times_outside_the_representable_range_are_named(export_with: Callable[..., Path]) -> None:
    def far(t: Tables) -> None:
        t["opportunity_history"].loc[0, "changed_at"] = "0001-01-01"
        t["opportunity_history"].loc[5, "close_date"] = "9999-12-31"
        t["activities"].loc[2, "occurred_at"] = "9999-12-31T00:00"

    report = validate_export(export_with(far))
    found = {(v.table, v.column, v.row, v.found) for v in report.errors}
    assert found == {
        ("opportunity_history", "changed_at", 1, "'0001-01-01'"),
        ("opportunity_history", "close_date", 6, "'9999-12-31'"),
        ("activities", "occurred_at", 3, "'9999-12-31T00:00'"),
    }
    assert all("representable range" in v.expected for v in report.errors)


def test_times_outside_the_range_in_parquet_are_named(export_with: Callable[..., Path]) -> None:
    def far(t: Tables) -> None:
        times = pd.to_datetime(t["activities"]["occurred_at"], format="ISO8601").dt.as_unit("us")
        times.iloc[1] = pd.Timestamp("9999-12-31").as_unit("us")
        t["activities"]["occurred_at"] = times

    report = validate_export(export_with(far, fmt="parquet"))
    assert [(v.table, v.column, v.row) for v in report.errors] == [("activities", "occurred_at", 2)]
