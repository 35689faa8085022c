"""The export backoff (issue 9, silent loss 2): exponential, capped, with jitter, so a team's
laptops do not retry one collector in lockstep. Each assertion fails with the feature gone:
no jitter (every delay the full step), a fixed draw in the daemon's default, no growth, no
cap, no reset after a success."""

from __future__ import annotations

import structlog

from ccotel.otlp.backoff import Backoff
from ccotel.otlp.health import ExportHealth
from ccotel.otlp.transport import ExportError


def test_jitter_spans_half_to_all_of_the_step():
    """The draw decides where in [step/2, step] the delay falls: the lowest draw gives half
    the step, the highest all of it."""
    low = Backoff(100.0, base=1.0, clock=lambda: 0.0, rand=lambda: 0.0)
    high = Backoff(100.0, base=1.0, clock=lambda: 0.0, rand=lambda: 1.0)
    for n in range(1, 6):
        step = 2.0**n
        assert (low.failed(), high.failed()) == (step / 2, step), n
        assert low.wait_time() == step / 2


def test_capped_and_reset():
    b = Backoff(10.0, base=1.0, clock=lambda: 0.0, rand=lambda: 1.0)
    delays = [b.failed() for _ in range(30)]
    assert delays[:3] == [2.0, 4.0, 8.0] and set(delays[3:]) == {10.0}
    b.ok()
    assert b.ready() and b.failed() == 2.0


def test_laptops_do_not_retry_in_lockstep():
    """The daemon's exporters use ExportHealth's default draw: a hundred of them failing at
    the same instant retry spread over the whole jitter range, not at one time."""
    exc = ExportError("503", answered=True)
    delays = []
    for _ in range(100):
        h = ExportHealth(structlog.get_logger(), "traces", "http://c:4318", True, 300.0)
        h.failed(exc)
        h.failed(exc)
        delays.append(h.backoff.delay)
    step = 0.5 * 2**2
    assert all(step / 2 <= d <= step for d in delays)
    assert len(set(delays)) > 90  # distinct draws, not one shared value
    assert max(delays) - min(delays) > step / 4  # spread over the range
