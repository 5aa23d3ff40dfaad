"""Okta event hooks: `user.lifecycle.deactivate` and `user.lifecycle.delete.initiated` start leaver cases.

Okta is configured with an Authorization header whose value is our shared secret; it sends it
on the one-time verification GET and on every delivery.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Header, Request
from temporalio.service import RPCError

from lethe.case import Reason
from lethe.intake import replay
from lethe.intake.errors import Refused, parse_body, unauthorized, unavailable
from lethe.intake.models import OktaAccepted, OktaHook, OktaVerification, Problem, is_identifier
from lethe.intake.state import Intake, intake_of

logger = logging.getLogger("lethe.intake")
router = APIRouter(prefix="/okta", tags=["okta"])

LEAVER_EVENTS = ("user.lifecycle.deactivate", "user.lifecycle.delete.initiated")
ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": Problem, "description": "missing or wrong Authorization header"},
    413: {"model": Problem, "description": "body larger than intake.max_body"},
    422: {"model": Problem, "description": "malformed JSON, or a field not as Okta sends it (named in the message)"},
    503: {"model": Problem, "description": "Temporal unreachable; Okta retries (nothing was done for the remaining events)"},
}
AuthHeader = Annotated[str | None, Header(description="the shared secret configured on the Okta event hook")]


def _authenticate(intake: Intake, authorization: str | None) -> None:
    if intake.credentials.okta_secret is None:
        raise unauthorized("Okta event hooks are not configured here (intake.okta_secret_env)")
    if not intake.credentials.okta_ok(authorization):
        raise unauthorized("Authorization: missing or not the configured Okta hook secret")


@router.get("/events", summary="Okta's one-time event hook verification", responses=ERRORS)
async def verify_hook(
    request: Request,
    authorization: AuthHeader = None,
    x_okta_verification_challenge: Annotated[str | None, Header(description="Okta's one-time challenge")] = None,
) -> OktaVerification:
    _authenticate(intake_of(request), authorization)
    if not x_okta_verification_challenge or len(x_okta_verification_challenge) > 200:
        raise Refused(422, "invalid", "x-okta-verification-challenge: header missing or longer than 200", "x-okta-verification-challenge")
    return OktaVerification(verification=x_okta_verification_challenge)


@router.post(
    "/events",
    summary="Okta event hook deliveries: deactivated and deleted users become leaver cases",
    responses=ERRORS,
)
async def receive_events(request: Request, authorization: AuthHeader = None) -> OktaAccepted:
    intake = intake_of(request)
    body = await request.body()
    _authenticate(intake, authorization)
    hook = parse_body(OktaHook, body)
    cases: list[str] = []
    duplicates = ignored = 0
    for event in hook.data.events:
        login = next((t.alternate_id for t in event.target or [] if t.type == "User" and t.alternate_id), None)
        if event.event_type not in LEAVER_EVENTS or login is None or not is_identifier(login):
            ignored += 1
            continue
        # Okta redelivers on a slow answer: its event uuid is the idempotency key.
        fingerprint = replay.digest("leaver", intake.desk.case_id(login))
        seen = await asyncio.to_thread(
            replay.claim, intake.ledger, "okta", event.uuid, fingerprint, intake.settings.intake.dedupe_window.total_seconds()
        )
        if seen is not replay.Claim.NEW:
            duplicates += 1
            continue
        try:
            opened = await intake.desk.open(login, Reason.LEAVER)
        except RPCError:
            await asyncio.to_thread(replay.release, intake.ledger, "okta", event.uuid)
            raise unavailable("cannot reach Temporal; the events not yet acted on will be on Okta's retry") from None
        logger.info("okta %s: %s %s", event.event_type, opened.outcome, opened.workflow_id)
        cases.append(opened.workflow_id)
    return OktaAccepted(cases=cases, duplicates=duplicates, ignored=ignored)
