"""`dealcast report` keeps its forecasts beside the export, and the page it writes shows the
change since the previous one (the deviation review) and the manager's weight beside the
other forecasts, in a real Chromium."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from playwright.sync_api import Browser

from dealcast.cli import main
from features.loading import load_export
from features.state import state_at
from models.forecast_store import ForecastStore
from tests.integration.conftest import Registry
from tests.integration.test_manager_page import _open, browser  # noqa: F401 (a fixture)
from tests.integration.test_team_forecast import _earlier_in_quarter


def _typed_team(data: Path) -> tuple[str, pd.Timestamp]:
    """A team with open deals carrying a typed probability at the end of the data."""
    export = load_export(data)
    end = pd.Timestamp(export.history["changed_at"].max())
    states = state_at(export.history, end)
    open_typed = states[
        states["stage"].isin(export.stages.open_stages) & states["manual_probability"].notna()
    ]
    owners = export.opportunities.set_index(export.opportunities["opportunity_id"].astype(str))
    teams = export.owners.set_index("owner_id")["team"]
    team_of = owners.loc[open_typed.index, "owner_id"].map(teams)
    return str(sorted(team_of.unique())[0]), end


def test_report_keeps_forecasts_and_the_page_shows_the_review(
    registry: Registry,
    browser: Browser,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.tracking_uri)
    data = tmp_path / "world"
    shutil.copytree(registry.root / "world", data, ignore=shutil.ignore_patterns(".dealcast"))
    team, end = _typed_team(data)
    uri = f"models:/dealcast/{registry.version}"

    def report(as_of: pd.Timestamp, out: Path) -> None:
        code = main(
            ["report", "--data", str(data), "--out", str(out), "--team", team,
             "--as-of", as_of.isoformat(), "--model", uri]
        )  # fmt: skip
        assert code == 0

    earlier = _earlier_in_quarter(end)
    report(earlier, tmp_path / "earlier.html")
    report(end, tmp_path / "later.html")
    records = ForecastStore.beside(data).records()
    owners = {r.owner_id for r in records}
    assert None in owners and len(owners) > 1  # the team's and each rep's
    assert len(records) == 2 * len(owners)
    assert {r.as_of for r in records} == {earlier, end}

    page, errors, _ = _open(browser, tmp_path / "later.html", (1366, 900))
    try:
        assert errors == []
        section = page.get_by_test_id("forecast-review")
        assert section.is_visible()
        team_line = section.locator("li[data-owner]").first
        assert "since the forecast as of" in team_line.inner_text()
        assert earlier.strftime("%d %b %Y") in team_line.inner_text()
        moved = page.get_by_test_id("review-deals").locator("tbody tr")
        assert moved.count() > 0
        comparison = page.get_by_test_id("forecast-comparison")
        assert "Manager's weight" in comparison.inner_text()
    finally:
        page.context.close()
    first, _, _ = _open(browser, tmp_path / "earlier.html", (1366, 900))
    try:
        text = first.get_by_test_id("forecast-review").inner_text()
        assert "No earlier forecast of this quarter is kept." in text
    finally:
        first.context.close()
