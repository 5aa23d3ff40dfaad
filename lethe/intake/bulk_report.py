"""What `starter.py bulk` shows: a progress bar with rate and ETA, then a summary without identifiers."""

from __future__ import annotations

from rich.console import Console, Group
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from lethe.intake.bulk import Rejected, Tally


class RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.0f} cases/s" if task.speed else "- cases/s")


def progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )


def summary(tally: Tally, invalid: list[Rejected]) -> Group:
    totals = Table(title="bulk offboarding")
    totals.add_column("outcome")
    totals.add_column("rows", justify="right")
    totals.add_row("started", str(tally.started))
    totals.add_row("joined existing", str(tally.joined))
    totals.add_row("invalid", str(len(invalid)))
    if tally.failed:
        totals.add_row("failed (run again)", str(len(tally.failed)))
    parts: list[Table] = [totals]
    rejected = sorted([*invalid, *tally.failed], key=lambda row: row.line)
    if rejected:
        lines = Table(title="rows not started")
        lines.add_column("line", justify="right")
        lines.add_column("reason")
        for row in rejected:
            lines.add_row(str(row.line), row.reason)
        parts.append(lines)
    return Group(*parts)
