"""geo-block: one region's clients cannot reach the blocked destinations (the Spain case)."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from chaos.faults.base import ByFamily, Established
from chaos.faults.http_rule import HttpFault
from chaos.injectors.base import shown
from chaos.injectors.http_faults import actions, pages
from chaos.injectors.http_faults.rules import FaultAddon, pick
from chaos.scenario.model import Destination
from chaos.scenario.modelbase import AfterValidator, Field, model_validator


def _port(value: int | str) -> str:
    from chaos.injectors.packet_filter import port_text

    return port_text(value)  # a bad one fails at load time, located at its list entry


Port = Annotated[int | str, AfterValidator(_port)]


class GeoBlock(HttpFault, ByFamily):
    """Block destinations for the clients of one region only.

    During football matches Spanish ISPs blocked a CDN's IP ranges: `docker pull` failed
    only from Spain, while everything looked healthy elsewhere. The block sits at the edge
    of the world (where the region's packets arrive), matched on the region's source range.
    `drop` makes clients time out (`dial tcp ...:443: i/o timeout`), `reject` refuses at once.
    """

    type: Literal["geo-block"] = "geo-block"
    """The fault type."""
    region: str
    """The region whose clients are blocked (declared under `regions:`)."""
    block: list[Destination] = Field(min_length=1)
    """Destinations: host names the sandbox knows, addresses or CIDRs."""
    ports: list[Port] = []
    """Only these destination ports or ranges (443, "8000:8100"; default: all, and 80 and 443
    for `http-451`)."""
    action: Literal["drop", "reject", "http-451"] = "drop"
    """`drop`: clients time out; `reject`: refused at once; `http-451`: the fault proxy answers
    451 Unavailable For Legal Reasons (the block page ISPs showed before kick-off)."""
    blocked_by: str | None = None
    """`http-451`: the URL of the blocking party, sent as `Link: <URL>; rel="blocked-by"`
    (RFC 7725)."""
    established: Established = "drop"
    """`drop` and `reject`: what happens to the region's TCP connections to the blocked
    destinations already open when the block starts: `drop` (their packets meet the block
    like any), `keep` (only new connections are blocked: the rule matches SYNs), `reset`
    (each is reset as the block starts; the next connection meets the block)."""

    @model_validator(mode="after")
    def _established_is_for_packets(self):
        if self.action == "http-451" and self.established != "drop":
            raise ValueError("established: applies to drop and reject; with http-451 the fault "
                             "proxy takes an open connection at its next request")
        return self

    @classmethod
    def http_addon(cls) -> FaultAddon:
        return Geo451Addon()

    def in_http_proxy(self) -> bool:
        return self.action == "http-451"

    def proxied(self):
        if self.action != "http-451":
            return None  # a packet filter
        from chaos.faults.base import Proxied

        return Proxied.of("http", list(self.ports) or ["80", "443"], self.block)

    def injectors(self, ctx):
        from chaos.injectors.packet_filter import PacketFilter

        if ctx.host_mode or ctx.world is None:
            ctx.fail(("region",), "a geo block needs the sandbox's regions (not --host)")
        if self.region not in ctx.region_ranges:
            known = ", ".join(ctx.region_ranges) or "none declared"
            ctx.fail(("region",), f"unknown region {self.region!r} (regions: {known})")
        nets = [str(n) for i, d in enumerate(self.block)
                for n in ctx.destinations(d, ("block", i), self.family)]
        if self.action == "http-451":
            from chaos.faults.http_rule import http_injectors

            # The proxy also gets what other HTTP faults redirect: the rule keeps to the
            # blocked servers and ports, as the redirect does (and, when every entry is a
            # name, to those names: two names may share an address).
            ports = list(self.ports) or ["80", "443"]
            match = {"servers": nets, "ports": ports}
            if not any(_is_address(b) for b in self.block):
                match["host"] = [b.lower().rstrip(".") for b in self.block]
            clients = [str(ctx.region_ranges[self.region])]
            if self.region in ctx.region_ranges6:
                clients.append(str(ctx.region_ranges6[self.region]))
            return http_injectors(ctx, self, ports, match=match, destinations=nets,
                                  clients=clients)
        from chaos.faults.packet_filter import SYN_ONLY
        from chaos.injectors.connections import OpenConnections

        sources = [str(ctx.region_ranges[self.region])]
        if self.region in ctx.region_ranges6:  # a dual-stack run: the region's IPv6 range too
            sources.append(str(ctx.region_ranges6[self.region]))
        rule: dict = {"action": "drop" if self.action == "drop" else "reject-reset",
                      "sources": sources, "destinations": nets, "protocol": "tcp",
                      "ports": list(self.ports), "only_families": self.iptables_families()}
        if self.established == "keep":
            rule["tcp_flags"] = SYN_ONLY
        out: list = []
        if self.region in ctx.clients:  # the region's clients: listed (or reset) first
            netns = ctx.clients[self.region][0]
            out.append(OpenConnections(netns, nets, self.ports, where=self.region,
                                       names=ctx.peer_names(),
                                       reset=self.established == "reset"))
        return out + [PacketFilter([rule], netns=ctx.world, tag=ctx.tag, hook="INPUT",
                                   name=f"g{ctx.path[-1]}" if ctx.path else None,
                                   scratch=ctx.owns(ctx.world))]

    def label(self) -> str:
        family = "" if self.family == "both" else f", {self.family}"
        return self.name or f"geo-block {self.region}: {shown(self.block)} ({self.action}{family})"


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


class Geo451Addon(FaultAddon):
    """Answers requests from the blocked region (``match.clients``) with 451."""

    async def request(self, flow, rules) -> None:
        rule = pick(flow, rules)
        if rule is not None:
            actions.claim(flow, rule)
            flow.response = legal_response(rule.params, flow.request.pretty_host)


def legal_response(p: GeoBlock, host: str):
    from mitmproxy import http

    ray = pages.ray_id()
    extra = {"link": f'<{p.blocked_by}>; rel="blocked-by"'} if p.blocked_by else {}
    headers = pages.cdn_headers(content_type="text/html; charset=UTF-8", ray=ray, extra=extra)
    response = http.Response.make(451, pages.legal_page(host, p.region, ray), headers)
    response.reason = pages.reason(451)
    return response
