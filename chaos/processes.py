"""Processes a run starts: journaled with pid and start time, killed exactly, never by name.

A child is held at a gate (bash reading one byte from a pipe) until its pid and start
time are fsynced in the journal; only then does it exec the real program. If the runner dies
before that, the pipe closes and the child exits without running anything: no process of
ours ever runs unrecorded.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from chaos.journal import Entry, Journal, is_alive, process_start_time

# `read` fails on EOF (runner gone before journaling): then exit without running anything.
# bash, not sh: dash cannot redirect file descriptors above 9.
_GATE = 'read -r -u {fd} _ || exit 70; exec {fd}<&-; exec "$@"'


@contextmanager
def signals_held_back() -> Iterator[None]:
    """SIGINT and SIGTERM wait (blocked, not lost) until the block ends. For a change made by
    a child process (a namespace created by pyroute2's helper or by `ip netns add`): a
    signal raised while the parent waits would start the revert before the child's change
    exists, and the change would outlive the run. Held, the signal is taken the moment the
    change is whole, and the revert finds it.

    The mask holds a signal only while no other thread takes it: the kernel gives a signal
    to any thread that does not block it, and Python then runs its handler in the main
    thread anyway. So in the main thread the handlers are swapped for a recorder too, and
    what it recorded is raised again once the block ends."""
    import threading

    wanted = (signal.SIGINT, signal.SIGTERM)
    held = signal.pthread_sigmask(signal.SIG_BLOCK, set(wanted))
    caught: list[int] = []
    swapped = {}
    if threading.current_thread() is threading.main_thread():
        for sig in wanted:
            if signal.getsignal(sig) is not None:  # None: not set from Python, cannot be put back
                swapped[sig] = signal.signal(sig, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for sig, handler in swapped.items():
            signal.signal(sig, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        for signum in caught:
            signal.raise_signal(signum)


def netns_argv(netns: str | None, argv: list[str]) -> list[str]:
    """Run argv inside a named network namespace (ip netns exec also binds /etc/netns/<ns>/*)."""
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


def spawn(journal: Journal, argv: list[str], *, netns: str | None = None, what: str = "",
          **popen) -> tuple[subprocess.Popen, Entry]:
    """Start argv (in netns), recorded in the journal before it runs. Own session: killpg works."""
    read_end, write_end = os.pipe()
    try:
        proc = subprocess.Popen(
            netns_argv(netns, ["bash", "-c", _GATE.format(fd=read_end), "chaos-gate", *argv]),
            pass_fds=(read_end,), start_new_session=True, **popen,
        )
    except BaseException:
        os.close(read_end)
        os.close(write_end)
        raise
    os.close(read_end)
    try:
        start = process_start_time(proc.pid)
        entry = journal.record("process", {"pid": proc.pid, "start": start},
                               what or f"process {proc.pid}: {' '.join(argv)[:80]}")
        os.write(write_end, b"\n")
    finally:
        os.close(write_end)
    return proc, entry


def kill_group(pid: int, start: int | None, grace: float = 2.0) -> None:
    """SIGTERM then SIGKILL the process group led by pid, if pid is still the same process."""
    if _gone(pid, start):
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if _gone(pid, start):
                return
            time.sleep(0.01)
    _gone(pid, start)


def _gone(pid: int, start: int | None) -> bool:
    """Dead, and reaped when it is our child. A leader whose other threads are still exiting
    already shows as a zombie but cannot be reaped yet: for our own children only the reap
    counts (else a caller's Popen.poll() could still find it running); a process of someone
    else's (recover) is gone once it is a zombie, which its parent reaps."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return not is_alive(pid, start)
    return reaped == pid


def undo(record: dict) -> None:
    kill_group(record["pid"], record.get("start"))


def stdout_of(proc: subprocess.Popen) -> IO[bytes]:
    """The child's stdout pipe."""
    if proc.stdout is None:
        raise ValueError("the child was started without stdout=subprocess.PIPE")
    return proc.stdout


def wait_ready(proc: subprocess.Popen, timeout: float, what: str) -> None:
    """Wait for the line `ready` on a child's stdout, bounded; raise if it never comes."""
    deadline = time.monotonic() + timeout
    out = stdout_of(proc)
    with selectors.DefaultSelector() as sel:
        sel.register(out, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if sel.select(timeout=max(0.0, deadline - time.monotonic())):
                line = out.readline()
                if line.strip() == b"ready":
                    return
                if not line:
                    break
    code = proc.poll()
    raise RuntimeError(f"{what} did not become ready within {timeout:.0f}s"
                     + (f" (exited with {code})" if code is not None else ""))
