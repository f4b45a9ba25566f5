"""Packet attributes shared by packet-level faults (packet-filter, bot-mitigation)."""

from __future__ import annotations

from chaos.scenario.model import Strict
from chaos.scenario.modelbase import Field, model_validator


class TtlMatch(Strict):
    """Compare the TTL (IPv6: hop limit) the packet carries where it is filtered."""

    eq: int | None = Field(None, ge=0, le=255)
    """The TTL equals this."""
    lt: int | None = Field(None, ge=0, le=255)
    """The TTL is lower than this."""
    gt: int | None = Field(None, ge=0, le=255)
    """The TTL is higher than this."""

    @model_validator(mode="after")
    def _one(self):
        given = [k for k in ("eq", "lt", "gt") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of eq, lt, gt")
        return self


class TcpFlags(Strict):
    """TCP flags: of the flags in `mask`, exactly those in `set` are on (iptables --tcp-flags)."""

    mask: str = Field(pattern=r"^(SYN|ACK|FIN|RST|URG|PSH|ALL|NONE)(,(SYN|ACK|FIN|RST|URG|PSH))*$")
    """The flags examined, comma-separated (`SYN,ACK,FIN,RST`, `ALL`)."""
    set: str = Field(pattern=r"^(SYN|ACK|FIN|RST|URG|PSH|ALL|NONE)(,(SYN|ACK|FIN|RST|URG|PSH))*$")
    """Of those, the flags that must be on (`SYN`: a connection's first segment; `NONE`)."""


class PacketMatch(Strict):
    """Packet attributes to match; every one given must hold."""

    ttl: int | TtlMatch | None = None
    """TTL / hop limit: a number (equal) or {eq|lt|gt: n}. Windows sends 128, Linux 64."""
    length: tuple[int, int] | None = None
    """IP packet length range [min, max]."""
    tcp_flags: TcpFlags | None = None
    """TCP segments with these flags (e.g. {mask: "SYN,ACK,FIN,RST", set: SYN})."""
    tcp_option: int | None = Field(None, ge=0, le=255)
    """Segments carrying this TCP option kind (3 window scale, 8 timestamps)."""
    tcp_option_absent: bool = False
    """Match segments lacking `tcp_option` instead."""
    mss: int | tuple[int, int] | None = None
    """The MSS option of a SYN: a number or a range [min, max] (only SYNs carry it: a region
    with `mss: 1200` sends 1200, the sandbox's links 1460 otherwise)."""
    dscp: int | None = Field(None, ge=0, le=63)
    """Packets marked with this DSCP value (0-63)."""

    @model_validator(mode="after")
    def _mss_range(self):
        if self.mss is not None:
            low, high = (self.mss, self.mss) if isinstance(self.mss, int) else self.mss
            if not 0 <= low <= high <= 65535:
                raise ValueError(f"mss {self.mss}: expected 0..65535, a range as [min, max]")
        return self

    def tcp_only(self) -> list[str]:
        """The fields given that only TCP segments carry."""
        return [k for k in ("tcp_flags", "tcp_option", "mss") if getattr(self, k) is not None]

    def rule_fields(self) -> dict:
        """The fields of chaos.injectors.packet_filter.FilterRule this match sets."""
        out: dict = {}
        if self.ttl is not None:
            ttl = self.ttl if isinstance(self.ttl, TtlMatch) else TtlMatch(eq=self.ttl)
            out["ttl"] = ttl.model_dump(exclude_none=True)
        if self.length is not None:
            out["length"] = self.length
        if self.tcp_flags is not None:
            out["tcp_flags"] = (self.tcp_flags.mask, self.tcp_flags.set)
        if self.tcp_option is not None:
            out["tcp_option"], out["tcp_option_absent"] = self.tcp_option, self.tcp_option_absent
        if self.mss is not None:
            out["mss"] = (self.mss, self.mss) if isinstance(self.mss, int) else self.mss
        if self.dscp is not None:
            out["dscp"] = self.dscp
        return out
