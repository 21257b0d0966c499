"""JupyterHub 6.1.1 configuration for the anchor of `bench/api_bench.py`.

Read by `jupyterhub -f bench/anchors/jupyterhub_config.py`, run in a temporary directory by the
bench, which passes everything that varies through environment variables:

    BENCH_JH_DIR        the temporary directory (database, cookie secret, pid files)
    BENCH_JH_HUB_PORT   the port the Hub (and its REST API) listens on, on 127.0.0.1
    BENCH_JH_PORT       the public (proxy) port; nothing listens there, see NullProxy
    BENCH_JH_TOKEN      the API token of the admin service "bench"
    BENCH_JH_USERS      how many users in all (default 21: "admin" and user01..user20)

The Hub is otherwise as it runs by default (its request log at INFO included). Only the proxy
is replaced: configurable-http-proxy forwards every public request to the Hub, while the bench
measures the Hub's REST API on the Hub's own port, so the proxy would be an idle Node process.
`NullProxy` keeps JupyterHub's route table in memory instead, so no npm install is needed.
"""

import os

from jupyterhub.proxy import Proxy

c = get_config()  # noqa: F821 (injected by traitlets)


class NullProxy(Proxy):
    """A proxy that only remembers routes; the Hub is reached directly on hub_port."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._routes = {}

    async def start(self):
        pass

    async def stop(self):
        pass

    async def add_route(self, routespec, target, data):
        routespec = self.validate_routespec(routespec)
        self._routes[routespec] = {"routespec": routespec, "target": target, "data": data}

    async def delete_route(self, routespec):
        self._routes.pop(self.validate_routespec(routespec), None)

    async def get_all_routes(self):
        return dict(self._routes)


workdir = os.environ["BENCH_JH_DIR"]
n_users = int(os.environ.get("BENCH_JH_USERS", "21"))

c.JupyterHub.proxy_class = NullProxy
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = int(os.environ["BENCH_JH_PORT"])
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(os.environ["BENCH_JH_HUB_PORT"])
c.JupyterHub.db_url = f"sqlite:///{os.path.join(workdir, 'jupyterhub.sqlite')}"
c.JupyterHub.cookie_secret_file = os.path.join(workdir, "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = os.path.join(workdir, "jupyterhub.pid")
c.JupyterHub.cleanup_servers = True

c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.admin_users = {"admin"}
c.Authenticator.allowed_users = {f"user{i:02d}" for i in range(1, n_users)}

# The admin service whose config-file token bootstraps the bench (6.x: roles, not admin=True).
c.JupyterHub.services = [{"name": "bench", "api_token": os.environ["BENCH_JH_TOKEN"]}]
c.JupyterHub.load_roles = [{"name": "admin", "services": ["bench"]}]
