"""A CI-sized slice of the mutation campaign (scripts/mutation-campaign runs the whole table):
broken labs that the library must turn red, through the real CLI and the real lab."""

from __future__ import annotations

import pytest

from conftest import SCENARIOS, assert_same, snapshot
from mutation import run_mutant

pytestmark = pytest.mark.usefixtures("lab_binaries")

HOSTS_REDIRECT = SCENARIOS / "registry" / "01-hosts-redirect-upstream.yaml"


@pytest.mark.parametrize("mutant, worse", [
    # dockerd pulls from Hub itself: the cache never sees the pulls, Hub sees the docker host
    ("no-mirror", {"during/the cache served both", "during/nothing reached the upstream except from the cache"}),
    # a relay stores nothing: the uncached image cannot come through once Hub is cut off
    # for the docker host, and the cache's own log stays empty
    ("forwarder", {"during/the cache served both"}),
])
def test_mutant_is_killed_by_the_hosts_redirect_drill(state_dir, mutant, worse):
    before = snapshot()
    cells = run_mutant(mutant, [HOSTS_REDIRECT], timeout=300)
    cell = cells["registry-hosts-redirect-upstream"]
    assert cell.outcome == "killed", cell
    probes = {w.split(": ", 1)[1].rsplit(": ", 1)[0] for w in cell.worse}
    assert worse <= probes, cell.worse
    assert_same(before, snapshot())


CDN_RESETS = SCENARIOS / "registry" / "12-cdn-resets-downloads.yaml"


def test_patient_client_is_killed_by_the_cdn_reset_drill(state_dir):
    # dockerd retries a reset layer download: 6 attempts give up within the drill's bound,
    # 30 are still retrying when the bound kills the pull
    before = snapshot()
    cells = run_mutant("patient-client", [CDN_RESETS], timeout=400)
    cell = cells["registry-cdn-resets-downloads"]
    assert cell.outcome == "killed", cell
    assert any("gives up on the reset layer within its retry budget" in w for w in cell.worse), cell.worse
    assert_same(before, snapshot())
