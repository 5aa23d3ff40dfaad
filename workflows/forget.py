"""ForgetSubject: one workflow per person, from revocation to a signed certificate.

gate (approval) -> revoke (every system, in parallel) -> grace (durable timer) -> erase ->
confirm -> certify. Each system runs its own pipeline, so one slow or broken system never
holds up the others. A system that cannot finish is escalated: the case tells the
operators and waits for their decision (retry, confirm by hand, skip) on that system.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.anonymize import AnonymizeActivities
    from activities.breaker import BreakerActivities
    from activities.erasure_job import ErasureJobActivities
    from activities.ledger import LedgerActivities
    from activities.notify import NotifyActivities
    from activities.scim import ScimActivities
    from lethe.case import (
        DECISION_ACTIONS,
        FINAL_OK,
        AccountInSystem,
        Approval,
        AuditInput,
        CaseProgress,
        CaseStatus,
        CertifyInput,
        Decision,
        DecisionRecord,
        EraseInput,
        EscalationEvent,
        EscalationNotice,
        Evidence,
        ForgetInput,
        OpenCaseInput,
        PermitRequest,
        Stage,
        StepResult,
        SubjectInSystem,
        SystemPlan,
        SystemProgress,
    )
    from lethe.certificate import Certificate
    from lethe.erasure_job import ErasureJobRef
    from lethe.residual import AnonymizeInput
    from lethe.temporal import DEADLINE, PENDING_SYSTEMS, STATUS
    from workflows.steps import LEDGER_TIMEOUT, NOTIFY_RETRY, STEP_RETRY, on_ledger, on_system

ALL_SYSTEMS = "*"


@workflow.defn(name="ForgetSubject")
class ForgetSubject:
    @workflow.init
    def __init__(self, case: ForgetInput) -> None:
        self._case = case
        self._phase = CaseStatus.RUNNING
        self._grace_over = False
        self._cancelled = False
        self._approved = not case.needs_approval
        self._decisions: dict[str, Decision] = {}
        self._published: tuple[str, tuple[str, ...]] | None = None
        self._progress = CaseProgress(
            subject_ref=case.subject_ref,
            reason=case.reason,
            status=CaseStatus.RUNNING,
            requested_at=case.requested_at,
            deadline=case.requested_at + timedelta(seconds=case.deadline_seconds),
            systems=[SystemProgress(name=plan.name) for plan in case.systems],
        )

    # --- messages ------------------------------------------------------------------------

    @workflow.query
    def progress(self) -> CaseProgress:
        return self._progress

    @workflow.signal
    def rehire(self) -> None:
        """The person stays: before deletion starts the case ends and nothing is deleted."""
        if not self._grace_over:
            self._cancelled = True

    @workflow.signal
    def hold(self, system: str | None = None) -> None:
        """A legal hold: no erasure in this system (or in any, with None) until released."""
        name = system or ALL_SYSTEMS
        if name not in self._progress.holds:
            self._progress.holds.append(name)

    @workflow.signal
    def release(self, system: str | None = None) -> None:
        name = system or ALL_SYSTEMS
        if name in self._progress.holds:
            self._progress.holds.remove(name)

    @workflow.update
    def approve(self, approval: Approval) -> str:
        self._approved = True
        self._progress.decisions.append(
            DecisionRecord(action="approve", operator=approval.operator, note=approval.note, at=workflow.now())
        )
        return "approved"

    @approve.validator
    def _validate_approve(self, approval: Approval) -> None:
        if self._approved:
            raise ApplicationError("this case is not waiting for approval")
        if not approval.operator.strip():
            raise ApplicationError("an operator name is required to approve")

    @workflow.update
    def resolve(self, decision: Decision) -> str:
        self._decisions[decision.system] = decision
        return f"{decision.action} accepted for {decision.system}"

    @resolve.validator
    def _validate_resolve(self, decision: Decision) -> None:
        system = self._progress.system(decision.system)
        if system is None:
            names = ", ".join(s.name for s in self._progress.systems)
            raise ApplicationError(f"unknown system {decision.system!r}; this case has: {names}")
        if system.stage is not Stage.ESCALATED or decision.system in self._decisions:
            raise ApplicationError(f"system {decision.system!r} is not escalated (stage: {system.stage.value})")
        if decision.action not in DECISION_ACTIONS:
            raise ApplicationError(f"unknown action {decision.action!r}; use one of {', '.join(DECISION_ACTIONS)}")
        if not decision.note.strip():
            raise ApplicationError("a note is required: say why, it is kept as evidence")
        if not decision.operator.strip():
            raise ApplicationError("an operator name is required: decisions are accountable")
        if decision.account_id is not None and decision.action != "retry":
            raise ApplicationError("an account id goes with --action retry only")

    # --- the case ------------------------------------------------------------------------

    @workflow.run
    async def run(self, case: ForgetInput) -> Certificate:
        info = workflow.info()
        workflow.upsert_search_attributes([DEADLINE.value_set(self._progress.deadline)])
        # The ledger's record is needed by the certificate, not by revocation: access ends sooner.
        self._opened: asyncio.Task[None] = asyncio.create_task(
            on_ledger(
                LedgerActivities.open_case,
                OpenCaseInput(
                    subject_ref=case.subject_ref,
                    workflow_id=info.workflow_id,
                    reason=case.reason,
                    requested_at=case.requested_at,
                ),
                "open the case in the ledger",
            )
        )
        try:
            await self._gate()
            if not self._cancelled:
                pipelines = [
                    asyncio.create_task(self._system(plan, progress))
                    for plan, progress in zip(case.systems, self._progress.systems)
                ]
                await self._grace_period(timedelta(seconds=case.grace_seconds))
                await asyncio.gather(*pipelines)
                if not self._cancelled:
                    # Residual records last: they are kept, so they wait until every account is gone.
                    self._progress.residual = [SystemProgress(name=store) for store in case.residual_stores]
                    await asyncio.gather(
                        *(self._anonymize(part.name, part) for part in self._progress.residual)
                    )
        except asyncio.CancelledError:
            # Cancelled by an operator: still certify what happened and destroy the identifier.
            self._phase = CaseStatus.ABORTED
            await self._certify()
            raise
        if self._cancelled:
            self._phase = CaseStatus.CANCELLED
            for system in self._progress.systems:
                if system.stage not in FINAL_OK:
                    system.stage = Stage.CANCELLED
        else:
            self._phase = CaseStatus.COMPLETED
        return await self._certify()

    async def _certify(self) -> Certificate:
        await asyncio.shield(self._opened)
        self._publish()
        info = workflow.info()
        return await on_ledger(
            LedgerActivities.certify,
            CertifyInput(
                workflow_id=info.workflow_id,
                run_id=info.run_id,
                progress=self._progress,
                completed_at=workflow.now(),
            ),
            "issue the certificate, destroy the identifier",
        )

    async def _gate(self) -> None:
        if not self._approved:
            self._phase = CaseStatus.AWAITING_APPROVAL
            self._publish()
            await workflow.wait_condition(lambda: self._approved or self._cancelled)
            if self._approved:
                approval = self._progress.decisions[-1]
                await on_ledger(
                    LedgerActivities.audit,
                    AuditInput(
                        actor=approval.operator,
                        action="decision.approve",
                        subject_ref=self._case.subject_ref,
                        workflow_id=workflow.info().workflow_id,
                        note=approval.note,
                    ),
                    "ledger: approval",
                )
        self._phase = CaseStatus.RUNNING
        self._publish()

    async def _grace_period(self, grace: timedelta) -> None:
        if grace > timedelta(0):
            self._progress.grace_until = workflow.now() + grace
            self._phase = CaseStatus.GRACE
            self._publish()
            try:
                await workflow.wait_condition(lambda: self._cancelled, timeout=grace, timeout_summary="grace period")
            except asyncio.TimeoutError:
                pass
        self._grace_over = True
        if not self._cancelled:
            self._phase = CaseStatus.ERASING
            self._publish()

    def _publish(self) -> None:
        """Status and pending systems as search attributes and UI details, when they change."""
        pending = self._progress.pending
        status = self._phase
        if status not in (CaseStatus.COMPLETED, CaseStatus.CANCELLED, CaseStatus.ABORTED):
            if pending:
                status = CaseStatus.ESCALATED
            elif any(system.stage is Stage.PAUSED for system in self._progress.systems):
                status = CaseStatus.PAUSED_BY_BREAKER
        self._progress.status = status
        stages = ", ".join(f"{system.name} {system.stage.value}" for system in self._progress.systems)
        workflow.set_current_details(f"**{status.value}**: {stages}")
        if self._published == (status.value, tuple(pending)):
            return
        self._published = (status.value, tuple(pending))
        workflow.upsert_search_attributes(
            [
                STATUS.value_set(status.value),
                PENDING_SYSTEMS.value_set(pending) if pending else PENDING_SYSTEMS.value_unset(),
            ]
        )

    # --- one system ------------------------------------------------------------------------

    async def _system(self, plan: SystemPlan, progress: SystemProgress) -> None:
        async def attempt(chosen_account: str | None) -> None:
            if plan.kind == "erasure-job":
                await self._erasure_job(plan, progress)
            else:
                await self._scim(plan, progress, chosen_account)

        await self._until_decided(progress, attempt)

    async def _until_decided(self, progress: SystemProgress, attempt: Callable[[str | None], Awaitable[None]]) -> None:
        """Run a part of the case; when it fails, escalate and do what the operator decides."""
        chosen_account: str | None = None
        while True:
            try:
                await attempt(chosen_account)
                return
            except (ActivityError, ApplicationError) as failure:
                decision = await self._escalate(progress, failure)
                if decision is None:
                    return
                if decision.action == "retry":
                    chosen_account = decision.account_id
                    continue
                progress.stage = Stage.CONFIRMED_BY_OPERATOR if decision.action == "confirm" else Stage.SKIPPED
                self._publish()
                return

    async def _anonymize(self, store: str, progress: SystemProgress) -> None:
        async def attempt(_: str | None) -> None:
            progress.stage = Stage.ERASING
            counts = await workflow.execute_activity_method(
                AnonymizeActivities.anonymize,
                AnonymizeInput(store=store, subject_ref=self._case.subject_ref),
                start_to_close_timeout=timedelta(hours=1),
                heartbeat_timeout=timedelta(minutes=1),
                retry_policy=STEP_RETRY,
                summary=f"anonymize residual records in {store}",
            )
            progress.evidence.append(
                Evidence(action="anonymize", outcome=f"{counts.batches} batch(es)", at=workflow.now(), count=counts.rows)
            )
            progress.stage = Stage.CONFIRMED

        await self._until_decided(progress, attempt)

    async def _scim(self, plan: SystemPlan, progress: SystemProgress, chosen_account: str | None) -> None:
        progress.stage = Stage.REVOKING
        if chosen_account:
            progress.accounts = [chosen_account]
            await self._each_account(plan, progress, ScimActivities.deactivate, "deactivate")
        else:
            revoked = await on_system(
                plan, ScimActivities.revoke, self._subject_in(plan), f"find and deactivate accounts in {plan.name}"
            )
            progress.accounts = revoked.account_ids
            for account_id, step in zip(revoked.account_ids, revoked.steps):
                self._evidence(progress, "deactivate", account_id, step)
            if not progress.accounts:
                progress.stage = Stage.NOT_FOUND
                return
        progress.stage = Stage.REVOKED
        if not await self._wait_to_erase(plan, progress):
            await self._each_account(plan, progress, ScimActivities.reactivate, "reactivate")
            progress.stage = Stage.CANCELLED
            return
        if plan.on_leave == "deactivate":
            progress.stage = Stage.CONFIRMING
            await self._each_account(plan, progress, ScimActivities.confirm_inactive, "confirm inactive", poll=True)
            progress.stage = Stage.CONFIRMED
            return
        for account_id in progress.accounts:
            await self._permit(plan, progress, account_id)
        progress.stage = Stage.ERASING
        # An operator's chosen account shares its identifier with others: no search afterwards.
        check_match = not chosen_account
        erased = await on_system(
            plan,
            ScimActivities.erase,
            EraseInput(
                system=plan.name,
                subject_ref=self._case.subject_ref,
                account_ids=progress.accounts,
                check_match=check_match,
            ),
            f"delete and confirm accounts in {plan.name}",
        )
        for account in erased.accounts:
            self._evidence(progress, "delete", account.account_id, account.deleted)
        for account in erased.accounts:
            if account.gone is not None:
                self._evidence(progress, "confirm-gone", account.account_id, account.gone)
        still_there = [account.account_id for account in erased.accounts if account.gone is None]
        if still_there:
            # The system deletes in the background: poll until it shows, then search once more.
            progress.stage = Stage.CONFIRMING
            await self._each_account(
                plan, progress, ScimActivities.confirm_gone, "confirm gone", poll=True, accounts=still_there
            )
            if check_match:
                self._evidence(
                    progress,
                    "confirm-no-match",
                    None,
                    await on_system(
                        plan,
                        ScimActivities.nothing_matches,
                        self._subject_in(plan),
                        f"confirm nothing matches in {plan.name}",
                    ),
                )
        elif erased.nothing_matches is not None:
            self._evidence(progress, "confirm-no-match", None, erased.nothing_matches)
        progress.stage = Stage.CONFIRMED

    async def _erasure_job(self, plan: SystemPlan, progress: SystemProgress) -> None:
        # Nothing to revoke: such a vendor only erases, after the grace period.
        progress.stage = Stage.REVOKED
        if not await self._wait_to_erase(plan, progress):
            progress.stage = Stage.CANCELLED
            return
        await self._permit(plan, progress, "erasure-job")
        progress.stage = Stage.ERASING
        started = await on_system(
            plan,
            ErasureJobActivities.start,
            self._subject_in(plan),
            f"request erasure in {plan.name}",
        )
        progress.accounts = [started.job_id]
        self._evidence(
            progress,
            "erasure-request",
            started.job_id,
            StepResult(outcome=started.outcome, http_status=started.http_status, attempts=started.attempts),
        )
        progress.stage = Stage.CONFIRMING
        done = await on_system(
            plan,
            ErasureJobActivities.check,
            ErasureJobRef(system=plan.name, job_id=started.job_id),
            f"wait for the erasure job in {plan.name}",
            poll=True,
        )
        self._evidence(
            progress,
            "erasure-job",
            started.job_id,
            StepResult(outcome=done.state, http_status=done.http_status, attempts=done.attempts),
        )
        progress.stage = Stage.CONFIRMED

    async def _wait_to_erase(self, plan: SystemPlan, progress: SystemProgress) -> bool:
        """Wait for the grace period and any legal hold; False if the case was cancelled."""
        await workflow.wait_condition(lambda: self._grace_over)
        if self._held(plan.name) and not self._cancelled:
            progress.stage = Stage.ON_HOLD
            self._publish()
            await workflow.wait_condition(lambda: not self._held(plan.name) or self._cancelled)
        return not self._cancelled

    async def _permit(self, plan: SystemPlan, progress: SystemProgress, target: str) -> None:
        """Ask the deletion circuit breaker; while it is open, wait (polled) for an operator."""
        request = PermitRequest(system=plan.name, key=f"{workflow.info().run_id}:{plan.name}:{target}")
        if await self._breaker(request, "ask the deletion circuit breaker", plan):
            return
        stage, progress.stage = progress.stage, Stage.PAUSED
        self._publish()
        waiting = request.model_copy(update={"wait": True, "waiting_since": workflow.now()})
        await self._breaker(waiting, "wait for the circuit breaker", plan)
        progress.stage = stage
        self._publish()

    async def _breaker(self, request: PermitRequest, summary: str, plan: SystemPlan) -> bool:
        if not request.wait:
            return await on_ledger(BreakerActivities.permit, request, f"{summary} for {plan.name}")
        # Waiting can take hours: polled as a regular activity's retries, a few events in all.
        poll = timedelta(seconds=self._case.breaker_poll_seconds)
        return await workflow.execute_activity_method(
            BreakerActivities.permit,
            request,
            start_to_close_timeout=LEDGER_TIMEOUT,
            retry_policy=RetryPolicy(initial_interval=poll, backoff_coefficient=1.0, maximum_attempts=0),
            summary=f"{summary} for {plan.name}",
        )

    def _subject_in(self, plan: SystemPlan) -> SubjectInSystem:
        return SubjectInSystem(system=plan.name, subject_ref=self._case.subject_ref)

    def _held(self, system: str) -> bool:
        return system in self._progress.holds or ALL_SYSTEMS in self._progress.holds

    async def _each_account(  # type: ignore[no-untyped-def]
        self, plan: SystemPlan, progress: SystemProgress, step, action: str, poll: bool = False, accounts: list[str] | None = None
    ) -> None:
        """Run one step on every account of the subject in this system (or on `accounts`), in parallel."""

        async def one(account_id: str) -> None:
            result = await on_system(
                plan, step, AccountInSystem(system=plan.name, account_id=account_id), f"{action} account in {plan.name}", poll
            )
            self._evidence(progress, action.replace(" ", "-"), account_id, result)

        await asyncio.gather(*(one(account_id) for account_id in (accounts if accounts is not None else progress.accounts)))

    def _evidence(self, progress: SystemProgress, action: str, account_id: str | None, result: StepResult) -> None:
        progress.evidence.append(
            Evidence(
                action=action,
                account_id=account_id,
                http_status=result.http_status,
                outcome=result.outcome,
                at=workflow.now(),
                attempts=result.attempts,
            )
        )

    # --- escalation ----------------------------------------------------------------------

    async def _escalate(self, progress: SystemProgress, failure: BaseException) -> Decision | None:
        """Hand the system to a person: record, notify, remind, and wait for their decision.
        None when the case was cancelled meanwhile."""
        kind, message = _classify(failure)
        progress.stage, progress.error, progress.escalation = Stage.ESCALATED, message, kind
        self._publish()
        info = workflow.info()
        event = EscalationEvent(
            workflow_id=info.workflow_id,
            run_id=info.run_id,
            subject_ref=self._case.subject_ref,
            system=progress.name,
            kind=kind,
            message=message,
            opened_at=workflow.now(),
        )
        await self._record_escalation(event)
        reminder = 0
        self._notify(progress.name, kind, message, reminder)
        while progress.name not in self._decisions and not self._cancelled:
            try:
                await workflow.wait_condition(
                    lambda: progress.name in self._decisions or self._cancelled,
                    timeout=self._until_next_reminder(),
                    timeout_summary=f"remind the operators about {progress.name}",
                )
            except asyncio.TimeoutError:
                reminder += 1
                self._notify(progress.name, kind, message, reminder)
        if progress.name not in self._decisions:
            progress.stage = Stage.CANCELLED
            return None
        decision = self._decisions.pop(progress.name)
        record = DecisionRecord(
            action=decision.action,
            operator=decision.operator,
            note=decision.note,
            at=workflow.now(),
            system=progress.name,
            account_id=decision.account_id,
        )
        self._progress.decisions.append(record)
        progress.error, progress.escalation = None, None
        self._evidence(progress, f"operator-{decision.action}", decision.account_id, StepResult(outcome="decided"))
        await self._record_escalation(event.model_copy(update={"decision": record}))
        progress.stage = Stage.PENDING
        self._publish()
        return decision

    def _until_next_reminder(self) -> timedelta:
        every = timedelta(seconds=self._case.escalation.remind_every_seconds)
        warn_at = self._progress.deadline - timedelta(seconds=self._case.escalation.warn_before_seconds)
        until_warning = warn_at - workflow.now()
        # Wake at the warning point too, so the DPO hears of it on the day, not at the next reminder.
        if timedelta(0) < until_warning < every:
            return until_warning
        return every

    def _notify(self, name: str, kind: str, message: str, reminder: int) -> None:
        """Fire and forget: a failing webhook is retried by Temporal and never blocks the case."""
        warn_at = self._progress.deadline - timedelta(seconds=self._case.escalation.warn_before_seconds)
        workflow.start_activity_method(
            NotifyActivities.escalation,
            EscalationNotice(
                workflow_id=workflow.info().workflow_id,
                subject_ref=self._case.subject_ref,
                system=name,
                kind=kind,
                message=message,
                deadline=self._progress.deadline,
                reminder=reminder,
                to_dpo=workflow.now() >= warn_at,
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=NOTIFY_RETRY,
            summary=f"notify: {name} needs an operator" + (f" (reminder {reminder})" if reminder else ""),
        )

    async def _record_escalation(self, event: EscalationEvent) -> None:
        await on_ledger(
            LedgerActivities.record_escalation,
            event,
            f"ledger: escalation of {event.system}" + (" resolved" if event.decision else ""),
        )


def _classify(failure: BaseException) -> tuple[str, str]:
    """The kind and message of the innermost failure: written by our activities, free of personal data."""
    while isinstance(failure, ActivityError) and failure.cause is not None:
        failure = failure.cause
    if isinstance(failure, ApplicationError):
        return failure.type or "Error", failure.message
    # A timeout: retries or the confirmation deadline ran out.
    return "Deadline", f"gave up waiting: {failure}"


