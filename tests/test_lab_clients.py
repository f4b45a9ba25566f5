"""containerd (ctr, hosts.toml mirror) and podman (registries.conf mirror) as lab clients:
their probes against the real lab - a cached pull before any fault, then the token server
down (scenarios/registry/08) - and `pull:` following `chaos run --client`. One `chaos run`
(one lab) holds all the lab checks, to keep CI time small."""

from __future__ import annotations

import json
import os

import pytest
from test_evidence import STALLED_PULL

from chaos.lab.pullers import qualified
from chaos.probes.pull_agent import CtrOutput, ImageOutput, Progress
from conftest import LAB_BINARIES, assert_same, require_binaries, snapshot, write

PODMAN_HOST_PATHS = ("/var/lib/containers/cache", "/dev/shm/libpod_lock", "/run/libpod",
                     "/run/containers")

SCENARIO = """
name: clients-token-server-down
lab: registry
faults:
  - type: packet-filter
    destinations: [auth.docker.io]
    action: reject-reset
expect:
  before:
    - name: containerd cached
      containerd_pull: library/busybox:1
      layers: 1
      within: 10s
    - name: podman cached
      podman_pull: library/busybox:1
      layers: 1
      within: 10s
    - name: role cached
      pull: library/busybox:1
      within: 10s
    - name: the cache served all three
      requests: cache
      path: /library/busybox/manifests/
      at_least: 3
  during:
    - name: containerd cached during
      containerd_pull: library/busybox:1
      within: 5s
    - name: containerd uncached
      containerd_pull: library/never-pulled:1
      ok: false
      error: {contains: "auth.docker.io/token"}
      within: 10s
    - name: podman uncached
      podman_pull: library/never-pulled:1
      ok: false
      error: {contains: "auth.docker.io/token"}
      within: 10s
"""


def test_short_references_mean_docker_io():
    assert qualified("library/busybox:1") == "docker.io/library/busybox:1"
    assert qualified("busybox") == "docker.io/library/busybox:latest"
    assert qualified("cache.chaos.test/library/x:1") == "cache.chaos.test/library/x:1"
    assert qualified("registry-1.docker.io/library/big:1") == "registry-1.docker.io/library/big:1"
    assert qualified("localhost/x@sha256:ab") == "localhost/x@sha256:ab"


def test_ctr_progress_table_gives_layers_and_bytes():
    progress = Progress()
    out = CtrOutput(progress)
    frame = ("docker.io/library/big:1:   resolved       |\x1b[32m++++\x1b[0m| \n"
             "layer-sha256:" + "a" * 64 + ":    done           |\x1b[32m++++\x1b[0m| \n"
             "layer-sha256:" + "b" * 64 + ":    downloading    |\x1b[32m++\x1b[0m--| 10.0 MiB/16.0 MiB \n"
             "layer-sha256:" + "c" * 64 + ":    exists         |\x1b[32m++++\x1b[0m| \n"
             "elapsed: 0.6 s              total:  20.0 M (33.4 MiB/s)   \n"
             "ctr: failed to resolve reference: not found\n")
    for line in frame.splitlines():
        out.line(line)
    layers = {e["id"][7:8]: e for e in progress.report()}
    assert layers["a"]["state"] == "done" and layers["c"]["state"] == "cached"
    assert layers["b"]["state"] == "downloading"
    assert layers["b"]["bytes"] == 10 << 20 and layers["b"]["size"] == 16 << 20
    assert out.bytes() == 20 << 20
    assert out.error() == "ctr: failed to resolve reference: not found"


def test_containers_image_lines_give_layers_and_retries(tmp_path):
    progress = Progress()
    (tmp_path / "1").write_bytes(b"x" * 1000)
    out = ImageOutput(progress, str(tmp_path))
    for line in ("Trying to pull docker.io/library/big:1...", "Getting image source signatures",
                 "Copying blob sha256:" + "a" * 64, "Copying blob " + "b" * 12 + " skipped: already exists",
                 'time="x" level=warning msg="Failed, retrying in 1s ... (1/3). Error: boom"',
                 "Error: boom"):
        out.line(line)
    out.poll()
    states = [e["state"] for e in progress.report()]
    assert states == ["downloading", "cached"] and out.retries == 1 and out.bytes() == 1000
    assert out.error().endswith("Error: boom")
    out.finish(ok=True)
    assert [e["state"] for e in progress.report()] == ["done", "cached"]


def test_podman_layers_that_came_take_their_size_from_the_store(tmp_path):
    """podman's temporary file goes as soon as a layer is stored, often before a poll saw it
    whole: the size is read from the store's layers.json (its format, as podman 4.3 wrote it)."""
    store = tmp_path / "layers.json"
    store.write_text(json.dumps([{"id": "1" * 64, "compressed-diff-digest": "sha256:" + "a" * 64,
                                  "compressed-size": 1031967, "diff-size": 1996800}]))
    for ok in (True, False):
        progress = Progress()
        out = ImageOutput(progress, None, str(store))
        out.line("Copying blob " + "a" * 12)  # the short form too
        out.line("Copying blob sha256:" + "b" * 64)
        out.finish(ok=ok)
        states = {e["id"]: (e["state"], e["bytes"]) for e in progress.report()}
        # stored: came whole, even when a later layer failed; not stored: done only on success
        assert states["sha256:" + "a" * 12] == ("done", 1031967)
        assert states["sha256:" + "b" * 64] == ("done" if ok else "downloading", 0)
    store.write_text("not json")
    out = ImageOutput(Progress(), None, str(store))
    assert out.stored() == {}


@pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")
def test_containerd_and_podman_pull_through_the_lab(chaos, tmp_path):
    require_binaries(*LAB_BINARIES, "ctr", "podman")
    before = snapshot()
    # What podman as root writes where no setting moves it (chaos.lab.podman): must not appear.
    host_podman = {path: os.path.exists(path) for path in PODMAN_HOST_PATHS}
    report = tmp_path / "r.json"
    result = chaos("run", str(write(tmp_path, SCENARIO)), "--client", "containerd",
                   "--json", str(report), timeout=240)
    (scenario,) = json.loads(report.read_text())["scenarios"]
    probes = {p["name"]: p for p in scenario["probes"]}
    assert result.returncode == 0, result.stdout
    assert all(p["verdict"] == "passed" for p in probes.values()), result.stdout

    for name, client in (("containerd cached", "containerd"), ("podman cached", "podman"),
                         ("role cached", "containerd")):  # pull: follows --client
        detail = probes[name]["detail"]
        assert detail["client"] == client and detail["ok"] and detail["layers"] == 1
        assert detail["bytes"] > 1_000_000  # the busybox layer came
    # the same compressed layer, counted whole by each client's reader
    assert len({probes[n]["detail"]["bytes"] for n in ("containerd cached", "podman cached")}) == 1

    # containerd asks the mirror first (404 from the cache), then Hub, whose token fails.
    ctr = probes["containerd uncached"]["detail"]
    assert "host=cache.chaos.test" in ctr["error"] and ctr["layers"] == 0
    # podman says the mirror failed too, and retries three times before it gives up.
    pod = probes["podman uncached"]["detail"]
    assert "Mirrors also failed" in pod["error"] and pod["retries"] == 3
    assert probes["podman uncached"]["duration"] > 2.5  # its retries wait 1 s each

    assert_same(before, snapshot())
    assert {path: os.path.exists(path) for path in PODMAN_HOST_PATHS} == host_podman
    tag = scenario["run_id"].removeprefix("chaos-")
    assert not os.path.exists(f"/var/tmp/chaos-{tag}-podman")  # its files went with the lab


# test_evidence's stalled CDN (each blob stops after 3 MB), with these clients pulling.
STALLED = STALLED_PULL.split("expect:")[0].replace("lab: registry", "lab: {dockerd: false}") + """
expect:
  during:
    - name: containerd stalls
      containerd_pull: registry-1.docker.io/library/big:1
      timeout: 6s
    - name: podman stalls
      podman_pull: registry-1.docker.io/library/big:1
      timeout: 6s
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")
def test_a_stalled_pull_says_where_it_stalled_for_each_client(chaos, tmp_path):
    require_binaries(*LAB_BINARIES, "ctr", "podman")
    report = tmp_path / "r.json"
    result = chaos("run", str(write(tmp_path, STALLED)), "--json", str(report), timeout=180)
    assert result.returncode == 1, result.stdout + result.stderr
    ctr, pod = json.loads(report.read_text())["scenarios"][0]["probes"]
    assert ctr["verdict"] == pod["verdict"] == "hung", (ctr, pod)
    # ctr's table and containerd's ingests: bytes per layer, each stalled one at most 3 MB.
    stalled = [e for e in ctr["evidence"]["layers"] if e["state"] == "downloading"]
    assert stalled and all(0 < e["bytes"] <= 3_000_000 for e in stalled), ctr["evidence"]
    assert all(e["idle"] >= 1 for e in stalled), ctr["evidence"]
    assert ctr["evidence"]["stalled"].startswith("layer "), ctr["evidence"]
    # podman names the layers it started and the bytes its temporary files hold, unmoving.
    assert [e for e in pod["evidence"]["layers"] if e["state"] == "downloading"], pod["evidence"]
    received = pod["evidence"]["received"]
    assert 0 < received["bytes"] <= 4 * 3_000_000 and received["idle"] >= 1, pod["evidence"]
    # ctr fetches in its own process: it holds the stalled CDN connections at the bound.
    held = [c for c in ctr["evidence"]["connections"] if c["to"] == "production.cloudflare.docker.com"]
    assert held and all(c["process"] == "ctr" and c["state"] == "established" for c in held), held
    out = " ".join(result.stdout.split())
    assert "received:" in out and "connection: ctr[" in out, out
