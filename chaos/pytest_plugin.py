"""pytest plugin (entry point pytest11): run chaos scenarios from a test suite.

Fixtures:
- ``chaos_scenario``: ``chaos_scenario("scenarios/x.yaml")`` (a path, or YAML text) loads and
  runs a scenario and returns its ScenarioResult; everything is reverted before it returns.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_addoption(parser) -> None:
    group = parser.getgroup("chaos")
    group.addoption("--chaos-state-dir", default=None, help="chaos journals (default /var/lib/chaos)")
    group.addoption("--chaos-host", action="store_true", default=False,
                    help="allow scenarios to change this machine itself (host mode)")


@pytest.fixture
def chaos_scenario(request):
    from chaos.runner import RunOptions, run_scenario
    from chaos.scenario.load import load, load_text

    config = request.config

    def run(source: str | Path, host: bool = False, variables: dict | None = None):
        if host and not config.getoption("--chaos-host"):
            pytest.skip("host mode needs --chaos-host")
        text_given = isinstance(source, str) and "\n" in source
        scenario = load_text(source) if text_given else load(source)
        options = RunOptions(host_mode=host, state_dir=config.getoption("--chaos-state-dir"),
                             variables=variables or {})
        return run_scenario(scenario, "<text>" if text_given else str(source), options)

    return run
