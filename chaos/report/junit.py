"""JUnit XML: a test suite per scenario, a test case per probe (CI systems draw these).

Each declared probe is a case: a failed expectation or a hung probe is a `<failure>`, a
probe that could not run (the harness failed it) an `<error>`, a probe the run never reached
(a failed `before`, an injection error, a signal) `<skipped>` with the reason; so is an
unmet expectation that a `--baseline` records as such (pytest reports an xfail the same
way), so a reader that fails a build on `<failure>` agrees with the exit status. One more case,
"run and revert", carries what went wrong around the probes. The counts on `<testsuite>` and
`<testsuites>` are counted from the elements written, so they always agree with them.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from chaos.errors import ExitStatus

COUNTS = ("tests", "failures", "errors", "skipped")


def write(results, path: str | Path) -> None:
    root = ET.Element("testsuites", name="chaos")
    totals = dict.fromkeys(COUNTS, 0)
    time = 0.0
    for result in results:
        suite = ET.SubElement(root, "testsuite", name=result.name)
        for probe in result.probes:
            _probe_case(suite, result.name, probe)
        _run_case(suite, result)
        counts = count(suite)
        for key in COUNTS:
            suite.set(key, str(counts[key]))
            totals[key] += counts[key]
        suite.set("time", f"{result.duration:.3f}")
        suite.set("file", result.file)
        time += result.duration
    for key in COUNTS:
        root.set(key, str(totals[key]))
    root.set("time", f"{time:.3f}")
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def count(suite: ET.Element) -> dict[str, int]:
    """What a JUnit reader counts in a suite: its cases, and their outcome elements."""
    cases = suite.findall("testcase")
    return {"tests": len(cases), "failures": sum(len(c.findall("failure")) for c in cases),
            "errors": sum(len(c.findall("error")) for c in cases),
            "skipped": sum(len(c.findall("skipped")) for c in cases)}


def _probe_case(suite: ET.Element, scenario: str, probe) -> None:
    case = ET.SubElement(suite, "testcase", classname=f"{scenario}.{probe.phase}",
                         name=probe.name, time=f"{probe.duration:.3f}")
    if probe.verdict != "passed" and probe.detail.get("baseline") == "as recorded":
        node = ET.SubElement(case, "skipped", message=f"as recorded in the baseline: {probe.message()}")
        node.text = _details(probe) or None
    elif probe.verdict in ("failed", "hung"):
        node = ET.SubElement(case, "failure", type=probe.verdict, message=probe.message())
        node.text = _details(probe)
    elif probe.verdict == "error":
        node = ET.SubElement(case, "error", type="error", message=probe.message())
        node.text = _details(probe) or None
    elif probe.verdict == "skipped":
        ET.SubElement(case, "skipped", message=probe.message())


def _run_case(suite: ET.Element, result) -> None:
    """Injection, revert and steady-state problems: everything the probes' cases do not say.

    Its time is the run's time outside the probes (sandbox, lab, injecting, reverting), so
    the cases' times add up to the suite's."""
    outside = max(0.0, result.duration - sum(p.duration for p in result.probes))
    case = ET.SubElement(suite, "testcase", classname=result.name, name="run and revert",
                         time=f"{outside:.3f}")
    if not result.errors:
        return
    if result.status == "not-run":  # a signal kept the whole scenario from starting
        ET.SubElement(case, "skipped", message=f"not run: {result.errors[0]}")
        return
    if result.exit_code == ExitStatus.OK:  # a steady state that failed as the baseline records
        ET.SubElement(case, "skipped", message=f"as recorded in the baseline: {result.errors[0]}")
        return
    # A steady state that did not hold is a failed expectation (exit 1); a scenario refused
    # at plan time, an injection or revert that failed and a signal are errors.
    kind = "failure" if result.exit_code == ExitStatus.EXPECTATION else "error"
    node = ET.SubElement(case, kind, type=result.status, message=result.errors[0])
    node.text = "\n".join(result.errors)


def _details(probe) -> str:
    lines = [str(c) for c in probe.failures()]
    for key in ("traceback", "stdout", "stderr"):  # traceback: a python probe's exception
        if probe.detail.get(key):
            lines.append(f"{key}: {probe.detail[key][-2000:]}")
    return "\n".join(lines)
