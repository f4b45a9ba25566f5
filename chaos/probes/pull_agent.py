"""The pull agent: pull one image with one client, report what happened as JSON.

`python -m chaos.probes.pull_agent JOB SECONDS`, JOB being chaos.lab.pullers.job's JSON:
dockerd is driven through the docker SDK (the local copy removed first); containerd
(`ctr`), podman and skopeo are commands whose output is read as it comes. It prints {"ok",
"error", "layers" (downloaded), "cached_layers", "bytes", "duration", "hung", "progress"},
for dockerd "digest" (its "Digest:" line)
and, for the command clients, "output" and "retries". A pull still running after SECONDS
is abandoned and reported as hung (the runner kills this process group if it does not come
back). "progress" has one entry per layer in the order the client announced them: its
state, the bytes that came so far (when the client says), its size and the seconds since
its last progress, so a hung pull says which layer stalled where and for how long.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

_STATES = {"Pulling fs layer": "queued", "Waiting": "waiting", "Downloading": "downloading",
           "Verifying Checksum": "verifying", "Download complete": "downloaded",
           "Extracting": "extracting", "Pull complete": "done", "Already exists": "cached"}
_DOWNLOADED = ("verifying", "downloaded", "extracting", "done")


class Progress:
    """Per-layer progress of one pull (one thread writes, another reads once the pull ended
    or was given up)."""

    def __init__(self) -> None:
        self.layers: dict[str, dict] = {}
        self.lock = threading.Lock()

    def set(self, layer: str, state: str, got: int | None = None, size: int | None = None) -> None:
        """A layer's state; ``got`` bytes so far. Its idle clock restarts only when
        something changed (ctr repeats unchanged lines ten times a second)."""
        with self.lock:
            entry = self.layers.setdefault(layer, {"id": layer, "state": state, "bytes": 0,
                                                   "size": None, "last": time.monotonic()})
            before = (entry["state"], entry["bytes"])
            entry["state"] = state
            entry["size"] = size or entry["size"]
            if got is not None:
                entry["bytes"] = got
            elif state in _DOWNLOADED and entry["size"]:
                entry["bytes"] = entry["size"]
            if (entry["state"], entry["bytes"]) != before:
                entry["last"] = time.monotonic()

    def event(self, event: dict) -> None:
        """One of dockerd's pull events."""
        layer, state = event.get("id"), _STATES.get(event.get("status", ""))
        if not layer or state is None:  # the image's own lines ("Pulling from", "Digest")
            return
        detail = event.get("progressDetail") or {}
        got = detail.get("current") if state == "downloading" else None
        self.set(layer, state, got, detail.get("total") if state == "downloading" else None)

    def report(self) -> list[dict]:
        now = time.monotonic()
        with self.lock:
            return [{"id": e["id"], "state": e["state"], "bytes": e["bytes"], "size": e["size"],
                     "idle": round(now - e["last"], 3)} for e in self.layers.values()]


# -- ctr ----------------------------------------------------------------------------------
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CTR_LINE = re.compile(r"^(?P<kind>layer|config|manifest|index)-sha256:(?P<hex>[0-9a-f]{64}):\s+"
                       r"(?P<state>\w+)\s+\|[^|]*\|\s*(?:(?P<got>[\d.]+) ?(?P<gu>\w+)/(?P<size>[\d.]+) ?(?P<su>\w+))?")
_CTR_TOTAL = re.compile(r"^elapsed: [\d.]+ ?s\s+total:\s+(?P<n>[\d.]+) ?(?P<u>\w+)")
_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "K": 1 << 10, "Ki": 1 << 10,
          "M": 1 << 20, "Mi": 1 << 20, "G": 1 << 30, "Gi": 1 << 30}
_CTR_STATES = {"waiting": "waiting", "downloading": "downloading", "done": "done",
               "exists": "cached"}


def _bytes(n: str, unit: str) -> int:
    return int(float(n) * _UNITS.get(unit, 1))


class CtrOutput:
    """ctr's progress table, redrawn ten times a second: one line per blob, then a total."""

    def __init__(self, progress: Progress) -> None:
        self.progress, self.total = progress, 0
        self.other: list[str] = []

    def line(self, line: str) -> None:
        line = _ANSI.sub("", line).strip()
        m = _CTR_LINE.match(line)
        if m:
            state = _CTR_STATES.get(m["state"])
            if m["kind"] == "layer" and state:
                got = _bytes(m["got"], m["gu"]) if m["got"] else None
                size = _bytes(m["size"], m["su"]) if m["size"] else None
                self.progress.set("sha256:" + m["hex"], state, got, size)
            return
        t = _CTR_TOTAL.match(line)
        if t:
            self.total = _bytes(t["n"], t["u"])
        elif line and not line.startswith(("unpacking ", "done: ")) and not re.match(r"^\S+:\s+resolv", line):
            self.other.append(line)

    def error(self) -> str:
        return "\n".join(self.other)[-2000:]

    def bytes(self) -> int:
        return self.total

    def exact(self, content: str | None) -> None:
        """Exact bytes per layer from containerd's content store (the table rounds, and a
        layer that came between two redraws shows no size): a finished blob's file, or the
        data of its ingest still in flight (its ``ref`` names the layer)."""
        if not content:
            return
        store = Path(content)
        ingests: dict[str, Path] = {}
        for ref in store.glob("ingest/*/ref"):
            try:
                ingests[ref.read_text().rsplit("sha256:", 1)[-1].strip()] = ref.parent / "data"
            except OSError:
                continue
        for entry in self.progress.report():
            if entry["state"] == "cached":
                continue
            hexdigest = entry["id"].removeprefix("sha256:")
            for path in (store / "blobs" / "sha256" / hexdigest, ingests.get(hexdigest)):
                try:
                    got = path.stat().st_size if path is not None else None
                except OSError:
                    continue
                if got is not None:
                    with self.progress.lock:
                        self.progress.layers[entry["id"]]["bytes"] = got
                    break


# -- containers/image (podman, skopeo) ----------------------------------------------------
_CI_BLOB = re.compile(r"^Copying blob (?:sha256:)?(?P<hex>[0-9a-f]{12,64})(?P<rest>.*)$")
_CI_QUIET = ("Trying to pull ", "Getting image source signatures", "Copying config ",
             "Writing manifest", "Storing signatures")
_CI_RETRY = re.compile(r"retrying in", re.I)


class ImageOutput:
    """containers/image's lines: without a terminal, one "Copying blob X" as each layer
    starts ("skipped: already exists" when cached) and nothing as it ends; bytes in flight
    are read from the client's temporary files instead (``watch``)."""

    def __init__(self, progress: Progress, watch: str | None, layers: str | None = None) -> None:
        self.progress, self.watch, self.retries = progress, watch, 0
        self.layers = layers  # the store's layers.json (podman), None for skopeo's dir:
        self.other: list[str] = []
        self.seen: dict[str, int] = {}  # temporary file -> the most bytes it held
        self.moved = time.monotonic()

    def line(self, line: str) -> None:
        line = _ANSI.sub("", line).strip()
        m = _CI_BLOB.match(line)
        if m:
            cached = "already exists" in m["rest"]
            self.progress.set("sha256:" + m["hex"], "cached" if cached else "downloading",
                              0 if not cached else None)
            return
        if _CI_RETRY.search(line):
            self.retries += 1
        if line and not line.startswith(_CI_QUIET) and not re.fullmatch(r"[0-9a-f]{64}", line):
            self.other.append(line)

    def poll(self) -> None:
        if not self.watch:
            return
        for path in Path(self.watch).rglob("*"):
            try:
                size = path.stat().st_size if path.is_file() else 0
            except OSError:
                continue
            if size > self.seen.get(str(path), -1):
                self.seen[str(path)] = size
                self.moved = time.monotonic()

    def finish(self, ok: bool) -> None:
        stored = self.stored()
        for entry in self.progress.report():
            if entry["state"] != "downloading":
                continue
            hexdigest = entry["id"].removeprefix("sha256:")
            size = next((n for d, n in stored.items() if d.startswith(hexdigest)), None)
            # The client says nothing as a layer ends: a pull that succeeded got them all, and
            # a layer in the store came whole. Its temporary file went before a poll saw it
            # all, so the store's size is the one to report.
            if ok or size is not None:
                self.progress.set(entry["id"], "done", size, size)

    def stored(self) -> dict[str, int]:
        """Compressed digest (hex) -> size of each layer in the client's store."""
        try:
            entries = json.loads(Path(self.layers).read_text()) if self.layers else []
        except (OSError, ValueError):
            return {}
        return {str(e["compressed-diff-digest"]).removeprefix("sha256:"): int(e["compressed-size"])
                for e in entries if isinstance(e, dict) and e.get("compressed-diff-digest")
                and isinstance(e.get("compressed-size"), int)}

    def error(self) -> str:
        return "\n".join(self.other)[-2000:]

    def bytes(self) -> int:
        return sum(self.seen.values())


def run_command(job: dict, limit: float) -> dict:
    env = dict(os.environ)
    for key in job.get("unset", []):
        env.pop(key, None)
    env.update(job.get("env", {}))
    if job.get("remove"):
        subprocess.run(job["remove"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30, check=False)
    progress = Progress()
    reader = (CtrOutput(progress) if job["parser"] == "ctr"
              else ImageOutput(progress, job.get("watch"), job.get("layers")))
    start = time.monotonic()
    proc = subprocess.Popen(job["pull"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    tail: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace")
            tail.append(_ANSI.sub("", line))
            del tail[:-200]
            reader.line(line)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    while proc.poll() is None and time.monotonic() - start < limit:
        if isinstance(reader, ImageOutput):
            reader.poll()
        time.sleep(0.1)
    hung = proc.poll() is None
    result: dict = {"duration": time.monotonic() - start, "hung": hung}
    if isinstance(reader, ImageOutput):
        reader.poll()
        result["idle"] = round(time.monotonic() - reader.moved, 3)
        result["retries"] = reader.retries
    if hung:
        if "peers" in job:  # what the client holds at the bound, before it is killed
            result.update(_connections(job["peers"]))
        proc.kill()
    else:
        thread.join(5)
    result["ok"] = proc.returncode == 0 and not hung
    if isinstance(reader, ImageOutput):
        reader.finish(result["ok"])
    else:
        reader.exact(job.get("content"))
    if not result["ok"] and not hung:
        result["error"] = reader.error() or "".join(tail)[-2000:]
    result["output"] = "".join(tail)[-4000:]
    return _summary(result, progress, reader.bytes())


def _connections(peers: dict[str, str]) -> dict:
    """The connections this namespace holds to the run's servers (chaos.probes.evidence)."""
    try:
        from chaos.sandbox.sockets import tcp_connections

        return {"connections": [c.to_dict() for c in tcp_connections(None, peers)
                                if c.state != "time-wait"]}
    except Exception as exc:  # noqa: BLE001 - evidence never changes a verdict
        return {"connections_error": f"{type(exc).__name__}: {exc}"}


def run_dockerd(job: dict, limit: float) -> dict:
    import docker

    image = job["image"]
    client = docker.DockerClient(base_url=job["docker_host"], version="1.41", timeout=limit + 5)
    repo, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "latest")
    try:
        client.images.remove(image, force=True)
    except docker.errors.ImageNotFound:
        pass
    result: dict = {"ok": False}
    progress = Progress()
    done = threading.Event()

    def work() -> None:
        try:
            for event in client.api.pull(repo, tag=tag, stream=True, decode=True,
                                          platform=job.get("platform")):
                if "error" in event:
                    result["error"] = event["error"]
                    return
                if str(event.get("status", "")).startswith("Digest: "):
                    result["digest"] = event["status"].removeprefix("Digest: ").strip()
                progress.event(event)
            result["ok"] = True
        except Exception as exc:  # the error text is the observation
            result["error"] = str(getattr(exc, "explanation", None) or exc)
        finally:
            done.set()

    start = time.monotonic()
    threading.Thread(target=work, daemon=True).start()
    result["hung"] = not done.wait(limit)
    result["duration"] = time.monotonic() - start
    return _summary(result, progress, None)


def _summary(result: dict, progress: Progress, total: int | None) -> dict:
    # Read now, not when the pull ends: a hung pull never ends, and what came so far is
    # what the report must say.
    layers = progress.report()
    result["layers"] = sum(e["state"] in _DOWNLOADED for e in layers)
    result["cached_layers"] = sum(e["state"] == "cached" for e in layers)
    result["bytes"] = max(total or 0, sum(e["bytes"] for e in layers))
    result["progress"] = layers
    return result


def pull(job: dict, limit: float) -> dict:
    return run_dockerd(job, limit) if job["client"] == "dockerd" else run_command(job, limit)


def main(argv: list[str]) -> None:
    job, limit = json.loads(argv[0]), float(argv[1])
    sys.stdout.write(json.dumps(pull(job, limit)))
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
