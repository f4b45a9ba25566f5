"""Running containers as fault targets (`container: NAME`), found through the docker SDK.

A fault aimed at a container acts in the container's own network namespace, reached
through a named handle ``ip netns attach chaos-<run>-k<N> <pid>`` (chaos.injectors.netns_handle),
and in the container's hosts file (``HostsPath``, the file docker bind-mounts over the
container's /etc/hosts). Nothing here changes the machine: it only asks the daemon.

Which daemon: ``--docker-host``, else the scenario's ``docker:``, else DOCKER_HOST, else the
local socket. It must run on this machine (the pid it reports must be ours to see).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SOCKET = "unix:///var/run/docker.sock"


class ContainerError(Exception):
    """A container that cannot be a target (missing, stopped, on the host's network...)."""


def base_url(docker_host: str | None) -> str:
    url = docker_host or os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET
    return f"unix://{url}" if url.startswith("/") else url


@dataclass(frozen=True)
class ContainerTarget:
    name: str
    id: str
    pid: int
    hosts_path: Path
    handle: str
    """The name its network namespace gets under /run/netns while a fault is on."""


class Containers:
    """The run's view of one docker daemon; hands out one namespace handle per target."""

    def __init__(self, run_id: str, docker_host: str | None = None) -> None:
        self.run_id, self.url = run_id, base_url(docker_host)
        self._client = None
        self._count = 0

    def client(self):
        if self._client is None:
            import docker  # heavy: only when a fault names a container

            try:
                self._client = docker.DockerClient(base_url=self.url, version="auto", timeout=10)
            except docker.errors.DockerException as exc:
                raise ContainerError(f"cannot reach the docker daemon at {self.url}: {exc}") from None
        return self._client

    def inspect(self, name: str) -> dict:
        """The container's attributes, checked: it exists, runs, has a network of its own."""
        import docker

        try:
            attrs = self.client().api.inspect_container(name)
        except docker.errors.NotFound:
            raise ContainerError(f"no container {name!r} on the docker daemon at {self.url}") from None
        except docker.errors.DockerException as exc:
            raise ContainerError(f"cannot ask the docker daemon at {self.url} about {name!r}: "
                                 f"{exc}") from None
        state = attrs.get("State") or {}
        if not state.get("Running") or not state.get("Pid"):
            raise ContainerError(f"container {name!r} is not running (status: {state.get('Status', '?')})")
        pid = state["Pid"]
        try:
            theirs = os.stat(f"/proc/{pid}/ns/net").st_ino
        except FileNotFoundError:
            raise ContainerError(f"container {name!r}: its process {pid} is not visible here; the "
                                 f"docker daemon at {self.url} must run on this machine") from None
        if (attrs.get("HostConfig") or {}).get("NetworkMode") == "host" or \
                theirs == os.stat("/proc/self/ns/net").st_ino:
            raise ContainerError(f"container {name!r} shares this machine's network (network mode "
                                 "host): a fault there would change the machine itself; use --host")
        if not attrs.get("HostsPath"):
            raise ContainerError(f"container {name!r} has no hosts file of its own")
        return attrs

    def resolve(self, name: str) -> ContainerTarget:
        """A new target for one fault: the container as it runs now, and a fresh handle name."""
        attrs = self.inspect(name)
        handle = f"{self.run_id}-k{self._count}"
        self._count += 1
        return ContainerTarget(name, attrs["Id"], attrs["State"]["Pid"], Path(attrs["HostsPath"]), handle)

    def current_pid(self, target: ContainerTarget) -> int:
        """The pid to attach to when the fault comes on: the same container, still running."""
        attrs = self.inspect(target.id)
        return attrs["State"]["Pid"]
