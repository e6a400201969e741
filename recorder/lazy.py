"""Packages whose public names load on first use (PEP 562): ``import recorder`` and
``import queries`` stay cheap, so a console script starts at once and imports only what its
command needs."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_attributes(package: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) loading each public name of ``package`` from the
    submodule ``names`` gives for it on first use, so importing the package stays cheap."""

    def attribute(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{names[name]}"), name)
        setattr(sys.modules[package], name, value)
        return value

    return attribute
