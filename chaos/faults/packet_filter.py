"""packet-filter: drop or reject matching packets from the clients, in iptables chains of our own."""

from __future__ import annotations

from typing import Literal

from chaos.faults.base import ByFamily, Established, Fault, InContainer
from chaos.faults.packet_match import PacketMatch
from chaos.injectors.base import shown
from chaos.scenario.model import Destination
from chaos.scenario.modelbase import Field, model_validator

SYN_ONLY = ("SYN,ACK,FIN,RST", "SYN")
"""The opening segment of a connection: what `established: keep` matches."""


class PacketFilter(Fault, InContainer, ByFamily):
    """Drop or reject packets the clients send to the destinations.

    `drop`: nothing comes back and the client waits for its own timeout. `reject-reset`: a
    TCP RST, the client fails at once ("Connection refused" / "reset by peer").
    `reject-icmp`: an ICMP error, "Connection refused" or "No route to host" at once (an
    established connection ignores it and hangs, like `drop`).
    """

    type: Literal["packet-filter"] = "packet-filter"
    """The fault type."""
    destinations: list[Destination] = []
    """CIDRs, addresses or host names the sandbox knows (empty: every destination)."""
    ports: list[int | str] = []
    """Destination ports (443, "8000:8100"); needs protocol tcp or udp."""
    protocol: Literal["tcp", "udp", "icmp"] | None = "tcp"
    """Only packets of this protocol (null: every protocol)."""
    action: Literal["drop", "reject-reset", "reject-icmp"] = "drop"
    """`drop` (the client waits for its timeout), `reject-reset` (a TCP RST) or `reject-icmp`
    (an ICMP error, see `reject_with`)."""
    reject_with: Literal["port-unreachable", "host-unreachable", "net-unreachable",
                         "admin-prohibited"] = "port-unreachable"
    """The ICMP error of `reject-icmp`."""
    match: PacketMatch | None = None
    """Only packets with these attributes."""
    probability: float | None = Field(None, gt=0, le=1)
    """Act on this share of matching packets (partial loss)."""
    after_bytes: int | None = Field(None, ge=1)
    """Act only once a connection carried this many bytes (downloads start, then stall)."""
    region: str | None = None
    """Only for the clients of this region (default: every client)."""
    established: Established = "drop"
    """What happens to the TCP connections already open when the fault starts: `drop` (their
    packets meet the fault like any: a pooled keep-alive connection hangs or is reset by
    `reject-reset`), `keep` (only new connections meet it: the filter matches SYNs; needs
    protocol tcp), `reset` (each is reset as the fault starts: the client's socket fails with
    "Software caused connection abort"; its next connection meets the fault)."""

    @model_validator(mode="after")
    def _consistent(self):
        if self.ports and self.protocol not in ("tcp", "udp"):
            raise ValueError("ports need protocol tcp or udp")
        if self.action == "reject-reset" and self.protocol != "tcp":
            raise ValueError("reject-reset needs protocol tcp")
        tcp_only = self.match.tcp_only() if self.match else []
        if tcp_only and self.protocol != "tcp":
            raise ValueError(f"match.{tcp_only[0]} needs protocol tcp")
        if self.established == "keep":
            if self.protocol != "tcp":
                raise ValueError("established: keep needs protocol tcp (it spares connections "
                                 "by matching only their opening SYN)")
            if self.after_bytes is not None or (self.match and self.match.tcp_flags):
                raise ValueError("established: keep matches SYNs only: it cannot go with "
                                 "after_bytes or match.tcp_flags")
        if self.established == "reset" and self.protocol not in ("tcp", None):
            raise ValueError("established: reset resets TCP connections: protocol tcp (or null)")
        return self

    def rule(self, ctx, sources=()) -> dict:
        nets = [str(n) for i, d in enumerate(self.destinations)
                for n in ctx.destinations(d, ("destinations", i), self.family)]
        if not nets and ctx.host_mode:
            ctx.fail(("destinations",), "in host mode a filter needs destinations (it would "
                                        "cut the whole machine off)")
        rule: dict = {"action": self.action, "destinations": nets, "sources": list(sources),
                      "protocol": self.protocol, "ports": list(self.ports),
                      "reject_with": self.reject_with, "probability": self.probability,
                      "after_bytes": self.after_bytes, "only_families": self.iptables_families()}
        rule = {**rule, **(self.match.rule_fields() if self.match else {})}
        if self.established == "keep":
            rule["tcp_flags"] = SYN_ONLY
        return rule

    def injectors(self, ctx):
        from chaos.injectors.connections import OpenConnections
        from chaos.injectors.packet_filter import PacketFilter as Filter

        rule = self.rule(ctx)
        name = f"f{ctx.path[-1]}" if ctx.path else None
        out: list = []
        for netns, _ in ctx.client_sides(self.region, self.container):
            if self.protocol in ("tcp", None):  # first: listed (or reset) before the filter
                out.append(OpenConnections(netns, rule["destinations"], self.ports,
                                           reset=self.established == "reset",
                                           names=ctx.peer_names(),
                                           where=ctx.side_name(netns)))
            out.append(Filter([rule], netns=netns, tag=ctx.tag, hook="OUTPUT", name=name,
                              scratch=ctx.owns(netns)))
        return out

    def label(self) -> str:
        family = "" if self.family == "both" else f" ({self.family})"
        return self.name or (f"packet-filter {self.action} "
                             f"{shown(self.destinations) or 'all'}{family}")
