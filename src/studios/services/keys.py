"""API keys: minting, keyed hashing, and turning an `Authorization` header into a caller.

Keys are shown once and stored as HMAC-SHA256(secret, key): a leaked database does not leak
keys, and checking one costs a hash and an indexed lookup (no slow KDF per request, since the
keys are random 256-bit values, not passwords).

Rotation (`STUDIOS_SECRET_KEY=new,old`): new keys are hashed with the first secret; a presented
key is looked up under every configured secret's hash (one indexed `IN` query), and a key found
under an older secret is re-hashed with the first one after that use (`flush_seen`), so keys in use move to the
new secret and the old one can later be dropped (`docs/security.md`)."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from studios.db.models import utcnow
from studios.errors import Unauthorized
from studios.services.events import Event, emit
from studios.store import users as user_store

KEY_PREFIX = "stu_"
ONLINE_WINDOW = timedelta(minutes=5)
SEEN_WRITE_EVERY = timedelta(minutes=1)


@dataclasses.dataclass(frozen=True)
class Caller:
    id: int
    username: str
    name: str
    is_admin: bool


class KeyHasher:
    """Hashes keys with the service's secrets (newest first: the first hashes new keys, every
    one is tried on lookup), and remembers verified ones for `VERIFIED_SECONDS` so a busy client
    costs one HMAC per secret per request instead of a database lookup. Revocations made by this
    process drop the entry at once (`forget`); one made by another process (`studios keys
    revoke`) takes effect within `VERIFIED_SECONDS`."""

    VERIFIED_SECONDS = 5.0

    def __init__(self, secret_keys: Sequence[str]) -> None:
        if isinstance(secret_keys, str) or not secret_keys:
            raise ValueError("KeyHasher needs a list of secrets, newest first")
        self._secrets = [secret.encode() for secret in secret_keys]
        self._verified: dict[str, tuple[float, Caller, tuple[str, ...]]] = {}
        """key hash -> (expires, caller, every hash of that key): a key is cached under its hash
        under each secret, and forgetting any one of them forgets all."""
        self.seen: dict[int, datetime] = {}
        """Users seen since the last `flush_seen` (written in the background, never by a request)."""
        self.rehash: dict[int, str] = {}
        """Keys found under an older secret: key id -> hash under the newest (written by `flush_seen`)."""

    def hash(self, key: str) -> str:
        """The hash a new key is stored under (the newest secret's)."""
        return hmac.new(self._secrets[0], key.encode(), hashlib.sha256).hexdigest()

    def candidates(self, key: str) -> list[str]:
        """The key's hash under every configured secret, newest first (what a lookup tries)."""
        encoded = key.encode()
        return [hmac.new(secret, encoded, hashlib.sha256).hexdigest() for secret in self._secrets]

    def cached(self, key_hash: str) -> Caller | None:
        entry = self._verified.get(key_hash)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def remember(self, key_hashes: Sequence[str], caller: Caller) -> None:
        if len(self._verified) > 10_000:
            self._verified.clear()
        aliases = tuple(key_hashes)
        entry = (time.monotonic() + self.VERIFIED_SECONDS, caller, aliases)
        for key_hash in aliases:
            self._verified[key_hash] = entry

    def forget_all(self) -> None:
        self._verified.clear()

    def forget(self, key_hashes: list[str]) -> None:
        for key_hash in key_hashes:
            entry = self._verified.pop(key_hash, None)
            for alias in entry[2] if entry else ():
                self._verified.pop(alias, None)


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def mint(session: Session, hasher: KeyHasher, user_id: int, name: str, deployment_id: int | None = None) -> str:
    """Create a key for the user and return it in plain text (the only time it exists so)."""
    key = new_key()
    user_store.add_key(session, user_id, name, hasher.hash(key), key[: len(KEY_PREFIX) + 4], deployment_id)
    return key


def revoke(session: Session, hasher: KeyHasher, key_id: int) -> bool:
    """Revoke a key by id (committed); this process refuses it from the next request on."""
    key = user_store.revoke_key(session, key_id)
    if key is None:
        return False
    emit(session, Event("keys", data={"hashes": [key.key_hash], "users": [key.user_id]}))  # other servers forget it too
    session.commit()
    hasher.forget([key.key_hash])
    return True


def key_from_header(header: str | None) -> str:
    """The key in `Basic base64(key:)` or `Bearer key`; Unauthorized when absent or malformed."""
    if not header:
        raise Unauthorized("An API key is required: send it as HTTP Basic user name or as a Bearer token.")
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized("The Basic credentials are not valid base64.") from None
        user, _, password = decoded.partition(":")
        key = user or password
        if key:
            return key
    raise Unauthorized("The Authorization header must be 'Basic <base64 key:>' or 'Bearer <key>'.")


def cached_caller(hasher: KeyHasher, header: str | None) -> Caller | None:
    """The caller, if this header's key was verified moments ago (no database needed)."""
    try:
        hashes = hasher.candidates(key_from_header(header))
    except Unauthorized:
        return None
    for key_hash in hashes:
        known = hasher.cached(key_hash)
        if known is not None:
            return known
    return None


def authenticate(session: Session, hasher: KeyHasher, header: str | None) -> Caller:
    """The caller whose key the header carries; Unauthorized if none is valid."""
    return authenticate_hash(session, hasher, hasher.candidates(key_from_header(header)))


def authenticate_hash(session: Session, hasher: KeyHasher, key_hashes: Sequence[str]) -> Caller:
    """The caller of a key given by its keyed hashes (newest secret's first; a web session holds
    the newest one instead of the key); Unauthorized when the key is unknown or revoked. Reads
    only: "last seen" times, and a key found under an older secret (to be stored under the
    newest), are noted in `hasher` and written later by `flush_seen`."""
    hashes = list(key_hashes)
    for key_hash in hashes:
        known = hasher.cached(key_hash)
        if known is not None:
            return known
    found = user_store.caller_by_key_hashes(session, hashes)
    if found is None or not any(hmac.compare_digest(found[1].key_hash, h) for h in hashes):
        raise Unauthorized("The API key is not valid (unknown or revoked).")
    user, api_key = found
    caller = Caller(user.id, user.username, user.name, user.is_admin)
    if not hmac.compare_digest(api_key.key_hash, hashes[0]):  # stored under an older secret
        hasher.rehash[api_key.id] = hashes[0]
    now = utcnow()
    if user.last_seen_at is None or now - user.last_seen_at > SEEN_WRITE_EVERY:
        hasher.seen[user.id] = now
    hasher.remember([*hashes, api_key.key_hash], caller)  # a revocation names the stored hash, old or new
    return caller


def flush_seen(session: Session, hasher: KeyHasher) -> None:
    """Write the "last seen" times and re-hashed keys noted since the last call (in the
    caller's transaction)."""
    seen, hasher.seen = hasher.seen, {}
    rehash, hasher.rehash = hasher.rehash, {}
    for key_id, key_hash in rehash.items():
        user_store.set_key_hash(session, key_id, key_hash)
    for user_id, when in seen.items():
        user_store.mark_seen(session, user_id, when)


def is_online(last_seen_at: datetime | None) -> bool:
    """Seen (made an authenticated request) within the last few minutes."""
    return last_seen_at is not None and utcnow() - last_seen_at < ONLINE_WINDOW


@functools.lru_cache(maxsize=4096)
def initials(name: str) -> str:
    parts = [p for p in name.replace("_", " ").replace(".", " ").split() if p]
    return "".join(p[0] for p in parts[:3]).upper() or name[:1].upper()
