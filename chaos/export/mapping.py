"""Each fault type's Chaos Mesh equivalent, or why it has none and what comes closest.

One function per fault type, in ``MAPPERS``; a fault type from a plugin maps by defining
``chaos_mesh(target) -> list[MeshChaos]`` on its model (and raising ``Unmappable``). The
reverse direction (chaos/export/importer.py) reads the same kinds and fields.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chaos.durations import go_duration, one_unit_duration

HANG_LATENCY = 3600.0
"""A hang with no end becomes a delay this long (netem's limit is a little over an hour)."""
BANDWIDTH_LIMIT = 20971520  # tc tbf queue limit and bucket size: Chaos Mesh's own examples'
BANDWIDTH_BUFFER = 10000
FIXED_RAY = "0000000000000000-EXP"  # an exported page must not change from run to run


class Unmappable(Exception):
    """A fault with no Chaos Mesh equivalent: why, and the nearest fault that has one."""

    def __init__(self, why: str, nearest: str) -> None:
        super().__init__(why)
        self.why, self.nearest = why, nearest


@dataclass
class Target:
    """Where the exported chaos acts: the namespace and the pods' labels."""

    namespace: str = "default"
    labels: dict[str, str] = field(default_factory=dict)
    """The client pods (whose traffic NetworkChaos and DNSChaos change)."""
    server_labels: dict[str, str] | None = None
    """The server pods HTTPChaos is injected into (Chaos Mesh acts on the server side);
    default: ``labels``."""
    region_label: str = "region"
    """A fault's `region:` R selects the pods labelled ``region_label=R`` as well."""

    def selector(self, region: str | None = None, server: bool = False) -> dict:
        labels = dict(self.server_labels if server and self.server_labels is not None
                      else self.labels)
        if region:
            labels[self.region_label] = region
        out: dict[str, Any] = {"namespaces": [self.namespace]}
        if labels:
            out["labelSelectors"] = labels
        return out


@dataclass
class MeshChaos:
    """One Chaos Mesh chaos: its kind (NetworkChaos, DNSChaos, HTTPChaos) and spec."""

    kind: str
    spec: dict
    lost: list[str] = field(default_factory=list)
    """What of the fault this chaos does not carry (shown in an annotation and the docs)."""

    @property
    def field(self) -> str:
        """The key of this kind's spec in a Workflow or Schedule template."""
        return {"NetworkChaos": "networkChaos", "DNSChaos": "dnsChaos",
                "HTTPChaos": "httpChaos"}[self.kind]


def map_fault(fault, target: Target) -> list[MeshChaos]:
    """The chaos that stands for ``fault``; raises Unmappable."""
    own = getattr(fault, "chaos_mesh", None)
    if callable(own):
        return own(target)
    mapper = MAPPERS.get(fault.type)
    if mapper is None:
        raise Unmappable(f"fault type {fault.type!r} has no Chaos Mesh mapping", "none")
    family = getattr(fault, "family", "both")
    if family != "both":  # acting on both would be another incident (no fallback left)
        raise Unmappable(f"family {family}: Chaos Mesh acts on a destination's addresses (or "
                         "DNS queries) of both families", f"{fault.type} with family: both")
    return mapper(fault, target)


# --- checks shared by several types ---------------------------------------------------------

def _no_container(fault) -> None:
    if getattr(fault, "container", None):
        raise Unmappable("a docker container target has no cluster equivalent (Chaos Mesh "
                         "selects pods)", "the same fault without `container:` (the selected pods)")


def _no_probability(fault, nearest: str) -> None:
    if getattr(fault, "probability", None) is not None:
        raise Unmappable("Chaos Mesh has no per-request or per-query probability (its "
                         "`mode` picks pods, not requests)", nearest)


def _network(target: Target, action: str, destinations: list[str], region: str | None,
             **fields) -> dict:
    spec: dict[str, Any] = {"action": action, "mode": "all",
                            "selector": target.selector(region), "direction": "to"}
    if destinations:
        spec["externalTargets"] = list(destinations)
    spec.update(fields)
    return spec


def _ports_lost(fault) -> list[str]:
    ports = getattr(fault, "ports", None)
    return [f"ports {ports}: NetworkChaos acts on every port"] if ports else []


def _established_lost(fault) -> list[str]:
    mode = getattr(fault, "established", "drop")
    return [] if mode == "drop" else [
        f"established: {mode}: a partition drops the open connections' packets too"]


# --- one function per fault type -------------------------------------------------------------

def route_blackhole(fault, target: Target) -> list[MeshChaos]:
    _no_container(fault)
    lost = [f"kind {fault.kind}: clients fail at once in the routing table here; NetworkChaos "
            "drops silently, so they time out"]
    return [MeshChaos("NetworkChaos", _network(target, "partition", fault.destinations,
                                               fault.region), lost + _established_lost(fault))]


def packet_filter(fault, target: Target) -> list[MeshChaos]:
    _no_container(fault)
    if fault.action != "drop":
        raise Unmappable(f"action {fault.action}: Chaos Mesh cannot reset a connection or "
                         "answer ICMP errors (NetworkChaos only drops, delays and shapes)",
                         "packet-filter with action: drop (NetworkChaos partition)")
    if fault.match is not None or fault.after_bytes is not None:
        raise Unmappable("NetworkChaos cannot match packets on TTL, length, TCP flags or a "
                         "byte count", "packet-filter without match/after_bytes (NetworkChaos partition)")
    lost = _ports_lost(fault) + _established_lost(fault)
    if fault.protocol is not None:
        lost.append(f"protocol {fault.protocol}: NetworkChaos drops every protocol")
    if fault.probability is None:  # every packet: a partition (iptables DROP, as here)
        return [MeshChaos("NetworkChaos", _network(target, "partition", fault.destinations,
                                                   fault.region), lost)]
    percent = round(fault.probability * 100, 2)
    return [MeshChaos("NetworkChaos", _network(target, "loss", fault.destinations, fault.region,
                                               loss={"loss": f"{percent:g}"}), lost)]


def geo_block(fault, target: Target) -> list[MeshChaos]:
    if fault.action != "drop":
        raise Unmappable(f"action {fault.action}: NetworkChaos cannot refuse connections or "
                         "answer for a server, and HTTPChaos cannot tell clients by region",
                         "geo-block with action: drop (NetworkChaos partition)")
    return [MeshChaos("NetworkChaos", _network(target, "partition", fault.block, fault.region),
                      _ports_lost(fault) + _established_lost(fault))]


def hang(fault, target: Target) -> list[MeshChaos]:
    latency = fault.for_ if fault.for_ is not None else HANG_LATENCY
    lost = [f"at {fault.at}: every packet is held, so TCP no longer connects at once",
            *_ports_lost(fault), "direction: NetworkChaos delays what the pods send"]
    if fault.then != "resume":
        lost.append(f"then {fault.then}")
    _no_probability(fault, "hang without probability (NetworkChaos delay)")
    return [MeshChaos("NetworkChaos", _network(target, "delay", fault.destinations, None,
                                               delay={"latency": one_unit_duration(latency)}), lost)]


def slow(fault, target: Target) -> list[MeshChaos]:
    if fault.drip is not None or fault.slicer is not None:
        raise Unmappable("NetworkChaos cannot drip or slice a stream",
                         "slow with rate (NetworkChaos bandwidth) or latency (delay)")
    _no_probability(fault, "slow without probability (NetworkChaos delay)")
    lost = [*_ports_lost(fault), "direction: NetworkChaos shapes what the pods send"]
    if fault.close_delay:
        lost.append("close_delay")
    out = []
    if fault.latency:
        delay = {"latency": one_unit_duration(fault.latency)}
        if fault.jitter:
            delay["jitter"] = one_unit_duration(fault.jitter)
        out.append(MeshChaos("NetworkChaos", _network(target, "delay", fault.destinations, None,
                                                      delay=delay), lost))
    if fault.rate:
        bandwidth = {"rate": f"{fault.rate}bps", "limit": BANDWIDTH_LIMIT,
                     "buffer": BANDWIDTH_BUFFER}
        out.append(MeshChaos("NetworkChaos", _network(target, "bandwidth", fault.destinations,
                                                      None, bandwidth=bandwidth), lost))
    if not out:
        raise Unmappable("only close_delay: NetworkChaos cannot hold a FIN back",
                         "slow with latency (NetworkChaos delay)")
    return out


def dns(fault, target: Target) -> list[MeshChaos]:
    _no_container(fault)
    why = []
    if fault.probability is not None:
        why.append("DNSChaos answers every matching query (no probability)")
    wild = [n for n in fault.names if n.startswith("*.")]
    if wild:
        why.append(f"DNSChaos patterns take `*` only at the end, not {wild[0]!r}")
    action = {"nxdomain": "error", "servfail": "error", "refused": "error",
              "sinkhole": "random", "random": "random"}.get(fault.answer)
    if action is None:
        why.append(f"answer {fault.answer}: DNSChaos only answers errors or random addresses")
    if why:
        raise Unmappable("; ".join(why), "dns with answer servfail (DNSChaos error) or random "
                         "(DNSChaos random), for exact names, every query")
    lost = []
    if fault.answer in ("nxdomain", "refused"):
        lost.append(f"answer {fault.answer}: DNSChaos answers every error alike (SERVFAIL)")
    if fault.answer == "sinkhole":
        lost.append("the sinkhole address: DNSChaos answers random addresses")
    if fault.answer == "random":
        lost.append("range: DNSChaos draws from every address")
    if set(fault.types) - {"A", "AAAA"} or fault.protocol:
        lost.append("types/protocol: DNSChaos acts on A and AAAA queries")
    spec: dict[str, Any] = {"action": action, "mode": "all", "selector": target.selector()}
    if fault.names != ["*"]:
        spec["patterns"] = list(fault.names)
    return [MeshChaos("DNSChaos", spec, lost)]


def _http_variants(fault, target: Target, what: dict, lost: list[str],
                   extra_headers: dict | None = None, side: str = "Response") -> list[MeshChaos]:
    """One HTTPChaos per host, path, method and port the fault's `match:` and `ports:` name."""
    match = fault.match
    wanted = dict(getattr(match, "headers", None) or {})
    if any("*" in v or "?" in v or "[" in v for v in wanted.values()):
        raise Unmappable("HTTPChaos matches request headers exactly, not by pattern",
                         "the same fault with exact values in match.headers")

    def listed(value) -> list:
        return [None] if value is None else ([value] if isinstance(value, str) else list(value))

    hosts, paths, methods = (listed(getattr(match, k, None)) for k in ("host", "path", "method"))
    if match is not None and match.path_regex:
        raise Unmappable("HTTPChaos matches paths by wildcard, not by regular expression",
                         "the same fault with match.path (a wildcard)")
    if any(h and ("*" in h or "?" in h) for h in hosts):
        raise Unmappable("HTTPChaos matches the Host header exactly, not by pattern",
                         "the same fault with the host names listed")
    out = []
    for host in hosts:
        for path in paths:
            for method in methods:
                for port in fault.ports:
                    spec: dict[str, Any] = {"mode": "all", "selector": target.selector(server=True),
                                            "target": side, "port": port}
                    if path:
                        spec["path"] = path
                    if method:
                        spec["method"] = method
                    headers = {**({"Host": host} if host else {}), **wanted,
                               **(extra_headers or {})}
                    if headers:
                        spec["request_headers"] = headers
                    spec.update(what)
                    port_lost = ["HTTPS: HTTPChaos needs spec.tls (the server's certificate "
                                 "Secret) on this port"] if port == 443 else []
                    out.append(MeshChaos("HTTPChaos", spec, lost + port_lost))
    return out


def _body(content: bytes) -> str:
    return base64.b64encode(content).decode()


def http_error(fault, target: Target) -> list[MeshChaos]:
    from chaos.injectors.http_faults import pages

    if fault.every is not None:
        raise Unmappable("HTTPChaos cannot fail every Nth request",
                         "the fault with `flap:` instead of `every:` (a Chaos Mesh Schedule)")
    _no_probability(fault, "http-error without probability")
    body = fault.body or ("code" if fault.status == 403 else "page")
    host = fault.match.host if fault.match and isinstance(fault.match.host, str) else "origin"
    if body == "page":
        content, ctype = pages.error_page(fault.status, host, FIXED_RAY), "text/html; charset=UTF-8"
    elif body == "code":
        content = pages.error_code_body(1010 if fault.error_code is None else fault.error_code)
        ctype = "text/plain; charset=UTF-8"
    else:
        content, ctype = b"", "text/plain; charset=UTF-8"
    headers = {"content-type": ctype, **fault.headers}
    if fault.retry_after is not None:
        headers["retry-after"] = str(fault.retry_after)
    what: dict[str, Any] = {"replace": {"code": fault.status, "body": _body(content),
                                        "headers": headers}}
    if fault.delay:
        what["delay"] = go_duration(fault.delay)
    lost = ["the request still reaches the server (HTTPChaos replaces its answer)",
            "the CDN's server and ray-id headers"]
    return _http_variants(fault, target, what, lost)


def partial(fault, target: Target) -> list[MeshChaos]:
    _no_probability(fault, "partial without probability (HTTPChaos abort)")
    lost = [f"the first {fault.bytes} bytes: HTTPChaos aborts before any"] if fault.bytes else []
    if fault.then != "reset":
        lost.append(f"then {fault.then}: HTTPChaos aborts the connection")
    if fault.cut_ranges:
        lost.append("cut_ranges")
    return _http_variants(fault, target, {"abort": True}, lost)


def bot_mitigation(fault, target: Target) -> list[MeshChaos]:
    from chaos.injectors.http_faults import pages

    sig = fault.signature
    packet_level = sig.model_dump(exclude_none=True, exclude={"user_agent", "header_present",
                                                               "header_absent", "rate"})
    packet_level = {k: v for k, v in packet_level.items() if v not in ([], False)}
    if (fault.action != "challenge" or not sig.user_agent or packet_level or sig.rate
            or sig.header_present or sig.header_absent or fault.destinations
            or fault.after_bytes is not None):
        raise Unmappable("Chaos Mesh cannot tell clients by packet attributes, request rate "
                         "or headers present, nor drop, reset or hang mid-stream; only a "
                         "challenge for one User-Agent maps",
                         "http-error for the affected hosts (HTTPChaos replace)")
    _no_probability(fault, "bot-mitigation without probability")
    content = pages.challenge_page("origin", FIXED_RAY)
    what = {"replace": {"code": fault.status, "body": _body(content),
                        "headers": {"content-type": "text/html; charset=UTF-8",
                                    "cf-mitigated": "challenge"}}}
    lost = ["user_agent is matched exactly (HTTPChaos), not as a substring"]
    return _http_variants(fault, target, what, lost, {"User-Agent": sig.user_agent})


def _content(fault, nearest: str) -> tuple[dict, list[str]]:
    """What the content fault types share: no `every` or `probability`; `response_match` as
    the `code` and `response_headers` selectors."""
    if fault.every is not None:
        raise Unmappable("HTTPChaos cannot act on every Nth request",
                         "the fault with `flap:` instead of `every:` (a Chaos Mesh Schedule)")
    _no_probability(fault, nearest)
    selectors: dict[str, Any] = {}
    lost: list[str] = []
    rm = getattr(fault, "response_match", None)
    if rm is not None:
        if isinstance(rm.status, list) and len(rm.status) > 1:
            raise Unmappable("HTTPChaos selects one response code",
                             "one fault per status in response_match.status")
        if rm.status is not None:
            selectors["code"] = rm.status if isinstance(rm.status, int) else rm.status[0]
        if rm.headers:
            if any("*" in v or "?" in v or "[" in v for v in rm.headers.values()):
                raise Unmappable("HTTPChaos matches response headers exactly, not by pattern",
                                 "the same fault with exact values in response_match.headers")
            selectors["response_headers"] = dict(rm.headers)
    return selectors, lost


def _new_body(fault, lost: list[str]) -> bytes | None:
    if fault.body_random is not None:
        import random

        lost.append("body_random: HTTPChaos sends the same bytes each time (a digest still "
                    "never matches)")
        return random.Random(fault.body_random).randbytes(fault.body_random)
    return fault.new_body()


def http_respond(fault, target: Target) -> list[MeshChaos]:
    what, lost = _content(fault, "http-respond without probability")
    lost.append("the request still reaches the server (HTTPChaos replaces its answer)")
    headers = dict(fault.headers)
    ctype = fault.new_content_type(fault.headers)
    if ctype is not None:
        headers["content-type"] = ctype
    replace: dict[str, Any] = {"code": fault.status, "body": _body(_new_body(fault, lost) or b"")}
    if headers:
        replace["headers"] = headers
    what["replace"] = replace
    if fault.delay:
        what["delay"] = go_duration(fault.delay)
    return _http_variants(fault, target, what, lost)


def _side(fault) -> str:
    return "Request" if fault.target == "request" else "Response"


def http_abort(fault, target: Target) -> list[MeshChaos]:
    what, lost = _content(fault, "http-abort without probability")
    if fault.how == "reset":
        lost.append("how reset: HTTPChaos aborts the connection its own way")
    what["abort"] = True
    return _http_variants(fault, target, what, lost, side=_side(fault))


def http_delay(fault, target: Target) -> list[MeshChaos]:
    what, lost = _content(fault, "http-delay without probability")
    what["delay"] = go_duration(fault.delay)
    return _http_variants(fault, target, what, lost, side=_side(fault))


def http_replace(fault, target: Target) -> list[MeshChaos]:
    what, lost = _content(fault, "http-replace without probability")
    if fault.truncate is not None:
        raise Unmappable("HTTPChaos cannot cut a body short",
                         "http-replace with the truncated document as body_base64")
    replace: dict[str, Any] = {}
    headers = dict(fault.headers)
    ctype = fault.new_content_type(fault.headers)
    if ctype is not None:
        headers["content-type"] = ctype
    if headers:
        replace["headers"] = headers
    body = _new_body(fault, lost)
    if body is not None:
        replace["body"] = _body(body)
    for key in ("code", "path", "method"):
        if getattr(fault, key) is not None:
            replace[key] = getattr(fault, key)
    if fault.queries:
        replace["queries"] = dict(fault.queries)
    what["replace"] = replace
    return _http_variants(fault, target, what, lost, side=_side(fault))


def http_patch(fault, target: Target) -> list[MeshChaos]:
    import json

    what, lost = _content(fault, "http-patch without probability")
    patch: dict[str, Any] = {}
    if fault.json_ is not None:
        patch["body"] = {"type": "JSON", "value": json.dumps(fault.json_, separators=(",", ":"))}
    if fault.headers:
        patch["headers"] = [list(h) for h in fault.headers]
    if fault.queries:
        patch["queries"] = [list(q) for q in fault.queries]
    what["patch"] = patch
    return _http_variants(fault, target, what, lost, side=_side(fault))


def hosts_entry(fault, target: Target) -> list[MeshChaos]:
    raise Unmappable("Chaos Mesh has no fault for a pod's hosts file (the kubelet writes it)",
                     "dns with answer servfail (DNSChaos error) or route-blackhole "
                     "(NetworkChaos partition)")


def reset(fault, target: Target) -> list[MeshChaos]:
    raise Unmappable("NetworkChaos cannot reset a TCP connection",
                     "partial (HTTPChaos abort) or packet-filter drop (NetworkChaos partition)")


def garbage(fault, target: Target) -> list[MeshChaos]:
    raise Unmappable("Chaos Mesh cannot write bytes into a TCP stream",
                     "http-error with a body (HTTPChaos replace)")


def discard(fault, target: Target) -> list[MeshChaos]:
    raise Unmappable("NetworkChaos cannot read a TCP stream's bytes and drop them, nor close it",
                     "packet-filter drop (NetworkChaos partition): the sender then stalls instead")


MAPPERS: dict[str, Callable[[Any, Target], list[MeshChaos]]] = {
    "route-blackhole": route_blackhole,
    "packet-filter": packet_filter,
    "geo-block": geo_block,
    "hang": hang,
    "slow": slow,
    "dns": dns,
    "http-error": http_error,
    "http-respond": http_respond,
    "http-abort": http_abort,
    "http-delay": http_delay,
    "http-replace": http_replace,
    "http-patch": http_patch,
    "partial": partial,
    "bot-mitigation": bot_mitigation,
    "hosts-entry": hosts_entry,
    "reset": reset,
    "garbage": garbage,
    "discard": discard,
}
