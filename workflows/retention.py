"""RetentionPurge: every retention policy, batch by batch, with counts in the result and the audit log.

Started by the `lethe-retention` Schedule. The cutoff of each policy is fixed when the purge
starts (`workflow.now()` minus the policy's maximum age), so a run ends however busy the
table. After `activities_per_run` activities it continues as new, carrying the counts, the
current cursor and the cutoffs, so no run's history grows past a few thousand events.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.retention import RetentionActivities
    from lethe.retention import PolicyTally, PurgeStep, RecordRetention, RetentionInput, RetentionResult
    from workflows.steps import LEDGER_RETRY, LEDGER_TIMEOUT, failure_message, tally_state

PURGE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=5), maximum_attempts=10)
PURGE_TIMEOUT = timedelta(hours=1)
PURGE_HEARTBEAT = timedelta(minutes=2)  # longer than one batch takes


@workflow.defn(name="RetentionPurge")
class RetentionPurge:
    @workflow.run
    async def run(self, arg: RetentionInput) -> RetentionResult:
        tallies = arg.tallies
        if tallies is None:
            plans = await workflow.execute_activity_method(
                RetentionActivities.plan,
                start_to_close_timeout=LEDGER_TIMEOUT,
                retry_policy=LEDGER_RETRY,
                summary="read the retention policies",
            )
            now = workflow.now()
            tallies = [
                PolicyTally(policy=p.name, action=p.action, cutoff=now - timedelta(seconds=p.max_age_seconds)) for p in plans
            ]
        cursor = arg.cursor
        calls = 0
        for tally in tallies:
            while not tally.finished:
                if calls >= arg.activities_per_run or workflow.info().is_continue_as_new_suggested():
                    workflow.continue_as_new(
                        arg.model_copy(update={"tallies": tallies, "cursor": cursor, "runs": arg.runs + 1})
                    )
                calls += 1
                try:
                    progress = await workflow.execute_activity_method(
                        RetentionActivities.purge,
                        PurgeStep(policy=tally.policy, cutoff=tally.cutoff, cursor=cursor, max_batches=arg.batches_per_activity),
                        start_to_close_timeout=PURGE_TIMEOUT,
                        heartbeat_timeout=PURGE_HEARTBEAT,
                        retry_policy=PURGE_RETRY,
                        summary=f"{tally.action} expired rows of {tally.policy}",
                    )
                except ActivityError as failure:
                    # One broken table must not keep the others' expired rows: note it, go on.
                    tally.error = failure_message(failure)
                    tally.finished, cursor = True, None
                    break
                tally.rows += progress.rows
                tally.batches += progress.batches
                tally.finished = progress.finished
                cursor = None if progress.finished else progress.cursor
                workflow.set_current_details(_details(tallies, arg.runs))
        result = RetentionResult(policies=tallies, rows=sum(t.rows for t in tallies), runs=arg.runs)
        workflow.set_current_details(_details(tallies, arg.runs))
        info = workflow.info()
        await workflow.execute_activity_method(
            RetentionActivities.record,
            RecordRetention(workflow_id=info.workflow_id, run_id=info.first_execution_run_id, result=result),
            start_to_close_timeout=LEDGER_TIMEOUT,
            retry_policy=LEDGER_RETRY,
            summary="audit log: retention counts",
        )
        return result


def _details(tallies: list[PolicyTally], runs: int) -> str:
    lines = [f"**run {runs}**"]
    for t in tallies:
        state = tally_state(t.error, t.finished)
        lines.append(f"- {t.policy} ({t.action}, before {t.cutoff:%Y-%m-%d %H:%M} UTC): {t.rows} row(s), {state}")
    return "\n".join(lines)
