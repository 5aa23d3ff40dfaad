"""Retention purges: rows nobody asked to erase still go when their retention period ends (GDPR Art. 5(1)(e)).

Each `[[retention]]` policy names a table, its timestamp column, a maximum age, an optional
equality filter (`where = { status = "closed" }`, values bound as parameters) and an action:
`delete`, or `anonymize` with the residual stores' column strategies (lethe.residual).

A purge walks the table in primary-key order with a keyset cursor, one transaction per batch.
The cutoff is fixed when the run starts, so a run ends even while rows keep ageing; rows that
cross it meanwhile are the next run's.

Why an anonymized row is "done": its `null`/`redact` columns read NULL/"[redacted]" (config
validation insists on one such column), and the selection skips rows where all of them already
do. Re-running therefore changes nothing, and a crash loses at most the uncommitted batch.
Caveat: a row whose marker columns were empty to begin with counts as done, so pick a marker
column that every row fills (a name, a body).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import (
    Column,
    ColumnElement,
    Engine,
    Table,
    and_,
    bindparam,
    create_engine,
    delete,
    make_url,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy import types as sqltypes

from lethe.config_types import ConfigError
from lethe.residual import (
    REDACTED,
    Pseudonyms,
    ResidualError,
    Strategy,
    _db_error_name,
    _misfit,
    _unique_columns,
    apply_strategy,
    named_column,
    read_database_url,
    reflect_table,
)
from lethe.settings import RETENTION_MARKERS, RetentionPolicy

CursorValue = int | str


# --- activity and workflow I/O (no personal data: names, counts, primary keys) ------------------


class PolicyPlan(BaseModel):
    """A policy as the workflow sees it: no URL, no column."""

    name: str
    action: str
    max_age_seconds: float = Field(gt=0)


class PurgeStep(BaseModel):
    policy: str
    cutoff: datetime
    cursor: list[CursorValue] | None = None  # the last primary key handled; None: from the start
    max_batches: int = Field(ge=1)


class PurgeProgress(BaseModel):
    policy: str
    rows: int
    batches: int
    cursor: list[CursorValue] | None
    finished: bool


class PolicyTally(BaseModel):
    policy: str
    action: str
    cutoff: datetime
    rows: int = 0
    batches: int = 0
    finished: bool = False
    error: str | None = None  # the policy's batches failed: the others still ran


class RetentionInput(BaseModel):
    """The schedule's argument, and what continue-as-new carries forward."""

    batches_per_activity: int = Field(default=1, ge=1)
    activities_per_run: int = Field(default=200, ge=1)
    tallies: list[PolicyTally] | None = None  # None: a fresh run plans from the worker's config
    cursor: list[CursorValue] | None = None
    runs: int = 1
    started_at: datetime | None = None


class RetentionResult(BaseModel):
    policies: list[PolicyTally]
    rows: int
    runs: int


class RecordRetention(BaseModel):
    workflow_id: str
    run_id: str
    result: RetentionResult


# --- engine and start-up check ------------------------------------------------------------


def read_url(policy: RetentionPolicy) -> str:
    """The database URL, from the environment or a file; it never travels through Temporal."""
    return read_database_url(f"retention[{policy.name}]", policy.url_env, policy.url_file)


def policy_engine(policy: RetentionPolicy) -> Engine:
    # The URL never goes into a message: it may carry a password.
    try:
        url = make_url(read_url(policy))
    except sa_exc.ArgumentError:
        raise ConfigError(f"retention[{policy.name}]: the database URL is not a SQLAlchemy URL") from None
    try:
        return create_engine(url, pool_pre_ping=True)
    except ImportError:
        raise ConfigError(f"retention[{policy.name}]: no driver installed for {url.drivername!r}") from None


def check_policy(policy: RetentionPolicy, engine: Engine) -> Table:
    """Reflect the policy's table and check every named column; ConfigError (one line) otherwise."""
    where = f"retention[{policy.name}]"
    table = reflect_table(engine, policy.table, policy.db_schema, where, missing_at=f"{where}.table")

    def column(name: str, field: str) -> Column[Any]:
        return named_column(table, name, f"{where}.{field}")

    stamp = column(policy.timestamp, "timestamp")
    if not isinstance(stamp.type, (sqltypes.Date, sqltypes.DateTime)):
        raise ConfigError(f"{where}.timestamp: column {policy.table}.{policy.timestamp} is {stamp.type}, not a date or datetime")
    for name in policy.where:
        column(name, f"where.{name}")
    pk = list(table.primary_key.columns)
    if not pk:
        raise ConfigError(f"{where}: table {policy.table!r} has no primary key; rows are purged by key in batches")
    for key in pk:
        if not isinstance(key.type, (sqltypes.Integer, sqltypes.String)):
            # The keyset cursor travels through Temporal as JSON: integers and text only.
            raise ConfigError(f"{where}: primary key column {key.name!r} is {key.type}; integer or text keys only")
    unique = _unique_columns(engine, policy) if policy.columns else set()  # type: ignore[arg-type]
    for name, strategy in policy.columns.items():
        problem = _misfit(column(name, f"columns.{name}"), strategy, unique)
        if problem:
            raise ConfigError(f"{where}.columns.{name}: strategy {strategy.value!r} does not fit {policy.table}.{name}: {problem}")
    return table


# --- the purger -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    rows: int
    cursor: list[CursorValue] | None  # None: the table is done for this cutoff


class Purger:
    """Deletes or anonymizes one policy's expired rows, a batch per transaction. Stateless between calls."""

    def __init__(self, policy: RetentionPolicy, engine: Engine, pepper: bytes) -> None:
        self.policy = policy
        self.engine = engine
        self.table = check_policy(policy, engine)
        self._pseudonyms = Pseudonyms(pepper)
        self._pk = list(self.table.primary_key.columns)
        self._targets = [(self.table.c[name], strategy) for name, strategy in policy.columns.items()]
        stamp = self.table.c[policy.timestamp]
        self._stamp_is_date = not isinstance(stamp.type, sqltypes.DateTime)
        self._stamp_tz = bool(getattr(stamp.type, "timezone", False))
        conditions: list[ColumnElement[bool]] = [stamp < bindparam("lethe_cutoff", type_=stamp.type)]
        for i, name in enumerate(policy.where):
            conditions.append(self.table.c[name] == bindparam(f"lethe_where_{i}", type_=self.table.c[name].type))
        self._where_values = {f"lethe_where_{i}": value for i, value in enumerate(policy.where.values())}
        if policy.action == "anonymize":
            conditions.append(or_(*(self._pending(column, strategy) for column, strategy in self._targets if strategy in RETENTION_MARKERS)))
        self._expired = and_(*conditions)

    @staticmethod
    def _pending(column: Column[Any], strategy: Strategy) -> ColumnElement[bool]:
        if strategy is Strategy.NULL:
            return column.is_not(None)
        return and_(column.is_not(None), column != REDACTED)

    def _past(self, cursor: list[CursorValue] | None) -> ColumnElement[bool]:
        if cursor is None:
            return true()
        if len(self._pk) == 1:
            return self._pk[0] > cursor[0]
        return tuple_(*self._pk) > tuple_(*cursor)

    def _upto(self, boundary: tuple[Any, ...]) -> ColumnElement[bool]:
        if len(self._pk) == 1:
            return self._pk[0] <= boundary[0]
        return tuple_(*self._pk) <= tuple_(*boundary)

    def params(self, cutoff: datetime) -> dict[str, Any]:
        return {"lethe_cutoff": self._cutoff_value(cutoff), **self._where_values}

    def _cutoff_value(self, cutoff: datetime) -> datetime | date:
        utc = cutoff.astimezone(UTC)
        if self._stamp_is_date:
            return utc.date()
        # Naive timestamp columns are read as UTC.
        return utc if self._stamp_tz else utc.replace(tzinfo=None)

    def batch(self, cutoff: datetime, cursor: list[CursorValue] | None) -> Batch:
        """One transaction: up to batch_size expired rows past the cursor."""
        try:
            with self.engine.begin() as connection:
                if self.policy.action == "delete":
                    return self._delete(connection, cutoff, cursor)
                return self._anonymize(connection, cutoff, cursor)
        except sa_exc.DBAPIError as exc:
            # Not str(exc): SQLAlchemy appends the bound parameters, row values among them.
            retryable = isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError)) or exc.connection_invalidated
            raise ResidualError(
                f"retention[{self.policy.name}]: a batch failed with {_db_error_name(exc)}; it was rolled back", retryable
            ) from None

    def _delete(self, connection: Any, cutoff: datetime, cursor: list[CursorValue] | None) -> Batch:
        params = self.params(cutoff)
        # The batch's last key, then one ranged DELETE: no key list to bind, whatever the batch size.
        last = connection.execute(
            select(*self._pk)
            .where(self._expired, self._past(cursor))
            .order_by(*self._pk)
            .offset(self.policy.batch_size - 1)
            .limit(1),
            params,
        ).first()
        statement = delete(self.table).where(self._expired, self._past(cursor))
        if last is not None:
            statement = statement.where(self._upto(tuple(last)))
        rows = connection.execute(statement, params).rowcount
        return Batch(rows=rows, cursor=list(last) if last is not None else None)

    def _anonymize(self, connection: Any, cutoff: datetime, cursor: list[CursorValue] | None) -> Batch:
        params = self.params(cutoff)
        width = len(self._pk)
        found = connection.execute(
            select(*self._pk, *(column for column, _ in self._targets))
            .where(self._expired, self._past(cursor))
            .order_by(*self._pk)  # one lock order for every run, so two runs cannot deadlock
            .limit(self.policy.batch_size)
            .with_for_update(),
            params,
        ).all()
        if not found:
            return Batch(rows=0, cursor=None)
        update = (
            self.table.update()
            .where(and_(*(pk == bindparam(f"lethe_pk_{i}", type_=pk.type) for i, pk in enumerate(self._pk))), self._expired)
            .values({column: bindparam(f"lethe_new_{i}", type_=column.type) for i, (column, _) in enumerate(self._targets)})
        )
        values = []
        for row in found:
            item = {**params, **{f"lethe_pk_{i}": row[i] for i in range(width)}}
            for i, (column, strategy) in enumerate(self._targets):
                try:
                    item[f"lethe_new_{i}"] = apply_strategy(strategy, row[width + i], self._pseudonyms)
                except TypeError as exc:
                    raise ResidualError(f"retention[{self.policy.name}].columns.{column.name}: {exc}", retryable=False) from None
            values.append(item)
        result = connection.execute(update, values)
        rows = result.rowcount if connection.dialect.supports_sane_multi_rowcount else len(values)
        done = len(found) < self.policy.batch_size
        return Batch(rows=rows, cursor=None if done else list(found[-1][:width]))

    def run(self, cutoff: datetime, progress: Callable[[Batch], None] | None = None) -> tuple[int, int]:
        """Every expired row, batch by batch (for tests and one-off use); (rows, batches)."""
        rows = batches = 0
        cursor: list[CursorValue] | None = None
        while True:
            done = self.batch(cutoff, cursor)
            rows, batches = rows + done.rows, batches + 1
            if progress is not None:
                progress(done)
            if done.cursor is None:
                return rows, batches
            cursor = done.cursor
