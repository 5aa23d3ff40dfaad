"""Refusals: one JSON shape (models.Problem) for every error, naming the field, never the value."""

from __future__ import annotations

from typing import TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)


class Refused(Exception):
    def __init__(self, status: int, error: str, message: str, field: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.field, self.headers = status, error, message, field, headers


def unauthorized(message: str) -> Refused:
    return Refused(401, "unauthorized", message, headers={"WWW-Authenticate": 'Bearer realm="lethe"'})


def unavailable(message: str) -> Refused:
    return Refused(503, "unavailable", message, headers={"Retry-After": "5"})


async def refused_response(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Refused)
    return JSONResponse(
        {"error": exc.error, "message": exc.message, "field": exc.field}, status_code=exc.status, headers=exc.headers
    )


def field_of(location: tuple[int | str, ...]) -> str:
    """`data.events[3].uuid` from pydantic's ("data", "events", 3, "uuid")."""
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


def parse_body(model: type[ModelT], body: bytes) -> ModelT:
    """Validate a JSON body; a 422 names the first bad field and what is wrong, not what was sent."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        field = field_of(tuple(first["loc"]))
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            message = "unknown field"
        elif first["type"] == "json_invalid":
            message = "not valid JSON"
        raise Refused(422, "invalid", f"{field}: {message}", field) from None
