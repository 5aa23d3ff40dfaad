"""Lethe's own parts for a benchmark: a Temporal dev server, a generated lethe.toml, and
worker processes (`python worker.py`), each one killable and restartable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lethe.devstack import free_port, stop_process, temporal_dev_server_args, wait_for_port
from lethe.settings import Settings, load_settings

from bench.systems import TOKEN, TOKEN_ENV

ROOT = Path(__file__).resolve().parent.parent
PEPPER = "bench-pepper-not-a-secret-0123456789"
READY_LINE = "lethe worker: task queue"


@dataclass
class TemporalServer:
    """`temporal server start-dev` on loopback: in memory, or on a database file that outlives it."""

    workdir: Path
    db_filename: Path | None = None
    dynamic_config: tuple[str, ...] = ()  # KEY=VALUE for --dynamic-config-value
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> TemporalServer:
        args = temporal_dev_server_args(self.port, None, str(self.db_filename) if self.db_filename else None)
        args += ["--http-port", str(free_port()), "--metrics-port", str(free_port())]
        for value in self.dynamic_config:
            args += ["--dynamic-config-value", value]
        log = (self.workdir / "temporal.log").open("ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.starts += 1
        wait_for_port(self.port, timeout=60)
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, timeout=20)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


def write_config(
    path: Path,
    temporal_address: str,
    systems: Mapping[str, str],
    rate_limit: float,
    grace_leaver: str = "30d",
    confirm_every: str = "1s",
) -> Path:
    """A lethe.toml for the worker and the CLI. Breaker thresholds are raised: a benchmark is a
    planned mass offboarding, and the default hourly limits would pause it by design."""
    lines = [
        "[temporal]",
        f'address = "{temporal_address}"',
        'task_queue = "lethe"',
        "[ledger]",
        f'url = "sqlite:///{path.parent / "ledger.db"}"',
        "[grace]",
        f'leaver = "{grace_leaver}"',
        "[safety]",
        "max_deletions_per_hour = 1000000",
        "fleet_max_deletions_per_hour = 1000000",
        "[intake]",
        "bulk_rate = 1000",
    ]
    for name, url in systems.items():
        lines += [
            "[[systems]]",
            f'name = "{name}"',
            'kind = "scim"',
            f'url = "{url}"',
            f'token_env = "{TOKEN_ENV}"',
            'match = "userName"',
            f"rate_limit = {rate_limit}",
            f'confirm = {{ every = "{confirm_every}", within = "1h" }}',
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def lethe_env(config: Path) -> dict[str, str]:
    return {**os.environ, "LETHE_CONFIG": str(config), "LETHE_PEPPER": PEPPER, TOKEN_ENV: TOKEN, "PYTHONUNBUFFERED": "1"}


def load(config: Path) -> Settings:
    """The same settings the worker reads, for starting cases in this process."""
    return load_settings(config, pepper=PEPPER)


@dataclass
class WorkerProcess:
    """One `python worker.py`; its output goes to a file in the config's folder."""

    config: Path
    number: int = 1
    process: subprocess.Popen[bytes] | None = None

    @property
    def output(self) -> Path:
        return self.config.parent / f"worker-{self.number}.log"

    def start(self, timeout: float = 60.0) -> WorkerProcess:
        offset = self.output.stat().st_size if self.output.exists() else 0
        with self.output.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, str(ROOT / "worker.py")],
                env=lethe_env(self.config),
                cwd=self.config.parent,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while READY_LINE not in self.output.read_text(errors="replace")[offset:]:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start; see {self.output}")
            time.sleep(0.1)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """kill -9: no draining, whatever it was doing is lost."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, timeout=15)


def stop_all(processes: Iterable[WorkerProcess]) -> None:
    for process in processes:
        process.stop()
