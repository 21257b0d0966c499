"""Encryption at rest for credential secrets: Fernet (AES-128-CBC + HMAC) from `cryptography`,
with keys derived (HKDF) from the service's secret keys. The newest key encrypts; every
configured key decrypts, so the secret key can rotate without re-encrypting at once."""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def _derive(secret: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"studios-credentials", info=b"fernet").derive(secret.encode())
    return Fernet(base64.urlsafe_b64encode(key))


class SecretBox:
    def __init__(self, secret_keys: list[str]) -> None:
        self._fernet = MultiFernet([_derive(k) for k in secret_keys])

    def seal(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def reseal(self, token: bytes) -> bytes:
        """The same secret encrypted with the newest key (for dropping an old key later)."""
        try:
            return self._fernet.rotate(token)
        except InvalidToken:
            raise ValueError("the credential cannot be decrypted with the configured secret keys") from None

    def open(self, token: bytes) -> str:
        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken:
            raise ValueError("the credential cannot be decrypted with the configured secret keys") from None
