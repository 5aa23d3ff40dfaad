"""What goes in and out of the ForgetSubject workflow. No field may hold personal data:
a person is a subject_ref, an account is the opaque id its system gave it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field


class Reason(StrEnum):
    LEAVER = "leaver"
    ERASURE_REQUEST = "erasure-request"


class CaseStatus(StrEnum):
    AWAITING_APPROVAL = "awaiting-approval"
    RUNNING = "running"
    GRACE = "grace"
    ERASING = "erasing"
    ESCALATED = "escalated"  # at least one system waits for an operator's decision
    PAUSED_BY_BREAKER = "paused-by-breaker"  # deletions wait for the circuit breaker
    COMPLETED = "completed"  # every system confirmed, not-found, or decided by an operator
    CANCELLED = "cancelled"  # rehired during the grace period: nothing was deleted
    ABORTED = "aborted"  # cancelled by an operator in Temporal


FINAL_STATUSES = {CaseStatus.COMPLETED.value, CaseStatus.CANCELLED.value, CaseStatus.ABORTED.value}


class Stage(StrEnum):
    PENDING = "pending"
    REVOKING = "revoking"
    REVOKED = "revoked"
    ON_HOLD = "on-hold"
    PAUSED = "paused-by-breaker"
    ERASING = "erasing"
    CONFIRMING = "confirming"
    ESCALATED = "escalated"
    CONFIRMED = "confirmed"
    NOT_FOUND = "not-found"
    CONFIRMED_BY_OPERATOR = "confirmed-by-operator"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


# The stages that end a system's part of the case without anything left to do.
FINAL_OK = {Stage.CONFIRMED, Stage.NOT_FOUND, Stage.CONFIRMED_BY_OPERATOR, Stage.SKIPPED}
DECISION_ACTIONS = ("retry", "confirm", "skip")


class SystemPlan(BaseModel):
    """A connected system as the workflow sees it: no URL, no secret."""

    name: str
    kind: Literal["scim", "erasure-job"] = "scim"
    on_leave: Literal["delete", "deactivate"] = "delete"
    task_queue: str
    confirm_every_seconds: float = 10
    confirm_within_seconds: float = 7 * 86400


class EscalationPlan(BaseModel):
    remind_every_seconds: float = 86400
    warn_before_seconds: float = 5 * 86400


class ForgetInput(BaseModel):
    subject_ref: str = Field(pattern=r"^[0-9a-f]{32}$")
    reason: Reason
    requested_at: datetime
    grace_seconds: float = Field(ge=0)
    deadline_seconds: float = Field(default=30 * 86400, gt=0)
    needs_approval: bool = False
    breaker_poll_seconds: float = Field(default=30, gt=0)
    escalation: EscalationPlan = EscalationPlan()
    systems: list[SystemPlan]
    residual_stores: list[str] = []  # anonymized once every system is done


class Evidence(BaseModel):
    """One effect on one account: what was done, what the system answered, when."""

    action: str
    account_id: str | None = None
    http_status: int | None = None
    outcome: str
    at: datetime
    attempts: int = 1
    count: int | None = None  # rows, for residual stores


class Decision(BaseModel):
    """An operator's decision on an escalated system (the `resolve` update).

    Plain strings, checked by the update's validator, so a bad value is rejected with a
    message instead of failing to decode."""

    system: str
    action: str  # retry | confirm | skip
    note: str
    operator: str
    account_id: str | None = None  # with retry: act on this account only (after an ambiguous match)


class Approval(BaseModel):
    operator: str
    note: str = ""


class DecisionRecord(BaseModel):
    """Who decided what, when: the accountability trail of a case."""

    action: str
    operator: str
    note: str
    at: datetime
    system: str | None = None
    account_id: str | None = None


class SystemProgress(BaseModel):
    name: str
    stage: Stage = Stage.PENDING
    accounts: list[str] = []
    evidence: list[Evidence] = []
    error: str | None = None
    escalation: str | None = None  # why it waits for a person: Credentials, Rejected, Ambiguous, ...


class CaseProgress(BaseModel):
    subject_ref: str
    reason: Reason
    status: CaseStatus
    requested_at: datetime
    deadline: datetime
    grace_until: datetime | None = None
    holds: list[str] = []
    systems: list[SystemProgress]
    residual: list[SystemProgress] = []
    decisions: list[DecisionRecord] = []

    def system(self, name: str) -> SystemProgress | None:
        """A connected system or a residual store: an operator resolves either by name."""
        return next((part for part in self.systems + self.residual if part.name == name), None)

    @property
    def pending(self) -> list[str]:
        return [part.name for part in self.systems + self.residual if part.stage is Stage.ESCALATED]


# --- activity arguments and results -------------------------------------------------------


class SubjectInSystem(BaseModel):
    system: str
    subject_ref: str


class AccountInSystem(BaseModel):
    system: str
    account_id: str


class FoundAccounts(BaseModel):
    account_ids: list[str]
    http_status: int


class StepResult(BaseModel):
    """The answer of one write or check; `outcome` is e.g. "done", "already-gone"."""

    outcome: str
    http_status: int | None = None
    attempts: int = 1


class Revoked(BaseModel):
    """The subject's accounts in one system, each deactivated: `steps` in the order of `account_ids`."""

    account_ids: list[str]
    steps: list[StepResult]


class EraseInput(BaseModel):
    system: str
    subject_ref: str
    account_ids: list[str]
    check_match: bool = True  # once all are gone, the match attribute must find nobody


class AccountErased(BaseModel):
    account_id: str
    deleted: StepResult
    gone: StepResult | None  # None: the system still shows the account; confirm by polling


class Erased(BaseModel):
    accounts: list[AccountErased]
    nothing_matches: StepResult | None  # None when not checked (some account not yet gone)


class OpenCaseInput(BaseModel):
    subject_ref: str
    workflow_id: str
    reason: Reason
    requested_at: datetime


class EscalationNotice(BaseModel):
    """What an escalation webhook is told: the case, the system, the problem, what to run."""

    workflow_id: str
    subject_ref: str
    system: str
    kind: str
    message: str
    deadline: datetime
    reminder: int = 0
    to_dpo: bool = False


class EscalationEvent(BaseModel):
    """An escalation opened, or closed by a decision, for the ledger."""

    workflow_id: str
    run_id: str
    subject_ref: str
    system: str
    kind: str
    message: str
    opened_at: datetime
    decision: DecisionRecord | None = None


class AuditInput(BaseModel):
    actor: str
    action: str
    subject_ref: str
    workflow_id: str
    note: str = ""


class PermitRequest(BaseModel):
    """May this deletion go ahead? `key` makes a retried request count once."""

    system: str
    key: str
    wait: bool = False  # fail retryably (polled) until granted
    waiting_since: datetime | None = None  # when first held back: a release lets it through


class CertifyInput(BaseModel):
    workflow_id: str
    run_id: str
    progress: CaseProgress
    completed_at: datetime


class DryRunPart(BaseModel):
    """What a forget would do in one system or residual store."""

    name: str
    count: int | None = None  # accounts, or residual rows
    would: list[str]
    note: str = ""


class DryRunReport(BaseModel):
    subject_ref: str
    systems: list[DryRunPart]
    residual: list[DryRunPart]
