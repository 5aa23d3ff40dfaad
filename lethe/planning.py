"""From settings to what a workflow is told: the systems of a case, without URLs or secrets."""

from __future__ import annotations

from datetime import datetime, timedelta

from lethe.case import EscalationPlan, ForgetInput, Reason, SystemPlan
from lethe.pacing import slot_interval
from lethe.settings import ErasureJobConfig, Settings, SystemConfig


def system_task_queue(settings: Settings, system: SystemConfig | ErasureJobConfig) -> str:
    """Each system has its own task queue, so its rate limit can be enforced fleet-wide."""
    return f"{settings.temporal.task_queue}.{system.name}"


# HTTP requests per activity task, on average over a case: SCIM's revoke sends 2 (find,
# deactivate) and its erase 3 (delete, read back, search); an erasure job's start and check 1.
REQUESTS_PER_TASK = {"scim": 2.5, "erasure-job": 1.0}


def task_queue_rate(system: SystemConfig | ErasureJobConfig) -> float:
    """Activities per second for a system's task queue. Every request waits for its own slot
    (lethe.pacing); this keeps workers from taking tasks faster than those slots come free."""
    return 1.0 / slot_interval(system.rate_limit) / REQUESTS_PER_TASK[system.kind]


def system_plans(settings: Settings) -> list[SystemPlan]:
    return [
        SystemPlan(
            name=system.name,
            kind=system.kind,
            on_leave=system.on_leave if isinstance(system, SystemConfig) else "delete",
            task_queue=system_task_queue(settings, system),
            confirm_every_seconds=system.confirm.every.total_seconds(),
            confirm_within_seconds=system.confirm.within.total_seconds(),
        )
        for system in settings.systems
    ]


def default_grace(settings: Settings, reason: Reason) -> timedelta:
    return settings.grace.leaver if reason is Reason.LEAVER else settings.grace.erasure_request


def forget_input(
    settings: Settings, ref: str, reason: Reason, requested_at: datetime, grace: timedelta | None = None
) -> ForgetInput:
    return ForgetInput(
        subject_ref=ref,
        reason=reason,
        requested_at=requested_at,
        grace_seconds=(grace if grace is not None else default_grace(settings, reason)).total_seconds(),
        deadline_seconds=settings.policy.deadline.total_seconds(),
        needs_approval=reason is Reason.ERASURE_REQUEST and settings.policy.erasure_requests_need_approval,
        breaker_poll_seconds=settings.safety.breaker_poll.total_seconds(),
        escalation=EscalationPlan(
            remind_every_seconds=settings.escalation.remind_every.total_seconds(),
            warn_before_seconds=settings.escalation.warn_before.total_seconds(),
        ),
        systems=system_plans(settings),
        residual_stores=[store.name for store in settings.residual],
    )
