"""docker-registry (the distribution registry) as the lab's upstream and as its pull-through
cache, each started in its namespace with a bounded readiness check.

Upstream (answers as registry-1.docker.io): TLS with a lab-CA leaf, ``auth: token`` whose
realm is the lab's auth.docker.io (it really verifies the JWTs), and the ``redirect``
storage middleware so blob GETs and HEADs are answered ``307`` to the CDN host - the same
two hops a Docker Hub pull makes.

Cache: ``proxy: remoteurl: https://registry-1.docker.io``, no auth of its own, trusting the
lab CA through SSL_CERT_FILE. Both keep their access log (stdout, combined format) in a
file: ``Registry.access`` tells where a pull was served from. Note distribution 2.8's proxy
asks the upstream for the tag's digest on every pull by *tag* (it serves the cached copy
only if that fails); a pull by *digest* of a cached image never reaches the upstream.

Dual-stack upstream: docker-registry listens on one address, and the hub namespace has the
token server and the CDN on port 443 too, so a wildcard ``[::]:443`` cannot be bound. A
second docker-registry process (the ``twin``) serves the same configuration and storage on
the IPv6 address, and its stdout is the same access log, so the log keeps every client's
own address, whichever family it came over. No relay: it would log its own address.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from chaos.journal import Entry, Journal
from chaos.lab.accesslog import LabServer
from chaos.lab.ca import KeyPair
from chaos.lab.topology import Service

REGISTRY_BIN = "docker-registry"
#: The token ``service`` and ``issuer`` Docker Hub uses; clients echo them back.
HUB_SERVICE, HUB_ISSUER = "registry.docker.io", "auth.docker.io"


@dataclass
class Registry(LabServer):
    """A running docker-registry: where it listens, its files, its process."""

    role: str
    service: Service
    proc: subprocess.Popen
    config: Path
    storage: Path
    access_log: Path
    app_log: Path
    entry: Entry | None = None
    journal: Journal | None = None
    twin: Registry | None = None
    """The process listening on the service's IPv6 address (a dual-stack upstream)."""

    def stop(self) -> None:
        """Kill it (and its twin) now; the journal records are closed, so rollback skips them."""
        super().stop()
        if self.twin is not None:
            self.twin.stop()


def _base(service: Service, tls: KeyPair, storage: Path) -> dict:
    return {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False},
                "fields": {"service": service.role}},
        "storage": {"filesystem": {"rootdirectory": str(storage)},
                    "delete": {"enabled": True},
                    "cache": {"blobdescriptor": "inmemory"}},
        "http": {"addr": f"{service.address}:{service.port}", "host": service.url,
                 "secret": secrets.token_hex(16),
                 "tls": {"certificate": str(tls.cert), "key": str(tls.key)},
                 "headers": {"X-Content-Type-Options": ["nosniff"]}},
        "health": {"storagedriver": {"enabled": False}},
    }


def upstream_config(service: Service, tls: KeyPair, storage: Path, *, ca_file: Path,
                    auth: Service | None, cdn: Service | None) -> dict:
    """Config for the upstream: token auth against ``auth`` and 307s to ``cdn`` (either may
    be None for a plain registry)."""
    cfg = _base(service, tls, storage)
    if service.address6:  # two processes share the storage: a cached descriptor could go stale
        del cfg["storage"]["cache"]
    if auth is not None:
        cfg["auth"] = {"token": {"realm": f"{auth.url}/token", "service": HUB_SERVICE,
                                 "issuer": HUB_ISSUER, "rootcertbundle": str(ca_file)}}
    if cdn is not None:
        cfg["middleware"] = {"storage": [{"name": "redirect", "options": {"baseurl": cdn.url}}]}
    return cfg


def cache_config(service: Service, tls: KeyPair, storage: Path, remote_url: str,
                 dual_stack: bool = False) -> dict:
    """Config for a pull-through cache of ``remote_url``; ``dual_stack``: it listens on
    every address of its namespace (its IPv4 and IPv6 one)."""
    cfg = _base(service, tls, storage)
    cfg["proxy"] = {"remoteurl": remote_url}
    if dual_stack:  # Go's "[::]:port" takes both families
        cfg["http"]["addr"] = f"[::]:{service.port}"
    return cfg


def spawn_registry(journal: Journal, role: str, service: Service, config: dict, workdir: Path,
                   *, ca_file: Path) -> Registry:
    """Write the config and start docker-registry in the service's namespace (journaled).
    Check readiness with ``wait_registry``: starting several first and waiting after is faster."""
    import yaml

    workdir.mkdir(parents=True, exist_ok=True)
    storage = Path(config["storage"]["filesystem"]["rootdirectory"])
    storage.mkdir(parents=True, exist_ok=True)
    cfg_path = workdir / f"{role}.yml"
    cfg_path.write_text(yaml.safe_dump(config, sort_keys=False))
    access_log, app_log = workdir / f"{role}.access.log", workdir / f"{role}.log"
    # REGISTRY_* variables would override the config file; the lab CA is the only root.
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    env["SSL_CERT_FILE"] = str(ca_file)
    from chaos.processes import spawn

    with open(access_log, "ab") as out, open(app_log, "ab") as err:
        proc, entry = spawn(journal, [REGISTRY_BIN, "serve", str(cfg_path)], netns=service.netns,
                        what=f"lab {role} registry {service.host}", stdin=subprocess.DEVNULL,
                        stdout=out, stderr=err, env=env)
    reg = Registry(role, service, proc, cfg_path, storage, access_log, app_log, entry, journal)
    if service.address6 and ":" not in config["http"]["addr"].rpartition(":")[0]:
        reg.twin = _spawn_twin(journal, reg, config, env)
    return reg


def _spawn_twin(journal: Journal, reg: Registry, config: dict, env: dict) -> Registry:
    """The same registry on the service's IPv6 address, logging into the same access log
    (O_APPEND: each access line is one write, so the two never interleave within a line)."""
    import yaml

    from chaos.processes import spawn

    assert reg.service.address6 is not None
    svc = Service(reg.service.role, reg.service.host, reg.service.address6, reg.service.port,
                  reg.service.netns)
    cfg = {**config, "http": {**config["http"], "addr": f"[{svc.address}]:{svc.port}"}}
    cfg_path = reg.config.with_name(f"{reg.role}6.yml")
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    app_log = reg.app_log.with_name(f"{reg.role}6.log")
    with open(reg.access_log, "ab") as out, open(app_log, "ab") as err:
        proc, entry = spawn(journal, [REGISTRY_BIN, "serve", str(cfg_path)], netns=svc.netns,
                            what=f"lab {reg.role} registry {svc.host} (IPv6)",
                            stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)
    return Registry(reg.role, svc, proc, cfg_path, reg.storage, reg.access_log, app_log, entry,
                    journal)


def wait_registry(reg: Registry, ca_file: Path, timeout: float) -> None:
    """Until ``GET /v2/`` answers 200 or 401 over verified TLS, at most ``timeout`` seconds
    (on each family, for a registry with a twin)."""
    from chaos.lab.ready import https_status, wait_until

    def answers(svc: Service) -> Callable[[], bool]:
        return lambda: https_status(svc.netns, svc.address, svc.port, svc.host, ca_file,
                                    timeout=1.0) in (200, 401)

    for r in (reg, *([reg.twin] if reg.twin else [])):
        svc = r.service
        wait_until(f"{r.role} registry ({svc.host} {svc.address}:{svc.port} in {svc.netns})",
                   answers(svc), timeout, proc=r.proc, log=r.app_log)
