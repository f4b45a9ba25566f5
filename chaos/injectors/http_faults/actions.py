"""What a fault does to a client's connection: answer, hang, close without answer, reset.

``flow.kill()`` is mitmproxy's public way to close without an answer. A TCP reset and a close
right after N bytes need the client's socket, which mitmproxy keeps in its proxyserver addon
(``connections[client id].transports[client].writer``): ``_client_writer`` finds it and
every caller falls back to ``kill()`` when mitmproxy's internals change shape.
"""

from __future__ import annotations

import fcntl
import logging
import socket
import struct
import termios

logger = logging.getLogger("chaos.http_faults")

POLL_SECONDS = 0.2
FLUSH_TIMEOUT = 2.0


def untouched(flow) -> bool:
    """No other fault has answered or killed this flow yet."""
    return flow.live and flow.error is None and "chaos_rule" not in flow.metadata


def claim(flow, rule) -> None:
    flow.metadata["chaos_rule"] = rule.id
    flow.metadata["chaos_fault"] = rule.fault


def kill(flow) -> None:
    if flow.killable:
        flow.kill()


def client_gone(flow) -> bool:
    from mitmproxy.connection import ConnectionState

    return not (flow.client_conn.state & ConnectionState.CAN_READ)


async def hang(flow, seconds: float | None) -> None:
    """Hold the request for ``seconds`` (None: until the client gives up), then close unanswered.

    An async hook pauses only this connection. Polling the client's read state notices a
    client that gave up, so a forever-hang does not outlive its client.
    """
    import asyncio  # here: the fault modules import this one at plan time, with no loop

    loop = asyncio.get_running_loop()
    deadline = None if seconds is None else loop.time() + seconds
    while not client_gone(flow):
        left = POLL_SECONDS if deadline is None else min(POLL_SECONDS, deadline - loop.time())
        if left <= 0:
            break
        await asyncio.sleep(left)
    kill(flow)


def _client_writer(flow):
    try:
        from mitmproxy import ctx

        handler = ctx.master.addons.get("proxyserver").connections[flow.client_conn.id]
        return handler.transports[handler.client].writer
    except (AttributeError, KeyError, TypeError):
        logger.warning("chaos: client socket not found, closing without a reset instead")
        return None


def _set_linger_zero(writer) -> bool:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return False
    # SO_LINGER on with a zero timeout: close() sends RST instead of FIN.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return True


def reset(flow) -> None:
    """Answer nothing and reset the client's TCP connection now."""
    writer = _client_writer(flow)
    kill(flow)
    if writer is not None and _set_linger_zero(writer):
        writer.transport.abort()


def close_after_flush(flow) -> None:
    """Close the client's connection (FIN) once what was already sent is flushed."""
    writer = _client_writer(flow)
    if writer is None:
        kill(flow)
    elif not writer.is_closing():
        writer.close()  # asyncio flushes its buffer before closing


async def reset_after_flush(flow, wait_ack: bool = True) -> None:
    """Reset the client's connection once it has received (ACKed) everything sent so far.

    A reset throws away unsent data, so wait until both asyncio's buffer and the kernel's
    send queue (SIOCOUTQ: bytes not yet acknowledged) are empty, at most FLUSH_TIMEOUT.
    Without ``wait_ack`` only asyncio's buffer: the reset then goes as the last byte reaches
    the kernel, and what the client has not acknowledged is lost with it.
    """
    import asyncio

    writer = _client_writer(flow)
    if writer is None:
        kill(flow)
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + FLUSH_TIMEOUT
    sock = writer.get_extra_info("socket")
    while loop.time() < deadline and not writer.is_closing():
        if writer.transport.get_write_buffer_size() == 0 and (not wait_ack or _unacked(sock) == 0):
            break
        await asyncio.sleep(0.01)
    if not writer.is_closing() and _set_linger_zero(writer):
        writer.transport.abort()


def _unacked(sock) -> int:
    try:
        buf = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
    except (OSError, AttributeError, ValueError):
        return 0
    return struct.unpack("i", buf)[0]
