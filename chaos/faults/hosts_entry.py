"""hosts-entry: point names at an address through the hosts file (DZone's first recipe)."""

from __future__ import annotations

import ipaddress
from typing import Literal

from chaos.faults.base import ByFamily, Fault, InContainer
from chaos.injectors.base import shown
from chaos.scenario.model import HostName
from chaos.scenario.modelbase import Field, model_validator


class HostsEntry(Fault, InContainer, ByFamily):
    """Map host names to an address in the hosts file, as in `127.0.0.1 registry-1.docker.io`.

    In the sandbox it edits the sandbox's own hosts file; with --host, a marked block at the
    top of /etc/hosts; with `container:`, a marked block in that container's /etc/hosts.
    Clients then connect to the address instead of the real server.
    """

    type: Literal["hosts-entry"] = "hosts-entry"
    """The fault type."""
    names: list[HostName] = Field(min_length=1)
    """Host names to redirect (exact names)."""
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    """Where they point (default 127.0.0.1, or ::1 with `family: v6`): loopback makes
    connections fail at once (nothing listens there). With `family: v4` or `v6` only the
    names' lines of that family are replaced (a dual-stack name keeps its other address)."""
    region: str | None = None
    """Only the clients of this region (in the lab: `default` the docker host, `cache` the
    cache); default: every client."""

    @model_validator(mode="after")
    def _address_family(self):
        if self.address is None:
            self.address = ipaddress.ip_address("::1" if self.family == "v6" else "127.0.0.1")
        wanted = {"v4": 4, "v6": 6}.get(self.family)
        if wanted is not None and self.address.version != wanted:
            raise ValueError(f"address {self.address} is not IPv{wanted} (family {self.family})")
        return self

    def renamed(self):
        if self.container is not None:
            return None  # a container's own hosts file: the run's clients do not read it
        from chaos.faults.base import Renamed

        # To loopback (the classic 127.0.0.1) a request reaches no server at all.
        assert self.address is not None  # the validator sets it
        return Renamed(tuple(self.names), elsewhere=not self.address.is_loopback, hosts_file=True)

    def injectors(self, ctx):
        from chaos.injectors.hosts_file import HostsBlock

        for index, name in enumerate(self.names):
            if name.startswith("*."):
                ctx.fail(("names", index), "a hosts file cannot hold wildcards; use a dns fault")
            ctx.guard_name(name, ("names", index))
        entries = [(str(self.address), n) for n in self.names]
        # A block of its own per fault (run id + fault index): with the run id alone, a second
        # hosts-entry found "its" block already there and did nothing, and reverting either
        # fault (a window ending) removed both.
        tag = f"{ctx.tag}-e{ctx.path[-1]}" if ctx.path else ctx.tag
        family = {"v4": 4, "v6": 6}.get(self.family)
        if family is not None:  # the tag says so: a rewrite of the file keeps to that family
            tag += f"v{family}"
        return [HostsBlock(hosts, entries, tag, family=family)
                for _, hosts in ctx.client_sides(self.region, self.container)]

    def label(self) -> str:
        return self.name or f"hosts-entry {shown(self.names)} -> {self.address}"
