"""Client profiles: make a namespace's TCP/IP stack look like another OS family.

Packet-level bot mitigation picks its victims by what the kernel puts on the wire: the
initial TTL (Linux/macOS 64, Windows 128, network gear 255), the MSS, and which TCP options
the SYN carries (window scaling, timestamps, SACK). These are per-namespace sysctls, except
the MSS, which the kernel only lets us clamp: a TCPMSS rule in our own mangle chain (it can
lower the advertised MSS, never raise it).

Journal kinds: ``sysctl`` (the old values; undo writes them back) and ``iptables`` (the
MSS chain, see ``chaos.injectors.iptables``).
"""

from __future__ import annotations

import subprocess
from typing import Any, ClassVar

from chaos.injectors import iptables
from chaos.injectors.base import Injector
from chaos.journal import Journal
from chaos.processes import netns_argv

# Stack defaults as another OS family sends them (what p0f-style fingerprints look at).
OS_FAMILIES = {
    "linux": {"ttl": 64, "window_scaling": True, "timestamps": True, "sack": True},
    "macos": {"ttl": 64, "window_scaling": True, "timestamps": True, "sack": True},
    "windows": {"ttl": 128, "window_scaling": True, "timestamps": False, "sack": True},
    "network-device": {"ttl": 255, "window_scaling": False, "timestamps": False, "sack": False},
}

_BOOL_KEYS = {"window_scaling": "net/ipv4/tcp_window_scaling",  # also used by IPv6 TCP
              "timestamps": "net/ipv4/tcp_timestamps",
              "sack": "net/ipv4/tcp_sack"}
_TTL_KEYS = ("net/ipv4/ip_default_ttl", "net/ipv6/conf/*/hop_limit")

# Read and write /proc/sys from inside the namespace (/proc/sys/net follows the caller's
# netns). Keys are slash paths so interface names with dots stay unambiguous.
_READ = ('cd /proc/sys && for k; do for f in $k; do [ -e "$f" ] && printf "%s\\t%s\\n" "$f" "$(cat "$f")"; done; done;'
         ' true')
_WRITE = 'cd /proc/sys && while [ $# -gt 1 ]; do if [ -e "$1" ]; then echo "$2" > "$1" || exit 1; fi; shift 2; done'


def read_sysctls(netns: str | None, keys) -> dict[str, str]:
    """Slash-path keys (globs allowed) -> current value; missing keys are left out."""
    out = subprocess.run(netns_argv(netns, ["sh", "-c", _READ, "chaos-sysctl", *keys]),
                         capture_output=True, text=True, check=True, timeout=30).stdout
    return dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)


def write_sysctls(netns: str | None, values: dict[str, str]) -> None:
    """Write values; keys that do not exist (an interface gone since) are skipped."""
    args = [x for kv in values.items() for x in kv]
    proc = subprocess.run(netns_argv(netns, ["sh", "-c", _WRITE, "chaos-sysctl", *args]),
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"sysctl write in {netns or 'host'} failed: {proc.stderr.strip()}")


def undo(record: dict) -> None:
    """Journal undo for kind ``sysctl``: write the old values back (idempotent)."""
    if iptables.netns_exists(record["netns"]):
        write_sysctls(record["netns"], record["values"])


class ClientProfile(Injector):
    """Per-namespace stack defaults: initial TTL / hop limit, MSS clamp, TCP options."""

    kind: ClassVar[str] = "sysctl"

    def __init__(self, netns: str | None, *, ttl: int | None = None, mss: int | None = None,
                 window_scaling: bool | None = None, timestamps: bool | None = None,
                 sack: bool | None = None, tag: str = "chaos-profile") -> None:
        super().__init__()
        if ttl is not None and not 1 <= ttl <= 255:
            raise ValueError(f"ttl {ttl}: expected 1..255")
        if mss is not None and not 88 <= mss <= 65495:
            raise ValueError(f"mss {mss}: expected 88..65495")
        self.netns, self.tag = netns, tag
        self.ttl, self.mss = ttl, mss
        self.flags = {k: v for k, v in (("window_scaling", window_scaling),
                                        ("timestamps", timestamps), ("sack", sack))
                      if v is not None}
        self.chain = iptables.chain_name(tag, "mss")

    def _targets(self) -> dict[str, str]:
        """Slash-path key -> new value, globs expanded against the namespace."""
        wanted = {_BOOL_KEYS[k]: str(int(v)) for k, v in self.flags.items()}
        if self.ttl is not None:
            for key in read_sysctls(self.netns, _TTL_KEYS):
                wanted[key] = str(self.ttl)
        return wanted

    def apply(self, journal: Journal) -> None:
        wanted = self._targets()
        if wanted:
            old = read_sysctls(self.netns, wanted)
            self.record(journal, {"netns": self.netns, "values": old},
                        f"sysctl in {self.netns or 'host'}: " +
                        ", ".join(f"{k.rsplit('/', 1)[-1]}={v}" for k, v in wanted.items()
                                  if "/conf/" not in k or k.endswith("/all/hop_limit")))
            write_sysctls(self.netns, wanted)
        if self.mss is not None:
            lines = {f: [f"-A {self.chain} -p tcp -m tcp --tcp-flags SYN,RST SYN "
                         f'-m comment --comment "{self.tag} mss" -j TCPMSS --set-mss {self.mss}']
                     for f in iptables.FAMILIES}
            before = iptables.snapshot(self.netns, lines)
            undo_rec = iptables.undo_record(self.netns, "mangle", "OUTPUT", self.chain, self.tag,
                                                     before)
            self.entries.append(journal.record("iptables", undo_rec,
                                               f"mss clamp {self.mss} in {self.netns or 'host'}"))
            iptables.install(self.netns, "mangle", "OUTPUT", self.chain, self.tag, lines, before)

    def describe(self) -> str:
        parts = [f"ttl={self.ttl}"] if self.ttl is not None else []
        parts += [f"mss={self.mss}"] if self.mss is not None else []
        parts += [f"{k}={'on' if v else 'off'}" for k, v in self.flags.items()]
        return f"client profile in {self.netns or 'host'}: {' '.join(parts) or 'unchanged'}"


def client_profile(netns: str | None, ttl: int | None = None, mss: int | None = None,
                   window_scaling: bool | None = None, *, os_family: str | None = None,
                   timestamps: bool | None = None, sack: bool | None = None,
                   tag: str = "chaos-profile") -> ClientProfile:
    """A ``ClientProfile`` injector; ``os_family`` fills defaults (see ``OS_FAMILIES``),
    explicit arguments win. Nothing changes until ``apply(journal)``."""
    if os_family is not None and os_family not in OS_FAMILIES:
        raise ValueError(f"os_family {os_family!r}: expected one of {sorted(OS_FAMILIES)}")
    base: dict[str, Any] = dict(OS_FAMILIES[os_family]) if os_family else {}
    given = {"ttl": ttl, "mss": mss, "window_scaling": window_scaling,
             "timestamps": timestamps, "sack": sack}
    base.update({k: v for k, v in given.items() if v is not None})
    return ClientProfile(netns, tag=tag, **base)
