"""Public names of a package that load their module on first use (PEP 562).

A package whose modules are heavy (gRPC, OpenTelemetry, prometheus-client) keeps its face
light this way: ``from ccotel.traces import ids`` loads only ``ids``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def loader(package: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__``: each public name -> the module (within ``package``) that
    holds it; a name that is the module's own name is the module."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = importlib.import_module(f"{package}.{module}")
        return value if name == module else getattr(value, name)

    return __getattr__
