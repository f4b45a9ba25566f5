"""resolves: what a host name resolves to where the clients live (getent, the system resolver)."""

from __future__ import annotations

from chaos.probes.base import ProbeBase


class Resolves(ProbeBase):
    """Resolve a host name with the system resolver (hosts file, then DNS) where the clients
    live, and check the address it gives."""

    kind = "resolves"
    key = "resolves"

    resolves: str
    """The host name."""
    to: str | None = None
    """The address it must resolve to (default: any address; `none`: it must not resolve)."""

    def describe(self) -> str:
        return f"{self.resolves} resolves" + (f" to {self.to}" if self.to else "")

    def observe(self, place, journal, result) -> None:
        from chaos.probes import expect
        from chaos.probes.result import HUNG
        from chaos.probes.run import bound, run_process

        name = place.expand(self.resolves)
        code, out, err, took = run_process(journal, ["getent", "ahostsv4", name], place, bound(self))
        result.duration = took
        if code is None:
            result.verdict = HUNG
            return
        addresses = sorted({line.split()[0] for line in out.splitlines() if line.strip()})
        result.detail.update(name=name, addresses=addresses, exit=code)
        seen = ", ".join(addresses) or "does not resolve"
        if self.to == "none":
            result.checks.append(expect.Check("resolves", "no address", seen, not addresses))
        elif self.to is not None:
            result.checks.append(expect.Check("resolves", self.to, seen, self.to in addresses))
        else:
            result.checks.append(expect.Check("resolves", "an address", seen, bool(addresses)))
        result.checks += expect.within_check(self.within, took)
