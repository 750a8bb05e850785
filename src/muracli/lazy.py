"""Package attributes that import their module on first use.

``muracli.models`` and ``muracli.predict`` export names whose modules pull in
torch; the CLI imports those packages for their torch-free parts, so the
heavy names are resolved only when something touches them.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(package: str, modules: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``modules[name]`` is the module
    that defines ``name``; it is imported on first access and the value cached
    on the package."""

    def __getattr__(name: str) -> Any:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
