"""Moving one direction of a proxied TCP connection: zero-copy when no toxic touches the bytes.

``SpliceRelay`` moves bytes socket -> pipe -> socket with splice(2): the kernel hands pages
along and Python runs once per up-to-1-MiB batch, not once per buffer copy. That is what lets
an asyncio proxy keep up with socat (a plain ``sock_recv``/``sock_sendall`` relay copies
every byte twice through Python bytes objects and reaches about half of socat's rate).
``Pump`` is the slow path: bytes go through Python so toxics can count, hold, pace or cut them.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket
import struct
import termios
from collections.abc import Callable

PIPE_SIZE = 1 << 20   # /proc/sys/fs/pipe-max-size by default; one splice moves up to this much
CHUNK = 64 * 1024     # Pump reads; small enough that pacing toxics stay smooth
_SPLICE_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
BATCHES_PER_WAKEUP = 8  # bounded, so one busy connection cannot starve the others


class PipePool:
    """Pipes for splice, taken only while bytes are in flight and given back empty.

    A relay holds a pipe (two fds, up to 1 MiB of kernel buffer) only between reading a batch
    and flushing it, so thousands of idle or hung connections hold no pipes at all.
    """

    def __init__(self, size: int = PIPE_SIZE, keep: int = 64) -> None:
        self.size, self.keep = size, keep
        self.free: list[tuple[int, int]] = []

    def get(self) -> tuple[int, int]:
        if self.free:
            return self.free.pop()
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, self.size)
        except OSError:
            pass  # over the user's pipe-buffer budget (non-root): a default 64 KiB pipe still works
        return r, w

    def put(self, pipe: tuple[int, int]) -> None:
        if len(self.free) < self.keep:
            self.free.append(pipe)
        else:
            self.close(pipe)

    @staticmethod
    def close(pipe: tuple[int, int]) -> None:
        os.close(pipe[0])
        os.close(pipe[1])


class SpliceRelay:
    """src -> dst through a pipe, driven by raw reader/writer callbacks (no Task, no buffer).

    ``on_done(relay, exc)`` runs once: exc None after EOF from src was passed on as a FIN to
    dst, else the OSError that stopped it.
    """

    __slots__ = ("loop", "src", "dst", "dst_sock", "pool", "on_done", "pipe", "pending", "count",
                 "waiting", "done", "handover")

    def __init__(self, loop: asyncio.AbstractEventLoop, src: socket.socket, dst: socket.socket,
                 pool: PipePool, on_done: Callable[[SpliceRelay, BaseException | None], None]) -> None:
        self.loop, self.pool, self.on_done = loop, pool, on_done
        self.src, self.dst, self.dst_sock = src.fileno(), dst.fileno(), dst
        self.pipe: tuple[int, int] | None = None
        self.pending = 0      # bytes in the pipe, not yet written to dst
        self.count = 0        # bytes read from src
        self.waiting = False  # dst was full: waiting for it to drain, src not watched
        self.done = False
        self.handover: Callable[[], None] | None = None  # detach(): called once the pipe is empty

    def start(self) -> None:
        self.loop.add_reader(self.src, self._readable)

    def _readable(self) -> None:
        # Batches go on while src has bytes and dst takes them: one wake-up of the event
        # loop moves several, where the sender keeps ahead (benchmarks/tcp_proxy.py).
        for _ in range(BATCHES_PER_WAKEUP):
            if self.pipe is None:
                self.pipe = self.pool.get()
            try:
                n = os.splice(self.src, self.pipe[1], PIPE_SIZE, flags=_SPLICE_FLAGS)
            except BlockingIOError:  # drained (or a spurious wake-up): hold no pipe while idle
                self.pool.put(self.pipe)
                self.pipe = None
                return
            except OSError as exc:
                self._finish(exc)
                return
            if n == 0:
                self._finish(None)
                return
            self.count += n
            self.pending = n
            self._flush()
            if self.done or self.pipe is not None:  # ended, or dst full (waiting for it)
                return

    def _flush(self) -> None:
        pipe = self.pipe
        assert pipe is not None  # set while bytes are pending
        while self.pending:
            try:
                n = os.splice(pipe[0], self.dst, self.pending, flags=_SPLICE_FLAGS)
            except BlockingIOError:
                if not self.waiting:  # dst full: stop reading src until it drains (backpressure)
                    self.waiting = True
                    self.loop.remove_reader(self.src)
                    self.loop.add_writer(self.dst, self._flush)
                return
            except OSError as exc:
                self._finish(exc)
                return
            self.pending -= n
        if self.waiting:
            self.waiting = False
            self.loop.remove_writer(self.dst)
            if self.handover is None:
                self.loop.add_reader(self.src, self._readable)
        self.pool.put(pipe)
        self.pipe = None
        if self.handover is not None:
            self._hand_over()

    def detach(self, then: Callable[[], None]) -> None:
        """Stop relaying once no byte is in flight, and call ``then`` (a toxic added to an
        open connection takes this direction over from there, on the Python path; nothing
        is lost or reordered). ``on_done`` is not called: the new mover's end stands for it."""
        if self.done:
            return
        self.handover = then
        if not self.waiting:  # nothing in the pipe between wake-ups: stop now
            self._hand_over()

    def _hand_over(self) -> None:
        then, self.handover = self.handover, None
        self.done = True
        self.loop.remove_reader(self.src)
        if self.pipe is not None:
            self.pool.put(self.pipe)
            self.pipe = None
        assert then is not None
        self.loop.call_soon(then)

    def _finish(self, exc: BaseException | None) -> None:
        self.cancel()
        if exc is None:
            shutdown_write(self.dst_sock)  # pass the EOF on
        else:
            exc.__traceback__ = None  # its frames hold this relay: no cycle for the GC to find
        self.on_done(self, exc)

    def cancel(self) -> None:
        """Stop watching both sockets and give back the pipe (closed if it still holds bytes)."""
        if self.done:
            return
        self.done = True
        self.loop.remove_reader(self.src)
        if self.waiting:
            self.loop.remove_writer(self.dst)
        if self.pipe is not None:
            (self.pool.close if self.pending else self.pool.put)(self.pipe)
            self.pipe = None


class Pump:
    """src -> dst through Python, for a direction some toxic counts (budget) or paces (shaper).

    The reader (``run``) stamps each chunk with the time it was read and queues it; a writer
    task passes it through the shapers. Reading goes on while earlier chunks wait out their
    latency, as on a long link: each chunk is delayed once, not also by the ones before it.
    A toxic fires in the reader once every byte before its budget has been written.
    """

    QUEUE = 64  # chunks read ahead of the writer: at most 4 MiB

    def __init__(self, conn, direction: str, src: socket.socket, dst: socket.socket, toxics) -> None:
        self.conn, self.direction, self.src, self.dst = conn, direction, src, dst
        budgets = [(t.budget(direction), i, t) for i, t in enumerate(toxics)]
        self.triggers = sorted(b for b in budgets if b[0] is not None)
        self.shapers = [s for t in toxics if (s := t.shaper(direction)) is not None]
        self.read = 0   # bytes taken from src (budgets count these)
        self.carry = b""  # read past a budget that was added meanwhile: passed on after it fires
        self.count = 0  # bytes written to dst
        self.queue: asyncio.Queue | None = None
        self.writer: asyncio.Task | None = None

    def add(self, toxic) -> None:
        """A toxic added while this pump runs: its budget counts from here, its shaper paces
        the chunks it reads from now on (add_live)."""
        budget = toxic.budget(self.direction)
        if budget is not None:
            self.triggers.append((self.read + budget, len(self.triggers) + 1_000_000, toxic))
            self.triggers.sort(key=lambda t: (t[0], t[1]))
        shaper = toxic.shaper(self.direction)
        if shaper is not None:
            self.shapers.append(shaper)

    @property
    def needed(self) -> bool:
        return bool(self.triggers or self.shapers)

    async def run(self) -> None:
        from chaos.injectors.tcp_toxics import Drain

        loop = asyncio.get_running_loop()
        try:
            while True:
                while self.triggers and self.triggers[0][0] <= self.read:
                    if self.queue is not None:
                        await self.queue.join()
                    await self.triggers.pop(0)[2].fire(self)
                if self.carry:
                    data, self.carry = self.carry, b""
                else:
                    room = self.triggers[0][0] - self.read if self.triggers else CHUNK
                    data = await loop.sock_recv(self.src, min(room, CHUNK))
                    if not data:
                        break
                if self.triggers and self.read + len(data) > self.triggers[0][0]:
                    # a budget added while this read was waiting (add): stop at it, and go on
                    # with the rest once its toxic has fired
                    cut = max(0, self.triggers[0][0] - self.read)
                    data, self.carry = data[:cut], data[cut:]
                self.read += len(data)
                if data:
                    await self._queue(loop).put((data, loop.time()))
            if self.queue is not None:
                await self.queue.join()
            for shaper in self.shapers:
                await shaper.at_eof()
            shutdown_write(self.dst)
        except Drain:
            shutdown_write(self.dst)
            while await loop.sock_recv(self.src, CHUNK):
                pass
        except asyncio.CancelledError:
            # cancelled by a failed writer: report its error, not the cancellation
            if self.writer is not None and self.writer.done() and not self.writer.cancelled():
                raise self.writer.exception() or asyncio.CancelledError() from None
            raise
        finally:
            if self.writer is not None:
                self.writer.cancel()
                await asyncio.wait([self.writer])
                self.writer = self.queue = None  # the writer's frames refer back to this pump

    def _queue(self, loop) -> asyncio.Queue:
        """The queue and its writer, made on the first chunk (a hung stream never needs them)."""
        if self.queue is None:
            self.queue = asyncio.Queue(self.QUEUE)
            self.writer = loop.create_task(self._write())
            reader = asyncio.current_task()
            assert reader is not None  # called by the reading task
            self.writer.add_done_callback(lambda w: w.cancelled() or w.exception() is None
                                          or reader.cancel())
        return self.queue

    async def _write(self) -> None:
        queue = self.queue
        assert queue is not None  # made before this task
        while True:
            data, read_at = await queue.get()
            await self._emit(data, read_at, 0)
            queue.task_done()

    async def _emit(self, data: bytes, read_at: float, i: int) -> None:
        if i == len(self.shapers):
            await self.write(data)
            return
        async for piece in self.shapers[i].shape(data, read_at):
            # the next shaper counts from when this one let the piece go: two latencies on
            # one direction add up, as two slow links in a row (and Toxiproxy's toxics) do
            await self._emit(piece, asyncio.get_running_loop().time(), i + 1)

    async def write(self, data: bytes) -> None:
        await asyncio.get_running_loop().sock_sendall(self.dst, data)
        self.count += len(data)

    def unacked(self) -> int:
        """Bytes written to dst that its peer has not acknowledged yet (SIOCOUTQ)."""
        try:
            buf = fcntl.ioctl(self.dst.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
        except (OSError, ValueError):
            return 0
        return struct.unpack("i", buf)[0]


def shutdown_write(sock: socket.socket) -> None:
    """Send FIN (half-close); the peer may already be gone."""
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
