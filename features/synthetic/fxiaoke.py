"""A synthetic world written as a Fxiaoke-like (纷享销客) export: Chinese column names and stage
labels, GBK, naive Beijing times, for `dealcast import csv --mapping
features/importers/mappings/fxiaoke.toml`.

Files: `商机.csv` (opportunities: 商机ID, 商机名称, 客户名称, 负责人, 阶段, 金额, 预计成交日期,
创建时间, 商机类型, 商机来源, 赢率), `阶段变更记录.csv` (the stage change log: 商机ID, 变更时间,
变更后阶段; one row per stage change, the first at creation), `员工.csv`, `客户.csv` and
`跟进记录.csv` (follow-ups: 商机ID, 跟进时间, 跟进方式). The mess, recorded in `_mess.json`:

- GBK, as a Chinese Excel saves a CSV, and CRLF line ends;
- times as `2026/03/01 14:05`, naive, in Asia/Shanghai; dates as `2026/03/01`;
- an empty 金额 on about 3% of deals (an amount not known: the validator's amount_unknown);
- 赢率, the stage's win rate at export time, which the mapping leaves out;
- the stage log has no amount or close date: they are export-time values (the import says so);
- one owner missing from 员工.csv.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.synthetic.crm_formats import local_times, stage_changes
from features.synthetic.world import SyntheticWorld

MESS_FILE = "_mess.json"
ZONE = "Asia/Shanghai"
TIME_PATTERN = "%Y/%m/%d %H:%M"
DATE_PATTERN = "%Y/%m/%d"
ENCODING = "gbk"
DEALS_FILE = "商机.csv"
# The world's stages as a Chinese sales team labels them.
STAGE_LABELS = {
    "Prospecting": "初步接洽",
    "Qualification": "需求确认",
    "Discovery": "方案调研",
    "Solution Design": "方案设计",
    "Proposal": "商务报价",
    "Negotiation": "谈判审核",
    "Verbal Commit": "口头承诺",
    "Closed Won": "赢单",
    "Closed Lost": "输单",
}
DEAL_TYPES = {"New Business": "新客户", "Renewal": "续约", "Upsell": "增购"}
LEAD_SOURCES = {
    "Web": "官网",
    "Partner": "渠道伙伴",
    "Outbound": "电话营销",
    "Event": "市场活动",
    "Referral": "客户推荐",
}
FOLLOW_UPS = {
    "call": "电话",
    "email": "邮件",
    "meeting": "拜访",
    "demo": "产品演示",
    "proposal": "方案提交",
    "other": "其他",
}


@dataclass(frozen=True)
class FxiaokeMess:
    """What `write_fxiaoke` injected, for the tests to check the import against."""

    deals: int
    stage_changes: int
    empty_amounts: int
    owner_missing: str
    zone: str
    encoding: str


def owner_name(owner_id: pd.Series) -> pd.Series:
    """A rep as Fxiaoke names them (销售 plus the world's number)."""
    return "销售" + owner_id.astype(str).str.replace("REP-", "", regex=False)


def write_fxiaoke(
    world: SyntheticWorld, out: Path, *, empty_amount_rate: float = 0.03
) -> list[Path]:
    """Write the world as a Fxiaoke-like export into `out`; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(world.seed + 29)
    opportunities = world.tables["opportunities"].reset_index(drop=True)
    changes = stage_changes(world.tables["opportunity_history"])
    deals = pd.DataFrame(
        {
            "商机ID": opportunities["opportunity_id"],
            "商机名称": "商机" + opportunities["opportunity_id"].astype(str),
            "客户名称": opportunities["account_id"],
            "负责人": owner_name(opportunities["owner_id"]),
            "阶段": opportunities["stage"].map(STAGE_LABELS),
            "金额": opportunities["amount"].round(2).astype(object),
            "预计成交日期": opportunities["close_date"].dt.strftime(DATE_PATTERN),
            "创建时间": local_times(opportunities["created_at"], zone=ZONE, pattern=TIME_PATTERN),
            "商机类型": opportunities["type"].map(DEAL_TYPES).fillna(opportunities["type"]),
            "商机来源": opportunities["lead_source"]
            .map(LEAD_SOURCES)
            .fillna(opportunities["lead_source"]),
            "赢率": opportunities["stage"].map(world.stages.probabilities).astype(int),
        }
    )
    empty = rng.random(len(deals)) < empty_amount_rate
    deals["金额"] = deals["金额"].where(~empty, "")
    log = pd.DataFrame(
        {
            "商机ID": changes["opportunity_id"],
            "变更时间": local_times(changes["changed_at"], zone=ZONE, pattern=TIME_PATTERN),
            "变更后阶段": changes["stage"].map(STAGE_LABELS),
        }
    )
    owners = world.tables["owners"]
    missing = str(opportunities["owner_id"].iloc[0])
    owners = owners[owners["owner_id"].ne(missing)]
    accounts = world.tables["accounts"]
    activities = world.tables["activities"]
    files = {
        DEALS_FILE: deals,
        "阶段变更记录.csv": log,
        "员工.csv": pd.DataFrame(
            {
                "姓名": owner_name(owners["owner_id"]),
                "部门": owners["team"].astype(str) + "部",
                "上级": owners["manager_id"],
            }
        ),
        "客户.csv": pd.DataFrame(
            {
                "客户名称": accounts["account_id"],
                "行业": accounts["industry"],
                "员工人数": accounts["employees"],
            }
        ),
        "跟进记录.csv": pd.DataFrame(
            {
                "商机ID": activities["opportunity_id"],
                "跟进时间": local_times(activities["occurred_at"], zone=ZONE, pattern=TIME_PATTERN),
                "跟进方式": activities["type"].map(FOLLOW_UPS),
            }
        ),
    }
    written = []
    for name, frame in files.items():
        path = out / name
        path.write_bytes(frame.to_csv(index=False, lineterminator="\r\n").encode(ENCODING))
        written.append(path)
    mess = FxiaokeMess(
        deals=len(deals),
        stage_changes=len(log),
        empty_amounts=int(empty.sum()),
        owner_missing=str(owner_name(pd.Series([missing])).iloc[0]),
        zone=ZONE,
        encoding=ENCODING,
    )
    (out / MESS_FILE).write_text(
        json.dumps(asdict(mess), indent=2, ensure_ascii=False), encoding="utf-8"
    )
    return written
