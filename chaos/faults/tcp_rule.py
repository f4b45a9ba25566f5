"""What TCP proxy fault types share: the target, direction, probability; a toxic rule for the
edge proxy and the redirect that feeds it."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from chaos.faults.base import Fault
from chaos.injectors.base import Injector


class TcpFault(Fault):
    destinations: list[str] = []
    """Servers whose connections get the fault: host names the sandbox knows, addresses,
    CIDRs (default: every server)."""
    ports: list[int] = Field(default=[80, 443], min_length=1)
    """Their ports; connections to them pass through the TCP fault proxy at the world's edge."""
    direction: Literal["upstream", "downstream", "both"] = "downstream"
    """Which bytes: upstream (client to server), downstream (server to client), both."""
    probability: float | None = Field(None, gt=0, le=1)
    """Share of connections that get the fault (rolled once per connection)."""

    toxic: ClassVar[str] = ""  # set by each subclass: the proxy's toxic name

    def toxic_params(self) -> dict:
        raise NotImplementedError

    def proxied(self):
        from chaos.faults.base import Proxied

        return Proxied.of("tcp", self.ports, self.destinations)

    def injectors(self, ctx):
        from chaos.injectors.redirect import EdgeRedirect

        tcp = ctx.use_tcp()
        index = ctx.path[-1] if ctx.path else 0
        nets = [str(n) for i, d in enumerate(self.destinations)
                for n in ctx.destinations(d, ("destinations", i))]
        rule = {"id": f"fault-{index}", "toxic": self.toxic, "direction": self.direction,
                **({"probability": self.probability} if self.probability else {}),
                **self.toxic_params()}
        # Every TCP fault of the run redirects to the one proxy: the rule must pick exactly
        # what this fault's redirect sends (its ports, its servers), or it would act on the
        # connections the other faults redirect too.
        rule["match"] = {"port": sorted(set(self.ports)), **({"addr": nets} if nets else {})}
        return [EdgeRedirect(ctx.world, self.ports, tcp.PORT, tag=ctx.tag, name=f"t{index}",
                             destinations=nets),
                ProxyToxic(tcp, rule)]


class ProxyToxic(Injector):
    """A toxic for the run's TCP proxy, which starts only when the session opens."""

    kind = "tcp-toxic"

    def __init__(self, tcp, rule: dict) -> None:
        super().__init__()
        from chaos.injectors.tcp_toxics import parse_rule

        parse_rule(dict(rule))  # a bad rule fails at plan time, before anything changes
        self.tcp, self.rule = tcp, rule

    def describe(self) -> str:
        return f"tcp {self.rule['toxic']} rule {self.rule['id']}"

    def apply(self, journal) -> None:
        from chaos.injectors.tcp_proxy import TcpToxic

        inner = TcpToxic(self.tcp.proxy, self.rule)
        inner.entries = self.entries  # one list: revert() undoes what the inner recorded
        inner.apply(journal)
