"""``@pytest.mark.chaos_scenario(path)``: a scenario run around a test body.

The runner's own Run drives it, so the marker behaves like `chaos run` with the test body in
the middle of the during phase:
- setup: sandbox and servers up, ``expect.before`` probes (a failure is a setup error and
  the body does not run: nothing is injected), then the faults: plain ones on, ``window`` /
  ``flap`` ones switched by the runner's scheduler, whose clock starts as the body starts;
- the body runs, and ``expect.during`` probes run alongside it in a thread;
- teardown: scheduler stopped, every fault reverted, ``expect.after`` probes, sandbox gone.
  Failed during/after probes are a teardown error naming each probe.
The scenario's ``seed`` reaches the fake DNS server as in a CLI run. Windows still open
when the body ends are cut short (a test should not wait for a drill's schedule).
``lab:`` scenarios are refused with their file and line: use the registry_lab fixture.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest


def scenario_path(request, marker) -> Path:
    if not marker.args:
        pytest.fail(f"{request.node.nodeid}: @pytest.mark.chaos_scenario needs a scenario path",
                    pytrace=False)
    path = Path(marker.args[0])
    return path if path.is_absolute() else Path(request.config.rootpath) / path


def _load(path: Path):
    from chaos.errors import PlanError, ScenarioInvalid
    from chaos.scenario.load import load, plan_problem

    try:
        scenario = load(path)
    except ScenarioInvalid as exc:
        pytest.fail(f"chaos_scenario marker: {exc}", pytrace=False)
    if scenario.lab is not None:
        problem = plan_problem(scenario, PlanError(("lab",), (
            "the chaos_scenario marker runs in a sandbox, not the registry lab: use the "
            "registry_lab fixture (registry_lab.inject({...})) or the chaos_scenario fixture")))
        pytest.fail(f"chaos_scenario marker: {problem}", pytrace=False)
    return scenario


class _Alongside:
    """The during probes, in a thread beside the test body."""

    def __init__(self, run) -> None:
        self.run, self.ok = run, True
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._probe, name="chaos-during", daemon=True)
        self.thread.start()

    def _probe(self) -> None:
        try:
            self.ok = self.run.probe_phase("during", self.run.scenario.expect.during, announce=False)
        except Exception as exc:  # reported at teardown, in the test's thread
            self.error = exc

    def join(self) -> None:
        self.thread.join()


def marked_scenario(request, marker, state_dir):
    """The autouse fixture's body (a generator): see the module's docstring."""
    from chaos.errors import PlanError
    from chaos.pytest_plugin import probe_failure_lines
    from chaos.runner import FaultError, Reporter, Run, RunOptions
    from chaos.scenario.load import plan_problem

    path = scenario_path(request, marker)
    scenario = _load(path)
    run = Run(scenario, str(path), RunOptions(state_dir=state_dir), Reporter())
    try:
        run.plan()
    except PlanError as exc:
        pytest.fail(f"chaos_scenario marker: {plan_problem(scenario, exc)}", pytrace=False)
    request.node._chaos_marked_session = run.session
    request.node.chaos_result = run.result  # the timeline and probe results, for the body
    name = f"scenario {scenario.name} ({path})"
    try:
        run.open()
        if not run.probe_phase("before", scenario.expect.before):
            pytest.fail("\n".join([f"{name}: the steady state did not hold before the test: "
                                   "nothing injected, the test body did not run",
                                   *probe_failure_lines(run.result.probes)]), pytrace=False)
        during = None
        try:
            try:
                run.faults_on()
            except FaultError as exc:
                pytest.fail(f"{name}: {exc}", pytrace=False)
            if scenario.expect.during:
                during = _Alongside(run)
            yield run.result
        finally:
            if during is not None:
                during.join()  # faults stay on until the during probes are done too
            run.stop_schedule()
            failures = run.revert_faults()
        problems = list(run.schedule_error) + [f"could not revert: {f}" for f in failures]
        if during is not None and during.error is not None:
            problems.append(f"during probes: {type(during.error).__name__}: {during.error}")
        if not failures:
            run.probe_phase("after", scenario.expect.after)
        if problems or not all(p.ok for p in run.result.probes):
            pytest.fail("\n".join([f"{name}: expectations failed around the test",
                                   *(f"  {p}" for p in problems),
                                   *probe_failure_lines(run.result.probes)]), pytrace=False)
    finally:
        failures = run.live.close()
        if failures:
            pytest.fail("chaos could not revert: " + "; ".join(map(str, failures)), pytrace=False)
