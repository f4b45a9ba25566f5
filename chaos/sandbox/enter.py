"""Do one thing inside a named network namespace without forking a helper for it.

Namespaces belong to threads: a short-lived thread that calls setns(2) is inside the
namespace, the rest of the process is not, and a process it starts is born inside too.
Entering this way is far cheaper than ``ip netns exec`` (a process that also makes a mount
namespace and remounts /sys) or ``IPRoute(netns=...)`` (a forked child): figures in
docs/benchmarks.md. A missing namespace is an error: it is never created.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

_CLONE_NEWNET = 0x40000000
T = TypeVar("T")


def netns_path(netns: str) -> Path:
    return Path("/run/netns", netns)


def in_netns(netns: str | None, fn: Callable[..., T], *args, **kwargs) -> T:
    """``fn(*args, **kwargs)`` called inside ``netns`` (None: here); its result, or its exception
    raised in the caller's thread."""
    if not netns:
        return fn(*args, **kwargs)
    try:
        fd = os.open(netns_path(netns), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise FileNotFoundError(f"network namespace {netns} does not exist") from None

    def enter_and_call() -> T:
        if ctypes.CDLL(None, use_errno=True).setns(fd, _CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"setns into {netns}: {os.strerror(code)}")
        return fn(*args, **kwargs)

    try:
        return in_thread(enter_and_call)
    finally:
        os.close(fd)


def in_thread(fn: Callable[..., T], *args, **kwargs) -> T:
    """``fn(*args, **kwargs)`` called in a new thread that ends with it, for a call that
    changes the thread's namespace; its result, or its exception raised in the caller's thread."""
    out: dict = {}

    def call() -> None:
        try:
            out["result"] = fn(*args, **kwargs)
        except BaseException as exc:  # re-raised in the caller's thread
            out["error"] = exc

    thread = threading.Thread(target=call, name="chaos-netns")
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["result"]


def iproute(netns: str | None):
    """A pyroute2 ``IPRoute`` whose netlink socket was made inside ``netns`` (a socket stays
    in the namespace it was made in), without the child ``IPRoute(netns=...)`` forks (its
    cost: docs/benchmarks.md). A missing namespace is an error (pyroute2 would create it)."""
    from pyroute2 import IPRoute  # a heavy import: only when netlink is needed

    if not netns:
        return IPRoute()
    sock = in_netns(netns, socket.socket, socket.AF_NETLINK, socket.SOCK_DGRAM, 0)
    return IPRoute(fileno=sock.detach())  # IPRoute owns the descriptor and closes it
