"""A session: one journal, a mode (host, sandbox or lab), the run's services, planned faults.

The runner drives a session through a scenario's phases; the pytest fixtures drive one by
hand. Where the run acts and what must be started is its mode's (chaos.mode); the services
(fake DNS server, HTTP and TCP fault proxies) are started once a planned fault or probe
asked for them. Everything a session changes goes through its journal, so ``close()`` undoes
exactly what was applied, in reverse order.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from chaos.journal import Journal, RevertFailure
from chaos.mode import Mode, make_mode
from chaos.plan import PlanContext
from chaos.probes.run import Place

if TYPE_CHECKING:
    from chaos.injectors.dns_rules import DnsServer
    from chaos.injectors.http_proxy import HttpProxy
    from chaos.injectors.redirect import TrackConnections
    from chaos.injectors.tcp_proxy import TcpProxy


def new_run_id() -> str:
    return f"chaos-{os.urandom(3).hex()}"  # not secrets: it imports hmac (~10 ms of start-up)


class DnsService:
    """The run's fake DNS server: wanted at plan time, started where the mode says when the
    session opens (the sandbox world, the lab's hub)."""

    def __init__(self) -> None:
        self.wanted = False
        self.server: DnsServer | None = None  # once started


class HttpService:
    """The run's HTTP fault proxy (mitmdump with the chaos addons) at the world's edge:
    wanted at plan time, started when the session opens; faults add rules and redirects."""

    PORT = 18080  # where it listens in the world; never a port a scenario serves on

    def __init__(self) -> None:
        self.wanted = False
        self.proxy: HttpProxy | None = None  # once started


class TcpService:
    """The run's TCP fault proxy at the world's edge (transparent: SO_ORIGINAL_DST)."""

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


def edge_families(dual_stack: bool) -> list[str]:
    """The families the edge's redirects and connection tracking act in."""
    return ["ipv4", "ipv6"] if dual_stack else ["ipv4"]


class Session:
    def __init__(self, *, host_mode: bool = False, state_dir=None, serve=(), hosts=None,
                 regions=None, variables=None, run_id: str | None = None, lab=None,
                 seed: int | None = None, docker_host: str | None = None,
                 ipv6: bool = False, host_setup: str | None = None,
                 client: str = "dockerd", pullers: dict[str, str] | None = None) -> None:
        from chaos.sandbox.container import Containers

        self.run_id = run_id or new_run_id()
        self.state_dir, self.seed = state_dir, seed
        self.mode: Mode = make_mode(run_id=self.run_id, host_mode=host_mode, serve=serve,
                                    hosts=hosts, regions=regions, lab=lab, ipv6=ipv6,
                                    host_setup=host_setup, variables=variables, pullers=pullers)
        self.place = Place(variables=dict(variables or {}), servers=self.mode.zone, client=client,
                           servers6=self.mode.zone6)
        self.journal: Journal | None = None
        self.dns, self.http, self.tcp = DnsService(), HttpService(), TcpService()
        self.place.dns, self.place.http = self.dns, self.http
        self.edge_tracking: TrackConnections | None = None  # in the world, once an edge proxy is wanted
        # `container:` targets: asked about at plan time only (no daemon, no cost otherwise).
        self.containers = Containers(self.run_id, docker_host)
        if docker_host and not self.mode.own_docker:  # probes' `docker exec` reach the same daemon
            self.place.env["DOCKER_HOST"] = self.containers.url

    @property
    def host_mode(self) -> bool:
        return self.mode.host_mode

    @property
    def zone(self) -> dict[str, str]:
        return self.mode.zone

    @property
    def sandbox(self):
        """The sandbox's namespaces (chaos.sandbox.netns.Sandbox); None in the other modes."""
        return self.mode.sandbox

    @property
    def lab(self):
        """The running lab (chaos.lab.Lab); None in the other modes and before ``open``."""
        return self.mode.lab

    # -- planning: nothing on the machine changes ------------------------------------------
    def context(self, path: tuple = ()) -> PlanContext:
        """What a fault or probe is planned against: the mode's clients, edge and zone, and
        the services the mode offers (a fault that asks for one makes it start)."""
        mode = self.mode
        return PlanContext(self.run_id, mode.host_mode, mode.clients(), mode.zone, path=path,
                           world=mode.edge, region_ranges=mode.region_ranges(),
                           zone6=mode.zone6, dual_stack=mode.dual_stack,
                           region_ranges6=mode.region_ranges6(),
                           containers=self.containers, state_dir=self.state_dir,
                           dns=self.dns if mode.offers("dns") else None,
                           http=self.http if mode.offers("http") else None,
                           tcp=self.tcp if mode.offers("tcp") else None)

    def plan(self, fault, path: tuple = ()) -> FaultSwitch:
        ctx = self.context(path)
        injectors = fault.injectors(ctx)
        return FaultSwitch(fault, ctx.prelude + injectors)  # a container's handle comes first

    def startup(self) -> list[str]:
        """What ``open`` will start for what was planned, in order."""
        return self.mode.startup(self)

    def edge_services(self) -> list[str]:
        """The fault proxies planned faults asked for, as ``startup`` lists them."""
        proxies: list[tuple[str, HttpService | TcpService]] = [("HTTP", self.http), ("TCP", self.tcp)]
        return [f"{name} fault proxy at the world's edge, port {service.PORT}"
                for name, service in proxies if service.wanted]

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
        # Probes' scratch files ({tmp}, and mktemp's default through TMPDIR) live in the
        # run's folder, which the run's end and `chaos recover` remove: a killed probe's
        # file in /tmp stayed there for good.
        tmp = self.logs / "tmp"
        tmp.mkdir(mode=0o700)
        self.place.variables.setdefault("tmp", str(tmp))
        self.place.env.setdefault("TMPDIR", str(tmp))
        self.mode.open(self, step)

    def ensure_services(self, step=lambda text: None) -> None:
        """Start the fake DNS server / fault proxies that planned faults asked for (also
        when a fixture injects a fault into a session that is already open)."""
        if self.dns.wanted and self.dns.server is None:
            self.mode.start_dns(self, step)
        if (self.http.wanted or self.tcp.wanted) and self.edge_tracking is None:
            self.track_edge()
        if self.http.wanted and self.http.proxy is None:
            self.start_http(step)
        if self.tcp.wanted and self.tcp.proxy is None:
            self.start_tcp(step)

    @property
    def edge(self) -> str | None:
        """The namespace of the world's edge, where the servers live and the fault proxies
        stand (the mode's: the lab's hub, the sandbox world)."""
        return self.mode.edge

    def track_edge(self) -> None:
        """Connection tracking on in the world from before the first edge redirect to the
        session's end (see TrackConnections): removing a redirect resets nothing."""
        import pyroute2  # noqa: F401  (~0.2 s; now, not at the first switch-on's forget)

        from chaos.injectors.redirect import TrackConnections

        assert self.edge is not None  # wanted only where the mode offers an edge
        self.edge_tracking = TrackConnections(self.edge, tag=self.run_id,
                                              families=edge_families(self.mode.dual_stack))
        self.edge_tracking.apply(self.opened)

    def start_tcp(self, step) -> None:
        from chaos.injectors.tcp_proxy import start_tcp_proxy

        step(f"tcp: fault proxy at the world's edge, port {self.tcp.PORT}")
        run_dir = self.logs / "tcp-proxy"
        run_dir.mkdir(exist_ok=True)
        listeners = [{"name": "edge", "listen": f"0.0.0.0:{self.tcp.PORT}", "transparent": True}]
        if self.mode.dual_stack:  # the edge's IPv6 redirects land here
            listeners.append({"name": "edge6", "listen": f"[::]:{self.tcp.PORT}",
                              "transparent": True, "v6only": True})
        config = {"listeners": listeners, "seed": self.seed}
        self.tcp.proxy = start_tcp_proxy(self.opened, netns=self.edge, config=config, run_dir=run_dir)

    @property
    def ca(self):
        """The CA the fault proxy signs with and `serve: {http: {tls: true}}` servers use:
        the lab's own, else the state dir's (made once, kept: a client trusts it once)."""
        return self.mode.ca(self.state_dir)

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
        # "": every address of both families (a dual-stack sandbox redirects IPv6 here too)
        host = "" if self.mode.dual_stack else "0.0.0.0"
        self.http.proxy = start_http_proxy(self.opened, netns=self.edge,
                                           listen=(host, self.http.PORT), mode="transparent",
                                           run_dir=run_dir, confdir=confdir, upstream_ca=ca.cert)
        if not self.mode.clients_trust_ca:
            self.trust_ca()
        self.mark_logs("run")

    def mark_logs(self, scope: str) -> None:
        """Remember where each log ends: `requests` / `dns_queries` probes count from there."""
        import time

        self.place.marks[(scope, "dns")] = time.time()
        self.place.marks[(scope, "http")] = time.time()
        self.place.marks[(scope, "serve")] = time.time()
        for role, mark in self.mode.log_marks().items():
            self.place.marks[(scope, role)] = mark

    def server_events(self, name: str) -> Path:
        """The start / end records of a `serve:` server's requests (`requests:` counts them)."""
        return self.logs / f"{name}.requests.jsonl"

    def add_server(self, server) -> str:
        """Start one more server in an open sandbox; clients resolve it from now on."""
        return self.mode.add_server(self, server)

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
