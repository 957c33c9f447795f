"""One streaming pipeline per backup, with no temporary copy of the data:

    producer stdout ─(1 MiB pipe, 1 MiB reads)─> [zstd, only if the producer did not compress]
        ─> SealingWriter (AES-256-GCM chunks, SHA-256 of the ciphertext) ─> storage ObjectWriter

The storage object becomes visible only on ``commit()``, after the producer exited 0 and the final
chunk is sealed. Any failure (non-zero exit, an exception anywhere, even KeyboardInterrupt) stops the
producer and aborts the writer: no object, no temp file, no pending upload is left behind.
"""

from __future__ import annotations

import logging
import subprocess
import time
from dataclasses import dataclass

import zstandard

from disaster_recovery.backups.crypto import DEFAULT_CHUNK_SIZE, SealingWriter
from disaster_recovery.backups.engines import EngineError, ProducerSpec
from disaster_recovery.backups.keys import EncryptionKey
from disaster_recovery.backups.processes import READ_BYTES, StderrTail, enlarge_pipe, stop_process
from disaster_recovery.backups.storage import ObjectWriter, Progress, ProgressSink, StoredObject

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamResult:
    """What one pipeline run measured."""

    stored: StoredObject
    sha256: str
    produced_bytes: int  # what the producer wrote (already compressed when PostgreSQL compressed)
    sealed_bytes: int  # plaintext handed to the sealer (after pipeline compression)
    duration_seconds: float
    producer_log: str

    @property
    def stored_mb_s(self) -> float:
        return self.stored.size_bytes / 1e6 / self.duration_seconds if self.duration_seconds > 0 else 0.0


class _Compressing:
    """zstd (multi-threaded) between the producer and the sealer."""

    def __init__(self, sink: SealingWriter, *, level: int, threads: int) -> None:
        self._sink = sink
        self._cobj = zstandard.ZstdCompressor(level=level, threads=threads if threads > 1 else 0).compressobj()

    def write(self, data) -> None:
        out = self._cobj.compress(data)
        if out:
            self._sink.write(out)

    def close(self) -> None:
        out = self._cobj.flush()
        if out:
            self._sink.write(out)


def stream_backup(
    *,
    producer: ProducerSpec,
    writer: ObjectWriter,
    key: EncryptionKey,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    logger: logging.Logger | None = None,
    progress_interval: float = 5.0,
) -> StreamResult:
    """Run ``producer`` and stream its stdout, sealed, into ``writer``; commit on success, abort otherwise."""
    logger = logger or log
    started = time.monotonic()
    progress = Progress(f"{producer.engine} → {getattr(writer, 'location', 'storage')}", interval=progress_interval,
                        logger=logger)
    proc: subprocess.Popen | None = None
    try:
        sealer = SealingWriter(ProgressSink(writer, progress), key=key, chunk_size=chunk_size)
        sink = (
            _Compressing(sealer, level=producer.compression.level, threads=producer.compression.workers)
            if producer.pipeline_compresses
            else sealer
        )
        proc = subprocess.Popen(
            list(producer.argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=producer.env,
            bufsize=0,
        )
        enlarge_pipe(proc.stdout.fileno())
        stderr = StderrTail(proc.stderr)
        produced = _pump(proc.stdout, sink)
        returncode = proc.wait()
        producer_log = stderr.text()
        if returncode != 0:
            raise EngineError(
                f"{producer.engine} exited {returncode} after {produced} bytes: "
                f"{stderr.last() or 'no error output'}"
            )
        if producer.pipeline_compresses:
            sink.close()
        sealer.close()
        stored = writer.commit()
    except BaseException:
        if proc is not None:
            stop_process(proc)
        writer.abort()
        raise
    duration = time.monotonic() - started
    progress.finish()
    return StreamResult(
        stored=stored,
        sha256=sealer.sha256_hex,
        produced_bytes=produced,
        sealed_bytes=sealer.plaintext_bytes,
        duration_seconds=duration,
        producer_log=producer_log,
    )


def _pump(stream, sink) -> int:
    """Copy a raw pipe into ``sink`` through one reusable 1 MiB buffer; the byte count."""
    buffer = bytearray(READ_BYTES)
    view = memoryview(buffer)
    total = 0
    while True:
        count = stream.readinto(buffer)
        if not count:
            return total
        sink.write(view[:count])
        total += count
