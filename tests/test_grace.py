"""A 30-day grace period passes on the time-skipping server; deletion comes only after it."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from lethe.case import CaseStatus
from lethe.devstack import ScimServer
from tests.support import forget, in_grace, make_settings, person, running_worker, wait_for


async def test_thirty_day_grace_then_delete(
    skipping_env: WorkflowEnvironment, scim_servers: dict[str, ScimServer], tmp_path: Path
) -> None:
    target = person("grace-30d")
    ids = {name: server.seed([target])[target.user_name] for name, server in scim_servers.items()}
    client = skipping_env.client
    settings = make_settings(tmp_path, client, scim_servers, match="externalId")
    async with running_worker(client, settings):
        handle = await forget(client, settings, target.external_id, grace=timedelta(days=30))
        progress = await wait_for(handle, in_grace)
        assert progress.status is CaseStatus.GRACE
        assert progress.grace_until is not None
        assert progress.grace_until - progress.requested_at >= timedelta(days=30) - timedelta(minutes=1)
        # Revoked, not deleted: every account still exists, deactivated.
        for name, server in scim_servers.items():
            response = server.get(ids[name])
            assert response.status_code == 200 and response.json()["active"] is False

        started = time.monotonic()
        certificate = await handle.result()  # the test server skips the 30 days here
        wall = time.monotonic() - started

    assert certificate.all_confirmed
    for name, server in scim_servers.items():
        assert server.get(ids[name]).status_code == 404
        system = next(s for s in certificate.systems if s.name == name)
        deleted_at = next(e.at for e in system.evidence if e.action == "delete")
        assert deleted_at >= progress.grace_until, "deleted before the grace period ended"
    print(f"30-day grace passed in {wall:.2f}s of wall time")
