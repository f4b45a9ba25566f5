"""Baselines: each probe's verdict recorded once, so a gate fails only when one changes.

A team adopting the gate on a stack with known weaknesses (docs/registry-library.md) records
what its stack does today with ``--write-baseline FILE``; runs with ``--baseline FILE`` then
exit 1 only when a verdict differs from the record, in either direction: a weakness that got
fixed is news too, and the record should be written again.

Verdicts are compared by outcome: ``failed`` and ``hung`` are the same outcome (an
expectation not met; which of the two a slow client gives depends on timing the scenario
does not control), ``passed``, ``error`` and ``skipped`` are each their own.

Client generations behave differently (docs/registry-library.md), so a baseline of lab
scenarios names the client it was recorded with (``"client": "dockerd@20.10"``). A run with
another client (``--client-version 26.1``, ``--client podman --client-version 5.4``) is
judged by the file beside it named for that client, ``baseline-dockerd@26.1.json``,
``baseline-podman@5.4.json`` for ``baseline.json``: the gate command stays the same. A
client other than dockerd without a file of its own falls back to the system dockerd's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chaos.probes.result import ProbeResult

VERSION = 1
OUTCOME = {"passed": "passed", "failed": "not met", "hung": "not met", "error": "error",
           "skipped": "skipped"}
ORDER = ("passed", "not met", "skipped", "error")  # better to worse


class BaselineError(ValueError):
    """A baseline file that cannot be used; the message names the file and what is wrong."""


def probe_keys(result) -> list[tuple[str, ProbeResult]]:
    """``phase/name`` for each probe of a scenario result; a name repeated in a phase gets
    ``#2``, ``#3``... so every probe has its own key."""
    seen: dict[str, int] = {}
    keys = []
    for probe in result.probes:
        key = f"{probe.phase}/{probe.name}"
        seen[key] = seen.get(key, 0) + 1
        keys.append((key if seen[key] == 1 else f"{key}#{seen[key]}", probe))
    return keys


def record(results, client: str | None = None) -> dict:
    """The baseline document of these results (``client``: the lab client they ran with)."""
    scenarios = {}
    for result in results:
        scenarios[result.name] = {"file": result.file, "duration": round(result.duration, 1),
                                  "probes": {key: p.verdict for key, p in probe_keys(result)}}
    return {"version": VERSION, **({"client": client} if client else {}), "scenarios": scenarios}


def write(results, path: str | Path, client: str | None = None) -> None:
    Path(path).write_text(json.dumps(record(results, client), indent=2, ensure_ascii=False) + "\n")


def for_client(path: str | Path, client: str) -> Path:
    """The file beside ``path`` that holds ``client``'s baseline."""
    p = Path(path)
    return p.with_name(f"{p.stem}-{client}{p.suffix}")


def load_for(path: str | Path, client: str | None,
             fallback: str | None = None) -> tuple[dict, Path]:
    """The verdicts recorded for ``client`` and the file they come from: ``path`` itself if
    it records that client (or names none), else ``for_client(path, client)``. A client
    other than dockerd with no file of its own is judged by ``fallback``'s (the system
    dockerd's) when given: its pulls then show how they differ from dockerd's."""
    doc = _read(path)
    recorded = doc.get("client")
    if client is None or recorded in (None, client):
        return _verdicts(doc, path), Path(path)
    other = for_client(path, client)
    if not other.exists() and fallback and fallback != client and not client.startswith("dockerd@"):
        return load_for(path, fallback)
    if not other.exists():
        raise BaselineError(f"{path}: records {recorded}, this run's client is {client}, and "
                            f"{other} does not exist: record it with --write-baseline {other}")
    doc = _read(other)
    if doc.get("client") != client:
        raise BaselineError(f"{other}: records {doc.get('client') or 'no client'}, not {client}")
    return _verdicts(doc, other), other


def load(path: str | Path) -> dict:
    """The recorded verdicts: scenario name -> probe key -> verdict."""
    return _verdicts(_read(path), path)


def _read(path: str | Path) -> dict:
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as exc:
        raise BaselineError(f"{path}: cannot read the baseline: {exc.strerror}") from None
    except ValueError as exc:
        raise BaselineError(f"{path}: not a baseline (invalid JSON: {exc})") from None
    if not isinstance(doc, dict) or doc.get("version") != VERSION \
            or not isinstance(doc.get("scenarios"), dict):
        raise BaselineError(f"{path}: not a baseline of version {VERSION} "
                            "(written by `chaos run --write-baseline`)")
    if not isinstance(doc.get("client", ""), str):
        raise BaselineError(f"{path}: client: expected a name such as dockerd@20.10")
    return doc


def _verdicts(doc: dict, path: str | Path) -> dict:
    verdicts = {}
    for name, entry in doc["scenarios"].items():
        probes = entry.get("probes") if isinstance(entry, dict) else None
        if not isinstance(probes, dict) or not all(v in OUTCOME for v in probes.values()):
            raise BaselineError(f"{path}: scenarios.{name}: expected probes: {{key: verdict}} "
                                f"with verdicts among {', '.join(OUTCOME)}")
        verdicts[name] = probes
    return verdicts


def durations(path: str | Path) -> dict[str, float]:
    """How long each scenario took when the baseline was recorded (scenario name ->
    seconds; older baselines have none): `chaos run -j` starts the longest first."""
    doc = json.loads(Path(path).read_text())  # load() has checked it
    return {name: float(entry["duration"]) for name, entry in doc["scenarios"].items()
            if isinstance(entry.get("duration"), (int, float))}


@dataclass
class Change:
    scenario: str
    probe: str
    was: str | None
    now: str | None

    @property
    def worse(self) -> bool:
        if self.now is None:  # recorded, but the run no longer has it
            return True
        if self.was is None:  # new since the record: only news if it does not pass
            return self.now != "passed"
        return ORDER.index(OUTCOME[self.now]) > ORDER.index(OUTCOME[self.was])

    def __str__(self) -> str:
        was = self.was or "not in the baseline"
        now = self.now or "not in this run"
        return f"{self.scenario}: {self.probe}: {was} -> {now}"


@dataclass
class Comparison:
    changes: list[Change] = field(default_factory=list)
    known_in: dict[str, int] = field(default_factory=dict)
    """Per scenario: probes not passed, as recorded (not a change)."""
    unrecorded: list[str] = field(default_factory=list)
    """Scenarios the baseline has no record of."""

    @property
    def worse(self) -> list[Change]:
        return [c for c in self.changes if c.worse]

    @property
    def better(self) -> list[Change]:
        return [c for c in self.changes if not c.worse]

    def changed(self, scenario: str) -> bool:
        return scenario in self.unrecorded or any(c.scenario == scenario for c in self.changes)

    def for_scenario(self, name: str) -> dict:
        """What the JSON report says of one scenario against the baseline."""
        mine = [c for c in self.changes if c.scenario == name]
        return {"recorded": name not in self.unrecorded,
                "known": self.known_in.get(name, 0),
                "worse": [str(c) for c in mine if c.worse],
                "better": [str(c) for c in mine if not c.worse]}


def compare(baseline: dict, results) -> Comparison:
    """What changed from the record, for the scenarios of this run (a scenario the run did
    not include is not compared: a run of part of a library is a fair use). Each probe's
    ``detail["baseline"]`` says how it compares, for the reports."""
    comparison = Comparison()
    for result in results:
        recorded = baseline.get(result.name)
        if recorded is None:
            comparison.unrecorded.append(result.name)
            continue
        now = dict(probe_keys(result))
        for key in [*recorded, *(k for k in now if k not in recorded)]:
            was, probe = recorded.get(key), now.get(key)
            verdict = probe.verdict if probe is not None else None
            if probe is not None and was is not None and OUTCOME.get(was) == OUTCOME.get(probe.verdict):
                comparison.known_in[result.name] = \
                    comparison.known_in.get(result.name, 0) + (verdict != "passed")
                probe.detail["baseline"] = "as recorded"
                continue
            if probe is not None and was is None and probe.verdict == "passed":
                probe.detail["baseline"] = "new"
                continue  # a new probe that passes changes nothing a gate should stop on
            change = Change(result.name, key, was, verdict)
            comparison.changes.append(change)
            if probe is not None:
                probe.detail["baseline"] = f"{'worse' if change.worse else 'better'}: was {was}"
    return comparison


def summary(comparison: Comparison, path: str) -> list[str]:
    """Lines for the console: what changed from the baseline, worse first."""
    lines = []
    if comparison.unrecorded:
        lines.append(f"baseline {path} has no record of: {', '.join(comparison.unrecorded)} "
                     "(write it again with --write-baseline)")
    for title, changes in (("worse than the baseline", comparison.worse),
                           ("better than the baseline", comparison.better)):
        if changes:
            lines.append(f"{title} ({len(changes)}):")
            lines += [f"  {c}" for c in changes]
    if comparison.better and not comparison.worse:
        lines.append(f"a recorded weakness changed: record it with --write-baseline {path}")
    if not lines:
        lines.append(f"baseline {path}: every verdict as recorded "
                     f"({sum(comparison.known_in.values())} recorded weakness(es), as before)")
    return lines
