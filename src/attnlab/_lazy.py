"""Lazy package exports: a name is imported from its module on first access (PEP 562)."""

from __future__ import annotations


def exports(package: str, where: dict[str, str]):
    """A module-level `__getattr__` for `package` that imports `where[name]` (a module path) on first use."""

    def __getattr__(name: str):
        if name in where:
            import importlib

            return getattr(importlib.import_module(where[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
