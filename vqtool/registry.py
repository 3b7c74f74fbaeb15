"""The model families vqtool knows, in one place: the only shared module that names them.

A family is a package under ``vqtool/families/`` whose ``__init__.py`` declares a `Family` (no heavy
imports there: the CLI reads these declarations to build its help without importing torch). Its
other modules are found by convention: ``cli.py`` (``register(app, train_app)``), ``card.py``
(``CARDS`` and optionally ``info_lines``) and, for a family whose checkpoints read and write `.vqc`
records, ``codec.py``. docs/adding-a-family.md is the guide.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import NamedTuple

from .errors import VqtoolError

# one line per family, in the order their commands appear in `vqtool --help`
FAMILY_PACKAGES = [
    "vqtool.families.image",
    "vqtool.families.speech",
    "vqtool.families.fader",
    "vqtool.families.classifier",
    "vqtool.families.motion",
    "vqtool.families.caption",
    "vqtool.families.text",
    "vqtool.families.dynamics",
]


class Media(NamedTuple):
    """A `.vqc` media kind a family reads and writes."""

    architecture: str | tuple[str, ...]  # the checkpoint architecture(s) that read and write its records
    default_model: str  # what `vqtool encode` uses without --model


@dataclass(frozen=True)
class Family:
    name: str
    package: str
    # architecture name written in checkpoints -> "module:Class" (a module without a dot is the family's own)
    architectures: dict[str, str]
    # .vqc media kind ("image", "audio") -> Media
    media: dict[str, Media] = field(default_factory=dict)
    # metrics `vqtool models list` shows for its checkpoints
    headline_metrics: tuple[str, ...] = ()

    def module(self, name: str):
        """One of the family's modules (`cli`, `card`, `codec`, ...), imported on first use."""
        return importlib.import_module(f"{self.package}.{name}")


_extra: list[Family] = []  # families registered at run time (the tests' dummy family)
_declared: list[Family] | None = None


def register(family: Family) -> None:
    """Add a family from outside the package (a plug-in, or a test); later ones win on a name clash."""
    _extra.append(family)


def unregister(family: Family) -> None:
    _extra.remove(family)


def families() -> list[Family]:
    global _declared
    if _declared is None:
        _declared = [importlib.import_module(package).FAMILY for package in FAMILY_PACKAGES]
    return _declared + _extra


def architectures() -> dict[str, tuple[Family, str]]:
    """Architecture name -> (family, "module:Class")."""
    return {arch: (family, target) for family in families() for arch, target in family.architectures.items()}


def architecture_class(name: str):
    known = architectures()
    if name not in known:
        raise VqtoolError(f"unknown architecture '{name}' (this vqtool knows {', '.join(known)})")
    family, target = known[name]
    module, cls = target.split(":")
    return getattr(importlib.import_module(module if "." in module else f"{family.package}.{module}"), cls)


def family_of(architecture: str) -> Family | None:
    entry = architectures().get(architecture)
    return entry[0] if entry else None


def for_media(kind: str) -> Family:
    """The family whose codec reads and writes records of this media kind."""
    for family in reversed(families()):
        if kind in family.media:
            return family
    raise VqtoolError(f"no model family reads '{kind}' records")


def headline_metrics() -> set[str]:
    return {metric for family in families() for metric in family.headline_metrics}
