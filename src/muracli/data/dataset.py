"""The dataset a command works on: MURA under ``--data``, or the images a ``--manifest`` lists.

Both give the same ``MuraLayout`` (images and studies tables, problems,
fingerprint, the base folder of the default cache), so stats, the cache
builder, training and evaluation have one code path.
"""

from __future__ import annotations

import os

from muracli.data.layout import MuraLayout, read_layout
from muracli.errors import ConfigError


def read_dataset(
    data: str | os.PathLike[str] | None = None,
    *,
    manifest: str | os.PathLike[str] | None = None,
    scan_disk: bool = True,
) -> MuraLayout:
    """``read_manifest(manifest)`` when a manifest is given, else ``read_layout(data)``."""
    check_one_source(data, manifest)
    if manifest is None:
        return read_layout(data, scan_disk=scan_disk)
    from muracli.data.manifest import read_manifest

    return read_manifest(manifest)


def check_one_source(data: object, manifest: object) -> None:
    """A ``ConfigError`` when both a MURA folder and a manifest are given."""
    if data is not None and manifest is not None:
        raise ConfigError("--data and --manifest both given", "use one: --data for MURA, --manifest FILE.csv for your own images")
