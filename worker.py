"""The Lethe worker: `python worker.py` runs the ForgetSubject workflow and every system's activities.

Each connected system gets its own task queue with a fleet-wide rate limit
(`max_task_queue_activities_per_second`), enforced by the Temporal server across all workers.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Sequence
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Interceptor, Worker

from sqlalchemy import Engine

from activities.anonymize import AnonymizeActivities
from activities.breaker import BreakerActivities
from activities.erasure_job import ErasureJobActivities
from activities.ledger import LedgerActivities
from activities.notify import NotifyActivities
from activities.scim import ScimActivities
from lethe.ledger import engine_for
from lethe.logs import configure_logging
from lethe.planning import system_task_queue, task_queue_rate
from lethe.retention_worker import check_retention_config, retention_workers
from lethe.process import exit_now
from lethe.settings import ConfigError, ErasureJobConfig, Settings, SystemConfig, load_settings
from lethe.temporal import connect, ensure_search_attributes
from workflows.dry_run import DryRun
from workflows.forget import ForgetSubject

SHUTDOWN_GRACE = timedelta(seconds=10)


class WorkerDied(RuntimeError):
    """One of the process's workers ended without being asked to."""


class Connectors:
    """The activities that reach other systems from this process, each kind with its clients."""

    def __init__(self, settings: Settings, ledger: Engine) -> None:
        # Connects to every residual store and checks its tables and columns: bad config stops here.
        self.residual = AnonymizeActivities(settings.residual, ledger, settings.pepper_bytes())
        self.scim = ScimActivities(
            {s.name: s for s in settings.systems if isinstance(s, SystemConfig)}, ledger
        )
        self.erasure_job = ErasureJobActivities(
            {s.name: s for s in settings.systems if isinstance(s, ErasureJobConfig)}, ledger
        )

    def for_kind(self, kind: str) -> list[object]:
        return self.erasure_job.activities() if kind == "erasure-job" else self.scim.activities()

    async def aclose(self) -> None:
        await self.scim.aclose()
        await self.erasure_job.aclose()
        self.residual.dispose()


def build_workers(
    client: Client, settings: Settings, interceptors: Sequence[Interceptor] = ()
) -> tuple[list[Worker], Connectors]:
    """The main worker (workflows, ledger, notifications) and one activity worker per system."""
    ledger = engine_for(settings.ledger.url)
    for system in settings.systems:
        system.read_token()  # a missing secret stops start-up, not the first case
    connectors = Connectors(settings, ledger)
    workers = [
        Worker(
            client,
            task_queue=settings.temporal.task_queue,
            workflows=[ForgetSubject, DryRun],
            activities=[
                *LedgerActivities(ledger, settings.certificate_key_bytes()).activities(),
                *BreakerActivities(settings, ledger).activities(),
                *connectors.residual.activities(),
                NotifyActivities(settings.escalation).escalation,
            ],
            graceful_shutdown_timeout=SHUTDOWN_GRACE,
        )
    ]
    for system in settings.systems:
        workers.append(
            Worker(
                client,
                task_queue=system_task_queue(settings, system),
                activities=connectors.for_kind(system.kind),
                max_task_queue_activities_per_second=task_queue_rate(system),
                graceful_shutdown_timeout=SHUTDOWN_GRACE,
                interceptors=interceptors,
            )
        )
    return workers, connectors


def check_startup(settings: Settings) -> None:
    """Everything config can get wrong that only shows when used: secrets, residual tables."""
    settings.certificate_key_bytes()
    for system in settings.systems:
        system.read_token()
    AnonymizeActivities(settings.residual, engine_for(settings.ledger.url), settings.pepper_bytes()).dispose()


async def run(settings: Settings) -> None:
    client = await connect(settings.temporal)
    await ensure_search_attributes(client)
    workers, connectors = build_workers(client, settings)
    scheduled = retention_workers(client, settings)
    workers += scheduled.workers
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runs = [asyncio.create_task(worker.run()) for worker in workers]
    print(f"lethe worker: task queue {settings.temporal.task_queue!r}, {len(settings.systems)} system(s); Ctrl-C to stop", flush=True)
    stopping = asyncio.create_task(stop.wait())
    # A worker that dies (lost namespace, fatal poll error) must take the process down with it:
    # a half-alive process looks healthy to its supervisor while a queue goes unpolled.
    await asyncio.wait([stopping, *runs], return_when=asyncio.FIRST_COMPLETED)
    failed = None if stop.is_set() else next(r for r in runs if r.done())
    print("lethe worker: draining…", flush=True)
    await asyncio.gather(*(worker.shutdown() for worker in workers if worker.is_running))
    await asyncio.gather(*runs, return_exceptions=True)
    stopping.cancel()
    await connectors.aclose()
    await scheduled.aclose()
    if failed is not None:
        reason = "cancelled" if failed.cancelled() else repr(failed.exception() or "returned")
        raise WorkerDied(f"a worker stopped on its own: {reason}")
    print("lethe worker: stopped", flush=True)


def main() -> None:
    configure_logging()
    try:
        settings = load_settings()
        check_startup(settings)
        check_retention_config(settings)
    except ConfigError as exc:
        print(f"lethe: config error: {exc}", file=sys.stderr)
        exit_now(2)
    try:
        asyncio.run(run(settings))
    except WorkerDied as exc:
        print(f"lethe worker: {exc}; exiting so a supervisor can restart it", file=sys.stderr)
        exit_now(1)
    exit_now(0)


if __name__ == "__main__":
    main()
