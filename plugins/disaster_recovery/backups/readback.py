"""Reading a stored backup back, end to end, in one pass:

    storage reader ─> SHA-256 of the object ─> SealedReader (AES-256-GCM, chunk by chunk) ─> zstd
        ─> the consumer (tar -x into a data directory, or a dump file for pg_restore)

A tampered byte anywhere is caught: by GCM in the chunk it hits (or the header checks), and by the
SHA-256 of the whole object, compared with the inventory's ``backup_checksum`` before the end of data is
reported. Those, and a zstd stream that does not decode, raise `BackupIntegrityError` (the backup is
``corrupted``). A wrong key raises ``WrongKey`` (the backup is fine; the key is not).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import zstandard

from disaster_recovery.backups.crypto import BackupCorrupted, SealedReader, WrongKey
from disaster_recovery.backups.inventory import BackupRecord
from disaster_recovery.backups.keys import EncryptionKey
from disaster_recovery.backups.storage import (
    ObjectNotFound,
    Progress,
    storage_for_location,
    storage_from_config,
)

log = logging.getLogger(__name__)
READ_BYTES = 1024 * 1024

__all__ = [
    "BackupIntegrityError",
    "ReadbackResult",
    "WrongKey",
    "backup_storage",
    "check_key",
    "is_compressed",
    "read_backup",
]


class BackupIntegrityError(RuntimeError):
    """The stored object is not what was written: checksum, authentication, or decompression failed."""

    def __init__(self, message: str, *, check: str) -> None:
        super().__init__(message)
        self.check = check  # sha256 | decrypt | decompress | archive | manifest | missing


@dataclass(frozen=True)
class ReadbackResult:
    stored_bytes: int
    sha256: str
    sealed_bytes: int
    content_bytes: int  # decompressed: the tar or dump as the producer made it
    duration_seconds: float


def backup_storage(record: BackupRecord):
    """(storage, relpath) of a backup's object: from its metadata, else from its location."""
    meta = record.metadata
    if meta.get("storage") and meta.get("object_path"):
        return storage_from_config(meta["storage"]), meta["object_path"]
    return storage_for_location(record.backup_location)


def is_compressed(record: BackupRecord) -> bool:
    return bool(record.compression_type) and record.compression_type.startswith("zstd")


def check_key(record: BackupRecord, key: EncryptionKey) -> None:
    """Raise WrongKey unless ``key`` opens this backup (reads only the object's header)."""
    storage, relpath = backup_storage(record)
    reader = storage.open_reader(relpath)
    try:
        SealedReader(reader, key=key)
    except BackupCorrupted as exc:
        raise BackupIntegrityError(f"{record.describe()}: {exc}", check="decrypt") from exc
    finally:
        with contextlib.suppress(Exception):
            reader.close()


def read_backup(
    *,
    record: BackupRecord,
    key: EncryptionKey,
    write: Callable[[bytes], object],
    decompress: bool = True,
    logger: logging.Logger | None = None,
) -> ReadbackResult:
    """Stream the backup's content (decrypted, and decompressed unless ``decompress`` is False: then the
    consumer decompresses) into ``write``; see the module docstring."""
    logger = logger or log
    started = time.monotonic()
    storage, relpath = backup_storage(record)
    try:
        reader = storage.open_reader(relpath)
    except ObjectNotFound as exc:
        raise BackupIntegrityError(f"{record.describe()}: the stored object is missing: {exc}", check="missing") from exc
    progress = Progress(f"read back {record.backup_name}", interval=5.0, logger=logger)
    try:
        sealed = SealedReader(reader, key=key, expected_sha256=record.backup_checksum, hash_ciphertext=True)
        decompressor = ZstdFrames() if decompress and is_compressed(record) else None
        buffer = bytearray(READ_BYTES)
        view = memoryview(buffer)
        content = 0
        while count := sealed.readinto(buffer):
            data = view[:count] if decompressor is None else _decompress(decompressor, view[:count], record)
            if data:
                write(data)
                content += len(data)
                progress.update(len(data))
        if decompressor is not None and not decompressor.at_frame_end:
            raise BackupIntegrityError(f"{record.describe()}: the zstd stream ends early", check="decompress")
    except BackupCorrupted as exc:
        check = "sha256" if "checksum mismatch" in str(exc) else "decrypt"
        raise BackupIntegrityError(f"{record.describe()} is corrupted: {exc}", check=check) from exc
    finally:
        with contextlib.suppress(Exception):
            reader.close()
    progress.finish()
    return ReadbackResult(
        stored_bytes=sealed.ciphertext_bytes,
        sha256=sealed.sha256_hex or "",
        sealed_bytes=sealed.plaintext_bytes,
        content_bytes=content,
        duration_seconds=time.monotonic() - started,
    )


class ZstdFrames:
    """zstd decoding of one or more concatenated frames that knows whether the data ended on a frame
    boundary (zstandard's stream reader silently accepts a truncated last frame)."""

    def __init__(self) -> None:
        self._new()
        self.at_frame_end = True

    def _new(self) -> None:
        self._dobj = zstandard.ZstdDecompressor().decompressobj()

    def decompress(self, data) -> bytes:
        parts = []
        while len(data):
            parts.append(self._dobj.decompress(data))
            self.at_frame_end = self._dobj.eof
            if not self._dobj.eof:
                break
            data = self._dobj.unused_data
            self._new()
        return parts[0] if len(parts) == 1 else b"".join(parts)


def _decompress(decompressor: ZstdFrames, data: memoryview, record: BackupRecord) -> bytes:
    try:
        return decompressor.decompress(data)
    except zstandard.ZstdError as exc:
        raise BackupIntegrityError(f"{record.describe()}: zstd cannot decode the content: {exc}",
                                   check="decompress") from exc
