"""What every HTTP connector shares: one pooled client per system, and transport errors
classified without leaking the request's URL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Generic, TypeVar

import httpx
from sqlalchemy import Engine
from temporalio.exceptions import ApplicationError

from activities.http_errors import transport_error
from lethe.config_types import SystemBase
from lethe.pacing import may_go_late, reserve_slot

ConfigT = TypeVar("ConfigT", bound=SystemBase)


class HttpConnector(Generic[ConfigT]):
    kind = "http"
    accept = "application/json"

    def __init__(self, systems: Mapping[str, ConfigT], ledger: Engine) -> None:
        self._systems = dict(systems)
        self._ledger = ledger
        self._clients: dict[str, httpx.AsyncClient] = {}
        # One reservation at a time per system in this process: the ledger's lock is for other processes.
        self._slot_locks: dict[str, asyncio.Lock] = {}

    def client(self, system: str) -> httpx.AsyncClient:
        client = self._clients.get(system)
        if client is None:
            config = self._config(system)
            token = config.read_token()
            headers = {"Accept": self.accept}
            if token:
                headers["Authorization"] = f"Bearer {token}"
            client = httpx.AsyncClient(
                base_url=config.base_url,
                headers=headers,
                timeout=config.timeout.total_seconds(),
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            )
            self._clients[system] = client
        return client

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    def _config(self, system: str) -> ConfigT:
        try:
            return self._systems[system]
        except KeyError:
            raise ApplicationError(
                f"system {system!r} is not configured as a {self.kind} system on this worker",
                type="Config",
                non_retryable=True,
            ) from None

    async def _wait_for_slot(self, system: str, rate: float) -> None:
        """Sleep until this request's fleet-wide slot. A request that wakes up late (a busy
        machine) takes a new slot rather than bunch up with the next ones."""
        lock = self._slot_locks.setdefault(system, asyncio.Lock())
        while True:
            async with lock:
                at = await asyncio.to_thread(reserve_slot, self._ledger, system, rate)
            delay = at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.time() - at <= may_go_late(rate):
                return

    async def _request(self, system: str, action: str, method: str, url: str, **kwargs: object) -> httpx.Response:
        client = self.client(system)  # before the slot: building a client takes time of its own
        await self._wait_for_slot(system, self._config(system).rate_limit)
        try:
            response = await client.request(method, url, **kwargs)  # type: ignore[arg-type]
        except httpx.TransportError as exc:
            raise transport_error(exc, system, action) from None
        if response.status_code in (401, 403):
            # Read the token again next time: an operator who fixed it (a rotated token file)
            # then resolves with `retry` without restarting the worker.
            client = self._clients.pop(system, None)
            if client is not None:
                await client.aclose()
        return response
