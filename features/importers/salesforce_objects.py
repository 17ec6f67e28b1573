"""Mapping each Salesforce object file onto its contract table, one function per object.

Each function takes a `SourceTable` (the raw file, parsing and recording problems as it goes)
and returns the contract table's rows. Rows left out are counted with their reason on the
table, and source columns not carried are recorded with theirs, for the import report.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from features.fiscal import quarter_labels
from features.importers.salesforce_fields import (
    ACCOUNT_RENAMES,
    ACTIVITY_COLUMNS,
    ACTIVITY_TYPE_MAP,
    CONTACT_ROLE_COLUMNS,
    CONTACT_ROLE_MAP,
    CURRENCY_COLUMNS,
    DATED_RATE_COLUMNS,
    EARLIEST_RATE_DATE,
    FIELD_HISTORY_COLUMNS,
    FISCAL_YEAR_COLUMNS,
    FORECAST_CATEGORY_MAP,
    HISTORY_COLUMNS,
    OPPORTUNITY_MAPPED,
    OPPORTUNITY_PREFIX,
    ORGANIZATION_COLUMNS,
    PERIOD_COLUMNS,
    QUOTA_COLUMNS,
    REGION_COLUMNS,
    ROLE_COLUMNS,
    STAGE_COLUMNS,
    TEAM_COLUMNS,
    USER_COLUMNS,
    leak_reason,
    snake_case,
)
from features.importers.source_files import ImportProblems, SourceFile, SourceTable
from features.stages import StageConfig
from features.validation import rate_on


def fiscal_quarter(start: pd.Series, *, start_month: int = 1) -> pd.Series:
    """`YYYY-Qn` of each date (missing where the date is), with dealcast's fiscal convention
    (`features.fiscal`: a year is named after the calendar year it ends in), so quota periods
    match the periods every forecast is made for.
    """
    present = start.notna()
    labels = pd.Series(pd.NA, index=start.index, dtype="string")
    times = start[present].to_numpy(dtype="datetime64[ns]")
    labels[present] = quarter_labels(times, start_month=start_month)
    return labels


def _link(refs: pd.Series, known: pd.Series) -> pd.Series:
    """Each reference as the id it names in `known`, else missing.

    Salesforce ids come as 15-character (case-sensitive) or 18-character (with a checksum
    suffix) forms, and exports mix them; a reference matches exactly or by its first 15.
    """
    known = known.dropna()
    exact = refs.where(refs.isin(known))
    unmatched = exact.isna() & refs.notna()
    if not unmatched.any():
        return exact.astype("string")
    by_prefix = pd.Series(known.to_numpy(), index=known.str[:15].to_numpy())
    by_prefix = by_prefix[~by_prefix.index.duplicated(keep=False)]
    candidates = refs[unmatched]
    long_enough = candidates.str.len().isin([15, 18]).fillna(False)
    prefixed = candidates.str[:15].map(by_prefix).where(long_enough)
    return exact.astype("string").fillna(prefixed.astype("string"))


def _live(table: SourceTable) -> pd.Series:
    """Rows that are not deleted records (an "Export All" includes the recycle bin)."""
    if not table.has("IsDeleted"):
        return pd.Series(True, index=table.frame.index)
    deleted = table.booleans("IsDeleted").fillna(False).astype(bool)
    table.skip("IsDeleted is true (a deleted record)", deleted)
    table.drop("IsDeleted", "used to leave deleted records out", leaky=False)
    return ~deleted


def _drop_unmapped(table: SourceTable, used: tuple[str, ...], reason: str) -> None:
    for column in table.frame.columns:
        if column not in used:
            table.drop(column, reason, leaky=False)


def _forecast_categories(table: SourceTable, column: str) -> pd.Series:
    values = table.text(column)
    mapped = values.str.lower().map(FORECAST_CATEGORY_MAP).astype("string")
    table.problems.add_rows(
        table.name,
        column,
        values.notna() & mapped.isna(),
        "a forecast category: Omitted, Pipeline, BestCase, Forecast or Closed (API values) "
        "or Best Case, Commit (labels)",
        values,
    )
    return mapped


def _currency_codes(table: SourceTable, column: str, *, required: bool) -> pd.Series:
    codes = table.text(column, required=required).str.upper()
    malformed = codes.notna() & ~codes.str.fullmatch(r"[A-Z]{3}").fillna(False)
    table.problems.add_rows(
        table.name, column, malformed, "an ISO 4217 currency code (e.g. EUR)", codes
    )
    return codes.mask(malformed)


def map_opportunities(table: SourceTable) -> pd.DataFrame:
    """`opportunities` with the current-state columns of a raw export, and static extras."""
    table.require(
        "Id",
        "AccountId",
        "OwnerId",
        "CreatedDate",
        "StageName",
        "Amount",
        "CloseDate",
        "IsClosed",
        "IsWon",
    )
    live = _live(table)
    frame = pd.DataFrame(
        {
            "opportunity_id": table.text("Id", required=True),
            "account_id": table.text("AccountId", required=True),
            "owner_id": table.text("OwnerId", required=True),
            "created_at": table.timestamps("CreatedDate", required=True),
            "type": table.text("Type"),
            "lead_source": table.text("LeadSource"),
            "stage": table.text("StageName", required=True),
            "amount": table.numbers("Amount"),
            "close_date": table.dates("CloseDate", required=True),
            "is_closed": table.booleans("IsClosed", required=True),
            "is_won": table.booleans("IsWon", required=True),
        }
    )
    category_column = next(
        (c for c in ("ForecastCategoryName", "ForecastCategory") if table.has(c)), None
    )
    if category_column is not None:
        frame["forecast_category"] = _forecast_categories(table, category_column)
        if category_column == "ForecastCategoryName" and table.has("ForecastCategory"):
            table.drop("ForecastCategory", "the API value of ForecastCategoryName", leaky=False)
    if table.has("CurrencyIsoCode"):
        frame["currency"] = _currency_codes(table, "CurrencyIsoCode", required=True)
    ids = frame["opportunity_id"]
    duplicated = ids.notna() & ids.duplicated(keep="first") & live
    table.problems.add_rows(table.name, "Id", duplicated, "a unique Id", ids)
    won_open = (frame["is_won"] & ~frame["is_closed"]).fillna(False).astype(bool)
    table.problems.add_rows(
        table.name,
        "IsWon",
        won_open,
        "IsWon true only on a closed deal (IsClosed true)",
        table.text("IsWon"),
    )
    reserved = set(frame.columns)
    for column in table.frame.columns:
        if column in OPPORTUNITY_MAPPED:
            continue
        reason = leak_reason(column)
        if reason is not None:
            table.drop(column, reason, leaky=True)
            continue
        name = snake_case(column)
        name = f"{name}_sf" if name in reserved else name
        reserved.add(name)
        frame[name] = table.text(column)
    if "forecast_category" not in frame.columns:
        table.note("no ForecastCategoryName: deals carry no forecast category")
    return frame[live].reset_index(drop=True)


def map_history(table: SourceTable, opportunities: pd.DataFrame) -> pd.DataFrame:
    table.require("OpportunityId", "CreatedDate", "StageName", "Amount", "CloseDate")
    live = _live(table)
    refs = table.text("OpportunityId", required=True)
    linked = _link(refs, opportunities["opportunity_id"])
    frame = pd.DataFrame(
        {
            "opportunity_id": linked,
            "changed_at": table.timestamps("CreatedDate", required=True),
            "stage": table.text("StageName", required=True),
            "amount": table.numbers("Amount"),
            "close_date": table.dates("CloseDate", required=True),
        }
    )
    if table.has("ForecastCategory"):
        frame["forecast_category"] = _forecast_categories(table, "ForecastCategory")
    if table.has("Probability"):
        frame["probability"] = table.numbers("Probability")
    own_currency = (
        _currency_codes(table, "CurrencyIsoCode", required=False)
        if table.has("CurrencyIsoCode")
        else pd.Series(pd.NA, index=frame.index, dtype="string")
    )
    if "currency" in opportunities.columns:
        deal_currency = linked.map(opportunities.set_index("opportunity_id")["currency"]).astype(
            "string"
        )
        frame["currency"] = own_currency.fillna(deal_currency)
    elif table.has("CurrencyIsoCode"):
        frame["currency"] = own_currency
    unknown = live & refs.notna() & linked.isna()
    table.skip("OpportunityId is not an opportunity in Opportunity.csv", unknown)
    if table.has("ExpectedRevenue"):
        table.drop("ExpectedRevenue", "Amount x Probability of the same row", leaky=False)
    _drop_unmapped(
        table, (*HISTORY_COLUMNS, "ExpectedRevenue"), "not part of the contract (system field)"
    )
    empty_amount = int((live & linked.notna() & frame["amount"].isna()).sum())
    if empty_amount:
        table.note(
            f"{empty_amount} rows have an empty Amount: written empty, for the validator to "
            "carry the deal's earlier amount forward (a repair it reports)"
        )
    # Rows stay in the file's order: the validator orders rows of one deal at one instant by it.
    return frame[live & linked.notna()].reset_index(drop=True)


def map_field_history(table: SourceTable, opportunities: pd.DataFrame) -> pd.DataFrame:
    """`opportunity_field_history`: each tracked field's new value at the time it changed.

    `old_value` is carried too (an extra column): a field's first tracked change says what it
    held before, which is a point-in-time fact like the rest.
    """
    table.require("OpportunityId", "CreatedDate", "Field")
    live = _live(table)
    refs = table.text("OpportunityId", required=True)
    linked = _link(refs, opportunities["opportunity_id"])
    frame = pd.DataFrame(
        {
            "opportunity_id": linked,
            "changed_at": table.timestamps("CreatedDate", required=True),
            "field": table.text("Field", required=True),
            "new_value": table.text("NewValue"),
        }
    )
    if table.has("OldValue"):
        frame["old_value"] = table.text("OldValue")
    if not table.has("NewValue"):
        table.note("no NewValue column: every new_value is written empty")
    table.skip(
        "OpportunityId is not an opportunity in Opportunity.csv",
        live & refs.notna() & linked.isna(),
    )
    _drop_unmapped(table, FIELD_HISTORY_COLUMNS, "not part of the contract (system field)")
    return frame[live & linked.notna()].reset_index(drop=True)


@dataclass(frozen=True)
class FiscalYearStart:
    """The fiscal year's first month as the export defines it, and which object said so."""

    month: int
    source: str


_MONTH_EXPECTATION = "a month number from 1 to 12"


def _months(table: SourceTable, column: str) -> pd.Series:
    values = table.numbers(column)
    bad = values.notna() & ~values.isin(range(1, 13))
    table.problems.add_rows(table.name, column, bad, _MONTH_EXPECTATION, table.text(column))
    return values.where(~bad).astype("Int64")


def _latest_start_month(
    table: SourceTable, starts: pd.Series, rows: pd.Series, what: str
) -> int | None:
    """The month of the latest start among `rows`, noting other months and mid-month starts."""
    chosen = starts[rows & starts.notna()]
    if chosen.empty:
        return None
    latest = chosen.max()
    months = sorted(set(chosen.dt.month))
    if len(months) > 1:
        table.note(
            f"{what}s start in months {', '.join(map(str, months))}: the latest, starting "
            f"{latest:%Y-%m-%d}, is used"
        )
    if latest.day != 1:
        table.note(
            f"the {what} starting {latest:%Y-%m-%d} does not start on the 1st: dealcast's "
            f"fiscal quarters start on the 1st of month {latest.month}"
        )
    return int(latest.month)


def _from_settings(table: SourceTable) -> int | None:
    live = _live(table)
    if table.has("StartMonth"):
        months = _months(table, "StartMonth")[live].dropna()
        _drop_unmapped(table, FISCAL_YEAR_COLUMNS, "not used")
        table.use(int(live.sum()))
        return int(months.iloc[-1]) if len(months) else None
    table.require("StartDate")
    starts = table.dates("StartDate", required=True)
    month = _latest_start_month(table, starts, live, "fiscal year")
    present = starts.where(live)
    if table.has("Name") and present.notna().any():
        start = present.max()
        latest = (present == start).to_numpy(dtype=bool, na_value=False)
        name = table.text("Name").to_numpy(dtype=object)[latest][-1]
        if isinstance(name, str) and name == str(start.year) and start.month != 1:
            table.note(
                f"Salesforce names the fiscal year starting {start:%Y-%m-%d} {name} (by its "
                f"start); dealcast names it {start.year + 1} (by the year it ends in)"
            )
    _drop_unmapped(table, FISCAL_YEAR_COLUMNS, "not used")
    table.use(int(live.sum()))
    return month


def _from_periods(table: SourceTable) -> int | None:
    table.require("Type", "StartDate")
    live = _live(table)
    kind = table.text("Type").str.lower()
    starts = table.dates("StartDate", required=True)
    years = live & kind.eq("year").fillna(False)
    month = _latest_start_month(table, starts, years, "fiscal year")
    used = years
    if month is None and table.has("Number"):
        first_quarters = live & kind.eq("quarter").fillna(False) & table.numbers("Number").eq(1)
        month = _latest_start_month(table, starts, first_quarters.fillna(False), "first quarter")
        used = first_quarters.fillna(False)
    if month is None:
        table.note("no Year rows (nor Quarter rows numbered 1): the fiscal year is not known")
    table.skip("not a Year period (or first Quarter) giving the fiscal year's start", live & ~used)
    table.use(int(used.sum()))
    _drop_unmapped(table, PERIOD_COLUMNS, "not used")
    return month


def _from_organization(table: SourceTable) -> int | None:
    if not table.has("FiscalYearStartMonth"):
        table.note("no FiscalYearStartMonth column: not used")
        return None
    months = _months(table, "FiscalYearStartMonth").dropna()
    _drop_unmapped(table, ORGANIZATION_COLUMNS, "not used (organization settings)")
    table.use(len(months))
    return int(months.iloc[0]) if len(months) else None


def fiscal_year_start(
    settings: SourceTable | None,
    periods: SourceTable | None,
    organization: SourceTable | None,
) -> FiscalYearStart | None:
    """The first month of the fiscal year from FiscalYearSettings, else Period, else
    Organization.FiscalYearStartMonth; None when the export holds none of them.

    The objects are Salesforce's own (FiscalYearSettings.StartDate per fiscal year, Period rows
    of Type Year or Quarter, Organization.FiscalYearStartMonth); a `StartMonth` column on
    FiscalYearSettings, as some export tools write it, is read first. Where several objects
    give a month and disagree, the first is used and the others are noted.
    """
    found: list[tuple[SourceTable, int]] = []
    for table, read in (
        (settings, _from_settings),
        (periods, _from_periods),
        (organization, _from_organization),
    ):
        if table is None:
            continue
        month = read(table)
        if month is not None:
            found.append((table, month))
    if not found:
        return None
    first, month = found[0]
    source = first.name.removesuffix(".csv")
    for table, other in found[1:]:
        if other != month:
            table.note(
                f"gives month {other} as the fiscal year's first; "
                f"{first.name} (month {month}) is used"
            )
    return FiscalYearStart(month=month, source=source)


def contact_roles(table: SourceTable, opportunity_ids: pd.Series) -> pd.DataFrame:
    """(opportunity_id, contact_id) -> contact_role, one role per pair (the primary first)."""
    table.require("OpportunityId", "ContactId", "Role")
    live = _live(table)
    refs = table.text("OpportunityId", required=True)
    linked = _link(refs, opportunity_ids)
    role = table.text("Role").str.lower()
    snake = role.str.replace(r"[^0-9a-z]+", "_", regex=True).str.strip("_")
    frame = pd.DataFrame(
        {
            "opportunity_id": linked,
            "contact_id": table.text("ContactId", required=True),
            "contact_role": role.map(CONTACT_ROLE_MAP).astype("string").fillna(snake),
            "is_primary": table.booleans("IsPrimary").fillna(False).astype(bool),
        }
    )
    table.skip("OpportunityId is not an opportunity in Opportunity.csv", live & linked.isna())
    table.skip("no Role", live & linked.notna() & role.isna())
    _drop_unmapped(table, CONTACT_ROLE_COLUMNS, "not part of the contract")
    kept = frame[live & linked.notna() & role.notna()]
    repeated = kept.duplicated(["opportunity_id", "contact_id"], keep=False)
    if repeated.any():
        table.note(
            f"{int(repeated.sum())} rows give one contact several roles on a deal; the primary "
            "(else the first) role is used for the contact's activities"
        )
    kept = kept.sort_values("is_primary", ascending=False, kind="stable")
    return kept.drop_duplicates(["opportunity_id", "contact_id"])[
        ["opportunity_id", "contact_id", "contact_role"]
    ]


def map_activities(
    table: SourceTable,
    opportunity_ids: pd.Series,
    roles: pd.DataFrame | None,
    *,
    is_event: bool,
) -> pd.DataFrame:
    """Tasks or events linked (WhatId) to imported opportunities, typed as the contract's."""
    table.require("WhatId")
    when_columns = (
        ("ActivityDateTime", "ActivityDate", "CreatedDate")
        if is_event
        else ("ActivityDate", "CreatedDate")
    )
    table.require_one_of(*when_columns)
    live = _live(table)
    refs = table.text("WhatId")
    linked = _link(refs, opportunity_ids)
    occurred = pd.Series(pd.NaT, index=table.frame.index, dtype="datetime64[us, UTC]")
    for column in when_columns:
        occurred = occurred.fillna(table.timestamps(column))
    present = [c for c in when_columns if table.has(c)]
    if present:
        table.problems.add_rows(
            table.name,
            " or ".join(present),
            live & linked.notna() & occurred.isna(),
            "a date on every activity linked to an opportunity",
            refs,
        )
    if is_event and table.has("IsChild"):
        # Salesforce stores one copy of an event per invitee; the organiser's is the meeting.
        copies = table.booleans("IsChild").fillna(False).astype(bool)
        table.skip("IsChild is true (an invitee's copy of an event)", live & copies)
        table.drop("IsChild", "used to leave invitees' copies of events out", leaky=False)
        live = live & ~copies
    subtype = "EventSubtype" if is_event else "TaskSubtype"
    given = table.first_filled("Type", subtype).str.lower()
    default = "meeting" if is_event else "other"
    untyped = live & linked.notna() & given.isna()
    if untyped.any():
        table.note(f"{int(untyped.sum())} rows have no Type or {subtype}: typed {default!r}")
    kind = given.map(ACTIVITY_TYPE_MAP).astype("string").fillna(given).fillna(default)
    frame = pd.DataFrame(
        {
            "opportunity_id": linked,
            "occurred_at": occurred,
            "type": kind,
            "contact_role": pd.Series(pd.NA, index=table.frame.index, dtype="string"),
            "source_object": "Event" if is_event else "Task",
            "activity_id": table.text("Id"),
        }
    )
    if roles is not None and table.has("WhoId"):
        who = pd.DataFrame({"opportunity_id": linked, "contact_id": table.text("WhoId")})
        matched = who.merge(roles, on=["opportunity_id", "contact_id"], how="left")
        frame["contact_role"] = matched["contact_role"].astype("string").to_numpy()
    opportunity_like = refs.str.startswith(OPPORTUNITY_PREFIX).fillna(False)
    table.skip("no WhatId (an activity on a contact or lead only)", live & refs.isna())
    table.skip(
        "WhatId is another object (account, case, ...), not an opportunity",
        live & refs.notna() & linked.isna() & ~opportunity_like,
    )
    table.skip(
        "WhatId is an opportunity not in Opportunity.csv",
        live & refs.notna() & linked.isna() & opportunity_like,
    )
    _drop_unmapped(
        table,
        ACTIVITY_COLUMNS,
        "not part of the contract (free text, status or system field)",
    )
    return frame[live & linked.notna()].reset_index(drop=True)


def map_owners(table: SourceTable, roles: SourceTable | None) -> pd.DataFrame:
    table.require("Id")
    live = _live(table)
    team_columns = [c for c in TEAM_COLUMNS if table.has(c)]
    team = table.first_filled(*team_columns)
    role_id = table.text("UserRoleId")
    if roles is not None:
        roles.require("Id", "Name")
        role_names = pd.Series(
            roles.text("Name").to_numpy(), index=roles.text("Id", required=True).to_numpy()
        )
        role_names = role_names[~role_names.index.duplicated(keep="first")]
        role_team = _link(role_id, pd.Series(role_names.index, dtype="string")).map(role_names)
        unused = ~roles.text("Id").isin(role_id.dropna())
        roles.skip("no user has this role", unused)
        roles.use(int((~unused).sum()))
        _drop_unmapped(roles, ROLE_COLUMNS, "not part of the contract")
    else:
        role_team = role_id
    from_role = team.isna() & role_team.notna()
    team = team.fillna(role_team.astype("string"))
    frame = pd.DataFrame(
        {
            "owner_id": table.text("Id", required=True),
            "team": team,
            "manager_id": table.text("ManagerId"),
        }
    )
    region_column = next((c for c in REGION_COLUMNS if table.has(c)), None)
    if region_column is not None:
        frame["region"] = table.text(region_column)
    if table.has("IsActive"):
        frame["is_active"] = table.booleans("IsActive")
    sources = [f"{c}" for c in team_columns]
    if from_role.any():
        sources.append("the role's name in UserRole.csv" if roles is not None else "the UserRoleId")
    table.note("team from " + (", then ".join(sources) if sources else "nowhere: no team column"))
    _drop_unmapped(table, USER_COLUMNS, "not used (personal or login data)")
    return frame[live].reset_index(drop=True)


def map_rates(
    currency_type: SourceTable | None, dated: SourceTable | None
) -> tuple[pd.DataFrame, str | None]:
    """`exchange_rates` from both rate objects, and the corporate currency."""
    parts: list[pd.DataFrame] = []
    corporate: str | None = None
    if currency_type is not None:
        currency_type.require("IsoCode", "ConversionRate")
        live = _live(currency_type)
        frame = pd.DataFrame(
            {
                "currency": _currency_codes(currency_type, "IsoCode", required=True),
                "rate": currency_type.numbers("ConversionRate", required=True),
                "valid_from": pd.Series(
                    pd.NaT, index=currency_type.frame.index, dtype="datetime64[us, UTC]"
                ),
            }
        )
        if currency_type.has("IsCorporate"):
            flagged = frame.loc[
                currency_type.booleans("IsCorporate").fillna(False).astype(bool) & live, "currency"
            ]
            corporate = str(flagged.iloc[0]) if len(flagged) == 1 else None
        _drop_unmapped(currency_type, CURRENCY_COLUMNS, "not part of the contract")
        parts.append(_positive_rates(currency_type, frame[live]))
        currency_type.use(int(live.sum()))
    if dated is not None:
        dated.require("IsoCode", "ConversionRate", "StartDate")
        live = _live(dated)
        frame = pd.DataFrame(
            {
                "currency": _currency_codes(dated, "IsoCode", required=True),
                "rate": dated.numbers("ConversionRate", required=True),
                "valid_from": dated.dates("StartDate", required=True),
            }
        )
        _drop_unmapped(dated, DATED_RATE_COLUMNS, "not part of the contract")
        if dated.has("NextStartDate"):
            dated.note("NextStartDate is implied by the next StartDate of the same currency")
        parts.append(_positive_rates(dated, frame[live]))
        dated.use(int(live.sum()))
    if not parts:
        return pd.DataFrame(), None
    return pd.concat(parts, ignore_index=True), corporate


def _positive_rates(table: SourceTable, frame: pd.DataFrame) -> pd.DataFrame:
    bad = (frame["rate"] <= 0).fillna(False)
    table.problems.add_rows(
        table.name,
        "ConversionRate",
        bad.reindex(table.frame.index, fill_value=False),
        "a rate > 0",
        table.text("ConversionRate"),
    )
    return frame


def with_open_first_period(source: SourceFile) -> tuple[SourceFile, int]:
    """DatedConversionRate's first period starts at 0000-12-30 ("since always") in Salesforce.

    pandas cannot hold year 0, so such StartDates become 1900-01-01, earlier than any deal,
    which keeps their meaning: the rate applies to every date before the next period.
    """
    if "StartDate" not in source.frame.columns:
        return source, 0
    text = source.frame["StartDate"].astype("string").str.strip()
    year = pd.to_numeric(text.str.extract(r"^(\d{4})-", expand=False), errors="coerce")
    early = (year < EARLIEST_RATE_DATE.year).fillna(False)
    if not early.any():
        return source, 0
    frame = source.frame.copy()
    frame.loc[early.to_numpy(), "StartDate"] = EARLIEST_RATE_DATE.strftime("%Y-%m-%d")
    return replace(source, frame=frame), int(early.sum())


def map_quotas(
    table: SourceTable,
    rates: pd.DataFrame,
    deal_currencies: set[str],
    *,
    start_month: int,
) -> pd.DataFrame | None:
    """Quotas per owner and fiscal quarter, in the corporate currency (monthly rows summed).

    None, with the rows counted as skipped, when the file lacks a revenue quota's columns: a
    ForecastingQuota of another layout is an optional table that is not there, not a reason to
    refuse the export.
    """
    missing = [c for c in ("QuotaOwnerId", "StartDate", "QuotaAmount") if not table.has(c)]
    if missing:
        table.skip(
            f"the file has no {', '.join(missing)} column: no revenue quotas",
            pd.Series(True, index=table.frame.index),
        )
        table.note("not used: quotas need QuotaOwnerId, StartDate and QuotaAmount")
        return None
    live = _live(table)
    owner = table.text("QuotaOwnerId", required=True)
    start = table.dates("StartDate", required=True)
    amount = table.numbers("QuotaAmount")
    table.problems.add_rows(
        table.name,
        "QuotaAmount",
        (amount < 0).fillna(False),
        "a quota >= 0",
        table.text("QuotaAmount"),
    )
    quantity = (
        table.booleans("IsQuantity").fillna(False).astype(bool)
        if table.has("IsQuantity")
        else pd.Series(False, index=table.frame.index)
    )
    table.skip("IsQuantity is true (a unit quota, not revenue)", live & quantity)
    empty = live & ~quantity & ~(amount > 0).fillna(False)
    table.skip("QuotaAmount is empty or 0 (no revenue target)", empty)
    kept = live & ~quantity & ~empty
    if table.has("ForecastingTypeId"):
        types = table.text("ForecastingTypeId")[kept].dropna().unique()
        if len(types) > 1:
            table.problems.add(
                table.name,
                "ForecastingTypeId",
                None,
                "revenue quotas of one forecasting type (quotas of several types would be "
                "added up); export the quotas of one forecasting type",
                ", ".join(sorted(map(str, types))),
            )
    if table.has("CurrencyIsoCode"):
        currency = _currency_codes(table, "CurrencyIsoCode", required=False)
        needs_rates = not rates.empty or len(set(currency[kept].dropna()) | deal_currencies) > 1
        if needs_rates:
            rate = rate_on(currency, start, rates)
            table.problems.add_rows(
                table.name,
                "CurrencyIsoCode",
                kept & currency.notna() & rate.isna(),
                "a currency with a rate in CurrencyType.csv or DatedConversionRate.csv valid on "
                "the quota's StartDate",
                currency,
            )
            amount = amount / rate.where(currency.notna(), 1.0)
            table.note("QuotaAmount converted to the corporate currency at the StartDate's rate")
    _drop_unmapped(table, QUOTA_COLUMNS, "not part of the contract")
    frame = pd.DataFrame(
        {
            "period": fiscal_quarter(start, start_month=start_month),
            "owner_id": owner,
            "quota": amount,
        }
    )[kept]
    table.use(int(kept.sum()))
    quotas = frame.groupby(["period", "owner_id"], sort=True)["quota"].sum().reset_index()
    if len(quotas) < len(frame):
        table.note(f"{len(frame)} quota rows summed into {len(quotas)} quarterly quotas")
    return quotas


def map_accounts(table: SourceTable) -> pd.DataFrame:
    table.require("Id")
    live = _live(table)
    frame = pd.DataFrame({"account_id": table.text("Id", required=True)})
    for column in table.frame.columns:
        if column in ("Id", "IsDeleted"):
            continue
        reason = leak_reason(column)
        if reason is not None:
            table.drop(column, reason, leaky=True)
            continue
        name = ACCOUNT_RENAMES.get(column, snake_case(column))
        if name in frame.columns:
            table.drop(column, f"{name} is already taken from another column", leaky=False)
            continue
        numeric = name in ("employees", "annual_revenue")
        frame[name] = table.numbers(column) if numeric else table.text(column)
    ids = frame["account_id"]
    table.problems.add_rows(
        table.name, "Id", ids.notna() & ids.duplicated(keep="first") & live, "a unique Id", ids
    )
    return frame[live].reset_index(drop=True)


def map_stages(table: SourceTable, used: set[str]) -> StageConfig | None:
    """The stage model from OpportunityStage: open stages by SortOrder, then won and lost."""
    table.require("DefaultProbability", "IsClosed", "IsWon")
    table.require_one_of("ApiName", "MasterLabel")
    name = table.first_filled("ApiName", "MasterLabel")
    table.problems.add_rows(table.name, "ApiName or MasterLabel", name.isna(), "a stage name")
    frame = pd.DataFrame(
        {
            "name": name,
            "probability": table.numbers("DefaultProbability"),
            "is_closed": table.booleans("IsClosed", required=True),
            "is_won": table.booleans("IsWon", required=True),
            "active": table.booleans("IsActive").fillna(True).astype(bool),
            "order": table.numbers("SortOrder").fillna(pd.Series(range(len(table)), dtype=float)),
        }
    )
    table.problems.add_rows(
        table.name,
        "ApiName or MasterLabel",
        name.notna() & name.duplicated(keep="first"),
        "a unique stage name",
        name,
    )
    unused_inactive = ~frame["active"] & ~frame["name"].isin(used)
    table.skip("IsActive is false and no deal uses the stage", unused_inactive)
    _drop_unmapped(table, STAGE_COLUMNS, "not part of the stage model")
    frame = frame[~unused_inactive & name.notna()].sort_values("order", kind="stable")
    closed = frame["is_closed"].fillna(False).astype(bool)
    won = closed & frame["is_won"].fillna(False).astype(bool)
    groups = {
        "open": tuple(frame.loc[~closed, "name"]),
        "won": tuple(frame.loc[won, "name"]),
        "lost": tuple(frame.loc[closed & ~won, "name"]),
    }
    for group, stages in groups.items():
        if not stages:
            table.problems.add(table.name, None, None, f"at least one {group} stage", "none")
    if not all(groups.values()):
        return None
    return StageConfig(
        open_stages=groups["open"],
        won_stages=groups["won"],
        lost_stages=groups["lost"],
        probabilities=dict(zip(frame["name"], frame["probability"].astype(float), strict=True)),
    )


def check_stage_names(
    stages: StageConfig, mapped: list[tuple[SourceTable, pd.DataFrame]], problems: ImportProblems
) -> None:
    """Every stage a written row uses must be in the stage model, or the loader rejects it."""
    for table, frame in mapped:
        unknown = set(frame["stage"].dropna()) - set(stages.all_stages)
        names = table.text("StageName")
        problems.add_rows(
            table.name,
            "StageName",
            names.isin(unknown).fillna(False),
            "a stage listed in OpportunityStage.csv",
            names,
        )


def empty_history(with_currency: bool) -> pd.DataFrame:
    """The header of `opportunity_history` when the export has no OpportunityHistory.csv:
    the contract requires the table, and the loader then reads each deal from its current state.
    """
    columns: dict[str, pd.Series] = {
        "opportunity_id": pd.Series(dtype="string"),
        "changed_at": pd.Series(dtype="datetime64[us, UTC]"),
        "stage": pd.Series(dtype="string"),
        "amount": pd.Series(dtype="float64"),
        "close_date": pd.Series(dtype="datetime64[us, UTC]"),
        "forecast_category": pd.Series(dtype="string"),
    }
    if with_currency:
        columns["currency"] = pd.Series(dtype="string")
    return pd.DataFrame(columns)
