"""Residual records: rows a company must keep (tickets, invoices, logs) that must stop naming the person.

Each `[[residual]]` store names one SQL table, the column that carries the subject's
identifier, and a strategy per personal column. The anonymizer finds the subject's rows
case-insensitively, rewrites them batch by batch (one transaction per batch, primary keys
selected first, then updated), and reports how many rows it changed.

Why a row is "done" when its match column no longer holds the identifier: the match column
must itself be anonymized (config validation insists), so a committed batch drops out of
the selection by construction. Re-running finds nothing and changes nothing; a crash
mid-way loses only the uncommitted batch, which the next run selects again. Nothing else
needs to be stored anywhere, neither a progress table in the company's database nor a
checkpoint in Temporal that could lag one commit behind. A store that wanted to keep the
match column would keep rows that still identify the person, which is not anonymization:
for joins and counts, `hash` gives the same pseudonym for the same person everywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator
from sqlalchemy import (
    Column,
    Engine,
    MetaData,
    Row,
    String,
    Table,
    and_,
    bindparam,
    create_engine,
    func,
    inspect,
    make_url,
    select,
    tuple_,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy import types as sqltypes

from lethe.config_types import ConfigError, Section

STORE_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,39}$"
REDACTED = "[redacted]"
PSEUDONYM_LENGTH = 32  # hex characters: 128 bits, like a subject_ref


class Strategy(StrEnum):
    NULL = "null"
    REDACT = "redact"
    HASH = "hash"
    RANDOM = "random"
    MONTH = "month"
    YEAR = "year"
    KEEP_DOMAIN = "keep-domain"


DATE_STRATEGIES = {Strategy.MONTH, Strategy.YEAR}
# The shortest string column each text strategy's output fits in; keep-domain adds the domain.
MIN_LENGTH = {
    Strategy.REDACT: len(REDACTED),
    Strategy.HASH: PSEUDONYM_LENGTH,
    Strategy.RANDOM: PSEUDONYM_LENGTH,
    Strategy.KEEP_DOMAIN: PSEUDONYM_LENGTH + 2,
}


# --- configuration ------------------------------------------------------------------------


class MatchRule(Section):
    column: str = Field(min_length=1, description="the column holding the subject's identifier (compared case-insensitively)")


class ResidualStore(Section):
    """One `[[residual]]` entry of lethe.toml: a table whose rows about the subject are anonymized."""

    name: str = Field(pattern=STORE_NAME_PATTERN, description="unique, [a-z0-9-]")
    url_env: str | None = Field(default=None, description="environment variable holding the SQLAlchemy URL")
    url_file: Path | None = Field(default=None, description="file holding the SQLAlchemy URL")
    table: str = Field(min_length=1)
    db_schema: str | None = Field(default=None, alias="schema", description="schema of the table, if not the default")
    match: MatchRule
    columns: dict[str, Strategy]
    batch_size: int = Field(default=500, ge=1, le=10_000)

    @field_validator("columns", mode="before")
    @classmethod
    def _known_strategies(cls, columns: Any) -> Any:
        if isinstance(columns, Mapping):
            names = [strategy.value for strategy in Strategy]
            for column, strategy in columns.items():
                if strategy not in names:
                    raise ValueError(f"column {column!r}: unknown strategy {strategy!r}; use one of {', '.join(names)}")
        return columns

    @model_validator(mode="after")
    def _consistent(self) -> ResidualStore:
        if (self.url_env is None) == (self.url_file is None):
            raise ValueError("set exactly one of url_env or url_file")
        if not self.columns:
            raise ValueError("columns: name at least one column and its strategy")
        strategy = self.columns.get(self.match.column)
        if strategy is None:
            raise ValueError(
                f"match.column {self.match.column!r} needs a strategy in columns: it holds the identifier, and "
                "anonymizing it is what marks a row as done (use hash to keep joins working)"
            )
        if strategy in DATE_STRATEGIES:
            raise ValueError(f"match.column {self.match.column!r}: strategy {strategy.value!r} does not remove an identifier")
        return self

    def read_url(self) -> str:
        """The database URL, from the environment or a file; it never travels through Temporal."""
        return read_database_url(f"residual[{self.name}]", self.url_env, self.url_file)


def read_database_url(where: str, url_env: str | None, url_file: Path | None) -> str:
    """A SQLAlchemy URL from an environment variable or a file; errors name `where` (e.g. "retention[x]")."""
    if url_env:
        url = os.environ.get(url_env)
        if not url:
            raise ConfigError(f"{where}.url_env: environment variable {url_env} is not set")
        return url
    assert url_file is not None
    try:
        url = url_file.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{where}.url_file: cannot read {url_file}: {exc.strerror}") from None
    if not url:
        raise ConfigError(f"{where}.url_file: {url_file} is empty")
    return url


def reflect_table(engine: Engine, name: str, schema: str | None, where: str, missing_at: str) -> Table:
    """The table as the database has it; a one-line ConfigError (at `missing_at` when absent)."""
    try:
        if not inspect(engine).has_table(name, schema=schema):
            raise ConfigError(f"{missing_at}: table {name!r} does not exist")
        return Table(name, MetaData(), autoload_with=engine, schema=schema)
    except sa_exc.DBAPIError as exc:
        raise ConfigError(f"{where}: cannot read table {name!r} ({_db_error_name(exc)})") from None


def named_column(table: Table, name: str, field: str) -> Column[Any]:
    if name not in table.c:
        raise ConfigError(f"{field}: table {table.name!r} has no column {name!r}")
    return table.c[name]


def unique_store_names(stores: list[ResidualStore]) -> list[ResidualStore]:
    """For Settings' validator: two stores with one name would make `residual.anonymize` ambiguous."""
    seen: set[str] = set()
    for store in stores:
        if store.name in seen:
            raise ValueError(f"residual store name {store.name!r} is used twice")
        seen.add(store.name)
    return stores


def store_engine(store: ResidualStore) -> Engine:
    # The URL itself never goes into a message: it may carry a password.
    try:
        url = make_url(store.read_url())
    except sa_exc.ArgumentError:
        raise ConfigError(f"residual[{store.name}]: the database URL is not a SQLAlchemy URL (dialect+driver://...)") from None
    try:
        return create_engine(url, pool_pre_ping=True)
    except ImportError:
        raise ConfigError(
            f"residual[{store.name}]: no driver installed for {url.drivername!r}; "
            "use postgresql+psycopg://, mysql+pymysql:// or sqlite:///"
        ) from None


# --- start-up check -----------------------------------------------------------------------


def check_store(store: ResidualStore, engine: Engine) -> Table:
    """Reflect the store's table and check every configured column against it.

    Raises ConfigError with one line naming the store, table and column.
    """
    where = f"residual[{store.name}]"
    table = reflect_table(engine, store.table, store.db_schema, where, missing_at=where)

    def column(name: str, field: str) -> Column[Any]:
        return named_column(table, name, f"{where}.{field}")

    if not table.primary_key.columns:
        raise ConfigError(f"{where}: table {store.table!r} has no primary key; rows are updated by primary key in batches")
    if not _is_text(column(store.match.column, "match.column").type):
        raise ConfigError(f"{where}.match.column: column {store.table}.{store.match.column} is not a text column")
    unique = _unique_columns(engine, store)
    for name, strategy in store.columns.items():
        problem = _misfit(column(name, f"columns.{name}"), strategy, unique)
        if problem:
            raise ConfigError(f"{where}.columns.{name}: strategy {strategy.value!r} does not fit {store.table}.{name}: {problem}")
    return table


def _misfit(column: Column[Any], strategy: Strategy, unique: set[str]) -> str | None:
    if column.primary_key:
        return "it is part of the primary key, which other rows may reference"
    if strategy is Strategy.NULL:
        return None if column.nullable else "the column is NOT NULL"
    if strategy in DATE_STRATEGIES:
        return None if isinstance(column.type, (sqltypes.Date, sqltypes.DateTime)) else f"type {column.type} is not a date or datetime"
    if not _is_text(column.type):
        return f"type {column.type} is not a text type"
    length = getattr(column.type, "length", None)
    if length is not None and length < MIN_LENGTH[strategy]:
        return f"its length {length} is shorter than the {MIN_LENGTH[strategy]} characters the strategy writes"
    if strategy is Strategy.REDACT and column.name in unique:
        return "the column is unique and redact writes the same marker into every row; use hash or random"
    return None


def _is_text(type_: sqltypes.TypeEngine[Any]) -> bool:
    return isinstance(type_, sqltypes.String) and not isinstance(type_, sqltypes.Enum)


def _unique_columns(engine: Engine, store: ResidualStore) -> set[str]:
    inspector = inspect(engine)
    single: set[str] = set()
    groups: list[list[str | None]] = [
        list(c["column_names"]) for c in inspector.get_unique_constraints(store.table, schema=store.db_schema)
    ]
    groups += [i["column_names"] for i in inspector.get_indexes(store.table, schema=store.db_schema) if i.get("unique")]
    for names in groups:
        if len(names) == 1 and names[0] is not None:
            single.add(names[0])
    return single


# --- strategies ---------------------------------------------------------------------------


class Pseudonyms:
    """Keyed pseudonyms: the same value maps to the same token in every store, never back."""

    def __init__(self, pepper: bytes) -> None:
        # A key of its own, so that a pseudonym in a company table never equals a subject_ref
        # that Temporal shows in plain text.
        self._key = hmac.new(pepper, b"lethe residual pseudonym v1", hashlib.sha256).digest()

    def of(self, value: str) -> str:
        normalized = unicodedata.normalize("NFC", value).strip().casefold()
        return hmac.digest(self._key, normalized.encode(), "sha256").hex()[:PSEUDONYM_LENGTH]


def apply_strategy(strategy: Strategy, value: Any, pseudonyms: Pseudonyms) -> Any:
    """The anonymized form of one value; NULL stays NULL (there is nothing to hide)."""
    if value is None or strategy is Strategy.NULL:
        return None
    if strategy is Strategy.REDACT:
        return REDACTED
    if strategy is Strategy.RANDOM:
        return secrets.token_hex(PSEUDONYM_LENGTH // 2)
    if strategy in DATE_STRATEGIES:
        if not isinstance(value, date):
            raise TypeError(f"strategy {strategy.value} needs a date or datetime, got a {type(value).__name__}")
        first = value.replace(month=1 if strategy is Strategy.YEAR else value.month, day=1)
        if isinstance(first, datetime):
            first = first.replace(hour=0, minute=0, second=0, microsecond=0)
        return first
    if not isinstance(value, str):
        raise TypeError(f"strategy {strategy.value} needs text, got a {type(value).__name__}")
    if strategy is Strategy.HASH:
        return pseudonyms.of(value)
    # keep-domain: the local part is the whole address's pseudonym, so it equals `hash` of that address.
    _, at, domain = value.rpartition("@")
    return f"{pseudonyms.of(value)}@{domain}" if at else pseudonyms.of(value)


# --- activity input and result (the workflow imports these; no personal data in them) -------


class AnonymizeInput(BaseModel):
    store: str = Field(pattern=STORE_NAME_PATTERN)
    subject_ref: str = Field(pattern=r"^[0-9a-f]{32}$")


class ResidualCounts(BaseModel):
    """What one run did (the activity's result too): counts, no personal data."""

    store: str
    table: str
    rows: int = Field(description="rows anonymized; for the activity, earlier attempts included as far as they heartbeat")
    batches: int = Field(description="committed batches")


# --- the anonymizer -----------------------------------------------------------------------


class ResidualError(Exception):
    """A batch failed; the message names the store and the error class, never a value."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class BatchDone:
    """Progress after one committed batch: no personal data, safe to heartbeat or log."""

    batch: int  # 1-based number of this batch within the run
    rows: int  # rows anonymized by this batch
    total: int  # rows anonymized so far in this run


class Anonymizer:
    """Anonymizes one subject's rows in one store. Construction reflects and checks the table.

    One instance serves many subjects and runs: it keeps no state between calls.
    """

    def __init__(self, store: ResidualStore, engine: Engine, pepper: bytes) -> None:
        self.store = store
        self.engine = engine
        self.table = check_store(store, engine)
        self._pseudonyms = Pseudonyms(pepper)
        self._pk = list(self.table.primary_key.columns)
        self._targets = [(self.table.c[name], strategy) for name, strategy in store.columns.items()]
        matches = func.lower(self.table.c[store.match.column]) == bindparam("lethe_ident", type_=String())
        first = (
            select(*self._pk, *(column for column, _ in self._targets))
            .where(matches)
            .order_by(*self._pk)  # one lock order for every run, so two runs cannot deadlock
            .limit(store.batch_size)
            .with_for_update()  # rendered where the dialect has it (not SQLite)
        )
        self._select_first = first
        self._count = select(func.count()).select_from(self.table).where(matches)
        # Keyset: each batch starts past the previous one, so a run reads the table once, not once per batch.
        after = [bindparam(f"lethe_after_{i}", type_=pk.type) for i, pk in enumerate(self._pk)]
        self._select_next = first.where(tuple_(*self._pk) > tuple_(*after) if len(after) > 1 else self._pk[0] > after[0])
        # The match condition again: a row another run finished meanwhile is left alone.
        self._update = (
            self.table.update()
            .where(and_(*(pk == bindparam(f"lethe_pk_{i}", type_=pk.type) for i, pk in enumerate(self._pk)), matches))
            .values({column: bindparam(f"lethe_new_{i}", type_=column.type) for i, (column, _) in enumerate(self._targets)})
        )

    def batches(self, identifier: str) -> Iterator[int]:
        """Anonymize the subject's rows, one transaction per batch; yields the rows changed after each commit.

        When the keyset reaches the end, one more pass starts from the first key: a row written
        behind the cursor while the run went on is found there, and the run ends only when a
        pass from the start finds nothing.
        """
        ident = _match_key(identifier)
        after: tuple[Any, ...] | None = None
        while True:
            done = self._batch(ident, after)
            if done is None:
                if after is None:
                    return
                after = None
                continue
            rows, after = done
            yield rows

    def _batch(self, ident: str, after: tuple[Any, ...] | None) -> tuple[int, tuple[Any, ...]] | None:
        width = len(self._pk)
        try:
            with self.engine.begin() as connection:
                if after is None:
                    found = connection.execute(self._select_first, {"lethe_ident": ident}).all()
                else:
                    keyset = {f"lethe_after_{i}": key for i, key in enumerate(after)}
                    found = connection.execute(self._select_next, {"lethe_ident": ident, **keyset}).all()
                if not found:
                    return None
                params = [self._new_values(ident, row, width) for row in found]
                result = connection.execute(self._update, params)
                changed = result.rowcount if connection.dialect.supports_sane_multi_rowcount else len(params)
        except sa_exc.DBAPIError as exc:
            # Not str(exc): SQLAlchemy appends the bound parameters, the identifier among them.
            retryable = isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError)) or exc.connection_invalidated
            raise ResidualError(
                f"{self._where()}: a batch failed with {_db_error_name(exc)}; it was rolled back",
                retryable=retryable,
            ) from None
        return changed, tuple(found[-1][:width])

    def _new_values(self, ident: str, row: Row[Any], width: int) -> dict[str, Any]:
        values: dict[str, Any] = {"lethe_ident": ident}
        values.update({f"lethe_pk_{i}": row[i] for i in range(width)})
        for i, (column, strategy) in enumerate(self._targets):
            try:
                values[f"lethe_new_{i}"] = apply_strategy(strategy, row[width + i], self._pseudonyms)
            except TypeError as exc:
                raise ResidualError(f"{self._where()}.columns.{column.name}: {exc}", retryable=False) from None
        return values

    def count(self, identifier: str) -> int:
        """How many rows a run would anonymize now, changing nothing (for dry runs)."""
        with self.engine.connect() as connection:
            return int(connection.execute(self._count, {"lethe_ident": _match_key(identifier)}).scalar_one())

    def run(self, identifier: str, progress: Callable[[BatchDone], None] | None = None) -> ResidualCounts:
        """Anonymize every row of the subject; `progress` runs after each commit."""
        total = batches = 0
        for rows in self.batches(identifier):
            batches += 1
            total += rows
            if progress is not None:
                progress(BatchDone(batch=batches, rows=rows, total=total))
        return ResidualCounts(store=self.store.name, table=self.store.table, rows=total, batches=batches)

    def _where(self) -> str:
        return f"residual[{self.store.name}]"


def anonymize(
    store: ResidualStore,
    engine: Engine,
    identifier: str,
    pepper: bytes,
    progress: Callable[[BatchDone], None] | None = None,
) -> ResidualCounts:
    """Anonymize one subject's rows in one store (checks the table first); idempotent and resumable."""
    return Anonymizer(store, engine, pepper).run(identifier, progress)


def _match_key(identifier: str) -> str:
    key = identifier.strip().lower()
    if not key:
        # An empty identifier would match every row whose column is empty.
        raise ValueError("identifier is empty")
    return key


def _db_error_name(exc: sa_exc.DBAPIError) -> str:
    """The driver's error class and code, which name the problem without quoting any value."""
    orig = exc.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "sqlite_errorname", None)
    if code is None and orig is not None and orig.args and isinstance(orig.args[0], int):
        code = orig.args[0]  # MySQL error number
    name = type(orig).__name__ if orig is not None else type(exc).__name__
    return f"{name} {code}" if code else name
