"""Ledger activities: open a case, and certify it (certificate, tombstone, vault destroyed)."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import Engine
from sqlmodel import Session, select

from lethe import audit as audit_log
from lethe.case import FINAL_STATUSES, AuditInput, CertifyInput, EscalationEvent, OpenCaseInput
from lethe.certificate import Certificate, issue
from lethe.ledger import CaseRecord, CertificateRecord, EscalationRecord, Tombstone, VaultEntry
from temporalio import activity

logger = logging.getLogger(__name__)


class LedgerActivities:
    def __init__(self, ledger: Engine, certificate_key: bytes) -> None:
        self._ledger = ledger
        self._key = certificate_key

    @activity.defn(name="ledger.open_case")
    async def open_case(self, arg: OpenCaseInput) -> None:
        await asyncio.to_thread(self._open_case, arg)

    def _open_case(self, arg: OpenCaseInput) -> None:
        with Session(self._ledger) as session:
            case = session.get(CaseRecord, arg.subject_ref) or CaseRecord(
                subject_ref=arg.subject_ref,
                workflow_id=arg.workflow_id,
                reason=arg.reason.value,
                status="running",
                requested_at=arg.requested_at,
            )
            if case.status != "running" and case.requested_at != arg.requested_at:
                # A new case for a subject forgotten before: the record starts over.
                case.requested_at, case.completed_at, case.status = arg.requested_at, None, "running"
            session.add(case)
            session.commit()

    @activity.defn(name="ledger.certify")
    async def certify(self, arg: CertifyInput) -> Certificate:
        return await asyncio.to_thread(self._certify, arg)

    def _certify(self, arg: CertifyInput) -> Certificate:
        """Idempotent: a second run for the same workflow run returns the stored certificate."""
        ref = arg.progress.subject_ref
        with Session(self._ledger) as session:
            stored = session.exec(select(CertificateRecord).where(CertificateRecord.run_id == arg.run_id)).first()
            if stored is not None:
                return Certificate.model_validate_json(stored.body)
            certificate = issue(arg.progress, arg.workflow_id, arg.run_id, arg.completed_at, self._key)
            session.add(
                CertificateRecord(
                    subject_ref=ref,
                    workflow_id=arg.workflow_id,
                    run_id=arg.run_id,
                    issued_at=arg.completed_at,
                    body=certificate.model_dump_json(),
                )
            )
            case = session.get(CaseRecord, ref)
            if case is not None:
                case.status, case.completed_at = certificate.status, arg.completed_at
                session.add(case)
            if certificate.all_confirmed:
                tombstone = session.get(Tombstone, ref) or Tombstone(subject_ref=ref, erased_at=arg.completed_at)
                tombstone.erased_at = arg.completed_at
                session.add(tombstone)
            # The case is over: the identifier goes, whatever the outcome. A rerun starts afresh.
            vault = session.get(VaultEntry, ref)
            if vault is not None:
                session.delete(vault)
            # The IdP's copy of the user, pushed to our SCIM endpoint. Imported here: the SCIM
            # server stack costs the CLI, which imports this module, most of a second.
            from lethe.intake.scim_store import purge_mirrored_users

            purge_mirrored_users(session, ref)
            session.commit()
        audit_log.append(self._ledger, "lethe", "case.certified", ref, workflow_id=arg.workflow_id, status=certificate.status)
        logger.info("certified case %s: %s", arg.workflow_id, certificate.status)
        return certificate

    @activity.defn(name="ledger.record_escalation")
    async def record_escalation(self, event: EscalationEvent) -> None:
        await asyncio.to_thread(self._record_escalation, event)

    def _record_escalation(self, event: EscalationEvent) -> None:
        """Idempotent: one row per (run, system, opening time), completed by its decision."""
        with Session(self._ledger) as session:
            query = select(EscalationRecord).where(
                EscalationRecord.run_id == event.run_id,
                EscalationRecord.system == event.system,
                EscalationRecord.opened_at == event.opened_at,
            )
            record = session.exec(query).first() or EscalationRecord(
                workflow_id=event.workflow_id,
                run_id=event.run_id,
                subject_ref=event.subject_ref,
                system=event.system,
                kind=event.kind,
                message=event.message,
                opened_at=event.opened_at,
            )
            new = record.id is None or (event.decision is not None and record.action is None)
            if event.decision is not None:
                record.resolved_at = event.decision.at
                record.action = event.decision.action
                record.operator = event.decision.operator
                record.note = event.decision.note
            session.add(record)
            session.commit()
        if new:  # a retried activity does not log twice
            decision = event.decision
            audit_log.append(
                self._ledger,
                decision.operator if decision else "lethe",
                f"decision.{decision.action}" if decision else "escalation.opened",
                event.subject_ref,
                workflow_id=event.workflow_id,
                system=event.system,
                kind=event.kind,
                note=decision.note if decision else event.message,
            )

    @activity.defn(name="ledger.release_identifier")
    async def release_identifier(self, subject_ref: str) -> bool:
        """After a dry run: destroy the identifier, unless a real case for the subject is open."""
        return await asyncio.to_thread(self._release_identifier, subject_ref)

    def _release_identifier(self, subject_ref: str) -> bool:
        with Session(self._ledger) as session:
            case = session.get(CaseRecord, subject_ref)
            if case is not None and case.status not in FINAL_STATUSES:
                return False
            vault = session.get(VaultEntry, subject_ref)
            if vault is not None:
                session.delete(vault)
                session.commit()
            return True

    @activity.defn(name="ledger.audit")
    async def audit(self, entry: AuditInput) -> None:
        await asyncio.to_thread(
            audit_log.append, self._ledger, entry.actor, entry.action, entry.subject_ref, workflow_id=entry.workflow_id, note=entry.note
        )

    def activities(self) -> list[object]:
        return [self.open_case, self.certify, self.record_escalation, self.audit, self.release_identifier]
