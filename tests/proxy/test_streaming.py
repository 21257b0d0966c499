"""100 MB up and down through the proxy running as its own process (`python -m studios.proxy`),
whose memory must not grow by anything like the body size: bodies are streamed, not held."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import anyio
import httpx
import pytest

from studios.proxy.config import ProxyConfig
from studios.proxy.tokens import DisplayLinks

from .apps import UpstreamApp
from .conftest import listening_socket, serve_upstream

pytestmark = pytest.mark.anyio

SIZE = 100 * 1024 * 1024
MB = 1024 * 1024


def memory_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(field)


async def test_100mb_upload_and_download_stream_through(tmp_path):
    async with serve_upstream(UpstreamApp()) as upstream:
        sock = listening_socket()
        port = sock.getsockname()[1]
        public = f"http://localhost:{port}"
        (tmp_path / "backend.json").write_text(json.dumps({"deployments": [
            {"deploymentId": 5, "studioId": 1, "state": "running", "address": list(upstream),
             "viewers": [7]}]}))
        env = os.environ | {"STUDIOS_SECRET_KEY": "stream-key", "STUDIOS_PROXY_PUBLIC_URL": public,
                            "STUDIOS_DATA_DIR": str(tmp_path / "data")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "studios.proxy", "--fd", str(sock.fileno()),
            "--memory", str(tmp_path / "backend.json"),
            pass_fds=[sock.fileno()], env=env, stdout=asyncio.subprocess.DEVNULL)
        sock.close()
        links = DisplayLinks(ProxyConfig(secret_keys=["stream-key"], public_url=public))
        headers = {"Host": links.host_for(5), "Cookie": f"studios_session={links.make_cookie(5, 7)}"}
        base = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(timeout=60) as client:
                with anyio.fail_after(120):
                    r = await client.get(base + "/warm", headers=headers)  # the child is serving
                    assert r.status_code == 200
                    rss_before = memory_kb(proc.pid, "VmRSS")

                    async def body():
                        chunk = b"u" * MB
                        for _ in range(SIZE // MB):
                            yield chunk

                    r = await client.post(base + "/upload", headers=headers, content=body())
                    assert r.status_code == 200 and int(r.text) == SIZE

                    received = 0
                    async with client.stream("GET", base + f"/download?n={SIZE}", headers=headers) as r:
                        assert r.status_code == 200
                        async for piece in r.aiter_raw():
                            received += len(piece)
                    assert received == SIZE
            peak = memory_kb(proc.pid, "VmHWM")
            growth_mb = (peak - rss_before) / 1024
            print(f"proxy RSS: {rss_before} kB before, peak {peak} kB after ({growth_mb:.1f} MB growth)")
            assert growth_mb < 20, f"proxy RSS grew by {growth_mb:.1f} MB for 100 MB bodies"
        finally:
            proc.terminate()
            await proc.wait()
