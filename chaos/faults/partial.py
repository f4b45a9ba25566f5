"""partial: downloads stop after N bytes; Range requests still get 206 (resuming clients finish)."""

from __future__ import annotations

import re
from typing import Literal

from chaos.faults.http_rule import HttpFault, HttpMatch
from chaos.injectors.http_faults import actions
from chaos.injectors.http_faults.rules import FaultAddon, pick
from chaos.scenario.model import Duration
from chaos.scenario.modelbase import Field

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


class Partial(HttpFault):
    """Serve only the first `bytes` of matching response bodies, then close, reset or hang.

    Range requests are answered 206 with Content-Range, so a client that resumes (`curl -C -`,
    dockerd retrying a layer) can finish, one cut at a time with `cut_ranges`.
    """

    type: Literal["partial"] = "partial"
    """The fault type."""
    bytes: int = Field(ge=0)
    """Body bytes served before the cut."""
    then: Literal["close", "reset", "hang"] = "close"
    """What happens at the cut: a clean close, a TCP reset, or nothing more at all."""
    hang_seconds: Duration | None = None
    """With `then: hang`: close after this long (default: hang until the client gives up)."""
    cut_ranges: bool = False
    """Cut Range requests too (a resuming client then advances `bytes` per try)."""
    wait_ack: bool = True
    """With `then: reset`: true, the reset waits until the client acknowledged the N bytes
    (it has exactly N and resumes at N); false, it goes as soon as the Nth byte is handed
    to the kernel, and what the client has not received yet is lost, as with a real reset
    (a slow client resumes from what it really got)."""
    match: HttpMatch | None = None
    """Only these requests (default: every request through the proxy)."""
    ports: list[int] = [80, 443]
    """Server ports whose traffic goes through the fault proxy."""
    probability: float | None = Field(None, gt=0, le=1)
    """Cut this share of matching responses; the rest pass whole."""


    @classmethod
    def http_addon(cls) -> FaultAddon:
        return PartialAddon()

    def label(self) -> str:
        return self.name or f"partial {self.bytes} B then {self.then}"


def parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """First and last byte of a single ``bytes=`` range over ``size`` bytes; None if absent or
    not a single range. A start past the end gives (start, -1): unsatisfiable."""
    m = _RANGE.match(value or "")
    if not m or not (m.group(1) or m.group(2)):
        return None
    first, last = m.group(1), m.group(2)
    if not first:  # suffix: the last N bytes
        n = int(last)
        return (max(size - n, 0), size - 1) if n else (size, -1)
    start = int(first)
    if start >= size:
        return (start, -1)
    end = min(int(last), size - 1) if last else size - 1
    return (start, end) if end >= start else None


class Cut:
    """The stream function of one response: skip ``skip`` bytes, pass ``take``, call
    ``on_cut`` when more than ``take`` bytes arrive (None: pass everything)."""

    __slots__ = ("skip", "take", "on_cut", "cut", "sent")

    def __init__(self, skip: int, take: int | None, on_cut=None) -> None:
        self.skip, self.take, self.on_cut = skip, take, on_cut
        self.cut, self.sent = False, 0

    def __call__(self, data: bytes):
        # Nothing to send is [], never b"": on a chunked answer mitmproxy turns an empty
        # chunk into the terminating "0\r\n\r\n", and the cut body would look complete.
        if self.skip:
            n = min(self.skip, len(data))
            data, self.skip = data[n:], self.skip - n
        if self.take is not None:
            left = self.take - self.sent
            if len(data) > left:
                if not self.cut:
                    self.cut = True
                    if self.on_cut is not None:
                        self.on_cut()
                data = data[:max(left, 0)]
        self.sent += len(data)
        return data if data else []


class PartialAddon(FaultAddon):
    """Cuts matching response bodies after N bytes and serves Range requests with 206."""

    def __init__(self) -> None:
        self.cuts: dict[str, tuple] = {}  # flow id -> (rule, Cut, reset task holder)

    def responseheaders(self, flow, rules) -> None:
        response = flow.response
        if (not actions.untouched(flow) or flow.request.method == "HEAD"
                or not 200 <= response.status_code < 300):
            return
        rule = pick(flow, rules)
        if rule is None:
            return
        p = rule.params
        skip, length = 0, None
        asked = flow.request.headers.get("range")
        size = _content_length(response)
        if asked and response.status_code == 200 and size is not None \
                and "content-encoding" not in response.headers:
            span = parse_range(asked, size)
            if span is not None:  # the origin ignored Range: answer it here
                skip, length = _as_206(response, span, size)
        if asked and not p.cut_ranges:
            if length is not None:
                response.stream = Cut(skip, length)  # only slicing, no fault
            return
        actions.claim(flow, rule)
        take = p.bytes if length is None else min(p.bytes, length)
        if take == length:  # the asked range is within the first N bytes: nothing to cut
            response.stream = Cut(skip, length)
            return
        holder: list = []
        cut = Cut(skip, take, on_cut=lambda: self._on_cut(flow, p, holder))
        response.stream = cut
        self.cuts[flow.id] = (rule, cut, holder)

    def _on_cut(self, flow, p: Partial, holder: list) -> None:
        import asyncio  # here: the plan imports this module and needs no event loop

        loop = asyncio.get_running_loop()
        if p.then == "close":
            loop.call_soon(actions.close_after_flush, flow)
        elif p.then == "reset":
            holder.append(loop.create_task(actions.reset_after_flush(flow, p.wait_ack)))

    async def response(self, flow) -> None:
        entry = self.cuts.pop(flow.id, None)
        if entry is None or not entry[1].cut:
            return
        rule, _cut, holder = entry
        if rule.params.then == "hang":
            await actions.hang(flow, rule.params.hang_seconds)
        for task in holder:
            await task
        # The origin's body ended; never let the client see the end of the message.
        actions.kill(flow)

    def error(self, flow) -> None:
        self.cuts.pop(flow.id, None)


def _content_length(response) -> int | None:
    try:
        return int(response.headers["content-length"])
    except (KeyError, ValueError):
        return None


def _as_206(response, span: tuple[int, int], size: int) -> tuple[int, int]:
    start, end = span
    if end < start:  # unsatisfiable: 416, no body
        response.status_code, response.reason = 416, "Range Not Satisfiable"
        response.headers["content-range"] = f"bytes */{size}"
        response.headers["content-length"] = "0"
        return size, 0
    response.status_code, response.reason = 206, "Partial Content"
    response.headers["content-range"] = f"bytes {start}-{end}/{size}"
    response.headers["content-length"] = str(end - start + 1)
    return start, end - start + 1
