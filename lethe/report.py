"""`lethe report --since 30d`: what Lethe did over a period, from the ledger alone.

Cases by status, median and worst time to revoke and to certify, deadlines met and missed,
open escalations, retention rows purged and reappearances. Times come from the certificates'
signed evidence, not from Temporal, so the report works after the workflow history is gone.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from lethe.certificate import Certificate
from lethe.durations import format_duration
from lethe.ledger import AuditEntry, CaseRecord, CertificateRecord, EscalationRecord, Tombstone, as_utc

REVOKE_ACTIONS = ("deactivate",)


class Spread(BaseModel):
    count: int = 0
    median_seconds: float | None = None
    worst_seconds: float | None = None

    @classmethod
    def of(cls, values: list[timedelta]) -> Spread:
        if not values:
            return cls()
        seconds = [v.total_seconds() for v in values]
        return cls(count=len(seconds), median_seconds=statistics.median(seconds), worst_seconds=max(seconds))

    def text(self) -> str:
        if not self.count:
            return "no data"
        return f"median {_fmt(self.median_seconds)}, worst {_fmt(self.worst_seconds)} (n={self.count})"


class Report(BaseModel):
    since: datetime
    until: datetime
    cases_by_status: dict[str, int]
    time_to_revoke: Spread
    time_to_certify: Spread
    deadlines_met: int
    deadlines_missed: int
    overdue_open: int  # running cases already past their deadline (counted in missed)
    escalations_open: dict[str, int]  # by kind, whenever opened
    escalations_opened: int  # in the period
    retention_rows: dict[str, int]  # by policy
    retention_runs: int
    reappearances: int  # `reappeared` escalations opened in the period
    subjects_reappeared: int  # tombstones whose last reappearance falls in the period
    leavers_found: int  # leaver cases started by reconciliation sweeps


def build(ledger: Engine, since: datetime, until: datetime, deadline: timedelta) -> Report:
    since, until = as_utc(since), as_utc(until)

    def within(moment: datetime | None) -> bool:
        return moment is not None and since <= as_utc(moment) <= until

    with Session(ledger) as session:
        cases = session.exec(select(CaseRecord).where(col(CaseRecord.requested_at).between(since, until))).all()
        certificates = [
            Certificate.model_validate_json(r.body)
            for r in session.exec(select(CertificateRecord).where(col(CertificateRecord.issued_at).between(since, until))).all()
        ]
        escalations = session.exec(
            select(EscalationRecord).where(
                col(EscalationRecord.opened_at).between(since, until) | col(EscalationRecord.resolved_at).is_(None)
            )
        ).all()
        audit = session.exec(
            select(AuditEntry).where(
                col(AuditEntry.action).in_(["retention.purged", "reconcile.leaver"]), col(AuditEntry.at).between(since, until)
            )
        ).all()
        tombstones = session.exec(select(Tombstone).where(col(Tombstone.last_reappeared_at).between(since, until))).all()

    revoke, certify = [], []
    for certificate in certificates:
        certify.append(as_utc(certificate.completed_at) - as_utc(certificate.requested_at))
        revoked = [e.at for s in certificate.systems for e in s.evidence if e.action in REVOKE_ACTIONS]
        if revoked:
            # Access is gone when the last system's deactivation is.
            revoke.append(as_utc(max(revoked)) - as_utc(certificate.requested_at))
    overdue = sum(1 for c in cases if c.status == "running" and as_utc(c.requested_at) + deadline < until)

    retention_rows: Counter[str] = Counter()
    retention_runs = leavers = 0
    for entry in audit:
        detail = json.loads(entry.detail)
        if entry.action == "retention.purged":
            retention_runs += 1
            for policy, counts in (detail.get("policies") or {}).items():
                retention_rows[policy] += int(counts.get("rows", 0))
        else:
            leavers += 1

    return Report(
        since=since,
        until=until,
        cases_by_status=dict(sorted(Counter(c.status for c in cases).items())),
        time_to_revoke=Spread.of(revoke),
        time_to_certify=Spread.of(certify),
        deadlines_met=sum(1 for c in certificates if c.deadline_met),
        deadlines_missed=sum(1 for c in certificates if not c.deadline_met) + overdue,
        overdue_open=overdue,
        escalations_open=dict(sorted(Counter(e.kind for e in escalations if e.resolved_at is None).items())),
        escalations_opened=sum(1 for e in escalations if within(e.opened_at)),
        retention_rows=dict(sorted(retention_rows.items())),
        retention_runs=retention_runs,
        reappearances=sum(1 for e in escalations if e.kind == "reappeared" and within(e.opened_at)),
        subjects_reappeared=len(tombstones),
        leavers_found=leavers,
    )


def to_text(report: Report) -> str:
    cases = ", ".join(f"{status} {n}" for status, n in report.cases_by_status.items()) or "none"
    open_escalations = sum(report.escalations_open.values())
    by_kind = ", ".join(f"{kind} {n}" for kind, n in report.escalations_open.items())
    rows = sum(report.retention_rows.values())
    per_policy = ", ".join(f"{policy} {n}" for policy, n in report.retention_rows.items())
    return "\n".join(
        [
            f"Lethe report {report.since:%Y-%m-%d %H:%M} .. {report.until:%Y-%m-%d %H:%M} UTC",
            f"  cases requested:     {sum(report.cases_by_status.values())} ({cases})",
            f"  time to revoke:      {report.time_to_revoke.text()}",
            f"  time to certify:     {report.time_to_certify.text()}",
            f"  deadlines:           {report.deadlines_met} met, {report.deadlines_missed} missed"
            + (f" ({report.overdue_open} still open past the deadline)" if report.overdue_open else ""),
            f"  escalations open:    {open_escalations}" + (f" ({by_kind})" if by_kind else "")
            + f"; {report.escalations_opened} opened in the period",
            f"  retention purged:    {rows} row(s) in {report.retention_runs} run(s)" + (f" ({per_policy})" if per_policy else ""),
            f"  reappearances:       {report.reappearances} (subjects: {report.subjects_reappeared})",
            f"  leavers found:       {report.leavers_found} by reconciliation sweeps",
        ]
    )


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f}s"
    return format_duration(timedelta(seconds=round(seconds / 60) * 60))
