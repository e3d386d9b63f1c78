"""The keys of the token store: passphrases to Fernet keys, encryption and decryption.

Secrets are kept as one Fernet token per row, encrypted with a :class:`MultiFernet` built
from the configured keys (newest first), so an old key keeps decrypting while a rotation
re-encrypts everything with the newest. Keys are derived from any passphrase with scrypt,
so an operator can use whatever string their secret store holds.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from connections.errors import SecretKeyError

_KDF_SALT = b"deskwire/connections/token-store/v1"


@lru_cache(maxsize=32)
def _derive(passphrase: str) -> bytes:
    kdf = Scrypt(salt=_KDF_SALT, length=32, n=2**14, r=8, p=1)
    return base64.urlsafe_b64encode(kdf.derive(passphrase.encode("utf-8")))


class KeyRing:
    """Encrypts with the first key, decrypts with any. Built from passphrases, newest first.

    :meth:`decrypt_cached` keeps what it decrypted, keyed by the ciphertext: a credential
    row read at every step is decrypted once per process, and a changed row (a refresh, a
    reconnect: new ciphertext) is decrypted afresh. The cache belongs to this ring, so a
    ring built from other keys (a rotation, a reload) starts empty.
    """

    CACHE_SIZE = 256  # rows; far more than a deployment's connections and users

    def __init__(self, keys: Sequence[str]) -> None:
        cleaned = [key for key in keys if key]
        if not cleaned:
            raise SecretKeyError("at least one secret key is needed to encrypt stored tokens")
        self._multi = MultiFernet([Fernet(_derive(key)) for key in cleaned])
        self._plain: dict[str, Mapping[str, Any]] = {}
        self._plain_lock = threading.Lock()

    def __repr__(self) -> str:
        return "KeyRing(<redacted>)"

    def encrypt(self, data: Mapping[str, Any]) -> str:
        """Encrypt a JSON-able mapping."""
        return self._multi.encrypt(json.dumps(dict(data)).encode("utf-8")).decode("ascii")

    def decrypt(self, token: str, *, what: str) -> dict[str, Any]:
        """Decrypt; ``what`` names the owner in the error if no key fits."""
        try:
            plain = self._multi.decrypt(token.encode("ascii"))
        except InvalidToken:
            raise SecretKeyError(
                f"the stored credentials of {what} cannot be decrypted with any configured "
                "secret key; keep the old key in DESKWIRE_SECRET_KEY (after the new one) "
                "until `deskwire connections rotate-key` has run"
            ) from None
        value = json.loads(plain)
        return dict(value) if isinstance(value, dict) else {}

    def decrypt_cached(self, token: str, *, what: str) -> Mapping[str, Any]:
        """Like :meth:`decrypt`, once per ciphertext; the result is shared: do not change it."""
        found = self._plain.get(token)
        if found is None:
            found = self.decrypt(token, what=what)
            with self._plain_lock:
                if len(self._plain) >= self.CACHE_SIZE:
                    self._plain.clear()  # rows churned (refreshes): start over
                self._plain[token] = found
        return found

    def forget(self, token: str | None) -> None:
        """Drop what was decrypted of ``token`` (replaced: no need to keep it in memory)."""
        if token:
            with self._plain_lock:
                self._plain.pop(token, None)

    def rotate(self, token: str) -> str:
        """Re-encrypt with the newest key."""
        return self._multi.rotate(token.encode("ascii")).decode("ascii")
