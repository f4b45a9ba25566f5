"""Two clients of an artifact server: one gives up at the first error, one retries.

The example suite (test_clients.py) shows the kind of bug chaos catches: with a flaky edge
(503 for about one request in three) the naive client fails, the retrying one does not.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request


def fetch(url: str, timeout: float = 5.0) -> bytes:
    """Naive: any error is fatal."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def fetch_with_retries(url: str, attempts: int = 10, backoff: float = 0.02) -> bytes:
    """Retry 5xx answers and connection errors, with a short exponential backoff."""
    for attempt in range(attempts):
        try:
            return fetch(url)
        except urllib.error.HTTPError as exc:
            if exc.code < 500 or attempt == attempts - 1:
                raise
        except OSError:
            if attempt == attempts - 1:
                raise
        time.sleep(backoff * 2 ** attempt)
    raise AssertionError("unreachable")
