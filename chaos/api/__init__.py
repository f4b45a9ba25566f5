"""`chaos serve`: a control API over HTTP that speaks Toxiproxy 2.x's protocol (docs/api.md).

- ``toxics``: Toxiproxy's toxic types, their attributes, and the fault rule each becomes.
- ``proxies``: the proxies and their toxics, kept in the project's TCP fault proxy, every
  change journaled.
- ``server``: the HTTP routes, status codes and error bodies, and the server's life (its
  journal, shutdown, signals).
"""
