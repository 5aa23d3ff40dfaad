"""The deletion circuit breaker as an activity: one permit per deletion, shared by the fleet."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import Engine
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.notify import post_to_all
from lethe import audit, breaker
from lethe.case import PermitRequest
from lethe.settings import Settings

logger = logging.getLogger(__name__)


class BreakerActivities:
    def __init__(self, settings: Settings, ledger: Engine) -> None:
        self._settings = settings
        self._ledger = ledger

    def _limits(self, system: str) -> breaker.Limits:
        own = self._settings.system(system).max_deletions_per_hour
        safety = self._settings.safety
        return breaker.Limits(system=own or safety.max_deletions_per_hour, fleet=safety.fleet_max_deletions_per_hour)

    @activity.defn(name="breaker.permit")
    async def permit(self, request: PermitRequest) -> bool:
        permit = await asyncio.to_thread(
            breaker.request_permit,
            self._ledger,
            request.key,
            request.system,
            self._limits(request.system),
            request.waiting_since,
        )
        for scope in permit.newly_tripped:
            await self._announce_trip(scope, request.system)
        if not permit.granted and request.wait:
            raise ApplicationError(
                f"deletions in {request.system} wait for the circuit breaker; release it with "
                f"`python starter.py breaker release --system {request.system} --operator NAME --note TEXT`",
                type="BreakerOpen",
                category=ApplicationErrorCategory.BENIGN,
            )
        return permit.granted

    async def _announce_trip(self, scope: str, system: str) -> None:
        """Once per trip: the audit log, and the escalation webhooks (best effort)."""
        what = "the whole fleet" if scope == breaker.FLEET else f"system {scope}"
        await asyncio.to_thread(audit.append, self._ledger, "lethe", "breaker.trip", scope=scope)
        text = (
            f"Lethe's deletion circuit breaker tripped for {what}: deletions passed the hourly threshold and "
            f"now wait. Release: python starter.py breaker release --system {scope if scope != breaker.FLEET else system} "
            "--operator NAME --note TEXT, or allow a planned number: breaker allow --system NAME --count N"
        )
        failures = await post_to_all(self._settings.escalation.webhooks, {"text": text, "breaker": scope})
        if failures:
            logger.warning("breaker trip for %s: %d webhook(s) failed", scope, failures)

    def activities(self) -> list[object]:
        return [self.permit]
