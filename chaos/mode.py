"""Modes: where a run's clients and servers live, what must be started, how it is undone.

One interface, three implementations: ``HostMode`` (here: the machine itself, `--host`),
``SandboxMode`` (chaos.sandbox.mode: namespaces the run makes) and ``LabMode``
(chaos.lab.mode: the registry lab). The session asks its mode and never which mode it has.

Undoing is the same for all three: whatever a mode starts is recorded in the session's
journal before it is made, so ``Session.close()`` (and `chaos recover` after a crash) undoes
it with everything else, last first.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from chaos.errors import PlanError

if TYPE_CHECKING:
    from chaos.lab.ca import LabCA
    from chaos.lab.host_stack import DockerCache
    from chaos.lab.lab import Lab
    from chaos.plan import Net
    from chaos.sandbox.netns import Sandbox
    from chaos.session import Session

SERVICES = ("dns", "http", "tcp")
"""The run's services a fault or probe may ask for (PlanContext.use_dns / use_http / use_tcp)."""


class Mode:
    """Where a run acts. Planning reads it (nothing changes on the machine); ``open`` starts
    what the plan needs, each step journaled."""

    name: ClassVar[str]
    host_mode: ClassVar[bool] = False
    """The host's guardrails apply (default gateways, loopback, the machine's own names)."""
    clients_trust_ca: ClassVar[bool] = False
    """The clients trust the run's CA from the start (else the session makes them, once a
    fault proxy signs with it)."""
    own_docker: ClassVar[bool] = False
    """The clients talk to a daemon of the mode's own (`docker:` only names the one asked
    about `container:` targets)."""
    sandbox: Sandbox | None = None
    """The sandbox's namespaces (chaos.sandbox.netns.Sandbox), in sandbox mode."""
    lab: Lab | None = None
    """The running lab (chaos.lab.Lab), in lab mode once open."""

    def __init__(self) -> None:
        self.zone: dict[str, str] = {}
        """Names the run knows (served names, lab services, `hosts:`) -> addresses."""
        self.zone6: dict[str, str] = {}
        """Names of a dual-stack run -> their IPv6 address, beside the one in ``zone``."""
        self.dual_stack = False
        """Clients and servers have IPv6 addresses too (a dual-stack sandbox)."""

    # -- where: read at plan time -----------------------------------------------------------
    @property
    def edge(self) -> str | None:
        """The namespace at the world's edge, where the servers live and the fault proxies
        stand; None: the mode has none."""
        return None

    def clients(self) -> dict[str, tuple[str | None, Path]]:
        """Region -> (client namespace, its hosts file): where client-side faults act."""
        raise NotImplementedError

    def region_ranges(self) -> dict[str, Net]:
        """Region -> its clients' source range."""
        return {}

    def region_ranges6(self) -> dict[str, Net]:
        """Region -> its clients' IPv6 source range (a dual-stack run)."""
        return {}

    def dns_zone(self) -> dict[str, list[str]]:
        """The zone as the fake DNS server reads it: name -> its addresses (A and AAAA)."""
        return {name: [addr, *([self.zone6[name]] if name in self.zone6 else [])]
                for name, addr in {**self.zone6, **self.zone}.items()}

    def offers(self, service: str) -> bool:
        """Whether a fault or probe may ask for ``service`` (one of SERVICES)."""
        return False

    # -- what must be started ---------------------------------------------------------------
    def startup(self, session: Session) -> list[str]:
        """What ``open`` will start for the plan made so far, in order (dry run, tests)."""
        return []

    def open(self, session: Session, step) -> None:
        """Start what the plan needs, each change journaled; the services the planned
        faults and probes asked for included (``session.ensure_services``)."""

    def start_dns(self, session: Session, step) -> None:
        """Start the run's fake DNS server (asked for after ``open``, by a fixture)."""
        raise PlanError((), f"the {self.name} mode has no fake DNS server")

    def add_server(self, session: Session, server) -> str:
        """Start one more server (`serve:`) in an open run; its address."""
        raise PlanError(("serve",), f"`serve:` needs the sandbox, not the {self.name} mode")

    # -- what the run reports ---------------------------------------------------------------
    def ca(self, state_dir) -> LabCA:
        """The CA the fault proxy signs with and the run's TLS servers use: the state
        dir's (made once, kept: a client trusts it once)."""
        from chaos.journal import state_dir as resolve
        from chaos.lab.ca import state_ca

        return state_ca(resolve(state_dir))

    def log_marks(self) -> dict[str, object]:
        """Positions in the mode's own logs (role -> mark) for the counting probes."""
        return {}

    def opened(self, session: Session) -> dict | None:
        """The timeline event that says what ``open`` made (None: nothing to say)."""
        return None

    def describe(self, run_id: str) -> list[str]:
        """Lines a dry run shows about what the mode itself changes (beyond the faults)."""
        return []


class HostMode(Mode):
    """`--host`: the machine itself; clients are the host's processes, /etc/hosts is the
    machine's. No edge: only faults that act on the host apply. ``open`` starts nothing,
    unless the scenario names a host set-up (`host_setup: docker-cache`, chaos.lab.host_stack)
    and no `--var cache=` names a cache of the user's own."""

    name = "host"
    host_mode = True

    def __init__(self, hosts: dict | None = None, setup: str | None = None,
                 variables: dict | None = None, run_id: str = "") -> None:
        super().__init__()
        self.run_id = run_id
        # A cache of the user's own (`--var cache=`) stands in for the set-up: nothing to start.
        self.setup = setup if setup and "cache" not in (variables or {}) else None
        self.started: DockerCache | None = None
        """What the set-up started (chaos.lab.host_stack.DockerCache), once open."""
        if self.setup:
            from chaos.lab import host_stack

            self.zone.update(host_stack.zone())
            self.zone6.update(host_stack.zone6())
        zone, zone6 = split_hosts(hosts)
        self.zone.update(zone)
        self.zone6.update(zone6)

    @property
    def own_docker(self) -> bool:  # type: ignore[override]
        return self.setup is not None

    def clients(self) -> dict[str, tuple[str | None, Path]]:
        return {"host": (None, Path("/etc/hosts"))}

    def startup(self, session: Session) -> list[str]:
        return [f"host set-up {self.setup}: bridge, dockerd, stand-in Hub, cache"] if self.setup else []

    def describe(self, run_id: str) -> list[str]:
        if not self.setup:
            return []
        from chaos.lab import host_stack

        return host_stack.describe(run_id.removeprefix("chaos-"))

    def open(self, session: Session, step) -> None:
        if not self.setup:
            return
        from chaos.lab import host_stack

        journal = session.opened
        self.started = started = host_stack.start(journal, journal.run_dir / "host-setup",
                                                  self.run_id.removeprefix("chaos-"), step)
        place = session.place
        place.variables = {**started.placeholders(), **place.variables}
        place.env["DOCKER_HOST"] = started.dockerd.base_url


def split_hosts(hosts) -> tuple[dict[str, str], dict[str, str]]:
    """`hosts:` (name -> an address or a list of one per family) -> (zone, zone6): the
    IPv4 address (else the only one) in the zone, the IPv6 one of a name with both in
    zone6."""
    import ipaddress

    zone: dict[str, str] = {}
    zone6: dict[str, str] = {}
    for name, value in (hosts or {}).items():
        addrs = [ipaddress.ip_address(str(a)) for a in (value if isinstance(value, list) else [value])]
        addrs.sort(key=lambda a: a.version)
        zone[name] = str(addrs[0])
        if len(addrs) > 1:
            zone6[name] = str(addrs[1])
    return zone, zone6


def mode_name(host_mode: bool, lab) -> str:
    return "host" if host_mode else "lab" if lab is not None else "sandbox"


def make_mode(*, run_id: str, host_mode: bool = False, serve=(), hosts=None, regions=None,
              lab=None, ipv6: bool = False, host_setup: str | None = None,
              variables: dict | None = None, pullers: dict[str, str] | None = None) -> Mode:
    """The mode a run asks for; what the host cannot give is refused here. ``pullers``: the
    lab's pulling clients' versions (``{"podman": "5.4"}``), ignored without a lab."""
    if host_mode:
        for key, value in (("serve", serve), ("regions", regions), ("lab", lab)):
            if value:
                raise PlanError((key,), f"`{key}:` needs the sandbox; with --host, point probes "
                                        "at servers you run yourself")
        return HostMode(hosts, host_setup, variables, run_id)
    if host_setup:
        raise PlanError(("host_setup",), "a host drill: it starts its set-up and changes this "
                                         "machine itself, so it runs only with --host")
    if lab is not None:
        from chaos.lab.mode import LabMode

        return LabMode(run_id, lab, hosts, ipv6=ipv6, pullers=pullers)
    from chaos.sandbox.mode import SandboxMode

    return SandboxMode(run_id, serve, hosts, regions, ipv6=ipv6)
