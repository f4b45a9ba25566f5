"""The lab's pulling clients, by name: dockerd, containerd (ctr), podman and skopeo.

``job(lab, journal, client, image)`` says how the pull agent (chaos.probes.pull_agent)
pulls ``image`` with that client. containerd and podman are set up on first use (the
containerd daemon starts then, journaled like every lab process), so a lab whose scenario
never uses them pays nothing for them. Each runs the build ``lab.generations`` names for it
(``podman@5.4``: chaos.lab.generations), else the system's.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from chaos.journal import Journal

if TYPE_CHECKING:
    from chaos.lab.lab import Lab

CLIENTS = ("dockerd", "containerd", "podman", "skopeo")
_lock = threading.Lock()


def qualified(ref: str) -> str:
    """A reference as containerd and containers/image need it, the way docker reads a short
    one: ``library/busybox:1`` -> ``docker.io/library/busybox:1``, ``busybox`` ->
    ``docker.io/library/busybox:latest``; one whose first part names a host stays as it is."""
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        name = ref
    else:
        name = f"docker.io/{ref if rest else 'library/' + ref}"
    last = name.rsplit("/", 1)[-1]
    return name if (":" in last or "@" in last) else f"{name}:latest"


def binary(lab: Lab, client: str, name: str) -> str:
    """The path (or, for the system's build, the name on PATH) of ``name`` of ``client``."""
    generation = lab.generations.get(client)
    return generation.binaries.get(name, name) if generation else name


def build(lab: Lab, client: str) -> str:
    """Which build of ``client`` pulls, by generation name (``podman@5.4``), for reports."""
    from chaos.lab.generations import resolve_name

    if client == "dockerd" and lab.dockerd is not None:
        return f"dockerd@{lab.dockerd.version}"
    generation = lab.generations.get(client)
    return generation.name if generation else resolve_name(client)


def containerd(lab: Lab, journal: Journal):
    """The lab's client containerd, started now if it is not running yet."""
    from chaos.lab.containerd import start_containerd_client

    with _lock:
        if lab.containerd is None:
            lab.containerd = start_containerd_client(journal, lab.topology,
                                                     lab.run_dir / "containerd-client", lab.ca.cert,
                                                     generation=lab.generations.get("containerd"))
        return lab.containerd


def podman(lab: Lab, journal: Journal):
    """The lab's podman set-up (files only: podman has no daemon)."""
    from chaos.lab.podman import setup_podman

    with _lock:
        if lab.podman is None:
            lab.podman = setup_podman(journal, lab.topology, lab.ca.cert,
                                      binary=binary(lab, "podman", "podman"))
        return lab.podman


def skopeo_job(lab: Lab, journal: Journal, image: str, scratch: str,
               platform: str | None = None) -> dict:
    """skopeo copy into ``scratch`` with podman's registries.conf: the daemon-less client of
    a podman/buildah shop, following the same mirror."""
    from chaos.lab.clients import platform_args

    conf = str(podman(lab, journal).registries_conf)
    # Only what differs from this process's environment: the job travels on a command line.
    env = {k: v for k, v in lab.skopeo.env().items() if os.environ.get(k) != v}
    env["CONTAINERS_REGISTRIES_CONF"] = conf
    # Named on the command line too: skopeo (rootless here, see chaos.lab.clients) read no
    # mirror from the variable alone.
    argv = [binary(lab, "skopeo", "skopeo"), "--registries-conf", conf, "copy", "--insecure-policy",
            "--retry-times", "0", "--src-cert-dir",
            str(lab.skopeo.cert_dir), "--src-no-creds", *platform_args(platform),
            f"docker://{image}", f"dir:{scratch}"]
    return {"client": "skopeo", "parser": "containers-image", "remove": None, "pull": argv,
            "env": env, "unset": ["SSL_CERT_FILE", "CURL_CA_BUNDLE"], "watch": scratch}


def job(lab: Lab, journal: Journal, client: str, image: str, scratch: str,
        platform: str | None = None) -> dict:
    """How the pull agent pulls ``image`` (as the scenario wrote it) with ``client``, of
    ``platform`` when given; the agent runs in the lab's client namespace, except for
    dockerd (reached by its socket)."""
    if client == "dockerd":
        if lab.dockerd is None:
            raise RuntimeError("this lab runs no dockerd (`lab: {dockerd: false}`)")
        return {"client": "dockerd", "docker_host": lab.dockerd.base_url, "image": image,
                "platform": platform}
    if client == "containerd":
        return containerd(lab, journal).job(qualified(image), platform)
    if client == "podman":
        return podman(lab, journal).job(qualified(image), platform)
    if client == "skopeo":
        return skopeo_job(lab, journal, qualified(image), scratch, platform)
    raise ValueError(f"unknown client {client!r}: one of {', '.join(CLIENTS)}")
