"""Human durations in config and on the command line: "30d", "12h", "90s", "0"."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PATTERN = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")


def parse_duration(text: str | int | float | timedelta) -> timedelta:
    """Parse "30d" / "12h" / "15m" / "90s" / "0" (bare numbers are seconds)."""
    if isinstance(text, timedelta):
        return text
    if isinstance(text, (int, float)):
        if text < 0:
            raise ValueError(f"duration must not be negative, got {text}")
        return timedelta(seconds=text)
    match = _PATTERN.match(text)
    if not match:
        raise ValueError(f"invalid duration {text!r}: use a whole number with s, m, h, d or w, e.g. '30d'")
    value, unit = match.groups()
    return timedelta(seconds=int(value) * _UNITS[unit or "s"])


def format_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit in ("w", "d", "h", "m"):
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"
