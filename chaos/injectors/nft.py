"""Deleting nf_tables rules in-process, through libnftables, without waiting for the kernel.

Why not a command: with nf_tables, a commit that deletes rules takes effect at once, but
their memory is freed after an RCU grace period, and the kernel makes the next process that
closes a netfilter netlink socket wait for that (``nft_rcv_nl_event`` flushes the destroy
work), seen with ``strace -T`` as the ``close`` of nft's socket (docs/benchmarks.md). An
``iptables-restore`` or ``nft`` that deletes closes its socket on exit, so the caller always
pays that wait. Here the socket is closed by a background thread instead: the delete
returns once it is in effect and the grace period passes on its own.

Rules are still *added* with ``iptables-restore`` (iptables' own syntax and extensions, read
back exactly by ``iptables-save``); only deletions come here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import re
import threading

from chaos.sandbox.enter import in_netns

_OUTPUT_HANDLE, _OUTPUT_STATELESS = 1 << 3, 1 << 2  # enum nft_output_flags
# What nft 1.0.6 reads as a name unquoted (it takes no quoted chain names).
_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9/_.-]*$")
_lib = None
_closing: list[threading.Thread] = []  # background closes not known to be finished


class NftError(RuntimeError):
    """libnftables refused a command; the message carries its error text."""


def _load():
    global _lib
    if _lib is None:
        lib = ctypes.CDLL(ctypes.util.find_library("nftables") or "libnftables.so.1")
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error", "nft_ctx_free"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, name).restype = ctypes.c_char_p
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        _lib = lib
    return _lib


def available() -> bool:
    try:
        _load()
    except OSError:
        return False
    return True


class Context:
    """One libnftables context, its netlink socket made inside ``netns`` (None: here).

    Use it in a ``with``: leaving closes the socket from a background thread, which is
    where the kernel's wait falls."""

    def __init__(self, netns: str | None) -> None:
        self.netns = netns
        self.ptr: int | None = in_netns(netns, self._open, _load())  # FileNotFoundError: no namespace

    @staticmethod
    def _open(lib) -> int:
        ptr = lib.nft_ctx_new(0)
        if not ptr:
            raise NftError("nft_ctx_new failed")
        lib.nft_ctx_buffer_output(ptr)
        lib.nft_ctx_buffer_error(ptr)
        lib.nft_ctx_output_set_flags(ptr, _OUTPUT_HANDLE | _OUTPUT_STATELESS)
        # libnftables 1.0.6 opens the socket in nft_ctx_new (checked); a first command here,
        # inside the namespace, keeps it there with a version that opens it on first use.
        # Not `list tables`: it reads every rule of every table into the cache, which cost
        # a filter of thousands of rules most of its revert (docs/benchmarks.md).
        lib.nft_run_cmd_from_buffer(ptr, b"list flowtables")
        return ptr

    def run(self, commands: str) -> str:
        """Run ``commands`` (one per line) as one transaction; their output, or NftError."""
        lib = _load()
        rc = lib.nft_run_cmd_from_buffer(self.ptr, commands.encode())
        out = (lib.nft_ctx_get_output_buffer(self.ptr) or b"").decode()
        err = (lib.nft_ctx_get_error_buffer(self.ptr) or b"").decode()
        if rc != 0:
            where = f" in {self.netns}" if self.netns else ""
            raise NftError(f"nft{where}: {err.strip() or 'failed'}\n--- commands ---\n{commands}")
        return out

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc) -> None:
        ptr, self.ptr = self.ptr, None
        # Not a daemon: the interpreter waits for it at exit (one grace period at most).
        closing = threading.Thread(target=_load().nft_ctx_free, args=(ptr,), name="chaos-nft-close")
        closing.start()
        _closing[:] = [t for t in _closing if t.is_alive()] + [closing]


def settle() -> None:
    """Wait until every context is closed, and so the kernel done with what they deleted
    (benchmarks call it so that the next process timed does not pay for that wait)."""
    for closing in list(_closing):
        closing.join()


def run(netns: str | None, commands: str) -> str:
    """``commands`` as one transaction in ``netns``; their output."""
    with Context(netns) as ctx:
        return ctx.run(commands)


def rule_handles(listing: str, chain: str) -> list[int]:
    """Handles of the rules in an ``nft -a list chain`` ``listing`` that jump or go to ``chain``."""
    handles = []
    for line in listing.splitlines():
        body, sep, handle = line.rpartition(" # handle ")
        words = body.split()
        if sep and any(words[i] in ("jump", "goto") and words[i + 1] == chain
                       for i in range(len(words) - 1)):
            handles.append(int(handle))
    return handles


def remove_chain(netns: str | None, family: str, table: str, hook: str, chain: str) -> bool:
    """Delete every ``hook`` rule jumping to ``chain``, then ``chain``, in one transaction.

    False, with nothing changed, when that does not apply as a whole (no such chain, no
    jump, a jump from elsewhere, a name nft cannot spell): the caller then works from
    what ``iptables-save`` shows.
    """
    if not (_NAME.match(hook) and _NAME.match(chain)):
        return False
    try:
        with Context(netns) as ctx:
            handles = rule_handles(ctx.run(f"list chain {family} {table} {hook}"), chain)
            if not handles:
                return False
            ctx.run("\n".join([
                *(f"delete rule {family} {table} {hook} handle {h}" for h in handles),
                f"flush chain {family} {table} {chain}",
                f"delete chain {family} {table} {chain}",
            ]))
    except NftError:
        return False
    return True


def only_ours(listing: str, chain: str) -> bool | None:
    """For an ``nft -a list table`` ``listing``: None when the table holds anything but
    ``chain``, jumps into it and base chains with policy accept (what a table iptables-nft
    made appear for our change holds), else whether ``chain`` is in it."""
    chains: dict[str, dict] = {}
    current = None
    for raw in listing.splitlines():
        line = raw.split(" # handle ")[0].strip()
        if line == "}":
            current = None
        elif not line or line.startswith(("#", "table ")):
            continue
        elif line.startswith("chain ") and line.endswith("{"):
            current = chains.setdefault(line.split()[1], {"base": False, "accept": True, "rules": []})
        elif current is None:
            return None  # a set, a map, a flowtable: not ours
        elif line.startswith("type ") and " hook " in line:
            current["base"], current["accept"] = True, "policy accept;" in line
        else:
            current["rules"].append(raw)
    for name, found in chains.items():
        if name != chain and not (found["base"] and found["accept"] and all(
                rule_handles(rule, chain) for rule in found["rules"])):
            return None
    return chain in chains


def drop_table_if_only(netns: str | None, family: str, table: str, chain: str) -> bool | None:
    """Delete ``table`` when it holds nothing but ``chain`` and the jumps into it (see
    ``only_ours``); True when ``chain`` was in it. None, with nothing changed, when it holds
    more, is gone or cannot be read: the caller then reads it with ``iptables-save``. The
    chain's name is only compared, never spelled in a command, so any name will do."""
    try:
        with Context(netns) as ctx:
            found = only_ours(ctx.run(f"list table {family} {table}"), chain)
            if found is not None:
                ctx.run(f"delete table {family} {table}")
            return found
    except NftError:
        return None
