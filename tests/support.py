"""Shared test helpers: people to seed, settings for a test, a worker running in the test's loop."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Interceptor

from lethe.case import CaseProgress, CaseStatus, Reason
from lethe.devstack import Person, ScimServer
from lethe.settings import Settings, SystemConfig
from lethe.start import start_case
from worker import build_workers
from workflows.forget import ForgetSubject

PEPPER = "test-pepper-0123456789abcdef"
TOKEN_ENV = "LETHE_TEST_SCIM_TOKEN"
MATCHES = ("userName", "emails", "externalId")


def person(tag: str) -> Person:
    """A person whose every attribute is unique to this tag, so leaks are easy to grep."""
    return Person(
        user_name=f"user.{tag}",
        email=f"{tag}@example.com",
        given_name=f"Given{tag}",
        family_name=f"Family{tag}",
        external_id=f"ext-{tag}",
    )


def identifier_for(p: Person, match: str) -> str:
    return {"userName": p.user_name, "emails": p.email, "externalId": p.external_id}[match]


def make_settings(tmp_path: Path, target: Client, servers: dict[str, ScimServer], match: str = "emails", **system_overrides: object) -> Settings:
    return Settings(
        temporal={"address": target.service_client.config.target_host, "task_queue": f"lethe-{uuid.uuid4().hex[:8]}"},
        ledger={"url": f"sqlite:///{tmp_path / 'ledger.db'}"},
        pepper=PEPPER,
        systems=[
            SystemConfig(
                name=name,
                kind="scim",
                url=server.url,
                token_env=TOKEN_ENV,
                match=match,  # type: ignore[arg-type]
                confirm={"every": "1s", "within": "1h"},  # type: ignore[arg-type]
                **system_overrides,  # type: ignore[arg-type]
            )
            for name, server in servers.items()
        ],
    )


@asynccontextmanager
async def running_worker(client: Client, settings: Settings, interceptors: Sequence[Interceptor] = ()) -> AsyncIterator[None]:
    workers, connectors = build_workers(client, settings, interceptors)
    runs = [asyncio.create_task(worker.run()) for worker in workers]
    try:
        yield
    finally:
        await asyncio.gather(*(worker.shutdown() for worker in workers))
        await asyncio.gather(*runs, return_exceptions=True)
        await connectors.aclose()


async def forget(
    client: Client, settings: Settings, identifier: str, grace: timedelta = timedelta(0), reason: Reason = Reason.LEAVER
) -> WorkflowHandle:
    return await start_case(client, settings, identifier, reason, grace)


async def wait_for(handle: WorkflowHandle, predicate, timeout: float = 30.0) -> CaseProgress:  # type: ignore[no-untyped-def]
    """Poll the progress query until predicate(progress) holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        progress = await handle.query(ForgetSubject.progress)
        if predicate(progress):
            return progress
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting; last progress: {progress.model_dump_json()}")
        await asyncio.sleep(0.1)


def in_grace(progress: CaseProgress) -> bool:
    return progress.status is CaseStatus.GRACE and all(s.stage.value in ("revoked", "not-found") for s in progress.systems)
