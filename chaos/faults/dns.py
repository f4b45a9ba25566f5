"""dns: the sandbox's resolver answers the names wrongly (a registry outage as DNS shows it)."""

from __future__ import annotations

import ipaddress
from typing import Annotated, ClassVar, Literal

from chaos.faults.base import Fault
from chaos.injectors.base import shown
from chaos.scenario.model import Duration
from chaos.scenario.modelbase import AfterValidator, Field, model_validator

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def name_pattern(pattern: str) -> str:
    """An exact name, ``*.suffix`` (any name below suffix, not suffix itself) or ``*``;
    lower case, without the trailing dot (how the DNS server compares names)."""
    p = pattern.strip().rstrip(".").lower()
    if not p or ("*" in p and p != "*" and not (p.startswith("*.") and "*" not in p[2:])):
        raise ValueError(f"{pattern!r} is not a name, '*.suffix' or '*'")
    return p


def _network(text: str) -> str:
    return str(ipaddress.ip_network(text, strict=False))  # ValueError names what is wrong


Network = Annotated[str, AfterValidator(_network)]


class Dns(Fault):
    """Make the sandbox's DNS server answer names with a failure.

    `nxdomain` / `servfail` / `refused` come back at once ("Could not resolve host");
    `timeout` drops the query (the resolver gives up after its timeout: 1 s with the
    sandbox's resolv.conf); `sinkhole` answers an address (default 0.0.0.0 / ::); `delay`
    answers right but late; `truncate` sets TC so the client retries over TCP, where the
    next fault for the name decides (give it `protocol: tcp`, e.g. servfail or timeout: a
    TCP fault after the UDP one) or else the right answer comes; `random` answers a fresh
    address from `range`; `rotate` rotates `addresses`, some of them dead (clients that
    try the next address, as curl does, get through). Names no fault matches are answered
    from the scenario's servers and `hosts:`.
    """

    type: Literal["dns"] = "dns"
    """The fault type."""
    names: list[Annotated[str, AfterValidator(name_pattern)]] = Field(min_length=1)
    """Exact names or wildcards (`*.docker.io`, `*` for every name)."""
    answer: Literal["nxdomain", "servfail", "refused", "timeout", "sinkhole", "delay",
                    "truncate", "random", "rotate"]
    """How the names are answered: `nxdomain`, `servfail`, `refused` (failures at once),
    `timeout` (no answer), `sinkhole` (a wrong address), `delay` (right but late),
    `truncate` (TC set: retry over TCP), `random` / `rotate` (changing addresses)."""
    address: Address | None = None
    """`sinkhole`: the address to answer (default 0.0.0.0 for A, :: for AAAA)."""
    addresses: list[Address] = []
    """`rotate`: the addresses to rotate through."""
    range: Network | list[Network] | None = None
    """`random`: a CIDR (or one per family) to draw from."""
    delay: Duration | None = None
    """`delay`: how late the right answer comes."""
    types: list[Literal["A", "AAAA", "CNAME", "MX", "TXT", "SRV", "NS", "SOA", "PTR", "ANY"]] = []
    """Only these query types (e.g. [AAAA]: IPv6 lookups stall, IPv4 ones work)."""
    family: Literal["v4", "v6", "both"] = "both"
    """`v4`: only A queries, `v6`: only AAAA queries (the same as `types: [A]` or
    `[AAAA]`); `both`: as `types` says."""
    probability: float | None = Field(None, gt=0, le=1)
    """Answer this way for that share of queries; the others get the normal answer."""
    protocol: Literal["udp", "tcp"] | None = None
    """Only queries over this transport (default both): `tcp` with another fault for the
    same names after a `truncate` one breaks the client's TCP retry."""
    container: str | None = None
    """Not supported: a container resolves through its own resolver (docker's embedded DNS
    or the host's), which the run's DNS server does not replace; a `hosts-entry` fault
    with `container:` redirects names there. Refused when the run is planned."""

    @model_validator(mode="after")
    def _parameters(self):
        need = {"delay": "delay", "random": "range", "rotate": "addresses"}.get(self.answer)
        if need and not getattr(self, need):
            raise ValueError(f"answer {self.answer} needs `{need}`")
        if self.answer == "truncate" and self.protocol == "tcp":
            raise ValueError("protocol: truncate sets TC over UDP; over tcp it never applies")
        if self.family != "both":
            qtype: Literal["A", "AAAA"] = "A" if self.family == "v4" else "AAAA"
            if self.types and self.types != [qtype]:
                raise ValueError(f"family {self.family} means types [{qtype}]; give one of the two")
            self.types = [qtype]  # the rule file says it so: `family` stays with the plan
        return self

    # Fields only the run uses: never in a rule file. Every other field is.
    PLAN_ONLY: ClassVar[frozenset[str]] = frozenset({"type", "name", "window", "flap", "container",
                                                     "family"})

    def rule(self, rule_id: str) -> dict:
        """The DNS server's rule file: this model's JSON form, and the rule's id."""
        data = self.model_dump(mode="json", exclude=set(self.PLAN_ONLY), exclude_none=True)
        data = {k: v for k, v in data.items() if v != []}  # an empty list means "not given"
        return {**data, "id": rule_id}

    def renamed(self):
        if self.answer == "sinkhole":
            moved = self.address is not None and not (self.address.is_loopback
                                                     or self.address.is_unspecified)
        else:
            moved = self.answer in ("random", "rotate")
        if not moved:
            return None  # a failure, a delay or the right answer: no other server is reached
        from chaos.faults.base import Renamed

        return Renamed(tuple(n.lower().rstrip(".") for n in self.names), elsewhere=True,
                       hosts_file=False)

    def injectors(self, ctx):
        from chaos.injectors.rule_service import LateRule

        if self.container is not None:
            ctx.fail(("container",), "dns faults cannot target a container (it resolves through "
                                     "its own resolver); use a hosts-entry fault with container:, "
                                     "which edits the container's /etc/hosts")
        # per-run server: unique enough, and a seed repeats
        rule = self.rule(f"fault-{ctx.path[-1] if ctx.path else 0}")
        return [LateRule("dns-rule", ctx.use_dns(),
                         f"fake DNS: {shown(self.names)} -> {self.answer}",
                         lambda dns: dns.server.rule(rule))]

    def label(self) -> str:
        extra = f" p={self.probability:g}" if self.probability else ""
        return self.name or f"dns {shown(self.names)} -> {self.answer}{extra}"
