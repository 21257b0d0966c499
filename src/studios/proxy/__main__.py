"""Run the proxy as its own process: `python -m studios.proxy --backend pkg.module:factory`.

For scale the proxy can run apart from `studios serve` (several processes behind a TCP load
balancer, or one per core with `--reuse-port`). It reads the service's own settings (the
`STUDIOS_*` variables of the README's configuration table: the same secret keys, public URL,
mode, fallback, token and cookie lifetimes; `--host` and `--port` default to `STUDIOS_HOST` and
the proxy port) and needs a backend: `--backend` names a callable returning a `ProxyBackend`, or
`--memory FILE` loads a fixed `MemoryBackend` from JSON (demos, tests and benchmarks):

    {"deployments": [{"deploymentId": 1, "studioId": 1, "state": "running",
                      "address": ["127.0.0.1", 9000], "viewers": [7]}]}
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import json
import socket
import sys

from studios.settings import Settings

from .backend import MemoryBackend, ProxyBackend, Target
from .config import ProxyConfig
from .server import ProxyServer


def memory_backend(path: str) -> MemoryBackend:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    backend = MemoryBackend()
    for d in data.get("deployments", []):
        address = tuple(d["address"]) if d.get("address") else None
        backend.put(
            Target(d["deploymentId"], d.get("studioId", 0), d.get("state", "running"),
                   d.get("stateMessage", ""), address),
            d.get("viewers", []),
        )
    return backend


async def load_backend(spec: str) -> ProxyBackend:
    """The backend `module:callable` returns; it must have every method of `ProxyBackend`
    (a missing one would otherwise fail at the first request that needs it)."""
    module, _, name = spec.partition(":")
    backend = getattr(importlib.import_module(module), name or "backend")()
    if inspect.isawaitable(backend):
        backend = await backend
    needed = [name for name, value in vars(ProxyBackend).items() if callable(value) and not name.startswith("_")]
    missing = [name for name in needed if not callable(getattr(backend, name, None))]
    if missing:
        raise SystemExit(f"--backend {spec}: the backend has no {', '.join(missing)} "
                         f"(a ProxyBackend has {', '.join(needed)})")
    return backend


async def serve(args: argparse.Namespace, settings: Settings) -> None:
    config = ProxyConfig.from_settings(settings)
    backend = memory_backend(args.memory) if args.memory else await load_backend(args.backend)
    proxy = ProxyServer(config, backend)
    if args.fd is not None:
        sock = socket.socket(fileno=args.fd)
        address = await proxy.start(sock=sock)
    elif args.reuse_port:
        sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((args.host, args.port))
        sock.listen(1024)
        address = await proxy.start(sock=sock)
    else:
        address = await proxy.start(args.host, args.port)
    print(f"studios proxy listening on {address[0]}:{address[1]} ({config.mode} mode, "
          f"public {config.public_url})", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await proxy.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m studios.proxy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    settings = Settings()
    parser.add_argument("--host", default=settings.host, help="default: STUDIOS_HOST (%(default)s)")
    parser.add_argument("--port", type=int, default=settings.effective_proxy_port,
                        help="default: STUDIOS_PROXY_PORT, else STUDIOS_PORT + 1 (%(default)s)")
    parser.add_argument("--fd", type=int, help="serve on this already listening socket")
    parser.add_argument("--reuse-port", action="store_true",
                        help="SO_REUSEPORT, to run one process per core on the same port")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--backend", help="module:callable returning a ProxyBackend")
    source.add_argument("--memory", help="JSON file of deployments for a MemoryBackend")
    args = parser.parse_args(argv)
    try:
        import uvloop
        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - uvloop is installed with uvicorn[standard]
        runner = asyncio.Runner()
    with runner:
        try:
            runner.run(serve(args, settings))
        except KeyboardInterrupt:
            sys.exit(0)


if __name__ == "__main__":
    main()
