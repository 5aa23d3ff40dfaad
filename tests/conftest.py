"""Session-wide real parts: a Temporal dev server and three scim2-server processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from lethe.devstack import DEV_SERVER_TUNING, ScimServer, binary
from lethe.logs import quiet_url_loggers
from lethe.temporal import SEARCH_ATTRIBUTES, ensure_search_attributes
from tests.support import TOKEN_ENV

SYSTEM_NAMES = ("chat", "crm", "wiki")


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary("temporal"),
        dev_server_extra_args=DEV_SERVER_TUNING,
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=pydantic_data_converter,
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
async def skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    # One per test: a session-wide time-skipping server does not skip reliably.
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary("temporal-test-server"), data_converter=pydantic_data_converter
    )
    try:
        await ensure_search_attributes(env.client)
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
def client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture(scope="session")
def scim_servers() -> Iterator[dict[str, ScimServer]]:
    servers = {name: ScimServer().start() for name in SYSTEM_NAMES}
    try:
        yield servers
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture(autouse=True)
def scim_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, ScimServer.token)
    quiet_url_loggers()
