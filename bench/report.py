"""The bench's one table, and the committed bench/RESULTS.md sections it is copied into."""

from __future__ import annotations

import re
from pathlib import Path

Row = tuple[str, str, str, str]  # measure, value, target, verdict


def verdict(ok: bool | None) -> str:
    return "" if ok is None else ("met" if ok else "MISSED")


def render(rows: list[Row], headers: tuple[str, ...] = ("measure", "value", "target", "")) -> str:
    """A Markdown table, padded so it also reads well in a terminal."""
    cells = [headers, *rows]
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(headers))]
    line = lambda row: "| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def _section(name: str) -> tuple[str, str]:
    return f"<!-- {name} -->", f"<!-- /{name} -->"


def replace_section(path: Path, name: str, body: str, title: str) -> None:
    """Put `body` between the section's markers, creating the file or the section if needed."""
    start, end = _section(name)
    text = path.read_text() if path.exists() else "# Lethe benchmark results\n\nWritten by `make bench` and `make drill`; the machine and its load are in each block.\n"
    block = f"{start}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + f"\n\n## {title}\n\n{block}\n"
    path.write_text(text)


def section_body(path: Path, name: str) -> str:
    start, end = _section(name)
    if not path.exists():
        return ""
    match = re.search(re.escape(start) + r"\n(.*?)" + re.escape(end), path.read_text(), re.S)
    return match.group(1) if match else ""


def optional_path(text: str) -> Path | None:
    """A --markdown argument: '' means no file (Path('') would be the current directory)."""
    return Path(text) if text else None
