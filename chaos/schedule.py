"""When scheduled faults switch on and off: `window` and `flap`, as (seconds, on?) steps.

Seconds count from the start of the `during` phase. Open-ended schedules (a flap with no
window end) go on until the phase ends, so the steps are a generator.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator


def switch_steps(window, flap) -> Iterator[tuple[float, bool]]:
    start = window.after if window else 0.0
    end = start + window.for_ if window and window.for_ is not None else None
    if flap is None:
        yield start, True
        if end is not None:
            yield end, False
        return
    on_for = flap.period * flap.duty
    for cycle in itertools.count():
        t = start + cycle * flap.period
        if end is not None and t >= end:
            return
        yield t, True
        off = t + on_for
        if end is not None and off >= end:
            yield end, False
            return
        if on_for < flap.period:  # duty 1: on for good, nothing to switch off
            yield off, False
        elif end is None:
            return


def finite_end(window, flap) -> float | None:
    """When the schedule is over for good, or None when it lasts until `during` ends."""
    if window and window.for_ is not None:
        return window.after + window.for_
    return None
