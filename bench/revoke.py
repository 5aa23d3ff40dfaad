"""Time to revoke: one leaver at a time against many slow systems, from the start call to the
last deactivation acknowledged, against the bound of the slowest system's find + patch."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx

from bench.baseline_sequential import DEACTIVATE, SCIM
from bench.people import bystander, subjects
from bench.procstat import CpuMeter
from bench.proxylog import acknowledged_patches
from bench.stack import TemporalServer, WorkerProcess, load, write_config
from bench.systems import TOKEN, System, SystemSpec, open_systems, pids
from lethe.case import Reason
from lethe.start import start_case
from lethe.temporal import connect

GRACE = timedelta(hours=1)  # long enough that no delete runs while revocations are measured
PROBES = 20


@dataclass(frozen=True)
class RevokeParams:
    cases: int = 50
    systems: int = 10
    latency_ms: float = 50.0
    rate_limit: int = 25
    dynamic_config: tuple[str, ...] = ()


@dataclass
class RevokeResult:
    cases: int
    systems: int
    latency_ms: float
    times_ms: list[float]
    bound_ms: float  # the slowest system's median find + patch, measured directly
    cpu_s: dict[str, float]
    phase_s: float  # wall time of the whole measurement, pauses between cases included

    def percentile(self, p: float) -> float:
        ordered = sorted(self.times_ms)
        return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def p95_ms(self) -> float:
        return self.percentile(95)


def measure_bound(systems: dict[str, System], probe_user: str) -> float:
    """The slowest system's median of find + patch through its proxy, with httpx."""
    medians = []
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": SCIM}
    for system in systems.values():
        account = system.ids[probe_user]
        trips = []
        with httpx.Client(base_url=system.url, headers=headers, timeout=10) as client:
            for _ in range(PROBES):
                began = time.monotonic()
                client.get("/Users", params={"filter": f"userName eq {json.dumps(probe_user)}"}).raise_for_status()
                client.patch(f"/Users/{account}", json=DEACTIVATE, headers={"Content-Type": SCIM}).raise_for_status()
                trips.append((time.monotonic() - began) * 1000)
                time.sleep(0.1)  # stay far below the rate limit
        medians.append(statistics.median(trips))
    return max(medians)


async def _wait_for_patches(systems: dict[str, System], expected: int, timeout: float = 60) -> None:
    """Until every proxy has acknowledged `expected` PATCHes (the proxy counts 204s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = await asyncio.to_thread(lambda: [s.stats()["by_status"].get("204", 0) for s in systems.values()])
        if min(counts) >= expected:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"deactivations did not all arrive within {timeout:.0f}s")


async def run_revoke(params: RevokeParams, workdir: Path) -> RevokeResult:
    workdir.mkdir(parents=True, exist_ok=True)
    people = subjects(params.cases)
    probe = bystander(0)
    spec = SystemSpec(latency_ms=params.latency_ms, rate_limit=params.rate_limit)
    names = [f"sys{i + 1:02d}" for i in range(params.systems)]
    with ExitStack() as stack:
        systems = stack.enter_context(open_systems(names, spec, [*people, probe]))
        bound = await asyncio.to_thread(measure_bound, systems, probe.user_name)
        temporal = TemporalServer(workdir, dynamic_config=params.dynamic_config).start()
        stack.callback(temporal.stop)
        config = write_config(workdir / "lethe.toml", temporal.address,
                              {name: s.url for name, s in systems.items()}, params.rate_limit)
        worker = WorkerProcess(config).start()
        stack.callback(worker.stop)
        settings = load(config)
        client = await connect(settings.temporal)
        for system in systems.values():
            system.proxy.clear_log()
        meter = CpuMeter({"temporal server": temporal.pid, "worker": worker.pid, **pids(systems)})
        meter.start()
        phase = time.monotonic()
        started: dict[str, float] = {}
        for number, person in enumerate(people, start=1):
            started[person.user_name] = time.monotonic()
            await start_case(client, settings, person.user_name, Reason.LEAVER, GRACE)
            await _wait_for_patches(systems, number)
            await asyncio.sleep(0.2)  # let the case settle into its grace period
        cpu = meter.stop()
        phase = time.monotonic() - phase
        acknowledged: dict[str, float] = {}
        for system in systems.values():
            acknowledged.update(acknowledged_patches(system.log(), params.latency_ms))
        times = [
            (max(acknowledged[s.ids[person.user_name]] for s in systems.values()) - started[person.user_name]) * 1000
            for person in people
        ]
    return RevokeResult(params.cases, params.systems, params.latency_ms, [round(t, 1) for t in times], round(bound, 1), cpu,
                        round(phase, 1))
