"""Injectors and their undo functions against the real thing: files, netlink, processes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from chaos.injectors.hosts_file import HostsBlock, remove_block
from chaos.injectors.routes import RouteInjector
from chaos.journal import Journal, is_alive, unfinished
from chaos.processes import spawn


@pytest.fixture
def journal(state_dir):
    j = Journal.create("chaos-test01", state_dir)
    yield j
    j.rollback()


def test_hosts_block_round_trip_is_byte_exact(tmp_path, journal):
    hosts = tmp_path / "hosts"
    original = b"127.0.0.1 localhost\n198.18.1.10 registry.test alias.test # comment\n\n# end without newline"
    hosts.write_bytes(original)
    block = HostsBlock(hosts, [("127.0.0.1", "registry.test")], "chaos-test01")
    block.apply(journal)
    text = hosts.read_text()
    assert text.startswith("# >>> chaos-test01")
    assert "127.0.0.1\tregistry.test\n" in text and "198.18.1.10\talias.test\n" in text
    assert "#chaos-test01# 198.18.1.10 registry.test" in text
    assert block.revert(journal) == []
    assert hosts.read_bytes() == original
    assert block.revert(journal) == []  # twice is fine
    assert remove_block(hosts, "chaos-test01") is False


def test_route_undo_is_idempotent_and_namespaced(netns, journal):
    injector = RouteInjector(["198.18.7.0/24", "2001:db8:7::/48"], "prohibit", netns)
    injector.apply(journal)
    shown = subprocess.run(["ip", "-n", netns, "route", "show", "table", "all"], capture_output=True, text=True).stdout
    assert "prohibit 198.18.7.0/24" in shown and "prohibit 2001:db8:7::/48" in shown
    assert injector.revert(journal) == []
    shown = subprocess.run(["ip", "-n", netns, "route", "show", "table", "all"], capture_output=True, text=True).stdout
    assert "198.18.7.0" not in shown and "2001:db8:7::" not in shown
    from chaos.injectors.routes import undo

    undo({"netns": netns, "dst": "198.18.7.0/24", "kind": "prohibit", "table": 254})  # gone: no error


def test_process_gate_and_exact_kill(journal):
    proc, entry = spawn(journal, [sys.executable, "-c", "import time; time.sleep(60)"])
    assert is_alive(entry.undo["pid"], entry.undo["start"])
    journal.undo(entry)
    proc.wait(timeout=5)
    assert not is_alive(entry.undo["pid"], entry.undo["start"])
    journal.undo(entry)  # already undone: no-op


def test_process_whose_pid_was_reused_is_left_alone(journal):
    # A journal record with a start time that does not match must never kill that pid.
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        entry = journal.record("process", {"pid": sleeper.pid, "start": 1}, "stale record")
        journal.undo(entry)
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_unfinished_journal_is_found_and_a_torn_line_ignored(state_dir):
    j = Journal.create("chaos-test02", state_dir)
    j.record("path", {"path": str(state_dir / "chaos-x")}, "a folder")
    j._file.write('{"op": "do", "seq": 2, "ki')  # a crash mid-write
    j._file.flush()
    (found,) = [x for x in unfinished(state_dir) if x.run_id == "chaos-test02"]
    assert [e.seq for e in found.entries] == [1]
    assert found.owner_alive()  # this very process


def test_undo_in_a_vanished_namespace_does_not_recreate_it():
    from chaos.injectors.routes import undo

    undo({"netns": "chaos-vanished-ns", "dst": "198.18.7.0/24", "kind": "prohibit", "table": 254})
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "chaos-vanished-ns" not in listed


def test_spawn_from_many_threads_at_once(journal):
    from concurrent.futures import ThreadPoolExecutor

    def start(i):
        proc, entry = spawn(journal, ["sh", "-c", f"echo {i}"], stdout=subprocess.PIPE)
        out = proc.communicate(timeout=10)[0]
        journal.undo(entry)
        return out.decode().strip()

    with ThreadPoolExecutor(16) as pool:
        assert sorted(pool.map(start, range(40)), key=int) == [str(i) for i in range(40)]


def test_a_zombie_counts_as_dead():
    child = subprocess.Popen(["true"])
    import time

    from chaos.journal import process_start_time

    start = process_start_time(child.pid)
    time.sleep(0.3)  # exited, not reaped yet: a zombie
    assert not is_alive(child.pid, start)
    child.wait()


# The main thread ends (pthread_exit) while another keeps running: the process's leader is a
# zombie that cannot be reaped yet, as a threaded server is for a moment while it exits.
ZOMBIE_LEADER = ("import ctypes, threading, time; threading.Thread(target=time.sleep, args=(30,))"
                 ".start(); ctypes.CDLL(None).pthread_exit(None)")


def test_kill_group_waits_for_a_zombie_leader_whose_threads_still_run():
    import os
    import time

    from chaos.journal import process_start_time
    from chaos.processes import kill_group

    child = subprocess.Popen([sys.executable, "-c", ZOMBIE_LEADER], start_new_session=True)
    start = process_start_time(child.pid)
    deadline = time.monotonic() + 10
    while open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline, "the leader never became a zombie"
        time.sleep(0.01)
    assert os.path.exists(f"/proc/{child.pid}/task")  # its sleeping thread still runs
    t0 = time.monotonic()
    kill_group(child.pid, start)
    assert child.poll() is not None, "kill_group returned while the process still ran"
    assert time.monotonic() - t0 < 5  # ended by the signal, not by the 30 s sleep
