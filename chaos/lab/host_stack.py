"""The host drill's set-up (`host_setup: docker-cache`): a dockerd, a stand-in Docker Hub and a
pull-through cache container of the run's own, on this machine itself (`chaos run --host`).

Host drills act on the machine's /etc/hosts and main routing table, so what they stand in
front of must live in the machine's own network namespace, not in a sandbox:

- **dockerd** (and its containerd) in the root network namespace, so it resolves through
  /etc/hosts and routes through the main table like a real docker host. Its own data-root,
  exec-root, pidfile and socket under the run's folder (and ``/run/chaos-<tag>``), in a
  private mount namespace (its data-root bind mount dies with it), ``iptables: false``,
  ``ip-forward: false``, ``ip-masq: false``: it never writes the machine's packet filter or
  sysctls. Its bridge is one of the run's, dual-stack (198.19.248.0/24 and
  2001:2:0:f8::/112, both put on it by the run), never docker0 or 172.17/16, so a system
  dockerd beside it is not disturbed; user-network pools stay inside 198.18.0.0/15 and
  2001:2::/48. ``ipv6: true`` with ``ip6tables: false``: the Hub is reached on the bridge
  itself, so no NAT, no forwarding and no packet-filter rule is needed in either family.
  Its registry mirror is the cache.
- **a stand-in Hub**: Debian's docker-registry (imported offline, chaos.lab.images) on the
  run's bridge at ``HUB`` and ``HUB6``, seeded with library/busybox:1. Hub's names resolve to
  both *for the cache and for the run's plan only* (the cache's --add-host, the run's zone):
  the machine's /etc/hosts is left to the faults. It is the only "Hub" a machine without
  internet has, and the route blackholes planned for Hub's names land on its addresses.
- **the cache**: the same image as a pull-through cache (``proxy.remoteurl`` Hub) on the
  host's network, listening on 127.0.0.1 only, so its upstream traffic follows the main
  routing tables the drill's routes change; a second one on ::1 (same port when free) for
  clients over IPv6 (a registry listens on one address, and ``[::]`` would open the cache
  beyond this machine). dockerd's mirror is the first.

Every step is journaled before it is made (the bridge, the processes, each container), so the
run's end and `chaos recover` undo it last first: containers are removed while their dockerd
still runs (a container's shim would outlive it), then dockerd, containerd, the bridge.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from chaos.lab import paths
from chaos.lab.ready import wait_until

if TYPE_CHECKING:
    from chaos.journal import Journal
    from chaos.lab.dockerd import Dockerd

SETUPS = ("docker-cache",)
"""The built-in host set-ups a scenario may name in `host_setup:`."""

SUBNET = ipaddress.IPv4Network("198.19.248.0/24")
GATEWAY = "198.19.248.1"
HUB = "198.19.248.2"
"""The stand-in Hub's address: the first a fresh bridge hands out (checked after start)."""
SUBNET6 = ipaddress.IPv6Network("2001:2:0:f8::/112")
"""The bridge's IPv6 subnet (``fixed-cidr-v6``). Longer than /80, so dockerd hands out
addresses in order (a /80 or shorter gives MAC-derived ones in dockerd 20.10)."""
GATEWAY6 = "2001:2:0:f8::1"
HUB6 = "2001:2:0:f8::2"
"""The stand-in Hub's IPv6 address (checked after start, like ``HUB``)."""
HUB_PORT = 5000
HUB_NAMES = ("registry-1.docker.io", "auth.docker.io", "production.cloudflare.docker.com")
POOLS = ("198.19.249.0/24",)
POOLS6 = ("2001:2:0:f9::/64",)
IMAGE = "chaos-lab/registry:1"
SEEDED = "library/busybox:1"
LINK_KIND = "host-link"
CONTAINER_KIND = "docker-container"


@dataclass
class DockerCache:
    """What the set-up started: the placeholders probes use, and the daemon."""

    dockerd: Dockerd
    cache: str
    """host:port of the pull-through cache ({cache})."""
    hub: str
    """host:port of the stand-in Hub ({hub})."""
    cache6: str
    """[::1]:port of the cache for clients over IPv6 ({cache6})."""
    hub6: str
    """[address]:port of the stand-in Hub over IPv6 ({hub6})."""

    def placeholders(self) -> dict[str, str]:
        return {"cache": self.cache, "hub": self.hub, "cache6": self.cache6, "hub6": self.hub6,
                "docker_host": self.dockerd.base_url, "seeded": SEEDED}


def zone() -> dict[str, str]:
    """Hub's names -> the stand-in's address: what the run plans Hub's routes against."""
    return dict.fromkeys(HUB_NAMES, HUB)


def zone6() -> dict[str, str]:
    """Hub's names -> the stand-in's IPv6 address (beside ``zone``'s)."""
    return dict.fromkeys(HUB_NAMES, HUB6)


def bridge_name(tag: str) -> str:
    return f"chd-{tag}"[:15]  # interface names are at most 15 bytes


def describe(tag: str) -> list[str]:
    return [f"bridge {bridge_name(tag)} {GATEWAY}/{SUBNET.prefixlen} {GATEWAY6}/{SUBNET6.prefixlen} "
            "(no iptables or ip6tables rules, no forwarding)",
            "containerd and dockerd on this machine (own data-root, exec-root and socket; mirror: the cache)",
            f"stand-in Hub {HUB}:{HUB_PORT} and [{HUB6}]:{HUB_PORT} on the bridge, seeded with {SEEDED}",
            "pull-through cache containers on 127.0.0.1 and ::1 (host network; upstream: Hub's names)"]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)


def _subnet_in_use() -> str | None:
    for family, subnet in (("-4", SUBNET), ("-6", SUBNET6)):
        out = subprocess.run(["ip", family, "route", "show", "table", "all"], capture_output=True,
                             text=True, timeout=10).stdout
        for line in out.splitlines():
            words = line.split()
            dst = words[1] if words[0] in ("unreachable", "blackhole", "prohibit", "local", "broadcast",
                                           "anycast", "multicast") else words[0]
            try:
                if dst != "default" and ipaddress.ip_network(dst, strict=False).overlaps(subnet):
                    return line.strip()
            except ValueError:
                continue
    return None


def _add_bridge(journal: Journal, name: str) -> None:
    journal.record(LINK_KIND, {"name": name}, f"bridge {name}")
    _ip("link", "add", name, "type", "bridge")
    _ip("addr", "add", f"{GATEWAY}/{SUBNET.prefixlen}", "dev", name)
    # The same prefix as fixed-cidr-v6: dockerd takes it as the gateway instead of adding its
    # own. nodad: usable at once (no duplicate can exist on a bridge of the run's own).
    _ip("-6", "addr", "add", f"{GATEWAY6}/{SUBNET6.prefixlen}", "dev", name, "nodad")
    _ip("link", "set", name, "up")


def undo_link(record: dict) -> None:
    """Delete the run's bridge (gone already: nothing to do)."""
    name = record["name"]
    # Asked of netlink, not /sys/class/net: sysfs shows the namespace of whoever mounted it,
    # which is not ours under `unshare -n` without a fresh /sys.
    shown = subprocess.run(["ip", "-o", "link", "show", "dev", name], capture_output=True, timeout=10)
    if shown.returncode == 0:
        subprocess.run(["ip", "link", "delete", name], check=True, capture_output=True, timeout=10)


def _client(url: str, timeout: float = 30):
    import docker

    return docker.DockerClient(base_url=url, version="1.41", timeout=timeout)


def _run_container(journal: Journal, url: str, name: str, **kwargs):
    journal.record(CONTAINER_KIND, {"url": url, "name": name}, f"container {name}")
    container = _client(url).containers.run(IMAGE, name=name, detach=True, **kwargs)
    container.reload()
    return container


def undo_container(record: dict) -> None:
    """Remove the container while its dockerd still runs (a daemon already gone has taken its
    containers' processes with it: nothing left to ask)."""
    import docker

    sock = record["url"].removeprefix("unix://")
    if not os.path.exists(sock):
        return
    try:
        _client(record["url"]).containers.get(record["name"]).remove(force=True)
    except docker.errors.NotFound:
        return


def _free_ports() -> tuple[int, int]:
    """A free port on 127.0.0.1, and on ::1 the same one when it is free there too."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        for wanted in (port, 0):
            with socket.socket(socket.AF_INET6) as s6:
                try:
                    s6.bind(("::1", wanted))
                except OSError:
                    continue
                return port, s6.getsockname()[1]
    raise RuntimeError("no free port on ::1 (is IPv6 disabled on loopback?)")


def _answers(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    with opener.open(url, timeout=1) as resp:
        return resp.status == 200


def _seed(journal: Journal, workdir: Path) -> None:
    """Push library/busybox:1, built offline, to the stand-in Hub (plain HTTP)."""
    from chaos.lab.clients import run
    from chaos.lab.images import SeedImage, build_layout

    image = SeedImage("library/busybox")
    layout = build_layout(image, workdir / "seed").layout
    tmp = workdir / "skopeo"
    tmp.mkdir()
    (tmp / "registries.conf").write_text("unqualified-search-registries = []\n")
    env = {**os.environ, "TMPDIR": str(tmp), "REGISTRY_AUTH_FILE": str(tmp / "auth.json"),
           "CONTAINERS_REGISTRIES_CONF": str(tmp / "registries.conf"),
           "_CONTAINERS_ROOTLESS_UID": "65534", "XDG_DATA_HOME": str(tmp / "data"),
           "XDG_CONFIG_HOME": str(tmp / "config")}  # see chaos.lab.clients.Skopeo._env
    run(journal, ["skopeo", "copy", "--insecure-policy", "--retry-times", "0", "--format", "v2s2",
                  "--dest-tls-verify=false", "--dest-no-creds", f"oci:{layout}:{image.tag}",
                  f"docker://{HUB}:{HUB_PORT}/{image.ref}"],
        netns=None, output=tmp / "seed.out", timeout=60, env=env)


def start(journal: Journal, workdir: Path, tag: str, step=lambda text: None) -> DockerCache:
    """Start the set-up (see the module's docstring); each step journaled first."""
    from chaos.lab.dockerd import container_network, spawn_dockerd, wait_dockerd
    from chaos.lab.images import docker_import, registry_rootfs

    taken = _subnet_in_use()
    if taken is not None:
        raise RuntimeError(f"{SUBNET} is in use on this machine ({taken}): another host drill "
                           "running? (`chaos recover` cleans up after a killed one)")
    # Directories dockerd and containerd make outside their roots whatever they are told:
    # made (and later removed, if empty) by the run when the machine has none yet.
    for shared in ("/run/docker/plugins", "/run/containerd/s"):
        paths.make_dir(journal, shared, tree=False)
    bridge = bridge_name(tag)
    step(f"host set-up: bridge {bridge}, dockerd, stand-in Hub, cache (a few seconds)")
    _add_bridge(journal, bridge)
    port, port6 = _free_ports()
    cache, cache6 = f"127.0.0.1:{port}", f"[::1]:{port6}"
    d = spawn_dockerd(journal, None, workdir / "dockerd", tag=tag, mirrors=[f"http://{cache}"],
                      containers=container_network(None, POOLS, bridge=bridge, cidr6=str(SUBNET6),
                                                   pools6=POOLS6))
    wait_dockerd(d, 30)
    docker_import(d.client(), registry_rootfs(), IMAGE,
                  ["/bin/registry", "serve", "/etc/docker/registry/config.yml"])
    hub = _run_container(journal, d.base_url, f"chaos-{tag}-hub",
                         # Go listens on both families for 0.0.0.0.
                         environment={"REGISTRY_HTTP_ADDR": f"0.0.0.0:{HUB_PORT}"})
    settings = hub.attrs["NetworkSettings"]
    for got, planned in ((settings["IPAddress"], HUB), (settings["GlobalIPv6Address"], HUB6)):
        if got != planned:
            raise RuntimeError(f"the stand-in Hub got {got or 'no address'}, not {planned}: the run "
                               f"planned Hub's routes for {planned}")
    for url in (f"http://{HUB}:{HUB_PORT}/v2/", f"http://[{HUB6}]:{HUB_PORT}/v2/"):
        wait_until(f"stand-in Hub {url}", functools.partial(_answers, url), 20)
    _seed(journal, workdir)
    # Both of the stand-in's addresses for Hub's names, as Hub's own DNS gives both families.
    hosts = [f"{name}:{address}" for name in HUB_NAMES for address in (HUB, HUB6)]
    for name, addr in ((f"chaos-{tag}-cache", cache), (f"chaos-{tag}-cache6", cache6)):
        _run_container(journal, d.base_url, name, network_mode="host", extra_hosts=hosts,
                       # quoted: the registry reads its environment as YAML ([ opens a list)
                       environment={"REGISTRY_HTTP_ADDR": f'"{addr}"',
                                    "REGISTRY_PROXY_REMOTEURL": f"http://{HUB_NAMES[0]}:{HUB_PORT}"})
        wait_until(f"cache {addr}", functools.partial(_answers, f"http://{addr}/v2/"), 20)
    return DockerCache(d, cache, f"{HUB}:{HUB_PORT}", cache6, f"[{HUB6}]:{HUB_PORT}")
