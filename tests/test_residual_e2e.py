"""A case anonymizes the residual records that must be kept, after every account is gone,
and the certificate counts them."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from temporalio.client import Client

from lethe.devstack import ScimServer
from lethe.residual import ResidualStore
from tests.support import forget, make_settings, person, running_worker

TICKETS = sa.Table(
    "tickets",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("requester_email", sa.String(200)),
    sa.Column("requester_name", sa.String(200)),
    sa.Column("body", sa.Text),
    sa.Column("created_at", sa.DateTime),
    sa.Column("amount", sa.Integer),
)


def crm_database(path: Path, rows: list[tuple[str, str]]) -> sa.Engine:
    engine = sa.create_engine(f"sqlite:///{path}")
    TICKETS.create(engine)
    with engine.begin() as connection:
        connection.execute(
            TICKETS.insert(),
            [
                {"requester_email": email, "requester_name": name, "body": f"help {name}", "created_at": datetime(2025, 3, 17, 9, 30), "amount": n}
                for n, (email, name) in enumerate(rows)
            ],
        )
    return engine


async def test_case_anonymizes_residual_rows_and_certifies_counts(
    client: Client, scim_servers: dict[str, ScimServer], tmp_path: Path
) -> None:
    target, other = person("residual-target"), person("residual-other")
    scim_servers["chat"].seed([target])
    crm = crm_database(tmp_path / "crm.db", [(target.email, "Target T")] * 3 + [(other.email, "Other O")] * 2)
    url_file = tmp_path / "crm-url"
    url_file.write_text(f"sqlite:///{tmp_path / 'crm.db'}")
    settings = make_settings(tmp_path, client, {"chat": scim_servers["chat"]}, match="emails")
    settings.residual = [
        ResidualStore(
            name="crm-tickets",
            url_file=url_file,
            table="tickets",
            match={"column": "requester_email"},  # type: ignore[arg-type]
            columns={"requester_email": "keep-domain", "requester_name": "redact", "body": "redact", "created_at": "month"},  # type: ignore[arg-type]
            batch_size=2,
        )
    ]
    async with running_worker(client, settings):
        certificate = await (await forget(client, settings, target.email.upper())).result()

    assert certificate.all_confirmed
    (store,) = certificate.residual
    assert store.name == "crm-tickets" and store.outcome == "confirmed"
    assert [(e.action, e.count) for e in store.evidence] == [("anonymize", 3)]
    with crm.connect() as connection:
        rows = connection.execute(sa.select(TICKETS).order_by(TICKETS.c.id)).all()
    mine, theirs = rows[:3], rows[3:]
    for row in mine:
        assert row.requester_email.endswith("@example.com") and target.email not in row.requester_email
        assert "Target" not in row.requester_name and "Target" not in row.body
        assert row.created_at == datetime(2025, 3, 1)
    assert len({row.requester_email for row in mine}) == 1  # one pseudonym: counts per requester still work
    assert [row.amount for row in mine] == [0, 1, 2]  # non-personal columns kept
    assert [(r.requester_email, r.requester_name, r.body, r.created_at) for r in theirs] == [
        (other.email, "Other O", "help Other O", datetime(2025, 3, 17, 9, 30))
    ] * 2
