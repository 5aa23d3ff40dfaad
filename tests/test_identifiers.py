"""Identifiers that try to widen a SCIM filter match only their own account."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import Client

from activities.scim import scim_filter
from lethe.devstack import Person, ScimServer
from tests.support import forget, make_settings, running_worker

TRICKY = ['quote"inside', "back\\slash", '" or userName pr', "zoë.ünïcødé@exämple.com", 'x" or "1" eq "1']
# Accounts that a naive filter built from the tricky identifiers would also match.
DECOYS = ["quote", "backslash", "back", "zoe.unicode@example.com", "x", "1"]


def account(user_name: str) -> Person:
    return Person(user_name=user_name, email=f"{abs(hash(user_name))}@example.org", given_name="G", family_name="F", external_id=f"e{abs(hash(user_name))}")


def test_filter_escapes_quotes_and_backslashes() -> None:
    assert scim_filter("userName", 'a"b\\c') == 'userName eq "a\\"b\\\\c"'
    assert scim_filter("emails", "zoë@x.org") == 'emails.value eq "zoë@x.org"'
    assert scim_filter("externalId", "E-1") == 'externalId eq "E-1"'


async def test_tricky_identifiers_match_only_the_exact_account(
    client: Client, scim_servers: dict[str, ScimServer], tmp_path: Path
) -> None:
    server = scim_servers["chat"]
    ids = server.seed([account(name) for name in TRICKY + DECOYS])
    settings = make_settings(tmp_path, client, {"chat": server}, match="userName")
    async with running_worker(client, settings):
        for name in TRICKY:
            before = server.users()
            certificate = await (await forget(client, settings, name)).result()
            assert [s.outcome for s in certificate.systems] == ["confirmed"], (name, certificate.systems)
            after = server.users()
            assert set(before) - set(after) == {ids[name]}, f"{name!r} deleted more than its own account"
    remaining = server.users()
    for decoy in DECOYS:
        assert ids[decoy] in remaining


@pytest.mark.parametrize("blank", ["", "   "])
def test_blank_identifier_is_refused(blank: str) -> None:
    from starter import main

    with pytest.raises(SystemExit) as exit_info:
        main(["forget", blank, "--reason", "leaver"])
    assert exit_info.value.code == 2
