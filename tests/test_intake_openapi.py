"""Schemathesis against the served OpenAPI document: no 5xx, every response as documented."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import httpx
from temporalio.client import Client

from lethe.intake.credentials import Credentials
from lethe.settings import SystemConfig
from tests.intake_support import SIGNING_SECRET, TOKEN, intake_settings, serving

SEED = 7
MAX_EXAMPLES = 25  # per operation; with the coverage phase about 250 requests in all
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance,negative_data_rejection"


async def test_schemathesis_finds_no_5xx_and_no_schema_violation(client: Client, tmp_path: Path) -> None:
    settings = intake_settings(tmp_path, client)  # no worker: the events it gets right start cases that wait
    settings.systems = [SystemConfig(name="chat", kind="scim", url="http://127.0.0.1:9")]
    # One header for every route, so the fuzzer gets past authentication everywhere.
    credentials = Credentials(SIGNING_SECRET.encode(), (TOKEN.encode(),), f"Bearer {TOKEN}".encode())
    async with serving(settings, client, credentials) as url:
        document = (await httpx.AsyncClient().get(f"{url}/openapi.json")).json()
        assert {"/events", "/okta/events", "/healthz"} <= set(document["paths"])
        began = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            f"{url}/openapi.json",
            "--checks", CHECKS,
            "--max-examples", str(MAX_EXAMPLES),
            "--seed", str(SEED),
            "--phases", "examples,coverage,fuzzing",
            "--header", f"Authorization: Bearer {TOKEN}",
            "--no-color",
            "--report", "ndjson",
            "--report-dir", str(tmp_path / "report"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=tmp_path,
        )
        output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    text = output.decode()
    assert process.returncode == 0, text[-6000:]
    assert "No issues found" in text or "passed" in text, text[-2000:]
    print(f"schemathesis: {time.monotonic() - began:.1f} s\n{text[-800:]}")
