"""The ledger: Lethe's own database of cases, evidence, certificates, tombstones and the vault.

The vault is the one place a person's identifier is kept while their case runs; it is
destroyed when the case is certified or aborted. Every other table holds only the
subject_ref and opaque account ids.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

from sqlalchemy import Engine, event
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Field, Session, SQLModel, create_engine, select


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """The same instant in UTC, so that a value hashed before and after a database round trip
    (which may change its zone, or drop it on SQLite) reads the same."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class VaultEntry(SQLModel, table=True):
    __tablename__ = "vault"

    subject_ref: str = Field(primary_key=True, max_length=64)
    identifier: str
    stored_at: datetime = Field(default_factory=utcnow)


class CaseRecord(SQLModel, table=True):
    __tablename__ = "cases"

    subject_ref: str = Field(primary_key=True, max_length=64)
    workflow_id: str
    reason: str
    status: str
    requested_at: datetime
    completed_at: datetime | None = None


class CertificateRecord(SQLModel, table=True):
    __tablename__ = "certificates"

    id: int | None = Field(default=None, primary_key=True)
    subject_ref: str = Field(index=True, max_length=64)
    workflow_id: str
    run_id: str = Field(unique=True)
    issued_at: datetime
    body: str  # the signed certificate, canonical JSON


class EscalationRecord(SQLModel, table=True):
    """A system handed to an operator, and the decision that closed it."""

    __tablename__ = "escalations"

    id: int | None = Field(default=None, primary_key=True)
    workflow_id: str = Field(index=True)
    run_id: str
    subject_ref: str = Field(index=True, max_length=64)
    system: str
    kind: str
    message: str
    opened_at: datetime
    resolved_at: datetime | None = None
    action: str | None = None
    operator: str | None = None
    note: str | None = None


class AuditEntry(SQLModel, table=True):
    """One line of the append-only audit log (see lethe.audit)."""

    __tablename__ = "audit_log"

    seq: int = Field(primary_key=True)  # unique: two writers cannot both append entry n
    at: datetime
    actor: str
    action: str
    subject_ref: str | None = Field(default=None, max_length=64)
    detail: str
    prev_hash: str
    hash: str


class DeletionPermit(SQLModel, table=True):
    """One deletion the circuit breaker let through; counted over a rolling window."""

    __tablename__ = "deletion_permits"

    key: str = Field(primary_key=True)  # run id, system, account: a retried permit is not counted twice
    system: str = Field(index=True)
    granted_at: datetime = Field(index=True)
    waived: bool = False  # let through by a release: not counted against the threshold


class BreakerState(SQLModel, table=True):
    """A breaker per system, and one for the fleet (scope "*")."""

    __tablename__ = "breakers"

    scope: str = Field(primary_key=True)
    tripped_at: datetime | None = None
    released_at: datetime | None = None  # deletions waiting since before this go ahead
    allowance: int = 0  # extra deletions allowed by an operator (a planned layoff)


class PacingSlot(SQLModel, table=True):
    """When the next request to a system may go out (see lethe.pacing)."""

    __tablename__ = "pacing"

    system: str = Field(primary_key=True)
    next_at: float  # epoch seconds


class Tombstone(SQLModel, table=True):
    __tablename__ = "tombstones"

    subject_ref: str = Field(primary_key=True, max_length=64)
    erased_at: datetime
    reappearances: int = 0
    last_reappeared_at: datetime | None = None


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    """One engine per ledger URL per process, with the tables created."""
    # A server's connections can go stale; a file's cannot, and a ping per checkout costs time.
    engine = create_engine(url, pool_pre_ping=not url.startswith("sqlite"))
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        SQLModel.metadata.create_all(engine)
    except OperationalError:
        # Two processes creating a new SQLite ledger at once: the other one won the race.
        SQLModel.metadata.create_all(engine)
    return engine


def _sqlite_pragmas(connection, _record) -> None:  # type: ignore[no-untyped-def]
    # The CLI and the worker share the file: WAL and a busy timeout keep them out of each other's way.
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # WAL with NORMAL sync cannot corrupt the file; a power cut may lose the last commits. Fine
    # for the single-machine default; production ledgers are PostgreSQL.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def store_identifier(engine: Engine, ref: str, identifier: str) -> None:
    """Upsert; the same event delivered twice at once may race to insert the same row."""
    for _ in range(3):
        with Session(engine) as session:
            entry = session.get(VaultEntry, ref) or VaultEntry(subject_ref=ref, identifier=identifier)
            entry.identifier = identifier
            session.add(entry)
            try:
                session.commit()
                return
            except IntegrityError:
                session.rollback()  # the other writer won: update its row on the next pass
    raise RuntimeError("vault: could not store the identifier after repeated conflicts")


def lookup_identifier(engine: Engine, ref: str) -> str | None:
    with Session(engine) as session:
        entry = session.get(VaultEntry, ref)
        return entry.identifier if entry else None


def destroy_identifier(engine: Engine, ref: str) -> bool:
    with Session(engine) as session:
        entry = session.get(VaultEntry, ref)
        if entry is None:
            return False
        session.delete(entry)
        session.commit()
        return True


def latest_certificate(engine: Engine, ref: str) -> CertificateRecord | None:
    with Session(engine) as session:
        query = (
            select(CertificateRecord)
            .where(CertificateRecord.subject_ref == ref)
            .order_by(CertificateRecord.issued_at.desc())  # type: ignore[attr-defined]
        )
        return session.exec(query).first()


def note_reappearance(engine: Engine, ref: str) -> Tombstone | None:
    """Count a new event or account for an already forgotten subject; None if never forgotten."""
    with Session(engine) as session:
        tombstone = session.get(Tombstone, ref)
        if tombstone is None:
            return None
        tombstone.reappearances += 1
        tombstone.last_reappeared_at = utcnow()
        session.add(tombstone)
        session.commit()
        session.refresh(tombstone)
        return tombstone
