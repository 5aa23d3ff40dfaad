"""CPU seconds and peak memory of a process, read from /proc (Linux only, no extra package)."""

from __future__ import annotations

import os
from dataclasses import dataclass

_TICKS = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found += [int(child) for child in handle.read().split()]
    except OSError:
        pass
    return found


def tree(pid: int) -> list[int]:
    """The process and its descendants (a console script may exec or fork a child)."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        todo += _children(current)
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process tree so far; 0 when it is gone."""
    total = 0.0
    for member in tree(pid):
        try:
            with open(f"/proc/{member}/stat") as handle:
                # The command name may hold spaces: fields are counted after its closing parenthesis.
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / _TICKS
    return total


def peak_rss_mb(pid: int) -> float:
    """VmHWM, the resident set's high-water mark, of the process itself."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


@dataclass
class CpuMeter:
    """CPU used by named processes between start() and stop(), so set-up (seeding) is not counted."""

    pids: dict[str, int]
    begun: dict[str, float] | None = None
    used: dict[str, float] | None = None

    def start(self) -> None:
        self.begun = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.begun["bench (this process)"] = own_cpu_seconds()

    def stop(self) -> dict[str, float]:
        assert self.begun is not None, "start() first"
        now = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        now["bench (this process)"] = own_cpu_seconds()
        self.used = {name: round(now[name] - self.begun[name], 2) for name in now}
        return self.used
