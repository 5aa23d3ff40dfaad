"""The intake's commands for starter.py: `serve` and `bulk`.

Heavy imports (the web service, rich) happen inside the handlers: starter.py imports this
module at start-up, and most commands need neither."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lethe.case import Reason
from lethe.settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def positive_rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid rate {text!r}: a number of cases per second, e.g. 20") from None
    if not 0 < rate <= 10000:
        raise argparse.ArgumentTypeError(f"invalid rate {text!r}: between 0 and 10000 cases per second")
    return rate


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    serve = commands.add_parser("serve", help="run the intake HTTP service: events, Okta hooks, SCIM provisioning")
    serve.add_argument("--host", help="override intake.host (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="override intake.port")
    serve.set_defaults(handler=cmd_serve)

    bulk = commands.add_parser("bulk", help="offboard everyone in a CSV file (column 'identifier' or 'email'), one case per row")
    bulk.add_argument("file", type=Path, help="CSV with a header row; see lethe/intake/README.md")
    bulk.add_argument("--reason", required=True, choices=[reason.value for reason in Reason])
    bulk.add_argument("--rate", type=positive_rate, help="cases started per second (default intake.bulk_rate)")
    bulk.set_defaults(handler=cmd_bulk)


async def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from lethe.intake import serve

    if args.host or args.port:
        settings = settings.model_copy(
            update={"intake": settings.intake.model_copy(update={k: v for k, v in (("host", args.host), ("port", args.port)) if v})}
        )
    return await serve.run(settings)


async def cmd_bulk(args: argparse.Namespace, settings: Settings) -> int:
    from rich.console import Console

    from lethe.intake.bulk import BulkFileError, read_bulk_file, start_cases
    from lethe.intake.bulk_report import progress_bar, summary
    from lethe.intake.cases import CaseDesk
    from lethe.temporal import connect

    err, out = Console(file=sys.stderr), Console(file=sys.stdout)
    try:
        parsed = read_bulk_file(args.file)
    except BulkFileError as exc:
        err.print(f"lethe: bulk: {exc}", markup=False, highlight=False)
        return EXIT_USAGE
    settings.pepper_bytes()  # fail on a missing pepper before the first row
    desk = CaseDesk(await connect(settings.temporal), settings)
    rate = args.rate or settings.intake.bulk_rate
    with progress_bar(err) as progress:
        task = progress.add_task("starting cases", total=len(parsed.rows))
        try:
            tally = await start_cases(desk, parsed.rows, Reason(args.reason), rate, lambda: progress.advance(task))
        except Exception as exc:  # noqa: BLE001 - its message could quote a row; the type is enough
            err.print(f"lethe: bulk stopped by {type(exc).__name__}; run the same file again to resume", markup=False)
            return EXIT_FAILED
    out.print(summary(tally, parsed.invalid))
    return EXIT_OK if not parsed.invalid and not tally.failed else EXIT_FAILED
