"""The machine's 1-minute load average, sampled while a benchmark runs (others share the machine)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field


@dataclass
class LoadWatch:
    every_s: float = 5.0
    samples: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> LoadWatch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(self.every_s):
                return

    def summary(self) -> str:
        if not self.samples:
            return "n/a"
        mean = sum(self.samples) / len(self.samples)
        return f"1-min load avg {min(self.samples):.2f}–{max(self.samples):.2f} (mean {mean:.2f}) on {os.cpu_count()} cores"
