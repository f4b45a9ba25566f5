"""JUnit XML: a test suite per scenario, a test case per probe (CI systems draw these)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path


def write(results, path: str | Path) -> None:
    root = ET.Element("testsuites")
    for result in results:
        probes = result.probes
        failures = sum(p.verdict in ("failed", "hung") for p in probes)
        errors = sum(p.verdict == "error" for p in probes) + (1 if result.errors else 0)
        suite = ET.SubElement(root, "testsuite", name=result.name, tests=str(len(probes) + 1),
                              failures=str(failures), errors=str(errors),
                              time=f"{result.duration:.3f}", file=result.file)
        for probe in probes:
            case = ET.SubElement(suite, "testcase", classname=f"{result.name}.{probe.phase}",
                                 name=probe.name, time=f"{probe.duration:.3f}")
            if probe.verdict in ("failed", "hung"):
                node = ET.SubElement(case, "failure", type=probe.verdict, message=probe.message())
                node.text = _details(probe)
            elif probe.verdict == "error":
                ET.SubElement(case, "error", message=probe.message())
        # The run itself: injection, revert and steady-state problems show up here.
        case = ET.SubElement(suite, "testcase", classname=result.name, name="run and revert",
                             time=f"{result.duration:.3f}")
        if result.errors:
            node = ET.SubElement(case, "error" if result.exit_code != 1 else "failure",
                                 type=result.status, message=result.errors[0])
            node.text = "\n".join(result.errors)
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def _details(probe) -> str:
    lines = [str(c) for c in probe.failures()]
    for key in ("stdout", "stderr"):
        if probe.detail.get(key):
            lines.append(f"{key}: {probe.detail[key][-2000:]}")
    return "\n".join(lines)
