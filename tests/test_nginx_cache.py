"""nginx as the lab's cache (`lab: {cache: nginx}`, `chaos run --cache nginx`): the real
nginx from Debian in the cache's namespace, in front of the real upstream and CDN."""

from __future__ import annotations

import json

import pytest

from conftest import require_binaries, snapshot, write

pytestmark = pytest.mark.usefixtures("lab_binaries")

# Hub answers 503 to everything: what nginx stored it serves (proxy_cache_use_stale), what
# it never stored fails with Hub's status.
HUB_5XX = """\
name: nginx-cache-through-hub-5xx
lab: {cache: nginx}
faults:
  - type: http-error
    status: 503
    match: {host: registry-1.docker.io}
    ports: [443]
expect:
  before:
    - name: the cache is nginx
      run: curl -sS -o /dev/null -D - https://{cache}/v2/
      stdout: {contains: "Server: nginx"}
    - name: cached image pulls
      docker_pull: library/busybox:1
      within: 10s
  during:
    - name: cached image still pulls
      docker_pull: library/busybox:1
      within: 10s
    - name: nginx served the manifest itself
      requests: cache
      path: /library/busybox/manifests/
      status: 200
      at_least: 1
    - name: never-cached image fails with Hub's status
      docker_pull: library/never-pulled:1
      ok: false
      error: {contains: "503"}
      within: 20s
  after:
    - name: never-cached image pulls through nginx once Hub is back
      docker_pull: library/never-pulled:1
      within: 30s
    - name: nginx fetched its blob from the CDN and served it
      requests: cache
      path: /library/never-pulled/blobs/
      status: 200
      at_least: 1
"""

# containerd through nginx with Hub out of the client's reach, so a mirror that refuses
# cannot be hidden by containerd's fallback to Hub. containerd asks for a manifest without
# a token first and retries with one: nginx must not answer the retry with the 401 it got
# for the first ask. busybox's manifest by digest is not cached (skopeo warmed its tag).
CONTAINERD = """\
name: nginx-cache-containerd-tokens
lab: {cache: nginx}
faults:
  - type: hosts-entry
    region: default
    names: [registry-1.docker.io, auth.docker.io, production.cloudflare.docker.com]
expect:
  during:
    - name: cached image pulls through nginx
      pull: library/busybox:1
      within: 20s
    - name: never-cached image pulls through nginx
      pull: library/never-pulled:1
      within: 20s
    - name: nginx served both manifests by digest
      requests: cache
      path: "/manifests/sha256:"
      status: 200
      at_least: 2
    - name: nothing reached Hub from the client
      requests: upstream
      client: 198.18.0.30
      count: 0
"""


def assert_gone(run_id: str) -> None:
    """Other runs may share the machine: only this run's namespaces and links must be gone."""
    tag, after = run_id.removeprefix("chaos-"), snapshot()
    assert tag not in after["netns"] and tag not in after["links"], after["netns"]


@pytest.fixture(autouse=True)
def _nginx():
    require_binaries("nginx", why="the nginx cache needs")


def test_nginx_cache_serves_what_it_stored_while_hub_fails(chaos, tmp_path):
    report = tmp_path / "r.json"
    result = chaos("run", str(write(tmp_path, HUB_5XX)), "--json", str(report), timeout=300)
    assert result.returncode == 0, result.stdout
    (scenario,) = json.loads(report.read_text())["scenarios"]
    assert [p["verdict"] for p in scenario["probes"]] == ["passed"] * 7
    assert_gone(scenario["run_id"])


def test_containerd_pulls_through_nginx_with_tokens(chaos, tmp_path):
    report = tmp_path / "r.json"
    result = chaos("run", str(write(tmp_path, CONTAINERD)), "--client", "containerd",
                   "--json", str(report), timeout=300)
    assert result.returncode == 0, result.stdout
    (scenario,) = json.loads(report.read_text())["scenarios"]
    assert [p["verdict"] for p in scenario["probes"]] == ["passed"] * 4
    assert {p["detail"]["client"] for p in scenario["probes"] if p["kind"] == "pull"} == {"containerd"}
    assert_gone(scenario["run_id"])


def test_cache_option_overrides_the_scenario(chaos, tmp_path):
    # --cache nginx on a scenario that names no cache: the plan says which cache it starts
    path = write(tmp_path, HUB_5XX.replace("lab: {cache: nginx}", "lab: registry"))
    result = chaos("run", "--dry-run", "--cache", "nginx", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "cache (nginx)" in result.stdout
    result = chaos("run", "--dry-run", str(path))
    assert "cache (distribution)" in result.stdout


def test_unknown_cache_kind_is_refused_with_its_line(chaos, tmp_path):
    path = write(tmp_path, HUB_5XX.replace("lab: {cache: nginx}", "lab: {cache: varnish}"))
    result = chaos("validate", str(path))
    assert result.returncode == 2
    assert f"{path}:2" in result.stderr + result.stdout
