"""DryRun: what forgetting a subject would do, changing nothing.

It only reads: a SCIM lookup per system (on the system's own task queue, so the fleet-wide
rate limit holds) and a row count per residual store. No PATCH, DELETE, POST or PUT.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.anonymize import AnonymizeActivities
    from activities.ledger import LedgerActivities
    from activities.scim import ScimActivities
    from lethe.case import DryRunPart, DryRunReport, ForgetInput, SubjectInSystem, SystemPlan
    from lethe.residual import AnonymizeInput
    from workflows.steps import LEDGER_RETRY, LEDGER_TIMEOUT, STEP_RETRY, on_system


@workflow.defn(name="DryRun")
class DryRun:
    @workflow.run
    async def run(self, case: ForgetInput) -> DryRunReport:
        systems = await asyncio.gather(*(self._system(plan, case.subject_ref) for plan in case.systems))
        residual = await asyncio.gather(*(self._residual(case.subject_ref, store) for store in case.residual_stores))
        await workflow.execute_activity_method(
            LedgerActivities.release_identifier,
            case.subject_ref,
            start_to_close_timeout=LEDGER_TIMEOUT,
            retry_policy=LEDGER_RETRY,
            summary="destroy the identifier unless a real case holds it",
        )
        return DryRunReport(subject_ref=case.subject_ref, systems=list(systems), residual=list(residual))

    async def _system(self, plan: SystemPlan, subject_ref: str) -> DryRunPart:
        if plan.kind == "erasure-job":
            return DryRunPart(name=plan.name, would=["request erasure"], note="vendor job: nothing to look up")
        try:
            found = await on_system(
                plan,
                ScimActivities.find,
                SubjectInSystem(system=plan.name, subject_ref=subject_ref),
                f"dry run: find accounts in {plan.name}",
            )
        except ActivityError as failure:
            return DryRunPart(name=plan.name, would=[], note=str(failure.cause or failure))
        if not found.account_ids:
            return DryRunPart(name=plan.name, count=0, would=[], note="no account")
        would = ["deactivate"] if plan.on_leave == "deactivate" else ["deactivate", "delete"]
        return DryRunPart(name=plan.name, count=len(found.account_ids), would=would)

    async def _residual(self, subject_ref: str, store: str) -> DryRunPart:
        rows = await workflow.execute_activity_method(
            AnonymizeActivities.count,
            AnonymizeInput(store=store, subject_ref=subject_ref),
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=STEP_RETRY,
            summary=f"dry run: count residual rows in {store}",
        )
        return DryRunPart(name=store, count=rows, would=["anonymize"] if rows else [])
