"""Wake when a file in a directory is replaced or written (inotify).

The fault servers answer a reload by renaming a new ``.status`` into their rules directory;
the side that asked waits for it. Sleeping a fixed poll interval between reads costs that
interval (and the scheduler's oversleep on a busy machine) on every rule switch; waiting on
inotify wakes as soon as the rename is done.

One inotify instance serves the whole process and its watches stay (the kernel drops a
watch when its directory is deleted): creating and closing an instance per wait makes the
kernel wait for a grace period (fsnotify), which costs more than the polling it replaces.
Threads share the instance: one reads the events at a time and counts them per watch.
Where inotify cannot be had (no such libc symbol, the per-user instance or watch limit
reached) ``wait`` sleeps a short poll interval instead: callers re-read the file after every
wait either way, so a missed or spurious wake-up only costs time.
"""

from __future__ import annotations

import os
import select
import struct
import threading
import time
from typing import Any

IN_CLOSE_WRITE = 0x008
IN_MOVED_TO = 0x080
POLL = 0.002  # seconds between reads when inotify is not available
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name)


class _Inotify:
    def __init__(self, lib: Any, fd: int) -> None:
        self.lib, self.fd, self.pid = lib, fd, os.getpid()
        self.changes: dict[int, int] = {}  # watch -> events seen so far
        self.cond = threading.Condition()
        self.reading = False
        self.poller = select.poll()  # not select(): a busy process may hold fds above 1023
        self.poller.register(fd, select.POLLIN)

    def watch(self, folder: str | os.PathLike) -> int:
        """The watch of ``folder`` (the same one again for a folder already watched); -1
        when the kernel refuses."""
        wd = self.lib.inotify_add_watch(self.fd, os.fsencode(os.fspath(folder)),
                                        IN_MOVED_TO | IN_CLOSE_WRITE)
        if wd >= 0:
            with self.cond:
                self.changes.setdefault(wd, 0)
        return int(wd)

    def wait(self, wd: int, seen: int, timeout: float) -> int:
        """Until watch ``wd`` has seen more than ``seen`` events, or ``timeout`` seconds;
        the count then."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.changes.get(wd, 0) == seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if self.reading:  # another thread reads; it wakes us with what it read
                    self.cond.wait(left)
                    continue
                self.reading = True
                self.cond.release()
                try:
                    data = self._read(left)
                finally:
                    self.cond.acquire()
                    self.reading = False
                offset = 0
                while offset + _EVENT.size <= len(data):
                    event_wd, _mask, _cookie, length = _EVENT.unpack_from(data, offset)
                    self.changes[event_wd] = self.changes.get(event_wd, 0) + 1
                    offset += _EVENT.size + length
                self.cond.notify_all()
            return self.changes.get(wd, 0)

    def _read(self, timeout: float) -> bytes:
        data = b""
        if self.poller.poll(max(0, int(timeout * 1000 + 0.999))):
            try:
                while chunk := os.read(self.fd, 65536):
                    data += chunk
            except BlockingIOError:
                pass
        return data


_instance: _Inotify | None = None
_instance_lock = threading.Lock()


def _inotify() -> _Inotify | None:
    """The process's instance (a new one in a forked child: the parent's would share its
    events), or None without inotify."""
    global _instance
    with _instance_lock:
        if _instance is not None and _instance.pid == os.getpid():
            return _instance
        import ctypes

        try:
            lib: Any = ctypes.CDLL(None, use_errno=True)
            lib.inotify_init1.restype = ctypes.c_int
            lib.inotify_add_watch.restype = ctypes.c_int
            lib.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        except (OSError, AttributeError):
            return None
        fd = lib.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            return None
        _instance = _Inotify(lib, fd)
        return _instance


class DirWatch:
    """Open the watch before the action whose effect is awaited (then no change can slip
    between the action and the wait), then ``wait`` between reads of the file."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.inotify = _inotify()
        self.wd, self.seen = -1, 0
        if self.inotify is not None:
            self.wd = self.inotify.watch(folder)
            self.seen = self.inotify.changes.get(self.wd, 0)

    @property
    def watching(self) -> bool:
        return self.wd >= 0

    def wait(self, timeout: float) -> None:
        """Return when something in the folder was written or renamed in since the watch
        opened or the last wait returned, or after ``timeout`` seconds."""
        if self.inotify is None or self.wd < 0:
            time.sleep(max(0.0, min(timeout, POLL)))
            return
        self.seen = self.inotify.wait(self.wd, self.seen, timeout)
