"""docker_pull: pull an image with the lab's dockerd; success, error, layers and time are judged
(chaos.probes.pulls)."""

from __future__ import annotations

from chaos.probes.pulls import ImagePull
from chaos.scenario.modelbase import Field


class DockerPullProbe(ImagePull):
    """Pull an image with the lab's dockerd (through the docker SDK), the local copy removed
    first so the pull is real. Its mirror is the lab's cache; Docker Hub's names resolve to
    the lab's upstream."""

    kind = "docker-pull"
    key = "docker_pull"

    docker_pull: str = Field(pattern=r"^[^\s]+$")
    """The image reference, e.g. library/busybox:1 or {cache}/library/busybox:1."""

    def client(self, place) -> str:
        return "dockerd"
