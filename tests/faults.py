"""Fixtures of real SCIM servers behind our fault-injecting proxy."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from lethe.devstack import ScimServer
from lethe.faultproxy import FaultProxy, LogEntry


@contextmanager
def proxied_server(rules: list[dict[str, object]] | None = None, **options: object) -> Iterator[tuple[ScimServer, FaultProxy]]:
    """A fresh scim2-server with a FaultProxy in front; the test talks to the proxy's URL."""
    server = ScimServer().start()
    proxy = FaultProxy(server.url, **options)  # type: ignore[arg-type]
    try:
        proxy.start(rules or [])
        yield server, proxy
    finally:
        proxy.stop()
        server.stop()


def writes(entries: list[LogEntry]) -> list[LogEntry]:
    return [entry for entry in entries if entry.method in ("PATCH", "DELETE", "POST", "PUT")]
