"""The README stays true: CI runs its test command, it names every shipped scenario, and its
example scenario runs as shown."""

from __future__ import annotations

import json
import re

import pytest

from conftest import ROOT, SCENARIOS, assert_same, snapshot

README = (ROOT / "README.md").read_text()


def test_ci_runs_the_readme_test_command():
    block = re.search(r"## First commands.*?```sh\n(.*?)```", README, re.S).group(1)
    setup_line, lint_line, test_line = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    checks = [command.strip() for command in lint_line.split("&&")]
    assert checks == [".venv/bin/ruff check chaos tests benchmarks examples", ".venv/bin/mypy"]
    assert test_line in "\n".join(ci)
    # each check on a line of its own, before the tests (under set -e, `a && b` would not stop on a)
    assert all(ci.index(c) < next(i for i, line in enumerate(ci) if test_line in line) for c in checks)
    assert setup_line.startswith("bash scripts/setup") and "bash scripts/setup" in ci


def test_readme_names_every_shipped_scenario():
    for path in SCENARIOS.rglob("*.yaml"):
        assert path.name in README, f"README.md does not mention {path.name}"


def test_scripts_setup_installs_what_tests_use():
    setup = (ROOT / "scripts" / "setup").read_text()
    block = re.search(r"^APT_PACKAGES=\((.*?)^\)", setup, re.S | re.M).group(1)
    packages = {w for line in block.splitlines() for w in line.split("#")[0].split()}
    # The lab's packages too: in CI a missing one fails the lab tests (conftest.require_binaries).
    for package in ("iproute2", "iptables", "curl", "dnsutils",
                    "docker.io", "docker-registry", "skopeo", "busybox-static", "chromium"):
        assert package in packages, f"scripts/setup: APT_PACKAGES lacks {package}"


def test_readme_scenario_runs_as_shown(chaos, tmp_path):
    block = re.search(r"## A scenario\n\n```yaml\n(.*?)```", README, re.S).group(1)
    path = tmp_path / "readme.yaml"
    path.write_text(block)
    before = snapshot()
    report = tmp_path / "r.json"
    result = chaos("run", str(path), "--json", str(report))
    assert result.returncode == 0, result.stdout + result.stderr
    scenario = json.loads(report.read_text())["scenarios"][0]
    assert [(p["phase"], p["verdict"]) for p in scenario["probes"]] == [
        ("before", "passed"), ("during", "passed"), ("during", "passed"), ("during", "passed"),
        ("after", "passed")]
    assert [e["state"] for e in scenario["events"] if e["kind"] == "fault"] == ["on", "off"]
    assert scenario["duration"] < 30  # the window is seconds, not minutes
    assert_same(before, snapshot())


def test_missing_lab_binary_fails_under_ci_and_skips_elsewhere(monkeypatch):
    from conftest import require_binaries

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="chaos-no-such-binary missing"):
        require_binaries("sh", "chaos-no-such-binary")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="chaos-no-such-binary missing"):
        require_binaries("sh", "chaos-no-such-binary")
    require_binaries("sh")  # all there: neither
