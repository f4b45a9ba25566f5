"""The docker-pull agent: pull one image through a dockerd with the docker SDK, as JSON.

`python -m chaos.probes.pull_agent DOCKER_HOST IMAGE SECONDS` removes the local copy, pulls
and prints {"ok", "error", "layers" (downloaded), "cached_layers", "bytes", "duration",
"hung"}. A pull still running after SECONDS is abandoned and reported as hung (the runner
kills this process if it does not come back).
"""

from __future__ import annotations

import json
import sys
import threading
import time


def pull(base_url: str, image: str, limit: float) -> dict:
    import docker

    client = docker.DockerClient(base_url=base_url, version="1.41", timeout=limit + 5)
    repo, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "latest")
    try:
        client.images.remove(image, force=True)
    except docker.errors.ImageNotFound:
        pass
    result: dict = {"ok": False, "layers": 0, "cached_layers": 0, "bytes": 0}
    done = threading.Event()

    def work() -> None:
        sizes = {}
        try:
            for event in client.api.pull(repo, tag=tag, stream=True, decode=True):
                if "error" in event:
                    result["error"] = event["error"]
                    return
                status, layer = event.get("status", ""), event.get("id")
                total = (event.get("progressDetail") or {}).get("total")
                if status == "Downloading" and total:
                    sizes[layer] = total
                elif status == "Download complete":
                    result["layers"] += 1
                elif status == "Already exists":
                    result["cached_layers"] += 1
            result["ok"] = True
        except Exception as exc:  # the error text is the observation
            result["error"] = str(getattr(exc, "explanation", None) or exc)
        finally:
            result["bytes"] = sum(sizes.values())
            done.set()

    start = time.monotonic()
    threading.Thread(target=work, daemon=True).start()
    result["hung"] = not done.wait(limit)
    result["duration"] = time.monotonic() - start
    return result


def main(argv: list[str]) -> None:
    base_url, image, limit = argv[0], argv[1], float(argv[2])
    sys.stdout.write(json.dumps(pull(base_url, image, limit)))
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
