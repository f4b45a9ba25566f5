"""The lab's client dockerd: its own containerd, data-root, exec-root, pidfile and socket,
started inside the client namespace, pulling through the lab cache as its registry mirror.

Why each setting:
- ``bridge: none``, ``iptables: false``, ``ip-masq``/``ip-forward: false``: pulls need no
  container network, so dockerd creates no bridge (never 172.17/16) and writes no iptables
  rules - not even inside its namespace, where fault injectors own the rules. A dockerd
  that runs containers (``containers=container_network(...)``, tests of `container:`
  targets, the host drill's) gets ``bip`` (or a bridge of the run's) and
  ``default-address-pools`` inside 198.18.0.0/15 instead, and when dual-stack ``ipv6``,
  ``fixed-cidr-v6`` and IPv6 pools inside 2001:2::/48, with ``ip6tables: false``.
- ``storage-driver: vfs``: layers are plain directories, so nothing is mounted. (dockerd still
  makes its data-root a shared bind mount; it does so inside the private mount namespace
  ``ip netns exec`` gives it, which dies with the process: nothing leaks to the host.)
- an external containerd (``--containerd``) started by us and journaled: dockerd's own would
  be a child in another process group that only Pdeathsig would clean up.
- ``SSL_CERT_FILE`` = the lab CA: dockerd verifies the mirror and registry-1.docker.io
  against it, without touching /etc/docker/certs.d.
- ``deprecated-key-path``: dockerd 20.10 otherwise writes /etc/docker/key.json. dockerd
  26.1 writes no key file: the key is set per version (``_by_version``).
- ``generation`` (chaos.lab.generations): which build runs, e.g. dockerd@26.1 from Debian
  13; its containerd, shim and docker-init are found first on PATH.
Unix socket paths are limited to 107 bytes, so exec-root and the sockets go to
``/run/chaos-<tag>`` when the run dir is too deep (pytest's tmp dirs are).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from chaos.journal import Journal
from chaos.lab import paths
from chaos.lab.generations import Generation
from chaos.lab.netns import keep_sys_argv
from chaos.lab.ready import wait_until

_CONTAINERD_CONFIG = """version = 2
root = "{root}"
state = "{state}"
# Only image pulls run here: no CRI, no extra snapshotters probing the host.
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.internal.v1.opt",
  "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
"""


@dataclass
class Dockerd:
    """A running lab dockerd (and its containerd)."""

    netns: str | None
    """Its network namespace; None: the machine's own (a host drill's dockerd)."""
    socket: Path
    config: Path
    data_root: Path
    exec_root: Path
    proc: subprocess.Popen
    containerd: subprocess.Popen
    log: Path
    containerd_log: Path
    version: str = ""
    """The client generation's version (``20.10``, ``26.1``)."""

    @property
    def base_url(self) -> str:
        return f"unix://{self.socket}"

    def client(self, timeout: float = 60):
        """A docker SDK client for this daemon (API pinned to 20.10's 1.41: no probing)."""
        import docker

        return docker.DockerClient(base_url=self.base_url, version="1.41", timeout=timeout)

    def ping(self, timeout: float = 1.0) -> bool:
        return _ping(self.socket, timeout)


def _ping(sock_path: Path, timeout: float) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(str(sock_path))
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
        return s.recv(64).startswith(b"HTTP/1.1 200")


def short_run_dir(journal: Journal, workdir: Path, tag: str) -> Path:
    # exec-root holds sockets named by 64-hex ids: keep it well under the 107-byte limit.
    candidate = workdir / "run"
    if len(str(candidate)) <= 40:
        candidate.mkdir(parents=True, exist_ok=True)
        return candidate
    return paths.make_dir(journal, Path("/run") / f"chaos-{tag}")


def container_network(bip: str | None, pools: tuple[str, ...], *, bridge: str | None = None,
                      cidr6: str | None = None, pools6: tuple[str, ...] = ()) -> dict:
    """daemon.json settings for a dockerd that runs containers: its bridge (``bip``, or an
    existing ``bridge`` of the run's) and the pools of its user networks, all inside
    198.18.0.0/15 (never docker's 172.17/16 default). ``cidr6``: dual-stack, the bridge's
    ``fixed-cidr-v6`` and the IPv6 ``pools6``, all inside 2001:2::/48 (never a ULA or a
    global range); ``ip6tables: false`` like ``iptables: false``."""
    import ipaddress

    ranges = {4: ipaddress.ip_network("198.18.0.0/15"), 6: ipaddress.ip_network("2001:2::/48")}
    for net, version in [*((n, 4) for n in (*([bip] if bip else []), *pools)),
                         *((n, 6) for n in (*([cidr6] if cidr6 else []), *pools6))]:
        parsed = ipaddress.ip_network(net, strict=False)
        if parsed[0] not in ranges[version] or parsed[-1] not in ranges[version]:  # either family
            raise ValueError(f"{net}: a dockerd running containers must stay inside {ranges[version]}")
    config: dict = {"bip": bip} if bip else {}
    if bridge:
        config["bridge"] = bridge
    config["default-address-pools"] = (
        [{"base": p, "size": 24} for p in pools]
        + [{"base": p, "size": ipaddress.ip_network(p).prefixlen} for p in pools6])
    if cidr6:
        config.update({"ipv6": True, "fixed-cidr-v6": cidr6, "ip6tables": False})
    return config


def daemon_env(ca_file: Path | None) -> dict:
    """The environment of a lab daemon: the lab CA trusted (Go's ``SSL_CERT_FILE``), and none
    of the host's docker or proxy settings."""
    env = dict(os.environ, **({"SSL_CERT_FILE": str(ca_file)} if ca_file else {}))
    for k in ("DOCKER_HOST", "DOCKER_CONFIG", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(k, None)
    return env


def spawn_containerd(journal: Journal, netns: str | None, root: Path, run: Path, *, env: dict,
                     timeout: float, what: str = "lab containerd",
                     binary: str = "containerd") -> tuple[subprocess.Popen, Path, Path]:
    """Start a containerd of our own in ``netns`` (journaled): its config, root and log under
    ``root``, its state and sockets under ``run`` (kept short: sockets). Waits (bounded) for
    its socket; returns (process, socket, log). ``binary``: which containerd build."""
    from chaos.processes import spawn

    for d in (root / "root", run):
        d.mkdir(parents=True, exist_ok=True)
    sock, cfg, log = run / "containerd.sock", root / "containerd.toml", root / "containerd.log"
    cfg.write_text(_CONTAINERD_CONFIG.format(root=root / "root", state=run / "state", sock=sock))
    with open(log, "ab") as out:
        proc, _ = spawn(journal, keep_sys_argv(netns, [binary, "--config", str(cfg)]),
                        what=f"{what} in {netns or 'the host namespace'}", stdin=subprocess.DEVNULL,
                        stdout=out, stderr=out, env=env)
    wait_until(f"{what} (in {netns})", sock.exists, timeout, proc=proc, log=log)
    return proc, sock, log


def spawn_dockerd(journal: Journal, netns: str | None, workdir: Path, *, tag: str,
                  ca_file: Path | None = None, mirrors: Sequence[str] = (),
                  containers: dict | None = None, containerd_timeout: float = 20,
                  extra: dict | None = None, generation: Generation | None = None) -> Dockerd:
    """Start containerd, wait (bounded) for its socket, then start dockerd; check dockerd
    with ``wait_dockerd``. Both processes are journaled and killed by rollback.

    ``containers`` (from ``container_network``) gives dockerd a bridge for containers
    instead of ``bridge: none``; still no iptables rules. Remove its containers before the
    rollback stops it: their shims outlive dockerd. ``extra``: more daemon.json settings.
    ``generation``: the dockerd build (default: the system's, ``resolve("dockerd")``)."""
    from chaos.lab.generations import resolve
    from chaos.processes import spawn

    generation = generation or resolve("dockerd")

    workdir.mkdir(parents=True, exist_ok=True)
    run = short_run_dir(journal, workdir, tag)
    data_root, exec_root = workdir / "data", run / "exec"
    ctd_root = workdir / "containerd"
    for d in (data_root, exec_root):
        d.mkdir(parents=True, exist_ok=True)
    sock, log = run / "docker.sock", workdir / "dockerd.log"
    env = generation.env(workdir / "bin", daemon_env(ca_file))
    ctd, ctd_sock, ctd_log = spawn_containerd(journal, netns, ctd_root, run / "ctd", env=env,
                                              timeout=containerd_timeout,
                                              binary=generation.binaries["containerd"])

    config = {
        "data-root": str(data_root), "exec-root": str(exec_root),
        "pidfile": str(workdir / "dockerd.pid"), "hosts": [f"unix://{sock}"],
        "containerd": str(ctd_sock), "containerd-namespace": f"chaos-{tag}",
        "bridge": "none", "iptables": False, "ip-forward": False, "ip-masq": False,
        "userland-proxy": False, "storage-driver": "vfs",
        "registry-mirrors": list(mirrors), "max-concurrent-downloads": 3,
        "features": {"buildkit": False}, "log-level": "info",
        **_by_version(generation.version, workdir),
    }
    if containers:
        del config["bridge"]
        config.update(containers)
    config.update(extra or {})
    cfg = workdir / "daemon.json"
    cfg.write_text(json.dumps(config, indent=2))
    argv = [generation.binaries["dockerd"], "--config-file", str(cfg)]
    if netns is None:
        # On the host: into containerd's private mount namespace (its socket is up, so it is
        # there), so runc sees what dockerd mounts: a host-network container joins the
        # <exec-root>/netns/default file dockerd bind-mounts, and fails to start without it.
        argv = ["nsenter", f"--mount=/proc/{ctd.pid}/ns/mnt", *argv]
    else:
        argv = keep_sys_argv(netns, argv)
    with open(log, "ab") as out:
        proc, _ = spawn(journal, argv, what=f"lab dockerd in {netns or 'the host namespace'}",
                        stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env)
    return Dockerd(netns, sock, cfg, data_root, exec_root, proc, ctd, log, ctd_log, generation.version)


def _by_version(version: str, workdir: Path) -> dict:
    """daemon.json keys that only some dockerd versions take."""
    major = int(version.split(".")[0])
    if major < 25:
        # dockerd 20.10 would otherwise create /etc/docker/key.json (no command-line flag);
        # 26.1 creates none, and the key is on its way out (deprecated).
        return {"deprecated-key-path": str(workdir / "key.json")}
    return {}


def wait_dockerd(d: Dockerd, timeout: float) -> None:
    """Until ``GET /_ping`` on its socket answers 200, at most ``timeout`` seconds."""
    wait_until(f"dockerd (in {d.netns}, {d.socket})", d.ping, timeout, proc=d.proc, log=d.log,
               interval=0.1)
