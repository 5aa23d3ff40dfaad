"""Retention policies: config errors at start-up, the purger on real databases, and a purge of
200,000 expired rows out of 1,000,000 through the real RetentionPurge workflow on the dev server."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, DateTime, Engine, Integer, MetaData, String, Table, Text, create_engine, insert, select
from sqlmodel import Session
from sqlmodel import select as sqlmodel_select
from temporalio.client import Client, WorkflowExecutionStatus

from lethe.ledger import AuditEntry, engine_for
from lethe.residual import REDACTED, Pseudonyms
from lethe.retention import Purger, RetentionInput, RetentionResult
from lethe.retention_worker import retention_workers
from lethe.schedules import scheduled_task_queue
from lethe.settings import ConfigError, RetentionPolicy, Settings, load_settings
from tests.databases import database, unique_table  # noqa: F401  (fixture)
from tests.support import PEPPER

NOW = datetime.now(UTC).replace(microsecond=0)
OLD, RECENT = NOW - timedelta(days=400), NOW - timedelta(days=30)
URL_ENV = "LETHE_TEST_RETENTION_URL"


def policy(**overrides: Any) -> RetentionPolicy:
    base: dict[str, Any] = {
        "name": "old-tickets",
        "url_env": URL_ENV,
        "table": "tickets",
        "timestamp": "closed_at",
        "max_age": "365d",
        "where": {"status": "closed"},
        "action": "anonymize",
        "columns": {"requester_email": "hash", "requester_name": "redact", "body": "null"},
    }
    return RetentionPolicy.model_validate(base | overrides)


def tickets_table(name: str) -> Table:
    return Table(
        name,
        MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("status", String(20), nullable=False),
        Column("closed_at", DateTime, nullable=False),
        Column("requester_email", String(255)),
        Column("requester_name", String(200)),
        Column("body", Text),
    )


@pytest.fixture
def tickets(database: Engine) -> Iterator[Table]:  # noqa: F811
    table = tickets_table(unique_table("tickets"))
    table.create(database)
    try:
        yield table
    finally:
        table.drop(database)


# --- bad config stops start-up, naming the policy and the field --------------------------------

POLICY_TOML = """
pepper = "test-pepper-0123456789abcdef"
[[retention]]
name = "old-tickets"
url_env = "LETHE_TEST_RETENTION_URL"
table = "tickets"
timestamp = "closed_at"
max_age = "365d"
where = { status = "closed" }
action = "anonymize"
columns = { requester_email = "hash", requester_name = "redact" }
"""


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('max_age = "365d"', 'max_age = "-5d"'), r"retention(\[old-tickets\]|\.0)\.max_age: .*invalid duration '-5d'"),
        (('max_age = "365d"', 'max_age = "0"'), r"retention(\[old-tickets\]|\.0): Value error, max_age must be positive"),
        (('timestamp = "closed_at"\n', ""), r"retention(\[old-tickets\]|\.0)\.timestamp: Field required"),
        (('action = "anonymize"', 'action = "archive"'), r"retention(\[old-tickets\]|\.0)\.action: Input should be 'anonymize' or 'delete'"),
        (('requester_name = "redact"', 'requester_name = "scramble"'), r"retention(\[old-tickets\]|\.0)\.columns\.requester_name: Input should be"),
        (('requester_name = "redact"', 'requester_name = "hash"'), r"needs at least one column with strategy null or redact"),
        (('action = "anonymize"', 'action = "delete"'), r"a delete policy takes no columns"),
    ],
)
def test_bad_policy_in_the_file_is_one_line_naming_it(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    path = tmp_path / "lethe.toml"
    path.write_text(POLICY_TOML.replace(*change))
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert "\n" not in str(caught.value)
    assert re.search(message, str(caught.value)), str(caught.value)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ('[schedules.retention]\ncron = "every night"', "schedules.retention.cron: Value error, use 5 fields"),
        ('[schedules.reconcile]\ntime_zone = "Mars/Olympus"', "schedules.reconcile.time_zone: Value error, unknown time zone 'Mars/Olympus'"),
    ],
)
def test_bad_schedule_config_is_named(tmp_path: Path, section: str, message: str) -> None:
    path = tmp_path / "lethe.toml"
    path.write_text(POLICY_TOML + section + "\n")
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_settings(path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"timestamp": "closed"}, "retention[old-tickets].timestamp: table 'tickets' has no column 'closed'"),
        ({"timestamp": "status"}, "retention[old-tickets].timestamp: column tickets.status is VARCHAR(20), not a date or datetime"),
        ({"where": {"state": "closed"}}, "retention[old-tickets].where.state: table 'tickets' has no column 'state'"),
        ({"columns": {"requester_name": "redact", "email": "hash"}}, "retention[old-tickets].columns.email: table 'tickets' has no column 'email'"),
        ({"columns": {"requester_name": "redact", "status": "null"}}, "retention[old-tickets].columns.status: strategy 'null' does not fit tickets.status: the column is NOT NULL"),
        ({"table": "ticket"}, "retention[old-tickets].table: table 'ticket' does not exist"),
    ],
)
def test_worker_start_up_checks_policies_against_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: Client, overrides: dict[str, Any], message: str
) -> None:
    db = tmp_path / "company.db"
    tickets_table("tickets").create(engine := create_engine(f"sqlite:///{db}"))
    engine.dispose()
    monkeypatch.setenv(URL_ENV, f"sqlite:///{db}")
    settings = settings_for(tmp_path, client, [policy(**overrides)])
    with pytest.raises(ConfigError) as caught:
        retention_workers(client, settings)
    assert str(caught.value) == message


def settings_for(tmp_path: Path, client: Client, policies: list[RetentionPolicy], **retention: Any) -> Settings:
    return Settings(
        temporal={"address": client.service_client.config.target_host, "task_queue": f"lethe-{uuid.uuid4().hex[:8]}"},
        ledger={"url": f"sqlite:///{tmp_path / 'ledger.db'}"},
        pepper=PEPPER,
        retention=policies,
        schedules={"retention": retention},
    )


# --- the purger, on each database ---------------------------------------------------------------


def seed(engine: Engine, table: Table) -> None:
    rows = []
    for i in range(600):
        old, closed = i % 3 != 0, i % 5 != 0  # 2/3 expired; 4/5 closed
        rows.append(
            {
                "id": i,
                "status": "closed" if closed else "open",
                "closed_at": (OLD if old else RECENT).replace(tzinfo=None),
                "requester_email": f"person{i}@example.com",
                "requester_name": f"Person {i}",
                "body": f"ticket text {i}",
            }
        )
    with engine.begin() as connection:
        connection.execute(insert(table), rows)


def rows_of(engine: Engine, table: Table) -> dict[int, tuple[Any, ...]]:
    with engine.connect() as connection:
        return {row.id: tuple(row) for row in connection.execute(select(table))}


def expired_and_closed(i: int) -> bool:
    return i % 3 != 0 and i % 5 != 0


def test_anonymize_policy_rewrites_only_expired_matching_rows_and_only_once(database: Engine, tickets: Table) -> None:  # noqa: F811
    seed(database, tickets)
    before = rows_of(database, tickets)
    purger = Purger(policy(table=tickets.name, batch_size=50), database, PEPPER.encode())

    rows, batches = purger.run(NOW - timedelta(days=365))

    after = rows_of(database, tickets)
    expected = [i for i in before if expired_and_closed(i)]
    assert rows == len(expected) == 320 and batches == 7  # 320 rows in batches of 50: 6 full, 1 short
    pseudonyms = Pseudonyms(PEPPER.encode())
    for i, row in after.items():
        if expired_and_closed(i):
            assert row[3:] == (pseudonyms.of(f"person{i}@example.com"), REDACTED, None), i
            assert row[:3] == before[i][:3]  # id, status and the timestamp stay
        else:
            assert row == before[i], i
    # A second run finds every row done: nothing changes, hash(hash(x)) would show.
    assert purger.run(NOW - timedelta(days=365)) == (0, 1)
    assert rows_of(database, tickets) == after


def test_delete_policy_keeps_rows_inside_the_period_and_outside_the_filter(database: Engine, tickets: Table) -> None:  # noqa: F811
    seed(database, tickets)
    before = rows_of(database, tickets)
    purger = Purger(policy(table=tickets.name, action="delete", columns={}, batch_size=64), database, PEPPER.encode())

    rows, batches = purger.run(NOW - timedelta(days=365))

    after = rows_of(database, tickets)
    assert rows == 320 and batches == 6  # 5 full batches of 64, then an empty one that ends the cursor
    assert after == {i: row for i, row in before.items() if not expired_and_closed(i)}


# --- 200,000 expired rows of 1,000,000, through the workflow --------------------------------------

TOTAL, EXPIRED, BATCH, PER_RUN = 1_000_000, 200_000, 10_000, 5
FMT = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores a DateTime in SQLite


def seed_million(path: Path) -> None:
    """Every 5th row expired and closed (200,000); every 50th expired but open (kept by the filter)."""
    old, recent = OLD.replace(tzinfo=None).strftime(FMT), RECENT.replace(tzinfo=None).strftime(FMT)
    connection = sqlite3.connect(path)
    connection.execute(
        "CREATE TABLE tickets (id INTEGER PRIMARY KEY, status VARCHAR(20) NOT NULL, closed_at DATETIME NOT NULL, "
        "requester_email VARCHAR(255))"
    )

    def row(i: int) -> tuple[int, str, str, str]:
        if i % 5 == 0:
            return i, "closed", old, f"p{i}@example.com"
        return i, "open" if i % 50 == 1 else "closed", old if i % 50 == 1 else recent, f"p{i}@example.com"

    for start in range(0, TOTAL, 200_000):
        connection.executemany("INSERT INTO tickets VALUES (?, ?, ?, ?)", (row(i) for i in range(start, start + 200_000)))
    connection.commit()
    connection.close()


@asynccontextmanager
async def running(client: Client, settings: Settings) -> AsyncIterator[None]:
    built = retention_workers(client, settings)
    runs = [asyncio.create_task(worker.run()) for worker in built.workers]
    try:
        yield
    finally:
        await asyncio.gather(*(worker.shutdown() for worker in built.workers))
        await asyncio.gather(*runs, return_exceptions=True)
        await built.aclose()


async def test_million_rows_purged_in_batches_with_continue_as_new(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: Client
) -> None:
    db = tmp_path / "company.db"
    started = time.monotonic()
    seed_million(db)
    seeded = time.monotonic()
    monkeypatch.setenv(URL_ENV, f"sqlite:///{db}")
    purge = policy(action="delete", columns={}, batch_size=BATCH)
    settings = settings_for(tmp_path, client, [purge], batches_per_activity=1, activities_per_run=PER_RUN)
    workflow_id = f"retention-test-{uuid.uuid4().hex[:8]}"

    async with running(client, settings):
        handle = await client.start_workflow(
            "RetentionPurge",
            RetentionInput(batches_per_activity=1, activities_per_run=PER_RUN),
            id=workflow_id,
            task_queue=scheduled_task_queue(settings),
            result_type=RetentionResult,
        )
        result: RetentionResult = await handle.result()
    purged = time.monotonic()

    (tally,) = result.policies
    assert (tally.policy, tally.rows, tally.finished, tally.error) == ("old-tickets", EXPIRED, True, None)
    # 20 full batches, then one that finds nothing: 21 activities, 5 per run.
    assert tally.batches == EXPIRED // BATCH + 1
    assert result.runs == 5 and result.rows == EXPIRED

    runs = [execution async for execution in client.list_workflows(f'WorkflowId = "{workflow_id}"')]
    assert len(runs) == 5
    assert sum(1 for r in runs if r.status is WorkflowExecutionStatus.CONTINUED_AS_NEW) == 4
    lengths = []
    for execution in runs:
        described = await client.get_workflow_handle(workflow_id, run_id=execution.run_id).describe()
        lengths.append(described.raw_description.workflow_execution_info.history_length)
    assert max(lengths) < 100, lengths  # a few events per activity, and at most 5 activities per run

    connection = sqlite3.connect(db)
    remaining = dict(connection.execute("SELECT status, count(*) FROM tickets GROUP BY status").fetchall())
    expired_left = connection.execute("SELECT count(*) FROM tickets WHERE id % 5 = 0").fetchone()[0]
    kept_ids = connection.execute("SELECT sum(id), count(*) FROM tickets").fetchone()
    connection.close()
    assert expired_left == 0
    assert remaining == {"open": TOTAL // 50, "closed": TOTAL - EXPIRED - TOTAL // 50}
    assert kept_ids == (sum(i for i in range(TOTAL) if i % 5), TOTAL - EXPIRED)  # exactly the other rows

    with Session(engine_for(settings.ledger.url)) as session:
        (entry,) = session.exec(sqlmodel_select(AuditEntry).where(AuditEntry.action == "retention.purged")).all()
    detail = json.loads(entry.detail)
    assert detail["rows"] == EXPIRED and detail["policies"]["old-tickets"]["rows"] == EXPIRED
    print(f"\n1M rows: seeded in {seeded - started:.1f}s, purged 200k in {purged - seeded:.1f}s; history lengths {lengths}")
