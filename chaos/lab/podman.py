"""The lab's podman client: Debian's podman with a ``registries.conf`` mirror (the lab cache
for docker.io), and configuration, storage and temporary files of its own under the run dir.

Every podman setting comes from files this module writes, named through the environment
(``CONTAINERS_REGISTRIES_CONF``, ``CONTAINERS_CONF``, ``CONTAINERS_STORAGE_CONF``,
``REGISTRY_AUTH_FILE``), so the host's podman configuration and state are neither read
nor touched. Two things podman 4.3 writes as root have no setting: its blob-info cache
(``/var/lib/containers/cache``) and its lock segment (``/dev/shm/libpod_lock``). Each
podman command therefore runs in a mount namespace of its own where /var/lib is a folder
of ours and /dev/shm a fresh tmpfs (podman needs nothing else under either for a pull).
Since the run dir may itself be under /var/lib (the default state dir), podman's files
live in ``/var/tmp/chaos-<tag>-podman`` (journaled: removed at teardown). No daemon:
nothing starts until a pull runs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from chaos.journal import Journal
from chaos.lab.topology import Topology

_PRIVATE = 'mount --bind "$0" /var/lib && mount -t tmpfs chaos-shm /dev/shm && exec "$@"'


@dataclass
class Podman:
    """podman inside ``netns`` with the lab's mirror; ``root`` holds all of its files."""

    netns: str
    root: Path
    cert_dir: Path
    binary: str = "podman"
    """Which podman build (a path for a generation's, chaos.lab.generations)."""

    @property
    def registries_conf(self) -> Path:
        return self.root / "registries.conf"

    def env(self) -> dict:
        r = self.root
        return {"CONTAINERS_REGISTRIES_CONF": str(self.registries_conf),
                "CONTAINERS_CONF": str(r / "containers.conf"),
                "CONTAINERS_STORAGE_CONF": str(r / "storage.conf"),
                "REGISTRY_AUTH_FILE": str(r / "auth.json"), "TMPDIR": str(r / "tmp"),
                "XDG_CONFIG_HOME": str(r / "xdg-config"), "XDG_DATA_HOME": str(r / "xdg-data"),
                # podman 5's warning on every command would open each pull's error text
                "PODMAN_IGNORE_CGROUPSV1_WARNING": "1"}

    def podman(self, *args: str) -> list[str]:
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", _PRIVATE,
                str(self.root / "var-lib"), self.binary, "--tmpdir", str(self.root / "run" / "libpod"),
                *args]

    def job(self, image: str, platform: str | None = None) -> dict:
        """What the pull agent runs (chaos.probes.pull_agent): remove, then pull ``image``.
        Blobs in flight are files in ``tmp`` (containers.conf's image_copy_tmp_dir); a
        layer that came is in the vfs store's ``layers.json`` with its compressed size."""
        return {"client": "podman", "parser": "containers-image",
                "remove": self.podman("rmi", "--force", image),
                "pull": self.podman("pull", "--cert-dir", str(self.cert_dir),
                                    *(["--platform", platform] if platform else []), image),
                "env": self.env(), "unset": ["SSL_CERT_FILE", "CURL_CA_BUNDLE"],
                "watch": str(self.root / "tmp"),
                "layers": str(self.root / "root" / "vfs-layers" / "layers.json")}


def registries_conf(topo: Topology) -> str:
    """docker.io mirrored by the lab cache, as platform teams write it for podman/buildah."""
    return ('unqualified-search-registries = ["docker.io"]\n\n[[registry]]\nprefix = "docker.io"\n'
            f'location = "docker.io"\n\n[[registry.mirror]]\nlocation = "{topo.cache.hostport}"\n')


# podman's own default helper folders, after a generation's (containers.conf has no "also").
_HELPER_DIRS = ("/usr/local/libexec/podman", "/usr/local/lib/podman", "/usr/libexec/podman",
                "/usr/lib/podman")


def helper_dirs(binary: str) -> list[str]:
    """Where the podman at ``binary`` finds netavark (podman 5 refuses to start without it):
    beside it in its generation's prefix (``<prefix>/usr/lib/podman``), then the system's."""
    if "/" not in binary:
        return []
    usr = Path(binary).resolve().parent.parent
    return [str(usr / "lib" / "podman"), str(usr / "libexec" / "podman"), *_HELPER_DIRS]


def setup_podman(journal: Journal, topo: Topology, ca: Path, binary: str = "podman") -> Podman:
    """Write podman's files (journaled folder outside /var/lib, see above) and trust ``ca``.
    ``binary``: which podman build (a generation's path, chaos.lab.generations)."""
    import shutil

    from chaos.lab import paths

    workdir = paths.make_dir(journal, Path("/var/tmp") / f"chaos-{topo.tag}-podman")
    for d in ("root", "run", "tmp", "var-lib", "net", "xdg-config", "xdg-data", "certs"):
        (workdir / d).mkdir(parents=True, exist_ok=True)
    shutil.copy(ca, workdir / "certs" / "ca.crt")
    (workdir / "registries.conf").write_text(registries_conf(topo))
    (workdir / "storage.conf").write_text(
        f'[storage]\ndriver = "vfs"\nrunroot = "{workdir / "run"}"\ngraphroot = "{workdir / "root"}"\n')
    (workdir / "containers.conf").write_text(
        f'[engine]\nevents_logger = "none"\ncgroup_manager = "cgroupfs"\n'
        f'image_copy_tmp_dir = "{workdir / "tmp"}"\n'
        + (f'helper_binaries_dir = {json.dumps(dirs)}\n' if (dirs := helper_dirs(binary)) else "")
        + f'[network]\nnetwork_config_dir = "{workdir / "net"}"\n')
    (workdir / "auth.json").write_text(json.dumps({"auths": {}}))
    os.chmod(workdir / "auth.json", 0o600)
    return Podman(topo.client_ns, workdir, workdir / "certs", binary)
