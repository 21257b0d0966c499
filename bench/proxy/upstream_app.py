"""The keep-alive upstream for bench/proxy_bench.py: a bare ASGI app (uvicorn, httptools,
uvloop) answering every request with a small fixed body, so the proxy is what's measured."""

BODY = b"<!doctype html><title>bench</title><p>" + b"x" * 200 + b"</p>\n"
START = {"type": "http.response.start", "status": 200,
         "headers": [(b"content-type", b"text/html"), (b"content-length", str(len(BODY)).encode())]}
END = {"type": "http.response.body", "body": BODY}


async def app(scope, receive, send):
    if scope["type"] == "http":
        await send(START)
        await send(END)
