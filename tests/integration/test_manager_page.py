"""The manager's page on a real trained model: the view's numbers, the HTML's content and
self-containment, the CLI, and the page in a real headless Chromium at laptop and phone widths.

The model is the session's champion from `conftest.registry` (a generated world, trained and
registered in a temporary MLflow store). Screenshots go to $DEALCAST_SCREENSHOTS when set,
else to pytest's tmp folder; the path is printed (`pytest -s` shows it).

Chromium comes from the system packages (Debian `chromium`); the browser tests skip only
when it is absent and $CI is unset, so CI cannot pass without running them.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import mlflow
import numpy as np
import pandas as pd
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from dealcast.cli import main
from features.loading import CrmExport, load_export
from features.state import state_at
from models.bundle import load_scorer
from models.scoring import Scorer
from serving.page import (
    ManagerView,
    RepView,
    build_manager_view,
    render_manager_page,
    render_rep_page,
    teams_of,
)
from serving.page.render import status_sentence
from serving.page.view import AtRiskDeal, DriverLine, PageInputError
from tests.integration.conftest import Registry

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORTS = {"laptop": (1366, 900), "phone": (390, 844)}
SECTIONS = (
    "status",
    "status-sentence",
    "kpis",
    "fan-chart",
    "forecast-comparison",
    "coverage",
    "reps",
    "at-risk",
    "changes",
)
EXTERNAL = re.compile(r"""(?:src|href|action|srcset)\s*=\s*["']?\s*(?:[a-z]+:)?//""", re.I)


@dataclasses.dataclass(frozen=True)
class PagePieces:
    export: CrmExport
    scorer: Scorer
    view: ManagerView
    html: str
    uri: str


@pytest.fixture(scope="session")
def page_pieces(registry: Registry) -> PagePieces:
    """The first team's page at the end of the data, from the registered model."""
    uri = f"models:/dealcast/{registry.version}"
    mlflow.set_tracking_uri(registry.tracking_uri)
    mlflow.set_registry_uri(registry.tracking_uri)
    scorer = load_scorer(uri)
    export = load_export(registry.root / "world")
    view = build_manager_view(export, scorer, team=teams_of(export)[0], model_uri=uri)
    return PagePieces(export, scorer, view, render_manager_page(view), uri)


# --------------------------------------------------------------------------- the view


def test_quarter_quota_and_won_to_date_follow_the_export(page_pieces: PagePieces) -> None:
    export, view = page_pieces.export, page_pieces.view
    assert view.period_start <= view.as_of < view.period_end
    assert view.period == f"{view.period_start.year}-Q{(view.period_start.month - 1) // 3 + 1}"
    owners = set(export.owners.loc[export.owners["team"] == view.team, "owner_id"].astype(str))
    quotas = export.quotas[
        (export.quotas["period"] == view.period) & export.quotas["owner_id"].isin(owners)
    ]
    assert view.quota == pytest.approx(float(quotas["quota"].sum()))
    assert {r.owner_id for r in view.reps} == owners
    # Won to date, recomputed from the raw history: last row per deal, won in the quarter.
    history = export.history[export.history["changed_at"] <= view.as_of]
    last = history.sort_values("changed_at").groupby("opportunity_id").tail(1)
    deals = export.opportunities.set_index("opportunity_id")["owner_id"].astype(str)
    won = last[
        last["stage"].isin(export.stages.won_stages)
        & (last["changed_at"] >= view.period_start)
        & last["opportunity_id"].map(deals).isin(owners)
    ]
    assert view.won_to_date == pytest.approx(float(won["amount"].sum()))
    assert sum(r.won_to_date for r in view.reps) == pytest.approx(view.won_to_date)
    assert view.open_deals == sum(r.open_deals for r in view.reps) > 0


def test_attainment_forecasts_and_coverage_are_consistent(page_pieces: PagePieces) -> None:
    view = page_pieces.view
    a = view.attainment
    assert a is not None and a.status in ("green", "yellow", "red")
    assert 0 <= a.p_attain_low <= a.p_attain <= a.p_attain_high <= 1
    assert a.p10 <= a.p50 <= a.p90
    assert [f.name for f in view.forecasts] == [
        "model",
        "stage_weight_crm",
        "stage_weight_empirical",
        "commit",
    ]
    assert view.expected_revenue == pytest.approx(a.expected_revenue)
    for line in view.forecasts:
        assert line.value >= view.won_to_date - 1e-6
    c = view.coverage
    assert c is not None
    assert c.remaining_quota == pytest.approx(max(a.quota - view.won_to_date, 0))
    assert c.still_needed == pytest.approx(max(c.pipeline_needed - c.pipeline_in_period, 0))
    assert c.pipeline_in_period <= c.open_pipeline + 1e-6
    # One coverage: the pipeline closing this quarter over the remaining quota, as the
    # attainment result (and so /v1/attainment) has it.
    assert c.coverage == pytest.approx(a.coverage)
    if c.remaining_quota > 0:
        assert c.coverage == pytest.approx(min(c.pipeline_in_period / c.remaining_quota, 100))


def test_fan_ends_on_the_headline_and_grows_in_expectation(page_pieces: PagePieces) -> None:
    view = page_pieces.view
    a = view.attainment
    assert a is not None and view.fan
    last = view.fan[-1]
    assert last.at == view.period_end
    assert (last.p10, last.p50, last.p90) == (a.p10, a.p50, a.p90)
    expected = [view.won_to_date] + [p.expected for p in view.fan]
    assert np.all(np.diff(expected) >= -1e-6)
    for point in view.fan:
        assert view.won_to_date - 1e-6 <= point.p10 <= point.p50 <= point.p90
    assert [t for t, _ in view.won_path] == sorted(t for t, _ in view.won_path)
    assert view.won_path[-1] == (view.as_of, pytest.approx(view.won_to_date))


def test_at_risk_deals_are_ordered_and_explained(page_pieces: PagePieces) -> None:
    view = page_pieces.view
    assert view.at_risk, "a generated world always has flagged deals"
    values = [d.value_at_risk for d in view.at_risk]
    assert values == sorted(values, reverse=True)
    assert view.at_risk_value >= sum(values) - 1e-6
    for deal in view.at_risk:
        assert deal.risk_level in ("medium", "high") and deal.reasons
        assert deal.value_at_risk == pytest.approx(deal.amount * deal.win_in_period_probability)
        assert deal.drivers and all(d.sentence.endswith(".") for d in deal.drivers)
        directions = [d.direction for d in deal.drivers]
        assert directions == sorted(directions, key=lambda d: d != "lowers")
        for action in deal.actions:
            assert action.delta_probability > 0
    assert any(deal.actions for deal in view.at_risk)


def test_changes_of_the_last_week_match_the_history(page_pieces: PagePieces) -> None:
    export, view = page_pieces.export, page_pieces.view
    changes = view.changes
    assert changes.until == view.as_of
    assert changes.since == view.as_of - pd.Timedelta(days=7)
    owners = {r.owner_id for r in view.reps}
    created = export.opportunities[
        (export.opportunities["created_at"] > changes.since)
        & (export.opportunities["created_at"] <= changes.until)
        & export.opportunities["owner_id"].astype(str).isin(owners)
    ]
    assert {c.opportunity_id for c in changes.new} == set(created["opportunity_id"].astype(str))
    now = state_at(export.history, changes.until)
    before = state_at(export.history, changes.since)
    for change in changes.won + changes.lost:
        stage = str(now.at[change.opportunity_id, "stage"])
        stages = export.stages.won_stages if change.kind == "won" else export.stages.lost_stages
        assert stage in stages and changes.since < change.at <= changes.until
    for change in changes.pushed:
        assert before.at[change.opportunity_id, "close_date"] < view.period_end
        assert now.at[change.opportunity_id, "close_date"] >= view.period_end
    for change in changes.pulled_in:
        assert before.at[change.opportunity_id, "close_date"] >= view.period_end
        assert now.at[change.opportunity_id, "close_date"] < view.period_end
    assert changes.new or changes.won or changes.lost


def test_an_unknown_team_or_time_is_named_in_the_error(page_pieces: PagePieces) -> None:
    export, scorer = page_pieces.export, page_pieces.scorer
    with pytest.raises(PageInputError, match="'Nowhere'"):
        build_manager_view(export, scorer, team="Nowhere")
    with pytest.raises(PageInputError, match="before the export's first change"):
        build_manager_view(export, scorer, team=page_pieces.view.team, as_of="1990-01-01")


# --------------------------------------------------------------------------- the HTML


def test_the_page_says_what_the_view_says(page_pieces: PagePieces) -> None:
    view, text = page_pieces.view, page_pieces.html
    a = view.attainment
    assert a is not None
    assert text.startswith("<!doctype html>")
    sentence = status_sentence(view)
    assert html.escape(sentence) in text
    if a.remaining_quota > 0:
        assert f"{100 * a.p_attain:.0f}% chance of reaching its {view.period} quota" in sentence
    else:
        assert f"has reached its {view.period} quota" in sentence
    assert f'data-status="{a.status}"' in text
    for line in view.forecasts:
        assert f"{line.value:,.0f}" in text
    for deal in view.at_risk:
        assert f'data-opportunity="{deal.opportunity_id}"' in text
    assert text.count('data-testid="at-risk-deal"') == len(view.at_risk)
    assert "What changed since last week" in text
    assert view.coverage is not None and f"{view.coverage.pipeline_needed:,.0f}" in text
    for rep in view.reps:
        assert f'data-owner="{rep.owner_id}"' in text


def test_the_page_says_how_often_the_range_held_in_the_backtest(page_pieces: PagePieces) -> None:
    # The 80% range (P10-P90) is worth what the backtest measured it at: the page says so,
    # with the figures the registered bundle carries from its backtest.
    backtest = page_pieces.scorer.bundle.metadata["backtest"]
    coverage = backtest["period.model.coverage_80"]
    quarters = int(backtest["period.model.coverage_80_team_quarters"])
    assert quarters > 0
    assert page_pieces.view.model.range_coverage == pytest.approx(coverage)
    assert (
        f"In the backtest the 80% range held the actual revenue in {100 * coverage:.0f}% of "
        f"{quarters} team-quarters." in html.unescape(page_pieces.html)
    )


def test_the_page_is_self_contained(page_pieces: PagePieces) -> None:
    text = page_pieces.html
    assert EXTERNAL.search(text) is None
    assert "http://" not in text and "https://" not in text
    # One script element, and it is data (the forecast route's JSON), never run.
    assert text.lower().count("<script") == 1
    assert '<script type="application/json" id="dealcast-forecast">' in text
    assert "<link" not in text.lower()
    assert "@import" not in text and "url(" not in text


def test_the_service_links_each_rep_and_the_file_links_none(page_pieces: PagePieces) -> None:
    """A file written alone has no rep pages beside it: its rep names are text. The page the
    service serves links each name to the rep's page, relatively, and differs in nothing else;
    a rep id that tries to inject markup stays text, and its link stays in the path."""
    view, plain = page_pieces.view, page_pieces.html
    linked = render_manager_page(view, rep_pages=True)
    assert "<a " not in plain
    links = re.findall(r'<th scope="row"><a href="([^"]+)">([^<]+)</a></th>', linked)
    assert sorted(owner for _, owner in links) == sorted(r.owner_id for r in view.reps)
    stamp = quote(view.as_of.isoformat(), safe="")
    for href, owner in links:
        assert href == f"reps/{quote(owner, safe='')}/page?as_of={stamp}"
    assert re.sub(r'<a href="[^"]+">([^<]+)</a>', r"\1", linked) == plain
    attack = '"><img src=x onerror="alert(1)">/../../x'
    hostile = dataclasses.replace(
        view, reps=(dataclasses.replace(view.reps[0], owner_id=attack), *view.reps[1:])
    )
    text = render_manager_page(hostile, rep_pages=True)
    assert "<img" not in text
    assert f'<a href="reps/{quote(attack, safe="")}/page?as_of={stamp}">' in text


def _rep_view(view: ManagerView, **changes: Any) -> RepView:
    """A rep's view from the team view's own pieces (no scoring): its first rep's row, the
    team's forecast lines and at-risk deals standing in for the rep's."""
    values: dict[str, Any] = {
        "team": view.team,
        "owner_id": view.reps[0].owner_id,
        "period": view.period,
        "period_start": view.period_start,
        "period_end": view.period_end,
        "as_of": view.as_of,
        "rep": view.reps[0],
        "forecasts": view.forecasts,
        "deals": view.at_risk,
        "model": view.model,
        "team_commit_hit_rate": view.team_commit_hit_rate,
    }
    return RepView(**{**values, **changes})


def test_a_reps_page_escapes_its_data_and_says_what_it_lacks(page_pieces: PagePieces) -> None:
    view = page_pieces.view
    attack = '"><img src=x onerror="alert(1)"><script>alert(1)</script>'
    deal = dataclasses.replace(view.at_risk[0], opportunity_id=attack, reasons=(attack,))
    text = render_rep_page(
        _rep_view(
            view,
            team=attack,
            owner_id=attack,
            rep=dataclasses.replace(view.reps[0], owner_id=attack),
            deals=(deal, dataclasses.replace(view.at_risk[1], reasons=(), risk_level="low")),
        )
    )
    assert "<script" not in text and "<img" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert EXTERNAL.search(text) is None
    assert '<a href="../../page?as_of=' in text  # back to the team page, relative
    assert text.count("Why it is flagged") == 1 and "Not flagged." in text
    # Without a quota, deals or a closed Commit call the page says so instead of a number.
    rep = dataclasses.replace(
        view.reps[0], quota=None, attainment=None, gap=None, commit_hit_rate=None
    )
    bare = render_rep_page(_rep_view(view, rep=rep, deals=(), team_commit_hit_rate=None))
    assert 'data-status="none"' in bare and "No quota is set for" in bare
    assert "Without a quota there is no gap to cover" in bare
    assert "has no open deal" in bare and "there is no rate" in bare


def _hostile(view: ManagerView) -> ManagerView:
    """The view with data that tries to inject markup, in every kind of text field."""
    attack = '"><img src=x onerror="document.title=\'owned\'"><script>alert(1)</script>'
    deal = dataclasses.replace(
        view.at_risk[0],
        opportunity_id=attack,
        owner_id=attack,
        stage=attack,
        reasons=(attack,),
        drivers=(DriverLine(factor="x", direction="lowers", sentence=attack),),
        trend=attack,
    )
    at_risk: tuple[AtRiskDeal, ...] = (deal, *view.at_risk[1:])
    data = json.dumps({"team": f"</script>{attack}"})
    return dataclasses.replace(view, team=attack, at_risk=at_risk, forecast_json=data)


def test_every_text_from_data_is_escaped(page_pieces: PagePieces) -> None:
    text = render_manager_page(_hostile(page_pieces.view))
    assert "<script>" not in text and "<img" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    # The data block cannot be closed from inside: its JSON still reads back whole.
    assert text.count("</script>") == 1
    block = text.split('id="dealcast-forecast">')[1].split("</script>")[0]
    assert json.loads(block)["team"].startswith("</script>")


def test_a_team_without_quota_gets_forecasts_without_a_status(page_pieces: PagePieces) -> None:
    view = page_pieces.view
    reps = tuple(dataclasses.replace(r, quota=None, attainment=None, gap=None) for r in view.reps)
    text = render_manager_page(
        dataclasses.replace(view, quota=None, attainment=None, coverage=None, reps=reps)
    )
    assert 'data-status="none"' in text and "No quota is set for" in text
    assert f"{view.expected_revenue:,.0f}" in text
    assert "Without a quota there is no gap to cover" in text


# --------------------------------------------------------------------------- the CLI


def test_report_command_writes_the_page(
    registry: Registry,
    page_pieces: PagePieces,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.tracking_uri)
    out = tmp_path / "page" / "team.html"
    code = main(
        [
            "report",
            "--data",
            str(registry.root / "world"),
            "--out",
            str(out),
            "--model",
            page_pieces.uri,
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert f"reporting on {page_pieces.view.team!r}, the first of" in printed
    assert out.read_text(encoding="utf-8").startswith("<!doctype html>")
    as_of = (page_pieces.view.as_of - pd.Timedelta(days=30)).isoformat()
    code = main(
        [
            "report",
            "--data",
            str(registry.root / "world"),
            "--out",
            str(tmp_path / "earlier.html"),
            "--team",
            teams_of(page_pieces.export)[-1],
            "--as-of",
            as_of,
            "--model",
            page_pieces.uri,
        ]
    )
    assert code == 0
    assert (
        main(
            [
                "report",
                "--data",
                str(registry.root / "world"),
                "--out",
                str(tmp_path / "nope.html"),
                "--team",
                "Nowhere",
                "--model",
                page_pieces.uri,
            ]
        )
        == 1
    )
    assert "'Nowhere'" in capsys.readouterr().err


# --------------------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium driven by Playwright (no downloaded browser); Playwright starts it
    with a new, empty profile folder of its own."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"Chromium is required in CI and is not at {CHROMIUM}")
        pytest.skip("Chromium is not installed (apt-get install chromium); CI runs this")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("DEALCAST_SCREENSHOTS")
    folder = Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nmanager page screenshots: {folder}")
    return folder


def _open(browser: Browser, path: Path, size: tuple[int, int]) -> tuple[Page, list[str], list[str]]:
    """The page opened from disk, with its console errors and every request it made."""
    context = browser.new_context(viewport={"width": size[0], "height": size[1]})
    page = context.new_page()
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri(), wait_until="load")
    return page, errors, requests


@pytest.mark.parametrize("device", sorted(VIEWPORTS))
def test_the_page_in_chromium(
    browser: Browser,
    page_pieces: PagePieces,
    screenshots: Path,
    tmp_path: Path,
    device: str,
) -> None:
    path = tmp_path / "page.html"
    path.write_text(page_pieces.html, encoding="utf-8")
    page, errors, requests = _open(browser, path, VIEWPORTS[device])
    try:
        assert errors == []
        assert requests == [path.as_uri()], "the page must not fetch anything"
        for testid in SECTIONS:
            assert page.get_by_test_id(testid).first.is_visible(), testid
        assert page.get_by_test_id("at-risk-deal").count() == len(page_pieces.view.at_risk)
        assert page.locator("h1").count() == 1 and page.locator("h2").count() >= 7
        assert page.locator("table th[scope]").count() > 0
        badge = page.get_by_test_id("status-badge").first.inner_text()
        assert " ".join(badge.split()) in ("✓ On track", "! At risk", "✕ Off track")
        wide, narrow = (
            page.get_by_test_id("fan-chart-wide"),
            page.get_by_test_id("fan-chart-narrow"),
        )
        assert wide.is_visible() == (device == "laptop")
        assert narrow.is_visible() == (device == "phone")
        scroll_width, inner_width = page.evaluate(
            "[document.documentElement.scrollWidth, window.innerWidth]"
        )
        assert scroll_width <= inner_width, f"horizontal overflow at {device} width"
        page.screenshot(path=str(screenshots / f"manager-page-{device}.png"), full_page=True)
        page.screenshot(path=str(screenshots / f"manager-page-{device}-top.png"))
    finally:
        page.context.close()


def test_hostile_data_stays_text_in_chromium(
    browser: Browser, page_pieces: PagePieces, tmp_path: Path
) -> None:
    path = tmp_path / "hostile.html"
    path.write_text(render_manager_page(_hostile(page_pieces.view)), encoding="utf-8")
    page, errors, requests = _open(browser, path, VIEWPORTS["laptop"])
    try:
        assert errors == [] and requests == [path.as_uri()]
        assert page.locator("img").count() == 0
        assert page.locator('script:not([type="application/json"])').count() == 0
        assert page.title() != "owned"
        assert "<script>alert(1)</script>" in page.get_by_test_id("title").inner_text()
    finally:
        page.context.close()
