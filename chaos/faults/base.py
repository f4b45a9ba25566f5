"""What every fault type shares: a schedule and the hook that turns params into injectors."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, model_validator

from chaos.scenario.model import Flap, Strict, Window

if TYPE_CHECKING:
    from chaos.injectors.base import Injector
    from chaos.plan import PlanContext


class Fault(Strict):
    if TYPE_CHECKING:  # each fault type declares its own `type: Literal[...]` field
        type: str

    name: str | None = None
    """Shown in the console and the report (default: the type and its targets)."""
    window: Window | None = None
    """On only for part of the `during` phase."""
    flap: Flap | None = None
    """Switched on and off periodically during the `during` phase."""

    def injectors(self, ctx: PlanContext) -> list[Injector]:
        """The injectors that apply this fault; checks its targets through ``ctx``."""
        raise NotImplementedError

    def label(self) -> str:
        return self.name or self.type


class InContainer(Strict):
    """The `container:` target of the client-side faults (hosts, routes, filters)."""

    container: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    """A running container (name or id) to act in instead of the clients: its own network
    namespace and /etc/hosts, found through the docker daemon (`docker:`, --docker-host,
    DOCKER_HOST or the local socket)."""

    @model_validator(mode="after")
    def _one_target(self):
        if self.container and getattr(self, "region", None):
            raise ValueError("container: and region: name two different targets; give one")
        return self
