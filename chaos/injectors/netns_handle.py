"""A name for a container's network namespace: ``ip netns attach <handle> <pid>``.

The other injectors reach namespaces by name (/run/netns/<name>), so a container's faults
start with this one: routes, filters and the rest then work there unchanged. The handle
is a bind mount of /proc/<pid>/ns/net; its undo (``ip netns delete``) only unmounts it, the
container's namespace lives on with the container. It is journaled before the attach and
so undone after every change made through it (the journal undoes in reverse order).
"""

from __future__ import annotations

import subprocess

from chaos.injectors.base import Injector
from chaos.journal import Journal
from chaos.sandbox.enter import netns_path


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")


class NetnsHandle(Injector):
    """Attach a running container's network namespace under a name of the run."""

    kind = "netns-handle"

    def __init__(self, target, containers) -> None:
        super().__init__()
        self.target, self.containers = target, containers  # chaos.sandbox.container

    def describe(self) -> str:
        return f"netns handle {self.target.handle} -> container {self.target.name}"

    def apply(self, journal: Journal) -> None:
        if self.applied:
            return
        pid = self.containers.current_pid(self.target)  # restarted since planning? its new pid
        self.record(journal, {"name": self.target.handle, "container": self.target.id})
        _ip("netns", "attach", self.target.handle, str(pid))


def undo(record: dict) -> None:
    if netns_path(record["name"]).exists():
        _ip("netns", "delete", record["name"])
