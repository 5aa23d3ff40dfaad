"""POST /events end to end: real uvicorn, real Temporal dev server, a real worker and SCIM servers."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import httpx
from temporalio.client import Client

from lethe.case import Stage
from lethe.devstack import ScimServer
from lethe.ledger import engine_for, lookup_identifier
from lethe.subject import subject_ref, workflow_id
from tests.intake_support import BEARER, body_of, count_workflows, event, intake_settings, serving, settled_count, signed
from tests.support import PEPPER, in_grace, make_settings, person, running_worker, wait_for
from workflows.forget import ForgetSubject


async def certificate_of(handle):  # type: ignore[no-untyped-def]
    """The certificate, or a failure rather than a hung suite if the case never ends."""
    return await asyncio.wait_for(handle.result(), timeout=60)


async def post(http: httpx.AsyncClient, payload: dict[str, object]) -> httpx.Response:
    body = body_of(payload)
    return await http.post("/events", content=body, headers=signed(body))


async def test_every_event_type_end_to_end(client: Client, scim_servers: dict[str, ScimServer], tmp_path: Path) -> None:
    stays, held, erased = person("intake-rehire"), person("intake-hold"), person("intake-erase")
    ids = {name: server.seed([stays, held, erased]) for name, server in scim_servers.items()}
    settings = make_settings(tmp_path, client, scim_servers, match="emails")
    settings.grace.leaver = timedelta(days=30)

    async with running_worker(client, settings), serving(settings, client) as url, httpx.AsyncClient(base_url=url) as http:
        # leaver: starts the case; the same person again joins it.
        first = await post(http, event("leaver", stays.email))
        assert first.status_code == 202, first.text
        case_id = first.json()["workflow_id"]
        assert first.json()["outcome"] == "started" and case_id == workflow_id(subject_ref(PEPPER.encode(), stays.email))
        again = await post(http, event("leaver", stays.email.upper()))
        assert again.status_code == 202 and again.json() == {"workflow_id": case_id, "outcome": "joined"}
        handle = client.get_workflow_handle_for(ForgetSubject.run, case_id)
        await wait_for(handle, in_grace)

        # rehire: ends the case in its grace period; accounts come back.
        rehired = await post(http, event("rehire", stays.email))
        assert rehired.status_code == 202 and rehired.json()["outcome"] == "signalled"
        certificate = await certificate_of(handle)
        assert certificate.status == "cancelled"
        for name, server in scim_servers.items():
            assert server.get(ids[name][stays.user_name]).json()["active"] is True

        # legal hold on one system: that system pauses revoked until released.
        settings.grace.leaver = timedelta(seconds=3)
        started = await post(http, event("leaver", held.email))
        hold = await post(http, event("legal-hold", held.email, system="crm"))
        assert hold.status_code == 202 and hold.json()["outcome"] == "signalled", hold.text
        held_handle = client.get_workflow_handle_for(ForgetSubject.run, started.json()["workflow_id"])
        progress = await wait_for(
            held_handle, lambda p: p.system("crm").stage is Stage.ON_HOLD and p.system("chat").stage is Stage.CONFIRMED
        )
        assert progress.holds == ["crm"]
        assert scim_servers["crm"].get(ids["crm"][held.user_name]).json()["active"] is False
        released = await post(http, event("legal-hold-release", held.email, system="crm"))
        assert released.status_code == 202
        assert (await certificate_of(held_handle)).all_confirmed
        assert scim_servers["crm"].get(ids["crm"][held.user_name]).status_code == 404

        # erasure-request (no grace): straight through to a certificate.
        erasure = await post(http, event("erasure-request", erased.email))
        assert erasure.status_code == 202 and erasure.json()["outcome"] == "started"
        assert (await certificate_of(client.get_workflow_handle_for(ForgetSubject.run, erasure.json()["workflow_id"]))).all_confirmed

        # Signals need a running case: a clear 404, never a new case.
        before = await settled_count(client, settings, 3)
        assert before == 3
        for kind, extra in (("rehire", {}), ("legal-hold", {"system": "chat"}), ("legal-hold-release", {})):
            missing = await post(http, event(kind, "never-seen@example.com", **extra))
            assert missing.status_code == 404, missing.text
            assert "no running case forget-" in missing.json()["message"] and "never-seen" not in missing.text
        finished = await post(http, event("rehire", stays.email))  # its case is over
        assert finished.status_code == 404
        assert await count_workflows(client, settings) == before


async def test_one_event_delivered_five_times_at_once_is_one_case(client: Client, tmp_path: Path) -> None:
    settings = intake_settings(tmp_path, client)  # no worker: cases wait, nothing else runs
    async with serving(settings, client) as url, httpx.AsyncClient(base_url=url) as http:
        # The very same signed request five times: one is acted on, four are replays.
        body = body_of(event("leaver", "five-signed@example.com", key="k-signed"))
        headers = signed(body)
        signed_answers = await asyncio.gather(*(http.post("/events", content=body, headers=headers) for _ in range(5)))
        assert sorted(r.status_code for r in signed_answers) == [202, 401, 401, 401, 401]
        assert all("replay" in r.json()["message"] for r in signed_answers if r.status_code == 401)

        # A sender retrying with its bearer token: one acts, the others are acknowledged as duplicates.
        payload = event("leaver", "five-bearer@example.com", key="k-bearer")
        bearer_answers = await asyncio.gather(*(http.post("/events", json=payload, headers=BEARER) for _ in range(5)))
        assert [r.status_code for r in bearer_answers] == [202] * 5
        assert sorted(r.json()["outcome"] for r in bearer_answers) == ["duplicate"] * 4 + ["started"]
        assert len({r.json()["workflow_id"] for r in bearer_answers}) == 1

        # Five different deliveries (distinct keys) about one person still make one case.
        distinct = await asyncio.gather(
            *(http.post("/events", json=event("leaver", "five-keys@example.com"), headers=BEARER) for _ in range(5))
        )
        assert [r.status_code for r in distinct] == [202] * 5
        assert len({r.json()["workflow_id"] for r in distinct}) == 1

        # A key reused by the same source for another event is refused, not silently dropped.
        reused = await http.post("/events", json=event("leaver", "someone-else@example.com", key="k-bearer"), headers=BEARER)
        assert reused.status_code == 409 and reused.json()["field"] == "idempotency_key"

    assert await settled_count(client, settings, 3) == 3
    await asyncio.sleep(0.5)  # a late fourth would show up here
    assert await count_workflows(client, settings) == 3
    ledger = engine_for(settings.ledger.url)
    assert lookup_identifier(ledger, subject_ref(PEPPER.encode(), "someone-else@example.com")) is None
