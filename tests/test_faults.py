"""Systems that misbehave, through our fault-injecting proxy in front of real scim2-server
processes: each fault ends in the outcome a person would expect."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlmodel import Session, select
from temporalio.client import Client

from lethe.case import Decision, Reason, Stage
from lethe.devstack import ScimServer
from lethe.ledger import EscalationRecord, engine_for
from lethe.settings import ConfirmPolicy
from starter import dry_run
from tests.faults import proxied_server, writes
from tests.support import forget, make_settings, person, running_worker, wait_for
from workflows.forget import ForgetSubject


async def test_429_retry_after_is_honoured(client: Client, scim_servers: dict[str, ScimServer], tmp_path: Path) -> None:
    target = person("fault-429")
    with proxied_server([{"method": "DELETE", "path": "^/Users/", "status": 429, "retry_after": 2, "times": 1}]) as (server, proxy):
        server.seed([target])
        settings = make_settings(tmp_path, client, {"chat": proxy}, match="userName")
        async with running_worker(client, settings):
            certificate = await (await forget(client, settings, target.user_name)).result()
        deletes = [entry for entry in proxy.log() if entry.method == "DELETE"]
    assert certificate.all_confirmed
    assert [entry.status for entry in deletes] == [429, 204]
    waited = deletes[1].mono - deletes[0].mono
    assert waited >= 2.0, f"retried after {waited:.2f}s despite Retry-After: 2"


async def test_burst_of_503_and_dropped_connections_completes_without_escalation(
    client: Client, tmp_path: Path
) -> None:
    target = person("fault-503")
    rules = [
        {"method": "GET", "path": "^/Users$", "status": 503, "times": 3},
        {"method": "PATCH", "drop": True, "times": 2},
        {"method": "DELETE", "drop": "after", "times": 1},  # deleted, but the answer is lost
        {"method": "GET", "path": "^/Users/", "status": 502, "times": 2},
    ]
    with proxied_server(rules) as (server, proxy):
        server.seed([target])
        settings = make_settings(tmp_path, client, {"chat": proxy}, match="userName")
        async with running_worker(client, settings):
            certificate = await (await forget(client, settings, target.user_name)).result()
        stats = proxy.stats()
        assert server.users() == {}
    assert certificate.all_confirmed and certificate.decisions == []
    assert stats["dropped"] == 3 and stats["by_status"].get("503") == 3
    with Session(engine_for(settings.ledger.url)) as session:
        assert session.exec(select(EscalationRecord)).all() == []


async def test_401_escalates_after_one_request_then_retry_completes(client: Client, tmp_path: Path) -> None:
    target = person("fault-401")
    with proxied_server([{"status": 401}]) as (server, proxy):
        server.seed([target])
        settings = make_settings(tmp_path, client, {"chat": proxy}, match="userName")
        async with running_worker(client, settings):
            handle = await forget(client, settings, target.user_name)
            await wait_for(handle, lambda p: p.pending == ["chat"])
            assert len(proxy.log()) == 1  # no retry storm against a refusing system
            proxy.set_rules([])  # the token is fixed
            await handle.execute_update(ForgetSubject.resolve, Decision(system="chat", action="retry", note="token fixed", operator="ana"))
            certificate = await handle.result()
        assert server.users() == {}
    assert certificate.all_confirmed


async def test_lying_204_is_caught_by_confirmation_and_never_certified_as_confirmed(client: Client, tmp_path: Path) -> None:
    target = person("fault-lie")
    with proxied_server([{"method": "DELETE", "lie": True}]) as (server, proxy):
        ids = server.seed([target])
        settings = make_settings(tmp_path, client, {"chat": proxy}, match="userName")
        settings.systems[0] = settings.systems[0].model_copy(update={"confirm": ConfirmPolicy(every=timedelta(seconds=1), within=timedelta(seconds=4))})
        async with running_worker(client, settings):
            handle = await forget(client, settings, target.user_name)
            progress = await wait_for(handle, lambda p: p.pending == ["chat"])
            assert progress.system("chat").stage is Stage.ESCALATED
            assert server.get(ids[target.user_name]).status_code == 200  # the "deleted" account is there
            await handle.execute_update(ForgetSubject.resolve, Decision(system="chat", action="skip", note="vendor ticket 88 opened", operator="ana"))
            certificate = await handle.result()
    (chat,) = certificate.systems
    assert chat.outcome == "skipped" and not any(e.action == "confirm-gone" for e in chat.evidence)


async def test_deletion_that_shows_later_is_polled_then_searched_once_more(client: Client, tmp_path: Path) -> None:
    """A vendor that accepts the DELETE and removes the account in the background: the read-back
    still finds it, so the case polls until it is gone, then checks that nobody matches."""
    target = person("fault-background")
    with proxied_server([{"method": "DELETE", "lie": True}]) as (server, proxy):
        ids = server.seed([target])
        settings = make_settings(tmp_path, client, {"chat": proxy}, match="userName")
        settings.systems[0] = settings.systems[0].model_copy(update={"confirm": ConfirmPolicy(every=timedelta(seconds=1), within=timedelta(minutes=5))})
        async with running_worker(client, settings):
            handle = await forget(client, settings, target.user_name)
            await wait_for(handle, lambda p: p.system("chat").stage is Stage.CONFIRMING)
            assert server.get(ids[target.user_name]).status_code == 200
            with server.client() as vendor:  # the vendor's background job
                assert vendor.delete(f"/Users/{ids[target.user_name]}").status_code == 204
            certificate = await handle.result()
        log = proxy.log()
    (chat,) = certificate.systems
    assert certificate.all_confirmed and chat.outcome == "confirmed"
    assert [e.action for e in chat.evidence] == ["deactivate", "delete", "confirm-gone", "confirm-no-match"]
    reads_by_id = [entry for entry in log if entry.method == "GET" and entry.path.startswith("/Users/")]
    assert len(reads_by_id) >= 2 and reads_by_id[-1].status == 404  # read back, then polled until gone
    assert [entry.method for entry in log][-1] == "GET" and log[-1].path == "/Users"  # the search came last


async def test_server_ignoring_filters_causes_no_write_and_escalates_ambiguous(
    client: Client, scim_servers: dict[str, ScimServer], tmp_path: Path
) -> None:
    target = person("fault-unfilter")
    scim_servers["crm"].seed([target])
    with proxied_server([{"method": "GET", "path": "^/Users$", "unfilter": True}]) as (server, proxy):
        server.seed([target, *(person(f"fault-unfilter-other-{i}") for i in range(4))])
        before = server.users()
        settings = make_settings(tmp_path, client, {"chat": proxy, "crm": scim_servers["crm"]}, match="emails")
        async with running_worker(client, settings):
            handle = await forget(client, settings, target.email)
            progress = await wait_for(handle, lambda p: p.pending == ["chat"] and p.system("crm").stage is Stage.CONFIRMED)
            chat = progress.system("chat")
            assert chat.escalation == "Ambiguous" and "5 candidate account(s) of which 1 carry the identifier" in (chat.error or "")
            assert target.email not in (chat.error or "")
            assert writes(proxy.log()) == []
            assert server.users() == before
            await handle.terminate("test over")


async def test_two_accounts_with_one_identifier_wait_for_the_operator_to_choose(client: Client, tmp_path: Path) -> None:
    target = person("fault-twin")
    twin = person("fault-twin-2")
    twin.email = target.email  # a second account holding the same address
    with proxied_server() as (server, proxy):
        ids = server.seed([target, twin])
        settings = make_settings(tmp_path, client, {"chat": proxy}, match="emails")
        async with running_worker(client, settings):
            handle = await forget(client, settings, target.email)
            progress = await wait_for(handle, lambda p: p.pending == ["chat"])
            assert progress.system("chat").escalation == "Ambiguous" and writes(proxy.log()) == []
            chosen = ids[target.user_name]
            await handle.execute_update(
                ForgetSubject.resolve,
                Decision(system="chat", action="retry", note="HR confirmed the older account", operator="ana", account_id=chosen),
            )
            certificate = await handle.result()
        remaining = server.users()
        written = [(e.method, e.path) for e in writes(proxy.log())]
    assert certificate.all_confirmed
    assert set(remaining) == {ids[twin.user_name]}
    assert written == [("PATCH", f"/Users/{chosen}"), ("DELETE", f"/Users/{chosen}")]


async def test_dry_run_changes_nothing_anywhere(client: Client, tmp_path: Path) -> None:
    target = person("fault-dry")
    with proxied_server() as (chat, chat_proxy), proxied_server() as (crm, crm_proxy):
        chat.seed([target])
        crm.seed([target, person("fault-dry-other")])
        before = (chat.users(), crm.users())
        settings = make_settings(tmp_path, client, {"chat": chat_proxy, "crm": crm_proxy}, match="userName")
        async with running_worker(client, settings):
            report = await dry_run(client, settings, target.user_name, Reason.LEAVER)
        assert [(p.name, p.count, p.would) for p in report.systems] == [
            ("chat", 1, ["deactivate", "delete"]),
            ("crm", 1, ["deactivate", "delete"]),
        ]
        assert writes(chat_proxy.log()) == [] and writes(crm_proxy.log()) == []
        assert len(chat_proxy.log()) == 1 and len(crm_proxy.log()) == 1  # one lookup each
        assert (chat.users(), crm.users()) == before
