"""`lethe report`: a ledger with known cases, certificates, escalations, audit entries and tombstones,
and the summary it must give over a period (the CLI's text and JSON too)."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from lethe import audit
from lethe.case import CaseProgress, CaseStatus, Evidence, Reason, Stage, SystemProgress
from lethe.certificate import issue
from lethe.ledger import CaseRecord, CertificateRecord, EscalationRecord, Tombstone, engine_for
from lethe.report import build
from lethe.retention_cli import add_commands
from lethe.settings import Settings
from tests.support import PEPPER

NOW = datetime.now(UTC).replace(microsecond=0)
DEADLINE = timedelta(days=30)
KEY = b"report-test-key"


def ref(n: int) -> str:
    return f"{n:032x}"


def certified(session: Session, n: int, requested: datetime, revoked_after: list[float], done_after: timedelta, status: str = "completed") -> None:
    """A case and its certificate: one system per revocation delay (seconds after the request)."""
    systems = [
        SystemProgress(
            name=f"s{i}",
            stage=Stage.CONFIRMED,
            accounts=[f"acct-{i}"],
            evidence=[
                Evidence(action="deactivate", account_id=f"acct-{i}", outcome="done", at=requested + timedelta(seconds=delay)),
                Evidence(action="delete", account_id=f"acct-{i}", outcome="done", at=requested + done_after),
            ],
        )
        for i, delay in enumerate(revoked_after)
    ]
    progress = CaseProgress(
        subject_ref=ref(n),
        reason=Reason.LEAVER,
        status=CaseStatus(status),
        requested_at=requested,
        deadline=requested + DEADLINE,
        systems=systems,
    )
    certificate = issue(progress, f"forget-{ref(n)}", f"run-{n}", requested + done_after, KEY)
    session.add(CertificateRecord(subject_ref=ref(n), workflow_id=f"forget-{ref(n)}", run_id=f"run-{n}", issued_at=requested + done_after, body=certificate.model_dump_json()))
    session.add(CaseRecord(subject_ref=ref(n), workflow_id=f"forget-{ref(n)}", reason="leaver", status=status, requested_at=requested, completed_at=requested + done_after))


@pytest.fixture
def ledger(tmp_path: Path) -> Engine:
    engine = engine_for(f"sqlite:///{tmp_path / 'ledger.db'}")
    with Session(engine) as session:
        # In the period (the last 60 days): three certified cases, one running past its deadline.
        certified(session, 1, NOW - timedelta(days=50), [10, 30], timedelta(hours=1))  # revoked in 30 s
        certified(session, 2, NOW - timedelta(days=45), [5], timedelta(days=31), status="aborted")  # deadline missed
        certified(session, 3, NOW - timedelta(days=10), [90, 20, 60], timedelta(hours=3))  # revoked in 90 s
        session.add(CaseRecord(subject_ref=ref(4), workflow_id=f"forget-{ref(4)}", reason="erasure-request", status="running", requested_at=NOW - timedelta(days=35)))
        session.add(CaseRecord(subject_ref=ref(5), workflow_id=f"forget-{ref(5)}", reason="leaver", status="running", requested_at=NOW - timedelta(days=1)))
        # Before the period: counted nowhere but in the open escalations.
        certified(session, 6, NOW - timedelta(days=200), [1], timedelta(days=60))
        escalation = dict(workflow_id="w", run_id="r", system="chat", message="m")
        session.add(EscalationRecord(**escalation, subject_ref=ref(6), kind="Credentials", opened_at=NOW - timedelta(days=190)))
        session.add(EscalationRecord(**escalation, subject_ref=ref(1), kind="reappeared", opened_at=NOW - timedelta(days=2)))
        session.add(EscalationRecord(**escalation, subject_ref=ref(3), kind="Rejected", opened_at=NOW - timedelta(days=9), resolved_at=NOW - timedelta(days=8), action="skip"))
        session.add(Tombstone(subject_ref=ref(1), erased_at=NOW - timedelta(days=50), reappearances=2, last_reappeared_at=NOW - timedelta(days=2)))
        session.add(Tombstone(subject_ref=ref(6), erased_at=NOW - timedelta(days=140), reappearances=1, last_reappeared_at=NOW - timedelta(days=100)))
        session.commit()
    audit.append(engine, "lethe-retention", "retention.purged", None, run_id="a", rows=150, policies={"old-tickets": {"rows": 100}, "logs": {"rows": 50}})
    audit.append(engine, "lethe-retention", "retention.purged", None, run_id="b", rows=7, policies={"old-tickets": {"rows": 7}})
    audit.append(engine, "lethe-reconcile", "reconcile.leaver", ref(5), workflow_id=f"forget-{ref(5)}", system="chat")
    return engine


def test_report_over_a_period(ledger: Engine) -> None:
    report = build(ledger, NOW - timedelta(days=60), datetime.now(UTC), DEADLINE)

    assert report.cases_by_status == {"aborted": 1, "completed": 2, "running": 2}
    # Revoked when the last system was: 30 s, 5 s, 90 s; certified after 1 h, 31 d, 3 h.
    assert (report.time_to_revoke.count, report.time_to_revoke.median_seconds, report.time_to_revoke.worst_seconds) == (3, 30, 90)
    assert (report.time_to_certify.median_seconds, report.time_to_certify.worst_seconds) == (3 * 3600, 31 * 86400)
    assert (report.deadlines_met, report.deadlines_missed, report.overdue_open) == (2, 2, 1)
    assert report.escalations_open == {"Credentials": 1, "reappeared": 1}
    assert report.escalations_opened == 2
    assert report.retention_rows == {"logs": 50, "old-tickets": 107} and report.retention_runs == 2
    assert (report.reappearances, report.subjects_reappeared, report.leavers_found) == (1, 1, 1)

    # A shorter period sees only what happened in it.
    recent = build(ledger, NOW - timedelta(days=20), datetime.now(UTC), DEADLINE)
    assert recent.cases_by_status == {"completed": 1, "running": 1}
    assert (recent.deadlines_met, recent.deadlines_missed) == (1, 1)  # certified in the period, however old the request
    assert recent.time_to_revoke.worst_seconds == 90


async def test_report_command_prints_the_summary(tmp_path: Path, ledger: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(ledger={"url": f"sqlite:///{tmp_path / 'ledger.db'}"}, pepper=PEPPER)
    root = argparse.ArgumentParser()
    add_commands(root.add_subparsers(dest="command", required=True))

    args = root.parse_args(["report", "--since", "60d"])
    assert await args.handler(args, settings) == 0
    text = capsys.readouterr().out
    assert "cases requested:     5 (aborted 1, completed 2, running 2)" in text
    assert "time to revoke:      median 30.0s, worst 90.0s (n=3)" in text
    assert "time to certify:     median 3h, worst 31d (n=3)" in text
    assert "deadlines:           2 met, 2 missed (1 still open past the deadline)" in text
    assert "escalations open:    2 (Credentials 1, reappeared 1); 2 opened in the period" in text
    assert "retention purged:    157 row(s) in 2 run(s) (logs 50, old-tickets 107)" in text
    assert "reappearances:       1 (subjects: 1)" in text

    args = root.parse_args(["report", "--since", "20d", "--json"])
    assert await args.handler(args, settings) == 0
    assert json.loads(capsys.readouterr().out)["cases_by_status"] == {"completed": 1, "running": 1}
