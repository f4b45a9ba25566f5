"""The scenario format: pydantic models whose docstrings become the JSON Schema and `chaos list`.

A scenario says what to serve in the sandbox world, which faults to inject and what clients
must see before, during and after them. Fault models live in chaos/faults (one per type),
probe models in chaos/probes (one per kind); this module joins each into a discriminated
union: faults on ``type``, probes on the key that marks their kind.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from chaos.durations import PATTERN_TEXT, parse_duration
from chaos.scenario.modelbase import (
    AfterValidator,
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
from chaos.sizes import PATTERN_TEXT as SIZE_PATTERN, parse_size

if TYPE_CHECKING:
    from chaos.probes.base import ProbeBase

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

_LOOKS_NUMERIC = re.compile(r"^[0-9.]+$")


def check_destination(value: str) -> str:
    """An address, a CIDR or a host name (checked here, so `chaos validate` refuses what
    the plan would: an address or CIDR that does not parse is not taken for a name)."""
    try:
        ipaddress.ip_network(value, strict=False)
        return value
    except ValueError:
        pass
    address, slash, prefix = value.partition("/")
    if slash or ":" in value or _LOOKS_NUMERIC.match(value):
        try:
            ip = ipaddress.ip_address(address)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an address or CIDR: {exc}") from None
        limit = 32 if ip.version == 4 else 128
        raise ValueError(f"{value!r} is not a CIDR: the prefix length must be 0 to {limit}, "
                         f"not {prefix!r}")
    if value.startswith("*."):
        raise ValueError(f"{value!r}: a destination cannot be a wildcard (it is resolved to "
                         "addresses); name the hosts")
    check_hostname(value)
    return value


Destination = Annotated[
    str, AfterValidator(check_destination),
    WithJsonSchema({"type": "string", "description": "a host name, an address or a CIDR"})]
"""A fault's destination: a host name the run knows, an address or a CIDR."""


SANDBOX_NETS = (ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("2001:2::/48"))
"""The sandbox's address space: IPv4 and IPv6 ranges set aside for test beds."""


def _host_addresses(value):
    """`hosts:` values: one address or a list of at most one per family."""
    values = value if isinstance(value, list) else [value]
    addrs = [v if isinstance(v, ipaddress._BaseAddress) else ipaddress.ip_address(str(v))
             for v in values]
    if not addrs or len({a.version for a in addrs}) != len(addrs):
        raise ValueError("give one address, or one IPv4 and one IPv6 address")
    return sorted(addrs, key=lambda a: a.version)


HostAddresses = Annotated[
    list[ipaddress.IPv4Address | ipaddress.IPv6Address], BeforeValidator(_host_addresses),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"},
                                                   "maxItems": 2}],
                    "description": "an address, or [IPv4 address, IPv6 address]"})]
"""A `hosts:` entry's addresses, IPv4 first."""


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
        return regex_text(value)


def regex_text(value: str | None) -> str | None:
    """A regular expression that will be searched with: checked when the model is."""
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
    return value


class Expect(Strict):
    """Probes and what they must see: the steady state before, the symptom during, recovery after."""

    # Of the probe kinds a scenario uses: scenario_model() narrows these lists (probe_union).
    before: list[Any] = []
    """Must hold before any fault is injected (else the run stops without injecting)."""
    during: list[Any] = []
    """Run while the faults are on."""
    after: list[Any] = []
    """Must hold again once every fault is reverted."""


class Region(Strict):
    """A group of clients: a source range (a country's ISPs) and optionally a client profile
    (the kernel defaults of another OS family: initial TTL, MSS, TCP options)."""

    range: ipaddress.IPv4Network
    """Source addresses, a /30 or larger inside 198.18.0.0/15 (the client gets the .2)."""
    range6: ipaddress.IPv6Network | None = None
    """IPv6 source addresses of a dual-stack run, a /126 or larger inside 2001:2::/48 (the
    client gets the ::2; default: 2001:2:0:<256 + the region's index, in hex>::/64)."""
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


Size = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 0},
                              {"type": "string", "pattern": SIZE_PATTERN}],
                    "description": "a size: 10kB, 50MB, 1GiB or a number of bytes"}),
]

IMAGE_REF = r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)+(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$"
PLATFORM = r"^[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9]+)?$"


class LayerCount(Strict):
    """`count` layers of `size` bytes each."""

    count: int = Field(ge=1, le=500)
    """How many layers."""
    size: Size
    """The size of each (random bytes, incompressible)."""


class LabImage(Strict):
    """An image the lab builds offline and pushes to its upstream before the run: layers of
    seeded random bytes (the same declaration gives the same digests, in every run), or a
    runnable busybox layer; one platform, or a manifest list of several. Built once and
    reused by later runs from `<state dir>/images/<hash of the declaration>`."""

    name: str = Field(pattern=IMAGE_REF)
    """`repo[:tag]` in the upstream (Hub's names: `library/x`); the tag defaults to 1."""
    layers: list[Size] | LayerCount = []
    """The layers' sizes (`[50MB]`, `[1MB, 1MB]`) or `{count: 100, size: 10kB}`; default:
    one busybox layer naming the image and platform in /etc/chaos-image."""
    platforms: list[Annotated[str, Field(pattern=PLATFORM)]] = []
    """`os/arch[/variant]` each (`[linux/amd64, linux/arm64]`): a manifest list with one
    image per platform, each with its own layers; default: one linux/amd64 image."""

    @field_validator("layers")
    @classmethod
    def _bounded(cls, layers):
        sizes = [layers.size] * layers.count if isinstance(layers, LayerCount) else layers
        if any(size < 1 for size in sizes):
            raise ValueError("a layer must hold at least 1 byte")
        if sum(sizes) > 2 * 1000**3:
            raise ValueError("an image's layers may hold at most 2GB in all")
        return layers

    @property
    def ref(self) -> str:
        return self.name if ":" in self.name.rsplit("/", 1)[-1] else f"{self.name}:1"

    def declared(self):
        """The lab's description of this image (chaos.lab.declared.DeclaredImage)."""
        from chaos.lab.declared import DeclaredImage

        repo, _, tag = self.ref.rpartition(":")
        layers = self.layers
        sizes = (layers.size,) * layers.count if isinstance(layers, LayerCount) else tuple(layers)
        return DeclaredImage(repo, tag, sizes, tuple(self.platforms))


class WarmImage(Strict):
    """An image pulled through the cache before the run, so it is cached."""

    image: str = Field(pattern=IMAGE_REF)
    """`repo:tag`."""
    platform: str | None = Field(None, pattern=PLATFORM)
    """Pull only this platform of a multi-arch image (`linux/arm64`): the cache then holds
    the manifest list and that platform's image, nothing of the others."""

    @model_validator(mode="before")
    @classmethod
    def _plain(cls, value):
        return {"image": value} if isinstance(value, str) else value

    def item(self):
        return self.image if self.platform is None else (self.image, self.platform)


class LabSpec(Strict):
    """The registry lab (`lab: registry`): an upstream answering as registry-1.docker.io with
    Hub's token flow and CDN redirect, a pull-through cache, a client dockerd and skopeo
    (and, on first use by a probe, a containerd for `ctr` and podman).
    Probes run in the lab's client namespace; `{cache}`, `{upstream}`, `{auth}`, `{cdn}`
    name its services. Faults act in the client and the cache namespaces (`region: cache`
    or `region: default` for one of them); the world's edge is the upstream's network."""

    dockerd: bool = True
    """Start the client dockerd (docker_pull probes need it)."""
    dns: bool = False
    """Resolve the lab's names through the run's fake DNS server instead of hosts files
    (on by itself when a fault or probe of the scenario needs that server: `dns` faults,
    `dns_queries` probes)."""
    client_os: Literal["linux", "macos", "windows", "network-device"] | None = None
    """Make the docker host's kernel send what that OS family sends (initial TTL, TCP
    options), for packet-level bot-mitigation faults."""
    images: list[LabImage] = []
    """More images in the upstream, beside library/busybox:1, library/never-pulled:1 and
    library/big:1 (28 MB in three layers), which it always holds (docs/lab.md)."""
    warm: list[WarmImage] = [WarmImage(image="library/busybox:1")]
    """Images pulled through the cache before the run, so they are cached (`repo:tag`, or
    `{image: repo:tag, platform: os/arch}` for one platform); every other image is not."""
    cache: Literal["distribution", "nginx"] = "distribution"
    """The pull-through cache: docker-registry (distribution) in proxy mode, or nginx as a
    caching reverse proxy of Hub (docs/lab.md); `chaos run --cache` overrides it."""
    client_version: str | None = None
    """The client dockerd's generation, MAJOR.MINOR: `20.10` (Debian 12's), `26.1` (Debian
    13's, installed beside it by scripts/setup); default the system's. `chaos run
    --client-version` overrides it (docs/lab.md, "Client generations")."""

    @field_validator("client_version")
    @classmethod
    def _known_version(cls, value: str | None) -> str | None:
        from chaos.lab.generations import GenerationError, resolve_name

        if value is not None:
            try:
                resolve_name(f"dockerd@{value}")
            except GenerationError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _known_images(self):
        fixed = {"library/busybox:1", "library/never-pulled:1", "library/big:1"}
        declared = [image.ref for image in self.images]
        for index, ref in enumerate(declared):
            if ref in fixed or ref in declared[:index]:
                raise ValueError(f"images[{index}].name: {ref} is declared twice (or is one "
                                 "of the lab's own images)")
        for index, warm in enumerate(self.warm):
            if warm.platform and not any(i.ref == warm.image and i.platforms for i in self.images):
                raise ValueError(f"warm[{index}].platform: {warm.image} is not a multi-arch "
                                 "image (declare it with `platforms:`)")
        return self

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
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    """Its address (default: the next free one in 198.18.1.0/24). An IPv6 address (inside
    2001:2::/48) is taken as `address6` and makes the run dual-stack."""
    address6: ipaddress.IPv6Address | None = None
    """Its IPv6 address in a dual-stack run (default: the next free one in 2001:2:0:1::/64).
    A server of a dual-stack run listens on both; its name resolves to both."""
    http: HttpServe = HttpServe()
    """What it answers: port, status, body (default: 200 `ok` on port 80)."""

    @model_validator(mode="after")
    def _v6_address(self):
        if isinstance(self.address, ipaddress.IPv6Address):
            if self.address6 is not None:
                raise ValueError("address is IPv6 and address6 is given too: give the IPv4 "
                                 "address as `address`")
            self.address, self.address6 = None, self.address
        for addr in (self.address, self.address6):
            if addr is not None and not any(addr in net for net in SANDBOX_NETS):
                raise ValueError(f"{addr} is outside the sandbox's ranges (198.18.0.0/15, "
                                 "2001:2::/48)")
        return self


def fault_union(types: tuple[type, ...]) -> Any:
    """These fault types, discriminated on `type`."""
    return Annotated[Union[types], Field(discriminator="type")]  # noqa: UP007 (a tuple: see probe_union)


def probe_union(classes: tuple[type[ProbeBase], ...]) -> Any:
    """These probe kinds, each told by its key (chaos.probes.probe_key: the first registered
    key a mapping holds); tagged with their kind names."""
    from chaos.probes import PROBES, probe_key

    # A kind several classes share (`step`: chaos.steps) is told apart by their keys.
    shared = {cls.kind for cls in classes if sum(c.kind == cls.kind for c in classes) > 1}
    tags = {cls: f"{cls.kind}-{cls.key}" if cls.kind in shared else cls.kind for cls in classes}
    kinds = {cls.key: tags[cls] for cls in classes}

    def tag(value: Any) -> str | None:
        if isinstance(value, dict):
            key = probe_key(value)
            return None if key is None else kinds.get(key, key)
        return tags.get(type(value), getattr(type(value), "kind", None))

    # Union[...] of a tuple built at run time has no `X | Y` spelling (ruff's UP007 fix would
    # turn it into the bare tuple).
    return Annotated[
        Union[tuple(Annotated[cls, Tag(tags[cls])] for cls in classes)],  # noqa: UP007
        Discriminator(tag, custom_error_type="probe_kind",
                      custom_error_message="a probe needs one of the keys " + ", ".join(PROBES)),
    ]


class ScenarioBase(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    """Short identifier: letters, digits, '-', '_', '.'."""
    description: str = ""
    """What happened in the real incident, what a client saw, what a good setup must do."""
    serve: list[Serve] = []
    """Servers started in the sandbox world for this run."""
    hosts: dict[HostName, HostAddresses] = {}
    """Extra names in the sandbox's hosts file (name: address, or [IPv4, IPv6 address]; an
    IPv6 address makes the run dual-stack)."""
    ipv6: bool | None = None
    """Dual-stack sandbox: clients, regions and servers get IPv6 addresses from 2001:2::/48
    beside their IPv4 ones, served names resolve to both (clients try IPv6 first), and
    faults act on both families unless their `family:` says otherwise. Default: on when
    `serve:`, `hosts:` or `regions:` give an IPv6 address or range, else off (IPv4 only).
    With `lab:`, the lab's cache and client (dockerd, skopeo) are dual-stack (2001:2::20,
    2001:2::30); its upstream, token server and CDN stay IPv4-only."""
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
    host_setup: Literal["docker-cache"] | None = None
    """A host drill's own set-up, started on this machine (needs --host) unless `--var
    cache=HOST:PORT` names a cache of yours: `docker-cache` starts a dockerd, a stand-in Docker
    Hub and a pull-through cache container, dual-stack (`{cache}`, `{hub}`, `{cache6}`,
    `{hub6}`, `{docker_host}`; Hub's names plan to the stand-in's addresses). All undone at
    the end (docs/host-drills.md)."""
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
        taken6 = {"default client": ipaddress.ip_network("2001:2::/64"),
                  "servers": ipaddress.ip_network("2001:2:0:1::/64")}
        for name, region in regions.items():
            net6 = region.range6
            if net6 is None:
                continue
            if not net6.subnet_of(ipaddress.ip_network("2001:2::/48")) or net6.prefixlen > 126:
                raise ValueError(f"region {name}: {net6} must be a /126 or larger inside 2001:2::/48")
            for other, used in taken6.items():
                if net6.overlaps(used):
                    raise ValueError(f"region {name}: {net6} overlaps {other} ({used})")
            taken6[f"region {name}"] = net6
        return regions

    def v6_given(self) -> list[str]:
        """Where the scenario gives an IPv6 address or range (which makes it dual-stack)."""
        found = [f"serve[{i}].address" for i, s in enumerate(self.serve) if s.address6]
        found += [f"hosts.{n}" for n, addrs in self.hosts.items() if any(a.version == 6 for a in addrs)]
        found += [f"regions.{n}.range6" for n, r in self.regions.items() if r.range6]
        return found

    @property
    def dual_stack(self) -> bool:
        """IPv6 beside IPv4 in the sandbox (`ipv6:`, or an IPv6 address given)."""
        return self.ipv6 if self.ipv6 is not None else bool(self.v6_given())

    @model_validator(mode="after")
    def _ipv6_consistent(self):
        given = self.v6_given()
        if self.ipv6 is False and given:
            raise ValueError(f"ipv6: false, but {given[0]} is IPv6 (drop ipv6: false to make "
                             "the sandbox dual-stack)")
        if self.lab and given:
            raise ValueError(f"{given[0]}: the registry lab takes `ipv6: true` (its cache and "
                             "client dual-stack), not IPv6 addresses of its own")
        return self

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
    def _steps_have_a_lab(self):
        for phase in ("before", "during", "after"):
            for index, item in enumerate(getattr(self.expect, phase)):
                if getattr(item, "needs_lab", False) and self.lab is None:
                    raise ValueError(f"expect.{phase}[{index}].{item.key}: a `{item.key}` step "
                                     "acts on the registry lab: add `lab: registry`")
                digest = getattr(item, "digest", None)
                if isinstance(digest, str) and digest.startswith("{digest:"):
                    ref = digest[len("{digest:"):-1]
                    known = {"library/busybox:1", "library/never-pulled:1", "library/big:1"} | {
                        i.ref for i in (self.lab.images if self.lab else [])}
                    if ref not in known:
                        raise ValueError(f"expect.{phase}[{index}].digest: {ref} is not one of the "
                                         f"lab's images ({', '.join(sorted(known))})")
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


_SCENARIOS: dict[tuple[frozenset, frozenset], type[ScenarioBase]] = {}


def scenario_model(types=None, probes=None) -> type[ScenarioBase]:
    """The Scenario model whose faults may be of ``types`` (names) and whose probes of the
    kinds marked by ``probes`` (keys); default: every registered one. A file is validated
    against the types and kinds it names, so a run imports only those; an unknown name
    still gets "unknown fault type ..., known types: ..." (the union's tag check lists the
    registry's names, chaos.scenario.load) or "a probe needs one of the keys ..."."""
    from chaos.faults import FAULTS, fault_types
    from chaos.probes import PROBES, probe_types

    key = frozenset(FAULTS if types is None else [t for t in types if t in FAULTS])
    # A union needs a member: with no known type named, the first stands in (an unknown
    # `type:` is then still refused by the union's tag check, with the registry's names).
    key = key or frozenset(list(FAULTS)[:1])
    kinds = frozenset(PROBES if probes is None else [k for k in probes if k in PROBES])
    kinds = kinds or frozenset(list(PROBES)[:1])
    if (key, kinds) not in _SCENARIOS:
        from chaos.scenario.modelbase import create_model

        probe = probe_union(tuple(probe_types(kinds)))
        faults: Any = list[fault_union(tuple(fault_types(key)))]  # type: ignore[misc]
        probes_list: Any = list[probe]  # type: ignore[valid-type]
        none: list[Any] = []
        expect = create_model("Expect", __base__=Expect, __doc__=Expect.__doc__,
                              before=(probes_list, none), during=(probes_list, none),
                              after=(probes_list, none))
        _SCENARIOS[key, kinds] = create_model(
            "Scenario", __base__=ScenarioBase,
            __doc__="A chaos scenario: servers to start, faults to inject, what clients must see.",
            expect=(expect, expect()),
            faults=(faults, Field(
                default_factory=list,
                description="The faults, injected in order and reverted in reverse order.")),
        )
    return _SCENARIOS[key, kinds]
