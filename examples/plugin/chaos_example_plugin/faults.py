"""registry-offline: a public registry's names point nowhere, in the clients' hosts files.

A preset built from chaos's own injectors (a hosts-file block), so applying, reverting and
`chaos recover` work as for the built-in types; a plugin needs no undo code of its own.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from chaos.faults.base import Fault

NAMES = {
    "docker-hub": ["registry-1.docker.io", "auth.docker.io", "production.cloudflare.docker.com"],
    "ghcr": ["ghcr.io", "pkg-containers.githubusercontent.com"],
    "quay": ["quay.io", "cdn.quay.io"],
}


class RegistryOffline(Fault):
    """A public registry is unreachable by name: its host names point at an address where
    nothing answers (127.0.0.1: connections are refused at once)."""

    type: Literal["registry-offline"] = "registry-offline"
    """The fault type."""
    registry: Literal["docker-hub", "ghcr", "quay"] = "docker-hub"
    """Which registry: its registry, token and CDN names are redirected."""
    address: ipaddress.IPv4Address = ipaddress.IPv4Address("127.0.0.1")
    """Where the names point."""
    region: str | None = None
    """Only the clients of this region; default: every client."""

    def injectors(self, ctx):
        from chaos.injectors.hosts_file import HostsBlock

        names = NAMES[self.registry]
        for name in names:
            ctx.guard_name(name, ("registry",))
        tag = f"{ctx.tag}-e{ctx.path[-1]}" if ctx.path else ctx.tag
        entries = [(str(self.address), name) for name in names]
        return [HostsBlock(hosts, entries, tag) for _, hosts in ctx.client_sides(self.region)]

    def label(self) -> str:
        return self.name or f"registry-offline {self.registry} -> {self.address}"
