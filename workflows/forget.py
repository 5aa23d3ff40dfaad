"""ForgetSubject: one workflow per person, from revocation to a signed certificate.

gate -> revoke (every system, in parallel) -> grace (durable timer) -> erase -> confirm -> certify.
Each system runs its own pipeline so that one slow system never holds up the others;
the grace period is one shared deadline they all wait for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.ledger import LedgerActivities
    from activities.scim import ScimActivities
    from lethe.case import (
        AccountInSystem,
        CaseProgress,
        CaseStatus,
        CertifyInput,
        Evidence,
        FINAL_OK,
        ForgetInput,
        OpenCaseInput,
        Stage,
        StepResult,
        SubjectInSystem,
        SystemPlan,
        SystemProgress,
    )
    from lethe.certificate import Certificate
    from lethe.temporal import STATUS

# Writes and lookups: transient failures back off; permanent ones are raised non-retryable.
STEP_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1), maximum_attempts=8)
STEP_TIMEOUT = timedelta(seconds=60)
LEDGER_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))


@workflow.defn(name="ForgetSubject")
class ForgetSubject:
    @workflow.init
    def __init__(self, case: ForgetInput) -> None:
        self._case = case
        self._grace_over = False
        self._cancelled = False
        self._progress = CaseProgress(
            subject_ref=case.subject_ref,
            reason=case.reason,
            status=CaseStatus.RUNNING,
            requested_at=case.requested_at,
            systems=[SystemProgress(name=plan.name) for plan in case.systems],
        )

    @workflow.query
    def progress(self) -> CaseProgress:
        return self._progress

    @workflow.signal
    def rehire(self) -> None:
        """The person stays: during the grace period the case ends and nothing is deleted."""
        if not self._grace_over:
            self._cancelled = True

    @workflow.run
    async def run(self, case: ForgetInput) -> Certificate:
        info = workflow.info()
        await workflow.execute_activity_method(
            LedgerActivities.open_case,
            OpenCaseInput(
                subject_ref=case.subject_ref,
                workflow_id=info.workflow_id,
                reason=case.reason,
                requested_at=case.requested_at,
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=LEDGER_RETRY,
            summary="open the case in the ledger",
        )
        pipelines = [
            asyncio.create_task(self._system_pipeline(plan, progress))
            for plan, progress in zip(case.systems, self._progress.systems)
        ]
        await self._grace_period(timedelta(seconds=case.grace_seconds))
        await asyncio.gather(*pipelines)

        if self._cancelled:
            self._set_status(CaseStatus.CANCELLED)
        elif all(system.stage in FINAL_OK for system in self._progress.systems):
            self._set_status(CaseStatus.COMPLETED)
        else:
            self._set_status(CaseStatus.INCOMPLETE)
        return await workflow.execute_activity_method(
            LedgerActivities.certify,
            CertifyInput(
                workflow_id=info.workflow_id,
                run_id=info.run_id,
                progress=self._progress,
                completed_at=workflow.now(),
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=LEDGER_RETRY,
            summary="issue the certificate, destroy the identifier",
        )

    async def _grace_period(self, grace: timedelta) -> None:
        if grace > timedelta(0):
            self._progress.grace_until = workflow.now() + grace
            self._set_status(CaseStatus.GRACE)
            try:
                await workflow.wait_condition(lambda: self._cancelled, timeout=grace, timeout_summary="grace period")
            except asyncio.TimeoutError:
                pass
        self._grace_over = True
        if not self._cancelled:
            self._set_status(CaseStatus.ERASING)

    def _set_status(self, status: CaseStatus) -> None:
        self._progress.status = status
        workflow.upsert_search_attributes([STATUS.value_set(status.value)])
        workflow.set_current_details(f"**{status.value}**: " + ", ".join(
            f"{system.name} {system.stage.value}" for system in self._progress.systems
        ))

    async def _system_pipeline(self, plan: SystemPlan, progress: SystemProgress) -> None:
        try:
            progress.stage = Stage.RESOLVING
            progress.accounts = await self._find(plan, "find accounts")
            if not progress.accounts:
                progress.stage = Stage.NOT_FOUND
                return
            progress.stage = Stage.REVOKING
            await self._each_account(plan, progress, ScimActivities.deactivate, "deactivate")
            progress.stage = Stage.REVOKED
            await workflow.wait_condition(lambda: self._grace_over)
            if self._cancelled:
                await self._each_account(plan, progress, ScimActivities.reactivate, "reactivate")
                progress.stage = Stage.CANCELLED
                return
            await self._erase(plan, progress)
            progress.stage = Stage.CONFIRMED
        except (ActivityError, ApplicationError) as exc:
            progress.stage = Stage.FAILED
            progress.error = _failure_message(exc)

    async def _erase(self, plan: SystemPlan, progress: SystemProgress) -> None:
        if plan.on_leave == "deactivate":
            progress.stage = Stage.CONFIRMING
            await self._each_account(plan, progress, ScimActivities.confirm_inactive, "confirm inactive", poll=True)
            return
        progress.stage = Stage.ERASING
        await self._each_account(plan, progress, ScimActivities.delete, "delete")
        progress.stage = Stage.CONFIRMING
        await self._each_account(plan, progress, ScimActivities.confirm_gone, "confirm gone", poll=True)
        # Gone by id is not enough: the match attribute must find nobody either.
        leftovers = await self._find(plan, "confirm nothing matches")
        if leftovers:
            raise ApplicationError(
                f"confirm in {plan.name}: {len(leftovers)} account(s) still match after deletion",
                type="StillPresent",
            )
        progress.evidence.append(Evidence(action="confirm-no-match", outcome="none-match", at=workflow.now()))

    async def _find(self, plan: SystemPlan, summary: str) -> list[str]:
        found = await workflow.execute_activity_method(
            ScimActivities.find,
            SubjectInSystem(system=plan.name, subject_ref=self._case.subject_ref),
            task_queue=plan.task_queue,
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=STEP_RETRY,
            summary=f"{summary} in {plan.name}",
        )
        return found.account_ids

    async def _each_account(
        self,
        plan: SystemPlan,
        progress: SystemProgress,
        step: Callable[[Any, AccountInSystem], Awaitable[StepResult]],
        action: str,
        poll: bool = False,
    ) -> None:
        """Run one step on every account of the subject in this system, in parallel."""
        if poll:
            # Polling as server-side retries keeps the history at a few events however long it takes.
            retry = RetryPolicy(
                initial_interval=timedelta(seconds=plan.confirm_every_seconds),
                backoff_coefficient=1.0,
                maximum_attempts=0,
            )
            deadline: timedelta | None = timedelta(seconds=plan.confirm_within_seconds)
        else:
            retry, deadline = STEP_RETRY, None

        async def one(account_id: str) -> None:
            result = await workflow.execute_activity_method(
                step,
                AccountInSystem(system=plan.name, account_id=account_id),
                task_queue=plan.task_queue,
                start_to_close_timeout=STEP_TIMEOUT,
                schedule_to_close_timeout=deadline,
                retry_policy=retry,
                summary=f"{action} account in {plan.name}",
            )
            progress.evidence.append(
                Evidence(
                    action=action.replace(" ", "-"),
                    account_id=account_id,
                    http_status=result.http_status,
                    outcome=result.outcome,
                    at=workflow.now(),
                    attempts=result.attempts,
                )
            )

        await asyncio.gather(*(one(account_id) for account_id in progress.accounts))


def _failure_message(exc: BaseException) -> str:
    """The innermost failure's message: written by our activities, so free of personal data."""
    while isinstance(exc, ActivityError) and exc.cause is not None:
        exc = exc.cause
    return str(exc)
