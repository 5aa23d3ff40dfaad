"""Mass offboarding: N leavers in M systems, grace 0, by Lethe or by a baseline, each against
fresh copies of the same seeded systems. Measures wall time against the rate-limit bound."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client, WorkflowHandle

from bench import baseline_async, baseline_sequential
from bench.people import bystanders, subjects
from bench.profile import Profile
from bench.procstat import CpuMeter, peak_rss_mb
from bench.proxylog import acknowledged_patches, forwarded_by_method
from bench.stack import TemporalServer, WorkerProcess, load, write_config
from bench.systems import TOKEN, SystemSpec, System, open_systems, pids
from lethe.case import Reason
from lethe.certificate import Certificate
from lethe.devstack import Person
from lethe.settings import Settings
from lethe.start import start_case
from lethe.temporal import connect

# Lethe's requests per account per system (activities/scim.py): revoke's find and deactivate,
# erase's delete, read back and the find that must come back empty. Breaker permits are not HTTP.
LETHE_REQUESTS_PER_ACCOUNT = 5
START_CONCURRENCY = 32
RESULT_CONCURRENCY = 100


@dataclass(frozen=True)
class MassParams:
    n: int = 500
    systems: int = 4
    latency_ms: float = 20.0
    rate_limit: int = 25
    bystanders: int = 50
    history_sample: int = 20
    dynamic_config: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        return [f"sys{i + 1}" for i in range(self.systems)]

    @property
    def spec(self) -> SystemSpec:
        return SystemSpec(latency_ms=self.latency_ms, rate_limit=self.rate_limit)


@dataclass
class MassResult:
    label: str
    n: int  # subjects actually offboarded in this run
    wall_s: float
    requests_per_account: int
    forwarded: dict[str, int]  # per system, by the proxy
    forwarded_by_method: dict[str, dict[str, int]]
    requests: int  # every request the proxies saw, 429s included
    rate_limited: int
    bound_s: float
    cpu_s: dict[str, float]
    revoke_all_s: float | None
    accounts_left: int  # subjects' accounts still present at the end (must be 0)
    scale_to: int | None = None  # extrapolated to this N (sequential baseline sample)
    worker_peak_rss_mb: float | None = None
    history_events: list[int] = field(default_factory=list)
    certified_complete: int | None = None
    start_s: float | None = None  # how long starting every case took

    @property
    def efficiency(self) -> float:
        return self.bound_s / self.wall_s

    @property
    def wall_at_scale_s(self) -> float:
        return self.wall_s * (self.scale_to / self.n) if self.scale_to else self.wall_s

    @property
    def rate_limited_share(self) -> float:
        return self.rate_limited / self.requests if self.requests else 0.0


def _collect(label: str, params: MassParams, people: list[Person], systems: dict[str, System], wall: float,
             per_account: int, cpu: dict[str, float], began: float) -> MassResult:
    logs = {name: system.log() for name, system in systems.items()}
    stats = {name: system.stats() for name, system in systems.items()}
    patches: dict[str, float] = {}
    for entries in logs.values():
        patches.update(acknowledged_patches(entries, params.latency_ms))
    targets = {system.ids[person.user_name] for system in systems.values() for person in people}
    left = sum(
        1 for system in systems.values() for account in system.server.users() if account in targets
    )
    revoked = [patches[account] for account in targets if account in patches]
    return MassResult(
        label=label,
        n=len(people),
        wall_s=round(wall, 2),
        requests_per_account=per_account,
        forwarded={name: s["forwarded"] for name, s in stats.items()},
        forwarded_by_method={name: dict(forwarded_by_method(entries)) for name, entries in logs.items()},
        requests=sum(s["requests"] for s in stats.values()),
        rate_limited=sum(s["rate_limited"] for s in stats.values()),
        bound_s=per_account * len(people) / params.rate_limit,
        cpu_s=cpu,
        revoke_all_s=round(max(revoked) - began, 2) if len(revoked) == len(targets) else None,
        accounts_left=left,
    )


def _run_on_fresh_systems(
    label: str, params: MassParams, people: list[Person], per_account: int,
    work: Callable[[dict[str, System]], Awaitable[None]], extra_pids: Callable[[], dict[str, int]] | None = None,
) -> Callable[[dict[str, System]], Awaitable[MassResult]]:
    async def run(systems: dict[str, System]) -> MassResult:
        meter = CpuMeter({**(extra_pids() if extra_pids else {}), **pids(systems)})
        meter.start()
        began = time.monotonic()
        await work(systems)
        wall = time.monotonic() - began
        return _collect(label, params, people, systems, wall, per_account, meter.stop(), began)

    return run


async def run_baseline(kind: str, params: MassParams, final_find: bool, sample: int | None = None) -> MassResult:
    """kind: "sequential" or "asyncio". `sample` runs only the first subjects (the sequential
    script is strictly linear, so its wall time scales exactly) and reports the extrapolation."""
    count = min(sample, params.n) if sample else params.n
    people = subjects(count)
    per_account = 4 + int(final_find)
    with open_systems(params.names, params.spec, people + bystanders(params.bystanders)) as systems:
        targets = {name: system.url for name, system in systems.items()}
        user_names = [person.user_name for person in people]

        async def work(_: dict[str, System]) -> None:
            if kind == "sequential":
                await asyncio.to_thread(baseline_sequential.offboard, targets, TOKEN, user_names, final_find)
            else:
                await baseline_async.offboard(targets, TOKEN, user_names, params.rate_limit, final_find)

        result = await _run_on_fresh_systems(f"{kind} baseline", params, people, per_account, work)(systems)
    result.scale_to = params.n if count < params.n else None
    return result


async def _start_all(client: Client, settings: Settings, people: list[Person]) -> list[WorkflowHandle]:
    slots = asyncio.Semaphore(START_CONCURRENCY)

    async def one(person: Person) -> WorkflowHandle:
        async with slots:
            return await start_case(client, settings, person.user_name, Reason.LEAVER, timedelta(0))

    return list(await asyncio.gather(*(one(person) for person in people)))


async def _results(handles: list[WorkflowHandle]) -> list[Certificate]:
    """Every case's certificate. Each wait is a long poll on the server, which refuses more than
    a few hundred at once ("namespace concurrent poller limit exceeded"): a bounded number wait."""
    slots = asyncio.Semaphore(RESULT_CONCURRENCY)

    async def one(handle: WorkflowHandle) -> Certificate:
        async with slots:
            return await handle.result()

    return list(await asyncio.gather(*(one(handle) for handle in handles)))


async def _history_sizes(handles: list[WorkflowHandle], sample: int) -> list[int]:
    step = max(1, len(handles) // max(1, sample))
    sizes = []
    for handle in handles[::step][:sample]:
        history = await handle.fetch_history()
        sizes.append(len(history.events))
    return sizes


async def run_lethe(params: MassParams, workdir: Path, profile: Path | None = None) -> MassResult:
    """A fresh in-memory Temporal server, the worker as a subprocess, cases started in-process.
    With `profile`, py-spy samples the worker meanwhile (collapsed stacks into that file)."""
    workdir.mkdir(parents=True, exist_ok=True)
    people = subjects(params.n)
    with ExitStack() as stack:
        systems = stack.enter_context(open_systems(params.names, params.spec, people + bystanders(params.bystanders)))
        temporal = TemporalServer(workdir, dynamic_config=params.dynamic_config).start()
        stack.callback(temporal.stop)
        config = write_config(workdir / "lethe.toml", temporal.address,
                              {name: s.url for name, s in systems.items()}, params.rate_limit)
        worker = WorkerProcess(config).start()
        stack.callback(worker.stop)
        if profile is not None:
            stack.callback(Profile(worker.pid, profile).stop)
        settings = load(config)
        client = await connect(settings.temporal)
        handles: list[WorkflowHandle] = []
        timings: dict[str, float] = {}

        async def work(_: dict[str, System]) -> None:
            began = time.monotonic()
            handles.extend(await _start_all(client, settings, people))
            timings["start"] = time.monotonic() - began
            certificates = await _results(handles)
            timings["complete"] = sum(1 for c in certificates if c.all_confirmed)

        run = _run_on_fresh_systems(
            "Lethe", params, people, LETHE_REQUESTS_PER_ACCOUNT, work,
            lambda: {"temporal server": temporal.pid, "worker": worker.pid},
        )
        result = await run(systems)
        result.worker_peak_rss_mb = round(peak_rss_mb(worker.pid), 1)
        result.start_s = round(timings["start"], 2)
        result.certified_complete = int(timings["complete"])
        result.history_events = await _history_sizes(handles, params.history_sample)
    return result
