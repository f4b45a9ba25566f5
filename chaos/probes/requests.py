"""requests: count requests in a lab server's access log (where a pull was served from)."""

from __future__ import annotations

from typing import Literal

from chaos.probes.base import CountedProbe


class RequestsProbe(CountedProbe):
    """Count requests in a lab server's access log since the phase began: proves where a
    pull was served from (e.g. the upstream saw no blob request)."""

    kind = "requests"
    key = "requests"

    requests: Literal["upstream", "registry", "auth", "cdn", "cache"]
    """Whose access log: the upstream registry, the token server, the CDN or the cache."""
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

    def observe(self, place, journal, result) -> None:
        from chaos.probes import expect

        if place.lab is None:
            raise RuntimeError("requests needs `lab: registry`")
        server = place.lab.server(self.requests)
        mark = place.marks.get((self.since, self.requests), 0)
        seen = [r for r in server.access.matching(mark, method=self.method, path=self.path)
                if (self.status is None or r.status == self.status)
                and (self.client is None or r.client == self.client)]
        n = len(seen)
        what = f"{self.requests} requests" + (f" {self.method}" if self.method else "") + (
            f" {self.path}" if self.path else "") + (f" status {self.status}" if self.status else "") + (
            f" from {self.client}" if self.client else "")
        sample = "; ".join(str(r) for r in seen[:3])
        result.checks += expect.count_checks(what, n, self, f"{n}" + (f" ({sample})" if sample else ""))
        result.detail["requests"] = [str(r) for r in seen[:20]]
