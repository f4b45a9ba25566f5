"""Steps against the real lab: push, delete and retag in the upstream through the registry
API, stop / start / restart of every component, wait; each step's effect is seen by a
client probe right after it, and the run leaves nothing behind."""

from __future__ import annotations

import json

import pytest

from conftest import assert_same, snapshot, write

pytestmark = pytest.mark.usefixtures("lab_binaries")

SCENARIO = """\
name: lab-steps
lab:
  warm: []
  images:
    - {name: library/small, layers: [100kB]}
expect:
  before:
    - name: small is in the upstream
      skopeo_copy: "{upstream}/library/small:1"
      within: 10s
  during:
    - push: {name: library/pushed:1, layers: [200kB, 100kB]}
    - name: the pushed image pulls through the cache
      docker_pull: library/pushed:1
      within: 15s
    - retag: {image: library/small:1, to: library/moved:7}
    - name: the new tag names the image small:1 names
      docker_pull: library/moved:7
      digest: "{digest:library/small:1}"
      within: 15s
    - delete: library/pushed:1
    - name: the deleted image is gone upstream
      skopeo_copy: "{upstream}/library/pushed:1"
      ok: false
      error: {contains: manifest unknown}
      within: 10s
    - stop: auth
    - name: without the token server the upstream cannot be read
      skopeo_copy: "{upstream}/library/moved:7"
      ok: false
      error: {contains: auth.docker.io}
      within: 10s
    - start: auth
      within: 10s
    - stop: cdn
    - name: without the CDN a blob cannot be fetched
      skopeo_copy: "{upstream}/library/moved:7"
      ok: false
      error: {contains: production.cloudflare.docker.com}
      within: 10s
    - restart: cdn
      within: 10s
    - restart: upstream
      within: 10s
    - restart: dockerd
      within: 20s
    - wait: 200ms
    - name: everything answers again
      docker_pull: registry-1.docker.io/library/moved:7
      within: 15s
  after:
    - name: the cache still answers
      skopeo_copy: "{cache}/library/pushed:1"   # cached before it was deleted
      within: 10s
"""


def test_steps_change_the_lab_and_clients_see_it(chaos, tmp_path, state_dir):
    before = snapshot()
    report, svg_dir = tmp_path / "r.json", tmp_path / "timeline"
    result = chaos("run", str(write(tmp_path, SCENARIO)), "--json", str(report),
                   "--timeline", str(svg_dir), timeout=240)
    (scenario,) = json.loads(report.read_text())["scenarios"]
    verdicts = {(p["phase"], p["name"]): p["verdict"] for p in scenario["probes"]}
    assert result.returncode == 0 and set(verdicts.values()) == {"passed"}, result.stdout
    steps = [p for p in scenario["probes"] if p["kind"] == "step"]
    assert [p["name"] for p in steps] == [
        "push library/pushed:1", "retag library/small:1 as library/moved:7",
        "delete library/pushed:1", "stop auth", "start auth", "stop cdn", "restart cdn",
        "restart upstream", "restart dockerd", "wait 200ms"]
    observed = {p["name"]: p["observed"] for p in steps}
    assert observed["stop auth"] == "auth stopped"
    assert observed["start auth"] == "auth started and ready"
    assert observed["restart dockerd"] == "dockerd restarted and ready"
    assert "<title>retag library/small:1 as library/moved:7" in (svg_dir / "lab-steps.svg").read_text()
    # Every process a step started was recorded and ended; the machine is as it was.
    assert_same(before, snapshot())
