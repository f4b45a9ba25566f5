"""Sandbox mode: client namespaces and a world namespace the run makes (chaos.sandbox.netns),
the scenario's servers in the world, the fake DNS server and fault proxies at its edge."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

from chaos.errors import PlanError
from chaos.mode import Mode

if TYPE_CHECKING:
    from chaos.sandbox.netns import Sandbox
    from chaos.session import Session

SERVER_READY_TIMEOUT = 10.0


def _free_address(used):
    from chaos.sandbox.netns import SERVER_NET

    used = set(used)
    for n in range(10, 250):
        address = SERVER_NET.network_address + n
        if str(address) not in used:
            return address
    raise PlanError(("serve",), "no free server address left in 198.18.1.0/24")


class SandboxMode(Mode):
    name = "sandbox"
    sandbox: Sandbox
    DNS_ADDRESS = "198.18.1.2"  # in the world, beside the servers

    def __init__(self, run_id: str, serve=(), hosts=None, regions=None) -> None:
        from chaos.sandbox.netns import Sandbox

        super().__init__()
        self.serve = list(serve)
        self.zone = self._zone(self.serve, hosts or {})
        self.sandbox = Sandbox(run_id, self.zone, dict(regions or {}))

    @staticmethod
    def _zone(serve, hosts) -> dict[str, str]:
        """Served names (addresses given, or handed out from 198.18.1.10 on) and `hosts:`."""
        zone = {server.name: str(server.address) for server in serve if server.address}
        for server in serve:
            if server.address is None:
                server.address = _free_address(zone.values())
                zone[server.name] = str(server.address)
        zone.update({name: str(addr) for name, addr in hosts.items()})
        return zone

    @property
    def edge(self) -> str:
        return self.sandbox.world

    def clients(self):
        return {r: (c.netns, c.hosts_path) for r, c in self.sandbox.clients.items()}

    def region_ranges(self):
        return {r: c.link for r, c in self.sandbox.clients.items() if r != "default"}

    def offers(self, service: str) -> bool:
        return True

    def startup(self, session: Session) -> list[str]:
        names = [self.sandbox.world, *(c.netns for c in self.sandbox.clients.values())]
        steps = [f"namespaces {', '.join(names)}"]
        if session.dns.wanted:
            steps.append(f"fake DNS server on {self.DNS_ADDRESS}")
        steps += session.edge_services()
        steps += [f"server {s.name} on {s.address}:{s.http.port}" for s in self.serve]
        return steps

    def open(self, session: Session, step) -> None:
        step("sandbox: creating namespaces")
        if session.dns.wanted:  # names resolve through the fake DNS server, not the hosts files
            self.sandbox.resolver = self.DNS_ADDRESS
        self.sandbox.create(session.opened)
        session.ensure_services(step)
        session.place.netns = self.sandbox.client
        session.place.regions = {r: c.netns for r, c in self.sandbox.clients.items()}
        for server in self.serve:
            step(f"serve: {server.name} on {server.address}:{server.http.port}")
            self.start_server(session, server)
        session.mark_logs("run")

    def start_dns(self, session: Session, step) -> None:
        from chaos.injectors.dns_rules import start_dns_server

        if self.sandbox.resolver is None:  # asked for after open: switch the clients over
            self.sandbox.resolver = self.DNS_ADDRESS
            self.sandbox.write_resolver()
        step(f"dns: fake DNS server on {self.DNS_ADDRESS}")
        self.sandbox.add_server_address(self.DNS_ADDRESS)
        journal = session.opened
        session.dns.server = start_dns_server(journal, netns=self.sandbox.world,
                                              listen=self.DNS_ADDRESS, zone=self.zone,
                                              run_dir=journal.run_dir / "dns", seed=session.seed)
        session.mark_logs("run")

    def start_server(self, session: Session, server) -> None:
        from chaos.processes import spawn, wait_ready

        address, http, logs = str(server.address), server.http, session.logs
        self.sandbox.add_server_address(address)
        argv = [sys.executable, "-m", "chaos.sandbox.serve", "--listen", f"{address}:{http.port}",
                "--status", str(http.status), "--body", http.body]
        if http.size:
            argv += ["--size", str(http.size)]
        argv += ["--log", str(logs / f"{server.name}.log"),
                 "--events", str(session.server_events(server.name))]
        if http.tls:  # a leaf from the run's CA, which the probes trust
            pair = session.ca.issue(server.name, [server.name], [address], directory=logs / "tls")
            argv += ["--cert", str(pair.cert), "--key", str(pair.key)]
            session.trust_ca()
        session.place.served[server.name] = session.server_events(server.name)
        proc, _ = spawn(session.opened, argv, netns=self.sandbox.world, stdout=subprocess.PIPE,
                        stderr=subprocess.DEVNULL, what=f"server {server.name} ({address}:{http.port})")
        wait_ready(proc, SERVER_READY_TIMEOUT, f"server {server.name}")

    def add_server(self, session: Session, server) -> str:
        if server.address is None:
            server.address = _free_address(self.zone.values())
        self.serve.append(server)
        self.zone[server.name] = str(server.address)
        self.sandbox.zone = self.zone
        self.sandbox.write_hosts()  # keeps the blocks of hosts-entry faults already on
        if session.dns.server is not None:  # it read zone.json at its start
            session.dns.server.set_zone(self.zone)
        self.start_server(session, server)
        return str(server.address)

    def opened(self, session: Session) -> dict:
        return {"kind": "sandbox", "clients": dict(session.place.regions), "world": self.sandbox.world}

    def describe(self, run_id: str) -> list[str]:
        lines = []
        for name, client in self.sandbox.clients.items():
            if client.profile:
                from chaos.injectors.client_profile import client_profile

                lines.append(f"region {name}: " + client_profile(client.netns, tag=run_id,
                                                                 **client.profile).describe())
        return lines
