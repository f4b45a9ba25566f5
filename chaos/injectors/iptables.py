"""iptables plumbing shared by the packet filter and client profiles.

Every change is one transaction per address family, so it lands atomically or not at all:
adding is an ``iptables-restore --noflush`` batch; removing, with nf_tables, is one
libnftables transaction (``chaos.injectors.nft``: no process that waits for the kernel as
it exits), else another batch. A change only ever touches a chain the toolkit created
(named from the run tag) plus the single jump into it from a built-in chain. A removal that
does not apply as recorded is built from what ``iptables-save`` shows *now*, which makes
removal idempotent: it works when nothing, half (one family) or everything was applied, and
when run twice.

The journal record of kind ``iptables`` (see ``undo``) names the namespace, table, chain
and, per family, whether the table existed before: with the nf_tables backend an
``ip filter`` table appears on first use, and removing it again (only when it is empty)
is what makes ``iptables-save`` after a revert identical to before.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from chaos.injectors import nft
from chaos.sandbox.enter import in_netns, netns_path

FAMILIES = ("ipv4", "ipv6")
_SAVE = {"ipv4": "iptables-save", "ipv6": "ip6tables-save"}
_RESTORE = {"ipv4": "iptables-restore", "ipv6": "ip6tables-restore"}
_NFT_FAMILY = {"ipv4": "ip", "ipv6": "ip6"}
BUILTIN = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "raw": ("PREROUTING", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
}
MAX_CHAIN = 28  # xtables: names are "under 29 chars"
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")


class IptablesError(RuntimeError):
    """An iptables command failed; the message carries its stderr (and the batch)."""


def chain_name(tag: str, suffix: str) -> str:
    """``<tag>-<suffix>``, shortened with a hash when it would pass the 28-char limit."""
    name = f"{tag}-{suffix}"
    if not _NAME_OK.match(name):
        raise ValueError(f"chain name {name!r}: use letters, digits and _.:- only")
    if len(name) > MAX_CHAIN:
        digest = hashlib.sha1(name.encode()).hexdigest()[:6]
        name = f"{name[:MAX_CHAIN - 7]}-{digest}"
    return name


def netns_exists(netns: str | None) -> bool:
    return netns is None or netns_path(netns).exists()


def run(netns: str | None, argv: list[str], stdin: str | None = None) -> str:
    # Started from a thread inside the namespace: no `ip netns exec` process per command.
    proc = in_netns(netns, subprocess.run, argv, input=stdin, capture_output=True, text=True,
                    timeout=30)
    if proc.returncode != 0:
        where = f" in {netns}" if netns else ""
        raise IptablesError(f"{' '.join(argv)}{where} failed ({proc.returncode}): "
                            f"{proc.stderr.strip()}")
    return proc.stdout


# -- reading state ------------------------------------------------------------------------
@dataclass
class Table:
    """One table as ``iptables-save`` prints it."""

    name: str
    policies: dict[str, str] = field(default_factory=dict)  # chain -> ACCEPT/DROP/"-"
    rules: list[str] = field(default_factory=list)  # "-A CHAIN ..." lines

    @property
    def user_chains(self) -> list[str]:
        return [c for c, p in self.policies.items() if p == "-"]


def parse_save(text: str) -> dict[str, Table]:
    tables: dict[str, Table] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("*"):
            current = tables.setdefault(line[1:].strip(), Table(line[1:].strip()))
        elif current is None or line.startswith("#") or line == "COMMIT":
            continue
        elif line.startswith(":"):
            chain, policy = line[1:].split()[:2]
            current.policies[chain] = policy
        elif line.startswith("-A "):
            current.rules.append(line)
    return tables


def save(netns: str | None, family: str) -> dict[str, Table]:
    """Every table that exists in the namespace (without ``-t``: asking creates nothing)."""
    return parse_save(run(netns, [_SAVE[family]]))


def restore(netns: str | None, family: str, batch: str) -> None:
    """Apply one batch atomically (``--noflush``: the rest of the table stays as it is)."""
    try:
        run(netns, [_RESTORE[family], "-w", "5", "--noflush"], stdin=batch)
    except IptablesError as exc:
        raise IptablesError(f"{exc}\n--- batch ---\n{batch}") from None


# -- building batches ----------------------------------------------------------------------
def _jumps_to(table: Table, chain: str) -> list[str]:
    """Rules elsewhere that jump (or goto) into ``chain``."""
    targets = (f" -j {chain}", f" -g {chain}")
    return [r for r in table.rules
            if r.split()[1] != chain and any(r.endswith(t) or f"{t} " in r for t in targets)]


def removal_lines(table: Table | None, chain: str) -> list[str]:
    """Lines that delete ``chain`` and every jump into it; empty when it is not there."""
    if table is None:
        return []
    lines = ["-D " + r[3:] for r in _jumps_to(table, chain)]
    if chain in table.user_chains:
        lines += [f"-F {chain}", f"-X {chain}"]
    return lines


def install_batch(table: str, hook: str, chain: str, tag: str, rule_lines: list[str],
                  current: Table | None = None) -> str:
    """The batch that (re)creates ``chain`` with ``rule_lines`` and jumps to it from ``hook``.

    Leftovers of an earlier apply in ``current`` are removed in the same transaction, so
    applying twice leaves exactly one jump.
    """
    if hook not in BUILTIN[table]:
        raise ValueError(f"hook {hook!r} is not a built-in chain of table {table}")
    stale = [line for line in removal_lines(current, chain) if not line.startswith("-X")]
    return "\n".join([
        f"*{table}",
        *stale,
        f":{chain} - [0:0]",
        *rule_lines,
        f'-I {hook} 1 -m comment --comment "{tag}" -j {chain}',
        "COMMIT",
        "",
    ])


# -- applying and removing -----------------------------------------------------------------
def snapshot(netns: str | None, families) -> dict[str, dict[str, Table]]:
    return {family: save(netns, family) for family in families}


def undo_record(netns: str | None, table: str, hook: str, chain: str, tag: str,
                before: Mapping[str, dict[str, Table] | None]) -> dict:
    """``before``: family -> its tables before the change, or None where they were not
    read (a scratch namespace: the table, if it appeared, may stay)."""
    return {"netns": netns, "table": table, "hook": hook, "chain": chain, "tag": tag,
            "families": {f: {"table_existed": tables is None or table in tables}
                         for f, tables in before.items()}}


def install(netns: str | None, table: str, hook: str, chain: str, tag: str,
            lines_by_family: dict[str, list[str]], before: Mapping[str, dict[str, Table] | None]) -> None:
    for family, lines in lines_by_family.items():
        tables = before[family]
        batch = install_batch(table, hook, chain, tag, lines, tables.get(table) if tables else None)
        restore(netns, family, batch)


def remove_chain(netns: str | None, family: str, table: str, chain: str,
                 table_existed: bool = True, installed: tuple[str, str] | None = None) -> bool:
    """Remove ``chain`` and its jumps in one batch; True when something was removed.

    ``installed`` = (hook, tag) of the jump ``install_batch`` made: then the removal is
    built from that alone (no ``iptables-save``), and only if it does not apply as a whole
    (half applied, already gone, a jump added by hand) from what the table holds. A table
    that did not exist before and holds nothing but ours is dropped whole instead. With
    nf_tables, deletions go through ``chaos.injectors.nft`` (no process: a deleting process
    waits for the kernel as it exits, docs/benchmarks.md)."""
    if not netns_exists(netns):
        return False  # the namespace, and everything in it, is gone already
    if not table_existed and _can_drop_tables():
        # Our chain first, as installed: then the table read below is short, whatever the
        # number of rules ours held (reading them as text was most of a long filter's revert).
        removed = installed is not None and _remove_installed(netns, family, table, chain, *installed)
        dropped = nft.drop_table_if_only(netns, _NFT_FAMILY[family], table, chain)  # no process
        if dropped is not None:
            return dropped or removed
        current = save(netns, family).get(table)
        if current is not None and _pristine_without(current, chain):
            nft.run(netns, f"delete table {_NFT_FAMILY[family]} {table}")
            return removed or chain in current.user_chains
        # Others use the table now: take ours out, leave the table to them.
        return _remove_as_read(netns, family, table, chain, current) or removed
    if installed is not None and _remove_installed(netns, family, table, chain, *installed):
        return True
    return _remove_as_read(netns, family, table, chain, save(netns, family).get(table))


def _remove_as_read(netns: str | None, family: str, table: str, chain: str,
                    current: Table | None) -> bool:
    """Remove ``chain`` and every jump into it that ``current`` (the table as read) shows."""
    lines = removal_lines(current, chain)
    if lines:
        restore(netns, family, "\n".join([f"*{table}", *lines, "COMMIT", ""]))
    return bool(lines)


def _pristine_without(table: Table, chain: str) -> bool:
    """True when removing ``chain`` and its jumps would leave ``table`` as if new."""
    ours = set(removal_lines(table, chain))
    others = [r for r in table.rules
              if not r.startswith(f"-A {chain} ") and "-D " + r[3:] not in ours]
    return (not others and set(table.user_chains) <= {chain}
            and all(p == "ACCEPT" for c, p in table.policies.items() if c != chain))


def _remove_installed(netns: str | None, family: str, table: str, chain: str, hook: str,
                      tag: str) -> bool:
    if _can_drop_tables():  # nf_tables: delete in this process (chaos.injectors.nft)
        return nft.remove_chain(netns, _NFT_FAMILY[family], table, hook, chain)
    batch = "\n".join([f"*{table}", f'-D {hook} -m comment --comment "{tag}" -j {chain}',
                       f"-F {chain}", f"-X {chain}", "COMMIT", ""])
    try:
        run(netns, [_RESTORE[family], "-w", "5", "--noflush"], stdin=batch)
    except IptablesError:
        return False
    return True


def _can_drop_tables() -> bool:
    """With the nf_tables backend a table appears on first use and stays: nft removes it
    (legacy tables always exist: nothing to put back)."""
    return _nft_backend() and nft.available()


@lru_cache(maxsize=1)
def _nft_backend() -> bool:
    proc = subprocess.run(["iptables", "-V"], capture_output=True, text=True)
    return "nf_tables" in proc.stdout


def undo(record: dict) -> None:
    """Journal undo for kind ``iptables``: idempotent, safe on a half-applied change."""
    for family, info in record["families"].items():
        installed = (record["hook"], record["tag"]) if "hook" in record else None
        remove_chain(record["netns"], family, record["table"], record["chain"],
                     info.get("table_existed", True), installed)


def cleanup(netns: str | None, tag: str, tables=("filter", "mangle")) -> list[str]:
    """Remove every chain a jump tagged exactly ``tag`` leads to (recovery without a journal)."""
    removed: list[str] = []
    if not netns_exists(netns):
        return removed
    marker = f"--comment {tag} -j "
    for family in FAMILIES:
        for name, table in save(netns, family).items():
            if name not in tables:
                continue
            for rule in table.rules:
                if marker in rule.replace(f'"{tag}"', tag):
                    chain = rule.split(" -j ")[-1].split()[0]
                    if remove_chain(netns, family, name, chain):
                        removed.append(f"{family}/{name}/{chain}")
    return removed
