"""The worker side of scheduled jobs: RetentionPurge and ReconcileSweep with their activities,
on their own task queue (see lethe.schedules.scheduled_task_queue). `worker.py` adds these workers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from activities.reconcile import ReconcileActivities
from activities.retention import RetentionActivities
from lethe.ledger import engine_for
from lethe.schedules import scheduled_task_queue
from lethe.settings import Settings
from workflows.reconcile import ReconcileSweep
from workflows.retention import RetentionPurge

SHUTDOWN_GRACE = timedelta(seconds=10)


@dataclass
class RetentionWorkers:
    workers: list[Worker]
    retention: RetentionActivities
    reconcile: ReconcileActivities

    async def aclose(self) -> None:
        self.retention.dispose()
        await self.reconcile.aclose()


def retention_workers(client: Client, settings: Settings) -> RetentionWorkers:
    """Reflects every retention table first: a bad policy stops start-up with a ConfigError naming it."""
    ledger = engine_for(settings.ledger.url)
    retention = RetentionActivities(settings.retention, ledger, settings.pepper_bytes())
    reconcile = ReconcileActivities(client, settings, ledger)
    worker = Worker(
        client,
        task_queue=scheduled_task_queue(settings),
        workflows=[RetentionPurge, ReconcileSweep],
        activities=[*retention.activities(), *reconcile.activities()],
        graceful_shutdown_timeout=SHUTDOWN_GRACE,
    )
    return RetentionWorkers(workers=[worker], retention=retention, reconcile=reconcile)


def check_retention_config(settings: Settings) -> None:
    """For the worker's start-up, before connecting: every policy against its table (ConfigError, one line)."""
    RetentionActivities(settings.retention, engine_for(settings.ledger.url), settings.pepper_bytes()).dispose()
