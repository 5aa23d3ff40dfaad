"""Subject references: the only handle on a person that Temporal ever sees."""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata

SUBJECT_REF_LENGTH = 32  # hex characters: 128 bits of HMAC-SHA256
_REF_PATTERN = re.compile(rf"^[0-9a-f]{{{SUBJECT_REF_LENGTH}}}$")
WORKFLOW_ID_PREFIX = "forget-"


def normalize_identifier(identifier: str) -> str:
    """The form two spellings of one identifier share: NFC, trimmed, case-folded.

    Case-folding matches RFC 7643, where userName and email addresses compare
    case-insensitively; "Alice@Example.com" and "alice@example.com" are one person.
    """
    normalized = unicodedata.normalize("NFC", identifier).strip().casefold()
    if not normalized:
        raise ValueError("identifier is empty")
    return normalized


def subject_ref(pepper: bytes, identifier: str) -> str:
    digest = hmac.new(pepper, normalize_identifier(identifier).encode(), hashlib.sha256)
    return digest.hexdigest()[:SUBJECT_REF_LENGTH]


def is_subject_ref(text: str) -> bool:
    return bool(_REF_PATTERN.match(text))


def workflow_id(ref: str) -> str:
    return f"{WORKFLOW_ID_PREFIX}{ref}"


def ref_from_workflow_id(text: str) -> str | None:
    if text.startswith(WORKFLOW_ID_PREFIX) and is_subject_ref(text[len(WORKFLOW_ID_PREFIX) :]):
        return text[len(WORKFLOW_ID_PREFIX) :]
    return None
