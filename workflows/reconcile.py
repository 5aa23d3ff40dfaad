"""ReconcileSweep: page through every SCIM system's accounts; restart erasures that came undone,
offboard leavers nobody reported. Started by the `lethe-reconcile` Schedule.

One page per activity, from the last page to the first (the activity starts the cases it finds); after `pages_per_run` pages it
continues as new with the counts and the position, so the history stays small however many
accounts there are.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.reconcile import ReconcileActivities
    from lethe.reconcile import PageRequest, ReconcileInput, ReconcileResult, RecordSweep, SystemTally
    from workflows.steps import LEDGER_RETRY, LEDGER_TIMEOUT, failure_message, tally_state

PAGE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=1), maximum_attempts=8)
PAGE_TIMEOUT = timedelta(minutes=5)


@workflow.defn(name="ReconcileSweep")
class ReconcileSweep:
    @workflow.run
    async def run(self, arg: ReconcileInput) -> ReconcileResult:
        tallies = arg.tallies
        if tallies is None:
            systems = await workflow.execute_activity_method(
                ReconcileActivities.plan,
                start_to_close_timeout=LEDGER_TIMEOUT,
                retry_policy=LEDGER_RETRY,
                summary="read the SCIM systems",
            )
            tallies = [SystemTally(system=name) for name in systems]
        as_of = arg.as_of or workflow.now()
        end, pages = arg.next_end, 0
        for tally in tallies:
            while not tally.finished:
                if pages >= arg.pages_per_run or workflow.info().is_continue_as_new_suggested():
                    workflow.continue_as_new(
                        arg.model_copy(update={"tallies": tallies, "next_end": end, "as_of": as_of, "runs": arg.runs + 1})
                    )
                pages += 1
                try:
                    page = await workflow.execute_activity_method(
                        ReconcileActivities.scan_page,
                        PageRequest(
                            system=tally.system,
                            end_index=end,
                            count=arg.page_size,
                            as_of=as_of,
                            workflow_id=workflow.info().workflow_id,
                        ),
                        start_to_close_timeout=PAGE_TIMEOUT,
                        retry_policy=PAGE_RETRY,
                        summary=f"check a page of {tally.system}'s accounts" + (f" ending at {end}" if end else " (the last)"),
                    )
                except ActivityError as failure:
                    # One unreachable system must not stop the sweep of the others.
                    tally.error = failure_message(failure)
                    tally.finished, end = True, None
                    break
                tally.pages += 1
                tally.seen += page.seen
                tally.reappeared += len(page.reappeared)
                tally.leavers += len(page.leavers)
                tally.handled += page.handled
                tally.finished = page.next_end is None
                end = page.next_end
                workflow.set_current_details(_details(tallies, arg.runs))
        result = ReconcileResult(
            systems=tallies,
            seen=sum(t.seen for t in tallies),
            reappeared=sum(t.reappeared for t in tallies),
            leavers=sum(t.leavers for t in tallies),
            runs=arg.runs,
        )
        workflow.set_current_details(_details(tallies, arg.runs))
        info = workflow.info()
        await workflow.execute_activity_method(
            ReconcileActivities.record,
            RecordSweep(workflow_id=info.workflow_id, run_id=info.first_execution_run_id, result=result),
            start_to_close_timeout=LEDGER_TIMEOUT,
            retry_policy=LEDGER_RETRY,
            summary="audit log: sweep counts",
        )
        return result


def _details(tallies: list[SystemTally], runs: int) -> str:
    lines = [f"**run {runs}**"]
    for t in tallies:
        state = tally_state(t.error, t.finished)
        lines.append(f"- {t.system}: {t.seen} account(s), {t.reappeared} reappeared, {t.leavers} leaver(s), {state}")
    return "\n".join(lines)
