"""A session: one journal, the sandbox (unless host mode), its servers, and planned faults.

The runner drives a session through a scenario's phases; the pytest fixtures drive one by
hand. Everything a session changes goes through its journal, so ``close()`` undoes exactly
what was applied, in reverse order.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from chaos.errors import PlanError
from chaos.journal import Journal, RevertFailure
from chaos.plan import PlanContext
from chaos.probes.run import Place

if TYPE_CHECKING:
    from chaos.injectors.dns_rules import DnsServer
    from chaos.injectors.http_proxy import HttpProxy
    from chaos.injectors.redirect import TrackConnections
    from chaos.injectors.tcp_proxy import TcpProxy
    from chaos.lab.lab import Lab
    from chaos.lab.topology import Topology
    from chaos.sandbox.netns import Sandbox

SERVER_READY_TIMEOUT = 10.0


def new_run_id() -> str:
    return f"chaos-{os.urandom(3).hex()}"  # not secrets: it imports hmac (start-up time)


def _free_address(used):
    from chaos.sandbox.netns import SERVER_NET

    used = set(used)
    for n in range(10, 250):
        address = SERVER_NET.network_address + n
        if str(address) not in used:
            return address
    raise PlanError(("serve",), "no free server address left in 198.18.1.0/24")


class DnsService:
    """The sandbox's fake DNS server: wanted at plan time, started when the session opens."""

    ADDRESS = "198.18.1.2"
    LAB_ADDRESS = "198.18.0.53"  # on the lab hub's bridge

    def __init__(self) -> None:
        self.wanted = False
        self.server: DnsServer | None = None  # once started


class HttpService:
    """The sandbox's HTTP fault proxy (mitmdump with the chaos addons) at the world's edge:
    wanted at plan time, started when the session opens; faults add rules and redirects."""

    PORT = 18080  # where it listens in the world; never a port a scenario serves on

    def __init__(self) -> None:
        self.wanted = False
        self.proxy: HttpProxy | None = None  # once started


class TcpService:
    """The sandbox's TCP fault proxy at the world's edge (transparent: SO_ORIGINAL_DST)."""

    PORT = 18081  # beside the HTTP proxy's 18080: the two never share a port

    def __init__(self) -> None:
        self.wanted = False
        self.proxy: TcpProxy | None = None  # once started


class FaultSwitch:
    """One planned fault: its injectors, applied and reverted as a unit."""

    def __init__(self, fault, injectors) -> None:
        self.fault, self.injectors, self.on = fault, injectors, False

    def apply(self, journal: Journal) -> None:
        for injector in self.injectors:
            injector.apply(journal)
        self.on = True

    def revert(self, journal: Journal) -> list[RevertFailure]:
        failures = []
        for injector in reversed(self.injectors):
            failures += injector.revert(journal)
        self.on = False
        return failures

    @property
    def applied(self) -> bool:
        return self.on or any(i.entries for i in self.injectors)


class Session:
    def __init__(self, *, host_mode: bool = False, state_dir=None, serve=(), hosts=None,
                 regions=None, variables=None, run_id: str | None = None, lab=None,
                 seed: int | None = None, docker_host: str | None = None) -> None:
        from chaos.sandbox.container import Containers
        from chaos.sandbox.netns import Sandbox

        self.run_id = run_id or new_run_id()
        self.host_mode, self.state_dir = host_mode, state_dir
        self.serve = list(serve)
        for key, value in (("serve", self.serve), ("regions", regions), ("lab", lab)):
            if host_mode and value:
                raise PlanError((key,), f"`{key}:` needs the sandbox; with --host, point probes "
                                        "at servers you run yourself")
        self.lab_spec = lab
        self.lab: Lab | None = None
        self.topology: Topology | None = None
        self.seed = seed
        self.sandbox: Sandbox | None = None
        if lab is not None:
            from chaos.lab.topology import Topology

            self.topology = Topology(tag=self.run_id.removeprefix("chaos-"),
                                     resolver=DnsService.LAB_ADDRESS if lab.dns else None)
            self.zone = {s.host: s.address for s in self.topology.services}
            self.zone.update({name: str(addr) for name, addr in (hosts or {}).items()})
        else:
            self.zone = self._zone(self.serve, hosts or {})
            if not host_mode:
                self.sandbox = Sandbox(self.run_id, self.zone, dict(regions or {}))
        self.place = Place(variables=dict(variables or {}), servers=self.zone)
        self.journal: Journal | None = None
        self.dns = DnsService()
        self.place.dns = self.dns
        self.http = HttpService()
        self.place.http = self.http
        self.tcp = TcpService()
        self.edge_tracking: TrackConnections | None = None  # in the world, once an edge proxy is wanted
        # `container:` targets: asked about at plan time only (no daemon, no cost otherwise).
        self.containers = Containers(self.run_id, docker_host)
        if docker_host and lab is None:  # probes' `docker exec` reach the same daemon
            self.place.env["DOCKER_HOST"] = self.containers.url

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

    # -- planning: nothing on the machine changes ------------------------------------------
    def context(self, path: tuple = ()) -> PlanContext:
        if self.host_mode:
            return PlanContext(self.run_id, True, {"host": (None, Path("/etc/hosts"))}, self.zone,
                               path=path, containers=self.containers)
        if self.topology is not None:
            return self._lab_context(path)
        assert self.sandbox is not None  # not host mode, not the lab
        clients = {r: (c.netns, c.hosts_path) for r, c in self.sandbox.clients.items()}
        ranges = {r: c.link for r, c in self.sandbox.clients.items() if r != "default"}
        return PlanContext(self.run_id, False, clients, self.zone, path=path,
                           world=self.sandbox.world, region_ranges=ranges, dns=self.dns,
                           http=self.http, tcp=self.tcp, containers=self.containers)

    def _lab_context(self, path: tuple) -> PlanContext:
        """In the lab, client-side faults act in the client and the cache namespaces; the
        world's edge is the hub, where the upstream, auth and CDN listen."""
        import ipaddress

        from chaos.sandbox.files import NETNS_ETC

        topo = self.topology
        assert topo is not None
        sides = {"default": (topo.client_ns, topo.client_address), "cache": (topo.cache_ns, topo.cache.address)}
        clients = {r: (ns, NETNS_ETC / ns / "hosts") for r, (ns, _) in sides.items()}
        ranges = {r: ipaddress.ip_network(addr) for r, (_, addr) in sides.items()}
        return PlanContext(self.run_id, False, clients, self.zone, path=path, world=topo.hub_ns,
                           region_ranges=ranges, http=self.http, tcp=self.tcp,
                           dns=self.dns if topo.resolver else None,
                           containers=self.containers)

    def plan(self, fault, path: tuple = ()) -> FaultSwitch:
        ctx = self.context(path)
        injectors = fault.injectors(ctx)
        return FaultSwitch(fault, ctx.prelude + injectors)  # a container's handle comes first

    # -- changing the machine --------------------------------------------------------------
    @property
    def logs(self) -> Path:
        """Where servers and services of this run write their logs ({logs} in probes)."""
        return self.opened.run_dir

    @property
    def opened(self) -> Journal:
        """The journal of the open session."""
        if self.journal is None:
            raise RuntimeError("the session is not open")
        return self.journal

    def open(self, step=lambda text: None) -> None:
        self.journal = Journal.create(self.run_id, self.state_dir)
        self.place.variables.setdefault("logs", str(self.logs))
        if self.topology is not None:
            self.open_lab(step)
            return
        if self.sandbox is None:
            return
        step("sandbox: creating namespaces")
        if self.dns.wanted:  # names resolve through the fake DNS server, not the hosts files
            self.sandbox.resolver = self.dns.ADDRESS
        self.sandbox.create(self.journal)
        self.ensure_services(step)
        self.place.netns = self.sandbox.client
        self.place.regions = {r: c.netns for r, c in self.sandbox.clients.items()}
        for server in self.serve:
            step(f"serve: {server.name} on {server.address}:{server.http.port}")
            self.start_server(server)
        self.mark_logs("run")

    def ensure_services(self, step=lambda text: None) -> None:
        """Start the fake DNS server / HTTP fault proxy that planned faults asked for (also
        when a fixture injects a fault into a sandbox that is already open)."""
        if self.dns.wanted and self.dns.server is None:
            if self.sandbox is None:
                raise PlanError((), "this lab was started without its DNS server (`lab: {dns: true}`)")
            if self.sandbox.resolver is None:  # switch the clients over to the DNS server
                self.sandbox.resolver = self.dns.ADDRESS
                self.sandbox.write_resolver()
            self.start_dns(step)
        if (self.http.wanted or self.tcp.wanted) and self.edge_tracking is None:
            self.track_edge()
        if self.http.wanted and self.http.proxy is None:
            self.start_http(step)
        if self.tcp.wanted and self.tcp.proxy is None:
            self.start_tcp(step)

    @property
    def edge(self) -> str:
        """The namespace of the world's edge, where the servers live and the fault proxies
        stand: the lab's hub, else the sandbox world."""
        if self.topology is not None:
            return self.topology.hub_ns
        assert self.sandbox is not None
        return self.sandbox.world

    def track_edge(self) -> None:
        """Connection tracking on in the world from before the first edge redirect to the
        session's end (see TrackConnections): removing a redirect resets nothing."""
        import pyroute2  # noqa: F401  (a heavy import: now, not at the first switch-on's forget)

        from chaos.injectors.redirect import TrackConnections

        self.edge_tracking = TrackConnections(self.edge, tag=self.run_id)
        self.edge_tracking.apply(self.opened)

    def _lab_dns(self, journal, topo) -> None:
        """The lab resolves through the run's fake DNS server, started before any service."""
        if topo.resolver is None:
            return
        from chaos.injectors.dns_rules import start_dns_server

        self.dns.server = start_dns_server(journal, netns=topo.hub_ns, listen=topo.resolver,
                                           zone=self.zone, run_dir=journal.run_dir / "dns",
                                           seed=self.seed)

    def start_tcp(self, step) -> None:
        from chaos.injectors.tcp_proxy import start_tcp_proxy

        step(f"tcp: fault proxy at the world's edge, port {self.tcp.PORT}")
        run_dir = self.logs / "tcp-proxy"
        run_dir.mkdir(exist_ok=True)
        config = {"listeners": [{"name": "edge", "listen": f"0.0.0.0:{self.tcp.PORT}",
                                 "transparent": True}], "seed": self.seed}
        self.tcp.proxy = start_tcp_proxy(self.opened, netns=self.edge, config=config, run_dir=run_dir)

    def start_dns(self, step) -> None:
        from chaos.injectors.dns_rules import start_dns_server

        step(f"dns: fake DNS server on {self.dns.ADDRESS}")
        assert self.sandbox is not None
        self.sandbox.add_server_address(self.dns.ADDRESS)
        self.dns.server = start_dns_server(self.opened, netns=self.sandbox.world,
                                           listen=self.dns.ADDRESS, zone=self.zone,
                                           run_dir=self.logs / "dns", seed=self.seed)
        self.mark_logs("run")

    @property
    def ca(self):
        """The CA the fault proxy signs with and `serve: {http: {tls: true}}` servers use:
        the lab's own, else the state dir's (made once, kept: a client trusts it once)."""
        if self.lab is not None:
            return self.lab.ca
        from chaos.journal import state_dir
        from chaos.lab.ca import state_ca

        return state_ca(state_dir(self.state_dir))

    def trust_ca(self) -> None:
        """Probes trust the CA (and the system's CAs): SSL_CERT_FILE, CURL_CA_BUNDLE, ..."""
        from chaos.injectors.http_proxy import trust_env, write_ca_bundle

        bundle = self.logs / "ca-bundle.pem"
        if not bundle.exists():
            write_ca_bundle(self.ca.cert, bundle)
        self.place.env.update(trust_env(bundle))

    def start_http(self, step) -> None:
        from chaos.injectors.http_proxy import start_http_proxy

        step(f"http: fault proxy (mitmdump) at the world's edge, port {self.http.PORT}")
        run_dir = self.logs / "http-proxy"
        # The proxy signs with the run's CA, which the run's clients trust, and checks the
        # run's servers against it: TLS stays real on both sides.
        confdir, ca = run_dir / "ca", self.ca
        confdir.mkdir(parents=True)
        key = os.open(confdir / "mitmproxy-ca.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(key, "wb") as f:
            f.write(ca.key.read_bytes() + ca.cert.read_bytes())
        (confdir / "mitmproxy-ca-cert.pem").write_bytes(ca.cert.read_bytes())
        self.http.proxy = start_http_proxy(self.opened, netns=self.edge,
                                           listen=f"0.0.0.0:{self.http.PORT}", mode="transparent",
                                           run_dir=run_dir, confdir=confdir, upstream_ca=ca.cert)
        if self.lab is None:
            self.trust_ca()
        self.mark_logs("run")

    def open_lab(self, step) -> None:
        from chaos.lab import lab_up

        step("lab: upstream, token server, CDN, cache, dockerd (a few seconds)")
        spec, topo = self.lab_spec, self.topology
        assert topo is not None
        self.lab = lab = lab_up(self.opened, self.logs, topology=topo,
                                dockerd=spec.dockerd, warm=tuple(spec.warm), on_network=self._lab_dns)
        if spec.client_os:
            from chaos.injectors.client_profile import client_profile

            client_profile(topo.client_ns, os_family=spec.client_os, tag=self.run_id).apply(self.opened)
        self.place.netns = topo.client_ns
        self.place.regions = {"default": topo.client_ns, "cache": topo.cache_ns}
        self.place.lab = lab
        # --var values win over the lab's own names (a cache of your own for {cache}).
        self.place.variables = {**lab.placeholders(), **self.place.variables}
        ca = str(lab.ca.cert)
        self.place.env.update(SSL_CERT_FILE=ca, CURL_CA_BUNDLE=ca)
        if lab.dockerd is not None:
            self.place.env["DOCKER_HOST"] = lab.dockerd.base_url
        self.mark_logs("run")
        self.ensure_services(step)

    def mark_logs(self, scope: str) -> None:
        """Remember where each log ends: `requests` / `dns_queries` probes count from there."""
        import time

        self.place.marks[(scope, "dns")] = time.time()
        self.place.marks[(scope, "http")] = time.time()
        self.place.marks[(scope, "serve")] = time.time()
        if self.lab is not None:
            for role in ("upstream", "registry", "auth", "cdn", "cache"):
                self.place.marks[(scope, role)] = self.lab.server(role).access.mark()

    def server_events(self, name: str) -> Path:
        """The start / end records of a `serve:` server's requests (`requests:` counts them)."""
        return self.logs / f"{name}.requests.jsonl"

    def start_server(self, server) -> None:
        from chaos.processes import spawn, wait_ready

        address, http = str(server.address), server.http
        assert self.sandbox is not None
        self.sandbox.add_server_address(address)
        argv = [sys.executable, "-m", "chaos.sandbox.serve", "--listen", f"{address}:{http.port}",
                "--status", str(http.status), "--body", http.body]
        if http.size:
            argv += ["--size", str(http.size)]
        argv += ["--log", str(self.logs / f"{server.name}.log"),
                 "--events", str(self.server_events(server.name))]
        if http.tls:  # a leaf from the run's CA, which the probes trust
            pair = self.ca.issue(server.name, [server.name], [address], directory=self.logs / "tls")
            argv += ["--cert", str(pair.cert), "--key", str(pair.key)]
            self.trust_ca()
        self.place.served[server.name] = self.server_events(server.name)
        proc, _ = spawn(self.opened, argv, netns=self.sandbox.world, stdout=subprocess.PIPE,
                        stderr=subprocess.DEVNULL, what=f"server {server.name} ({address}:{http.port})")
        wait_ready(proc, SERVER_READY_TIMEOUT, f"server {server.name}")

    def add_server(self, server) -> str:
        """Start one more server in an open sandbox; clients resolve it from now on."""
        if server.address is None:
            server.address = _free_address(self.zone.values())
        self.serve.append(server)
        self.zone[server.name] = str(server.address)
        assert self.sandbox is not None
        self.sandbox.zone = self.zone
        self.sandbox.write_hosts()  # keeps the blocks of hosts-entry faults already on
        if self.dns.server is not None:  # it read zone.json at its start
            self.dns.server.set_zone(self.zone)
        self.start_server(server)
        return str(server.address)

    def run(self, command: str, timeout: float = 30.0, region: str | None = None):
        """Run a shell command where the clients live; (exit code or None if killed, out, err)."""
        from chaos.probes.run import run_process

        code, out, err, _ = run_process(self.opened, ["sh", "-c", command], self.place.at(region), timeout)
        return code, out, err

    def close(self) -> list[RevertFailure]:
        """Undo everything, in reverse order; what could not be undone is returned (and kept
        in the journal for `chaos recover`)."""
        if self.journal is None:
            return []
        failures = self.journal.rollback()
        self.journal.finish()
        return failures

    def __enter__(self) -> Session:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        failures = self.close()
        if failures and exc[0] is None:
            raise RuntimeError("could not revert: " + "; ".join(map(str, failures)))
