"""Baselines through the real CLI: record the verdicts of a real sandbox run, then fail only
where one changes (worse or better)."""

from __future__ import annotations

import json

from junitparser import JUnitXml

from conftest import SCENARIOS, write

SCENARIO = """\
name: baseline-drill
serve:
  - name: registry.test
faults:
  - type: route-blackhole
    destinations: [registry.test]
    kind: prohibit
expect:
  during:
    - name: registry answers through the cut (a known weakness)
      http: http://registry.test/
      status: 200
      within: 2s
    - name: the flag is on
      run: test {flag} = on
      exit: 0
  after:
    - http: http://registry.test/
"""


def _run(chaos, path, *args):
    result = chaos("run", str(path), *args)
    return result, result.stdout + result.stderr


def test_write_then_compare_fails_only_on_a_change(chaos, tmp_path):
    scenario = write(tmp_path, SCENARIO)
    baseline, report = tmp_path / "baseline.json", tmp_path / "r.json"

    result, out = _run(chaos, scenario, "--var", "flag=on")
    assert result.returncode == 1, out  # without a baseline the weakness fails the run

    result, out = _run(chaos, scenario, "--var", "flag=on", "--write-baseline", str(baseline))
    assert result.returncode == 0, out
    probes = json.loads(baseline.read_text())["scenarios"]["baseline-drill"]["probes"]
    assert probes == {
        "during/registry answers through the cut (a known weakness)": "failed",
        "during/the flag is on": "passed",
        "after/http://registry.test/": "passed"}, probes

    junit = tmp_path / "r.xml"
    result, out = _run(chaos, scenario, "--var", "flag=on", "--baseline", str(baseline),
                       "--json", str(report), "--junit", str(junit))
    assert result.returncode == 0, out
    # the recorded weakness is skipped in JUnit (as pytest reports an xfail), not a failure
    suite = JUnitXml.fromfile(str(junit))
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (4, 0, 0, 1)
    assert "every verdict as recorded (1 recorded weakness(es)" in out
    (doc,) = json.loads(report.read_text())["scenarios"]
    assert doc["baseline"] == {"recorded": True, "known": 1, "worse": [], "better": []}
    assert doc["probes"][0]["detail"]["baseline"] == "as recorded"

    # worse: a probe that passed in the record fails now
    result, out = _run(chaos, scenario, "--var", "flag=off", "--baseline", str(baseline))
    assert result.returncode == 1, out
    assert "worse than the baseline (1):" in out
    assert "baseline-drill: during/the flag is on: passed -> failed" in out


def test_a_fixed_weakness_is_news_too(chaos, tmp_path):
    scenario = write(tmp_path, SCENARIO)
    baseline = tmp_path / "baseline.json"
    result, out = _run(chaos, scenario, "--var", "flag=off", "--write-baseline", str(baseline))
    assert result.returncode == 0, out
    result, out = _run(chaos, scenario, "--var", "flag=on", "--baseline", str(baseline))
    assert result.returncode == 1, out
    assert "better than the baseline (1):" in out
    assert "baseline-drill: during/the flag is on: failed -> passed" in out
    assert f"record it with --write-baseline {baseline}" in out


def test_scenario_the_baseline_does_not_know_fails(chaos, tmp_path):
    scenario = write(tmp_path, SCENARIO)
    baseline = write(tmp_path, json.dumps({"version": 1, "scenarios": {}}), "b.json")
    result, out = _run(chaos, scenario, "--var", "flag=on", "--baseline", str(baseline))
    assert result.returncode == 1, out
    assert "has no record of: baseline-drill" in out


def test_bad_baseline_and_both_options_exit_2_before_running(chaos, tmp_path):
    scenario = write(tmp_path, SCENARIO)
    bad = write(tmp_path, "{not json", "b.json")
    result, out = _run(chaos, scenario, "--baseline", str(bad))
    assert result.returncode == 2 and f"{bad}: not a baseline (invalid JSON" in out, out
    assert "Traceback" not in out and "route-blackhole" not in result.stdout
    wrong = write(tmp_path, json.dumps({"version": 1, "scenarios": {"x": {"probes": {"a": "meh"}}}}), "w.json")
    result, out = _run(chaos, scenario, "--baseline", str(wrong))
    assert result.returncode == 2 and "scenarios.x: expected probes" in out, out
    result, out = _run(chaos, scenario, "--baseline", str(wrong), "--write-baseline", str(tmp_path / "n.json"))
    assert result.returncode == 2 and "give one" in out, out


def test_shipped_baseline_records_every_library_probe():
    """README's gate compares with this file: a scenario or probe added to the library (or
    renamed) without recording it would fail every gate run as a change."""
    from chaos.runner import _probe_label
    from chaos.scenario.load import load

    recorded = json.loads((SCENARIOS / "registry" / "baseline.json").read_text())["scenarios"]
    names = set()
    for path in sorted((SCENARIOS / "registry").glob("*.yaml")):
        scenario = load(path)
        names.add(scenario.name)
        keys = [f"{phase}/{probe.name or _probe_label(probe)}"
                for phase in ("before", "during", "after")
                for probe in getattr(scenario.expect, phase)]
        assert sorted(keys) == sorted(recorded[scenario.name]["probes"]), path.name
    assert names == set(recorded), "the baseline records scenarios the library no longer has"
