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
    RUNNING = "running"
    GRACE = "grace"
    ERASING = "erasing"
    COMPLETED = "completed"  # every system confirmed or not-found
    INCOMPLETE = "incomplete"  # at least one system failed
    CANCELLED = "cancelled"


class Stage(StrEnum):
    PENDING = "pending"
    RESOLVING = "resolving"
    REVOKING = "revoking"
    REVOKED = "revoked"
    ERASING = "erasing"
    CONFIRMING = "confirming"
    CONFIRMED = "confirmed"
    NOT_FOUND = "not-found"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_OK = {Stage.CONFIRMED, Stage.NOT_FOUND}


class SystemPlan(BaseModel):
    """A connected system as the workflow sees it: no URL, no secret."""

    name: str
    kind: Literal["scim"] = "scim"
    on_leave: Literal["delete", "deactivate"] = "delete"
    task_queue: str
    confirm_every_seconds: float = 10
    confirm_within_seconds: float = 7 * 86400


class ForgetInput(BaseModel):
    subject_ref: str = Field(pattern=r"^[0-9a-f]{32}$")
    reason: Reason
    requested_at: datetime
    grace_seconds: float = Field(ge=0)
    systems: list[SystemPlan]


class Evidence(BaseModel):
    """One effect on one account: what was done, what the system answered, when."""

    action: str
    account_id: str | None = None
    http_status: int | None = None
    outcome: str
    at: datetime
    attempts: int = 1


class SystemProgress(BaseModel):
    name: str
    stage: Stage = Stage.PENDING
    accounts: list[str] = []
    evidence: list[Evidence] = []
    error: str | None = None


class CaseProgress(BaseModel):
    subject_ref: str
    reason: Reason
    status: CaseStatus
    requested_at: datetime
    grace_until: datetime | None = None
    systems: list[SystemProgress]


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


class OpenCaseInput(BaseModel):
    subject_ref: str
    workflow_id: str
    reason: Reason
    requested_at: datetime


class CertifyInput(BaseModel):
    workflow_id: str
    run_id: str
    progress: CaseProgress
    completed_at: datetime
