"""The incident library against the real lab: every scenario runs, and each expectation
holds or fails exactly as recorded in docs/registry-library.md (a change in the cache's or
dockerd's behaviour shows up here)."""

from __future__ import annotations

import json

import pytest

from conftest import SCENARIOS, assert_same, snapshot

LIBRARY = sorted((SCENARIOS / "registry").glob("*.yaml"))

# What the real distribution cache and dockerd do, probe by probe, recorded by
# `chaos run scenarios/registry/ --write-baseline scenarios/registry/baseline.json`; why each
# unmet expectation is not met: docs/registry-library.md. README's gate uses the same file.
BASELINE = SCENARIOS / "registry" / "baseline.json"

# Missing lab packages skip here, and fail under CI=true (conftest.require_binaries).
pytestmark = pytest.mark.usefixtures("lab_binaries")


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.stem)
def test_library_scenario_against_the_lab(chaos, tmp_path, path):
    before = snapshot()
    report = tmp_path / "r.json"
    result = chaos("run", str(path), "--baseline", str(BASELINE), "--json", str(report),
                   timeout=300)
    (scenario,) = json.loads(report.read_text())["scenarios"]
    assert scenario["baseline"]["recorded"], f"{scenario['name']} is not in {BASELINE}"
    changes = scenario["baseline"]["worse"] + scenario["baseline"]["better"]
    assert not changes and result.returncode == 0, result.stdout
    assert_same(before, snapshot())
