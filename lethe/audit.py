"""The append-only audit log: who decided what, when. Each entry carries the hash of the one
before it, so an edited or deleted entry breaks the chain and `audit verify` says where."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from lethe.ledger import AuditEntry, as_utc, utcnow

GENESIS = "0" * 64
_APPEND_TRIES = 20


def entry_hash(seq: int, at: datetime, actor: str, action: str, subject_ref: str | None, detail: str, prev_hash: str) -> str:
    body = json.dumps(
        [seq, as_utc(at).isoformat(), actor, action, subject_ref, detail, prev_hash], separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(body.encode()).hexdigest()


def append(engine: Engine, actor: str, action: str, subject_ref: str | None = None, **detail: Any) -> AuditEntry:
    """Append one entry. Concurrent writers race for the next `seq` (unique); the loser retries."""
    for _ in range(_APPEND_TRIES):
        with Session(engine) as session:
            last = session.exec(select(AuditEntry).order_by(col(AuditEntry.seq).desc()).limit(1)).first()
            seq = (last.seq + 1) if last else 1
            prev_hash = last.hash if last else GENESIS
            at = utcnow()
            detail_text = json.dumps(detail, sort_keys=True, default=str, ensure_ascii=False)
            entry = AuditEntry(
                seq=seq,
                at=at,
                actor=actor,
                action=action,
                subject_ref=subject_ref,
                detail=detail_text,
                prev_hash=prev_hash,
                hash=entry_hash(seq, at, actor, action, subject_ref, detail_text, prev_hash),
            )
            session.add(entry)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                continue
            session.refresh(entry)
            return entry
    raise RuntimeError("audit log: could not append after repeated conflicts")


def logged_for_run(engine: Engine, action: str, run_id: str, among_last: int = 50) -> bool:
    """Whether one of the last entries of `action` was written for this run: a retried
    activity finds its own entry and does not log twice."""
    with Session(engine) as session:
        recent = session.exec(
            select(AuditEntry).where(AuditEntry.action == action).order_by(col(AuditEntry.seq).desc()).limit(among_last)
        ).all()
    return any(json.loads(entry.detail).get("run_id") == run_id for entry in recent)


def verify(engine: Engine) -> tuple[bool, str]:
    """(True, summary) when the chain is whole; (False, the first broken place) otherwise."""
    with Session(engine) as session:
        entries = session.exec(select(AuditEntry).order_by(col(AuditEntry.seq))).all()
    prev_hash, expected_seq = GENESIS, 1
    for entry in entries:
        if entry.seq != expected_seq:
            return False, f"entry {expected_seq} is missing (next is {entry.seq})"
        recomputed = entry_hash(entry.seq, entry.at, entry.actor, entry.action, entry.subject_ref, entry.detail, entry.prev_hash)
        if entry.prev_hash != prev_hash:
            return False, f"entry {entry.seq} does not follow entry {entry.seq - 1} (removed or edited before it)"
        if recomputed != entry.hash:
            return False, f"entry {entry.seq} was changed after it was written"
        prev_hash, expected_seq = entry.hash, expected_seq + 1
    return True, f"{len(entries)} entries, chain intact"
