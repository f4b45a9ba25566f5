"""podman_pull: pull an image with podman (mirrors in registries.conf); judged like
docker_pull (chaos.probes.pulls)."""

from __future__ import annotations

from chaos.probes.pulls import ImagePull
from chaos.scenario.modelbase import Field


class PodmanPullProbe(ImagePull):
    """Pull an image with `podman pull` (storage and configuration of the lab's own), the
    image removed first so the pull is real. registries.conf mirrors docker.io to the lab's
    cache, as podman and buildah hosts are set up. A short reference (library/busybox:1)
    means docker.io's."""

    kind = "podman-pull"
    key = "podman_pull"

    podman_pull: str = Field(pattern=r"^[^\s]+$")
    """The image reference, e.g. library/busybox:1 or {cache}/library/busybox:1."""

    def client(self, place) -> str:
        return "podman"
