"""The reconciliation sweep against real scim2-server instances and the dev server: a forgotten
person re-created by a "re-import" is found, erased again and escalated as `reappeared`; an account
deactivated longer than the grace gets a leaver case; every other account is left alone, and no
identifier reaches Temporal."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select
from temporalio.client import Client

from activities.scim import active_patch
from lethe.certificate import Certificate
from lethe.devstack import Person, ScimServer
from lethe.ledger import AuditEntry, EscalationRecord, Tombstone, engine_for
from lethe.settings import EscalationSettings
from lethe.reconcile import ReconcileInput, ReconcileResult
from lethe.retention_worker import retention_workers
from lethe.schedules import scheduled_task_queue
from lethe.subject import subject_ref, workflow_id
from tests.webhook import WebhookReceiver
from tests.support import PEPPER, forget, make_settings, person, running_worker


@pytest.fixture(scope="module")
def own_scim() -> Iterator[dict[str, ScimServer]]:
    # Servers of its own: a sweep reads every account, and the session's servers hold other tests' people.
    with ThreadPoolExecutor() as pool:  # both start at once: each takes a few seconds to import
        servers = dict(zip(("chat", "crm"), pool.map(lambda server: server.start(), (ScimServer(), ScimServer()))))
    try:
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def deactivate(server: ScimServer, account_id: str) -> None:
    with server.client() as http:
        response = http.patch(f"/Users/{account_id}", json=active_patch(False), headers={"Content-Type": "application/scim+json"})
        response.raise_for_status()


def identifiers_of(*people: Person) -> list[str]:
    return [value for p in people for value in (p.user_name, p.email, p.given_name, p.family_name, p.external_id)]


async def test_sweep_erases_a_reappeared_person_again_and_offboards_a_stale_leaver(
    tmp_path: Path, client: Client, own_scim: dict[str, ScimServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = make_settings(tmp_path, client, own_scim, match="emails")
    settings.schedules.reconcile.inactive_grace = timedelta(seconds=2)
    tag = uuid.uuid4().hex[:6]
    gone, stays, leaver, fresh_leaver, other = (person(f"rec{x}{tag}") for x in "abcde")
    chat, crm = own_scim["chat"], own_scim["crm"]
    chat_ids = chat.seed([gone, stays, leaver, fresh_leaver])
    crm.seed([gone, other])
    ref_gone, ref_leaver = (subject_ref(PEPPER.encode(), p.email) for p in (gone, leaver))
    ledger = engine_for(settings.ledger.url)
    receiver = WebhookReceiver()
    settings.escalation = EscalationSettings(webhooks=[receiver.url])
    scheduled = retention_workers(client, settings)
    runs = [asyncio.create_task(w.run()) for w in scheduled.workers]
    try:
        with receiver.running() as hook:
            async with running_worker(client, settings):
                # Forgotten for real first: certificate, tombstone, vault emptied.
                first = await (await forget(client, settings, gone.email)).result()
                assert first.all_confirmed
                # Then a re-import brings the account back in one system.
                chat.seed([gone])
                deactivate(chat, chat_ids[leaver.user_name])
                await asyncio.sleep(2.2)  # past the 2 s grace
                deactivate(chat, chat_ids[fresh_leaver.user_name])  # inside the grace: left alone
                before = {name: server.users() for name, server in own_scim.items()}

                sweep_id = f"reconcile-test-{tag}"
                result = await client.execute_workflow(
                    "ReconcileSweep",
                    ReconcileInput(page_size=2, pages_per_run=2),
                    id=sweep_id,
                    task_queue=scheduled_task_queue(settings),
                    result_type=ReconcileResult,
                )
                assert (result.seen, result.reappeared, result.leavers) == (5, 1, 1)
                assert {t.system: (t.seen, t.reappeared, t.leavers, t.pages) for t in result.systems} == {
                    "chat": (4, 1, 1, 2),
                    "crm": (1, 0, 0, 1),
                }
                assert result.runs == 2  # 3 pages, 2 per run: continued as new once

                again = await client.get_workflow_handle(workflow_id(ref_gone), result_type=Certificate).result()
                assert again.all_confirmed and again.certificate_id != first.certificate_id
                assert {s.name: s.outcome for s in again.systems} == {"chat": "confirmed", "crm": "not-found"}
                offboarded = await client.get_workflow_handle(workflow_id(ref_leaver), result_type=Certificate).result()
                assert offboarded.reason == "leaver" and offboarded.all_confirmed

            (announcement,) = [m for m in hook.messages if m.get("kind") == "reappeared"]
            assert announcement["system"] == "chat" and announcement["workflow_id"] == workflow_id(ref_gone)
            assert gone.email not in str(announcement) and gone.user_name not in str(announcement)

        after = {name: server.users() for name, server in own_scim.items()}
        # Exactly the two accounts that matched a rule are gone; the others did not change at all.
        expected = {
            name: {i: u for i, u in users.items() if u["emails"][0]["value"] not in (gone.email, leaver.email)}
            for name, users in before.items()
        }
        assert after == expected
        assert {u["userName"] for u in after["chat"].values()} == {stays.user_name, fresh_leaver.user_name}

        with Session(ledger) as session:
            escalations = session.exec(select(EscalationRecord).where(EscalationRecord.kind == "reappeared")).all()
            tombstone = session.get(Tombstone, ref_gone)
            audit = session.exec(select(AuditEntry)).all()
        assert [(e.subject_ref, e.system, e.workflow_id, e.resolved_at) for e in escalations] == [
            (ref_gone, "chat", workflow_id(ref_gone), None)
        ]
        assert tombstone is not None and tombstone.reappearances == 1
        actions = [(e.action, e.subject_ref) for e in audit]
        assert ("escalation.opened", ref_gone) in actions and ("reconcile.leaver", ref_leaver) in actions
        assert ("reconcile.swept", None) in actions

        # Nothing the sweep put into Temporal names anyone.
        raw = b""
        async for execution in client.list_workflows(f'WorkflowId = "{sweep_id}"'):
            history = await client.get_workflow_handle(sweep_id, run_id=execution.run_id).fetch_history()
            raw += b"".join(event.SerializeToString() for event in history.events)
        assert ref_gone.encode() in raw  # payloads are in there as written: the check below reads real content
        leaked = [v for v in identifiers_of(gone, stays, leaver, fresh_leaver, other) if v.lower().encode() in raw.lower()]
        assert not leaked
        assert "reconcile chat: accounts 3-4, 2 read" in caplog.text  # the sweep's own log lines were captured
        assert not [v for v in identifiers_of(gone, stays, leaver, fresh_leaver, other) if v.lower() in caplog.text.lower()]
    finally:
        await asyncio.gather(*(w.shutdown() for w in scheduled.workers))
        await asyncio.gather(*runs, return_exceptions=True)
        await scheduled.aclose()
