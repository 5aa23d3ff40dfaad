"""Reconciliation sweeps: erasures stay done, and leavers nobody reported are still offboarded.

A sweep pages through every SCIM system's accounts (startIndex/count) and acts on two rules only:

- reappeared: the account's match attribute hashes to a tombstoned subject_ref. A forgotten
  person is back (a re-import, a sync job): their case starts again and an escalation of kind
  `reappeared` is recorded, because someone must find what re-created the account. In a
  deactivate-only system a disabled account is the expected end state, so only an active one counts.
- stale leaver: the account is deactivated (active=false) and was last modified longer ago than
  the grace, no `forget-<ref>` case runs, and no case ended after that change: a leaver case starts.

Every other account is read and left alone. Pages are read from the last to the first: the
accounts this sweep gets deleted sit at or after the page being read, so their removal shifts
only accounts already read, and no account slips between two pages because of the sweep itself.
 Identifiers are read from SCIM inside the activity,
go to the vault, and never into Temporal: activity results carry subject_refs and counts.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field
from scim2_models import User


class Rule(StrEnum):
    REAPPEARED = "reappeared"
    LEAVER = "leaver"


class PageRequest(BaseModel):
    system: str
    end_index: int | None = Field(default=None, ge=0)  # the page's last 1-based index; None: the last account
    count: int = Field(ge=1)
    as_of: datetime  # the sweep's start: the grace is measured against it
    workflow_id: str  # for the audit entries


class PageOutcome(BaseModel):
    system: str
    seen: int
    total: int
    next_end: int | None  # the next page's last index; None: this was the first page
    reappeared: list[str] = []  # subject_refs whose case was started again
    leavers: list[str] = []  # subject_refs whose leaver case was started
    handled: int = 0  # matched a rule, but a case already runs (or already ended after the change)


class SystemTally(BaseModel):
    system: str
    seen: int = 0
    reappeared: int = 0
    leavers: int = 0
    handled: int = 0
    pages: int = 0
    finished: bool = False
    error: str | None = None


class ReconcileInput(BaseModel):
    """The schedule's argument, and what continue-as-new carries forward."""

    page_size: int = Field(default=100, ge=1)
    pages_per_run: int = Field(default=200, ge=1)
    tallies: list[SystemTally] | None = None  # None: a fresh sweep plans from the worker's config
    next_end: int | None = None  # where the current system's next page ends; None: at its last account
    as_of: datetime | None = None
    runs: int = 1


class ReconcileResult(BaseModel):
    systems: list[SystemTally]
    seen: int
    reappeared: int
    leavers: int
    runs: int


class RecordSweep(BaseModel):
    workflow_id: str
    run_id: str
    result: ReconcileResult


def identifiers(user: User, match: str) -> list[str]:
    """The values of the system's match attribute on one account (several for emails)."""
    if match == "userName":
        values = [user.user_name]
    elif match == "emails":
        values = [email.value for email in user.emails or []]
    else:
        values = [user.external_id]
    return [value for value in values if value and value.strip()]
