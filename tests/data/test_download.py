"""Resumable download against a real HTTP server on 127.0.0.1 (muracli.data.download)."""

from __future__ import annotations

import hashlib
import random
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from muracli.data import download as download_module
from muracli.data.download import download
from muracli.errors import ChecksumError, ConfigError, DownloadError

DATA = random.Random(0).randbytes(3 << 20)  # 3 MiB, not compressible, same every run
DATA_SHA = hashlib.sha256(DATA).hexdigest()
NAME = "MURA-test.zip"


@dataclass
class FakeServer:
    """What the test server does; every request is appended to ``log``."""

    data: bytes = DATA
    support_range: bool = True
    statuses: list[int] = field(default_factory=list)  # error statuses to answer first, one per request
    drops: list[int] = field(default_factory=list)  # close after this many body bytes, one per request
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
        limit = min(fake.drops.pop(0), len(body)) if fake.drops else len(body)
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


@pytest.fixture(autouse=True)
def no_backoff_no_proxy(monkeypatch):
    monkeypatch.setattr(download_module, "BACKOFF_BASE_S", 0.0)
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def server():
    fake = FakeServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.fake = fake
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{httpd.server_port}/files/{NAME}?token=secret"
    yield fake
    httpd.shutdown()
    httpd.server_close()


def test_plain_download_names_file_from_url_and_reports_progress(server, tmp_path):
    calls = []
    path = download(server.url, tmp_path, progress=lambda task, done, total, **kw: calls.append((task, done, total)))
    assert path == tmp_path / NAME
    assert path.read_bytes() == DATA
    assert sorted(p.name for p in tmp_path.iterdir()) == [NAME]  # no .part left behind
    assert calls[0] == (f"download {NAME}", 0, len(DATA))
    assert calls[-1] == (f"download {NAME}", len(DATA), len(DATA))
    assert server.ranges() == [None]


def test_content_disposition_names_the_file_but_not_its_folder(server, tmp_path):
    server.content_disposition = 'attachment; filename="../../MURA-v1.1.zip"'
    path = download(server.url, tmp_path / "dl")
    assert path == tmp_path / "dl" / "MURA-v1.1.zip"
    assert path.read_bytes() == DATA


def test_part_of_the_server_chosen_name_is_resumed(server, tmp_path):
    # The name is only known from the first response; its .part is resumed on a second request.
    server.content_disposition = "attachment; filename=MURA-v1.1.zip"
    (tmp_path / "MURA-v1.1.zip.part").write_bytes(DATA[:2_000_000])
    path = download(server.url, tmp_path, sha256=DATA_SHA)
    assert path == tmp_path / "MURA-v1.1.zip" and path.read_bytes() == DATA
    assert server.ranges() == [None, "bytes=2000000-"]
    assert not (tmp_path / NAME).exists()


def test_explicit_filename_wins(server, tmp_path):
    server.content_disposition = 'attachment; filename="other.zip"'
    assert download(server.url, tmp_path, filename="mine.zip") == tmp_path / "mine.zip"


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
def test_dropped_connection_is_resumed_with_range(server, tmp_path, reset):
    # (a) the server drops the connection once, 1 MiB into the body. Before a reset it waits a
    # moment: a TCP reset makes the client's kernel discard data the client has not read yet.
    server.drops = [1 << 20]
    server.reset, server.stall = reset, 0.2 if reset else 0.0
    path = download(server.url, tmp_path, sha256=DATA_SHA)
    assert path.read_bytes() == DATA
    assert len(server.log) == 2
    assert server.log[0]["range"] is None
    second = server.log[1]["range"]
    resumed_from = int(re.fullmatch(r"bytes=(\d+)-", second).group(1)) if second else 0
    if not reset:  # after a clean close every byte sent was received and kept
        assert resumed_from == 1 << 20
    assert server.log[1]["sent"] == len(DATA) - resumed_from


def test_socket_timeout_mid_body_is_retried(server, tmp_path):
    server.drops, server.stall = [1 << 20], 1.0
    path = download(server.url, tmp_path, timeout=0.3)
    assert path.read_bytes() == DATA
    assert any(entry["range"] for entry in server.log[1:])  # resumed after the stall


def test_server_without_range_support_restarts_the_part(server, tmp_path):
    # (b) a stale .part of other bytes; the server answers every request with the full body.
    server.support_range = False
    (tmp_path / f"{NAME}.part").write_bytes(b"x" * 500_000)
    path = download(server.url, tmp_path, sha256=DATA_SHA)
    assert path.read_bytes() == DATA
    assert server.ranges() == ["bytes=500000-"]  # asked to resume, got 200, truncated
    assert not (tmp_path / f"{NAME}.part").exists()


def test_part_left_by_an_earlier_run_is_resumed_not_refetched(server, tmp_path):
    # (c) an interrupted run left the first 1,234,567 bytes.
    offset = 1_234_567
    (tmp_path / f"{NAME}.part").write_bytes(DATA[:offset])
    path = download(server.url, tmp_path, sha256=DATA_SHA)
    assert path.read_bytes() == DATA
    assert server.ranges() == [f"bytes={offset}-"]
    assert server.log[0]["sent"] == len(DATA) - offset


def test_complete_part_gets_416_and_is_finished_without_body(server, tmp_path):
    (tmp_path / f"{NAME}.part").write_bytes(DATA)
    path = download(server.url, tmp_path, sha256=DATA_SHA)
    assert path.read_bytes() == DATA
    assert server.ranges() == [f"bytes={len(DATA)}-"]


def test_part_longer_than_the_file_starts_over(server, tmp_path):
    (tmp_path / f"{NAME}.part").write_bytes(DATA + b"extra")
    path = download(server.url, tmp_path)
    assert path.read_bytes() == DATA
    assert server.ranges() == [f"bytes={len(DATA) + 5}-", None]


def test_checksum_mismatch_keeps_no_final_file(server, tmp_path):
    # (d)
    with pytest.raises(ChecksumError) as caught:
        download(server.url, tmp_path, sha256="0" * 64)
    assert "SHA-256 mismatch" in caught.value.message and caught.value.hint
    assert not (tmp_path / NAME).exists()
    assert not (tmp_path / f"{NAME}.part").exists()
    assert (tmp_path / f"{NAME}.bad").read_bytes() == DATA
    assert len(server.log) == 1  # a fresh download that fails is not repeated


def test_corrupt_part_from_earlier_run_gets_one_fresh_download(server, tmp_path):
    corrupt = bytearray(DATA[:1_000_000])
    corrupt[10] ^= 0xFF
    (tmp_path / f"{NAME}.part").write_bytes(bytes(corrupt))
    path = download(server.url, tmp_path, sha256=DATA_SHA)
    assert path.read_bytes() == DATA
    assert server.ranges() == ["bytes=1000000-", None]


@pytest.mark.parametrize("status", [404, 403])
def test_http_error_is_a_download_error_with_licence_hint(server, tmp_path, status):
    # (e)
    server.statuses = [status]
    with pytest.raises(DownloadError) as caught:
        download(server.url, tmp_path)
    assert f"HTTP {status}" in caught.value.message
    assert "secret" not in caught.value.message  # the signed query string is not echoed
    assert "licence" in caught.value.hint or "agreement" in caught.value.hint
    assert len(server.log) == 1  # not retried
    assert list(tmp_path.iterdir()) == []


def test_server_error_is_retried(server, tmp_path):
    server.statuses = [503, 500]
    assert download(server.url, tmp_path).read_bytes() == DATA
    assert len(server.log) == 3


def test_gives_up_when_retries_bring_no_bytes(server, tmp_path):
    server.drops = [0] * 10
    with pytest.raises(DownloadError, match="gave up after 2 retries"):
        download(server.url, tmp_path, retries=2)
    assert len(server.log) == 3
    assert not (tmp_path / NAME).exists()


def test_retries_count_only_failures_without_progress(server, tmp_path):
    server.drops = [500_000, 500_000, 500_000, 500_000]
    path = download(server.url, tmp_path, retries=1)
    assert path.read_bytes() == DATA
    assert len(server.log) == 5


def test_existing_final_with_matching_checksum_is_kept_offline(server, tmp_path):
    # (f)
    final = tmp_path / NAME
    final.write_bytes(DATA)
    before = final.stat().st_mtime_ns
    assert download(server.url, tmp_path, sha256=DATA_SHA.upper()) == final
    assert server.log == []
    assert final.stat().st_mtime_ns == before


def test_existing_final_with_server_size_is_kept_without_checksum(server, tmp_path):
    final = tmp_path / NAME
    final.write_bytes(DATA)
    before = final.stat().st_mtime_ns
    assert download(server.url, tmp_path) == final
    assert final.stat().st_mtime_ns == before
    assert len(server.log) == 1


def test_existing_final_with_wrong_checksum_is_replaced(server, tmp_path):
    final = tmp_path / NAME
    final.write_bytes(b"old version")
    assert download(server.url, tmp_path, sha256=DATA_SHA).read_bytes() == DATA


def test_unreachable_host_hints_at_archive(tmp_path):
    with socket.socket() as s:  # a port that was free a moment ago: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError) as caught:
        download(f"http://127.0.0.1:{port}/MURA-v1.1.zip", tmp_path, retries=1)
    assert "cannot connect" in caught.value.message
    assert "--archive" in caught.value.hint


@pytest.mark.parametrize("value", ["abc", "g" * 64, "0" * 63])
def test_invalid_sha256_is_a_config_error(tmp_path, value):
    with pytest.raises(ConfigError):
        download("http://127.0.0.1:9/x.zip", tmp_path, sha256=value)


@pytest.mark.parametrize("url", ["ftp://example.org/x.zip", "file:///tmp/x.zip", "not a url"])
def test_unsupported_url_is_a_config_error(tmp_path, url):
    with pytest.raises(ConfigError):
        download(url, tmp_path)


@pytest.mark.parametrize("filename", ["../x.zip", "a/b.zip", ".."])
def test_filename_with_folders_is_a_config_error(tmp_path, filename):
    with pytest.raises(ConfigError):
        download("http://127.0.0.1:9/x.zip", tmp_path, filename=filename)
