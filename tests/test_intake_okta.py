"""Okta event hooks: verification, deactivated/deleted users become leaver cases, redelivery is harmless."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from lethe.subject import subject_ref, workflow_id
from tests.intake_support import OKTA_SECRET, count_workflows, intake_settings, serving, settled_count
from tests.support import PEPPER

HOOK = {"Authorization": OKTA_SECRET}


def okta_event(event_type: str, login: str | None, target_type: str = "User") -> dict[str, Any]:
    target = {"id": "00u" + uuid.uuid4().hex[:17], "type": target_type, "displayName": "Someone"}
    if login is not None:
        target["alternateId"] = login
    return {
        "uuid": str(uuid.uuid4()),
        "published": "2025-03-31T15:00:00.000Z",
        "eventType": event_type,
        "actor": {"id": "00uadmin", "type": "User", "alternateId": "admin@example.com"},
        "target": [{"id": "0oa1", "type": "AppInstance", "alternateId": "app"}, target],
    }


def delivery(*events: dict[str, Any]) -> dict[str, Any]:
    return {
        "eventType": "com.okta.event_hook",
        "eventTypeVersion": "1.0",
        "cloudEventsVersion": "0.1",
        "source": "https://example.okta.com/api/v1/eventHooks/who1",
        "eventId": str(uuid.uuid4()),
        "eventTime": "2025-03-31T15:00:01.000Z",
        "contentType": "application/json",
        "data": {"events": list(events)},
    }


def case_of(login: str) -> str:
    return workflow_id(subject_ref(PEPPER.encode(), login))


async def test_okta_hook_verification_and_leavers(client: Client, tmp_path: Path) -> None:
    settings = intake_settings(tmp_path, client)
    async with serving(settings, client) as url, httpx.AsyncClient(base_url=url) as http:
        challenge = {"x-okta-verification-challenge": "Vd9xDu8MwrdI2wUgTS_UbRqB_kNfmNjvWUd_b0Mk"}
        verified = await http.get("/okta/events", headers={**HOOK, **challenge})
        assert verified.status_code == 200 and verified.json() == {"verification": challenge["x-okta-verification-challenge"]}
        assert (await http.get("/okta/events", headers={"Authorization": "wrong-secret-0123456789", **challenge})).status_code == 401
        assert (await http.get("/okta/events", headers=challenge)).status_code == 401
        missing = await http.get("/okta/events", headers=HOOK)
        assert missing.status_code == 422 and missing.json()["field"] == "x-okta-verification-challenge"

        deactivated = okta_event("user.lifecycle.deactivate", "okta.leaver@example.com")
        deleted = okta_event("user.lifecycle.delete.initiated", "okta.deleted@example.com")
        payload = delivery(
            deactivated,
            deleted,
            okta_event("user.session.start", "okta.login@example.com"),
            okta_event("user.lifecycle.deactivate", None),
            okta_event("group.lifecycle.delete", "group-name", target_type="UserGroup"),
        )
        assert (await http.post("/okta/events", json=payload, headers={"Authorization": "nope-nope-nope-nope"})).status_code == 401
        assert await count_workflows(client, settings) == 0

        answer = await http.post("/okta/events", json=payload, headers=HOOK)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"cases": [case_of("okta.leaver@example.com"), case_of("okta.deleted@example.com")], "duplicates": 0, "ignored": 3}

        # Okta redelivers when we answer slowly: the same event uuids change nothing.
        again = await http.post("/okta/events", json=payload, headers=HOOK)
        assert again.json() == {"cases": [], "duplicates": 2, "ignored": 3}

        malformed = await http.post("/okta/events", json={"data": {"events": [{"eventType": "user.lifecycle.deactivate"}]}}, headers=HOOK)
        assert malformed.status_code == 422 and malformed.json()["field"] == "data.events[0].uuid"
        assert (await http.post("/okta/events", content=b"{not json", headers=HOOK)).status_code == 422

    assert await settled_count(client, settings, 2) == 2
    for login in ("okta.leaver@example.com", "okta.deleted@example.com"):
        described = await client.get_workflow_handle(case_of(login)).describe()
        assert "(leaver," in (await described.static_summary() or "")
