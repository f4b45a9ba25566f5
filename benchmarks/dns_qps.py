"""Answers per second of the fake DNS server vs dnsmasq vs dnslib's stock DNSServer.

    sudo .venv/bin/python benchmarks/dns_qps.py [--seconds 5] [--clients 4]

All three serve the same zone on their own loopback address (127.53.x.y, a free port),
with no upstream, and each is measured by dnsperf for the same pinned duration with the
same query mix: zone names (A, AAAA, a wildcard), a name a rule answers NXDOMAIN and an
unknown name (REFUSED). Ours runs with rules loaded and its query log on, as in a run.
Needs: dnsperf, dnsmasq (apt: dnsperf dnsmasq-base). Every process it starts is killed at
the end; nothing is installed as a service.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ZONE = {"reg.test": ["198.18.1.10", "2001:db8::1"], "*.cdn.test": ["198.18.1.11"]}
QUERIES = ["reg.test A", "reg.test AAAA", "edge1.cdn.test A", "registry-1.docker.io A",
           "unknown.example A"]
RULES = [  # what a scenario would switch on; only the NXDOMAIN one matches the query mix
    {"id": "hub-down", "names": ["*.docker.io"], "answer": "nxdomain"},
    {"id": "flaky-ghcr", "names": ["*.ghcr.io"], "answer": "servfail", "probability": 0.3},
    {"id": "slow-quay", "names": ["quay.io"], "answer": "delay", "delay": 0.2},
]
EXPECTED = {"reg.test A": "NOERROR", "reg.test AAAA": "NOERROR", "edge1.cdn.test A": "NOERROR",
            "registry-1.docker.io A": "NXDOMAIN", "unknown.example A": "REFUSED"}

DNSLIB_SERVER = r"""
import sys, time
from dnslib import QTYPE, RCODE, RR, A, AAAA
from dnslib.server import BaseResolver, DNSLogger, DNSServer

ZONE = {"reg.test": ["198.18.1.10", "2001:db8::1"]}

class Zone(BaseResolver):
    def resolve(self, request, handler):
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        if name.endswith(".cdn.test"):
            addrs = ["198.18.1.11"]
        elif name.endswith("docker.io"):
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        else:
            addrs = ZONE.get(name)
        if addrs is None:
            reply.header.rcode = RCODE.REFUSED
            return reply
        for a in addrs:
            if ":" in a and request.q.qtype == QTYPE.AAAA:
                reply.add_answer(RR(request.q.qname, QTYPE.AAAA, rdata=AAAA(a), ttl=1))
            elif ":" not in a and request.q.qtype == QTYPE.A:
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(a), ttl=1))
        return reply

server = DNSServer(Zone(), address=sys.argv[1], port=int(sys.argv[2]),
                   logger=DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data"))
server.start_thread()
print("ready", flush=True)
while server.isAlive():
    time.sleep(0.5)
"""


def free_address() -> tuple[str, int]:
    """A random 127.53.x.y and a port free there for both UDP and TCP."""
    for _ in range(50):
        addr = f"127.53.{random.randrange(256)}.{random.randrange(1, 255)}"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((addr, 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind((addr, port))
                except OSError:
                    continue
        return addr, port
    raise RuntimeError("no free loopback address/port found")


def rcode_of(addr: str, port: int, query: str, timeout: float = 1.0) -> str | None:
    from dnslib import RCODE, DNSRecord

    name, qtype = query.split()
    try:
        reply = DNSRecord.parse(DNSRecord.question(name, qtype).send(addr, port, timeout=timeout))
    except (OSError, socket.timeout):
        return None
    return RCODE.get(reply.header.rcode)


def wait_answering(addr: str, port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while rcode_of(addr, port, "reg.test A", 0.2) is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"server {proc.args[:3]} on {addr}:{port} did not come up")
        time.sleep(0.05)


def check_answers(label: str, addr: str, port: int) -> None:
    got = {q: rcode_of(addr, port, q) for q in QUERIES}
    if got != EXPECTED:
        raise RuntimeError(f"{label} answers differently than the others: {got}")


def dnsperf(addr: str, port: int, qfile: Path, seconds: float, clients: int) -> tuple[float, str]:
    p = subprocess.run(["dnsperf", "-s", addr, "-p", str(port), "-d", str(qfile),
                        "-l", str(seconds), "-c", str(clients), "-q", "200", "-t", "2"],
                       capture_output=True, text=True, timeout=seconds + 30)
    qps = re.search(r"Queries per second:\s+([0-9.]+)", p.stdout)
    lost = re.search(r"Queries lost:\s+(\d+ \([0-9.]+%\))", p.stdout)
    if not qps:
        raise RuntimeError(f"dnsperf said:\n{p.stdout}{p.stderr}")
    return float(qps.group(1)), lost.group(1) if lost else "?"


def start_ours(work: Path, addr: str, port: int) -> subprocess.Popen:
    rules = work / "rules"
    rules.mkdir()
    for rule in RULES:
        (rules / f"{rule['id']}.json").write_text(json.dumps(rule))
    (work / "zone.json").write_text(json.dumps(ZONE))
    proc = subprocess.Popen([sys.executable, "-m", "chaos.injectors.dns_server", "--listen", addr,
                             "--port", str(port), "--zone", str(work / "zone.json"),
                             "--rules-dir", str(rules), "--log", str(work / "queries.jsonl")],
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    if proc.stdout.readline().strip() != b"ready":
        raise RuntimeError("our server did not start")
    return proc


def start_dnsmasq(work: Path, addr: str, port: int) -> subprocess.Popen:
    argv = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--no-poll", "--pid-file=", "--host-record=reg.test,198.18.1.10,2001:db8::1",
            f"--listen-address={addr}",
            "--bind-interfaces", f"--port={port}", "--address=/cdn.test/198.18.1.11",
            "--address=/docker.io/", "--local-ttl=1", "--log-facility=/dev/null",
            "--user=nobody"]
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL)


def start_dnslib(work: Path, addr: str, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", DNSLIB_SERVER, addr, str(port)],
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    if proc.stdout.readline().strip() != b"ready":
        raise RuntimeError("dnslib's DNSServer did not start")
    return proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="dnsperf run per server")
    parser.add_argument("--clients", type=int, default=4, help="dnsperf -c")
    args = parser.parse_args()
    for tool in ("dnsperf", "dnsmasq"):
        if not shutil.which(tool):
            print(f"{tool} is missing (apt-get install dnsperf dnsmasq-base)", file=sys.stderr)
            return 2

    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="chaos-dnsbench-") as tmp:
        work = Path(tmp)
        qfile = work / "queries.txt"
        qfile.write_text("\n".join(QUERIES) + "\n")
        for label, start in (("chaos fake DNS", start_ours), ("dnsmasq", start_dnsmasq),
                             ("dnslib DNSServer", start_dnslib)):
            addr, port = free_address()
            (work / label.replace(" ", "_")).mkdir()
            proc = start(work / label.replace(" ", "_"), addr, port)
            try:
                wait_answering(addr, port, proc)
                check_answers(label, addr, port)
                qps, lost = dnsperf(addr, port, qfile, args.seconds, args.clients)
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            results[label] = qps
            print(f"{label:18} {qps:10,.0f} answers/s  (lost {lost}; {addr}:{port}, "
                  f"{args.seconds:g} s, dnsperf -c {args.clients})", flush=True)

    ours = results["chaos fake DNS"]
    print(f"ratio chaos/dnsmasq: {ours / results['dnsmasq']:.2f}")
    print(f"ratio chaos/dnslib DNSServer: {ours / results['dnslib DNSServer']:.2f}")
    target = 25_000
    print(f"target >= {target:,} answers/s: {'met' if ours >= target else 'NOT met'}")
    return 0 if ours >= target else 1


if __name__ == "__main__":
    sys.exit(main())
