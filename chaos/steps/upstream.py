"""push, retag, delete: change what the lab's upstream (registry-1.docker.io) serves, through
the registry API with the lab's seeding account, as Hub's content changes (chaos.lab.publish)."""

from __future__ import annotations

from chaos.scenario.model import IMAGE_REF, LabImage, Strict
from chaos.scenario.modelbase import Field
from chaos.steps.base import StepBase

Ref = str


class PushStep(StepBase):
    """Push an image to the upstream: declared like `lab: {images: [...]}` (layer sizes,
    platforms), built offline and reused between runs. An existing tag is moved to it."""

    key = "push"
    push: LabImage
    """The image: `{name: library/app:2, layers: [1MB]}`."""

    def describe(self) -> str:
        return f"push {self.push.ref}"

    def act(self, lab, journal, limit) -> str:
        from chaos.journal import state_dir
        from chaos.lab import publish

        digest = publish.push(lab, self.push.declared(), lab.image_cache or state_dir() / "images",
                              limit)
        return f"pushed {self.push.ref} ({digest[:19]})"


class Retag(Strict):
    """Which image, and the tag to point at it."""

    image: Ref = Field(pattern=IMAGE_REF)
    """The image the tag will name, `repo:tag` (it stays as it is)."""
    to: Ref = Field(pattern=IMAGE_REF)
    """The tag that moves, `repo:tag`: created, or re-pointed from what it named before."""


class RetagStep(StepBase):
    """Point a tag in the upstream at another image (`docker tag` + `docker push` on Hub):
    every platform, digests unchanged. A cache that cached the tag before still has the old
    image under it."""

    key = "retag"
    retag: Retag
    """`{image: library/app:2, to: library/app:1}`."""

    def describe(self) -> str:
        return f"retag {self.retag.image} as {self.retag.to}"

    def act(self, lab, journal, limit) -> str:
        from chaos.lab import publish

        digest = publish.retag(lab, self.retag.image, self.retag.to, limit)
        return f"{self.retag.to} now names {digest[:19]}"


class DeleteStep(StepBase):
    """Delete an image from the upstream (its manifest: every tag naming it goes too)."""

    key = "delete"
    delete: Ref = Field(pattern=IMAGE_REF)
    """`repo:tag`."""

    def describe(self) -> str:
        return f"delete {self.delete}"

    def act(self, lab, journal, limit) -> str:
        from chaos.lab import publish

        publish.delete(lab, self.delete, limit)
        return f"deleted {self.delete}"
