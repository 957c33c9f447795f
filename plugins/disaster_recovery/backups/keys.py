"""Backup encryption keys: 32-byte AES-256 keys taken from Airflow connections (or a secrets backend
behind them). Only the key id ever reaches the catalog, a log or an error message; never the key.

Connection shape: password = base64 (standard or URL-safe, padding optional) of 32 random bytes;
login = the key id (optional; else ``sha256:`` + the first 16 hex digits of sha256(key)).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass, field

KEY_BYTES = 32


class KeyConfigError(ValueError):
    """A key is missing or malformed. The message names where it came from, never the key material."""


@dataclass(frozen=True)
class EncryptionKey:
    """An AES-256 key and the id under which backups record it. ``repr`` never shows the key."""

    key_id: str
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key, bytes | bytearray) or len(self.key) != KEY_BYTES:
            raise KeyConfigError(f"key '{self.key_id}' must be {KEY_BYTES} bytes")
        if isinstance(self.key, bytearray):
            object.__setattr__(self, "key", bytes(self.key))
        if not self.key_id or len(self.key_id.encode("utf-8")) > 255:
            raise KeyConfigError("a key id must be 1 to 255 bytes of UTF-8")

    def __str__(self) -> str:
        return self.key_id


def derived_key_id(key: bytes) -> str:
    """The default key id of ``key``: ``sha256:`` + the first 16 hex digits of its SHA-256."""
    return "sha256:" + hashlib.sha256(key).hexdigest()[:16]


def key_from_base64(text: str, *, key_id: str | None = None, source: str = "key") -> EncryptionKey:
    """An EncryptionKey from base64 text (standard or URL-safe alphabet, padding optional).

    ``source`` names where the text came from, for the error message (which never quotes the text).
    """
    cleaned = "".join((text or "").split()).replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        raw = base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        raise KeyConfigError(f"{source}: the key is not valid base64") from None
    if len(raw) != KEY_BYTES:
        raise KeyConfigError(f"{source}: the key must be base64 of {KEY_BYTES} bytes, it decodes to {len(raw)} bytes")
    return EncryptionKey(key_id=key_id or derived_key_id(raw), key=raw)


def key_from_connection(conn_id: str) -> EncryptionKey:
    """The key held by Airflow connection ``conn_id`` (password = base64 key, login = optional key id)."""
    from airflow.sdk import BaseHook

    try:
        connection = BaseHook.get_connection(conn_id)
    except Exception as exc:  # AirflowNotFoundException and friends; their text names only the conn id
        raise KeyConfigError(f"encryption key connection '{conn_id}' is not defined ({type(exc).__name__})") from None
    password = connection.password or ""
    if not password.strip():
        raise KeyConfigError(
            f"encryption key connection '{conn_id}' has no password (expected base64 of a 32-byte key)"
        )
    login = (connection.login or "").strip() or None
    return key_from_base64(password, key_id=login, source=f"encryption key connection '{conn_id}'")


def generate_key() -> str:
    """A new random 32-byte key as URL-safe base64 (put it in the connection's password)."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode("ascii")
