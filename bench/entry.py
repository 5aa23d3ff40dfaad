"""What `make bench` and `make drill` share as programs: progress on stderr, and an end that
stops every process they started, whether by Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _terminate(signum: int, _frame: object) -> None:
    # Turn SIGTERM into the same unwinding as Ctrl-C, so every started process is stopped.
    raise KeyboardInterrupt


def run_main(main: Callable[[], Coroutine[Any, Any, int]], name: str) -> None:
    signal.signal(signal.SIGTERM, _terminate)
    try:
        sys.exit(asyncio.run(main()))
    except KeyboardInterrupt:
        print(f"{name}: interrupted; every process it started was stopped", file=sys.stderr)
        sys.exit(130)
