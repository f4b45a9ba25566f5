"""The TCP fault proxy process (asyncio): listeners, per-connection toxics, reload on SIGHUP.

Run as ``python -m chaos.injectors.tcp_proxy --config C.json --rules-dir D --log L.jsonl``.

Config::

    {"listeners": [
        {"name": "registry", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:5000"},
        {"name": "redirected", "listen": "127.0.0.1:15001", "transparent": true},
        {"name": "redirected6", "listen": "[::]:15001", "transparent": true, "v6only": true}],
     "mark": 1667785075, "seed": null}

A plain listener relays to its fixed upstream. A transparent one takes connections an
iptables ``nat OUTPUT REDIRECT`` sent to it and finds where they were going with
SO_ORIGINAL_DST; the proxy's own upstream sockets carry ``mark`` (SO_MARK) so the REDIRECT
rule skips them instead of looping them back. Prints ``ready {"name": "addr:port"}`` once
listening. Rules (see tcp_toxics) are read at start and on SIGHUP; ``<rules-dir>/.status``
says which rules are loaded and which files were rejected. One JSON line per connection
goes to the log when it ends (and for every open one when the proxy is stopped).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import ipaddress
import json
import os
import random
import resource
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

from chaos.injectors import rule_service
from chaos.injectors.tcp_relay import CHUNK, PipePool, Pump, SpliceRelay, shutdown_write
from chaos.injectors.tcp_toxics import End, Rule

PROXY_MARK = 0x63686173  # "chas": SO_MARK on the proxy's upstream sockets, skipped by NatRedirect
SO_ORIGINAL_DST = 80      # linux/netfilter_ipv4.h (IP6T_SO_ORIGINAL_DST has the same value)
LINGER_ZERO = struct.pack("ii", 1, 0)
DRAIN_SECONDS = 5.0       # a clean close waits this long for the client's FIN, then closes anyway


def parse_addr(text: str) -> tuple[str, int]:
    """'127.0.0.1:80' or '[::1]:80' -> (host, port). An IP address: the proxy never resolves
    names (a lookup would block the loop, and the sandbox decides what names mean)."""
    host, sep, port = str(text).rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"expected IP:port, got {text!r}") from None
    if not sep or not port.isdigit():
        raise ValueError(f"expected IP:port, got {text!r}")
    return host, int(port)


def format_addr(addr) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Listener:
    def __init__(self, spec: dict) -> None:
        self.name: str = spec["name"]
        self.listen = parse_addr(spec["listen"])
        self.transparent = bool(spec.get("transparent"))
        if self.transparent == ("upstream" in spec):
            raise ValueError(f"listener {self.name!r}: give either upstream or transparent: true")
        self.upstream = None if self.transparent else parse_addr(spec["upstream"])
        self.v6only = bool(spec.get("v6only"))
        self.sock: socket.socket | None = None

    def bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.listen[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.v6only:  # beside an IPv4 listener on the same port
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(self.listen)
        sock.listen(4096)
        sock.setblocking(False)
        self.sock = sock
        return sock

    @property
    def bound(self) -> socket.socket:
        if self.sock is None:
            raise RuntimeError(f"listener {self.name} is not bound")
        return self.sock

    def destination(self, client: socket.socket) -> tuple[str, int] | None:
        if not self.transparent:
            return self.upstream
        try:
            dest = original_dst(client)
        except OSError:
            return None  # no conntrack entry: not redirected
        # a direct connection to the listener reports itself: relaying it would loop
        return None if dest == client.getsockname()[:2] else dest


def original_dst(sock: socket.socket) -> tuple[str, int]:
    if sock.family == socket.AF_INET:
        raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), int.from_bytes(raw[2:4], "big")
    raw = sock.getsockopt(socket.IPPROTO_IPV6, SO_ORIGINAL_DST, 28)
    return socket.inet_ntop(socket.AF_INET6, raw[8:24]), int.from_bytes(raw[2:4], "big")


class Park:
    """Watches held clients for going away, without reading them.

    A second epoll asking only for EPOLLRDHUP (HUP/ERR come anyway): bytes a held client sends
    wake nothing, its FIN or RST does. Thousands of hung connections cost one fd each and no
    wakeups, and a client that gives up is let go at once.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.epoll = select.epoll()
        self.held: dict[int, list[asyncio.Future]] = {}
        loop.add_reader(self.epoll.fileno(), self._events)

    def watch(self, fd: int, future: asyncio.Future) -> None:
        if fd in self.held:
            self.held[fd].append(future)
        else:
            self.held[fd] = [future]
            self.epoll.register(fd, select.EPOLLRDHUP)

    def forget(self, fd: int, future: asyncio.Future | None = None) -> None:
        """Stop watching fd for this future (None: for all); call before closing fd."""
        futures = self.held.get(fd)
        if futures is None:
            return
        if future is not None and future in futures:
            futures.remove(future)
        if future is None or not futures:
            del self.held[fd]
            self.epoll.unregister(fd)

    def _events(self) -> None:
        for fd, _ in self.epoll.poll(0):
            for future in self.held.get(fd, ()):
                if not future.done():
                    future.set_result("client-closed")
            self.forget(fd)


def _resolve(future: asyncio.Future, value: str) -> None:
    if not future.done():
        future.set_result(value)


class Conn:
    """One client connection: its toxics, its upstream socket, how bytes move, how it ends."""

    __slots__ = ("proxy", "listener", "client", "peer", "dest", "toxics", "up", "started",
                 "movers", "open", "extra", "ended", "task", "live", "joining")

    def __init__(self, proxy: Proxy, listener: Listener, client: socket.socket, peer,
                 dest: tuple[str, int], toxics: list) -> None:
        self.proxy, self.listener, self.client, self.peer = proxy, listener, client, peer
        self.dest, self.toxics = dest, toxics
        self.up: socket.socket | None = None
        self.started = time.time()
        self.movers: list[tuple[str, SpliceRelay | Pump]] = []
        self.open = 0
        self.extra = 0  # downstream bytes a toxic wrote before any upstream existed
        self.ended = False
        self.task: asyncio.Task | None = None  # run_toxic, on the toxic path
        self.live: list[asyncio.Task] = []  # pumps of toxics added while open (add_live)
        self.joining: dict[str, list] = {}  # direction -> toxics waiting for its relay to let go

    # -- fast path: no toxic, callbacks only (no Task) ----------------------------------------
    def start_plain(self) -> None:
        try:
            self.up = self.proxy.upstream_socket(self.dest)
            err = self.up.connect_ex(self.dest)
        except OSError as exc:
            err = exc.errno or errno.EIO
        if err not in (0, errno.EINPROGRESS):
            self.end(f"upstream-connect-failed: {os.strerror(err)}", "reset")
            return
        # Relay at once, without waiting a loop turn for the handshake: a write to a socket
        # still connecting is EAGAIN (the relay then waits for it to become writable), and a
        # failed connect shows up as the relay's error. As without a proxy, the kernel's own
        # SYN retries decide how long an unreachable upstream takes to fail.
        self.open = 2
        for direction, src, dst in self._directions():
            relay = SpliceRelay(self.proxy.loop, src, dst, self.proxy.pipes, self._relay_done)
            self.movers.append((direction, relay))
            relay.start()

    def _relay_done(self, relay: SpliceRelay, exc: BaseException | None) -> None:
        if isinstance(exc, End):  # a toxic added live ended the connection (add_live)
            self.finish(exc.reason, exc.how)
            return
        if exc is not None:
            self.finish(_error_reason(exc), "reset")
            return
        self.open -= 1
        if self.open == 0:
            self.finish("eof", None)

    # -- toxics added while the connection is open (rules marked live: Toxiproxy's way) --------
    def add_live(self, toxic) -> None:
        """Let ``toxic`` act on this open connection from now on: in each direction it paces or
        counts, a Python pump takes over from the kernel relay once no byte is in flight, or
        the direction's pump takes it in. Hooks of the accept (``on_accept``) do not apply."""
        if self.ended or not self.movers:
            return  # not moving bytes yet: what it does next was fixed at accept
        self.toxics.append(toxic)
        for direction in ("upstream", "downstream"):
            if toxic.shaper(direction) is None and toxic.budget(direction) is None:
                continue
            mover = [m for d, m in self.movers if d == direction][-1]
            if isinstance(mover, Pump):
                mover.add(toxic)
            elif direction in self.joining:
                self.joining[direction].append(toxic)
            elif not mover.done:
                self.joining[direction] = [toxic]
                mover.detach(_taker(self, mover, direction))

    def take_over(self, relay: SpliceRelay, direction: str) -> None:
        toxics = self.joining.pop(direction, [])
        if self.ended:
            return
        src, dst = (self.client, self.up) if direction == "upstream" else (self.up, self.client)
        assert dst is not None and src is not None  # the relay moved bytes between them
        pump = Pump(self, direction, src, dst, toxics)
        self.movers.append((direction, pump))
        task = self.proxy.loop.create_task(pump.run())
        self.live.append(task)
        # the relay's own end callback reports the pump's end: the connection's accounting
        # (plain path) or _move's wait (toxic path) goes on as before
        task.add_done_callback(lambda t: t.cancelled() or relay.on_done(relay, t.exception()))

    def finish(self, reason: str, how: str | None) -> None:
        """``end``, after any live pump has unwound (see _stop_movers), and with a clean close
        where a toxic asked for one."""
        if self.ended:
            return
        if any(not t.done() for t in self.live) or (how == "close" and reason != "client-closed"):
            self.proxy.loop.create_task(self._finish(reason, how))
        else:
            self.end(reason, how)

    async def _finish(self, reason: str, how: str | None) -> None:
        await self._stop_live()
        for _, mover in self.movers:  # nothing may read the sockets while they close
            if isinstance(mover, SpliceRelay):
                mover.cancel()
        if how == "close" and reason != "client-closed":
            await self._close_clean(reason)
        else:
            self.end(reason, how)

    async def _stop_live(self) -> None:
        current = asyncio.current_task()
        tasks = [t for t in self.live if t is not current and not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    def _directions(self):
        return (("upstream", self.client, self.up), ("downstream", self.up, self.client))

    # -- toxic path: a Task, pumps where toxics touch bytes, relays elsewhere -------------------
    async def run_toxic(self) -> None:
        try:
            for toxic in self.toxics:
                await toxic.on_accept(self)
            self.up = self.proxy.upstream_socket(self.dest)
            try:
                await self.proxy.loop.sock_connect(self.up, self.dest)
            except OSError as exc:
                self.end(f"upstream-connect-failed: {os.strerror(exc.errno or errno.EIO)}", "reset")
                return
            error = await self._move()
        except (End, OSError) as exc:
            error = exc
        if error is not None:
            # its traceback holds frames that hold this connection's objects: drop it, so
            # they are freed by refcount now, not by a full garbage collection later
            error.__traceback__ = None
        if error is None:
            self.end("eof", None)
        elif not isinstance(error, End):
            self.end(_error_reason(error), "reset")
        elif error.how == "close" and error.reason != "client-closed":
            await self._close_clean(error.reason)
        else:
            self.end(error.reason, error.how)

    async def _move(self) -> BaseException | None:
        """Both directions until both end (None) or one fails (its exception)."""
        loop = self.proxy.loop
        waits: list[asyncio.Future] = []
        for direction, src, dst in self._directions():
            pump = Pump(self, direction, src, dst, self.toxics)
            if pump.needed:
                self.movers.append((direction, pump))
                waits.append(loop.create_task(pump.run()))
            else:
                done = loop.create_future()
                relay = SpliceRelay(loop, src, dst, self.proxy.pipes, _settler(done))
                self.movers.append((direction, relay))
                relay.start()
                waits.append(done)
        try:
            finished, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            await self._stop_movers(waits)
        for w in finished:
            if not w.cancelled() and w.exception() is not None:
                return w.exception()
        return None

    async def _stop_movers(self, waits) -> None:
        """Stop both directions, and wait for cancelled pumps to unwind before any socket is
        closed: asyncio drops a cancelled sock_recv's reader a moment later, by fd number,
        and that fd may by then belong to a new connection."""
        for w in waits:
            w.cancel()
        for _, mover in self.movers:
            if isinstance(mover, SpliceRelay):
                mover.cancel()
        tasks = [w for w in waits if isinstance(w, asyncio.Task)]
        if tasks:
            await asyncio.wait(tasks)
        await self._stop_live()

    async def _close_clean(self, reason: str) -> None:
        """FIN to the client, then read it until its own FIN: closing with its request still
        unread would send RST, and the client must see a clean end of stream."""
        if self.up is not None:
            self.up.close()  # the upstream's part is over; what it still sends is dropped
        shutdown_write(self.client)
        loop = self.proxy.loop
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                while await loop.sock_recv(self.client, CHUNK):
                    pass
        except (OSError, TimeoutError):
            pass
        self.end(reason, None)

    async def send_client(self, data: bytes) -> None:
        """For toxics acting before any upstream exists (garbage at accept)."""
        await self.proxy.loop.sock_sendall(self.client, data)
        self.extra += len(data)

    async def hold(self, rule: Rule, duration: float | None) -> str:
        """Hold until the duration elapses ('elapsed'), the rule is removed ('revoked') or the
        client goes away ('client-closed'); nothing is read from the client meanwhile."""
        if rule.revoked:
            return "revoked"
        loop = self.proxy.loop
        future = loop.create_future()
        rule.waiter(future)
        timer = loop.call_later(duration, _resolve, future, "elapsed") if duration is not None else None
        fd = self.client.fileno()
        self.proxy.park.watch(fd, future)
        try:
            return await future
        finally:
            if timer is not None:
                timer.cancel()
            self.proxy.park.forget(fd, future)

    # -- the end ---------------------------------------------------------------------------
    def end(self, reason: str, how: str | None) -> None:
        """Close both sockets (how 'reset': with RST) and log the connection, once."""
        if self.ended:
            return
        self.ended = True
        for _, mover in self.movers:
            if isinstance(mover, SpliceRelay):
                mover.cancel()
        self.proxy.park.forget(self.client.fileno())
        for sock in (self.client, self.up):
            if sock is None or sock.fileno() < 0:
                continue
            if how == "reset":
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
                except OSError:
                    pass
            sock.close()
        self.proxy.finished(self, reason)

    def record(self, reason: str) -> dict:
        moved = {"upstream": 0, "downstream": self.extra}
        for direction, mover in self.movers:
            moved[direction] += mover.count
        return {"time": round(self.started, 6), "duration": round(time.time() - self.started, 6),
                "listener": self.listener.name, "client": format_addr(self.peer),
                "destination": format_addr(self.dest),
                "toxics": [t.rule.describe() for t in self.toxics],
                "bytes_up": moved["upstream"], "bytes_down": moved["downstream"], "end": reason}


_CONNECT_ERRORS = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT}


def _error_reason(exc: BaseException) -> str:
    err = getattr(exc, "errno", None)
    if err in _CONNECT_ERRORS:
        return f"upstream-connect-failed: {os.strerror(err)}"
    return f"error: {os.strerror(err) if err else exc}"


def _settle(future: asyncio.Future, exc: BaseException | None) -> None:
    if not future.done():
        future.set_exception(exc) if exc is not None else future.set_result(None)


def _settler(future: asyncio.Future) -> Callable[[SpliceRelay, BaseException | None], None]:
    """A relay's on_done: settle ``future`` with how the relay ended."""
    return lambda relay, exc: _settle(future, exc)


class Proxy:
    """Listeners, the current rules, the connection log."""

    def __init__(self, config: dict, rules_dir: Path, log_path: Path) -> None:
        self.listeners = [Listener(spec) for spec in config["listeners"]]
        # Listeners added and removed while running (one JSON spec per file, read on SIGHUP
        # with the rules): what the Toxiproxy API's proxies are.
        self.listeners_dir = Path(config["listeners_dir"]) if config.get("listeners_dir") else None
        self.dynamic: dict[str, tuple[str, Listener]] = {}  # name -> (spec digest, listener)
        self.listener_errors: dict[str, str] = {}
        self.mark = int(config.get("mark", PROXY_MARK))
        self.rng = random.Random(config.get("seed"))
        self.rules_dir = rules_dir
        self.rules: list[Rule] = []
        self.generation = 0
        self.log = open(log_path, "a", buffering=1, encoding="utf-8")
        self.pipes = PipePool()
        self.conns: set[Conn] = set()

    async def serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.park = Park(self.loop)
        self._check_mark()
        stopped = self.loop.create_future()
        self.loop.add_signal_handler(signal.SIGHUP, self.reload)
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, _resolve, stopped, "stop")
        for listener in self.listeners:
            self.loop.add_reader(listener.bind().fileno(), self._accept, listener)
        self.reload()  # after the fixed listeners: a dynamic one never takes their names
        bound = {ls.name: format_addr(ls.bound.getsockname()) for ls in self.listeners}
        # A full collection walks every live object: with 10,000 held connections that is a
        # long pause, which would make scheduled hang ends late. Connections make no
        # reference cycles (see Conn.end, SpliceRelay._finish), so young collections find the
        # rare cycle and full ones can be rare (every ~70M allocations instead of ~70k).
        gc.freeze()  # start-up objects never die: no collection needs to walk them
        gc.set_threshold(700, 10, 10_000)
        print("ready", json.dumps(bound), flush=True)
        await stopped
        for conn in list(self.conns):
            conn.end("proxy-stopped", None)
        self.log.close()

    def _check_mark(self) -> None:
        """Transparent listeners need SO_MARK (CAP_NET_ADMIN), or REDIRECT would loop."""
        try:
            self.upstream_socket(("127.0.0.1", 0)).close()
        except PermissionError:
            if any(ls.transparent for ls in self.listeners):
                raise SystemExit("transparent listeners need CAP_NET_ADMIN to set SO_MARK") from None
            self.mark = 0

    def upstream_socket(self, dest: tuple[str, int]) -> socket.socket:
        sock = socket.socket(socket.AF_INET6 if ":" in dest[0] else socket.AF_INET)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.mark:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, self.mark)
        return sock

    def _accept(self, listener: Listener) -> None:
        sock = listener.bound
        for _ in range(256):  # bounded: one listener must not starve the rest of the loop
            try:
                client, peer = sock.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # EMFILE and friends: say so, keep serving open connections
                print(f"accept on {listener.name}: {exc}", file=sys.stderr, flush=True)
                return
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            dest = listener.destination(client)
            if dest is None:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
                client.close()
                self._write_log({"time": round(time.time(), 6), "duration": 0.0,
                                 "listener": listener.name, "client": format_addr(peer),
                                 "destination": None, "toxics": [], "bytes_up": 0,
                                 "bytes_down": 0, "end": "no-original-destination"})
                continue
            toxics = [r.toxic() for r in self.rules
                      if r.applies(dest[0], dest[1], listener.name, self.rng)]
            conn = Conn(self, listener, client, peer, dest, toxics)
            self.conns.add(conn)
            if toxics:
                conn.task = self.loop.create_task(conn.run_toxic())
            else:
                conn.start_plain()

    def finished(self, conn: Conn, reason: str) -> None:
        self.conns.discard(conn)
        self._write_log(conn.record(reason))
        conn.movers = []  # break conn <-> relay/pump cycles: refcounting frees them at once

    def _write_log(self, record: dict) -> None:
        self.log.write(json.dumps(record, separators=(",", ":")) + "\n")

    # -- rules -----------------------------------------------------------------------------
    def reload(self) -> None:
        """Read every *.json rule. Unchanged rules stay (their connections go on); removed or
        changed ones are revoked: holds they placed end, pacing they do stops."""
        current = {r.key: r for r in self.rules}
        rules, errors = rule_service.load_rules(self.rules_dir, Rule, lambda r: r.id)
        for name, error in errors.items():
            print(f"rule {name} rejected: {error}", file=sys.stderr, flush=True)
        known = set(current)
        rules = [current.pop(rule.key, rule) for rule in rules]
        for gone in current.values():
            gone.revoke()
        self.rules = rules
        for rule in rules:
            if rule.live and rule.key not in known:  # new: it joins the open connections too
                for conn in list(self.conns):
                    if rule.applies(conn.dest[0], conn.dest[1], conn.listener.name, self.rng):
                        conn.add_live(rule.toxic())
        self.reload_listeners()
        self.generation += 1
        rule_service.write_status(
            self.rules_dir, self.generation, {r.id: rule_service.digest(r.spec) for r in rules},
            errors, listeners={name: format_addr(ls.bound.getsockname())
                               for name, (_, ls) in self.dynamic.items()},
            listener_errors=self.listener_errors)

    def reload_listeners(self) -> None:
        """Open the listeners whose files appeared, close those whose files went away or
        changed. Closing one ends its open connections, as a Toxiproxy proxy that is
        disabled or deleted does."""
        if self.listeners_dir is None:
            return
        wanted: dict[str, tuple[str, dict]] = {}
        self.listener_errors = {}
        fixed = {ls.name for ls in self.listeners}
        for path in sorted(self.listeners_dir.glob("*.json")):
            try:
                spec = json.loads(path.read_text(encoding="utf-8"))
                if not isinstance(spec, dict) or spec.get("name") != path.stem or spec["name"] in fixed:
                    raise ValueError(f"{path.name}: a listener spec whose name is the file's")
                wanted[path.stem] = (rule_service.digest(spec), spec)
            except (OSError, ValueError) as exc:
                self.listener_errors[path.stem] = str(exc)
        for name, (key, listener) in list(self.dynamic.items()):
            if wanted.get(name, (None,))[0] != key:
                self.close_listener(listener)
                del self.dynamic[name]
        for name, (key, spec) in wanted.items():
            if name in self.dynamic:
                continue
            try:
                listener = Listener(spec)
                sock = listener.bind()
            except (OSError, ValueError, KeyError) as exc:
                self.listener_errors[name] = str(exc)
                continue
            self.loop.add_reader(sock.fileno(), self._accept, listener)
            self.dynamic[name] = (key, listener)

    def close_listener(self, listener: Listener) -> None:
        sock = listener.bound
        self.loop.remove_reader(sock.fileno())
        sock.close()
        for conn in [c for c in self.conns if c.listener is listener]:
            task = conn.task
            if task is None or task.done():
                conn.finish("listener-closed", None)
                continue
            # Its pumps must unwind before the sockets close (see Conn._stop_movers): cancel
            # the task, and end the connection once it has.
            task.add_done_callback(_ender(conn, "listener-closed"))
            task.cancel()


def _taker(conn: Conn, relay: SpliceRelay, direction: str) -> Callable[[], None]:
    return lambda: conn.take_over(relay, direction)


def _ender(conn: Conn, reason: str) -> Callable[[asyncio.Task], None]:
    return lambda task: conn.end(reason, None)


def raise_nofile(want: int = 1 << 17) -> None:
    """Each held connection is an fd (two with an upstream): lift the limit as far as allowed
    (root may raise the hard limit too, others only the soft one up to the hard one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, hard), max(want, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m chaos.injectors.tcp_proxy",
                                     description="TCP fault proxy (toxics from a rules directory)")
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--rules-dir", required=True, type=Path)
    parser.add_argument("--log", required=True, type=Path)
    args = parser.parse_args(argv)
    config = json.loads(args.config.read_text(encoding="utf-8"))
    args.rules_dir.mkdir(parents=True, exist_ok=True)
    raise_nofile()
    asyncio.run(Proxy(config, args.rules_dir, args.log).serve())
