"""Loading and validating scenarios: every problem names file:line:col and the field."""

from __future__ import annotations

import json

import pytest

from conftest import SCENARIOS, write
from chaos.errors import ScenarioInvalid
from chaos.scenario.load import load, load_text

GOOD = """\
name: ok
serve:
  - name: registry.test
faults:
  - type: hosts-entry
    names: [registry.test]
expect:
  during:
    - run: "true"
      within: 2s
"""

# (document, expected "line:col: field: message" fragment)
BROKEN = [
    ("wrong type", GOOD.replace("within: 2s", "within: [2]"), ":10:15: expect.during[0].within: bad duration"),
    ("unknown key", GOOD.replace("within: 2s", "withn: 2s"),
     ":10:7: expect.during[0].withn: unknown key 'withn' (did you mean 'within'?)"),
    ("bad duration", GOOD.replace("within: 2s", "within: 5 parsecs"),
     ":10:15: expect.during[0].within: bad duration '5 parsecs'"),
    ("negative duration", GOOD.replace("within: 2s", "within: -1"), ":10:15: expect.during[0].within: bad duration"),
    ("unknown fault type", GOOD.replace("hosts-entry", "host-entry"),
     ":5:5: faults[0]: unknown fault type 'host-entry' (did you mean 'hosts-entry'?)"),
    ("missing key", GOOD.replace("    names: [registry.test]\n", ""), ":5:5: faults[0].names: missing required key 'names'"),
    ("bad enum", GOOD.replace("      within: 2s", "      exit: maybe"), ":10:13: expect.during[0].exit:"),
    ("probe without kind", GOOD.replace('    - run: "true"', '    - name: "x"'),
     ":9:7: expect.during[0]: a probe needs one of the keys run, http, tcp, docker_pull, requests"),
    ("bad hostname", GOOD.replace("names: [registry.test]", "names: ['not a host']"),
     ":6:13: faults[0].names[0]: 'not a host' is not a host name"),
    ("duplicate key", GOOD.replace("name: ok\n", "name: ok\nname: again\n"), ":2:1: name: duplicate key"),
    ("empty file", "", ":1:1: the file is empty"),
    ("only a comment", "# nothing\n", ":1:1: the file is empty"),
    ("not YAML", "name: [unclosed\nfaults: {\n", "not valid YAML"),
    ("tab indentation", "name: x\n\tfaults: []\n", ":2:1: not valid YAML"),
    ("list at top level", "- name: x\n", ":1:1: a scenario is a mapping of keys"),
    ("scalar at top level", "just text\n", ":1:1: a scenario is a mapping of keys"),
    ("bad name", GOOD.replace("name: ok", "name: 'has space'"), ":1:7: name: String should match pattern"),
    ("window typo", GOOD.replace("    names: [registry.test]", "    names: [registry.test]\n    window: {aftr: 1s}"),
     ":7:14: faults[0].window.aftr: unknown key 'aftr' (did you mean 'after'?)"),
    ("alias bomb", "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                   "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                   "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n", ":1:1: the document expands"),
]


@pytest.mark.parametrize("label,text,expected", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_scenario_is_located(tmp_path, label, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ScenarioInvalid) as info:
        load(path)
    messages = [str(p) for p in info.value.problems]
    assert any(m.startswith(str(path)) and expected in m for m in messages), messages


def test_five_megabyte_file_is_refused(tmp_path):
    path = write(tmp_path, "name: big\ndescription: '" + "x" * (5 << 20) + "'\n")
    with pytest.raises(ScenarioInvalid) as info:
        load(path)
    assert str(info.value.problems[0]).startswith(f"{path}:1:1: the file is 5.2 MB")


def test_every_problem_is_reported_not_only_the_first(tmp_path):
    text = GOOD.replace("within: 2s", "withn: 2s").replace("hosts-entry", "hostsentry")
    with pytest.raises(ScenarioInvalid) as info:
        load(write(tmp_path, text))
    assert [p.field for p in info.value.problems] == ["faults[0]", "expect.during[0].withn"]


@pytest.mark.parametrize("path", sorted(SCENARIOS.rglob("*.yaml")), ids=lambda p: p.name)
def test_shipped_scenarios_are_valid(path):
    scenario = load(path)
    assert scenario.description.strip(), "a shipped scenario says what incident it reproduces"


def test_durations_and_defaults():
    scenario = load_text(GOOD.replace("within: 2s", "within: 250ms"))
    assert scenario.expect.during[0].within == 0.25
    assert str(scenario.faults[0].address) == "127.0.0.1"
    assert str(scenario.serve[0].address) == "None"


def test_validate_cli_exit_codes(chaos, tmp_path):
    good = write(tmp_path, GOOD, "good.yaml")
    bad = write(tmp_path, GOOD.replace("within: 2s", "withn: 2s"), "bad.yaml")
    ok = chaos("validate", str(good))
    assert ok.returncode == 0 and f"{good}: ok" in ok.stdout
    failed = chaos("validate", str(good), str(bad))
    assert failed.returncode == 2
    assert f"{bad}:10:7: expect.during[0].withn: unknown key 'withn' (did you mean 'within'?)" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_validate_never_prints_a_traceback(chaos, tmp_path):
    for text in ["\x00\x01", "name: [", "- 1\n- 2", "{a: {b: {c: [1, {d: *x}]}}}"]:
        result = chaos("validate", str(write(tmp_path, text, "t.yaml")))
        assert result.returncode == 2, text
        assert "Traceback" not in result.stderr and ":1:" in result.stderr


def test_not_utf8(chaos, tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    result = chaos("validate", str(path))
    assert result.returncode == 2 and "not UTF-8" in result.stderr


def test_schema_has_descriptions_from_docstrings(chaos):
    result = chaos("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    defs = schema["$defs"]
    assert "hosts file" in defs["HostsEntry"]["description"]
    assert defs["CommandProbe"]["properties"]["within"]["description"].startswith("The probe must finish")
    assert {"faults", "expect", "serve"} <= set(schema["properties"])
    # A field's own docstring wins over its type's generic text (durations).
    assert defs["Window"]["properties"]["after"]["description"].startswith("Switch the fault on")


def test_a_scenario_loads_only_the_fault_types_it_names():
    """Start-up cost: a run builds the models of the types it uses, not the library's."""
    import subprocess
    import sys

    code = ("import sys; from chaos.scenario.load import load; "
            f"s = load({str(SCENARIOS / 'dockerhub-hosts-entry.yaml')!r}); "
            "print(sorted(m for m in sys.modules if m.startswith('chaos.faults.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['chaos.faults.base', 'chaos.faults.hosts_entry']", out.stdout


def test_list_shows_fault_types_and_parameters(chaos):
    result = chaos("list")
    assert result.returncode == 0
    assert "hosts-entry" in result.stdout and "route-blackhole" in result.stdout
    assert "destinations (list of text, required)" in result.stdout
    assert "kind (blackhole | unreachable | prohibit, default blackhole)" in result.stdout
