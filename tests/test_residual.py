"""The residual-record anonymizer against real databases: SQLite, PostgreSQL and MySQL/MariaDB.

Server databases come from tests/databases.py (skipped with the reason when not configured).
Every test makes its own table and drops it, so runs in parallel do not collide.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    insert,
    inspect,
    select,
)

from lethe.residual import (
    REDACTED,
    BatchDone,
    Pseudonyms,
    ResidualStore,
    anonymize,
    check_store,
)
from lethe.settings import ConfigError
from tests.databases import database, unique_table  # noqa: F401  (fixture)

PEPPER = b"test-pepper-0123456789abcdef"
ROOT = Path(__file__).resolve().parent.parent
ALICE = "alice.residual@example.com"
# How Alice's address was typed over the years; all of them are her.
ALICE_SPELLINGS = (ALICE, "Alice.Residual@Example.COM", "ALICE.RESIDUAL@EXAMPLE.COM")
OTHERS = ("bob@example.com", "alice.residual@example.com.evil.test", "xalice.residual@example.com", "", None)


def tickets_table(name: str) -> Table:
    return Table(
        name,
        MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("requester_email", String(255)),
        Column("requester_name", String(200)),
        Column("phone", String(40)),
        Column("body", Text),
        Column("created_at", DateTime),
        Column("born_on", Date),
        Column("status", String(20), nullable=False),  # not personal: must survive untouched
        Column("amount", Integer),  # not personal either
    )


@pytest.fixture
def tickets(database: Engine) -> Iterator[Table]:  # noqa: F811
    table = tickets_table(unique_table("tickets"))
    table.create(database)
    try:
        yield table
    finally:
        table.drop(database, checkfirst=True)


def ticket(i: int, email: str | None) -> dict[str, Any]:
    return {
        "requester_email": email,
        "requester_name": f"Name {i}",
        "phone": f"+33 6 00 00 {i:04d}",
        "body": f"ticket body {i}",
        "created_at": datetime(2024, 3, 17, 14, 35, 12),
        "born_on": date(1990, 7, 23),
        "status": "open" if i % 2 else "closed",
        "amount": i * 10,
    }


def seed(engine: Engine, table: Table, alice_rows: int = 6) -> None:
    rows = [ticket(i, ALICE_SPELLINGS[i % len(ALICE_SPELLINGS)]) for i in range(alice_rows)]
    rows += [ticket(1000 + i, email) for i, email in enumerate(OTHERS)]
    with engine.begin() as connection:
        connection.execute(insert(table), rows)


def store_for(table: Table, columns: dict[str, str], batch_size: int = 500) -> ResidualStore:
    return ResidualStore.model_validate(
        {
            "name": "crm-tickets",
            "url_env": "LETHE_TEST_UNUSED_URL",  # the tests hand the engine over themselves
            "table": table.name,
            "match": {"column": "requester_email"},
            "columns": columns,
            "batch_size": batch_size,
        }
    )


def snapshot(engine: Engine, table: Table) -> dict[int, tuple[Any, ...]]:
    with engine.connect() as connection:
        return {row.id: tuple(row) for row in connection.execute(select(table).order_by(table.c.id))}


def is_alice(email: str | None) -> bool:
    return email is not None and email.lower() == ALICE


# --- each strategy on each database -------------------------------------------------------

PSEUDONYMS = Pseudonyms(PEPPER)
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def expect_null(_before: Any, after: Any) -> None:
    assert after is None


def expect_redact(_before: Any, after: Any) -> None:
    assert after == REDACTED


def expect_hash(before: Any, after: Any) -> None:
    assert after == PSEUDONYMS.of(before) and HEX32.match(after)


def expect_random(before: Any, after: Any) -> None:
    assert HEX32.match(after) and after != before


def expect_month(_before: Any, after: Any) -> None:
    assert after == datetime(2024, 3, 1, 0, 0, 0)


def expect_year(_before: Any, after: Any) -> None:
    assert after == datetime(2024, 1, 1, 0, 0, 0)


def expect_keep_domain(before: Any, after: Any) -> None:
    assert after == f"{PSEUDONYMS.of(ALICE)}@{before.split('@')[1]}"


CASES = {
    # strategy: (column it is applied to, check of one anonymized value)
    "null": ("phone", expect_null),
    "redact": ("body", expect_redact),
    "hash": ("requester_name", expect_hash),
    "random": ("requester_name", expect_random),
    "month": ("created_at", expect_month),
    "year": ("created_at", expect_year),
    "keep-domain": ("requester_email", expect_keep_domain),
}


@pytest.mark.parametrize("strategy", list(CASES))
def test_strategy(database: Engine, tickets: Table, strategy: str) -> None:  # noqa: F811
    column, expect = CASES[strategy]
    seed(database, tickets)
    before = snapshot(database, tickets)
    columns = {"requester_email": "hash", column: strategy}

    counts = anonymize(store_for(tickets, columns), database, ALICE, PEPPER)

    after = snapshot(database, tickets)
    names = [c.name for c in tickets.columns]
    alice_ids = [i for i, row in before.items() if is_alice(row[names.index("requester_email")])]
    assert counts.rows == len(alice_ids) == 6 and counts.batches == 1
    for i, row in before.items():
        if i not in alice_ids:
            assert after[i] == row, "someone else's row changed"
            continue
        for index, name in enumerate(names):
            if name == column:
                expect(row[index], after[i][index])
            elif name == "requester_email":
                assert after[i][index] == PSEUDONYMS.of(ALICE)
            else:
                assert after[i][index] == row[index], f"{name} is not personal and must be kept"


def test_hash_is_one_pseudonym_per_person_across_spellings_and_tables(database: Engine) -> None:  # noqa: F811
    first, second = tickets_table(unique_table("tickets")), tickets_table(unique_table("invoices"))
    for table in (first, second):
        table.create(database)
    try:
        seed(database, first)
        seed(database, second, alice_rows=2)
        for table in (first, second):
            anonymize(store_for(table, {"requester_email": "hash"}), database, ALICE, PEPPER)
        with database.connect() as connection:
            pseudonyms = {
                row[0]
                for table in (first, second)
                for row in connection.execute(select(table.c.requester_email).where(table.c.amount < 10_000))
            }
        # Three spellings, two tables, one person: one pseudonym, so joins and counts still work.
        assert pseudonyms == {PSEUDONYMS.of(ALICE)}
        assert Pseudonyms(b"another-pepper-0123456789").of(ALICE) not in pseudonyms
    finally:
        for table in (first, second):
            table.drop(database, checkfirst=True)


def test_date_column_truncates_to_month_and_year(database: Engine, tickets: Table) -> None:  # noqa: F811
    seed(database, tickets)
    anonymize(store_for(tickets, {"requester_email": "null", "born_on": "month"}), database, ALICE, PEPPER)
    with database.connect() as connection:
        born = {row[0] for row in connection.execute(select(tickets.c.born_on).where(tickets.c.amount < 10_000))}
    assert born == {date(1990, 7, 1)}


def test_config_example_from_the_issue(database: Engine, tickets: Table) -> None:  # noqa: F811
    config = tomllib.loads(
        f"""
        [[residual]]
        name = "crm-tickets"
        url_env = "CRM_DB_URL"
        table = "{tickets.name}"
        match = {{ column = "requester_email" }}
        columns = {{ requester_email = "hash", requester_name = "redact", phone = "null", body = "redact", created_at = "month" }}
        batch_size = 4
        """
    )
    store = ResidualStore.model_validate(config["residual"][0])
    seed(database, tickets)
    counts = anonymize(store, database, "  Alice.Residual@example.com ", PEPPER)
    assert (counts.store, counts.table, counts.rows, counts.batches) == ("crm-tickets", tickets.name, 6, 2)
    with database.connect() as connection:
        left = connection.execute(
            select(func.count()).select_from(tickets).where(func.lower(tickets.c.requester_email) == ALICE)
        ).scalar_one()
    assert left == 0


# --- safety -------------------------------------------------------------------------------


def test_sql_in_the_identifier_is_only_data(database: Engine, tickets: Table) -> None:  # noqa: F811
    evil = f"x'; DROP TABLE {tickets.name}; --@example.com"
    seed(database, tickets)
    with database.begin() as connection:
        connection.execute(insert(tickets), [ticket(7000, evil), ticket(7001, evil.upper())])
    before = snapshot(database, tickets)

    counts = anonymize(store_for(tickets, {"requester_email": "hash", "body": "redact"}), database, evil, PEPPER)

    assert inspect(database).has_table(tickets.name)
    after = snapshot(database, tickets)
    assert counts.rows == 2
    changed = {i for i in before if after[i] != before[i]}
    assert len(changed) == 2 and all(after[i][1] == PSEUDONYMS.of(evil) for i in changed)


def test_empty_identifier_is_refused_before_any_write(database: Engine, tickets: Table) -> None:  # noqa: F811
    seed(database, tickets)
    before = snapshot(database, tickets)
    with pytest.raises(ValueError, match="identifier is empty"):
        anonymize(store_for(tickets, {"requester_email": "null"}), database, "   ", PEPPER)
    assert snapshot(database, tickets) == before  # the row whose email is '' was not touched


def test_second_run_changes_nothing(database: Engine, tickets: Table) -> None:  # noqa: F811
    store = store_for(tickets, {"requester_email": "random", "requester_name": "random", "created_at": "year"}, 4)
    seed(database, tickets)
    first = anonymize(store, database, ALICE, PEPPER)
    once = snapshot(database, tickets)
    second = anonymize(store, database, ALICE, PEPPER)
    assert (first.rows, first.batches) == (6, 2)
    assert (second.rows, second.batches) == (0, 0)
    assert snapshot(database, tickets) == once  # random values too: nothing was touched again


# --- configuration and the start-up check -------------------------------------------------


def test_unknown_strategy_is_named() -> None:
    with pytest.raises(ValidationError, match=r"column 'phone': unknown strategy 'shred'; use one of null, redact"):
        ResidualStore.model_validate(
            {"name": "crm", "url_env": "X", "table": "t", "match": {"column": "e"}, "columns": {"e": "hash", "phone": "shred"}}
        )


@pytest.mark.parametrize(
    "change, message",
    [
        ({"columns": {"phone": "null"}}, "match.column 'requester_email' needs a strategy in columns"),
        ({"columns": {"requester_email": "month"}}, "strategy 'month' does not remove an identifier"),
        ({"url_file": "/x"}, "set exactly one of url_env or url_file"),
        ({"name": "CRM tickets"}, "String should match pattern"),
        ({"batch_size": 0}, "greater than or equal to 1"),
        ({"colums": {}}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_store_config(change: dict[str, Any], message: str) -> None:
    config = {"name": "crm", "url_env": "X", "table": "t", "match": {"column": "requester_email"}}
    config["columns"] = {"requester_email": "hash"}
    with pytest.raises(ValidationError, match=re.escape(message)):
        ResidualStore.model_validate(config | change)


def test_url_comes_from_env_or_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = {"name": "crm", "table": "t", "match": {"column": "e"}, "columns": {"e": "hash"}}
    monkeypatch.delenv("LETHE_TEST_CRM_URL", raising=False)
    with pytest.raises(ConfigError, match=r"^residual\[crm\]\.url_env: environment variable LETHE_TEST_CRM_URL is not set$"):
        ResidualStore.model_validate(base | {"url_env": "LETHE_TEST_CRM_URL"}).read_url()
    monkeypatch.setenv("LETHE_TEST_CRM_URL", "sqlite:///from-env.db")
    assert ResidualStore.model_validate(base | {"url_env": "LETHE_TEST_CRM_URL"}).read_url() == "sqlite:///from-env.db"
    (tmp_path / "url").write_text("sqlite:///from-file.db\n")
    assert ResidualStore.model_validate(base | {"url_file": str(tmp_path / "url")}).read_url() == "sqlite:///from-file.db"


@pytest.fixture
def odd_table(database: Engine) -> Iterator[Table]:  # noqa: F811
    table = Table(
        unique_table("odd"),
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("email", String(255), nullable=False),
        Column("visits", Integer),
        Column("short", String(8)),
        Column("code", String(64), unique=True),
        Column("seen_at", DateTime),
    )
    table.create(database)
    try:
        yield table
    finally:
        table.drop(database, checkfirst=True)


@pytest.mark.parametrize(
    "columns, field, problem",
    [
        ({"email": "hash", "nope": "null"}, "columns.nope", "has no column 'nope'"),
        ({"email": "hash", "visits": "hash"}, "columns.visits", "is not a text type"),
        ({"email": "hash", "seen_at": "redact"}, "columns.seen_at", "is not a text type"),
        ({"email": "hash", "short": "month"}, "columns.short", "is not a date or datetime"),
        ({"email": "null"}, "columns.email", "the column is NOT NULL"),
        ({"email": "hash", "short": "hash"}, "columns.short", "shorter than the 32 characters"),
        ({"email": "hash", "code": "redact"}, "columns.code", "the column is unique"),
        ({"email": "hash", "id": "random"}, "columns.id", "part of the primary key"),
    ],
)
def test_check_store_names_store_table_and_column(
    database: Engine, odd_table: Table, columns: dict[str, str], field: str, problem: str  # noqa: F811
) -> None:
    store = ResidualStore.model_validate(
        {"name": "odd", "url_env": "X", "table": odd_table.name, "match": {"column": "email"}, "columns": columns}
    )
    with pytest.raises(ConfigError) as caught:
        check_store(store, database)
    message = str(caught.value)
    assert message.startswith(f"residual[odd].{field}: ") and problem in message and odd_table.name in message
    assert "\n" not in message


def test_check_store_unknown_table_and_match_column(database: Engine, odd_table: Table) -> None:  # noqa: F811
    base = {"name": "odd", "url_env": "X", "match": {"column": "mail"}, "columns": {"mail": "hash"}}
    with pytest.raises(ConfigError, match=r"^residual\[odd\]: table 'no_such_table_x' does not exist$"):
        check_store(ResidualStore.model_validate(base | {"table": "no_such_table_x"}), database)
    with pytest.raises(ConfigError, match=rf"^residual\[odd\]\.match\.column: table '{odd_table.name}' has no column 'mail'$"):
        check_store(ResidualStore.model_validate(base | {"table": odd_table.name}), database)


# --- volume, batches and crashes ----------------------------------------------------------


def seed_many(engine: Engine, table: Table, count: int) -> None:
    rows = [ticket(i, ALICE_SPELLINGS[i % 3]) for i in range(count)]
    rows += [ticket(count + i, email) for i, email in enumerate(OTHERS)]
    with engine.begin() as connection:
        for start in range(0, len(rows), 10_000):
            connection.execute(insert(table), rows[start : start + 10_000])


def assert_each_row_anonymized_once(engine: Engine, table: Table, count: int) -> None:
    """hash(hash(x)) differs from hash(x): a row done twice, or not at all, shows here."""
    with engine.connect() as connection:
        rows = connection.execute(select(table.c.id, table.c.requester_email, table.c.requester_name).order_by(table.c.id)).all()
    alice = [row for row in rows if row.requester_email == PSEUDONYMS.of(ALICE)]
    assert len(alice) == count
    wrong = [row.id for row in alice if row.requester_name != PSEUDONYMS.of(f"Name {row.id - 1}")]
    assert not wrong, f"{len(wrong)} row(s) not anonymized exactly once, e.g. id {wrong[:3]}"
    others = {row.requester_email for row in rows if row.requester_email != PSEUDONYMS.of(ALICE)}
    assert others == set(OTHERS)


# MySQL gets a tenth: PyMySQL sends an executemany UPDATE one row per round trip.
@pytest.mark.parametrize("database, count", [("sqlite", 100_000), ("postgresql", 100_000), ("mysql", 10_000)], indirect=["database"])
def test_many_rows_in_batches(database: Engine, tickets: Table, count: int) -> None:  # noqa: F811
    batch_size = count // 50
    seed_many(database, tickets, count)
    seen: list[BatchDone] = []
    store = store_for(tickets, {"requester_email": "hash", "requester_name": "hash", "phone": "null", "body": "redact"}, batch_size)

    started = time.perf_counter()
    counts = anonymize(store, database, ALICE, PEPPER, seen.append)
    elapsed = time.perf_counter() - started

    print(f"\n{database.dialect.name}: {count} rows in {elapsed:.1f}s ({len(seen)} batches of {batch_size})")
    assert counts.rows == count and counts.batches == count // batch_size == len(seen)
    assert [b.rows for b in seen] == [batch_size] * len(seen)
    assert [b.total for b in seen] == [batch_size * (n + 1) for n in range(len(seen))]
    assert_each_row_anonymized_once(database, tickets, count)


def test_rows_written_behind_the_cursor_are_found(database: Engine, tickets: Table) -> None:  # noqa: F811
    with database.begin() as connection:
        connection.execute(insert(tickets), [ticket(i, ALICE) | {"id": 100 + i} for i in range(30)])
    store = store_for(tickets, {"requester_email": "hash"}, 10)

    def late_ticket(done: BatchDone) -> None:
        if done.batch == 1:  # a new row for her, with a key the keyset has already passed
            with database.begin() as connection:
                connection.execute(insert(tickets), [ticket(0, ALICE.upper()) | {"id": 1}])

    counts = anonymize(store, database, ALICE, PEPPER, late_ticket)

    assert (counts.rows, counts.batches) == (31, 4)
    with database.connect() as connection:
        assert set(connection.execute(select(tickets.c.requester_email)).scalars()) == {PSEUDONYMS.of(ALICE)}


class Killed(Exception):
    pass


def test_resume_after_a_crash_between_batches(database: Engine, tickets: Table) -> None:  # noqa: F811
    count, batch_size, crash_after = 1_000, 100, 3
    seed_many(database, tickets, count)
    store = store_for(tickets, {"requester_email": "hash", "requester_name": "hash"}, batch_size)

    def crash(done: BatchDone) -> None:
        if done.batch == crash_after:
            raise Killed

    with pytest.raises(Killed):
        anonymize(store, database, ALICE, PEPPER, crash)
    resumed = anonymize(store, database, ALICE, PEPPER)

    assert resumed.rows == count - crash_after * batch_size
    assert_each_row_anonymized_once(database, tickets, count)


KILLER = """
import os, signal, sys
from sqlalchemy import create_engine, event
from lethe.residual import ResidualStore, anonymize

store = ResidualStore.model_validate_json(os.environ["STORE"])
engine = create_engine(os.environ["URL"])
updates = 0

@event.listens_for(engine, "after_cursor_execute")
def die_in_third_batch(conn, cursor, statement, parameters, context, executemany):
    global updates
    if statement.lstrip().upper().startswith("UPDATE"):
        updates += 1
        if updates == 3:  # the batch's rows are written but not committed
            os.kill(os.getpid(), signal.SIGKILL)

anonymize(store, engine, os.environ["IDENT"], os.environ["PEPPER"].encode())
"""


def test_resume_after_a_kill_inside_a_transaction(database: Engine, tickets: Table) -> None:  # noqa: F811
    count, batch_size = 1_000, 100
    seed_many(database, tickets, count)
    store = store_for(tickets, {"requester_email": "hash", "requester_name": "hash"}, batch_size)
    env = os.environ | {
        "STORE": store.model_dump_json(by_alias=True),
        "URL": database.url.render_as_string(hide_password=False),
        "IDENT": ALICE,
        "PEPPER": PEPPER.decode(),
        "PYTHONPATH": str(ROOT),
    }

    child = subprocess.run([sys.executable, "-c", KILLER], check=False, env=env, cwd=ROOT, capture_output=True, timeout=60)

    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    database.dispose()  # the server saw the connection die; start from fresh connections
    with database.connect() as connection:
        done = connection.execute(
            select(func.count()).select_from(tickets).where(tickets.c.requester_email == PSEUDONYMS.of(ALICE))
        ).scalar_one()
    assert done == 2 * batch_size  # two commits; the third batch was rolled back whole
    resumed = anonymize(store, database, ALICE, PEPPER)
    assert resumed.rows == count - 2 * batch_size
    assert_each_row_anonymized_once(database, tickets, count)


def test_progress_carries_no_personal_data(database: Engine, tickets: Table) -> None:  # noqa: F811
    seed(database, tickets)
    seen: list[BatchDone] = []
    counts = anonymize(store_for(tickets, {"requester_email": "hash"}, 2), database, ALICE, PEPPER, seen.append)
    text = json.dumps([vars(b) for b in seen]) + counts.model_dump_json()
    assert len(seen) == 3 and "alice" not in text.lower() and "Name" not in text
