"""Bad and hostile input at the door: each refused with the right status; no case started or
changed; no identifier in any log line."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select
from temporalio.client import Client

from lethe.intake.guards import Shield
from lethe.intake.signing import sign
from lethe.ledger import VaultEntry, engine_for
from lethe.settings import SystemConfig
from tests.intake_support import BEARER, SIGNING_SECRET, body_of, event, intake_settings, serving, settled_count, signed

SUBJECT = "hostile.subject@example.com"
SEED = 20250331
SAMPLES = 200


def _set(field: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    def mutate(payload: dict[str, Any]) -> Any:
        payload[field] = value
        return payload

    return mutate


def _drop(field: str) -> Callable[[dict[str, Any]], Any]:
    def mutate(payload: dict[str, Any]) -> Any:
        del payload[field]
        return payload

    return mutate


# (the field the 422 must name, how a valid event is broken)
MUTATIONS: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    *[(field, _drop(field)) for field in ("type", "subject", "effective_at", "source", "idempotency_key")],
    *[("type", _set("type", value)) for value in ("retired", "LEAVER", "", 1, None, ["leaver"])],
    *[("subject", _set("subject", value)) for value in ("", "   ", "a\x00b@example.com", "a\u200bb@example.com", "x" * 321, 42, None, {"email": SUBJECT})],
    *[
        ("effective_at", _set("effective_at", value))
        for value in ("yesterday", "2025-13-01T00:00:00Z", "2025-03-31T17:00:00", "2025-03-31", 1743433200, "", None, "31/03/2025 17:00")
    ],
    *[("source", _set("source", value)) for value in ("", "has space", "x" * 65, "-lead", 7)],
    *[("idempotency_key", _set("idempotency_key", value)) for value in ("", "has space", "k" * 201, "tab\tkey", 3.5)],
    *[("system", _set("system", value)) for value in ("Chat!", "", "x" * 41)],
    ("system", lambda p: {**p, "system": "chat"}),  # a system on a leaver event
    ("system", lambda p: {**p, "type": "legal-hold", "system": "payroll"}),  # not configured
    *[(field, lambda p, f=field: {**p, f: "surprise"}) for field in ("subjects", "extra", "Type")],
]
RAW: list[bytes] = [b"", b"{", b"[]", b'"leaver"', b"null", b"42", b"\xff\xfe{}", b'{"type": "leaver",}', b"{'type': 'leaver'}"]


def malformed_bodies(rng: random.Random) -> list[tuple[str, bytes]]:
    """SAMPLES bodies, each broken in one way, with the field the refusal must name."""
    bodies = []
    for _ in range(SAMPLES):
        if rng.random() < 0.15:
            raw = rng.choice(RAW)
            truncated = body_of(event("leaver", SUBJECT))[: rng.randrange(1, 60)]
            bodies.append(("body", rng.choice([raw, truncated])))
            continue
        field, mutate = rng.choice(MUTATIONS)
        bodies.append((field, body_of(mutate(event("leaver", SUBJECT)))))
    return bodies


@asynccontextmanager
async def access_log_too(caplog: pytest.LogCaptureFixture) -> AsyncIterator[None]:
    """uvicorn's access log does not propagate, and uvicorn replaces its handlers when it
    starts: so this is entered once the server runs."""
    access = logging.getLogger("uvicorn.access")
    access.addHandler(caplog.handler)
    try:
        yield
    finally:
        access.removeHandler(caplog.handler)


async def test_hostile_requests_are_refused_and_change_nothing(client: Client, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = intake_settings(tmp_path, client)
    settings.systems = [SystemConfig(name="chat", kind="scim", url="http://127.0.0.1:9")]
    payload = body_of(event("leaver", SUBJECT, key="hostile-1"))
    async with serving(settings, client) as url, httpx.AsyncClient(base_url=url) as http, access_log_too(caplog):

        async def refused(body: bytes, headers: dict[str, str], status: int) -> dict[str, Any]:
            response = await http.post("/events", content=body, headers=headers)
            assert response.status_code == status, (response.status_code, response.text)
            assert SUBJECT not in response.text
            return response.json()

        now = time.time()
        forged = signed(payload, secret="not-the-secret-at-all-0123")
        assert "does not match" in (await refused(payload, forged, 401))["message"]
        tampered = signed(payload)
        await refused(payload.replace(b"leaver", b"rehire"), tampered, 401)
        stale = signed(payload, at=now - 310)
        assert "replay window" in (await refused(payload, stale, 401))["message"]
        future = signed(payload, at=now + 310)
        await refused(payload, future, 401)
        await refused(payload, {"X-Lethe-Timestamp": str(int(now))}, 401)
        await refused(payload, {**signed(payload), "X-Lethe-Signature": "md5=abc"}, 401)
        await refused(payload, {"X-Lethe-Timestamp": "soon", "X-Lethe-Signature": sign(SIGNING_SECRET.encode(), 0, payload)}, 401)
        await refused(payload, {"Authorization": "Bearer wrong-token-0123456789"}, 401)
        await refused(payload, {"Authorization": "Basic dXNlcjpwYXNz"}, 401)
        assert "missing credentials" in (await refused(payload, {}, 401))["message"]

        # Oversize: refused before anything reads it, whether the length is declared or streamed.
        big = body_of(event("leaver", SUBJECT, note="x" * 65536))
        assert (await refused(big, signed(big), 413))["error"] == "too_large"

        async def chunks():  # type: ignore[no-untyped-def]
            for _ in range(70):
                yield b"x" * 1024

        streamed = await http.post("/events", content=chunks(), headers=BEARER)
        assert streamed.status_code == 413

        # Malformed, but properly signed: 422 naming the field, never echoing the value.
        for field, body in malformed_bodies(random.Random(SEED)):
            problem = await refused(body, signed(body), 422)
            assert problem["field"] == field and problem["message"].startswith(f"{field}: "), (field, body, problem)
            await refused(body, {}, 401)  # and without credentials, not even that is said

        # Replay: the first delivery is accepted (nothing else was), the same bytes again are not.
        headers = signed(payload)
        accepted = await http.post("/events", content=payload, headers=headers)
        assert accepted.status_code == 202
        assert "replay" in (await refused(payload, headers, 401))["message"]

    assert await settled_count(client, settings, 1) == 1  # the one accepted delivery, nothing else
    with Session(engine_for(settings.ledger.url)) as session:
        assert len(session.exec(select(VaultEntry)).all()) == 1
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "POST /events" in logged  # the access log was captured
    assert SUBJECT not in logged and SUBJECT.split("@")[0] not in logged


async def test_no_query_string_in_the_access_log(client: Client, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = intake_settings(tmp_path, client)
    async with serving(settings, client) as url, httpx.AsyncClient(base_url=url, headers=BEARER) as http, access_log_too(caplog):
        response = await http.get("/scim/v2/Users", params={"filter": 'userName eq "query.person@example.com"'})
        assert response.status_code == 200
    lines = [record.getMessage() for record in caplog.records if record.name == "uvicorn.access"]
    assert any("GET /scim/v2/Users HTTP" in line for line in lines), lines
    assert not any("query.person" in record.getMessage() for record in caplog.records)


async def test_unexpected_errors_are_logged_by_type_only(caplog: pytest.LogCaptureFixture) -> None:
    async def broken(scope, receive, send):  # type: ignore[no-untyped-def]
        raise RuntimeError(f"constraint failed for {SUBJECT}")

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=Shield(broken)), base_url="http://intake") as http:
        response = await http.get("/anything")
    assert response.status_code == 500 and response.json()["error"] == "internal"
    assert "RuntimeError" in caplog.text and SUBJECT not in caplog.text and SUBJECT not in response.text
