"""bot-mitigation: a CDN rule singles out clients by a signature (Docker Hub, July 2020).

Two layers, chosen by the signature: packet attributes (TTL, length, TCP flags / options,
MSS, DSCP) act at the packet level in iptables; request attributes (user agent, headers,
request rate) act at the HTTP level in the fault proxy.
"""

from __future__ import annotations

import re
import time
from collections import deque
from typing import Literal

from chaos.faults.http_rule import HttpFault, HttpMatch, http_injectors
from chaos.faults.packet_match import PacketMatch
from chaos.injectors.http_faults import actions, pages
from chaos.injectors.http_faults.rules import FaultAddon, client_ip
from chaos.scenario.model import Destination, Duration, Strict, regex_text
from chaos.scenario.modelbase import Field, field_validator, model_validator


class Rate(Strict):
    """More than `requests` requests (meeting the rest of the signature) within `per`."""

    requests: int = Field(ge=0)
    """Requests one client (by address) may make within `per`; the ones beyond are acted on."""
    per: Duration
    """How far back requests are counted (the last `per`)."""


class Signature(PacketMatch):
    """What marks a client as a bot: packet attributes, or request attributes, not both."""

    user_agent: str | None = None
    """HTTP: a regular expression searched in the User-Agent (case-insensitive)."""
    header_present: list[str] = []
    """HTTP: requests carrying all of these headers."""
    header_absent: list[str] = []
    """HTTP: requests lacking all of these headers."""
    rate: Rate | None = None
    """HTTP: clients above this request rate."""

    @field_validator("user_agent")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        return regex_text(value)

    def http_fields(self) -> dict:
        return self.model_dump(mode="json", include={"user_agent", "header_present",
                                                      "header_absent", "rate"}, exclude_defaults=True)

    def packet_fields(self) -> dict:
        return self.rule_fields()


class BotMitigation(HttpFault):
    """Single out clients by a signature and drop, reset, hang or challenge them.

    In July 2020 a CDN anti-botnet rule dropped packets carrying one attribute coming from
    one OS family: downloads started, hung mid-way, and clients reconnected asking for the
    rest (HTTP 206); other clients were fine. With a packet signature (e.g. {ttl: 128}, the
    Windows initial TTL; pair it with a region whose `os:` is windows, or {mss: 1200} with a
    region whose `mss:` clamps it) the rule sits in iptables at the world's edge. With a
    request signature (user agent, headers, rate) the fault proxy answers: `challenge`
    (403/503 page with `cf-mitigated: challenge`), `drop` (closed unanswered), `reset`, or
    `hang`.
    """

    type: Literal["bot-mitigation"] = "bot-mitigation"
    """The fault type."""
    signature: Signature
    """What selects the victims."""
    destinations: list[Destination] = []
    """Packet level: only traffic to these (host names, addresses, CIDRs; default: every server)."""
    after_bytes: int | None = Field(None, ge=1)
    """Packet level: start dropping once a connection carried this many bytes."""
    action: Literal["drop", "reset", "challenge", "hang"] = "drop"
    """`challenge` and `hang` need a request signature."""
    status: Literal[403, 503] = 403
    """HTTP `challenge`: the status of the challenge page."""
    hang_seconds: Duration | None = None
    """HTTP `hang`: close after this long (default: until the client gives up)."""
    match: HttpMatch | None = None
    """HTTP level: only these requests."""
    ports: list[int] = [80, 443]
    """HTTP level: server ports whose traffic goes through the fault proxy."""
    probability: float | None = Field(None, gt=0, le=1)
    """Act on this share of matching packets / requests."""

    @model_validator(mode="after")
    def _one_layer(self):
        http, packet = self.signature.http_fields(), self.signature.packet_fields()
        if http and packet:
            raise ValueError("a signature is either packet attributes (ttl, length, tcp_flags, "
                             "tcp_option, mss, dscp) or request attributes (user_agent, headers, "
                             "rate), not both")
        if not http and not packet:
            raise ValueError("the signature is empty: it would single out every client")
        if not http and self.action in ("challenge", "hang"):
            raise ValueError(f"action {self.action} needs a request signature (user_agent, ...)")
        if http and self.after_bytes is not None:
            raise ValueError("after_bytes is a packet-level option; for HTTP use the partial fault")
        if self.signature.mss is not None and self.after_bytes is not None:
            # Only SYNs carry the MSS option, and a SYN never follows N bytes.
            raise ValueError("signature.mss matches SYNs only: with after_bytes it would never "
                             "match (drop or reset the connection attempts instead)")
        return self


    @classmethod
    def http_addon(cls) -> FaultAddon:
        return BotMitigationAddon()

    def in_http_proxy(self) -> bool:
        return bool(self.signature.http_fields())

    def injectors(self, ctx):
        if self.in_http_proxy():
            return http_injectors(ctx, self, self.ports)
        return self._packet_injectors(ctx)

    def _packet_injectors(self, ctx):
        from chaos.injectors.packet_filter import PacketFilter

        if ctx.host_mode or ctx.world is None:
            ctx.fail(("type",), "bot-mitigation acts at the sandbox world's edge (not --host)")
        nets = [str(n) for i, d in enumerate(self.destinations)
                for n in ctx.destinations(d, ("destinations", i))]
        rule = {"action": "drop" if self.action == "drop" else "reject-reset", "protocol": "tcp",
                "destinations": nets, "after_bytes": self.after_bytes,
                "probability": self.probability, **self.signature.packet_fields()}
        return [PacketFilter([rule], netns=ctx.world, tag=ctx.tag, hook="INPUT",
                             name=f"b{ctx.path[-1]}" if ctx.path else None,
                             scratch=ctx.owns(ctx.world))]

    def label(self) -> str:
        sig = ", ".join(f"{k}={v}" for k, v in self.signature.model_dump(exclude_defaults=True).items())
        after = f" after {self.after_bytes} B" if self.after_bytes else ""
        return self.name or f"bot-mitigation {self.action} [{sig}]{after}"


class BotMitigationAddon(FaultAddon):
    """Treats requests matching a request signature the way a CDN's bot defence does."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], deque] = {}  # (rule id, client) -> request times

    def signature(self, rule, flow) -> bool:
        sig: Signature = rule.params.signature
        headers = flow.request.headers
        if sig.user_agent is not None and not re.search(sig.user_agent, headers.get("user-agent", ""),
                                                        re.IGNORECASE):
            return False
        if any(name not in headers for name in sig.header_present):
            return False
        if any(name in headers for name in sig.header_absent):
            return False
        if sig.rate is not None:
            now = time.monotonic()
            if len(self.seen) > 4096:  # forget clients quiet for ten minutes
                self.seen = {k: v for k, v in self.seen.items() if v and v[-1] > now - 600}
            times = self.seen.setdefault((rule.id, str(client_ip(flow))), deque())
            times.append(now)
            while times and times[0] <= now - sig.rate.per:
                times.popleft()
            if len(times) <= sig.rate.requests:
                return False
        return True

    async def request(self, flow, rules) -> None:
        for rule in rules:
            if rule.match.matches(flow) and self.signature(rule, flow) and rule.fires():
                break
        else:
            return
        actions.claim(flow, rule)
        p = rule.params
        if p.action == "challenge":
            flow.response = challenge(p.status, flow.request.pretty_host)
        elif p.action == "drop":
            actions.kill(flow)
        elif p.action == "reset":
            actions.reset(flow)
        else:
            await actions.hang(flow, p.hang_seconds)


def challenge(status: int, host: str):
    from mitmproxy import http

    ray = pages.ray_id()
    headers = pages.cdn_headers(content_type="text/html; charset=UTF-8", ray=ray,
                                extra={"cf-mitigated": "challenge"})
    response = http.Response.make(status, pages.challenge_page(host, ray), headers)
    response.reason = pages.reason(status)
    return response
