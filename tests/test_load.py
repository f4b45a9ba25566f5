"""Loading and validating scenarios: every problem names file:line:col and the field."""

from __future__ import annotations

import json

import pytest

from chaos.errors import ScenarioInvalid
from chaos.scenario.load import load, load_text
from conftest import SCENARIOS, write

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
    ("missing key", GOOD.replace("    names: [registry.test]\n", ""),
     ":5:5: faults[0].names: missing required key 'names'"),
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


BIG = "name: big\ndescription: '" + "x" * (5 << 20) + "'\n"


def test_five_megabyte_file_is_refused(tmp_path):
    path = write(tmp_path, BIG)
    with pytest.raises(ScenarioInvalid) as info:
        load(path)
    assert str(info.value.problems[0]).startswith(f"{path}:1:1: the file is 5.2 MB")


CLI_CASES = BROKEN + [("five megabytes", BIG, ":1:1: the file is 5.2 MB")]


@pytest.mark.parametrize("label,text,expected", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_validate_cli_locates_every_broken_scenario(chaos, tmp_path, label, text, expected):
    path = write(tmp_path, text)
    result = chaos("validate", str(path))
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert any(line.startswith(str(path)) and expected in line for line in lines), lines
    assert "Traceback" not in result.stderr + result.stdout
    assert f"{path}: ok" not in result.stdout


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


def test_a_scenario_loads_only_the_probe_kinds_it_uses_and_reads_no_entry_points():
    """The same for probe kinds; and a file naming only built-in types and kinds never
    scans the installed packages for plugins (chaos/plugins.py)."""
    import subprocess
    import sys

    code = ("import sys; from chaos.scenario.load import load; "
            f"s = load({str(SCENARIOS / 'dockerhub-hosts-entry.yaml')!r}); "
            "from chaos import plugins; "
            "print(sorted(m for m in sys.modules if m.startswith('chaos.probes.')), plugins._loaded)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ("['chaos.probes.base', 'chaos.probes.command', 'chaos.probes.http'] "
                                  "False"), out.stdout


def test_list_shows_fault_types_and_parameters(chaos):
    result = chaos("list")
    assert result.returncode == 0
    assert "hosts-entry" in result.stdout and "route-blackhole" in result.stdout
    assert "destinations (list of text, required)" in result.stdout
    assert "kind (blackhole | unreachable | prohibit, default blackhole)" in result.stdout


def _properties(node, path=""):
    """Every (path, property schema) of a JSON Schema, nested definitions included."""
    if isinstance(node, dict):
        for key, value in (node.get("properties") or {}).items():
            yield f"{path}.{key}", value
        for key, value in node.items():
            yield from _properties(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _properties(value, f"{path}[{index}]")


def test_every_schema_property_has_a_description(chaos):
    from chaos.scenario.model import Duration

    generic = Duration.__metadata__[1].json_schema["description"]  # the type's, not the field's
    schema = json.loads(chaos("schema").stdout)
    properties = list(_properties(schema))
    assert len(properties) > 150  # the walk reaches the fault and probe definitions
    bare = [path for path, prop in properties
            if not (prop.get("description") or "").strip() or prop.get("description") == generic]
    assert bare == [], f"properties without a description: {bare}"


def test_list_describes_every_parameter(chaos):
    from chaos.faults import FAULTS, fault_class
    from chaos.scenario.schema import describe_fields

    for name in FAULTS:
        for line in describe_fields(fault_class(name)):
            assert not line.endswith(": "), f"{name}: {line}"
    out = chaos("list").stdout
    assert "answer (nxdomain | servfail" in out and "How the names are answered" in out


DNS_QUERIES = """\
name: counted
expect:
  during:
    - {probe}
"""


@pytest.mark.parametrize("probe", [
    "dns_queries: registry.test\n      at_least: 1\n      qtype: A",
    "dns_queries: {name: registry.test, at_least: 1, qtype: A}",
    "dns_queries: {name: registry.test, qtype: A}\n      at_least: 1",
])
def test_dns_queries_takes_a_name_or_a_mapping(probe):
    (parsed,) = load_text(DNS_QUERIES.format(probe=probe)).expect.during
    assert (parsed.dns_queries, parsed.at_least, parsed.qtype, parsed.count) == ("registry.test", 1, "A", None)


@pytest.mark.parametrize("probe,expected", [
    ("dns_queries: {name: r.test, at_least: 1}\n      at_least: 2",
     ":5:17: expect.during[0].at_least: given twice, inside `dns_queries:` and beside it"),
    ("dns_queries: {name: r.test, at_least: lots}", ":4:45: expect.during[0].dns_queries.at_least: "),
    ("dns_queries: {nam: r.test, count: 1}",
     ":4:21: expect.during[0].dns_queries.nam: unknown key 'nam' (did you mean 'name'?)"),
    ("dns_queries: {name: r.test}", ":4:7: expect.during[0]: give count, at_least or at_most"),
])
def test_dns_queries_mapping_problems_are_located(probe, expected):
    with pytest.raises(ScenarioInvalid) as info:
        load_text(DNS_QUERIES.format(probe=probe), "s.yaml")
    messages = [str(p) for p in info.value.problems]
    assert any(m.startswith("s.yaml" + expected) for m in messages), messages


PARITY = """\
name: parity
serve:
  - name: registry.test
faults:
  - type: route-blackhole
    destinations: [300.1.2.3/24, 10.0.0.0/33, "2001:db8::/129", "::ffff:zz", registry.test]
  - type: dns
    names: ["*.*.*", "*.docker.io"]
    answer: nxdomain
  - type: packet-filter
    destinations: ["*.registry.test", "a b"]
expect:
  during:
    - run: "true"
"""

PARITY_PROBLEMS = [
    ":6:20: faults[0].destinations[0]: '300.1.2.3/24' is not an address or CIDR",
    ":6:34: faults[0].destinations[1]: '10.0.0.0/33' is not a CIDR: the prefix length must be 0 to 32",
    ":6:47: faults[0].destinations[2]: '2001:db8::/129' is not a CIDR: the prefix length must be 0 to 128",
    ":6:65: faults[0].destinations[3]: '::ffff:zz' is not an address or CIDR",
    ":8:13: faults[1].names[0]: '*.*.*' is not a name, '*.suffix' or '*'",
    ":11:20: faults[2].destinations[0]: '*.registry.test': a destination cannot be a wildcard",
    ":11:39: faults[2].destinations[1]: 'a b' is not a host name",
]


@pytest.mark.parametrize("command", ["validate", "run"])
def test_validate_and_run_refuse_the_same_destinations_all_at_once(chaos, tmp_path, command):
    """Addresses and CIDRs that do not parse, and DNS name patterns the server refuses, are
    refused at load time by both commands, every one with file:line, never taken for host
    names that cannot be resolved (issue #22)."""
    path = write(tmp_path, PARITY)
    result = chaos(command, str(path))
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    for expected in PARITY_PROBLEMS:
        assert f"{path}{expected}" in out, (expected, out)
    assert "cannot resolve" not in out and "Traceback" not in out, out
    assert f"{path}: ok" not in out


TWO_REFUSED = """\
name: plan-time
serve:
  - name: registry.test
faults:
  - type: route-blackhole
    destinations: [unknown.test]
  - type: hosts-entry
    names: [registry.test]
    region: nowhere
expect:
  during:
    - run: "true"
"""


@pytest.mark.parametrize("command", ["validate", "run"])
def test_plan_time_refusals_from_the_file_are_all_reported_by_both_commands(chaos, tmp_path, command):
    """What `chaos run` refuses when it plans, from the file alone (a name the sandbox does not
    know, an unknown region), `chaos validate` refuses too; and both report every fault's
    refusal, not only the first."""
    path = write(tmp_path, TWO_REFUSED)
    result = chaos(command, str(path))
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert f"{path}:6:20: faults[0].destinations[0]: cannot resolve 'unknown.test'" in out, out
    assert f"{path}:9:13: faults[1].region: unknown region 'nowhere'" in out, out
    assert f"{path}: ok" not in out


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("depth", [100, 500, 5000])
def test_deeply_nested_yaml_is_exit_2_with_a_position(chaos, tmp_path, command, depth):
    """A 500-deep nested document gave a RecursionError traceback (exit 1) from both commands."""
    text = "name: deep\nfaults:\n  - type: dns\n    names: " + "[" * depth + "]" * depth + "\n"
    path = write(tmp_path, text)
    result = chaos(command, str(path))
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert f"{path}:4:" in out and "nested deeper than" in out, out
    assert "Traceback" not in out and "RecursionError" not in out, out
