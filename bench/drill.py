"""`make drill`: leaver cases through worker crashes, a Temporal restart and flaky systems.

Two worker processes, a Temporal dev server on a database file, real SCIM servers behind fault
proxies that fail 5% of requests with 503. During the run: kill -9 of one worker, of both, and a
kill -9 + restart of the server on the same file. At the end the SCIM servers, the ledger,
Temporal and the proxies are asked what happened; the same run without faults is the yardstick.
Prints a verdict table, writes bench/results/drill.json and keeps the last three tables in
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.service import RPCError  # noqa: E402

from bench import chaos  # noqa: E402
from bench.entry import run_main, say  # noqa: E402
from bench.loadwatch import LoadWatch  # noqa: E402
from bench.people import bystanders, subjects  # noqa: E402
from bench.report import optional_path, render, replace_section, section_body  # noqa: E402
from bench.stack import TemporalServer, WorkerProcess, lethe_env, load, write_config  # noqa: E402
from bench.systems import SystemSpec, open_systems  # noqa: E402
from bench.verdict import AccountCheck, DeleteCheck, LedgerCheck, check_accounts, check_deletes, check_ledger  # noqa: E402
from lethe.case import Reason  # noqa: E402
from lethe.devstack import Person  # noqa: E402
from lethe.ledger import engine_for  # noqa: E402
from lethe.logs import quiet_url_loggers  # noqa: E402
from lethe.settings import Settings  # noqa: E402
from lethe.subject import subject_ref, workflow_id  # noqa: E402
from lethe.temporal import connect  # noqa: E402
from lethe.start import start_case  # noqa: E402

RESULTS = ROOT / "bench" / "results"
KEEP_TABLES = 3
RUN_MARK = "<!-- run -->"
T = TypeVar("T")
SETTLE_S = 60.0


@dataclass(frozen=True)
class DrillParams:
    cases: int = 300
    systems: int = 4
    rate_limit: int = 50
    latency_ms: float = 5.0
    fault_rate: float = 0.05
    bystanders: int = 50
    seed: int = 7
    timeout_s: float = 900.0


@dataclass
class DrillRun:
    label: str
    started: int = 0
    start_path: str = ""
    wall_s: float | None = None  # from the first start to the last certificate; None: timed out
    start_s: float | None = None  # until every case was started
    stuck: int = 0
    lost: int = 0
    accounts: AccountCheck = field(default_factory=AccountCheck)
    ledger: LedgerCheck = field(default_factory=LedgerCheck)
    deletes: DeleteCheck = field(default_factory=DeleteCheck)
    events: list[tuple[float, str]] = field(default_factory=list)
    server_starts: int = 1

    @property
    def passed(self) -> bool:
        return (self.ledger.certified == self.started and self.stuck == 0 and self.lost == 0
                and self.accounts.targets_left == 0 and self.accounts.bystanders_changed == 0
                and self.ledger.duplicates == 0 and self.deletes.second_effects == 0)


def bulk_available() -> bool:
    helped = subprocess.run([sys.executable, str(ROOT / "starter.py"), "--help"], capture_output=True, text=True)
    return " bulk " in helped.stdout or "bulk," in helped.stdout


async def retrying(call: Callable[[], Awaitable[T]], what: str, timeout: float = 120) -> T:
    """Temporal may be restarting: try again until it answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await call()
        except RPCError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Temporal did not answer for {timeout:.0f}s ({what})") from None
            await asyncio.sleep(0.5)


async def start_with_cli(config: Path, people: list[Person]) -> None:
    """`starter.py bulk`: a row that failed (the server was down) is started by running the file again."""
    path = config.parent / "leavers.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["identifier"])
        writer.writerows([person.user_name] for person in people)
    for _ in range(10):
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "starter.py"), "bulk", str(path), "--reason", "leaver",
            env=lethe_env(config), cwd=config.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if await process.wait() == 0:
            return
        await asyncio.sleep(2)
    raise RuntimeError("starter.py bulk kept failing")


async def start_in_process(client: Client, settings: Settings, people: list[Person]) -> None:
    slots = asyncio.Semaphore(16)

    async def one(person: Person) -> None:
        async with slots:
            await retrying(lambda: start_case(client, settings, person.user_name, Reason.LEAVER, None), "start")

    await asyncio.gather(*(one(person) for person in people))


def certified_count(settings: Settings) -> int:
    with engine_for(settings.ledger.url).connect() as connection:
        return connection.execute(text("SELECT COUNT(DISTINCT workflow_id) FROM certificates")).scalar_one()


async def running_ids(client: Client) -> set[str]:
    async def listing() -> set[str]:
        return {execution.id async for execution in client.list_workflows('ExecutionStatus = "Running"')}

    return await retrying(listing, "list open workflows")


async def drill_once(params: DrillParams, workdir: Path, faults: bool, chaos_until: float | None) -> DrillRun:
    """One run on fresh systems and a fresh database file; chaos events happen before `chaos_until` s."""
    workdir.mkdir(parents=True, exist_ok=True)
    run = DrillRun("faults + crashes" if faults else "no faults")
    leavers, staying = subjects(params.cases), bystanders(params.bystanders)
    rules = ({"name": "transient 503", "path": "^/Users", "status": 503, "probability": params.fault_rate},) if faults else ()
    spec = SystemSpec(latency_ms=params.latency_ms, rate_limit=params.rate_limit, rules=rules, rules_seed=params.seed)
    names = [f"sys{i + 1}" for i in range(params.systems)]
    rng = random.Random(params.seed)
    with ExitStack() as stack:
        systems = stack.enter_context(open_systems(names, spec, leavers + staying))
        before = {name: system.server.users() for name, system in systems.items()}
        server = TemporalServer(workdir, db_filename=workdir / "temporal.db").start()
        stack.callback(server.stop)
        config = write_config(workdir / "lethe.toml", server.address, {n: s.url for n, s in systems.items()},
                              params.rate_limit, grace_leaver="0s")
        fleet = chaos.Fleet(server, [WorkerProcess(config, number=1), WorkerProcess(config, number=2)])
        stack.callback(lambda: [worker.stop() for worker in fleet.workers])
        for worker in fleet.workers:
            worker.start()
        settings = load(config)
        client = await connect(settings.temporal)
        run.start_path = "starter.py bulk" if bulk_available() else "start_case in-process (no bulk command yet)"
        began = time.monotonic()
        starting = start_with_cli(config, leavers) if run.start_path == "starter.py bulk" else start_in_process(client, settings, leavers)
        tasks = [asyncio.create_task(starting)]
        if chaos_until is not None:
            plan = chaos.schedule(rng, 3.0, max(chaos_until, 3.0 + 3 * chaos.MIN_GAP_S))
            tasks.append(asyncio.create_task(chaos.run(fleet, plan, began, rng)))
        await tasks[0]
        run.start_s = round(time.monotonic() - began, 1)
        await asyncio.gather(*tasks)
        run.started = params.cases
        deadline = began + params.timeout_s
        while await asyncio.to_thread(certified_count, settings) < params.cases and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        done = time.monotonic()
        run.wall_s = round(done - began, 1) if done < deadline else None
        expected = {workflow_id(subject_ref(settings.pepper_bytes(), p.user_name)) for p in leavers}
        # A certified workflow closes in its next workflow task: give the last ones time to.
        settle = time.monotonic() + SETTLE_S
        while (running := await running_ids(client) & expected) and time.monotonic() < settle:
            await asyncio.sleep(0.5)
        run.ledger = check_ledger(engine_for(settings.ledger.url))
        with engine_for(settings.ledger.url).connect() as connection:
            certified = {row[0] for row in connection.execute(text("SELECT DISTINCT workflow_id FROM certificates"))}
        run.stuck = len(running)
        run.lost = len(expected - certified - running)
        run.accounts = check_accounts(systems, before, {p.user_name for p in leavers})
        run.deletes = check_deletes(systems)
        run.events, run.server_starts = fleet.log, server.starts
    return run


def verdict_table(clean: DrillRun, chaotic: DrillRun) -> str:
    def both(get) -> tuple[str, str]:  # type: ignore[no-untyped-def]
        return str(get(clean)), str(get(chaotic))

    kills = sum(1 for _, e in chaotic.events if e == "kill one worker") + 2 * sum(1 for _, e in chaotic.events if e == "kill both workers")
    restarts = sum(1 for _, e in chaotic.events if e.startswith("restart"))
    ratio = f" ({chaotic.wall_s / clean.wall_s:.1f}x)" if clean.wall_s and chaotic.wall_s else ""
    rows: list[tuple[str, str, str, str]] = [
        ("cases started", *both(lambda r: r.started), ""),
        ("certified", *both(lambda r: r.ledger.certified), "= started"),
        ("  of which every system confirmed", *both(lambda r: r.ledger.completed), ""),
        ("stuck (still running)", *both(lambda r: r.stuck), "0"),
        ("lost (no certificate, not running)", *both(lambda r: r.lost), "0"),
        ("target accounts left in the SCIM servers", *both(lambda r: r.accounts.targets_left), "0"),
        ("accounts wrongly deleted or changed", *both(lambda r: r.accounts.bystanders_changed), "0"),
        ("duplicate certificates", *both(lambda r: r.ledger.duplicates), "0"),
        ("escalations", *both(lambda r: len(r.ledger.escalations)), "0 or explained"),
        ("accounts that got >1 DELETE / >1 effective", *both(lambda r: f"{r.deletes.accounts_deleted_twice} / {r.deletes.second_effects}"), "any / 0"),
        ("transient 503s injected", *both(lambda r: r.deletes.injected_faults), ""),
        ("worker kills (-9) survived", "0", str(kills) if chaotic.passed else f"{kills} (NOT survived)", ""),
        ("Temporal server restarts survived", "0", str(restarts) if chaotic.passed else f"{restarts} (NOT survived)", ""),
        ("wall, start to last certificate", f"{clean.wall_s} s", f"{chaotic.wall_s} s{ratio}", ""),
        ("verdict", "PASS" if clean.passed else "FAIL", "PASS" if chaotic.passed else "FAIL", ""),
    ]
    return render(rows, ("", "no faults", "faults + crashes", "must"))


def keep_latest(markdown: Path, block: str) -> None:
    previous = [part.strip() for part in section_body(markdown, "drill").split(RUN_MARK) if part.strip()]
    blocks = (previous + [block.strip()])[-KEEP_TABLES:]
    replace_section(markdown, "drill", "\n\n".join(f"{RUN_MARK}\n{b}" for b in blocks), "make drill (last three runs)")


async def main() -> int:
    parser = argparse.ArgumentParser(prog="python bench/drill.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--systems", type=int, default=4)
    parser.add_argument("--rate-limit", type=int, default=50, help="requests/s per system (default 50)")
    parser.add_argument("--latency-ms", type=float, default=5)
    parser.add_argument("--fault-rate", type=float, default=0.05, help="share of requests answered 503 (default 0.05)")
    parser.add_argument("--bystanders", type=int, default=50)
    parser.add_argument("--seed", type=int, default=None, help="faults and chaos moments (default: random, printed)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for every certificate")
    parser.add_argument("--repeat", type=int, default=1, help="drills in a row (each: a clean run and a chaotic run)")
    parser.add_argument("--output", type=Path, default=RESULTS / "drill.json")
    parser.add_argument("--markdown", type=optional_path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args()
    quiet_url_loggers()
    reports = []
    ok = True
    for number in range(args.repeat):
        seed = args.seed if args.seed is not None else random.randrange(10_000)
        params = DrillParams(args.cases, args.systems, args.rate_limit, args.latency_ms, args.fault_rate,
                             args.bystanders, seed + number, args.timeout)
        with tempfile.TemporaryDirectory(prefix="lethe-drill-") as tmp, LoadWatch() as load_watch:
            say(f"drill {number + 1}/{args.repeat} (seed {params.seed}): {params.cases} cases, no faults")
            clean = await drill_once(params, Path(tmp) / "clean", faults=False, chaos_until=None)
            say(f"  {clean.wall_s} s; now with faults and crashes")
            chaotic = await drill_once(params, Path(tmp) / "chaos", faults=True, chaos_until=0.6 * (clean.wall_s or 60))
        events = "; ".join(f"{at:.0f} s {event}" for at, event in chaotic.events)
        header = (f"Drill {datetime.now().isoformat(timespec='seconds')}, seed {params.seed}: {params.cases} leavers x "
                  f"{params.systems} systems, {params.rate_limit} req/s, {100 * params.fault_rate:.0f}% 503s, 2 workers; "
                  f"started via {chaotic.start_path}; {load_watch.summary()}\n\nChaos: {events}")
        if chaotic.ledger.escalations:
            header += "\n\nEscalations: " + "; ".join(sorted(set(chaotic.ledger.escalations))[:5])
        table = verdict_table(clean, chaotic)
        print(f"\n{header}\n\n{table}\n", flush=True)
        reports.append({"params": asdict(params), "clean": asdict(clean), "chaotic": asdict(chaotic),
                        "load": load_watch.samples, "table": table})
        if args.markdown:
            keep_latest(args.markdown, f"{header}\n\n{table}")
        ok = ok and clean.passed and chaotic.passed
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(reports, indent=2, default=str) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    run_main(main, "drill")
