"""Ending a Lethe process."""

from __future__ import annotations

import os
import sys
from typing import NoReturn


def exit_now(code: int) -> NoReturn:
    """Flush and exit without interpreter teardown.

    The Temporal client's Rust runtime keeps threads that can abort CPython's finalization
    ("PyGILState_Release: thread state must be current", temporalio/sdk-python#300), turning
    a finished command into exit code 134. Everything the command owes is written by now.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
