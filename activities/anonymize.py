"""Residual-record anonymization as a Temporal activity: `residual.anonymize`.

The activity gets a store name and a subject_ref; the identifier comes from the vault, so it
never enters Temporal's history. It heartbeats after every committed batch with counts only.
Schedule it with a heartbeat_timeout longer than one batch takes: a worker that dies is then
noticed, and the retry simply carries on, since committed batches no longer match.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping

from sqlalchemy import Engine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.vault import identifier_for
from lethe.residual import AnonymizeInput, Anonymizer, ResidualCounts, ResidualError, ResidualStore, store_engine

logger = logging.getLogger(__name__)


class AnonymizeActivities:
    """The anonymizers of one worker process, one per configured store.

    Construction connects to every store and reflects its table, so a wrong table, column or
    strategy stops the worker at start-up (ConfigError) rather than failing the first case.
    """

    def __init__(
        self,
        stores: Iterable[ResidualStore],
        ledger: Engine,
        pepper: bytes,
        engines: Mapping[str, Engine] | None = None,
    ) -> None:
        self._ledger = ledger
        self._anonymizers: dict[str, Anonymizer] = {}
        for store in stores:
            engine = (engines or {}).get(store.name) or store_engine(store)
            self._anonymizers[store.name] = Anonymizer(store, engine, pepper)

    def dispose(self) -> None:
        for anonymizer in self._anonymizers.values():
            anonymizer.engine.dispose()

    @activity.defn(name="residual.count")
    async def count(self, arg: AnonymizeInput) -> int:
        """Rows of the subject in the store, changing nothing: what a dry run reports."""
        anonymizer = self._anonymizer(arg.store)
        return await asyncio.to_thread(anonymizer.count, await identifier_for(self._ledger, arg.subject_ref, f"count {arg.store}"))

    @activity.defn(name="residual.anonymize")
    async def anonymize(self, arg: AnonymizeInput) -> ResidualCounts:
        anonymizer = self._anonymizer(arg.store)
        identifier = await identifier_for(self._ledger, arg.subject_ref, f"anonymize {arg.store}")
        rows, batches = _carried_over(activity.info().heartbeat_details)
        run = anonymizer.batches(identifier)
        while True:
            # One batch per thread hop, so cancellation and heartbeats fall between commits.
            step = asyncio.ensure_future(asyncio.to_thread(next, run, None))
            try:
                done = await asyncio.shield(step)
            except asyncio.CancelledError:
                # The batch in flight commits or rolls back whatever we do: let it end, count it, then stop.
                done = await _settled(step)
                if done is not None:
                    activity.heartbeat(rows + done, batches + 1)
                raise
            except ResidualError as exc:
                raise ApplicationError(str(exc), type="Residual", non_retryable=not exc.retryable) from None
            if done is None:
                break
            rows += done
            batches += 1
            activity.heartbeat(rows, batches)
        logger.info("anonymized %d row(s) of store %s in %d batch(es)", rows, arg.store, batches)
        return ResidualCounts(store=arg.store, table=anonymizer.store.table, rows=rows, batches=batches)

    def _anonymizer(self, store: str) -> Anonymizer:
        try:
            return self._anonymizers[store]
        except KeyError:
            raise ApplicationError(
                f"residual store {store!r} is not configured on this worker", type="Config", non_retryable=True
            ) from None

    def activities(self) -> list[object]:
        return [self.anonymize, self.count]


async def _settled(step: asyncio.Future[int | None]) -> int | None:
    try:
        return await step
    except ResidualError:
        return None


def _carried_over(details: object) -> tuple[int, int]:
    """The counts a previous attempt heartbeat, so a retried activity reports the whole work."""
    if isinstance(details, (list, tuple)) and len(details) == 2 and all(isinstance(d, int) for d in details):
        return details[0], details[1]
    return 0, 0
