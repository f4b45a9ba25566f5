"""A scenario as one Chaos Mesh Workflow: its faults, its timeline and its HTTP checks.

The `during` phase becomes a Parallel node as long as the phase (``during``): a fault on
throughout is a chaos node with that deadline; a `window` is a Suspend node (the wait)
then the chaos with the window's length; a `flap` is a Schedule node (`@every period`,
each chaos lasting `period * duty`). `http` probes become StatusCheck nodes: before the
Parallel (the steady state), inside it (the symptom, only when no fault changes during
the phase) and after it (recovery). Every deadline and duration is a Go duration.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from chaos.durations import go_duration
from chaos.export.mapping import MeshChaos, Target, Unmappable, map_fault

API_VERSION = "chaos-mesh.org/v1alpha1"
ANNOTATION = "chaos-registry/"
DEFAULT_DURING = 60.0


@dataclass
class Refusal:
    """A fault left out: where it is, why, and the nearest fault that maps."""

    file: str
    line: int
    index: int
    type: str
    why: str
    nearest: str

    def __str__(self) -> str:
        return (f"{self.file}:{self.line}: faults[{self.index}] ({self.type}): no Chaos Mesh "
                f"equivalent: {self.why}; nearest: {self.nearest}")


@dataclass
class Export:
    name: str
    workflow: dict | None
    refused: list[Refusal] = field(default_factory=list)
    probes_left_out: list[str] = field(default_factory=list)

    def text(self, source: str) -> str:
        head = (f"# chaos export --to chaos-mesh {source}\n"
                "# Apply with `kubectl apply -f`; docs/kubernetes.md says what each node does.\n")
        return head + dump(self.workflow)


class _Dumper(yaml.SafeDumper):
    """Plain YAML for kubectl: no anchors for repeated values, multi-line text as blocks."""

    def ignore_aliases(self, data) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def dump(data) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=100)


def k8s_name(text: str) -> str:
    """A DNS-1123 name (lower case letters, digits, '-'; at most 63 characters)."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return name[:63].rstrip("-") or "scenario"


def export_scenario(scenario, file: str, target: Target, during: float = DEFAULT_DURING,
                    allow_partial: bool = False) -> Export:
    """The Workflow of ``scenario``; with refusals and no ``allow_partial``, none."""
    source = getattr(scenario, "_source", None)
    mapped: list[tuple[int, Any, list[MeshChaos]]] = []
    refused = []
    for index, fault in enumerate(scenario.faults):
        try:
            mapped.append((index, fault, map_fault(fault, target)))
        except Unmappable as exc:
            line = source.position(("faults", index))[0] if source else 0
            refused.append(Refusal(file, line, index, fault.type, exc.why, exc.nearest))
    name = k8s_name(scenario.name)
    if (refused and not allow_partial) or not mapped:
        return Export(name, None, refused)
    length = max([during] + [_end(f) for _, f, _ in mapped])
    templates: list[dict] = []
    lost: list[str] = []
    fault_nodes = []
    for index, fault, chaos in mapped:
        fault_nodes.append(_fault_node(templates, index, fault, chaos, length))
        lost += [f"faults[{index}]: {note}" for note in dict.fromkeys(
            n for c in chaos for n in c.lost)]
    checks = _Checks(scenario, templates)
    steady = all(f.on_throughout() for _, f, _ in mapped)
    before = checks.phase("before")
    during_children = fault_nodes + checks.phase("during", steady)
    entry = before + ["during"] + checks.phase("after")
    templates.insert(0, {"name": "during", "templateType": "Parallel",
                         "deadline": go_duration(length), "children": during_children})
    templates.insert(0, {"name": "main", "templateType": "Serial", "children": entry})
    annotations = {ANNOTATION + "scenario": scenario.name}
    if checks.names:
        annotations[ANNOTATION + "checks"] = "\n".join(checks.names)
    if lost + checks.lost:
        annotations[ANNOTATION + "lost"] = "\n".join(lost + checks.lost)
    if refused:
        annotations[ANNOTATION + "left-out"] = "\n".join(
            f"faults[{r.index}] ({r.type}, line {r.line}): {r.why}" for r in refused)
    if checks.left_out:
        annotations[ANNOTATION + "probes-left-out"] = "\n".join(checks.left_out)
    workflow = {"apiVersion": API_VERSION, "kind": "Workflow",
                "metadata": {"name": name, "namespace": target.namespace,
                             "annotations": annotations},
                "spec": {"entry": "main", "templates": templates}}
    return Export(name, workflow, refused, checks.left_out)


def _end(fault) -> float:
    """How long the `during` phase must last for this fault's schedule to run out."""
    window, flap = fault.window, fault.flap
    start = window.after if window else 0.0
    if window and window.for_ is not None:
        return start + window.for_
    return start + (flap.period if flap else 0.0)


def _fault_node(templates: list[dict], index: int, fault, chaos: list[MeshChaos],
                length: float) -> str:
    """Add the templates of one fault; returns the name of its node."""
    start = fault.window.after if fault.window else 0.0
    on_for = (fault.window.for_ if fault.window and fault.window.for_ is not None
              else length - start)
    name = f"fault-{index}"
    body = name if not start else f"{name}-on"
    if len(chaos) == 1:
        templates.append(_chaos_template(body, chaos[0], on_for, fault.flap))
    else:
        children = [f"{name}-{j}" for j in range(len(chaos))]
        templates.append({"name": body, "templateType": "Parallel",
                          "deadline": go_duration(on_for), "children": children})
        templates += [_chaos_template(child, c, on_for, fault.flap)
                      for child, c in zip(children, chaos, strict=True)]
    if start:
        templates.append({"name": name, "templateType": "Serial",
                          "children": [f"{name}-wait", body]})
        templates.append({"name": f"{name}-wait", "templateType": "Suspend",
                          "deadline": go_duration(start)})
    return name


def _chaos_template(name: str, chaos: MeshChaos, deadline: float, flap) -> dict:
    if flap is None:
        return {"name": name, "templateType": chaos.kind, "deadline": go_duration(deadline),
                chaos.field: chaos.spec}
    # A flap: the chaos again every period, for period * duty each time (cron's @every).
    spec = {**chaos.spec, "duration": go_duration(flap.period * flap.duty)}
    return {"name": name, "templateType": "Schedule", "deadline": go_duration(deadline),
            "schedule": {"schedule": f"@every {go_duration(flap.period)}", "type": chaos.kind,
                         "concurrencyPolicy": "Forbid", "historyLimit": 1, chaos.field: spec}}


class _Checks:
    """The scenario's `http` probes as StatusCheck templates; the others are listed."""

    def __init__(self, scenario, templates: list[dict]) -> None:
        self.scenario, self.templates = scenario, templates
        self.names: list[str] = []
        self.lost: list[str] = []
        self.left_out: list[str] = []

    def phase(self, phase: str, exportable: bool = True) -> list[str]:
        out = []
        for k, probe in enumerate(getattr(self.scenario.expect, phase)):
            where = f"expect.{phase}[{k}] ({getattr(probe, 'kind', '?')})"
            why = self._why_not(probe) or (None if exportable else (
                "the faults change during the phase (windows, flaps): a check cannot follow them"))
            if why:
                self.left_out.append(f"{where}: {why}")
                continue
            name = f"check-{phase}-{k}"
            self.templates.append(self._template(name, probe, phase))
            self.names.append(f"{name}: {probe.name or probe.describe()}")
            out.append(name)
        return out

    @staticmethod
    def _why_not(probe) -> str | None:
        if getattr(probe, "kind", None) == "step":
            return "a step changes the registry lab, which a cluster does not have"
        if getattr(probe, "key", None) != "http":
            return "a StatusCheck only makes HTTP requests: run it in the probe Job"
        if probe.method not in ("GET", "POST"):
            return f"method {probe.method}: a StatusCheck sends GET or POST"
        if "{" in probe.http:
            return "a {placeholder} in the URL only the run knows"
        if _status_code(probe.status) is None:
            return f"status {probe.status!r}: a StatusCheck wants one status or a range"
        return None

    def _template(self, name: str, probe, phase: str) -> dict:
        bound = probe.within or probe.timeout or 5
        timeout = max(1, min(5, math.ceil(bound)))
        # Before: the steady state holds at once. During and after: the symptom (or the
        # recovery) may take until `within` to show: one try a second until then.
        failures = 1 if phase == "before" else max(1, math.ceil(bound / (timeout + 1)))
        http: dict[str, Any] = {"url": probe.http, "method": probe.method,
                                "criteria": {"statusCode": _status_code(probe.status)}}
        if probe.headers:
            http["headers"] = {k: [v] for k, v in probe.headers.items()}
        extra = [k for k in ("body", "response_headers", "body_size") if getattr(probe, k)]
        if extra or probe.region:
            self.lost.append(f"{name}: " + ", ".join(
                extra + (["region (the check runs from the controller)"] if probe.region else [])))
        check = {"mode": "Synchronous", "type": "HTTP", "timeoutSeconds": timeout,
                 "intervalSeconds": 1, "failureThreshold": failures, "successThreshold": 1,
                 "http": http}
        return {"name": name, "templateType": "StatusCheck",
                "deadline": go_duration(failures * (timeout + 1) + 5),
                "abortWithStatusCheck": True, "statusCheck": check}


def _status_code(status) -> str | None:
    if isinstance(status, int):
        return str(status)
    if isinstance(status, list) and status and sorted(status) == list(
            range(min(status), max(status) + 1)):
        return f"{min(status)}-{max(status)}" if len(status) > 1 else str(status[0])
    return None
