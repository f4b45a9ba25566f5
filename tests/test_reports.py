"""Reports as CI systems read them: real runs through the real CLI, the JUnit file checked
with junitparser (what many CI plugins use), the JSON report with every declared probe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from junitparser import Error, Failure, JUnitXml, Skipped

from conftest import ROOT, chaos_cmd, write

MIXED = """\
name: mixed-verdicts
description: a pass, a failure and an error before the faults, so the rest never runs
serve:
  - name: registry.test
faults:
  - type: route-blackhole
    destinations: [registry.test]
    kind: prohibit
expect:
  before:
    - name: answers
      http: http://registry.test/
    - name: exits 1
      run: exit 1
    - name: a check that raises
      python: json:loads   # called as loads(context): raises TypeError
  during:
    - name: refused
      http: http://registry.test/
      status: error
  after:
    - http: http://registry.test/
"""

DURING_FAILS = """\
name: during-fails
description: every probe runs; one during probe fails, one hangs
serve:
  - name: registry.test
faults:
  - type: route-blackhole
    destinations: [registry.test]
    kind: prohibit
expect:
  during:
    - name: registry should answer (it will not)
      http: http://registry.test/
      within: 2s
    - name: sleeps past its bound
      run: sleep 30
      within: 500ms
  after:
    - http: http://registry.test/
"""

COUNTS = ("tests", "failures", "errors", "skipped")


def counts(node) -> dict[str, int]:
    return {key: getattr(node, key) for key in COUNTS}


def assert_counts_agree(path) -> JUnitXml:
    """The counts the report wrote are those junitparser counts from its elements."""
    written = JUnitXml.fromfile(str(path))
    recounted = JUnitXml.fromfile(str(path))
    recounted.update_statistics()
    assert counts(written) == counts(recounted)
    for mine, theirs in zip(written, recounted, strict=True):
        assert counts(mine) == counts(theirs), mine.name
        assert abs(mine.time - theirs.time) < 0.01 * max(1, len(list(mine))), mine.name
    return written


def cases(suite) -> dict:
    return {case.name: case for case in suite}


def results(case) -> list[type]:
    return [type(r) for r in case.result]


def test_junit_counts_failures_errors_and_never_run_probes(chaos, tmp_path):
    junit, report = tmp_path / "r.xml", tmp_path / "r.json"
    result = chaos("run", str(write(tmp_path, MIXED, "mixed.yaml")),
                   str(write(tmp_path, DURING_FAILS, "during.yaml")),
                   "--junit", str(junit), "--json", str(report))
    assert result.returncode == 1, result.stdout + result.stderr
    xml = assert_counts_agree(junit)
    assert counts(xml) == {"tests": 10, "failures": 4, "errors": 1, "skipped": 2}
    mixed, during = list(xml)
    assert counts(mixed) == {"tests": 6, "failures": 2, "errors": 1, "skipped": 2}
    assert counts(during) == {"tests": 4, "failures": 2, "errors": 0, "skipped": 0}

    by_name = cases(mixed)
    assert results(by_name["answers"]) == []
    assert results(by_name["exits 1"]) == [Failure]
    assert by_name["exits 1"].result[0].message == "exit: expected 0, observed 1"
    error = by_name["a check that raises"].result
    assert [type(r) for r in error] == [Error] and error[0].message.startswith("error: TypeError")
    for name in ("refused", "http://registry.test/"):  # after the failed before: never ran
        (skipped,) = by_name[name].result
        assert isinstance(skipped, Skipped)
        assert skipped.message == ("not run: the steady state did not hold before any fault: "
                                   "nothing injected")
    assert results(by_name["run and revert"]) == [Failure]  # the steady state: exit 1

    by_name = cases(during)
    assert results(by_name["registry should answer (it will not)"]) == [Failure]
    assert by_name["sleeps past its bound"].result[0].type == "hung"
    assert results(by_name["http://registry.test/"]) == results(by_name["run and revert"]) == []

    doc = json.loads(report.read_text())
    mixed_doc, during_doc = doc["scenarios"]
    assert [(p["phase"], p["name"], p["verdict"]) for p in mixed_doc["probes"]] == [
        ("before", "answers", "passed"), ("before", "exits 1", "failed"),
        ("before", "a check that raises", "error"), ("during", "refused", "skipped"),
        ("after", "http://registry.test/", "skipped")]
    assert mixed_doc["probes"][3]["detail"] == {
        "not_run": "the steady state did not hold before any fault: nothing injected"}
    assert mixed_doc["counts"] == {"passed": 1, "failed": 1, "hung": 0, "error": 1, "skipped": 2}
    assert during_doc["counts"] == {"passed": 1, "failed": 1, "hung": 1, "error": 0, "skipped": 0}
    assert doc["passed"] is False and mixed_doc["status"] == "failed"
    assert "1/5 probes passed, 2 not run" in result.stdout


def test_a_signal_leaves_the_cut_probe_and_the_rest_skipped(state_dir, tmp_path):
    started = tmp_path / "started"
    text = f"""\
name: cut-short
description: SIGTERM arrives while the first during probe runs
serve:
  - name: registry.test
faults:
  - type: route-blackhole
    destinations: [registry.test]
    kind: prohibit
expect:
  before:
    - name: steady
      run: "true"
  during:
    - name: long
      run: touch {started}; sleep 30
    - name: next
      run: "true"
  after:
    - name: back
      run: "true"
"""
    junit, report = tmp_path / "r.xml", tmp_path / "r.json"
    second = write(tmp_path, MIXED, "second.yaml")  # never started: the signal stops the run
    proc = subprocess.Popen(chaos_cmd("run", str(write(tmp_path, text)), str(second),
                                      "--junit", str(junit), "--json", str(report)),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "CHAOS_STATE_DIR": str(state_dir)})
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, out
    suite, never = assert_counts_agree(junit)
    assert counts(suite) == {"tests": 5, "failures": 0, "errors": 1, "skipped": 3}
    by_name = cases(suite)
    assert results(by_name["steady"]) == []  # the before probe ran and passed
    reason = "terminated (SIGTERM): reverted everything"
    assert by_name["long"].result[0].message == f"cut short while it ran: {reason}"
    assert by_name["next"].result[0].message == by_name["back"].result[0].message == f"not run: {reason}"
    (run_case,) = by_name["run and revert"].result
    assert isinstance(run_case, Error) and run_case.message == reason
    first, second_doc = json.loads(report.read_text())["scenarios"]
    probes = first["probes"]
    assert [p["verdict"] for p in probes] == ["passed", "skipped", "skipped", "skipped"]
    assert probes[1]["detail"] == {"not_run": reason, "cut_short": True}

    assert never.name == "mixed-verdicts"  # every case of the scenario not started: skipped
    assert counts(never) == {"tests": 6, "failures": 0, "errors": 0, "skipped": 6}
    assert {case.result[0].message for case in never} == {
        "not run: terminated (SIGTERM) before this scenario started"}
    assert (second_doc["status"], second_doc["exit_code"]) == ("not-run", 143)
    assert second_doc["counts"]["skipped"] == 5


def test_a_scenario_refused_at_plan_time_lists_its_probes_as_skipped(chaos, tmp_path):
    text = MIXED.replace("destinations: [registry.test]", "destinations: ['0.0.0.0/0']")
    junit, report = tmp_path / "r.xml", tmp_path / "r.json"
    result = chaos("run", str(write(tmp_path, text)), "--junit", str(junit), "--json", str(report))
    assert result.returncode == 2, result.stdout + result.stderr
    (suite,) = assert_counts_agree(junit)
    assert counts(suite) == {"tests": 6, "failures": 0, "errors": 1, "skipped": 5}
    (refusal,) = cases(suite)["run and revert"].result
    assert isinstance(refusal, Error) and "covers every address" in refusal.message
    for case in suite:
        if case.name != "run and revert":
            assert case.result[0].message == f"not run: {refusal.message}"
    scenario = json.loads(report.read_text())["scenarios"][0]
    assert scenario["counts"]["skipped"] == 5 and scenario["status"] == "invalid"


def test_a_file_the_loader_refuses_is_in_the_reports(chaos, tmp_path):
    bad = write(tmp_path, "name: broken\nexpect:\n  during:\n    - run: 'true'\n      withn: 1s\n",
                "broken.yaml")
    good = write(tmp_path, "name: passes\nexpect:\n  during:\n    - run: 'true'\n", "good.yaml")
    junit, report = tmp_path / "r.xml", tmp_path / "r.json"
    result = chaos("run", str(bad), str(good), "--junit", str(junit), "--json", str(report))
    assert result.returncode == 2, result.stdout + result.stderr
    refused, ran = assert_counts_agree(junit)
    assert (refused.name, counts(refused)) == (
        "broken", {"tests": 1, "failures": 0, "errors": 1, "skipped": 0})
    (error,) = cases(refused)["run and revert"].result
    assert isinstance(error, Error) and error.message.startswith(f"{bad}:5:7: ")
    assert "unknown key 'withn'" in error.message
    assert counts(ran) == {"tests": 2, "failures": 0, "errors": 0, "skipped": 0}
    doc = json.loads(report.read_text())
    assert [(s["name"], s["status"]) for s in doc["scenarios"]] == [
        ("broken", "invalid"), ("passes", "passed")]
    assert doc["passed"] is False  # the exit status is 2: the report says so too
