"""The README stays true: CI runs its test command, and it names every shipped scenario."""

from __future__ import annotations

import re

from conftest import ROOT, SCENARIOS

README = (ROOT / "README.md").read_text()


def test_ci_runs_the_readme_test_command():
    block = re.search(r"## First commands.*?```sh\n(.*?)```", README, re.S).group(1)
    setup_line, test_line = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_line in ci
    assert setup_line.startswith("bash scripts/setup") and "bash scripts/setup" in ci


def test_readme_names_every_shipped_scenario():
    for path in SCENARIOS.rglob("*.yaml"):
        assert path.name in README, f"README.md does not mention {path.name}"


def test_scripts_setup_installs_what_tests_use():
    setup = (ROOT / "scripts" / "setup").read_text()
    for package in ("iproute2", "iptables", "curl", "dnsutils"):
        assert package in setup
