"""Object storage for backups: a local folder or S3 (through the amazon provider's S3Hook).

Writes are atomic: an ``ObjectWriter`` makes the object visible only on ``commit()``; ``abort()`` (or an
exception inside ``with storage.open_writer(...)``) leaves nothing behind — no file, no temp file, no
object, no pending multipart upload. By default a commit never replaces an existing object
(``overwrite=True`` to allow it), so a backup can never clobber an older one.

Objects are named by relative POSIX paths (``"wedsync/2026/11/25/base.tar.zst.drbk"``); no empty, ``.``
or ``..`` components and no component starting with a dot (those are the writers' temp files).
Locations: ``file:///abs/path`` and ``s3://bucket/key``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

log = logging.getLogger(__name__)

MiB = 1024 * 1024
S3_PART_SIZE = 16 * MiB
S3_MIN_PART_SIZE = 5 * MiB
S3_MAX_PARTS = 10_000

# storage_class_enum (catalog) -> S3 StorageClass
S3_STORAGE_CLASSES: dict[str, str] = {
    "standard": "STANDARD",
    "infrequent_access": "STANDARD_IA",
    "archive": "GLACIER_IR",
    "deep_archive": "DEEP_ARCHIVE",
}


class StorageError(Exception):
    """A storage operation failed; the message names the location."""


class ObjectExists(StorageError, FileExistsError):
    """Commit refused: an object already exists at that location (and overwrite was not asked for)."""


class ObjectNotFound(StorageError, FileNotFoundError):
    """No object at that location."""


@dataclass(frozen=True)
class StoredObject:
    location: str
    size_bytes: int


@runtime_checkable
class ObjectWriter(Protocol):
    def write(self, data: bytes | bytearray | memoryview, /) -> int: ...

    def commit(self) -> StoredObject: ...

    def abort(self) -> None: ...

    def __enter__(self) -> ObjectWriter: ...

    def __exit__(self, exc_type, exc, tb) -> None: ...


@runtime_checkable
class Storage(Protocol):
    kind: str

    def open_writer(self, relpath: str, *, overwrite: bool = False) -> ObjectWriter: ...

    def open_reader(self, relpath: str) -> BinaryIO: ...

    def exists(self, relpath: str) -> bool: ...

    def size(self, relpath: str) -> int: ...

    def delete(self, relpath: str) -> None: ...

    def list(self, prefix: str = "") -> list[str]: ...

    def location(self, relpath: str) -> str: ...


def clean_relpath(relpath: str) -> str:
    """``relpath`` checked and normalized (no leading/trailing slash); ValueError when unusable."""
    if not isinstance(relpath, str) or not relpath.strip("/"):
        raise ValueError(f"object path must be a non-empty relative path, not {relpath!r}")
    if relpath.startswith("/") or "\\" in relpath or "\x00" in relpath:
        raise ValueError(f"object path must be relative, with '/' separators: {relpath!r}")
    parts = relpath.rstrip("/").split("/")
    for part in parts:
        if part in ("", ".", "..") or part.startswith("."):
            raise ValueError(f"object path {relpath!r} has an empty, '.', '..' or hidden component")
    return "/".join(parts)


class _WriterBase:
    """Context-manager behaviour shared by the writers: abort on an exception, or when left uncommitted."""

    _finished = False

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._finished:
            return
        if exc_type is None:
            log.warning("object writer left without commit(): aborting %s", getattr(self, "location", "?"))
        try:
            self.abort()
        except Exception:
            if exc_type is None:
                raise
            log.exception("abort after a failed write also failed")


# ---------------------------------------------------------------- local folder


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class LocalObjectWriter(_WriterBase):
    """Writes to a hidden temp file next to the target; commit = fsync + link/rename; abort = unlink."""

    def __init__(self, final: Path, *, root: Path, overwrite: bool) -> None:
        self.final = final
        self.location = final.as_uri()
        self._overwrite = overwrite
        self.size_bytes = 0
        self._created_dirs: list[Path] = []
        parent = final.parent
        while parent != root and not parent.exists():
            self._created_dirs.append(parent)
            parent = parent.parent
        final.parent.mkdir(parents=True, exist_ok=True)
        self.temp = final.parent / f".{final.name}.{secrets.token_hex(6)}.tmp"
        fd = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        self._file = open(fd, "wb", buffering=0)  # noqa: SIM115 - closed by commit/abort

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._finished:
            raise StorageError(f"write after commit/abort of {self.location}")
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        total = len(view)
        while view:
            written = self._file.write(view)
            view = view[written:]
        self.size_bytes += total
        return total

    def commit(self) -> StoredObject:
        if self._finished:
            raise StorageError(f"commit after commit/abort of {self.location}")
        try:
            os.fsync(self._file.fileno())
            self._file.close()
            if self._overwrite:
                os.replace(self.temp, self.final)
            else:
                try:
                    os.link(self.temp, self.final)  # atomic, and fails if the target exists
                except FileExistsError:
                    raise ObjectExists(f"an object already exists at {self.location}") from None
                except OSError:  # a file system without hard links
                    if self.final.exists():
                        raise ObjectExists(f"an object already exists at {self.location}") from None
                    os.rename(self.temp, self.final)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.temp)
            _fsync_dir(self.final.parent)
        except BaseException:
            self.abort()
            raise
        self._finished = True
        return StoredObject(location=self.location, size_bytes=self.size_bytes)

    def abort(self) -> None:
        if self._finished:
            return
        self._finished = True
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temp)
        for folder in self._created_dirs:  # deepest first; only if still empty
            try:
                folder.rmdir()
            except OSError:
                break


class LocalStorage:
    """Objects as files under ``root``."""

    kind = "local"

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().absolute()

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def path(self, relpath: str) -> Path:
        return self.root / clean_relpath(relpath)

    def location(self, relpath: str) -> str:
        return self.path(relpath).as_uri()

    def open_writer(self, relpath: str, *, overwrite: bool = False) -> LocalObjectWriter:
        final = self.path(relpath)
        for attempt in range(3):
            try:
                return LocalObjectWriter(final, root=self.root, overwrite=overwrite)
            except FileNotFoundError:  # a concurrent delete pruned the folder in between: try again
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def open_reader(self, relpath: str) -> BinaryIO:
        path = self.path(relpath)
        try:
            return open(path, "rb")  # noqa: SIM115 - the caller closes it
        except FileNotFoundError:
            raise ObjectNotFound(f"no object at {path.as_uri()}") from None

    def exists(self, relpath: str) -> bool:
        return self.path(relpath).is_file()

    def size(self, relpath: str) -> int:
        path = self.path(relpath)
        try:
            return path.stat().st_size
        except FileNotFoundError:
            raise ObjectNotFound(f"no object at {path.as_uri()}") from None

    def delete(self, relpath: str) -> None:
        """Remove the object (no error when it is already gone) and the folders it leaves empty."""
        path = self.path(relpath)
        path.unlink(missing_ok=True)
        parent = path.parent
        while parent != self.root and self.root in parent.parents:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def list(self, prefix: str = "") -> list[str]:
        """Relative paths of the committed objects whose path starts with ``prefix`` (a string prefix,
        as in S3), sorted. Temp files of writers in progress are not listed."""
        if ".." in prefix.split("/") or prefix.startswith("/"):
            raise ValueError(f"list prefix must stay inside the storage root: {prefix!r}")
        start = self.root
        if "/" in prefix:
            start = self.root / prefix.rsplit("/", 1)[0]
        if not start.is_dir():
            return []
        found = []
        for folder, dirs, files in os.walk(start):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            rel_folder = PurePosixPath(Path(folder).relative_to(self.root).as_posix())
            for name in files:
                if name.startswith("."):
                    continue
                rel = (rel_folder / name).as_posix() if str(rel_folder) != "." else name
                if rel.startswith(prefix):
                    found.append(rel)
        return sorted(found)


# ---------------------------------------------------------------- S3


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class S3ObjectWriter(_WriterBase):
    """Buffers parts of ``part_size`` and uploads them (up to ``concurrency`` at a time) as a multipart
    upload, completed on commit; an object smaller than one part is a single put_object at commit."""

    def __init__(
        self,
        client: Any,
        *,
        bucket: str,
        key: str,
        storage_class: str,
        overwrite: bool,
        part_size: int = S3_PART_SIZE,
        concurrency: int = 4,
    ) -> None:
        if part_size < S3_MIN_PART_SIZE:
            raise ValueError(f"S3 parts must be at least {S3_MIN_PART_SIZE} bytes")
        self._client = client
        self.bucket = bucket
        self.key = key
        self.location = f"s3://{bucket}/{key}"
        self._storage_class = storage_class
        self._conditions = {} if overwrite else {"IfNoneMatch": "*"}
        self._part_size = part_size
        self._buffer = bytearray()
        self.size_bytes = 0
        self.upload_id: str | None = None
        self._parts: dict[int, str] = {}
        self._futures: list[Future] = []
        self._next_part = 1
        self._slots = threading.BoundedSemaphore(max(1, concurrency))
        self._pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="s3-part")

    def _current_part_size(self) -> int:
        # Parts grow every 1000 parts so that 10,000 parts reach far beyond 160 GiB.
        return self._part_size * 2 ** ((self._next_part - 1) // 1000)

    def _raise_failed_parts(self) -> None:
        for future in self._futures:
            if future.done() and future.exception() is not None:
                raise StorageError(f"uploading a part of {self.location} failed: {future.exception()}") from (
                    future.exception()
                )

    def _upload(self, number: int, body: bytearray) -> None:
        try:
            response = self._client.upload_part(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=body
            )
            self._parts[number] = response["ETag"]
        finally:
            self._slots.release()

    def _submit_part(self, body: bytearray) -> None:
        if self.upload_id is None:
            response = self._client.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, StorageClass=self._storage_class
            )
            self.upload_id = response["UploadId"]
        number = self._next_part
        if number > S3_MAX_PARTS:
            raise StorageError(f"{self.location}: more than {S3_MAX_PARTS} parts")
        self._next_part += 1
        self._slots.acquire()  # bounds the memory held by parts in flight
        self._futures.append(self._pool.submit(self._upload, number, body))

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._finished:
            raise StorageError(f"write after commit/abort of {self.location}")
        self._raise_failed_parts()
        self._buffer += data
        size = len(data) if isinstance(data, bytes | bytearray) else memoryview(data).nbytes
        self.size_bytes += size
        if len(self._buffer) >= self._current_part_size():
            body, self._buffer = self._buffer, bytearray()
            self._submit_part(body)
        return size

    def commit(self) -> StoredObject:
        if self._finished:
            raise StorageError(f"commit after commit/abort of {self.location}")
        try:
            if self.upload_id is None:
                self._client.put_object(
                    Bucket=self.bucket,
                    Key=self.key,
                    Body=self._buffer,
                    StorageClass=self._storage_class,
                    **self._conditions,
                )
            else:
                if self._buffer:
                    body, self._buffer = self._buffer, bytearray()
                    self._submit_part(body)
                for future in self._futures:
                    future.result()
                parts = [{"PartNumber": n, "ETag": self._parts[n]} for n in sorted(self._parts)]
                self._client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=self.upload_id,
                    MultipartUpload={"Parts": parts},
                    **self._conditions,
                )
        except BaseException as exc:
            self.abort()
            if _error_code(exc) == "PreconditionFailed":
                raise ObjectExists(f"an object already exists at {self.location}") from None
            raise
        self._finished = True
        self._pool.shutdown(wait=True)
        self._buffer = bytearray()
        return StoredObject(location=self.location, size_bytes=self.size_bytes)

    def abort(self) -> None:
        """Drop the buffered data, wait for parts in flight, abort the multipart upload. Idempotent."""
        if self._finished:
            return
        self._finished = True
        self._buffer = bytearray()
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self.upload_id is not None:
            try:
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
            except Exception as exc:
                if _error_code(exc) != "NoSuchUpload":
                    raise StorageError(f"aborting the multipart upload of {self.location} failed: {exc}") from exc


class S3Storage:
    """Objects under ``s3://bucket/prefix/`` through the amazon provider's S3Hook (connection
    ``aws_conn_id``; its ``endpoint_url`` extra points it at an S3-compatible server). The client is made
    on first use, so building an S3Storage does no I/O.

    With ``client_settings`` (boto3 client arguments, see `static_client_settings`) the client is made by
    boto3 alone: the WAL commands, which run outside Airflow for every segment, need no Airflow import.
    """

    kind = "s3"

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "",
        aws_conn_id: str = "aws_default",
        storage_class: str = "standard",
        part_size: int = S3_PART_SIZE,
        upload_concurrency: int = 4,
        client_settings: Mapping[str, Any] | None = None,
    ) -> None:
        if not bucket:
            raise ValueError("S3 storage needs a bucket")
        if storage_class not in S3_STORAGE_CLASSES:
            raise ValueError(
                f"unknown storage class {storage_class!r}; expected one of {', '.join(S3_STORAGE_CLASSES)}"
            )
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.aws_conn_id = aws_conn_id
        self.storage_class = storage_class
        self.s3_storage_class = S3_STORAGE_CLASSES[storage_class]
        self.part_size = part_size
        self.upload_concurrency = upload_concurrency
        self.client_settings = dict(client_settings) if client_settings is not None else None
        self._client: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3Storage(bucket={self.bucket!r}, prefix={self.prefix!r}, aws_conn_id={self.aws_conn_id!r})"

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                if self.client_settings is not None:
                    import boto3

                    self._client = boto3.session.Session().client("s3", **self.client_settings)
                else:
                    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

                    self._client = S3Hook(aws_conn_id=self.aws_conn_id).get_conn()
            return self._client

    def static_client_settings(self) -> dict[str, Any] | None:
        """The boto3 client arguments the S3Hook makes of ``aws_conn_id`` (keys, region, endpoint, TLS
        verification), for code that runs outside Airflow; they hold the secret key. None when the connection
        needs more than that (a role to assume, a profile, temporary credentials, botocore options): such
        code must go through the hook. Runs where Airflow's connections are readable."""
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        conn = S3Hook(aws_conn_id=self.aws_conn_id).conn_config
        if (conn.role_arn or conn.profile_name or conn.aws_session_token or conn.botocore_config
                or set(conn.extra_config) - {"endpoint_url", "region_name", "verify"}):
            return None
        settings = {"aws_access_key_id": conn.aws_access_key_id, "aws_secret_access_key": conn.aws_secret_access_key,
                    "region_name": conn.region_name, "endpoint_url": conn.endpoint_url, "verify": conn.verify}
        return {name: value for name, value in settings.items() if value is not None}

    def key(self, relpath: str) -> str:
        relpath = clean_relpath(relpath)
        return f"{self.prefix}/{relpath}" if self.prefix else relpath

    def location(self, relpath: str) -> str:
        return f"s3://{self.bucket}/{self.key(relpath)}"

    def open_writer(self, relpath: str, *, overwrite: bool = False) -> S3ObjectWriter:
        return S3ObjectWriter(
            self.client,
            bucket=self.bucket,
            key=self.key(relpath),
            storage_class=self.s3_storage_class,
            overwrite=overwrite,
            part_size=self.part_size,
            concurrency=self.upload_concurrency,
        )

    def open_reader(self, relpath: str) -> BinaryIO:
        key = self.key(relpath)
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except Exception as exc:
            code = _error_code(exc)
            if code in ("NoSuchKey", "404"):
                raise ObjectNotFound(f"no object at s3://{self.bucket}/{key}") from None
            if code == "InvalidObjectState":
                raise StorageError(
                    f"s3://{self.bucket}/{key} is in an archive storage class: restore it (S3 RestoreObject) "
                    "before reading"
                ) from exc
            raise

    def _head(self, relpath: str) -> dict | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self.key(relpath))
        except Exception as exc:
            if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def exists(self, relpath: str) -> bool:
        return self._head(relpath) is not None

    def size(self, relpath: str) -> int:
        head = self._head(relpath)
        if head is None:
            raise ObjectNotFound(f"no object at {self.location(relpath)}")
        return int(head["ContentLength"])

    def stored_storage_class(self, relpath: str) -> str:
        """The StorageClass S3 reports for the object (S3 omits it for STANDARD)."""
        head = self._head(relpath)
        if head is None:
            raise ObjectNotFound(f"no object at {self.location(relpath)}")
        return head.get("StorageClass") or "STANDARD"

    def delete(self, relpath: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.key(relpath))

    def list(self, prefix: str = "") -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        found = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=base + prefix):
            for item in page.get("Contents", []):
                found.append(item["Key"][len(base) :])
        return sorted(found)

    def pending_uploads(self) -> list[str]:
        """Keys (relative) of multipart uploads started and neither completed nor aborted under this prefix."""
        base = f"{self.prefix}/" if self.prefix else ""
        found = []
        paginator = self.client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=base):
            for item in page.get("Uploads", []):
                found.append(item["Key"][len(base) :])
        return sorted(found)


# ---------------------------------------------------------------- configuration and locations


def storage_from_config(config: Mapping[str, Any]) -> LocalStorage | S3Storage:
    """A storage from ``{"kind": "local", "path": ...}`` or ``{"kind": "s3", "bucket": ..., "prefix": ...,
    "aws_conn_id": ..., "storage_class": ..., "client": {...}}`` (all but the bucket optional; ``client``:
    see `S3Storage.static_client_settings`)."""
    kind = config.get("kind", "local")
    if kind == "local":
        if not config.get("path"):
            raise ValueError("local storage needs a 'path'")
        return LocalStorage(Path(str(config["path"])))
    if kind == "s3":
        if not config.get("bucket"):
            raise ValueError("s3 storage needs a 'bucket'")
        return S3Storage(
            bucket=str(config["bucket"]),
            prefix=str(config.get("prefix") or ""),
            aws_conn_id=str(config.get("aws_conn_id") or "aws_default"),
            storage_class=str(config.get("storage_class") or "standard"),
            client_settings=config.get("client"),
        )
    raise ValueError(f"unknown storage kind {kind!r}; expected 'local' or 's3'")


def storage_for_location(location: str, *, aws_conn_id: str = "aws_default") -> tuple[LocalStorage | S3Storage, str]:
    """(storage, relpath) that reach the object at ``location`` (``file:///...`` or ``s3://bucket/key``),
    e.g. to read or delete a backup recorded in the catalog."""
    parts = urlsplit(location)
    if parts.scheme == "file":
        path = Path(unquote(parts.path))
        return LocalStorage(path.parent), path.name
    if parts.scheme == "s3":
        key = unquote(parts.path.lstrip("/"))
        if not parts.netloc or not key:
            raise ValueError(f"not an s3://bucket/key location: {location!r}")
        return S3Storage(bucket=parts.netloc, aws_conn_id=aws_conn_id), key
    raise ValueError(f"unknown location scheme in {location!r}; expected file:// or s3://")


# ---------------------------------------------------------------- progress


class Progress:
    """Counts bytes and logs ``<label>: <MiB> MiB, <MB/s> MB/s`` every ``interval`` seconds (and once at
    ``finish()``). MB/s are 10^6 bytes per second. ``clock`` is injectable for tests."""

    def __init__(
        self,
        label: str,
        *,
        interval: float = 10.0,
        logger: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.interval = interval
        self.bytes = 0
        self._log = logger or log
        self._clock = clock
        self.started = clock()
        self._last = self.started

    @property
    def elapsed(self) -> float:
        return self._clock() - self.started

    def rate_mb_s(self) -> float:
        elapsed = self.elapsed
        return self.bytes / elapsed / 1e6 if elapsed > 0 else 0.0

    def line(self) -> str:
        return f"{self.label}: {self.bytes / MiB:.1f} MiB in {self.elapsed:.1f} s, {self.rate_mb_s():.1f} MB/s"

    def update(self, nbytes: int) -> None:
        self.bytes += nbytes
        now = self._clock()
        if now - self._last >= self.interval:
            self._last = now
            self._log.info("%s", self.line())

    def finish(self) -> str:
        """Log and return the final line."""
        text = self.line()
        self._log.info("%s", text)
        return text


class ProgressSink:
    """A sink that counts what passes through it into a Progress, then writes it to ``sink``."""

    def __init__(self, sink: Any, progress: Progress) -> None:
        self._sink = sink
        self.progress = progress

    def write(self, data: bytes | bytearray | memoryview) -> int:
        size = memoryview(data).nbytes
        written = self._sink.write(data)
        count = size if written is None else written
        self.progress.update(count)
        return count
