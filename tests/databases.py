"""Real database servers for tests: SQLite always, PostgreSQL and MySQL/MariaDB when configured.

A server test reads its URL from the environment and skips with the reason when it is unset,
unless the matching LETHE_REQUIRE_* variable is 1: then a missing URL fails the test, so CI
cannot pass by silently skipping the server it was meant to test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, event

SERVERS = {
    # kind: (URL variable, require variable, a URL that works on a developer machine)
    "postgresql": ("LETHE_TEST_POSTGRES_URL", "LETHE_REQUIRE_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    "mysql": ("LETHE_TEST_MYSQL_URL", "LETHE_REQUIRE_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
KINDS = ("sqlite", *SERVERS)


def server_url(kind: str) -> str:
    """The test server's URL, or skip (or fail, when required) saying which variable to set."""
    url_env, require_env, example = SERVERS[kind]
    url = os.environ.get(url_env)
    if url:
        return url
    if os.environ.get(require_env) == "1":
        pytest.fail(f"{require_env}=1 but {url_env} is not set (e.g. {url_env}={example})")
    pytest.skip(f"{kind} tests need a server: set {url_env} (e.g. {example}); {require_env}=1 makes this a failure")


@cache
def _server_engine(url: str) -> Engine:
    return create_engine(url, pool_pre_ping=True)


def engine_of(kind: str, tmp_path: Path) -> Engine:
    if kind == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'residual.db'}")
        # A second connection (another process, a resumed run) must wait, not fail, on a lock.
        event.listen(engine, "connect", lambda conn, _: conn.execute("PRAGMA busy_timeout=10000"))
        return engine
    return _server_engine(server_url(kind))


def unique_table(prefix: str = "t") -> str:
    """A table name no parallel test run can share."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=KINDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on each kind of database in turn; servers are shared, tables are per test."""
    engine = engine_of(request.param, tmp_path)
    yield engine
    if request.param == "sqlite":
        engine.dispose()
