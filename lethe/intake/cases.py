"""What an accepted event does to a case: start or join it, or send it a signal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from lethe.case import Reason
from lethe.settings import Settings
from lethe.subject import subject_ref, workflow_id
from lethe.start import start_case


class NoCase(Exception):
    """A signal for a subject without a running case."""

    def __init__(self, case_id: str) -> None:
        super().__init__(f"no running case {case_id} for this subject; send a leaver or erasure-request event first")
        self.case_id = case_id


@dataclass(frozen=True)
class Opened:
    workflow_id: str
    outcome: Literal["started", "joined"]


@dataclass
class CaseDesk:
    """The intake's only way to touch cases; it never sees more than the identifier it is given."""

    client: Client
    settings: Settings

    def case_id(self, identifier: str) -> str:
        return workflow_id(subject_ref(self.settings.pepper_bytes(), identifier))

    async def open(self, identifier: str, reason: Reason) -> Opened:
        """Start the subject's case, or join the running one (the same workflow id)."""
        case_id = self.case_id(identifier)
        if await self.is_running(case_id):
            # Joining a running case changes nothing: its identifier is already in the vault.
            return Opened(case_id, "joined")
        handle = await start_case(self.client, self.settings, identifier, reason, None)
        # USE_EXISTING: a case started meanwhile by a concurrent event is joined, not doubled.
        return Opened(handle.id, "started")

    async def signal(self, identifier: str, name: str, system: str | None) -> str:
        case_id = self.case_id(identifier)
        handle = self.client.get_workflow_handle(case_id)
        try:
            await handle.signal(name, args=[] if name == "rehire" else [system])
        except RPCError as exc:
            if exc.status is RPCStatusCode.NOT_FOUND:
                raise NoCase(case_id) from None
            raise
        return case_id

    async def is_running(self, case_id: str) -> bool:
        try:
            description = await self.client.get_workflow_handle(case_id).describe()
        except RPCError as exc:
            if exc.status is RPCStatusCode.NOT_FOUND:
                return False
            raise
        return description.status is WorkflowExecutionStatus.RUNNING
