"""The scenario format: pydantic models whose docstrings become the JSON Schema and `chaos list`.

A scenario says what to serve in the sandbox world, which faults to inject and what clients
must see before, during and after them. Fault models live in chaos/faults (one per type);
this module joins them into one discriminated union on ``type``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from chaos.durations import PATTERN_TEXT, parse_duration

Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0},
                              {"type": "string", "pattern": PATTERN_TEXT}],
                    "description": "a duration: 250ms, 5s, 2m, 1h or a number of seconds"}),
]

HOSTNAME = re.compile(r"^(\*\.)?([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)*"
                      r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.?$")


def check_hostname(name: str) -> str:
    if not HOSTNAME.match(name) or len(name) > 253:
        raise ValueError(f"{name!r} is not a host name")
    return name.lower().rstrip(".")


HostName = Annotated[str, BeforeValidator(lambda v: check_hostname(v) if isinstance(v, str) else v)]


class Strict(BaseModel):
    """Base of every model: unknown keys are errors. Attribute docstrings are the fields'
    descriptions in `chaos schema` and `chaos list` (read there: chaos.scenario.schema)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=False)


class Window(Strict):
    """When a fault is on, counted from the start of the `during` phase."""

    after: Duration = 0.0
    """Switch the fault on this long after `during` starts."""
    for_: Duration | None = Field(None, alias="for")
    """Keep it on this long, then revert it (default: until `during` ends)."""


class Flap(Strict):
    """Switch a fault on and off repeatedly: on for `period * duty`, then off, and again."""

    period: Duration
    """Length of one on/off cycle."""
    duty: float = Field(0.5, gt=0, le=1)
    """Share of each period during which the fault is on (0 < duty <= 1)."""

    @field_validator("period")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("period must be longer than 0")
        return value


class TextMatch(Strict):
    """Checks on a text: every given check must hold."""

    contains: str | list[str] | None = None
    """Substring(s) that must appear."""
    not_contains: str | list[str] | None = None
    """Substring(s) that must not appear."""
    regex: str | None = None
    """A Python regular expression that must match somewhere (re.search)."""

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"bad regular expression: {exc}") from None
        return value


class ProbeBase(Strict):
    name: str | None = None
    """Shown in the console and reports (default: the command, URL or address)."""
    within: Duration | None = None
    """The probe must finish within this time. A probe still running at `within` plus a
    grace period is killed and reported as hung, not as failed."""
    timeout: Duration | None = None
    """Hard limit when there is no `within` (default 30s)."""
    region: str | None = None
    """Run from this region's client namespace (see `regions:`) instead of the default client."""


class CommandProbe(ProbeBase):
    """Run a shell command inside the sandbox (or on the host with --host)."""

    run: str
    """The shell command (sh -c)."""
    exit: int | Literal["nonzero", "any"] = 0
    """Expected exit status: a number, `nonzero` or `any`."""
    stdout: TextMatch | None = None
    """Checks on standard output."""
    stderr: TextMatch | None = None
    """Checks on standard error."""
    output: TextMatch | None = None
    """Checks on standard output and standard error together."""


class HttpProbe(ProbeBase):
    """Make one HTTP request from inside the sandbox."""

    http: str = Field(pattern=r"^https?://")
    """The URL."""
    method: str = "GET"
    """The request method (GET, HEAD, POST, ...)."""
    status: int | list[int] | Literal["error"] = 200
    """Expected status code(s), or `error` when no HTTP answer must come back."""
    body: TextMatch | None = None
    """Checks on the response body."""
    headers: dict[str, str] = {}
    """Request headers."""


class TcpProbe(ProbeBase):
    """Open one TCP connection from inside the sandbox."""

    tcp: str = Field(pattern=r"^(\[[0-9A-Fa-f:.]+\]|[^:\s]+):\d{1,5}$")
    """host:port to connect to."""
    connect: Literal["ok", "refused", "timeout", "unreachable", "error"] = "ok"
    """What must happen: ok, refused (RST), timeout (no answer), unreachable (no route),
    error (any failure)."""
    connect_timeout: Duration = 3.0
    """How long the connect waits before it counts as a timeout."""


class DockerPullProbe(ProbeBase):
    """Pull an image with the lab's dockerd (through the docker SDK), the local copy removed
    first so the pull is real. Its mirror is the lab's cache; Docker Hub's names resolve to
    the lab's upstream."""

    docker_pull: str = Field(pattern=r"^[^\s]+$")
    """The image reference, e.g. library/busybox:1 or {cache}/library/busybox:1."""
    ok: bool | None = True
    """Whether the pull must succeed (false: it must fail; null: either, only `within` and
    the other checks count)."""
    error: TextMatch | None = None
    """Checks on the error text of a failed pull."""
    layers: int | None = Field(None, ge=0)
    """How many layers the pull must have downloaded (0: everything came from the local store)."""


class SkopeoCopyProbe(ProbeBase):
    """Copy an image with skopeo (a daemon-less client) from the lab's client namespace into a
    scratch folder: what a CI job without dockerd does."""

    skopeo_copy: str = Field(pattern=r"^[^\s]+$")
    """The image reference, e.g. {cache}/library/busybox:1 (docker:// is implied)."""
    ok: bool | None = True
    """Whether the copy must succeed (false: it must fail; null: either)."""
    error: TextMatch | None = None
    """Checks on skopeo's output of a failed copy."""


class Counts(Strict):
    """What a counting probe expects of its count."""

    since: Literal["phase", "run"] = "phase"
    """Count from the start of this probe's phase, or from the start of the run."""
    count: int | None = Field(None, ge=0)
    """Exactly this many must have been counted."""
    at_least: int | None = Field(None, ge=0)
    """At least this many must have been counted."""
    at_most: int | None = Field(None, ge=0)
    """At most this many may have been counted (0: none at all)."""


class CountedProbe(ProbeBase, Counts):
    @model_validator(mode="after")
    def _some_bound(self):
        self._lift()
        if self.count is None and self.at_least is None and self.at_most is None:
            raise ValueError("give count, at_least or at_most")
        return self

    def _lift(self) -> None:
        """Hook: a probe whose key also takes a mapping moves that mapping's keys up here."""


class RequestsProbe(CountedProbe):
    """Count requests in a lab server's access log since the phase began: proves where a
    pull was served from (e.g. the upstream saw no blob request)."""

    requests: Literal["upstream", "registry", "auth", "cdn", "cache"]
    """Whose access log: the upstream registry, the token server, the CDN or the cache."""
    method: str | None = None
    """Only requests with this method (GET, HEAD, ...)."""
    path: str | None = None
    """A substring of the request path, e.g. /blobs/."""
    status: int | None = None
    """Only requests answered with this status."""
    client: str | None = None
    """Only requests from this client address (the cache is 198.18.0.20, the docker host 198.18.0.30)."""


class DnsQuery(Counts):
    """`dns_queries:` as a mapping: the name, with the counts and query type beside it."""

    name: str
    """The name asked for (exact)."""
    qtype: str | None = None
    """Only queries of this type (A, AAAA, ...)."""


class DnsQueriesProbe(CountedProbe):
    """Count the queries the sandbox's fake DNS server got for a name (e.g. a client with a
    DNS cache must not ask again)."""

    dns_queries: Annotated[
        Annotated[str, Tag("name")] | Annotated[DnsQuery, Tag("mapping")],
        Discriminator(lambda v: "mapping" if isinstance(v, (dict, DnsQuery)) else "name")]
    """The name asked for (exact), or a mapping: `{name: NAME, at_least: 1}` (its other keys
    are those of this probe)."""
    qtype: str | None = None
    """Only queries of this type (A, AAAA, ...)."""

    def _lift(self) -> None:
        query = self.dns_queries
        if not isinstance(query, DnsQuery):
            return
        for key in sorted(query.model_fields_set - {"name"}):
            if key in self.model_fields_set:
                raise ValueError(f"{key}: given twice, inside `dns_queries:` and beside it")
            setattr(self, key, getattr(query, key))
        self.dns_queries = query.name


class HttpRequestsProbe(CountedProbe):
    """Count the requests the run's HTTP fault proxy saw for a host (e.g. the 206 answers a
    resuming client got)."""

    http_requests: str
    """The host name (`*` for every host)."""
    status: int | None = None
    """Only requests answered with this status."""
    path: str | None = None
    """Only paths containing this."""
    client: str | None = None
    """Only requests from this client address (in the lab: the docker host is 198.18.0.30;
    the servers behind the proxy see the proxy's address instead, so count here)."""


_PROBE_KEYS = (("run", "command"), ("http", "http"), ("tcp", "tcp"),
               ("docker_pull", "docker-pull"), ("requests", "requests"), ("dns_queries", "dns-queries"),
               ("http_requests", "http-requests"), ("skopeo_copy", "skopeo-copy"))
_PROBE_CLASSES: dict[str, type[Strict]] = {"command": CommandProbe, "http": HttpProbe, "tcp": TcpProbe,
                  "docker-pull": DockerPullProbe, "requests": RequestsProbe,
                  "dns-queries": DnsQueriesProbe, "http-requests": HttpRequestsProbe,
                  "skopeo-copy": SkopeoCopyProbe}


def _probe_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return next((kind for key, kind in _PROBE_KEYS if key in value), None)
    return next((k for k, cls in _PROBE_CLASSES.items() if type(value) is cls), None)


if TYPE_CHECKING:  # a union built at run time: a type checker cannot follow it
    Probe = Any
else:
    # Union[...] of a tuple built at run time has no `X | Y` spelling (ruff's UP007 fix would
    # turn it into the bare tuple).
    Probe = Annotated[
        Union[tuple(Annotated[cls, Tag(kind)] for kind, cls in _PROBE_CLASSES.items())],  # noqa: UP007
        Discriminator(_probe_kind, custom_error_type="probe_kind",
                      custom_error_message="a probe needs one of the keys "
                                           + ", ".join(key for key, _ in _PROBE_KEYS)),
    ]


class Expect(Strict):
    """Probes and what they must see: the steady state before, the symptom during, recovery after."""

    before: list[Probe] = []
    """Must hold before any fault is injected (else the run stops without injecting)."""
    during: list[Probe] = []
    """Run while the faults are on."""
    after: list[Probe] = []
    """Must hold again once every fault is reverted."""


class Region(Strict):
    """A group of clients: a source range (a country's ISPs) and optionally a client profile
    (the kernel defaults of another OS family: initial TTL, MSS, TCP options)."""

    range: ipaddress.IPv4Network
    """Source addresses, a /30 or larger inside 198.18.0.0/15 (the client gets the .2)."""
    os: Literal["linux", "macos", "windows", "network-device"] | None = None
    """Make the clients' kernel send what that OS family sends (initial TTL, TCP options)."""
    ttl: int | None = Field(None, ge=1, le=255)
    """Initial TTL of the clients' packets, `net.ipv4.ip_default_ttl` (overrides `os`)."""
    mss: int | None = Field(None, ge=88, le=65495)
    """Clamp the MSS the clients' SYNs advertise to this (a TCPMSS rule: it can only lower
    the link's MSS, 1460 on the sandbox's links)."""
    window_scaling: bool | None = None
    """TCP window scaling on or off, `net.ipv4.tcp_window_scaling` (overrides `os`)."""
    timestamps: bool | None = None
    """TCP timestamps on or off, `net.ipv4.tcp_timestamps` (overrides `os`)."""
    sack: bool | None = None
    """TCP selective acknowledgements on or off, `net.ipv4.tcp_sack` (overrides `os`)."""

    def profile(self) -> dict:
        """Keyword arguments of chaos.injectors.client_profile.client_profile (empty: none)."""
        given = {"os_family": self.os, "ttl": self.ttl, "mss": self.mss,
                 "window_scaling": self.window_scaling, "timestamps": self.timestamps,
                 "sack": self.sack}
        return {k: v for k, v in given.items() if v is not None}

    @model_validator(mode="before")
    @classmethod
    def _plain_range(cls, value):
        return {"range": value} if isinstance(value, str) else value


class LabSpec(Strict):
    """The registry lab (`lab: registry`): an upstream answering as registry-1.docker.io with
    Hub's token flow and CDN redirect, a pull-through cache, a client dockerd and skopeo.
    Probes run in the lab's client namespace; `{cache}`, `{upstream}`, `{auth}`, `{cdn}`
    name its services. Faults act in the client and the cache namespaces (`region: cache`
    or `region: default` for one of them); the world's edge is the upstream's network."""

    dockerd: bool = True
    """Start the client dockerd (docker_pull probes need it)."""
    dns: bool = False
    """Resolve the lab's names through the run's fake DNS server instead of hosts files
    (what `dns` faults in a lab need)."""
    client_os: Literal["linux", "macos", "windows", "network-device"] | None = None
    """Make the docker host's kernel send what that OS family sends (initial TTL, TCP
    options), for packet-level bot-mitigation faults."""
    warm: list[str] = ["library/busybox:1"]
    """Images pulled through the cache before the run, so they are cached. The lab also
    seeds library/never-pulled:1 and library/big:1 (28 MB in three layers), never cached."""

    @model_validator(mode="before")
    @classmethod
    def _named(cls, value):
        if value == "registry":
            return {}
        if isinstance(value, str):
            raise ValueError(f"unknown lab {value!r}: the lab is `registry`")
        return value


class HttpServe(Strict):
    """A small HTTP server: every GET answers the same status and body (Range gets 206);
    POST and PUT read the body and answer `received <bytes>`."""

    port: int | None = Field(None, ge=1, le=65535)
    """The TCP port it listens on (default 80, or 443 with `tls`)."""
    tls: bool = False
    """Answer HTTPS, with a certificate from the state dir's CA (`<state dir>/ca/ca.crt`),
    which the run's probes trust; see docs/http-faults.md."""
    status: int = Field(200, ge=100, le=599)
    """The status code of every answer."""
    body: str = "ok\n"
    """The body of every answer."""
    size: int | None = Field(None, ge=1, le=1 << 30)
    """Serve this many bytes instead of `body` (a download to cut short)."""

    @model_validator(mode="after")
    def _default_port(self):
        if self.port is None:
            self.port = 443 if self.tls else 80
        return self


class Serve(Strict):
    """A server the scenario starts in the sandbox world, reachable from the client by name."""

    name: HostName
    """Host name the sandbox resolves to this server."""
    address: ipaddress.IPv4Address | None = None
    """Its address (default: the next free one in 198.18.1.0/24)."""
    http: HttpServe = HttpServe()
    """What it answers: port, status, body (default: 200 `ok` on port 80)."""


def fault_union(types: tuple[type, ...]) -> Any:
    """These fault types, discriminated on `type`."""
    return Annotated[Union[types], Field(discriminator="type")]  # noqa: UP007 (a tuple: see Probe)


class ScenarioBase(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    """Short identifier: letters, digits, '-', '_', '.'."""
    description: str = ""
    """What happened in the real incident, what a client saw, what a good setup must do."""
    serve: list[Serve] = []
    """Servers started in the sandbox world for this run."""
    hosts: dict[HostName, ipaddress.IPv4Address] = {}
    """Extra names in the sandbox's hosts file (name: address)."""
    regions: dict[Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9]{0,5}$")], Region] = {}
    """Client regions (e.g. `ES: 198.18.64.0/24`, or `win: {range: ..., os: windows}`): each
    gets its own client namespace with a source address from its range."""
    expect: Expect = Expect()
    """The probes."""
    lab: LabSpec | None = None
    """Start the registry lab for this run (`lab: registry`)."""
    docker: str | None = None
    """The docker daemon to ask about `container:` targets (`unix:///path/docker.sock` or a
    socket path); --docker-host wins over it; default DOCKER_HOST, else the local socket."""
    seed: int | None = None
    """Seed of every random choice the run's fault servers make (probabilities, random
    answers), so a run can be repeated; default: fresh randomness each run."""
    _source: object = PrivateAttr(default=None)  # the loader's SourceMap, for located errors

    @field_validator("regions")
    @classmethod
    def _regions_fit(cls, regions: dict) -> dict:
        taken = {"default client": ipaddress.ip_network("198.18.0.0/24"),
                 "servers": ipaddress.ip_network("198.18.1.0/24")}
        for name, region in regions.items():
            net = region.range
            if name.lower() in ("c", "w", "default"):
                raise ValueError(f"region name {name!r} is reserved")
            if not net.subnet_of(ipaddress.ip_network("198.18.0.0/15")) or net.prefixlen > 30:
                raise ValueError(f"region {name}: {net} must be a /30 or larger inside 198.18.0.0/15")
            for other, used in taken.items():
                if net.overlaps(used):
                    raise ValueError(f"region {name}: {net} overlaps {other} ({used})")
            taken[f"region {name}"] = net
        return regions

    @model_validator(mode="after")
    def _probe_regions_exist(self):
        known_regions = set(self.regions) | ({"default", "cache"} if self.lab else set())
        for phase in ("before", "during", "after"):
            for index, probe in enumerate(getattr(self.expect, phase)):
                if probe.region is not None and probe.region not in known_regions:
                    known = ", ".join(sorted(known_regions)) or "none declared"
                    raise ValueError(f"expect.{phase}[{index}].region: unknown region "
                                     f"{probe.region!r} (regions: {known})")
        return self

    @model_validator(mode="after")
    def _unique_names(self):
        seen = set()
        for index, server in enumerate(self.serve):
            if server.name in seen or server.name in self.hosts:
                raise ValueError(f"serve[{index}].name: {server.name} is declared twice (serve/hosts)")
            seen.add(server.name)
        if self.lab and (self.serve or self.regions):
            raise ValueError("a lab scenario brings its own servers and clients: "
                             "no serve: or regions: beside lab:")
        return self


_SCENARIOS: dict[frozenset, type[ScenarioBase]] = {}


def scenario_model(types=None) -> type[ScenarioBase]:
    """The Scenario model whose faults may be of ``types`` (names; default: every registered
    type). A file is validated against the types it names, so a run imports only those; an
    unknown name still gets "unknown fault type ..., known types: ..." (the union's tag check
    lists the registry's names, chaos.scenario.load)."""
    from chaos.faults import FAULTS, fault_types

    key = frozenset(FAULTS if types is None else [t for t in types if t in FAULTS])
    # A union needs a member: with no known type named, the first stands in (an unknown
    # `type:` is then still refused by the union's tag check, with the registry's names).
    key = key or frozenset(list(FAULTS)[:1])
    if key not in _SCENARIOS:
        from pydantic import create_model

        faults: Any = list[fault_union(tuple(fault_types(key)))]  # type: ignore[misc]
        _SCENARIOS[key] = create_model(
            "Scenario", __base__=ScenarioBase,
            __doc__="A chaos scenario: servers to start, faults to inject, what clients must see.",
            faults=(faults, Field(
                default_factory=list,
                description="The faults, injected in order and reverted in reverse order.")),
        )
    return _SCENARIOS[key]
