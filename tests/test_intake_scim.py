"""The SCIM 2.0 service provider IdPs provision into: RFC 7644 compliance (scim2-tester), and
deactivation or deletion of a user starting a leaver case."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import httpx2
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server
from sqlmodel import Session, create_engine, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from lethe.intake.scim_store import MirroredRef, MirroredUser, purge_mirrored_users
from lethe.ledger import engine_for
from lethe.subject import subject_ref, workflow_id
from tests.intake_support import BEARER, TOKEN, count_workflows, intake_settings, serving, settled_count
from tests.support import PEPPER

FAILED = (Status.ERROR, Status.CRITICAL)
SCIM_JSON = {"Content-Type": "application/scim+json"}
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def run_scim2_tester(base_url: str) -> list:  # type: ignore[type-arg]
    with httpx2.Client(base_url=base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as http:
        return check_server(SyncSCIMClient(http))


async def test_scim2_tester_finds_no_failure(client: Client, tmp_path: Path) -> None:
    settings = intake_settings(tmp_path, client)  # no worker: the cases its deletions start just wait
    async with serving(settings, client) as url:
        results = await asyncio.to_thread(run_scim2_tester, f"{url}/scim/v2")
    failures = [f"{r.title} [{r.resource_type}]: {r.reason}" for r in results if r.status in FAILED]
    assert not failures, "\n".join(failures)
    # It really exercised the endpoint, and its deletions were leavers to Lethe.
    titles = {r.title for r in results if r.status is Status.SUCCESS}
    assert {"object_creation", "object_query", "object_replacement", "check_replace_attribute", "object_deletion"} <= titles
    assert await settled_count(client, settings, 1) > 0


def okta_user(user_name: str, **extra: object) -> dict[str, object]:
    """What Okta's SCIM 2.0 provisioning POSTs."""
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "name": {"givenName": "Scim", "familyName": "Person"},
        "emails": [{"primary": True, "value": user_name, "type": "work"}],
        "displayName": "Scim Person",
        "active": True,
        "password": "Pa55word-from-okta!",
        **extra,
    }


def deactivate(active: bool = False) -> dict[str, object]:
    return {"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": active}}]}


async def test_deactivate_reactivate_delete_and_purge(client: Client, tmp_path: Path) -> None:
    settings = intake_settings(tmp_path, client)
    ledger = engine_for(settings.ledger.url)
    leaver, other = "scim.leaver@example.com", "scim.other@example.com"
    case_id = workflow_id(subject_ref(PEPPER.encode(), leaver))
    async with serving(settings, client) as url, httpx.AsyncClient(base_url=f"{url}/scim/v2", headers=BEARER) as scim:
        assert (await scim.get("/ServiceProviderConfig", headers={"Authorization": ""})).status_code == 200
        config = (await scim.get("/ServiceProviderConfig")).json()
        assert config["bulk"]["supported"] is False and config["changePassword"]["supported"] is False
        assert (await scim.get("/Users", headers={"Authorization": "Bearer wrong-token-0123456789"})).status_code == 401
        assert (await scim.get("/Groups")).status_code == 404  # only Users are announced and served

        created = await scim.post("/Users", json=okta_user(leaver), headers=SCIM_JSON)
        assert created.status_code == 201, created.text
        user_id = created.json()["id"]
        assert (await scim.post("/Users", json=okta_user(leaver.upper()), headers=SCIM_JSON)).status_code == 409
        found = (await scim.get("/Users", params={"filter": f'userName eq "{leaver.upper()}"'})).json()
        assert [r["id"] for r in found["Resources"]] == [user_id] and found["totalResults"] == 1
        by_email = (await scim.get("/Users", params={"filter": f'emails.value eq "{leaver}"'})).json()
        assert by_email["totalResults"] == 1
        assert (await count_workflows(client, settings)) == 0  # provisioning is not leaving

        patched = await scim.patch(f"/Users/{user_id}", json=deactivate(), headers=SCIM_JSON)
        assert patched.status_code == 200 and patched.json()["active"] is False
        handle = client.get_workflow_handle(case_id)
        assert "(leaver," in (await (await handle.describe()).static_summary() or "")

        # Reactivated in the IdP: the running case is told (a rehire signal).
        assert (await scim.patch(f"/Users/{user_id}", json=deactivate(active=True), headers=SCIM_JSON)).status_code == 200
        signals = [e for e in (await handle.fetch_history()).events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED]
        assert [e.workflow_execution_signaled_event_attributes.signal_name for e in signals] == ["rehire"]

        # Deleted in the IdP: joins the same case; the user is gone from the mirror.
        assert (await scim.delete(f"/Users/{user_id}")).status_code == 204
        assert (await scim.get(f"/Users/{user_id}")).status_code == 404
        assert await settled_count(client, settings, 1) == 1

        # Certification purges the mirrored user of the subject; nobody else's.
        kept = (await scim.post("/Users", json=okta_user(other), headers=SCIM_JSON)).json()["id"]
        again = (await scim.post("/Users", json=okta_user(leaver), headers=SCIM_JSON)).json()["id"]
        with Session(ledger) as session:
            stored = session.exec(select(MirroredUser)).all()
            assert stored and all("Pa55word" not in row.body for row in stored)  # never kept
            assert purge_mirrored_users(session, subject_ref(PEPPER.encode(), leaver)) == 1
            session.commit()
        assert (await scim.get(f"/Users/{again}")).status_code == 404
        assert (await scim.get(f"/Users/{kept}")).status_code == 200
    with Session(ledger) as session:
        assert {ref.user_id for ref in session.exec(select(MirroredRef)).all()} == {kept}
    # The ledger's certify step calls it whether or not the intake ever ran on that database.
    with Session(create_engine(f"sqlite:///{tmp_path / 'never-intake.db'}")) as session:
        assert purge_mirrored_users(session, subject_ref(PEPPER.encode(), leaver)) == 0


async def test_cases_keyed_on_the_primary_email(client: Client, tmp_path: Path) -> None:
    settings = intake_settings(tmp_path, client, intake={"scim_identifier": "emails"})
    async with serving(settings, client) as url, httpx.AsyncClient(base_url=f"{url}/scim/v2", headers=BEARER) as scim:
        # A user without the identifier Lethe keys cases on is refused at the door, not at leaving.
        refused = await scim.post("/Users", json=okta_user("no-email-person", emails=[]), headers=SCIM_JSON)
        assert refused.status_code == 400 and "emails" in refused.json()["detail"]
        emails = [{"value": "old.address@example.com"}, {"value": "Primary.Address@example.com", "primary": True}]
        user_id = (await scim.post("/Users", json=okta_user("u12345", emails=emails), headers=SCIM_JSON)).json()["id"]
        assert (await scim.delete(f"/Users/{user_id}")).status_code == 204
    description = await client.get_workflow_handle(workflow_id(subject_ref(PEPPER.encode(), "primary.address@example.com"))).describe()
    assert description.task_queue == settings.temporal.task_queue
