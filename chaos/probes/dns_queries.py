"""dns_queries: count the queries the run's fake DNS server got for a name."""

from __future__ import annotations

from typing import Annotated

from chaos.probes.base import CountedProbe, Counts
from chaos.scenario.modelbase import Discriminator, Tag


class DnsQuery(Counts):
    """`dns_queries:` as a mapping: the name, with the counts and query type beside it."""

    name: str
    """The name asked for (exact)."""
    qtype: str | None = None
    """Only queries of this type (A, AAAA, ...)."""


class DnsQueriesProbe(CountedProbe):
    """Count the queries the sandbox's fake DNS server got for a name (e.g. a client with a
    DNS cache must not ask again)."""

    kind = "dns-queries"
    key = "dns_queries"
    has_client = False

    dns_queries: Annotated[
        Annotated[str, Tag("name")] | Annotated[DnsQuery, Tag("mapping")],
        Discriminator(lambda v: "mapping" if isinstance(v, (dict, DnsQuery)) else "name")]
    """The name asked for (exact), or a mapping: `{name: NAME, at_least: 1}` (its other keys
    are those of this probe)."""
    qtype: str | None = None
    """Only queries of this type (A, AAAA, ...)."""

    def _lift(self) -> None:
        query = self.dns_queries
        if not isinstance(query, DnsQuery):
            return
        for key in sorted(query.model_fields_set - {"name"}):
            if key in self.model_fields_set:
                raise ValueError(f"{key}: given twice, inside `dns_queries:` and beside it")
            setattr(self, key, getattr(query, key))
        self.dns_queries = query.name

    def describe(self) -> str:
        return f"DNS queries for {self.dns_queries}"

    def prepare(self, ctx) -> None:
        ctx.use_dns()

    def blind_spot(self, scenario, span):
        from chaos.probes import coverage

        return coverage.dns_queries(self, scenario, span)

    def observe(self, place, journal, result) -> None:
        from chaos.probes import expect

        server = getattr(place.dns, "server", None)
        if server is None:
            raise RuntimeError("dns_queries needs the sandbox's fake DNS server (a dns fault)")
        since = place.marks.get((self.since, "dns"), 0.0)
        name = str(self.dns_queries).lower().rstrip(".")
        seen = [q for q in server.queries() if q.get("t", 0) >= since
                and q.get("name", "").lower().rstrip(".") == name
                and (self.qtype is None or q.get("type") == self.qtype)]
        what = f"DNS queries for {name}" + (f" {self.qtype}" if self.qtype else "")
        result.checks += expect.count_checks(what, len(seen), self)
        result.observed = f"{len(seen)} queries"
        result.detail["queries"] = seen[:20]
