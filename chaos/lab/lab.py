"""``lab_up``: the whole Docker-Hub-like lab, offline, in its own namespaces.

Teardown is ``journal.rollback()``: every namespace, process, file and directory the lab
made is in the journal, and ``chaos recover`` undoes the same records after a crash.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from chaos.journal import Journal
from chaos.lab import netns, paths
from chaos.lab.ca import LabCA
from chaos.lab.images import DEFAULT_IMAGES, SeedImage
from chaos.lab.topology import Topology

if TYPE_CHECKING:
    from chaos.lab.clients import Skopeo
    from chaos.lab.containerd import ContainerdClient
    from chaos.lab.declared import DeclaredImage
    from chaos.lab.dockerd import Dockerd
    from chaos.lab.front import FrontServer
    from chaos.lab.generations import Generation
    from chaos.lab.podman import Podman
    from chaos.lab.registry import Registry


@dataclass
class Lab:
    """A running lab: topology, CA, servers, seeded image digests, and its clients."""

    topology: Topology
    run_dir: Path
    ca: LabCA
    upstream: Registry
    cache: Registry
    auth: FrontServer
    cdn: FrontServer
    skopeo: Skopeo
    images: dict[str, str]
    warmed: tuple
    dockerd: Dockerd | None = None
    timings: dict[str, float] = field(default_factory=dict)
    image_cache: Path | None = None
    """Where declared images are built and kept (chaos.lab.declared)."""
    containerd: ContainerdClient | None = None
    """The client containerd, started on first use (chaos.lab.pullers)."""
    podman: Podman | None = None
    """The podman set-up, written on first use (chaos.lab.pullers)."""
    generations: dict[str, Generation] = field(default_factory=dict)
    """The build of each pulling client other than dockerd that is not the system's
    (``{"podman": podman@5.4}``); chaos.lab.pullers runs its binaries."""

    def docker(self, timeout: float = 60):
        """A docker SDK client for the lab dockerd."""
        if self.dockerd is None:
            raise RuntimeError("this lab was started without a dockerd (lab_up(dockerd=False))")
        return self.dockerd.client(timeout=timeout)

    def before_faults(self) -> None:
        """The steady state held and the first fault is next: a mutation campaign's lab
        breaks here (chaos.lab.mutants); the normal lab does nothing."""
        from chaos.lab import mutants

        mutants.selected().before_faults(self)

    def server(self, role: str):
        """The running server for a topology role: registry, auth, cdn or cache."""
        return {"registry": self.upstream, "upstream": self.upstream, "auth": self.auth,
                "cdn": self.cdn, "cache": self.cache}[role]

    def digest(self, ref: str) -> str:
        """Manifest digest of a seeded image, ``repo:tag`` -> ``sha256:...``."""
        return self.images[ref]

    def placeholders(self) -> dict[str, str]:
        """Values for ``{cache}``, ``{upstream}``, ... in scenario commands."""
        t = self.topology
        return {"cache": t.cache.hostport, "upstream": t.registry.hostport,
                "auth": t.auth.hostport, "cdn": t.cdn.hostport,
                "client_ns": t.client_ns, "cache_ns": t.cache_ns, "hub_ns": t.hub_ns,
                "docker_host": self.dockerd.base_url if self.dockerd else "",
                # `{digest:library/x:1}`: what the upstream's tag named when the lab started
                **{f"digest:{ref}": digest for ref, digest in self.images.items()}}


def lab_up(journal: Journal, run_dir: str | Path, *, topology: Topology | None = None,
           images: tuple[SeedImage, ...] = DEFAULT_IMAGES,
           warm: tuple = ("library/busybox:1",), declared: tuple[DeclaredImage, ...] = (),
           image_cache: Path | None = None,
           dockerd: bool = True, timeout: float = 30, on_network=None,
           cache: str = "distribution", client_version: str | None = None,
           clients: dict[str, str] | None = None) -> Lab:
    """Start the lab under ``run_dir/lab`` (must not exist) and return it.

    ``warm`` lists images pulled through the cache once, so they are cached (a ref, or a
    ``(ref, "os/arch")`` pair for one platform); every other seeded image is never cached.
    ``declared`` images (chaos.lab.declared) are pushed beside the fixed ones, built once
    into ``image_cache`` (default ``<state dir>/images``) and reused from there. Each
    component must be ready within ``timeout`` seconds, or ``NotReady``
    (chaos.lab.ready) is raised - after undoing everything this call did.
    ``on_network(journal, topology)`` runs once the namespaces exist, before any service.
    ``cache`` is the cache's kind: ``distribution`` (docker-registry) or ``nginx``.
    ``client_version``: the dockerd generation (``26.1``; chaos.lab.generations), default
    the system's; ``GenerationError`` (a ValueError) before anything starts if not here.
    ``clients``: the version of other pulling clients, ``{"podman": "5.4"}`` (the same).
    """
    from chaos.lab.generations import resolve

    generation = resolve(f"dockerd@{client_version}" if client_version else "dockerd")
    pullers = {name: resolve(f"{name}@{version}") for name, version in (clients or {}).items()}
    if (Path(run_dir) / "lab").exists():
        raise FileExistsError(f"{Path(run_dir) / 'lab'} exists: one lab per run dir")
    mark = journal.mark()
    try:
        lab = _up(journal, Path(run_dir), topology or Topology.new(), images, warm, dockerd, timeout,
                  on_network, declared, image_cache, cache, generation)
        lab.generations = pullers
        return lab
    except BaseException:
        journal.rollback(mark)
        raise


def _up(journal: Journal, run_dir: Path, topo: Topology, images, warm, want_dockerd: bool,
        timeout: float, on_network=None, declared=(), image_cache=None,
        cache_kind: str = "distribution", generation: Generation | None = None) -> Lab:
    from chaos.journal import state_dir
    from chaos.lab import dockerd as dockerd_mod, front, images as images_mod, mutants, registry, seeded
    from chaos.lab.ca import create_ca
    from chaos.lab.clients import Skopeo

    mutant = mutants.selected()  # the normal lab unless a mutation campaign chose one
    if mutant.name and cache_kind != "distribution":
        raise ValueError(f"mutant {mutant.name} breaks the distribution cache; the cache is {cache_kind}")
    timings: dict[str, float] = {}
    t0 = last = time.monotonic()

    def lap(name: str) -> None:
        nonlocal last
        now = time.monotonic()
        timings[name] = round(now - last, 3)
        last = now

    root = paths.make_dir(journal, run_dir / "lab")
    journal.note(event="lab-up", tag=topo.tag, run_dir=str(root), topology=topo.describe())
    netns.build(journal, topo)
    if on_network is not None:  # e.g. the run's DNS server, which every service resolves through
        on_network(journal, topo)
    lap("namespaces")

    ca = create_ca(root / "ca")
    signer = ca.issue("token-signer")
    tls = {"registry": ca.issue("registry", *mutant.upstream_names(topo)),
           "cache": ca.issue("cache", [topo.cache.host],
                             [topo.cache.address, *filter(None, [topo.cache_address6])])}
    lap("certificates")

    # Start everything that does not depend on anything else, then wait for each.
    logs = root / "logs"
    logs.mkdir()
    upstream_storage = root / "upstream" / "storage"
    # The seed push's result, kept from an earlier lab: copied in before the upstream starts.
    image_dir = image_cache or state_dir() / "images"
    seed_key = seeded.key(images, registry.REGISTRY_BIN)
    digests = seeded.restore(image_dir, seed_key, upstream_storage)
    auth = front.start_auth(journal, topo.auth, ca, signer, logs, issuer=registry.HUB_ISSUER,
                            registry_service=registry.HUB_SERVICE)
    cdn = front.start_cdn(journal, topo.cdn, ca, upstream_storage, logs)
    upstream = registry.spawn_registry(
        journal, "upstream", topo.registry,
        registry.upstream_config(topo.registry, tls["registry"], upstream_storage,
                                 ca_file=ca.cert, auth=topo.auth, cdn=topo.cdn),
        root / "upstream", ca_file=ca.cert)
    docker_d = None
    if want_dockerd:
        docker_d = dockerd_mod.spawn_dockerd(journal, topo.client_ns, root / "docker", tag=topo.tag,
                                             ca_file=ca.cert, containerd_timeout=timeout,
                                             generation=generation,
                                             **mutant.dockerd_options([topo.cache.url]))
    lap("spawn")
    front.wait_front(auth, ca.cert, timeout)
    front.wait_front(cdn, ca.cert, timeout)
    registry.wait_registry(upstream, ca.cert, timeout)
    # Only now: distribution's proxy asks the upstream for its auth challenge when it starts
    # and exits (panics) if the upstream does not answer; nginx resolves its upstreams.
    if cache_kind == "nginx":
        from chaos.lab.nginx_cache import spawn_nginx_cache

        cache = spawn_nginx_cache(journal, topo.cache, tls["cache"], root / "cache", ca_file=ca.cert,
                                  registry=topo.registry, auth=topo.auth, cdn=topo.cdn,
                                  token_service=registry.HUB_SERVICE, address6=topo.cache_address6)
    else:
        config = mutant.cache_config(registry.cache_config(
            topo.cache, tls["cache"], root / "cache" / "storage", topo.registry.url,
            dual_stack=topo.ipv6))
        cache = mutant.start_cache(journal, topo, config, root / "cache", ca) or \
            registry.spawn_registry(journal, "cache", topo.cache, config, root / "cache", ca_file=ca.cert)
    registry.wait_registry(cache, ca.cert, timeout)
    lap("servers ready")

    skopeo = Skopeo(journal, topo.client_ns, ca.cert_dir, root / "tmp")
    if digests is None:
        digests = images_mod.seed(skopeo, images, topo.registry.hostport,
                                  creds=f"{front.PUSH_USER}:{front.PUSH_PASSWORD}",
                                  workdir=root / "images", timeout=max(timeout, 60))
        seeded.save(image_dir, seed_key, upstream_storage, digests)
    if declared:  # only then is chaos.lab.declared imported
        from chaos.lab.declared import push

        digests.update(push(skopeo, declared, topo.registry.hostport,
                            creds=f"{front.PUSH_USER}:{front.PUSH_PASSWORD}",
                            cache=image_dir, timeout=max(timeout, 120)))
    lap("seed")
    images_mod.warm(skopeo, mutant.warm(warm), topo.cache.hostport, workdir=root / "tmp",
                    timeout=max(timeout, 60))
    lap("warm")
    if docker_d is not None:
        dockerd_mod.wait_dockerd(docker_d, timeout)
        lap("dockerd ready")
    timings["total"] = round(time.monotonic() - t0, 3)
    journal.note(event="lab-ready", tag=topo.tag, timings=timings,
                 client=generation.name if generation and docker_d else None)
    return Lab(topo, root, ca, upstream, cache, auth, cdn, skopeo, digests, tuple(warm),
               docker_d, timings, image_cache)
