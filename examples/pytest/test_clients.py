"""An example suite using the chaos pytest plugin (installed with the package).

Run it as root: `pytest examples/pytest`. The naive client's test FAILS on purpose: that is
the bug the flaky edge exposes. The retrying client's test passes.
"""

import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent  # where client.py is, wherever pytest runs from


@pytest.fixture
def flaky_cdn(chaos_sandbox, http_faults):
    chaos_sandbox.serve("cdn.test", body="blob\n")
    http_faults.error("cdn.test", status=503, probability=0.3)  # about one request in three
    return chaos_sandbox


def fetch_20(sandbox, function: str) -> dict:
    """Run the client 20 times inside the sandbox; how many fetches succeeded."""
    code = (f"import json, sys; sys.path.insert(0, '{HERE}'); import client\n"
            f"ok = 0\n"
            f"for _ in range(20):\n"
            f"    try:\n"
            f"        ok += client.{function}('http://cdn.test/blob') == b'blob\\n'\n"
            f"    except Exception:\n"
            f"        pass\n"
            f"print(json.dumps({{'ok': ok}}))\n")
    exit_code, out, err = sandbox.run(f"{sys.executable} -c \"{code}\"", timeout=60)
    assert exit_code == 0, err
    return json.loads(out)


def test_retrying_client_survives_a_flaky_edge(flaky_cdn):
    assert fetch_20(flaky_cdn, "fetch_with_retries")["ok"] == 20


def test_naive_client_survives_a_flaky_edge(flaky_cdn):
    # Fails: about a third of the naive fetches get the 503 (all 20 pass with p = 0.08 %).
    assert fetch_20(flaky_cdn, "fetch")["ok"] == 20
