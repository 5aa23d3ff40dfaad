"""The operator's CLI, run as a real process against the dev server and real SCIM servers."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from sqlmodel import Session, select
from temporalio.client import Client

from lethe.devstack import ScimServer
from lethe.ledger import CertificateRecord, engine_for
from lethe.settings import Settings
from starter import main
from tests.support import PEPPER, TOKEN_ENV, make_settings, person, running_worker

ROOT = Path(__file__).resolve().parent.parent


def write_config(settings: Settings, path: Path) -> Path:
    lines = [
        "[temporal]",
        f'address = "{settings.temporal.address}"',
        f'task_queue = "{settings.temporal.task_queue}"',
        "[ledger]",
        f'url = "{settings.ledger.url}"',
    ]
    for system in settings.systems:
        lines += [
            "[[systems]]",
            f'name = "{system.name}"',
            'kind = "scim"',
            f'url = "{system.url}"',
            f'token_env = "{TOKEN_ENV}"',
            f'match = "{system.match}"',
            f"rate_limit = {system.rate_limit}",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


async def cli(config: Path, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "starter.py"),
        *args,
        env={"PATH": "/usr/bin:/bin", "LETHE_CONFIG": str(config), "LETHE_PEPPER": PEPPER},
        cwd=config.parent,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_forget_wait_status_and_certificate(client: Client, scim_servers: dict[str, ScimServer], tmp_path: Path) -> None:
    target = person("cli")
    ids = {name: server.seed([target])[target.user_name] for name, server in scim_servers.items()}
    settings = make_settings(tmp_path, client, scim_servers, match="userName")
    config = write_config(settings, tmp_path / "lethe.toml")

    async with running_worker(client, settings):
        code, out, err = await cli(config, "forget", target.user_name, "--reason", "leaver", "--grace", "0", "--wait")
        assert code == 0, err
        workflow_id = out.splitlines()[0]
        assert workflow_id.startswith("forget-") and target.user_name not in out
        assert "completed" in out
        for name in scim_servers:
            assert f"{name}" in out and "confirmed" in out

        code, out, _ = await cli(config, "status", workflow_id)
        assert code == 0 and "completed" in out and "confirmed" in out

    for name, server in scim_servers.items():
        assert server.get(ids[name]).status_code == 404

    code, out, _ = await cli(config, "certificate", target.user_name, "--json")
    assert code == 0
    certificate = json.loads(out)
    assert certificate["workflow_id"] == workflow_id and certificate["status"] == "completed"
    assert target.user_name not in out and target.email not in out

    code, out, _ = await cli(config, "certificate", workflow_id, "--format", "md")
    assert code == 0 and out.startswith("# Erasure certificate") and "| chat | confirmed | 1 |" in out

    code, out, _ = await cli(config, "certificate", workflow_id, "--verify")
    assert code == 0 and "signature valid" in out

    # Any change to a stored certificate breaks its signature.
    with Session(engine_for(settings.ledger.url)) as session:
        record = session.exec(select(CertificateRecord)).one()
        record.body = record.body.replace('"completed"', '"incomplete"', 1)
        session.add(record)
        session.commit()
    code, out, _ = await cli(config, "certificate", workflow_id, "--verify")
    assert code == 1 and "INVALID" in out


async def test_unknown_case_is_a_clear_error(client: Client, scim_servers: dict[str, ScimServer], tmp_path: Path) -> None:
    settings = make_settings(tmp_path, client, scim_servers)
    config = write_config(settings, tmp_path / "lethe.toml")
    code, _, err = await cli(config, "certificate", "never-seen@example.com")
    assert code == 1 and "no certificate for forget-" in err and "never-seen" not in err



@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["forget", "x@example.com", "--reason", "retired"], "invalid choice: 'retired'"),
        (["forget", "x@example.com", "--reason", "leaver", "--grace", "soon"], "invalid duration 'soon'"),
        (["resolve", "forget-x", "--system", "chat", "--action", "delete", "--note", "n", "--operator", "o"], "invalid choice: 'delete'"),
    ],
)
def test_bad_arguments_exit_2_naming_the_problem(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Parsing fails before anything connects, so this runs in-process.
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
