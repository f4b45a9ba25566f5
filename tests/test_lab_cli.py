"""`chaos lab up | status | down`, and `chaos recover` for a lab left up or crashed."""

from __future__ import annotations

import json
import os
import signal

import pytest

from chaos.journal import Journal, is_alive
from conftest import assert_same, snapshot

# Missing lab packages skip here, and fail under CI=true (conftest.require_binaries).
pytestmark = pytest.mark.usefixtures("lab_binaries")


def test_lab_up_status_down_leaves_nothing(chaos, state_dir):
    before = snapshot()
    up = chaos("lab", "up")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "{cache} = cache.chaos.test" in up.stdout
    status = chaos("lab", "status")
    assert status.returncode == 0, status.stdout
    for component in ("registry", "auth", "cdn", "cache", "dockerd"):
        assert any(line.split()[0] == component and "answers" in line and "not running" not in line
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


def _start_up(state_dir):
    """`chaos lab up --no-dockerd` in the background; returns (process, its journal path)
    once the journal records the lab's first process (the lab is part started)."""
    import subprocess
    import time
    from pathlib import Path

    from conftest import ROOT, chaos_cmd

    proc = subprocess.Popen(chaos_cmd("lab", "up", "--no-dockerd"), cwd=ROOT, text=True,
                            env={**os.environ, "CHAOS_STATE_DIR": str(state_dir)},
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for path in Path(state_dir).glob("runs/*/journal.jsonl"):
            if any(e.kind == "process" for e in Journal.read(path).entries):
                return proc, path
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    proc.kill()
    raise AssertionError("`chaos lab up` recorded no process within 30 s")


def test_recover_cleans_a_lab_whose_up_was_killed(chaos, state_dir):
    before = snapshot()
    proc, path = _start_up(state_dir)
    try:
        proc.kill()  # SIGKILL while starting: no lab.json, processes and namespaces left
        proc.communicate(timeout=10)
        started = [e.undo for e in Journal.read(path).entries if e.kind == "process"]
        assert not (state_dir / "lab.json").exists()
        down = chaos("lab", "down")
        assert "no lab is up" in down.stdout and "`chaos recover` removes it" in down.stderr
        result = chaos("recover")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "never finished: cleaning it up" in result.stdout and "recovered" in result.stdout
        status = chaos("lab", "status")
        assert status.returncode == 1 and "no lab is up" in status.stdout
        assert started and not any(is_alive(p["pid"], p.get("start")) for p in started)
        assert not path.parent.exists()
        assert_same(before, snapshot())
    finally:
        chaos("recover", "--force")  # a failed check must not leave the lab to the next test


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_up_reverts_the_lab(chaos, state_dir, sig, code):
    before = snapshot()
    proc, path = _start_up(state_dir)
    try:
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == code, out + err
        assert "reverted" in err and "Traceback" not in err, err
        assert not (state_dir / "lab.json").exists() and not path.exists()
        assert "nothing to recover" in chaos("recover").stdout
        assert_same(before, snapshot())
    finally:
        chaos("recover", "--force")


def test_status_reports_each_component_and_a_dead_dockerd(chaos, state_dir, tmp_path):
    before = snapshot()
    assert chaos("lab", "up", "--no-dockerd").returncode == 0
    try:
        info = json.loads((state_dir / "lab.json").read_text())
        journal = Journal.read(__import__("pathlib").Path(info["journal"]))
        upstream = next(e.undo for e in journal.entries if e.kind == "process" and "upstream" in e.what)
        os.kill(upstream["pid"], signal.SIGKILL)
        # dockerd gone with its socket: the lab file names a socket path that does not exist.
        info["placeholders"]["docker_host"] = f"unix://{tmp_path / 'gone.sock'}"
        (state_dir / "lab.json").write_text(json.dumps(info))
        status = chaos("lab", "status")
        assert status.returncode == 1 and "Traceback" not in status.stderr, status.stdout + status.stderr
        rows = {line.split()[0]: line for line in status.stdout.splitlines()[1:]}
        assert "not running" in rows["registry"] and "not ready" in rows["registry"], status.stdout
        for component in ("cache", "auth", "cdn"):
            assert "not running" not in rows[component] and "running" in rows[component], status.stdout
        assert "not running" in rows["dockerd"] and "not ready: FileNotFoundError" in rows["dockerd"]
    finally:
        assert chaos("lab", "down").returncode == 0
    assert_same(before, snapshot())


def test_dockerd_readiness_never_raises(tmp_path):
    """What `lab status` says of a dockerd socket that is gone, refuses, is silent or answers."""
    import socket
    import threading

    from chaos.lab.control import dockerd_ready

    assert dockerd_ready(tmp_path / "gone.sock", 0.5).startswith("not ready: FileNotFoundError")
    with socket.socket(socket.AF_UNIX) as bound:  # bound, never listening: refused
        bound.bind(str(tmp_path / "refuses.sock"))
        assert dockerd_ready(tmp_path / "refuses.sock", 0.5).startswith("not ready: ConnectionRefusedError")
    with socket.socket(socket.AF_UNIX) as silent:  # accepts (backlog), never answers
        silent.bind(str(tmp_path / "silent.sock"))
        silent.listen(1)
        assert dockerd_ready(tmp_path / "silent.sock", 0.3).startswith("not ready: TimeoutError")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "ok.sock"))
        server.listen(1)

        def answer():
            conn, _ = server.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        assert dockerd_ready(tmp_path / "ok.sock", 2.0) == "answers (ping)"
        thread.join(5)
