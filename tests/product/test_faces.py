"""The lazy faces (``batch_engage/faces.py``): every name a face hands on is there when asked for, as before."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest

from batch_engage.faces import lazy_face

PACKAGE = Path(__file__).resolve().parents[2] / "batch_engage"
FACES = [
    "batch_engage.api",
    *sorted(
        ".".join(("batch_engage", *init.parent.relative_to(PACKAGE).parts)) for init in PACKAGE.rglob("__init__.py")
    ),
]


@pytest.mark.parametrize("face", FACES)
def test_every_name_of_a_face_is_the_object_it_names(face: str) -> None:
    """Each name in a face's ``__all__`` is found (loaded on first use where the face is lazy), never a module."""
    module = importlib.import_module(face)
    for name in getattr(module, "__all__", []):
        value = getattr(module, name)
        assert not isinstance(value, ModuleType), f"{face}.{name} is a module"


def test_a_lazy_name_that_is_also_a_module_is_refused() -> None:
    """Loading ``runner.launch`` would set the module as the name ``launch``: such a name must be imported eagerly."""
    with pytest.raises(ValueError, match="launch"):
        lazy_face("batch_engage.runner", {"launch": "Launch launch"})


def test_an_unknown_name_is_an_attribute_error() -> None:
    """A name no module holds is an ``AttributeError``, so ``getattr(face, name, default)`` and ``hasattr`` work."""
    getattr_, _ = lazy_face("batch_engage.runner", {"job": "run_job"})
    with pytest.raises(AttributeError, match="no_such_name"):
        getattr_("no_such_name")
