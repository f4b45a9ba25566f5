"""Change what the lab's upstream serves while a run goes on, as Hub's content changes:
push an image, point a tag at another image, delete an image (scenario steps).

Everything goes through the registry API with the lab's seeding account (the token server
grants it `push`), from the hub's namespace, where the publisher sits: faults placed on the
client's or the cache's side do not stop it (a fault at the upstream's own edge, such as a
hang at accept, can). skopeo does the work, journaled and bounded like every lab client.
``lab.images`` follows each change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chaos.lab.clients import Skopeo
    from chaos.lab.declared import DeclaredImage
    from chaos.lab.lab import Lab


def _publisher(lab: Lab) -> Skopeo:
    from chaos.lab.clients import Skopeo

    return Skopeo(lab.skopeo.journal, lab.topology.hub_ns, lab.ca.cert_dir, lab.skopeo.tmp)


def _creds() -> str:
    from chaos.lab.front import PUSH_PASSWORD, PUSH_USER

    return f"{PUSH_USER}:{PUSH_PASSWORD}"


def push(lab: Lab, image: DeclaredImage, cache, timeout: float) -> str:
    """Build (or reuse) ``image`` and push it; its manifest (list) digest."""
    from chaos.lab import declared

    digest = declared.push(_publisher(lab), [image], lab.topology.registry.hostport,
                           creds=_creds(), cache=cache, timeout=timeout)[image.ref]
    lab.images[image.ref] = digest
    return digest


def retag(lab: Lab, image: str, to: str, timeout: float) -> str:
    """Point tag ``to`` at the image ``image`` names (every platform, digests kept); the
    digest ``to`` now names."""
    registry = lab.topology.registry.hostport
    digestfile = lab.skopeo.tmp / f"retag-{to.replace('/', '_').replace(':', '_')}.digest"
    _publisher(lab).copy(f"docker://{registry}/{image}", f"docker://{registry}/{to}",
                         src_creds=_creds(), dest_creds=_creds(), digestfile=digestfile,
                         extra=["--all", "--preserve-digests"], timeout=timeout)
    digest = digestfile.read_text().strip()
    digestfile.unlink(missing_ok=True)
    lab.images[to] = digest
    return digest


def delete(lab: Lab, image: str, timeout: float) -> None:
    """Delete the manifest ``image`` names (the registry drops every tag pointing at it)."""
    registry = lab.topology.registry.hostport
    publisher = _publisher(lab)
    argv = ["skopeo", "delete", "--retry-times", "0", "--cert-dir", str(publisher.cert_dir),
            "--creds", _creds(), f"docker://{registry}/{image}"]
    publisher._start(argv).wait(timeout)
    gone = lab.images.pop(image, None)
    for ref, digest in list(lab.images.items()):
        if digest == gone:
            del lab.images[ref]
