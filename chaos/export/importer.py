"""`chaos import`: Chaos Mesh NetworkChaos / DNSChaos / HTTPChaos documents to a scenario.

A chaos alone, in a Schedule (a flap) or in a Workflow (its timeline: Suspend nodes and
deadlines become windows, StatusCheck nodes http probes) becomes a fault of the type that
chaos/export/mapping.py maps onto that kind, so export then import gives the same faults.
The scenario serves every host name it names, so `chaos run` runs it in the sandbox.
What has no fault type here is refused with file:line, why and the nearest kind that maps.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from chaos.durations import parse_go_duration
from chaos.export.mapping import Unmappable

KINDS = {"NetworkChaos": "networkChaos", "DNSChaos": "dnsChaos", "HTTPChaos": "httpChaos"}
HTTP_ERROR_STATUSES = {500, 502, 503, 504, 520, 521, 522, 523, 524, 525, 526, 403, 429}
RANDOM_RANGE = "198.18.250.0/24"  # DNSChaos random: the sandbox draws from a test-bed range
REGION_LABEL = "region"
_RATE = re.compile(r"^(\d+(?:\.\d+)?)(bit|kbit|mbit|gbit|tbit|bps|kbps|mbps|gbps|tbps)$")
_RATE_BYTES = {"bit": 1 / 8, "kbit": 1e3 / 8, "mbit": 1e6 / 8, "gbit": 1e9 / 8, "tbit": 1e12 / 8,
               "bps": 1, "kbps": 1e3, "mbps": 1e6, "gbps": 1e9, "tbps": 1e12}


class ImportRefused(Exception):
    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


@dataclass
class _Found:
    where: str
    fault: dict
    group: str | None = None


@dataclass
class _Scenario:
    faults: list[_Found] = field(default_factory=list)
    probes: dict[str, list[dict]] = field(default_factory=lambda: {"before": [], "during": [],
                                                                   "after": []})
    refused: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)


def import_documents(paths: list[Path], name: str | None = None) -> dict:
    """The scenario (plain data, validated) the documents in ``paths`` describe."""
    from chaos.scenario.load import SourceMap, _Builder

    out = _Scenario()
    for path in paths:
        text = path.read_text()
        try:
            nodes = list(yaml.compose_all(text))
        except yaml.YAMLError as exc:
            raise ImportRefused([f"{path}: not valid YAML: {exc}"]) from None
        for node in nodes:
            if node is None:
                continue
            source = SourceMap(str(path))
            doc = _Builder(text, source).build(node, ())
            _document(out, doc, source)
    if out.refused:
        raise ImportRefused(out.refused)
    if not out.faults:
        raise ImportRefused([f"{', '.join(map(str, paths))}: no NetworkChaos, DNSChaos or "
                             "HTTPChaos found"])
    return _scenario(out, name or out.names[0] if out.names else name, paths)


def _where(source, path: tuple) -> str:
    return f"{source.file}:{source.position(path)[0]}"


def _document(out: _Scenario, doc, source) -> None:
    if not isinstance(doc, dict) or not isinstance(doc.get("spec"), dict):
        out.refused.append(f"{_where(source, ())}: not a Kubernetes resource with a spec")
        return
    kind, spec = doc.get("kind"), doc["spec"]
    meta = doc.get("metadata") or {}
    title = f"{kind} {meta.get('name', '')}".strip()
    out.names.append(str((meta.get("annotations") or {}).get("chaos-registry/scenario")
                         or meta.get("name") or "imported"))
    if kind in KINDS:
        duration = spec.get("duration")
        window = {"after": 0, "for": _seconds(duration)} if duration else None
        _chaos(out, kind, spec, _where(source, ()), title, window)
    elif kind == "Schedule":
        _schedule(out, spec, _where(source, ()), title, None)
    elif kind == "Workflow":
        _Workflow(out, spec, source).run()
    else:
        out.refused.append(f"{_where(source, ())}: {title}: not a chaos this imports; "
                           "nearest: NetworkChaos, DNSChaos or HTTPChaos")


def _seconds(text) -> float:
    return parse_go_duration(str(text))


def _chaos(out: _Scenario, kind: str, spec: dict, where: str, title: str,
           window: dict | None, flap: dict | None = None, group: str | None = None) -> None:
    try:
        fault = FROM[kind](spec)
    except Unmappable as exc:
        out.refused.append(f"{where}: {title}: no fault type here: {exc.why}; nearest: {exc.nearest}")
        return
    except (KeyError, TypeError, ValueError) as exc:
        out.refused.append(f"{where}: {title}: cannot read its spec ({exc})")
        return
    if window:
        fault["window"] = window
    if flap:
        fault["flap"] = flap
    out.faults.append(_Found(where, fault, group))


def _schedule(out: _Scenario, spec: dict, where: str, title: str, window: dict | None,
              group: str | None = None) -> None:
    kind = spec.get("type")
    every = str(spec.get("schedule", ""))
    inner = spec.get(KINDS.get(str(kind), ""), None)
    if not every.startswith("@every ") or not isinstance(inner, dict) or not inner.get("duration"):
        out.refused.append(f"{where}: {title}: only `@every PERIOD` schedules of a NetworkChaos, "
                           "DNSChaos or HTTPChaos with a duration become a flap; nearest: "
                           "schedule: '@every 30s' with the chaos's duration")
        return
    period, on = _seconds(every.removeprefix("@every ")), _seconds(inner["duration"])
    flap = {"period": f"{period:g}s", "duty": round(min(1.0, on / period), 4)}
    _chaos(out, str(kind), inner, where, title, window, flap, group)


class _Workflow:
    """A Workflow's timeline: the StatusChecks before the first chaos are the `before`
    probes, those after it the `after` probes; chaos in between is placed by its offset."""

    def __init__(self, out: _Scenario, spec: dict, source) -> None:
        self.out, self.source = out, source
        templates = spec.get("templates") or []
        self.index = {t.get("name"): i for i, t in enumerate(templates) if isinstance(t, dict)}
        self.templates = templates
        self.entry = spec.get("entry")

    def run(self) -> None:
        if self.entry not in self.index:
            self.out.refused.append(f"{self.where(self.entry)}: Workflow entry {self.entry!r} "
                                    "names no template")
            return
        top = self.template(self.entry)
        children: list[str] = (top.get("children", []) if top.get("templateType") == "Serial"
                               else [str(self.entry)])
        chaos = [c for c in children if self.template(c).get("templateType") != "StatusCheck"]
        # One node between the checks is the `during` phase (its deadline the phase's length);
        # several run one after the other, each chaos then in a window of its own.
        length = None
        if len(chaos) == 1 and self.template(chaos[0]).get("deadline"):
            length = _seconds(self.template(chaos[0])["deadline"])
        phase, offset = "before", 0.0
        for child in children:
            if child not in chaos:
                self.check(child, phase)
                continue
            offset += self.during(child, offset, length, None)
            phase = "during" if child != chaos[-1] else "after"

    def template(self, name) -> dict:
        return self.templates[self.index[name]] if name in self.index else {}

    def where(self, name) -> str:
        return _where(self.source, ("spec", "templates", self.index[name]) if name in self.index
                      else ("spec", "entry"))

    def check(self, name: str, phase: str) -> None:
        check = self.template(name).get("statusCheck") or {}
        http = check.get("http") or {}
        code = str((http.get("criteria") or {}).get("statusCode", "200"))
        if "url" not in http:
            self.out.refused.append(f"{self.where(name)}: StatusCheck {name}: not an HTTP check")
            return
        low, _, high = code.partition("-")
        status: Any = int(low) if not high else list(range(int(low), int(high) + 1))
        probe = {"name": name, "http": http["url"], "status": status}
        if http.get("method", "GET") != "GET":
            probe["method"] = http["method"]
        self.out.probes[phase].append(probe)

    def during(self, name: str, offset: float, length: float | None, group: str | None) -> float:
        """Place ``name``'s chaos from ``offset``; returns how long the node lasts."""
        t = self.template(name)
        kind = t.get("templateType")
        deadline = _seconds(t["deadline"]) if t.get("deadline") else None
        if kind == "Suspend":
            return deadline or 0.0
        if kind == "StatusCheck":
            self.check(name, "during")
            return 0.0
        if kind == "Serial":
            at = offset
            for child in t.get("children", []):
                at += self.during(child, at, length, group)
            return at - offset
        if kind == "Parallel":
            return max([self.during(child, offset, length, group or name)
                        for child in t.get("children", [])] + [0.0])
        window = None
        lasts = deadline is None or (length is not None and abs(offset + deadline - length) < 1e-3)
        if offset or not lasts:
            window = {"after": f"{offset:g}s"}
            if not lasts:
                window["for"] = f"{deadline:g}s"
        title = f"Workflow template {name}"
        if kind == "Schedule":
            _schedule(self.out, t.get("schedule") or {}, self.where(name), title, window, group)
        elif kind in KINDS:
            _chaos(self.out, kind, t.get(KINDS[kind]) or {}, self.where(name), title, window,
                   group=group)
        else:
            self.out.refused.append(f"{self.where(name)}: {title} ({kind}): not a chaos this "
                                    "imports; nearest: NetworkChaos, DNSChaos or HTTPChaos")
        return deadline or 0.0


# --- one function per kind: a spec to a fault's fields ---------------------------------------

def _region(spec: dict) -> str | None:
    return ((spec.get("selector") or {}).get("labelSelectors") or {}).get(REGION_LABEL)


def network(spec: dict) -> dict:
    if spec.get("target"):
        raise Unmappable("chaos between pods (`target:`) has no sandbox equivalent: the "
                         "sandbox's faults act between clients and servers",
                         "externalTargets (servers outside the selected pods)")
    action, targets, region = spec["action"], list(spec.get("externalTargets") or []), _region(spec)
    if action == "partition":
        if not targets:
            raise Unmappable("a partition without externalTargets cuts pods from each other",
                             "partition with externalTargets (packet-filter drop)")
        if region:
            return {"type": "geo-block", "region": region, "block": targets, "action": "drop"}
        # Dropped silently, as Chaos Mesh's iptables DROP does (a route-blackhole would fail
        # clients at once instead of letting them time out).
        return {"type": "packet-filter", "destinations": targets, "action": "drop"}
    if action == "loss":
        percent = float(spec["loss"]["loss"])
        fault: dict[str, Any] = {"type": "packet-filter", "destinations": targets, "action": "drop"}
        if percent < 100:
            fault["probability"] = round(percent / 100, 4)
        if region:
            fault["region"] = region
        return fault
    if action == "delay":
        slow: dict[str, Any] = {"type": "slow", "destinations": targets,
                                "latency": f"{_seconds(spec['delay']['latency']):g}s"}
        if spec["delay"].get("jitter"):
            slow["jitter"] = f"{_seconds(spec['delay']['jitter']):g}s"
        return slow
    if action == "bandwidth":
        match = _RATE.match(str(spec["bandwidth"]["rate"]).lower())
        if not match:
            raise ValueError(f"bandwidth rate {spec['bandwidth']['rate']!r}")
        rate = max(1, round(float(match[1]) * _RATE_BYTES[match[2]]))
        return {"type": "slow", "destinations": targets, "rate": rate}
    raise Unmappable(f"action {action}: no fault type here duplicates, corrupts or reorders "
                     "packets", "loss (packet-filter drop) or delay (slow)")


def dns(spec: dict) -> dict:
    patterns = list(spec.get("patterns") or ["*"])
    for p in patterns:
        if "?" in p or ("*" in p and p != "*"):
            raise Unmappable(f"pattern {p!r}: the sandbox's DNS server matches exact names, "
                             "`*.suffix` or `*`", "the names listed one by one")
    if spec["action"] == "error":
        return {"type": "dns", "names": patterns, "answer": "servfail"}
    return {"type": "dns", "names": patterns, "answer": "random", "range": RANDOM_RANGE}


def http(spec: dict) -> dict:
    headers = dict(spec.get("request_headers") or {})
    match: dict[str, Any] = {}
    host = headers.pop("Host", None) or headers.pop("host", None)
    agent = headers.pop("User-Agent", None) or headers.pop("user-agent", None)
    for key, value in (("host", host), ("path", spec.get("path")), ("method", spec.get("method"))):
        if value:
            match[key] = value
    where: dict[str, Any] = {"ports": [int(spec.get("port") or 80)]}
    if match:
        where["match"] = match
    replace = spec.get("replace") or {}
    code = replace.get("code")
    answer_headers = {k.lower(): v for k, v in (replace.get("headers") or {}).items()}
    challenge = agent and answer_headers.get("cf-mitigated") == "challenge" and code in (403, 503)
    legacy = (spec.get("target") == "Response" and not spec.get("patch") and not headers
              and not spec.get("code") and not spec.get("response_headers")
              and not (replace.keys() - {"code", "body", "headers"})
              and (challenge or (not agent and (spec.get("abort")
                                                 or code in HTTP_ERROR_STATUSES))))
    if not legacy:  # the content fault types: one action each, as HTTPChaos has them
        wanted = {k: v for k, v in (spec.get("request_headers") or {}).items()
                  if k.lower() != "host"}
        return _content(spec, where, wanted)
    if spec.get("abort"):
        return {"type": "partial", "bytes": 0, "then": "reset", **where}
    if agent:
        if answer_headers.get("cf-mitigated") != "challenge" or code not in (403, 503):
            raise Unmappable("matching a User-Agent is only done by a bot challenge here",
                             "replace.code 403 or 503 with header cf-mitigated: challenge")
        return {"type": "bot-mitigation", "signature": {"user_agent": agent},
                "action": "challenge", "status": code, **where}
    if code is None:
        raise Unmappable("an answer only delayed has no HTTP fault type here",
                         "NetworkChaos delay (slow) or replace.code (http-error)")
    if code not in HTTP_ERROR_STATUSES:
        raise Unmappable(f"status {code}: http-error answers "
                         f"{', '.join(map(str, sorted(HTTP_ERROR_STATUSES)))}",
                         "replace.code 503 (http-error)")
    fault: dict[str, Any] = {"type": "http-error", "status": code}
    body = base64.b64decode(replace.get("body") or "").decode("utf-8", "replace")
    coded = re.fullmatch(r"error code: (\d+)", body)
    if coded:
        fault["body"] = "code"
        if coded[1] != "1010":
            fault["error_code"] = int(coded[1])
    elif not body:
        fault["body"] = "empty"
    answer_headers.pop("content-type", None)
    retry = answer_headers.pop("retry-after", None)
    if retry is not None and str(retry).isdigit():
        fault["retry_after"] = int(retry)
    if answer_headers:
        fault["headers"] = answer_headers
    if spec.get("delay"):
        fault["delay"] = f"{_seconds(spec['delay']):g}s"
    return {**fault, **where}


def _content(spec: dict, where: dict, headers: dict) -> dict:
    """An HTTPChaos that is not an http-error, partial or bot challenge: http-abort,
    http-delay, http-replace or http-patch (docs/http-faults.md, "Chaos Mesh HTTPChaos")."""
    actions = [k for k in ("abort", "delay", "replace", "patch") if spec.get(k)]
    if len(actions) != 1:
        raise Unmappable(f"{' and '.join(actions) or 'no action'}: a fault here does one of "
                         "abort, delay, replace, patch", "one HTTPChaos per action")
    side = "request" if spec.get("target") == "Request" else "response"
    fault: dict[str, Any] = {"target": side, **where}
    if headers:
        fault.setdefault("match", {})["headers"] = {k: str(v) for k, v in headers.items()}
    response_match = {k: v for k, v in (("status", spec.get("code")),
                                        ("headers", spec.get("response_headers"))) if v}
    if response_match:
        if side != "response":
            raise Unmappable("code and response_headers select answers: target Response",
                             "the same HTTPChaos with target: Response")
        fault["response_match"] = response_match
    (action,) = actions
    if action == "abort":
        return {"type": "http-abort", **fault}
    if action == "delay":
        return {"type": "http-delay", "delay": f"{_seconds(spec['delay']):g}s", **fault}
    if action == "replace":
        replace = dict(spec["replace"])
        if "body" in replace:
            replace["body_base64"] = replace.pop("body")
        return {"type": "http-replace", **replace, **fault}
    patch = spec["patch"]
    out: dict[str, Any] = {"type": "http-patch", **fault}
    body = patch.get("body")
    if body:
        if str(body.get("type", "")).upper() != "JSON":
            raise Unmappable(f"patch.body type {body.get('type')!r}: JSON merge patches only",
                             "patch.body with type JSON")
        out["json"] = json.loads(body["value"])
    for key in ("headers", "queries"):
        if patch.get(key):
            out[key] = [list(pair) for pair in patch[key]]
    return out


FROM = {"NetworkChaos": network, "DNSChaos": dns, "HTTPChaos": http}


# --- the scenario ----------------------------------------------------------------------------

def _merge(found: list[_Found]) -> list[dict]:
    """Faults one exported fault became, one chaos per port, are one fault again."""
    out: list[tuple[str | None, str, dict]] = []
    for f in found:
        key = json.dumps({k: v for k, v in f.fault.items() if k != "ports"}, sort_keys=True)
        last = out[-1] if out else None
        if last and f.group and last[0] == f.group and last[1] == key and "ports" in f.fault:
            last[2]["ports"] = sorted(set(last[2]["ports"]) | set(f.fault["ports"]))
        else:
            out.append((f.group, key, dict(f.fault)))
    return [fault for _, _, fault in out]


def _hosts(faults: list[dict], probes: dict) -> list[str]:
    """Host names the scenario must serve so that its faults and probes reach something."""
    names: list[str] = []
    for fault in faults:
        listed = fault.get("destinations") or fault.get("block") or []
        match = fault.get("match") or {}
        if match.get("host"):
            listed = listed + [match["host"]]
        if fault["type"] == "dns":
            listed = listed + [n for n in fault["names"] if "*" not in n]
        names += listed
    for phase in probes.values():
        names += [urlsplit(p["http"]).hostname or "" for p in phase]
    out = []
    for n in names:
        try:
            ipaddress.ip_network(n, strict=False)
        except ValueError:
            if n and n not in out:
                out.append(n)
    return out


def _scenario(found: _Scenario, name: str | None, paths: list[Path]) -> dict:
    from chaos.errors import ScenarioInvalid
    from chaos.export.chaos_mesh import dump, k8s_name
    from chaos.scenario.load import load_text

    faults = _merge(found.faults)
    regions = sorted({f["region"] for f in faults if f.get("region")})
    data: dict[str, Any] = {
        "name": k8s_name(name or "imported"),
        "description": "Imported from Chaos Mesh (" + ", ".join(p.name for p in paths) + "); "
                       "docs/kubernetes.md says what each kind became. The servers are "
                       "stand-ins the sandbox starts for the names the faults and checks use.",
    }
    if regions:
        data["regions"] = {r: f"198.18.{64 + i}.0/24" for i, r in enumerate(regions)}
    hosts = _hosts(faults, found.probes)
    if hosts:
        data["serve"] = [{"name": h} for h in hosts]
    data["faults"] = faults
    expect = {phase: probes for phase, probes in found.probes.items() if probes}
    if expect:
        data["expect"] = expect
    try:
        load_text(dump(data), "<imported>")
    except ScenarioInvalid as exc:  # e.g. a region name the format does not take
        raise ImportRefused([f"{paths[0]}: the imported scenario is not valid: {p.field}: "
                             f"{p.message}" for p in exc.problems]) from None
    return data
