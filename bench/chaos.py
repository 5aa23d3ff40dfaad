"""The drill's faults in time: kill -9 one worker, kill -9 both, restart the Temporal server on
its database file, each at a random (seeded) moment, one after the other."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

from bench.stack import TemporalServer, WorkerProcess

EVENTS = ("kill one worker", "kill both workers", "restart the Temporal server")
MIN_GAP_S = 8.0  # let the fleet recover from one event before the next


@dataclass
class Fleet:
    server: TemporalServer
    workers: list[WorkerProcess]
    next_number: int = 3
    log: list[tuple[float, str]] = field(default_factory=list)

    def replace(self, worker: WorkerProcess) -> WorkerProcess:
        fresh = WorkerProcess(worker.config, number=self.next_number)
        self.next_number += 1
        self.workers[self.workers.index(worker)] = fresh
        return fresh


def schedule(rng: random.Random, earliest: float, latest: float) -> list[tuple[float, str]]:
    """Every event once, in random order, at random moments between earliest and latest seconds."""
    order = rng.sample(EVENTS, len(EVENTS))
    span = max(latest - earliest - MIN_GAP_S * (len(order) - 1), 1.0)
    offsets = sorted(rng.uniform(0, span) for _ in order)
    return [(earliest + offset + i * MIN_GAP_S, event) for i, (offset, event) in enumerate(zip(offsets, order))]


async def run(fleet: Fleet, plan: list[tuple[float, str]], began: float, rng: random.Random) -> None:
    for at, event in plan:
        await asyncio.sleep(max(0.0, began + at - time.monotonic()))
        fleet.log.append((round(time.monotonic() - began, 1), event))
        if event == "kill one worker":
            victim = rng.choice(fleet.workers)
            victim.kill()
            await asyncio.sleep(1)
            await asyncio.to_thread(fleet.replace(victim).start)
        elif event == "kill both workers":
            victims = list(fleet.workers)
            for victim in victims:
                victim.kill()
            await asyncio.sleep(1)
            for victim in victims:
                await asyncio.to_thread(fleet.replace(victim).start)
        else:
            fleet.server.kill()
            await asyncio.sleep(2)
            await asyncio.to_thread(fleet.server.start)
