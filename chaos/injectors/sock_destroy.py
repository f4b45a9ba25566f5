"""End established TCP connections to given servers, the way ``ss -K`` does, in-process.

A nat REDIRECT acts on new connections only: a keep-alive connection opened before it keeps
reaching the real server. ``end_server_connections`` destroys the server's side of each
such connection (netlink sock_diag ``SOCK_DESTROY``, the kernel's INET_DIAG_DESTROY): the
server sees ECONNABORTED and the client a reset, so it reconnects and meets the redirect.

Connections whose two ends are both in the namespace (the fault proxies' own upstream
connections) are spared: they already pass through a proxy, which applies its rules.
One netlink socket, one dump and one message per connection ended: about 1.5 ms (the
kernel's walk of its connection table) where spawning ``ss -K`` costs 5-8 ms
(docs/benchmarks.md).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct

from chaos.sandbox.enter import in_netns

_NETLINK_SOCK_DIAG = 4
_TCPDIAG_GETSOCK, _SOCK_DESTROY = 18, 21
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_DUMP = 0x1, 0x4, 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_TCP_ESTABLISHED = 1
_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
# inet_diag_req_v2 (SOCK_DESTROY): family, protocol, ext, pad, states; then inet_diag_sockid:
# sport, dport (big endian), src[16], dst[16], if, cookie[2]
_REQ = struct.Struct("=BBBxI")
_SOCKID = struct.Struct("=2s2s16s16sI8s")
_MSG_HEAD = struct.Struct("=BBBB")  # inet_diag_msg (and inet_diag_req): four bytes, then the sockid


def _addr(family: int, raw: bytes):
    ip = ipaddress.ip_address(raw[:4] if family == socket.AF_INET else raw)
    return ip.ipv4_mapped or ip if ip.version == 6 else ip


def _destroy_request(seq: int, family: int, sockid: bytes) -> bytes:
    body = _REQ.pack(family, socket.IPPROTO_TCP, 0, 1 << _TCP_ESTABLISHED) + sockid
    return _HDR.pack(_HDR.size + len(body), _SOCK_DESTROY, _NLM_F_REQUEST | _NLM_F_ACK, seq,
                     0) + body


def _messages(sock: socket.socket, seq: int):
    """(type, payload) of every reply to request ``seq`` until it is done."""
    while True:
        data = sock.recv(1 << 16)
        offset = 0
        while offset < len(data):
            length, kind, _, got_seq, _ = _HDR.unpack_from(data, offset)
            payload = data[offset + _HDR.size:offset + length]
            offset += (length + 3) & ~3
            if got_seq != seq:
                continue
            if kind == _NLMSG_DONE:
                return
            if kind == _NLMSG_ERROR:
                code = -struct.unpack_from("=i", payload)[0]
                if code:
                    raise OSError(code, f"sock_diag: {os.strerror(code)}")
                return
            yield kind, payload


def _established(sock: socket.socket) -> list[tuple[int, bytes, tuple, tuple]]:
    """(family, raw sockid, (local ip, port), (peer ip, port)) of each established socket.

    The older TCPDIAG_GETSOCK dump (struct inet_diag_req) takes both families in one walk
    of the kernel's connection table, which costs ~1.3 ms whatever the namespace holds."""
    body = _MSG_HEAD.pack(0, 0, 0, 0) + bytes(_SOCKID.size) + struct.pack(
        "=II", 1 << _TCP_ESTABLISHED, 0)
    sock.send(_HDR.pack(_HDR.size + len(body), _TCPDIAG_GETSOCK, _NLM_F_REQUEST | _NLM_F_DUMP,
                        1, 0) + body)
    found = []
    for _, payload in _messages(sock, 1):
        family = payload[0]
        raw = payload[_MSG_HEAD.size:_MSG_HEAD.size + _SOCKID.size]
        sport, dport, src, dst, _, _ = _SOCKID.unpack(raw)
        found.append((family, raw, (_addr(family, src), int.from_bytes(sport, "big")),
                      (_addr(family, dst), int.from_bytes(dport, "big"))))
    return found


def _end(nets, spans) -> list[str]:
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                       _NETLINK_SOCK_DIAG) as sock:
        sockets = _established(sock)
        local_ends = {local for _, _, local, _ in sockets}
        ended = []
        for seq, (family, raw, (ip, port), peer) in enumerate(sockets, 100):
            if peer in local_ends or ip.version != 4 or not any(a <= port <= b for a, b in spans):
                continue  # a proxy's own connection, or not a server end this redirect takes
            if nets and not any(ip in net for net in nets):
                continue
            sock.send(_destroy_request(seq, family, raw))
            try:
                for _ in _messages(sock, seq):
                    pass
            except FileNotFoundError:  # ENOENT: it closed by itself meanwhile
                continue
            except OSError as exc:
                if exc.errno == errno.EOPNOTSUPP:
                    raise OSError(exc.errno, "cannot end open connections: this kernel lacks "
                                  "CONFIG_INET_DIAG_DESTROY (sock_diag SOCK_DESTROY)") from None
                raise
            ended.append(f"{peer[0]}:{peer[1]}->{ip}:{port}")
        return ended


def end_server_connections(netns: str, destinations, spans) -> list[str]:
    """Destroy the established TCP connections whose server end, in ``netns``, has an IPv4
    address in ``destinations`` (addresses or CIDRs; empty: any) and a port in ``spans``
    ((first, last) pairs). Returns them as "client:port->server:port"."""
    nets = [ipaddress.ip_network(d, strict=False) for d in destinations]
    return in_netns(netns, _end, nets, list(spans))
