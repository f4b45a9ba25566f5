"""partial: serve only the first N bytes of matching bodies, then hang, close or reset.

Rule parameters (besides ``id``, ``fault: "partial"``, ``probability``, ``match``):

    bytes         N, how many body bytes the client gets (required)
    then          close (default: FIN after the N bytes) | reset (RST once they are ACKed)
                  | hang (send nothing more, close unanswered after ``hang_seconds``)
    hang_seconds  null (default) = until the client gives up
    cut_ranges    false (default): answers to Range requests pass whole, so a resuming
                  client (``curl -C -``) completes on its next try; true: they are cut at N
                  bytes too, so the client progresses N bytes per try

Range requests are answered correctly: an origin answering 206 passes through; an origin
ignoring Range (200 with a Content-Length) is turned into 206 + Content-Range here (416 past
the end). The Content-Length of a cut answer stays the origin's, as on a broken transfer.
Bodies always stream: a 1 GiB blob passes with flat memory.

Alone (add request_log.py to see the 200/206 sequence):
``mitmdump -s chaos/injectors/http_faults/partial.py --set chaos_rules_dir=DIR``.
"""

from __future__ import annotations

import asyncio
import re

try:
    from chaos.injectors.http_faults import actions, rules
except ImportError:  # run by a mitmdump outside the chaos environment: use the sibling files
    import actions  # type: ignore[no-redef, import-not-found]
    import rules  # type: ignore[no-redef, import-not-found]

FAULT = "partial"
_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


def check(params: dict) -> dict:
    size = params.get("bytes")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError(f"bytes must be an integer >= 0, not {size!r}")
    cut_ranges = params.get("cut_ranges", False)
    if not isinstance(cut_ranges, bool):
        raise ValueError("cut_ranges must be true or false")
    return {
        "bytes": size,
        "then": rules.choice(params, "then", "close", ("close", "reset", "hang")),
        "hang_seconds": rules.number(params, "hang_seconds", None),
        "cut_ranges": cut_ranges,
    }


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
    ``on_cut`` when more than ``take`` bytes arrive (None: pass everything).

    (A plain class: mitmproxy loads this file outside sys.modules, where @dataclass fails.)
    """

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


class Partial(rules.RuleAddon):
    """Cuts matching response bodies after N bytes and serves Range requests with 206."""

    FAULT, check = FAULT, staticmethod(check)

    def __init__(self) -> None:
        super().__init__()
        self.cuts: dict[str, tuple] = {}  # flow id -> (rule, Cut, reset task holder)

    def responseheaders(self, flow) -> None:
        response = flow.response
        if (not actions.untouched(flow) or flow.request.method == "HEAD"
                or not 200 <= response.status_code < 300):
            return
        rule = self.rules.pick(flow)
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
        if asked and not p["cut_ranges"]:
            if length is not None:
                response.stream = Cut(skip, length)  # only slicing, no fault
            return
        actions.claim(flow, rule)
        take = p["bytes"] if length is None else min(p["bytes"], length)
        if take == length:  # the asked range is within the first N bytes: nothing to cut
            response.stream = Cut(skip, length)
            return
        holder: list = []
        cut = Cut(skip, take, on_cut=lambda: self._on_cut(flow, p, holder))
        response.stream = cut
        self.cuts[flow.id] = (rule, cut, holder)

    def _on_cut(self, flow, p: dict, holder: list) -> None:
        loop = asyncio.get_running_loop()
        if p["then"] == "close":
            loop.call_soon(actions.close_after_flush, flow)
        elif p["then"] == "reset":
            holder.append(loop.create_task(actions.reset_after_flush(flow)))

    async def response(self, flow) -> None:
        entry = self.cuts.pop(flow.id, None)
        if entry is None or not entry[1].cut:
            return
        rule, _cut, holder = entry
        if rule.params["then"] == "hang":
            await actions.hang(flow, rule.params["hang_seconds"])
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


addons = [Partial()]
