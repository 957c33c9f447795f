"""The sealed backup format: authenticated, streaming, chunked AES-256-GCM.

Layout (all integers big-endian)::

    header  magic b"DRBK" | version u8 (=1) | key_id_len u16 | key_id (UTF-8)
            | nonce_prefix (8 random bytes) | chunk_size u32
            | key_check (16 bytes: HMAC-SHA256(key, "DRBK key check v1" | nonce_prefix | key_id)[:16])
            | header_check (8 bytes: SHA-256 of everything before it)[:8]
    chunk*  length u32 (= len(ciphertext + tag)) | ciphertext | tag (16 bytes)

Chunk ``i`` is sealed with nonce = nonce_prefix || i (u32) and AAD = SHA-256(header) || i (u64) ||
final flag (u8). Every chunk but the last holds exactly ``chunk_size`` plaintext bytes; the last one
(flag 1) holds fewer, possibly none, so there is exactly one final chunk. Hence:

- a flipped byte anywhere fails: in the header (header check, key check, or every chunk's AAD), in a
  length field (framing rules or the tag), in ciphertext or tag (the tag);
- truncation fails (the last chunk present was not sealed as final, or a read comes up short), and so
  does anything appended after the final chunk;
- reordered chunks, and chunks spliced in from another backup (other nonce prefix, other header
  digest), fail to authenticate;
- a wrong key is told apart from corruption: the key id in the header, then the key check value (which
  also makes the format key-committing, which GCM alone is not).

The writer hashes everything it writes (SHA-256 of the stored object, i.e. of the ciphertext: cheaper
than hashing the plaintext and checkable without the key). Reads and writes go through one reusable
buffer each (``encrypt_into``/``decrypt_into``, memoryviews) so the only copies are the unavoidable
ones into and out of the caller's buffers.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import struct
from collections.abc import Iterator
from typing import BinaryIO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from disaster_recovery.backups.keys import EncryptionKey

MAGIC = b"DRBK"
FORMAT_VERSION = 1
DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024
MAX_CHUNK_SIZE = 256 * 1024 * 1024
TAG_BYTES = 16
NONCE_PREFIX_BYTES = 8
KEY_CHECK_BYTES = 16
HEADER_CHECK_BYTES = 8
MAX_CHUNKS = 2**32

_FIXED = struct.Struct(">4sBH")  # magic, version, key id length
_TAIL = struct.Struct(">8sI")  # nonce prefix, chunk size
_LEN = struct.Struct(">I")
_AAD_TAIL = struct.Struct(">QB")
_KEY_CHECK_LABEL = b"DRBK key check v1"


class SealError(Exception):
    """Base class of the errors reading a sealed object."""


class WrongKey(SealError):
    """The object was sealed with another key than the one given."""


class BackupCorrupted(SealError):
    """The object is damaged or truncated. ``chunk_index`` is None for the header."""

    def __init__(self, message: str, *, chunk_index: int | None = None, offset: int = 0) -> None:
        super().__init__(message)
        self.chunk_index = chunk_index
        self.offset = offset


class Sink(Protocol):
    def write(self, data: bytes | memoryview, /) -> int | None: ...


def _key_check(key: EncryptionKey, nonce_prefix: bytes) -> bytes:
    message = _KEY_CHECK_LABEL + nonce_prefix + key.key_id.encode("utf-8")
    return hmac.new(key.key, message, hashlib.sha256).digest()[:KEY_CHECK_BYTES]


def _aad(header_digest: bytes, index: int, *, final: bool) -> bytes:
    return header_digest + _AAD_TAIL.pack(index, 1 if final else 0)


def _write_all(sink: Sink, view: memoryview) -> None:
    """Write all of ``view``; sinks may return a short count (raw files, pipes) or None (all written)."""
    while view:
        written = sink.write(view)
        if written is None or written >= len(view):
            return
        view = view[written:]


def _as_bytes_view(data) -> memoryview:
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


class SealingWriter:
    """Seals what is written to it into ``sink`` (anything with ``write(bytes)`` that consumes the data
    before returning, e.g. a file or a storage ObjectWriter).

    ``close()`` writes the final chunk; it does not close the sink. Used as a context manager, it closes
    on success and leaves the object unfinished (hence unreadable) on an exception.

    ``plaintext_bytes``, ``ciphertext_bytes`` (everything written to the sink, header included) and
    ``sha256_hex`` (of those same bytes) are the figures for the catalog.
    """

    def __init__(self, sink: Sink, *, key: EncryptionKey, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be between 1 and {MAX_CHUNK_SIZE}, not {chunk_size}")
        self._sink = sink
        self._aes = AESGCM(key.key)
        self._chunk_size = chunk_size
        self._nonce_prefix = os.urandom(NONCE_PREFIX_BYTES)
        self._hash = hashlib.sha256()
        self._index = 0
        self._closed = False
        self.plaintext_bytes = 0
        self.ciphertext_bytes = 0
        self.key_id = key.key_id

        key_id = key.key_id.encode("utf-8")
        header = (
            _FIXED.pack(MAGIC, FORMAT_VERSION, len(key_id))
            + key_id
            + _TAIL.pack(self._nonce_prefix, chunk_size)
            + _key_check(key, self._nonce_prefix)
        )
        header += hashlib.sha256(header).digest()[:HEADER_CHECK_BYTES]
        self._header_digest = hashlib.sha256(header).digest()
        # One output buffer: length field + ciphertext + tag of a full chunk.
        self._out = memoryview(bytearray(_LEN.size + chunk_size + TAG_BYTES))
        self._pending = memoryview(bytearray(chunk_size))
        self._fill = 0
        self._emit(memoryview(header))

    @property
    def sha256_hex(self) -> str:
        return self._hash.hexdigest()

    @property
    def chunk_size(self) -> int:
        return self._chunk_size

    def _emit(self, view: memoryview) -> None:
        self._hash.update(view)
        _write_all(self._sink, view)
        self.ciphertext_bytes += len(view)

    def _seal(self, plain: memoryview, *, final: bool) -> None:
        index = self._index
        if index >= MAX_CHUNKS:
            raise ValueError("too many chunks for one sealed object: use a larger chunk size")
        size = len(plain) + TAG_BYTES
        out = self._out[: _LEN.size + size]
        _LEN.pack_into(out, 0, size)
        nonce = self._nonce_prefix + index.to_bytes(4, "big")
        self._aes.encrypt_into(nonce, plain, _aad(self._header_digest, index, final=final), out[_LEN.size :])
        self._index = index + 1
        self.plaintext_bytes += len(plain)
        self._emit(out)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._closed:
            raise ValueError("write to a closed SealingWriter")
        view = _as_bytes_view(data)
        total = len(view)
        chunk = self._chunk_size
        if self._fill:
            take = min(chunk - self._fill, len(view))
            self._pending[self._fill : self._fill + take] = view[:take]
            self._fill += take
            view = view[take:]
            if self._fill < chunk:
                return total
            self._seal(self._pending, final=False)
            self._fill = 0
        # Whole chunks straight from the caller's buffer, no copy.
        while len(view) >= chunk:
            self._seal(view[:chunk], final=False)
            view = view[chunk:]
        if view:
            self._pending[: len(view)] = view
            self._fill = len(view)
        return total

    def close(self) -> None:
        """Write the final chunk (holding the buffered rest, possibly empty). Idempotent."""
        if self._closed:
            return
        self._seal(self._pending[: self._fill], final=True)
        self._fill = 0
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> SealingWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()


def _read_into(source: BinaryIO, view: memoryview) -> int:
    """Fill ``view`` from ``source`` as far as it goes; the count is short only at end of data."""
    readinto = getattr(source, "readinto", None)
    got = 0
    size = len(view)
    while got < size:
        if readinto is not None:
            n = readinto(view[got:])
            if n is None:  # non-blocking source with nothing ready: not supported
                raise BlockingIOError("sealed objects need a blocking source")
        else:
            data = source.read(size - got)
            n = len(data)
            view[got : got + n] = data
        if not n:
            break
        got += n
    return got


class _Decoder:
    """Parses the header and hands out authenticated plaintext chunks, one at a time."""

    def __init__(
        self, source: BinaryIO, *, key: EncryptionKey, expected_sha256: str | None, hash_ciphertext: bool
    ) -> None:
        self._source = source
        self._hash = hashlib.sha256() if (hash_ciphertext or expected_sha256) else None
        self._expected = expected_sha256.lower() if expected_sha256 else None
        self._offset = 0  # bytes consumed from the source
        self._index = 0
        self._done = False
        self.plaintext_bytes = 0

        fixed = self._read_header_part(_FIXED.size)
        magic, version, key_id_len = _FIXED.unpack(fixed)
        if magic != MAGIC:
            raise BackupCorrupted("not a sealed backup (bad magic at byte offset 0)", offset=0)
        if version != FORMAT_VERSION:
            raise BackupCorrupted(f"unsupported sealed format version {version} (header byte offset 4)", offset=4)
        rest = self._read_header_part(key_id_len + _TAIL.size + KEY_CHECK_BYTES + HEADER_CHECK_BYTES)
        header = fixed + rest
        body, check = header[:-HEADER_CHECK_BYTES], header[-HEADER_CHECK_BYTES:]
        if not hmac.compare_digest(hashlib.sha256(body).digest()[:HEADER_CHECK_BYTES], check):
            raise BackupCorrupted("sealed object header is corrupted (header check failed)", offset=0)
        key_id_bytes = rest[:key_id_len]
        nonce_prefix, chunk_size = _TAIL.unpack_from(rest, key_id_len)
        stored_check = rest[key_id_len + _TAIL.size : key_id_len + _TAIL.size + KEY_CHECK_BYTES]
        try:
            self.key_id = key_id_bytes.decode("utf-8")
        except UnicodeDecodeError:
            raise BackupCorrupted(
                "sealed object header is corrupted (key id is not UTF-8)", offset=_FIXED.size
            ) from None
        if self.key_id != key.key_id:
            raise WrongKey(f"backup was sealed with key '{self.key_id}', but key '{key.key_id}' was given")
        if not hmac.compare_digest(_key_check(key, nonce_prefix), stored_check):
            raise WrongKey(
                f"wrong key: key '{key.key_id}' has the key id this backup was sealed with, but not the same key "
                "material (the key behind that id changed?)"
            )
        if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise BackupCorrupted(f"sealed object header has an invalid chunk size {chunk_size}", offset=0)
        self.chunk_size = chunk_size
        self._aes = AESGCM(key.key)
        self._nonce_prefix = nonce_prefix
        self._header_digest = hashlib.sha256(header).digest()
        # ciphertext + tag of a full chunk, then room for the next length field (read ahead in the same call)
        self._inbuf = memoryview(bytearray(chunk_size + TAG_BYTES + _LEN.size))
        self._next_len: int | None = None
        got = self._read(self._inbuf[: _LEN.size])
        if got < _LEN.size:
            raise BackupCorrupted(
                f"sealed object is truncated: chunk 0 at byte offset {self._offset - got} is missing",
                chunk_index=0,
                offset=self._offset - got,
            )
        self._next_len = _LEN.unpack_from(self._inbuf)[0]

    def _read(self, view: memoryview) -> int:
        got = _read_into(self._source, view)
        if self._hash is not None:
            self._hash.update(view[:got])
        self._offset += got
        return got

    def _read_header_part(self, size: int) -> bytes:
        buf = bytearray(size)
        got = self._read(memoryview(buf))
        if got < size:
            raise BackupCorrupted(f"sealed object is truncated inside its header ({self._offset} bytes)", offset=0)
        return bytes(buf)

    @property
    def sha256_hex(self) -> str | None:
        return self._hash.hexdigest() if self._hash is not None else None

    @property
    def ciphertext_bytes(self) -> int:
        return self._offset

    def next_ciphertext(self) -> tuple[bytes, bytes, memoryview] | None:
        """(nonce, aad, ciphertext+tag) of the next chunk, framing checked; None after the final one."""
        if self._done:
            return None
        index = self._index
        length = self._next_len
        chunk_offset = self._offset - _LEN.size
        full = self.chunk_size + TAG_BYTES
        if length < TAG_BYTES or length > full:
            raise BackupCorrupted(
                f"sealed object corrupted: chunk {index} at byte offset {chunk_offset} has an invalid length field",
                chunk_index=index,
                offset=chunk_offset,
            )
        got = self._read(self._inbuf[: length + _LEN.size])
        if got < length:
            raise BackupCorrupted(
                f"sealed object is truncated: chunk {index} at byte offset {chunk_offset} is cut short",
                chunk_index=index,
                offset=chunk_offset,
            )
        if got == length:
            final = True
        elif got == length + _LEN.size:
            final = False
            if length != full:
                # Only the final chunk may be short: data follows a short chunk.
                raise BackupCorrupted(
                    f"sealed object corrupted: chunk {index} at byte offset {chunk_offset} is short but not last",
                    chunk_index=index,
                    offset=chunk_offset,
                )
            self._next_len = _LEN.unpack_from(self._inbuf, length)[0]
        else:
            raise BackupCorrupted(
                f"sealed object is truncated: chunk {index + 1} at byte offset {chunk_offset + _LEN.size + length} "
                "is cut short inside its length field",
                chunk_index=index + 1,
                offset=chunk_offset + _LEN.size + length,
            )
        if index >= MAX_CHUNKS:
            raise BackupCorrupted(f"sealed object has too many chunks (chunk {index})", chunk_index=index)
        self._index = index + 1
        self._chunk_offset = chunk_offset
        if final:
            self._done = True
        nonce = self._nonce_prefix + index.to_bytes(4, "big")
        return nonce, _aad(self._header_digest, index, final=final), self._inbuf[:length]

    def _fail(self, index: int) -> BackupCorrupted:
        offset = self._chunk_offset
        return BackupCorrupted(
            f"sealed object corrupted: chunk {index} at byte offset {offset} failed to authenticate "
            "(damaged, truncated, reordered or from another backup)",
            chunk_index=index,
            offset=offset,
        )

    def decrypt_into(self, out: memoryview) -> memoryview | None:
        """The next plaintext chunk decrypted into ``out`` (a view of it), or None at the end."""
        item = self.next_ciphertext()
        if item is None:
            self._finish()
            return None
        nonce, aad, ciphertext = item
        plain = out[: len(ciphertext) - TAG_BYTES]
        try:
            self._aes.decrypt_into(nonce, ciphertext, aad, plain)
        except InvalidTag:
            raise self._fail(self._index - 1) from None
        self.plaintext_bytes += len(plain)
        return plain

    def decrypt(self) -> bytes | None:
        """The next plaintext chunk as new bytes, or None at the end."""
        item = self.next_ciphertext()
        if item is None:
            self._finish()
            return None
        nonce, aad, ciphertext = item
        try:
            plain = self._aes.decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise self._fail(self._index - 1) from None
        self.plaintext_bytes += len(plain)
        return plain

    def _finish(self) -> None:
        if self._expected is not None and self._hash is not None:
            actual = self._hash.hexdigest()
            if actual != self._expected:
                expected, self._expected = self._expected, None
                raise BackupCorrupted(
                    f"sealed object checksum mismatch: sha256 {actual}, recorded {expected}", offset=self._offset
                )
            self._expected = None


def open_sealed(source: BinaryIO, *, key: EncryptionKey, expected_sha256: str | None = None) -> Iterator[bytes]:
    """The plaintext of a sealed object, chunk by chunk (each a new ``bytes``; the last may be empty).

    The header is read and checked right away (WrongKey / BackupCorrupted raised by this call); chunks
    raise BackupCorrupted as they are reached. With ``expected_sha256`` the SHA-256 of the whole object
    is checked at the end, before the iterator finishes.
    """
    decoder = _Decoder(source, key=key, expected_sha256=expected_sha256, hash_ciphertext=False)

    def chunks() -> Iterator[bytes]:
        while (plain := decoder.decrypt()) is not None:
            yield plain

    return chunks()


class SealedReader(io.RawIOBase):
    """A read-only file object over the plaintext of a sealed object (for ``tarfile.open(fileobj=...,
    mode="r|")``, zstandard's ``stream_reader``, ``shutil.copyfileobj`` into a subprocess's stdin...).

    The header is checked on construction (WrongKey / BackupCorrupted right away). Every byte returned
    has been authenticated; end of data (``b""``) is only reported after the final chunk authenticated,
    so a truncated object raises instead of ending early. With ``hash_ciphertext`` (or
    ``expected_sha256``) it also computes ``sha256_hex`` of the object as read. Does not close ``source``.
    """

    def __init__(
        self,
        source: BinaryIO,
        *,
        key: EncryptionKey,
        expected_sha256: str | None = None,
        hash_ciphertext: bool = False,
    ) -> None:
        super().__init__()
        self._decoder = _Decoder(source, key=key, expected_sha256=expected_sha256, hash_ciphertext=hash_ciphertext)
        self._plainbuf = memoryview(bytearray(self._decoder.chunk_size))
        self._chunk = self._plainbuf[:0]
        self._pos = 0
        self._eof = False

    @property
    def key_id(self) -> str:
        return self._decoder.key_id

    @property
    def sha256_hex(self) -> str | None:
        return self._decoder.sha256_hex

    @property
    def plaintext_bytes(self) -> int:
        return self._decoder.plaintext_bytes

    @property
    def ciphertext_bytes(self) -> int:
        return self._decoder.ciphertext_bytes

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        """Make the current chunk non-empty; False at end of data."""
        while self._pos >= len(self._chunk):
            if self._eof:
                return False
            chunk = self._decoder.decrypt_into(self._plainbuf)
            if chunk is None:
                self._eof = True
                return False
            self._chunk, self._pos = chunk, 0
        return True

    def readinto(self, buffer) -> int:
        self._checkClosed()
        out = _as_bytes_view(buffer)
        done = 0
        while done < len(out) and self._fill():
            take = min(len(out) - done, len(self._chunk) - self._pos)
            out[done : done + take] = self._chunk[self._pos : self._pos + take]
            self._pos += take
            done += take
        return done

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes; fewer only at the end of the data."""
        self._checkClosed()
        if size is None or size < 0:
            return self.readall()
        parts = []
        remaining = size
        while remaining and self._fill():
            take = min(remaining, len(self._chunk) - self._pos)
            parts.append(self._chunk[self._pos : self._pos + take].tobytes())
            self._pos += take
            remaining -= take
        return b"".join(parts)

    def readall(self) -> bytes:
        parts = []
        while self._fill():
            parts.append(self._chunk[self._pos :].tobytes())
            self._pos = len(self._chunk)
        return b"".join(parts)

    def read_to_end(self) -> int:
        """Authenticate (and hash) the rest of the object without returning it; the plaintext byte count."""
        while self._fill():
            self._pos = len(self._chunk)
        return self.plaintext_bytes


def seal_bytes(data: bytes, *, key: EncryptionKey, chunk_size: int = DEFAULT_CHUNK_SIZE) -> bytes:
    """``data`` sealed into a new bytes object (small payloads and tests)."""
    sink = io.BytesIO()
    with SealingWriter(sink, key=key, chunk_size=chunk_size) as writer:
        writer.write(data)
    return sink.getvalue()


def unseal_bytes(sealed: bytes, *, key: EncryptionKey) -> bytes:
    """The plaintext of a sealed bytes object."""
    return b"".join(open_sealed(io.BytesIO(sealed), key=key))
