"""Secrets at rest: webhook signing secrets are stored as Fernet tokens.

The Fernet key comes from ``MEMO_SECRET_KEY``. For the embedded default (no ``DATABASE_URL``) a
key is generated once into ``$MEMO_HOME/secret.key`` with mode 0600 when the variable is unset;
with an external database the variable is required, because a key beside one replica would not
decrypt what another replica wrote. Keys and secrets are never logged.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from memo_pipeline.config import Settings

KEY_FILE = "secret.key"


class SecretKeyError(RuntimeError):
    """The encryption key is missing or unusable; the message says what to set."""


def _fernet(key: bytes, where: str) -> Fernet:
    try:
        return Fernet(key)
    except ValueError:
        raise SecretKeyError(
            f"{where} is not a Fernet key (32 url-safe base64-encoded bytes); generate one "
            "with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'"
        ) from None


def _key_file(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise SecretKeyError(
                f"{path} is readable by other users (mode {mode:o}); run chmod 600 {path}"
            ) from None
        return path.read_bytes().strip()
    key = Fernet.generate_key()
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


class SecretBox:
    """Encrypts and decrypts short secrets with the deployment's Fernet key."""

    def __init__(self, key: bytes, where: str = "MEMO_SECRET_KEY") -> None:
        self._fernet = _fernet(key, where)

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        env = os.environ.get("MEMO_SECRET_KEY", "").strip()
        if env:
            return cls(env.encode(), "MEMO_SECRET_KEY")
        if settings.database_url:
            raise SecretKeyError(
                "MEMO_SECRET_KEY is not set; it is required with DATABASE_URL (every replica "
                "must encrypt and decrypt webhook secrets with the same key)"
            )
        path = settings.memo_home / KEY_FILE
        return cls(_key_file(path), str(path))

    def encrypt(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise SecretKeyError(
                "a stored webhook secret cannot be decrypted with the current MEMO_SECRET_KEY; "
                "set the key it was written with, or set the webhook again"
            ) from None
