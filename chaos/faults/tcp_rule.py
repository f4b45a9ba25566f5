"""What TCP proxy fault types share: the target, direction, probability; a toxic rule for the
edge proxy and the redirect that feeds it.

A TCP fault type is one module: a ``TcpFault`` subclass (its parameters) whose ``toxic(rule)``
returns its behaviour, a ``chaos.injectors.tcp_toxics.Toxic`` subclass defined next to it,
and one line in ``chaos.faults.FAULTS``. The proxy rebuilds the model from the rule file
(``model_validate``), so the model's fields are the only declaration of the parameters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from chaos.faults.base import Fault
from chaos.scenario.model import Destination
from chaos.scenario.modelbase import Field

if TYPE_CHECKING:
    from chaos.injectors.tcp_toxics import Rule, Toxic


class TcpFault(Fault):
    destinations: list[Destination] = []
    """Servers whose connections get the fault: host names the sandbox knows, addresses,
    CIDRs (default: every server)."""
    ports: list[int] = Field(default=[80, 443], min_length=1)
    """Their ports; connections to them pass through the TCP fault proxy at the world's edge."""
    direction: Literal["upstream", "downstream", "both"] = "downstream"
    """Which bytes: upstream (client to server), downstream (server to client), both."""
    probability: float | None = Field(None, gt=0, le=1)
    """Share of connections that get the fault (rolled once per connection)."""

    # Fields the plan turns into the rule's ``match`` (or that only the run uses): never in
    # a rule file. Every other field is.
    PLAN_ONLY: ClassVar[frozenset[str]] = frozenset(
        {"type", "name", "window", "flap", "destinations", "ports"})

    def toxic(self, rule: Rule) -> Toxic:
        """This fault's behaviour on one connection (a Toxic of this module)."""
        raise NotImplementedError

    def proxied(self):
        from chaos.faults.base import Proxied

        return Proxied.of("tcp", self.ports, self.destinations)

    @property
    def toxic_name(self) -> str:
        """How the connection log names what was done (``<rule id>:<toxic_name>``)."""
        return self.type

    def rule_params(self) -> dict:
        """The rule file's fault keys: this model's JSON form, less what the plan consumes."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True,
                               exclude=set(self.PLAN_ONLY))

    def injectors(self, ctx):
        from chaos.injectors.redirect import EdgeRedirect
        from chaos.injectors.rule_service import LateRule

        tcp = ctx.use_tcp()
        index = ctx.path[-1] if ctx.path else 0
        nets = [str(n) for i, d in enumerate(self.destinations)
                for n in ctx.destinations(d, ("destinations", i))]
        rule = {"id": f"fault-{index}", "toxic": self.type, **self.rule_params()}
        # Every TCP fault of the run redirects to the one proxy: the rule must pick exactly
        # what this fault's redirect sends (its ports, its servers), or it would act on the
        # connections the other faults redirect too.
        rule["match"] = {"port": sorted(set(self.ports)), **({"addr": nets} if nets else {})}
        return [EdgeRedirect(ctx.world, self.ports, tcp.PORT, tag=ctx.tag, name=f"t{index}",
                             destinations=nets, proxy="TCP", families=ctx.edge_families),
                LateRule("tcp-toxic", tcp, f"tcp {self.toxic_name} rule {rule['id']}",
                         lambda tcp: _toxic(tcp, rule))]


def _toxic(tcp, rule: dict):
    from chaos.injectors.tcp_proxy import TcpToxic  # the proxy runs by now: its code is needed

    return TcpToxic(tcp.proxy, rule)
