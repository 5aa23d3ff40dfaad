"""Fleet-wide request pacing per system: every request reserves the next free slot, 1/rate
seconds after the previous one, in the ledger shared by all workers.

Temporal's task-queue rate limit holds a system's rate on average, but its token bucket
lets a burst of about twice the limit through after a quiet spell (measured at our proxy).
Spacing the requests themselves keeps every one-second window within the vendor's limit.
"""

from __future__ import annotations

import time

from sqlalchemy import Engine
from sqlmodel import Session

from lethe.breaker import serialized
from lethe.ledger import PacingSlot


def reserve_slot(engine: Engine, system: str, rate: float, now: float | None = None) -> float:
    """The wall-clock time (epoch seconds) at which this request may be sent."""
    now = time.time() if now is None else now
    with Session(engine) as session:
        serialized(session)
        slot = session.get(PacingSlot, system) or PacingSlot(system=system, next_at=now)
        at = max(slot.next_at, now)
        slot.next_at = at + 1.0 / rate
        session.add(slot)
        session.commit()
        return at
