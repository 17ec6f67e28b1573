"""Loading and validation: typed tables from a valid export; every violation named in a bad one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from features.errors import ExportInvalid, ValidationReport
from features.loading import load_export, validate_export

Damage = Callable[[dict[str, pd.DataFrame]], None]


def errors_of(report: ValidationReport) -> list[tuple[str, str | None, int | None]]:
    return [(v.table, v.column, v.row) for v in report.errors]


def test_valid_export_loads_typed_in_utc(small_export: Path) -> None:
    export = load_export(small_export)
    assert export.report.ok
    history = export.history
    assert str(history["changed_at"].dtype) == "datetime64[ns, UTC]"
    assert str(history["close_date"].dtype) == "datetime64[ns, UTC]"
    # "+02:00" offsets are converted, naive times are taken as UTC.
    o1 = history[history["opportunity_id"] == "O1"]["changed_at"].tolist()
    assert o1[1] == pd.Timestamp("2026-02-05T08:00:00", tz="UTC")
    assert o1[0] == pd.Timestamp("2026-01-05T10:00:00", tz="UTC")
    assert export.opportunities["created_at"].iloc[2] == pd.Timestamp("2026-03-02T08:30", tz="UTC")
    assert history["amount"].dtype == np.float64
    assert export.stages.source == "Salesforce standard picklist"
    assert export.fingerprint.startswith("sha256:")
    assert set(export.owners["team"]) == {"East", "West"}


def test_parquet_and_csv_give_the_same_tables(small_export: Path, tmp_path: Path) -> None:
    from tests.conftest import small_export_tables, write_tables

    parquet = write_tables(tmp_path / "pq", small_export_tables(), fmt="parquet")
    a, b = load_export(small_export), load_export(parquet)
    pd.testing.assert_frame_equal(a.history, b.history, check_dtype=False)
    pd.testing.assert_frame_equal(a.activities, b.activities, check_dtype=False)


def test_history_is_sorted_by_deal_and_time_whatever_the_file_order(
    export_with: Callable[..., Path],
) -> None:
    def shuffle(t: dict[str, pd.DataFrame]) -> None:
        t["opportunity_history"] = t["opportunity_history"].iloc[::-1]

    history = load_export(export_with(shuffle)).history
    assert history.equals(history.sort_values(["opportunity_id", "changed_at"]))


@pytest.mark.parametrize(
    ("damage", "table", "column", "row"),
    [
        pytest.param(
            lambda t: t.__setitem__(
                "opportunity_history", t["opportunity_history"].drop(columns="changed_at")
            ),
            "opportunity_history",
            "changed_at",
            None,
            id="missing-required-column",
        ),
        pytest.param(
            lambda t: t["opportunity_history"].__setitem__(
                "changed_at",
                t["opportunity_history"]["changed_at"].replace("2026-02-01", "01/02/2026"),
            ),
            "opportunity_history",
            "changed_at",
            4,
            id="unparsable-date",
        ),
        pytest.param(
            lambda t: t["opportunity_history"].__setitem__(
                "amount", t["opportunity_history"]["amount"].replace(500.0, -5.0)
            ),
            "opportunity_history",
            "amount",
            4,
            id="negative-amount",
        ),
        pytest.param(
            lambda t: t["opportunity_history"].__setitem__(
                "amount", t["opportunity_history"]["amount"].replace(2500.0, np.inf)
            ),
            "opportunity_history",
            "amount",
            6,
            id="infinite-amount",
        ),
        pytest.param(
            lambda t: t["opportunity_history"].__setitem__(
                "probability", t["opportunity_history"]["probability"].replace(90, 140)
            ),
            "opportunity_history",
            "probability",
            2,
            id="probability-out-of-range",
        ),
        pytest.param(
            lambda t: t["opportunities"].__setitem__("opportunity_id", ["O1", "O2", "O1"]),
            "opportunities",
            "opportunity_id",
            3,
            id="duplicate-key",
        ),
        pytest.param(
            lambda t: t["activities"].__setitem__("opportunity_id", ["O1", "O9", "O3"]),
            "activities",
            "opportunity_id",
            2,
            id="activity-for-unknown-deal",
        ),
        pytest.param(
            lambda t: t["opportunity_history"].__setitem__(
                "opportunity_id", ["O1", "O1", "O1", "O2", "O2", "O7"]
            ),
            "opportunity_history",
            "opportunity_id",
            6,
            id="history-for-unknown-deal",
        ),
        pytest.param(
            lambda t: t["quotas"].__setitem__("period", ["2026-Q1", "2026Q5"]),
            "quotas",
            "period",
            2,
            id="malformed-quota-period",
        ),
        pytest.param(
            lambda t: t["quotas"].__setitem__("quota", [5000.0, 0.0]),
            "quotas",
            "quota",
            2,
            id="zero-quota",
        ),
        pytest.param(
            lambda t: t["opportunity_history"].__setitem__(
                "forecast_category",
                t["opportunity_history"]["forecast_category"].replace("Commit", "Commited"),
            ),
            "opportunity_history",
            "forecast_category",
            2,
            id="unknown-forecast-category",
        ),
        pytest.param(
            lambda t: t["opportunity_history"].__setitem__(
                "stage", t["opportunity_history"]["stage"].replace("Qualification", "Qualified")
            ),
            "opportunity_history",
            "stage",
            6,
            id="unknown-stage",
        ),
        pytest.param(
            lambda t: t["owners"].__setitem__("owner_id", ["U1", "U1"]),
            "owners",
            "owner_id",
            2,
            id="duplicate-owner",
        ),
    ],
)
def test_one_damaged_row_is_named(
    export_with: Callable[..., Path],
    damage: Damage,
    table: str,
    column: str,
    row: int | None,
) -> None:
    path = export_with(damage)
    report = validate_export(path)
    assert not report.ok
    assert (table, column, row) in errors_of(report), report.format()
    with pytest.raises(ExportInvalid) as raised:
        load_export(path)
    assert table in str(raised.value)


def test_every_violation_is_reported_at_once(export_with: Callable[..., Path]) -> None:
    def many(t: dict[str, pd.DataFrame]) -> None:
        t["opportunity_history"]["amount"] = [1000.0, -1.0, 900.0, -2.0, 500.0, 2500.0]
        t["opportunity_history"].loc[0, "close_date"] = "not a date"
        t["quotas"]["period"] = ["Q1-2026", "2026-Q1"]

    report = validate_export(export_with(many))
    found = errors_of(report)
    for expected in [
        ("opportunity_history", "amount", 2),
        ("opportunity_history", "amount", 4),
        ("opportunity_history", "close_date", 1),
        ("quotas", "period", 1),
    ]:
        assert expected in found
    text = report.format()
    assert (
        "opportunity_history.amount row 2 (O1): expected a finite number >= 0, found '-1.0'" in text
    )


def test_empty_file_is_an_error_naming_the_table(small_export: Path) -> None:
    (small_export / "activities.csv").write_text("")
    report = validate_export(small_export)
    assert [(v.table, v.found) for v in report.errors] == [("activities", "an empty file")]


def test_missing_required_table(small_export: Path) -> None:
    (small_export / "opportunity_history.csv").unlink()
    report = validate_export(small_export)
    assert ("opportunity_history", None, None) in errors_of(report)


def test_csv_and_parquet_for_one_table_is_ambiguous(small_export: Path) -> None:
    pd.read_csv(small_export / "owners.csv").to_parquet(small_export / "owners.parquet")
    assert ("owners", None, None) in errors_of(validate_export(small_export))


def test_identical_repeated_rows_are_merged_with_a_warning(
    export_with: Callable[..., Path],
) -> None:
    def repeat(t: dict[str, pd.DataFrame]) -> None:
        history = t["opportunity_history"]
        t["opportunity_history"] = pd.concat([history, history.iloc[[1]]], ignore_index=True)

    export = load_export(export_with(repeat))
    assert len(export.history) == 6
    assert [(v.table, v.row) for v in export.report.warnings] == [("opportunity_history", 7)]


def test_current_state_disagreeing_with_history_warns_and_history_wins(
    export_with: Callable[..., Path],
) -> None:
    def current(t: dict[str, pd.DataFrame]) -> None:
        t["opportunities"]["stage"] = ["Closed Won", "Closed Lost", "Prospecting"]
        t["opportunities"]["amount"] = [900.0, 500.0, 2500.0]

    export = load_export(export_with(current))
    warned = [(v.column, v.key) for v in export.report.warnings]
    assert warned == [("stage", "O3")]
    last = export.history.groupby("opportunity_id")["stage"].last()
    assert last["O3"] == "Qualification"


def test_deal_without_history_is_read_from_its_current_state(
    export_with: Callable[..., Path],
) -> None:
    def bare(t: dict[str, pd.DataFrame]) -> None:
        t["opportunities"] = pd.concat(
            [
                t["opportunities"],
                pd.DataFrame(
                    {
                        "opportunity_id": ["O4"],
                        "account_id": ["A2"],
                        "owner_id": ["U2"],
                        "created_at": ["2026-03-10"],
                        "stage": ["Prospecting"],
                        "amount": [700.0],
                        "close_date": ["2026-06-30"],
                    }
                ),
            ],
            ignore_index=True,
        )

    history = load_export(export_with(bare)).history
    o4 = history[history["opportunity_id"] == "O4"]
    assert len(o4) == 1
    assert o4["changed_at"].iloc[0] == pd.Timestamp("2026-03-10", tz="UTC")
    assert o4["amount"].iloc[0] == 700.0


def test_deal_without_history_or_current_state_is_an_error(
    export_with: Callable[..., Path],
) -> None:
    def bare(t: dict[str, pd.DataFrame]) -> None:
        t["opportunity_history"] = t["opportunity_history"][
            t["opportunity_history"]["opportunity_id"] != "O3"
        ]

    assert ("opportunities", None, 3) in errors_of(validate_export(export_with(bare)))


def test_stages_yaml_takes_precedence(small_export: Path) -> None:
    stages = {
        "open": [
            {"name": "Prospecting", "probability": 5},
            {"name": "Qualification", "probability": 15},
            {"name": "Negotiation/Review", "probability": 60},
        ],
        "won": [{"name": "Closed Won", "probability": 100}],
        "lost": [{"name": "Closed Lost", "probability": 0}],
    }
    (small_export / "stages.yaml").write_text(yaml.safe_dump(stages))
    export = load_export(small_export)
    assert export.stages.source == "stages.yaml"
    assert export.stages.open_stages == ("Prospecting", "Qualification", "Negotiation/Review")
    assert export.stages.probability("Negotiation/Review") == 60


def test_malformed_stages_yaml_is_reported(small_export: Path) -> None:
    (small_export / "stages.yaml").write_text("open: [{name: A, probability: 150}]\nwon: []\n")
    report = validate_export(small_export)
    assert [v.table for v in report.errors] == ["stages.yaml"]


def test_stages_are_inferred_from_outcomes_when_no_yaml(export_with: Callable[..., Path]) -> None:
    def custom(t: dict[str, pd.DataFrame]) -> None:
        t["opportunity_history"]["stage"] = [
            "Discover",
            "Negotiate",
            "Signed",
            "Discover",
            "Dead",
            "Qualify",
        ]
        t["opportunities"]["is_closed"] = ["true", "1", "false"]
        t["opportunities"]["is_won"] = ["true", "0", "false"]
        t["opportunities"]["stage"] = ["Signed", "Dead", "Qualify"]

    export = load_export(export_with(custom))
    assert export.stages.source == "inferred from history"
    assert export.stages.won_stages == ("Signed",)
    assert export.stages.lost_stages == ("Dead",)
    assert set(export.stages.open_stages) == {"Discover", "Negotiate", "Qualify"}
    assert export.stages.open_stages.index("Discover") < export.stages.open_stages.index(
        "Negotiate"
    )


def test_multi_currency_amounts_are_converted_with_dated_rates(
    export_with: Callable[..., Path],
) -> None:
    def currencies(t: dict[str, pd.DataFrame]) -> None:
        t["opportunity_history"]["currency"] = ["EUR", "EUR", "EUR", "USD", "USD", "GBP"]
        t["exchange_rates"] = pd.DataFrame(
            {
                "currency": ["USD", "EUR", "EUR", "GBP"],
                "rate": [1.0, 0.5, 0.8, 0.75],
                "valid_from": [None, "2026-01-01", "2026-03-25", None],
            }
        )

    history = load_export(export_with(currencies)).history.set_index(["opportunity_id", "stage"])
    # EUR row closing 2026-03-31 uses the rate valid from 2026-03-25; the won row (2026-03-20)
    # uses the one valid from 2026-01-01.
    assert history.loc[("O1", "Prospecting"), "amount"] == pytest.approx(1000 / 0.8)
    assert history.loc[("O1", "Closed Won"), "amount"] == pytest.approx(900 / 0.5)
    assert history.loc[("O3", "Qualification"), "amount"] == pytest.approx(2500 / 0.75)
    assert history.loc[("O1", "Closed Won"), "amount_original"] == 900


def test_currency_without_a_rate_is_an_error(export_with: Callable[..., Path]) -> None:
    def currencies(t: dict[str, pd.DataFrame]) -> None:
        t["opportunity_history"]["currency"] = ["EUR", "EUR", "EUR", "USD", "USD", "JPY"]
        t["exchange_rates"] = pd.DataFrame({"currency": ["USD", "EUR"], "rate": [1.0, 0.9]})

    assert ("opportunity_history", "currency", 6) in errors_of(
        validate_export(export_with(currencies))
    )


def test_several_currencies_need_exchange_rates(export_with: Callable[..., Path]) -> None:
    def currencies(t: dict[str, pd.DataFrame]) -> None:
        t["opportunity_history"]["currency"] = ["EUR", "EUR", "EUR", "USD", "USD", "USD"]

    report = validate_export(export_with(currencies))
    assert not report.ok
    assert {v.column for v in report.errors} == {"currency"}


def test_cli_validate_exit_codes(small_export: Path, export_with: Callable[..., Path]) -> None:
    from dealcast.cli import main

    assert main(["validate", str(small_export)]) == 0

    def negative(t: dict[str, pd.DataFrame]) -> None:
        t["opportunity_history"]["amount"] = [1000.0, -1.0, 900.0, 500.0, 500.0, 2500.0]

    assert main(["validate", str(export_with(negative))]) == 1


def test_header_only_history_reads_every_deal_from_its_current_state(
    export_with: Callable[..., Path],
) -> None:
    def header_only(t: dict[str, pd.DataFrame]) -> None:
        t["opportunities"]["stage"] = ["Closed Won", "Closed Lost", "Qualification"]
        t["opportunities"]["amount"] = [900.0, 500.0, 2500.0]
        t["opportunities"]["close_date"] = ["2026-03-20", "2026-02-20", "2026-09-30"]
        t["opportunity_history"] = t["opportunity_history"].iloc[:0]

    export = load_export(export_with(header_only))
    assert export.report.ok
    assert list(export.history["stage"]) == ["Closed Won", "Closed Lost", "Qualification"]
    assert list(export.history["changed_at"]) == list(export.opportunities["created_at"])
