"""Send TCP connections arriving at the sandbox world to a local proxy (nat PREROUTING REDIRECT).

The world is where the servers live, so a proxy there stands where a CDN edge stands: it
sees every client's real source address (regions), and its own connections to the servers
leave through OUTPUT, which the redirect never touches (no loop, no exemptions). The proxy
finds the original destination with SO_ORIGINAL_DST (transparent mode).
"""

from __future__ import annotations

from typing import ClassVar

from chaos.injectors import iptables
from chaos.injectors.base import Injector
from chaos.injectors.packet_filter import port_chunks, port_text
from chaos.journal import Journal


class EdgeRedirect(Injector):
    kind: ClassVar[str] = "iptables"

    def __init__(self, netns: str, ports: list[int | str], to_port: int, *, tag: str, name: str,
                 destinations: list[str] = ()) -> None:
        super().__init__()
        if not netns:
            raise ValueError("EdgeRedirect acts in the sandbox world, never on the host")
        # ports or "first:last" ranges, in iptables' spelling
        texts = sorted({port_text(p) for p in ports}, key=lambda t: [int(x) for x in t.split(":")])
        for text in texts:
            first, _, last = text.partition(":")
            if int(first) <= to_port <= int(last or first):
                raise ValueError(f"port {to_port} is the proxy's own: redirecting it would loop")
        self.netns, self.ports, self.to_port, self.tag = netns, texts, to_port, tag
        self.destinations = list(destinations)
        self.chain = iptables.chain_name(tag, name)

    def describe(self) -> str:
        where = ",".join(self.destinations) or "any server"
        return f"redirect tcp {','.join(map(str, self.ports))} to {where} -> proxy :{self.to_port} in {self.netns}"

    def lines(self) -> list[str]:
        dests = self.destinations or [None]
        return [f"-A {self.chain} -p tcp" + (f" -d {d}" if d else "")
                + f' -m multiport --dports {",".join(chunk)} -m comment --comment "{self.tag}"'
                + f" -j REDIRECT --to-ports {self.to_port}"
                for d in dests for chunk in port_chunks(self.ports)]

    def apply(self, journal: Journal) -> None:
        if self.applied:
            return
        before = iptables.snapshot(self.netns, ["ipv4"])
        self.record(journal, iptables.undo_record(self.netns, "nat", "PREROUTING", self.chain, self.tag,
                                                  before))
        iptables.install(self.netns, "nat", "PREROUTING", self.chain, self.tag,
                         {"ipv4": self.lines()}, before)
