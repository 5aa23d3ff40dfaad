"""The demo's CRM: a SQLite database of tickets and invoices that must be kept (tax, support
history) but must stop naming the people who left."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from lethe.devstack import Person

METADATA = sa.MetaData()
TICKETS = sa.Table(
    "tickets",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("requester_email", sa.String(200), nullable=False),
    sa.Column("requester_name", sa.String(200)),
    sa.Column("body", sa.Text),
    sa.Column("created_at", sa.DateTime),
)
INVOICES = sa.Table(
    "invoices",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("customer_email", sa.String(200), nullable=False),
    sa.Column("customer_name", sa.String(200)),
    sa.Column("amount_cents", sa.Integer),
    sa.Column("issued_at", sa.DateTime),
)

CONFIG = """
[[residual]]
name = "crm-tickets"
url_env = "DEMO_CRM_URL"
table = "tickets"
match = { column = "requester_email" }
columns = { requester_email = "keep-domain", requester_name = "redact", body = "redact", created_at = "month" }

[[residual]]
name = "crm-invoices"
url_env = "DEMO_CRM_URL"
table = "invoices"
match = { column = "customer_email" }
columns = { customer_email = "hash", customer_name = "redact", issued_at = "month" }

# Storage limitation: support tickets are kept 180 days, then anonymized by the retention schedule.
[[retention]]
name = "old-tickets"
url_env = "DEMO_CRM_URL"
table = "tickets"
timestamp = "created_at"
max_age = "180d"
action = "anonymize"
columns = { requester_email = "hash", requester_name = "redact", body = "redact" }
"""


def create(path: Path, people: list[Person]) -> str:
    """A fresh CRM with two tickets and three invoices per person; returns its URL."""
    path.unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    engine = sa.create_engine(url)
    METADATA.create_all(engine)
    with engine.begin() as connection:
        for n, person in enumerate(people):
            name = f"{person.given_name} {person.family_name}"
            connection.execute(
                TICKETS.insert(),
                [
                    {"requester_email": person.email, "requester_name": name, "body": f"{name} cannot log in", "created_at": datetime(2026, 3, 1 + n, 9)},
                    {"requester_email": person.email, "requester_name": name, "body": "Please reset my badge", "created_at": datetime(2026, 5, 2 + n, 14)},
                ],
            )
            connection.execute(
                INVOICES.insert(),
                [{"customer_email": person.email, "customer_name": name, "amount_cents": 1000 * (k + 1), "issued_at": datetime(2026, k + 1, 15)} for k in range(3)],
            )
    engine.dispose()
    return url


def rows_naming(url: str, email: str) -> int:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        count = sum(
            connection.execute(sa.select(sa.func.count()).where(column == email)).scalar_one()
            for column in (TICKETS.c.requester_email, INVOICES.c.customer_email)
        )
    engine.dispose()
    return count
