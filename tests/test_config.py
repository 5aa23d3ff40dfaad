"""Configuration: the documented shape loads; bad config stops worker and CLI with exit 2 and
one line naming the field."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from lethe.durations import format_duration, parse_duration
from lethe.settings import ConfigError, load_settings

ROOT = Path(__file__).resolve().parent.parent

DOCUMENTED = """
[temporal]
address = "127.0.0.1:7233"
namespace = "default"
task_queue = "lethe"
[ledger]
url = "sqlite:///lethe.db"
[[systems]]
name = "chat"                 # unique, [a-z0-9-]
kind = "scim"
url = "http://127.0.0.1:9001" # SCIM base URL
token_env = "CHAT_SCIM_TOKEN" # the bearer token is read from this variable by the worker, never passed through Temporal
match = "userName"            # userName | emails | externalId: how the subject's account is found
on_leave = "delete"           # delete | deactivate (deactivate-only systems keep a disabled account)
rate_limit = 50               # requests per second, fleet-wide
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lethe.toml"
    path.write_text(text)
    return path


def test_documented_shape_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LETHE_TEMPORAL__NAMESPACE", "from-env")
    settings = load_settings(write(tmp_path, DOCUMENTED))
    assert settings.temporal.address == "127.0.0.1:7233"
    assert settings.temporal.namespace == "from-env"  # LETHE_* overrides the file
    (chat,) = settings.systems
    assert (chat.name, chat.kind, chat.match, chat.on_leave, chat.rate_limit) == ("chat", "scim", "userName", "delete", 50)
    assert chat.token_env == "CHAT_SCIM_TOKEN"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('match = "userName"', 'match = "mail"'), "systems[chat].match: Input should be 'userName', 'emails' or 'externalId' (got 'mail')"),
        (('name = "chat"', 'name = "Chat Room"'), "systems[Chat Room].name: String should match pattern"),
        (('rate_limit = 50', 'rate_limit = 0'), "systems[chat].rate_limit: Input should be greater than 0"),
        (('kind = "scim"', 'kind = "ldap"'), "systems[chat].kind: unknown or missing kind; use one of 'scim', 'erasure-job'"),
        (('on_leave = "delete"', 'on_leave = "archive"'), "systems[chat].on_leave"),
        (('url = "http://127.0.0.1:9001"', 'url = "127.0.0.1:9001"'), "systems[chat].url: String should match pattern"),
        (('rate_limit = 50', 'rate_limit = 50\nconfirm = { every = "soon" }'), "systems[chat].confirm.every: Value error, invalid duration 'soon'"),
        (('rate_limit = 50', 'rate_limit = 50\nratelimit = 5'), "systems[chat].ratelimit: unknown field"),
        (('[ledger]', '[ledgr]'), "ledgr: unknown field"),
    ],
)
def test_bad_config_names_the_field(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(write(tmp_path, DOCUMENTED.replace(*change)))
    assert str(error.value).startswith(message), str(error.value)
    assert "\n" not in str(error.value)


def test_duplicate_system_names_are_refused(tmp_path: Path) -> None:
    system = DOCUMENTED[DOCUMENTED.index("[[systems]]") :]
    with pytest.raises(ConfigError, match="system name 'chat' is used twice"):
        load_settings(write(tmp_path, DOCUMENTED + system))


def run_entry_point(script: str, args: list[str], config: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean_env = {"PATH": "/usr/bin:/bin", "LETHE_CONFIG": str(config), **env}
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args], capture_output=True, text=True, env=clean_env, cwd=config.parent, timeout=60
    )


@pytest.mark.parametrize("script,args", [("worker.py", []), ("starter.py", ["forget", "someone", "--reason", "leaver"])])
def test_entry_points_exit_2_on_invalid_config(tmp_path: Path, script: str, args: list[str]) -> None:
    config = write(tmp_path, DOCUMENTED.replace('match = "userName"', 'match = "mail"'))
    result = run_entry_point(script, args, config, LETHE_PEPPER="p" * 32)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == ["lethe: config error: systems[chat].match: Input should be 'userName', 'emails' or 'externalId' (got 'mail')"]


def test_worker_exits_2_when_a_token_variable_is_missing(tmp_path: Path) -> None:
    result = run_entry_point("worker.py", [], write(tmp_path, DOCUMENTED), LETHE_PEPPER="p" * 32)
    assert result.returncode == 2
    assert result.stderr.strip() == "lethe: config error: systems[chat].token_env: environment variable CHAT_SCIM_TOKEN is not set"


def test_worker_exits_2_without_a_pepper(tmp_path: Path) -> None:
    result = run_entry_point("worker.py", [], write(tmp_path, DOCUMENTED), CHAT_SCIM_TOKEN="t")
    assert result.returncode == 2
    assert "pepper: not set" in result.stderr


def test_durations() -> None:
    assert parse_duration("30d") == timedelta(days=30)
    assert parse_duration("0") == timedelta(0)
    assert parse_duration(90) == timedelta(seconds=90)
    assert format_duration(timedelta(days=14)) == "2w"
    assert format_duration(timedelta(hours=36)) == "36h"
    for bad in ("-1d", "1.5d", "d", "5y", ""):
        with pytest.raises(ValueError):
            parse_duration(bad)
