"""Salesforce's vocabulary: the API fields the importer reads, and the fields it never carries.

Kept apart from the mapping code so the leakage policy (which Opportunity fields are known only
after a deal closes) can be read, reviewed and extended in one place.
"""

from __future__ import annotations

import re

import pandas as pd

# Salesforce's API values and labels for forecast categories, both mapped onto the contract's.
FORECAST_CATEGORY_MAP: dict[str, str] = {
    "omitted": "Omitted",
    "pipeline": "Pipeline",
    "bestcase": "Best Case",
    "best case": "Best Case",
    "forecast": "Commit",
    "commit": "Commit",
    "closed": "Closed",
}

# Task/Event Type and TaskSubtype values (lower case) that name a contract activity type;
# other values are kept lower-cased, as the contract allows.
ACTIVITY_TYPE_MAP: dict[str, str] = {
    "call": "call",
    "email": "email",
    "listemail": "email",
    "list email": "email",
    "meeting": "meeting",
    "event": "meeting",
    "demo": "demo",
    "proposal": "proposal",
    "other": "other",
    "task": "other",
}

# OpportunityContactRole.Role values whose contract name is not just their snake_case form.
CONTACT_ROLE_MAP: dict[str, str] = {
    "business user": "user",
    "economic decision maker": "economic_buyer",
}

# Opportunity fields never written, with the reason: their value in an export is the value at
# export time, which for a closed deal is known only after it closed.
LEAKY_FIELDS: dict[str, str] = {
    "Probability": "the current probability: 100 or 0 once a deal closes, so it encodes the "
    "outcome (the history's per-stage Probability is kept)",
    "ExpectedRevenue": "Amount x the current Probability: 0 for every lost deal",
    "PushCount": "counts close-date pushes up to the export, after any snapshot",
    "ContractId": "set when a won deal becomes a contract",
    "SyncedQuoteId": "the quote synced at export time",
    "HasOpenActivity": "the state at export time",
    "HasOverdueTask": "the state at export time",
    "HasOpportunityLineItem": "the state at export time, without history",
    "TotalOpportunityQuantity": "changes during a deal like Amount, but without history",
    "NextStep": "edited throughout a deal; its export-time value is not its value at a "
    "snapshot (use opportunity_field_history for point-in-time values)",
    "Description": "edited throughout a deal; its export-time value is not its value at a snapshot",
    "SystemModstamp": "stamped by the latest change up to the export",
}
LEAKY_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"loss|lost.?reason|reason.?lost|lost.?to(?![a-z])", re.IGNORECASE),
        "a loss reason: filled in when a deal is lost",
    ),
    (
        re.compile(r"(win|won).?reason|reason.?(win|won)", re.IGNORECASE),
        "a win reason: filled in when a deal is won",
    ),
    (re.compile(r"clos(e|ed|ing).?reason", re.IGNORECASE), "a close reason: filled in at closing"),
    (re.compile(r"^fiscal", re.IGNORECASE), "derived from the final CloseDate"),
    (
        re.compile(r"^last", re.IGNORECASE),
        "stamped by the latest event up to the export (for a closed deal, after it closed)",
    ),
    (re.compile(r"final", re.IGNORECASE), "a final value, known once the deal closes"),
)

OPPORTUNITY_MAPPED = (
    "Id",
    "AccountId",
    "OwnerId",
    "CreatedDate",
    "StageName",
    "Amount",
    "CloseDate",
    "IsClosed",
    "IsWon",
    "ForecastCategoryName",
    "ForecastCategory",
    "Type",
    "LeadSource",
    "CurrencyIsoCode",
    "IsDeleted",
)
HISTORY_COLUMNS = (
    "OpportunityId",
    "CreatedDate",
    "StageName",
    "Amount",
    "CloseDate",
    "Probability",
    "ForecastCategory",
    "CurrencyIsoCode",
    "IsDeleted",
)
ACTIVITY_COLUMNS = (
    "Id",
    "WhatId",
    "WhoId",
    "ActivityDate",
    "ActivityDateTime",
    "CreatedDate",
    "Type",
    "TaskSubtype",
    "EventSubtype",
    "IsChild",
    "IsDeleted",
)
CONTACT_ROLE_COLUMNS = ("OpportunityId", "ContactId", "Role", "IsPrimary", "IsDeleted")
TEAM_COLUMNS = ("Team__c", "Team", "Department")
REGION_COLUMNS = ("Region__c", "Region")
USER_COLUMNS = ("Id", "UserRoleId", "ManagerId", "IsActive", *TEAM_COLUMNS, *REGION_COLUMNS)
ROLE_COLUMNS = ("Id", "Name")
QUOTA_COLUMNS = (
    "QuotaOwnerId",
    "StartDate",
    "QuotaAmount",
    "CurrencyIsoCode",
    "IsQuantity",
    "ForecastingTypeId",
)
FIELD_HISTORY_COLUMNS = (
    "OpportunityId",
    "CreatedDate",
    "Field",
    "NewValue",
    "OldValue",
    "IsDeleted",
)
# The fiscal year's first month: the org's setting, each fiscal year's definition, its periods.
ORGANIZATION_COLUMNS = ("FiscalYearStartMonth",)
FISCAL_YEAR_COLUMNS = ("StartMonth", "StartDate", "Name", "YearType", "IsStandardYear")
PERIOD_COLUMNS = ("Type", "StartDate", "Number", "FiscalYearSettingsId")
CURRENCY_COLUMNS = ("IsoCode", "ConversionRate", "IsCorporate", "IsActive")
DATED_RATE_COLUMNS = ("IsoCode", "ConversionRate", "StartDate", "NextStartDate")
ACCOUNT_RENAMES = {
    "Id": "account_id",
    "Industry": "industry",
    "NumberOfEmployees": "employees",
    "AnnualRevenue": "annual_revenue",
    "Region__c": "region",
    "Region": "region",
}
STAGE_COLUMNS = (
    "ApiName",
    "MasterLabel",
    "DefaultProbability",
    "IsClosed",
    "IsWon",
    "IsActive",
    "SortOrder",
)
OPPORTUNITY_PREFIX = "006"
EARLIEST_RATE_DATE = pd.Timestamp("1900-01-01", tz="UTC")


def snake_case(api_name: str) -> str:
    """A Salesforce API name as a contract column name: `Product_Line__c` -> `product_line`."""
    base = re.sub(r"__c$", "", api_name, flags=re.IGNORECASE)
    base = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", base)
    return re.sub(r"[^0-9a-zA-Z]+", "_", base).strip("_").lower()


def leak_reason(column: str) -> str | None:
    """Why a field's export-time value would leak a deal's outcome, or None if it would not."""
    canonical = {name.lower(): reason for name, reason in LEAKY_FIELDS.items()}
    if column.lower() in canonical:
        return canonical[column.lower()]
    for pattern, reason in LEAKY_PATTERNS:
        if pattern.search(column):
            return reason
    return None
