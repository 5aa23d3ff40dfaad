"""Erasure certificates: what was done for one subject, signed, without naming the person."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime

from pydantic import BaseModel

from lethe.case import FINAL_OK, CaseProgress, DecisionRecord, Evidence, SystemProgress

class SystemOutcome(BaseModel):
    name: str
    outcome: str
    accounts: list[str]
    evidence: list[Evidence]
    error: str | None = None


class Certificate(BaseModel):
    certificate_id: str
    subject_ref: str
    workflow_id: str
    reason: str
    status: str
    requested_at: datetime
    completed_at: datetime
    deadline: datetime
    deadline_met: bool
    systems: list[SystemOutcome]
    residual: list[SystemOutcome] = []
    decisions: list[DecisionRecord] = []
    issuer: str = "lethe"
    signature: str = ""

    def body_bytes(self) -> bytes:
        """Canonical JSON of everything but the signature: what the signature covers."""
        body = self.model_dump(mode="json", exclude={"signature"})
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    def signed(self, key: bytes) -> Certificate:
        return self.model_copy(update={"signature": _sign(key, self.body_bytes())})

    def verify(self, key: bytes) -> bool:
        return hmac.compare_digest(self.signature, _sign(key, self.body_bytes()))

    @property
    def all_confirmed(self) -> bool:
        """Every system confirmed, not-found, or closed by an operator's recorded decision."""
        return self.status == "completed" and all(
            part.outcome in FINAL_OK for part in self.systems + self.residual
        )


def _sign(key: bytes, body: bytes) -> str:
    return "hmac-sha256:" + hmac.new(key, body, hashlib.sha256).hexdigest()


def issue(progress: CaseProgress, workflow_id: str, run_id: str, completed_at: datetime, key: bytes) -> Certificate:
    deadline = progress.deadline
    certificate = Certificate(
        certificate_id=run_id,
        subject_ref=progress.subject_ref,
        workflow_id=workflow_id,
        reason=progress.reason.value,
        status=progress.status.value,
        requested_at=progress.requested_at,
        completed_at=completed_at,
        deadline=deadline,
        deadline_met=completed_at <= deadline,
        systems=[_outcome(system) for system in progress.systems],
        residual=[_outcome(store) for store in progress.residual],
        decisions=progress.decisions,
    )
    return certificate.signed(key)


def _outcome(part: SystemProgress) -> SystemOutcome:
    return SystemOutcome(
        name=part.name, outcome=part.stage.value, accounts=part.accounts, evidence=part.evidence, error=part.error
    )


def to_markdown(certificate: Certificate) -> str:
    lines = [
        f"# Erasure certificate {certificate.certificate_id}",
        "",
        f"- Subject reference: `{certificate.subject_ref}` (the person is not named here)",
        f"- Reason: {certificate.reason}",
        f"- Status: **{certificate.status}**",
        f"- Requested: {certificate.requested_at.isoformat()}",
        f"- Completed: {certificate.completed_at.isoformat()}",
        f"- Deadline: {certificate.deadline.isoformat()} ({'met' if certificate.deadline_met else 'MISSED'})",
        "",
        "| System | Outcome | Accounts | Evidence |",
        "|---|---|---|---|",
    ]
    for system in certificate.systems:
        evidence = "; ".join(
            f"{item.action} {item.outcome}" + (f" (HTTP {item.http_status})" if item.http_status else "")
            for item in system.evidence
        )
        if system.error:
            evidence = f"{evidence}; error: {system.error}" if evidence else f"error: {system.error}"
        lines.append(f"| {system.name} | {system.outcome} | {len(system.accounts)} | {evidence} |")
    if certificate.residual:
        lines += ["", "## Residual records anonymized", "", "| Store | Outcome | Rows |", "|---|---|---|"]
        for store in certificate.residual:
            rows = sum(item.count or 0 for item in store.evidence if item.action == "anonymize")
            lines.append(f"| {store.name} | {store.outcome} | {rows} |")
    if certificate.decisions:
        lines += ["", "## Decisions", "", "| When | Operator | Action | System | Note |", "|---|---|---|---|---|"]
        for decision in certificate.decisions:
            lines.append(
                f"| {decision.at.isoformat()} | {decision.operator} | {decision.action} | "
                f"{decision.system or '(case)'} | {decision.note} |"
            )
    lines += ["", f"Signature: `{certificate.signature}`", ""]
    return "\n".join(lines)
