"""Escalation notifications: a JSON POST to each configured webhook (Slack-compatible `text`).

Webhook URLs are often secrets themselves (Slack's are), so they stay in the worker's config
and never pass through Temporal; the workflow only hands over the notice.
"""

from __future__ import annotations

import logging

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from lethe.case import EscalationNotice
from lethe.settings import EscalationSettings

logger = logging.getLogger(__name__)


def resolve_command(notice: EscalationNotice) -> str:
    return (
        f"python starter.py resolve {notice.workflow_id} --system {notice.system} "
        "--action retry|confirm|skip --note '...' --operator '...'"
    )


def message(notice: EscalationNotice) -> dict[str, object]:
    prefix = "Reminder: " if notice.reminder else ""
    urgency = " The GDPR deadline is near: the DPO is informed." if notice.to_dpo else ""
    text = (
        f"{prefix}Lethe case {notice.workflow_id} needs an operator: system {notice.system} is escalated "
        f"({notice.kind}): {notice.message}. Deadline {notice.deadline:%Y-%m-%d %H:%M} UTC.{urgency} "
        f"Resolve with: {resolve_command(notice)}"
    )
    return {"text": text, **notice.model_dump(mode="json"), "resolve": resolve_command(notice)}


async def post_to_all(urls: list[str], payload: dict[str, object]) -> int:
    """POST the payload to every URL; returns how many failed (logged by index: URLs are secrets)."""
    failures = 0
    async with httpx.AsyncClient(timeout=10) as client:
        for index, url in enumerate(urls):
            try:
                response = await client.post(url, json=payload)
                if response.status_code >= 300:
                    failures += 1
                    logger.warning("webhook #%d answered HTTP %d", index, response.status_code)
            except httpx.TransportError as exc:
                failures += 1
                logger.warning("webhook #%d unreachable: %s", index, type(exc).__name__)
    return failures


class NotifyActivities:
    def __init__(self, settings: EscalationSettings) -> None:
        self._settings = settings

    @activity.defn(name="notify.escalation")
    async def escalation(self, notice: EscalationNotice) -> int:
        """POST to every webhook (and the DPO's when due); retried as a whole if any fails."""
        targets = list(self._settings.webhooks)
        if notice.to_dpo:
            targets += self._settings.dpo_webhooks
        failures = await post_to_all(targets, message(notice))
        if failures:
            raise ApplicationError(f"{failures} of {len(targets)} escalation webhook(s) failed", type="WebhookFailed")
        return len(targets)
