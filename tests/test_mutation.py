"""A CI-sized slice of the mutation campaign (scripts/mutation-campaign runs the whole table):
broken labs that the library must turn red, through the real CLI and the real lab."""

from __future__ import annotations

import pytest

from conftest import SCENARIOS, assert_same, snapshot
from mutation import run_mutant

pytestmark = pytest.mark.usefixtures("lab_binaries")

# (mutant, the drill that must kill it, probes that must do worse than the normal lab's record)
KILLS = [
    # dockerd pulls from Hub itself: the cache never sees the pulls, Hub sees the docker host
    ("no-mirror", "01-hosts-redirect-upstream",
     {"during/the cache served both", "during/nothing reached the upstream except from the cache"}),
    # a relay stores nothing: the uncached image cannot come through once Hub is cut off
    # for the docker host, and the cache's own log stays empty
    ("forwarder", "01-hosts-redirect-upstream", {"during/the cache served both"}),
    # dockerd retries a reset layer download: 6 attempts give up within the drill's bound,
    # 30 are still retrying when the bound kills the pull
    ("patient-client", "12-cdn-resets-downloads",
     {"during/straight from Hub, dockerd gives up on the reset layer within its retry budget"}),
    # 13 pulls app:1 through the cache in `before`: a cache wiped at warm-up was filled again
    # by that pull and the mutant survived; wiped once the steady state held, the cache has
    # nothing to serve when Hub is cut off
    ("wiped-cache", "13-tag-moved-during-outage",
     {"during/the cache serves the release it cached under app:1"}),
]


@pytest.mark.parametrize("mutant, drill, worse", KILLS, ids=[f"{m}-{d[:2]}" for m, d, _ in KILLS])
def test_mutant_is_killed_by_its_drill(state_dir, mutant, drill, worse):
    before = snapshot()
    (cell,) = run_mutant(mutant, [SCENARIOS / "registry" / f"{drill}.yaml"], timeout=400).values()
    assert cell.outcome == "killed", cell
    probes = {w.split(": ", 1)[1].rsplit(": ", 1)[0] for w in cell.worse}
    assert worse <= probes, cell.worse
    assert_same(before, snapshot())
