"""A deal's stage history rebuilt from per-stage entry and exit dates (a "wide" export).

Many CRMs export no history table, only one row per deal with, for every stage of the
pipeline, the time the deal entered it and the time it left it (HubSpot's `Date entered
"<stage>"` / `Date exited "<stage>"` calculated properties are the best-known case). Both
`dealcast import hubspot` and `dealcast import csv` with `history.kind = "wide"` rebuild the
history here, so the two never read the same dates two ways.

The rebuild is one history row per stage the deal entered, at its entry time, in time order:
skipped stages are absent and a return to an earlier stage is a regression, as they happened.
Such exports keep one entry per stage, so a stage entered twice shows its last entry only. The
deal's current stage is the one stage with an entry and no exit; an exit before its entry, an
exit from the current stage, or another stage without an exit is a problem naming the file,
column and row. A deal with no stage dates at all is one row at its creation, in its current
stage.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from features.importers.source_files import SourceTable


def rebuild_from_stage_dates(
    table: SourceTable,
    *,
    entered: Mapping[str, str],
    exited: Mapping[str, str],
    ids: pd.Series,
    current: pd.Series,
    current_column: str,
    created: pd.Series,
    keep: pd.Series,
) -> pd.DataFrame:
    """(opportunity_id, changed_at, stage) of every stage entry of the kept deals, time order.

    `entered` and `exited` map each stage (in pipeline order) to its column in `table`; a stage
    without an exit column has no exits to check. `current` is each deal's current stage (as
    stage names, read from `current_column`). Every inconsistency is a problem in `table`.
    """
    entries = {stage: table.timestamps(column).where(keep) for stage, column in entered.items()}
    exits = {stage: table.timestamps(column).where(keep) for stage, column in exited.items()}
    any_entry = pd.Series(False, index=current.index)
    for into in entries.values():
        any_entry |= into.notna()
    for stage, into in entries.items():
        out = exits.get(stage, pd.Series(pd.NaT, index=into.index))
        column = exited.get(stage, entered[stage])
        found = out.astype("string")
        add = table.problems.add_rows
        add(
            table.name,
            column,
            (out.notna() & into.isna()),
            "an exit only from a stage the deal entered (its entry date is empty)",
            found,
        )
        add(
            table.name,
            column,
            (out < into).fillna(False),
            "an exit at or after the stage's entry date",
            found,
        )
        is_current = current.eq(stage).fillna(False)
        add(
            table.name,
            column,
            is_current & out.notna(),
            f"no exit from the deal's current stage (its {current_column})",
            found,
        )
        if exited:  # an export that writes exits writes one for every stage left
            add(
                table.name,
                column,
                ~is_current & into.notna() & out.isna(),
                f"an exit date: only the current stage ({current_column}) has an entry without "
                "an exit",
                found,
            )
        add(
            table.name,
            entered[stage],
            is_current & into.isna() & any_entry,
            f"an entry date for the deal's current stage ({current_column}), since it has "
            "stage dates",
            into.astype("string"),
        )
    parts = [
        pd.DataFrame({"opportunity_id": ids, "changed_at": times, "stage": stage, "_order": i})
        for i, (stage, times) in enumerate(entries.items())
    ]
    parts.append(
        pd.DataFrame(
            {"opportunity_id": ids, "changed_at": created, "stage": current, "_order": -1}
        )[keep & ~any_entry]
    )
    history = pd.concat(parts, ignore_index=True)
    history = history[history["changed_at"].notna() & history["opportunity_id"].notna()]
    history = history.sort_values(["opportunity_id", "changed_at", "_order"], kind="stable")
    return history.drop(columns="_order").reset_index(drop=True)
