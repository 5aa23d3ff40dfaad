"""The Temporal Schedules on the dev server (the time-skipping server has none): `schedule apply`
is idempotent and keeps an operator's pause; a schedule fires on its cron times, and a firing
while the previous run still goes is skipped, not doubled."""

from __future__ import annotations

import argparse
import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, ScheduleActionExecutionStartWorkflow, ScheduleOverlapPolicy
from temporalio.worker import Worker

from lethe.retention import PolicyPlan, PurgeProgress, PurgeStep, RecordRetention, RetentionResult
from lethe.retention_cli import add_commands
from lethe.retention_worker import retention_workers
from lethe.schedules import scheduled_task_queue
from lethe.settings import Settings
from tests.support import PEPPER
from workflows.retention import RetentionPurge


def settings_for(tmp_path: Path, client: Client, **schedules: Any) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return Settings(
        temporal={"address": client.service_client.config.target_host, "task_queue": f"lethe-{tag}"},
        ledger={"url": f"sqlite:///{tmp_path / 'ledger.db'}"},
        pepper=PEPPER,
        schedules={
            "retention": {"id": f"lethe-retention-{tag}", **schedules.get("retention", {})},
            "reconcile": {"id": f"lethe-reconcile-{tag}", **schedules.get("reconcile", {})},
        },
    )


async def cli(settings: Settings, *argv: str) -> int:
    root = argparse.ArgumentParser()
    add_commands(root.add_subparsers(dest="command", required=True))
    args = root.parse_args(list(argv))
    return await args.handler(args, settings)


@asynccontextmanager
async def real_worker(client: Client, settings: Settings) -> AsyncIterator[None]:
    built = retention_workers(client, settings)
    runs = [asyncio.create_task(worker.run()) for worker in built.workers]
    try:
        yield
    finally:
        await asyncio.gather(*(worker.shutdown() for worker in built.workers))
        await asyncio.gather(*runs, return_exceptions=True)
        await built.aclose()


async def test_apply_is_idempotent_keeps_a_pause_and_the_cli_drives_it(
    tmp_path: Path, client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(tmp_path, client, retention={"cron": "0 3 * * *", "time_zone": "Europe/Berlin", "catchup_window": "2h"})
    retention = client.get_schedule_handle(settings.schedules.retention.id)
    try:
        assert await cli(settings, "schedule", "trigger", "retention") == 1
        assert f"schedule {settings.schedules.retention.id} does not exist; run `schedule apply`" in capsys.readouterr().err
        assert await cli(settings, "schedule", "apply") == 0
        assert await cli(settings, "schedule", "apply") == 0
        out = capsys.readouterr().out
        assert out.count(f"{settings.schedules.retention.id}: created") == 1
        assert out.count(f"{settings.schedules.retention.id}: updated") == 1
        described = await retention.describe()
        assert described.schedule.spec.time_zone_name == "Europe/Berlin"
        assert described.schedule.policy.overlap is ScheduleOverlapPolicy.SKIP
        assert described.schedule.policy.catchup_window == timedelta(hours=2)
        # 03:00 in Berlin is 01:00 or 02:00 UTC, depending on the season.
        assert all(t.hour in (1, 2) and t.minute == 0 for t in described.info.next_action_times)
        action = described.schedule.action
        assert action.workflow == "RetentionPurge" and action.task_queue == scheduled_task_queue(settings)

        assert await cli(settings, "schedule", "pause", "retention", "--note", "audit week") == 0
        changed = settings.model_copy(deep=True)
        changed.schedules.retention.cron = "30 4 * * *"
        assert await cli(changed, "schedule", "apply") == 0
        described = await retention.describe()
        assert described.schedule.state.paused and described.schedule.state.note == "audit week"
        assert all(t.minute == 30 for t in described.info.next_action_times)

        assert await cli(changed, "schedule", "status") == 0
        status = capsys.readouterr().out
        assert f"{settings.schedules.retention.id} [retention]: PAUSED (audit week)" in status
        assert f"/namespaces/default/schedules/{settings.schedules.retention.id}" in status

        # Trigger runs it now, paused or not, and the run ends with its counts in the audit log.
        async with real_worker(client, settings):
            assert await cli(settings, "schedule", "trigger", "retention") == 0
            run = await wait_for_actions(retention, 1)
            result = await client.get_workflow_handle(run, result_type=RetentionResult).result()
        assert result.policies == [] and result.rows == 0

        assert await cli(settings, "schedule", "unpause", "retention") == 0
        assert not (await retention.describe()).schedule.state.paused
    finally:
        for kind in ("retention", "reconcile"):
            await client.get_schedule_handle(getattr(settings.schedules, kind).id).delete()


async def wait_for_actions(schedule: Any, count: int, timeout: float = 20) -> str:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        info = (await schedule.describe()).info
        if info.num_actions >= count:
            action = info.recent_actions[-1].action
            assert isinstance(action, ScheduleActionExecutionStartWorkflow)
            return action.workflow_id
        assert asyncio.get_running_loop().time() < deadline, f"only {info.num_actions} action(s)"
        await asyncio.sleep(0.2)


# --- cron times and overlap, with a purge that takes longer than the interval ---------------------

SLOW = 3.0  # seconds per run; the schedule fires every 2


class SlowPurge:
    @activity.defn(name="retention.plan")
    async def plan(self) -> list[PolicyPlan]:
        return [PolicyPlan(name="slow", action="delete", max_age_seconds=86400)]

    @activity.defn(name="retention.purge")
    async def purge(self, step: PurgeStep) -> PurgeProgress:
        await asyncio.sleep(SLOW)
        return PurgeProgress(policy=step.policy, rows=1, batches=1, cursor=None, finished=True)

    @activity.defn(name="retention.record")
    async def record(self, arg: RecordRetention) -> None:
        return None


async def test_fires_on_cron_times_and_skips_an_overlapping_run(tmp_path: Path, client: Client) -> None:
    # 7 fields: second minute hour day month weekday year.
    settings = settings_for(tmp_path, client, retention={"cron": "*/2 * * * * * *", "catchup_window": "10s"})
    schedule = client.get_schedule_handle(settings.schedules.retention.id)
    slow = SlowPurge()
    worker = Worker(
        client,
        task_queue=scheduled_task_queue(settings),
        workflows=[RetentionPurge],
        activities=[slow.plan, slow.purge, slow.record],
    )
    try:
        async with worker:
            assert await cli(settings, "schedule", "apply") == 0
            deadline = asyncio.get_running_loop().time() + 20
            most_running = 0
            while True:
                info = (await schedule.describe()).info
                most_running = max(most_running, len(info.running_actions))
                if info.num_actions >= 2 and info.num_actions_skipped_overlap >= 1:
                    break
                assert asyncio.get_running_loop().time() < deadline, f"{info.num_actions} started, {info.num_actions_skipped_overlap} skipped"
                await asyncio.sleep(0.2)
            await schedule.pause()
            runs = list(info.recent_actions)
            # Every run started on a cron time: an even second, on the dot.
            assert all(r.scheduled_at.second % 2 == 0 and r.scheduled_at.microsecond == 0 for r in runs), runs
            assert most_running == 1
            # Never two at once: each run started after the one before it had closed, SLOW seconds in.
            described = []
            for r in runs:
                assert isinstance(r.action, ScheduleActionExecutionStartWorkflow)
                described.append(await client.get_workflow_handle(r.action.workflow_id).describe())
            for earlier, later in zip(described, described[1:]):
                assert earlier.close_time is not None and later.start_time >= earlier.close_time, (earlier, later)
                assert earlier.close_time - earlier.start_time >= timedelta(seconds=SLOW)
            await client.get_workflow_handle(described[-1].id).terminate("test over")
    finally:
        await schedule.delete()
