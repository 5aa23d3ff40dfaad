"""The deletion circuit breaker: when deletions in the last hour pass a threshold, for one
system or for the whole fleet, further deletions wait until an operator releases the breaker
or allows more. A bug or a bad CSV that starts ten thousand cases then deletes at most the
threshold before a person looks.

State lives in the ledger, shared by every worker; a permit is one row, so counting is a
query and a retried permit (same key) is not counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from lethe import audit
from lethe.ledger import BreakerState, DeletionPermit, as_utc, utcnow

FLEET = "*"
WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class Limits:
    system: int
    fleet: int


@dataclass(frozen=True)
class Permit:
    granted: bool
    newly_tripped: tuple[str, ...] = ()  # scopes this request tripped: notify once


def _state(session: Session, scope: str) -> BreakerState:
    return session.get(BreakerState, scope) or BreakerState(scope=scope)


def _count(session: Session, scope: str, since: datetime) -> int:
    query = (
        select(func.count())
        .select_from(DeletionPermit)
        .where(col(DeletionPermit.granted_at) > since, col(DeletionPermit.waived).is_(False))
    )
    if scope != FLEET:
        query = query.where(DeletionPermit.system == scope)
    return session.exec(query).one()


def serialized(session: Session) -> None:
    """Take the database's write lock first, so that a read and the write that depends on it
    are one step for every worker (two requests at the limit cannot both see room for one more)."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")
    elif dialect == "postgresql":
        session.connection().exec_driver_sql("SELECT pg_advisory_xact_lock(7031740)")


def request_permit(
    engine: Engine, key: str, system: str, limits: Limits, waiting_since: datetime | None = None
) -> Permit:
    """Grant one deletion in `system` if neither its breaker nor the fleet's is over the limit,
    or if it has waited since before an operator released the breakers that held it."""
    now = utcnow()
    with Session(engine) as session:
        serialized(session)
        if session.get(DeletionPermit, key) is not None:
            return Permit(granted=True)
        states = [(_state(session, system), limits.system), (_state(session, FLEET), limits.fleet)]
        if waiting_since is not None and all(_released_after(state, waiting_since) for state, _ in states):
            session.add(DeletionPermit(key=key, system=system, granted_at=now, waived=True))
            session.commit()
            return Permit(granted=True)
        tripped: list[str] = []
        for state, limit in states:
            scope = state.scope
            since = max(now - WINDOW, as_utc(state.released_at or now - WINDOW))
            if state.tripped_at is not None or _count(session, scope, since) >= limit + state.allowance:
                if state.tripped_at is None:
                    state.tripped_at = now
                    session.add(state)
                    tripped.append(scope)
                session.commit()
                return Permit(granted=False, newly_tripped=tuple(tripped))
        session.add(DeletionPermit(key=key, system=system, granted_at=now))
        session.commit()
        return Permit(granted=True)


def _released_after(state: BreakerState, waiting_since: datetime) -> bool:
    """A breaker that never tripped holds nothing back; a tripped one, until a later release."""
    if state.tripped_at is None and state.released_at is None:
        return True
    return state.released_at is not None and as_utc(state.released_at) >= as_utc(waiting_since)


def release(engine: Engine, scope: str, operator: str, note: str) -> None:
    """Close the breaker: the deletions waiting now go ahead, and counting restarts from here."""
    with Session(engine) as session:
        state = _state(session, scope)
        state.tripped_at, state.released_at, state.allowance = None, utcnow(), 0
        session.add(state)
        session.commit()
    audit.append(engine, operator, "breaker.release", scope=scope, note=note)


def allow(engine: Engine, scope: str, count: int, operator: str, note: str) -> None:
    """Raise the threshold of the current window by `count` (a planned layoff), and close it."""
    if count <= 0:
        raise ValueError("--count must be a positive number of deletions")
    with Session(engine) as session:
        state = _state(session, scope)
        state.allowance += count
        state.tripped_at = None
        session.add(state)
        session.commit()
    audit.append(engine, operator, "breaker.allow", scope=scope, count=count, note=note)


def status(engine: Engine) -> list[tuple[str, bool, int, int]]:
    """(scope, tripped, deletions in the window, allowance): the fleet's, and each system's that
    has seen a deletion."""
    now = utcnow()
    with Session(engine) as session:
        states = {state.scope: state for state in session.exec(select(BreakerState)).all()}
        scopes = {FLEET, *states, *session.exec(select(DeletionPermit.system).distinct()).all()}
        rows = []
        for scope in sorted(scopes):
            state = states.get(scope) or BreakerState(scope=scope)
            since = max(now - WINDOW, as_utc(state.released_at or now - WINDOW))
            rows.append((scope, state.tripped_at is not None, _count(session, scope, since), state.allowance))
        return rows
