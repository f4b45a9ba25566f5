"""requests: count requests in a server's own access log (where a pull was served from)."""

from __future__ import annotations

from chaos.probes.base import CountedProbe
from chaos.scenario.model import HostName


class RequestsProbe(CountedProbe):
    """Count the requests a server's own access log holds (every request to it, whatever
    the faults): proves where a pull was served from (e.g. the upstream saw no blob
    request). A `serve:` server's request still being answered is counted, and shown in
    flight (the lab's servers log a request once it is over)."""

    kind = "requests"
    key = "requests"
    has_client = False

    requests: HostName
    """Whose access log: a `serve:` server's name, or the lab's `upstream` (or `registry`),
    `auth` (the token server), `cdn` or `cache`."""
    method: str | None = None
    """Only requests with this method (GET, HEAD, ...)."""
    path: str | None = None
    """A substring of the request path, e.g. /blobs/."""
    status: int | None = None
    """Only requests answered with this status."""
    client: str | None = None
    """Only requests from this client address (the cache is 198.18.0.20, the docker host 198.18.0.30)."""

    def describe(self) -> str:
        return f"{self.requests} requests {self.path or ''}".strip()

    def what(self) -> str:
        """What is counted, for the check's line."""
        return f"{self.requests} requests" + (f" {self.method}" if self.method else "") + (
            f" {self.path}" if self.path else "") + (f" status {self.status}" if self.status else "") + (
            f" from {self.client}" if self.client else "")

    def blind_spot(self, scenario, span):
        from chaos.probes import coverage

        return coverage.requests(self, scenario, span)

    def observe(self, place, journal, result) -> None:
        from chaos.probes import expect

        if self.requests in place.served:
            self.observe_served(place, result)
            return
        if place.lab is None:
            raise RuntimeError("requests needs `lab: registry` or a `serve:` server of that name")
        server = place.lab.server(self.requests)
        mark = place.marks.get((self.since, self.requests), 0)
        seen = [r for r in server.access.matching(mark, method=self.method, path=self.path)
                if (self.status is None or r.status == self.status)
                and (self.client is None or r.client == self.client)]
        n = len(seen)
        sample = "; ".join(str(r) for r in seen[:3])
        result.observed = f"{n}" + (f" ({sample})" if sample else "")
        result.checks += expect.count_checks(self.what(), n, self, result.observed)
        result.detail["requests"] = [str(r) for r in seen[:20]]

    def observe_served(self, place, result) -> None:
        """Count a `serve:` server's requests from its start / end records."""
        from chaos import jsonl
        from chaos.probes import expect

        since = place.marks.get((self.since, "serve"), 0.0)
        seen = [r for r in jsonl.requests(jsonl.read(place.served[self.requests]))
                if (r.get("time") or 0) >= since
                and (self.method is None or r.get("method") == self.method)
                and (self.path is None or self.path in (r.get("path") or ""))
                and (self.status is None or r.get("status") == self.status)
                and (self.client is None or r.get("client") == self.client)]
        flying = sum(r["in_flight"] for r in seen)
        sample = "; ".join(f"{r.get('method')} {r.get('path')} "
                           + ("in flight" if r["in_flight"] else str(r.get("status")))
                           for r in seen[:3])
        observed = f"{len(seen)}" + (f" ({flying} in flight)" if flying else "") + (
            f" ({sample})" if sample else "")
        result.observed = observed
        result.checks += expect.count_checks(self.what(), len(seen), self, observed)
        result.detail["requests"] = seen[:20]
