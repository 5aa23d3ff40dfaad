"""A system's rate limit holds for the whole fleet: two worker processes together never send
it more than `rate_limit` requests in any one-second window (measured at the proxy)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from lethe.devstack import ScimServer, stop_process
from lethe.faultproxy import max_in_window
from tests.faults import proxied_server
from tests.support import PEPPER, TOKEN_ENV, forget, make_settings, person
from tests.test_cli import ROOT, write_config

RATE_LIMIT, PEOPLE, WORKERS = 5, 9, 2


def start_worker(config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    env = {"PATH": "/usr/bin:/bin", "LETHE_CONFIG": str(config), "LETHE_PEPPER": PEPPER, TOKEN_ENV: ScimServer.token}
    log = log_path.open("ab")
    return subprocess.Popen([sys.executable, str(ROOT / "worker.py")], env=env, cwd=config.parent, stdout=log, stderr=log)


async def wait_for_pollers(client: Client, task_queue: str, workers: list[subprocess.Popen[bytes]], log: Path) -> None:
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
    )
    for _ in range(900):
        if len((await client.workflow_service.describe_task_queue(request)).pollers) >= len(workers):
            return
        if any(w.poll() is not None for w in workers):
            raise AssertionError(f"a worker exited before polling {task_queue}:\n{log.read_text()}")
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {len(workers)} workers poll {task_queue}:\n{log.read_text()}")


async def test_two_workers_share_one_rate_limit(client: Client, tmp_path: Path) -> None:
    people = [person(f"rate-{i}") for i in range(PEOPLE)]
    with proxied_server() as (server, proxy):
        server.seed(people)
        settings = make_settings(tmp_path, client, {"chat": proxy}, match="userName", rate_limit=RATE_LIMIT)
        config = write_config(settings, tmp_path / "lethe.toml")
        worker_log = tmp_path / "workers.log"
        workers = [start_worker(config, worker_log) for _ in range(WORKERS)]
        try:
            # The server learns a queue's limit from its pollers: workers run before cases arrive.
            await wait_for_pollers(client, f"{settings.temporal.task_queue}.chat", workers, worker_log)
            # Temporal creates the task queue on its first task, with no limit until a poll
            # carries it: a first case teaches the server the limit, then the test begins.
            await (await forget(client, settings, people[0].user_name)).result()
            proxy.clear_log()
            handles = [await forget(client, settings, p.user_name) for p in people[1:]]
            certificates = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), timeout=180)
        finally:
            for worker in workers:
                stop_process(worker)
        log = proxy.log()
        assert server.users() == {}
    assert all(c.all_confirmed for c in certificates)
    assert len(log) == (PEOPLE - 1) * 5  # find, deactivate, delete, confirm, find again: every request was seen
    busiest = max_in_window(log, window_s=1.0)
    assert busiest <= RATE_LIMIT + 1, f"{busiest} requests in one second against a limit of {RATE_LIMIT}"
    assert all(w.returncode in (0, -15) for w in workers)
