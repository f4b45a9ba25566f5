"""The registry lab: an offline Docker-Hub-like upstream (token auth, CDN redirects), a
pull-through cache, a client dockerd and skopeo, each in network namespaces.

    lab = lab_up(journal, run_dir)      # ... then journal.rollback() tears it all down

Heavy imports (cryptography, docker, yaml) happen inside the functions that need them.
"""

from __future__ import annotations

from chaos.lab.lab import Lab, lab_up

__all__ = ["Lab", "lab_up"]
