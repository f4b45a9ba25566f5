"""bot-mitigation: a CDN rule drops packets of clients with one signature (Docker Hub, July 2020)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from chaos.faults.base import Fault
from chaos.faults.packet_match import PacketMatch


class BotMitigation(Fault):
    """Drop (or reset) packets from clients whose packets carry a signature.

    In July 2020 a CDN anti-botnet rule dropped packets carrying one attribute from one OS
    family: downloads started, hung mid-way, and clients reconnected asking for the rest
    (HTTP 206). Clients of other families were fine. The rule sits at the edge of the world,
    where the packets arrive with the TTL and options their client's kernel gave them; pair
    it with `regions:` whose `os:` profile makes one client look like that family.
    """

    type: Literal["bot-mitigation"] = "bot-mitigation"
    signature: PacketMatch
    """The packet attributes that select the victims (e.g. {ttl: 128} for Windows)."""
    destinations: list[str] = []
    """Only traffic to these (host names, addresses, CIDRs; default: every server)."""
    after_bytes: int | None = Field(None, ge=1)
    """Start dropping once a connection carried this many bytes: downloads start, then hang."""
    probability: float | None = Field(None, gt=0, le=1)
    """Drop only this share of matching packets."""
    action: Literal["drop", "reset"] = "drop"

    def injectors(self, ctx):
        from chaos.injectors.packet_filter import PacketFilter

        if ctx.host_mode or ctx.world is None:
            ctx.fail(("type",), "bot-mitigation acts at the sandbox world's edge (not --host)")
        nets = [str(n) for i, d in enumerate(self.destinations)
                for n in ctx.destinations(d, ("destinations", i))]
        rule = {"action": "drop" if self.action == "drop" else "reject-reset", "protocol": "tcp",
                "destinations": nets, "after_bytes": self.after_bytes,
                "probability": self.probability, **self.signature.rule_fields()}
        return [PacketFilter([rule], netns=ctx.world, tag=ctx.tag, hook="INPUT",
                             name=f"b{ctx.path[-1]}" if ctx.path else None)]

    def label(self) -> str:
        sig = ", ".join(f"{k}={v}" for k, v in self.signature.model_dump(exclude_defaults=True).items())
        after = f" after {self.after_bytes} B" if self.after_bytes else ""
        return self.name or f"bot-mitigation {self.action} [{sig}]{after}"
