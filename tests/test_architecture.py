"""docs/architecture.md's worked examples are what they say: a fault type is one module and
one registry line. The test takes both from the doc, adds them to a copy of the package, and
runs a scenario with the new type through the real proxy (TCP, or mitmdump for HTTP) in the
sandbox."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, assert_same, snapshot, write

DOC = ROOT / "docs" / "architecture.md"

TCP_SCENARIO = """\
name: canned-reply
description: registry.test's connections are answered by a captive portal
serve:
  - name: registry.test
faults:
  - type: canned-reply
    destinations: [registry.test]
    ports: [80]
expect:
  during:
    - name: faulty
      run: curl -sS --noproxy '*' -m 3 -o /dev/null -w '%{http_code}' http://registry.test/
      stdout: {regex: '^511$'}
  after:
    - name: healthy
      run: curl -sS --noproxy '*' -m 3 -o /dev/null -w '%{http_code}' http://registry.test/
      stdout: {regex: '^200$'}
"""

HTTP_SCENARIO = """\
name: http-redirect
description: registry.test sends its clients to a mirror
serve:
  - name: registry.test
faults:
  - type: http-redirect
    location: http://mirror.test/
    match: {host: registry.test}
    ports: [80]
expect:
  during:
    - name: faulty
      run: curl -sS --noproxy '*' -m 3 -o /dev/null -w '%{http_code} %{redirect_url}' http://registry.test/
      stdout: {regex: '^302 http://mirror.test/$'}
  after:
    - name: healthy
      run: curl -sS --noproxy '*' -m 3 -o /dev/null -w '%{http_code} %{redirect_url}' http://registry.test/
      stdout: {regex: '^200 $'}
"""

# heading of the example in the doc, its type, its module, a scenario, what curl sees during
# and after the fault, one of its parameters
EXAMPLES = {
    "tcp": ("### Worked example: a TCP fault type", "canned-reply", "canned_reply.py",
            TCP_SCENARIO, "511", "200", "reply"),
    "http": ("### Worked example: an HTTP fault type", "http-redirect", "http_redirect.py",
             HTTP_SCENARIO, "302 http://mirror.test/", "200 ", "location"),
}


def worked_example(heading: str) -> tuple[str, str, str]:
    """(module file name, its text, the registry line) of one worked example in the doc."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index(heading):]
    section = section[:section.find("\n### ", 1) % (len(section) + 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    module, entry = blocks[0], blocks[1].strip("\n")
    name = re.search(r"`chaos/faults/(\w+\.py)`", section)[1]
    return name, module, entry


def add_fault_type(tree: Path, heading: str) -> None:
    """A copy of the package with the example's module and registry line, nothing more."""
    shutil.copytree(ROOT / "chaos", tree / "chaos", ignore=shutil.ignore_patterns("__pycache__"))
    name, module, entry = worked_example(heading)
    (tree / "chaos" / "faults" / name).write_text(module, encoding="utf-8")
    registry = tree / "chaos" / "faults" / "__init__.py"
    text = registry.read_text(encoding="utf-8")
    head, brace, tail = text.partition("FAULTS = {")
    assert brace, "the FAULTS dict is where registrations go"
    first_line_end = tail.index("\n") + 1  # after the `{`'s line comment
    registry.write_text(head + brace + tail[:first_line_end] + entry + "\n" + tail[first_line_end:],
                        encoding="utf-8")


def run_chaos(tree: Path, state_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CHAOS_STATE_DIR": str(state_dir), "PYTHONPATH": str(tree)}
    return subprocess.run([sys.executable, "-m", "chaos", *args], capture_output=True, text=True,
                          timeout=120, env=env, cwd=tree, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("engine", list(EXAMPLES))
def test_a_worked_example_is_one_module_and_one_registry_line(tmp_path, state_dir, engine):
    heading, fault_type, module, scenario, faulty, healthy, field = EXAMPLES[engine]
    tree = tmp_path / "tree"
    add_fault_type(tree, heading)
    changed = sorted(str(p.relative_to(tree / "chaos")) for p in (tree / "chaos").rglob("*.py")
                     if not (ROOT / "chaos" / p.relative_to(tree / "chaos")).exists()
                     or p.read_bytes() != (ROOT / "chaos" / p.relative_to(tree / "chaos")).read_bytes())
    assert changed == ["faults/__init__.py", f"faults/{module}"]

    listed = run_chaos(tree, state_dir, "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    own = lines[lines.index(fault_type):]
    own = own[:own.index("")]
    # the docstrings are the documentation: the class's, then each field's
    assert own[1].startswith("  ") and len(own[1]) > 10
    assert any(line.startswith(f"    {field} (text") for line in own), own

    bad = write(tmp_path, scenario.replace("ports: [80]", "ports: [80]\n    replay: x"), "bad.yaml")
    refused = run_chaos(tree, state_dir, "run", str(bad))
    assert refused.returncode == 2 and "unknown key 'replay'" in refused.stdout + refused.stderr

    report = tmp_path / "r.json"
    before = snapshot()
    result = run_chaos(tree, state_dir, "run", str(write(tmp_path, scenario)), "--json", str(report))
    assert result.returncode == 0, result.stdout + result.stderr
    probes = {p["name"]: p for p in json.loads(report.read_text())["scenarios"][0]["probes"]}
    assert probes["faulty"]["detail"]["stdout"] == faulty
    assert probes["healthy"]["detail"]["stdout"] == healthy
    assert_same(before, snapshot())


@pytest.mark.parametrize("engine", list(EXAMPLES))
def test_without_the_registry_line_the_type_is_unknown(tmp_path, state_dir, engine):
    """The scenario fails at load time in the unchanged package: the run proves the line."""
    _, fault_type, _, scenario, _, _, _ = EXAMPLES[engine]
    result = subprocess.run([sys.executable, "-m", "chaos", "run", str(write(tmp_path, scenario))],
                            capture_output=True, text=True, timeout=60, cwd=ROOT,
                            env={**os.environ, "CHAOS_STATE_DIR": str(state_dir)})
    assert result.returncode == 2
    assert f"unknown fault type '{fault_type}'" in result.stdout + result.stderr
