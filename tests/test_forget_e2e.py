"""A person with accounts in three real SCIM servers is forgotten end to end."""

from __future__ import annotations

from pathlib import Path

from temporalio.client import Client

from lethe.case import Stage
from lethe.devstack import ScimServer
from lethe.ledger import VaultEntry, engine_for
from sqlmodel import Session, select
from tests.support import forget, identifier_for, make_settings, person, running_worker


async def test_forget_deletes_in_every_system_and_leaves_others(
    client: Client, scim_servers: dict[str, ScimServer], tmp_path: Path
) -> None:
    target = person("e2e-target")
    bystanders = [person(f"e2e-other-{i}") for i in range(5)]
    target_ids = {name: server.seed([target, *bystanders])[target.user_name] for name, server in scim_servers.items()}
    before = {name: server.users() for name, server in scim_servers.items()}

    settings = make_settings(tmp_path, client, scim_servers, match="emails")
    async with running_worker(client, settings):
        handle = await forget(client, settings, identifier_for(target, "emails"))
        certificate = await handle.result()

    assert certificate.status == "completed"
    assert {s.name: s.outcome for s in certificate.systems} == {name: "confirmed" for name in scim_servers}
    assert certificate.verify(settings.certificate_key_bytes())
    for name, server in scim_servers.items():
        assert server.get(target_ids[name]).status_code == 404
        after = server.users()
        expected = {k: v for k, v in before[name].items() if k != target_ids[name]}
        assert after == expected, f"bystanders changed in {name}"
        actions = [e.action for e in next(s for s in certificate.systems if s.name == name).evidence]
        assert actions == ["deactivate", "delete", "confirm-gone", "confirm-no-match"]
    with Session(engine_for(settings.ledger.url)) as session:
        assert session.exec(select(VaultEntry)).all() == []


async def test_unknown_identifier_completes_as_not_found(
    client: Client, scim_servers: dict[str, ScimServer], tmp_path: Path
) -> None:
    before = {name: server.users() for name, server in scim_servers.items()}
    settings = make_settings(tmp_path, client, scim_servers, match="userName")
    async with running_worker(client, settings):
        certificate = await (await forget(client, settings, "nobody.at.all@example.com")).result()
    assert [s.outcome for s in certificate.systems] == [Stage.NOT_FOUND.value] * len(scim_servers)
    assert certificate.all_confirmed
    assert {name: server.users() for name, server in scim_servers.items()} == before


async def test_deactivate_only_system_keeps_a_disabled_account(
    client: Client, scim_servers: dict[str, ScimServer], tmp_path: Path
) -> None:
    target = person("e2e-keep-disabled")
    ids = {name: server.seed([target])[target.user_name] for name, server in scim_servers.items()}
    settings = make_settings(tmp_path, client, scim_servers, match="userName", on_leave="deactivate")
    async with running_worker(client, settings):
        certificate = await (await forget(client, settings, target.user_name)).result()
    assert certificate.all_confirmed
    for name, server in scim_servers.items():
        account = server.get(ids[name])
        assert account.status_code == 200 and account.json()["active"] is False
        actions = [e.action for e in next(s for s in certificate.systems if s.name == name).evidence]
        assert actions == ["deactivate", "confirm-inactive"]
