"""`chaos lab up | status | down`, and `chaos recover` for a lab left up or crashed."""

from __future__ import annotations

import json
import os
import shutil
import signal

import pytest

from conftest import assert_same, snapshot
from chaos.journal import Journal, is_alive

pytestmark = pytest.mark.skipif(shutil.which("dockerd") is None or shutil.which("docker-registry") is None,
                                reason="the lab needs docker.io and docker-registry (scripts/setup)")


def test_lab_up_status_down_leaves_nothing(chaos, state_dir):
    before = snapshot()
    up = chaos("lab", "up")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "{cache} = cache.chaos.test" in up.stdout
    status = chaos("lab", "status")
    assert status.returncode == 0, status.stdout
    for component in ("registry", "auth", "cdn", "cache", "dockerd"):
        assert any(line.split()[0] == component and "answers" in line
                   for line in status.stdout.splitlines()[1:]), status.stdout
    again = chaos("lab", "up")
    assert again.returncode == 2 and "already up" in again.stderr
    assert "a lab that is up" in chaos("recover").stdout  # recover leaves a live lab alone
    assert chaos("lab", "status").returncode == 0
    down = chaos("lab", "down")
    assert down.returncode == 0 and "lab down" in down.stdout
    assert chaos("lab", "status").returncode == 1
    assert_same(before, snapshot())


def test_recover_cleans_a_lab_whose_process_died(chaos, state_dir):
    before = snapshot()
    assert chaos("lab", "up", "--no-dockerd").returncode == 0
    info = json.loads((state_dir / "lab.json").read_text())
    journal = Journal.read(__import__("pathlib").Path(info["journal"]))
    victim = next(e.undo for e in journal.entries if e.kind == "process" and "cache" in e.what)
    os.kill(victim["pid"], signal.SIGKILL)
    result = chaos("recover")
    assert result.returncode == 0, result.stdout
    assert "processes died: cleaning it up" in result.stdout and "recovered" in result.stdout
    assert not (state_dir / "lab.json").exists()
    assert not any(is_alive(e.undo["pid"], e.undo.get("start"))
                   for e in journal.entries if e.kind == "process")
    assert_same(before, snapshot())
