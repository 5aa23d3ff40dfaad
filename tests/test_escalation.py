"""When a system cannot finish: the case escalates, tells the operators, waits for their
decision, and records who decided what. Also the approval gate, legal holds and rehire."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError

from lethe.case import Approval, CaseStatus, Decision, Reason, Stage
from lethe.devstack import ScimServer
from lethe.certificate import Certificate
from lethe.ledger import CertificateRecord, EscalationRecord, Tombstone, VaultEntry, engine_for
from lethe.settings import EscalationSettings, Settings
from lethe.temporal import PENDING_SYSTEMS, STATUS
from tests.support import forget, in_grace, make_settings, person, running_worker, wait_for
from tests.webhook import webhook
from workflows.forget import ForgetSubject


def escalated(progress) -> bool:  # type: ignore[no-untyped-def]
    return progress.status is CaseStatus.ESCALATED and all(
        s.stage in (Stage.ESCALATED, Stage.CONFIRMED) for s in progress.systems
    )


def with_token_file(settings: Settings, system: str, token_file: Path) -> None:
    index = next(i for i, s in enumerate(settings.systems) if s.name == system)
    settings.systems[index] = settings.systems[index].model_copy(update={"token_env": None, "token_file": token_file})


async def refused(handle: WorkflowHandle, update: str, arg: object) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as failure:
        await handle.execute_update(update, arg, result_type=str)
    return str(failure.value.cause)


async def test_rejected_token_escalates_once_then_retry_completes(
    client: Client, scim_servers: dict[str, ScimServer], tmp_path: Path
) -> None:
    target = person("escalate-401")
    ids = {name: server.seed([target])[target.user_name] for name, server in scim_servers.items()}
    settings = make_settings(tmp_path, client, scim_servers, match="emails")
    token_file = tmp_path / "chat-token"
    token_file.write_text("wrong-token")
    with_token_file(settings, "chat", token_file)

    with webhook() as hook:
        settings.escalation = EscalationSettings(webhooks=[hook.url])
        async with running_worker(client, settings):
            handle = await forget(client, settings, target.email)
            progress = await wait_for(handle, escalated)
            chat = progress.system("chat")
            assert chat is not None and chat.escalation == "Credentials"
            assert "HTTP 401" in (chat.error or "") and "fix the token for system 'chat'" in (chat.error or "")
            assert progress.pending == ["chat"]
            # The other systems did not wait for the broken one.
            assert {s.name: s.stage for s in progress.systems if s.name != "chat"} == {"crm": Stage.CONFIRMED, "wiki": Stage.CONFIRMED}

            # A credentials failure is not retried: exactly one attempt reached the system.
            history = await handle.fetch_history()
            failed = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED]
            assert len(failed) == 1
            started = next(e for e in history.events if e.event_id == failed[0].activity_task_failed_event_attributes.started_event_id)
            assert started.activity_task_started_event_attributes.attempt == 1

            description = await handle.describe()
            assert description.typed_search_attributes.get(STATUS) == "escalated"
            assert description.typed_search_attributes.get(PENDING_SYSTEMS) == ["chat"]

            for _ in range(50):
                if hook.messages:
                    break
                await asyncio.sleep(0.1)
            (message,) = hook.messages
            assert message["system"] == "chat" and message["kind"] == "Credentials"
            assert f"resolve {handle.id} --system chat" in str(message["text"])
            assert target.email not in str(message) and target.user_name not in str(message)

            with Session(engine_for(settings.ledger.url)) as session:
                (record,) = session.exec(select(EscalationRecord)).all()
                assert (record.system, record.kind, record.resolved_at) == ("chat", "Credentials", None)

            # Bad decisions are refused and change nothing.
            before = (await handle.query(ForgetSubject.progress)).model_dump()
            base = {"system": "chat", "action": "retry", "note": "token rotated", "operator": "oncall-ana"}
            assert "unknown system 'mail'" in await refused(handle, "resolve", Decision(**{**base, "system": "mail"}))
            assert "system 'crm' is not escalated" in await refused(handle, "resolve", Decision(**{**base, "system": "crm"}))
            assert "unknown action 'delete'" in await refused(handle, "resolve", Decision(**{**base, "action": "delete"}))
            assert "a note is required" in await refused(handle, "resolve", Decision(**{**base, "note": "  "}))
            assert "an operator name is required" in await refused(handle, "resolve", Decision(**{**base, "operator": ""}))
            assert "not waiting for approval" in await refused(handle, "approve", Approval(operator="x"))
            assert (await handle.query(ForgetSubject.progress)).model_dump() == before

            token_file.write_text(ScimServer.token)
            assert await handle.execute_update(ForgetSubject.resolve, Decision(**base)) == "retry accepted for chat"
            certificate = await handle.result()

    assert certificate.status == "completed" and certificate.all_confirmed
    assert {s.name: s.outcome for s in certificate.systems}["chat"] == "confirmed"
    (decision,) = certificate.decisions
    assert (decision.system, decision.action, decision.operator, decision.note) == ("chat", "retry", "oncall-ana", "token rotated")
    for name, server in scim_servers.items():
        assert server.get(ids[name]).status_code == 404
    with Session(engine_for(settings.ledger.url)) as session:
        (record,) = session.exec(select(EscalationRecord)).all()
        assert (record.action, record.operator) == ("retry", "oncall-ana") and record.resolved_at is not None


async def test_skip_and_confirm_close_a_system_with_evidence(
    client: Client, scim_servers: dict[str, ScimServer], tmp_path: Path
) -> None:
    target = person("escalate-skip")
    for server in scim_servers.values():
        server.seed([target])
    settings = make_settings(tmp_path, client, scim_servers, match="emails")
    for name in ("chat", "crm"):
        (tmp_path / name).write_text("wrong")
        with_token_file(settings, name, tmp_path / name)
    async with running_worker(client, settings):
        handle = await forget(client, settings, target.email)
        await wait_for(handle, lambda p: p.pending == ["chat", "crm"])
        await handle.execute_update(ForgetSubject.resolve, Decision(system="chat", action="skip", note="tax retention, Art. 17(3)(b)", operator="dpo-li"))
        await handle.execute_update(ForgetSubject.resolve, Decision(system="crm", action="confirm", note="deleted by hand, ticket 4711", operator="admin-bo"))
        certificate = await handle.result()
    outcomes = {s.name: s.outcome for s in certificate.systems}
    assert outcomes == {"chat": "skipped", "crm": "confirmed-by-operator", "wiki": "confirmed"}
    assert [(d.system, d.action, d.operator) for d in certificate.decisions] == [("chat", "skip", "dpo-li"), ("crm", "confirm", "admin-bo")]
    assert certificate.verify(settings.certificate_key_bytes())


async def test_erasure_request_waits_for_approval(client: Client, scim_servers: dict[str, ScimServer], tmp_path: Path) -> None:
    target = person("approval")
    ids = {name: server.seed([target])[target.user_name] for name, server in scim_servers.items()}
    settings = make_settings(tmp_path, client, scim_servers, match="userName")
    settings.policy.erasure_requests_need_approval = True
    async with running_worker(client, settings):
        handle = await forget(client, settings, target.user_name, reason=Reason.ERASURE_REQUEST)
        await wait_for(handle, lambda p: p.status is CaseStatus.AWAITING_APPROVAL)
        await asyncio.sleep(0.5)
        for name, server in scim_servers.items():
            assert server.get(ids[name]).json()["active"] is True  # nothing happens before approval
        assert "an operator name is required" in await refused(handle, "approve", Approval(operator=" "))
        assert await handle.execute_update(ForgetSubject.approve, Approval(operator="privacy-kim", note="identity verified")) == "approved"
        certificate = await handle.result()
    assert certificate.all_confirmed
    (approval,) = certificate.decisions
    assert (approval.action, approval.operator, approval.note) == ("approve", "privacy-kim", "identity verified")


async def test_legal_hold_pauses_one_system_until_released(
    client: Client, scim_servers: dict[str, ScimServer], tmp_path: Path
) -> None:
    target = person("hold")
    ids = {name: server.seed([target])[target.user_name] for name, server in scim_servers.items()}
    settings = make_settings(tmp_path, client, scim_servers, match="emails")
    async with running_worker(client, settings):
        handle = await forget(client, settings, target.email, grace=timedelta(seconds=2))
        await handle.signal(ForgetSubject.hold, "crm")
        progress = await wait_for(handle, lambda p: p.system("crm").stage is Stage.ON_HOLD and p.system("chat").stage is Stage.CONFIRMED)
        assert progress.holds == ["crm"]
        held = scim_servers["crm"].get(ids["crm"])
        assert held.status_code == 200 and held.json()["active"] is False  # revoked, kept while held
        await handle.signal(ForgetSubject.release, "crm")
        certificate = await handle.result()
    assert certificate.all_confirmed
    assert scim_servers["crm"].get(ids["crm"]).status_code == 404


async def test_rehire_during_grace_restores_access_and_deletes_nothing(
    client: Client, scim_servers: dict[str, ScimServer], tmp_path: Path
) -> None:
    target = person("rehire")
    ids = {name: server.seed([target])[target.user_name] for name, server in scim_servers.items()}
    settings = make_settings(tmp_path, client, scim_servers, match="userName")
    async with running_worker(client, settings):
        handle = await forget(client, settings, target.user_name, grace=timedelta(days=30))
        await wait_for(handle, in_grace)
        assert scim_servers["chat"].get(ids["chat"]).json()["active"] is False
        await handle.signal(ForgetSubject.rehire)
        certificate = await handle.result()
    assert certificate.status == "cancelled" and not certificate.all_confirmed
    assert {s.outcome for s in certificate.systems} == {"cancelled"}
    for name, server in scim_servers.items():
        account = server.get(ids[name])
        assert account.status_code == 200 and account.json()["active"] is True
    with Session(engine_for(settings.ledger.url)) as session:
        assert session.exec(select(VaultEntry)).all() == []  # the case is over: the identifier goes
        assert session.exec(select(Tombstone)).all() == []  # but nobody was forgotten


async def test_reminders_repeat_and_reach_the_dpo_before_the_deadline(
    skipping_env, scim_servers: dict[str, ScimServer], tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    target = person("remind")
    for server in scim_servers.values():
        server.seed([target])
    client = skipping_env.client
    settings = make_settings(tmp_path, client, {"chat": scim_servers["chat"]}, match="emails")
    (tmp_path / "bad").write_text("wrong")
    with_token_file(settings, "chat", tmp_path / "bad")
    with webhook() as team, webhook() as dpo:
        settings.escalation = EscalationSettings(
            webhooks=[team.url], dpo=[dpo.url], remind_every="1d", warn_before="5d"  # type: ignore[arg-type]
        )
        async with running_worker(client, settings):
            handle = await forget(client, settings, target.email)
            await wait_for(handle, lambda p: p.pending == ["chat"])
            await skipping_env.sleep(timedelta(days=27))
            progress = await handle.query(ForgetSubject.progress)
            await handle.terminate("test over")
    assert progress.pending == ["chat"]
    reminders = [m["reminder"] for m in team.messages]
    # The first notice, then one a day for 27 days; one more wake-up at the warning point.
    assert reminders[0] == 0 and 26 <= max(reminders) <= 28, reminders
    assert len(dpo.messages) >= 2 and all(m["to_dpo"] for m in dpo.messages)
    assert not any(m["to_dpo"] for m in team.messages[:20])  # day 25 is when the DPO hears of it
    assert "The GDPR deadline is near" in str(dpo.messages[0]["text"])


async def test_forget_wait_exits_3_when_escalated(client: Client, scim_servers: dict[str, ScimServer], tmp_path: Path) -> None:
    from tests.test_cli import cli, write_config

    target = person("escalate-cli")
    scim_servers["chat"].seed([target])
    settings = make_settings(tmp_path, client, {"chat": scim_servers["chat"]}, match="userName")
    config = write_config(settings, tmp_path / "lethe.toml")
    (tmp_path / "bad").write_text("wrong")
    config.write_text(config.read_text().replace('token_env = "LETHE_TEST_SCIM_TOKEN"', f'token_file = "{tmp_path / "bad"}"'))
    with_token_file(settings, "chat", tmp_path / "bad")
    async with running_worker(client, settings):
        code, out, err = await cli(config, "forget", target.user_name, "--reason", "leaver", "--grace", "0", "--wait")
        assert code == 3, (out, err)
        workflow_id = out.splitlines()[0]
        assert "is escalated and waits for an operator" in out and "chat: Credentials" in out
        assert f"python starter.py resolve {workflow_id} --system chat" in out

        code, out, _ = await cli(config, "escalations")
        assert code == 0 and workflow_id in out and "pending: chat" in out

        code, _, err = await cli(config, "resolve", workflow_id, "--system", "chat", "--action", "skip", "--note", "", "--operator", "me")
        assert code == 1 and "refused: a note is required" in err
        (tmp_path / "bad").write_text(ScimServer.token)
        code, out, err = await cli(config, "resolve", workflow_id, "--system", "chat", "--action", "retry", "--note", "fixed", "--operator", "me")
        assert code == 0, err
        assert "retry accepted for chat" in out
        certificate = await client.get_workflow_handle_for(ForgetSubject.run, workflow_id).result()
    assert certificate.all_confirmed


async def test_aborted_case_is_certified_as_aborted_and_forgets_the_identifier(
    client: Client, scim_servers: dict[str, ScimServer], tmp_path: Path
) -> None:
    target = person("abort")
    scim_servers["chat"].seed([target])
    settings = make_settings(tmp_path, client, {"chat": scim_servers["chat"]}, match="userName")
    async with running_worker(client, settings):
        handle = await forget(client, settings, target.user_name, grace=timedelta(days=30))
        await wait_for(handle, in_grace)
        await handle.cancel()  # an operator's Cancel in the Temporal UI
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    ledger = engine_for(settings.ledger.url)
    with Session(ledger) as session:
        assert session.exec(select(VaultEntry)).all() == []
        assert session.exec(select(Tombstone)).all() == []  # nobody was forgotten
        (record,) = session.exec(select(CertificateRecord)).all()
    certificate = Certificate.model_validate_json(record.body)
    assert certificate.status == "aborted" and not certificate.all_confirmed
