"""Building blocks of Lethe's configuration, shared by settings.py and every connector kind."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from lethe.durations import parse_duration

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class ConfigError(Exception):
    """Invalid configuration; the message is one line naming the field and the problem."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ConfirmPolicy(Section):
    every: Duration = timedelta(seconds=10)
    within: Duration = timedelta(days=7)

    @model_validator(mode="after")
    def _positive(self) -> ConfirmPolicy:
        if self.every <= timedelta(0) or self.within <= timedelta(0):
            raise ValueError("confirm.every and confirm.within must be positive")
        return self


class SystemBase(Section):
    """What every connected system has, whatever its kind."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$", description="unique, [a-z0-9-]")
    url: str = Field(pattern=r"^https?://[^\s]+$", description="the system's base URL")
    token_env: str | None = None
    token_file: Path | None = None
    rate_limit: float = Field(default=50, gt=0, description="requests per second, fleet-wide")
    timeout: Duration = timedelta(seconds=15)
    max_deletions_per_hour: int | None = Field(default=None, gt=0, description="overrides [safety]")

    @property
    def base_url(self) -> str:
        return self.url.rstrip("/")

    def read_token(self) -> str | None:
        """The bearer token, from the environment or a file, never the config file itself;
        None when the system needs none."""
        if self.token_env:
            token = os.environ.get(self.token_env)
            if not token:
                raise ConfigError(f"systems[{self.name}].token_env: environment variable {self.token_env} is not set")
            return token
        if self.token_file:
            try:
                return self.token_file.read_text().strip()
            except OSError as exc:
                raise ConfigError(
                    f"systems[{self.name}].token_file: cannot read {self.token_file}: {exc.strerror}"
                ) from None
        return None
