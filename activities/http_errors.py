"""One place that decides what an HTTP failure means: retry, wait, or hand to a person.

Messages name the system, the action and the HTTP status, never a URL (filters carry
identifiers) and never a header (tokens).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx
from temporalio.exceptions import ApplicationError

RETRY_AFTER_CAP = timedelta(hours=1)


def retry_after(response: httpx.Response, now: datetime | None = None) -> timedelta | None:
    """The delay a Retry-After header asks for (delta-seconds or an HTTP date)."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        delay = timedelta(seconds=int(value))
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        delay = when - (now or datetime.now(UTC))
    return max(timedelta(0), min(delay, RETRY_AFTER_CAP))


def raise_for_status(response: httpx.Response, system: str, action: str) -> None:
    """Raise the classified ApplicationError for a failed response; return on 1xx-3xx."""
    status = response.status_code
    if status < 400:
        return
    where = f"{action} in {system}: HTTP {status}"
    if status in (401, 403):
        raise ApplicationError(
            f"{where}: credentials rejected; fix the token for system {system!r}, then resolve with retry",
            type="Credentials",
            non_retryable=True,
        )
    if status in (429, 503) or status >= 500:
        raise ApplicationError(
            f"{where}: system unavailable or throttling; retrying",
            type="Unavailable",
            next_retry_delay=retry_after(response),
        )
    raise ApplicationError(
        f"{where}: request rejected; check the system's configuration (match attribute, SCIM support)",
        type="Rejected",
        non_retryable=True,
    )


def transport_error(exc: httpx.TransportError, system: str, action: str) -> ApplicationError:
    """A retryable error for timeouts and connection failures, without the request's URL."""
    return ApplicationError(
        f"{action} in {system}: {type(exc).__name__} (no answer); retrying",
        type="Unreachable",
    )
