"""The Temporal Schedules `lethe-retention` and `lethe-reconcile`, built from config.

Both skip a firing while the previous run still goes (overlap SKIP: a purge is never doubled)
and catch up on firings missed within the catch-up window (a server restart at 03:00 still
purges). `apply` is idempotent: it creates a missing schedule and overwrites an existing one's
spec, action and policies, but keeps its state, so an operator's pause survives a redeploy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleDescription,
    ScheduleHandle,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from lethe.reconcile import ReconcileInput
from lethe.retention import RetentionInput
from lethe.settings import ScheduleSpecSettings, Settings

Kind = Literal["retention", "reconcile"]
KINDS: tuple[Kind, ...] = ("retention", "reconcile")
WORKFLOWS: dict[Kind, str] = {"retention": "RetentionPurge", "reconcile": "ReconcileSweep"}
RUN_TIMEOUT = timedelta(days=1)  # a stuck run must not skip every later firing forever


def scheduled_task_queue(settings: Settings) -> str:
    # The underscore keeps it apart from the systems' queues (`<queue>.<system>`, [a-z0-9-]).
    return f"{settings.temporal.task_queue}.scheduled_jobs"


def spec_of(settings: Settings, kind: Kind) -> ScheduleSpecSettings:
    return settings.schedules.retention if kind == "retention" else settings.schedules.reconcile


def schedule_link(settings: Settings, schedule_id: str) -> str:
    t = settings.temporal
    return f"{t.ui_url.rstrip('/')}/namespaces/{t.namespace}/schedules/{schedule_id}"


def build(settings: Settings, kind: Kind) -> Schedule:
    config = spec_of(settings, kind)
    if kind == "retention":
        r = settings.schedules.retention
        arg: object = RetentionInput(batches_per_activity=r.batches_per_activity, activities_per_run=r.activities_per_run)
        summary = f"Retention purge: {len(settings.retention)} polic{'y' if len(settings.retention) == 1 else 'ies'}"
    else:
        c = settings.schedules.reconcile
        arg = ReconcileInput(page_size=c.page_size, pages_per_run=c.pages_per_run)
        summary = "Reconciliation sweep: reappeared and stale deactivated accounts"
    return Schedule(
        action=ScheduleActionStartWorkflow(
            WORKFLOWS[kind],
            arg,
            id=config.id,  # each run's workflow id is this plus the scheduled time
            task_queue=scheduled_task_queue(settings),
            execution_timeout=RUN_TIMEOUT,
            static_summary=summary,
        ),
        spec=ScheduleSpec(cron_expressions=[config.cron], time_zone_name=config.time_zone),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=config.catchup_window),
        state=ScheduleState(paused=config.paused, note="managed by `lethe schedule apply`"),
    )


@dataclass(frozen=True)
class Applied:
    kind: Kind
    schedule_id: str
    created: bool


async def apply(client: Client, settings: Settings, kinds: tuple[Kind, ...] = KINDS) -> list[Applied]:
    """Create or update each schedule from config; running it twice changes nothing."""
    applied = []
    for kind in kinds:
        schedule_id = spec_of(settings, kind).id
        schedule = build(settings, kind)
        try:
            await client.create_schedule(schedule_id, schedule)
            applied.append(Applied(kind, schedule_id, created=True))
            continue
        except ScheduleAlreadyRunningError:
            pass

        def keep_state(current: ScheduleUpdateInput, new: Schedule = schedule) -> ScheduleUpdate:
            new.state = current.description.schedule.state
            return ScheduleUpdate(schedule=new)

        await client.get_schedule_handle(schedule_id).update(keep_state)
        applied.append(Applied(kind, schedule_id, created=False))
    return applied


def handle(client: Client, settings: Settings, kind: Kind) -> ScheduleHandle:
    return client.get_schedule_handle(spec_of(settings, kind).id)


def describe_lines(settings: Settings, kind: Kind, description: ScheduleDescription) -> list[str]:
    """What `schedule status` prints for one schedule."""
    schedule, info = description.schedule, description.info
    spec = schedule.spec
    state = "PAUSED" if schedule.state.paused else "active"
    note = f" ({schedule.state.note})" if schedule.state.paused and schedule.state.note else ""
    lines = [
        f"{description.id} [{kind}]: {state}{note}",
        f"  when:     {', '.join(spec.cron_expressions) or config_cron(settings, kind)} ({spec.time_zone_name or 'UTC'}), "
        f"overlap {schedule.policy.overlap.name}, catch-up {schedule.policy.catchup_window}",
        f"  actions:  {info.num_actions} started, {info.num_actions_skipped_overlap} skipped (overlap), "
        f"{info.num_actions_missed_catchup_window} missed (catch-up window)",
    ]
    for running in info.running_actions:
        lines.append(f"  running:  {getattr(running, 'workflow_id', running)}")
    for recent in list(info.recent_actions)[-3:]:
        lines.append(f"  recent:   {recent.scheduled_at:%Y-%m-%d %H:%M:%S} UTC -> {getattr(recent.action, 'workflow_id', '?')}")
    if info.next_action_times and not schedule.state.paused:
        lines.append(f"  next:     {', '.join(f'{t:%Y-%m-%d %H:%M:%S}' for t in info.next_action_times[:3])} UTC")
    lines.append(f"  {schedule_link(settings, description.id)}")
    return lines


def config_cron(settings: Settings, kind: Kind) -> str:
    # The server keeps a cron expression as calendar specs: show what the config said.
    return spec_of(settings, kind).cron
