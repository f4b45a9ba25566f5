"""Seed images built offline and pushed to the lab's upstream.

No daemon and no download: each image is written as an OCI image layout (gzip tar layers,
config, manifest, index) by this module, then ``skopeo copy --format v2s2`` pushes it to
registry-1.docker.io as a Docker schema-2 manifest (what Hub serves for most images).

Every image's first layer is a busybox-static root filesystem plus ``/etc/chaos-image``
naming the image, so no two images share a blob: an image never pulled through the cache
really has nothing cached. Extra layers of seeded pseudo-random (incompressible) bytes make
an image big enough for download-hang cases.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import re
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
#: Applets linked in /bin: enough for `sh -c` probes in a container, if anyone runs one.
APPLETS = ("sh", "ls", "cat", "echo", "env", "true", "false", "sleep", "wget", "nslookup", "id")


@dataclass(frozen=True)
class SeedImage:
    """An image the lab builds and pushes: ``repo:tag`` plus optional big random layers."""

    repo: str
    tag: str = "1"
    random_layers_mb: tuple[int, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.repo}:{self.tag}"


#: busybox:1 is the one warmed into the cache by default; never-pulled:1 stays cold;
#: big:1 (3 layers, 28 MB) is for slow and hanging downloads.
DEFAULT_IMAGES = (
    SeedImage("library/busybox"),
    SeedImage("library/never-pulled"),
    SeedImage("library/big", random_layers_mb=(16, 8, 4)),
)


@dataclass(frozen=True)
class BuiltImage:
    """An OCI layout on disk for one image, and the size of what it pushes."""

    image: SeedImage
    layout: Path
    layer_bytes: int


def _tar_info(name: str, *, kind=tarfile.REGTYPE, size: int = 0, mode: int = 0o644,
              link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode, info.linkname = kind, size, mode, link
    info.mtime = 0  # reproducible layers: the same input gives the same digest
    info.uid = info.gid = 0
    return info


def _busybox_layer(image: SeedImage) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("bin", "etc", "tmp"):
            tar.addfile(_tar_info(d, kind=tarfile.DIRTYPE, mode=0o1777 if d == "tmp" else 0o755))
        data = BUSYBOX.read_bytes()
        tar.addfile(_tar_info("bin/busybox", size=len(data), mode=0o755), io.BytesIO(data))
        for applet in APPLETS:
            tar.addfile(_tar_info(f"bin/{applet}", kind=tarfile.SYMTYPE, mode=0o777, link="busybox"))
        marker = f"{image.ref}\n".encode()
        tar.addfile(_tar_info("etc/chaos-image", size=len(marker)), io.BytesIO(marker))
    return buf.getvalue()


def _random_layer(image: SeedImage, index: int, megabytes: int) -> bytes:
    rng = random.Random(f"{image.ref}#{index}")  # seeded: same image, same digests
    data = rng.randbytes(megabytes << 20)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_tar_info("data", kind=tarfile.DIRTYPE, mode=0o755))
        tar.addfile(_tar_info(f"data/blob{index}.bin", size=len(data)), io.BytesIO(data))
    return buf.getvalue()


def _put_blob(layout: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def build_layout(image: SeedImage, layout: Path) -> BuiltImage:
    """Write ``image`` as an OCI image layout in ``layout`` (created; must not exist)."""
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    # (tar, gzip level): random bytes do not compress, so level 0 (stored) costs nothing.
    tars = [(_busybox_layer(image), 6)]
    tars += [(_random_layer(image, i, mb), 0) for i, mb in enumerate(image.random_layers_mb, 1)]
    layers, diff_ids = [], []
    for raw, level in tars:
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        gz = gzip.compress(raw, compresslevel=level, mtime=0)
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **_put_blob(layout, gz)})
    config = {
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"],
                   "Labels": {"org.opencontainers.image.ref.name": image.ref,
                              "io.chaos.lab.seed": "1"}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "chaos.lab.images"}
                    for _ in layers],
    }
    cfg = _put_blob(layout, json.dumps(config, sort_keys=True).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg},
                "layers": layers}
    man = _put_blob(layout, json.dumps(manifest, sort_keys=True).encode())
    index = {"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", **man,
         "annotations": {"org.opencontainers.image.ref.name": image.tag}}]}
    (layout / "index.json").write_text(json.dumps(index))
    return BuiltImage(image, layout, sum(layer["size"] for layer in layers))


def seed(skopeo, images, registry: str, *, creds: str, workdir: Path,
         timeout: float = 60) -> dict[str, str]:
    """Build each image, push them all at once; returns ``{"library/busybox:1": "sha256:..."}``."""
    workdir.mkdir(parents=True, exist_ok=True)
    built = [build_layout(img, workdir / img.repo.replace("/", "_")) for img in images]
    running = []
    for b in built:
        digestfile = workdir / f"{b.image.repo.replace('/', '_')}.digest"
        running.append((b, digestfile, skopeo.start_copy(
            f"oci:{b.layout}:{b.image.tag}", f"docker://{registry}/{b.image.ref}",
            dest_creds=creds, digestfile=digestfile, extra=["--format", "v2s2"])))
    digests = {}
    for b, digestfile, run in running:
        run.wait(timeout)
        digests[b.image.ref] = digestfile.read_text().strip()
    for b in built:  # the registry has them now; do not keep 30 MB twice
        shutil.rmtree(b.layout, ignore_errors=True)
    return digests


def warm(skopeo, refs, cache: str, *, workdir: Path, timeout: float = 60) -> None:
    """Pull each ``repo:tag`` through the cache (skopeo to a scratch dir), so it is cached.
    A ``(repo:tag, "os/arch")`` pair pulls that platform only (of a multi-arch image: the
    cache then holds its manifest list, that platform's manifest and its blobs)."""
    from chaos.lab.clients import platform_args

    running = []
    for item in refs:
        ref, platform = (item, None) if isinstance(item, str) else item
        name = ref + (f"@{platform}" if platform else "")
        scratch = workdir / ("warm-" + re.sub(r"[/:@]", "_", name))
        running.append((scratch, skopeo.start_copy(f"docker://{cache}/{ref}", f"dir:{scratch}",
                                                   extra=platform_args(platform))))
    try:
        for _, run in running:
            run.wait(timeout)
    finally:
        for scratch, _ in running:
            shutil.rmtree(scratch, ignore_errors=True)


# -- images for containers (bring your own cache, tested against a registry container) ------
REGISTRY_BIN = Path("/usr/bin/docker-registry")
REGISTRY_CONFIG = """version: 0.1
log: {level: info}
storage:
  filesystem: {rootdirectory: /var/lib/registry}
http: {addr: "0.0.0.0:5000"}
"""


def _shared_libs(binary: Path) -> list[Path]:
    """The libraries ``ldd`` says a dynamic binary loads (none for a static one)."""
    import subprocess

    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, timeout=10).stdout
    return [Path(word) for line in out.splitlines() for word in line.split()
            if word.startswith("/")]


def rootfs_tar(files: dict[str, Path | bytes], *, marker: str) -> bytes:
    """A busybox-static root filesystem plus ``files`` (path in the image -> host file or
    content), as a tar for ``docker import``. Host files are copied with the libraries
    they load, so a Debian binary runs in the image as it does on the host."""
    wanted: dict[str, bytes] = {"bin/busybox": BUSYBOX.read_bytes(),
                                "etc/chaos-image": f"{marker}\n".encode()}
    for name, src in files.items():
        wanted[name.lstrip("/")] = src if isinstance(src, bytes) else src.read_bytes()
        if isinstance(src, Path):
            for lib in _shared_libs(src):
                wanted.setdefault(str(lib).lstrip("/"), lib.read_bytes())
    dirs = {"tmp"} | {str(Path(n).parents[i]) for n in wanted for i in range(len(Path(n).parts) - 1)}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in sorted(dirs):
            tar.addfile(_tar_info(d, kind=tarfile.DIRTYPE, mode=0o1777 if d == "tmp" else 0o755))
        for name, data in sorted(wanted.items()):
            executable = name.startswith(("bin/", "usr/", "lib")) and not name.endswith(".yml")
            tar.addfile(_tar_info(name, size=len(data), mode=0o755 if executable else 0o644),
                        io.BytesIO(data))
        for applet in APPLETS + ("httpd", "ip", "nc", "timeout"):
            tar.addfile(_tar_info(f"bin/{applet}", kind=tarfile.SYMTYPE, mode=0o777, link="busybox"))
    return buf.getvalue()


def registry_rootfs() -> bytes:
    """Debian's docker-registry as /bin/registry with its config, on busybox."""
    return rootfs_tar({"bin/registry": REGISTRY_BIN,
                       "etc/docker/registry/config.yml": REGISTRY_CONFIG.encode(),
                       "var/lib/registry/.keep": b""}, marker="chaos-lab/registry:1")


def docker_import(client, tar: bytes, ref: str, cmd: list[str]) -> str:
    """``docker import`` through the SDK (no build, no download); the image's id."""
    repo, _, tag = ref.rpartition(":")
    client.api.import_image_from_data(tar, repository=repo, tag=tag,
                                      changes=["ENV PATH=/bin", f"CMD {json.dumps(cmd)}"])
    return client.images.get(ref).id
