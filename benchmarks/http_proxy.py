#!/usr/bin/env python
"""Benchmark: the HTTP fault proxy (mitmdump + every chaos addon) against plain mitmdump.

Both run in the same invocation with the same settings (streaming, lazy connect, quiet log);
the only difference is the addons: ours load all five, with one non-matching rule per fault
and the request log on, so each request pays for matching and logging.

1. requests/s: wrk (Debian package ``wrk``) through each proxy to a small answer of a local
   asyncio origin, in alternating rounds (plain, chaos, chaos, plain, ...); medians. Also
   the proxy's CPU time per request (from /proc), which a busy machine disturbs far less
   than wall-clock throughput: mitmdump is CPU-bound on one core here.
2. streaming: a 1 GiB body through a fresh process of each (alternating rounds, six each),
   with curl; peak RSS of the mitmdump process (sampled, and VmHWM) and its growth over the
   idle baseline, MB/s (median), the ratio as the median of per-round ratios, and the
   origin without any proxy for reference.

Prints each figure and the ratio chaos / plain. Target: >= 1.0x requests/s (a flow no rule
matches costs nothing measurable), flat memory.

    .venv/bin/python benchmarks/http_proxy.py [--duration 4] [--rounds 6] [--blob-mib 1024]
    .venv/bin/python benchmarks/http_proxy.py --hooks [--rounds 15]

``--hooks``: the chaos addons alone, in this process, no network: mitmproxy test flows
through the fault hooks (the rules above) and through the request log (to a file), microseconds
per flow, minimum and median of the rounds (2,000 flows each). A busy machine moves the
end-to-end figures far more than the hooks' part of them; run it with PYTHONPATH set to
another checkout to compare two versions of the addons.

Loopback only; every process it starts is journaled and stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CHUNK = 1 << 20


# -- the origin (run as a child process: ``--serve-origin PORT BLOB_BYTES``) --------------------

async def _serve(port: int, blob_bytes: int) -> None:
    chunk = b"x" * CHUNK
    small = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 3\r\n\r\nok\n"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b" ", 2)[1]
                if target.endswith(b"/blob"):
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n"
                                 b"content-length: %d\r\n\r\n" % blob_bytes)
                    left = blob_bytes
                    while left > 0:
                        writer.write(chunk[:min(left, CHUNK)])
                        left -= CHUNK
                        await writer.drain()
                else:
                    writer.write(small)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=512)
    async with server:
        await server.serve_forever()


# -- helpers -----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def wrk(proxy, origin: str, duration: float, connections: int, script: Path) -> dict:
    """Load the proxy with wrk; also the proxy's CPU time per request (robust to a busy box)."""
    # wrk has no proxy support: send the absolute-form request line a proxy expects.
    script.write_text(f'wrk.path = "{origin}/"\nwrk.headers["Host"] = "{origin.split("//")[1]}"\n')
    cpu = cpu_seconds(proxy.pid)
    done = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "5s",
         "-s", str(script), proxy.url + "/"], capture_output=True, text=True, timeout=duration + 30)
    cpu = cpu_seconds(proxy.pid) - cpu
    out = done.stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    count = re.search(r"(\d+) requests in", out)
    if not found or not count:
        raise RuntimeError(f"wrk said: {out} {done.stderr}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:(.*)", out)
    served = int(count.group(1))  # 0 when a loaded machine starved a short warm-up round
    return {"rps": float(found.group(1)), "cpu_us": cpu / served * 1e6 if served else float("nan"),
            "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "errors": errors.group(1).strip() if errors else ""}


def stream(proxy, origin: str, blob_bytes: int) -> dict:
    """Download the blob through proxy (None: directly), sampling the proxy's RSS."""
    argv = ["curl", "-sS", "-o", os.devnull, "-w", "%{size_download} %{time_total}"]
    if proxy is not None:
        argv += ["-x", proxy.url]
    baseline = status_kib(proxy.pid, "VmRSS") if proxy else 0
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(status_kib(proxy.pid, "VmRSS"))
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    if proxy is not None:
        sampler.start()
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    done = subprocess.run(argv + [f"{origin}/blob"], capture_output=True, text=True, env=env,
                          timeout=600)
    stop.set()
    if proxy is not None:
        sampler.join()
    size, seconds = done.stdout.split()
    if int(size) != blob_bytes:
        raise RuntimeError(f"got {size} of {blob_bytes} bytes: {done.stderr}")
    result = {"mb_s": blob_bytes / float(seconds) / 1e6, "seconds": float(seconds)}
    if proxy is not None:
        result.update(baseline_mib=baseline / 1024, peak_rss_mib=max(samples) / 1024,
                      vmhwm_mib=status_kib(proxy.pid, "VmHWM") / 1024,
                      growth_mib=(max(samples) - baseline) / 1024)
    return result


# -- the two proxies ---------------------------------------------------------------------------

NON_MATCHING_RULES = [
    {"id": "bench-err", "fault": "http-error", "status": 503, "match": {"host": "nothing.invalid"}},
    {"id": "bench-bot", "fault": "bot-mitigation", "signature": {"user_agent": "^nobody$"},
     "action": "drop"},
    {"id": "bench-geo", "fault": "geo-block", "action": "http-451", "region": "XX",
     "block": ["198.18.255.1"], "match": {"clients": ["198.18.255.0/24"]}},
    {"id": "bench-cut", "fault": "partial", "bytes": 10, "match": {"path": "/never/*"}},
]


def start_pair(journal, work: Path, tag: str):
    from chaos.injectors.http_proxy import HttpProxy, mitmdump_argv, start_http_proxy
    from chaos.processes import spawn

    confdir = work / "conf"
    chaos = start_http_proxy(journal, netns=None, listen=f"127.0.0.1:{free_port()}",
                             mode="regular", run_dir=work / f"chaos-{tag}", confdir=confdir)
    for rule in NON_MATCHING_RULES:
        chaos.rule(rule).apply(journal)
    port = free_port()
    run_dir = work / f"plain-{tag}"
    run_dir.mkdir()
    argv = mitmdump_argv(listen=("127.0.0.1", port), mode="regular", confdir=confdir, addons=False)
    with open(run_dir / "mitmdump.log", "ab") as log:
        proc, entry = spawn(journal, argv, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, what="plain mitmdump (benchmark peer)")
    plain = HttpProxy(journal, proc, entry, netns=None, host="127.0.0.1", port=port,
                      mode="regular", run_dir=run_dir, confdir=confdir)
    plain.wait_ready(15)
    return plain, chaos


def hooks(rounds: int, flows_per_round: int = 2000) -> None:
    """The chaos addons' own cost per flow (see --hooks in the docstring)."""
    from mitmproxy.test import tflow

    from chaos.injectors.http_faults.all import Faults
    from chaos.injectors.http_faults.request_log import RequestLog

    work = Path(tempfile.mkdtemp(prefix="chaos-bench-hooks-"))
    try:
        (work / "rules").mkdir()
        for rule in NON_MATCHING_RULES:
            (work / "rules" / f"{rule['id']}.json").write_text(json.dumps(rule))
        faults, log = Faults(), RequestLog()
        faults.rules.configure(str(work / "rules"))
        if hasattr(log, "fd"):
            log.fd = os.open(work / "log.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        else:  # an older RequestLog (PYTHONPATH at another checkout)
            log.file = open(work / "log.jsonl", "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        flows = [tflow.tflow(resp=True) for _ in range(flows_per_round)]
        for flow in flows:
            flow.request.headers["user-agent"] = "curl/8.0"

        async def through(which: str) -> float:
            for flow in flows:
                flow.metadata.clear()
            start = time.perf_counter()
            for flow in flows:
                if which == "faults":
                    for hook in (faults.request, faults.responseheaders, faults.response):
                        if (pending := hook(flow)) is not None:
                            await pending
                else:
                    log.requestheaders(flow)
                    log.responseheaders(flow)
                    log.response(flow)
            return (time.perf_counter() - start) / len(flows) * 1e6

        times: dict[str, list[float]] = {"faults": [], "log": []}
        for i in range(rounds + 1):
            for which in ("faults", "log") if i % 2 else ("log", "faults"):
                took = asyncio.run(through(which))
                if i:  # the first round warms up
                    times[which].append(took)
        for which, v in times.items():
            print(f"{which:6s} hooks: {min(v):6.1f} us per flow (min), median {statistics.median(v):6.1f}"
                  f" of {rounds} rounds of {flows_per_round}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per wrk round")
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds per proxy")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--blob-mib", type=int, default=1024)
    parser.add_argument("--stream-rounds", type=int, default=6, help="alternating 1 GiB runs per proxy")
    parser.add_argument("--serve-origin", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--hooks", action="store_true", help="the addons alone on test flows")
    args = parser.parse_args()
    if args.hooks:
        hooks(args.rounds)
        return 0
    if args.serve_origin:
        asyncio.run(_serve(*args.serve_origin))
        return 0
    for tool in ("wrk", "curl"):
        if not shutil.which(tool):
            print(f"needs {tool} (apt-get install {tool})", file=sys.stderr)
            return 2

    from chaos.journal import Journal

    work = Path(tempfile.mkdtemp(prefix="chaos-bench-http-"))
    os.environ["CHAOS_STATE_DIR"] = str(work / "state")
    journal = Journal.create(f"bench-http-{os.getpid()}")
    blob_bytes = args.blob_mib * CHUNK
    origin_port = free_port()
    origin_proc = subprocess.Popen([sys.executable, __file__, "--serve-origin", str(origin_port),
                                    str(blob_bytes)])
    results: dict = {"rps": {"plain": [], "chaos": []}}
    try:
        wait_port(origin_port)
        origin = f"http://127.0.0.1:{origin_port}"
        from mitmproxy.version import VERSION

        import chaos.injectors.http_proxy as hp
        print(f"mitmproxy {VERSION}, wrk -t1 -c{args.connections} {args.duration:g}s x "
              f"{args.rounds} rounds, streaming {args.blob_mib} MiB, stream_large_bodies="
              f"{hp.STREAM_LARGE_BODIES}, {os.cpu_count()} cpus")

        # 1. requests/s, alternating so drift hits both alike.
        plain, chaos = start_pair(journal, work, "rps")
        for _name, proxy in [("plain", plain), ("chaos", chaos)]:  # warm up
            wrk(proxy, origin, 1, args.connections, work / "req.lua")
        for i in range(args.rounds):
            pair = [("plain", plain), ("chaos", chaos)]
            for name, proxy in pair if i % 2 == 0 else pair[::-1]:
                r = wrk(proxy, origin, args.duration, args.connections, work / "req.lua")
                results["rps"][name].append(r)
                print(f"  {name:5s} {r['rps']:8.1f} req/s  {r['cpu_us']:6.0f} us CPU/request  "
                      f"non-2xx {r['non2xx']}  {r['errors']}")
        logged = len(chaos.requests())
        plain.stop()
        chaos.stop()

        # 2. streaming through fresh processes, so peak RSS is the stream's alone.
        plain, chaos = start_pair(journal, work, "stream")
        results["stream"] = {"direct": stream(None, origin, blob_bytes)}
        runs: dict[str, list] = {"plain": [], "chaos": []}
        for i in range(args.stream_rounds):
            pair = [("plain", plain), ("chaos", chaos)]
            for name, proxy in pair if i % 2 == 0 else pair[::-1]:
                runs[name].append(stream(proxy, origin, blob_bytes))
                print(f"  {name:5s} {runs[name][-1]['mb_s']:7.1f} MB/s streaming")
        for name, rs in runs.items():
            results["stream"][name] = {
                "mb_s": statistics.median(r["mb_s"] for r in rs),
                "baseline_mib": rs[0]["baseline_mib"],
                "peak_rss_mib": max(r["peak_rss_mib"] for r in rs),
                "vmhwm_mib": rs[-1]["vmhwm_mib"],
                "growth_mib": max(r["peak_rss_mib"] for r in rs) - rs[0]["baseline_mib"],
            }
        # Each round's two transfers ran back to back: their ratio drifts less with the machine
        # than the ratio of the two sides' medians (one transfer moved 580-830 MB/s in a run).
        results["stream"]["ratio"] = statistics.median(
            c["mb_s"] / p["mb_s"] for p, c in zip(runs["plain"], runs["chaos"], strict=True))
        streamed_log = [e for e in chaos.requests() if e["path"] == "/blob"]
        plain.stop()
        chaos.stop()
    finally:
        failures = journal.rollback()
        journal.finish()
        origin_proc.terminate()
        origin_proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print("revert failures:", *failures, sep="\n  ", file=sys.stderr)

    rps = {k: statistics.median(r["rps"] for r in v) for k, v in results["rps"].items()}
    cpu = {k: statistics.median(r["cpu_us"] for r in v) for k, v in results["rps"].items()}
    s = results["stream"]
    print()
    print(f"requests/s (median)  plain mitmdump {rps['plain']:7.1f}  with chaos addons "
          f"{rps['chaos']:7.1f}  ratio {rps['chaos'] / rps['plain']:.2f}x (target >= 1.0)")
    print(f"CPU per request      plain mitmdump {cpu['plain']:7.0f} us  with chaos addons "
          f"{cpu['chaos']:7.0f} us  capacity ratio {cpu['plain'] / cpu['chaos']:.2f}x  "
          f"(requests logged {logged})")
    print(f"stream {args.blob_mib} MiB  direct {s['direct']['mb_s']:7.1f} MB/s")
    for name in ("plain", "chaos"):
        r = s[name]
        print(f"  {name:5s} {r['mb_s']:7.1f} MB/s  baseline RSS {r['baseline_mib']:6.1f} MiB  "
              f"peak RSS {r['peak_rss_mib']:6.1f} MiB (VmHWM {r['vmhwm_mib']:6.1f})  "
              f"growth {r['growth_mib']:5.1f} MiB")
    print(f"  ratio chaos/plain: throughput {s['ratio']:.2f}x (median of per-round ratios), "
          f"peak RSS {s['chaos']['peak_rss_mib'] / s['plain']['peak_rss_mib']:.2f}x; "
          f"logged bytes {streamed_log[0]['bytes'] if streamed_log else None}")
    print(json.dumps({"rps": rps, "cpu_us": cpu, "stream": s}, separators=(",", ":")))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
