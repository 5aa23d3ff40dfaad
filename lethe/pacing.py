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


def slot_interval(rate: float) -> float:
    """Seconds between slots for a limit of `rate` requests per second.

    A request may go out a little after its slot (a busy machine wakes late; sending it then
    beats queueing it again). Requests sent up to `late` after slots s apart put fewer than
    (1 + late) / s + 1 of them in any one-second window: with s = 1 / (rate - 1) and late < s that
    is `rate`, where s = 1 / rate would allow rate + 1. Below 2 per second there is no slack to
    spare, and a late request takes a new slot instead.
    """
    return 1.0 / (rate - 1) if rate >= 2 else 1.0 / rate


def may_go_late(rate: float) -> float:
    """How many seconds after its slot a request may still be sent (short of a whole interval)."""
    return 0.9 * slot_interval(rate) if rate >= 2 else 0.0


def reserve_slot(engine: Engine, system: str, rate: float, now: float | None = None) -> float:
    """The wall-clock time (epoch seconds) at which this request may be sent."""
    now = time.time() if now is None else now
    with Session(engine) as session:
        serialized(session)
        slot = session.get(PacingSlot, system) or PacingSlot(system=system, next_at=now)
        at = max(slot.next_at, now)
        slot.next_at = at + slot_interval(rate)
        session.add(slot)
        session.commit()
        return at
