"""SCIM 2.0 connector: find, deactivate, delete and confirm one subject's accounts.

A case's common path is two tasks per system: `revoke` (find, deactivate) and `erase`
(delete, read back, search once more), because every Temporal task costs the worker and the
server more CPU than the HTTP request it carries. Every request is paced fleet-wide
(lethe.pacing), and each step is safe to repeat, so a retried task redoes its requests
without a second effect. The single-request activities serve the slower paths: an account an
operator chose, polling until a vendor's deletion shows, deactivate-only systems.
"""

from __future__ import annotations

import json

import httpx
from scim2_models import Context, ListResponse, PatchOp, PatchOperation, User
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.http_connector import HttpConnector
from activities.http_errors import raise_for_status
from activities.vault import identifier_for
from lethe.case import (
    AccountErased,
    AccountInSystem,
    EraseInput,
    Erased,
    FoundAccounts,
    Revoked,
    StepResult,
    SubjectInSystem,
)
from lethe.settings import SystemConfig

SCIM_JSON = "application/scim+json"

# How each match attribute is filtered (RFC 7644 §3.4.2.2) and compared (RFC 7643: userName
# and email values are case-insensitive, externalId is case-exact).
_FILTER_PATH = {"userName": "userName", "emails": "emails.value", "externalId": "externalId"}


def scim_filter(match: str, identifier: str) -> str:
    """`attr eq "value"` with the value as a JSON string (RFC 7644 §3.4.2.2), so a quote
    or backslash in the identifier cannot end the string and widen the search."""
    return f"{_FILTER_PATH[match]} eq {json.dumps(identifier, ensure_ascii=False)}"


def carries_identifier(user: User, match: str, identifier: str) -> bool:
    if match == "userName":
        return (user.user_name or "").casefold() == identifier.casefold()
    if match == "emails":
        return any((email.value or "").casefold() == identifier.casefold() for email in user.emails or [])
    return user.external_id == identifier


def active_patch(active: bool) -> dict[str, object]:
    patch = PatchOp[User](operations=[PatchOperation(op=PatchOperation.Op.replace_, path="active", value=active)])
    return patch.model_dump(scim_ctx=Context.RESOURCE_PATCH_REQUEST)


class ScimActivities(HttpConnector[SystemConfig]):
    """The SCIM activities of one worker process, with one HTTP client per system."""

    kind = "SCIM"
    accept = SCIM_JSON

    @activity.defn(name="scim.find")
    async def find(self, arg: SubjectInSystem) -> FoundAccounts:
        """The ids of the accounts carrying the subject's identifier; [] when there are none."""
        config = self._config(arg.system)
        identifier = await identifier_for(self._ledger, arg.subject_ref, f"find in {arg.system}")
        params = {"filter": scim_filter(config.match, identifier), "count": "50"}
        response = await self._request(arg.system, "find", "GET", "/Users", params=params)
        raise_for_status(response, arg.system, "find")
        listing = ListResponse[User].model_validate(response.json(), scim_ctx=Context.SEARCH_RESPONSE)
        candidates = listing.resources or []
        exact = [user.id for user in candidates if carries_identifier(user, config.match, identifier) and user.id]
        strays = len(candidates) - len(exact)
        if strays or len(exact) > 1 or (listing.total_results or 0) > len(candidates):
            # Never write on a doubtful match: a filter the server ignored can return everyone.
            raise ApplicationError(
                f"find in {arg.system}: ambiguous match, {listing.total_results or len(candidates)} candidate "
                f"account(s) of which {len(exact)} carry the identifier exactly; nothing was changed",
                type="Ambiguous",
                non_retryable=True,
            )
        return FoundAccounts(account_ids=exact, http_status=response.status_code)

    @activity.defn(name="scim.deactivate")
    async def deactivate(self, arg: AccountInSystem) -> StepResult:
        return await self._set_active(arg, False, "deactivate")

    @activity.defn(name="scim.reactivate")
    async def reactivate(self, arg: AccountInSystem) -> StepResult:
        return await self._set_active(arg, True, "reactivate")

    async def _set_active(self, arg: AccountInSystem, active: bool, action: str) -> StepResult:
        response = await self._request(
            arg.system,
            action,
            "PATCH",
            f"/Users/{arg.account_id}",
            json=active_patch(active),
            headers={"Content-Type": SCIM_JSON},
        )
        if response.status_code == 404:
            return _step("already-gone", response)
        raise_for_status(response, arg.system, action)
        return _step("done", response)

    async def _delete(self, arg: AccountInSystem) -> StepResult:
        response = await self._request(arg.system, "delete", "DELETE", f"/Users/{arg.account_id}")
        if response.status_code == 404:
            return _step("already-gone", response)
        raise_for_status(response, arg.system, "delete")
        return _step("done", response)

    @activity.defn(name="scim.confirm_gone")
    async def confirm_gone(self, arg: AccountInSystem) -> StepResult:
        """Succeeds when GET by id is 404; fails (and is retried on the poll interval) otherwise."""
        gone = await self._read_gone(arg)
        if gone is None:
            raise ApplicationError(
                f"confirm in {arg.system}: account still present; polling",
                type="StillPresent",
                category=ApplicationErrorCategory.BENIGN,  # "not yet" is not an error to log at every poll
            )
        return gone

    async def _read_gone(self, arg: AccountInSystem) -> StepResult | None:
        """"gone" when GET by id answers 404; None while the account is still there."""
        response = await self._request(arg.system, "confirm", "GET", f"/Users/{arg.account_id}")
        if response.status_code == 404:
            return _step("gone", response)
        raise_for_status(response, arg.system, "confirm")
        return None

    @activity.defn(name="scim.revoke")
    async def revoke(self, arg: SubjectInSystem) -> Revoked:
        """Find the subject's accounts and deactivate each: access ends in one task."""
        found = await self.find(arg)
        steps = [
            await self._set_active(AccountInSystem(system=arg.system, account_id=account_id), False, "deactivate")
            for account_id in found.account_ids
        ]
        return Revoked(account_ids=found.account_ids, steps=steps)

    @activity.defn(name="scim.erase")
    async def erase(self, arg: EraseInput) -> Erased:
        """Delete each account and read it back; once all are gone, search again: nobody may match."""
        accounts = []
        for account_id in arg.account_ids:
            account = AccountInSystem(system=arg.system, account_id=account_id)
            deleted = await self._delete(account)
            accounts.append(AccountErased(account_id=account_id, deleted=deleted, gone=await self._read_gone(account)))
        if not arg.check_match or any(account.gone is None for account in accounts):
            return Erased(accounts=accounts, nothing_matches=None)
        subject = SubjectInSystem(system=arg.system, subject_ref=arg.subject_ref)
        return Erased(accounts=accounts, nothing_matches=await self.nothing_matches(subject))

    @activity.defn(name="scim.nothing_matches")
    async def nothing_matches(self, arg: SubjectInSystem) -> StepResult:
        """Gone by id is not enough: the match attribute must find nobody either."""
        leftovers = await self.find(arg)
        if leftovers.account_ids:
            raise ApplicationError(
                f"confirm in {arg.system}: {len(leftovers.account_ids)} account(s) still match after deletion; "
                "check for re-creation by a sync job",
                type="StillPresent",
                non_retryable=True,
            )
        return StepResult(outcome="none-match", http_status=leftovers.http_status, attempts=activity.info().attempt)

    @activity.defn(name="scim.confirm_inactive")
    async def confirm_inactive(self, arg: AccountInSystem) -> StepResult:
        """For deactivate-only systems: succeeds when the account reads active=false (or is gone)."""
        response = await self._request(arg.system, "confirm", "GET", f"/Users/{arg.account_id}")
        if response.status_code == 404:
            return _step("gone", response)
        raise_for_status(response, arg.system, "confirm")
        user = User.model_validate(response.json(), scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
        if user.active is False:
            return _step("inactive", response)
        raise ApplicationError(
            f"confirm in {arg.system}: account still active; polling",
            type="StillActive",
            category=ApplicationErrorCategory.BENIGN,
        )

    def activities(self) -> list[object]:
        return [
            self.find,
            self.revoke,
            self.deactivate,
            self.reactivate,
            self.erase,
            self.confirm_gone,
            self.nothing_matches,
            self.confirm_inactive,
        ]


def _step(outcome: str, response: httpx.Response) -> StepResult:
    return StepResult(outcome=outcome, http_status=response.status_code, attempts=activity.info().attempt)
