"""The Faults addon's hooks, called directly on mitmproxy test flows: a flow that no rule
matches gets no coroutine and makes no fault addon; one that matches is acted on."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from mitmproxy.test import tflow

from chaos.injectors.http_faults.all import Faults


def faults_with(tmp_path: Path, *rules: dict) -> Faults:
    for rule in rules:
        (tmp_path / f"{rule['id']}.json").write_text(json.dumps(rule))
    faults = Faults()
    faults.rules.configure(str(tmp_path))
    return faults


def flow_to(host: str):
    flow = tflow.tflow(resp=True)
    flow.request.host = host
    flow.request.headers["host"] = host
    return flow


def test_a_flow_no_rule_matches_costs_no_coroutine_and_no_addon(tmp_path):
    faults = faults_with(
        tmp_path,
        {"id": "err", "fault": "http-error", "status": 503, "match": {"host": "nothing.invalid"}},
        {"id": "cut", "fault": "partial", "bytes": 10, "match": {"path": "/never/*"}})
    assert set(faults.rules.by_fault()) == {"http-error", "partial"}  # the rules are loaded
    flow = flow_to("reg.test")
    assert faults.request(flow) is None
    faults.responseheaders(flow)
    assert faults.response(flow) is None
    assert faults.addons == {}
    assert flow.response.status_code == 200  # tflow's own answer, untouched


def test_a_matching_flow_is_acted_on_and_later_hooks_reach_its_addon(tmp_path):
    faults = faults_with(
        tmp_path,
        {"id": "err", "fault": "http-error", "status": 503, "match": {"host": "reg.test"}})
    flow = flow_to("reg.test")
    flow.response = None
    pending = faults.request(flow)
    assert pending is not None
    asyncio.run(pending)
    assert flow.response is not None and flow.response.status_code == 503
    assert list(faults.addons) == ["http-error"]
    pending = faults.response(flow)
    assert pending is not None  # its addon gets the response hook
    asyncio.run(pending)
    other = flow_to("other.test")
    assert faults.request(other) is None  # the addon exists; a non-matching flow still costs nothing
