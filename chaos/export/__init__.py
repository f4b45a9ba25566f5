"""Scenarios in another engine's terms: `chaos export --to chaos-mesh` and `chaos import`.

The fault models are read, never changed: an export is a consumer of a loaded scenario,
like a report. docs/kubernetes.md has the mapping and what is lost each way.
"""
