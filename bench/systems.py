"""Downstream systems for a benchmark: a real scim2-server behind a FaultProxy each, seeded
directly (past the proxy, so set-up uses no rate limit and leaves no log)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from lethe.devstack import Person, ScimServer
from lethe.faultproxy import FaultProxy, LogEntry

TOKEN = "bench-scim-token-0123456789"
TOKEN_ENV = "BENCH_SCIM_TOKEN"


@dataclass
class System:
    name: str
    server: ScimServer
    proxy: FaultProxy
    ids: dict[str, str] = field(default_factory=dict)  # userName -> SCIM id

    @property
    def url(self) -> str:
        """Where clients go: the proxy."""
        return self.proxy.url

    def log(self) -> list[LogEntry]:
        return self.proxy.log()

    def stats(self) -> dict[str, Any]:
        return self.proxy.stats()


@dataclass(frozen=True)
class SystemSpec:
    latency_ms: float = 20.0
    rate_limit: int | None = 25
    rules: tuple[dict[str, Any], ...] = ()
    rules_seed: int = 0


@contextmanager
def open_systems(names: Sequence[str], spec: SystemSpec, people: Sequence[Person]) -> Iterator[dict[str, System]]:
    """Start, seed and (on exit, whatever happens) stop one server and proxy per name."""
    with ExitStack() as stack:
        systems: dict[str, System] = {}
        for name in names:
            server = ScimServer(token=TOKEN).start()
            stack.callback(server.stop)
            proxy = FaultProxy(server.url, latency_ms=spec.latency_ms, rate_limit=spec.rate_limit)
            proxy.start(list(spec.rules) or None, seed=spec.rules_seed)
            stack.callback(proxy.stop)
            systems[name] = System(name, server, proxy)
        # scim2-server spends ~8 ms of CPU per create: seed the systems side by side.
        with ThreadPoolExecutor(max_workers=len(systems)) as pool:
            seeded = pool.map(lambda system: system.server.seed(people), systems.values())
            for system, ids in zip(systems.values(), seeded):
                system.ids = ids
        yield systems


def pids(systems: dict[str, System]) -> dict[str, int]:
    found: dict[str, int] = {}
    for name, system in systems.items():
        assert system.server.process is not None and system.proxy.process is not None
        found[f"scim2-server {name}"] = system.server.process.pid
        found[f"faultproxy {name}"] = system.proxy.process.pid
    return found
