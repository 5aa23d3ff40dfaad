"""CLI commands for scheduled jobs and reporting; `starter.py` adds them with `add_commands(commands)`.

    python starter.py schedule apply                  create or update both schedules from config
    python starter.py schedule status                 state, counts, recent and next runs, UI links
    python starter.py schedule trigger|pause|unpause retention|reconcile [--note TEXT]
    python starter.py report [--since 30d] [--json]

Handlers follow starter.py's contract: `async def handler(args, settings) -> int`.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta

from temporalio.service import RPCError, RPCStatusCode

from lethe import report, schedules
from lethe.durations import parse_duration
from lethe.ledger import engine_for
from lethe.settings import Settings
from lethe.temporal import connect

EXIT_OK, EXIT_FAILED = 0, 1


def _duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    schedule = commands.add_parser("schedule", help="the retention and reconciliation schedules")
    actions = schedule.add_subparsers(dest="schedule_command", required=True)
    actions.add_parser("apply", help="create or update both schedules from config (idempotent)")
    actions.add_parser("status", help="state, counts, recent and next runs")
    for name, text in (
        ("trigger", "run now (skipped if a run is still going)"),
        ("pause", "stop firing until unpaused"),
        ("unpause", "fire again"),
    ):
        command = actions.add_parser(name, help=text)
        command.add_argument("which", choices=schedules.KINDS)
        if name != "trigger":
            command.add_argument("--note", default=None, help="why: shown in the Temporal UI")
    schedule.set_defaults(handler=cmd_schedule)

    summary = commands.add_parser("report", help="what Lethe did over a period, from the ledger")
    summary.add_argument("--since", type=_duration, default=timedelta(days=30), help="e.g. 30d, 12h (default 30d)")
    summary.add_argument("--json", action="store_true", help="machine-readable")
    summary.set_defaults(handler=cmd_report)


async def cmd_schedule(args: argparse.Namespace, settings: Settings) -> int:
    client = await connect(settings.temporal)
    try:
        if args.schedule_command == "apply":
            for applied in await schedules.apply(client, settings):
                verb = "created" if applied.created else "updated"
                print(f"{applied.schedule_id}: {verb} ({schedules.spec_of(settings, applied.kind).cron})")
                print(f"  {schedules.schedule_link(settings, applied.schedule_id)}")
            return EXIT_OK
        if args.schedule_command == "status":
            for kind in schedules.KINDS:
                try:
                    description = await schedules.handle(client, settings, kind).describe()
                except RPCError as exc:
                    if exc.status is not RPCStatusCode.NOT_FOUND:
                        raise
                    print(f"{schedules.spec_of(settings, kind).id} [{kind}]: not created; run `schedule apply`")
                    continue
                print("\n".join(schedules.describe_lines(settings, kind, description)))
            return EXIT_OK
        target = schedules.handle(client, settings, args.which)
        if args.schedule_command == "trigger":
            await target.trigger()
        elif args.schedule_command == "pause":
            await target.pause(note=args.note or "paused with `lethe schedule pause`")
        else:
            await target.unpause(note=args.note or "unpaused with `lethe schedule unpause`")
        print(f"{target.id}: {args.schedule_command} done")
        return EXIT_OK
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND and args.schedule_command != "apply":
            message = f"schedule {schedules.spec_of(settings, args.which).id} does not exist; run `schedule apply`"
        else:
            message = f"schedule {args.schedule_command}: {exc.message}"
        print(f"lethe: {message}", file=sys.stderr)
        return EXIT_FAILED


async def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    until = datetime.now(UTC)
    built = report.build(engine_for(settings.ledger.url), until - args.since, until, settings.policy.deadline)
    print(built.model_dump_json(indent=2) if args.json else report.to_text(built))
    return EXIT_OK
