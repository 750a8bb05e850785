"""A real HTTP server on 127.0.0.1 whose misbehaviour a test chooses (drops, resets, stalls, errors)."""

from __future__ import annotations

import contextlib
import random
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

DATA = random.Random(0).randbytes(3 << 20)  # 3 MiB, not compressible, same every run
NAME = "MURA-test.zip"


@dataclass
class FakeServer:
    """What the test server does; every request is appended to ``log``."""

    data: bytes = DATA
    support_range: bool = True
    statuses: list[int] = field(default_factory=list)  # error statuses to answer first, one per request
    drops: list[int] = field(default_factory=list)  # close after this many body bytes, one per request
    drop_at: int | None = None  # then close every response after this many body bytes
    reset: bool = False  # drop with a TCP reset instead of a clean close
    stall: float = 0.0  # sleep this long mid-body on a dropping request (client timeout)
    content_disposition: str | None = None
    log: list[dict] = field(default_factory=list)
    url: str = ""

    def ranges(self) -> list[str | None]:
        return [entry["range"] for entry in self.log]


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        fake: FakeServer = self.server.fake
        entry = {"path": self.path, "range": self.headers.get("Range"), "sent": 0}
        fake.log.append(entry)
        if fake.statuses:
            self.send_error(fake.statuses.pop(0))
            return
        data, start = fake.data, 0
        requested = entry["range"] if fake.support_range else None
        if requested:
            start = int(re.fullmatch(r"bytes=(\d+)-", requested).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        if fake.support_range:
            self.send_header("Accept-Ranges", "bytes")
        if fake.content_disposition:
            self.send_header("Content-Disposition", fake.content_disposition)
        self.end_headers()
        limit = fake.drops.pop(0) if fake.drops else fake.drop_at if fake.drop_at is not None else len(body)
        limit = min(limit, len(body))
        try:
            for i in range(0, limit, 64 << 10):
                piece = body[i : min(i + (64 << 10), limit)]
                self.wfile.write(piece)
                entry["sent"] += len(piece)
            if limit < len(body):
                self.wfile.flush()
                time.sleep(fake.stall)
                if fake.reset:
                    # SO_LINGER 0 + close sends RST: the client sees ConnectionResetError.
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
        except OSError:  # the client hung up (e.g. it only wanted the headers)
            pass
        self.close_connection = True


@contextlib.contextmanager
def serving(fake: FakeServer | None = None) -> Iterator[FakeServer]:
    """Serve ``fake`` (a default ``FakeServer``) in a thread; ``fake.url`` is its file's URL (with a secret query)."""
    fake = fake or FakeServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.fake = fake
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{httpd.server_port}/files/{NAME}?token=secret"
    try:
        yield fake
    finally:
        httpd.shutdown()
        httpd.server_close()
