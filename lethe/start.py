"""Starting a case: the one way every entry point (CLI, intake, bulk, reconciliation) opens one."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta

from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy

from lethe.case import Reason
from lethe.certificate import Certificate
from lethe.durations import format_duration, parse_duration
from lethe.ledger import engine_for, note_reappearance, store_identifier
from lethe.planning import forget_input
from lethe.settings import Settings
from lethe.subject import subject_ref, workflow_id
from lethe.temporal import STATUS, SUBJECT_REF
from workflows.forget import ForgetSubject


async def start_case(
    client: Client, settings: Settings, identifier: str, reason: Reason, grace: timedelta | None
) -> WorkflowHandle[ForgetSubject, Certificate]:
    """Start the subject's case, or join the one already running (same workflow id)."""
    ref = subject_ref(settings.pepper_bytes(), identifier)
    ledger = engine_for(settings.ledger.url)
    # In a thread: the intake and bulk start many cases at once on one event loop.
    await asyncio.to_thread(store_identifier, ledger, ref, identifier.strip())
    tombstone = await asyncio.to_thread(note_reappearance, ledger, ref)
    if tombstone is not None:
        print(
            f"note: this subject was forgotten on {tombstone.erased_at:%Y-%m-%d}; "
            f"re-appearance #{tombstone.reappearances}",
            file=sys.stderr,
        )
    case = forget_input(settings, ref, reason, datetime.now(UTC), grace)
    return await client.start_workflow(
        ForgetSubject.run,
        case,
        id=workflow_id(ref),
        task_queue=settings.temporal.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=TypedSearchAttributes(
            [SearchAttributePair(SUBJECT_REF, ref), SearchAttributePair(STATUS, "running")]
        ),
        static_summary=f"Forget subject {ref[:12]}… ({reason.value}, {len(case.systems)} systems)",
        static_details=(
            f"Reason: {reason.value}\n\nGrace: {format_duration(parse_duration(case.grace_seconds))}\n\n"
            f"Systems: {', '.join(plan.name for plan in case.systems)}"
        ),
    )
