"""What a probe's client got so far: the evidence a failed or hung verdict carries.

Connections are read from the kernel in the client's namespace (chaos.sandbox.sockets) and
kept when they go to a server the run knows (its `serve:` and `hosts:` names, the lab's
components). A pull's progress per layer becomes one line naming the layer that stalled.
The JSON report holds it all (ProbeResult.evidence); the console prints lines(). Nothing
heavy is imported until connections are read: the console and the runner import this.
"""

from __future__ import annotations


def peers(place) -> dict[str, str]:
    """address -> name of every server the run knows (an address with several names: the
    first one)."""
    named: dict[str, str] = {}
    for name, address in [*place.servers.items(), *place.servers6.items()]:
        named.setdefault(str(address), name)
    return named


def size(n: int) -> str:
    """Bytes as people read them (decimal units, as docker prints them)."""
    if n >= 1_000_000:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e3:.1f} kB" if n >= 1000 else f"{n} bytes"


def connections(place) -> list[dict]:
    """The connections the client namespace of ``place`` holds to the run's servers now
    (time-wait ones are the kernel's memory of a finished connection: left out)."""
    from chaos.sandbox.sockets import tcp_connections  # netlink: only when evidence is taken

    return [c.to_dict() for c in tcp_connections(place.netns, peers(place)) if c.state != "time-wait"]


def take_connections(place, result) -> None:
    """Put the client's connections into ``result.evidence``; a namespace that cannot be read
    (any more) is said there, not raised: evidence never changes a verdict."""
    try:
        result.evidence["connections"] = connections(place)
    except Exception as exc:  # noqa: BLE001 - see above
        result.evidence["connections_error"] = f"{type(exc).__name__}: {exc}"


def seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"


def connection_line(c: dict) -> str:
    """'dockerd[812] -> cdn.test 198.18.1.10:443 established, 10.2 MB received, idle 38 s'."""
    who = f"{c['process']}[{c['pid']}]" if c.get("pid") else "no process holds it"
    return (f"{who} -> {c['to']} {c['remote']} {c['state']}, {size(c['received'])} received, "
            f"idle {seconds(c['idle'])}")


def pull_line(layers: list[dict]) -> str:
    """'layer 3/3 stalled at 10.0 MB of 16.0 MB, idle 38 s', or where a pull stood."""
    if not layers:
        return "no layer announced: stalled before the layers (token, manifest)"
    moving = [(i, e) for i, e in enumerate(layers, 1) if e["state"] == "downloading"]
    if not moving:
        states = ", ".join(f"{i}/{len(layers)} {e['state']}" for i, e in enumerate(layers, 1))
        return f"no layer downloading: {states}"
    i, e = max(moving, key=lambda item: item[1]["idle"])
    of = f" of {size(e['size'])}" if e.get("size") else ""
    return f"layer {i}/{len(layers)} stalled at {size(e['bytes'])}{of}, idle {seconds(e['idle'])}"


def layers_line(layers: list[dict]) -> str:
    """Bytes per layer: '1/3 downloaded 16.0 MB, 3/3 downloading 10.0 MB of 16.0 MB'."""
    parts = []
    for i, e in enumerate(layers, 1):
        of = f" of {size(e['size'])}" if e.get("size") and e["bytes"] != e["size"] else ""
        parts.append(f"{i}/{len(layers)} {e['state']} {size(e['bytes'])}{of}")
    return ", ".join(parts)


def lines(evidence: dict) -> list[str]:
    """The evidence as console lines ('label: text')."""
    out = []
    if "stalled" in evidence:
        out.append(f"pull: {evidence['stalled']}")
    if evidence.get("layers"):
        out.append(f"layers: {layers_line(evidence['layers'])}")
    if "received" in evidence:  # a client that says no bytes per layer (containers/image)
        got = evidence["received"]
        out.append(f"received: {size(got['bytes'])} in its temporary files, idle {seconds(got['idle'])}")
    if "connections" in evidence:
        held = evidence["connections"]
        out += [f"connection: {connection_line(c)}" for c in held] or [
            "connections: none to the run's servers"]
    if "connections_error" in evidence:
        out.append(f"connections: could not be read ({evidence['connections_error']})")
    return out
