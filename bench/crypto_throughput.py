"""Throughput of the sealed backup format (chunked AES-256-GCM + SHA-256 of the ciphertext), in one run.

    .venv/bin/python bench/crypto_throughput.py [--mib 128] [--repeat 3]

Seals ``--mib`` MiB of random bytes written in 1 MiB pieces into a sink that discards them, then opens the
sealed copy (decrypt + authenticate + SHA-256); every figure is the median of ``--repeat`` runs. Baseline,
measured in the same run on the same bytes: one-shot ``AESGCM.encrypt`` per 4 MiB chunk plus
``hashlib.sha256`` of the result (what the format costs at the least). ratio = our seconds / baseline seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))

from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402

from disaster_recovery.backups.crypto import DEFAULT_CHUNK_SIZE, SealedReader, SealingWriter, seal_bytes  # noqa: E402
from disaster_recovery.backups.keys import EncryptionKey  # noqa: E402

KEY = EncryptionKey(key_id="bench", key=bytes(range(32)))
PIECE = 1 << 20


class NullSink:
    def write(self, data) -> int:
        return len(data)


def seconds(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def seal(data: bytes) -> None:
    writer = SealingWriter(NullSink(), key=KEY)
    view = memoryview(data)
    for pos in range(0, len(data), PIECE):
        writer.write(view[pos : pos + PIECE])
    writer.close()
    assert writer.plaintext_bytes == len(data)


def open_sealed(sealed: bytes, expected: int) -> None:
    reader = SealedReader(io.BytesIO(sealed), key=KEY, hash_ciphertext=True)
    assert reader.read_to_end() == expected
    assert reader.sha256_hex == hashlib.sha256(sealed).hexdigest()


def baseline(data: bytes) -> None:
    aead, digest, view = AESGCM(KEY.key), hashlib.sha256(), memoryview(data)
    for index, pos in enumerate(range(0, len(data), DEFAULT_CHUNK_SIZE)):
        digest.update(aead.encrypt(index.to_bytes(12, "big"), view[pos : pos + DEFAULT_CHUNK_SIZE], None))
    digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = os.urandom(args.mib * (1 << 20))
    sealed = seal_bytes(data, key=KEY)
    figures = {
        "baseline (AESGCM.encrypt + sha256)": statistics.median(seconds(lambda: baseline(data))
                                                                for _ in range(args.repeat)),
        "seal (AES-256-GCM + SHA-256)": statistics.median(seconds(lambda: seal(data)) for _ in range(args.repeat)),
        "open + SHA-256": statistics.median(seconds(lambda: open_sealed(sealed, len(data)))
                                            for _ in range(args.repeat)),
    }
    base = figures["baseline (AESGCM.encrypt + sha256)"]
    for name, secs in figures.items():
        print(f"{name:38s} {len(data) / secs / 1e6:8.0f} MB/s  {secs:7.3f} s  ratio {secs / base:5.2f}")
    print(f"crypto: mib={args.mib} seal_mb_s={len(data) / figures['seal (AES-256-GCM + SHA-256)'] / 1e6:.0f} "
          f"open_mb_s={len(data) / figures['open + SHA-256'] / 1e6:.0f} "
          f"seal_ratio={figures['seal (AES-256-GCM + SHA-256)'] / base:.2f}")


if __name__ == "__main__":
    main()
