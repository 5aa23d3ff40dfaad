"""Bulk offboarding: 2,000 rows, 10 of them invalid; reported by line, never by value; a second
run starts nothing new. Against the dev server, on a task queue with no worker (cases just wait)."""

from __future__ import annotations

import argparse
import csv
import random
import time
from pathlib import Path

import pytest
from temporalio.client import Client

from lethe.intake.bulk import BulkFileError, read_bulk_file
from lethe.intake.cli import add_commands, cmd_bulk
from tests.intake_support import count_workflows, intake_settings, settled_count

ROWS = 2000
PERSON = "bulk.person.{:05d}@example.com"
# line number (the header is line 1) -> the broken value there, and the reason the report must give
BROKEN = {
    17: ("", "empty email"),
    18: ("   ", "empty email"),
    400: ("not-an-email", "malformed email"),
    401: ("two@@example.com", "malformed email"),
    777: ("spaced name@example.com", "malformed email"),
    1200: ("", "empty email"),
    1500: ("no-domain@", "malformed email"),
    # duplicates of persons 3, 100, 1000 (told apart by case only, for one of them)
    1800: (PERSON.format(3).upper(), "duplicate of line {}"),
    1999: (PERSON.format(100), "duplicate of line {}"),
    2001: (PERSON.format(1000), "duplicate of line {}"),
}


def write_file(path: Path) -> tuple[list[str], list[tuple[int, str]]]:
    """ROWS data rows. Returns the valid addresses, and (line, reason) of every broken row."""
    valid: list[str] = []
    line_of: dict[str, int] = {}
    expected = []
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["department", "email"])
        for line in range(2, ROWS + 2):
            if line in BROKEN:
                value, reason = BROKEN[line]
                writer.writerow(["sales", value])
                expected.append((line, reason.format(line_of.get(value.lower()))))
            else:
                address = PERSON.format(len(valid))
                valid.append(address)
                line_of[address] = line
                writer.writerow([random.choice(["sales", "ops"]), address])
    return valid, expected


async def run_bulk(path: Path, settings, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, float]:  # type: ignore[no-untyped-def]
    began = time.monotonic()
    code = await cmd_bulk(argparse.Namespace(file=path, reason="leaver", rate=1000.0), settings)
    elapsed = time.monotonic() - began
    captured = capsys.readouterr()
    return code, captured.out + captured.err, elapsed


def cell(output: str, label: str) -> int:
    row = next(line for line in output.splitlines() if f" {label} " in line)
    return int(row.split("│")[2].strip())


async def test_bulk_2000_rows_then_resume(client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = intake_settings(tmp_path, client)
    path = tmp_path / "leavers.csv"
    valid, expected = write_file(path)
    assert len(valid) == ROWS - len(BROKEN) and ("duplicate of line 5") in dict(expected).values()

    code, output, first_run = await run_bulk(path, settings, capsys)
    assert code == 1  # invalid rows make it exit 1, so automation notices
    assert (cell(output, "started"), cell(output, "joined existing"), cell(output, "invalid")) == (1990, 0, 10)
    reported = [[part.strip() for part in row.split("│")[1:3]] for row in output.splitlines() if row.count("│") == 3]
    assert [(int(line), reason) for line, reason in reported if line.isdigit()] == expected
    assert "bulk.person" not in output and "example.com" not in output.lower()  # no value, valid or not
    assert await settled_count(client, settings, 1990) == 1990

    code, output, second_run = await run_bulk(path, settings, capsys)
    assert (cell(output, "started"), cell(output, "joined existing"), cell(output, "invalid")) == (0, 1990, 10)
    assert await count_workflows(client, settings) == 1990
    # Speed is the benchmark's business, not a test's: printed (about 30 s and 5 s on 2 idle cores).
    print(f"\nbulk {ROWS} rows: first run {first_run:.1f} s, second run {second_run:.1f} s")


def test_bulk_file_errors_and_cli_wiring(tmp_path: Path) -> None:
    no_column = tmp_path / "people.csv"
    no_column.write_text("name,mail\nAda,ada@example.com\n")
    with pytest.raises(BulkFileError, match="naming a column 'identifier' or 'email'"):
        read_bulk_file(no_column)
    with pytest.raises(BulkFileError, match="cannot read"):
        read_bulk_file(tmp_path / "missing.csv")
    identifiers = tmp_path / "ids.csv"
    identifiers.write_text('\ufeffidentifier\n"user.one"\n\n"  "\nuser.one\nUSER.TWO\n')
    parsed = read_bulk_file(identifiers)
    assert [(row.line, row.identifier) for row in parsed.rows] == [(2, "user.one"), (6, "USER.TWO")]
    assert [(bad.line, bad.reason) for bad in parsed.invalid] == [(4, "empty identifier"), (5, "duplicate of line 2")]

    root = argparse.ArgumentParser()
    add_commands(root.add_subparsers(dest="command", required=True))
    args = root.parse_args(["bulk", str(identifiers), "--reason", "erasure-request", "--rate", "5"])
    assert (args.handler, args.reason, args.rate) == (cmd_bulk, "erasure-request", 5.0)
    assert root.parse_args(["serve", "--port", "9000"]).port == 9000
    with pytest.raises(SystemExit):
        root.parse_args(["bulk", str(identifiers), "--reason", "leaver", "--rate", "0"])
