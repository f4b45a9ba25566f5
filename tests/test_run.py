"""End to end through the real CLI: real namespaces, real curl, real routes and hosts files."""

from __future__ import annotations

import json
import os
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from chaos.journal import Journal
from conftest import FAILING, ROOT, SCENARIOS, assert_same, chaos_cmd, snapshot, write

PASSING = SCENARIOS / "dockerhub-hosts-entry.yaml"
ROUTE = SCENARIOS / "dockerhub-route-blackhole.yaml"


def test_dzone_hosts_entry_scenario(chaos, tmp_path):
    report = tmp_path / "r.json"
    result = chaos("run", str(PASSING), "--json", str(report))
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads(report.read_text())
    (scenario,) = doc["scenarios"]
    assert scenario["status"] == "passed" and doc["passed"] is True
    by_name = {p["name"]: p for p in scenario["probes"]}
    refused = by_name["registry refused at once"]
    assert refused["detail"]["exit"] == 7 and refused["duration"] < 2
    assert "Connection refused" in refused["detail"]["stderr"] or "Couldn't connect" in refused["detail"]["stderr"]
    assert by_name["mirror still answers"]["detail"]["status"] == 200
    assert by_name["registry answers again"]["verdict"] == "passed"
    states = [(e["fault"], e["state"]) for e in scenario["events"] if e["kind"] == "fault"]
    assert [s for _, s in states] == ["on", "off"]


def test_dzone_route_blackhole_scenario(chaos, tmp_path):
    junit = tmp_path / "r.xml"
    result = chaos("run", str(ROUTE), "--junit", str(junit))
    assert result.returncode == 0, result.stdout + result.stderr
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("name") == "dockerhub-route-blackhole"
    assert suite.get("failures") == "0" and suite.get("errors") == "0"
    names = [case.get("name") for case in suite.findall("testcase")]
    assert "registry unreachable at once" in names and "run and revert" in names


def test_machine_unchanged_by_passing_and_failing_runs(chaos, tmp_path):
    before = snapshot()
    assert chaos("run", str(PASSING), str(ROUTE)).returncode == 0
    assert_same(before, snapshot())
    failing = chaos("run", str(write(tmp_path, FAILING)), "--junit", str(tmp_path / "f.xml"))
    assert failing.returncode == 1, failing.stdout + failing.stderr
    shown = failing.stdout.replace("\n", " ").replace("      ", " ")
    assert "status: expected 200, observed no answer (unreachable" in shown
    assert_same(before, snapshot())
    case = [c for c in ET.parse(tmp_path / "f.xml").getroot().iter("testcase")
            if c.get("name") == "registry should answer (it will not)"][0]
    assert case.find("failure") is not None


def test_hung_probe_is_killed_and_reported_as_hung(chaos, tmp_path, state_dir):
    text = """\
name: hang
description: a probe that never finishes
expect:
  during:
    - name: sleeps past its bound
      run: sleep 60
      within: 1s
    - name: fails quickly
      run: echo oops >&2; exit 3
"""
    report = tmp_path / "r.json"
    result = chaos("run", str(write(tmp_path, text)), "--json", str(report), timeout=30)
    assert result.returncode == 1
    probes = json.loads(report.read_text())["scenarios"][0]["probes"]
    assert probes[0]["verdict"] == "hung"
    assert 1.9 <= probes[0]["duration"] < 5  # within 1s + grace 1s, then killed
    assert probes[1]["verdict"] == "failed" and probes[1]["detail"]["exit"] == 3
    assert "hung" in result.stdout


def test_steady_state_must_hold_before_injecting(chaos, tmp_path):
    text = FAILING.replace("  during:", "  before:\n    - run: exit 1\n  during:")
    report = tmp_path / "r.json"
    result = chaos("run", str(write(tmp_path, text)), "--json", str(report))
    assert result.returncode == 1
    scenario = json.loads(report.read_text())["scenarios"][0]
    assert "steady state did not hold" in scenario["errors"][0]
    assert not [e for e in scenario["events"] if e["kind"] == "fault"], "nothing may be injected"


@pytest.mark.parametrize("destination,message", [
    ("0.0.0.0/0", "covers every address"),
    ("::/0", "covers every address"),
    ("nowhere.test", "cannot resolve 'nowhere.test'"),
])
def test_guardrails_refuse_at_plan_time(chaos, tmp_path, destination, message):
    text = FAILING.replace("destinations: [registry.test]", f"destinations: ['{destination}']")
    before = snapshot()
    result = chaos("run", str(write(tmp_path, text)))
    assert result.returncode == 2
    assert "s.yaml:7:20: faults[0].destinations[0]: " in result.stdout
    assert message in result.stdout
    assert_same(before, snapshot())


def test_window_switches_fault_on_and_off_on_schedule(chaos, tmp_path):
    text = """\
name: windowed
description: the route is cut from 0.5 s to 1.5 s into the during phase
serve:
  - name: registry.test
faults:
  - type: route-blackhole
    destinations: [registry.test]
    kind: unreachable
    window: {after: 500ms, for: 1s}
expect:
  during:
    - name: reachable before the window
      tcp: registry.test:80
    - name: wait into the window
      run: sleep 0.8
    - name: cut inside the window
      tcp: registry.test:80
      connect: unreachable
  after:
    - tcp: registry.test:80
"""
    report = tmp_path / "r.json"
    result = chaos("run", str(write(tmp_path, text)), "--json", str(report))
    assert result.returncode == 0, result.stdout
    events = json.loads(report.read_text())["scenarios"][0]["events"]
    during = next(e["t"] for e in events if e.get("phase") == "during")
    switches = [e for e in events if e["kind"] == "fault"]
    assert [e["state"] for e in switches] == ["on", "off"]
    assert [round(e["due"] - during, 3) for e in switches] == [0.5, 1.5]
    for e in switches:  # each switch in effect (its injector returned) within 20 ms of due
        assert 0 <= e["began"] - e["due"] <= e["t"] - e["due"] < 0.020, e


def test_flap_switches_on_and_off_each_period(chaos, tmp_path):
    text = """\
name: flapping
description: the route flaps, on for 200 ms of every 400 ms, inside a 1.2 s window
serve:
  - name: registry.test
faults:
  - type: route-blackhole
    destinations: [registry.test]
    kind: unreachable
    window: {after: 0s, for: 1200ms}
    flap: {period: 400ms, duty: 0.5}
expect:
  during:
    - run: sleep 0.1
"""
    report = tmp_path / "r.json"
    result = chaos("run", str(write(tmp_path, text)), "--json", str(report))
    assert result.returncode == 0, result.stdout
    events = json.loads(report.read_text())["scenarios"][0]["events"]
    during = next(e["t"] for e in events if e.get("phase") == "during")
    switches = [e for e in events if e["kind"] == "fault" and "due" in e]
    assert [(e["state"], round(e["due"] - during, 3)) for e in switches] == [
        ("on", 0.0), ("off", 0.2), ("on", 0.4), ("off", 0.6), ("on", 0.8), ("off", 1.0)]
    for e in switches:  # in effect (the route added or deleted) within 20 ms of due
        assert 0 <= e["began"] - e["due"] <= e["t"] - e["due"] < 0.020, e


def test_timeline_picture_and_console_bars(chaos, tmp_path):
    result = chaos("run", str(ROUTE), "--timeline", str(tmp_path / "tl"))
    assert result.returncode == 0, result.stdout
    assert "timeline" in result.stdout and "█" in result.stdout  # the fault's bar in the console
    svg = ET.parse(tmp_path / "tl" / "dockerhub-route-blackhole.svg").getroot()
    titles = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}title")]
    assert any(t.startswith("unreachable route registry-1.docker.io:") for t in titles), titles
    assert sum("passed" in t for t in titles) == 5  # one bar per probe, coloured by verdict


def test_dns_queries_mapping_form_counts_in_a_run(chaos, tmp_path):
    text = (SCENARIOS / "dns-nxdomain-registry.yaml").read_text().replace(
        "      dns_queries: registry.test\n      at_least: 1\n",
        "      dns_queries: {name: registry.test, at_least: 1}\n"
        "    - name: nothing asked for the mirror's MX\n"
        "      dns_queries: {name: mirror.test, qtype: MX, count: 0}\n")
    assert "{name: registry.test, at_least: 1}" in text
    report = tmp_path / "r.json"
    result = chaos("run", str(write(tmp_path, text)), "--json", str(report))
    assert result.returncode == 0, result.stdout
    probes = {p["name"]: p for p in json.loads(report.read_text())["scenarios"][0]["probes"]}
    asked = probes["the client asked the resolver"]["detail"]["queries"]
    assert asked and {q["name"].rstrip(".") for q in asked} == {"registry.test"}
    assert probes["nothing asked for the mirror's MX"]["verdict"] == "passed"


def test_window_opening_at_zero_is_on_before_the_first_probe(chaos, tmp_path):
    text = """\
name: window-at-zero
description: a window from 0s is on when the first during probe starts, not racing it
serve:
  - name: registry.test
faults:
  - type: hosts-entry
    names: [registry.test]
    window: {for: 1s}
expect:
  during:
    - name: refused from the very first probe
      tcp: registry.test:80
      connect: refused
  after:
    - tcp: registry.test:80
"""
    report = tmp_path / "r.json"
    for _ in range(3):  # a race would show in some of the runs
        result = chaos("run", str(write(tmp_path, text)), "--json", str(report))
        assert result.returncode == 0, result.stdout
        scenario = json.loads(report.read_text())["scenarios"][0]
        on = next(e for e in scenario["events"] if e["kind"] == "fault" and e["state"] == "on")
        first = next(p for p in scenario["probes"] if p["phase"] == "during")
        assert on["t"] <= first["started"], (on, first)  # switched on (done) before it began


REVERT_FAILS = """\
name: revert-fails
description: the hosts entry cannot be taken out (the test makes the file immutable); the route can
serve:
  - name: registry.test
  - name: mirror.test
faults:
  - type: route-blackhole
    destinations: [mirror.test]
    kind: unreachable
  - type: hosts-entry
    names: [registry.test]
expect:
  during:
    - name: wait for the test to make the hosts file immutable
      run: while [ ! -e {logs}/go ]; do sleep 0.05; done
      within: 20s
  after:
    - tcp: mirror.test:80
"""


def _wait_for_journal(state_dir: Path, proc, timeout: float = 30.0) -> tuple[Path, list[dict]]:
    """The run's journal once both faults are on (the during probe then waits for us)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for path in state_dir.glob("runs/*/journal.jsonl"):
            records = [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
            if sum(r.get("kind") == "fault" and r.get("state") == "on" for r in records) == 2:
                return path, records
        time.sleep(0.02)
    raise AssertionError(f"the run never switched both faults on: {proc.communicate(timeout=30)}")


def test_failed_revert_reverts_the_rest_exits_3_and_recover_cleans_up(chaos, tmp_path, state_dir):
    before = snapshot()
    report = tmp_path / "r.json"
    proc = subprocess.Popen(chaos_cmd("run", str(write(tmp_path, REVERT_FAILS)), "--json", str(report)),
                            env={**os.environ, "CHAOS_STATE_DIR": str(state_dir)}, cwd=ROOT,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    hosts = None
    try:
        journal_path, records = _wait_for_journal(state_dir, proc)
        hosts = Path(next(r["undo"]["path"] for r in records if r.get("kind") == "hosts-block"))
        # A real reason for the undo to fail: the kernel refuses to write an immutable file.
        subprocess.run(["chattr", "+i", str(hosts)], check=True)
        (journal_path.parent / "go").touch()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if hosts is not None:
            subprocess.run(["chattr", "-i", str(hosts)], check=False)

    try:
        assert proc.returncode == 3, out + err
        text = " ".join(out.split())  # the console may wrap long lines
        assert "could not revert" in text and f"hosts {hosts}: registry.test -> 127.0.0.1" in text, out
        assert "chaos recover" in text
        scenario = json.loads(report.read_text())["scenarios"][0]
        assert scenario["status"] == "injection-error" and scenario["exit_code"] == 3
        left = scenario["left_behind"]
        assert any(item.startswith(f"hosts {hosts}") and "PermissionError" in item for item in left), left
        assert any(item.startswith(f"sandbox files {hosts.parent}") for item in left), left
        assert not any("route" in item or "network namespace" in item for item in left), left
        # The other fault and everything else of the run were reverted despite the failure.
        pending = Journal.read(journal_path).pending()
        assert sorted(e.kind for e in pending) == ["hosts-block", "path"], pending
        assert not os.path.exists(f"/run/netns/{hosts.parent.name}")
        states = [(e["fault"].split()[0], e["state"]) for e in scenario["events"] if e["kind"] == "fault"]
        assert states == [("unreachable", "on"), ("hosts-entry", "on"), ("hosts-entry", "stuck"),
                          ("unreachable", "off")]
        assert "fault stuck hosts-entry registry.test -> 127.0.0.1" in text

        # The provocation removed (above), `chaos recover` finishes the job.
        recovered = chaos("recover")
        assert recovered.returncode == 0, recovered.stdout + recovered.stderr
        assert f"undo hosts {hosts}" in recovered.stdout and "recovered (2 change(s) undone)" in recovered.stdout
        assert not list(state_dir.glob("runs/*"))
        assert_same(before, snapshot())
    finally:
        chaos("recover")  # whatever failed above, leave nothing on the machine (idempotent)


def test_scheduled_phase_runs_with_the_heap_frozen(state_dir):
    """A full garbage collection of a run's heap takes ~40 ms here: during the scheduled
    phase the objects made before it are frozen (not scanned), and thawed after it; a
    freeze someone else made is left as it was."""
    import gc

    from chaos.runner import Reporter, RunOptions, run_scenario
    from chaos.scenario.load import load_text

    text = """\
name: frozen-heap
description: one windowed fault; the reporter looks at the collector when it switches
serve:
  - name: registry.test
faults:
  - type: route-blackhole
    destinations: [registry.test]
    window: {after: 100ms, for: 200ms}
expect:
  during:
    - run: sleep 0.4
"""

    class Watch(Reporter):
        def __init__(self) -> None:
            self.frozen_at_switch: list[int] = []

        def fault(self, label, on, t) -> None:
            self.frozen_at_switch.append(gc.get_freeze_count())

    gc.unfreeze()  # whatever this test process froze before
    watch = Watch()
    result = run_scenario(load_text(text), options=RunOptions(state_dir=str(state_dir)),
                          reporter=watch)
    assert result.exit_code == 0, result.errors
    assert len(watch.frozen_at_switch) == 2 and min(watch.frozen_at_switch) > 0
    assert gc.get_freeze_count() == 0

    gc.freeze()  # someone else's freeze
    try:
        before = gc.get_freeze_count()
        result = run_scenario(load_text(text), options=RunOptions(state_dir=str(state_dir)),
                              reporter=Watch())
        assert result.exit_code == 0, result.errors
        assert gc.get_freeze_count() > before // 2  # not thawed (refcounting still frees some)
    finally:
        gc.unfreeze()


VARS = """\
name: var-values-stay-words
description: a --var value full of shell metacharacters reaches the probes as one literal word
expect:
  during:
    - name: unquoted
      run: printf '<%s>' {x}
      stdout: {contains: "<VALUE>"}
    - name: inside double quotes
      run: printf '<%s>' "{x}"
      stdout: {contains: "<VALUE>"}
    - name: inside single quotes
      run: printf '<%s>' '{x}'
      stdout: {contains: "<VALUE>"}
    - name: a value without metacharacters reads as before
      run: printf '<%s>' {plain}/v2/
      stdout: {contains: "<198.18.1.10:5000/v2/>"}
"""


def test_var_values_are_never_shell_code(chaos, tmp_path):
    """`--var` values are filled into `run:` commands (sh -c, as root) quoted for where each
    placeholder stands: $(...), ;, backticks, quotes and backslashes stay text (issue #22)."""
    pwned = tmp_path / "pwned"
    value = f"$(touch {pwned}); touch {pwned}; `touch {pwned}` \" ' \\ * && touch {pwned}"
    text = VARS.replace('"<VALUE>"', json.dumps(f"<{value}>"))
    result = chaos("run", "--var", f"x={value}", "--var", "plain=198.18.1.10:5000", "--json",
                   str(tmp_path / "r.json"), str(write(tmp_path, text)))
    assert not pwned.exists(), "a --var value ran as a command"
    assert result.returncode == 0, result.stdout + result.stderr
    probes = json.loads((tmp_path / "r.json").read_text())["scenarios"][0]["probes"]
    assert [p["verdict"] for p in probes] == ["passed"] * 4, probes


PRIVATE = """\
name: run-folder-is-private
description: a local user who is not root reads nothing of a live run's folder
serve:
  - name: registry.test
expect:
  during:
    - http: http://registry.test/
    - name: the state dir's runs/, the run's folder and its journal
      run: stat -c '%a %n' "$(dirname {logs})" {logs} {logs}/journal.jsonl
      stdout: {regex: "^700 .*\\\\n700 .*\\\\n600 .*journal.jsonl\\\\n$"}
    - name: nobody cannot read the journal (it holds the filled-in --var values)
      run: setpriv --reuid=nobody --regid=nogroup --clear-groups cat {logs}/journal.jsonl
      exit: nonzero
      stderr: {contains: Permission denied}
    - name: nor a server's log
      run: setpriv --reuid=nobody --regid=nogroup --clear-groups cat {logs}/registry.test.log
      exit: nonzero
      stderr: {contains: Permission denied}
    - name: nor list the run folders
      run: setpriv --reuid=nobody --regid=nogroup --clear-groups ls "$(dirname {logs})"
      exit: nonzero
"""


def test_run_folders_and_journals_are_private(chaos, tmp_path):
    """Run folders (and runs/ above them) are 0700 and journals 0600: --var values and probe
    commands are secrets at rest (issue #22)."""
    import shutil
    import tempfile

    # A state dir every user can reach (tmp_path's parents are root's alone), as /var/lib/chaos.
    state = Path(tempfile.mkdtemp(prefix="chaos-private-", dir="/tmp"))
    state.chmod(0o755)
    try:
        result = chaos("run", "--state-dir", str(state), "--var", "token=s3cret", "--json",
                       str(tmp_path / "r.json"), str(write(tmp_path, PRIVATE)))
        assert result.returncode == 0, result.stdout + result.stderr
        probes = json.loads((tmp_path / "r.json").read_text())["scenarios"][0]["probes"]
        assert [p["verdict"] for p in probes] == ["passed"] * 5, probes
    finally:
        shutil.rmtree(state)
