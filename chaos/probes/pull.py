"""pull: pull an image with the client the run names (`chaos run --client`, default dockerd),
so one scenario serves every client; judged like docker_pull (chaos.probes.pulls)."""

from __future__ import annotations

from chaos.probes.pulls import ImagePull
from chaos.scenario.modelbase import Field


class PullProbe(ImagePull):
    """Pull an image with the run's client: dockerd (default), containerd (`ctr`, hosts.toml
    mirror), podman (registries.conf mirror) or skopeo (copy to a scratch folder, the same
    registries.conf), chosen with `chaos run --client`. Every client has the lab's cache as
    its mirror of docker.io, and the image is removed first so the pull is real."""

    kind = "pull"
    key = "pull"

    pull: str = Field(pattern=r"^[^\s]+$")
    """The image reference, e.g. library/busybox:1 or {cache}/library/busybox:1."""

    def client(self, place) -> str:
        return place.client

    def describe(self) -> str:
        return f"pull {self.pull}"
