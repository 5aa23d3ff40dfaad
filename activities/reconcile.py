"""Reconciliation activities: one SCIM page per call, cases started for the accounts that need one.

Idempotent: a retried page finds the cases it started running and counts them as handled.
The identifiers read from SCIM stay in this process and the vault; results carry subject_refs.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from scim2_models import Context, ListResponse, User
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from activities.http_connector import HttpConnector
from activities.http_errors import raise_for_status
from activities.notify import post_to_all
from activities.scim import SCIM_JSON
from lethe import audit
from lethe.case import Reason
from lethe.ledger import CaseRecord, EscalationRecord, Tombstone, as_utc, utcnow
from lethe.reconcile import PageOutcome, PageRequest, RecordSweep, Rule, identifiers
from lethe.settings import Settings, SystemConfig
from lethe.subject import subject_ref, workflow_id
from lethe.start import start_case

logger = logging.getLogger(__name__)
AUDIT_ACTION = "reconcile.swept"


class ReconcileActivities(HttpConnector[SystemConfig]):
    kind = "SCIM"
    accept = SCIM_JSON

    def __init__(self, client: Client, settings: Settings, ledger: Engine) -> None:
        super().__init__({s.name: s for s in settings.systems if isinstance(s, SystemConfig)}, ledger)
        self._temporal = client
        self._settings = settings
        self._pepper = settings.pepper_bytes()
        reconcile = settings.schedules.reconcile
        self._grace = reconcile.inactive_grace if reconcile.inactive_grace is not None else settings.grace.leaver

    @activity.defn(name="reconcile.plan")
    async def plan(self) -> list[str]:
        """The SCIM systems this worker knows."""
        return list(self._systems)

    @activity.defn(name="reconcile.scan_page")
    async def scan_page(self, page: PageRequest) -> PageOutcome:
        config = self._config(page.system)
        end = page.end_index if page.end_index is not None else await self._total(page.system)
        start = max(1, end - page.count + 1)
        users: list[User] = []
        total = 0
        if end > 0:
            params = {"startIndex": str(start), "count": str(end - start + 1)}
            response = await self._request(page.system, "list accounts", "GET", "/Users", params=params)
            raise_for_status(response, page.system, "list accounts")
            listing = ListResponse[User].model_validate(response.json(), scim_ctx=Context.SEARCH_RESPONSE)
            users, total = listing.resources or [], listing.total_results or 0
        outcome = PageOutcome(system=page.system, seen=len(users), total=total, next_end=start - 1 if start > 1 else None)
        for user in users:
            found = await asyncio.to_thread(self._classify, user, config, page.as_of)
            if found is None:
                continue
            rule, identifier, ref = found
            if await self._case_running(ref):
                outcome.handled += 1
                continue
            await self._start(rule, identifier, ref, page)
            (outcome.reappeared if rule is Rule.REAPPEARED else outcome.leavers).append(ref)
        logger.info(
            "reconcile %s: accounts %d-%d, %d read, %d reappeared, %d leaver(s), %d handled",
            page.system, start, end, outcome.seen, len(outcome.reappeared), len(outcome.leavers), outcome.handled,
        )
        return outcome

    async def _total(self, system: str) -> int:
        """How many accounts the system has (count=0 returns only totalResults, RFC 7644 3.4.2.4)."""
        response = await self._request(system, "count accounts", "GET", "/Users", params={"count": "0"})
        raise_for_status(response, system, "count accounts")
        return int(response.json().get("totalResults") or 0)

    def _classify(self, user: User, config: SystemConfig, as_of: datetime) -> tuple[Rule, str, str] | None:
        """Which rule this account matches, with its identifier and subject_ref; None: leave it alone."""
        values = [(value, subject_ref(self._pepper, value)) for value in identifiers(user, config.match)]
        if not values:
            return None
        with Session(self._ledger) as session:
            for value, ref in values:
                if session.get(Tombstone, ref) is not None:
                    # A deactivate-only system keeps a disabled account by design: only an active one is back.
                    if config.on_leave == "delete" or user.active is not False:
                        return Rule.REAPPEARED, value, ref
                    return None
            if user.active is not False or user.meta is None or user.meta.last_modified is None:
                return None  # active, or no date to measure the grace against: never guess
            changed = as_utc(user.meta.last_modified)
            if as_of - changed < self._grace:
                return None
            value, ref = values[0]
            case = session.get(CaseRecord, ref)
            if case is not None and case.completed_at is not None and as_utc(case.completed_at) >= changed:
                return None  # a case already ended after this deactivation: running it again changes nothing
            return Rule.LEAVER, value, ref

    async def _case_running(self, ref: str) -> bool:
        try:
            description = await self._temporal.get_workflow_handle(workflow_id(ref)).describe()
        except RPCError as exc:
            if exc.status is RPCStatusCode.NOT_FOUND:
                return False
            raise
        return description.status is WorkflowExecutionStatus.RUNNING

    async def _start(self, rule: Rule, identifier: str, ref: str, page: PageRequest) -> None:
        reason = Reason.LEAVER if rule is Rule.LEAVER else await asyncio.to_thread(self._previous_reason, ref)
        # The grace is over in both cases: the account sat deactivated past it, or the person was already erased.
        handle = await start_case(self._temporal, self._settings, identifier, reason, timedelta(0))
        if rule is Rule.REAPPEARED:
            if await asyncio.to_thread(self._escalate, ref, handle.id, handle.result_run_id or "", page):
                await self._announce_reappearance(handle.id, page.system)
        else:
            await asyncio.to_thread(
                audit.append, self._ledger, "lethe-reconcile", "reconcile.leaver", ref,
                workflow_id=handle.id, system=page.system, sweep=page.workflow_id,
            )

    def _previous_reason(self, ref: str) -> Reason:
        with Session(self._ledger) as session:
            case = session.get(CaseRecord, ref)
        return Reason(case.reason) if case is not None and case.reason in Reason._value2member_map_ else Reason.ERASURE_REQUEST

    async def _announce_reappearance(self, case_id: str, system: str) -> None:
        """Tell the operators once (best effort): someone must find what re-created the account."""
        text = (
            f"Lethe: a forgotten person's account is back in {system}; case {case_id} erases it again. "
            "Find the import or sync job that re-created it."
        )
        payload = {"text": text, "kind": Rule.REAPPEARED.value, "system": system, "workflow_id": case_id}
        if await post_to_all(self._settings.escalation.webhooks, payload):
            logger.warning("reappearance in %s: some escalation webhooks failed", system)

    def _escalate(self, ref: str, case_id: str, run_id: str, page: PageRequest) -> bool:
        """A `reappeared` escalation in the ledger and the audit log, once per case run and system;
        False when it was recorded already."""
        message = (
            f"an account of this forgotten subject is back in {page.system}; the case runs again: "
            "find the import or sync job that re-created it"
        )
        with Session(self._ledger) as session:
            existing = session.exec(
                select(EscalationRecord).where(
                    EscalationRecord.run_id == run_id,
                    EscalationRecord.system == page.system,
                    EscalationRecord.kind == Rule.REAPPEARED.value,
                )
            ).first()
            if existing is not None:
                return False
            session.add(
                EscalationRecord(
                    workflow_id=case_id,
                    run_id=run_id,
                    subject_ref=ref,
                    system=page.system,
                    kind=Rule.REAPPEARED.value,
                    message=message,
                    opened_at=utcnow(),
                )
            )
            session.commit()
        audit.append(
            self._ledger, "lethe-reconcile", "escalation.opened", ref,
            workflow_id=case_id, system=page.system, kind=Rule.REAPPEARED.value, note=message, sweep=page.workflow_id,
        )
        return True

    @activity.defn(name="reconcile.record")
    async def record(self, arg: RecordSweep) -> None:
        await asyncio.to_thread(self._record, arg)

    def _record(self, arg: RecordSweep) -> None:
        if audit.logged_for_run(self._ledger, AUDIT_ACTION, arg.run_id):
            return
        result = arg.result
        audit.append(
            self._ledger, "lethe-reconcile", AUDIT_ACTION, None,
            workflow_id=arg.workflow_id, run_id=arg.run_id, seen=result.seen, reappeared=result.reappeared,
            leavers=result.leavers, systems={t.system: t.model_dump(exclude={"system"}) for t in result.systems},
        )

    def activities(self) -> list[object]:
        return [self.plan, self.scan_page, self.record]
