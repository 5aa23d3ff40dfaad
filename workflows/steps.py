"""How the workflow calls one activity on one system: timeouts, retries, polling."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from lethe.case import SystemPlan

# Writes and lookups: transient failures back off; permanent ones arrive non-retryable.
STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=0.5), maximum_interval=timedelta(minutes=1), maximum_attempts=10
)
STEP_TIMEOUT = timedelta(seconds=60)
LEDGER_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
LEDGER_TIMEOUT = timedelta(seconds=30)
NOTIFY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=5), maximum_attempts=10)

ArgT = TypeVar("ArgT")
ResultT = TypeVar("ResultT")


def polling_retry(plan: SystemPlan) -> RetryPolicy:
    """Polling as server-side retries: the history holds a few events however long it takes."""
    return RetryPolicy(
        initial_interval=timedelta(seconds=plan.confirm_every_seconds),
        backoff_coefficient=1.0,
        maximum_interval=timedelta(seconds=plan.confirm_every_seconds),
        maximum_attempts=0,
    )


async def on_ledger(step: Callable[[Any, ArgT], Awaitable[ResultT]], arg: ArgT, summary: str) -> ResultT:
    """A quick write to Lethe's own ledger, as a local activity: no task of its own on the server."""
    return await workflow.execute_local_activity_method(
        step, arg, start_to_close_timeout=LEDGER_TIMEOUT, retry_policy=LEDGER_RETRY, summary=summary
    )


async def on_system(
    plan: SystemPlan,
    step: Callable[[Any, ArgT], Awaitable[ResultT]],
    arg: ArgT,
    summary: str,
    poll: bool = False,
) -> ResultT:
    """Run one activity on the system's own task queue (where its rate limit holds)."""
    return await workflow.execute_activity_method(
        step,
        arg,
        task_queue=plan.task_queue,
        start_to_close_timeout=STEP_TIMEOUT,
        schedule_to_close_timeout=timedelta(seconds=plan.confirm_within_seconds) if poll else None,
        retry_policy=polling_retry(plan) if poll else STEP_RETRY,
        summary=summary,
    )


def failure_message(failure: ActivityError) -> str:
    """What an operator reads about a failed activity: our activity's own message where there is one."""
    cause = failure.cause
    return cause.message if isinstance(cause, ApplicationError) else str(failure)


def tally_state(error: str | None, finished: bool) -> str:
    """One part of a sweep, as the UI's current details show it."""
    return f"error: {error}" if error else ("done" if finished else "running")
