"""A synthetic world written as a Salesforce org's export, optionally with a real export's mess.

`write_salesforce(world, out, messy=True)` writes one CSV per object as a Salesforce admin
downloads them (API field names, every field quoted, CRLF line ends, true/false in some files
and 1/0 in others) that `dealcast import salesforce` reads. With `messy`, it injects what real
exports carry, at realistic rates, and records what it injected in `_mess.json` beside the
objects (the importer reads `.csv` files only):

- NUL bytes inside a rich-text field (Opportunity.Description), about 3% of deals;
- Account.csv in Windows-1252 with some lines in UTF-8 (accented names: "Société", "BOGOTÁ");
- a UTF-8 BOM on some files;
- empty Amount on the early history rows of about 10% of deals (the amount came later);
- two history rows of one deal in the same second with different values, about 0.5% of deals
  (an automation fired; the row written last is the state);
- deals entered after the fact, about 1.5% of closed deals: created already closed, their
  close date before their creation;
- object files with a header only (Contract, Case, and forecasting objects with other columns).

Everything is vectorised except the per-line re-encoding of Account.csv (one line per account),
so a 100,000-deal world is written in seconds. Determinism: the mess is drawn from its own
generator seeded by the world's seed, so the same world gives the same bytes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from features.synthetic.world import GROUND_TRUTH_FILE, SyntheticWorld

logger = logging.getLogger(__name__)

MESS_FILE = "_mess.json"
GROUND_TRUTH_DIR = "_ground_truth"  # a folder: the importer reads top-level .csv files only
BOM = b"\xef\xbb\xbf"

# Salesforce's API values of the contract's forecast categories (OpportunityHistory writes
# these; Opportunity.ForecastCategoryName the labels).
_CATEGORY_API = {
    "Pipeline": "Pipeline",
    "Best Case": "BestCase",
    "Commit": "Forecast",
    "Closed": "Closed",
    "Omitted": "Omitted",
}
_TASK_TYPES = {"call": ("Call", "Call"), "email": ("Email", "Email"), "other": ("Other", "Task")}
_EVENT_TYPES = {"meeting": "Meeting", "demo": "Demo", "proposal": "Proposal"}
_ROLE_NAMES = {
    "decision_maker": "Decision Maker",
    "economic_buyer": "Economic Buyer",
    "champion": "Champion",
    "user": "Business User",
}
_HEADER_ONLY: dict[str, tuple[str, ...]] = {
    "Contract.csv": ("Id", "AccountId", "Status", "StartDate", "ContractTerm", "OwnerId"),
    "Case.csv": ("Id", "AccountId", "ContactId", "Subject", "Status", "Priority", "CreatedDate"),
    # A forecasting object beside ForecastingQuota, empty, with columns of its own.
    "ForecastingAdjustment.csv": (
        "Id",
        "ForecastingItemId",
        "AdjustedAmount",
        "AdjustmentNote",
        "ForecastingTypeId",
    ),
}
# Account names with letters outside ASCII, all of them in Windows-1252.
_ACCENTED = (
    "Société Générale",
    "BOGOTÁ Logística",
    "Müller & Söhne",
    "Crédit Agricole Sud",
    "Façade Architectes",
    "Øresund Shipping",
    "São Paulo Têxteis",
    "Straße Energie",
    "Ñandú Alimentos",
    "Zürich Rück",
)
_DESCRIPTIONS = (
    "Customer asked for a pilot first.",
    "Replacing a legacy tool; procurement involved.",
    "Champion is the head of operations.",
    "Budget confirmed for this fiscal year.",
    "Competing with an incumbent vendor.",
)


@dataclass(frozen=True)
class MessRates:
    """How often each kind of mess is injected (shares of deals unless said otherwise)."""

    nul_description: float = 0.03
    utf8_account_lines: float = 0.5  # of accented account lines; the rest are Windows-1252
    accented_accounts: float = 0.15  # of accounts
    empty_early_amount: float = 0.10
    same_second: float = 0.005
    entered_after_close: float = 0.015  # of closed deals
    bom_files: tuple[str, ...] = ("Opportunity.csv", "Account.csv", "User.csv")


@dataclass
class MessReport:
    """What was injected, per kind: the ground truth an import report can be checked against."""

    seed: int
    opportunities: int
    nul_fields: int = 0
    nul_bytes: int = 0
    account_lines: dict[str, int] = field(default_factory=dict)  # ascii / utf-8 / cp1252
    bom_files: list[str] = field(default_factory=list)
    crlf: bool = True
    empty_amount_rows: int = 0
    empty_amount_deals: int = 0
    same_second_pairs: int = 0
    entered_after_close: int = 0
    header_only_files: list[str] = field(default_factory=list)


def _ids(prefix: str, codes: np.ndarray) -> pa.Array:
    """18-character Salesforce-style ids: a 3-character key prefix, 12 digits, a suffix."""
    digits = pc.utf8_lpad(
        pc.cast(pa.array(np.asarray(codes, dtype=np.int64)), pa.string()), 12, "0"
    )
    return pc.binary_join_element_wise(prefix, digits, "AAA", "")


def _code_of(ids: pd.Series) -> np.ndarray:
    """The integer in a contract id such as `OPP-00042` (the world's keys: 4-letter prefixes)."""
    digits = pc.utf8_slice_codeunits(pa.array(ids, type=pa.string()), 4)
    return pc.cast(digits, pa.int64()).to_numpy(zero_copy_only=False)


def _stamps(values: pd.Series) -> pa.Array:
    return pa.array(values.dt.tz_convert("UTC").dt.tz_localize(None), type=pa.timestamp("s"))


def _times(values: pd.Series) -> pa.Array:
    """Salesforce's datetime format, UTC: 2026-01-05T10:00:00.000Z."""
    text = pc.replace_substring(pc.cast(_stamps(values), pa.string()), " ", "T")
    return pc.binary_join_element_wise(text, ".000Z", "")


def _dates(values: pd.Series) -> pa.Array:
    return pc.cast(pc.cast(_stamps(values), pa.date32()), pa.string())


def _money(values: np.ndarray) -> pa.Array:
    """Two decimals, as Salesforce writes currency fields; empty where missing."""
    values = np.asarray(values, dtype=np.float64)
    cents = np.round(np.nan_to_num(values) * 100.0).astype(np.int64)
    whole = pc.cast(pa.array(cents // 100), pa.string())
    fraction = pc.utf8_lpad(pc.cast(pa.array(cents % 100), pa.string()), 2, "0")
    text = pc.binary_join_element_wise(whole, fraction, ".")
    return pc.if_else(pa.array(np.isnan(values)), "", text)


def _text(values: object) -> pa.Array:
    """Strings, empty where missing (Salesforce writes empty fields as "")."""
    if isinstance(values, pa.Array):
        array = values
    else:
        array = pa.array(pd.Series(values), type=pa.string(), from_pandas=True)
    return pc.fill_null(array, "")


def _lookup(values: pa.Array, mapping: dict[str, str]) -> pa.Array:
    """Each value's entry in `mapping` (every value must have one), vectorised."""
    keys = pa.array(list(mapping), type=pa.string())
    index = pc.index_in(values, keys)
    return pa.array(list(mapping.values()), type=pa.string()).take(index)


def _constant(value: str, size: int) -> pa.Array:
    return pa.array(np.full(size, value), type=pa.string())


def _flags(values: np.ndarray, style: str) -> pa.Array:
    true, false = ("true", "false") if style == "words" else ("1", "0")
    return pc.if_else(pa.array(np.asarray(values, dtype=bool)), true, false)


def _csv_bytes(columns: dict[str, pa.Array]) -> bytes:
    """Every field quoted, CRLF line ends (quoted newlines inside fields become CRLF too, as
    text typed on Windows carries them)."""
    table = pa.table(columns)
    sink = pa.BufferOutputStream()
    pa_csv.write_csv(table, sink, pa_csv.WriteOptions(quoting_style="all_valid"))
    return sink.getvalue().to_pybytes().replace(b"\n", b"\r\n")


def _header_only(columns: tuple[str, ...]) -> bytes:
    return (",".join(f'"{c}"' for c in columns) + "\r\n").encode("ascii")


def write_salesforce(
    world: SyntheticWorld,
    out_dir: Path,
    *,
    messy: bool = False,
    rates: MessRates | None = None,
) -> list[Path]:
    """Write `world` as a Salesforce export into `out_dir`; with `messy`, inject the mess of a
    real org and record it in `out_dir/_mess.json`. Returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rates = rates or MessRates()
    rng = np.random.default_rng([world.seed, 0x5F])
    report = MessReport(seed=world.seed, opportunities=len(world.tables["opportunities"]))
    files: dict[str, bytes] = {}

    opportunities = world.tables["opportunities"]
    history = world.tables["opportunity_history"]
    n = len(opportunities)
    deal_code = _code_of(opportunities["opportunity_id"])
    entered_late = np.zeros(n, dtype=bool)
    created = opportunities["created_at"].copy()
    if messy:
        entered_late, created, history = _entered_after_close(
            opportunities, history, world.end, rng, rates, report
        )
    files["Opportunity.csv"] = _opportunity_file(
        opportunities, created, deal_code, rng, messy, rates, report
    )
    files["OpportunityHistory.csv"] = _history_file(history, rng, messy, rates, report)
    files.update(_activity_files(world, entered_late))
    files["Account.csv"] = _account_file(world.tables["accounts"], rng, messy, rates, report)
    files.update(_org_files(world))
    files["OpportunityStage.csv"] = _stage_file(world)
    if messy:
        for name, columns in _HEADER_ONLY.items():
            files[name] = _header_only(columns)
            report.header_only_files.append(name)
        for name in rates.bom_files:
            files[name] = BOM + files[name]
            report.bom_files.append(name)

    paths = []
    for name, data in files.items():
        path = out_dir / name
        path.write_bytes(data)
        paths.append(path)
    truth_dir = out_dir / GROUND_TRUTH_DIR
    truth_dir.mkdir(exist_ok=True)
    truth = world.ground_truth.copy()
    truth["opportunity_id"] = _ids("006", _code_of(truth["opportunity_id"])).to_pylist()
    truth.to_csv(truth_dir / GROUND_TRUTH_FILE, index=False)
    paths.append(truth_dir / GROUND_TRUTH_FILE)
    if messy:
        mess_path = out_dir / MESS_FILE
        mess_path.write_text(json.dumps(asdict(report), indent=2, sort_keys=True) + "\n")
        paths.append(mess_path)
    logger.info("wrote a %sSalesforce export to %s", "messy " if messy else "", out_dir)
    return paths


def _entered_after_close(
    opportunities: pd.DataFrame,
    history: pd.DataFrame,
    end: pd.Timestamp,
    rng: np.random.Generator,
    rates: MessRates,
    report: MessReport,
) -> tuple[np.ndarray, pd.Series, pd.DataFrame]:
    """Deals keyed in after they closed: created days later, already closed, one history row.

    Returns which deals, their new creation times and the history with theirs replaced.
    """
    closed = opportunities["is_closed"].to_numpy()
    last = history.groupby("opportunity_id", sort=False).tail(1).set_index("opportunity_id")
    close_time = last["changed_at"].reindex(opportunities["opportunity_id"]).reset_index(drop=True)
    room = (end - close_time).dt.total_seconds().to_numpy() / 86_400.0
    chosen = closed & (room > 2.0) & (rng.random(len(opportunities)) < rates.entered_after_close)
    delay_days = np.minimum(rng.uniform(0.2, 30.0, len(opportunities)), room - 1.0)
    delay = pd.to_timedelta(np.round(delay_days * 86_400.0), unit="s")
    created = opportunities["created_at"].where(~chosen, close_time + delay)
    ids = opportunities["opportunity_id"][chosen]
    rows = last.loc[ids].reset_index()
    rows["changed_at"] = created[chosen].to_numpy()
    kept = history[~history["opportunity_id"].isin(ids)]
    merged = pd.concat([kept, rows[history.columns]], ignore_index=True)
    merged = merged.sort_values(["opportunity_id", "changed_at"], kind="stable")
    report.entered_after_close = int(chosen.sum())
    return chosen, created, merged.reset_index(drop=True)


def _opportunity_file(
    opportunities: pd.DataFrame,
    created: pd.Series,
    deal_code: np.ndarray,
    rng: np.random.Generator,
    messy: bool,
    rates: MessRates,
    report: MessReport,
) -> bytes:
    n = len(opportunities)
    description = np.asarray(_DESCRIPTIONS, dtype=object)[rng.integers(0, len(_DESCRIPTIONS), n)]
    description = np.where(rng.random(n) < 0.4, "", description).astype(object)
    if messy:
        # Rich text pasted from another tool: NUL bytes where it kept its own terminators.
        nul = rng.random(n) < rates.nul_description
        nul_count = rng.integers(1, 4, n)
        for index in np.flatnonzero(nul):
            description[index] = (
                "Notes from the call:" + "\x00" * int(nul_count[index]) + " next steps agreed."
            )
        report.nul_fields = int(nul.sum())
        report.nul_bytes = int(nul_count[nul].sum())
    category = _text(opportunities["forecast_category"])
    return _csv_bytes(
        {
            "Id": _ids("006", deal_code),
            "AccountId": _ids("001", _code_of(opportunities["account_id"])),
            "OwnerId": _ids("005", _code_of(opportunities["owner_id"])),
            "Name": pc.binary_join_element_wise(
                "Deal ", pc.cast(pa.array(deal_code), pa.string()), ""
            ),
            "CreatedDate": _times(created),
            "StageName": _text(opportunities["stage"]),
            "Amount": _money(opportunities["amount"].to_numpy()),
            "CloseDate": _dates(opportunities["close_date"]),
            "IsClosed": _flags(opportunities["is_closed"].to_numpy(), "words"),
            "IsWon": _flags(opportunities["is_won"].to_numpy(), "words"),
            "ForecastCategoryName": category,
            "ForecastCategory": _lookup(category, _CATEGORY_API),
            "Type": _text(opportunities["type"]),
            "LeadSource": _text(opportunities["lead_source"]),
            "Description": pa.array(description.tolist(), type=pa.string()),
        }
    )


def _history_file(
    history: pd.DataFrame,
    rng: np.random.Generator,
    messy: bool,
    rates: MessRates,
    report: MessReport,
) -> bytes:
    deal = _code_of(history["opportunity_id"])
    amount = history["amount"].to_numpy(dtype=np.float64).copy()
    rows = len(history)
    starts = np.flatnonzero(np.r_[True, deal[1:] != deal[:-1]])
    sizes = np.diff(np.r_[starts, rows])
    rank = np.arange(rows) - np.repeat(starts, sizes)
    order = np.arange(rows, dtype=np.float64)
    if messy:
        # Early rows without an amount: the deal was sized only later.
        n_deals = len(starts)
        blank = (sizes >= 2) & (rng.random(n_deals) < rates.empty_early_amount)
        upto = np.floor(rng.random(n_deals) * (sizes - 1)).astype(np.int64) + 1  # rows blanked
        blanked = np.repeat(blank, sizes) & (rank < np.repeat(upto, sizes))
        amount[blanked] = np.nan
        report.empty_amount_rows = int(blanked.sum())
        report.empty_amount_deals = int(blank.sum())
        # Same-second pairs: an automation wrote a row just before the person's, in the same
        # second; the person's (written last) is the state. Never on a blanked row.
        twin_deal = (sizes >= 2) & (rng.random(n_deals) < rates.same_second)
        pick = starts + 1 + np.floor(rng.random(n_deals) * (sizes - 1)).astype(np.int64)
        twins = pick[twin_deal]
        twins = twins[~blanked[twins] & ~np.isnan(amount[twins])]
        report.same_second_pairs = len(twins)
    else:
        twins = np.array([], dtype=np.int64)

    def columns(index: np.ndarray, amounts: np.ndarray) -> dict[str, pa.Array]:
        part = history.iloc[index]
        return {
            "OpportunityId": _ids("006", deal[index]),
            "CreatedDate": _times(part["changed_at"]),
            "StageName": _text(part["stage"]),
            "Amount": _money(amounts),
            "CloseDate": _dates(part["close_date"]),
            "Probability": pa.array(part["probability"].to_numpy(dtype=np.float64)),
            "ForecastCategory": _lookup(_text(part["forecast_category"]), _CATEGORY_API),
            "IsDeleted": _constant("0", len(index)),
        }

    every = np.arange(rows)
    main = columns(every, amount)
    if len(twins):
        extra = columns(twins, np.round(amount[twins] * 1.1, -1) + 10.0)
        merged_order = np.concatenate([order, twins - 0.5])  # each twin just before its row
        sort = np.argsort(merged_order, kind="stable")
        main = {
            name: pa.concat_arrays([main[name], extra[name]]).take(pa.array(sort)) for name in main
        }
    total = len(main["OpportunityId"])
    main = {"Id": _ids("008", np.arange(1, total + 1)), **main}
    return _csv_bytes(main)


def _activity_files(world: SyntheticWorld, entered_late: np.ndarray) -> dict[str, bytes]:
    """Task.csv, Event.csv and OpportunityContactRole.csv (one contact per deal and role)."""
    activities = world.tables["activities"]
    deal = _code_of(activities["opportunity_id"])
    # Deals entered after the fact have no logged activity: nobody worked them in the CRM.
    late_codes = _code_of(world.tables["opportunities"]["opportunity_id"][entered_late])
    live = ~np.isin(deal, late_codes)
    activities, deal = activities[live].reset_index(drop=True), deal[live]
    kind = _text(activities["type"])
    role = pa.array(activities["contact_role"], type=pa.string(), from_pandas=True)
    has_role = role.is_valid().to_numpy(zero_copy_only=False)
    role_index = pc.index_in(role, pa.array(list(_ROLE_NAMES))).to_numpy(zero_copy_only=False)
    contact = deal * 4 + np.nan_to_num(role_index, nan=0).astype(np.int64)
    who = pc.if_else(pa.array(has_role), _ids("003", contact), "")
    when = activities["occurred_at"]

    task = pc.is_in(kind, pa.array(list(_TASK_TYPES))).to_numpy(zero_copy_only=False)
    t_kind = kind.filter(pa.array(task))
    e_kind = kind.filter(pa.array(~task))
    files = {
        "Task.csv": _csv_bytes(
            {
                "Id": _ids("00T", np.flatnonzero(task) + 1),
                "WhatId": _ids("006", deal[task]),
                "WhoId": who.filter(pa.array(task)),
                "ActivityDate": _dates(when[task].dt.normalize()),
                "CreatedDate": _times(when[task]),
                "Type": _lookup(t_kind, {k: v[0] for k, v in _TASK_TYPES.items()}),
                "TaskSubtype": _lookup(t_kind, {k: v[1] for k, v in _TASK_TYPES.items()}),
                "Status": _constant("Completed", int(task.sum())),
                "IsDeleted": _flags(np.zeros(int(task.sum()), dtype=bool), "words"),
            }
        )
    }
    event = ~task
    files["Event.csv"] = _csv_bytes(
        {
            "Id": _ids("00U", np.flatnonzero(event) + 1),
            "WhatId": _ids("006", deal[event]),
            "WhoId": who.filter(pa.array(event)),
            "ActivityDateTime": _times(when[event]),
            "ActivityDate": _dates(when[event].dt.normalize()),
            "CreatedDate": _times(when[event]),
            "Type": _lookup(e_kind, _EVENT_TYPES),
            "EventSubtype": _constant("Event", int(event.sum())),
            "IsChild": _flags(np.zeros(int(event.sum()), dtype=bool), "words"),
        }
    )
    pairs = np.unique(contact[has_role])
    pair_role = np.asarray(list(_ROLE_NAMES.values()))[pairs % 4]
    files["OpportunityContactRole.csv"] = _csv_bytes(
        {
            "Id": _ids("00K", np.arange(1, len(pairs) + 1)),
            "OpportunityId": _ids("006", pairs // 4),
            "ContactId": _ids("003", pairs),
            "Role": pa.array(pair_role, type=pa.string()),
            "IsPrimary": _flags(pairs % 4 == 0, "words"),
        }
    )
    return files


def _account_file(
    accounts: pd.DataFrame,
    rng: np.random.Generator,
    messy: bool,
    rates: MessRates,
    report: MessReport,
) -> bytes:
    """Account.csv; messy: Windows-1252, except some accented lines saved as UTF-8."""
    n = len(accounts)
    code = _code_of(accounts["account_id"])
    names = np.char.add("Account ", code.astype(str)).astype(object)
    accented = rng.random(n) < rates.accented_accounts
    pick = rng.integers(0, len(_ACCENTED), n)
    names[accented] = [
        f"{_ACCENTED[k]} {c}" for k, c in zip(pick[accented], code[accented], strict=True)
    ]
    data = _csv_bytes(
        {
            "Id": _ids("001", code),
            "Name": pa.array(names.tolist(), type=pa.string()),
            "Industry": _text(accounts["industry"]),
            "NumberOfEmployees": pa.array(accounts["employees"].to_numpy(dtype=np.int64)),
            "AnnualRevenue": _money(accounts["annual_revenue"].to_numpy()),
            "Region__c": _text(accounts["region"]),
            "Segment__c": _text(accounts["segment"]),
        }
    )
    if not messy:
        return data
    lines = data.split(b"\r\n")
    as_utf8 = accented & (rng.random(n) < rates.utf8_account_lines)
    for row in np.flatnonzero(accented & ~as_utf8):
        lines[row + 1] = lines[row + 1].decode("utf-8").encode("cp1252")
    report.account_lines = {
        "ascii": int(n - accented.sum()) + 1,  # with the header
        "utf-8": int(as_utf8.sum()),
        "cp1252": int((accented & ~as_utf8).sum()),
    }
    return b"\r\n".join(lines)


def _org_files(world: SyntheticWorld) -> dict[str, bytes]:
    """User.csv (reps and their managers), UserRole.csv (one role per team) and quotas."""
    owners = world.tables["owners"]
    teams = sorted(owners["team"].astype(str).unique())
    team_index = {t: i + 1 for i, t in enumerate(teams)}
    rep_code = _code_of(owners["owner_id"])
    manager_code = _code_of(owners["manager_id"])
    managers = np.unique(manager_code)
    manager_team = owners.drop_duplicates("manager_id").set_index("manager_id")["team"]
    manager_team = manager_team.reindex([f"MGR-{c:02d}" for c in managers]).astype(str)
    role_of_rep = owners["team"].astype(str).map(team_index).to_numpy()
    offset = len(teams)
    role_of_manager = manager_team.map(team_index).to_numpy() + offset
    user_ids = np.r_[rep_code, 900_000 + managers]
    files = {
        "User.csv": _csv_bytes(
            {
                "Id": _ids("005", user_ids),
                "Name": _text([f"Rep {c}" for c in rep_code] + [f"Manager {c}" for c in managers]),
                "UserRoleId": _ids("00E", np.r_[role_of_rep, role_of_manager]),
                "ManagerId": pa.array(
                    _ids("005", 900_000 + manager_code).to_pylist() + [""] * len(managers)
                ),
                "Region__c": _text(
                    list(owners["region"].astype(str))
                    + list(
                        owners.drop_duplicates("manager_id")
                        .set_index("manager_id")["region"]
                        .reindex([f"MGR-{c:02d}" for c in managers])
                        .astype(str)
                    )
                ),
                "IsActive": _flags(np.ones(len(user_ids), dtype=bool), "digits"),
            }
        ),
        "UserRole.csv": _csv_bytes(
            {
                "Id": _ids("00E", np.arange(1, 2 * offset + 1)),
                "Name": _text(teams + [f"{t} Manager" for t in teams]),
            }
        ),
    }
    quotas = world.tables["quotas"]
    period = quotas["period"].astype(str)
    year = period.str[:4].astype(int)
    month = (period.str[-1].astype(int) - 1) * 3 + 1
    start = pd.to_datetime(
        pd.DataFrame({"year": year, "month": month, "day": 1}), utc=True
    ).reset_index(drop=True)
    files["ForecastingQuota.csv"] = _csv_bytes(
        {
            "Id": _ids("0J9", np.arange(1, len(quotas) + 1)),
            "QuotaOwnerId": _ids("005", _code_of(quotas["owner_id"])),
            "StartDate": _dates(start),
            "QuotaAmount": _money(quotas["quota"].to_numpy()),
            "IsQuantity": _flags(np.zeros(len(quotas), dtype=bool), "words"),
        }
    )
    return files


def _stage_file(world: SyntheticWorld) -> bytes:
    stages = world.stages
    names = list(stages.all_stages)
    closed = [s not in stages.open_stages for s in names]
    won = [s in stages.won_stages for s in names]
    category = [
        "Closed" if w else "Omitted" if c else "Pipeline" for w, c in zip(won, closed, strict=True)
    ]
    return _csv_bytes(
        {
            "Id": _ids("01J", np.arange(1, len(names) + 1)),
            "MasterLabel": _text(names),
            "ApiName": _text(names),
            "DefaultProbability": pa.array([stages.probability(s) for s in names]),
            "IsClosed": _flags(np.asarray(closed), "words"),
            "IsWon": _flags(np.asarray(won), "words"),
            "IsActive": _flags(np.ones(len(names), dtype=bool), "words"),
            "SortOrder": pa.array(np.arange(1, len(names) + 1)),
            "ForecastCategoryName": _text(category),
        }
    )
