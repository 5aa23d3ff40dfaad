"""The deletion circuit breaker: past the hourly threshold deletions wait, nothing is lost,
and an operator's release (written to the audit log) lets them go on."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

from sqlmodel import Session, col, select
from temporalio.client import Client

from lethe import audit, breaker
from lethe.devstack import ScimServer
from lethe.ledger import AuditEntry, engine_for
from lethe.settings import EscalationSettings
from lethe.temporal import STATUS
from tests.support import forget, make_settings, person, running_worker
from tests.webhook import webhook

CASES, THRESHOLD = 50, 20


async def count(client: Client, task_queue: str, status: str) -> int:
    query = f'TaskQueue = "{task_queue}" AND {STATUS.name} = "{status}"'
    return (await client.count_workflows(query)).count


async def settle(client: Client, task_queue: str, expected: dict[str, int], timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        seen = {status: await count(client, task_queue, status) for status in expected}
        if seen == expected:
            return
        assert asyncio.get_running_loop().time() < deadline, f"expected {expected}, saw {seen}"
        await asyncio.sleep(0.5)


async def test_threshold_pauses_deletions_until_released(client: Client, tmp_path: Path) -> None:
    server = ScimServer().start()
    try:
        people = [person(f"breaker-{i}") for i in range(CASES)]
        server.seed(people)
        settings = make_settings(tmp_path, client, {"chat": server}, match="userName", max_deletions_per_hour=THRESHOLD)
        settings.safety.breaker_poll = timedelta(seconds=1)
        with webhook() as hook:
            settings.escalation = EscalationSettings(webhooks=[hook.url])
            async with running_worker(client, settings):
                handles = [await forget(client, settings, p.user_name) for p in people]
                queue = settings.temporal.task_queue
                await settle(client, queue, {"completed": THRESHOLD, "paused-by-breaker": CASES - THRESHOLD})
                await asyncio.sleep(2.5)  # two more poll rounds: still nothing deleted
                assert len(server.users()) == CASES - THRESHOLD
                trips = [m for m in hook.messages if m.get("breaker") == "chat"]
                assert len(trips) == 1 and "circuit breaker tripped for system chat" in str(trips[0]["text"])

                ledger = engine_for(settings.ledger.url)
                assert {row[:3] for row in breaker.status(ledger)} == {("chat", True, THRESHOLD), ("*", False, THRESHOLD)}
                breaker.release(ledger, "chat", "oncall-ana", "checked: planned offboarding batch")
                certificates = await asyncio.wait_for(asyncio.gather(*(handle.result() for handle in handles)), 120)
        assert all(c.all_confirmed for c in certificates)
        assert server.users() == {}
        ok, summary = audit.verify(ledger)
        assert ok, summary
        with Session(ledger) as session:
            entries = session.exec(select(AuditEntry).where(col(AuditEntry.action).like("breaker.%"))).all()
        assert [(e.action, e.actor) for e in entries] == [("breaker.trip", "lethe"), ("breaker.release", "oncall-ana")]
        assert json.loads(entries[1].detail)["note"] == "checked: planned offboarding batch"
    finally:
        server.stop()


def test_allow_raises_the_threshold_and_bad_counts_are_refused(tmp_path: Path) -> None:
    ledger = engine_for(f"sqlite:///{tmp_path / 'ledger.db'}")
    limits = breaker.Limits(system=2, fleet=100)
    granted = [breaker.request_permit(ledger, f"k{i}", "crm", limits).granted for i in range(4)]
    assert granted == [True, True, False, False]
    breaker.allow(ledger, "crm", 1, "lead-jo", "layoff of 2026-12-01")
    assert breaker.request_permit(ledger, "k4", "crm", limits).granted
    assert not breaker.request_permit(ledger, "k5", "crm", limits).granted
    assert breaker.request_permit(ledger, "k0", "crm", limits).granted  # a retried permit is not counted again
    try:
        breaker.allow(ledger, "crm", 0, "lead-jo", "oops")
    except ValueError as exc:
        assert "--count must be a positive number" in str(exc)
    else:
        raise AssertionError("a zero allowance was accepted")
