"""Package attributes loaded on first use (PEP 562), so that importing one light module of a package
does not import the heavy ones beside it (an audit never needs SQLAlchemy, an extraction worker never
needs the HTTP client)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(package: str, modules: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports ``modules[name]`` when ``name`` is first asked.

    Args:
        package: The package's ``__name__`` (for the error message).
        modules: Attribute name -> the module that defines it.

    Returns:
        The function to assign to the package's ``__getattr__``.
    """

    def __getattr__(name: str) -> Any:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
