#!/usr/bin/env bash
# The cache-fallback gate for any CI system: run as root on a Linux runner (Debian 12 or a
# privileged Debian container). Exits non-zero when any expectation of the registry incident
# library fails (with a BASELINE file: when a verdict differs from it); leaves a JUnit report,
# a JSON report and timeline pictures behind.
#
#   bash examples/ci/gate.sh [SCENARIO_DIR [BASELINE]]
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/setup
mkdir -p chaos-report
status=0
baseline=()
[ -n "${2:-}" ] && baseline=(--baseline "$2")
chaos run "${1:-scenarios/registry/}" "${baseline[@]}" \
  --junit chaos-report/junit.xml --json chaos-report/report.json --timeline chaos-report/timeline \
  || status=$?
chaos recover   # belt and braces: a killed job's leftovers never outlive the job
exit "$status"
