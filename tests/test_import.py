"""`chaos import`: Chaos Mesh documents to a scenario; export then import gives the same
faults (and exporting the import gives the same chaos again); refusals name file:line;
an imported scenario runs in the sandbox."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from chaos.export.chaos_mesh import export_scenario
from chaos.export.importer import ImportRefused, import_documents
from chaos.export.mapping import Target
from chaos.scenario.load import load, load_text, plan_in_sandbox
from tests.test_export import MAPS, ROOT, SCENARIOS, validate_workflow

CHAOS_KINDS = ("NetworkChaos", "DNSChaos", "HTTPChaos", "Schedule", "Suspend")
# A hang is exported as a delay, which imports as slow; a route-blackhole as a partition,
# which drops silently (clients time out), as a packet-filter drop does; an http-respond as
# an HTTPChaos replace of the answer, which imports as http-replace; a packet filter of one
# region as a NetworkChaos of that region's pods, which imports as a geo-block.
SAME_TYPE = {"hang": "slow", "route-blackhole": "packet-filter", "http-respond": "http-replace",
             "geo-block": "packet-filter"}
HTTP_TYPES = ("http-error", "partial", "bot-mitigation")  # NetworkChaos has no ports


def targets(fault) -> tuple:
    match = getattr(fault, "match", None)
    return (SAME_TYPE.get(fault.type, fault.type),
            tuple(getattr(fault, "destinations", None) or getattr(fault, "block", None)
                  or getattr(fault, "names", None) or ()),
            getattr(match, "host", None), getattr(match, "path", None),
            tuple(fault.ports) if fault.type in HTTP_TYPES else (),
            getattr(fault, "region", None),
            fault.window.model_dump() if fault.window and fault.window.after else None)


def all_targets(faults) -> list[tuple]:
    """targets() of each fault, one per path: HTTPChaos takes one path, so a fault of several
    paths exports (and imports) as one HTTPChaos per path."""
    out = []
    for fault in faults:
        t = targets(fault)
        out += [(*t[:3], path, *t[4:]) for path in t[3]] if isinstance(t[3], list) else [t]
    return out


def chaos_nodes(workflow: dict) -> list[str]:
    """The chaos a Workflow applies and when, without the names of its nodes."""
    return sorted(json.dumps({k: v for k, v in t.items() if k != "name"}, sort_keys=True)
                  for t in workflow["spec"]["templates"] if t["templateType"] in CHAOS_KINDS)


def round_trip(path: Path, tmp_path: Path):
    original = load(path)
    first = export_scenario(original, str(path), Target())
    exported = tmp_path / "exported.yaml"
    exported.write_text(first.text(str(path)))
    data = import_documents([exported])
    imported_file = tmp_path / "imported.yaml"
    imported_file.write_text(yaml.safe_dump(data, sort_keys=False))
    imported = load(imported_file)
    return original, first, imported


@pytest.mark.parametrize("path", [p for p in SCENARIOS if p.stem in MAPS], ids=lambda p: p.stem)
def test_export_then_import_gives_the_same_faults(path, tmp_path):
    original, first, imported = round_trip(path, tmp_path)
    assert all_targets(imported.faults) == all_targets(original.faults)
    assert plan_in_sandbox(imported) == []  # `chaos run` would plan it: the sandbox runs it
    again = export_scenario(imported, "imported.yaml", Target())
    validate_workflow(again.workflow)
    assert chaos_nodes(again.workflow) == chaos_nodes(first.workflow)


def test_a_flap_round_trips(tmp_path):
    path = tmp_path / "flap.yaml"
    path.write_text("name: flap\nserve: [{name: registry.test}]\nfaults:\n"
                    "  - type: dns\n    names: [registry.test]\n    answer: servfail\n"
                    "    flap: {period: 10s, duty: 0.3}\n    window: {after: 5s, for: 40s}\n")
    original, first, imported = round_trip(path, tmp_path)
    (fault,) = imported.faults
    assert (fault.flap.period, fault.flap.duty) == (10, 0.3)
    assert (fault.window.after, fault.window.for_) == (5, 40)
    assert chaos_nodes(export_scenario(imported, "i", Target()).workflow) == chaos_nodes(first.workflow)


def test_status_checks_become_http_probes(tmp_path):
    _, _, imported = round_trip(ROOT / "scenarios/dockerhub-route-blackhole.yaml", tmp_path)
    assert [(p.http, p.status) for p in imported.expect.before] == [
        ("http://registry-1.docker.io/v2/", 200)]
    assert [p.http for p in imported.expect.during] == ["http://mirror.lab.test/v2/"]
    assert [p.http for p in imported.expect.after] == ["http://registry-1.docker.io/v2/"]
    assert {s.name for s in imported.serve} == {"registry-1.docker.io", "mirror.lab.test"}


REFUSED = """\
apiVersion: chaos-mesh.org/v1alpha1
kind: NetworkChaos
metadata: {name: dup}
spec:
  action: duplicate
  mode: all
  selector: {namespaces: [default]}
  duplicate: {duplicate: "50"}
---
apiVersion: chaos-mesh.org/v1alpha1
kind: DNSChaos
metadata: {name: wild}
spec:
  action: error
  mode: all
  selector: {namespaces: [default]}
  patterns: [chaos-mesh.*]
---
apiVersion: chaos-mesh.org/v1alpha1
kind: PodChaos
metadata: {name: kill}
spec: {action: pod-kill, mode: one, selector: {namespaces: [default]}}
"""


def chaos_cli(*args):
    return subprocess.run([sys.executable, "-m", "chaos", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_what_has_no_fault_type_is_refused_with_file_and_line(tmp_path):
    path = tmp_path / "team.yaml"
    path.write_text(REFUSED)
    done = chaos_cli("import", str(path))
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 3, done.stderr
    assert lines[0].startswith(f"{path}:1: NetworkChaos dup: no fault type here: action duplicate")
    assert lines[1].startswith(f"{path}:10: DNSChaos wild: no fault type here: pattern 'chaos-mesh.*'")
    assert lines[2].startswith(f"{path}:19: PodChaos kill: not a chaos this imports")
    assert all("nearest: " in line for line in lines)
    with pytest.raises(ImportRefused):
        import_documents([path])


TEAM = """\
apiVersion: chaos-mesh.org/v1alpha1
kind: NetworkChaos
metadata: {name: registry-partition}
spec:
  action: partition
  mode: all
  selector: {namespaces: [ci], labelSelectors: {app: puller}}
  direction: to
  externalTargets: [registry.test]
---
apiVersion: chaos-mesh.org/v1alpha1
kind: DNSChaos
metadata: {name: mirror-dns}
spec:
  action: error
  mode: all
  selector: {namespaces: [ci]}
  patterns: [mirror.test]
"""

PROBES = """\
expect:
  before:
    - {http: "http://registry.test/", status: 200}
  during:
    - name: the partition holds
      tcp: registry.test:80
      connect: timeout
      connect_timeout: 1s
    - name: the mirror does not resolve
      run: curl -sS --noproxy '*' -m 3 http://mirror.test/
      exit: 6
  after:
    - {http: "http://registry.test/", status: 200, within: 5s}
"""


def test_an_imported_experiment_runs_in_the_sandbox(chaos, tmp_path):
    team = tmp_path / "team.yaml"
    team.write_text(TEAM)
    scenario = tmp_path / "imported.yaml"
    done = chaos_cli("import", str(team), "-o", str(scenario))
    assert done.returncode == 0, done.stderr
    data = yaml.safe_load(scenario.read_text())
    assert [f["type"] for f in data["faults"]] == ["packet-filter", "dns"]
    data.update(yaml.safe_load(PROBES))  # the team's own checks, run against the imported faults
    scenario.write_text(yaml.safe_dump(data, sort_keys=False))
    load_text(scenario.read_text())
    report = tmp_path / "r.json"
    result = chaos("run", str(scenario), "--json", str(report))
    assert result.returncode == 0, result.stdout + result.stderr
    verdicts = [(p["phase"], p["verdict"]) for p in json.loads(report.read_text())["scenarios"][0]["probes"]]
    assert verdicts == [("before", "passed"), ("during", "passed"), ("during", "passed"),
                        ("after", "passed")]
    # Nothing of this run is left (other runs may come and go on a shared machine).
    run_id = re.search(r"· run (chaos-[0-9a-f]+)", result.stdout).group(1)
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert run_id not in netns


SERIAL = """\
apiVersion: chaos-mesh.org/v1alpha1
kind: Workflow
metadata: {name: team-drill}
spec:
  entry: drill
  templates:
    - name: drill
      templateType: Serial
      children: [healthy, cut, pause, slow-dns]
    - name: healthy
      templateType: StatusCheck
      statusCheck: {type: HTTP, http: {url: "http://registry.test/v2/", criteria: {statusCode: "200-299"}}}
    - name: cut
      templateType: NetworkChaos
      deadline: 30s
      networkChaos: {action: loss, mode: all, selector: {namespaces: [ci]},
                     loss: {loss: "25"}, externalTargets: [registry.test]}
    - name: pause
      templateType: Suspend
      deadline: 10s
    - name: slow-dns
      templateType: DNSChaos
      deadline: 1m
      dnsChaos: {action: random, mode: all, selector: {namespaces: [ci]}, patterns: [registry.test]}
"""


def test_a_serial_workflow_becomes_windows_one_after_the_other(tmp_path):
    path = tmp_path / "drill.yaml"
    path.write_text(SERIAL)
    data = import_documents([path])
    scenario = load_text(yaml.safe_dump(data))
    loss, dns = scenario.faults
    assert (loss.type, loss.probability, loss.window.after, loss.window.for_) == (
        "packet-filter", 0.25, 0, 30)
    assert (dns.type, dns.answer, dns.window.after, dns.window.for_) == ("dns", "random", 40, 60)
    assert [(p.http, p.status) for p in scenario.expect.before] == [
        ("http://registry.test/v2/", list(range(200, 300)))]
    assert data["name"] == "team-drill" and [s.name for s in scenario.serve] == ["registry.test"]


def test_content_faults_round_trip_through_httpchaos(tmp_path):
    """Every HTTPChaos action on either target imports as a content fault type, and
    exporting the import gives the same chaos again (http-respond comes back as the
    http-replace of the answer HTTPChaos makes of it, an abort of the answer as the partial
    it always imported as, the keep of a filter as a drop)."""
    from tests.test_export import CONTENT

    path = tmp_path / "content.yaml"
    path.write_text(CONTENT)
    original, first, imported = round_trip(path, tmp_path)
    assert [f.type for f in imported.faults] == [
        "http-replace", "http-replace", "http-patch", "partial", "http-delay", "packet-filter"]
    replace = imported.faults[1]
    assert (replace.target, replace.path, replace.method, replace.queries) == (
        "request", "/other", "PUT", {"a": "1"})
    patch = imported.faults[2]
    assert (patch.json_, patch.headers) == ({"expires_in": None}, [("x-a", "1")])
    assert (patch.response_match.status, patch.response_match.headers) == (
        200, {"content-type": "application/json"})
    assert imported.faults[0].match.headers == {"user-agent": "docker"}
    assert plan_in_sandbox(imported) == []
    again = export_scenario(imported, "imported.yaml", Target())
    validate_workflow(again.workflow)
    assert chaos_nodes(again.workflow) == chaos_nodes(first.workflow)
