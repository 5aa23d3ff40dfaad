"""Lethe's configuration: lethe.toml (or $LETHE_CONFIG), overridden by LETHE_* variables.

Secrets never live in the file itself: a system names the environment variable or file
its bearer token comes from, and the worker reads it there.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import tomllib
import zoneinfo
from contextvars import ContextVar
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from lethe.config_types import ConfigError, ConfirmPolicy, Duration, Section, SystemBase
from lethe.erasure_job import ErasureJobConfig
from lethe.residual import ResidualStore, unique_store_names
from lethe.residual import STORE_NAME_PATTERN, Strategy  # retention policies reuse the residual strategies

__all__ = ["ConfigError", "ConfirmPolicy", "Duration", "ErasureJobConfig", "Settings", "SystemConfig", "load_settings"]

DEFAULT_CONFIG_FILE = "lethe.toml"
_config_file: ContextVar[Path | None] = ContextVar("lethe_config_file", default=None)

class TemporalSettings(Section):
    address: str = "127.0.0.1:7233"
    namespace: str = "default"
    task_queue: str = Field(default="lethe", pattern=r"^[A-Za-z0-9._-]+$")
    ui_url: str = "http://127.0.0.1:8233"

    def workflow_link(self, workflow_id: str) -> str:
        return f"{self.ui_url.rstrip('/')}/namespaces/{self.namespace}/workflows/{workflow_id}"


class LedgerSettings(Section):
    url: str = "sqlite:///lethe.db"


class SystemConfig(SystemBase):
    """A SCIM 2.0 service provider: accounts found by a filter, deactivated, deleted, confirmed."""

    kind: Literal["scim"]
    match: Literal["userName", "emails", "externalId"] = "userName"
    on_leave: Literal["delete", "deactivate"] = "delete"
    confirm: ConfirmPolicy = ConfirmPolicy()


AnySystem = Annotated[SystemConfig | ErasureJobConfig, Field(discriminator="kind")]


class GraceSettings(Section):
    """How long a deactivated account waits before deletion, per reason."""

    leaver: Duration = timedelta(days=30)
    erasure_request: Duration = Field(default=timedelta(0), alias="erasure-request")


class EscalationSettings(Section):
    """Where a case that needs a person is announced, and how often it is repeated."""

    webhooks: list[str] = []
    dpo_webhooks: list[str] = Field(default=[], alias="dpo")
    remind_every: Duration = timedelta(days=1)
    warn_before: Duration = timedelta(days=5)

    @field_validator("webhooks", "dpo_webhooks")
    @classmethod
    def _http_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"webhook {url!r} is not an http(s) URL")
        return urls


class SafetySettings(Section):
    """The deletion circuit breaker's thresholds (a system may set its own)."""

    max_deletions_per_hour: int = Field(default=500, gt=0)
    fleet_max_deletions_per_hour: int = Field(default=2000, gt=0)
    breaker_poll: Duration = timedelta(seconds=30)


class PolicySettings(Section):
    deadline: Duration = timedelta(days=30)  # GDPR Art. 12(3): one month
    erasure_requests_need_approval: bool = False


class IntakeSettings(Section):
    """The intake HTTP service (`starter.py serve`) and bulk offboarding (`starter.py bulk`).

    Secrets are named, never written here: each comes from an environment variable or a file."""

    host: str = "127.0.0.1"
    port: int = Field(default=8788, ge=1, le=65535)
    signing_secret_env: str | None = None  # HMAC-SHA256 key of POST /events
    signing_secret_file: Path | None = None
    bearer_tokens_env: str | None = None  # comma-separated; POST /events and /scim/v2
    bearer_tokens_file: Path | None = None  # one token a line
    okta_secret_env: str | None = None  # the Authorization header value of Okta event hooks
    okta_secret_file: Path | None = None
    replay_window: Duration = timedelta(minutes=5)
    dedupe_window: Duration = timedelta(hours=24)  # how long an idempotency key is remembered
    max_body: int = Field(default=65536, ge=1024, le=16 * 1024 * 1024)
    scim_identifier: Literal["userName", "emails", "externalId"] = "userName"
    bulk_rate: float = Field(default=20, gt=0, le=10000)  # cases started per second



# --- retention and schedules (issue 6; the SQL side is lethe.retention) ---------------------

RETENTION_MARKERS = (Strategy.NULL, Strategy.REDACT)


class RetentionPolicy(Section):
    """One `[[retention]]` entry: rows of a table older than `max_age` are anonymized or deleted."""

    name: str = Field(pattern=STORE_NAME_PATTERN, description="unique, [a-z0-9-]")
    url_env: str | None = Field(default=None, description="environment variable holding the SQLAlchemy URL")
    url_file: Path | None = Field(default=None, description="file holding the SQLAlchemy URL")
    table: str = Field(min_length=1)
    db_schema: str | None = Field(default=None, alias="schema")
    timestamp: str = Field(min_length=1, description="the date or datetime column whose age counts")
    max_age: Duration
    where: dict[str, str | int | float | bool] = Field(default={}, description="column = value, all must hold")
    action: Literal["anonymize", "delete"]
    columns: dict[str, Strategy] = {}
    batch_size: int = Field(default=1000, ge=1, le=50_000)

    @model_validator(mode="after")
    def _consistent(self) -> RetentionPolicy:
        if (self.url_env is None) == (self.url_file is None):
            raise ValueError("set exactly one of url_env or url_file")
        if self.max_age <= timedelta(0):
            raise ValueError("max_age must be positive")
        if self.action == "delete" and self.columns:
            raise ValueError("columns: a delete policy takes no columns")
        if self.action == "anonymize" and not any(s in RETENTION_MARKERS for s in self.columns.values()):
            # A row is done once its null/redact columns read so; without one, every run redoes every old row.
            raise ValueError("columns: an anonymize policy needs at least one column with strategy null or redact")
        return self


def unique_policy_names(policies: list[RetentionPolicy]) -> list[RetentionPolicy]:
    seen: set[str] = set()
    for policy in policies:
        if policy.name in seen:
            raise ValueError(f"retention policy name {policy.name!r} is used twice")
        seen.add(policy.name)
    return policies


class ScheduleSpecSettings(Section):
    """When a Temporal Schedule fires: a cron expression in a time zone."""

    id: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    cron: str = Field(description="5 fields (minute hour day month weekday), or 7 (second first, year last)")
    time_zone: str = "UTC"
    catchup_window: Duration = timedelta(hours=6)  # a run missed while the server was down still happens
    paused: bool = False  # on creation only: `schedule apply` keeps an operator's pause

    @field_validator("cron")
    @classmethod
    def _cron_shape(cls, cron: str) -> str:
        if not cron.startswith("@") and len(cron.split()) not in (5, 7):
            raise ValueError("use 5 fields (minute hour day month weekday) or 7 (second ... year), or @daily")
        return cron

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin") from None
        return name


class RetentionScheduleSettings(ScheduleSpecSettings):
    id: str = Field(default="lethe-retention", pattern=r"^[A-Za-z0-9._-]+$")
    cron: str = "0 3 * * *"
    batches_per_activity: int = Field(default=1, ge=1, le=100)
    activities_per_run: int = Field(default=200, ge=1, le=1000)  # then continue-as-new


class ReconcileScheduleSettings(ScheduleSpecSettings):
    id: str = Field(default="lethe-reconcile", pattern=r"^[A-Za-z0-9._-]+$")
    cron: str = "30 4 * * *"
    page_size: int = Field(default=100, ge=1, le=1000)
    pages_per_run: int = Field(default=200, ge=1, le=1000)  # then continue-as-new
    inactive_grace: Duration | None = None  # how long an account may sit deactivated; default [grace].leaver


class SchedulesSettings(Section):
    retention: RetentionScheduleSettings = RetentionScheduleSettings()
    reconcile: ReconcileScheduleSettings = ReconcileScheduleSettings()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LETHE_",
        env_nested_delimiter="__",
        extra="forbid",
        populate_by_name=True,
    )

    temporal: TemporalSettings = TemporalSettings()
    ledger: LedgerSettings = LedgerSettings()
    grace: GraceSettings = GraceSettings()
    escalation: EscalationSettings = EscalationSettings()
    policy: PolicySettings = PolicySettings()
    safety: SafetySettings = SafetySettings()
    intake: IntakeSettings = IntakeSettings()
    systems: list[AnySystem] = []
    residual: list[ResidualStore] = []
    retention: Annotated[list[RetentionPolicy], AfterValidator(unique_policy_names)] = []
    schedules: SchedulesSettings = SchedulesSettings()
    pepper: SecretStr | None = None
    pepper_file: Path | None = None
    certificate_key: SecretStr | None = None

    @field_validator("systems")
    @classmethod
    def _unique_names(cls, systems: list[SystemConfig | ErasureJobConfig]) -> list[SystemConfig | ErasureJobConfig]:
        seen: set[str] = set()
        for system in systems:
            if system.name in seen:
                raise ValueError(f"system name {system.name!r} is used twice")
            seen.add(system.name)
        return systems

    @field_validator("residual")
    @classmethod
    def _unique_residual(cls, stores: list[ResidualStore]) -> list[ResidualStore]:
        return unique_store_names(stores)

    @model_validator(mode="after")
    def _distinct_names(self) -> Settings:
        # Operators name either kind in `resolve --system NAME`: one name must mean one thing.
        clash = {s.name for s in self.systems} & {r.name for r in self.residual}
        if clash:
            raise ValueError(f"name {sorted(clash)[0]!r} is used by a system and a residual store")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = _config_file.get() or Path(os.environ.get("LETHE_CONFIG", DEFAULT_CONFIG_FILE))
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=toml_file))

    def system(self, name: str) -> SystemConfig | ErasureJobConfig:
        for system in self.systems:
            if system.name == name:
                return system
        raise KeyError(name)

    def pepper_bytes(self) -> bytes:
        if self.pepper is not None:
            value = self.pepper.get_secret_value()
        elif self.pepper_file is not None:
            try:
                value = self.pepper_file.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"pepper_file: cannot read {self.pepper_file}: {exc.strerror}") from None
        else:
            raise ConfigError("pepper: not set; set LETHE_PEPPER or pepper_file (a long random secret)")
        if len(value) < 16:
            raise ConfigError("pepper: too short; use at least 16 characters of random secret")
        return value.encode()

    def certificate_key_bytes(self) -> bytes:
        """The certificate signing key; derived from the pepper when not set on its own."""
        if self.certificate_key is not None:
            return self.certificate_key.get_secret_value().encode()
        return hmac.new(self.pepper_bytes(), b"lethe certificate key", hashlib.sha256).digest()


def _describe(error: dict[str, Any], raw: dict[str, Any]) -> str:
    location = list(error["loc"])
    if len(location) >= 3 and location[0] == "systems" and location[2] in ("scim", "erasure-job"):
        del location[2]  # the union's tag adds nothing the system's name does not say
    # Name a list entry by its name rather than its index: "systems[chat].match".
    if len(location) >= 2 and location[0] in ("systems", "residual", "retention") and isinstance(location[1], int):
        entries = raw.get(location[0])
        name = None
        if isinstance(entries, list) and location[1] < len(entries) and isinstance(entries[location[1]], dict):
            name = entries[location[1]].get("name")
        location[:2] = [f"{location[0]}[{name if name else location[1]}]"]
    field = ".".join(str(part) for part in location) or "config"
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    elif error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        field += ".kind"
        message = f"unknown or missing kind; use one of {error['ctx']['expected_tags']}"
    if "input" in error and error["type"] != "missing" and not isinstance(error["input"], (dict, list)):
        message = f"{message} (got {error['input']!r})"
    return f"{field}: {message}"


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Load and validate settings, raising ConfigError with a one-line message."""
    path = Path(config_file) if config_file else None
    if path is not None and not path.is_file():
        raise ConfigError(f"config: file {path} does not exist")
    token = _config_file.set(path)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(_describe(first, _raw_config(path))) from None
    except ValueError as exc:  # a TOML syntax error surfaces here
        raise ConfigError(f"config: {exc}") from None
    finally:
        _config_file.reset(token)


def _raw_config(path: Path | None) -> dict[str, Any]:
    file = path or Path(os.environ.get("LETHE_CONFIG", DEFAULT_CONFIG_FILE))
    try:
        return tomllib.loads(file.read_text())
    except (OSError, ValueError):
        return {}
