"""Retention activities: the worker's policies, a bounded number of purge batches per call, the audit entry.

`retention.purge` heartbeats after every committed batch with counts and the keyset cursor
(primary keys, never row values); a retried attempt resumes from the last heartbeat, and a
batch it repeats finds its rows already gone or already anonymized.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping

from sqlalchemy import Engine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from lethe import audit
from lethe.residual import ResidualError
from lethe.retention import Batch, PolicyPlan, Purger, PurgeProgress, PurgeStep, RecordRetention, policy_engine
from lethe.settings import RetentionPolicy

logger = logging.getLogger(__name__)
AUDIT_ACTION = "retention.purged"


class RetentionActivities:
    """One purger per configured policy; construction reflects every table (ConfigError at start-up)."""

    def __init__(
        self,
        policies: Iterable[RetentionPolicy],
        ledger: Engine,
        pepper: bytes,
        engines: Mapping[str, Engine] | None = None,
    ) -> None:
        self._ledger = ledger
        self._purgers: dict[str, Purger] = {}
        for policy in policies:
            engine = (engines or {}).get(policy.name) or policy_engine(policy)
            self._purgers[policy.name] = Purger(policy, engine, pepper)

    def dispose(self) -> None:
        for purger in self._purgers.values():
            purger.engine.dispose()

    @activity.defn(name="retention.plan")
    async def plan(self) -> list[PolicyPlan]:
        """The policies this worker knows: the worker's config is the one source of truth."""
        return [
            PolicyPlan(name=name, action=p.policy.action, max_age_seconds=p.policy.max_age.total_seconds())
            for name, p in self._purgers.items()
        ]

    @activity.defn(name="retention.purge")
    async def purge(self, step: PurgeStep) -> PurgeProgress:
        purger = self._purger(step.policy)
        rows, batches, cursor, finished = _carried_over(activity.info().heartbeat_details, step)
        while not finished and batches < step.max_batches:
            work = asyncio.ensure_future(asyncio.to_thread(purger.batch, step.cutoff, cursor))
            try:
                done: Batch = await asyncio.shield(work)
            except asyncio.CancelledError:
                # The batch in flight commits or rolls back whatever we do: let it end, count it, then stop.
                settled = await _settled(work)
                if settled is not None:
                    activity.heartbeat(rows + settled.rows, batches + 1, settled.cursor, settled.cursor is None)
                raise
            except ResidualError as exc:
                raise ApplicationError(str(exc), type="Retention", non_retryable=not exc.retryable) from None
            rows, batches, cursor, finished = rows + done.rows, batches + 1, done.cursor, done.cursor is None
            activity.heartbeat(rows, batches, cursor, finished)
        logger.info("retention %s: %d row(s) in %d batch(es)%s", step.policy, rows, batches, ", done" if finished else "")
        return PurgeProgress(policy=step.policy, rows=rows, batches=batches, cursor=cursor, finished=finished)

    @activity.defn(name="retention.record")
    async def record(self, arg: RecordRetention) -> None:
        await asyncio.to_thread(self._record, arg)

    def _record(self, arg: RecordRetention) -> None:
        """One audit entry per purge (a retried activity finds its own entry and stops)."""
        if audit.logged_for_run(self._ledger, AUDIT_ACTION, arg.run_id):
            return
        audit.append(
            self._ledger,
            "lethe-retention",
            AUDIT_ACTION,
            None,
            workflow_id=arg.workflow_id,
            run_id=arg.run_id,
            rows=arg.result.rows,
            runs=arg.result.runs,
            policies={t.policy: {"action": t.action, "rows": t.rows, "batches": t.batches, "cutoff": t.cutoff.isoformat()} for t in arg.result.policies},
        )

    def _purger(self, name: str) -> Purger:
        try:
            return self._purgers[name]
        except KeyError:
            raise ApplicationError(
                f"retention policy {name!r} is not configured on this worker", type="Config", non_retryable=True
            ) from None

    def activities(self) -> list[object]:
        return [self.plan, self.purge, self.record]


async def _settled(work: asyncio.Future[Batch]) -> Batch | None:
    try:
        return await work
    except ResidualError:
        return None


def _carried_over(details: object, step: PurgeStep) -> tuple[int, int, list[int | str] | None, bool]:
    """Where a previous attempt got to (rows, batches, cursor, finished), from its last heartbeat."""
    if isinstance(details, (list, tuple)) and len(details) == 4:
        rows, batches, cursor, finished = details
        if isinstance(rows, int) and isinstance(batches, int) and (cursor is None or isinstance(cursor, list)):
            return rows, batches, cursor, bool(finished)
    return 0, 0, step.cursor, False
