"""DirWatch: the rule service's wait for a server's .status wakes on the rename, not a poll."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from chaos.injectors.dir_watch import DirWatch
from chaos.injectors.rule_service import write_atomic


def later(delay: float, fn) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        fn()
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_wait_returns_on_the_rename_not_before(tmp_path: Path) -> None:
    watch = DirWatch(tmp_path)
    assert watch.watching  # inotify is there on Linux: the fallback would poll
    status = tmp_path / ".status"
    thread = later(0.2, lambda: write_atomic(status, "{}"))
    t0 = time.monotonic()
    watch.wait(5.0)
    waited = time.monotonic() - t0
    thread.join()
    assert status.exists(), "woke before anything changed in the folder"
    assert waited < 2.0


def test_a_change_before_the_wait_is_not_lost(tmp_path: Path) -> None:
    watch = DirWatch(tmp_path)  # opened before the change, as reload() does before SIGHUP
    write_atomic(tmp_path / ".status", "{}")
    t0 = time.monotonic()
    watch.wait(5.0)
    assert time.monotonic() - t0 < 1.0


def test_other_folders_do_not_wake_it(tmp_path: Path) -> None:
    mine, other = tmp_path / "mine", tmp_path / "other"
    mine.mkdir()
    other.mkdir()
    watch = DirWatch(mine)
    DirWatch(other)
    write_atomic(other / ".status", "{}")
    t0 = time.monotonic()
    watch.wait(0.3)
    assert time.monotonic() - t0 >= 0.25


def test_threads_waiting_on_two_folders_both_wake(tmp_path: Path) -> None:
    """One instance serves the process: the thread that reads the events wakes the other."""
    folders = [tmp_path / "a", tmp_path / "b"]
    woke: dict[str, float] = {}

    def waiter(folder: Path, watch: DirWatch) -> None:
        t0 = time.monotonic()
        watch.wait(5.0)
        woke[folder.name] = time.monotonic() - t0 if (folder / ".status").exists() else -1.0

    threads = []
    for folder in folders:
        folder.mkdir()
        threads.append(threading.Thread(target=waiter, args=(folder, DirWatch(folder))))
    for thread in threads:
        thread.start()
    time.sleep(0.1)
    for folder in reversed(folders):
        write_atomic(folder / ".status", "{}")
        time.sleep(0.1)
    for thread in threads:
        thread.join()
    assert all(0 <= woke[f.name] < 2.0 for f in folders), woke


def test_a_forked_child_gets_its_own_instance(tmp_path: Path) -> None:
    DirWatch(tmp_path)  # the parent's instance exists
    pid = os.fork()
    if pid == 0:  # the child: a change must wake its own watch
        code = 1
        try:
            watch = DirWatch(tmp_path)
            write_atomic(tmp_path / ".child", "{}")
            t0 = time.monotonic()
            watch.wait(5.0)
            code = 0 if time.monotonic() - t0 < 1.0 else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
