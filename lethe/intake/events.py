"""POST /events: HR systems and IdPs tell Lethe that someone left, asked to be forgotten,
came back, or is under a legal hold."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated

from fastapi import APIRouter, Header, Request
from temporalio.service import RPCError

from lethe.case import Reason
from lethe.intake import replay
from lethe.intake.cases import NoCase
from lethe.intake.errors import Refused, parse_body, unauthorized, unavailable
from lethe.intake.models import HOLDS, SIGNALS, STARTS_A_CASE, Accepted, Event, Problem
from lethe.intake.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureError, verify
from lethe.intake.state import Intake, intake_of
from lethe.subject import subject_ref, workflow_id

logger = logging.getLogger("lethe.intake")
router = APIRouter(tags=["events"])

ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": Problem, "description": "missing, bad or stale signature or token; or a replayed request"},
    404: {"model": Problem, "description": "a signal for a subject without a running case"},
    409: {"model": Problem, "description": "the idempotency key was used for a different event"},
    413: {"model": Problem, "description": "body larger than intake.max_body"},
    422: {"model": Problem, "description": "malformed JSON or an invalid field (named in the message)"},
    503: {"model": Problem, "description": "Temporal unreachable; retry (nothing was done)"},
}


def authenticate(intake: Intake, body: bytes, timestamp: str | None, signature: str | None, authorization: str | None) -> str | None:
    """The signature's digest (its replay key) for a signed request, None for a bearer token."""
    credentials = intake.credentials
    if signature is not None:
        if credentials.signing_secret is None:
            raise unauthorized(f"{SIGNATURE_HEADER}: signatures are not configured here; use a bearer token")
        try:
            return verify(credentials.signing_secret, timestamp, signature, body, time.time(), intake.settings.intake.replay_window)
        except SignatureError as exc:
            raise unauthorized(str(exc)) from None
    if authorization is not None:
        if credentials.bearer_ok(authorization):
            return None
        raise unauthorized("Authorization: not a valid bearer token")
    raise unauthorized(f"missing credentials: sign the body ({SIGNATURE_HEADER}, {TIMESTAMP_HEADER}) or send Authorization: Bearer")


def check_system(intake: Intake, event: Event) -> None:
    if event.system is None:
        return
    if event.type not in HOLDS:
        raise Refused(422, "invalid", "system: only legal-hold and legal-hold-release events name a system", "system")
    names = [system.name for system in intake.settings.systems]
    if event.system not in names:
        raise Refused(422, "invalid", f"system: unknown system; configured: {', '.join(names) or 'none'}", "system")


@router.post(
    "/events",
    status_code=202,
    summary="Tell Lethe about a leaver, an erasure request, a rehire or a legal hold",
    responses=ERRORS,
)
async def post_event(
    request: Request,
    x_lethe_timestamp: Annotated[str | None, Header(description="Unix seconds, signed with the body")] = None,
    x_lethe_signature: Annotated[str | None, Header(description='"sha256=" + hex HMAC-SHA256 of timestamp + "." + body')] = None,
    authorization: Annotated[str | None, Header(description="Bearer <token>, instead of a signature")] = None,
) -> Accepted:
    intake = intake_of(request)
    body = await request.body()
    # Authenticate before parsing: a stranger learns nothing about what a valid event looks like.
    signed = authenticate(intake, body, x_lethe_timestamp, x_lethe_signature, authorization)
    event = parse_body(Event, body)
    check_system(intake, event)

    ledger, window = intake.ledger, intake.settings.intake
    ref = subject_ref(intake.settings.pepper_bytes(), event.subject)
    fingerprint = replay.digest(event.type, ref, event.system or "")
    claims: list[tuple[str, str]] = []
    if signed is not None:
        # Kept for twice the window: a timestamp is accepted that far either side of now.
        seen = await asyncio.to_thread(replay.claim, ledger, "sig", signed, "", 2 * window.replay_window.total_seconds())
        if seen is not replay.Claim.NEW:
            raise unauthorized(f"{SIGNATURE_HEADER}: this request was already received (replay)")
        claims.append(("sig", signed))
    key = f"{event.source}\0{event.idempotency_key}"
    seen = await asyncio.to_thread(replay.claim, ledger, "event", key, fingerprint, window.dedupe_window.total_seconds())
    if seen is replay.Claim.CONFLICT:
        await _release(intake, claims)
        raise Refused(409, "conflict", "idempotency_key: already used by this source for a different event", "idempotency_key")
    case_id = workflow_id(ref)
    if seen is replay.Claim.DUPLICATE:
        logger.info("event %s from %s: duplicate for %s", event.type, event.source, case_id)
        return Accepted(workflow_id=case_id, outcome="duplicate")
    claims.append(("event", key))

    try:
        accepted = await _act(intake, event)
    except NoCase as exc:
        await _release(intake, claims)
        raise Refused(404, "no_case", str(exc), "subject") from None
    except RPCError as exc:
        await _release(intake, claims)
        logger.warning("event %s from %s: Temporal refused or unreachable (%s)", event.type, event.source, exc.status.name if exc.status else "?")
        raise unavailable("cannot reach Temporal; nothing was done, retry the same event") from None
    logger.info("event %s from %s: %s %s", event.type, event.source, accepted.outcome, accepted.workflow_id)
    return accepted


async def _act(intake: Intake, event: Event) -> Accepted:
    if event.type in STARTS_A_CASE:
        opened = await intake.desk.open(event.subject, Reason(event.type))
        return Accepted(workflow_id=opened.workflow_id, outcome=opened.outcome)
    case_id = await intake.desk.signal(event.subject, SIGNALS[event.type], event.system)
    return Accepted(workflow_id=case_id, outcome="signalled")


async def _release(intake: Intake, claims: list[tuple[str, str]]) -> None:
    # Nothing was done: the sender's retry (even byte for byte) must be acted on, not refused.
    for kind, value in claims:
        await asyncio.to_thread(replay.release, intake.ledger, kind, value)
