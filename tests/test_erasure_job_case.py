"""A whole case with an erasure-job vendor that finishes two days later, in skipped time:
confirmed, with a short history for that system."""

from __future__ import annotations

from pathlib import Path

import pytest

from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from lethe.devstack import ErasureJobServer
from tests.support import forget, make_settings, person, running_worker
from tests.test_erasure_job import TOKEN_ENV, VendorClock, config


async def test_vendor_job_two_days_later_is_confirmed_with_a_short_history(
    skipping_env: WorkflowEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, ErasureJobServer.token)
    vendor = ErasureJobServer(delay="2d").start()
    try:
        client = skipping_env.client
        settings = make_settings(tmp_path, client, {})
        settings.systems = [config(vendor.url)]
        target = person("vendor-job")
        async with running_worker(client, settings, interceptors=[VendorClock(vendor)]):
            handle = await forget(client, settings, target.email)
            certificate = await handle.result()
            history = await handle.fetch_history()
    finally:
        vendor.stop()
    assert certificate.all_confirmed
    (system,) = certificate.systems
    assert system.outcome == "confirmed"
    job = next(e for e in system.evidence if e.action == "erasure-job")
    assert job.outcome == "completed" and job.attempts >= 48  # hourly polls for two days
    queue = settings.systems[0].name
    scheduled = {
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.task_queue.name.endswith(f".{queue}")
    }
    related = [
        e for e in history.events
        if e.event_id in scheduled
        or e.activity_task_started_event_attributes.scheduled_event_id in scheduled
        or e.activity_task_completed_event_attributes.scheduled_event_id in scheduled
    ]
    assert len(scheduled) == 2 and len(related) < 50, f"{len(related)} events for {queue}"
    assert len(history.events) < 60
