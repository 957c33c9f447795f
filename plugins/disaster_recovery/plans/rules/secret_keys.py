"""Secrets never appear in a plan: spotting keys and URLs that would carry one."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

_SECRET_WORDS = (
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "secret",
    "token",
    "apikey",
    "privatekey",
    "accesskey",
    "signingkey",
    "sessionkey",
    "encryptionkey",
    "credential",
    "authorization",
    "bearer",
    "cookie",
)


def looks_like_secret_key(key: str) -> bool:
    """True for keys such as ``password``, ``api_key``, ``aws_secret_access_key``, ``Auth-Token``."""
    norm = re.sub(r"[^a-z0-9]", "", key.lower())
    return any(word in norm for word in _SECRET_WORDS)


def secret_key_message(key: str, conn_fields: Iterable[str] = ()) -> str:
    fields = sorted(conn_fields)
    where = f" such as {', '.join(repr(f) for f in fields)}" if fields else ""
    return (
        f"key {key!r} looks like a secret; secrets never go in a plan: store them in an "
        f"Airflow connection and name its id in a connection field{where}"
    )


def find_secret_keys(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Paths of secret-looking keys anywhere inside free-form data (payload templates)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and looks_like_secret_key(key):
                yield (*path, key)
            else:
                yield from find_secret_keys(item, (*path, str(key)))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from find_secret_keys(item, (*path, index))


def url_has_credentials(url: str) -> bool:
    """True when a URL embeds a password (``https://user:pw@host``)."""
    try:
        return urlsplit(url).password is not None
    except ValueError:
        return False
