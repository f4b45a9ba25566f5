"""Lab mode: the registry lab (chaos.lab.lab_up) is the run's world.

Client-side faults act in the client and the cache namespaces; the world's edge is the hub,
where the upstream, auth and CDN listen. The lab resolves through the run's fake DNS server
only when the scenario says so (`lab: {dns: true}`) or a planned fault or probe asked for
it: that must be known before the lab starts, as every lab service resolves through it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import TYPE_CHECKING

from chaos.errors import PlanError
from chaos.mode import Mode, split_hosts

if TYPE_CHECKING:
    from chaos.session import Session

ROLES = ("upstream", "registry", "auth", "cdn", "cache")


class LabMode(Mode):
    name = "lab"
    clients_trust_ca = True  # the lab's CA, set in the clients' environment at open
    own_docker = True
    DNS_ADDRESS = "198.18.0.53"  # on the lab hub's bridge

    def __init__(self, run_id: str, spec, hosts=None, ipv6: bool = False,
                 pullers: dict[str, str] | None = None) -> None:
        from chaos.lab.topology import Topology

        super().__init__()
        self.spec = spec
        self.pullers = dict(pullers or {})
        """Versions of pulling clients other than dockerd (``chaos run --client podman
        --client-version 5.4``)."""
        self.dual_stack = ipv6
        self.topology = Topology(tag=run_id.removeprefix("chaos-"),
                                 resolver=self.DNS_ADDRESS if spec.dns else None, ipv6=ipv6)
        self.zone = {s.host: s.address for s in self.topology.services}
        self.zone.update(split_hosts(hosts)[0])  # `hosts:` of a lab are IPv4 (the model says so)
        self.zone6 = {s.host: s.address6 for s in self.topology.services if s.address6}

    def _sides(self) -> dict[str, tuple[str, str]]:
        topo = self.topology
        return {"default": (topo.client_ns, topo.client_address),
                "cache": (topo.cache_ns, topo.cache.address)}

    @property
    def edge(self) -> str:
        return self.topology.hub_ns

    def clients(self):
        from chaos.sandbox.files import NETNS_ETC

        return {r: (ns, NETNS_ETC / ns / "hosts") for r, (ns, _) in self._sides().items()}

    def region_ranges(self):
        return {r: ipaddress.ip_network(addr) for r, (_, addr) in self._sides().items()}

    def region_ranges6(self):
        topo = self.topology
        sides = {"default": topo.client_address6, "cache": topo.cache_address6}
        return {r: ipaddress.ip_network(addr) for r, addr in sides.items() if addr}

    def offers(self, service: str) -> bool:
        if service == "dns":  # before the lab starts it can still be given one
            return self.lab is None or self.topology.resolver is not None
        return True

    def _resolver_wanted(self, session: Session) -> bool:
        return self.topology.resolver is not None or session.dns.wanted

    def startup(self, session: Session) -> list[str]:
        from chaos.lab.generations import resolve_name

        version = self.spec.client_version
        client = resolve_name(f"dockerd@{version}" if version else "dockerd")
        dockerd = f", {client}" if self.spec.dockerd else ""
        others = "".join(f", {resolve_name(f'{name}@{v}')}" for name, v in self.pullers.items())
        steps = [f"lab: upstream, token server, CDN, cache ({self.spec.cache}){dockerd}{others}"]
        if self._resolver_wanted(session):
            steps.insert(0, f"fake DNS server on {self.DNS_ADDRESS}")
        return steps + session.edge_services()

    def open(self, session: Session, step) -> None:
        from chaos.lab import lab_up

        step("lab: upstream, token server, CDN, cache, dockerd (a few seconds)")
        if self._resolver_wanted(session):
            self.topology = replace(self.topology, resolver=self.DNS_ADDRESS)
        journal, spec, topo = session.opened, self.spec, self.topology

        def dns_first(journal, topo) -> None:  # every lab service resolves through it
            if topo.resolver is not None:
                self._start_dns_server(session, journal)

        from chaos.journal import state_dir

        self.lab = lab = lab_up(journal, journal.run_dir, topology=topo, dockerd=spec.dockerd,
                                warm=tuple(w.item() for w in spec.warm), on_network=dns_first,
                                declared=tuple(i.declared() for i in spec.images),
                                image_cache=state_dir(session.state_dir) / "images", cache=spec.cache,
                                client_version=spec.client_version, clients=self.pullers)
        if spec.client_os:
            from chaos.injectors.client_profile import client_profile

            client_profile(topo.client_ns, os_family=spec.client_os, tag=session.run_id).apply(journal)
        place = session.place
        place.netns = topo.client_ns
        place.regions = {"default": topo.client_ns, "cache": topo.cache_ns}
        place.lab = lab
        # --var values win over the lab's own names (a cache of your own for {cache}).
        place.variables = {**lab.placeholders(), **place.variables}
        ca = str(lab.ca.cert)
        place.env.update(SSL_CERT_FILE=ca, CURL_CA_BUNDLE=ca)
        if lab.dockerd is not None:
            place.env["DOCKER_HOST"] = lab.dockerd.base_url
        session.mark_logs("run")
        session.ensure_services(step)

    def _start_dns_server(self, session: Session, journal) -> None:
        from chaos.injectors.dns_rules import start_dns_server

        session.dns.server = start_dns_server(journal, netns=self.topology.hub_ns,
                                              listen=self.DNS_ADDRESS, zone=self.dns_zone(),
                                              run_dir=journal.run_dir / "dns", seed=session.seed)

    def start_dns(self, session: Session, step) -> None:
        raise PlanError((), "this lab was started without its DNS server (`lab: {dns: true}`)")

    def ca(self, state_dir):
        return self.lab.ca if self.lab is not None else super().ca(state_dir)

    def log_marks(self) -> dict[str, object]:
        lab = self.lab
        return {} if lab is None else {role: lab.server(role).access.mark() for role in ROLES}
