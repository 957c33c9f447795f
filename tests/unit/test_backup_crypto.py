"""The sealed backup format (streaming, chunked AES-256-GCM) and backup keys: round trips, and every kind
of damage (flipped bytes, truncation, splicing, reordering, wrong keys) raises instead of returning data."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import tarfile

import pytest

from disaster_recovery.backups.crypto import (
    DEFAULT_CHUNK_SIZE,
    TAG_BYTES,
    BackupCorrupted,
    SealedReader,
    SealError,
    SealingWriter,
    WrongKey,
    open_sealed,
    seal_bytes,
    unseal_bytes,
)
from disaster_recovery.backups.keys import (
    EncryptionKey,
    KeyConfigError,
    derived_key_id,
    generate_key,
    key_from_base64,
    key_from_connection,
)

CHUNK = 1024
KEY = EncryptionKey(key_id="test-key-1", key=bytes(range(32)))
OTHER_KEY = EncryptionKey(key_id="test-key-2", key=bytes(range(1, 33)))


def _rng(seed: int) -> random.Random:
    return random.Random(seed)


def _data(size: int, seed: int = 1) -> bytes:
    return _rng(seed).randbytes(size)


def _chunk_offsets(sealed: bytes) -> list[tuple[int, int]]:
    """(offset of the length field, length) of each chunk, parsed independently of the reader."""
    key_id_len = int.from_bytes(sealed[5:7], "big")
    offset = 7 + key_id_len + 8 + 4 + 16 + 8
    chunks = []
    while offset < len(sealed):
        length = int.from_bytes(sealed[offset : offset + 4], "big")
        chunks.append((offset, length))
        offset += 4 + length
    assert offset == len(sealed)
    return chunks


def _read_all_ways(sealed: bytes, key: EncryptionKey = KEY) -> list[bytes]:
    """The plaintext as read by the chunk iterator, read(), read(n) and readinto."""
    results = [b"".join(open_sealed(io.BytesIO(sealed), key=key))]
    results.append(SealedReader(io.BytesIO(sealed), key=key).read())
    reader = SealedReader(io.BytesIO(sealed), key=key)
    rng = _rng(len(sealed))
    parts = []
    while piece := reader.read(rng.randint(1, 3 * CHUNK)):
        parts.append(piece)
    results.append(b"".join(parts))
    reader = SealedReader(io.BytesIO(sealed), key=key)
    buffer = bytearray(777)
    parts = []
    while n := reader.readinto(buffer):
        parts.append(bytes(buffer[:n]))
    results.append(b"".join(parts))
    return results


@pytest.mark.parametrize(
    "size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 7 * CHUNK + 13, 50 * CHUNK], ids=lambda s: f"{s}B"
)
def test_round_trip_small_chunks(size):
    data = _data(size, seed=size)
    sealed = seal_bytes(data, key=KEY, chunk_size=CHUNK)
    for result in _read_all_ways(sealed):
        assert result == data
    chunks = _chunk_offsets(sealed)
    # Every chunk but the last is full; exactly one final chunk, shorter than a full one (maybe empty).
    assert len(chunks) == size // CHUNK + 1
    assert all(length == CHUNK + TAG_BYTES for _, length in chunks[:-1])
    assert chunks[-1][1] == size % CHUNK + TAG_BYTES


@pytest.mark.parametrize("size", [0, 1, DEFAULT_CHUNK_SIZE, 3 * DEFAULT_CHUNK_SIZE + 5], ids=lambda s: f"{s}B")
def test_round_trip_default_chunk_size(size):
    data = _data(size, seed=7)
    sealed = seal_bytes(data, key=KEY)
    assert unseal_bytes(sealed, key=KEY) == data
    assert SealedReader(io.BytesIO(sealed), key=KEY).read() == data


def test_random_write_sizes_and_figures():
    rng = _rng(42)
    for trial in range(20):
        data = _data(rng.randint(0, 20 * CHUNK), seed=trial)
        sink = io.BytesIO()
        writer = SealingWriter(sink, key=KEY, chunk_size=CHUNK)
        pos = 0
        while pos < len(data):
            step = rng.choice([0, 1, 3, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK, rng.randint(1, 4 * CHUNK)])
            piece = data[pos : pos + step]
            writer.write(memoryview(piece) if trial % 2 else piece)
            pos += len(piece)
        writer.close()
        writer.close()  # idempotent
        sealed = sink.getvalue()
        assert writer.plaintext_bytes == len(data)
        assert writer.ciphertext_bytes == len(sealed)
        assert writer.sha256_hex == hashlib.sha256(sealed).hexdigest()
        reader = SealedReader(io.BytesIO(sealed), key=KEY, hash_ciphertext=True)
        assert reader.read() == data
        assert reader.sha256_hex == writer.sha256_hex
        assert reader.plaintext_bytes == len(data) and reader.ciphertext_bytes == len(sealed)


def test_same_plaintext_seals_differently_each_time():
    data = _data(3 * CHUNK)
    assert seal_bytes(data, key=KEY, chunk_size=CHUNK) != seal_bytes(data, key=KEY, chunk_size=CHUNK)


def test_write_after_close_and_exception_in_context_leaves_object_unfinished():
    sink = io.BytesIO()
    writer = SealingWriter(sink, key=KEY, chunk_size=CHUNK)
    writer.close()
    with pytest.raises(ValueError):
        writer.write(b"x")
    sink = io.BytesIO()
    with pytest.raises(RuntimeError), SealingWriter(sink, key=KEY, chunk_size=CHUNK) as writer:
        writer.write(_data(3 * CHUNK))
        raise RuntimeError("producer failed")
    with pytest.raises(BackupCorrupted, match="truncated|failed to authenticate"):
        unseal_bytes(sink.getvalue(), key=KEY)


def _assert_raises_without_wrong_data(sealed: bytes, plaintext: bytes, *, expected=BackupCorrupted) -> SealError:
    """Every way of reading raises ``expected``; whatever came out before is a true prefix of the plaintext."""
    with pytest.raises(expected) as caught:
        b"".join(open_sealed(io.BytesIO(sealed), key=KEY))
    with pytest.raises(expected):
        SealedReader(io.BytesIO(sealed), key=KEY).read()
    got = bytearray()
    with pytest.raises(expected):
        reader = SealedReader(io.BytesIO(sealed), key=KEY)
        while piece := reader.read(300):
            got += piece
    assert plaintext.startswith(bytes(got))
    return caught.value


def test_flipped_byte_anywhere_is_caught():
    data = _data(6 * CHUNK + 100, seed=3)
    sealed = seal_bytes(data, key=KEY, chunk_size=CHUNK)
    chunks = _chunk_offsets(sealed)
    header_len = chunks[0][0]
    offsets = set(range(header_len))  # every header byte: magic, version, key id, nonce prefix, size, checks
    for start, length in chunks:
        offsets.update(range(start, start + 4))  # length field
        offsets.update({start + 4, start + 4 + length - TAG_BYTES - 1})  # first / last ciphertext byte
        offsets.update(range(start + 4 + length - TAG_BYTES, start + 4 + length))  # tag
    rng = _rng(11)
    offsets.update(rng.randrange(len(sealed)) for _ in range(40))
    for offset in sorted(offsets):
        damaged = bytearray(sealed)
        damaged[offset] ^= 1 << rng.randrange(8)
        error = _assert_raises_without_wrong_data(bytes(damaged), data)
        owner = [i for i, (start, length) in enumerate(chunks) if start <= offset < start + 4 + length]
        if owner:
            # A damaged chunk is reported with its index and byte offset (a damaged length field may be
            # noticed at the next chunk's boundary instead, never earlier).
            assert error.chunk_index is not None and error.chunk_index >= owner[0]
            assert f"chunk {error.chunk_index}" in str(error) and f"byte offset {error.offset}" in str(error)
            if offset >= chunks[owner[0]][0] + 4:  # ciphertext or tag: exactly that chunk
                assert error.chunk_index == owner[0] and error.offset == chunks[owner[0]][0]


def test_truncation_anywhere_is_caught():
    data = _data(5 * CHUNK + 10, seed=4)
    sealed = seal_bytes(data, key=KEY, chunk_size=CHUNK)
    chunks = _chunk_offsets(sealed)
    cuts = {0, 1, 4, chunks[0][0] - 1, chunks[0][0]}
    for start, length in chunks:
        cuts.update({start, start + 2, start + 4, start + 4 + length - 1})  # incl. every chunk boundary
    rng = _rng(5)
    cuts.update(rng.randrange(len(sealed)) for _ in range(40))
    for cut in sorted(c for c in cuts if c < len(sealed)):
        _assert_raises_without_wrong_data(sealed[:cut], data)


def test_empty_final_chunk_cannot_be_dropped():
    data = _data(3 * CHUNK, seed=5)  # exact multiple: the final chunk is empty
    sealed = seal_bytes(data, key=KEY, chunk_size=CHUNK)
    last_start, _ = _chunk_offsets(sealed)[-1]
    _assert_raises_without_wrong_data(sealed[:last_start], data)


def test_appended_bytes_are_caught():
    data = _data(2 * CHUNK + 5, seed=6)
    sealed = seal_bytes(data, key=KEY, chunk_size=CHUNK)
    for tail in (b"\x00", b"\x00\x00\x00\x10", sealed[-(TAG_BYTES + 9) :]):
        _assert_raises_without_wrong_data(sealed + tail, data)


def test_chunks_spliced_from_another_backup_reordered_or_dropped_are_caught():
    data_a, data_b = _data(4 * CHUNK + 1, seed=8), _data(4 * CHUNK + 1, seed=9)
    a = seal_bytes(data_a, key=KEY, chunk_size=CHUNK)
    b = seal_bytes(data_b, key=KEY, chunk_size=CHUNK)
    ca, cb = _chunk_offsets(a), _chunk_offsets(b)

    def piece(blob, chunks, i):
        start, length = chunks[i]
        return blob[start : start + 4 + length]

    header = a[: ca[0][0]]
    pieces = [piece(a, ca, i) for i in range(len(ca))]
    # chunk 1 from backup b (same key, same chunk size, same position)
    spliced = header + pieces[0] + piece(b, cb, 1) + b"".join(pieces[2:])
    error = _assert_raises_without_wrong_data(spliced, data_a)
    assert error.chunk_index == 1 and error.offset == ca[1][0]
    # b's header with a's chunks
    _assert_raises_without_wrong_data(b[: cb[0][0]] + b"".join(pieces), data_a)
    # chunks 1 and 2 swapped
    swapped = header + pieces[0] + pieces[2] + pieces[1] + b"".join(pieces[3:])
    assert _assert_raises_without_wrong_data(swapped, data_a).chunk_index == 1
    # chunk 2 dropped, chunk 2 duplicated
    _assert_raises_without_wrong_data(header + b"".join(pieces[:2] + pieces[3:]), data_a)
    _assert_raises_without_wrong_data(header + b"".join(pieces[:3] + pieces[2:]), data_a)


def test_wrong_key_id_names_both_ids():
    sealed = seal_bytes(b"secret rows", key=KEY, chunk_size=CHUNK)
    with pytest.raises(WrongKey) as caught:
        unseal_bytes(sealed, key=OTHER_KEY)
    assert "'test-key-1'" in str(caught.value) and "'test-key-2'" in str(caught.value)
    with pytest.raises(WrongKey):
        SealedReader(io.BytesIO(sealed), key=OTHER_KEY)


def test_same_key_id_other_key_material_is_wrong_key_not_garbage():
    impostor = EncryptionKey(key_id=KEY.key_id, key=os.urandom(32))
    sealed = seal_bytes(_data(3 * CHUNK), key=KEY, chunk_size=CHUNK)
    with pytest.raises(WrongKey, match="wrong key") as caught:
        unseal_bytes(sealed, key=impostor)
    assert KEY.key.hex() not in str(caught.value) and impostor.key.hex() not in str(caught.value)


def test_expected_sha256_is_checked_at_the_end():
    data = _data(2 * CHUNK + 3)
    sink = io.BytesIO()
    with SealingWriter(sink, key=KEY, chunk_size=CHUNK) as writer:
        writer.write(data)
    sealed = sink.getvalue()
    assert b"".join(open_sealed(io.BytesIO(sealed), key=KEY, expected_sha256=writer.sha256_hex)) == data
    reader = SealedReader(io.BytesIO(sealed), key=KEY, expected_sha256=writer.sha256_hex.upper())
    assert reader.read_to_end() == len(data)
    with pytest.raises(BackupCorrupted, match="checksum mismatch"):
        SealedReader(io.BytesIO(sealed), key=KEY, expected_sha256="0" * 64).read()


def test_reader_feeds_tarfile_stream_mode():
    members = {f"base/file{i}": _data(i * 3000 + 1, seed=i) for i in range(6)}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w|") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    sealed = seal_bytes(raw.getvalue(), key=KEY, chunk_size=CHUNK)
    found = {}
    with tarfile.open(fileobj=SealedReader(io.BytesIO(sealed), key=KEY), mode="r|") as tar:
        for member in tar:
            found[member.name] = tar.extractfile(member).read()
    assert found == members


def test_reader_feeds_a_subprocess_stdin():
    data = _data(9 * CHUNK + 17)
    sealed = seal_bytes(data, key=KEY, chunk_size=CHUNK)
    proc = subprocess.Popen(["sha256sum"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        shutil.copyfileobj(SealedReader(io.BytesIO(sealed), key=KEY), proc.stdin)
        proc.stdin.close()
        out = proc.stdout.read().decode()
    finally:
        proc.wait(timeout=30)
    assert out.split()[0] == hashlib.sha256(data).hexdigest()


def test_default_chunks_fed_in_one_mib_pieces_hash_and_count_what_was_stored():
    """The writer's figures over default-size chunks written in 1 MiB pieces (throughput: bench/crypto_throughput.py)."""

    class NullSink:
        def __init__(self) -> None:
            self.digest = hashlib.sha256()

        def write(self, data):
            self.digest.update(data)
            return len(data)

    data = _data(2 * DEFAULT_CHUNK_SIZE + 12345, seed=12)
    sink = NullSink()
    writer = SealingWriter(sink, key=KEY)
    for pos in range(0, len(data), 1 << 20):
        writer.write(memoryview(data)[pos : pos + (1 << 20)])
    writer.close()
    assert writer.plaintext_bytes == len(data)
    assert writer.sha256_hex == sink.digest.hexdigest()
    header = len(seal_bytes(b"", key=KEY)) - (4 + TAG_BYTES)  # an empty object is a header and one empty chunk
    assert writer.ciphertext_bytes == header + len(data) + 3 * (4 + TAG_BYTES)  # two full chunks and the final one


# ---------------------------------------------------------------- keys


def test_key_repr_never_shows_the_key():
    key = key_from_base64(generate_key())
    assert key.key.hex() not in repr(key) and str(key.key) not in repr(key)
    assert repr(key).startswith("EncryptionKey(key_id='sha256:")
    with pytest.raises(AttributeError):
        key.key_id = "other"  # frozen


def test_key_from_base64_accepts_standard_urlsafe_and_unpadded():
    raw = bytes([0xFB, 0xFF] * 16)  # encodes with '+' '/' in standard, '-' '_' in URL-safe
    import base64

    for text in (
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    ):
        key = key_from_base64(text)
        assert key.key == raw
        assert key.key_id == derived_key_id(raw) == "sha256:" + hashlib.sha256(raw).hexdigest()[:16]


def test_key_errors_name_the_source_never_the_key():
    import base64

    short = base64.b64encode(b"k" * 16).decode()
    with pytest.raises(KeyConfigError, match="32 bytes") as caught:
        key_from_base64(short, source="encryption key connection 'x'")
    assert short not in str(caught.value) and "'x'" in str(caught.value)
    with pytest.raises(KeyConfigError, match="not valid base64"):
        key_from_base64("not base64 !!!")
    with pytest.raises(KeyConfigError):
        EncryptionKey(key_id="k", key=b"short")


def test_key_from_airflow_connection(monkeypatch):
    secret = generate_key()
    monkeypatch.setenv(
        "AIRFLOW_CONN_DR_TEST_KEY_NAMED",
        json.dumps({"conn_type": "generic", "login": "wedsync-2026", "password": secret}),
    )
    monkeypatch.setenv("AIRFLOW_CONN_DR_TEST_KEY_ANON", json.dumps({"conn_type": "generic", "password": secret}))
    monkeypatch.setenv("AIRFLOW_CONN_DR_TEST_KEY_SHORT", json.dumps({"conn_type": "generic", "password": "c2hvcnQ="}))
    named = key_from_connection("dr_test_key_named")
    anon = key_from_connection("dr_test_key_anon")
    assert named.key == anon.key == key_from_base64(secret).key
    assert named.key_id == "wedsync-2026"
    assert anon.key_id == derived_key_id(anon.key)
    with pytest.raises(KeyConfigError, match="'dr_test_key_short'.*32 bytes"):
        key_from_connection("dr_test_key_short")
    with pytest.raises(KeyConfigError, match="'dr_test_key_missing' is not defined"):
        key_from_connection("dr_test_key_missing")
