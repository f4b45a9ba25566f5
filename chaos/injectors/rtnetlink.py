"""Routes through rtnetlink in batches: many route messages per send, one socket, one dump.

Why not pyroute2 here: it encodes and sends one message, then waits for its answer, and
its encoding is Python object code per message; a fault with thousands of destinations
paid that per route (docs/benchmarks.md). These messages are a few fixed fields, packed
with ``struct`` and sent many per ``send``. Only the last of a batch asks for an answer
(NLM_F_ACK); a failed one is answered anyway, so every route still gets its own error
code, matched by sequence number.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterable, Iterator

from chaos.sandbox.enter import in_netns

RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
RTA_DST, RTA_PRIORITY, RTA_TABLE = 1, 6, 15
RTN_TYPES = {"unicast": 1, "blackhole": 6, "unreachable": 7, "prohibit": 8}
RTPROT_STATIC = 4  # what pyroute2 gave our routes before: `proto static` in `ip route`
RT_SCOPE_UNIVERSE, RT_SCOPE_NOWHERE = 0, 255
IPV6_DEFAULT_METRIC = 1024  # the kernel's, for an IPv6 route added without one
_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
_ATTR = struct.Struct("=HH")
CHUNK = 128  # messages per send: their answers must fit the socket's receive buffer
RCVBUF = 1 << 21

Route = tuple[int, int, bytes, int]
"""(family, prefix length, network address bytes, table): what identifies one of our routes."""


def route_key(dst: str, table: int) -> Route:
    """``dst`` (an address or CIDR; host bits are dropped) as the route that goes there.
    Parsed with inet_pton: ``ipaddress`` made this most of the cost of a long list."""
    text, _, length = dst.partition("/")
    family, bits = (socket.AF_INET6, 128) if ":" in text else (socket.AF_INET, 32)
    try:
        raw = socket.inet_pton(family, text)
        prefix = int(length) if length else bits
    except (OSError, ValueError):  # a netmask, or not an address: ipaddress says which
        import ipaddress

        net = ipaddress.ip_network(dst, strict=False)
        return family, net.prefixlen, net.network_address.packed, table
    if not 0 <= prefix <= bits:
        raise ValueError(f"{dst!r}: prefix length must be 0..{bits}")
    if prefix < bits:
        host = (1 << (bits - prefix)) - 1
        raw = (int.from_bytes(raw, "big") & ~host).to_bytes(bits // 8, "big")
    return family, prefix, raw, table


def network_text(route: Route) -> str:
    family, prefix, raw, _ = route
    return f"{socket.inet_ntop(family, raw)}/{prefix}"


# A whole route message in one pack: header, rtmsg, RTA_DST, RTA_TABLE (all 4-aligned).
_ROUTE: dict[int, struct.Struct] = {int(family): struct.Struct(f"=IHHIIBBBBBBBBIHH{width}sHHI")
          for family, width in ((socket.AF_INET, 4), (socket.AF_INET6, 16))}


def route_message(op: int, route: Route, kind: str, seq: int, ack: bool = True) -> bytes:
    """One RTM_NEWROUTE (create, never replace) or RTM_DELROUTE of a ``kind`` route; without
    ``ack`` the kernel answers only if it fails."""
    family, prefix, address, table = route
    if op == RTM_NEWROUTE:
        flags, proto, scope = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL, RTPROT_STATIC, \
            RT_SCOPE_UNIVERSE
    else:  # any protocol and scope, but only a route of our type (IPv4 compares it)
        flags, proto, scope = NLM_F_REQUEST, 0, RT_SCOPE_NOWHERE
    flags |= NLM_F_ACK if ack else 0
    packer = _ROUTE[family]
    return packer.pack(packer.size, op, flags, seq, 0,
                       family, prefix, 0, 0, table if table < 256 else 0, proto, scope,
                       RTN_TYPES[kind], 0,
                       _ATTR.size + len(address), RTA_DST, address, _ATTR.size + 4, RTA_TABLE, table)


class Socket:
    """An rtnetlink socket made inside ``netns`` (None: here); FileNotFoundError if it is gone."""

    def __init__(self, netns: str | None) -> None:
        self.sock: socket.socket = in_netns(netns, socket.socket, socket.AF_NETLINK,
                                            socket.SOCK_RAW, socket.NETLINK_ROUTE)
        try:  # root may pass net.core.rmem_max; the answers of one chunk must fit
            self.sock.setsockopt(socket.SOL_SOCKET, 33, RCVBUF)  # SO_RCVBUFFORCE
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        self.sock.bind((0, 0))
        self.seq = 0
        # One buffer for every read: a fresh 1 MiB bytes object per answer was most of a
        # batch's time.
        self.buffer = bytearray(1 << 18)

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()

    def _messages(self) -> Iterator[tuple[int, int, bytes]]:
        """(type, seq, payload) of every message in the next datagram."""
        size = self.sock.recv_into(self.buffer)
        data = memoryview(self.buffer)[:size]
        offset = 0
        while offset + _HDR.size <= len(data):
            length, kind, _, seq, _ = _HDR.unpack_from(data, offset)
            if length < _HDR.size:
                break
            yield kind, seq, bytes(data[offset + _HDR.size: offset + length])
            offset += (length + 3) & ~3

    def routes(self, family: int) -> Iterator[tuple[int, int, bytes, int, int | None]]:
        """Every route of ``family`` in every table: (family, prefix, address, table, priority);
        the address is all zeros for a default route."""
        self.seq += 1
        seq = self.seq
        request = _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
        self.sock.send(_HDR.pack(_HDR.size + len(request), RTM_GETROUTE,
                                 NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + request)
        width = 16 if family == socket.AF_INET6 else 4
        while True:
            for kind, got, payload in self._messages():
                if got != seq:
                    continue
                if kind == NLMSG_DONE:
                    return
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    raise OSError(code, f"route dump: {os.strerror(code)}")
                fam, prefix, _, _, table, *_ = _RTMSG.unpack_from(payload)
                attrs = dict(_attrs(payload[_RTMSG.size:]))
                address = attrs.get(RTA_DST, b"\0" * width)
                if RTA_TABLE in attrs:
                    table = struct.unpack("=I", attrs[RTA_TABLE][:4])[0]
                priority = struct.unpack("=I", attrs[RTA_PRIORITY][:4])[0] \
                    if RTA_PRIORITY in attrs else None
                yield fam, prefix, address, table, priority or None

    def send_all(self, op: int, routes: Iterable[Route], kind: str) -> list[int]:
        """Send a message per route, CHUNK per send; the error code of each, in order (0: done).

        Only the last message of a chunk asks for an answer: the kernel answers a failed one
        anyway, and works through a chunk in order, so once the last is answered every
        failure of the chunk has been read (a read per route was most of the time)."""
        routes = list(routes)
        codes = [0] * len(routes)
        for start in range(0, len(routes), CHUNK):
            first = self.seq + 1
            chunk = routes[start:start + CHUNK]
            last = self.seq = first + len(chunk) - 1
            self.sock.send(b"".join(route_message(op, r, kind, first + i, ack=first + i == last)
                                    for i, r in enumerate(chunk)))
            answered = False
            while not answered:
                for msg_kind, seq, payload in self._messages():
                    if msg_kind == NLMSG_ERROR and first <= seq <= last:
                        codes[start + seq - first] = -struct.unpack_from("=i", payload)[0]
                        answered = answered or seq == last
        return codes


def _attrs(data: bytes) -> Iterator[tuple[int, bytes]]:
    offset = 0
    while offset + _ATTR.size <= len(data):
        length, kind = _ATTR.unpack_from(data, offset)
        if length < _ATTR.size:
            return
        yield kind & 0x3FFF, data[offset + _ATTR.size: offset + length]
        offset += (length + 3) & ~3


def collisions(sock: Socket, routes: Iterable[Route]) -> list[Route]:
    """Those of ``routes`` that a route already there would collide with: same table, prefix
    and priority (ours get the kernel's default: none for IPv4, 1024 for IPv6). One dump per
    address family, whatever the number of routes."""
    wanted = list(routes)
    taken: set[Route] = set()
    for family in {r[0] for r in wanted}:
        ours = IPV6_DEFAULT_METRIC if family == socket.AF_INET6 else None
        taken |= {(fam, prefix, address, table)
                  for fam, prefix, address, table, priority in sock.routes(family)
                  if priority == ours}
    return [r for r in wanted if r in taken]

