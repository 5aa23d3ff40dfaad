"""The documented request and response bodies of the intake API."""

from __future__ import annotations

import unicodedata
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

MAX_IDENTIFIER = 320  # the longest email address RFC 5321 allows


# A Literal rather than an enum keeps the schema self-contained in the OpenAPI request body.
EventType = Literal["leaver", "erasure-request", "rehire", "legal-hold", "legal-hold-release"]
STARTS_A_CASE = ("leaver", "erasure-request")
# The ForgetSubject signal each other event type becomes.
SIGNALS = {"rehire": "rehire", "legal-hold": "hold", "legal-hold-release": "release"}
HOLDS = ("legal-hold", "legal-hold-release")


def _identifier(value: str) -> str:
    # Messages never repeat the value: it is personal data.
    if not value.strip():
        raise ValueError("must not be empty or blank")
    if any(unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") for char in value):
        raise ValueError("must not contain control or format characters")
    return value


def is_identifier(value: str) -> bool:
    try:
        _identifier(value)
    except ValueError:
        return False
    return len(value) <= MAX_IDENTIFIER


Identifier = Annotated[str, Field(min_length=1, max_length=MAX_IDENTIFIER), AfterValidator(_identifier)]


class Event(BaseModel):
    """One thing that happened to a person, as an HR system or IdP tells Lethe."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "type": "leaver",
                    "subject": "alice@example.com",
                    "effective_at": "2025-03-31T17:00:00Z",
                    "source": "workday",
                    "idempotency_key": "wd-term-000123",
                }
            ]
        },
    )

    type: EventType = Field(description="what happened")
    subject: Identifier = Field(description="the person's identifier (email, userName or externalId)")
    effective_at: Annotated[AwareDatetime, Field(strict=True)] = Field(
        description="when it takes effect, RFC 3339 with an offset (recorded; cases start on receipt)"
    )
    source: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="the sending system, e.g. workday")
    idempotency_key: str = Field(
        pattern=r"^[\x21-\x7e]{1,200}$",
        description="unique per event and source; a repeated key is acknowledged and not acted on again",
    )
    system: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9-]{0,39}$",
        description="legal-hold / legal-hold-release only: one configured system (default: all)",
    )


class Accepted(BaseModel):
    workflow_id: str = Field(description="the case: forget-<subject_ref>")
    outcome: Literal["started", "joined", "signalled", "duplicate"]


class Problem(BaseModel):
    """Every error: a stable code, a message naming the field, never the value sent."""

    error: str
    message: str
    field: str | None = None


class OktaTarget(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str
    alternate_id: str | None = Field(default=None, alias="alternateId", max_length=MAX_IDENTIFIER)


class OktaEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    uuid: str = Field(min_length=1, max_length=100)
    event_type: str = Field(alias="eventType", max_length=200)
    target: list[OktaTarget] | None = Field(default=None, max_length=20)


class OktaEvents(BaseModel):
    model_config = ConfigDict(extra="ignore")

    events: list[OktaEvent] = Field(max_length=100)


class OktaHook(BaseModel):
    """An Okta event hook delivery (only the fields Lethe reads)."""

    model_config = ConfigDict(extra="ignore")

    data: OktaEvents


class OktaAccepted(BaseModel):
    cases: list[str] = Field(description="workflow ids of the cases started or joined")
    duplicates: int = Field(description="events delivered before")
    ignored: int = Field(description="events of other types, or without a User target")


class OktaVerification(BaseModel):
    verification: str
