"""The same event twice is one case; a worker restart in the middle of a case loses nothing."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client

from lethe.devstack import ScimServer
from tests.support import forget, in_grace, make_settings, person, running_worker, wait_for


async def test_same_event_twice_joins_the_running_case(
    client: Client, scim_servers: dict[str, ScimServer], tmp_path: Path
) -> None:
    target = person("twice")
    for server in scim_servers.values():
        server.seed([target])
    settings = make_settings(tmp_path, client, scim_servers, match="emails")
    async with running_worker(client, settings):
        first, second, third = await asyncio.gather(
            *(forget(client, settings, spelling, grace=timedelta(seconds=2)) for spelling in
              (target.email, target.email.upper(), f"  {target.email} "))
        )
        assert first.id == second.id == third.id
        assert first.result_run_id == second.result_run_id == third.result_run_id
        certificate = await first.result()
    assert certificate.all_confirmed
    count = await client.count_workflows(f"WorkflowId = '{first.id}'")
    assert count.count == 1


async def test_worker_restart_mid_case_still_erases_everything(
    client: Client, scim_servers: dict[str, ScimServer], tmp_path: Path
) -> None:
    target = person("restart")
    ids = {name: server.seed([target])[target.user_name] for name, server in scim_servers.items()}
    settings = make_settings(tmp_path, client, scim_servers, match="userName")
    async with running_worker(client, settings):
        handle = await forget(client, settings, target.user_name, grace=timedelta(seconds=3))
        await wait_for(handle, in_grace)
    # The first worker is gone; the case waits in Temporal. A new worker picks it up.
    async with running_worker(client, settings):
        certificate = await handle.result()
    assert certificate.all_confirmed
    for name, server in scim_servers.items():
        assert server.get(ids[name]).status_code == 404
