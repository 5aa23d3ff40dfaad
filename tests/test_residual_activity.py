"""The `residual.anonymize` activity: identifier from the vault, heartbeats per batch, counts back.

Most run the real activity code in temporalio.testing.ActivityEnvironment, the SDK's in-process
activity runner (real activity context, heartbeats and cancellation; no Temporal server needed),
against real databases. The last one runs it in a real worker on the session's Temporal dev
server, crashes an attempt mid-run and lets Temporal retry it with the last heartbeat.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, Table, event, select
from temporalio import workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities.anonymize import AnonymizeActivities
from lethe.ledger import destroy_identifier, engine_for, store_identifier
from lethe.residual import AnonymizeInput, ResidualCounts, ResidualStore
from lethe.settings import ConfigError
from lethe.subject import subject_ref
from tests.databases import database, unique_table  # noqa: F401  (fixture)
from tests.test_residual import ALICE, PEPPER, PSEUDONYMS, seed_many, store_for, tickets, tickets_table  # noqa: F401

REF = subject_ref(PEPPER, ALICE)
COUNT, BATCH = 1_000, 100


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Engine]:
    engine = engine_for(f"sqlite:///{tmp_path / 'ledger.db'}")
    store_identifier(engine, REF, ALICE)
    yield engine
    destroy_identifier(engine, REF)


def activities_for(store: ResidualStore, ledger: Engine, engine: Engine) -> AnonymizeActivities:
    return AnonymizeActivities([store], ledger, PEPPER, engines={store.name: engine})


def hashed_store(table: Table) -> ResidualStore:
    return store_for(table, {"requester_email": "hash", "requester_name": "hash", "body": "redact"}, BATCH)


def alice_left(engine: Engine, table: Table) -> int:
    with engine.connect() as connection:
        emails = connection.execute(select(table.c.requester_email)).scalars().all()
    return sum(1 for email in emails if email and email.lower() == ALICE)


async def test_anonymizes_and_heartbeats_counts_only(
    database: Engine, tickets: Table, ledger: Engine, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    seed_many(database, tickets, COUNT)
    env = ActivityEnvironment()
    beats: list[tuple[object, ...]] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    caplog.set_level(logging.DEBUG)

    result = await env.run(activities_for(hashed_store(tickets), ledger, database).anonymize, AnonymizeInput(store="crm-tickets", subject_ref=REF))

    assert (result.store, result.table, result.rows, result.batches) == ("crm-tickets", tickets.name, COUNT, COUNT // BATCH)
    assert beats == [(BATCH * n, n) for n in range(1, COUNT // BATCH + 1)]
    assert alice_left(database, tickets) == 0
    exposed = repr(beats) + result.model_dump_json() + caplog.text
    assert "alice" not in exposed.lower() and "anonymized 1000 row(s) of store crm-tickets" in caplog.text


async def test_cancelled_midway_then_retried_does_each_row_once(database: Engine, tickets: Table, ledger: Engine) -> None:  # noqa: F811
    seed_many(database, tickets, COUNT)
    activities = activities_for(hashed_store(tickets), ledger, database)
    arg = AnonymizeInput(store="crm-tickets", subject_ref=REF)
    env = ActivityEnvironment()
    beats: list[tuple[object, ...]] = []

    def cancel_after_three(*details: object) -> None:
        beats.append(details)
        if len(beats) == 3:
            env.cancel()

    env.on_heartbeat = cancel_after_three
    with pytest.raises(asyncio.CancelledError):
        await env.run(activities.anonymize, arg)
    assert 0 < COUNT - alice_left(database, tickets) < COUNT

    # The retry is a new attempt that carries the last heartbeat, as Temporal hands it over.
    retry = ActivityEnvironment()
    retry.info = dataclasses.replace(ActivityEnvironment.default_info(), attempt=2, heartbeat_details=list(beats[-1]))
    result = await retry.run(activities.anonymize, arg)

    assert result.rows == COUNT and result.batches == COUNT // BATCH
    with database.connect() as connection:
        rows = connection.execute(select(tickets.c.id, tickets.c.requester_name).where(tickets.c.requester_email == PSEUDONYMS.of(ALICE))).all()
    assert len(rows) == COUNT and all(name == PSEUDONYMS.of(f"Name {i - 1}") for i, name in rows)


async def test_second_run_reports_nothing_to_do(database: Engine, tickets: Table, ledger: Engine) -> None:  # noqa: F811
    seed_many(database, tickets, 50)
    activities = activities_for(hashed_store(tickets), ledger, database)
    arg = AnonymizeInput(store="crm-tickets", subject_ref=REF)
    first = await ActivityEnvironment().run(activities.anonymize, arg)
    second = await ActivityEnvironment().run(activities.anonymize, arg)
    assert (first.rows, second.rows, second.batches) == (50, 0, 0)


async def test_empty_vault_and_unknown_store_fail_without_retry(database: Engine, tickets: Table, ledger: Engine) -> None:  # noqa: F811
    activities = activities_for(hashed_store(tickets), ledger, database)
    with pytest.raises(ApplicationError, match="unknown-store.* is not configured") as unknown:
        await ActivityEnvironment().run(activities.anonymize, AnonymizeInput(store="unknown-store", subject_ref=REF))
    assert unknown.value.non_retryable and unknown.value.type == "Config"
    destroy_identifier(ledger, REF)
    with pytest.raises(ApplicationError, match="no identifier in the vault") as empty:
        await ActivityEnvironment().run(activities.anonymize, AnonymizeInput(store="crm-tickets", subject_ref=REF))
    assert empty.value.non_retryable and empty.value.type == "VaultEmpty"


async def test_database_error_names_no_value(database: Engine, tickets: Table, ledger: Engine) -> None:  # noqa: F811
    activities = activities_for(hashed_store(tickets), ledger, database)
    tickets.drop(database)  # the schema changed under a running worker
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(activities.anonymize, AnonymizeInput(store="crm-tickets", subject_ref=REF))
    message = caught.value.message
    assert message.startswith("residual[crm-tickets]: a batch failed with ") and caught.value.type == "Residual"
    assert "alice" not in message.lower() and caught.value.__cause__ is None


def test_worker_start_stops_on_a_bad_store(database: Engine, ledger: Engine) -> None:  # noqa: F811
    table = tickets_table(unique_table("tickets"))  # never created
    with pytest.raises(ConfigError, match=rf"^residual\[crm-tickets\]: table '{table.name}' does not exist$"):
        activities_for(hashed_store(table), ledger, database)


# --- in a real worker, on the session's Temporal dev server -------------------------------


@workflow.defn(name="TestAnonymizeOnce", sandboxed=False)
class AnonymizeOnce:
    @workflow.run
    async def run(self, arg: AnonymizeInput) -> ResidualCounts:
        return await workflow.execute_activity(
            "residual.anonymize",
            arg,
            result_type=ResidualCounts,
            start_to_close_timeout=timedelta(minutes=1),
            heartbeat_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=3),
        )


async def test_worker_crash_mid_run_is_retried_to_the_end(
    client: Client, database: Engine, tickets: Table, ledger: Engine  # noqa: F811
) -> None:
    seed_many(database, tickets, COUNT)
    activities = activities_for(hashed_store(tickets), ledger, database)
    updates = 0

    @event.listens_for(database, "before_cursor_execute")
    def lose_the_connection_once(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        nonlocal updates
        if statement.lstrip().upper().startswith("UPDATE"):
            updates += 1
            if updates == 3:  # inside the third batch's transaction
                raise RuntimeError("simulated crash")

    task_queue = f"residual-{uuid.uuid4().hex[:8]}"
    try:
        async with Worker(client, task_queue=task_queue, workflows=[AnonymizeOnce], activities=activities.activities()):
            result = await client.execute_workflow(
                AnonymizeOnce.run,
                AnonymizeInput(store="crm-tickets", subject_ref=REF),
                id=f"test-anonymize-{uuid.uuid4().hex[:8]}",
                task_queue=task_queue,
            )
    finally:
        event.remove(database, "before_cursor_execute", lose_the_connection_once)

    assert updates > 3  # the crash happened and a second attempt went on
    assert result.rows == COUNT and result.batches == COUNT // BATCH  # the first attempt's two batches carried over
    with database.connect() as connection:
        rows = connection.execute(select(tickets.c.id, tickets.c.requester_name).where(tickets.c.requester_email == PSEUDONYMS.of(ALICE))).all()
    assert len(rows) == COUNT and all(name == PSEUDONYMS.of(f"Name {i - 1}") for i, name in rows)
