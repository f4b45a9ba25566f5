"""End to end: the registry lab for real - namespaces, docker-registry upstream and
pull-through cache, token server and CDN, skopeo and a client dockerd - then teardown
leaving nothing behind. Needs root and the Debian packages listed in docs/lab.md."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from chaos.journal import Journal, is_alive
from chaos.lab import lab_up
from chaos.lab.ready import NotReady
from chaos.lab.topology import Service

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (namespaces, dockerd)"),
    # Missing lab packages skip here, and fail under CI=true (conftest.require_binaries).
    pytest.mark.usefixtures("lab_binaries"),
]

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


def _iptables_root() -> str:
    out = subprocess.run(["iptables-save"], capture_output=True, text=True, timeout=20).stdout
    # Comments carry timestamps, counters change with traffic: compare the rules only.
    return "\n".join(re.sub(r"\[\d+:\d+\]", "", line) for line in out.splitlines() if not line.startswith("#"))


def _mounts_under(path: Path) -> list[str]:
    found = []
    for mi in Path("/proc").glob("[0-9]*/mountinfo"):
        try:
            text = mi.read_text()
        except OSError:
            continue  # the process went away
        found += [f"{mi.parent.name}: {line.split()[4]}" for line in text.splitlines()
                  if str(path) in line.split()[4]]
    return found


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    iptables_before = _iptables_root()
    journal = Journal.create(f"test-lab-{os.getpid()}", base=tmp_path_factory.mktemp("state"))
    run_dir = tmp_path_factory.mktemp("run")
    t0 = time.monotonic()
    lab = lab_up(journal, run_dir, timeout=30)
    up_seconds = time.monotonic() - t0
    e = SimpleNamespace(lab=lab, journal=journal, run_dir=run_dir, up_seconds=up_seconds,
                        iptables_before=iptables_before, scratch=tmp_path_factory.mktemp("pulls"))
    yield e
    journal.rollback()  # no-op when test_lab_down_leaves_nothing already ran
    journal.finish()


def curl(lab, *args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    """curl from inside the client namespace, trusting only the lab CA."""
    argv = ["ip", "netns", "exec", lab.topology.client_ns, "curl", "-sS", "--max-time", "15",
            "--cacert", str(lab.ca.cert), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def test_lab_is_up_with_every_component(env):
    lab = env.lab
    assert env.up_seconds < 60, lab.timings
    assert set(lab.images) == {"library/busybox:1", "library/never-pulled:1", "library/big:1"}
    assert all(d.startswith("sha256:") for d in lab.images.values())
    for proc in (lab.upstream.proc, lab.cache.proc, lab.auth.proc, lab.cdn.proc,
                 lab.dockerd.proc, lab.dockerd.containerd):
        assert proc.poll() is None
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert all(ns in names for ns in lab.topology.namespaces)
    # containerd (for ctr) and podman start on first use only (chaos.lab.pullers): start time.
    assert lab.containerd is None and lab.podman is None
    assert not (lab.run_dir / "containerd-client").exists()
    assert not Path(f"/var/tmp/chaos-{lab.topology.tag}-podman").exists()


def test_upstream_answers_like_hub(env):
    """401 + Bearer challenge, a token from auth.docker.io, 307 to the CDN, forged tokens refused."""
    lab, t = env.lab, env.lab.topology
    r = curl(lab, "-o", "/dev/null", "-D", "-", f"{t.registry.url}/v2/")
    assert re.match(r"HTTP/\S+ 401", r.stdout), r.stdout + r.stderr
    assert ('bearer realm="https://auth.docker.io/token",service="registry.docker.io"'
            in r.stdout.lower()), r.stdout

    r = curl(lab, f"{t.auth.url}/token?service=registry.docker.io&scope=repository:library/busybox:pull")
    token = json.loads(r.stdout)["token"]
    bearer = f"Authorization: Bearer {token}"
    r = curl(lab, "-H", bearer, "-H", f"Accept: {MANIFEST_V2}",
             f"{t.registry.url}/v2/library/busybox/manifests/1")
    manifest = json.loads(r.stdout)
    layer = manifest["layers"][0]["digest"]

    blob_url = f"{t.registry.url}/v2/library/busybox/blobs/{layer}"
    r = curl(lab, "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "-H", bearer, blob_url)
    status, location = r.stdout.split(" ", 1)
    assert status == "307", r.stdout
    assert location.startswith(f"https://{t.cdn_host}/docker/registry/v2/blobs/sha256/"), location

    out = env.scratch / "blob"
    r = curl(lab, "-o", str(out), "-w", "%{http_code}", location)
    assert r.stdout == "200"
    assert "sha256:" + hashlib.sha256(out.read_bytes()).hexdigest() == layer

    forged = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
    r = curl(lab, "-o", "/dev/null", "-w", "%{http_code}", "-H", f"Authorization: Bearer {forged}", blob_url)
    assert r.stdout == "401"


def test_cdn_answers_range_requests_with_206(env):
    """dockerd resumes a broken layer download with a Range request: the CDN must answer
    206 with the asked-for bytes and a Content-Range naming them and the blob's size."""
    lab, t = env.lab, env.lab.topology
    r = curl(lab, f"{t.auth.url}/token?service=registry.docker.io&scope=repository:library/big:pull")
    r = curl(lab, "-H", f"Authorization: Bearer {json.loads(r.stdout)['token']}", "-H",
             f"Accept: {MANIFEST_V2}", f"{t.registry.url}/v2/library/big/manifests/1")
    layer = max(json.loads(r.stdout)["layers"], key=lambda layer: layer["size"])
    hexdigest = layer["digest"].split(":", 1)[1]
    url = f"https://{t.cdn_host}/docker/registry/v2/blobs/sha256/{hexdigest[:2]}/{hexdigest}/data"
    whole = env.scratch / "range-whole"
    assert curl(lab, "-o", str(whole), "-w", "%{http_code}", url, timeout=60).stdout == "200"
    data = whole.read_bytes()
    assert len(data) == layer["size"]
    cdn = lab.cdn.access.mark()
    start, end = 1 << 20, (1 << 20) + 99_999
    for range_header, first, last in ((f"{start}-{end}", start, end),          # a middle slice
                                      (f"{start}-", start, len(data) - 1)):     # "the rest", as dockerd asks
        part = env.scratch / "range-part"
        r = curl(lab, "-o", str(part), "-D", "-", "-H", f"Range: bytes={range_header}", url, timeout=60)
        assert re.match(r"HTTP/\S+ 206", r.stdout), r.stdout + r.stderr
        assert f"content-range: bytes {first}-{last}/{len(data)}" in r.stdout.lower(), r.stdout
        assert part.read_bytes() == data[first:last + 1]
    assert [r.status for r in lab.cdn.access.since(cdn)] == [206, 206]


def test_cached_image_is_served_by_the_cache(env):
    lab = env.lab
    up, cdn, cache = lab.upstream.access.mark(), lab.cdn.access.mark(), lab.cache.access.mark()
    lab.skopeo.copy(f"docker://{lab.topology.cache.hostport}/library/busybox:1",
                    f"dir:{env.scratch / 'busybox-tag'}", timeout=60)
    assert lab.cache.access.matching(cache, method="GET", path="/v2/library/busybox/manifests/1")
    # distribution's proxy re-checks a *tag* upstream (HEAD manifest), but no blob leaves it.
    assert [r for r in lab.upstream.access.since(up) if "/blobs/" in r.path] == []
    assert lab.cdn.access.since(cdn) == []


def test_cached_image_by_digest_never_reaches_upstream(env):
    lab = env.lab
    digest = lab.digest("library/busybox:1")
    up, cdn, auth = lab.upstream.access.mark(), lab.cdn.access.mark(), lab.auth.access.mark()
    cache = lab.cache.access.mark()
    lab.skopeo.copy(f"docker://{lab.topology.cache.hostport}/library/busybox@{digest}",
                    f"dir:{env.scratch / 'busybox-digest'}", timeout=60)
    assert lab.cache.access.matching(cache, method="GET", path=f"/manifests/{digest}")
    assert lab.upstream.access.since(up) == []
    assert lab.cdn.access.since(cdn) == []
    assert lab.auth.access.since(auth) == []


def test_never_cached_image_pulls_through_cache_from_upstream(env):
    lab = env.lab
    assert not lab.cache.access.matching(0, path="/library/never-pulled/")
    up, cdn, auth = lab.upstream.access.mark(), lab.cdn.access.mark(), lab.auth.access.mark()
    lab.skopeo.copy(f"docker://{lab.topology.cache.hostport}/library/never-pulled:1",
                    f"dir:{env.scratch / 'never-pulled'}", timeout=60)
    upstream_blobs = lab.upstream.access.matching(up, method="GET", path="/library/never-pulled/blobs/")
    assert upstream_blobs and all(r.status == 307 for r in upstream_blobs)
    cdn_gets = lab.cdn.access.matching(cdn, method="GET", path="/docker/registry/v2/blobs/")
    assert cdn_gets and all(r.status == 200 for r in cdn_gets)
    assert lab.auth.access.matching(auth, path="repository%3Alibrary%2Fnever-pulled%3Apull")
    assert (lab.cache.storage / "docker/registry/v2/repositories/library/never-pulled").is_dir()


def test_docker_pull_goes_through_the_cache(env):
    lab = env.lab
    cache, up = lab.cache.access.mark(), lab.upstream.access.mark()
    client = lab.docker()
    try:
        image = client.images.pull("library/busybox", tag="1")
        assert f"busybox@{lab.digest('library/busybox:1')}" in image.attrs["RepoDigests"]
        assert image.attrs["Config"]["Labels"]["org.opencontainers.image.ref.name"] == "library/busybox:1"
    finally:
        client.close()
    hits = lab.cache.access.since(cache)
    assert any(r.method == "GET" and "/v2/library/busybox/manifests/" in r.path for r in hits), hits
    assert any("/v2/library/busybox/blobs/" in r.path for r in hits), hits
    assert all(r.agent.startswith("docker/20.10") for r in hits if "/library/busybox/" in r.path)
    assert [r for r in lab.upstream.access.since(up) if "/blobs/" in r.path] == []


def test_docker_pulls_straight_from_upstream_with_token_and_cdn(env):
    """Named as registry-1.docker.io/..., the image bypasses the mirror: dockerd does the
    whole Hub dance itself (401, token, 307, CDN) and trusts the lab CA for all three hosts."""
    lab, t = env.lab, env.lab.topology
    up, cdn, auth = lab.upstream.access.mark(), lab.cdn.access.mark(), lab.auth.access.mark()
    cache = lab.cache.access.mark()
    client = lab.docker()
    try:
        image = client.images.pull(f"{t.registry.hostport}/library/big", tag="1")
    finally:
        client.close()
    assert len(image.attrs["RootFS"]["Layers"]) == 4
    assert lab.auth.access.matching(auth, path="repository%3Alibrary%2Fbig%3Apull")
    redirects = lab.upstream.access.matching(up, method="GET", path="/library/big/blobs/")
    assert len(redirects) == 4 + 1 and all(r.status == 307 for r in redirects)  # layers + config
    served = lab.cdn.access.matching(cdn, method="GET")
    assert sum(r.size for r in served) > 28 << 20
    assert lab.cache.access.since(cache) == []


def test_auth_down_breaks_direct_pulls_not_cached_ones(env):
    lab, t = env.lab, env.lab.topology
    lab.auth.stop()
    assert lab.auth.proc.poll() is not None
    t0 = time.monotonic()
    r = lab.skopeo.inspect(f"{t.registry.hostport}/library/big:1", timeout=30, check=False)
    assert r.returncode != 0
    assert time.monotonic() - t0 < 30
    assert "auth.docker.io" in r.stdout, r.stdout
    digest = lab.digest("library/busybox:1")
    lab.skopeo.copy(f"docker://{t.cache.hostport}/library/busybox@{digest}",
                    f"dir:{env.scratch / 'busybox-auth-down'}", timeout=60)


def test_a_component_that_cannot_start_is_reported_within_its_bound(env):
    """A cache whose upstream does not answer: distribution panics at start (it fetches the
    upstream's auth challenge then), or hangs - either way NotReady comes within the bound."""
    from chaos.lab import registry

    lab, t = env.lab, env.lab.topology
    svc = Service("cache", t.cache_host, t.cache.address, 5001, t.cache_ns)
    cfg = registry.cache_config(svc, lab.ca.issue("cache2", [t.cache_host]),
                                lab.run_dir / "cache2" / "storage", "https://198.18.0.13")
    reg = registry.spawn_registry(env.journal, "cache2", svc, cfg, lab.run_dir / "cache2",
                                  ca_file=lab.ca.cert)
    t0 = time.monotonic()
    with pytest.raises(NotReady) as info:
        registry.wait_registry(reg, lab.ca.cert, timeout=3)
    assert time.monotonic() - t0 < 5
    assert "cache2 registry" in str(info.value)
    reg.stop()


def test_lab_down_leaves_nothing(env):
    """Must stay the last test: it tears the lab down and checks what is left."""
    lab, journal = env.lab, env.journal
    pids = [(e.undo["pid"], e.undo["start"]) for e in journal.entries if e.kind == "process"]
    assert len(pids) >= 6
    t0 = time.monotonic()
    failures = journal.rollback()
    down_seconds = time.monotonic() - t0
    assert failures == []
    assert down_seconds < 30
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert [ns for ns in lab.topology.namespaces if ns in names] == []
    assert [p for p in pids if is_alive(*p)] == []
    assert _mounts_under(env.run_dir) == []
    assert not lab.run_dir.exists()
    assert [ns for ns in lab.topology.namespaces if Path("/etc/netns", ns).exists()] == []
    assert not Path(f"/run/chaos-{lab.topology.tag}").exists()
    assert _iptables_root() == env.iptables_before
    print(f"lab up {env.up_seconds:.2f}s ({lab.timings}), lab down {down_seconds:.2f}s")
