"""Resumable download against a real HTTP server on 127.0.0.1 (muracli.data.download)."""

from __future__ import annotations

import hashlib
import re
import socket

import pytest
from http_server import DATA, NAME, serving

from muracli.data import download as download_module
from muracli.data.download import download
from muracli.errors import ChecksumError, ConfigError, DownloadError

DATA_SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture(autouse=True)
def no_backoff_no_proxy(monkeypatch):
    monkeypatch.setattr(download_module, "BACKOFF_BASE_S", 0.0)
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def server():
    with serving() as fake:
        yield fake


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
    with pytest.raises(DownloadError, match=r"failed after 2 retries \(the last 2 got no further\)"):
        download(server.url, tmp_path, retries=2)
    assert len(server.log) == 3
    assert not (tmp_path / NAME).exists()


def test_a_server_that_ignores_range_and_drops_every_transfer_gives_up_in_words(server, tmp_path):
    # Every try sends the first third again: new bytes arrive, but the part never gets further.
    server.support_range, server.drop_at = False, len(DATA) // 3
    notices = []
    with pytest.raises(DownloadError) as caught:
        download(server.url, tmp_path, retries=3, on_retry=notices.append)
    message, hint = caught.value.message, caught.value.hint
    assert f"http://127.0.0.1:{server.url.split(':')[2].split('/')[0]}/files/{NAME}?…" in message
    assert "secret" not in message
    assert f"{len(DATA) // 3:,} of {len(DATA):,} bytes kept in {tmp_path / (NAME + '.part')}" in message
    assert "failed after 3 retries (the last 3 got no further)" in message
    assert "ignores resume (Range)" in hint and "--archive" in hint
    assert [n.number for n in notices] == [1, 2, 3]
    assert all(n.held == len(DATA) // 3 and n.total == len(DATA) for n in notices)
    assert "retry 2 in" in notices[1].message and "closed after" in notices[1].message
    assert len(server.log) == 4 and server.ranges()[1:] == [f"bytes={len(DATA) // 3}-"] * 3
    assert (tmp_path / f"{NAME}.part").stat().st_size == len(DATA) // 3
    assert not (tmp_path / NAME).exists()


def test_retries_that_advance_are_bounded_in_all(server, tmp_path, monkeypatch):
    monkeypatch.setattr(download_module, "MAX_RETRIES_TOTAL", 3)
    server.drop_at = 100_000  # resumable, but each try brings only 100 kB
    notices = []
    with pytest.raises(DownloadError) as caught:
        download(server.url, tmp_path, on_retry=notices.append)
    assert "failed after 3 retries (at most 3 retries in all)" in caught.value.message
    assert "400,000 of" in caught.value.message
    assert "resume from the .part file" in caught.value.hint
    assert len(notices) == 3 and all(n.wait_s == 0 for n in notices)  # progress resets the back-off
    assert len(server.log) == 4


def test_retries_are_bounded_in_time(server, tmp_path, monkeypatch):
    monkeypatch.setattr(download_module, "RETRY_WINDOW_S", 0.0)
    server.drop_at = 100_000
    with pytest.raises(DownloadError, match=r"failed after 0 retries \(no progress for"):
        download(server.url, tmp_path)
    assert len(server.log) == 1


def test_back_off_doubles_per_retry_without_progress(server, tmp_path, monkeypatch):
    monkeypatch.setattr(download_module, "BACKOFF_BASE_S", 0.001)
    monkeypatch.setattr(download_module, "BACKOFF_MAX_S", 0.004)
    server.support_range, server.drop_at = False, 1000
    notices = []
    with pytest.raises(DownloadError):
        download(server.url, tmp_path, retries=4, on_retry=notices.append)
    assert [n.wait_s for n in notices] == [0.001, 0.002, 0.004, 0.004]


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
    assert "cannot connect" in caught.value.message and "nothing received" in caught.value.message
    assert "--archive" in caught.value.hint and "check the URL" in caught.value.hint


@pytest.mark.parametrize("timeout", [0, -1.0])
def test_timeout_must_be_positive(tmp_path, timeout):
    with pytest.raises(ConfigError, match="timeout"):
        download("http://127.0.0.1:9/x.zip", tmp_path, timeout=timeout)


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
