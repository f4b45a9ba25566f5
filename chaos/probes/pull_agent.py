"""The docker-pull agent: pull one image through a dockerd with the docker SDK, as JSON.

`python -m chaos.probes.pull_agent DOCKER_HOST IMAGE SECONDS [PLATFORM]` removes the local
copy, pulls and prints {"ok", "error", "digest" (dockerd's "Digest:" line), "layers"
(downloaded), "cached_layers", "bytes", "duration", "hung", "progress"}.
A pull still running after SECONDS is abandoned and reported as hung
(the runner kills this process if it does not come back). "progress" has one entry per
layer in the order dockerd announced them: its state, the bytes that came so far, its size
and the seconds since its last progress event, so a hung pull says which layer stalled
where and for how long.
"""

from __future__ import annotations

import json
import sys
import threading
import time

_STATES = {"Pulling fs layer": "queued", "Waiting": "waiting", "Downloading": "downloading",
           "Verifying Checksum": "verifying", "Download complete": "downloaded",
           "Extracting": "extracting", "Pull complete": "done", "Already exists": "cached"}


class Progress:
    """Per-layer progress of one pull, fed by dockerd's events (one thread writes, another
    reads once the pull ended or was given up)."""

    def __init__(self) -> None:
        self.layers: dict[str, dict] = {}
        self.lock = threading.Lock()

    def event(self, event: dict) -> None:
        layer, state = event.get("id"), _STATES.get(event.get("status", ""))
        if not layer or state is None:  # the image's own lines ("Pulling from", "Digest")
            return
        detail = event.get("progressDetail") or {}
        with self.lock:
            entry = self.layers.setdefault(layer, {"id": layer, "state": state, "bytes": 0,
                                                   "size": None, "last": time.monotonic()})
            entry["state"], entry["last"] = state, time.monotonic()
            if state == "downloading":
                entry["bytes"] = detail.get("current", entry["bytes"])
                entry["size"] = detail.get("total") or entry["size"]
            elif state in ("verifying", "downloaded") and entry["size"]:
                entry["bytes"] = entry["size"]

    def report(self) -> list[dict]:
        now = time.monotonic()
        with self.lock:
            return [{"id": e["id"], "state": e["state"], "bytes": e["bytes"], "size": e["size"],
                     "idle": round(now - e["last"], 3)} for e in self.layers.values()]


def pull(base_url: str, image: str, limit: float, platform: str | None = None) -> dict:
    import docker

    client = docker.DockerClient(base_url=base_url, version="1.41", timeout=limit + 5)
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
                                          platform=platform):
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
    # Read now, not when the pull ends: a hung pull never ends, and what came so far is
    # what the report must say.
    layers = progress.report()
    downloaded = ("verifying", "downloaded", "extracting", "done")
    result["layers"] = sum(e["state"] in downloaded for e in layers)
    result["cached_layers"] = sum(e["state"] == "cached" for e in layers)
    result["bytes"] = sum(e["bytes"] for e in layers)
    result["progress"] = layers
    return result


def main(argv: list[str]) -> None:
    base_url, image, limit = argv[0], argv[1], float(argv[2])
    platform = argv[3] if len(argv) > 3 else None
    sys.stdout.write(json.dumps(pull(base_url, image, limit, platform)))
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
