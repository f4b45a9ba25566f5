"""The injector contract: ``apply(journal)`` and ``revert(journal)``, both idempotent."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, NamedTuple, Protocol, runtime_checkable

from chaos.journal import Entry, Journal, RevertFailure


def shown(items, most: int = 5) -> str:
    """The first ``most`` of a list, comma separated, and how many more: a fault with
    thousands of destinations keeps a one-line label, describe() and journal line."""
    items = [str(i) for i in items]
    more = f" (+{len(items) - most} more)" if len(items) > most else ""
    return ", ".join(items[:most]) + more


class Injector(ABC):
    """One mechanism applying one change set.

    ``apply`` records each change with ``self.record(...)`` *before* making it; reverting
    is the journal's job (its undo function for ``kind``), so an injector's revert path and
    ``chaos recover`` are the same code.
    """

    kind: ClassVar[str]

    def __init__(self) -> None:
        self.entries: list[Entry] = []

    @abstractmethod
    def apply(self, journal: Journal) -> None: ...

    @abstractmethod
    def describe(self) -> str:
        """One line for the console and the report: what this changes, where."""

    def record(self, journal: Journal, undo: dict, what: str = "") -> Entry:
        entry = journal.record(self.kind, undo, what or self.describe())
        self.entries.append(entry)
        return entry

    def revert(self, journal: Journal) -> list[RevertFailure]:
        failures = journal.undo_entries(self.entries)
        self.entries = [f.entry for f in failures]
        return failures

    @property
    def applied(self) -> bool:
        return bool(self.entries)


class Clash(NamedTuple):
    """Two injectors claiming one thing: what (``what``), why it cannot be shared
    (``why``), and which field of the later fault asked for it (``rel``)."""

    rel: tuple
    what: str
    why: str


@runtime_checkable
class Exclusive(Protocol):
    """An optional ability: an injector that claims something only one may hold (an edge
    redirect claims a server port for its proxy). The runner refuses a plan in which a
    later fault's injector clashes with an earlier one's, before anything is applied."""

    def clash(self, other: object, zone: dict[str, str]) -> Clash | None:
        """How ``other`` (any injector) clashes with this one, or None; ``zone`` (the run's
        names -> addresses) names what is claimed in the message."""
