"""The audit log's hash chain and the certificate's signature detect any change."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from lethe import audit
from lethe.case import CaseProgress, CaseStatus, DecisionRecord, Evidence, Reason, Stage, SystemProgress
from lethe.certificate import Certificate, issue
from lethe.ledger import AuditEntry, engine_for

KEY = b"k" * 32


@pytest.fixture
def ledger(tmp_path: Path) -> sa.Engine:
    engine = engine_for(f"sqlite:///{tmp_path / 'ledger.db'}")
    for n in range(5):
        audit.append(engine, f"operator-{n}", "decision.retry", "a" * 32, note=f"note {n}")
    return engine


def test_intact_chain_verifies(ledger: sa.Engine) -> None:
    assert audit.verify(ledger) == (True, "5 entries, chain intact")


@pytest.mark.parametrize("field,value", [("actor", "someone-else"), ("note", "rewritten"), ("action", "decision.skip")])
def test_edited_entry_is_detected(ledger: sa.Engine, field: str, value: str) -> None:
    with Session(ledger) as session:
        entry = session.exec(select(AuditEntry).where(AuditEntry.seq == 3)).one()
        if field == "note":
            entry.detail = json.dumps({"note": value})
        else:
            setattr(entry, field, value)
        session.add(entry)
        session.commit()
    assert audit.verify(ledger) == (False, "entry 3 was changed after it was written")


def test_removed_entry_is_detected(ledger: sa.Engine) -> None:
    with Session(ledger) as session:
        session.delete(session.exec(select(AuditEntry).where(AuditEntry.seq == 2)).one())
        session.commit()
    assert audit.verify(ledger) == (False, "entry 2 is missing (next is 3)")


def test_removed_last_entries_and_rehashed_edit_are_detected(ledger: sa.Engine) -> None:
    # Editing entry 4 and recomputing its own hash still breaks the link from entry 5.
    with Session(ledger) as session:
        entry = session.exec(select(AuditEntry).where(AuditEntry.seq == 4)).one()
        entry.actor = "forger"
        entry.hash = audit.entry_hash(entry.seq, entry.at, entry.actor, entry.action, entry.subject_ref, entry.detail, entry.prev_hash)
        session.add(entry)
        session.commit()
    assert audit.verify(ledger) == (False, "entry 5 does not follow entry 4 (removed or edited before it)")


def certificate() -> Certificate:
    now = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    progress = CaseProgress(
        subject_ref="b" * 32,
        reason=Reason.LEAVER,
        status=CaseStatus.COMPLETED,
        requested_at=now,
        deadline=now,
        systems=[SystemProgress(name="chat", stage=Stage.CONFIRMED, accounts=["id1"], evidence=[Evidence(action="delete", account_id="id1", http_status=204, outcome="done", at=now)])],
        decisions=[DecisionRecord(action="skip", operator="ana", note="n", at=now, system="chat")],
    )
    return issue(progress, "forget-" + "b" * 32, "run-1", now, KEY)


def changes(body: dict[str, Any]) -> list[dict[str, Any]]:
    """One copy of the body per field, with that field changed."""
    variants = []
    for key, value in body.items():
        if key == "signature":
            continue
        changed = json.loads(json.dumps(body))
        if isinstance(value, bool):
            changed[key] = not value
        elif isinstance(value, list):
            changed[key] = value[:-1] if value else [{}]
            if key == "systems":
                changed[key] = [{**value[0], "outcome": "not-found"}]
        elif isinstance(value, str):
            changed[key] = value + "x" if not value[:4].isdigit() else value.replace("2026", "2025")
        variants.append(changed)
    return variants


def test_certificate_verify_fails_after_any_field_changes() -> None:
    original = certificate()
    assert original.verify(KEY)
    body = original.model_dump(mode="json")
    variants = changes(body)
    assert len(variants) == len(body) - 1
    for changed in variants:
        try:
            tampered = Certificate.model_validate(changed)
        except ValueError:
            continue  # not even a certificate any more
        assert not tampered.verify(KEY), f"a change went unnoticed: {changed}"
    assert not original.verify(b"another key")
