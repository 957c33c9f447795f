"""The lab's notification sinks: an SMTP server and a webhook receiver on loopback.

Notifications sent by the lab's plans land here, so an operator can read them: every e-mail as a
`.eml` file under `<home>/mail/`, every webhook POST as one JSON line in `<home>/webhooks.jsonl`.
Run as `python -m disaster_recovery.lab.sinks --home DIR --smtp-port N --webhook-port M`.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from aiosmtpd.controller import Controller


class MailboxHandler:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        (self.folder / f"{stamp}.eml").write_bytes(envelope.content)
        return "250 Message accepted for delivery"


def webhook_handler(journal: Path) -> type[BaseHTTPRequestHandler]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace")
            try:
                payload = json.loads(body)
            except json.JSONDecodeError:
                payload = body
            record = {"received_at": datetime.now(UTC).isoformat(), "path": self.path, "payload": payload}
            with lock, journal.open("a") as fh:
                fh.write(json.dumps(record) + "\n")
            self.send_response(204)
            self.end_headers()

        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"dr-lab webhook sink\n")

        def log_message(self, *args):
            return

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="disaster_recovery.lab.sinks")
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--smtp-port", type=int, required=True)
    parser.add_argument("--webhook-port", type=int, required=True)
    args = parser.parse_args(argv)

    smtp = Controller(MailboxHandler(args.home / "mail"), hostname="127.0.0.1", port=args.smtp_port)
    smtp.start()
    httpd = ThreadingHTTPServer(("127.0.0.1", args.webhook_port), webhook_handler(args.home / "webhooks.jsonl"))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        while not stop.is_set():
            time.sleep(0.2)
    finally:
        httpd.shutdown()
        smtp.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
