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

from features.errors import DealcastDataError

logger = logging.getLogger("dealcast")

Command = Callable[[argparse.Namespace], int]


def _generate(args: argparse.Namespace) -> int:
    from features.synthetic import format_facts, generate_world, measure_facts, write_world

    world = generate_world(n_opportunities=args.opportunities, seed=args.seed)
    paths = write_world(world, args.out, fmt=args.format)
    print(f"wrote {len(paths)} files to {args.out}")
    print(format_facts(measure_facts(world.tables, world.stages)))
    return 0


def _validate(args: argparse.Namespace) -> int:
    from features.loading import validate_export

    report = validate_export(args.data)
    print(report.format(max_per_check=args.max_per_check))
    return 0 if report.ok else 1


def _import_salesforce(args: argparse.Namespace) -> int:
    from features.importers.salesforce import import_salesforce

    report = import_salesforce(args.src, args.out)
    print(report.format())
    return 0


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
    generate.add_argument("--format", choices=("csv", "parquet"), default="csv")
    generate.set_defaults(run=_generate)

    validate = commands.add_parser("validate", help="check an export against the data contract")
    validate.add_argument("data", type=Path, help="export folder")
    validate.add_argument(
        "--max-per-check",
        type=int,
        default=20,
        help="violations listed per kind before the rest are counted",
    )
    validate.set_defaults(run=_validate)

    importer = commands.add_parser("import", help="convert a raw CRM export to the contract")
    sources = importer.add_subparsers(dest="source", required=True, metavar="SOURCE")
    salesforce = sources.add_parser("salesforce", help="a Salesforce export (CSV per object)")
    salesforce.add_argument("src", type=Path, help="folder of Salesforce object CSVs")
    salesforce.add_argument("--out", type=Path, required=True, help="contract export to write")
    salesforce.set_defaults(run=_import_salesforce)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    run: Command = args.run
    try:
        return run(args)
    except DealcastDataError as error:
        print(f"dealcast {args.command}: {error}", file=sys.stderr)
        return 1
