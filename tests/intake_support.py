"""Helpers for the intake tests: the app served for real by uvicorn on a loopback port.

Why uvicorn rather than httpx.ASGITransport: scim2-tester and schemathesis are synchronous
clients that need a socket, and the body limit, header handling and access log under test are
the server's. It runs as a task in the test's event loop, so the app shares the session's
Temporal client (which is bound to that loop)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from temporalio.client import Client

from lethe.devstack import free_port
from lethe.intake.app import build_app
from lethe.intake.credentials import Credentials
from lethe.intake.serve import server
from lethe.intake.signing import sign
from lethe.settings import Settings
from tests.support import PEPPER

SIGNING_SECRET = "intake-signing-secret-0123456789"
TOKEN = "intake-bearer-token-0123456789"
OKTA_SECRET = "okta-hook-secret-0123456789"
CREDENTIALS = Credentials(SIGNING_SECRET.encode(), (TOKEN.encode(),), OKTA_SECRET.encode())
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def intake_settings(tmp_path: Path, client: Client, **overrides: Any) -> Settings:
    """Settings on a task queue of the test's own, with no worker unless the test runs one."""
    return Settings(
        temporal={"address": client.service_client.config.target_host, "task_queue": f"intake-{uuid.uuid4().hex[:8]}"},
        ledger={"url": f"sqlite:///{tmp_path / 'ledger.db'}"},
        pepper=PEPPER,
        **overrides,
    )


@asynccontextmanager
async def serving(settings: Settings, client: Client, credentials: Credentials = CREDENTIALS) -> AsyncIterator[str]:
    port = free_port()
    uvicorn_server = server(settings, build_app(settings, client, credentials), "127.0.0.1", port)
    task = asyncio.create_task(uvicorn_server.serve())
    try:
        while not uvicorn_server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        uvicorn_server.should_exit = True
        await task


def event(type: str, subject: str, key: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "type": type,
        "subject": subject,
        "effective_at": "2025-03-31T17:00:00+02:00",
        "source": "hr-test",
        "idempotency_key": key or uuid.uuid4().hex,
        **extra,
    }


def body_of(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def signed(body: bytes, at: float | None = None, secret: str = SIGNING_SECRET) -> dict[str, str]:
    timestamp = int(at if at is not None else time.time())
    return {"Content-Type": "application/json", "X-Lethe-Timestamp": str(timestamp), "X-Lethe-Signature": sign(secret.encode(), timestamp, body)}


async def count_workflows(client: Client, settings: Settings) -> int:
    return (await client.count_workflows(f'TaskQueue = "{settings.temporal.task_queue}"')).count


async def settled_count(client: Client, settings: Settings, expected: int, timeout: float = 20.0) -> int:
    """The number of workflows on the test's queue once visibility shows `expected` (or the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        count = await count_workflows(client, settings)
        if count >= expected or time.monotonic() > deadline:
            return count
        await asyncio.sleep(0.2)
