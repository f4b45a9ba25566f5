"""`chaos serve` (the Toxiproxy-compatible API): toxic round trips, and a proxy made through it vs socat.

    sudo .venv/bin/python benchmarks/toxiproxy_api.py [--gib 1] [--runs 5] [--toggles 200]

1. Add + remove a toxic through the API (``POST /proxies/p/toxics`` then ``DELETE``), on
   one keep-alive connection as a client library keeps it: each call returns once the TCP
   proxy has loaded (or dropped) the rule and the journal has it. Peer in the same run:
   ``GET /version`` on the same connection, the HTTP floor of one call.
2. Pass-through throughput of a proxy created through the API (no toxic: kernel splice), vs
   ``socat -b 262144`` and a direct connection, in alternating rounds (the download and
   socat helpers are benchmarks/tcp_proxy.py's).

Needs socat (apt: socat). Everything it starts is stopped at the end (the server with
SIGTERM: it reverts what it made).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tcp_proxy import Helpers, MiB, download

from benchlib import chaos_argv, figure, median, pct

TOXIC = json.dumps({"name": "lat", "type": "latency", "attributes": {"latency": 50}})


def call(conn: http.client.HTTPConnection, method: str, path: str, body: str | None = None) -> bytes:
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status >= 300 and resp.status != 204 or (method == "POST" and resp.status >= 300):
        raise RuntimeError(f"{method} {path}: {resp.status} {data!r}")
    return data


def start_server(state: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([*chaos_argv(), "serve", "--listen", "127.0.0.1:0", "--state-dir", state],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if "http://" not in line:
        proc.kill()
        raise RuntimeError(f"chaos serve did not start: {line!r}")
    return proc, int(line.split("http://")[1].split()[0].rsplit(":", 1)[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gib", type=float, default=1.0, help="GiB per throughput run")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--toggles", type=int, default=200, help="add + remove round trips")
    args = ap.parse_args()
    if not shutil.which("socat"):
        sys.exit("needs socat (apt-get install socat)")
    state = tempfile.mkdtemp(prefix="chaos-bench-api-")
    helpers = Helpers()
    server, port = start_server(state)
    try:
        total = int(args.gib * (1 << 30)) // MiB * MiB
        source = helpers.role("source", str(total))
        socat = helpers.socat(source)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        made = json.loads(call(conn, "POST", "/proxies",
                               json.dumps({"name": "p", "upstream": f"127.0.0.1:{source}",
                                           "listen": "127.0.0.1:0"})))
        proxy_port = int(made["listen"].rsplit(":", 1)[1])

        # 1. add + remove round trips (and the floor: GET /version)
        for _ in range(10):  # warm-up: the fault model's import, the first reloads
            call(conn, "POST", "/proxies/p/toxics", TOXIC)
            call(conn, "DELETE", "/proxies/p/toxics/lat")
        trips, adds, floor = [], [], []
        for _ in range(args.toggles):
            t0 = time.perf_counter()
            call(conn, "POST", "/proxies/p/toxics", TOXIC)
            t1 = time.perf_counter()
            call(conn, "DELETE", "/proxies/p/toxics/lat")
            t2 = time.perf_counter()
            call(conn, "GET", "/version")
            t3 = time.perf_counter()
            trips.append(t2 - t0)
            adds.append(t1 - t0)
            floor.append(t3 - t2)
        ms = [x * 1000 for x in trips]
        print(f"add + remove toxic, {args.toggles} round trips: p50 {pct(ms, .5):.2f} ms, "
              f"p99 {pct(ms, .99):.2f} ms (add alone p50 {median(adds) * 1000:.2f} ms); "
              f"GET /version p50 {median(floor) * 1000:.3f} ms", flush=True)
        figure("Toxiproxy API: add + remove toxic", f"p50 {pct(ms, .5):.2f} ms, p99 {pct(ms, .99):.2f} ms",
               f"GET /version p50 {median(floor) * 1000:.2f} ms", "-", "-", None)

        # 2. throughput: direct, socat, the API's proxy, alternating
        peers = {"direct": source, "socat -b 262144": socat, "api proxy": proxy_port}
        rates: dict[str, list[float]] = {name: [] for name in peers}
        for i in range(args.runs):
            for name in (list(peers) if i % 2 == 0 else list(peers)[::-1]):
                rates[name].append(download(peers[name], total))
        print(f"throughput, {args.gib:g} GiB per run, median of {args.runs} (GiB/s):")
        for name, values in rates.items():
            print(f"  {name:16s} {statistics.median(values):6.2f}   runs: "
                  f"{' '.join(f'{x:.2f}' for x in values)}")
        vs_socat = statistics.median(a / b for a, b in zip(rates["api proxy"], rates["socat -b 262144"],
                                                           strict=True))
        vs_direct = statistics.median(a / b for a, b in zip(rates["api proxy"], rates["direct"], strict=True))
        print(f"  api proxy/socat {vs_socat:.2f}x; api proxy/direct {vs_direct:.2f}x"
              " (medians of per-round ratios)", flush=True)
        figure("Toxiproxy API proxy pass-through", f"{statistics.median(rates['api proxy']):.2f} GiB/s",
               f"socat -b 262144 {statistics.median(rates['socat -b 262144']):.2f} GiB/s; direct "
               f"{statistics.median(rates['direct']):.2f} GiB/s",
               f"{vs_socat:.2f}x socat", ">= 0.9x socat", vs_socat >= 0.9)
        conn.close()
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=30)
        helpers.stop()
        left = list((Path(state) / "runs").glob("*")) if (Path(state) / "runs").exists() else []
        shutil.rmtree(state, ignore_errors=True)
        if code != 0 or left:
            print(f"chaos serve exited {code}, left {left}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("note: not root: the TCP proxy runs without SO_MARK", file=sys.stderr)
    sys.exit(main())
