"""Erasure-job connector: ask a vendor to erase one subject, then read the job's state until done.

Each activity makes exactly one HTTP request, so that a system's fleet-wide task-queue rate
limit is also its request rate limit. `check` is meant to be polled as server-side retries:
"not yet" is a retryable, benign failure, so the history stays a few events long however
many days the vendor takes.

Running `start` twice (a worker crash after the request, a retry after a timeout) is safe:
most vendors dedupe by subject and answer with the job already under way, either as a 2xx or
as a 409 that names it; both are a success here. A vendor that opens a second job instead
erases the same subject twice, which changes nothing; the workflow follows the job it was told about.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.http_connector import HttpConnector
from activities.http_errors import raise_for_status
from activities.vault import identifier_for
from lethe.case import SubjectInSystem
from lethe.erasure_job import (
    JOB_ID,
    MAX_JOB_ID,
    ErasureJobConfig,
    ErasureJobDone,
    ErasureJobRef,
    ErasureJobStarted,
    dig,
    fill_template,
)


class ErasureJobActivities(HttpConnector[ErasureJobConfig]):
    """The erasure-job activities of one worker process, with one HTTP client per system."""

    kind = "erasure-job"

    @activity.defn(name="erasure_job.start")
    async def start(self, arg: SubjectInSystem) -> ErasureJobStarted:
        """Ask the vendor to erase the subject; returns the vendor's job id."""
        config = self._config(arg.system)
        identifier = await identifier_for(self._ledger, arg.subject_ref, f"start in {arg.system}")
        body = fill_template(config.start.body, identifier)
        response = await self._request(arg.system, "start", config.start.method, config.start.path, json=body)
        if response.status_code == 409:
            # The vendor already has a request for this subject: ours, if this is a second attempt.
            job_id = _job_id(response, config.start.job_id)
            if job_id is not None:
                return _started(_checked(job_id, identifier, arg.system), "already-started", response)
        raise_for_status(response, arg.system, "start")
        job_id = _job_id(response, config.start.job_id)
        if job_id is None:
            raise ApplicationError(
                f"start in {arg.system}: HTTP {response.status_code} without a job id at "
                f"{config.start.job_id!r}; check start.job_id",
                type="BadResponse",
                non_retryable=True,
            )
        return _started(_checked(job_id, identifier, arg.system), "started", response)

    @activity.defn(name="erasure_job.check")
    async def check(self, arg: ErasureJobRef) -> ErasureJobDone:
        """One read of the job's state: returns when done, fails for good when the vendor gave up,
        and fails retryably ("NotYetDone", benign) while the job is still running."""
        config = self._config(arg.system)
        path = config.status.path.replace(JOB_ID, quote(arg.job_id, safe=""))
        response = await self._request(arg.system, "check", "GET", path)
        raise_for_status(response, arg.system, "check")
        value = dig(_json(response), config.status.field)
        if not isinstance(value, (str, int, float, bool)):
            raise ApplicationError(
                f"check in {arg.system}: HTTP {response.status_code} without a state at "
                f"{config.status.field!r}; check status.field",
                type="BadResponse",
                non_retryable=True,
            )
        state = str(value)
        shown = repr(state[:64])
        if state in config.status.done:
            return ErasureJobDone(state=state, http_status=response.status_code, attempts=activity.info().attempt)
        if state in config.status.failed:
            raise ApplicationError(
                f"check in {arg.system}: the vendor reports the erasure job as {shown}; "
                "ask the vendor why, then resolve with retry or skip",
                type="ErasureFailed",
                non_retryable=True,
            )
        raise ApplicationError(
            f"check in {arg.system}: erasure job is {shown}; polling",
            type="NotYetDone",
            category=ApplicationErrorCategory.BENIGN,
        )

    def activities(self) -> list[object]:
        return [self.start, self.check]


def _json(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


def _job_id(response: httpx.Response, path: str) -> str | None:
    value = dig(_json(response), path)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        return None
    return str(value)


def _checked(job_id: str, identifier: str, system: str) -> str:
    """The job id, once it is sure to be opaque: it goes into Temporal's history in plain text."""
    if identifier.casefold() in job_id.casefold():
        raise ApplicationError(
            f"start in {system}: the vendor's job id contains the subject's identifier; "
            "it cannot be kept in the workflow history",
            type="BadResponse",
            non_retryable=True,
        )
    if len(job_id) > MAX_JOB_ID:
        raise ApplicationError(
            f"start in {system}: job id longer than {MAX_JOB_ID} characters; check start.job_id",
            type="BadResponse",
            non_retryable=True,
        )
    return job_id


def _started(job_id: str, outcome: str, response: httpx.Response) -> ErasureJobStarted:
    return ErasureJobStarted(
        job_id=job_id,
        outcome=outcome,  # type: ignore[arg-type]
        http_status=response.status_code,
        attempts=activity.info().attempt,
    )
