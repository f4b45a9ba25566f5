"""The fake DNS server: answers from a zone, breaks names on command, never forwards a query.

    python -m chaos.injectors.dns_server --listen 198.18.0.1 --port 53 \\
        --zone zone.json --rules-dir rules/ --log queries.jsonl

UDP and TCP on one address. Names a rule matches get the rule's answer (see
``chaos.injectors.dns_rules``); other names are answered from the zone (A and AAAA; other
types get an empty NOERROR), names in neither get REFUSED. Nothing is ever forwarded or
resolved recursively.

Signals: SIGHUP reloads the zone file and the rules dir, SIGUSR1 flushes the query log, SIGTERM/SIGINT flush
and exit. After each reload or flush request the server rewrites ``<rules dir>/.status``
(rule ids loaded, files refused, flush count) so a caller can wait for the change.

Speed: a query's bytes after its 2-byte id are the key of a cache holding what dnslib parsed
and the answers dnslib packed for it, so a repeated question costs a dict lookup, the rule
walk and one sendto; only random and rotate answers are packed afresh each time.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import random
import signal
import socket
import sys
import time
from pathlib import Path

from dnslib import AAAA, QTYPE, RCODE, RR, A, DNSError, DNSRecord

from chaos.injectors import rule_service
from chaos.injectors.dns_rules import NameTable, Rule, load_rules, load_zone, normalize_name

MAX_CACHE = 20_000  # distinct questions kept; dig's random EDNS cookies make each one new
FLUSH_EVERY = 0.05  # seconds between log writes: a reader never waits long, writes stay batched
RCODES = {"nxdomain": RCODE.NXDOMAIN, "servfail": RCODE.SERVFAIL, "refused": RCODE.REFUSED}


class Question:
    """What the server knows about one distinct query (cached by its bytes minus the id)."""

    __slots__ = ("request", "name", "qtype", "tname", "rules", "zone", "answers")

    def __init__(self, request: DNSRecord, name: str, qtype: int, rules: list[Rule],
                 zone: tuple[str, ...] | None) -> None:
        self.request = request
        self.name = name
        self.qtype = qtype
        self.tname = QTYPE.get(qtype, str(qtype))
        self.rules = rules  # the rules matching name and type, most specific first
        self.zone = zone  # the zone's addresses for name, None if not in the zone
        self.answers: dict = {}  # decision key -> (packed answer, log fragment)


class Resolver:
    """Decides and packs answers; knows nothing about sockets."""

    def __init__(self, zone: NameTable, ttl: int, seed: int | None = None) -> None:
        self.zone = zone
        self.ttl = ttl
        self.seed = seed
        self.rules: NameTable = NameTable()
        self.cache: dict[bytes, Question] = {}
        self.rotation: dict[tuple[str, int], int] = {}
        self.rands: dict[str, random.Random] = {}  # by rule id, kept across reloads

    def rand(self, rule: Rule) -> random.Random:
        """The rule's own generator: with --seed, its draws do not depend on other rules."""
        rand = self.rands.get(rule.id)
        if rand is None:
            seed = None if self.seed is None else f"{self.seed}:{rule.id}"
            rand = self.rands[rule.id] = random.Random(seed)
        return rand

    def set_rules(self, rules: list[Rule]) -> None:
        table = NameTable()
        for rule in rules:
            for pattern in rule.names:
                table.add(pattern, rule)
        self.rules = table
        self.cache.clear()  # cached questions hold the old rule lists

    def set_zone(self, zone: NameTable) -> None:
        self.zone = zone
        self.cache.clear()  # cached questions hold the old zone's addresses

    def question(self, data: bytes) -> Question | None:
        """The (cached) parsed question, None for what is not a plain one-question query."""
        key = data[2:]
        q = self.cache.get(key)
        if q is not None:
            return q
        try:
            request = DNSRecord.parse(data)
        except (DNSError, ValueError, IndexError):
            return None
        h = request.header
        if h.qr or h.opcode != 0 or len(request.questions) != 1:
            return None
        qname, qtype = request.q.qname, request.q.qtype
        name = normalize_name(str(qname))
        tname = QTYPE.get(qtype, str(qtype))
        seen, rules = set(), []
        for rule in self.rules.lookup(name):
            if id(rule) not in seen and (rule.types is None or tname in rule.types):
                seen.add(id(rule))
                rules.append(rule)
        zone = self.zone.lookup(name)
        q = Question(request, name, qtype, rules, zone[0] if zone else None)
        if len(self.cache) >= MAX_CACHE:
            self.cache.clear()
        self.cache[key] = q
        return q

    def decide(self, q: Question, tcp: bool) -> tuple[bytes | None, str, float]:
        """(packed answer or None to drop, log fragment, seconds to wait before sending)."""
        proto = "tcp" if tcp else "udp"
        for rule in q.rules:
            if rule.protocol is not None and rule.protocol != proto:
                continue  # a rule for the other transport
            answer = rule.answer
            if answer == "truncate" and tcp:
                continue  # TC means nothing over TCP: the retry goes to the next rule or the zone
            if rule.probability < 1.0 and self.rand(rule).random() >= rule.probability:
                continue  # this rule passes this time: the next one (or the zone) decides
            if answer == "random" or answer == "rotate":
                return (*self._build(q, rule, self._addresses(q, rule)), 0.0)
            cached = q.answers.get(rule)
            if cached is None:
                cached = q.answers[rule] = self._build(q, rule, None)
            return (*cached, rule.delay)
        cached = q.answers.get(None)
        if cached is None:
            cached = q.answers[None] = self._build(q, None, None)
        return (*cached, 0.0)

    def _addresses(self, q: Question, rule: Rule) -> list[str]:
        family = 4 if q.qtype == QTYPE.A else 6 if q.qtype == QTYPE.AAAA else 0
        if rule.answer == "random":
            nets = [ipaddress.ip_network(r) for r in rule.ranges]
            nets = [n for n in nets if n.version == family]
            if not nets:
                return []
            rand = self.rand(rule)
            net = nets[rand.randrange(len(nets))]
            return [str(net.network_address + rand.randrange(net.num_addresses))]
        addrs = [a for a in rule.addresses if ipaddress.ip_address(a).version == family]
        if not addrs:
            return []
        i = self.rotation.get((rule.id, family), 0)
        self.rotation[(rule.id, family)] = (i + 1) % len(addrs)
        return addrs[i:] + addrs[:i]

    def _build(self, q: Question, rule: Rule | None, addrs: list[str] | None) -> tuple[bytes | None, str]:
        """Pack the answer with dnslib (id left as the query's; the caller patches it)."""
        answer = rule.answer if rule else "zone"
        info = {"name": q.name, "type": q.tname, "answer": answer,
                "rule": rule.id if rule else None}
        if answer == "timeout":
            info.update(rcode=None, addresses=[])
            return None, _fragment(info)
        reply = q.request.reply(ra=1, aa=0)
        reply.header.ad = 0
        ttl = self.ttl
        if answer in RCODES:
            reply.header.rcode = RCODES[answer]
            addrs = []
        elif answer == "truncate":  # only ever decided over UDP
            reply.header.tc = 1
            addrs = []
        elif answer == "sinkhole":
            assert rule is not None  # a rule's answer
            addrs = list(rule.addresses)
        elif addrs is None:  # zone; delay: the zone's answer, late
            if q.zone is None:
                reply.header.rcode = RCODE.REFUSED
                if answer == "zone":
                    info["answer"] = "refused"
            addrs = list(q.zone or ())
        sent = []
        for a in addrs:
            ip = ipaddress.ip_address(a)
            if ip.version == 4 and q.qtype == QTYPE.A:
                reply.add_answer(RR(q.request.q.qname, QTYPE.A, rdata=A(a), ttl=ttl))
            elif ip.version == 6 and q.qtype == QTYPE.AAAA:
                reply.add_answer(RR(q.request.q.qname, QTYPE.AAAA, rdata=AAAA(a), ttl=ttl))
            else:
                continue
            sent.append(a)
        info.update(rcode=RCODE.get(reply.header.rcode), addresses=sent)
        if rule is not None and rule.answer == "delay":
            info["delay"] = rule.delay
        return reply.pack(), _fragment(info)


def _fragment(info: dict) -> str:
    """The per-answer part of a log line, JSON without braces, made once per cached answer."""
    return json.dumps(info, separators=(",", ":"))[1:-1]


class QueryLog:
    """Buffered JSON lines; written every FLUSH_EVERY seconds, on request and at exit."""

    def __init__(self, path: str | None) -> None:
        self.file = open(path, "a", encoding="utf-8") if path else None
        self.lines: list[str] = []
        self.flushes = 0

    def add(self, client, proto: str, fragment: str) -> None:
        if self.file is not None:
            self.lines.append(f'{{"t":{time.time():.6f},"client":"{client[0]}","port":{client[1]},'
                              f'"proto":"{proto}",{fragment}}}\n')

    def flush(self) -> None:
        if self.file is not None and self.lines:
            lines, self.lines = self.lines, []
            self.file.write("".join(lines))
            self.file.flush()

    def close(self) -> None:
        self.flush()
        if self.file is not None:
            self.file.close()
            self.file = None


class UdpServer(asyncio.DatagramProtocol):
    """Reads every datagram that is waiting per wake-up, so a busy server pays one poll per batch."""

    def __init__(self, resolver: Resolver, log: QueryLog, sock: socket.socket) -> None:
        self.resolver, self.log, self.sock = resolver, log, sock
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.handle(data, addr)
        # Drain what else is queued: asyncio would otherwise poll once per datagram.
        recvfrom = self.sock.recvfrom
        for _ in range(64):
            try:
                data, addr = recvfrom(4096)
            except OSError:  # BlockingIOError: nothing more queued
                return
            self.handle(data, addr)

    def handle(self, data: bytes, addr) -> None:
        q = self.resolver.question(data)
        if q is None:
            return
        packed, fragment, delay = self.resolver.decide(q, False)
        self.log.add(addr, "udp", fragment)
        if packed is None:
            return
        packet = data[:2] + packed[2:]
        if delay:
            asyncio.get_running_loop().call_later(delay, self._send, packet, addr)
        else:
            self._send(packet, addr)

    def _send(self, packet: bytes, addr) -> None:
        try:
            self.sock.sendto(packet, addr)
        except BlockingIOError:
            assert self.transport is not None  # a datagram came in through it
            self.transport.sendto(packet, addr)  # queue it: asyncio sends when writable
        except OSError:
            pass


class TcpServer(asyncio.Protocol):
    """RFC 7766 framing (2-byte length); answers may leave out of order (delays)."""

    def __init__(self, resolver: Resolver, log: QueryLog) -> None:
        self.resolver, self.log = resolver, log
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.peer = ("?", 0)

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.peer = transport.get_extra_info("peername")[:2]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= 2:
            size = int.from_bytes(self.buf[:2], "big")
            if len(self.buf) < 2 + size:
                return
            msg, self.buf = self.buf[2:2 + size], self.buf[2 + size:]
            q = self.resolver.question(msg)
            if q is None:
                assert self.transport is not None  # data came in through it
                self.transport.close()
                return
            packed, fragment, delay = self.resolver.decide(q, True)
            self.log.add(self.peer, "tcp", fragment)
            if packed is None:
                continue  # timeout: the connection stays open, silent, until the client gives up
            frame = len(packed).to_bytes(2, "big") + msg[:2] + packed[2:]
            if delay:
                asyncio.get_running_loop().call_later(delay, self._send, frame)
            else:
                self._send(frame)

    def _send(self, frame: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame)


class Server:
    """Both sockets, the rules dir, the log and the signals."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rules_dir = Path(args.rules_dir)
        zone = json.loads(Path(args.zone).read_text(encoding="utf-8")) if args.zone else {}
        self.resolver = Resolver(load_zone(zone), args.ttl, args.seed)
        self.log = QueryLog(args.log)
        self.generation = 0
        self.loaded: dict[str, str] = {}  # id -> digest
        self.errors: dict[str, str] = {}
        self.stopping = asyncio.Event()

    def reload(self) -> None:
        rules, self.errors = load_rules(self.rules_dir)
        if self.args.zone:  # names served after the start (a bad zone file: keep the old zone)
            zone = Path(self.args.zone)
            try:
                self.resolver.set_zone(load_zone(json.loads(zone.read_text(encoding="utf-8"))))
            except (OSError, ValueError) as exc:
                self.errors["zone"] = f"{zone}: {exc}"  # no rule file is called that
        self.resolver.set_rules(rules)
        self.loaded = {r.id: r.digest for r in rules}
        self.generation += 1
        for name, error in self.errors.items():
            print(f"dns_server: {name}: {error}", file=sys.stderr, flush=True)
        self.write_status()

    def flush(self) -> None:
        self.log.flush()
        self.log.flushes += 1
        self.write_status()

    def write_status(self) -> None:
        rule_service.write_status(self.rules_dir, self.generation, self.loaded, self.errors,
                                  flushes=self.log.flushes)

    async def flusher(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            self.log.flush()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.rules_dir.mkdir(parents=True, exist_ok=True)
        self.reload()
        family = socket.AF_INET6 if ":" in self.args.listen else socket.AF_INET
        udp = socket.socket(family, socket.SOCK_DGRAM)
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)  # ride out bursts
        udp.bind((self.args.listen, self.args.port))
        transport, _ = await loop.create_datagram_endpoint(
            lambda: UdpServer(self.resolver, self.log, udp), sock=udp)
        tcp = await loop.create_server(lambda: TcpServer(self.resolver, self.log),
                                       self.args.listen, self.args.port, family=family,
                                       reuse_address=True)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        loop.add_signal_handler(signal.SIGUSR1, self.flush)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        flusher = asyncio.create_task(self.flusher())
        print("ready", flush=True)
        # Nobody reads stdout after 'ready': a full pipe must never block the server.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
        try:
            await self.stopping.wait()
        finally:
            flusher.cancel()
            transport.close()
            tcp.close()
            self.log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.injectors.dns_server",
                                     description="Fake DNS server of the chaos toolkit.")
    parser.add_argument("--listen", default="127.0.0.1", help="address for UDP and TCP")
    parser.add_argument("--port", type=int, default=53)
    parser.add_argument("--zone", help="JSON {name: [addresses]}; other names get REFUSED")
    parser.add_argument("--rules-dir", required=True, help="one rule per *.json; SIGHUP reloads")
    parser.add_argument("--log", help="JSON lines, one per query")
    parser.add_argument("--ttl", type=int, default=1, help="TTL of answers (seconds)")
    parser.add_argument("--seed", type=int, help="make probability and random answers repeatable")
    args = parser.parse_args(argv)
    try:
        server = Server(args)
    except (OSError, ValueError) as exc:
        print(f"dns_server: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(server.run())
    except OSError as exc:  # bind failures
        print(f"dns_server: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
