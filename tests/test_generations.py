"""Client generations: dockerd@26.1 (Debian 13's build, installed beside Debian 12's by
scripts/generations) as the lab's client, chosen per scenario or per run, and baselines
chosen by the run's client."""

from __future__ import annotations

import json
import os

import pytest

from chaos.lab import generations
from chaos.lab.generations import GenerationError
from chaos.report.baseline import BaselineError, load_for
from conftest import snapshot, write

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
