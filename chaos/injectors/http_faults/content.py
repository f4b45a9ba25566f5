"""Changing what passes through the HTTP fault proxy: bodies, JSON merge patches, queries.

Used by the content fault types (http-respond, http-replace, http-patch). An answer's body
is changed while it streams (``Response.stream`` is a callable here), never by buffering
the origin's whole body first: mitmproxy streams bodies above ``stream_large_bodies`` anyway
and a replaced 1 GiB blob must not sit in memory. The headers go out before the body, so
the framing (content-length or chunked) is settled when the headers are changed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, cast

logger = logging.getLogger("chaos.http_faults")

NO_BODY = (204, 304)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: objects merge key by key, null removes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def patched_json(raw: bytes, patch: Any) -> bytes | None:
    """``raw`` JSON with ``patch`` merged in, compact; None when ``raw`` is not JSON."""
    try:
        doc = json.loads(raw) if raw.strip() else None
    except (ValueError, UnicodeDecodeError):
        return None
    return json.dumps(merge_patch(doc, patch), separators=(",", ":")).encode()


class BodyStream:
    """The stream function of one answer: ``transform`` gets the origin's body piece by piece
    (b"" at the end) and returns what the client gets instead. ``done`` once the end passed."""

    def __init__(self, transform: Callable[[bytes], bytes]) -> None:
        self.transform = transform
        self.done = False

    def __call__(self, data: bytes):
        if not data:
            self.done = True
        out = self.transform(data)
        # Nothing to send is [], never b"": mitmproxy would send an empty chunk, which on a
        # chunked answer is its end.
        return out if out else []


def _replace(body: bytes) -> Callable[[bytes], bytes]:
    sent = [False]

    def transform(_data: bytes) -> bytes:
        if sent[0]:
            return b""
        sent[0] = True
        return body
    return transform


def _truncate(n: int) -> Callable[[bytes], bytes]:
    passed = [0]

    def transform(data: bytes) -> bytes:
        keep = data[:max(n - passed[0], 0)]
        passed[0] += len(keep)
        return keep
    return transform


def _collect(finish: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    parts: list[bytes] = []

    def transform(data: bytes) -> bytes:
        if data:
            parts.append(data)
            return b""
        return finish(b"".join(parts))
    return transform


def _has_body(flow) -> bool:
    return flow.request.method != "HEAD" and flow.response.status_code not in NO_BODY


def _chunked(response) -> None:
    """Framing for a body whose length is not known yet (HTTP/2 and 3 need none)."""
    response.headers.pop("content-length", None)
    if response.http_version.startswith("HTTP/1"):
        response.headers["transfer-encoding"] = "chunked"


def replace_response_body(flow, body: bytes) -> None:
    """The answer's body becomes ``body`` (the origin's is read and dropped)."""
    response = flow.response
    response.headers.pop("content-encoding", None)
    response.headers.pop("transfer-encoding", None)
    response.headers["content-length"] = str(len(body))
    if _has_body(flow):
        _stream(flow, _replace(body), lambda _raw: body)


def truncate_response_body(flow, n: int) -> None:
    """Only the first ``n`` bytes of the body, as a complete answer (content-length n): a
    truncated manifest, not a broken transfer (that is `partial`)."""
    response = flow.response
    try:
        length = int(response.headers["content-length"])
    except (KeyError, ValueError):
        length = None
    if length is not None:
        response.headers["content-length"] = str(min(length, n))
    if _has_body(flow):
        _stream(flow, _truncate(n), lambda raw: raw[:n])


def patch_response_json(flow, patch: Any) -> None:
    """Merge ``patch`` into the answer's JSON body (left as it is when not JSON)."""
    from mitmproxy.net import encoding

    response = flow.response
    coding = response.headers.pop("content-encoding", None)

    def finish(raw: bytes) -> bytes:
        try:
            plain: bytes | None = cast(bytes, encoding.decode(raw, coding)) if coding else raw
        except ValueError:
            plain = None
        new = patched_json(plain, patch) if plain is not None else None
        if new is None:
            logger.warning("chaos: %s %s: the body is not JSON, not patched",
                           flow.request.method, flow.request.pretty_url)
            return plain if plain is not None else raw
        return new

    if _has_body(flow):
        _chunked(response)
        _stream(flow, _collect(finish), finish)


def _stream(flow, transform: Callable[[bytes], bytes], whole: Callable[[bytes], bytes]) -> None:
    """Stream the body through ``transform``; ``whole`` does the same to a body that never
    streamed (the origin's answer ended with its headers), in ``finish_response``."""
    stream = BodyStream(transform)
    flow.response.stream = stream
    flow.metadata["chaos_body"] = (stream, whole)


def finish_response(flow) -> None:
    """From the ``response`` hook: an answer whose body did not stream gets it now."""
    pending = flow.metadata.pop("chaos_body", None)
    if pending is None or pending[0].done:
        return
    response = flow.response
    response.headers.pop("transfer-encoding", None)
    response.content = pending[1](response.raw_content or b"")


def set_request_body(flow, body: bytes) -> bool:
    """The request's body becomes ``body``; False when it already streams to the origin."""
    if flow.request.stream:
        logger.warning("chaos: %s: the request body streams (too large), not replaced",
                       flow.request.pretty_url)
        return False
    flow.request.headers.pop("transfer-encoding", None)
    flow.request.content = body
    return True


def patch_request_json(flow, patch: Any) -> None:
    if flow.request.stream:
        logger.warning("chaos: %s: the request body streams (too large), not patched",
                       flow.request.pretty_url)
        return
    new = patched_json(flow.request.get_content(strict=False) or b"", patch)
    if new is None:
        logger.warning("chaos: %s: the request body is not JSON, not patched",
                       flow.request.pretty_url)
        return
    flow.request.content = new
