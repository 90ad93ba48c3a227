"""Lazy package faces: a face hands on its package's names, and loads the module that holds one on first use.

A face that imported every module of its package would make each command pay for all of them: ``validate``
would load the runner, the HTTP client and tenacity only to read a file and judge its rows. So a face lists
where each name lives; Python asks the face's module ``__getattr__`` (PEP 562) for a name it does not hold
yet, and that imports the one module. The face also imports the same names under ``TYPE_CHECKING``, so the
type checker and the import rules' test (``tests/product/test_architecture.py``) see every edge as before.

A name that is also the name of one of the package's modules (``runner.launch``) cannot be lazy: loading the
module would set the module as that attribute, and the face would never be asked. Such a face imports it at
the top, as before; ``lazy_face`` refuses it in the map.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_face"]


def lazy_face(
    face: str, homes: Mapping[str, str], *, within: str | None = None
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of the module ``face``: ``homes`` maps each module to the names it holds.

    The names are one string, apart by spaces. The modules are ``face``'s own (a package's); with ``within``,
    that package's (``api`` hands on the faces of the floors below it). A name handed on under another is
    written ``name=attribute`` (``serve_sandbox=serve``).
    """
    home_of = {
        name.partition("=")[0]: (module, name.partition("=")[2] or name)
        for module, names in homes.items()
        for name in names.split()
    }
    package = within or face
    clashes = sorted(set(home_of) & set(homes)) if within is None else []
    if clashes:
        raise ValueError(f"{face}: {clashes} name modules of the package too; import them eagerly")

    def __getattr__(name: str) -> Any:  # noqa: N807 - the name Python asks a module for
        if name not in home_of:
            raise AttributeError(f"module {face!r} has no attribute {name!r}")
        module, attribute = home_of[name]
        value = getattr(importlib.import_module(f"{package}.{module}"), attribute)
        # Kept on the face: later look-ups find it at once, as an eager face's would.
        setattr(sys.modules[face], name, value)
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted(set(vars(sys.modules[face])) | set(home_of))

    return __getattr__, __dir__
