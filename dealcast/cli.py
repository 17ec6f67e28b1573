"""The `dealcast` console script: one subcommand per job of DESIGN.md.

Each subcommand imports its package when it runs, so `dealcast validate` does not pay for
loading the modelling stack, and a failure names the input rather than printing a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from features.errors import DealcastError

if TYPE_CHECKING:
    from models.scoring import ExportScores
    from training.train import TrainConfig

logger = logging.getLogger("dealcast")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

Command = Callable[[argparse.Namespace], int]
# The synthetic world written as a CRM's own export (`dealcast generate --format NAME`).
CRM_FORMATS = ("hubspot", "pipedrive", "fxiaoke")


def _generate(args: argparse.Namespace) -> int:
    from features.synthetic import format_facts, generate_world, measure_facts, write_world
    from features.synthetic.salesforce import write_salesforce

    if args.messy and not args.salesforce:
        print("dealcast generate: --messy needs --salesforce", file=sys.stderr)
        return 2
    if args.salesforce and args.format in CRM_FORMATS:
        # A CRM-format export carries its own mess always; the two formats exclude each other.
        print(
            f"dealcast generate: --salesforce and --format {args.format}: choose one",
            file=sys.stderr,
        )
        return 2
    world = generate_world(
        n_opportunities=args.opportunities,
        seed=args.seed,
        months=args.months,
        signal_free=args.signal_free,
    )
    if args.format == "hubspot":
        from features.synthetic.hubspot import write_hubspot

        paths = write_hubspot(world, args.out)
        print(f"wrote a HubSpot export ({len(paths)} files) to {args.out}")
    elif args.format == "pipedrive":
        from features.synthetic.pipedrive import write_pipedrive

        paths = write_pipedrive(world, args.out)
        print(f"wrote a Pipedrive-like export ({len(paths)} files) to {args.out}")
    elif args.format == "fxiaoke":
        from features.synthetic.fxiaoke import write_fxiaoke

        paths = write_fxiaoke(world, args.out)
        print(f"wrote a Fxiaoke-like export ({len(paths)} files) to {args.out}")
    elif args.salesforce:
        paths = write_salesforce(world, args.out, messy=args.messy)
        kind = "a messy Salesforce export" if args.messy else "a Salesforce export"
        print(f"wrote {kind} ({len(paths)} files) to {args.out}")
    else:
        paths = write_world(world, args.out, fmt=args.format)
        print(f"wrote {len(paths)} files to {args.out}")
    print(format_facts(measure_facts(world.tables, world.stages)))
    return 0


def _validate(args: argparse.Namespace) -> int:
    from features.loading import validate_export

    report = validate_export(args.data, strict=args.strict)
    print(report.format(max_per_check=args.max_per_check))
    if args.report is not None:
        report.repairs.to_frame().to_csv(args.report, index=False)
        print(f"wrote {len(report.repairs)} repaired rows to {args.report}")
    return 0 if report.ok else 1


def _import_hubspot(args: argparse.Namespace) -> int:
    from features.importers.hubspot import import_hubspot

    report = import_hubspot(args.src, args.out, pipeline=args.pipeline, timezone=args.timezone)
    print(report.format())
    return 0


def _import_csv(args: argparse.Namespace) -> int:
    from features.importers.mapped_csv import import_csv

    print(import_csv(args.src, args.mapping, args.out).format())
    return 0


def _import_salesforce(args: argparse.Namespace) -> int:
    from features.importers.salesforce import import_salesforce

    report = import_salesforce(
        args.src, args.out, fiscal_year_start_month=args.fiscal_year_start_month
    )
    print(report.format())
    return 0


def _timestamp(text: str) -> object:
    import pandas as pd

    try:
        stamp = pd.Timestamp(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 date or time") from error
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _run_config(args: argparse.Namespace) -> TrainConfig:
    """A backtest's or a training run's settings: --config FILE, else the export's
    dealcast.toml, else the defaults; then the flags given on the command line."""
    from dealcast.config import load_config, with_settings

    config = load_config(args.config, data_dir=args.data)
    given = {
        flag: value
        for flag, value in (
            ("--quarters", args.quarters),
            ("--step", args.step),
            ("--folds", args.folds),
        )
        if value is not None
    }
    if "--quarters" in given and len(given) > 1:
        raise DealcastError("--quarters K means --step quarter --folds K: give one or the other")
    backtest: dict[str, object] = {"step": args.step, "folds": args.folds}
    if args.quarters is not None:
        backtest = {"step": "quarter", "folds": args.quarters}
    flags = {key: value for key, value in backtest.items() if value is not None}
    if flags:
        config = with_settings(config, {"backtest": flags}, source=", ".join(given))
    return config


def _backtest(args: argparse.Namespace) -> int:
    from dealcast.config import FILE_NAME, config_to_toml
    from features.loading import load_export
    from training.backtest import run_backtest
    from training.dataset import prepare
    from training.report import write_report

    config = _run_config(args)
    data = prepare(load_export(args.data), config=config.feature)
    result = run_backtest(data, config=config.backtest)
    files = write_report(result, args.out)
    # The report carries the settings that made it: `--config OUT/dealcast.toml` reruns it.
    (args.out / FILE_NAME).write_text(config_to_toml(config), encoding="utf-8")
    files.append(args.out / FILE_NAME)
    print(f"wrote {len(files)} files to {args.out}")
    print(_backtest_summary(result.metrics))
    return 0


def _backtest_summary(metrics: dict) -> str:
    data = metrics["data"]
    lines = [
        f"folds by {data.get('step', 'quarter')}: {', '.join(data.get('folds', []))} "
        f"({data['n_snapshots']} test snapshots)"
    ]
    repairs = data.get("repairs") or {}
    if repairs:
        lines.append("repaired on load: " + ", ".join(f"{kind} {n}" for kind, n in repairs.items()))
    lines.append("deal level (overall): brier / log loss / AUC")
    for block, target in (("deal", "won"), ("deal_in_period", "won_in_period")):
        for name, values in metrics[block].items():
            m = values["overall"]
            if m["n"] == 0:
                lines.append(f"  {target:14s} {name:24s} no outcome known yet (n=0)")
                continue
            lines.append(
                f"  {target:14s} {name:24s} {m['brier']:.4f} / {m['log_loss']:.4f} / "
                f"{(m['auc'] or float('nan')):.3f}  (n={m['n']})"
            )
    horizons = metrics.get("deal_by_horizon", {})
    if horizons:
        lines.append("P(won within horizon), Brier weighted for outcomes still open: model / "
                     "empirical stage weight")  # fmt: skip
        for horizon, block in horizons.items():
            model, stage = block["model"]["overall"], block["stage_weight_empirical"]["overall"]
            if model["n"] == 0:
                lines.append(f"  {horizon:14s} no outcome known yet")
                continue
            lines.append(
                f"  {horizon:14s} {model['brier']:.4f} / {stage['brier']:.4f}  (n={model['n']})"
            )
    lines.append("team-quarter revenue, median APE at week 8:")
    for name, values in metrics["period"].items():
        week8 = values["by_week"].get("8", {}).get("median_ape")
        lines.append(f"  {name:24s} {week8 if week8 is None else round(week8, 3)}")
    coverage = metrics["period"]["model"]["coverage_80"]
    n = metrics["period"]["model"]["n_team_quarters"]
    lines.append(f"attainment 80% interval coverage: {coverage} over {n} team-quarters")
    manual = metrics["deal"].get("manual_weight")
    if manual is not None:
        period = metrics["period"]["manual_weight"]
        typed = manual["on_typed"]
        lines.append(
            f"manual_weight: typed on {manual['n_typed']} of {manual['overall']['n']} snapshots "
            f"and {period['n_team_quarters_typed']} of {period['n_team_quarters']} team-quarters "
            f"(the others at {manual['fallback']}); Brier of won on the typed snapshots: "
            f"manual {typed['manual_weight']['brier']:.4f}, stage weight "
            f"{typed[manual['fallback']]['brier']:.4f}, model {typed['model']['brier']:.4f}"
        )
    return "\n".join(lines)


def _train(args: argparse.Namespace) -> int:
    from training.train import train

    outcome = train(args.data, cutoff=args.cutoff, config=_run_config(args))
    print(f"run {outcome.run_id}: registered dealcast version {outcome.version} as challenger")
    print(f"gate: {outcome.gate.summary}")
    print(f"champion: {outcome.champion_note}")
    print(_backtest_summary(outcome.metrics))
    return 0


def _promote(args: argparse.Namespace) -> int:
    from training.registry import configure, set_champion

    promotion = set_champion(configure(), str(args.version), reason=args.reason, force=args.force)
    print(
        f"champion: version {promotion.version} (was {promotion.previous or 'none'}); "
        f"reason recorded: {promotion.reason}"
    )
    return 0


def _score(args: argparse.Namespace) -> int:
    from dealcast.config import differing_settings, read_config
    from features.loading import load_export
    from models.bundle import load_scorer, model_uri
    from models.scoring import score_open_deals

    # A model scores with the settings it was trained with; a file is checked all the same,
    # and a feature setting it changes is named, since it cannot take effect.
    from training.registry import use_store

    loaded = read_config(args.config, data_dir=args.data)
    use_store()
    scorer = load_scorer(args.model)
    for section, trained in (
        ("features", scorer.bundle.plan.config),
        ("model", scorer.bundle.model.config),
    ):
        for key, value in differing_settings(loaded.settings, section, trained).items():
            logger.warning(
                "%s sets %s.%s = %r, but the model was trained with %r: the model's own "
                "settings are used",
                loaded.source,
                section,
                key,
                value,
                getattr(trained, key),
            )
    batch = score_open_deals(load_export(args.data), scorer, as_of=args.as_of)
    scores = batch.frame
    scores.to_csv(args.out, index=False)
    print(f"scored {len(scores)} open deals with {model_uri(args.model)} into {args.out}")
    if args.log is not None:
        _log_scores(batch, model=model_uri(args.model), directory=args.log)
    return 0


def _log_scores(batch: ExportScores, *, model: str, directory: Path) -> None:
    """Append a batch to the prediction log as the service appends what it answers."""
    from models.prediction_log import ModelStamp, PredictionColumns, PredictionLog
    from training.registry import resolve_model

    name, version, uri = resolve_model(model)
    log = PredictionLog(directory)
    log.append_columns(PredictionColumns.of_export(batch), ModelStamp(name, version, uri))
    log.close(timeout=None)
    if log.rows_failed:
        raise DealcastError(
            f"--log {directory}: {log.rows_failed} rows could not be written (see the log above)"
        )
    print(f"logged {log.rows_written} predictions of {uri} to {directory}")


def _monitor(args: argparse.Namespace) -> int:
    from features.loading import load_export
    from models.bundle import load_model
    from models.prediction_log import read_prediction_log
    from training.monitor import log_to_mlflow, models_of, monitor_report
    from training.monitor_html import write_monitor_report
    from training.registry import use_store

    if args.drift_days < 1:
        raise DealcastError(f"--drift-days: at least 1, got {args.drift_days}")
    rows = read_prediction_log(args.log)
    use_store()
    # Each logged model is judged with its own bundle: its plan's horizons and fiscal year,
    # and its training window's feature distributions for drift.
    bundles = {label: load_model(uri).bundle for label, uri in models_of(rows).items()}
    report = monitor_report(
        rows,
        load_export(args.data),
        bundles=bundles,
        drift_days=args.drift_days,
        log_dir=args.log,
        data_dir=args.data,
    )
    files = write_monitor_report(report, args.out, data_dir=args.data)
    run_id = log_to_mlflow(report, files)
    print(f"wrote {', '.join(str(f) for f in files)} (MLflow run {run_id})")
    print(_monitor_summary(report))
    return 0


def _monitor_summary(report: dict) -> str:
    lines = []
    for label, version in report["versions"].items():
        lines.append(f"{label}: {version['n_predictions']} predictions")
        for target, block in version["targets"].items():
            judged = block["forecasters"]
            briers = ", ".join(
                f"{name} {m['overall']['brier']:.4f}"
                for name, m in judged.items()
                if m["overall"]["brier"] is not None
            )
            lines.append(
                f"  {target:16s} known {block['n_known']}, pending {block['n_pending']}; "
                f"Brier: {briers or 'no outcome known yet'}"
            )
        drift = version["drift"]
        if drift["available"]:
            worst = ", ".join(
                f"{d['feature']} {d['psi']:.3f}"
                for d in drift["features"][:3]
                if d["psi"] is not None
            )
            lines.append(f"  drift (PSI, worst first): {worst}")
        else:
            lines.append(f"  drift unavailable: {drift['reason']}")
    return "\n".join(lines)


def _report(args: argparse.Namespace) -> int:
    from features.loading import load_export
    from models.bundle import load_scorer, model_uri
    from models.forecast_store import ForecastStore
    from models.monitor_summary import last_quarter
    from serving.page import build_manager_view, render_manager_page, teams_of
    from training.registry import use_store

    export = load_export(args.data)
    team = args.team
    if team is None:
        teams = teams_of(export)
        if not teams:
            print("dealcast report: the export has no team to report on", file=sys.stderr)
            return 1
        team = teams[0]
        print(f"no --team given: reporting on {team!r}, the first of {len(teams)} teams")
    use_store()
    scorer = load_scorer(args.model)
    # The forecasts are kept beside the export, as the service keeps its own
    # (models.forecast_store), so the page shows the change since the previous one.
    view = build_manager_view(
        export,
        scorer,
        team=team,
        as_of=args.as_of,
        model_uri=model_uri(args.model),
        store=ForecastStore.beside(args.data),
        last_quarter=last_quarter(args.data, team),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render_manager_page(view), encoding="utf-8")
    print(f"wrote the {view.period} page of {team!r} as of {view.as_of.isoformat()} to {args.out}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    from serving.settings import SettingsInvalid, load_settings

    if args.workers is not None and args.workers < 1:
        raise SettingsInvalid(f"--workers: at least 1, got {args.workers}")
    overrides = {
        name: value
        for name, value in (("host", args.host), ("port", args.port))
        if value is not None
    }
    settings = load_settings(**overrides)  # checked here, once, before a worker starts
    # Each worker process builds its own app, and its own model store watching the alias,
    # from the environment (serving.app.create_app): the flags reach it through it.
    os.environ.update({f"DEALCAST_{name.upper()}": str(value) for name, value in overrides.items()})
    workers = args.workers or os.cpu_count() or 1
    logger.info(
        "serving on %s:%s with %d worker process(es)", settings.host, settings.port, workers
    )
    uvicorn.run(
        "serving.app:create_app",
        factory=True,
        workers=workers,
        host=settings.host,
        port=settings.port,
        # The workers are fresh processes: they get main()'s logging as a config of their own.
        log_config=_worker_logging(logging.getLogger().level),
        http="serving.limits:H11WithHeaderDeadline",
        timeout_keep_alive=settings.header_timeout_seconds,
        limit_concurrency=settings.max_connections,
        timeout_graceful_shutdown=settings.shutdown_timeout_seconds,
    )
    return 0


def _worker_logging(level: int) -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": LOG_FORMAT}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
    }


def _page_link(args: argparse.Namespace) -> int:
    from serving.routes.page_links import link_url, page_secret
    from serving.sessions import LINK_AUDIENCE, grant_for, sign
    from serving.settings import load_settings

    settings = load_settings()  # the service's own environment: its secret and address
    hours = settings.page_link_hours if args.hours is None else args.hours
    try:
        grant = grant_for(args.team, hours=hours)
    except ValueError as error:
        print(f"dealcast page-link: {error}", file=sys.stderr)
        return 2
    token = sign(grant, secret=page_secret(settings), audience=LINK_AUDIENCE)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    base = args.base_url or settings.public_url or f"http://{host}:{settings.port}"
    print(link_url(base, token))
    print(f"opens {', '.join(grant.teams)} until {grant.expires.isoformat()}", file=sys.stderr)
    return 0


def _add_fold_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--step",
        default=None,
        metavar="auto|quarter|month",
        help="backtest fold length (default auto: quarters when 4 qualify, else months); "
        "overrides backtest.step of the config file",
    )
    parser.add_argument(
        "--folds",
        type=int,
        default=None,
        metavar="K",
        help="backtest folds (default 4 quarters, or up to 12 months); overrides "
        "backtest.folds of the config file",
    )
    parser.add_argument(
        "--quarters",
        type=int,
        default=None,
        metavar="K",
        help="the last K completed quarters (--step quarter --folds K); overrides the config file",
    )


def _add_config_option(parser: argparse.ArgumentParser, *, scoring: bool = False) -> None:
    what = (
        "checked; the model's own settings are used, and one it differs on is named"
        if scoring
        else "flags given here override it"
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help=(
            "settings file (TOML, see dealcast.example.toml); default: the export's "
            f"dealcast.toml if it has one; {what}"
        ),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dealcast",
        description="Win-probability and attainment forecasting for B2B sales.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    generate = commands.add_parser("generate", help="write a synthetic CRM export")
    generate.add_argument("--out", type=Path, required=True, help="folder to write")
    generate.add_argument("--opportunities", type=int, default=20_000, help="number of deals")
    generate.add_argument("--seed", type=int, default=1, help="random seed (same seed, same data)")
    generate.add_argument(
        "--format",
        choices=("csv", "parquet", *CRM_FORMATS),
        default="csv",
        help="the contract as csv or parquet, a HubSpot export (for `dealcast import hubspot`), "
        "or a Pipedrive-like or Fxiaoke-like export (for `dealcast import csv` with "
        "features/importers/mappings/pipedrive.toml or fxiaoke.toml)",
    )
    generate.add_argument(
        "--months",
        type=int,
        default=None,
        help="months of history (a young org); default three years",
    )
    generate.add_argument(
        "--signal-free",
        action="store_true",
        help="outcomes depend on the stage alone (no rep, activity, push, amount or source effect)",
    )
    generate.add_argument(
        "--salesforce",
        action="store_true",
        help="write Salesforce object CSVs (for `dealcast import salesforce`), not the contract",
    )
    generate.add_argument(
        "--messy",
        action="store_true",
        help="with --salesforce: inject a real export's mess, recorded in _mess.json",
    )
    generate.set_defaults(run=_generate)

    validate = commands.add_parser("validate", help="check an export against the data contract")
    validate.add_argument("data", type=Path, help="export folder")
    validate.add_argument(
        "--max-per-check",
        type=int,
        default=20,
        help="violations and repairs listed per kind before the rest are counted",
    )
    validate.add_argument(
        "--strict", action="store_true", help="refuse every repair (exit 1 if any was needed)"
    )
    validate.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="FILE",
        help="write every repaired row to FILE (CSV: kind, table, row, key, column, before, after)",
    )
    validate.set_defaults(run=_validate)

    importer = commands.add_parser("import", help="convert a raw CRM export to the contract")
    sources = importer.add_subparsers(dest="source", required=True, metavar="SOURCE")
    salesforce = sources.add_parser("salesforce", help="a Salesforce export (CSV per object)")
    salesforce.add_argument("src", type=Path, help="folder of Salesforce object CSVs")
    salesforce.add_argument("--out", type=Path, required=True, help="contract export to write")
    salesforce.add_argument(
        "--fiscal-year-start-month",
        type=int,
        choices=range(1, 13),
        default=None,
        metavar="1-12",
        help="first month of the fiscal year, labelling quota periods (default: the export's "
        "FiscalYearSettings, Period or Organization, else 1 = January)",
    )
    salesforce.set_defaults(run=_import_salesforce)
    hubspot = sources.add_parser("hubspot", help="a HubSpot export (deals, owners, companies, ...)")
    hubspot.add_argument("src", type=Path, help="folder of deals.csv and the other HubSpot CSVs")
    hubspot.add_argument("--out", type=Path, required=True, help="contract export to write")
    hubspot.add_argument(
        "--pipeline",
        default=None,
        metavar="NAME",
        help="the pipeline to import (required when the deals come from several)",
    )
    hubspot.add_argument(
        "--timezone",
        default="UTC",
        metavar="ZONE",
        help="the portal's time zone (IANA, e.g. America/New_York): HubSpot writes times in it "
        "without an offset; they are read in it and converted to UTC (default UTC)",
    )
    hubspot.set_defaults(run=_import_hubspot)
    mapped = sources.add_parser(
        "csv", help="any CRM's CSV export, through a mapping file (features/importers/mappings/)"
    )
    mapped.add_argument("src", type=Path, help="folder of the CRM's CSV files")
    mapped.add_argument(
        "--mapping",
        type=Path,
        required=True,
        metavar="TOML",
        help="the mapping of files, columns and values onto the contract",
    )
    mapped.add_argument("--out", type=Path, required=True, help="contract export to write")
    mapped.set_defaults(run=_import_csv)

    backtest = commands.add_parser("backtest", help="rolling-origin backtest against baselines")
    backtest.add_argument("--data", type=Path, required=True, help="export folder")
    backtest.add_argument("--out", type=Path, required=True, help="report folder to write")
    _add_fold_options(backtest)
    _add_config_option(backtest)
    backtest.set_defaults(run=_backtest)

    train = commands.add_parser("train", help="train, log to MLflow, register, maybe promote")
    train.add_argument("--data", type=Path, required=True, help="export folder")
    train.add_argument(
        "--cutoff",
        type=_timestamp,
        default=None,
        help="train on data up to this time (default: all of it)",
    )
    _add_fold_options(train)
    _add_config_option(train)
    train.set_defaults(run=_train)

    promote = commands.add_parser("promote", help="move the champion alias (override/rollback)")
    promote.add_argument("--version", type=int, required=True)
    promote.add_argument("--reason", required=True, help="recorded on the model version")
    promote.add_argument(
        "--force",
        action="store_true",
        help="promote a version the gate never judged (its training run was killed)",
    )
    promote.set_defaults(run=_promote)

    score = commands.add_parser("score", help="batch scores of every open deal of an export")
    score.add_argument("--data", type=Path, required=True, help="export folder")
    score.add_argument("--out", type=Path, required=True, help="CSV file to write")
    score.add_argument(
        "--as-of",
        type=_timestamp,
        default=None,
        help="score as of this time (default: the export's last change)",
    )
    score.add_argument(
        "--model",
        default=None,
        help="model URI (default: $DEALCAST_MODEL_URI or models:/dealcast@champion)",
    )
    score.add_argument(
        "--log",
        type=Path,
        default=None,
        metavar="DIR",
        help="also append the scores to this prediction log (as DEALCAST_PREDICTION_LOG=DIR "
        "does for the service), for `dealcast monitor`",
    )
    _add_config_option(score, scoring=True)
    score.set_defaults(run=_score)

    serve = commands.add_parser("serve", help="run the HTTP API (uvicorn, graceful shutdown)")
    serve.add_argument(
        "--host", default=None, help="address (default: $DEALCAST_HOST or 127.0.0.1)"
    )
    serve.add_argument(
        "--port", type=int, default=None, help="port (default: $DEALCAST_PORT or 8000)"
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes, each loading the model and watching the alias on its own "
        "(default: the machine's cores)",
    )
    serve.set_defaults(run=_serve)

    page_link = commands.add_parser(
        "page-link", help="a signed link that opens teams' pages in a browser"
    )
    page_link.add_argument(
        "--team", action="append", required=True, help="a team the link opens (repeatable)"
    )
    page_link.add_argument(
        "--hours",
        type=float,
        default=None,
        help="how long the link and its session last (default: $DEALCAST_PAGE_LINK_HOURS or 72)",
    )
    page_link.add_argument(
        "--base-url",
        default=None,
        help="the service's address as managers reach it (default: $DEALCAST_PUBLIC_URL, else "
        "http://HOST:PORT of the settings)",
    )
    page_link.set_defaults(run=_page_link)

    monitor = commands.add_parser(
        "monitor", help="logged predictions against later outcomes, and feature drift"
    )
    monitor.add_argument(
        "--log", type=Path, required=True, help="prediction log folder (DEALCAST_PREDICTION_LOG)"
    )
    monitor.add_argument(
        "--data", type=Path, required=True, help="an export newer than the predictions"
    )
    monitor.add_argument(
        "--out", type=Path, required=True, help="folder for monitor.json and monitor.html"
    )
    monitor.add_argument(
        "--drift-days",
        type=int,
        default=30,
        metavar="N",
        help="drift of the predictions of the last N days logged (by as_of; default 30)",
    )
    monitor.set_defaults(run=_monitor)

    report = commands.add_parser("report", help="the manager's page of a team as one HTML file")
    report.add_argument("--data", type=Path, required=True, help="export folder")
    report.add_argument("--out", type=Path, required=True, help="HTML file to write")
    report.add_argument(
        "--team", default=None, help="team to report on (default: the first alphabetically)"
    )
    report.add_argument(
        "--as-of",
        type=_timestamp,
        default=None,
        help="the page as of this time (default: the export's last change)",
    )
    report.add_argument(
        "--model",
        default=None,
        help="model URI (default: $DEALCAST_MODEL_URI or models:/dealcast@champion)",
    )
    report.set_defaults(run=_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format=LOG_FORMAT,
        stream=sys.stderr,
    )
    run: Command = args.run
    try:
        return run(args)
    except DealcastError as error:
        print(f"dealcast {args.command}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM during `train`
        print(f"dealcast {args.command}: interrupted ({interrupt or 'Ctrl-C'})", file=sys.stderr)
        return 130
