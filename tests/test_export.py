"""`chaos export --to chaos-mesh`: every shipped scenario that maps validates against the
Chaos Mesh CRDs (../shared/reference/chaos-mesh/, byte for byte from Chaos Mesh), its
Workflow's templates reference existing names, durations are Go durations; faults without
an equivalent are refused with file:line, or left out and listed with --allow-partial."""

from __future__ import annotations

import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import jsonschema
import pytest
import yaml

from chaos.export.chaos_mesh import export_scenario
from chaos.export.mapping import Target
from chaos.scenario.load import load

ROOT = Path(__file__).resolve().parents[1]
CRDS = ROOT.parent / "shared" / "reference" / "chaos-mesh"
SCENARIOS = sorted(ROOT.glob("scenarios/*.yaml")) + sorted(ROOT.glob("scenarios/registry/*.yaml"))
GO_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")
CRD_FILES = {"Workflow": "workflows.yaml", "NetworkChaos": "networkchaos.yaml",
             "DNSChaos": "dnschaos.yaml", "HTTPChaos": "httpchaos.yaml",
             "StatusCheck": "statuschecks.yaml", "Schedule": "schedules.yaml"}
FIELDS = {"networkChaos": "NetworkChaos", "dnsChaos": "DNSChaos", "httpChaos": "HTTPChaos"}
# What the mapping in docs/kubernetes.md says each shipped scenario does.
MAPS = {"cdn-bot-challenge-1010", "cdn-geo-block-es", "cdn-outage-5xx", "dns-nxdomain-registry",
        "dockerhub-route-blackhole", "upstream-accepts-never-answers",
        "02-route-blackhole-upstream", "03-geo-block-cdn", "05-cdn-outage-5xx",
        "06-dns-failures", "07-upstream-never-answers", "09-rate-limited-manifests",
        "15-cache-restarted-upstream-hangs", "16-captive-portal-200",
        "17-drop-pooled-vs-new-connections"}


@cache
def schema(kind: str) -> dict:
    path = CRDS / CRD_FILES[kind]
    if not path.exists():
        pytest.fail(f"the Chaos Mesh CRDs are missing: {path} (CI has ../shared beside the clone)")
    crd = yaml.safe_load(path.read_text())
    assert crd["spec"]["names"]["kind"] == kind
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return version["schema"]["openAPIV3Schema"]


def check(kind: str, document: dict, spec_only: bool = False) -> None:
    """Validate against the CRD's openAPIV3Schema (or its `spec` part); every error shown."""
    s = schema(kind)
    if spec_only:
        s = s["properties"]["spec"]
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in jsonschema.Draft7Validator(s).iter_errors(document)]
    assert not errors, f"{kind}: " + "; ".join(errors)


def durations(node, path=""):
    """Every value Chaos Mesh parses as a Go duration."""
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}"
            if key in ("deadline", "duration", "latency", "jitter") or (
                    key == "delay" and isinstance(value, str)):
                yield where, value
            elif key == "schedule" and isinstance(value, str):
                yield where, value.removeprefix("@every ")
            else:
                yield from durations(value, where)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from durations(item, f"{path}[{i}]")


def validate_workflow(workflow: dict) -> None:
    check("Workflow", workflow)
    templates = workflow["spec"]["templates"]
    names = [t["name"] for t in templates]
    assert len(names) == len(set(names)), "template names repeat"
    assert workflow["spec"]["entry"] in names
    for t in templates:
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", t["name"]), t["name"]
        for child in t.get("children", []):
            assert child in names, f"{t['name']} names a missing template {child}"
        kind = t["templateType"]
        if kind in CRD_FILES and kind != "Workflow":  # the embedded spec against its own CRD
            key = {"StatusCheck": "statusCheck", "Schedule": "schedule"}.get(kind) or next(
                k for k, v in FIELDS.items() if v == kind)
            check(kind, t[key], spec_only=True)
            if kind == "Schedule":
                inner = next(k for k in t["schedule"] if k in FIELDS)
                assert t["schedule"]["type"] == FIELDS[inner]
                check(FIELDS[inner], t["schedule"][inner], spec_only=True)
        else:
            assert kind in ("Serial", "Parallel", "Suspend"), kind
    # Every template is reachable from the entry.
    reached, todo = set(), [workflow["spec"]["entry"]]
    by_name = {t["name"]: t for t in templates}
    while todo:
        name = todo.pop()
        reached.add(name)
        todo += [c for c in by_name[name].get("children", []) if c not in reached]
    assert reached == set(names)
    found = list(durations(workflow["spec"]))
    assert found
    for where, value in found:
        assert GO_DURATION.match(value), f"{where}: {value!r} is not a Go duration"


def exported(path: Path, **kw):
    return export_scenario(load(path), str(path.relative_to(ROOT)), Target(), **kw)


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_every_shipped_scenario_that_maps_validates(path):
    result = exported(path)
    assert (result.workflow is not None) == (path.stem in MAPS), (
        "a shipped scenario that maps goes in MAPS and its export in examples/kubernetes/ "
        "(`chaos export --to chaos-mesh -o examples/kubernetes FILE`); one that does not map "
        "leaves MAPS: " + "; ".join(str(r) for r in result.refused))
    if result.workflow is None:
        assert result.refused  # never dropped silently
        partial = exported(path, allow_partial=True)
        if partial.workflow is not None:
            validate_workflow(partial.workflow)
        return
    validate_workflow(result.workflow)
    kinds = {t["templateType"] for t in result.workflow["spec"]["templates"]}
    assert kinds & {"NetworkChaos", "DNSChaos", "HTTPChaos", "Schedule"}


def test_the_validation_can_fail():
    """A wrong field, a missing template and a duration Chaos Mesh cannot parse are caught."""
    good = exported(ROOT / "scenarios/dockerhub-route-blackhole.yaml").workflow
    validate_workflow(good)
    bad = yaml.safe_load(yaml.safe_dump(good))
    chaos = next(t for t in bad["spec"]["templates"] if t["templateType"] == "NetworkChaos")
    chaos["networkChaos"]["action"] = "blackhole"
    with pytest.raises(AssertionError, match="action"):
        validate_workflow(bad)
    bad = yaml.safe_load(yaml.safe_dump(good))
    bad["spec"]["templates"][0]["children"].append("nowhere")
    with pytest.raises(AssertionError, match="missing template"):
        validate_workflow(bad)
    bad = yaml.safe_load(yaml.safe_dump(good))
    bad["spec"]["templates"][1]["deadline"] = "1.5 min"
    with pytest.raises(AssertionError, match="Go duration"):
        validate_workflow(bad)


def test_mapped_fields():
    """The fields each fault lands in (docs/kubernetes.md's table)."""
    def chaos(path):
        wf = exported(ROOT / path).workflow
        return [t for t in wf["spec"]["templates"] if t["templateType"] in FIELDS.values()]

    (blackhole,) = chaos("scenarios/dockerhub-route-blackhole.yaml")
    assert blackhole["networkChaos"]["action"] == "partition"
    assert blackhole["networkChaos"]["externalTargets"] == ["registry-1.docker.io"]
    (geo,) = chaos("scenarios/cdn-geo-block-es.yaml")
    assert geo["networkChaos"]["selector"]["labelSelectors"] == {"region": "ES"}
    (nx,) = chaos("scenarios/dns-nxdomain-registry.yaml")
    assert nx["dnsChaos"]["action"] == "error" and nx["dnsChaos"]["patterns"] == ["registry.test"]
    (hang,) = chaos("scenarios/upstream-accepts-never-answers.yaml")
    assert hang["networkChaos"]["delay"] == {"latency": "1h"}
    rate_limit = chaos("scenarios/registry/09-rate-limited-manifests.yaml")
    assert [c["httpChaos"]["path"] for c in rate_limit] == ["/v2/*/manifests/*"]
    assert rate_limit[0]["httpChaos"]["replace"]["code"] == 429
    assert rate_limit[0]["httpChaos"]["replace"]["headers"]["retry-after"] == "60"
    windows = exported(ROOT / "scenarios/registry/06-dns-failures.yaml").workflow
    by_name = {t["name"]: t for t in windows["spec"]["templates"]}
    assert by_name["fault-0"]["deadline"] == "8s"
    assert by_name["fault-1"]["children"] == ["fault-1-wait", "fault-1-on"]
    assert by_name["fault-1-wait"]["deadline"] == "8s"
    assert by_name["fault-1-on"]["deadline"] == "45s"


def test_a_flap_becomes_a_schedule(tmp_path):
    path = tmp_path / "flap.yaml"
    path.write_text("name: flap\nserve: [{name: registry.test}]\nfaults:\n"
                    "  - type: route-blackhole\n    destinations: [registry.test]\n"
                    "    flap: {period: 10s, duty: 0.3}\n    window: {after: 5s, for: 40s}\n")
    result = export_scenario(load(path), str(path), Target("ci", {"app": "puller"}))
    validate_workflow(result.workflow)
    by_name = {t["name"]: t for t in result.workflow["spec"]["templates"]}
    on = by_name["fault-0-on"]
    assert on["templateType"] == "Schedule" and on["deadline"] == "40s"
    assert on["schedule"]["schedule"] == "@every 10s"
    assert on["schedule"]["networkChaos"]["duration"] == "3s"
    assert on["schedule"]["networkChaos"]["selector"] == {"namespaces": ["ci"],
                                                          "labelSelectors": {"app": "puller"}}
    assert by_name["fault-0-wait"]["deadline"] == "5s"


def chaos_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "chaos", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def test_unmappable_faults_are_refused_with_file_and_line():
    done = chaos_cli("export", "--to", "chaos-mesh", "scenarios/registry/10-mirror-down.yaml",
                     "scenarios/dns-servfail-flaky.yaml")
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    # One line per fault, at the fault's line (where `chaos validate` would point).
    mirror = [line for line in lines if line.startswith("scenarios/registry/10-mirror-down.yaml:")]
    assert len(mirror) == 1, done.stderr
    assert mirror[0].startswith("scenarios/registry/10-mirror-down.yaml:9: faults[0] "
                                "(packet-filter): no Chaos Mesh equivalent: action reject-reset")
    assert mirror[0].endswith("nearest: packet-filter with action: drop (NetworkChaos partition)")
    flaky = [line for line in lines if line.startswith("scenarios/dns-servfail-flaky.yaml:")]
    assert len(flaky) == 1 and flaky[0].startswith("scenarios/dns-servfail-flaky.yaml:11: faults[0] (dns)")
    assert "probability" in flaky[0] and "'*.docker.test'" in flaky[0]
    assert "nearest: dns with answer servfail" in flaky[0]
    assert all("nearest: " in line for line in lines)


def test_allow_partial_exports_the_rest_and_says_so(tmp_path):
    done = chaos_cli("export", "--to", "chaos-mesh", "--allow-partial", "-o", str(tmp_path),
                     "scenarios/registry/10-mirror-down.yaml")
    assert done.returncode == 0, done.stderr
    assert "faults[0] (packet-filter)" in done.stderr and "--allow-partial" in done.stderr
    workflow = yaml.safe_load((tmp_path / "registry-mirror-down.yaml").read_text())
    validate_workflow(workflow)
    left = workflow["metadata"]["annotations"]["chaos-registry/left-out"]
    assert left.startswith("faults[0] (packet-filter, line 9): action reject-reset")
    kinds = [t["templateType"] for t in workflow["spec"]["templates"]]
    assert kinds.count("NetworkChaos") == 1  # the drop filter, in its window
    # Nothing maps at all: refused even with --allow-partial.
    done = chaos_cli("export", "--to", "chaos-mesh", "--allow-partial",
                     "scenarios/dockerhub-hosts-entry.yaml")
    assert done.returncode == 2 and "faults[0] (hosts-entry)" in done.stderr


def test_options_reach_the_resources():
    done = chaos_cli("export", "--to", "chaos-mesh", "--namespace", "ci", "--selector", "app=puller",
                     "--server-selector", "app=cdn", "--during", "2m",
                     "scenarios/cdn-outage-5xx.yaml", "scenarios/dns-nxdomain-registry.yaml")
    assert done.returncode == 0, done.stderr
    first, second = yaml.safe_load_all(done.stdout)
    assert first["metadata"]["namespace"] == "ci"
    http = [t["httpChaos"] for t in first["spec"]["templates"] if "httpChaos" in t]
    assert {h["selector"]["labelSelectors"]["app"] for h in http} == {"cdn"}
    dns = [t["dnsChaos"] for t in second["spec"]["templates"] if "dnsChaos" in t]
    assert dns[0]["selector"] == {"namespaces": ["ci"], "labelSelectors": {"app": "puller"}}
    during = next(t for t in second["spec"]["templates"] if t["name"] == "during")
    assert during["deadline"] == "2m0s"
    bad = chaos_cli("export", "--to", "chaos-mesh", "--selector", "not a label",
                    "scenarios/cdn-outage-5xx.yaml")
    assert bad.returncode == 2 and "not a label" in bad.stderr


EXAMPLES = ROOT / "examples" / "kubernetes"


def test_examples_are_the_current_export_and_validate():
    """examples/kubernetes/ holds `chaos export --to chaos-mesh` of every shipped scenario that
    maps, byte for byte as the code exports it today (so it cannot go stale)."""
    sources = {}
    for example in sorted(EXAMPLES.glob("*.yaml")):
        text = example.read_text()
        first = text.splitlines()[0]
        assert first.startswith("# chaos export --to chaos-mesh "), example
        source = first.removeprefix("# chaos export --to chaos-mesh ")
        result = export_scenario(load(ROOT / source), source, Target())
        assert result.text(source) == text, (
            f"{example.name} is stale: regenerate with `chaos export --to chaos-mesh "
            f"-o examples/kubernetes {source}`")
        assert example.name == f"{result.name}.yaml"
        validate_workflow(yaml.safe_load(text))
        sources[source] = example
    assert set(sources) == {str(p.relative_to(ROOT)) for p in SCENARIOS if p.stem in MAPS}


def test_go_durations():
    from chaos.durations import go_duration, one_unit_duration, parse_go_duration

    cases = {0: "0s", 0.25: "250ms", 30: "30s", 90: "1m30s", 60: "1m0s", 3605: "1h0m5s",
             1.5: "1.5s"}
    for seconds, text in cases.items():
        assert go_duration(seconds) == text
        assert GO_DURATION.match(text)
        assert parse_go_duration(text) == seconds
    assert [one_unit_duration(s) for s in (3600, 90, 1.5, 0.01)] == ["1h", "90s", "1500ms", "10ms"]
    for bad in ("1.5 min", "5", "", "1h 2m"):
        with pytest.raises(ValueError):
            parse_go_duration(bad)


def test_a_fault_type_maps_by_its_own_method_or_is_refused():
    """A plugin's fault type maps through `chaos_mesh(target)` on its model; one without it
    is refused ("no Chaos Mesh mapping"), never dropped."""
    from typing import Literal

    from chaos.export.mapping import MeshChaos
    from chaos.faults import register, unregister
    from chaos.faults.base import Fault
    from chaos.scenario.load import load_text

    class Corrupt(Fault):
        type: Literal["test-corrupt"] = "test-corrupt"
        percent: int = 10

        def chaos_mesh(self, target):
            return [MeshChaos("NetworkChaos", {"action": "corrupt", "mode": "all",
                                               "selector": target.selector(),
                                               "corrupt": {"corrupt": str(self.percent)}})]

    class Opaque(Fault):
        type: Literal["test-opaque"] = "test-opaque"

    register("test-corrupt", Corrupt)
    register("test-opaque", Opaque)
    try:
        text = "name: plugin\nfaults:\n  - {type: test-corrupt, percent: 30}\n  - {type: test-opaque}\n"
        scenario = load_text(text, "plugin.yaml")
        refused = export_scenario(scenario, "plugin.yaml", Target())
        assert refused.workflow is None
        assert [str(r) for r in refused.refused] == [
            "plugin.yaml:4: faults[1] (test-opaque): no Chaos Mesh equivalent: fault type "
            "'test-opaque' has no Chaos Mesh mapping; nearest: none"]
        partial = export_scenario(scenario, "plugin.yaml", Target(), allow_partial=True)
        validate_workflow(partial.workflow)
        (node,) = [t for t in partial.workflow["spec"]["templates"] if "networkChaos" in t]
        assert node["networkChaos"]["corrupt"] == {"corrupt": "30"}
    finally:
        unregister("test-corrupt")
        unregister("test-opaque")


def test_an_invalid_scenario_is_refused_at_its_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nfaults:\n  - type: dns\n    names: [registry.test]\n    answer: nope\n")
    done = chaos_cli("export", "--to", "chaos-mesh", str(path))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"{path}:5:")


def test_discard_is_refused_with_its_nearest():
    from chaos.scenario.load import load_text

    text = "name: d\nfaults:\n  - {type: discard, destinations: [198.18.1.9], for: 1s}\n"
    refused = export_scenario(load_text(text, "d.yaml"), "d.yaml", Target())
    assert [str(r) for r in refused.refused] == [
        "d.yaml:3: faults[0] (discard): no Chaos Mesh equivalent: NetworkChaos cannot read a TCP "
        "stream's bytes and drop them, nor close it; nearest: packet-filter drop (NetworkChaos "
        "partition): the sender then stalls instead"]


CONTENT = """\
name: content-export
serve: [{name: registry.test}, {name: cdn.test}]
faults:
  - type: http-respond
    body: "<html>portal</html>"
    match: {host: registry.test, path: /v2/*, headers: {user-agent: docker}}
    ports: [80]
  - {type: http-replace, target: request, path: /other, method: PUT, queries: {a: "1"}, ports: [80]}
  - type: http-patch
    target: response
    json: {expires_in: null}
    headers: [[x-a, "1"]]
    response_match: {status: 200, headers: {content-type: application/json}}
    ports: [80]
  - {type: http-abort, target: response, ports: [80]}
  - {type: http-delay, delay: 300ms, ports: [80]}
  - {type: packet-filter, destinations: [cdn.test], established: keep}
"""


def test_content_faults_map_to_httpchaos_field_for_field():
    """docs/http-faults.md's HTTPChaos table: each content fault is one HTTPChaos."""
    from chaos.scenario.load import load_text

    result = export_scenario(load_text(CONTENT, "c.yaml"), "c.yaml", Target())
    assert result.refused == []
    validate_workflow(result.workflow)
    nodes = [t["httpChaos"] for t in result.workflow["spec"]["templates"] if "httpChaos" in t]
    respond, replace, patch, abort, delay = nodes
    assert respond["target"] == "Response" and respond["path"] == "/v2/*"
    assert respond["request_headers"] == {"Host": "registry.test", "user-agent": "docker"}
    assert respond["replace"] == {"code": 200, "body": "PGh0bWw+cG9ydGFsPC9odG1sPg==",
                                  "headers": {"content-type": "text/html; charset=utf-8"}}
    assert replace["target"] == "Request"
    assert replace["replace"] == {"path": "/other", "method": "PUT", "queries": {"a": "1"}}
    assert (patch["target"], patch["code"]) == ("Response", 200)
    assert patch["response_headers"] == {"content-type": "application/json"}
    assert patch["patch"] == {"body": {"type": "JSON", "value": '{"expires_in":null}'},
                              "headers": [["x-a", "1"]]}
    assert (abort["target"], abort["abort"]) == ("Response", True)
    assert (delay["target"], delay["delay"]) == ("Request", "300ms")
    lost = result.workflow["metadata"]["annotations"]["chaos-registry/lost"]
    assert "faults[5]: established: keep: a partition drops the open connections' packets too" in lost
    cut = CONTENT.replace("path: /other, method: PUT, queries: {a: \"1\"}", "truncate: 5")
    cut = cut.replace("target: request, truncate", "target: response, truncate")
    refused = export_scenario(load_text(cut, "c.yaml"), "c.yaml", Target()).refused
    assert [(r.type, r.why) for r in refused] == [("http-replace", "HTTPChaos cannot cut a body short")]
