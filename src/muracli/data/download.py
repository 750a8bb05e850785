"""Resumable HTTP(S) download with SHA-256 verification (`mura download --url`).

MURA is one ~3 GB zip behind a signed link, so a download must survive a
dropped connection and a Ctrl-C without starting over:

* bytes stream into ``<name>.part``; a later run (or a retry after a dropped
  connection) asks the server for the rest with ``Range: bytes=N-``;
* a server that ignores ``Range`` (200 instead of 206) makes us start the part
  again from zero, and a 416 means the part already holds the whole file;
* only a complete file that passed its checksum is renamed (atomically, after
  fsync) to its final name, so a file with the final name is always whole;
* retries are bounded three ways, so a server that drops every transfer gives
  up in words instead of trying for ever: ``retries`` tries in a row that get
  the part no further than it ever was, ``MAX_RETRIES_TOTAL`` in all, and none
  starts more than ``RETRY_WINDOW_S`` after the part last grew. Pauses double
  from ``BACKOFF_BASE_S`` up to ``BACKOFF_MAX_S``. Bytes a server sends again
  from the start (it ignores ``Range``) are not progress.

A file that fails its checksum is renamed to ``<name>.bad``: it is never
used, a later run does not resume from it, and the user can still look at it
(an expired signed link often returns an HTML page instead of the zip).

Only the standard library is used (urllib), so proxies from ``https_proxy``
and friends work as usual.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from muracli import __version__
from muracli.errors import ChecksumError, ConfigError, DownloadError
from muracli.files import fsync_dir
from muracli.progress import ProgressFn, silent

CHUNK_SIZE = 1 << 20
BACKOFF_BASE_S = 0.5  # first pause before a retry; doubles per retry without progress (tests set it to 0)
BACKOFF_MAX_S = 8.0
RETRIES = 5  # retries in a row that bring the part no further, by default
MAX_RETRIES_TOTAL = 30  # retries in all, however much each one brought
RETRY_WINDOW_S = 300.0  # no retry starts this long after the part last grew
TIMEOUT_S = 30.0  # connect and read timeout: seconds without a byte before a try counts as failed
MAX_RESTARTS = 4  # immediate re-requests (server renamed the file, stale part, ...) per download
FALLBACK_NAME = "download.bin"
USER_AGENT = f"mura/{__version__} (muracli; Python urllib)"

LICENCE_HINT = (
    "MURA is only distributed after accepting Stanford's research-use agreement: use the signed "
    "link from Stanford (signed links expire), or download MURA-v1.1.zip in a browser and run "
    "`mura download --archive MURA-v1.1.zip`"
)
NETWORK_HINT = (
    "check the URL and your network connection (the download resumes where it stopped), or "
    "download the file in a browser and run `mura download --archive FILE`"
)

# Errors that mean "the connection broke"; reading a response only does network I/O,
# so any OSError there (reset, timeout, URLError) is a network failure worth retrying.
_NETWORK_ERRORS = (OSError, http.client.HTTPException)
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_CONTENT_RANGE_RE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$")
_UNSATISFIED_RANGE_RE = re.compile(r"^bytes\s+\*/(\d+)$")


@dataclass(frozen=True)
class RetryNotice:
    """One retry about to happen, for ``download``'s ``on_retry`` callback.

    ``number`` counts retries from 1; ``reason`` says what failed; ``wait_s``
    is the pause before the retry; ``held`` the bytes the part file holds and
    ``total`` the file's size when the server said it.
    """

    number: int
    reason: str
    wait_s: float
    held: int
    total: int | None
    part: Path

    @property
    def message(self) -> str:
        return f"{self.reason}; retry {self.number} in {self.wait_s:.1f} s"


def download(
    url: str,
    dest_dir: str | os.PathLike,
    *,
    sha256: str | None = None,
    retries: int = RETRIES,
    timeout: float = TIMEOUT_S,
    progress: ProgressFn | None = None,
    filename: str | None = None,
    on_retry: Callable[[RetryNotice], None] | None = None,
) -> Path:
    """Download ``url`` into ``dest_dir`` and return the path of the complete file.

    The name is ``filename``, else the server's Content-Disposition, else the
    last segment of the URL path (``download.bin`` if that is empty). An
    existing ``<name>.part`` is resumed with a Range request. A broken
    connection is retried after a back-off, resuming from what was written;
    ``retries`` bounds the retries in a row that get the part no further than
    it ever was, so a long download over a flaky link keeps going as long as
    it advances (within ``MAX_RETRIES_TOTAL`` and ``RETRY_WINDOW_S``), and a
    server that sends the same first bytes again and again does not.
    ``timeout``: seconds to connect, and without a byte while reading.
    ``on_retry`` is called with a ``RetryNotice`` before each pause.

    With ``sha256`` the file is verified (a resumed part is hashed first); a
    mismatch raises :class:`ChecksumError` and leaves the bytes in
    ``<name>.bad``. A part that came from an earlier run gets one fresh
    download before that verdict, since it may belong to another version of
    the file. An existing final file is kept, without downloading, when it
    matches ``sha256`` or, with no checksum, the size the server announces.

    Progress: ``progress("download <name>", bytes_done, total_bytes_or_None)``.
    Raises :class:`DownloadError` (network, HTTP status, disk; after the last
    retry it names the URL, the bytes kept and how to resume) and
    :class:`ConfigError` (invalid URL, checksum string, retries or timeout).
    """
    _check_url(url)
    if retries < 0:
        raise ConfigError(f"retries must be >= 0, got {retries}")
    if not timeout > 0:
        raise ConfigError(f"timeout must be a positive number of seconds, got {timeout}")
    if filename is not None and _safe_name(filename) != filename:
        raise ConfigError(f"invalid file name {filename!r}", "give a plain name without folders")
    dest = Path(dest_dir)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create {dest}: {exc.strerror or exc}") from exc
    transfer = _Transfer(
        url=url,
        dest=dest,
        name=filename,
        expected=_parse_sha256(sha256),
        timeout=timeout,
        report=progress or silent,
        on_retry=on_retry,
    )
    return transfer.run(retries)


class _Retry(Exception):
    """A transient failure: pause, then try again from what the part holds."""

    def __init__(self, message: str, total: int | None = None):
        super().__init__(message)
        self.total = total


class _Restart(Exception):
    """Ask again at once (new name learnt, part discarded); not a failure."""


@dataclass
class _Transfer:
    url: str
    dest: Path
    name: str | None  # pinned at the first response (or given by the caller)
    expected: str | None
    timeout: float
    report: ProgressFn
    on_retry: Callable[[RetryNotice], None] | None = None
    resumed: bool = False  # the current part holds bytes from an earlier attempt or run
    fresh_retry_used: bool = False
    checked_finals: set[Path] = field(default_factory=set)
    ignored_range: bool = False  # the server answered a Range request with the whole file

    def run(self, retries: int) -> Path:
        # Offline fast path: a final file that already matches the checksum needs no network.
        guess = self.dest / (self.name or _name_from_url(self.url))
        if self._final_is_complete(guess, total=None):
            return guess
        restarts = 0
        budget = _RetryBudget(retries, furthest=_size(self._part()))
        while True:
            try:
                return self._attempt()
            except _Restart:
                restarts += 1
                if restarts > MAX_RESTARTS:
                    raise DownloadError(
                        f"{_display_url(self.url)}: the server keeps answering inconsistently",
                        NETWORK_HINT,
                    ) from None
            except _Retry as exc:
                part = self._part()
                held = _size(part)
                stop = budget.failed(held)
                if stop:
                    raise self._given_up(exc, stop, budget.retried, part, held) from None
                notice = RetryNotice(budget.retried, str(exc), budget.wait_s(), held, exc.total, part)
                if self.on_retry is not None:
                    self.on_retry(notice)
                time.sleep(notice.wait_s)

    def _part(self) -> Path:
        return self.dest / f"{self.name or _name_from_url(self.url)}.part"

    def _given_up(self, exc: _Retry, why: str, retried: int, part: Path, held: int) -> DownloadError:
        """The final error: what failed, the URL, the bytes kept, and how to go on."""
        tries = f"{retried} {'retry' if retried == 1 else 'retries'}"
        kept = f"{_bytes(held, exc.total)} kept in {part}" if held else "nothing received"
        message = f"download of {_display_url(self.url)} failed after {tries} ({why}): {exc}; {kept}"
        if self.ignored_range:
            hint = ("the server ignores resume (Range) requests, so every try starts from zero; run the same "
                    "command later or on another network, or download the file in a browser and run "
                    "`mura download --archive FILE`")
        elif not held:
            hint = NETWORK_HINT
        else:
            hint = ("run the same command again to resume from the .part file (--retries and --timeout allow "
                    "more patience), or download the file in a browser and run `mura download --archive FILE`")
        return DownloadError(message, hint)

    def _attempt(self) -> Path:
        name = self.name or _name_from_url(self.url)
        part = self.dest / f"{name}.part"
        offset = _size(part)
        try:
            response = _open(self.url, offset, self.timeout)
        except urllib.error.HTTPError as exc:
            exc.close()  # only the status and headers matter, not the error page
            if exc.code == 416 and offset:
                self.name = name
                return self._range_not_satisfiable(exc, part, offset)
            raise _http_failure(exc, self.url) from None
        except (ValueError, http.client.InvalidURL) as exc:
            raise ConfigError(f"invalid URL {_display_url(self.url)}: {exc}") from None
        except _NETWORK_ERRORS as exc:
            raise _connect_failure(exc, self.url) from None

        with response:
            if self.name is None:
                self.name = _safe_name(response.headers.get_filename() or "") or name
                if self.name != name:
                    # The server names the file: its own .part (if any) is the one to resume,
                    # and the Range we just sent referred to another file's part.
                    if offset or _size(self.dest / f"{self.name}.part"):
                        raise _Restart()
                    part = self.dest / f"{self.name}.part"
            final = self.dest / self.name

            if response.status == 206:
                start, total = _parse_content_range(response.headers.get("Content-Range"))
                if start != offset:
                    # A range we did not ask for: appending it would corrupt the file.
                    part.unlink(missing_ok=True)
                    raise _Restart()
            elif response.status == 200:
                # Full body: either we sent no Range or the server ignores it.
                self.ignored_range = self.ignored_range or offset > 0
                offset, total = 0, _content_length(response)
            else:
                raise DownloadError(
                    f"unexpected HTTP {response.status} {response.reason} from {_display_url(self.url)}",
                    NETWORK_HINT,
                )
            if self._final_is_complete(final, total):
                part.unlink(missing_ok=True)  # a leftover from an older run; the final file wins
                return final
            return self._stream(response, part, final, offset, total)

    def _stream(self, response, part: Path, final: Path, offset: int, total: int | None) -> Path:
        hasher = hashlib.sha256() if self.expected else None
        if offset and hasher is not None:
            _hash_file_into(part, hasher)  # the checksum covers the whole file, not just this attempt
        self.resumed = offset > 0
        task = f"download {final.name}"
        done = reported = offset
        self.report(task, done, total)
        try:
            out = open(part, "ab" if offset else "wb")  # "wb" truncates a part the server won't resume
        except OSError as exc:
            raise _disk_failure(exc, part) from None
        with out:
            while True:
                try:
                    # read1 returns what has arrived: a broken connection loses no bytes that
                    # reached us, whereas read(n) discards a partly filled chunk.
                    chunk = response.read1(CHUNK_SIZE)
                except _NETWORK_ERRORS as exc:
                    raise _Retry(
                        f"connection to {_host(self.url)} lost after {_bytes(done, total)}: {_reason(exc)}", total
                    ) from None
                if not chunk:
                    break
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise _disk_failure(exc, part) from None
                if hasher is not None:
                    hasher.update(chunk)
                done += len(chunk)
                if done - reported >= CHUNK_SIZE or done == total:
                    self.report(task, done, total)
                    reported = done
            # http.client returns b"" (no exception) when the server closes early, so a
            # short body is only visible by comparing with the announced length.
            if total is not None and done < total:
                raise _Retry(f"connection to {_host(self.url)} closed after {_bytes(done, total)}", total)
            try:
                out.flush()
                os.fsync(out.fileno())
            except OSError as exc:
                raise _disk_failure(exc, part) from None
        return self._finish(part, final, hasher)

    def _range_not_satisfiable(self, exc: urllib.error.HTTPError, part: Path, offset: int) -> Path:
        """416: our part is at or past the end of the file."""
        final = self.dest / self.name
        match = _UNSATISFIED_RANGE_RE.match((exc.headers.get("Content-Range") or "").strip())
        total = int(match.group(1)) if match else None
        complete = total == offset
        hasher = None
        if self.expected and (complete or total is None):
            hasher = hashlib.sha256()
            _hash_file_into(part, hasher)
            complete = complete or hasher.hexdigest() == self.expected
        if not complete:
            # Longer than the file (or of unknown size and wrong): start again from zero.
            part.unlink(missing_ok=True)
            raise _Restart()
        # An earlier run received every byte but stopped before the rename.
        self.resumed = True
        self.report(f"download {final.name}", offset, offset)
        return self._finish(part, final, hasher)

    def _finish(self, part: Path, final: Path, hasher) -> Path:
        if hasher is not None:
            actual = hasher.hexdigest()
            if actual != self.expected:
                if self.resumed and not self.fresh_retry_used:
                    # Bytes from an earlier run may belong to another version of the file;
                    # one clean download decides whether the checksum or the part was wrong.
                    self.fresh_retry_used = True
                    self.resumed = False
                    part.unlink(missing_ok=True)
                    raise _Restart()
                bad = final.with_name(f"{final.name}.bad")
                os.replace(part, bad)
                raise ChecksumError(
                    f"SHA-256 mismatch for {final.name}: expected {self.expected}, got {actual}",
                    f"the bytes were moved to {bad}; check the --sha256 value and the URL (an expired "
                    "or wrong link often returns an HTML page instead of the zip)",
                )
        try:
            os.replace(part, final)  # atomic: a file with the final name is always complete
        except OSError as exc:
            raise _disk_failure(exc, final) from None
        fsync_dir(final.parent)
        return final

    def _final_is_complete(self, final: Path, total: int | None) -> bool:
        """Whether an existing final file can be kept instead of downloading."""
        if not final.is_file():
            return False
        if self.expected:
            if final in self.checked_finals:  # hash a multi-GB file once, not once per attempt
                return False
            self.checked_finals.add(final)
            return _sha256_of(final) == self.expected
        return total is not None and final.stat().st_size == total


class _RetryBudget:
    """When to give up retrying: too many retries in a row without progress, in all, or for too long.

    Progress means the part file ends past the furthest point it ever
    reached, so bytes a server sends again from the start do not count.
    """

    def __init__(self, retries: int, *, furthest: int):
        self.retries = retries
        self.furthest = furthest
        self.retried = 0  # retries so far
        self.stale = 0  # retries in a row that failed without progress
        self.attempts = 0
        self.since = time.monotonic()  # when the part last grew (or the download began)

    def failed(self, held: int) -> str | None:
        """Record a failed try that left ``held`` bytes; why to stop, or None to retry."""
        if held > self.furthest:
            self.furthest, self.stale, self.since = held, 0, time.monotonic()
        elif self.attempts:  # a retry that got nowhere (the first try is not a retry)
            self.stale += 1
        self.attempts += 1
        if self.stale >= self.retries:
            return f"the last {self.stale} got no further" if self.stale else "no retries allowed"
        if self.retried >= MAX_RETRIES_TOTAL:
            return f"at most {MAX_RETRIES_TOTAL} retries in all"
        waited = time.monotonic() - self.since
        if waited + self.wait_s() > RETRY_WINDOW_S:
            return f"no progress for {waited:.0f} s"
        self.retried += 1
        return None

    def wait_s(self) -> float:
        return min(BACKOFF_BASE_S * 2**self.stale, BACKOFF_MAX_S)


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    # urllib keeps the Range header across redirects (signed links often redirect to a CDN).
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _http_failure(exc: urllib.error.HTTPError, url: str) -> Exception:
    """The exception to raise for an HTTP error status: final, or worth a retry."""
    where = _display_url(url)
    meaning = {401: "authentication required", 403: "access denied", 404: "not found", 410: "gone"}
    if exc.code in meaning:
        return DownloadError(f"HTTP {exc.code} ({meaning[exc.code]}) for {where}", LICENCE_HINT)
    if exc.code in (408, 429) or exc.code >= 500:
        return _Retry(f"HTTP {exc.code} {exc.reason} from {_host(url)}")
    return DownloadError(f"HTTP {exc.code} {exc.reason} for {where}", NETWORK_HINT)


def _connect_failure(exc: BaseException, url: str) -> Exception:
    reason = getattr(exc, "reason", exc)  # URLError wraps the socket-level error
    host = _host(url)
    if isinstance(reason, socket.gaierror):
        # A name that does not resolve now will not resolve in two seconds either.
        return DownloadError(f"cannot resolve host {host} ({_reason(reason)})", NETWORK_HINT)
    if isinstance(reason, ssl.SSLCertVerificationError):
        return DownloadError(
            f"TLS certificate of {host} could not be verified: {reason.verify_message}",
            "check the URL; behind a corporate proxy set SSL_CERT_FILE to its CA bundle",
        )
    return _Retry(f"cannot connect to {host}: {_reason(reason)}")


def _disk_failure(exc: OSError, path: Path) -> DownloadError:
    return DownloadError(
        f"cannot write {path}: {exc.strerror or exc}",
        "check free space and permissions; the download resumes from the .part file",
    )


def _check_url(url: str) -> None:
    try:
        parsed = urllib.parse.urlsplit(url)
        parsed.port  # raises ValueError for a malformed port
    except ValueError as exc:
        raise ConfigError(f"invalid URL {url!r}: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(
            f"not an http(s) URL: {_display_url(url)}",
            "give an https://... link, or use `mura download --archive FILE` for a local file",
        )


def _parse_sha256(value: str | None) -> str | None:
    if value is None:
        return None
    digest = value.strip().lower().removeprefix("sha256:")
    if not _SHA256_RE.match(digest):
        raise ConfigError(
            f"invalid SHA-256 {value!r}: expected 64 hexadecimal characters",
            "copy the checksum exactly, e.g. from `sha256sum MURA-v1.1.zip`",
        )
    return digest


def _parse_content_range(value: str | None) -> tuple[int, int | None]:
    """``bytes START-END/TOTAL`` -> (START, TOTAL or None)."""
    match = _CONTENT_RANGE_RE.match((value or "").strip())
    if not match:
        raise _Retry(f"the server sent a partial response with a bad Content-Range {value!r}")
    total = match.group(3)
    return int(match.group(1)), None if total == "*" else int(total)


def _content_length(response) -> int | None:
    try:
        length = int(response.headers.get("Content-Length", ""))
    except ValueError:
        return None
    return length if length >= 0 else None


def _safe_name(raw: str) -> str | None:
    """The last path segment of ``raw``, or None if nothing usable is left.

    A server-chosen name must never pick the folder: ``../../.bashrc`` becomes ``.bashrc``
    and control characters are dropped.
    """
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    return None if name in ("", ".", "..") else name


def _name_from_url(url: str) -> str:
    path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
    return _safe_name(path) or FALLBACK_NAME


def _display_url(url: str) -> str:
    """The URL without credentials or query: signed links carry secrets there."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    shown = f"{parts.scheme}://{host}{parts.path}" if parts.scheme else url.split("?", 1)[0]
    return shown + ("?…" if parts.query else "")


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).hostname or url


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _bytes(done: int, total: int | None) -> str:
    return f"{done:,} of {total:,} bytes" if total is not None else f"{done:,} bytes"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _hash_file_into(path: Path, hasher) -> None:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            hasher.update(chunk)


def _sha256_of(path: Path) -> str:
    hasher = hashlib.sha256()
    _hash_file_into(path, hasher)
    return hasher.hexdigest()


