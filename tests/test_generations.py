"""Client generations: dockerd@26.1, containerd@1.7, podman@5.4 and skopeo@1.18 (Debian 13's
builds, installed beside Debian 12's by scripts/generations; podman, skopeo with trixie's own
libc) as the lab's clients, chosen per scenario, per run or per matrix cell, and baselines
chosen by the run's client."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chaos.lab import generations
from chaos.lab.generations import GenerationError
from chaos.report.baseline import BaselineError, load_for
from conftest import ROOT, snapshot, write

SCENARIO = """\
name: generation-drill
lab: {client_version: "26.1"}
faults: []
expect:
  before:
    - name: cached image pulls
      docker_pull: library/busybox:1
      within: 10s
    - name: the daemon is the generation asked for
      run: docker -H {docker_host} version
      stdout: {contains: "26.1."}
"""


def _need(spec: str) -> None:
    if generations.installed(spec):
        return
    message = f"{spec} is not installed (scripts/setup installs it through scripts/generations)"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def test_names_map_to_versions_and_unknown_ones_are_refused():
    assert generations.parse("dockerd@26.1") == ("dockerd", "26.1")
    assert generations.resolve_name("dockerd@26.1") == "dockerd@26.1"
    system = generations.SUITES[generations.system_suite()]["dockerd"]
    assert generations.resolve_name("dockerd") == f"dockerd@{system}"
    for bad in ("dockerd@27.0", "dockerd@26", "moby@26.1"):
        with pytest.raises(GenerationError):
            generations.resolve_name(bad)


def test_baseline_is_chosen_by_the_runs_client(tmp_path):
    doc = {"version": 1, "client": "dockerd@20.10",
           "scenarios": {"s": {"file": "s.yaml", "probes": {"before/p": "passed"}}}}
    main = tmp_path / "baseline.json"
    main.write_text(json.dumps(doc))
    assert load_for(main, "dockerd@20.10")[1] == main
    with pytest.raises(BaselineError, match=r"baseline-dockerd@26.1.json does not exist"):
        load_for(main, "dockerd@26.1")
    other = tmp_path / "baseline-dockerd@26.1.json"
    other.write_text(json.dumps(dict(doc, client="dockerd@26.1",
                                     scenarios={"s": {"file": "s.yaml", "probes": {"before/p": "failed"}}})))
    verdicts, used = load_for(main, "dockerd@26.1")
    assert used == other and verdicts == {"s": {"before/p": "failed"}}


def test_unknown_client_version_is_refused_with_its_line(chaos, tmp_path):
    path = write(tmp_path, SCENARIO.replace('"26.1"', '"27.0"'))
    result = chaos("validate", str(path))
    assert result.returncode == 2
    assert f"{path}:2" in result.stderr + result.stdout
    result = chaos("run", "--dry-run", "--client-version", "9.9", str(write(tmp_path, SCENARIO)))
    assert result.returncode == 2 and "dockerd@9.9" in result.stderr, result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (namespaces, dockerd)")
@pytest.mark.usefixtures("lab_binaries")
def test_dockerd_26_1_pulls_through_the_cache(chaos, tmp_path):
    _need("dockerd@26.1")
    report = tmp_path / "r.json"
    result = chaos("run", str(write(tmp_path, SCENARIO)), "--json", str(report), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (scenario,) = json.loads(report.read_text())["scenarios"]
    assert [p["verdict"] for p in scenario["probes"]] == ["passed"] * 2, scenario["probes"]
    # Other runs may share the machine: only this run's namespaces and links must be gone.
    tag = scenario["run_id"].removeprefix("chaos-")
    after = snapshot()
    assert tag not in after["netns"] and tag not in after["links"], after["netns"]


PULL = """\
name: generation-pull
lab: {}
faults: []
expect:
  before:
    - name: cached image pulls
      pull: library/busybox:1
      within: 30s
"""
# The pullers other than dockerd, at Debian 13's versions.
PULLERS = ["podman@5.4", "skopeo@1.18", "containerd@1.7"]


def test_client_version_goes_with_the_client(chaos, tmp_path):
    path = str(write(tmp_path, PULL))
    for spec in PULLERS:
        client, version = spec.split("@")
        result = chaos("run", "--dry-run", "--client", client, "--client-version", version, path)
        assert result.returncode == 0, result.stderr
        system = generations.SUITES[generations.system_suite()]["dockerd"]
        assert f"dockerd@{system}, {spec}" in result.stdout, result.stdout
    result = chaos("run", "--dry-run", "--client", "podman", "--client-version", "26.1", path)
    assert result.returncode == 2 and "podman@26.1: unknown version" in result.stderr, result.stderr


def test_matrix_takes_versions_per_client(chaos, tmp_path):
    path = str(write(tmp_path, PULL))
    result = chaos("run", path, "--matrix", str(tmp_path / "m"), "--clients", "podman@9.9")
    assert result.returncode == 2 and "podman@9.9: unknown version" in result.stderr, result.stderr
    result = chaos("run", path, "--matrix", str(tmp_path / "m"), "--client-version", "26.1")
    assert result.returncode == 2 and "--client-version cannot go with it" in result.stderr
    assert not (tmp_path / "m").exists()


def test_baseline_of_another_puller_is_its_own_when_recorded(tmp_path):
    doc = {"version": 1, "client": "dockerd@20.10",
           "scenarios": {"s": {"file": "s.yaml", "probes": {"before/p": "passed"}}}}
    main = tmp_path / "baseline.json"
    main.write_text(json.dumps(doc))
    # none of its own: the system dockerd's, as before there were per-client files
    assert load_for(main, "podman@5.4", "dockerd@20.10")[1] == main
    with pytest.raises(BaselineError, match=r"baseline-podman@5.4.json does not exist"):
        load_for(main, "podman@5.4")
    own = tmp_path / "baseline-podman@5.4.json"
    own.write_text(json.dumps(dict(doc, client="podman@5.4",
                                   scenarios={"s": {"file": "s.yaml", "probes": {"before/p": "hung"}}})))
    verdicts, used = load_for(main, "podman@5.4", "dockerd@20.10")
    assert used == own and verdicts == {"s": {"before/p": "hung"}}
    # a dockerd generation never stands in for another one
    with pytest.raises(BaselineError, match=r"baseline-dockerd@26.1.json does not exist"):
        load_for(main, "dockerd@26.1", "dockerd@20.10")


def _as_debian_13(argv: list[str], **kw) -> subprocess.CompletedProcess:
    """Run argv where /etc/debian_version says 13.1 (a mount namespace of its own)."""
    script = 'echo 13.1 >"$0" && mount --bind "$0" /etc/debian_version && exec "$@"'
    fake = kw.pop("fake")
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                           str(fake), *argv], capture_output=True, text=True, timeout=60, **kw)


@pytest.mark.skipif(os.geteuid() != 0, reason="a mount namespace needs root")
def test_on_debian_13_the_systems_builds_are_the_new_generation(tmp_path):
    prefix = tmp_path / "generations"
    env = dict(os.environ, CHAOS_GENERATIONS=str(prefix))
    result = _as_debian_13(["bash", "scripts/generations"], fake=tmp_path / "v", cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr
    assert "Debian 13 here" in result.stdout and not prefix.exists()
    code = ("from chaos.lab import generations as g; print(g.system_suite(), "
            "g.resolve_name('podman'), g.resolve('podman@5.4').binaries.get('podman'))")
    result = _as_debian_13([sys.executable, "-c", code], fake=tmp_path / "v",
                           cwd=ROOT, env=dict(env, PYTHONPATH=str(ROOT)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["trixie", "podman@5.4", str(shutil.which("podman"))]


@pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (namespaces, dockerd)")
@pytest.mark.usefixtures("lab_binaries")
@pytest.mark.parametrize("spec", PULLERS)
def test_a_generation_pulls_through_the_cache(chaos, tmp_path, spec):
    _need(spec)
    client, version = spec.split("@")
    report = tmp_path / "r.json"
    result = chaos("run", str(write(tmp_path, PULL)), "--client", client, "--client-version", version,
                   "--json", str(report), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (scenario,) = json.loads(report.read_text())["scenarios"]
    (probe,) = scenario["probes"]
    assert probe["verdict"] == "passed" and probe["detail"]["build"] == spec, probe
    assert probe["detail"]["layers"] == 1, probe  # it downloaded the layer itself
    tag = scenario["run_id"].removeprefix("chaos-")
    after = snapshot()
    assert tag not in after["netns"] and tag not in after["links"], after["netns"]
    assert not list(Path("/var/tmp").glob(f"chaos-{tag}-*"))  # podman's files


@pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (namespaces, dockerd)")
@pytest.mark.usefixtures("lab_binaries")
def test_a_matrix_cell_runs_the_version_it_names(chaos, tmp_path):
    _need("containerd@1.7")
    folder = tmp_path / "m"
    result = chaos("run", str(write(tmp_path, PULL, "pull.yaml")), "--matrix", str(folder),
                   "--clients", "containerd@1.7", "--caches", "distribution", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((folder / "cells" / "pull.containerd@1.7.distribution.json").read_text())
    (probe,) = report["scenarios"][0]["probes"]
    assert probe["verdict"] == "passed" and probe["detail"]["build"] == "containerd@1.7", probe
