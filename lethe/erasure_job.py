"""Asynchronous vendor erasure APIs (`kind = "erasure-job"`): the config of one such system,
the JSON template that names the subject, and the activities' arguments and results.

A vendor of this kind takes a deletion request, answers with a job id, and finishes hours
or days later; Lethe asks for the job's state until it reads one of `status.done`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, Field, JsonValue, field_validator, model_validator

from lethe.config_types import ConfirmPolicy, Section, SystemBase

IDENTIFIER = "{identifier}"
JOB_ID = "{job_id}"
_PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")
# A dotted path into a JSON response: "id", "data.job.id", "items.0.id".
_DOTTED = r"^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*$"
_PATH = r"^/\S*$"
MAX_JOB_ID = 256  # it travels through Temporal's history in plain text: opaque and short


def _strings(value: JsonValue) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


def _keys(value: JsonValue) -> Iterator[str]:
    if isinstance(value, list):
        for item in value:
            yield from _keys(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _keys(item)


def _only_placeholders(text: str, allowed: set[str]) -> None:
    unknown = sorted(set(_PLACEHOLDER.findall(text)) - allowed)
    if unknown and not allowed:
        raise ValueError(f"must not contain {unknown[0]}: the identifier goes in start.body, never in a URL")
    if unknown:
        raise ValueError(f"unknown placeholder {unknown[0]}; only {' and '.join(sorted(allowed))} is replaced here")


class StartRequest(Section):
    """The request that asks the vendor to erase one subject."""

    method: Literal["POST", "PUT"] = "POST"
    # The identifier goes in the body only: URLs end up in access logs and traces.
    path: str = Field(pattern=_PATH, description="appended to url; no placeholders")
    body: dict[str, JsonValue] = Field(description=f'JSON template; "{IDENTIFIER}" in string values is replaced')
    job_id: str = Field(default="id", pattern=_DOTTED, description="dotted path to the job id in the answer")

    @field_validator("path")
    @classmethod
    def _no_placeholder(cls, path: str) -> str:
        _only_placeholders(path, set())
        return path

    @field_validator("body")
    @classmethod
    def _names_the_subject(cls, body: dict[str, JsonValue]) -> dict[str, JsonValue]:
        if any(IDENTIFIER in key for key in _keys(body)):
            raise ValueError(f"{IDENTIFIER} is replaced in string values only, not in keys")
        strings = list(_strings(body))
        for text in strings:
            _only_placeholders(text, {IDENTIFIER})
        if not any(IDENTIFIER in text for text in strings):
            raise ValueError(f"must contain {IDENTIFIER} in a string value, or the request names nobody")
        return body


class StatusRequest(Section):
    """How to read a job's state, and which states end the wait."""

    path: str = Field(pattern=_PATH, description=f"appended to url; must contain {JOB_ID}")
    field: str = Field(default="state", pattern=_DOTTED, description="dotted path to the state in the answer")
    done: list[str] = Field(min_length=1)
    failed: list[str] = []

    @field_validator("path")
    @classmethod
    def _names_the_job(cls, path: str) -> str:
        _only_placeholders(path, {JOB_ID})
        if JOB_ID not in path:
            raise ValueError(f"must contain {JOB_ID}")
        return path

    @model_validator(mode="after")
    def _disjoint(self) -> StatusRequest:
        both = sorted(set(self.done) & set(self.failed))
        if both:
            raise ValueError(f"state {both[0]!r} is listed in both status.done and status.failed")
        return self


class ErasureJobConfig(SystemBase):
    """A vendor API that erases asynchronously: a start request, then a job to poll."""

    kind: Literal["erasure-job"]
    start: StartRequest
    status: StatusRequest
    # Vendor jobs take hours to weeks ("within 30 days" is common): polling every 10s would
    # spend the rate limit for nothing, and 7 days would give up on honest vendors.
    confirm: ConfirmPolicy = ConfirmPolicy(every=timedelta(minutes=5), within=timedelta(days=30))


def fill_template(template: JsonValue, identifier: str) -> JsonValue:
    """The template with every "{identifier}" in a string value replaced by the identifier.

    Substitution happens on parsed values and the result is serialized as JSON afterwards,
    so quotes, backslashes or braces in the identifier stay data and cannot change the shape
    of the request."""
    if isinstance(template, str):
        return template.replace(IDENTIFIER, identifier)
    if isinstance(template, list):
        return [fill_template(item, identifier) for item in template]
    if isinstance(template, dict):
        return {key: fill_template(item, identifier) for key, item in template.items()}
    return template


_MISSING = object()


def dig(payload: object, path: str) -> object:
    """The value at a dotted path ("data.job.id", "items.0.id") in parsed JSON, or None."""
    value: object = payload
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part, _MISSING)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
        if value is _MISSING:
            return None
    return value


# --- activity arguments and results -------------------------------------------------------


class ErasureJobRef(BaseModel):
    """One vendor job: the job id is the vendor's opaque id, never the subject's identifier."""

    system: str
    job_id: str = Field(min_length=1, max_length=MAX_JOB_ID)


class ErasureJobStarted(BaseModel):
    job_id: str
    outcome: Literal["started", "already-started"]
    http_status: int
    attempts: int = 1


class ErasureJobDone(BaseModel):
    state: str
    http_status: int
    attempts: int = 1
