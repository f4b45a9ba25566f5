"""Start-up of the `chaos` command: no garbage collection while it imports and builds.

What the command imports and builds first (click, pydantic, the scenario models: over
100,000 objects) lives as long as the process, so collecting it on the way is wasted work,
and a full collection is a noticeable part of a trivial run (benchmarks/process_time.py;
figures in docs/benchmarks.md). ``pause`` is called by the entry point; ``resume`` once the command has
what it needs: it freezes those objects (never scanned again) and collection goes on for
what the command makes next. Only the entry point pauses: the pytest plugin, in a user's
process, leaves the collector alone.
"""

from __future__ import annotations

import gc

_paused = False
light_models = False
"""Build the scenario models on the plain base (chaos.scenario.modelbase): set only by the
cache's run path (chaos/fastrun.py), before the first model module is imported."""


def pause() -> None:
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume() -> None:
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()
