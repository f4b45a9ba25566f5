"""Interrupted runs: SIGKILL then `chaos recover`, and SIGINT / SIGTERM reverting by themselves."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from chaos.journal import is_alive
from conftest import ROOT, assert_same, chaos_cmd, snapshot, write

LONG = """\
name: long-running
description: faults on, then a probe that takes long enough to be interrupted
serve:
  - name: registry.test
  - name: other.test
faults:
  - type: hosts-entry
    names: [registry.test]
  - type: route-blackhole
    destinations: [other.test]
    kind: unreachable
expect:
  during:
    - run: sleep 30
      within: 60s
"""


def _start(state_dir, path) -> subprocess.Popen:
    env = {**os.environ, "CHAOS_STATE_DIR": str(state_dir)}
    return subprocess.Popen(chaos_cmd("run", str(path)), cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _journal_records(state_dir) -> list[dict]:
    records = []
    for path in (state_dir / "runs").glob("*/journal.jsonl"):
        records += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return records


def _wait_for_faults(state_dir, proc, count: int = 2, timeout: float = 20) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (state_dir / "runs").is_dir():
            records = _journal_records(state_dir)
            on = [r for r in records if r.get("kind") == "fault" and r.get("state") == "on"]
            probing = [r for r in records if r.get("kind") == "process" and "sleep 30" in r.get("what", "")]
            if len(on) >= count and probing:
                return records
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.05)
    raise AssertionError("faults never came on")


def test_sigkill_then_recover_leaves_nothing(chaos, state_dir, tmp_path):
    before = snapshot()
    proc = _start(state_dir, write(tmp_path, LONG))
    records = _wait_for_faults(state_dir, proc)
    proc.kill()
    proc.wait()
    processes = [r["undo"] for r in records if r.get("kind") == "process"]
    assert any(is_alive(p["pid"], p["start"]) for p in processes), "the kill should leave processes"
    assert snapshot()["netns"] != before["netns"], "the kill should leave the sandbox behind"

    result = chaos("recover")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "recovered" in result.stdout
    assert_same(before, snapshot())
    assert not any(is_alive(p["pid"], p["start"]) for p in processes)
    assert chaos("recover").stdout.strip() == "nothing to recover"  # idempotent


def test_recover_skips_a_run_that_is_still_alive(chaos, state_dir, tmp_path):
    proc = _start(state_dir, write(tmp_path, LONG))
    try:
        _wait_for_faults(state_dir, proc)
        result = chaos("recover")
        assert "still running" in result.stdout
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_reverts_and_exits_with_documented_code(state_dir, tmp_path, sig, code):
    before = snapshot()
    proc = _start(state_dir, write(tmp_path, LONG))
    _wait_for_faults(state_dir, proc)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == code, out
    assert "reverted everything" in out
    assert_same(before, snapshot())
    assert not list((state_dir / "runs").glob("*/journal.jsonl")), "a clean stop closes its journal"
