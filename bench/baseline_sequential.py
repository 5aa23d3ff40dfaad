"""Baseline 1, what a team writes first: one person at a time, one system at a time. Find the
account, deactivate it, delete it, check that it is gone. Never concurrent, so it never meets a
rate limit; a 429 is still honoured, as any script against a SaaS API must."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx

SCIM = "application/scim+json"
DEACTIVATE = {
    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
    "Operations": [{"op": "replace", "path": "active", "value": False}],
}


@dataclass
class Tally:
    requests: int = 0
    rate_limited: int = 0


def call(client: httpx.Client, tally: Tally, method: str, url: str, **kwargs: object) -> httpx.Response:
    while True:
        response = client.request(method, url, **kwargs)  # type: ignore[arg-type]
        tally.requests += 1
        if response.status_code != 429:
            return response
        tally.rate_limited += 1
        time.sleep(float(response.headers.get("Retry-After", "1")))


def offboard(
    targets: Mapping[str, str], token: str, user_names: Sequence[str], final_find: bool = False
) -> Tally:
    """`targets`: system name -> SCIM base URL. `final_find` adds Lethe's last check (a filter
    that must find nobody)."""
    tally = Tally()
    headers = {"Authorization": f"Bearer {token}", "Accept": SCIM}
    clients = {name: httpx.Client(base_url=url, headers=headers, timeout=30) for name, url in targets.items()}
    try:
        for user_name in user_names:
            search = {"filter": f"userName eq {json.dumps(user_name)}"}
            for client in clients.values():
                found = call(client, tally, "GET", "/Users", params=search)
                found.raise_for_status()
                for user in found.json().get("Resources", []):
                    path = f"/Users/{user['id']}"
                    call(client, tally, "PATCH", path, json=DEACTIVATE, headers={"Content-Type": SCIM}).raise_for_status()
                    call(client, tally, "DELETE", path).raise_for_status()
                    if call(client, tally, "GET", path).status_code != 404:
                        raise RuntimeError("an account is still there after its deletion")
                if final_find and call(client, tally, "GET", "/Users", params=search).json().get("totalResults"):
                    raise RuntimeError("an account still matches after its deletion")
    finally:
        for client in clients.values():
            client.close()
    return tally
