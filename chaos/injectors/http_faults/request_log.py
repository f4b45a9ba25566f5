"""request_log: a JSON line when a request's headers arrive and one when it is over, for
expectations like ``http_requests: {status: 206, at_least: 1}``.

    {"event": "start", "id": "4f1c...", "time": 1717000000.12, "client": "127.0.0.1",
     "method": "GET", "host": "127.0.0.1", "path": "/blob", "range": "bytes=100000-"}
    {"event": "end", "id": "4f1c...", "time": 1717000000.12, "end_time": 1717000000.14,
     "client": "127.0.0.1", "method": "GET", "host": "127.0.0.1", "path": "/blob",
     "range": "bytes=100000-", "status": 206, "bytes": 948576, "duration": 0.02,
     "rule": "cut-blob", "fault": "partial", "error": null, "ended": "complete"}

A request with a start and no end is still in flight (a hang, a slow answer): a count sees
it (chaos.jsonl.requests joins the two). ``bytes`` counts the body bytes sent to the client
(after any cut); ``status`` is null when no answer was sent (drop, reset, hang); ``error``
says why a flow ended early and ``ended`` how: `complete` or that error. Load it after
the fault addons so it sees what they did. Alone:
``mitmdump -s chaos/injectors/http_faults/request_log.py --set chaos_request_log=FILE``.
"""

from __future__ import annotations

import json
import os
import time

LOG_OPTION = "chaos_request_log"
# One encoder for every line (json.dumps with separators builds a new one per call).
_encode = json.JSONEncoder(separators=(",", ":")).encode


class Counter:
    """Wraps a response's stream function (or plain streaming) and counts what goes out."""

    def __init__(self, inner) -> None:
        self.inner = inner if callable(inner) else None
        self.total = 0

    def __call__(self, data: bytes):
        out = self.inner(data) if self.inner is not None else data
        if isinstance(out, (bytes, bytearray)):
            self.total += len(out)
        else:  # an iterable of chunks
            out = list(out)
            self.total += sum(len(c) for c in out)
        return out


class RequestLog:
    """Appends every finished request (answered, killed or failed) to a JSON-lines file."""

    def __init__(self) -> None:
        self.fd: int | None = None
        self.counters: dict[str, Counter] = {}
        self.fields: dict[str, str] = {}  # flow id -> its request fields as JSON (no braces)

    def load(self, loader) -> None:
        loader.add_option(LOG_OPTION, str, "",
                          "Append one JSON line per request to this file; empty: off.")

    def configure(self, updated) -> None:
        from mitmproxy import ctx, exceptions

        if LOG_OPTION not in updated:
            return
        self.done()
        path = ctx.options.chaos_request_log
        if path:
            try:
                self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise exceptions.OptionsError(f"{LOG_OPTION}: {exc}") from exc

    def requestheaders(self, flow) -> None:
        if self.fd is None:
            return
        # Written at once, not buffered: a count read while the request is in flight must
        # see it (docs/counting.md). The end line reuses these fields, encoded once.
        fields = self.fields[flow.id] = _encode(self.request_fields(flow))[1:-1]
        self._line(f'{{"event":"start","id":{_encode(flow.id)},{fields}}}\n')

    def _line(self, line: str) -> None:
        assert self.fd is not None
        data = line.encode()
        while data:  # one write() for a line; the loop only if the kernel took part of it
            data = data[os.write(self.fd, data):]

    @staticmethod
    def request_fields(flow) -> dict:
        req, peer = flow.request, flow.client_conn.peername
        return {"time": req.timestamp_start, "client": peer[0] if peer else None,
                "method": req.method,
                # the Host header: what rules match on (req.host is an IP in transparent mode)
                "host": req.pretty_host, "path": req.path, "range": req.headers.get("range")}

    def responseheaders(self, flow) -> None:
        if self.fd is not None and flow.response.stream:
            counter = Counter(flow.response.stream)
            flow.response.stream = counter
            self.counters[flow.id] = counter

    def response(self, flow) -> None:
        self.write(flow)

    def error(self, flow) -> None:
        self.write(flow)

    def write(self, flow) -> None:
        counter = self.counters.pop(flow.id, None)
        fields = self.fields.pop(flow.id, None)
        if self.fd is None or flow.metadata.get("chaos_logged"):
            return
        flow.metadata["chaos_logged"] = True
        req, resp = flow.request, flow.response
        killed = flow.error is not None and flow.error.msg == flow.error.KILLED_MESSAGE
        if counter is not None:
            sent = counter.total
        elif resp is not None and not killed and flow.error is None:
            sent = len(resp.raw_content or b"")
        else:
            sent = 0
        answered = resp is not None and (counter is not None or flow.error is None)
        now = time.time()
        if fields is None:  # no requestheaders for it (an error before the headers were in)
            fields = _encode(self.request_fields(flow))[1:-1]
        entry = {
            "end_time": now,
            "status": resp.status_code if answered else None,
            "bytes": sent,
            "duration": now - req.timestamp_start,
            "rule": flow.metadata.get("chaos_rule"),
            "fault": flow.metadata.get("chaos_fault"),
            "error": flow.error.msg if flow.error else None,
            "ended": flow.error.msg if flow.error else "complete",
        }
        self._line(f'{{"event":"end","id":{_encode(flow.id)},{fields},{_encode(entry)[1:]}\n')

    def done(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


addons = [RequestLog()]
