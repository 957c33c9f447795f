"""A real moto server process on loopback, for tests of the AWS code paths (S3, Route 53, ELBv2, SNS, KMS).

``start_moto_server()`` runs ``python -m moto.server`` as a child process on 127.0.0.1 and a free port,
waits until it answers HTTP, and returns a handle whose ``stop()`` ends the process (and its process
group) and waits until the port is free again. ``moto_server()`` is the same as a context manager.

Wrap it in tests/conftest.py as a session-scoped fixture, e.g.::

    @pytest.fixture(scope="session")
    def moto_endpoint():
        with moto_server() as server:
            yield server.endpoint_url

and point an Airflow AWS connection at it, e.g. with ``aws_connection_json(endpoint_url)`` in an
``AIRFLOW_CONN_<ID>`` environment variable.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class MotoServer:
    """A running moto server child process."""

    process: subprocess.Popen
    port: int
    log_path: Path
    _stopped: bool = field(default=False, repr=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        """Forget every resource the server holds (moto's reset API)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def stop(self, *, timeout: float = 10.0) -> None:
        """End the process group, wait for it, and wait until nobody listens on the port any more."""
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=timeout)
        deadline = time.monotonic() + timeout
        while _port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(OSError):
            self.log_path.unlink()


def start_moto_server(*, startup_timeout: float = 30.0, attempts: int = 3) -> MotoServer:
    """Start ``python -m moto.server`` on 127.0.0.1 and a free port; return once it answers HTTP.

    A port picked as free can be taken by someone else before the server binds it: then the server exits
    and we try another port (up to ``attempts`` times). Raises RuntimeError with the server's output when
    it never comes up.
    """
    last_output = ""
    for _ in range(attempts):
        port = _free_port()
        log_fd, log_name = tempfile.mkstemp(prefix="moto-server-", suffix=".log")
        log_path = Path(log_name)
        env = dict(os.environ)
        # moto must not pick up real credentials or a proxy, and must not reload itself (no extra children).
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env.pop(name, None)
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        os.close(log_fd)
        server = MotoServer(process=process, port=port, log_path=log_path)
        deadline = time.monotonic() + startup_timeout
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"{server.endpoint_url}/moto-api/", timeout=1):
                    return server
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.1)
        last_output = log_path.read_text(errors="replace")[-2000:]
        server.stop()
    raise RuntimeError(f"moto server did not start after {attempts} attempts; last output:\n{last_output}")


@contextlib.contextmanager
def moto_server(**kwargs) -> Iterator[MotoServer]:
    """``start_moto_server()`` as a context manager that always stops the server."""
    server = start_moto_server(**kwargs)
    try:
        yield server
    finally:
        server.stop()


def aws_connection_json(endpoint_url: str, *, region_name: str = "us-east-1") -> str:
    """An Airflow AWS connection in JSON form (for ``AIRFLOW_CONN_<ID>``) pointing at ``endpoint_url``."""
    return json.dumps(
        {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"endpoint_url": endpoint_url, "region_name": region_name},
        }
    )
