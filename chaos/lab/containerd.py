"""The lab's containerd client: a containerd of its own in the client namespace (own root,
state and socket), pulling with ``ctr`` through the lab cache as a ``hosts.toml`` mirror.

Kubernetes nodes name their mirrors in ``certs.d/<registry>/hosts.toml`` (the CRI plugin's
``config_path``). ``ctr images pull --hosts-dir`` reads the same directory with the same
resolver (containerd's remotes/docker/config), so the fallback order it follows - the
mirror first, then the registry itself - is a node's. The CRI plugin is not loaded (no
kubelet here, and it would slow the start). The lab CA is trusted through each host's
``ca`` in hosts.toml, not through the environment. Started on first use only
(chaos.lab.pullers): a lab whose scenario never pulls with containerd does not start it.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from chaos.journal import Journal
from chaos.lab.generations import Generation
from chaos.lab.topology import Topology

NAMESPACE = "chaos"  # containerd's own namespace for the lab's images


@dataclass
class ContainerdClient:
    """A running containerd for ``ctr`` pulls, and the hosts directory its pulls read."""

    netns: str
    socket: Path
    hosts_dir: Path
    proc: subprocess.Popen
    log: Path
    content: Path
    """Its content store: blobs, and the ingests of downloads in flight (exact bytes)."""
    ca: Path
    """The lab CA, for hosts without a hosts.toml (see write_hosts_dir)."""
    ctr_binary: str = "ctr"
    """The ``ctr`` of the same build as the daemon (chaos.lab.generations)."""

    def ctr(self, *args: str) -> list[str]:
        return [self.ctr_binary, "--address", str(self.socket), "--namespace", NAMESPACE, *args]

    def job(self, image: str, platform: str | None = None) -> dict:
        """What the pull agent runs (chaos.probes.pull_agent): remove, then pull ``image``."""
        return {"client": "containerd", "parser": "ctr",
                "remove": self.ctr("images", "rm", "--sync", image),
                "pull": self.ctr("images", "pull", "--hosts-dir", str(self.hosts_dir),
                                 "--tlscacert", str(self.ca), "--snapshotter", "native",
                                 *(["--platform", platform] if platform else []), image),
                # The lab CA comes from hosts.toml's `ca`, as on a node: not from the environment.
                "unset": ["SSL_CERT_FILE", "CURL_CA_BUNDLE"], "env": {},
                "content": str(self.content)}


def hosts_toml(server: str, ca: Path, mirror: str | None = None) -> str:
    """A ``certs.d/<registry>/hosts.toml``: ``mirror`` tried first for pulls, then ``server``."""
    text = f'server = "{server}"\nca = "{ca}"\n'
    if mirror:
        text += f'\n[host."{mirror}"]\n  capabilities = ["pull", "resolve"]\n  ca = "{ca}"\n'
    return text


def write_hosts_dir(hosts_dir: Path, topo: Topology, ca: Path) -> None:
    """docker.io mirrored by the lab cache. A reference naming a host itself (the cache, Hub's
    registry) has no hosts.toml: containerd 1.6 refuses one without a ``[host]`` table
    ("invalid `host` tree"), and one naming the server as its own host would try it twice.
    ``ctr --tlscacert`` trusts the lab CA for those."""
    (hosts_dir / "docker.io").mkdir(parents=True, exist_ok=True)
    (hosts_dir / "docker.io" / "hosts.toml").write_text(
        hosts_toml(topo.registry.url, ca, mirror=topo.cache.url))


def start_containerd_client(journal: Journal, topo: Topology, workdir: Path, ca: Path, *,
                            timeout: float = 20, generation: Generation | None = None) -> ContainerdClient:
    """Start the client containerd in the client namespace (journaled; rollback stops it).
    ``generation``: its build (``containerd@1.7``), default the system's."""
    from chaos.lab.dockerd import daemon_env, short_run_dir, spawn_containerd

    workdir.mkdir(parents=True, exist_ok=True)
    hosts_dir = workdir / "certs.d"
    write_hosts_dir(hosts_dir, topo, ca)
    run = short_run_dir(journal, workdir, topo.tag) / "ctr-client"
    env = daemon_env(None)
    if generation is not None:  # its own shim and runc first on PATH
        env = generation.env(workdir / "bin", env)
    binaries = generation.binaries if generation else {}
    proc, sock, log = spawn_containerd(journal, topo.client_ns, workdir, run, env=env,
                                       timeout=timeout, what="lab client containerd",
                                       binary=binaries.get("containerd", "containerd"))
    return ContainerdClient(topo.client_ns, sock, hosts_dir, proc, log,
                            workdir / "root" / "io.containerd.content.v1.content", ca,
                            binaries.get("ctr", "ctr"))
