"""The intake's secrets, read from the environment or files at start-up, never from the config file."""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from lethe.config_types import ConfigError
from lethe.settings import IntakeSettings

MIN_SECRET = 16


def _read(field: str, env: str | None, file: Path | None) -> str | None:
    if env:
        value = os.environ.get(env)
        if not value:
            raise ConfigError(f"intake.{field}_env: environment variable {env} is not set")
        return value
    if file:
        try:
            return file.read_text()
        except OSError as exc:
            raise ConfigError(f"intake.{field}_file: cannot read {file}: {exc.strerror}") from None
    return None


def _long_enough(field: str, value: str) -> str:
    if len(value) < MIN_SECRET:
        raise ConfigError(f"intake.{field}: too short; use at least {MIN_SECRET} characters of random secret")
    return value


@dataclass(frozen=True)
class Credentials:
    signing_secret: bytes | None
    bearer_tokens: tuple[bytes, ...]
    okta_secret: bytes | None

    @classmethod
    def load(cls, intake: IntakeSettings) -> Credentials:
        signing = _read("signing_secret", intake.signing_secret_env, intake.signing_secret_file)
        tokens_text = _read("bearer_tokens", intake.bearer_tokens_env, intake.bearer_tokens_file) or ""
        okta = _read("okta_secret", intake.okta_secret_env, intake.okta_secret_file)
        tokens = [token.strip() for token in tokens_text.replace(",", "\n").splitlines() if token.strip()]
        return cls(
            signing_secret=_long_enough("signing_secret", signing.strip()).encode() if signing else None,
            bearer_tokens=tuple(_long_enough("bearer_tokens", token).encode() for token in tokens),
            okta_secret=_long_enough("okta_secret", okta.strip()).encode() if okta else None,
        )

    def require_some(self) -> None:
        if self.signing_secret is None and not self.bearer_tokens:
            raise ConfigError(
                "intake: no credentials; set intake.signing_secret_env or intake.bearer_tokens_env "
                "(or their _file variants) so events can be authenticated"
            )

    def bearer_ok(self, authorization: str | None) -> bool:
        """`Authorization: Bearer <token>`, compared in constant time against every token."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        presented = token.strip().encode()
        # Compare against all of them, so timing does not tell which one nearly matched.
        return sum(hmac.compare_digest(presented, known) for known in self.bearer_tokens) > 0

    def okta_ok(self, authorization: str | None) -> bool:
        if self.okta_secret is None or authorization is None:
            return False
        return hmac.compare_digest(authorization.strip().encode(), self.okta_secret)
