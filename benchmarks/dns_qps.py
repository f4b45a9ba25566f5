"""Answers per second of the fake DNS server vs dnsmasq vs dnslib's stock DNSServer.

    sudo .venv/bin/python benchmarks/dns_qps.py [--seconds 5] [--clients 4]

All three serve the same zone on their own loopback address (127.53.x.y, a free port),
with no upstream, and each is measured by dnsperf for the same pinned duration with the
same query mix: zone names (A, AAAA, a wildcard), a name ruled NXDOMAIN, a name ruled
sinkhole, two wildcard names ruled SERVFAIL 30 % of the time, and an unknown name
(REFUSED). Ours runs with those rules loaded and its query log on, as in a run; the others
serve the same answers without the 30 % SERVFAIL. Before and after the load every query's
rcode and addresses are checked (the flaky names 200 times each round: their SERVFAIL
count must be within the binomial 99.9 % bounds), and dnsperf's rcode mix of the load
itself must match the mix of the query file (to 1 point).
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from stats import binomial_bounds  # the tests' bounds, one copy

ZONE = {"reg.test": ["198.18.1.10", "2001:db8::1"], "*.cdn.test": ["198.18.1.11"],
        "ads.test": ["198.18.1.12"]}
QUERIES = ["reg.test A", "reg.test AAAA", "edge1.cdn.test A", "edge2.cdn.test A",
           "registry-1.docker.io A", "ads.test A", "unknown.example A"]
FLAKY_P = 0.3
RULES = [  # each one decides part of the query mix (4 of its 7 lines)
    {"id": "hub-down", "names": ["*.docker.io"], "answer": "nxdomain"},
    {"id": "flaky-cdn", "names": ["*.cdn.test"], "answer": "servfail", "probability": FLAKY_P},
    {"id": "ads-sinkhole", "names": ["ads.test"], "answer": "sinkhole", "types": ["A"]},
]
# (rcode, addresses) of each query: what dnsmasq and dnslib serve, and ours when no
# probability draw fires; ours answers the flaky names SERVFAIL with FLAKY_P besides.
EXPECTED = {"reg.test A": ("NOERROR", ("198.18.1.10",)),
            "reg.test AAAA": ("NOERROR", ("2001:db8::1",)),
            "edge1.cdn.test A": ("NOERROR", ("198.18.1.11",)),
            "edge2.cdn.test A": ("NOERROR", ("198.18.1.11",)),
            "registry-1.docker.io A": ("NXDOMAIN", ()),
            "ads.test A": ("NOERROR", ("0.0.0.0",)),
            "unknown.example A": ("REFUSED", ())}
FLAKY = ("edge1.cdn.test A", "edge2.cdn.test A")
ASKS = 100  # times each flaky query is asked per check: 200 draws of FLAKY_P

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
        elif name == "ads.test":
            addrs = ["0.0.0.0"]
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


def answer_of(addr: str, port: int, query: str, timeout: float = 1.0) -> tuple[str, tuple] | None:
    """(rcode, sorted addresses) of one query, None when no answer came."""
    from dnslib import RCODE, DNSRecord

    name, qtype = query.split()
    try:
        reply = DNSRecord.parse(DNSRecord.question(name, qtype).send(addr, port, timeout=timeout))
    except (TimeoutError, OSError):
        return None
    return RCODE.get(reply.header.rcode), tuple(sorted(str(rr.rdata) for rr in reply.rr))


def wait_answering(addr: str, port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while answer_of(addr, port, "reg.test A", 0.2) is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"server {proc.args[:3]} on {addr}:{port} did not come up")
        time.sleep(0.05)


def check_answers(label: str, addr: str, port: int, faulty: bool) -> str:
    """Every query's rcode and addresses; with faults, the flaky names' SERVFAIL rate."""
    failed = 0
    for query, expected in EXPECTED.items():
        for _ in range(ASKS if query in FLAKY else 1):
            got = answer_of(addr, port, query)
            if faulty and query in FLAKY and got == ("SERVFAIL", ()):
                failed += 1
            elif got != expected:
                raise RuntimeError(f"{label}: {query} answered {got}, expected {expected}")
    n = ASKS * len(FLAKY)
    low, high = binomial_bounds(n, FLAKY_P, 0.999) if faulty else (0, 0)
    if not low <= failed <= high:
        raise RuntimeError(f"{label}: {failed} of {n} flaky answers were SERVFAIL, "
                           f"expected {low}..{high}")
    return f"answers right, flaky SERVFAIL {failed}/{n}"


def response_codes(stdout: str) -> dict[str, float]:
    """dnsperf's "Response codes:" line as {rcode: share of the answers}."""
    line = re.search(r"Response codes:\s*(.*)", stdout)
    return {m[0]: float(m[2]) / 100 for m in re.findall(r"(\w+) (\d+) \(([0-9.]+)%\)", line.group(1))} if line else {}


def check_mix(label: str, codes: dict[str, float], faulty: bool) -> None:
    """The load itself got the right rcodes: each line of QUERIES is 1/7 of it."""
    share = {"NXDOMAIN": 1, "REFUSED": 1, "SERVFAIL": len(FLAKY) * FLAKY_P if faulty else 0}
    for rcode, lines in share.items():
        want = lines / len(QUERIES)
        if abs(codes.get(rcode, 0.0) - want) > 0.01:
            raise RuntimeError(f"{label}: under load {rcode} was {codes.get(rcode, 0.0):.2%} "
                               f"of the answers, expected {want:.2%}: {codes}")


def dnsperf(addr: str, port: int, qfile: Path, seconds: float, clients: int) -> tuple[float, str, dict]:
    p = subprocess.run(["dnsperf", "-s", addr, "-p", str(port), "-d", str(qfile),
                        "-l", str(seconds), "-c", str(clients), "-q", "200", "-t", "2"],
                       capture_output=True, text=True, timeout=seconds + 30)
    qps = re.search(r"Queries per second:\s+([0-9.]+)", p.stdout)
    lost = re.search(r"Queries lost:\s+(\d+ \([0-9.]+%\))", p.stdout)
    if not qps:
        raise RuntimeError(f"dnsperf said:\n{p.stdout}{p.stderr}")
    return float(qps.group(1)), lost.group(1) if lost else "?", response_codes(p.stdout)


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
            "--host-record=ads.test,0.0.0.0",
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
                faulty = label == "chaos fake DNS"
                wait_answering(addr, port, proc)
                before = check_answers(label, addr, port, faulty)
                qps, lost, codes = dnsperf(addr, port, qfile, args.seconds, args.clients)
                check_mix(label, codes, faulty)
                after = check_answers(label, addr, port, faulty)
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            results[label] = qps
            mix = ", ".join(f"{k} {v:.1%}" for k, v in sorted(codes.items()))
            print(f"{label:18} {qps:10,.0f} answers/s  (lost {lost}; {addr}:{port}, "
                  f"{args.seconds:g} s, dnsperf -c {args.clients})\n"
                  f"{'':18} under load: {mix}\n{'':18} before: {before}; after: {after}", flush=True)

    ours = results["chaos fake DNS"]
    print(f"ratio chaos/dnsmasq: {ours / results['dnsmasq']:.2f}")
    print(f"ratio chaos/dnslib DNSServer: {ours / results['dnslib DNSServer']:.2f}")
    target = 25_000
    print(f"target >= {target:,} answers/s: {'met' if ours >= target else 'NOT met'}")
    return 0 if ours >= target else 1


if __name__ == "__main__":
    sys.exit(main())
