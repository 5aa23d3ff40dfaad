"""The Lethe CLI: start, watch and prove cases.

    python starter.py forget IDENTIFIER --reason leaver [--grace 30d] [--wait]
    python starter.py status ID            (ID: workflow id, subject ref or identifier)
    python starter.py certificate ID [--format json|md] [--verify]
    python starter.py escalations
    python starter.py resolve ID --system NAME --action retry|confirm|skip --note TEXT --operator NAME
    python starter.py approve ID --operator NAME [--note TEXT]
    python starter.py hold|release ID [--system NAME]      legal holds
    python starter.py rehire ID                            end a case in its grace period
    python starter.py breaker status|release|allow ...      the deletion circuit breaker
    python starter.py audit verify                         check the audit log's hash chain
    python starter.py serve                                the intake service (webhooks, Okta, SCIM)
    python starter.py bulk FILE.csv --reason leaver [--rate N]   one case per row
    python starter.py schedule apply|status|trigger|pause|unpause   retention and reconciliation
    python starter.py report [--since 30d]                  cases, deadlines, escalations, purges
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from datetime import UTC, datetime, timedelta

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from lethe import audit, breaker
from lethe.case import DECISION_ACTIONS, Approval, DryRunReport, CaseProgress, CaseStatus, Decision, Reason, Stage
from lethe.certificate import Certificate, to_markdown
from lethe.durations import parse_duration
from lethe.intake.cli import add_commands as add_intake_commands
from lethe.retention_cli import add_commands as add_retention_commands
from lethe.ledger import engine_for, latest_certificate, store_identifier
from lethe.logs import configure_logging
from lethe.planning import forget_input
from lethe.process import exit_now
from lethe.settings import ConfigError, Settings, load_settings
from lethe.start import start_case
from lethe.subject import is_subject_ref, normalize_identifier, ref_from_workflow_id, subject_ref, workflow_id
from lethe.temporal import DEADLINE, PENDING_SYSTEMS, STATUS, connect
from workflows.dry_run import DryRun
from workflows.forget import ForgetSubject

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ESCALATED = 0, 1, 2, 3
WAIT_POLL_SECONDS = 1.0


class CliError(Exception):
    """A problem the operator can fix; printed as one line, exit code 1."""


def resolve_ref(settings: Settings, text: str) -> str:
    """A workflow id, a subject ref, or an identifier (hashed here, never sent anywhere)."""
    return ref_from_workflow_id(text) or (text if is_subject_ref(text) else subject_ref(settings.pepper_bytes(), text))


def identifier_arg(text: str) -> str:
    try:
        normalize_identifier(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def duration_arg(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def print_certificate_summary(certificate: Certificate) -> None:
    print(f"certificate {certificate.certificate_id}: {certificate.status}")
    for system in certificate.systems:
        detail = f" ({system.error})" if system.error else ""
        print(f"  {system.name:<16} {system.outcome}{detail}")


def print_progress(progress: CaseProgress, wf_id: str, settings: Settings) -> None:
    print(f"case {wf_id}: {progress.status.value} (reason {progress.reason.value}, requested {progress.requested_at:%Y-%m-%d %H:%M} UTC)")
    if progress.grace_until:
        print(f"  grace until {progress.grace_until:%Y-%m-%d %H:%M} UTC")
    for system in progress.systems:
        detail = f"  {system.error}" if system.error else ""
        print(f"  {system.name:<16} {system.stage.value:<12} {len(system.accounts)} account(s){detail}")
    print(f"  {settings.temporal.workflow_link(wf_id)}")


async def dry_run(client: Client, settings: Settings, identifier: str, reason: Reason) -> DryRunReport:
    """What forgetting would do, changing nothing; the identifier is destroyed afterwards."""
    ref = subject_ref(settings.pepper_bytes(), identifier)
    store_identifier(engine_for(settings.ledger.url), ref, identifier.strip())
    return await client.execute_workflow(
        DryRun.run,
        forget_input(settings, ref, reason, datetime.now(UTC)),
        id=f"dryrun-{ref}-{uuid.uuid4().hex[:8]}",
        task_queue=settings.temporal.task_queue,
        static_summary=f"Dry run for subject {ref[:12]}…: reads only",
    )


def print_dry_run(report: DryRunReport) -> None:
    print(f"dry run for subject {report.subject_ref}: nothing was changed")
    for part in report.systems + report.residual:
        count = "" if part.count is None else f"{part.count} {'row(s)' if part in report.residual else 'account(s)'}"
        would = ", ".join(part.would) if part.would else "nothing"
        print(f"  {part.name:<16} {count:<14} would: {would}" + (f"  ({part.note})" if part.note else ""))


async def cmd_forget(args: argparse.Namespace, settings: Settings) -> int:
    client = await connect(settings.temporal)
    if args.dry_run:
        print_dry_run(await dry_run(client, settings, args.identifier, Reason(args.reason)))
        return EXIT_OK
    handle = await start_case(client, settings, args.identifier, Reason(args.reason), args.grace)
    print(handle.id)
    print(f"watch: {settings.temporal.workflow_link(handle.id)}")
    if not args.wait:
        return EXIT_OK
    return await wait_for_outcome(handle, settings)


async def wait_for_outcome(handle: WorkflowHandle[ForgetSubject, Certificate], settings: Settings) -> int:
    """Until the case ends (0 completed, 1 cancelled/aborted/failed) or needs a person (3)."""
    while True:
        description = await handle.describe()
        if description.status is not WorkflowExecutionStatus.RUNNING:
            try:
                certificate = await handle.result()
            except WorkflowFailureError as exc:
                print(f"case {handle.id} ended without a certificate: {exc.cause or exc}", file=sys.stderr)
                return EXIT_FAILED
            print_certificate_summary(certificate)
            return EXIT_OK if certificate.all_confirmed else EXIT_FAILED
        progress = await handle.query(ForgetSubject.progress)
        if progress.status is CaseStatus.ESCALATED:
            print_escalated(progress, handle.id, settings)
            return EXIT_ESCALATED
        await asyncio.sleep(WAIT_POLL_SECONDS)


def print_escalated(progress: CaseProgress, wf_id: str, settings: Settings) -> None:
    print(f"case {wf_id} is escalated and waits for an operator:")
    for system in progress.systems:
        if system.stage is Stage.ESCALATED:
            print(f"  {system.name}: {system.escalation}: {system.error}")
            print(
                f"    python starter.py resolve {wf_id} --system {system.name} "
                "--action retry|confirm|skip --note '...' --operator '...'"
            )
    print(f"  {settings.temporal.workflow_link(wf_id)}")


async def cmd_escalations(args: argparse.Namespace, settings: Settings) -> int:
    client = await connect(settings.temporal)
    query = f'WorkflowType = "ForgetSubject" AND {STATUS.name} = "escalated" AND ExecutionStatus = "Running"'
    count = 0
    async for execution in client.list_workflows(query):
        attributes = execution.typed_search_attributes
        pending = ", ".join(attributes.get(PENDING_SYSTEMS) or [])
        deadline = attributes.get(DEADLINE)
        print(f"{execution.id}  pending: {pending or '?'}  deadline: {deadline:%Y-%m-%d}" if deadline else f"{execution.id}  pending: {pending}")
        count += 1
    print(f"{count} escalated case(s)")
    return EXIT_OK


async def send_update(settings: Settings, case_id: str, update: str, arg: object) -> int:
    client = await connect(settings.temporal)
    handle = client.get_workflow_handle(workflow_id(resolve_ref(settings, case_id)))
    try:
        result = await handle.execute_update(update, arg, result_type=str)
    except WorkflowUpdateFailedError as exc:
        raise CliError(f"refused: {exc.cause.message if isinstance(exc.cause, ApplicationError) else exc.cause}") from None
    except RPCError as exc:
        raise CliError(f"cannot reach case {handle.id}: {exc.message}") from None
    print(result)
    return EXIT_OK


async def cmd_resolve(args: argparse.Namespace, settings: Settings) -> int:
    decision = Decision(system=args.system, action=args.action, note=args.note, operator=args.operator, account_id=args.account)
    return await send_update(settings, args.id, "resolve", decision)


async def cmd_approve(args: argparse.Namespace, settings: Settings) -> int:
    return await send_update(settings, args.id, "approve", Approval(operator=args.operator, note=args.note))


async def cmd_signal(args: argparse.Namespace, settings: Settings) -> int:
    client = await connect(settings.temporal)
    handle = client.get_workflow_handle(workflow_id(resolve_ref(settings, args.id)))
    signal_args = [] if args.command == "rehire" else [args.system]
    try:
        await handle.signal(args.command, args=signal_args)
    except RPCError as exc:
        raise CliError(f"cannot reach case {handle.id}: {exc.message}") from None
    print(f"{args.command} sent to {handle.id}")
    return EXIT_OK


async def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    ref = resolve_ref(settings, args.id)
    client = await connect(settings.temporal)
    handle = client.get_workflow_handle_for(ForgetSubject.run, workflow_id(ref))
    try:
        progress = await handle.query(ForgetSubject.progress)
    except RPCError as exc:
        stored = latest_certificate(engine_for(settings.ledger.url), ref)
        if stored is None:
            raise CliError(f"no case for {workflow_id(ref)}: {exc.message}") from None
        print_certificate_summary(Certificate.model_validate_json(stored.body))
        return EXIT_OK
    print_progress(progress, handle.id, settings)
    if args.wait:
        return await wait_for_outcome(handle, settings)
    return EXIT_OK


async def cmd_certificate(args: argparse.Namespace, settings: Settings) -> int:
    ref = resolve_ref(settings, args.id)
    stored = latest_certificate(engine_for(settings.ledger.url), ref)
    if stored is None:
        raise CliError(f"no certificate for {workflow_id(ref)} yet (see `status`)")
    certificate = Certificate.model_validate_json(stored.body)
    if args.verify:
        valid = certificate.verify(settings.certificate_key_bytes())
        print(f"certificate {certificate.certificate_id}: signature {'valid' if valid else 'INVALID'}")
        return EXIT_OK if valid else EXIT_FAILED
    print(certificate.model_dump_json(indent=2) if args.format == "json" else to_markdown(certificate))
    return EXIT_OK


async def cmd_breaker(args: argparse.Namespace, settings: Settings) -> int:
    ledger = engine_for(settings.ledger.url)
    if args.breaker_command == "status":
        rows = breaker.status(ledger)
        for scope, tripped, count, allowance in rows:
            name = "fleet" if scope == breaker.FLEET else scope
            print(f"{name:<16} {'TRIPPED' if tripped else 'closed':<8} {count} deletion(s) this hour, allowance +{allowance}")
        if not rows:
            print("no deletions yet: every breaker is closed")
        return EXIT_OK
    scope = breaker.FLEET if args.fleet else args.system
    if scope != breaker.FLEET and scope not in {system.name for system in settings.systems}:
        raise CliError(f"unknown system {scope!r}")
    if args.breaker_command == "release":
        breaker.release(ledger, scope, args.operator, args.note)
        print(f"breaker for {scope} released by {args.operator}")
    else:
        try:
            breaker.allow(ledger, scope, args.count, args.operator, args.note)
        except ValueError as exc:
            raise CliError(str(exc)) from None
        print(f"breaker for {scope}: {args.count} more deletion(s) allowed this hour by {args.operator}")
    return EXIT_OK


async def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    ok, summary = audit.verify(engine_for(settings.ledger.url))
    print(f"audit log: {summary}" if ok else f"audit log BROKEN: {summary}")
    return EXIT_OK if ok else EXIT_FAILED


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="lethe", description="Forget a person everywhere, and prove it.")
    commands = root.add_subparsers(dest="command", required=True)

    forget = commands.add_parser("forget", help="start (or join) the case of one person")
    forget.add_argument("identifier", type=identifier_arg, help="the person's identifier (email, userName or externalId)")
    forget.add_argument("--reason", required=True, choices=[reason.value for reason in Reason])
    forget.add_argument("--grace", type=duration_arg, help="override the reason's grace period, e.g. 30d, 12h, 0")
    forget.add_argument("--wait", action="store_true", help="wait for the certificate")
    forget.add_argument("--dry-run", action="store_true", help="show what would be done, change nothing")
    forget.set_defaults(handler=cmd_forget)

    escalations = commands.add_parser("escalations", help="list the cases waiting for an operator")
    escalations.set_defaults(handler=cmd_escalations)

    resolve = commands.add_parser("resolve", help="decide on an escalated system of a case")
    resolve.add_argument("id", type=identifier_arg, help="workflow id, subject ref, or the person's identifier")
    resolve.add_argument("--system", required=True)
    resolve.add_argument("--action", required=True, choices=list(DECISION_ACTIONS))
    resolve.add_argument("--note", required=True, help="why: kept as evidence in the certificate")
    resolve.add_argument("--operator", required=True, help="who decides: kept as evidence")
    resolve.add_argument("--account", help="with --action retry: act on this account id only")
    resolve.set_defaults(handler=cmd_resolve)

    approve = commands.add_parser("approve", help="approve an erasure request waiting for approval")
    approve.add_argument("id", type=identifier_arg)
    approve.add_argument("--operator", required=True)
    approve.add_argument("--note", default="")
    approve.set_defaults(handler=cmd_approve)

    for name, text in (("hold", "put a legal hold on erasure"), ("release", "release a legal hold")):
        command = commands.add_parser(name, help=f"{text} (one system, or all)")
        command.add_argument("id", type=identifier_arg)
        command.add_argument("--system", help="only this system (default: all)")
        command.set_defaults(handler=cmd_signal)
    rehire = commands.add_parser("rehire", help="end a case in its grace period without deleting anything")
    rehire.add_argument("id", type=identifier_arg)
    rehire.set_defaults(handler=cmd_signal)

    breaker_parser = commands.add_parser("breaker", help="the deletion circuit breaker")
    breaker_commands = breaker_parser.add_subparsers(dest="breaker_command", required=True)
    breaker_commands.add_parser("status", help="deletions this hour, per system and fleet-wide")
    for name, text in (("release", "close a tripped breaker: waiting deletions go on"), ("allow", "allow N more deletions this hour (a planned layoff)")):
        command = breaker_commands.add_parser(name, help=text)
        scope = command.add_mutually_exclusive_group(required=True)
        scope.add_argument("--system")
        scope.add_argument("--fleet", action="store_true", help="the fleet-wide breaker")
        command.add_argument("--operator", required=True)
        command.add_argument("--note", required=True)
        if name == "allow":
            command.add_argument("--count", type=int, required=True)
    breaker_parser.set_defaults(handler=cmd_breaker)

    audit_parser = commands.add_parser("audit", help="the append-only audit log")
    audit_parser.add_argument("audit_command", choices=["verify"])
    audit_parser.set_defaults(handler=cmd_audit)

    add_intake_commands(commands)
    add_retention_commands(commands)

    status = commands.add_parser("status", help="progress of one case")
    status.add_argument("id", type=identifier_arg, help="workflow id, subject ref, or the person's identifier")
    status.add_argument("--wait", action="store_true", help="then wait until the case ends or needs a person")
    status.set_defaults(handler=cmd_status)

    certificate = commands.add_parser("certificate", help="print or verify a case's certificate")
    certificate.add_argument("id", type=identifier_arg, help="workflow id, subject ref, or the person's identifier")
    certificate.add_argument("--format", choices=["json", "md"], default="md")
    certificate.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")
    certificate.add_argument("--verify", action="store_true", help="check the signature")
    certificate.set_defaults(handler=cmd_certificate)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    configure_logging()
    try:
        settings = load_settings()
        return asyncio.run(args.handler(args, settings))
    except ConfigError as exc:
        print(f"lethe: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CliError as exc:
        print(f"lethe: {exc}", file=sys.stderr)
        return EXIT_FAILED


def cli() -> None:
    exit_now(main())


if __name__ == "__main__":
    cli()
