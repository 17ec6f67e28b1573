"""The Salesforce importer on small exports written as Salesforce writes them.

Files are quoted CSV with CRLF line ends, in UTF-8 (with and without BOM) or Windows-1252,
with booleans as true/false in some files and 1/0 in others, from a multi-currency org
(USD corporate, EUR and GBP, with dated rates). Each test asserts the mapping row by row.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd
import pytest
import yaml

from features.importers.salesforce import (
    SalesforceImportError,
    SalesforceImportReport,
    import_salesforce,
)
from features.importers.salesforce_objects import fiscal_quarter
from features.loading import load_export

# 18-character ids, as the weekly export writes them; one Task refers to a deal by its 15.
WON = "006000000000001AAA"
LOST = "006000000000002AAA"
OPEN = "006000000000003AAA"
BARE = "006000000000004AAA"
UNKNOWN_DEAL = "006000000000099AAA"


def write_csv(
    folder: Path,
    name: str,
    rows: list[list[str]],
    *,
    encoding: str = "utf-8",
) -> Path:
    """A Salesforce-style CSV: every field quoted, CRLF line ends, the given encoding."""
    buffer = io.StringIO()
    csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n").writerows(rows)
    path = folder / name
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


def write_org(folder: Path) -> Path:
    """A multi-currency org: four deals (won USD, lost EUR, open GBP, open EUR without history)."""
    folder.mkdir(parents=True, exist_ok=True)
    # Rows of a table read best one per line, so the formatter is kept off the fixture data.
    # fmt: off
    write_csv(
        folder,
        "Opportunity.csv",
        [
            ["Id", "AccountId", "OwnerId", "Name", "CreatedDate", "StageName", "Amount",
             "CloseDate", "IsClosed", "IsWon", "ForecastCategoryName", "Type", "LeadSource",
             "CurrencyIsoCode", "Probability", "ExpectedRevenue", "Loss_Reason__c",
             "FiscalYear", "FiscalQuarter", "LastStageChangeDate", "LastActivityDate",
             "NextStep", "Product_Line__c"],
            [WON, "001A", "005U1", "Acme renewal", "2026-01-05T10:00:00.000Z", "Closed Won",
             "900.00", "2026-03-20", "true", "true", "Closed", "New Business", "Web", "USD",
             "100", "900.00", "", "2026", "1", "2026-03-20T09:00:00.000Z", "2026-03-19",
             "Send contract", "Platform"],
            [LOST, "001B", "005U2", "Société Générale, phase 1", "2026-02-01 08:30:00",
             "Closed Lost", "500.00", "2026-02-15", "TRUE", "FALSE", "Omitted", "Renewal",
             "Partner", "EUR", "0", "0.00", "Price", "2026", "1", "2026-02-15T17:00:00.000Z",
             "", "", "Analytics"],
            [OPEN, "001A", "005U1", "Acme upsell", "2026-03-02T09:30:00.000Z", "Qualification",
             "2500.00", "2026-09-30", "false", "false", "Best Case", "Upsell", "Outbound",
             "GBP", "10", "250.00", "", "2026", "3", "2026-03-02T09:30:00.000Z", "",
             "Book demo", "Platform"],
            [BARE, "001B", "005U2", "Müller expansion", "2026-03-10", "Prospecting", "700.00",
             "2026-06-30", "false", "false", "Pipeline", "New Business", "Event", "EUR", "10",
             "70.00", "", "2026", "2", "", "", "", ""],
        ],
        encoding="utf-8-sig",
    )
    write_csv(
        folder,
        "OpportunityHistory.csv",
        [
            ["Id", "OpportunityId", "CreatedDate", "StageName", "Amount", "CloseDate",
             "Probability", "ForecastCategory", "ExpectedRevenue", "IsDeleted", "CreatedById"],
            ["008H1", WON, "2026-01-05T10:00:00.000Z", "Prospecting", "1000.00", "2026-03-31",
             "10", "Pipeline", "100.00", "0", "005U1"],
            ["008H2", WON, "2026-02-05T08:00:00.000+0000", "Negotiation/Review", "900.00",
             "2026-03-31", "90", "Forecast", "810.00", "0", "005U1"],
            ["008H3", WON, "2026-03-20T09:00:00.000Z", "Closed Won", "900.00", "2026-03-20",
             "100", "Closed", "900.00", "0", "005U1"],
            ["008H4", LOST, "2026-02-01T08:30:00.000Z", "Prospecting", "500.00", "2026-06-30",
             "10", "Pipeline", "50.00", "0", "005U2"],
            ["008H5", LOST, "2026-02-15T17:00:00.000Z", "Closed Lost", "500.00", "2026-02-15",
             "0", "Omitted", "0.00", "0", "005U2"],
            ["008H6", OPEN, "2026-03-02T09:30:00.000Z", "Qualification", "2500.00",
             "2026-09-30", "10", "BestCase", "250.00", "0", "005U1"],
            ["008H7", OPEN, "2026-03-03T09:30:00.000Z", "Qualification", "9999.00",
             "2026-09-30", "10", "BestCase", "999.90", "1", "005U1"],
            ["008H8", UNKNOWN_DEAL, "2026-03-03T09:30:00.000Z", "Prospecting", "10.00",
             "2026-09-30", "10", "Pipeline", "1.00", "0", "005U1"],
        ],
    )
    write_csv(
        folder,
        "Account.csv",
        [
            ["Id", "Name", "Industry", "NumberOfEmployees", "AnnualRevenue", "LastActivityDate"],
            ["001A", "Acme Corp", "Manufacturing", "1200", "50000000", "2026-03-19"],
            ["001B", "Société Générale", "Banking", "", "", ""],
            ["001C", "Müller GmbH", "Retail", "80", "", ""],
        ],
        encoding="cp1252",
    )
    write_csv(
        folder,
        "Task.csv",
        [
            ["Id", "WhatId", "WhoId", "ActivityDate", "CreatedDate", "Type", "TaskSubtype",
             "Subject", "Status", "IsDeleted"],
            ["00T1", WON, "003X", "2026-01-10", "2026-01-09T12:00:00.000Z", "Call", "Task",
             "Intro call", "Completed", "false"],
            ["00T2", WON[:15], "003Y", "", "2026-02-10T15:00:00.000Z", "", "Email",
             "Pricing", "Completed", "false"],
            ["00T3", OPEN, "003Z", "2026-03-05", "2026-03-04T08:00:00.000Z", "", "LinkedIn",
             "Connect", "Completed", "false"],
            ["00T4", "001A", "003X", "2026-03-06", "2026-03-06T08:00:00.000Z", "Call", "Task",
             "Account call", "Completed", "false"],
            ["00T5", UNKNOWN_DEAL, "", "2026-03-06", "2026-03-06T08:00:00.000Z", "Call",
             "Task", "Lost deal", "Completed", "false"],
            ["00T6", "", "003X", "2026-03-07", "2026-03-07T08:00:00.000Z", "Email", "Email",
             "Newsletter", "Completed", "false"],
            ["00T7", LOST, "", "2026-02-02", "2026-02-02T08:00:00.000Z", "Call", "Task",
             "Deleted", "Completed", "true"],
        ],
    )
    write_csv(
        folder,
        "Event.csv",
        [
            ["Id", "WhatId", "WhoId", "ActivityDateTime", "ActivityDate", "CreatedDate", "Type",
             "EventSubtype", "IsChild"],
            ["00U1", WON, "003X", "2026-02-20T14:00:00.000Z", "2026-02-20",
             "2026-02-18T09:00:00.000Z", "Demo", "Event", "false"],
            ["00U2", OPEN, "003Z", "2026-03-12T10:00:00.000Z", "2026-03-12",
             "2026-03-10T09:00:00.000Z", "", "Event", "false"],
            ["00U3", OPEN, "003Q", "2026-03-12T10:00:00.000Z", "2026-03-12",
             "2026-03-10T09:00:00.000Z", "", "Event", "true"],
        ],
    )
    write_csv(
        folder,
        "OpportunityContactRole.csv",
        [
            ["Id", "OpportunityId", "ContactId", "Role", "IsPrimary"],
            ["00K1", WON, "003X", "Decision Maker", "true"],
            ["00K2", WON, "003Y", "Business User", "false"],
            ["00K3", OPEN, "003Z", "Economic Buyer", "true"],
        ],
    )
    write_csv(
        folder,
        "User.csv",
        [
            ["Id", "Name", "Email", "UserRoleId", "ManagerId", "Department", "IsActive"],
            ["005U1", "Ann Rep", "ann@example.com", "00E1", "005M1", "Enterprise East", "1"],
            ["005U2", "Bo Rep", "bo@example.com", "00E2", "005M1", "", "0"],
            ["005M1", "Cy Boss", "cy@example.com", "00E3", "", "", "1"],
        ],
    )
    write_csv(
        folder,
        "UserRole.csv",
        [["Id", "Name"], ["00E1", "AE East"], ["00E2", "AE West"], ["00E3", "Sales VP"]],
    )
    write_csv(
        folder,
        "ForecastingQuota.csv",
        [
            ["Id", "QuotaOwnerId", "StartDate", "QuotaAmount", "CurrencyIsoCode", "IsQuantity"],
            ["0J91", "005U1", "2026-01-01", "1000", "USD", "0"],
            ["0J92", "005U1", "2026-02-01", "1000", "USD", "0"],
            ["0J93", "005U1", "2026-03-01", "1500", "USD", "0"],
            ["0J94", "005U2", "2026-04-01", "9000", "EUR", "0"],
            ["0J95", "005U2", "2026-07-01", "0", "EUR", "0"],
            ["0J96", "005U2", "2026-07-01", "40", "EUR", "1"],
        ],
    )
    write_csv(
        folder,
        "CurrencyType.csv",
        [
            ["Id", "IsoCode", "ConversionRate", "IsCorporate", "IsActive", "DecimalPlaces"],
            ["01L1", "USD", "1.000000", "true", "true", "2"],
            ["01L2", "EUR", "0.950000", "false", "true", "2"],
            ["01L3", "GBP", "0.800000", "false", "true", "2"],
        ],
    )
    write_csv(
        folder,
        "DatedConversionRate.csv",
        [
            ["Id", "IsoCode", "ConversionRate", "StartDate", "NextStartDate"],
            ["04w1", "EUR", "0.950000", "0000-12-30", "2026-01-01"],
            ["04w2", "EUR", "0.920000", "2026-01-01", "2026-04-01"],
            ["04w3", "EUR", "0.900000", "2026-04-01", "9999-12-31"],
            ["04w4", "GBP", "0.780000", "2026-01-01", "9999-12-31"],
        ],
    )
    write_csv(
        folder,
        "OpportunityStage.csv",
        [
            ["Id", "MasterLabel", "ApiName", "DefaultProbability", "IsClosed", "IsWon",
             "IsActive", "SortOrder", "ForecastCategoryName"],
            ["01J1", "Prospecting", "Prospecting", "10", "false", "false", "true", "1",
             "Pipeline"],
            ["01J2", "Qualification", "Qualification", "10", "false", "false", "true", "2",
             "Pipeline"],
            ["01J3", "Negotiation/Review", "Negotiation/Review", "90", "false", "false",
             "true", "8", "Pipeline"],
            ["01J4", "Closed Won", "Closed Won", "100", "true", "true", "true", "9", "Closed"],
            ["01J5", "Closed Lost", "Closed Lost", "0", "true", "false", "true", "10",
             "Omitted"],
            ["01J6", "Legacy Stage", "Legacy Stage", "20", "false", "false", "false", "3",
             "Pipeline"],
        ],
    )
    # fmt: on
    return folder


@pytest.fixture
def imported(tmp_path: Path) -> tuple[SalesforceImportReport, Path]:
    out = tmp_path / "export"
    return import_salesforce(write_org(tmp_path / "salesforce"), out), out


def read_table(out: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(out / f"{name}.csv", dtype=str, keep_default_na=False)


def utc(cell: object) -> pd.Timestamp:
    """A written time, compared as an instant (the writer's offset spelling may vary)."""
    return pd.Timestamp(str(cell)).tz_convert("UTC")


def flag(cell: object) -> bool:
    """A written boolean, however the writer spells it."""
    return {"true": True, "false": False}[str(cell).lower()]


def number(cell: object) -> float:
    return float(str(cell))


def test_opportunities_carry_current_state_currency_and_static_fields(
    imported: tuple[SalesforceImportReport, Path],
) -> None:
    _, out = imported
    deals = read_table(out, "opportunities").set_index("opportunity_id")
    assert list(deals.index) == [WON, LOST, OPEN, BARE]
    lost = deals.loc[LOST]
    assert lost["account_id"] == "001B"
    assert lost["owner_id"] == "005U2"
    assert utc(lost["created_at"]) == pd.Timestamp("2026-02-01T08:30:00Z")
    assert (lost["type"], lost["lead_source"]) == ("Renewal", "Partner")
    assert (lost["stage"], lost["close_date"], lost["forecast_category"]) == (
        "Closed Lost",
        "2026-02-15",
        "Omitted",
    )
    assert (flag(lost["is_closed"]), flag(lost["is_won"])) == (True, False)
    assert number(lost["amount"]) == 500.0
    assert lost["currency"] == "EUR"
    assert lost["name"] == "Société Générale, phase 1"
    assert deals.loc[WON, "product_line"] == "Platform"
    assert deals.loc[OPEN, "forecast_category"] == "Best Case"
    assert utc(deals.loc[BARE, "created_at"]) == pd.Timestamp("2026-03-10", tz="UTC")


def test_post_close_fields_are_dropped_and_reported(
    imported: tuple[SalesforceImportReport, Path],
) -> None:
    report, out = imported
    columns = set(read_table(out, "opportunities").columns)
    leaky = {
        "Probability",
        "ExpectedRevenue",
        "Loss_Reason__c",
        "FiscalYear",
        "FiscalQuarter",
        "LastStageChangeDate",
        "LastActivityDate",
        "NextStep",
    }
    dropped = {d.column: d for d in report.file("Opportunity.csv").dropped_columns}
    assert leaky <= set(dropped)
    assert all(dropped[c].leaky and dropped[c].reason for c in leaky)
    assert "loss reason" in dropped["Loss_Reason__c"].reason
    written = {c.lower().replace("_", "") for c in columns}
    assert not {c.lower().replace("_", "").removesuffix("c") for c in leaky} & written
    assert "probability" not in columns and "loss_reason" not in columns
    assert "last_activity_date" not in set(read_table(out, "accounts").columns)
    text = report.format()
    assert "dropped as post-close or leaky" in text and "Loss_Reason__c" in text


def test_history_maps_forecast_api_values_and_carries_currency(
    imported: tuple[SalesforceImportReport, Path],
) -> None:
    report, out = imported
    history = read_table(out, "opportunity_history")
    assert list(history.columns) == [
        "opportunity_id",
        "changed_at",
        "stage",
        "amount",
        "close_date",
        "forecast_category",
        "probability",
        "currency",
    ]
    rows = history.to_dict("records")
    assert [(r["opportunity_id"], r["stage"], r["forecast_category"]) for r in rows] == [
        (WON, "Prospecting", "Pipeline"),
        (WON, "Negotiation/Review", "Commit"),
        (WON, "Closed Won", "Closed"),
        (LOST, "Prospecting", "Pipeline"),
        (LOST, "Closed Lost", "Omitted"),
        (OPEN, "Qualification", "Best Case"),
    ]
    assert [r["currency"] for r in rows] == ["USD", "USD", "USD", "EUR", "EUR", "GBP"]
    assert [number(r["probability"]) for r in rows] == [10, 90, 100, 10, 0, 10]
    assert utc(rows[1]["changed_at"]) == pd.Timestamp("2026-02-05T08:00:00Z")
    assert rows[1]["close_date"] == "2026-03-31"
    assert number(rows[5]["amount"]) == 2500.0
    history_file = report.file("OpportunityHistory.csv")
    assert history_file.rows_read == 8 and history_file.rows_used == 6
    assert history_file.skipped == {
        "IsDeleted is true (a deleted record)": 1,
        "OpportunityId is not an opportunity in Opportunity.csv": 1,
    }
    assert report.rows_written["opportunity_history.csv"] == 6


def test_encodings_and_boolean_conventions_are_reported(
    imported: tuple[SalesforceImportReport, Path],
) -> None:
    report, out = imported
    opportunity = report.file("Opportunity.csv").decoding
    assert (opportunity.encoding, opportunity.bom, opportunity.line_ends) == ("utf-8", True, "CRLF")
    # Header and six rows; the two with "é" and "ü" are UTF-8, the others ASCII.
    assert opportunity.lines == {"ascii": 3, "utf-8": 2, "cp1252": 0}
    assert report.file("OpportunityHistory.csv").encoding == "utf-8"
    assert report.file("OpportunityHistory.csv").decoding.bom is False
    account = report.file("Account.csv").decoding
    assert account.encoding == "cp1252"
    assert account.lines == {"ascii": 2, "utf-8": 0, "cp1252": 2}
    assert report.file("Opportunity.csv").booleans == "true/false"
    assert report.file("OpportunityHistory.csv").booleans == "1/0"
    assert report.file("User.csv").booleans == "1/0"
    assert report.file("Account.csv").booleans == "none"
    accounts = read_table(out, "accounts").set_index("account_id")
    assert accounts.loc["001B", "name"] == "Société Générale"
    assert accounts.loc["001C", "name"] == "Müller GmbH"
    assert (accounts.loc["001A", "industry"], number(accounts.loc["001A", "employees"])) == (
        "Manufacturing",
        1200.0,
    )
    text = report.format()
    assert "Account.csv: cp1252, booleans none" in text
    assert "decoded: lines 2 ascii, 2 cp1252; CRLF line ends" in text
    assert "OpportunityHistory.csv: utf-8, booleans 1/0" in text


def test_activities_are_typed_linked_and_given_contact_roles(
    imported: tuple[SalesforceImportReport, Path],
) -> None:
    report, out = imported
    activities = read_table(out, "activities")
    rows = [
        (r["activity_id"], r["opportunity_id"], utc(r["occurred_at"]), r["type"], r["contact_role"])
        for r in activities.to_dict("records")
    ]
    assert rows == [
        ("00T1", WON, utc("2026-01-10T00:00:00Z"), "call", "decision_maker"),
        ("00T2", WON, utc("2026-02-10T15:00:00Z"), "email", "user"),
        ("00T3", OPEN, utc("2026-03-05T00:00:00Z"), "linkedin", "economic_buyer"),
        ("00U1", WON, utc("2026-02-20T14:00:00Z"), "demo", "decision_maker"),
        ("00U2", OPEN, utc("2026-03-12T10:00:00Z"), "meeting", "economic_buyer"),
    ]
    assert report.file("Task.csv").skipped == {
        "IsDeleted is true (a deleted record)": 1,
        "no WhatId (an activity on a contact or lead only)": 1,
        "WhatId is another object (account, case, ...), not an opportunity": 1,
        "WhatId is an opportunity not in Opportunity.csv": 1,
    }
    assert report.file("Task.csv").rows_used == 3
    assert report.file("Event.csv").skipped == {
        "IsChild is true (an invitee's copy of an event)": 1
    }
    assert {d.column for d in report.file("Task.csv").dropped_columns} >= {"Subject", "Status"}


def test_owners_take_team_column_then_role_name(
    imported: tuple[SalesforceImportReport, Path],
) -> None:
    report, out = imported
    owners = read_table(out, "owners").set_index("owner_id")
    assert owners.loc["005U1", "team"] == "Enterprise East"
    assert owners.loc["005U2", "team"] == "AE West"
    assert owners.loc["005M1", "team"] == "Sales VP"
    assert owners.loc["005U1", "manager_id"] == "005M1"
    assert flag(owners.loc["005U2", "is_active"]) is False
    assert "email" not in owners.columns and "name" not in owners.columns
    assert "Email" in {d.column for d in report.file("User.csv").dropped_columns}


def test_quotas_summed_into_fiscal_quarters_in_corporate_currency(
    imported: tuple[SalesforceImportReport, Path],
) -> None:
    report, out = imported
    quotas = read_table(out, "quotas")
    assert [(r["period"], r["owner_id"]) for r in quotas.to_dict("records")] == [
        ("2026-Q1", "005U1"),
        ("2026-Q2", "005U2"),
    ]
    assert number(quotas.loc[0, "quota"]) == pytest.approx(3500.0)
    # 9000 EUR at the dated rate valid on 2026-04-01 (0.90 EUR per USD).
    assert number(quotas.loc[1, "quota"]) == pytest.approx(10000.0)
    assert report.file("ForecastingQuota.csv").skipped == {
        "IsQuantity is true (a unit quota, not revenue)": 1,
        "QuotaAmount is empty or 0 (no revenue target)": 1,
    }


def test_fiscal_year_start_month_shifts_quota_periods(tmp_path: Path) -> None:
    out = tmp_path / "export"
    import_salesforce(write_org(tmp_path / "sf"), out, fiscal_year_start_month=2)
    quotas = read_table(out, "quotas")
    # A February fiscal year is named after the calendar year it ends in: January 2026 is
    # the last quarter of FY2026, February to April 2026 the first of FY2027.
    assert [
        (r["period"], r["owner_id"], number(r["quota"])) for r in quotas.to_dict("records")
    ] == [
        ("2026-Q4", "005U1", 1000.0),
        ("2027-Q1", "005U1", 2500.0),
        ("2027-Q1", "005U2", pytest.approx(10000.0)),
    ]
    starts = pd.Series(pd.to_datetime(["2026-01-15", "2026-02-01", "NaT"], utc=True))
    assert list(fiscal_quarter(starts, start_month=2).fillna("none")) == [
        "2026-Q4",
        "2027-Q1",
        "none",
    ]
    assert list(fiscal_quarter(starts).fillna("none")) == ["2026-Q1", "2026-Q1", "none"]


def test_exchange_rates_and_stages_are_written(
    imported: tuple[SalesforceImportReport, Path],
) -> None:
    report, out = imported
    rates = read_table(out, "exchange_rates")
    written = [
        (r["currency"], number(r["rate"]), r["valid_from"]) for r in rates.to_dict("records")
    ]
    assert written == [
        ("USD", 1.0, ""),
        ("EUR", 0.95, ""),
        ("GBP", 0.8, ""),
        ("EUR", 0.95, "1900-01-01"),
        ("EUR", 0.92, "2026-01-01"),
        ("EUR", 0.90, "2026-04-01"),
        ("GBP", 0.78, "2026-01-01"),
    ]
    assert report.currencies == ("EUR", "GBP", "USD")
    assert report.corporate_currency == "USD"
    stages = yaml.safe_load((out / "stages.yaml").read_text(encoding="utf-8"))
    assert stages == {
        "open": [
            {"name": "Prospecting", "probability": 10.0},
            {"name": "Qualification", "probability": 10.0},
            {"name": "Negotiation/Review", "probability": 90.0},
        ],
        "won": [{"name": "Closed Won", "probability": 100.0}],
        "lost": [{"name": "Closed Lost", "probability": 0.0}],
    }
    assert report.file("OpportunityStage.csv").skipped == {
        "IsActive is false and no deal uses the stage": 1
    }


def test_bad_input_raises_every_problem_with_file_column_and_row(tmp_path: Path) -> None:
    src = write_org(tmp_path / "sf")
    opportunity = (src / "Opportunity.csv").read_text(encoding="utf-8-sig")
    opportunity = opportunity.replace('"2026-02-15","TRUE","FALSE"', '"15/02/2026","TRUE","nope"')
    (src / "Opportunity.csv").write_text(opportunity, encoding="utf-8-sig")
    history = (src / "OpportunityHistory.csv").read_text(encoding="utf-8")
    (src / "OpportunityHistory.csv").write_text(
        history.replace('"StageName"', '"Stage"'), encoding="utf-8"
    )
    with pytest.raises(SalesforceImportError) as raised:
        import_salesforce(src, tmp_path / "out")
    found = {(v.table, v.column, v.row) for v in raised.value.report.violations}
    assert ("Opportunity.csv", "CloseDate", 2) in found
    assert ("Opportunity.csv", "IsWon", 2) in found
    assert ("OpportunityHistory.csv", "StageName", None) in found
    message = str(raised.value)
    assert "Opportunity.csv.IsWon row 2: expected a boolean: true/false or 1/0, found 'nope'" in (
        message
    )
    assert "15/02/2026" in message
    assert not (tmp_path / "out").exists()


def test_missing_opportunity_file_is_an_error(tmp_path: Path) -> None:
    src = write_org(tmp_path / "sf")
    (src / "Opportunity.csv").unlink()
    with pytest.raises(SalesforceImportError) as raised:
        import_salesforce(src, tmp_path / "out")
    assert [(v.table, v.expected, v.found) for v in raised.value.report.violations] == [
        ("Opportunity.csv", "the Opportunity object's file", "no such file")
    ]


def test_stale_contract_files_in_the_output_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "activities.parquet").write_bytes(b"old")
    with pytest.raises(SalesforceImportError, match=r"activities\.parquet"):
        import_salesforce(write_org(tmp_path / "sf"), out)


def test_imported_export_loads_and_converts_to_the_corporate_currency(
    imported: tuple[SalesforceImportReport, Path],
) -> None:
    _, out = imported
    export = load_export(out)
    assert export.report.errors == []
    assert export.n_opportunities == 4
    history = export.history.set_index(["opportunity_id", "stage"])
    # USD is the corporate currency: unchanged.
    assert history.loc[(WON, "Closed Won"), "amount"] == pytest.approx(900.0)
    # EUR closing 2026-02-15: the dated rate from 2026-01-01 (0.92 EUR per USD).
    assert history.loc[(LOST, "Closed Lost"), "amount"] == pytest.approx(500.0 / 0.92)
    # GBP closing 2026-09-30: the dated rate from 2026-01-01 (0.78).
    assert history.loc[(OPEN, "Qualification"), "amount"] == pytest.approx(2500.0 / 0.78)
    assert export.stages.source == "stages.yaml"
    assert set(export.activities["type"]) == {"call", "email", "linkedin", "demo", "meeting"}


def test_deal_without_history_is_converted_too(
    imported: tuple[SalesforceImportReport, Path],
) -> None:
    _, out = imported
    history = load_export(out).history.set_index("opportunity_id")
    # 700 EUR closing 2026-06-30: the dated rate from 2026-04-01 (0.90).
    assert history.loc[BARE, "amount"] == pytest.approx(700.0 / 0.90)


def write_opportunities_only(src: Path) -> Path:
    """Data Loader style: upper-case headers, 1/0 booleans, API forecast values, no history."""
    src.mkdir(parents=True)
    # fmt: off
    write_csv(
        src,
        "Opportunity.csv",
        [
            ["ID", "ACCOUNTID", "OWNERID", "CREATEDDATE", "STAGENAME", "AMOUNT", "CLOSEDATE",
             "ISCLOSED", "ISWON", "FORECASTCATEGORY"],
            ["0061", "0011", "0051", "2026-01-05", "Closed Won", "100", "2026-02-01", "1", "1",
             "Closed"],
            ["0062", "0011", "0051", "2026-01-06", "Closed Lost", "200", "2026-02-02", "1", "0",
             "Omitted"],
            ["0063", "0012", "0052", "2026-01-07", "Prospecting", "300", "2026-05-01", "0", "0",
             "Forecast"],
        ],
    )
    # fmt: on
    return src


def test_an_opportunity_file_alone_imports_with_an_empty_history(tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = import_salesforce(write_opportunities_only(tmp_path / "sf"), out)
    assert report.rows_written == {"opportunities.csv": 3, "opportunity_history.csv": 0}
    assert report.file("Opportunity.csv").booleans == "1/0"
    assert list(read_table(out, "opportunities")["forecast_category"]) == [
        "Closed",
        "Omitted",
        "Commit",
    ]
    assert list(read_table(out, "opportunity_history").columns) == [
        "opportunity_id",
        "changed_at",
        "stage",
        "amount",
        "close_date",
        "forecast_category",
    ]


def test_an_opportunity_file_alone_loads(tmp_path: Path) -> None:
    out = tmp_path / "out"
    import_salesforce(write_opportunities_only(tmp_path / "sf"), out)
    export = load_export(out)
    assert export.report.errors == []
    assert list(export.history["amount"]) == [100.0, 200.0, 300.0]
