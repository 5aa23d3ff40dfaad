"""Fleet-wide pacing: slots from the shared ledger keep every one-second window within the
vendor's limit, even when requests go out as late as the pacing allows."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lethe.faultproxy import RateLimiter
from lethe.ledger import engine_for
from lethe.pacing import may_go_late, reserve_slot, slot_interval


def most_in_one_second(times: list[float]) -> int:
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


@given(
    rate=st.integers(min_value=1, max_value=60),
    lateness=st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=150, max_size=150),
)
@settings(max_examples=100, deadline=None)
def test_late_requests_never_push_a_window_past_the_limit(rate: int, lateness: list[float]) -> None:
    """Slots `slot_interval` apart, each sent anywhere up to `may_go_late` after it: no
    one-second window (the proxy's own sliding-window limiter) holds more than `rate`."""
    interval, late = slot_interval(rate), may_go_late(rate)
    sent = sorted(n * interval + fraction * late for n, fraction in enumerate(lateness))
    assert most_in_one_second(sent) <= rate
    limiter = RateLimiter(rate)
    assert all(limiter.admit(t) == 0.0 for t in sent)


def test_slots_follow_each_other_across_callers(tmp_path: Path) -> None:
    engine = engine_for(f"sqlite:///{tmp_path / 'ledger.db'}")
    slots = [reserve_slot(engine, "chat", 25, now=1000.0) for _ in range(5)]
    assert slots == pytest.approx([1000.0 + n / 24 for n in range(5)])
    assert reserve_slot(engine, "crm", 25, now=1000.0) == 1000.0  # each system has its own line
    # A quiet spell: the next request goes now, not at a slot in the past.
    assert reserve_slot(engine, "chat", 25, now=2000.0) == 2000.0
