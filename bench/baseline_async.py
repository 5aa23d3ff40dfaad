"""Baseline 2, what a careful team writes next: every person and system at once with asyncio and
httpx, each system behind its own token bucket at its rate limit (burst 1: a bucket that could
burst would overrun a sliding-window limit). A 429 waits its Retry-After and takes a new token."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx

from bench.baseline_sequential import DEACTIVATE, SCIM, Tally


class TokenBucket:
    def __init__(self, rate: float, burst: int = 1) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.updated: float | None = None
        self.lock = asyncio.Lock()

    async def take(self) -> None:
        # The lock makes waiters queue in order: first come, first served.
        async with self.lock:
            loop = asyncio.get_running_loop()
            while True:
                now = loop.time()
                if self.updated is not None:
                    self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


@dataclass
class Target:
    client: httpx.AsyncClient
    bucket: TokenBucket


async def call(target: Target, tally: Tally, method: str, url: str, **kwargs: object) -> httpx.Response:
    while True:
        await target.bucket.take()
        response = await target.client.request(method, url, **kwargs)  # type: ignore[arg-type]
        tally.requests += 1
        if response.status_code != 429:
            return response
        tally.rate_limited += 1
        await asyncio.sleep(float(response.headers.get("Retry-After", "1")))


async def offboard_one(target: Target, tally: Tally, user_name: str, final_find: bool) -> None:
    search = {"filter": f"userName eq {json.dumps(user_name)}"}
    found = await call(target, tally, "GET", "/Users", params=search)
    found.raise_for_status()
    for user in found.json().get("Resources", []):
        path = f"/Users/{user['id']}"
        (await call(target, tally, "PATCH", path, json=DEACTIVATE, headers={"Content-Type": SCIM})).raise_for_status()
        (await call(target, tally, "DELETE", path)).raise_for_status()
        if (await call(target, tally, "GET", path)).status_code != 404:
            raise RuntimeError("an account is still there after its deletion")
    if final_find and (await call(target, tally, "GET", "/Users", params=search)).json().get("totalResults"):
        raise RuntimeError("an account still matches after its deletion")


async def offboard(
    targets: Mapping[str, str], token: str, user_names: Sequence[str], rate: float, final_find: bool = True
) -> Tally:
    """`targets`: system name -> SCIM base URL; `rate`: requests per second per system."""
    tally = Tally()
    headers = {"Authorization": f"Bearer {token}", "Accept": SCIM}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
    systems = [
        Target(httpx.AsyncClient(base_url=url, headers=headers, timeout=30, limits=limits), TokenBucket(rate))
        for url in targets.values()
    ]
    try:
        await asyncio.gather(
            *(offboard_one(target, tally, user_name, final_find) for user_name in user_names for target in systems)
        )
    finally:
        for target in systems:
            await target.client.aclose()
    return tally
