"""No personal data in Temporal: the full history of a finished case, read back from the
server, holds none of the person's identifiers, and neither do the worker's logs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import sqlalchemy as sa
from temporalio.client import Client

from lethe.devstack import ScimServer
from lethe.ledger import engine_for
from tests.support import forget, make_settings, person, running_worker


async def test_history_and_logs_hold_no_identifier(
    client: Client, scim_servers: dict[str, ScimServer], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = person("privacy-Zoë")
    for server in scim_servers.values():
        server.seed([target])
    settings = make_settings(tmp_path, client, scim_servers, match="userName")
    caplog.set_level(logging.DEBUG)
    async with running_worker(client, settings):
        handle = await forget(client, settings, target.user_name)
        certificate = await handle.result()
    assert certificate.all_confirmed

    secrets = [target.user_name, target.email, target.given_name, target.family_name, target.external_id]
    history = await handle.fetch_history()
    raw = b"".join(event.SerializeToString() for event in history.events)
    as_json = history.to_json()
    assert len(history.events) > 10  # a real history was read, not an empty one
    for value in secrets + [settings.systems[0].read_token() or "token"]:
        for form in {value, value.lower(), value.casefold()}:
            assert form.encode() not in raw, f"{form!r} found in the event history"
            assert form not in as_json
            assert form not in caplog.text, f"{form!r} found in the logs"

    description = await handle.describe()
    assert target.user_name not in str(description.typed_search_attributes)
    assert handle.id.startswith("forget-") and target.user_name not in handle.id

    # The ledger keeps the subject_ref, never the identifiers: read every column of every table.
    ledger = engine_for(settings.ledger.url)
    tables = sa.MetaData()
    tables.reflect(ledger)
    assert {"vault", "cases", "certificates", "tombstones", "audit_log"} <= set(tables.tables)
    with ledger.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(tables.tables["vault"])).scalar() == 0
        everything = " ".join(
            str(value) for table in tables.tables.values() for row in connection.execute(sa.select(table)) for value in row
        ).casefold()
    assert certificate.subject_ref in everything  # the search did read the case's rows
    for value in secrets:
        assert value.casefold() not in everything, f"{value!r} found in the ledger"
