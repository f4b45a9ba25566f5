"""`python: module:function` probes: called where the clients live, judged like a command."""

from __future__ import annotations

import json
import os
import subprocess
import xml.etree.ElementTree as ET

from conftest import ROOT, chaos_cmd, write

CHECKS = '''\
import socket, time

def fetch(ctx, host, port=80):
    print("a print goes to stderr, not into the answer")
    with socket.create_connection((host, port), timeout=3) as sock:
        sock.sendall(b"GET / HTTP/1.0\\r\\nHost: " + host.encode() + b"\\r\\n\\r\\n")
        answer = sock.makefile("rb").read().decode()
    resolved = ctx.run("getent hosts " + host)
    return {"ok": answer.split("\\r\\n")[0].endswith(" 200 OK"), "output": answer,
            "detail": {"netns": ctx.netns, "logs": str(ctx.logs), "resolved": resolved.stdout.split()}}

def status(ctx, code):
    return code

def nothing(ctx):
    return None

def broken(ctx, *, why):
    raise ValueError(why)

def sleepy(ctx):
    time.sleep(30)
'''

SCENARIO = """\
name: python-probes
serve:
  - name: registry.test
    http: {body: "hello from the registry"}
expect:
  before:
    - python: checks:fetch
      args: ["{host}"]
      output: {contains: hello from the registry}
    - python: checks:status
      args: [3]
      exit: 3
    - name: exit expected, none returned
      python: checks:nothing
      exit: 0
    - python: checks:broken
      kwargs: {why: "the registry said {host}"}
    - python: checks:sleepy
      within: 500ms
    - python: checks:status
      args: [0]
      ok: false
"""


def test_python_probes_run_in_the_sandbox_and_are_judged(tmp_path):
    (tmp_path / "checks.py").write_text(CHECKS)
    scenario = write(tmp_path, SCENARIO)
    report = tmp_path / "r.json"
    env = {**os.environ, "CHAOS_STATE_DIR": str(tmp_path / "state"),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    junit = tmp_path / "r.xml"
    done = subprocess.run(chaos_cmd("run", str(scenario), "--json", str(report), "--junit", str(junit),
                                    "--var", "host=registry.test"),
                          capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert done.returncode == 1, done.stdout + done.stderr  # the steady state has failures on purpose
    (result,) = json.loads(report.read_text())["scenarios"]
    fetch, status, nothing, broken, sleepy, not_ok = result["probes"]

    assert fetch["verdict"] == "passed" and fetch["kind"] == "python", json.dumps(fetch)
    assert fetch["name"] == "checks:fetch"
    returned = fetch["detail"]["returned"]
    assert returned["netns"].startswith(result["run_id"])  # the client's namespace
    assert returned["resolved"][:2] == ["198.18.1.10", "registry.test"]
    assert returned["logs"].endswith(result["run_id"])
    assert "a print goes to stderr" in fetch["detail"]["stderr"]

    assert status["verdict"] == "passed"
    assert nothing["verdict"] == "failed"  # an exit status was expected: nothing to judge is no pass
    assert nothing["checks"][-1]["observed"] == "no exit status returned"

    assert broken["verdict"] == "error"
    assert broken["detail"]["error"] == "ValueError: the registry said registry.test"
    assert 'checks.py", line' in broken["detail"]["traceback"]
    assert "in broken" in broken["detail"]["traceback"]
    (error,) = ET.parse(junit).getroot().iter("error")
    assert error.get("message") == "error: ValueError: the registry said registry.test"
    assert 'checks.py", line' in error.text and "raise ValueError(why)" in error.text

    assert sleepy["verdict"] == "hung" and sleepy["duration"] < 5
    assert not_ok["verdict"] == "failed"
    assert "call: expected fails, observed succeeded" in done.stdout


SHELL_CHECK = '''\
def shell(ctx):
    done = ctx.run("printf '<%s>' {x}")
    return {"ok": done.exit == 0, "output": done.stdout}
'''

SHELL_SCENARIO = """\
name: python-probe-ctx-run
expect:
  during:
    - python: shellcheck:shell
      output: {contains: VALUE}
"""


def test_ctx_run_fills_var_values_as_words_never_code(tmp_path):
    """ctx.run() in a Python probe fills {name} like `run:` does: a --var value is one
    literal word, never shell code (issue #22)."""
    (tmp_path / "shellcheck.py").write_text(SHELL_CHECK)
    pwned = tmp_path / "pwned"
    value = f"$(touch {pwned}); touch {pwned}"
    scenario = write(tmp_path, SHELL_SCENARIO.replace("VALUE", json.dumps(f"<{value}>")))
    report = tmp_path / "r.json"
    env = {**os.environ, "CHAOS_STATE_DIR": str(tmp_path / "state"),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    done = subprocess.run(chaos_cmd("run", str(scenario), "--json", str(report), "--var", f"x={value}"),
                          capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert not pwned.exists(), "a --var value ran as a command"
    assert done.returncode == 0, done.stdout + done.stderr
