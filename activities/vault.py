"""Reading a subject's identifier from the ledger's vault, the one place it is kept."""

from __future__ import annotations

import asyncio

from sqlalchemy import Engine
from temporalio.exceptions import ApplicationError

from lethe.ledger import lookup_identifier


async def identifier_for(ledger: Engine, subject_ref: str, where: str) -> str:
    """The identifier, or a non-retryable failure naming `where` (e.g. "find in chat")."""
    identifier = await asyncio.to_thread(lookup_identifier, ledger, subject_ref)
    if identifier is None:
        raise ApplicationError(
            f"{where}: no identifier in the vault for this subject (already certified?)",
            type="VaultEmpty",
            non_retryable=True,
        )
    return identifier
