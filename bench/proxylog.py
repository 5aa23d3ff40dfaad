"""What the proxies saw: request counts, 429s, and when each account was deactivated."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from lethe.faultproxy import LogEntry


def answered_at(entry: LogEntry, latency_ms: float) -> float:
    """The monotonic time the proxy answered: `mono` is taken after the added latency,
    `ms` counts from arrival."""
    return entry.mono + (entry.ms - latency_ms) / 1000


def account_id(entry: LogEntry) -> str | None:
    prefix = "/Users/"
    return entry.path[len(prefix):] if entry.path.startswith(prefix) else None


def forwarded_by_method(entries: Iterable[LogEntry]) -> Counter[str]:
    return Counter(entry.method for entry in entries if entry.forwarded)


def acknowledged_patches(entries: Iterable[LogEntry], latency_ms: float) -> dict[str, float]:
    """Account id -> when its last successful PATCH was answered."""
    done: dict[str, float] = {}
    for entry in entries:
        if entry.method == "PATCH" and entry.status is not None and 200 <= entry.status < 300:
            account = account_id(entry)
            if account is not None:
                done[account] = max(done.get(account, 0.0), answered_at(entry, latency_ms))
    return done


def deletes_per_account(entries: Iterable[LogEntry]) -> tuple[Counter[str], Counter[str]]:
    """(DELETEs received, DELETEs the server acted on: forwarded and answered 2xx) per account."""
    received: Counter[str] = Counter()
    effective: Counter[str] = Counter()
    for entry in entries:
        account = account_id(entry)
        if entry.method != "DELETE" or account is None:
            continue
        received[account] += 1
        if entry.forwarded and entry.upstream_status is not None and 200 <= entry.upstream_status < 300:
            effective[account] += 1
    return received, effective
