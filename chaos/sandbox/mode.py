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


def _free_address(used, six: bool = False):
    from chaos.sandbox.netns import SERVER_NET, SERVER_NET6

    net = SERVER_NET6 if six else SERVER_NET
    used = set(used)
    for n in range(10, 250):
        address = net.network_address + n
        if str(address) not in used:
            return address
    raise PlanError(("serve",), f"no free server address left in {net}")


def _listen(server) -> str:
    """Where a server listens, for messages: ``198.18.1.10:80`` (and ``[2001:2:0:1::a]:80``)."""
    port = server.http.port
    six = f" and [{server.address6}]:{port}" if getattr(server, "address6", None) else ""
    return f"{server.address}:{port}{six}"


class SandboxMode(Mode):
    name = "sandbox"
    sandbox: Sandbox
    DNS_ADDRESS = "198.18.1.2"  # in the world, beside the servers

    def __init__(self, run_id: str, serve=(), hosts=None, regions=None, ipv6: bool = False) -> None:
        from chaos.sandbox.netns import Sandbox

        super().__init__()
        self.serve = list(serve)
        self.dual_stack = ipv6
        self.zone, self.zone6 = self._zone(self.serve, hosts or {}, ipv6)
        self.sandbox = Sandbox(run_id, self.zone, dict(regions or {}), zone6=self.zone6,
                               dual_stack=ipv6)

    @staticmethod
    def _zone(serve, hosts, six: bool) -> tuple[dict[str, str], dict[str, str]]:
        """Served names (addresses given, or handed out from 198.18.1.10 and, dual-stack,
        2001:2:0:1::a on) and `hosts:`; IPv4 in the first, IPv6 in the second."""
        from chaos.mode import split_hosts

        zone = {server.name: str(server.address) for server in serve if server.address}
        zone6 = {server.name: str(server.address6) for server in serve
                 if six and server.address6}
        for server in serve:
            if server.address is None:
                server.address = _free_address(zone.values())
                zone[server.name] = str(server.address)
            if six and server.address6 is None:
                server.address6 = _free_address(zone6.values(), six=True)
                zone6[server.name] = str(server.address6)
        extra, extra6 = split_hosts(hosts)
        zone.update(extra)
        zone6.update(extra6)
        return zone, zone6

    def region_ranges6(self):
        return {r: c.link6 for r, c in self.sandbox.clients.items()
                if r != "default" and c.link6 is not None}

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
        steps += [f"server {s.name} on {_listen(s)}" for s in self.serve]
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
            step(f"serve: {server.name} on {_listen(server)}")
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
                                              listen=self.DNS_ADDRESS, zone=self.dns_zone(),
                                              run_dir=journal.run_dir / "dns", seed=session.seed)
        session.mark_logs("run")

    def start_server(self, session: Session, server) -> None:
        from chaos.processes import spawn, wait_ready

        address, http, logs = str(server.address), server.http, session.logs
        addresses = [address, *([str(server.address6)] if self.dual_stack and server.address6 else [])]
        argv = [sys.executable, "-m", "chaos.sandbox.serve"]
        for each in addresses:
            self.sandbox.add_server_address(each)
            argv += ["--listen", f"[{each}]:{http.port}" if ":" in each else f"{each}:{http.port}"]
        argv += ["--status", str(http.status), "--body", http.body]
        if http.size:
            argv += ["--size", str(http.size)]
        argv += ["--log", str(logs / f"{server.name}.log"),
                 "--events", str(session.server_events(server.name))]
        if http.tls:  # a leaf from the run's CA, which the probes trust
            pair = session.ca.issue(server.name, [server.name], addresses, directory=logs / "tls")
            argv += ["--cert", str(pair.cert), "--key", str(pair.key)]
            session.trust_ca()
        session.place.served[server.name] = session.server_events(server.name)
        proc, _ = spawn(session.opened, argv, netns=self.sandbox.world, stdout=subprocess.PIPE,
                        stderr=subprocess.DEVNULL, what=f"server {server.name} ({_listen(server)})")
        wait_ready(proc, SERVER_READY_TIMEOUT, f"server {server.name}")

    def add_server(self, session: Session, server) -> str:
        if server.address is None:
            server.address = _free_address(self.zone.values())
        if self.dual_stack and server.address6 is None:
            server.address6 = _free_address(self.zone6.values(), six=True)
        self.serve.append(server)
        self.zone[server.name] = str(server.address)
        if self.dual_stack:
            self.zone6[server.name] = str(server.address6)
        self.sandbox.zone, self.sandbox.zone6 = self.zone, self.zone6
        self.sandbox.write_hosts()  # keeps the blocks of hosts-entry faults already on
        if session.dns.server is not None:  # it read zone.json at its start
            session.dns.server.set_zone(self.dns_zone())
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
