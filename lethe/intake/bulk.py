"""Bulk offboarding from a CSV file: one case per valid row, paced, resumable.

The file has a header row naming a column `identifier` (any identifier) or `email` (checked
as an email address); other columns are ignored. A row is invalid when its identifier is
empty, its email malformed, or it repeats an earlier row (compared as normalized identifiers).
Running the same file again joins the cases already running: nothing starts twice.
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from email_validator import EmailNotValidError, validate_email
from temporalio.service import RPCError

from lethe.case import Reason
from lethe.intake.cases import CaseDesk
from lethe.intake.models import MAX_IDENTIFIER, is_identifier
from lethe.subject import normalize_identifier

COLUMNS = ("identifier", "email")
MAX_IN_FLIGHT = 32


class BulkFileError(Exception):
    """The file as a whole cannot be used; the message says why (never a row's value)."""


@dataclass(frozen=True)
class Row:
    line: int
    identifier: str


@dataclass(frozen=True)
class Rejected:
    line: int
    reason: str


@dataclass
class BulkFile:
    rows: list[Row] = field(default_factory=list)
    invalid: list[Rejected] = field(default_factory=list)


@dataclass
class Tally:
    started: int = 0
    joined: int = 0
    failed: list[Rejected] = field(default_factory=list)


def _problem(value: str, column: str) -> str | None:
    if not value:
        return f"empty {column}"
    if column == "email":
        try:
            validate_email(value, check_deliverability=False, globally_deliverable=False)
        except EmailNotValidError:
            return "malformed email"
    if not is_identifier(value):
        return f"invalid identifier (control characters, or longer than {MAX_IDENTIFIER})"
    return None


def read_bulk_file(path: Path) -> BulkFile:
    """Line numbers are the file's (the header is line 1); blank lines are skipped."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            return _read(csv.reader(handle))
    except OSError as exc:
        raise BulkFileError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise BulkFileError(f"{path}: not UTF-8 text") from None
    except csv.Error as exc:
        raise BulkFileError(f"{path}: not a CSV file ({exc})") from None


def _read(reader: csv.reader) -> BulkFile:  # type: ignore[valid-type]
    header = [name.strip().lower() for name in next(reader, [])]
    column = next((name for name in COLUMNS if name in header), None)
    if column is None:
        raise BulkFileError("the first line must be a header naming a column 'identifier' or 'email'")
    index = header.index(column)
    result = BulkFile()
    first_line: dict[str, int] = {}
    for record in reader:
        if not record:  # a blank line; a row of empty cells is reported
            continue
        line = reader.line_num
        value = record[index].strip() if index < len(record) else ""
        problem = _problem(value, column)
        if problem is None:
            key = normalize_identifier(value)
            if key in first_line:
                problem = f"duplicate of line {first_line[key]}"
            else:
                first_line[key] = line
        if problem:
            result.invalid.append(Rejected(line, problem))
        else:
            result.rows.append(Row(line, value))
    return result


async def start_cases(desk: CaseDesk, rows: list[Row], reason: Reason, rate: float, advance: Callable[[], None]) -> Tally:
    """Start (or join) one case per row, at most `rate` starts a second, a few in flight at once."""
    tally = Tally()
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(max(1, min(MAX_IN_FLIGHT, int(rate))))
    began = loop.time()

    async def one(row: Row) -> None:
        try:
            opened = await desk.open(row.identifier, reason)
        except RPCError as exc:
            tally.failed.append(Rejected(row.line, f"not started: Temporal answered {exc.status.name if exc.status else 'an error'}; run again"))
        else:
            if opened.outcome == "started":
                tally.started += 1
            else:
                tally.joined += 1
        finally:
            slots.release()
            advance()

    tasks = []
    for number, row in enumerate(rows):
        # Paced from the start, not from the previous row, so slow rows do not lower the rate.
        delay = began + number / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await slots.acquire()
        tasks.append(asyncio.create_task(one(row)))
    await asyncio.gather(*tasks)
    tally.failed.sort(key=lambda rejected: rejected.line)
    return tally
