"""The cache a model reads: found, or built when missing, at the model's size and fit.

``open_or_build_cache`` opens (or, on rank 0 only, builds) the cache for a
dataset at a size and fit; ``locate_cache`` finds the one a trained model
should be evaluated on, from what its run recorded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from muracli.errors import ConfigError, DataError
from muracli.progress import ProgressFn
from muracli.runtime import distributed
from muracli.runtime.distributed import World

if TYPE_CHECKING:
    from muracli.data.cache import Cache
    from muracli.runtime.checkpoint import LoadedModel


def open_or_build_cache(
    *,
    data: str | Path | None = None,
    cache: str | Path | None = None,
    size: int,
    fit: str = "pad",
    world: World = World(),
    progress: ProgressFn | None = None,
    manifest: str | Path | None = None,
    body_parts: list[str] | None = None,
):
    """The cache at ``cache``, else the one for (``data`` or ``manifest``, ``size``, ``fit``), built if missing.

    For a run of some ``body_parts`` the cache of the whole dataset serves
    when it is there; else the cache of only those parts is opened or built
    (less to decode). Under DDP only rank 0 builds; the others wait at a
    barrier and then open it.
    """
    from muracli.data.cache import MANIFEST_NAME, default_cache_dir, open_cache
    from muracli.data.cache_build import build_cache

    if cache:
        opened = open_cache(Path(cache))
        if opened.size != size:
            raise ConfigError(
                f"the cache at {cache} holds {opened.size} px images but {size} px are needed",
                f"omit --image-size to use the cache's size, or run `mura preprocess --size {size}`",
            )
        return opened
    from muracli.data.dataset import read_dataset

    layout = read_dataset(data, manifest=manifest)
    path = default_cache_dir(layout, size, fit)
    if body_parts is not None and not (path / MANIFEST_NAME).is_file():
        layout = layout.restricted(body_parts)
        path = default_cache_dir(layout, size, fit)
    if world.is_main:
        try:
            opened = open_cache(path)
        except DataError:
            opened = build_cache(layout=layout, size=size, fit=fit, out=path, progress=progress)
    distributed.barrier(world)
    if not world.is_main:
        opened = open_cache(path)
    return opened



def locate_cache(
    loaded: "LoadedModel",
    *,
    data: Path | str | None = None,
    cache: Path | str | None = None,
    notes: list[str] | None = None,
    progress: ProgressFn | None = None,
    manifest: Path | str | None = None,
    body_parts: list[str] | None = None,
) -> "Cache":
    """The cache to evaluate ``loaded`` on, at its image size and fit.

    In order: ``cache`` (must hold the checkpoint's image size); ``data`` or
    ``manifest``; the cache the run was trained on, if it still exists at the
    right size and fit (and holds ``body_parts``); the dataset it was trained
    on (a MURA folder or a manifest), if it is still there; finally
    ``$MURA_DATA`` / ``./data``. Caches are found or built by
    ``open_or_build_cache`` (for ``body_parts``: see there).
    """
    from muracli.data.cache import open_cache
    from muracli.runtime.caches import open_or_build_cache

    notes = notes if notes is not None else []
    size, fit = loaded.image_size, loaded.fit
    if cache is not None:
        opened = open_cache(Path(cache))
        if opened.size != size:
            raise ConfigError(
                f"the cache at {cache} holds {opened.size} px images but the model in {loaded.path} takes {size} px",
                f"pass a cache built with `mura preprocess --size {size} --fit {fit}`, or --data to find or build one",
            )
        if opened.fit != fit:
            notes.append(f"the cache at {opened.path} was made with --fit {opened.fit}; the model was trained on --fit {fit}")
        return opened
    if data is not None or manifest is not None:
        return open_or_build_cache(data=data, manifest=manifest, size=size, fit=fit, progress=progress,
                                   body_parts=body_parts)

    recorded_caches, recorded_data = _recorded_sources(loaded)
    for candidate in recorded_caches:
        if not candidate.is_dir():
            continue
        try:
            opened = open_cache(candidate)
        except DataError:
            continue
        if opened.size == size and opened.fit == fit and _holds(opened, body_parts):
            return opened
    for candidate in recorded_data:
        if candidate.is_file():  # a manifest (a MURA dataset is a folder)
            return open_or_build_cache(manifest=candidate, size=size, fit=fit, progress=progress, body_parts=body_parts)
        if candidate.exists():
            return open_or_build_cache(data=candidate, size=size, fit=fit, progress=progress, body_parts=body_parts)
    if recorded_caches or recorded_data:
        notes.append("the data this run was trained on is gone; using $MURA_DATA or ./data")
    return open_or_build_cache(data=None, size=size, fit=fit, progress=progress, body_parts=body_parts)


def _holds(cache: "Cache", body_parts: list[str] | None) -> bool:
    """Whether ``cache`` has every image of ``body_parts`` (None: of every body part)."""
    if cache.body_parts is None:
        return True
    return body_parts is not None and set(body_parts) <= set(cache.body_parts)


def _recorded_sources(loaded: "LoadedModel") -> tuple[list[Path], list[Path]]:
    """Caches and datasets (MURA folders, manifest files) the run was trained on: from
    the run's config.json (``data.cache``, ``data.root``) and the checkpoint's config
    (``cache``, ``manifest``, ``data``)."""
    caches: list[Path] = []
    roots: list[Path] = []
    record = _run_record(loaded.path.parent)
    recorded = record.get("data") if isinstance(record.get("data"), dict) else {}
    config = loaded.checkpoint.get("config")
    config = config if isinstance(config, dict) else {}
    for value in (recorded.get("cache"), config.get("cache")):
        if isinstance(value, str) and value and Path(value) not in caches:
            caches.append(Path(value))
    for value in (recorded.get("root"), config.get("manifest"), config.get("data")):
        if isinstance(value, str) and value and Path(value) not in roots:
            roots.append(Path(value))
    return caches, roots


def _run_record(folder: Path) -> dict[str, Any]:
    """The run's config.json next to the checkpoint, or {} when there is none."""
    try:
        record = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}
