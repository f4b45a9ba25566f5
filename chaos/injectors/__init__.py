"""Injectors: each owns one mechanism that changes the system (hosts file, routes, ...).

``UNDO`` maps a journal record's kind to the function that undoes it. Recovery imports the
module only when a journal holds that kind, so ``chaos --help`` stays light.
"""

from __future__ import annotations

import importlib

UNDO = {
    "process": "chaos.processes:undo",
    "path": "chaos.sandbox.files:undo",
    "netns": "chaos.sandbox.netns:undo",
    "netns-handle": "chaos.injectors.netns_handle:undo",
    "hosts-block": "chaos.injectors.hosts_file:undo",
    "route": "chaos.injectors.routes:undo",
    "http-rule": "chaos.injectors.http_proxy:undo_rule",
    "tcp-toxic": "chaos.injectors.tcp_proxy:undo_toxic",
    "tcp-listener": "chaos.injectors.tcp_proxy:undo_listener",
    "lab-netns": "chaos.lab.netns:undo",
    "lab-path": "chaos.lab.paths:undo",
    "dns-rule": "chaos.injectors.dns_rules:undo",
    "iptables": "chaos.injectors.iptables:undo",
    "sysctl": "chaos.injectors.client_profile:undo",
    "connections": "chaos.injectors.connections:undo",
    "ip-rule": "chaos.injectors.routes:undo_rule",
    "host-link": "chaos.lab.host_stack:undo_link",
    "docker-container": "chaos.lab.host_stack:undo_container",
}


def undo_function(kind: str):
    try:
        module, _, name = UNDO[kind].partition(":")
    except KeyError:
        raise KeyError(f"no undo function for journal records of kind {kind!r}") from None
    return getattr(importlib.import_module(module), name)
