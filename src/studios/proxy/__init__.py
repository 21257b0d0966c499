"""Display-URL tokens and the reverse proxy that serves deployments' apps to their viewers.

What the service uses:

- `DisplayLinks(config).display_url(deployment_id, user_id)` and `.host_for(deployment_id)`
  for a deployment's `displayUrl` and `host`; `.prefix_for(deployment_id)` is the value of the
  app's `STUDIOS_BASE_PATH` environment variable.
- `ProxyServer(config, backend)`: `await start(host, port)` in `studios serve`'s lifespan,
  `await close()` at shutdown; `python -m studios.proxy` runs it as its own process.
- `ProxyBackend` / `Target`: the interface the service implements (over the database).

See docs/proxy.md.
"""

from .backend import MemoryBackend, ProxyBackend, Target
from .config import ProxyConfig
from .server import ProxyServer
from .tokens import DisplayLinks

__all__ = ["DisplayLinks", "MemoryBackend", "ProxyBackend", "ProxyConfig", "ProxyServer", "Target"]
