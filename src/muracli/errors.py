"""The project's exceptions.

The core raises these with a message a user can act on; the CLI maps them to
one ``Error: ...`` line, an optional hint and an exit code in one place
(``muracli.cli.app.main``). Exit codes follow click: 2 for bad input or
usage, 1 for anything else that failed.
"""

from __future__ import annotations


class MuraError(Exception):
    """Base class: a failure the user can understand without a traceback."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class DataError(MuraError):
    """The dataset, a cache or an input file is missing or unusable."""

    exit_code = 2


class ImageReadError(MuraError):
    """One image could not be decoded; ``reason`` is a short machine-readable tag."""

    exit_code = 2

    def __init__(self, message: str, reason: str, hint: str | None = None):
        super().__init__(message, hint)
        self.reason = reason


class ArchiveError(MuraError):
    """An archive is unsafe (traversal, absolute path, link) or not a MURA archive."""

    exit_code = 2


class DownloadError(MuraError):
    """A download failed (network, server, checksum)."""

    exit_code = 1


class ChecksumError(DownloadError):
    """The downloaded bytes do not match the expected SHA-256."""


class CheckpointError(MuraError):
    """A checkpoint is corrupt, of another format version, or unsafe to load."""

    exit_code = 2


class DeviceError(MuraError):
    """The requested device (e.g. ``--gpu``) is not available."""

    exit_code = 2


class ConfigError(MuraError):
    """Options that cannot work together, or a value out of range."""

    exit_code = 2


class TrainingInterrupted(MuraError):
    """Training stopped on a signal after saving ``last.pt``.

    ``exit_code`` is 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM).
    """

    def __init__(self, message: str, signal_number: int, hint: str | None = None):
        super().__init__(message, hint)
        self.exit_code = 128 + signal_number
