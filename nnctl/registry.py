"""One registry type for every named family (layers, activations, initializers, losses, ...).

Names match case-, underscore- and hyphen-insensitively (``HeNormal`` = ``he_normal``); aliases
(Keras's other spellings) resolve to the same entry as the canonical name. Registering a name twice is
an error at import time; a miss raises ``UnknownName`` listing the known names and the closest one.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

#: every registry by family name, so a spec field can name the family its value comes from
FAMILIES: dict[str, Registry] = {}


def normalise(name: str) -> str:
    """The lookup key of a name: lower case without ``_``, ``-`` or spaces (``He_Normal`` -> ``henormal``)."""
    return "".join(c for c in str(name).lower() if c not in "_- ")


def closest(name: str, options) -> str | None:
    """The option most like ``name`` (difflib ratio >= 0.5, compared on normalised keys), or None."""
    options = list(options)
    keys = {normalise(o): o for o in options}
    hit = difflib.get_close_matches(normalise(name), list(keys), n=1, cutoff=0.5)
    if hit:
        return keys[hit[0]]
    hit = difflib.get_close_matches(str(name), options, n=1, cutoff=0.5)
    return hit[0] if hit else None


def suggestion(name: str, options) -> str:
    """``"; did you mean 'x'?"`` for the closest option, or an empty string."""
    best = closest(name, options)
    return f"; did you mean {best!r}?" if best is not None else ""


class UnknownName(LookupError):
    """A name that no entry of a family has: the message lists the known names and the closest one."""

    def __init__(self, family: str, name, known: list[str]):
        self.family, self.name, self.known = family, name, known
        shown = str(name)[:40]
        super().__init__(f"unknown {family} {shown!r}{suggestion(shown, known)}; expected one of {', '.join(known)}")


class DuplicateName(RuntimeError):
    """Two entries of one family claim the same (normalised) name: a programming error, raised at import."""


class Registry(Generic[T]):
    """Named entries of one family: ``register(name, *aliases)`` then ``get(name)``.

    >>> losses = Registry("loss"); losses.add("mean_squared_error", object, "mse")
    """

    def __init__(self, family: str):
        self.family = family
        self._entries: dict[str, T] = {}  # normalised name or alias -> entry
        self._canonical: dict[str, str] = {}  # normalised name or alias -> canonical spelling
        self._names: list[str] = []  # canonical spellings in registration order
        if family in FAMILIES:
            raise DuplicateName(f"a registry for {family!r} already exists")
        FAMILIES[family] = self

    def add(self, name: str, entry: T, *aliases: str) -> T:
        """Register ``entry`` under ``name`` and ``aliases``; DuplicateName when any is taken."""
        for n in (name, *aliases):
            key = normalise(n)
            if key in self._entries:
                raise DuplicateName(f"{self.family} {n!r} is already registered (as {self._canonical[key]!r})")
            self._entries[key] = entry
            self._canonical[key] = name
        self._names.append(name)
        return entry

    def register(self, name: str | None = None, *aliases: str) -> Callable[[T], T]:
        """Decorator form of ``add``; the name defaults to the object's ``__name__``."""

        def deco(entry: T) -> T:
            self.add(name or entry.__name__, entry, *aliases)  # type: ignore[attr-defined]
            return entry

        return deco

    def get(self, name) -> T:
        try:
            return self._entries[normalise(name)]
        except KeyError:
            raise UnknownName(self.family, name, self.names()) from None

    def canonical(self, name) -> str:
        """The canonical spelling of ``name`` (``acc`` -> ``accuracy``); UnknownName when absent."""
        try:
            return self._canonical[normalise(name)]
        except KeyError:
            raise UnknownName(self.family, name, self.names()) from None

    def names(self) -> list[str]:
        """Canonical names, sorted."""
        return sorted(self._names)

    def aliases(self) -> dict[str, str]:
        """Every accepted spelling that is not itself canonical (normalised) -> its canonical name."""
        canon = {normalise(n) for n in self._names}
        return {k: v for k, v in self._canonical.items() if k not in canon}

    def __contains__(self, name) -> bool:
        return normalise(name) in self._entries

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._entries[normalise(n)]) for n in self.names()]
