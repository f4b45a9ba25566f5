"""nginx as the lab's registry cache (`lab: {cache: nginx}`): a caching reverse proxy of Hub's
registry API and blobs, set up the way teams run registry mirrors with it.

- ``proxy_cache`` with ``proxy_cache_use_stale error timeout ... http_5xx``: what it has
  stored it keeps serving while Hub fails; manifests and the ``/v2/`` challenge are fresh
  for a minute (tags move), blobs for 30 days, keyed by digest (content-addressed: one copy
  whatever the repository). Manifests are keyed by path alone, as in most such set-ups:
  with ``Accept`` in the key, what skopeo warmed would be a miss for dockerd.
- Tokens go through the mirror: nginx cannot fetch Hub tokens itself, so the client does
  the token dance, but with the mirror: every 401 names ``https://<cache>/token`` as its
  realm and ``/token`` is proxied to auth.docker.io (cached for a minute per query and
  credentials, stale on failure). A node then needs only its mirror, as with distribution.
  nginx forwards the client's ``Authorization`` to Hub. The ``GET /v2/`` challenge is
  cached, so it still answers when Hub does not; no other 401 is: the key has no
  ``Authorization`` in it, so a 401 stored for a client that asked without a token (as
  containerd does first, for any manifest it finds nothing cached for) would also answer
  its retry with the token, and the mirror would refuse every pull it does not hold.
- The query is not in the keys: containerd adds ``?ns=docker.io`` to every mirror URL,
  and its manifests and blobs are the same as any other client's.
- Hub's ``307`` to the CDN is followed inside nginx (``error_page 307 = @cdn``), so the
  blob is fetched, stored and served by the cache; the client never sees the CDN.
- Hub's and the CDN's names are ``upstream`` blocks: nginx resolves them once, when it
  starts (through the namespace's hosts file or the run's DNS server), and never again: a
  DNS fault that starts later does not reach it. That is nginx's behaviour without a
  ``resolver``, kept on purpose.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from chaos.journal import Journal
from chaos.lab.ca import KeyPair
from chaos.lab.registry import Registry
from chaos.lab.topology import Service

NGINX_BIN = "nginx"

_CONFIG = """\
daemon off;
master_process on;
user root;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/cache.log info;
events {{ worker_connections 1024; }}
http {{
  access_log {work}/cache.access.log combined;
  client_body_temp_path {work}/tmp/body;
  proxy_temp_path {work}/tmp/proxy;
  fastcgi_temp_path {work}/tmp/fastcgi;
  uwsgi_temp_path {work}/tmp/uwsgi;
  scgi_temp_path {work}/tmp/scgi;
  client_max_body_size 0;
  proxy_cache_path {storage} levels=1:2 keys_zone=registry:10m max_size=4g inactive=30d
                   use_temp_path=off;
  map $uri $blob_digest {{ "~/blobs/(?<d>sha256:[0-9a-f]{{64}})$" $d; default $uri; }}
  map $status $challenge {{
    401 'Bearer realm="https://{host}/token",service="{token_service}"';
    default "";
  }}
  upstream {registry_host} {{ server {registry_host}:{registry_port}; keepalive 16; }}
  upstream {auth_host} {{ server {auth_host}:{auth_port}; keepalive 16; }}
  upstream {cdn_host} {{ server {cdn_host}:{cdn_port}; keepalive 16; }}
  server {{
    listen {address}:{port} ssl;{listen6}
    server_name {host};
    ssl_certificate {cert};
    ssl_certificate_key {key};
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_ssl_trusted_certificate {ca};
    proxy_ssl_verify on;
    proxy_ssl_server_name on;
    proxy_connect_timeout 5s;
    proxy_read_timeout 30s;
    proxy_send_timeout 30s;
    proxy_cache registry;
    proxy_cache_lock on;
    proxy_cache_use_stale error timeout invalid_header updating http_500 http_502 http_503 http_504;
    proxy_intercept_errors on;
    proxy_hide_header WWW-Authenticate;
    add_header WWW-Authenticate $challenge always;
    location = /token {{
      proxy_pass https://{auth_host};
      proxy_cache_key "$uri?$args|$http_authorization";
      proxy_cache_valid 200 1m;
    }}
    location = /v2/ {{
      proxy_pass https://{registry_host};
      proxy_cache_key $uri;
      proxy_cache_valid 200 401 1m;
    }}
    location /v2/ {{
      proxy_pass https://{registry_host};
      proxy_cache_key $uri;
      proxy_cache_valid 200 1m;
      error_page 307 = @cdn;
    }}
    location ~ "^/v2/.+/blobs/sha256:[0-9a-f]{{64}}$" {{
      proxy_pass https://{registry_host};
      proxy_cache_key $blob_digest;
      proxy_cache_valid 200 30d;
      error_page 307 = @cdn;
    }}
    location @cdn {{
      set $location $upstream_http_location;
      proxy_pass $location;
      proxy_set_header Authorization "";
      proxy_cache_key $blob_digest;
      proxy_cache_valid 200 30d;
    }}
  }}
}}
"""


def nginx_config(service: Service, tls: KeyPair, storage: Path, workdir: Path, *, ca_file: Path,
                 registry: Service, auth: Service, cdn: Service, token_service: str,
                 address6: str | None = None) -> str:
    """nginx.conf for a cache of ``registry`` (tokens from ``auth``, blobs redirected to ``cdn``)."""
    return _CONFIG.format(work=workdir, storage=storage, address=service.address,
                          port=service.port, host=service.host, cert=tls.cert, key=tls.key,
                          ca=ca_file, registry_host=registry.host, registry_port=registry.port,
                          auth_host=auth.host, auth_port=auth.port, cdn_host=cdn.host,
                          cdn_port=cdn.port, token_service=token_service,
                          listen6=f"\n    listen [{address6}]:{service.port} ssl;" if address6 else "")


def spawn_nginx_cache(journal: Journal, service: Service, tls: KeyPair, workdir: Path, *,
                      ca_file: Path, registry: Service, auth: Service, cdn: Service,
                      token_service: str, address6: str | None = None) -> Registry:
    """Write the config and start nginx in the cache's namespace (journaled); its readiness
    is ``registry.wait_registry`` like any registry's."""
    from chaos.processes import spawn

    storage = workdir / "storage"
    for d in (storage, *(workdir / "tmp" / t for t in ("body", "proxy", "fastcgi", "uwsgi", "scgi"))):
        d.mkdir(parents=True, exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(nginx_config(service, tls, storage, workdir, ca_file=ca_file,
                                 registry=registry, auth=auth, cdn=cdn, token_service=token_service,
                                 address6=address6))
    access_log, app_log = workdir / "cache.access.log", workdir / "cache.log"
    access_log.touch()
    with open(app_log, "ab") as err:
        # -e: nginx opens its default error log before it reads the config; keep that here too
        proc, entry = spawn(journal, [NGINX_BIN, "-c", str(conf), "-e", str(app_log)],
                            netns=service.netns, what=f"lab cache nginx {service.host}",
                            stdin=subprocess.DEVNULL, stdout=err, stderr=err)
    return Registry("cache", service, proc, conf, storage, access_log, app_log, entry, journal)
