"""Erasure-job connector against the reference vendor, a real subprocess; the workflow-level
test polls a job that finishes two days later in Temporal's time-skipping test server."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine
from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    Worker,
)

from activities.erasure_job import ErasureJobActivities
from lethe.case import SubjectInSystem
from lethe.devstack import binary, free_port
from lethe.erasure_job import ErasureJobConfig, ErasureJobDone, ErasureJobRef, fill_template
from lethe.devstack import ErasureJobServer
from lethe.ledger import engine_for, store_identifier

TOKEN_ENV = "LETHE_TEST_ERASURE_TOKEN"
SYSTEM = "analytics"
TRICKY = 'o\'brien "quoted" back\\slash {identifier} {job_id} Zoë-日本-😀@example.com'


def config(base_url: str, **overrides: Any) -> ErasureJobConfig:
    raw: dict[str, Any] = {
        "name": SYSTEM,
        "kind": "erasure-job",
        "url": base_url,
        "token_env": TOKEN_ENV,
        "rate_limit": 10,
        "start": {"path": "/v1/erasures", "body": {"user": {"email": "{identifier}"}}, "job_id": "id"},
        "status": {"path": "/v1/erasures/{job_id}", "field": "state", "done": ["completed"], "failed": ["failed", "rejected"]},
        "confirm": {"every": "1h", "within": "7d"},
    }
    raw.update(overrides)
    return ErasureJobConfig.model_validate(raw)


@pytest.fixture(scope="module")
def vendor() -> Iterator[ErasureJobServer]:
    server = ErasureJobServer(delay="2d").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def erasure_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, ErasureJobServer.token)


@pytest.fixture
def ledger(tmp_path: Path) -> Engine:
    return engine_for(f"sqlite:///{tmp_path / 'ledger.db'}")


def subject(ledger: Engine, identifier: str) -> SubjectInSystem:
    ref = uuid.uuid4().hex
    store_identifier(ledger, ref, identifier)
    return SubjectInSystem(system=SYSTEM, subject_ref=ref)


async def failure(call: Any) -> ApplicationError:
    with pytest.raises(ApplicationError) as raised:
        await call
    return raised.value


async def test_start_returns_a_job_the_vendor_has_and_a_repeat_finds_it(
    vendor: ErasureJobServer, ledger: Engine
) -> None:
    acts = ErasureJobActivities({SYSTEM: config(vendor.url)}, ledger)
    env = ActivityEnvironment()
    arg = subject(ledger, f"{uuid.uuid4().hex}@example.com")
    try:
        first = await env.run(acts.start, arg)
        again = await env.run(acts.start, arg)
    finally:
        await acts.aclose()
    assert (first.outcome, first.http_status) == ("started", 202)
    assert vendor.get(first.job_id).json() == {"id": first.job_id, "state": "pending"}
    # A second run of the activity (crash, retry) is the same job, reported as a success.
    assert (again.outcome, again.http_status, again.job_id) == ("already-started", 409, first.job_id)


async def test_identifier_reaches_the_vendor_exactly_without_injection(
    vendor: ErasureJobServer, ledger: Engine
) -> None:
    identifier = f"{uuid.uuid4().hex[:6]} {TRICKY}"
    filled = fill_template({"user": {"email": "{identifier}", "note": "erase {identifier}!"}, "n": 1}, identifier)
    assert json.loads(json.dumps(filled)) == {"user": {"email": identifier, "note": f"erase {identifier}!"}, "n": 1}

    acts = ErasureJobActivities({SYSTEM: config(vendor.url)}, ledger)
    try:
        started = await ActivityEnvironment().run(acts.start, subject(ledger, identifier))
    finally:
        await acts.aclose()
    # The vendor recognises a repeat only from the exact same body: the activity sent exactly this.
    with vendor.client() as client:
        exact = client.post("/v1/erasures", json={"user": {"email": identifier}})
        other = client.post("/v1/erasures", json={"user": {"email": identifier.replace("\\", "")}})
    assert (exact.status_code, exact.json()["id"]) == (409, started.job_id)
    assert other.status_code == 202 and other.json()["id"] != started.job_id


async def test_check_polls_while_pending_and_returns_after_the_delay(
    vendor: ErasureJobServer, ledger: Engine
) -> None:
    acts = ErasureJobActivities({SYSTEM: config(vendor.url)}, ledger)
    env = ActivityEnvironment()
    identifier = f"{uuid.uuid4().hex}@example.com"
    try:
        started = await env.run(acts.start, subject(ledger, identifier))
        ref = ErasureJobRef(system=SYSTEM, job_id=started.job_id)
        not_yet = await failure(env.run(acts.check, ref))
        vendor.advance(timedelta(days=1).total_seconds())
        still = await failure(env.run(acts.check, ref))
        vendor.advance(timedelta(days=1).total_seconds())
        done = await env.run(acts.check, ref)
    finally:
        await acts.aclose()
    for error in (not_yet, still):
        assert error.type == "NotYetDone" and not error.non_retryable
        assert error.category is ApplicationErrorCategory.BENIGN
        assert "'pending'" in str(error) and identifier not in str(error)
    assert done == ErasureJobDone(state="completed", http_status=200, attempts=1)


async def test_failed_job_is_a_non_retryable_erasure_failure(vendor: ErasureJobServer, ledger: Engine) -> None:
    acts = ErasureJobActivities({SYSTEM: config(vendor.url)}, ledger)
    env = ActivityEnvironment()
    identifier = f"{uuid.uuid4().hex}@example.com"
    try:
        started = await env.run(acts.start, subject(ledger, identifier))
        vendor.force_state(started.job_id, "rejected")
        error = await failure(env.run(acts.check, ErasureJobRef(system=SYSTEM, job_id=started.job_id)))
    finally:
        await acts.aclose()
    assert error.type == "ErasureFailed" and error.non_retryable
    assert SYSTEM in str(error) and "'rejected'" in str(error)
    assert identifier not in str(error) and started.job_id not in str(error)


async def test_rejected_token_is_a_non_retryable_credentials_error(
    vendor: ErasureJobServer, ledger: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "not-the-token")
    acts = ErasureJobActivities({SYSTEM: config(vendor.url)}, ledger)
    env = ActivityEnvironment()
    try:
        on_start = await failure(env.run(acts.start, subject(ledger, "someone@example.com")))
        on_check = await failure(env.run(acts.check, ErasureJobRef(system=SYSTEM, job_id="er_whatever")))
    finally:
        await acts.aclose()
    for error in (on_start, on_check):
        assert error.type == "Credentials" and error.non_retryable
        assert "HTTP 401" in str(error) and "not-the-token" not in str(error)
    assert "someone@example.com" not in str(on_start)


async def test_unknown_job_unreachable_vendor_and_empty_vault_are_classified(
    vendor: ErasureJobServer, ledger: Engine
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    acts = ErasureJobActivities({SYSTEM: config(vendor.url), "gone": config(closed, name="gone")}, ledger)
    env = ActivityEnvironment()
    identifier = f"{uuid.uuid4().hex}@example.com"
    try:
        unknown = await failure(env.run(acts.check, ErasureJobRef(system=SYSTEM, job_id="er_nope")))
        unreachable = await failure(env.run(acts.start, subject(ledger, identifier).model_copy(update={"system": "gone"})))
        empty = await failure(env.run(acts.start, SubjectInSystem(system=SYSTEM, subject_ref=uuid.uuid4().hex)))
    finally:
        await acts.aclose()
    assert (unknown.type, unknown.non_retryable) == ("Rejected", True)
    assert (unreachable.type, unreachable.non_retryable) == ("Unreachable", False)
    assert identifier not in str(unreachable) and closed not in str(unreachable)
    assert (empty.type, empty.non_retryable) == ("VaultEmpty", True)


def test_vendor_cannot_list_or_search_people(vendor: ErasureJobServer) -> None:
    with vendor.client() as client:
        created = client.post("/v1/erasures", json={"user": {"email": "listed@example.com"}})
        searched = client.get("/v1/erasures", params={"subject": "listed@example.com"})
        listed = client.get("/v1/erasures")
    assert created.status_code == 202
    for response in (searched, listed):
        assert response.status_code == 405
        assert created.json()["id"] not in response.text and "listed@" not in response.text


@pytest.mark.parametrize(
    ("overrides", "location", "message"),
    [
        ({"start": {"path": "/v1/erasures", "body": {"user": "someone"}}}, ("start", "body"), "must contain {identifier}"),
        ({"start": {"path": "/v1/erasures", "body": {"user": "{identifer}"}}}, ("start", "body"), "unknown placeholder {identifer}"),
        ({"start": {"path": "/v1/erasures", "body": {"{identifier}": True}}}, ("start", "body"), "not in keys"),
        ({"start": {"path": "/v1/{identifier}", "body": {"u": "{identifier}"}}}, ("start", "path"), "never in a URL"),
        ({"status": {"path": "/v1/erasures", "done": ["completed"]}}, ("status", "path"), "must contain {job_id}"),
        ({"status": {"path": "/v1/erasures/{job_id}", "done": []}}, ("status", "done"), "at least 1 item"),
        ({"status": {"path": "/j/{job_id}", "done": ["x"], "failed": ["x"]}}, ("status",), "both status.done and status.failed"),
        ({"status": {"path": "/j/{job_id}", "field": "a..b", "done": ["x"]}}, ("status", "field"), "pattern"),
        ({"confirm": {"every": "soon"}}, ("confirm", "every"), "invalid duration"),
        ({"name": "Analytics"}, ("name",), "pattern"),
        ({"kind": "scim"}, ("kind",), "erasure-job"),
        ({"url": "ftp://vendor"}, ("url",), "pattern"),
        ({"start_url": "http://x"}, ("start_url",), "Extra inputs"),
    ],
)
def test_config_errors_name_the_field(overrides: dict[str, Any], location: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValidationError) as raised:
        config("http://127.0.0.1:9201", **overrides)
    first = raised.value.errors()[0]
    assert tuple(first["loc"]) == location
    assert message in first["msg"]


def test_example_config_parses_as_documented() -> None:
    parsed = config("http://127.0.0.1:9201/", confirm={"every": "30s", "within": "7d"})
    assert parsed.base_url == "http://127.0.0.1:9201"
    assert (parsed.confirm.every, parsed.confirm.within) == (timedelta(seconds=30), timedelta(days=7))
    assert parsed.read_token() == ErasureJobServer.token
    defaults = ErasureJobConfig.model_validate(parsed.model_dump(exclude={"confirm"}))
    assert (defaults.confirm.every, defaults.confirm.within) == (timedelta(minutes=5), timedelta(days=30))


# --- workflow level: a job that finishes two days later, in skipped time ---------------------

POLL_EVERY = timedelta(hours=1)


# Unsandboxed: the sandbox would re-import this test module (pytest, httpx); the real
# workflows run sandboxed in their own modules.
@workflow.defn(sandboxed=False)
class StartThenWait:
    """Test-only: the erasure-job calls as ForgetSubject is meant to make them."""

    @workflow.run
    async def run(self, arg: SubjectInSystem) -> ErasureJobDone:
        started = await workflow.execute_activity_method(
            ErasureJobActivities.start,
            arg,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
        return await workflow.execute_activity_method(
            ErasureJobActivities.check,
            ErasureJobRef(system=arg.system, job_id=started.job_id),
            start_to_close_timeout=timedelta(seconds=30),
            schedule_to_close_timeout=timedelta(days=7),
            retry_policy=RetryPolicy(initial_interval=POLL_EVERY, backoff_coefficient=1.0, maximum_attempts=0),
        )


class VendorClock(Interceptor):
    """Keeps the vendor's clock at the test environment's time, so that skipped time passes
    for the vendor too: each attempt first tells the vendor when it was scheduled."""

    def __init__(self, server: ErasureJobServer) -> None:
        self._server = server

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        server = self._server

        class CatchUp(ActivityInboundInterceptor):
            async def execute_activity(self, input: ExecuteActivityInput) -> Any:
                await asyncio.to_thread(server.catch_up, activity.info().current_attempt_scheduled_time)
                return await super().execute_activity(input)

        return CatchUp(next)


async def test_job_finishing_two_days_later_completes_with_a_short_history(ledger: Engine) -> None:
    server = ErasureJobServer(delay="2d").start()
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary("temporal-test-server"), data_converter=pydantic_data_converter
    )
    acts = ErasureJobActivities({SYSTEM: config(server.url)}, ledger)
    try:
        async with Worker(
            env.client,
            task_queue="erasure-job-test",
            workflows=[StartThenWait],
            activities=acts.activities(),
            interceptors=[VendorClock(server)],
        ):
            handle = await env.client.start_workflow(
                StartThenWait.run,
                subject(ledger, f"{uuid.uuid4().hex}@example.com"),
                id=f"erasure-job-{uuid.uuid4().hex[:8]}",
                task_queue="erasure-job-test",
            )
            done = await handle.result()
            history = await handle.fetch_history()
    finally:
        await acts.aclose()
        await env.shutdown()
        server.stop()
    began, ended = (event.event_time.ToDatetime() for event in (history.events[0], history.events[-1]))
    assert done.state == "completed"
    # Completed at the first hourly poll after two days; one event per poll would be over 150.
    assert 48 <= done.attempts <= 50
    assert timedelta(days=2) <= ended - began < timedelta(days=3)
    assert len(history.events) < 50
