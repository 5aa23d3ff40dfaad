"""HMAC-SHA256 request signatures: `X-Lethe-Signature: sha256=<hex>` over `timestamp + "." + body`.

The timestamp (`X-Lethe-Timestamp`, Unix seconds) is signed too, so a captured request cannot
be replayed after the window; within it, replay.py remembers signatures already used.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import timedelta

TIMESTAMP_HEADER = "X-Lethe-Timestamp"
SIGNATURE_HEADER = "X-Lethe-Signature"
_TIMESTAMP = re.compile(r"^\d{1,12}$")
_SIGNATURE = re.compile(r"^sha256=([0-9a-fA-F]{64})$")


class SignatureError(Exception):
    """Why a signed request is refused; the message is safe to return to the sender."""


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: bytes, timestamp: str | None, signature: str | None, body: bytes, now: float, window: timedelta) -> str:
    """Check a signature; returns its hex digest (the replay key) or raises SignatureError."""
    if not timestamp or not _TIMESTAMP.match(timestamp):
        raise SignatureError(f"{TIMESTAMP_HEADER}: missing or not Unix seconds")
    match = _SIGNATURE.match(signature or "")
    if match is None:
        raise SignatureError(f"{SIGNATURE_HEADER}: missing or not sha256=<64 hex digits>")
    expected = sign(secret, int(timestamp), body).removeprefix("sha256=")
    # Checked before the clock, so an unsigned probe learns nothing about our time window.
    if not hmac.compare_digest(expected, match.group(1).lower()):
        raise SignatureError(f"{SIGNATURE_HEADER}: does not match the body and timestamp")
    if abs(now - int(timestamp)) > window.total_seconds():
        raise SignatureError(
            f"{TIMESTAMP_HEADER}: outside the {int(window.total_seconds())} s replay window; sign again with the current time"
        )
    return expected
