"""Display links, tokens and cookies: signing, expiry, rotation, tampering, URL shapes."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import itsdangerous.timed
import pytest

from studios.proxy.config import ProxyConfig
from studios.proxy.tokens import DisplayLinks, cookie_value, strip_cookie


def links(keys=("k1",), **kw) -> DisplayLinks:
    return DisplayLinks(ProxyConfig(secret_keys=list(keys), **kw))


def token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


def test_display_url_host_mode():
    url = links(public_url="https://studios.example.com").display_url(12, 7)
    parts = urlsplit(url)
    assert parts.scheme == "https"
    assert parts.netloc == "d-12.studios.example.com"
    assert parts.path == "/_studios/auth"
    assert links(public_url="https://studios.example.com").verify_token(token_of(url)) == (12, 7)


def test_display_url_path_mode_and_hosts():
    ln = links(public_url="http://localhost:8001", mode="path")
    url = ln.display_url(12, 7)
    assert url.startswith("http://localhost:8001/_d/12/_studios/auth?token=")
    assert ln.host_for(12) == "localhost:8001"
    assert ln.prefix_for(12) == "/_d/12"
    assert ln.split_path("/_d/12/lab/tree") == (12, "/lab/tree")
    assert ln.split_path("/_d/12") == (12, "")
    assert ln.split_path("/_d/x/") is None
    assert ln.split_path("/studios") is None


def test_host_for_and_parse():
    ln = links(public_url="http://localhost:8001")
    assert ln.host_for(3) == "d-3.localhost:8001"
    assert ln.deployment_for_host("D-3.LOCALHOST:8001") == 3
    assert ln.deployment_for_host("d-3.localhost:8002") is None
    assert ln.deployment_for_host("d-3.evil.localhost:8001") is None
    assert ln.deployment_for_host("localhost:8001") is None


def test_tampered_token_rejected():
    ln = links()
    token = ln.make_token(1, 7)
    _payload, ts, sig = token.split(".")
    forged = ln.make_token(1, 8).split(".")[0]
    assert ln.verify_token(f"{forged}.{ts}.{sig}") is None
    assert ln.verify_token(token[:-2] + ("AA" if not token.endswith("AA") else "BB")) is None
    assert ln.verify_token("garbage") is None
    assert ln.verify_token("") is None


def test_token_and_cookie_are_not_interchangeable():
    ln = links()
    assert ln.verify_cookie(ln.make_token(1, 7)) is None
    assert ln.verify_token(ln.make_cookie(1, 7)) is None


def test_expired_token_and_cookie(monkeypatch):
    ln = links(token_max_age=60, cookie_max_age=120)
    real = itsdangerous.timed.time.time
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: real() - 3600)
    old_token, old_cookie = ln.make_token(1, 7), ln.make_cookie(1, 7)
    monkeypatch.setattr(itsdangerous.timed.time, "time", real)
    assert ln.verify_token(old_token) is None
    assert ln.verify_cookie(old_cookie) is None
    assert ln.verify_token(ln.make_token(1, 7)) == (1, 7)


def test_cached_cookie_still_expires(monkeypatch):
    ln = links(cookie_max_age=120)
    value = ln.make_cookie(1, 7)
    assert ln.verify_cookie(value) == (1, 7)  # now cached
    import studios.proxy.tokens as tokens

    real = tokens.time.time
    monkeypatch.setattr(tokens.time, "time", lambda: real() + 3600)
    assert ln.verify_cookie(value) is None


def test_key_rotation():
    old = links(keys=["k1"])
    rotated = links(keys=["k2", "k1"])  # newest first, as STUDIOS_SECRET_KEY lists them
    retired = links(keys=["k2"])
    t_old = old.make_token(1, 7)
    c_old = old.make_cookie(1, 7)
    assert rotated.verify_token(t_old) == (1, 7)  # live links survive adding a key
    assert rotated.verify_cookie(c_old) == (1, 7)  # and live sessions too
    t_new = rotated.make_token(1, 7)
    assert retired.verify_token(t_new) == (1, 7)  # signed with the newest key
    assert old.verify_token(t_new) is None
    assert retired.verify_token(t_old) is None  # dropping the old key retires its tokens


def test_set_cookie_attributes():
    host = links(public_url="https://studios.example.com").set_cookie(4, 7)
    assert host.startswith("studios_session=")
    assert "Path=/;" in host and "HttpOnly" in host and "SameSite=Lax" in host
    assert "Secure" in host and "Domain" not in host
    path = links(public_url="http://localhost:8001", mode="path").set_cookie(4, 7)
    assert "Path=/_d/4/;" in path and "Secure" not in path


def test_cookie_header_helpers():
    header = "a=1; studios_session=abc; b=2"
    assert cookie_value(header) == ["abc"]
    assert strip_cookie(header) == "a=1; b=2"
    assert strip_cookie("studios_session=abc") == ""


def test_config_needs_a_key():
    with pytest.raises(ValueError):
        ProxyConfig(secret_keys=[])


def test_config_from_the_service_settings(tmp_path):
    from studios.settings import Settings

    settings = Settings(data_dir=tmp_path, secret_key="new, old", proxy_public_url="https://x.example/",
                        proxy_mode="path", proxy_fallback="127.0.0.1:8000", display_token_seconds=60, display_cookie_seconds=600)
    config = ProxyConfig.from_settings(settings)
    assert list(config.secret_keys) == ["new", "old"]
    assert config.public_url == "https://x.example" and config.secure and config.mode == "path"
    assert config.fallback == ("127.0.0.1", 8000)
    assert (config.token_max_age, config.cookie_max_age) == (60, 600)
    assert ProxyConfig.from_settings(Settings(data_dir=tmp_path, secret_key="k", proxy_fallback=":9")).fallback == ("127.0.0.1", 9)
    with pytest.raises(ValueError, match="host:port"):
        Settings(data_dir=tmp_path, proxy_fallback="127.0.0.1")


def test_the_standalone_proxy_reads_the_service_settings(monkeypatch, tmp_path):
    """`python -m studios.proxy` takes keys, URL, mode, fallback and its port from the same
    STUDIOS_* variables as `studios serve` (newest key first)."""
    from studios.proxy import __main__ as standalone

    seen = {}

    async def fake_serve(args, settings):
        seen["config"], seen["port"] = ProxyConfig.from_settings(settings), args.port

    monkeypatch.setattr(standalone, "serve", fake_serve)
    for name in [n for n in __import__("os").environ if n.startswith("STUDIOS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("STUDIOS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("STUDIOS_SECRET_KEY", "newest,older")
    monkeypatch.setenv("STUDIOS_PORT", "9000")
    monkeypatch.setenv("STUDIOS_PROXY_MODE", "path")
    monkeypatch.setenv("STUDIOS_PROXY_FALLBACK", "127.0.0.1:9000")
    standalone.main(["--memory", "unused.json"])
    config = seen["config"]
    assert seen["port"] == 9001 and config.public_url == "http://localhost:9001"
    assert list(config.secret_keys) == ["newest", "older"] and config.mode == "path" and config.fallback == ("127.0.0.1", 9000)
    signed_by_service = DisplayLinks(ProxyConfig(secret_keys=["newest"])).make_token(1, 7)
    assert DisplayLinks(config).verify_token(signed_by_service) == (1, 7)


class NoSpend:
    """A backend an operator might write for `--backend`, without `spend`."""

    async def target(self, deployment_id):
        return None

    async def can_view(self, user_id, deployment_id):
        return False

    def touch(self, deployment_id):
        pass

    async def wake(self, deployment_id):
        pass


def no_spend():
    return NoSpend()


def test_the_standalone_proxy_refuses_a_backend_that_lacks_a_method():
    import asyncio

    from studios.proxy.__main__ import load_backend

    with pytest.raises(SystemExit, match=r"the backend has no spend \(a ProxyBackend has target, can_view, touch, wake, spend\)"):
        asyncio.run(load_backend(f"{__name__}:no_spend"))
    assert asyncio.run(load_backend("studios.proxy.backend:MemoryBackend")) is not None


def test_the_service_passes_its_proxy_settings(tmp_path):
    from studios.app import proxy_config
    from studios.settings import Settings

    config = proxy_config(Settings(data_dir=tmp_path, secret_key="k", proxy_mode="path", proxy_path_prefix="strip", proxy_auth_attempts_per_minute=5))
    assert config.mode == "path" and config.strip_prefix and config.auth_attempts_per_minute == 5
    default = proxy_config(Settings(data_dir=tmp_path, secret_key="k"))
    assert not default.strip_prefix and default.auth_attempts_per_minute == 30
