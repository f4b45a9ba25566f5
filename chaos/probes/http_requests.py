"""http_requests: count the requests the run's HTTP fault proxy saw for a host."""

from __future__ import annotations

from chaos.probes.base import CountedProbe


class HttpRequestsProbe(CountedProbe):
    """Count the requests the run's HTTP fault proxy saw for a host (e.g. the 206 answers a
    resuming client got). It sees what HTTP faults redirect while they are on: a count
    with `count` or `at_most` needs such a fault on the host for its whole span."""

    kind = "http-requests"
    key = "http_requests"
    has_client = False

    http_requests: str
    """The host name (its Host header), or `*` for every server at the world's edge (in the
    lab: Hub's registry, token server and CDN; the cache is on the clients' side)."""
    method: str | None = None
    """Only requests with this method (GET, HEAD, ...)."""
    status: int | None = None
    """Only requests answered with this status."""
    path: str | None = None
    """Only paths containing this."""
    client: str | None = None
    """Only requests from this client address (in the lab: the docker host is 198.18.0.30;
    the servers behind the proxy see the proxy's address instead, so count here)."""

    def describe(self) -> str:
        return f"HTTP requests to {self.http_requests}"

    def prepare(self, ctx) -> None:
        ctx.use_http()

    def blind_spot(self, scenario, span):
        from chaos.probes import coverage

        return coverage.http_requests(self, scenario, span)

    def observe(self, place, journal, result) -> None:
        from chaos.probes import expect

        proxy = getattr(place.http, "proxy", None)
        if proxy is None:
            raise RuntimeError("http_requests needs the sandbox's HTTP fault proxy (an HTTP fault)")
        since = place.marks.get((self.since, "http"), 0.0)
        host = self.http_requests.lower()
        seen = [r for r in proxy.requests() if (r.get("time") or 0) >= since
                and (host == "*" or (r.get("host") or "").lower() == host)
                and (self.method is None or r.get("method") == self.method)
                and (self.status is None or r.get("status") == self.status)
                and (self.path is None or self.path in (r.get("path") or ""))
                and (self.client is None or r.get("client") == self.client)]
        what = f"HTTP requests to {host}" + (f" {self.method}" if self.method else "") + (
            f" answered {self.status}" if self.status else "") + (
            f" from {self.client}" if self.client else "")
        flying = sum(r["in_flight"] for r in seen)
        result.checks += expect.count_checks(what, len(seen), self, in_flight=flying)
        result.observed = f"{len(seen)} requests" + (f" ({flying} in flight)" if flying else "") + "".join(
            f"; {r.get('method', '')} {r.get('host', '')}{r.get('path', '')} "
            + ("in flight" if r["in_flight"] else str(r.get("status"))) for r in seen[:2])
        result.detail["requests"] = seen[:20]
