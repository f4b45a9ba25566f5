"""Fault types and probe kinds from other installed packages (entry points `chaos.faults`,
`chaos.probes`): examples/plugin/ installed for real, and broken or colliding plugins."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, chaos_cmd, write

SCENARIO = """\
name: plugin-fault-and-probe
description: the example plugin's fault takes Docker Hub's names away; its probe sees it
hosts:
  registry-1.docker.io: 198.18.1.10
faults:
  - type: registry-offline
expect:
  before:
    - resolves: registry-1.docker.io
      to: 198.18.1.10
  during:
    - resolves: registry-1.docker.io
      to: 127.0.0.1
  after:
    - resolves: registry-1.docker.io
      to: 198.18.1.10
"""


def run_chaos(args, pythonpath: Path, state: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "CHAOS_STATE_DIR": str(state),
           "PYTHONPATH": os.pathsep.join([str(pythonpath), str(ROOT)])}
    return subprocess.run(chaos_cmd(*args), capture_output=True, text=True, timeout=120,
                          env=env, cwd=cwd, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """examples/plugin/ installed by pip into a folder of its own (put on PYTHONPATH)."""
    work = tmp_path_factory.mktemp("plugin")
    source = work / "src"
    shutil.copytree(ROOT / "examples" / "plugin", source)  # pip's build files stay out of the repo
    site = work / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                           "--target", str(site), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return site


def fake_package(root: Path, name: str, groups: dict[str, dict[str, str]], module: str = "") -> Path:
    """A distribution as importlib.metadata finds it: NAME.dist-info with entry points."""
    info = root / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = []
    for group, points in groups.items():
        lines.append(f"[{group}]")
        lines += [f"{key} = {value}" for key, value in points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    if module:
        (root / f"{name.replace('-', '_')}.py").write_text(module)
    return root


def test_the_example_plugin_is_listed_and_in_the_schema(plugin_site, tmp_path):
    listed = run_chaos(["list"], plugin_site, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "registry-offline  (from package chaos-example-plugin)" in listed.stdout
    assert "resolves: (resolves probe)  (from package chaos-example-plugin)" in listed.stdout
    assert "registry (docker-hub | ghcr | quay, default docker-hub)" in listed.stdout
    assert "hosts-entry" in listed.stdout and "run: (command probe)" in listed.stdout

    schema = json.loads(run_chaos(["schema"], plugin_site, tmp_path).stdout)
    defs = schema["$defs"]
    assert defs["RegistryOffline"]["properties"]["type"]["const"] == "registry-offline"
    assert "registry" in defs["RegistryOffline"]["properties"]
    assert defs["Resolves"]["properties"]["to"]["description"].startswith("The address it must")
    fault_refs = json.dumps(schema["properties"]["faults"])
    assert "RegistryOffline" in fault_refs and "HostsEntry" in fault_refs
    assert "Resolves" in json.dumps(defs["Expect"]["properties"]["during"])


def test_a_run_with_the_plugins_fault_and_probe_applies_and_reverts_it(plugin_site, tmp_path):
    scenario = write(tmp_path, SCENARIO)
    report = tmp_path / "r.json"
    done = run_chaos(["run", str(scenario), "--json", str(report)], plugin_site, tmp_path / "state")
    assert done.returncode == 0, done.stdout + done.stderr
    (result,) = json.loads(report.read_text())["scenarios"]
    seen = {p["phase"]: (p["kind"], p["verdict"], p["detail"]["addresses"]) for p in result["probes"]}
    assert seen == {"before": ("resolves", "passed", ["198.18.1.10"]),
                    "during": ("resolves", "passed", ["127.0.0.1"]),   # the fault was on
                    "after": ("resolves", "passed", ["198.18.1.10"])}  # and reverted
    states = [e["state"] for e in result["events"] if e["kind"] == "fault"]
    assert states == ["on", "off"]
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert result["run_id"] not in namespaces


def test_without_the_plugin_its_names_are_unknown(tmp_path):
    scenario = write(tmp_path, SCENARIO)
    done = run_chaos(["validate", str(scenario)], tmp_path / "nothing", tmp_path)
    assert done.returncode == 2
    assert ":6:5: faults[0]: unknown fault type 'registry-offline'" in done.stderr
    assert ":9:7: expect.before[0]: a probe needs one of the keys run, http," in done.stderr


def test_a_plugin_that_fails_to_load_is_exit_2_naming_its_package(tmp_path):
    site = fake_package(tmp_path / "site", "broken-plugin",
                        {"chaos.faults": {"broken": "broken_plugin:Broken"},
                         "chaos.probes": {"wrong": "broken_plugin:NotAProbe"}},
                        module="raise ImportError('this plugin needs a library it lacks')\n")
    listed = run_chaos(["list"], site, tmp_path)
    assert listed.returncode == 2, listed.stdout + listed.stderr
    assert "package broken-plugin: entry point 'broken' = 'broken_plugin:Broken' in group " \
           "chaos.faults failed to load: ImportError: this plugin needs a library it lacks" in listed.stderr
    assert "Traceback" not in listed.stderr

    scenario = write(tmp_path, "name: x\nfaults:\n  - type: dns\n    names: [a.test]\n"
                               "  - type: broken\n")
    done = run_chaos(["validate", str(scenario)], site, tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{scenario}:5:11: faults[1].type: package broken-plugin:" in done.stderr


def test_a_plugin_class_of_the_wrong_kind_is_refused(tmp_path):
    site = fake_package(tmp_path / "site", "odd-plugin", {"chaos.probes": {"odd": "odd_plugin:Odd"}},
                        module="class Odd:\n    pass\n")
    scenario = write(tmp_path, "name: x\nexpect:\n  before:\n    - odd: 1\n")
    done = run_chaos(["validate", str(scenario)], site, tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert ":4:7: expect.before[0].odd: package odd-plugin: entry point 'odd' = 'odd_plugin:Odd' " \
           "in group chaos.probes: <class 'odd_plugin.Odd'> is not a subclass of " \
           "chaos.probes.base.ProbeBase" in done.stderr


@pytest.mark.parametrize("group, name, what", [("chaos.faults", "dns", "fault type"),
                                               ("chaos.probes", "http", "probe key")])
def test_a_plugin_taking_a_built_in_name_is_exit_2_naming_its_package(tmp_path, group, name, what):
    site = fake_package(tmp_path / "site", "greedy-plugin", {group: {name: "greedy_plugin:X"}})
    for args in (["list"], ["schema"]):
        done = run_chaos(args, site, tmp_path)
        assert done.returncode == 2, done.stdout + done.stderr
        assert (f"chaos: package greedy-plugin: entry point {name!r} in group {group} collides "
                f"with the built-in {what} {name!r}; rename it") in done.stderr
