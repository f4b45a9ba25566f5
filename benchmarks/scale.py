"""Inject + revert time of each list-taking fault type at 10 / 100 / 1,000 / 10,000 entries.

    sudo .venv/bin/python benchmarks/scale.py [--rounds 3] [--sizes 10,100,1000,10000] [--quick]

A CDN's published ranges are hundreds of prefixes, a cloud's thousands: a fault with a long
list must cost what the work costs. Each fault type's injector is applied and reverted with
a real journal (every change fsynced before it is made), next to its peer making the same
change the usual bulk way, in alternating order, each side in a namespace of its own that
this script creates (chaos-bench-*):

    route-blackhole  RouteInjector blackhole, N /32s     ip -batch: route add / route del
    packet-filter    PacketFilter drop, N destinations   iptables-restore --noflush: own
                     (OUTPUT, host-mode exact revert)     chain of N rules + jump; removal batch
    geo-block        PacketFilter on INPUT, one region's  the same with -s
                     source range, N destinations
                     (sandbox: scratch)
    edge-redirect    EdgeRedirect of ports 80, 443 for    the same, nat REDIRECT lines
                     N destinations: what a TCP or HTTP
                     fault with destinations adds
    hosts-entry      HostsBlock, N names in a hosts file  write the file with the N lines, then
                                                          the original (each fsynced)
    dns              DnsRule sinkhole for N names in the  dnsmasq: write N names to its
                     fake DNS server (file + SIGHUP,      addn-hosts, SIGHUP, query until the
                     confirmed)                           last name answers; empty it, again

Each side's time runs until the change is in effect (a DNS query confirms both sides).
Entries are 198.18.0.0/15 addresses and names under scale.test. Target: every type injects
and reverts 10,000 entries in <= 1 s, and grows linearly (10,000 costs at most 15x 1,000:
10x plus a margin for noise). The median of --rounds rounds is printed (--quick: one
round). The chaos package measured is the one beside this script (a worktree's, not the
installed one).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the chaos beside this script
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import figure, median, namespace, need_root, run_quiet, socket_in

TARGET_S = 1.0
LINEAR = 15.0  # t(10x the entries) / t(entries) at most: 10x, plus noise
BASE = int(ipaddress.ip_address("198.18.0.0"))
SOURCE = "198.19.200.0/24"  # the geo block's region
HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
Pair = tuple[Callable[[], None], Callable[[], None]]


def addresses(n: int) -> list[str]:
    return [str(ipaddress.ip_address(BASE + 1 + i)) for i in range(n)]


def names(n: int) -> list[str]:
    return [f"h{i}.scale.test" for i in range(n)]


def ours(injector, journal) -> Pair:
    def revert() -> None:
        failures = injector.revert(journal)
        if failures:
            raise RuntimeError(f"revert failed: {failures[:3]}")
    return (lambda: injector.apply(journal)), revert


def pipe(argv: list[str], text: str) -> None:
    run_quiet(argv, input=text.encode())


# -- each fault type: (ours, peer, check) for n entries ------------------------------------
def route_case(n: int, journal, ns: dict[str, str], _work: Path):
    from chaos.injectors.routes import RouteInjector

    dsts = addresses(n)
    add = "".join(f"route add blackhole {d}/32\n" for d in dsts)
    delete = "".join(f"route del blackhole {d}/32\n" for d in dsts)
    peer = (lambda: pipe(["ip", "-n", ns["peer"], "-batch", "-"], add),
            lambda: pipe(["ip", "-n", ns["peer"], "-batch", "-"], delete))

    def check() -> bool:
        shown = run_quiet(["ip", "-n", ns["ours"], "route", "show", "type", "blackhole"]).stdout
        return shown.count(b"\n") == n
    return ours(RouteInjector([f"{d}/32" for d in dsts], "blackhole", ns["ours"]), journal), peer, check


def _filter_case(n: int, journal, ns: dict[str, str], *, hook: str, sources: list[str],
                 scratch: bool, side: str):
    from chaos.injectors.packet_filter import PacketFilter

    dsts = addresses(n)
    tag = f"chaos-{secrets.token_hex(3)}"
    pf = PacketFilter([{"action": "drop", "destinations": dsts, "sources": sources,
                        "protocol": "tcp"}], netns=ns[side], tag=tag, hook=hook, name="scale",
                      scratch=scratch)
    src = f" -s {sources[0]}" if sources else ""
    install = "\n".join(["*filter", ":peer - [0:0]",
                         *(f"-A peer{src} -d {d}/32 -p tcp -j DROP" for d in dsts),
                         f"-I {hook} 1 -j peer", "COMMIT", ""])
    remove = "\n".join(["*filter", f"-D {hook} -j peer", "-F peer", "-X peer", "COMMIT", ""])
    restore = ["ip", "netns", "exec", ns["peer"], "iptables-restore", "-w", "5", "--noflush"]
    peer = (lambda: pipe(restore, install), lambda: pipe(restore, remove))

    def check() -> bool:
        shown = run_quiet(["ip", "netns", "exec", ns[side], "iptables", "-S", pf.chain]).stdout
        return shown.count(b"-j DROP") == n
    return ours(pf, journal), peer, check


def filter_case(n, journal, ns, work):
    return _filter_case(n, journal, ns, hook="OUTPUT", sources=[], scratch=False, side="ours")


def geo_case(n, journal, ns, work):
    return _filter_case(n, journal, ns, hook="INPUT", sources=[SOURCE], scratch=True, side="world")


def redirect_case(n: int, journal, ns: dict[str, str], _work: Path):
    """What a TCP or HTTP fault with destinations adds at the edge (the proxy's rule file is
    one write whatever its length)."""
    from chaos.injectors.redirect import EdgeRedirect, TrackConnections

    if not getattr(redirect_case, "tracked", False):  # once a run, before its first fault
        TrackConnections(ns["edge"], tag="chaos-scale").apply(journal)
        redirect_case.tracked = True  # type: ignore[attr-defined]
    dsts = addresses(n)
    edge = EdgeRedirect(ns["edge"], [80, 443], 18080, tag=f"chaos-{secrets.token_hex(3)}",
                        name="scale", destinations=dsts)
    install = "\n".join(["*nat", ":peer - [0:0]",
                         *(f"-A peer -d {d}/32 -p tcp -m multiport --dports 80,443 -j REDIRECT "
                           "--to-ports 18080" for d in dsts),
                         "-I PREROUTING 1 -j peer", "COMMIT", ""])
    remove = "\n".join(["*nat", "-D PREROUTING -j peer", "-F peer", "-X peer", "COMMIT", ""])
    restore = ["ip", "netns", "exec", ns["peer"], "iptables-restore", "-w", "5", "--noflush"]

    def check() -> bool:
        shown = run_quiet(["ip", "netns", "exec", ns["edge"], "iptables", "-t", "nat", "-S",
                           edge.chain]).stdout
        return shown.count(b"-j REDIRECT") == n
    return ours(edge, journal), (lambda: pipe(restore, install), lambda: pipe(restore, remove)), check


def hosts_case(n: int, journal, ns: dict[str, str], work: Path):
    from chaos.injectors.hosts_file import HostsBlock

    tag = f"chaos-{secrets.token_hex(3)}"
    mine, theirs = work / "hosts.ours", work / "hosts.peer"
    for path in (mine, theirs):
        path.write_text(HOSTS)
    entries = [("127.0.0.1", name) for name in names(n)]
    block = "".join(f"{a}\t{h}\n" for a, h in entries)

    def write(text: str) -> None:
        with open(theirs, "r+") as f:
            f.write(text)
            f.truncate()
            f.flush()
            os.fsync(f.fileno())
    peer = (lambda: write(block + HOSTS), lambda: write(HOSTS))
    return (ours(HostsBlock(mine, entries, tag), journal), peer,
            lambda: mine.read_text().count("127.0.0.1\th") == n)


class Dns:
    """The fake DNS server and dnsmasq, started once for every size."""

    def __init__(self, stack: ExitStack, journal, ns: dict[str, str], work: Path) -> None:
        from chaos.injectors.dns_rules import start_dns_server

        self.server = start_dns_server(journal, netns=ns["ours"], listen="127.0.0.1",
                                       zone={"reg.test": ["198.18.1.10"]}, run_dir=work / "dns")
        stack.callback(lambda: self.server.stop(journal))
        self.hosts = work / "dnsmasq.hosts"
        self.hosts.write_text("")
        self.dnsmasq = subprocess.Popen(
            ["ip", "netns", "exec", ns["peer"], "dnsmasq", "--keep-in-foreground",
             "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--pid-file=",
             f"--addn-hosts={self.hosts}", "--user=root", "--listen-address=127.0.0.1",
             "--bind-interfaces", "--port=53", "--local-ttl=1", "--log-facility=/dev/null"],
            stdin=subprocess.DEVNULL)
        stack.callback(lambda: (self.dnsmasq.terminate(), self.dnsmasq.wait(5)))
        self.sock = {side: socket_in(ns[side], socket.AF_INET, socket.SOCK_DGRAM)
                     for side in ("ours", "peer")}
        for sock in self.sock.values():
            sock.settimeout(0.2)
            stack.callback(sock.close)
        self.wait("peer", "reg.test", "none", timeout=10)

    def answer(self, side: str, name: str) -> str | None:
        from dnslib import DNSRecord

        self.sock[side].sendto(DNSRecord.question(name, "A").pack(), ("127.0.0.1", 53))
        try:
            reply = DNSRecord.parse(self.sock[side].recv(65536))
        except TimeoutError:
            return None
        return str(reply.rr[0].rdata) if reply.rr else "none"

    def wait(self, side: str, name: str, want: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while self.answer(side, name) != want:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{side}: {name} did not become {want}")

    def case(self, n: int, journal):
        listed = names(n)
        last = listed[-1]
        rule = self.server.rule({"id": f"scale-{n}", "names": listed, "answer": "sinkhole",
                                 "address": "198.18.0.1"}, timeout=10)
        text = "".join(f"198.18.0.1 {name}\n" for name in listed)

        def peer_set(content: str, want: str) -> Callable[[], None]:
            def go() -> None:
                with open(self.hosts, "w") as f:
                    f.write(content)
                os.kill(self.dnsmasq.pid, signal.SIGHUP)  # ip netns exec execs dnsmasq
                self.wait("peer", last, want)
            return go
        return (ours(rule, journal), (peer_set(text, "198.18.0.1"), peer_set("", "none")),
                lambda: self.answer("ours", last) == "198.18.0.1")


CASES = {"route-blackhole": route_case, "packet-filter": filter_case, "geo-block": geo_case,
         "edge-redirect": redirect_case, "hosts-entry": hosts_case}


def time_pair(pair: Pair, settle: Callable[[], None]) -> tuple[float, float]:
    t0 = time.perf_counter()
    pair[0]()
    t1 = time.perf_counter()
    pair[1]()
    t2 = time.perf_counter()
    settle()
    return t1 - t0, t2 - t1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="10,100,1000,10000")
    parser.add_argument("--only", action="append", help="a fault type (repeatable)")
    parser.add_argument("--quick", action="store_true", help="1 round")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    sizes = [int(s) for s in args.sizes.split(",")]
    kinds = args.only or [*CASES, "dns"]
    need_root()
    from chaos.injectors.nft import settle
    from chaos.journal import Journal

    work = Path(tempfile.mkdtemp(prefix="chaos-bench-scale-", dir="/var/tmp"))
    journal = Journal.create(f"bench-scale-{os.getpid()}", work / "state")
    results: dict[tuple[str, int], dict[str, float]] = {}
    try:
        with ExitStack() as stack:
            ns = {side: stack.enter_context(namespace(f"chaos-bench-{side}"))
                  for side in ("ours", "world", "edge", "peer")}
            dns = Dns(stack, journal, ns, work) if "dns" in kinds else None
            for kind in kinds:
                for n in sizes:
                    if kind == "dns":
                        assert dns is not None
                        mine, peer, check = dns.case(n, journal)
                    else:
                        mine, peer, check = CASES[kind](n, journal, ns, work)
                    mine[0]()  # warm up, and check the change is really made
                    if not check():
                        raise RuntimeError(f"{kind} x{n}: the injected change is not in effect")
                    mine[1]()
                    settle()
                    t: dict[str, list[float]] = {"in": [], "out": [], "peer": []}
                    for i in range(rounds):
                        for side in (("ours", "peer") if i % 2 == 0 else ("peer", "ours")):
                            inject, revert = time_pair(mine if side == "ours" else peer, settle)
                            if side == "ours":
                                t["in"].append(inject)
                                t["out"].append(revert)
                            else:
                                t["peer"].append(inject + revert)
                    results[kind, n] = {k: median(v) for k, v in t.items()}
                    r = results[kind, n]
                    print(f"{kind:16s} {n:>6,} inject {r['in'] * 1000:9.1f} ms  revert "
                          f"{r['out'] * 1000:9.1f} ms  peer {r['peer'] * 1000:8.1f} ms", flush=True)
    finally:
        failures = journal.rollback()
        journal.finish()
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print("revert failures:", *failures[:5], sep="\n  ", file=sys.stderr)
        return 1

    for kind in kinds:
        for n in sizes:
            r = results[kind, n]
            total = r["in"] + r["out"]
            smaller = [m for m in sizes if m < n]
            growth = total / (results[kind, smaller[-1]]["in"] + results[kind, smaller[-1]]["out"]) \
                if smaller else None
            ok = None
            if n >= 10_000:
                linear = growth is None or growth <= LINEAR * n / smaller[-1] / 10
                ok = total <= TARGET_S and linear
            grew = f"; x{growth:.1f} vs {smaller[-1]:,}" if growth else ""
            figure(f"{kind} x{n:,} inject+revert", f"{r['in'] * 1000:.0f} + {r['out'] * 1000:.0f} ms{grew}",
                   f"{PEERS[kind]} {r['peer'] * 1000:.0f} ms", f"{total / r['peer']:.2f}x",
                   "<= 1 s at 10,000; linear" if n >= 10_000 else "-", ok)
    return 0


PEERS = {"route-blackhole": "ip -batch", "packet-filter": "iptables-restore",
         "geo-block": "iptables-restore", "edge-redirect": "iptables-restore (nat)",
         "hosts-entry": "file write",
         "dns": "dnsmasq addn-hosts + SIGHUP"}


if __name__ == "__main__":
    sys.exit(main())
