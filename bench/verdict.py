"""What the drill checks at the end, each from the source that cannot lie about it: the SCIM
servers for accounts, the ledger for certificates and escalations, Temporal for open cases,
the proxies for how many DELETEs reached each account."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import Engine, text

from bench.proxylog import deletes_per_account
from bench.systems import System


@dataclass
class AccountCheck:
    targets_left: int = 0  # subjects' accounts still present (must be 0)
    bystanders_changed: int = 0  # changed or deleted accounts of people who are not leaving (must be 0)


@dataclass
class LedgerCheck:
    certified: int = 0  # distinct workflow ids with a certificate
    completed: int = 0  # of which every system was confirmed
    duplicates: int = 0  # workflow ids with more than one certificate (must be 0)
    escalations: list[str] = field(default_factory=list)


@dataclass
class DeleteCheck:
    accounts_deleted_twice: int = 0  # received more than one DELETE: allowed (a retry)
    second_effects: int = 0  # more than one DELETE acted on (2xx upstream): must be 0
    most_deletes: int = 0
    injected_faults: int = 0


def check_accounts(systems: dict[str, System], before: dict[str, dict[str, dict[str, object]]],
                   target_names: set[str]) -> AccountCheck:
    result = AccountCheck()
    for name, system in systems.items():
        after = system.server.users()
        for account_id, record in before[name].items():
            if record.get("userName") in target_names:
                result.targets_left += account_id in after
            elif after.get(account_id) != record:
                result.bystanders_changed += 1
    return result


def check_ledger(ledger: Engine) -> LedgerCheck:
    result = LedgerCheck()
    with ledger.connect() as connection:
        rows = connection.execute(text("SELECT workflow_id, body FROM certificates")).all()
        escalations = connection.execute(text("SELECT system, kind, message FROM escalations")).all()
    per_case = Counter(workflow_id for workflow_id, _ in rows)
    result.certified = len(per_case)
    result.duplicates = sum(1 for count in per_case.values() if count > 1)
    result.completed = sum(1 for _, body in rows if json.loads(body).get("status") == "completed")
    result.escalations = [f"{system}: {kind}: {message}" for system, kind, message in escalations]
    return result


def check_deletes(systems: dict[str, System]) -> DeleteCheck:
    result = DeleteCheck()
    for system in systems.values():
        entries = system.log()
        received, effective = deletes_per_account(entries)
        result.accounts_deleted_twice += sum(1 for n in received.values() if n > 1)
        result.second_effects += sum(1 for n in effective.values() if n > 1)
        result.most_deletes = max([result.most_deletes, *received.values()])
        result.injected_faults += sum(1 for e in entries if e.rule and e.rule != "rate_limit")
    return result
