"""What the intake has already seen: request signatures (replay protection) and idempotency keys.

Kept in the ledger database so every intake process shares it. Keys and fingerprints are
SHA-256 digests: an idempotency key chosen by a sender may well contain a name.
"""

from __future__ import annotations

import hashlib
import time
from enum import StrEnum

from sqlalchemy import Engine, delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel


class IntakeClaim(SQLModel, table=True):
    __tablename__ = "intake_claims"

    key: str = Field(primary_key=True, max_length=80)
    fingerprint: str = Field(max_length=64)  # what the key stood for, to catch a key reused for another event
    expires_at: float = Field(index=True)  # Unix seconds: comparable the same way on every database


class Claim(StrEnum):
    NEW = "new"  # first time: act on it
    DUPLICATE = "duplicate"  # seen, for the same event: acknowledge, do nothing
    CONFLICT = "conflict"  # seen, for a different event: refuse


def digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _key(kind: str, value: str) -> str:
    return f"{kind}:{digest(kind, value)}"


_ready: set[int] = set()


def ensure_tables(engine: Engine) -> None:
    if id(engine) not in _ready:
        SQLModel.metadata.create_all(engine, tables=[IntakeClaim.__table__])  # type: ignore[attr-defined]
        _ready.add(id(engine))


def claim(engine: Engine, kind: str, value: str, fingerprint: str, ttl_seconds: float) -> Claim:
    """Atomically take (kind, value) for ttl_seconds; concurrent claimers get exactly one NEW."""
    ensure_tables(engine)
    key = _key(kind, value)
    now = time.time()
    with Session(engine) as session:
        session.exec(delete(IntakeClaim).where(IntakeClaim.expires_at < now))  # type: ignore[call-overload, arg-type]
        session.commit()
        session.add(IntakeClaim(key=key, fingerprint=fingerprint, expires_at=now + ttl_seconds))
        try:
            session.commit()
            return Claim.NEW
        except IntegrityError:
            session.rollback()
        existing = session.get(IntakeClaim, key)
    if existing is None:  # expired between our insert and read: rare, and safe to treat as seen
        return Claim.DUPLICATE
    return Claim.DUPLICATE if existing.fingerprint == fingerprint else Claim.CONFLICT


def release(engine: Engine, kind: str, value: str) -> None:
    """Give a claim back when acting on it failed, so the sender's retry is not taken for a duplicate."""
    key = _key(kind, value)
    with Session(engine) as session:
        existing = session.get(IntakeClaim, key)
        if existing is not None:
            session.delete(existing)
            session.commit()
