"""containerd_pull: pull an image with the lab's containerd (`ctr`, mirrors in hosts.toml);
judged like docker_pull (chaos.probes.pulls)."""

from __future__ import annotations

from chaos.probes.pulls import ImagePull
from chaos.scenario.modelbase import Field


class ContainerdPullProbe(ImagePull):
    """Pull an image with `ctr images pull` against the lab's own containerd (started on first
    use), the image removed first so the pull is real. Mirrors come from
    `certs.d/docker.io/hosts.toml` (the lab's cache, then Docker Hub), as a Kubernetes node's
    `config_path` names them. A short reference (library/busybox:1) means docker.io's."""

    kind = "containerd-pull"
    key = "containerd_pull"

    containerd_pull: str = Field(pattern=r"^[^\s]+$")
    """The image reference, e.g. library/busybox:1 or {cache}/library/busybox:1."""

    def client(self, place) -> str:
        return "containerd"
